#!/usr/bin/env bash
# Starts the devices examples/control.toml switches, on loopback, for trying
# power control without hardware:
#   - a Redfish BMC: sushy-tools' `sushy-emulator --fake` (PyPI) on
#     127.0.0.1:8000, HTTP Basic user `admin`, password `demo-bmc-password`
#     (its fake machine changes power state 1-11 s after a request, like a BMC).
# Installs sushy-tools if missing. Stops everything on Ctrl-C.
# Usage: scripts/emulators.sh [port]
set -euo pipefail
PORT=${1:-8000}
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
if ! command -v sushy-emulator >/dev/null 2>&1; then
  echo "== pip install sushy-tools"
  python3 -m pip install -q --disable-pip-version-check sushy-tools
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
  hash -r
fi
W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$W"' EXIT
python3 - "$W/htpasswd" <<'PY'
import bcrypt, sys
with open(sys.argv[1], "w") as f:
    f.write("admin:" + bcrypt.hashpw(b"demo-bmc-password", bcrypt.gensalt()).decode() + "\n")
PY
cat > "$W/emulator.conf" <<CONF
SUSHY_EMULATOR_AUTH_FILE = "$W/htpasswd"
SUSHY_EMULATOR_STATE_DIR = "$W/state"
CONF
echo "== Redfish BMC emulator on http://127.0.0.1:$PORT (admin / demo-bmc-password)"
sushy-emulator --fake -i 127.0.0.1 -p "$PORT" --config "$W/emulator.conf" &
wait
