//! A stand-in population registry for demos and tests; see `ehac_registry::simulator`.
fn main() -> anyhow::Result<()> {
    ehac_registry::simulator::main()
}
