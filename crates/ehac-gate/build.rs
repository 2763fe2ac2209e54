// The gate app is embedded with include_dir!, which cargo does not know to watch: rebuild the
// binary whenever the built app changes.
fn main() {
    println!("cargo:rerun-if-changed=../../web/gate/dist");
}
