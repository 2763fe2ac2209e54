#!/usr/bin/env bash
# The holiday-peak surge benchmark (BENCHMARKS.md): installs what is missing, builds the services
# in release mode, and runs `ehac bench surge`, which starts its own broker and ClickHouse, measures
# the machine's ceilings and the Python peer, plays the surge, and writes target/bench/surge.json
# and target/bench/surge.md. Extra arguments go to `ehac bench surge` (see its --help).
set -euo pipefail
cd "$(dirname "$0")/../.."
EHAC_INSTALL_OHA=1 bash deploy/local/install.sh
cargo build --release --bins --quiet
target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p target/bench
exec "$target_dir/release/ehac" bench surge --out target/bench/surge.json --markdown target/bench/surge.md "$@"
