#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets/) for a bounded time each,
# starting from the committed seeds (fuzz/seeds/<target>/, taken from the unit
# tests' corpora and the shipped examples) plus what earlier runs found
# (fuzz/corpus/, not committed). Prints executions, coverage and corpus size
# per target and writes them to the marked section of docs/security.md.
# A crash stops the run with the reproducer in fuzz/artifacts/<target>/: turn
# it into a regression test, then fix.
#
# Needs the nightly toolchain (rustup toolchain install nightly); installs
# cargo-fuzz when missing. Not part of CI's test command.
# Usage: scripts/fuzz.sh [seconds-per-target]   (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. scripts/bench-lib.sh
SECS=${1:-60}
TARGETS=(fast_path forwarded rd jwt config allowlist)

rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked

cd fuzz
cargo +nightly fuzz build -O
ROWS=""
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t"
  cp -n "seeds/$t/"* "corpus/$t/" 2>/dev/null || true
  echo "== $t (${SECS}s)"
  LOG=$(mktemp)
  if ! cargo +nightly fuzz run -O "$t" "corpus/$t" -- -max_total_time="$SECS" -print_final_stats=1 >"$LOG" 2>&1; then
    tail -40 "$LOG"
    echo "FUZZ FAILURE in $t: see fuzz/artifacts/$t/" >&2
    exit 1
  fi
  EXECS=$(awk '/stat::number_of_executed_units/ {print $NF}' "$LOG")
  DONE=$(grep -E "^#[0-9]+[[:space:]]+DONE" "$LOG" | tail -1)
  COV=$(echo "$DONE" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
  FT=$(echo "$DONE" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
  CORP=$(ls "corpus/$t" | wc -l)
  echo "   $EXECS executions, coverage $COV edges ($FT features), corpus $CORP"
  ROWS+="| \`$t\` | $EXECS | $COV | $FT | $CORP |"$'\n'
  rm -f "$LOG"
done
cd "$ROOT"
COMMIT=$(git rev-parse --short HEAD)$(git diff --quiet || echo "+changes")
SECTION=$(cat <<EOF2
<!-- fuzz:start -->
Last run $(date -u +%Y-%m-%d) at \`$COMMIT\`, ${SECS} s per target on one core of this
machine (\`scripts/fuzz.sh $SECS\`), no crash:

| target | executions | coverage (edges) | features | corpus |
|---|---|---|---|---|
${ROWS%$'\n'}
<!-- fuzz:end -->
EOF2
)
replace_section "$ROOT/docs/security.md" fuzz "Fuzzing" "$SECTION"
echo "$SECTION"
