#!/usr/bin/env bash
# Starts the devices examples/control.toml switches, on loopback, for trying
# power control without hardware:
#   - a Redfish BMC: sushy-tools' `sushy-emulator --fake` (PyPI) on
#     127.0.0.1:8000, HTTP Basic user `admin`, password `demo-bmc-password`
#     (its fake machine changes power state 1-11 s after a request, like a BMC);
#   - a NanoKVM: tests/nanokvm/sim.py (the firmware's routes and dialect) on
#     127.0.0.1:8001, user `admin`, password `demo-kvm-password`.
# Installs sushy-tools and nanokvm (for the simulator's flask and cryptography)
# if missing. Stops everything on Ctrl-C.
# Usage: scripts/emulators.sh [port]
set -euo pipefail
PORT=${1:-8000}
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
if ! command -v sushy-emulator >/dev/null 2>&1 || ! python3 -c "import nanokvm" 2>/dev/null; then
  echo "== pip install sushy-tools nanokvm"
  python3 -m pip install -q --disable-pip-version-check sushy-tools nanokvm
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
echo "== NanoKVM simulator on http://127.0.0.1:$((PORT + 1)) (admin / demo-kvm-password)"
python3 "$(dirname "$0")/../tests/nanokvm/sim.py" "$((PORT + 1))" admin demo-kvm-password &
wait
