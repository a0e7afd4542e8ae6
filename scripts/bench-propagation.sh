#!/usr/bin/env bash
# How fast a change made through one replica denies on the others: three
# gatehouse processes (A, B, C) on one private PostgreSQL, decision load from
# wrk on B and C throughout, and CHANGES changes through A (bans and token
# revocations, alternately), each timed from A's answer until B and C deny
# (examples/propagation.rs). The periodic reload is set to a minute, so what
# is measured is the announcement (NOTIFY/LISTEN). Results replace the marked
# section of docs/benchmarks.md. Target: p99 under 1 s, median well under 100 ms.
#
# Needs: PostgreSQL server binaries, wrk (installed on Debian when missing).
# Usage: scripts/bench-propagation.sh   (env: CHANGES=200)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. scripts/bench-lib.sh
CHANGES=${CHANGES:-200}

ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v wrk >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql wrk >/dev/null
  systemctl stop postgresql >/dev/null 2>&1 || true
}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

echo "== building gatehouse and the probe (release)"
cargo build --release -q --bin gatehouse --example propagation
GH="$ROOT/target/release/gatehouse"
PROBE="$ROOT/target/release/examples/propagation"

W=$(mktemp -d)
chmod 755 "$W"
PIDS=()
AS=()
[ "$(id -u)" = 0 ] && AS=(runuser -u postgres --)
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$W/pg" -m immediate stop >/dev/null 2>&1 || true
  sleep 0.3
  rm -rf "$W"
}
trap cleanup EXIT

echo "== PostgreSQL"
P_PG=$(port)
mkdir -p "$W/pg"
[ "$(id -u)" = 0 ] && chown postgres "$W/pg"
"${AS[@]}" "$PGBIN/initdb" -D "$W/pg" -U postgres -A trust >/dev/null
"${AS[@]}" "$PGBIN/pg_ctl" -D "$W/pg" -o "-p $P_PG -k $W/pg -c listen_addresses=127.0.0.1" -l "$W/pg/log" start >/dev/null
wait_port "$P_PG"

base_config "$W/g.toml" "127.0.0.1:0" "[store]
url = \"postgres://postgres@127.0.0.1:$P_PG/postgres\"
reload_interval = \"60s\""
ADMIN=$("$GH" token mint --config "$W/g.toml" --sub root --roles admin --ttl 2h)
LOAD=$("$GH" token mint --config "$W/g.toml" --sub load --ttl 2h)
for i in $(seq 0 $((CHANGES - 1))); do "$GH" token mint --config "$W/g.toml" --sub "user-$i" --ttl 2h; done > "$W/users.txt"

echo "== three replicas"
ADDRS=()
for r in A B C; do
  P=$(port)
  sed "s/127.0.0.1:0/127.0.0.1:$P/" "$W/g.toml" > "$W/$r.toml"
  GATEHOUSE_LOG=warn "$GH" serve --config "$W/$r.toml" 2>"$W/$r.log" &
  PIDS+=($!)
  ADDRS+=("127.0.0.1:$P")
done
for a in "${ADDRS[@]}"; do
  for _ in $(seq 1 100); do curl -sf "http://$a/readyz" >/dev/null && break; sleep 0.1; done
  curl -sf "http://$a/readyz" >/dev/null || { echo "replica $a never ready" >&2; cat "$W"/*.log >&2; exit 1; }
done

forward_lua "$W/fwd.lua" "$LOAD"
echo "== decision load on B and C, $CHANGES changes through A"
for a in "${ADDRS[1]}" "${ADDRS[2]}"; do
  wrk -t1 -c4 -d600s -s "$W/fwd.lua" "http://$a/authz/forward" > "$W/wrk-$a.log" 2>&1 &
  PIDS+=($!)
done
sleep 1
"$PROBE" "${ADDRS[0]}" "${ADDRS[1]}" "${ADDRS[2]}" "$ADMIN" "$W/users.txt" > "$W/times.txt"
kill -INT "${PIDS[-1]}" "${PIDS[-2]}" 2>/dev/null || true
sleep 0.5
LOAD_RPS=$(awk '/Requests\/sec/ {s+=$2} END {printf "%.0f", s}' "$W"/wrk-*.log)

STATS=$(python3 - "$W/times.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
def q(v, p):
    v = sorted(v); return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]
def line(name, v):
    return f"| {name} | {len(v)} | {statistics.median(v):.1f} ms | {q(v, 90):.1f} ms | {q(v, 99):.1f} ms | {max(v):.1f} ms |"
out = []
for col, since in ((2, "A's answer"), (3, "the request to A")):
    out.append(line(f"all, from {since}", [float(r[col]) for r in rows]))
    for kind in ("ban", "revocation"):
        out.append(line(f"{kind}s, from {since}", [float(r[col]) for r in rows if r[0] == kind]))
print("\n".join(out))
PY
)
COMMIT=$(git rev-parse --short HEAD)$(git diff --quiet || echo "+changes")
SECTION=$(cat <<EOF
<!-- bench-propagation:start -->
Measured $(date -u +%Y-%m-%d) at \`$COMMIT\` on $(nproc) CPUs: three replicas and
PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on this machine, wrk keeping decisions running on B and C
(${LOAD_RPS} requests/s in all, while measuring); $CHANGES changes through A, each timed from A's
answer (and from the request to A: A answers after the change and its audit
entries are committed, so B and C often deny before A has answered) until B
and C deny; \`store.reload_interval = "60s"\`, so every change arrived by
NOTIFY/LISTEN.

| changes | samples (B and C) | median | p90 | p99 | max |
|---|---|---|---|---|---|
$STATS

Target: p99 under 1 s, median well under 100 ms.
<!-- bench-propagation:end -->
EOF
)
replace_section "$ROOT/docs/benchmarks.md" bench-propagation "A change through one replica, seen by the others (\`scripts/bench-propagation.sh\`)" "$SECTION"
echo "$SECTION"
