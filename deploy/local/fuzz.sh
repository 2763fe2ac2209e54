#!/usr/bin/env bash
# Fuzzes each target in fuzz/ for N seconds and reports, one line per target:
#
#   FUZZ target=<t> seconds=<N> executions=<n> crashes=<c>
#
# Exits non-zero if any target crashed. A crash input is copied to fuzz/regressions/<t>/, where
# the stable test (crates/ehac-fuzz-harness/tests/regressions.rs) replays it: commit it with
# the fix. Installs cargo-fuzz and nightly if missing; nightly is used for nothing else.
#
#   bash deploy/local/fuzz.sh [--seconds N] [--targets form,avro_raw,...]
#
# Kept outside the clone, so that CI reuses them: the nightly build under
# ${CARGO_TARGET_DIR:-~/.cache/ehac/target}/fuzz (EHAC_FUZZ_TARGET_DIR), and the corpora
# libFuzzer grows under ~/.cache/ehac/fuzz-corpus/<t> (EHAC_FUZZ_CORPUS_DIR).
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=60
targets="form,avro_raw,avro_enriched,avro_rejection,spool_frame,spool_dir"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --targets) targets="$2"; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "fuzz.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] || { echo "fuzz.sh: --seconds wants a positive whole number" >&2; exit 2; }

target_dir="${EHAC_FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/ehac/target}/fuzz}"
corpus_root="${EHAC_FUZZ_CORPUS_DIR:-$HOME/.cache/ehac/fuzz-corpus}"

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "== installing the nightly toolchain (for fuzzing only)"
    rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

echo "== building the fuzz targets (nightly, ASan, debug assertions) into $target_dir"
build_start=$SECONDS
# -a: debug assertions and overflow checks on, so an arithmetic overflow is a crash too.
cargo +nightly fuzz build -a --fuzz-dir fuzz --target-dir "$target_dir"
echo "== built in $((SECONDS - build_start)) s"
host=$(rustc +nightly -vV | sed -n 's/^host: //p')
bin_dir="$target_dir/$host/release"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
IFS=',' read -r -a chosen <<<"$targets"
for target in "${chosen[@]}"; do
    [[ -x "$bin_dir/$target" ]] || { echo "fuzz.sh: no fuzz target $target" >&2; exit 2; }
    corpus="$corpus_root/$target"
    artifacts="$work/artifacts/$target"
    mkdir -p "$corpus" "$artifacts" "fuzz/regressions/$target"
    log="$work/$target.log"
    # The first directory is the corpus libFuzzer adds to; the kept inputs seed it, read only.
    # No single allocation may pass 512 MB: a declaration is at most 64 KiB, so a decoder that
    # asks for more took a length prefix at its word (libFuzzer reports it as a crash).
    set +e
    "$bin_dir/$target" "$corpus" "fuzz/regressions/$target" \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=512 -artifact_prefix="$artifacts/" >"$log" 2>&1
    status=$?
    set -e
    executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    crashes=$(find "$artifacts" -type f | wc -l)
    if [[ $status -ne 0 && $crashes -eq 0 ]]; then
        # Stopped by something other than a finding it saved: show why and count it as failed.
        tail -n 30 "$log" >&2
        crashes=1
    fi
    for artifact in "$artifacts"/*; do
        [[ -f "$artifact" ]] || continue
        cp "$artifact" "fuzz/regressions/$target/"
        echo "fuzz.sh: $target: kept fuzz/regressions/$target/$(basename "$artifact"); reproduce with $bin_dir/$target $artifact" >&2
        grep -m1 -A12 -E '^(==[0-9]+==ERROR|thread .* panicked)' "$log" >&2 || tail -n 20 "$log" >&2
    done
    echo "FUZZ target=$target seconds=$seconds executions=${executions:-0} crashes=$crashes"
    [[ $crashes -eq 0 ]] || failed=1
done
exit "$failed"
