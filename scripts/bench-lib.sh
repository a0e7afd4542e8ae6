# Shared by the benchmark scripts (sourced, not run).

# A free loopback port; waiting for something to listen on one.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

# wrk's output (stdin) as "requests/s p99_ms"; warns about non-2xx answers.
wrk_summary() {
  local out rps p99 non2xx
  out=$(cat)
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $4}')
  if [ -n "$non2xx" ]; then echo "WARNING: $non2xx non-2xx answers" >&2; fi
  echo "$rps $p99"
}

# The median of field N (1 = requests/s, 2 = p99) of "rps p99;rps p99;...".
median() { python3 -c "import statistics,sys; v=[float(x.split()[int(sys.argv[2])-1]) for x in sys.argv[1].split(';') if x.strip()]; print(round(statistics.median(v), 3 if sys.argv[2]=='2' else 0))" "$1" "$2"; }

# Replaces the section between <!-- MARK:start --> and <!-- MARK:end --> of
# FILE with SECTION (which carries the markers), or appends it under TITLE.
replace_section() {
  python3 - "$1" "$2" "$3" "$4" <<'PY'
import sys, re
path, mark, title, section = sys.argv[1:5]
text = open(path).read()
start, end = f"<!-- {mark}:start -->", f"<!-- {mark}:end -->"
if start in text:
    text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda m: section, text, flags=re.S)
else:
    text = text.rstrip() + f"\n\n## {title}\n\n" + section + "\n"
open(path, "w").write(text)
PY
}

# A wrk script (FILE) asking /authz/forward with each token of TOKENS (one a
# line) in turn, for the path URI (default /).
rotate_lua() {
  cat > "$1" <<LUA
local tokens = {}
for line in io.lines("$2") do tokens[#tokens + 1] = "Bearer " .. line end
local i = 0
request = function()
  i = i % #tokens + 1
  return wrk.format("GET", "/authz/forward", {
    ["X-Forwarded-Proto"] = "https", ["X-Forwarded-Host"] = "app.example.com",
    ["X-Forwarded-Uri"] = "${3:-/}", ["X-Forwarded-Method"] = "GET",
    ["Authorization"] = tokens[i] })
end
LUA
}

# The benchmarks' gatehouse configuration: FILE LISTEN [more TOML]. A local
# signing key (local.pem beside FILE), one one-factor rule for app.example.com.
base_config() {
  cat > "$1" <<EOF
[server]
listen = "$2"
public_url = "https://auth.example.com"
[local_issuer]
signing_key_file = "local.pem"
[access]
default_policy = "deny"
[[access.rules]]
domains = ["app.example.com"]
policy = "one_factor"
${3:-}
EOF
}

# A wrk script (FILE) asking /authz/forward as a proxy does for
# https://app.example.com URI (default /), with TOKEN as the bearer.
forward_lua() {
  cat > "$1" <<LUA
wrk.headers["X-Forwarded-Proto"] = "https"
wrk.headers["X-Forwarded-Host"] = "app.example.com"
wrk.headers["X-Forwarded-Uri"] = "${3:-/}"
wrk.headers["X-Forwarded-Method"] = "GET"
wrk.headers["Authorization"] = "Bearer $2"
LUA
}

# The test IdP (tests/idp, node) on 127.0.0.1:PORT, its files in DIR: a fresh
# RSA key (DIR/key.json, DIR/keys.json) and one user, "bench", a viewer. Access
# tokens live an hour (the IdP's default, five minutes, is shorter than a
# benchmark). Appends its pid to PIDS and sets IDP_PID; returns when it listens.
start_idp() {
  local dir=$1 port=$2
  node tests/idp/idp.mjs genkey RSA bench > "$dir/key.json" 2>/dev/null
  echo "{\"keys\":[$(cat "$dir/key.json")]}" > "$dir/keys.json"
  echo '{"bench":{"claims":{"preferred_username":"bench","realm_access":{"roles":["viewer"]}}}}' > "$dir/users.json"
  IDP_AT_TTL=3600 IDP_PORT=$port IDP_KEYS="$dir/keys.json" IDP_USERS="$dir/users.json" \
    node tests/idp/idp.mjs >/dev/null 2>&1 &
  IDP_PID=$!
  PIDS+=($IDP_PID)
  wait_port "$port"
}

# Stops the IdP (SIGSTOP) once its token is minted and gatehouse holds its keys
# (after a warm-up request): unpinned, node takes up to ~7% of a CPU at
# moments (measured with `perf sched`, 127 ms of CPU 0 in 3 s), on whichever
# server is being measured. resume_all continues it before the cleanup kills.
pause_idp() { kill -STOP "$IDP_PID"; }
resume_all() { for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null || true; done; }

# Keeps this VM's CPUs out of halt while it runs (AWAKE=1, the default for
# the fast-path scripts): a PM QoS request of zero latency on
# /dev/cpu_dma_latency, as tuned's latency-performance profile makes, so an
# idle CPU polls instead of halting. Halted, a vCPU of this Firecracker guest
# waits up to milliseconds for the host to run it again (its haltpoll
# governor has guest_halt_poll_ns = 0: it never polls), and those wake-ups
# are most of every server's p99 here. The request lasts as long as the file
# stays open: the helper is in PIDS, so the cleanups end it, and it also ends
# itself within a second of the script's death (a kill -9 runs no cleanup).
# Sets AWAKE_STATE.
hold_awake() {
  AWAKE_STATE="off (AWAKE=0)"
  [ "${AWAKE:-1}" = 1 ] || return 0
  if [ ! -w /dev/cpu_dma_latency ]; then AWAKE_STATE="off (/dev/cpu_dma_latency not writable)"; return 0; fi
  python3 -c 'import os, signal, struct, sys, time
parent = os.getppid()
f = open("/dev/cpu_dma_latency", "wb", buffering=0); f.write(struct.pack("i", 0))
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); print("held", flush=True)
while os.getppid() == parent: time.sleep(1)' > "$W/awake" &
  PIDS+=($!)
  for _ in $(seq 1 50); do grep -q held "$W/awake" 2>/dev/null && break; sleep 0.1; done
  if grep -q held "$W/awake"; then AWAKE_STATE="on (cpu_dma_latency 0)"; else AWAKE_STATE="off (request failed)"; fi
}

