#!/usr/bin/env bash
# Every test: installs what is missing (ClickHouse, tansu, chdb), then runs the workspace's unit
# and integration tests. Integration tests start their own broker and ClickHouse on free ports.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/local/install.sh
cargo test --workspace --locked
