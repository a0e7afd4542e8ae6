#!/usr/bin/env bash
# Does a busy admin socket slow the decisions? gatehouse /authz/forward with a
# cached token, measured with wrk (CPU 1) against gatehouse (CPU 0):
#   A. no admin socket open;
#   B. 200 admin sockets open and reading (a stats_update every second each,
#      sampled denial events to all of them) and one more that never reads.
# Both setups get the same trickle of denied decisions (20/s). Setups alternate
# in ROUNDS rounds; medians are reported and replace the marked section of
# docs/benchmarks.md. Target: B within 5% of A.
#
# The socket clients are examples/ws_load.rs (tokio-tungstenite).
# Needs: wrk.
# Usage: scripts/bench-ws.sh [seconds-per-run]   (env: ROUNDS=5, CONNS=16)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. scripts/bench-lib.sh
DUR=${1:-10}
ROUNDS=${ROUNDS:-5}
CONNS=${CONNS:-16}
SOCKETS=${SOCKETS:-200}

command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }

echo "== building gatehouse and the socket clients (release)"
cargo build --release -q --bin gatehouse --example ws_load
GH="$ROOT/target/release/gatehouse"
LOAD="$ROOT/target/release/examples/ws_load"

W=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  rm -rf "$W"
}
trap cleanup EXIT

P_GH=$(port)
base_config "$W/gatehouse.toml" "127.0.0.1:$P_GH" '[admin.live]
stats_interval = "1s"'
echo "== gatehouse on CPU 0"
GATEHOUSE_LOG=warn taskset -c 0 "$GH" serve --config "$W/gatehouse.toml" 2>"$W/gatehouse.log" &
GH_PID=$!
PIDS+=($GH_PID)
wait_port "$P_GH"
TOKEN=$("$GH" token mint --config "$W/gatehouse.toml" --sub load --ttl 2h)
# Admins for the sockets: at most 8 sockets per user are allowed.
for i in $(seq 0 $(( (SOCKETS + 1) / 8 ))); do
  "$GH" token mint --config "$W/gatehouse.toml" --sub "admin-$i" --roles admin --ttl 2h
done > "$W/admins.txt"

forward_lua "$W/fwd.lua" "$TOKEN" "/d/abc?orgId=1"

# Starts the socket clients (N reading + stalled) on CPU 1; waits for "ready".
clients() {
  taskset -c 1 "$LOAD" "127.0.0.1:$P_GH" "$W/admins.txt" "$1" "$2" 20 >"$W/clients.out" 2>>"$W/clients.log" &
  CLIENTS=$!
  for _ in $(seq 1 100); do grep -q ready "$W/clients.out" 2>/dev/null && return 0; sleep 0.1; done
  echo "the socket clients did not start:" >&2; cat "$W/clients.log" >&2; exit 1
}
stop_clients() { kill "$CLIENTS" 2>/dev/null; wait "$CLIENTS" 2>/dev/null || true; }
metric() { curl -s "http://127.0.0.1:$P_GH/metrics" | awk -v m="$1" '$1==m {print $2}'; }

run() {  # prints "rps p99_ms"
  taskset -c 1 wrk -t1 -c"$CONNS" -d"${DUR}s" --latency -s "$W/fwd.lua" "http://127.0.0.1:$P_GH/authz/forward" \
    | tee -a "$W/wrk.log" | wrk_summary
}

echo "== warm-up"
taskset -c 1 wrk -t1 -c4 -d2s -s "$W/fwd.lua" "http://127.0.0.1:$P_GH/authz/forward" >/dev/null

echo "== measuring: $ROUNDS rounds, ${DUR}s per setup, $CONNS connections, $SOCKETS sockets + 1 stalled"
A=""; B=""
for round in $(seq 1 "$ROUNDS"); do
  clients 0 0
  A+="$(run);"
  stop_clients
  clients "$SOCKETS" 1
  [ "$(metric gatehouse_ws_open)" -ge "$((SOCKETS + 1))" ] || { echo "only $(metric gatehouse_ws_open) sockets open" >&2; exit 1; }
  B+="$(run);"
  OPEN_AFTER=$(metric gatehouse_ws_open)
  stop_clients
  echo "   round $round: A $(echo "$A" | tr ';' '\n' | tail -2 | head -1) | B $(echo "$B" | tr ';' '\n' | tail -2 | head -1) (sockets open at the end: $OPEN_AFTER)"
done
A_RPS=$(median "$A" 1); A_P99=$(median "$A" 2); B_RPS=$(median "$B" 1); B_P99=$(median "$B" 2)
RATIO=$(python3 -c "print(f'{$B_RPS/$A_RPS:.3f}')")
SLOW=$(metric gatehouse_ws_closed_slow_total); DROPPED=$(metric gatehouse_ws_events_dropped_total)
RECEIVED=$(grep -h "messages" "$W/clients.log" | tail -1)
COMMIT=$(git rev-parse --short HEAD)$(git diff --quiet || echo "+changes")

SECTION=$(cat <<EOF
<!-- bench-ws:start -->
Measured $(date -u +%Y-%m-%d) at \`$COMMIT\` on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)):
gatehouse pinned to CPU 0; \`wrk -t1 -c$CONNS -d${DUR}s\` and the socket clients
(\`examples/ws_load.rs\`) pinned to CPU 1; medians of $ROUNDS alternating rounds.
Both setups get 20 denied decisions a second besides the load.

| setup | requests/s | p99 |
|---|---|---|
| A: no admin socket | $A_RPS | ${A_P99} ms |
| B: $SOCKETS admin sockets reading (stats every second, sampled denials) + 1 that never reads | $B_RPS | ${B_P99} ms |

- B / A: **$RATIO** (target ≥ 0.95)
- the sockets that never read, dropped after \`send_timeout\`: $SLOW; events dropped for slow readers: $DROPPED
- the last round's clients: $RECEIVED
<!-- bench-ws:end -->
EOF
)
replace_section "$ROOT/docs/benchmarks.md" bench-ws "With admin sockets open (\`scripts/bench-ws.sh\`)" "$SECTION"
echo "$SECTION"