# An access token from the IdP on PORT (client credentials, client "bench").
idp_token() {
  curl -s -d grant_type=client_credentials -d client_id=bench -d client_secret=secret -d scope=api \
    "http://127.0.0.1:$1/token" | python3 -c 'import sys,json; print(json.load(sys.stdin)["access_token"])'
}

# How much time CPU $1 loses to stalls while nothing of ours runs on it: a loop
# reads the clock for $2 seconds and sums the gaps of 50 us or more (the
# hypervisor or another task took the CPU). Prints "percent-lost longest-ms count".
stalls() {
  taskset -c "$1" python3 - "$2" <<'PY'
import sys, time
secs = float(sys.argv[1]); now = time.perf_counter_ns
end = now() + int(secs * 1e9); prev = now(); lost = longest = n = 0
while True:
    t = now(); gap = t - prev; prev = t
    if gap >= 50_000:
        lost += gap; n += 1; longest = max(longest, gap)
    if t > end:
        break
print(f"{100 * lost / (secs * 1e9):.1f} {longest / 1e6:.1f} {n}")
PY
}

# stalls on CPUs 0 and 1 at once for $1 seconds (files in $W); sets ST0_PCT,
# ST0_MAX, ST0_N and ST1_PCT, ST1_MAX, ST1_N.
stalls_both() {
  stalls 0 "$1" > "$W/stalls0" & stalls 1 "$1" > "$W/stalls1"; wait $!
  read -r ST0_PCT ST0_MAX ST0_N < "$W/stalls0"; read -r ST1_PCT ST1_MAX ST1_N < "$W/stalls1"
}

# The fast-path benchmarks' setup (bench-fast.sh, bench-tail.sh), from the
# repository's root: in a fresh directory W, the test IdP, gatehouse ($GH, or a
# release build) trusting it and nginx `return 204`, both servers on CPU 0;
# all stopped and W removed on exit. Sets W, PIDS, GH, P_GH, P_204 and
# IDP_TOKEN (an access token from the IdP).
fast_setup() {
  local nginx p_idp
  nginx=$(command -v nginx || echo /usr/sbin/nginx)
  if [ -z "${GH:-}" ]; then cargo build --release -q; GH="$(pwd)/target/release/gatehouse"; fi
  [ -f tests/idp/node_modules/oidc-provider/package.json ] || npm ci --prefix tests/idp --no-audit --no-fund --loglevel=error
  W=$(mktemp -d); PIDS=()
  trap fast_cleanup EXIT
  p_idp=$(port); P_GH=$(port); P_204=$(port)
  start_idp "$W" "$p_idp"
  IDP_TOKEN=$(idp_token "$p_idp")
  base_config "$W/gatehouse.toml" "127.0.0.1:$P_GH" "[[issuers]]
issuer = \"http://127.0.0.1:$p_idp\"
allow_insecure_http = true
audiences = [\"gatehouse\"]"
  GATEHOUSE_LOG=warn taskset -c 0 "$GH" serve --config "$W/gatehouse.toml" 2>"$W/gatehouse.log" &
  PIDS+=($!)
  wait_port "$P_GH"
  local user_line=""; [ "$(id -u)" = 0 ] && user_line="user root;"
  mkdir -p "$W/tmp"
  cat > "$W/nginx.conf" <<NGINX
$user_line
worker_processes 1; worker_cpu_affinity 01; pid $W/nginx.pid; error_log $W/nginx-error.log warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $W/tmp/body; proxy_temp_path $W/tmp/proxy;
  fastcgi_temp_path $W/tmp/fcgi; uwsgi_temp_path $W/tmp/uwsgi; scgi_temp_path $W/tmp/scgi;
  server { listen 127.0.0.1:$P_204; location / { return 204; } } }
NGINX
  taskset -c 0 "$nginx" -p "$W" -c "$W/nginx.conf"
  wait_port "$P_204"
}
fast_cleanup() {
  resume_all
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$W/nginx.pid" ] && kill "$(cat "$W/nginx.pid")" 2>/dev/null || true
  sleep 0.2; rm -rf "$W"
}
