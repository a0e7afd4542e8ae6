#!/usr/bin/env bash
# The decision fast path alone, quickly: nginx `return 204` against gatehouse
# /authz/forward with a cached token — the test IdP's RS256 access token (the one
# scripts/bench.sh uses) and a short locally minted one — in interleaved rounds.
# For trying a change in minutes; scripts/bench.sh is the record.
# Needs: nginx, wrk, node (tests/idp). Usage: scripts/bench-fast.sh [seconds] (env: ROUNDS=3, CONNS=16, GH=binary)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. scripts/bench-lib.sh
DUR=${1:-5}; ROUNDS=${ROUNDS:-3}; CONNS=${CONNS:-16}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ -z "${GH:-}" ]; then cargo build --release -q; GH="$ROOT/target/release/gatehouse"; fi
[ -f tests/idp/node_modules/oidc-provider/package.json ] || npm ci --prefix tests/idp --no-audit --no-fund --loglevel=error
W=$(mktemp -d); PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$W/nginx.pid" ] && kill "$(cat "$W/nginx.pid")" 2>/dev/null || true; sleep 0.2; rm -rf "$W"; }
trap cleanup EXIT
P_IDP=$(port); P_GH=$(port); P_204=$(port)
start_idp "$W" "$P_IDP"
IDP_TOKEN=$(idp_token "$P_IDP")
base_config "$W/gatehouse.toml" "127.0.0.1:$P_GH" "[[issuers]]
issuer = \"http://127.0.0.1:$P_IDP\"
allow_insecure_http = true
audiences = [\"gatehouse\"]"
GATEHOUSE_LOG=warn taskset -c 0 "$GH" serve --config "$W/gatehouse.toml" 2>"$W/gatehouse.log" &
PIDS+=($!)
wait_port "$P_GH"
LOCAL_TOKEN=$("$GH" token mint --config "$W/gatehouse.toml" --sub load --ttl 1h)
USER_LINE=""; [ "$(id -u)" = 0 ] && USER_LINE="user root;"
mkdir -p "$W/tmp"
cat > "$W/nginx.conf" <<EOF
$USER_LINE
worker_processes 1; worker_cpu_affinity 01; pid $W/nginx.pid; error_log $W/nginx-error.log warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $W/tmp/body; proxy_temp_path $W/tmp/proxy;
  fastcgi_temp_path $W/tmp/fcgi; uwsgi_temp_path $W/tmp/uwsgi; scgi_temp_path $W/tmp/scgi;
  server { listen 127.0.0.1:$P_204; location / { return 204; } } }
EOF
taskset -c 0 "$NGINX" -p "$W" -c "$W/nginx.conf"
wait_port "$P_204"
forward_lua "$W/idp.lua" "$IDP_TOKEN" "/d/abc?orgId=1"
forward_lua "$W/local.lua" "$LOCAL_TOKEN" "/d/abc?orgId=1"
echo "tokens: IdP ${#IDP_TOKEN} bytes, local ${#LOCAL_TOKEN} bytes"
run() { taskset -c 1 wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "$@" | wrk_summary; }
taskset -c 1 wrk -t1 -c4 -d2s -s "$W/idp.lua" "http://127.0.0.1:$P_GH/authz/forward" >/dev/null
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
