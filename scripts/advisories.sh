#!/usr/bin/env bash
# Known vulnerabilities in the dependency tree: `cargo deny check advisories`
# and `cargo audit`, both against the RustSec advisory database, which they
# fetch from GitHub. Run where github.com is reachable (this project's CI
# machines cannot reach it; .ci/run runs the licence, ban and source checks).
# Installs cargo-deny and cargo-audit when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! git ls-remote https://github.com/rustsec/advisory-db HEAD >/dev/null 2>&1; then
  echo "advisories.sh: github.com (the RustSec advisory database) is not reachable from here" >&2
  exit 2
fi
command -v cargo-deny >/dev/null || cargo install cargo-deny --version 0.20.2 --locked
command -v cargo-audit >/dev/null || cargo install cargo-audit --version 0.22.2 --locked
cargo deny check advisories
cargo audit --deny warnings
