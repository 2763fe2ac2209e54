//! `ehac-fuzz-seeds DIR`: writes every fuzz target's seeds as `DIR/<target>/seed-<n>`.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/regressions".into()));
    for (target, _) in ehac_fuzz_harness::TARGETS {
        let target_dir = dir.join(target);
        std::fs::create_dir_all(&target_dir)?;
        for (n, seed) in ehac_fuzz_harness::seeds::seeds(target).iter().enumerate() {
            std::fs::write(target_dir.join(format!("seed-{n}")), seed)?;
        }
    }
    Ok(())
}
