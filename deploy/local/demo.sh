#!/usr/bin/env bash
# The main job: installs what is missing, builds the services, starts a fresh broker and
# ClickHouse, plays a 50,000-declaration holiday surge through the gateway, prints analyst
# queries and a SUMMARY counted in ClickHouse, and stops everything. Extra arguments go to
# `ehac demo` (see `ehac demo --help`).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/local/install.sh
cargo build --release --bins --quiet
target_dir="${CARGO_TARGET_DIR:-target}"
exec "$target_dir/release/ehac" demo "$@"
