#!/usr/bin/env bash
# Memory of gatehouse with 10,000 live sessions and 100,000 cached tokens:
# resident memory at start on an empty store, at start with 10,000 sessions
# loaded, after 100,000 distinct tokens of one user were each validated (and
# cached), and after 2,000 more of 2,000 users;
# what one session and one cached token cost, and what the token cache's
# weigher estimates for them. Writes its section of docs/benchmarks.md.
# gatehouse runs on one core (taskset -c 0, as scripts/bench.sh runs it: one
# runtime thread, one malloc arena); PIN= runs it unpinned.
# Needs wrk (installs it on Debian when missing).
# Usage: scripts/bench-memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh
missing=()
command -v wrk >/dev/null || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release -q
GH="$(pwd)/target/release/gatehouse"
W=$(mktemp -d)
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$W"' EXIT
P=$(port)
base_config "$W/g.toml" "127.0.0.1:$P" "[store]
url = \"sqlite://$W/g.db\""
PIN=${PIN-taskset -c 0}
rss() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
start() {
  GATEHOUSE_LOG=warn ${PIN:-} "$GH" serve --config "$W/g.toml" 2>>"$W/gh.log" &
  PID=$!
  wait_port "$P"
  sleep 1
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""; }

"$GH" migrate --config "$W/g.toml" >/dev/null
start
EMPTY=$(rss "$PID" VmRSS)
stop

echo "== 10,000 sessions in the store"
python3 - "$W/g.db" <<'PY'
import json, sqlite3, sys, time, hashlib
db = sqlite3.connect(sys.argv[1])
now = int(time.time())
rows = []
for i in range(10000):
    rows.append((hashlib.sha256(f"cookie-{i}".encode()).hexdigest(), "gatehouse-local",
                 f"0b6f3c2e-5a41-4c6f-9d7e-{i:012d}", f"user{i:05d}",
                 json.dumps(["developers", "grafana-viewers", "trading"]),
                 f"user{i:05d}@example.com", f"User {i}", None, json.dumps(["pwd", "otp"]),
                 now, f"idp-session-{i:08d}", "203.0.113.7",
                 "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36",
                 now, now, now + 12 * 3600))
db.executemany("""INSERT INTO sessions (id, issuer, subject, username, groups, email, name, acr, amr,
  auth_time, sid, client_addr, user_agent, created_at, last_seen, expires_at)
  VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""", rows)
db.commit()
PY
start
SESSIONS=$(rss "$PID" VmRSS)
ACTIVE=$(python3 -c "import urllib.request; print([l.split()[1] for l in urllib.request.urlopen('http://127.0.0.1:$P/metrics').read().decode().splitlines() if l.startswith('gatehouse_active_sessions ')][0])")

echo "== 100,000 distinct tokens, each validated once and cached"
"$GH" token mint --config "$W/g.toml" --sub load --roles developers,grafana-viewers --ttl 1h --count 100000 > "$W/tokens.txt"
rotate_lua "$W/rotate.lua" "$W/tokens.txt"
wrk -t1 -c8 -d20s -s "$W/rotate.lua" "http://127.0.0.1:$P/authz/forward" >/dev/null
TOKENS=$(rss "$PID" VmRSS)

echo "== 2,000 more tokens, each of a user of its own"
# The 100,000 above are one user's (as a user's refreshed tokens are): they
# share one principal. These measure a token that brings its own.
for i in $(seq 1 2000); do
  "$GH" token mint --config "$W/g.toml" --sub "user-$i" --roles developers,grafana-viewers --ttl 1h
done > "$W/distinct.txt"
rotate_lua "$W/distinct.lua" "$W/distinct.txt"
wrk -t1 -c8 -d3s -s "$W/distinct.lua" "http://127.0.0.1:$P/authz/forward" >/dev/null
DISTINCT=$(rss "$PID" VmRSS)
PEAK=$(rss "$PID" VmHWM)
METRICS=$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$P/metrics').read().decode())")
MISSES=$(echo "$METRICS" | awk '$1 == "gatehouse_token_cache_misses_total" {print $2}')
HITS=$(echo "$METRICS" | awk '$1 == "gatehouse_token_cache_hits_total" {print $2}')
stop

per() { python3 -c "print(round(($1 - $2) * 1024 / $3))"; }
PER_SESSION=$(per "$SESSIONS" "$EMPTY" 10000)
PER_TOKEN=$(per "$TOKENS" "$SESSIONS" 100000)
PER_DISTINCT=$(per "$DISTINCT" "$TOKENS" 2000)
mib() { python3 -c "print(round($1 / 1024, 1))"; }
COMMIT=$(git rev-parse --short HEAD)
SECTION="<!-- memory:start -->
Measured by \`scripts/bench-memory.sh\` on $(date -u +%Y-%m-%d) at $COMMIT (release build, ${PIN:-unpinned}):

| state | resident memory |
|---|---|
| started, empty store | $(mib "$EMPTY") MiB |
| started with 10,000 live sessions ($ACTIVE active) | $(mib "$SESSIONS") MiB |
| after 100,000 distinct tokens of one user validated and cached | $(mib "$TOKENS") MiB |
| after 2,000 more, each of a user of its own ($MISSES misses, $HITS hits in all) | $(mib "$DISTINCT") MiB (peak $(mib "$PEAK") MiB) |

One live session: about **$PER_SESSION bytes**; one cached token: about
**$PER_TOKEN bytes** when its user has other tokens cached (a user's tokens
share one principal: names, groups and ready header lines), about
**$PER_DISTINCT bytes** when it brings its own. The cache weighs every entry
as if it held its principal alone, and is bounded at 256 MiB of that weight,
not by a number of entries.
<!-- memory:end -->"
replace_section docs/benchmarks.md memory "Memory: sessions and cached tokens" "$SECTION"
echo "$SECTION"
