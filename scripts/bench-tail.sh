#!/usr/bin/env bash
# The fast path's tail against nginx's, with the comparison's own noise floor:
# interleaved rounds of nginx `return 204` (bare request), gatehouse
# /authz/forward (the test IdP's cached token), nginx `return 204` asked
# gatehouse's request, and bare nginx again (the order reverses every other
# round). Prints each setup's median percentiles and, round by round, p99
# ratios: gatehouse / nginx, gatehouse / nginx with the same request, and
# nginx / nginx (A/A: what the machine alone does to a comparison).
# For judging a change to the tail in minutes; scripts/bench.sh is the record.
# Needs: nginx, wrk, node (tests/idp). Usage: scripts/bench-tail.sh [seconds] (env: ROUNDS=10, CONNS=16, GH=binary)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
DUR=${1:-5}; ROUNDS=${ROUNDS:-10}; CONNS=${CONNS:-16}
fast_setup
# wrk prints "RES requests p50 p90 p99 p99.9" (microseconds) when done.
PCT='done = function(s, l, r) io.write(string.format("RES %d %.0f %.0f %.0f %.0f\n", s.requests, l:percentile(50), l:percentile(90), l:percentile(99), l:percentile(99.9))) end'
forward_lua "$W/fwd.lua" "$IDP_TOKEN" "/d/abc?orgId=1"
echo "$PCT" >> "$W/fwd.lua"
echo "$PCT" > "$W/bare.lua"
one() {  # one SETUP -> "SETUP rps p50 p90 p99 p99.9"
  local url script
  case $1 in
    n|n2) url="http://127.0.0.1:$P_204/"; script="$W/bare.lua" ;;
    g) url="http://127.0.0.1:$P_GH/authz/forward"; script="$W/fwd.lua" ;;
    r) url="http://127.0.0.1:$P_204/authz/forward"; script="$W/fwd.lua" ;;
  esac
  taskset -c 1 wrk -t1 -c"$CONNS" -d"${DUR}s" -s "$script" "$url" |
    awk -v s="$1" -v d="$DUR" '/^RES/ {print s, int($2 / d), $3, $4, $5, $6}'
}
taskset -c 1 wrk -t1 -c4 -d2s -s "$W/fwd.lua" "http://127.0.0.1:$P_GH/authz/forward" >/dev/null
stalls 0 5 > "$W/stalls0" & stalls 1 5 > "$W/stalls1"; wait $!
read -r S0 M0 _ < "$W/stalls0"; read -r S1 M1 _ < "$W/stalls1"
echo "an idle CPU 0 lost $S0% of 5 s to stalls of 50 µs or more (longest $M0 ms), CPU 1 $S1% ($M1 ms)"
echo "$ROUNDS rounds of ${DUR}s, $CONNS connections, token ${#IDP_TOKEN} bytes, at $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="n g r n2"; else order="n2 r g n"; fi
  for s in $order; do one "$s"; done
done > "$W/results"
python3 - "$W/results" <<'PY'
import statistics as st, sys
runs = {}
for line in open(sys.argv[1]):
    s, *v = line.split()
    runs.setdefault(s, []).append([float(x) for x in v])
names = {"n": "nginx return 204", "g": "gatehouse, cached token", "r": "nginx, gatehouse's request", "n2": "nginx return 204 again"}
print(f"{'':28} {'req/s':>8} {'p50':>6} {'p90':>6} {'p99':>7} {'p99.9':>7}  (medians, µs)")
for s in ("n", "g", "r", "n2"):
    col = list(zip(*runs[s]))
    print(f"{names[s]:28} {st.median(col[0]):8.0f} {st.median(col[1]):6.0f} {st.median(col[2]):6.0f} {st.median(col[3]):7.0f} {st.median(col[4]):7.0f}")
def pairs(a, b, label):
    r = [y[3] / x[3] for x, y in zip(runs[a], runs[b])]
    print(f"p99 {label}: median ratio {st.median(r):.2f} ({min(r):.2f}–{max(r):.2f}), no worse in {sum(v <= 1 for v in r)} of {len(r)}")
pairs("n", "g", "gatehouse / nginx")
pairs("r", "g", "gatehouse / nginx asked the same request")
pairs("n", "n2", "nginx / nginx (A/A)")
PY
