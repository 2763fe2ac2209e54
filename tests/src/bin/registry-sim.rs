//! The registry simulator as a binary of this package, so tests can start and kill it as a real
//! process (`CARGO_BIN_EXE_registry-sim`). Same program as `ehac-registry-sim`.
fn main() -> anyhow::Result<()> {
    ehac_registry::simulator::main()
}
