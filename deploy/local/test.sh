#!/usr/bin/env bash
# Every test: installs what is missing (ClickHouse, Apache Kafka, chdb), then runs the workspace's unit
# and integration tests. Integration tests start their own broker and ClickHouse on free ports.
set -euo pipefail
cd "$(dirname "$0")/../.."
EHAC_INSTALL_OHA=0 bash deploy/local/install.sh
# The chaos matrix test runs the services as processes: build their binaries first.
cargo build --workspace --bins --locked
bash deploy/validate.sh  # the Helm chart, k8s, hosts and Prometheus files, offline (seconds once its tools are cached)
cargo test --workspace --locked --no-fail-fast
# A short fuzz run of every target (nightly, cargo-fuzz; its build is cached under ~/.cache/ehac).
bash deploy/local/fuzz.sh --seconds "${EHAC_TEST_FUZZ_SECONDS:-10}"
