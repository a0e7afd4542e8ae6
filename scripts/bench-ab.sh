#!/usr/bin/env bash
# Two gatehouse builds against each other and bare nginx `return 204`:
# interleaved rounds (A B N, then N B A), each setup's median requests/s, p50,
# p99, p99.9 and CPU time a request (user + system, from /proc/PID/stat: CPU 0
# is saturated, so this is what sets rate and queueing), and p99 ratios round by
# round. For judging a change to the decision path's cost in minutes.
# Usage: GH=old-binary GH_B=new-binary scripts/bench-ab.sh (env: ROUNDS=10,
# DUR=3 seconds a run, OUT=file for the raw rounds). Needs nginx, wrk, node.
set -euo pipefail
: "${GH_B:?GH_B=path of the second gatehouse binary}"
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
ROUNDS=${ROUNDS:-10}; DUR=${DUR:-3}
fast_setup
A_PID=$(pgrep -f "serve --config $W/gatehouse.toml" | head -1)
mkdir -p "$W/b"; P_B=$(port)
sed "s/127.0.0.1:$P_GH/127.0.0.1:$P_B/" "$W/gatehouse.toml" > "$W/b/gatehouse.toml"
GATEHOUSE_LOG=warn taskset -c 0 "$GH_B" serve --config "$W/b/gatehouse.toml" 2>"$W/b/gatehouse.log" & B_PID=$!; PIDS+=($B_PID)
wait_port "$P_B"
NGX_W=$(pgrep -P "$(cat $W/nginx.pid)" | head -1)
forward_lua "$W/fwd.lua" "$IDP_TOKEN" "/d/abc?orgId=1"
echo 'done = function(s, l, r) io.write(string.format("RES %d %.0f %.0f %.0f\n", s.requests, l:percentile(50), l:percentile(99), l:percentile(99.9))) end' > "$W/pct.lua"
cat "$W/pct.lua" >> "$W/fwd.lua"
for p in $P_GH $P_B; do taskset -c 1 wrk -t1 -c4 -d2s -s "$W/fwd.lua" "http://127.0.0.1:$p/authz/forward" >/dev/null; done
pause_idp; hold_awake
cpu() { awk '{print $14 + $15}' /proc/$1/stat; }
one() { # name pid url script
  local a b res
  a=$(cpu $2); res=$(taskset -c 1 wrk -t1 -c16 -d${DUR}s -s "$4" "$3" | awk '/^RES/ {print $2, $3, $4, $5}'); b=$(cpu $2)
  echo "$1 $res $((b - a))"
}
for r in $(seq 1 $ROUNDS); do
  if [ $((r % 2)) = 1 ]; then o="A B N"; else o="N B A"; fi
  for s in $o; do case $s in
    A) one A $A_PID "http://127.0.0.1:$P_GH/authz/forward" "$W/fwd.lua" ;;
    B) one B $B_PID "http://127.0.0.1:$P_B/authz/forward" "$W/fwd.lua" ;;
    N) one N $NGX_W "http://127.0.0.1:$P_204/" "$W/pct.lua" ;;
  esac; done
done > "$W/res"
[ -z "${OUT:-}" ] || cp "$W/res" "$OUT"
python3 - "$W/res" "$DUR" "$(getconf CLK_TCK)" <<'PY'
import sys, statistics as st
rows = {}
for l in open(sys.argv[1]):
    s, n, p50, p99, p999, ticks = l.split(); rows.setdefault(s, []).append((int(n), int(p50), int(p99), int(p999), int(ticks)))
d, hz = float(sys.argv[2]), int(sys.argv[3])
for s in "ABN":
    r = rows[s]
    print(f"{ {'A': 'A (GH)', 'B': 'B (GH_B)', 'N': 'nginx'}[s]:9}: req/s {st.median(x[0] for x in r)/d:9.0f}  p50 {st.median(x[1] for x in r):4.0f}  p99 {st.median(x[2] for x in r):5.0f}  p99.9 {st.median(x[3] for x in r):5.0f}  CPU µs a request {st.median(x[4] * 1e6 / hz / x[0] for x in r):.3f}")
for a, b in (("A", "B"), ("N", "A"), ("N", "B")):
    rr = [y[2] / x[2] for x, y in zip(rows[a], rows[b])]
    tt = [y[0] / x[0] for x, y in zip(rows[a], rows[b])]
    print(f"{b}/{a}: p99 median {st.median(rr):.3f} (no worse in {sum(v <= 1 for v in rr)} of {len(rr)}), throughput {st.median(tt):.3f}")
PY
