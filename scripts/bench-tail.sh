#!/usr/bin/env bash
# The fast path's tail against nginx's, with the comparison's own noise floor:
# interleaved rounds of nginx `return 204` (bare request), gatehouse
# /authz/forward (the test IdP's cached token), nginx `return 204` asked
# gatehouse's request, and bare nginx again (the order reverses every other
# round). Prints each setup's median percentiles and, round by round, p99
# ratios, and the p99 of each setup's requests over all rounds together:
# gatehouse / nginx (each of the two runs), gatehouse / nginx with the same
# request, and nginx / nginx (A/A: what the machine alone does to a
# comparison), each with a 95% interval (rounds resampled). With ROUNDS=30
# the interval, not the point, is what a verdict rests on.
# For judging a change to the tail in minutes; scripts/bench.sh is the record.
# Needs: nginx, wrk, node (tests/idp). Usage: scripts/bench-tail.sh [seconds]
# (env: ROUNDS=10, CONNS=16, GH=binary, OUT=file for the raw rounds, AWAKE=0 to
# let the CPUs halt: see hold_awake in scripts/bench-lib.sh);
# scripts/bench-tail.sh --analyse FILE... pools saved runs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
analyse() {  # FILE... (rounds saved by OUT=, several runs pooled)
  python3 - "$@" <<'PY'
import bisect, random, statistics as st, sys
runs = {}
for line in (l for f in sys.argv[1:] for l in open(f)):
    s, *v = line.split()
    runs.setdefault(s, []).append([float(x) for x in v])
names = {"n": "nginx return 204", "g": "gatehouse, cached token", "r": "nginx, gatehouse's request", "n2": "nginx return 204 again",
         "z": "null server, bare request", "y": "null server, gatehouse's req"}
SETUPS = [s for s in ("n", "g", "r", "n2", "z", "y") if s in runs]
print(f"{'':28} {'req/s':>8} {'p50':>6} {'p90':>6} {'p99':>7} {'p99.9':>7}  (medians of the rounds, µs)")
for s in SETUPS:
    col = list(zip(*runs[s]))
    print(f"{names[s]:28} {st.median(col[0]):8.0f} {st.median(col[1]):6.0f} {st.median(col[2]):6.0f} {st.median(col[3]):7.0f} {st.median(col[4]):7.0f}")
P = [90 + k / 10 for k in range(100)]
def pooled_q(rows, p=99):
    # The p-th percentile of all of a setup's requests in the given rounds: the
    # x at which the rounds' CDFs, weighted by their requests, reach p/100.
    # Each round's CDF is read off its quantile function between p90 and p99.9.
    def cdf(q, x):
        i = bisect.bisect_right(q, x)
        if i == 0:
            return P[0] / 100
        if i == len(q):
            return 0.9995
        lo, hi = q[i - 1], q[i]
        f = (x - lo) / (hi - lo) if hi > lo else 1.0
        return (P[i - 1] + f * (P[i] - P[i - 1])) / 100
    total = sum(r[0] for r in rows)
    lo, hi = min(r[5] for r in rows), max(r[-1] for r in rows)
    for _ in range(40):
        mid = (lo + hi) / 2
        if sum(r[0] * cdf(r[5:], mid) for r in rows) >= p / 100 * total:
            hi = mid
        else:
            lo = mid
    return hi
def interval(stat):
    # 95% interval, resampling whole rounds (all setups of a round together;
    # fixed seed: the same results give the same interval).
    rng = random.Random(1); k = len(runs["n"])
    vals = sorted(stat([rng.randrange(k) for _ in range(k)]) for _ in range(1000))
    return vals[25], vals[974]
every = list(range(len(runs["n"])))
def pooled(a, b, label):
    f = lambda idx: pooled_q([runs[b][i] for i in idx]) / pooled_q([runs[a][i] for i in idx])
    lo, hi = interval(f)
    print(f"  {label}: {pooled_q(runs[b]):.0f} / {pooled_q(runs[a]):.0f} µs = {f(every):.2f} (95% interval {lo:.2f}–{hi:.2f})")
COMPARED = [("n", "g", "gatehouse / nginx"), ("n2", "g", "gatehouse / nginx again"),
            ("r", "g", "gatehouse / nginx asked the same request"), ("n", "n2", "nginx again / nginx (A/A)"),
            ("n", "r", "nginx asked gatehouse's request / nginx (the request alone)")]
if "y" in runs:
    COMPARED += [("z", "y", "null server: gatehouse's request / bare (the request alone)"),
                 ("n", "y", "null server with gatehouse's request / nginx (the floor)"),
                 ("y", "g", "gatehouse / null server, the same request")]
# Where the body of the latencies ends and the machine's stalls begin: a p99
# near that knee swings between the two from round to round.
KNEE = [95, 98, 98.5, 99, 99.3, 99.5, 99.7]
print("percentiles of all the rounds' requests together (µs):")
print(f"{'':28} " + " ".join(f"{'p' + format(p, 'g'):>7}" for p in KNEE))
for s in SETUPS:
    print(f"{names[s]:28} " + " ".join(f"{pooled_q(runs[s], p):7.0f}" for p in KNEE))
print("p99 of all the rounds' requests together:")
for a, b, label in COMPARED:
    pooled(a, b, label)
def pairs(a, b, label):
    f = lambda idx: st.median(runs[b][i][3] / runs[a][i][3] for i in idx)
    r = [runs[b][i][3] / runs[a][i][3] for i in every]
    lo, hi = interval(f)
    print(f"  {label}: median {f(every):.2f} (95% interval {lo:.2f}–{hi:.2f}; range {min(r):.2f}–{max(r):.2f}), no worse in {sum(v <= 1 for v in r)} of {len(r)}")
print("p99 round by round:")
for a, b, label in COMPARED:
    pairs(a, b, label)
PY
}
if [ "${1:-}" = --analyse ]; then shift; analyse "$@"; exit; fi
DUR=${1:-5}; ROUNDS=${ROUNDS:-10}; CONNS=${CONNS:-16}
fast_setup
# The floor: a server that does nothing but find where each request head ends
# and answer a fixed 204 (scripts/null-server.c, epoll, one read and one write a
# request). What it needs for gatehouse's request is what that request costs
# any server on this machine. NULL=0 leaves it out (no C compiler needed).
SETUPS="n g r n2"
if [ "${NULL:-1}" = 1 ]; then
  P_NULL=$(port)
  cc -O2 -o "$W/null-server" scripts/null-server.c
  taskset -c 0 "$W/null-server" "$P_NULL" & PIDS+=($!)
  wait_port "$P_NULL"
  SETUPS="n g r z y n2"
