#!/usr/bin/env bash
# User-space instructions per request, counted by callgrind (repeatable on a
# noisy machine, unlike wall time): gatehouse /authz/forward with a cached token,
# and nginx `return 204`, each pinned to CPU 0 under `wrk` on CPU 1.
# Needs valgrind, nginx, wrk (installs what is missing on Debian).
# Usage: scripts/instructions.sh [seconds]
# KEEP=dir keeps the callgrind profiles there (callgrind_annotate reads them).
# Note: valgrind does not emulate the SHA extensions, so the token's SHA-256
# runs in software here (~27,000 instructions for a 430-byte token) and is
# reported apart (since identity::digest_memo, only a thread's first sight of
# the token hashes it).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
DUR=${1:-10}
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
missing=()
have valgrind || missing+=(valgrind)
have nginx || missing+=(nginx-light)
have wrk || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release -q
GH="$(pwd)/target/release/gatehouse"
W=$(mktemp -d)
VP=""
trap '[ -n "$VP" ] && kill "$VP" 2>/dev/null; sleep 0.5; rm -rf "$W"' EXIT

# measure NAME URL [wrk args]: prints instructions per request
measure() {
  local name=$1 url=$2; shift 2
  sleep 5
  taskset -c 1 wrk -t1 -c16 -d3s "$@" "$url" >/dev/null # warm-up
  callgrind_control -z "$VP" >/dev/null 2>&1
  local req
  req=$(taskset -c 1 wrk -t1 -c16 -d"${DUR}s" "$@" "$url" | awk '/requests in/ {print $1}')
  callgrind_control -d "$VP" >/dev/null 2>&1
  sleep 1
  local f
  f=$(ls -t "$W"/cg.out.* | head -1)
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$f" "$KEEP/${name%% *}.callgrind"; fi
  python3 - "$f" "$req" "$name" <<'PY'
import sys, re, collections
path, req, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
names, cur, skip, excl = {}, None, False, collections.Counter()
def nm(v):
    m = re.match(r'\((\d+)\)(?: (.*))?', v)
    if not m: return v
    if m.group(2): names[m.group(1)] = m.group(2)
    return names.get(m.group(1), '?')
for line in open(path):
    line = line.rstrip('\n')
    if line.startswith('fn='): cur = nm(line[3:]); continue
    if line.startswith('cfn='): nm(line[4:]); continue
    if line.startswith('calls='): skip = True; continue
    if line and (line[0].isdigit() or line[0] in '+-*'):
        if skip: skip = False; continue
        p = line.split()
        if len(p) >= 2 and cur: excl[cur] += int(p[1])
total = sum(excl.values())
sha = sum(c for f, c in excl.items() if f.startswith('sha2::') or 'sha256' in f.lower())
print(f"{name}: {req} requests, {total // req} instructions per request"
      + (f" ({(total - sha) // req} without the software SHA-256 of the token)" if sha else ""))
PY
  kill "$VP"; wait "$VP" 2>/dev/null || true; VP=""
}

cat > "$W/nginx.conf" <<X
$([ "$(id -u)" = 0 ] && echo "user root;")
daemon off; master_process off; worker_processes 1;
pid $W/nginx.pid; error_log $W/nginx-error.log;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $W/b; proxy_temp_path $W/p;
  fastcgi_temp_path $W/f; uwsgi_temp_path $W/u; scgi_temp_path $W/s;
  server { listen 127.0.0.1:19204; location / { return 204; } } }
X
taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$W/cg.out" "$NGINX" -p "$W" -c "$W/nginx.conf" 2>"$W/vg-nginx.log" &
VP=$!
measure "nginx return 204" http://127.0.0.1:19204/

cat > "$W/gh.toml" <<T
[server]
listen = "127.0.0.1:19150"
public_url = "https://auth.example.com"
[local_issuer]
signing_key_file = "$W/local.pem"
max_ttl = "2h"
[access]
default_policy = "deny"
[[access.rules]]
domains = ["app.example.com"]
policy = "one_factor"
T
rm -f "$W"/cg.out*
GATEHOUSE_LOG=warn taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$W/cg.out" "$GH" serve --config "$W/gh.toml" 2>"$W/vg-gh.log" &
VP=$!
for _ in $(seq 1 120); do (exec 3<>/dev/tcp/127.0.0.1/19150) 2>/dev/null && break; sleep 0.5; done
TOKEN=$("$GH" token mint --config "$W/gh.toml" --sub load --ttl 1h)
forward_lua "$W/fwd.lua" "$TOKEN" "/d/abc?orgId=1"
measure "gatehouse /authz/forward, cached token" http://127.0.0.1:19150/authz/forward -s "$W/fwd.lua"
