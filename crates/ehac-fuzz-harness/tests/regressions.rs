//! Replays every input kept under `fuzz/regressions/<target>/` (the seeds, and each crash
//! `deploy/local/fuzz.sh` ever found) through the check its fuzz target runs, on stable.

use std::path::Path;

use ehac_fuzz_harness::{seeds::seeds, TARGETS};

#[test]
fn every_kept_input_passes_its_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions");
    for (target, check) in TARGETS {
        let dir = root.join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no inputs kept for {target}: run ehac-fuzz-seeds");
        for path in files {
            eprintln!("{target}: {}", path.display());
            check(&std::fs::read(&path).unwrap());
        }
    }
}

#[test]
fn the_seeds_reach_past_the_first_check() {
    // A seed that the decoder refuses at once would not seed anything: each must get through.
    for form in seeds("form") {
        assert!(ehac_gateway::input::parse_declaration(&form).is_ok());
    }
    for (target, codec_ok) in [
        ("avro_raw", (|b: &[u8]| ehac_codec::RAW.decode(b).is_ok()) as fn(&[u8]) -> bool),
        ("avro_enriched", |b| ehac_codec::ENRICHED.decode(b).is_ok()),
        ("avro_rejection", |b| ehac_codec::REJECTION.decode(b).is_ok()),
        ("spool_frame", |b| ehac_spool::decode_frame(b).is_ok()),
    ] {
        let seeds = seeds(target);
        assert!(!seeds.is_empty(), "{target}");
        assert!(seeds.iter().all(|s| codec_ok(s)), "{target}");
    }
}