fi
# wrk prints "RES requests p50 p90 p99 p99.9" and then the tail's quantile
# function, p90 to p99.9 in steps of 0.1 (microseconds), when done.
PCT='done = function(s, l, r)
  local t = {string.format("RES %d", s.requests)}
  for _, p in ipairs({50, 90, 99, 99.9}) do t[#t + 1] = string.format("%.0f", l:percentile(p)) end
  for k = 0, 99 do t[#t + 1] = string.format("%.0f", l:percentile(90 + k / 10)) end
  io.write(table.concat(t, " "), "\n")
end'
forward_lua "$W/fwd.lua" "$IDP_TOKEN" "/d/abc?orgId=1"
echo "$PCT" >> "$W/fwd.lua"
echo "$PCT" > "$W/bare.lua"
one() {  # one SETUP -> "SETUP rps p50 p90 p99 p99.9 q90.0 ... q99.9"
  local url script
  case $1 in
    n|n2) url="http://127.0.0.1:$P_204/"; script="$W/bare.lua" ;;
    g) url="http://127.0.0.1:$P_GH/authz/forward"; script="$W/fwd.lua" ;;
    r) url="http://127.0.0.1:$P_204/authz/forward"; script="$W/fwd.lua" ;;
    z) url="http://127.0.0.1:$P_NULL/"; script="$W/bare.lua" ;;
    y) url="http://127.0.0.1:$P_NULL/authz/forward"; script="$W/fwd.lua" ;;
  esac
  taskset -c 1 wrk -t1 -c"$CONNS" -d"${DUR}s" -s "$script" "$url" |
    awk -v s="$1" -v d="$DUR" '/^RES/ {$1 = s; $2 = int($2 / d); print}'
}
taskset -c 1 wrk -t1 -c4 -d2s -s "$W/fwd.lua" "http://127.0.0.1:$P_GH/authz/forward" >/dev/null
pause_idp
hold_awake
stalls_both 5
echo "CPUs held awake: $AWAKE_STATE"
echo "an idle CPU 0 lost $ST0_PCT% of 5 s to stalls of 50 µs or more (longest $ST0_MAX ms), CPU 1 $ST1_PCT% ($ST1_MAX ms)"
echo "$ROUNDS rounds of ${DUR}s, $CONNS connections, token ${#IDP_TOKEN} bytes, at $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order=$SETUPS; else order=$(echo "$SETUPS" | tr ' ' '\n' | tac | tr '\n' ' '); fi
  for s in $order; do one "$s"; done
done > "$W/results"
[ -z "${OUT:-}" ] || cp "$W/results" "$OUT"
analyse "$W/results"
