#!/usr/bin/env bash
# Every test: installs what is missing (ClickHouse, Apache Kafka, chdb, Chromium), then runs the
# workspace's unit and integration tests and the gate app's (web/gate) Node and Chromium tests.
# Integration tests start their own broker and ClickHouse on free ports.
set -euo pipefail
cd "$(dirname "$0")/../.."
EHAC_INSTALL_TESTS=1 bash deploy/local/install.sh
# The chaos matrix test runs the services as processes: build their binaries first.
cargo build --workspace --bins --locked
bash deploy/validate.sh  # the Helm chart, k8s, hosts and Prometheus files, offline (seconds once its tools are cached)
# The analysts' Chromium test (tests/tests/personal_data.rs runs web/analysts under Node):
# playwright-core from its lockfile, cached outside the clone.
(cd web/analysts && npm ci --cache "$HOME/.cache/ehac/npm" --no-audit --no-fund --loglevel=error)
# CI keeps only the last lines of its output: when a test fails, its panic and the fault lines are
# printed again at the end, without the services' JSON logs.
test_log=$(mktemp)
set +e
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$test_log"
test_status=${PIPESTATUS[0]}
set -e
if [ "$test_status" -ne 0 ]; then
  echo "== cargo test failed (exit $test_status); the failures again:"
  grep -v '^{"timestamp"' "$test_log" | grep -E -A15 '^---- .* stdout ----|panicked at' | cut -c1-600 | tail -200
  echo "== fault and summary lines:"
  grep -E '^(CHAOS|FAULT|SUMMARY|STALL) ' "$test_log" | cut -c1-600 | tail -60 || true
  rm -f "$test_log"
  exit "$test_status"
fi
rm -f "$test_log"
# The gate app (web/gate): npm packages from the lockfile, cached outside the clone; the committed
# bundle (embedded by ehac-gate serve) must be the build of the sources; the shared pass vectors
# under Node; the app as an officer uses it in Debian's Chromium, served by the ehac-gate built above.
(
  cd web/gate
  node -e 'if (+process.versions.node.split(".")[0] < 20) { console.error(`web/gate needs Node 20 or later (playwright-core), found ${process.version}`); process.exit(1) }'
  npm ci --cache "$HOME/.cache/ehac/npm" --no-audit --no-fund --loglevel=error
  npx tsc --noEmit
  node build.mjs --check
  node --test test/vectors.test.mjs test/browser.test.mjs
)
# A short fuzz run of every target (nightly, cargo-fuzz; its build is cached under ~/.cache/ehac).
bash deploy/local/fuzz.sh --seconds "${EHAC_TEST_FUZZ_SECONDS:-10}"
