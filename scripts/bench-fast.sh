#!/usr/bin/env bash
# The decision fast path alone, quickly: nginx `return 204` against gatehouse
# /authz/forward with a cached token — the test IdP's RS256 access token (the one
# scripts/bench.sh uses) and a short locally minted one — in interleaved rounds.
# For trying a change in minutes; scripts/bench.sh is the record.
# Needs: nginx, wrk, node (tests/idp). Usage: scripts/bench-fast.sh [seconds] (env: ROUNDS=3, CONNS=16, GH=binary, AWAKE=1)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
DUR=${1:-5}; ROUNDS=${ROUNDS:-3}; CONNS=${CONNS:-16}
fast_setup
LOCAL_TOKEN=$("$GH" token mint --config "$W/gatehouse.toml" --sub load --ttl 1h)
forward_lua "$W/idp.lua" "$IDP_TOKEN" "/d/abc?orgId=1"
forward_lua "$W/local.lua" "$LOCAL_TOKEN" "/d/abc?orgId=1"
echo "tokens: IdP ${#IDP_TOKEN} bytes, local ${#LOCAL_TOKEN} bytes"
run() { taskset -c 1 wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "$@" | wrk_summary; }
taskset -c 1 wrk -t1 -c4 -d2s -s "$W/idp.lua" "http://127.0.0.1:$P_GH/authz/forward" >/dev/null
pause_idp
hold_awake
echo "CPUs held out of halt: $AWAKE_STATE"
taskset -c 1 wrk -t1 -c4 -d1s -s "$W/local.lua" "http://127.0.0.1:$P_GH/authz/forward" >/dev/null
declare -A R
for round in $(seq 1 "$ROUNDS"); do
  R[n204]+="$(run "http://127.0.0.1:$P_204/");"
  R[idp]+="$(run -s "$W/idp.lua" "http://127.0.0.1:$P_GH/authz/forward");"
  R[local]+="$(run -s "$W/local.lua" "http://127.0.0.1:$P_GH/authz/forward");"
done
n=$(median "${R[n204]}" 1); i=$(median "${R[idp]}" 1); l=$(median "${R[local]}" 1)
echo "nginx 204: $n/s p99 $(median "${R[n204]}" 2) ms | IdP token: $i/s p99 $(median "${R[idp]}" 2) ms | local token: $l/s p99 $(median "${R[local]}" 2) ms"
python3 -c "print(f'ratios: IdP token {$i/$n:.3f}, local token {$l/$n:.3f}')"
