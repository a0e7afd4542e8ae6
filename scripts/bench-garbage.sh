#!/usr/bin/env bash
# Memory under garbage: gatehouse (CPU 0) receives at least 1,000,000 distinct
# garbage bearer tokens and then 1,000,000 distinct bad session cookies, each
# from a random client address (X-Forwarded-For from a trusted proxy), from
# wrk (CPU 1). Reports the resident memory before, after each flood and at its
# peak, and checks that brute-force regulation still bans a fresh address
# afterwards. Results replace the marked section of docs/benchmarks.md.
#
# Needs: wrk (installed on Debian when missing).
# Usage: scripts/bench-garbage.sh [seconds-per-flood]   (default 30)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. scripts/bench-lib.sh
DUR=${1:-30}
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }

echo "== building gatehouse (release)"
cargo build --release -q --bin gatehouse
GH="$ROOT/target/release/gatehouse"
W=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.3; rm -rf "$W"; }
trap cleanup EXIT

P=$(port)
base_config "$W/g.toml" "127.0.0.1:$P"
GATEHOUSE_LOG=error taskset -c 0 "$GH" serve --config "$W/g.toml" 2>"$W/gh.log" &
GP=$!
PIDS+=($GP)
wait_port "$P"
rss() { awk '/^VmRSS/ {print $2}' "/proc/$GP/status"; }
peak() { awk '/^VmHWM/ {print $2}' "/proc/$GP/status"; }
metric() { curl -s "http://127.0.0.1:$P/metrics" | awk -v m="$1" '$1==m {print $2}'; }

# Each request: a fresh random token (or cookie) and a fresh random address.
cat > "$W/garbage.lua" <<'EOF'
local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local function rnd(n)
  local t = {}
  for i = 1, n do local c = math.random(1, #chars); t[i] = chars:sub(c, c) end
  return table.concat(t)
end
local kind = os.getenv("GARBAGE") or "token"
request = function()
  local h = {
    ["X-Forwarded-Proto"] = "https", ["X-Forwarded-Host"] = "app.example.com",
    ["X-Forwarded-Uri"] = "/", ["X-Forwarded-Method"] = "GET",
    ["X-Forwarded-For"] = string.format("10.%d.%d.%d", math.random(0, 255), math.random(0, 255), math.random(1, 254)),
  }
  if kind == "token" then
    h["Authorization"] = "Bearer eyJhbGciOiJFZERTQSIsImtpZCI6I" .. rnd(20) .. "." .. rnd(60) .. "." .. rnd(86)
  else
    h["Cookie"] = "gatehouse_session=" .. rnd(43)
  end
  return wrk.format("GET", "/authz/forward", h)
end
EOF
RSS0=$(rss)
flood() {  # flood KIND -> requests sent
  GARBAGE=$1 taskset -c 1 wrk -t1 -c16 -d"${DUR}s" -s "$W/garbage.lua" "http://127.0.0.1:$P/authz/forward" \
    | awk '/requests in/ {print $1}'
}
echo "== $DUR s of garbage bearer tokens"
N_TOKENS=$(flood token); RSS1=$(rss)
echo "== $DUR s of bad session cookies"
N_COOKIES=$(flood cookie); RSS2=$(rss); PEAK=$(peak)
# Regulation still works: ten refused tokens from one new address ban it.
for _ in $(seq 1 12); do
  CODE=$(curl -s -o /dev/null -w "%{http_code}" "http://127.0.0.1:$P/authz/forward" \
    -H "X-Forwarded-Proto: https" -H "X-Forwarded-Host: app.example.com" -H "X-Forwarded-Uri: /" \
    -H "X-Forwarded-Method: GET" -H "X-Forwarded-For: 198.51.100.99" -H "Authorization: Bearer not.a.token")
done
BANNED=$([ "$CODE" = 403 ] && echo "yes (403 banned after repeated refusals)" || echo "NO: last answer $CODE")
COMMIT=$(git rev-parse --short HEAD)$(git diff --quiet || echo "+changes")

SECTION=$(cat <<EOF
<!-- bench-garbage:start -->
Measured $(date -u +%Y-%m-%d) at \`$COMMIT\`: gatehouse on CPU 0, wrk on CPU 1, every request
with a fresh random credential and a fresh random client address (10.0.0.0/8 in
X-Forwarded-For from a trusted proxy).

| | requests | resident memory after |
|---|---|---|
| start | — | $((RSS0 / 1024)) MiB |
| garbage bearer tokens | $N_TOKENS | $((RSS1 / 1024)) MiB |
| bad session cookies | $N_COOKIES | $((RSS2 / 1024)) MiB |
| peak (VmHWM) | | $((PEAK / 1024)) MiB |

- brute-force regulation afterwards, a new address with refused tokens: banned: $BANNED
- what bounds it: refused tokens are never cached; failure counters are kept
  for at most 100,000 addresses/users (a flood of new ones forgets a tenth at a
  time, swept of stale ones at most once a second); bad cookies are looked up,
  never stored
<!-- bench-garbage:end -->
EOF
)
replace_section "$ROOT/docs/benchmarks.md" bench-garbage "Memory under a flood of garbage credentials (\`scripts/bench-garbage.sh\`)" "$SECTION"
echo "$SECTION"
