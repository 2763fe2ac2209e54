//! `ehac-gate trust-list install` as a gate runs it: a newer list replaces the installed one,
//! an older or the same one is refused and the installed file is left as it was.

use std::path::Path;
use std::process::{Command, Output};

fn gate(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ehac-gate")).args(args).current_dir(dir).output().expect("ehac-gate runs")
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_gate_installs_only_newer_trust_lists() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(gate(&["keys", "root", "--out", "."], d));
    ok(gate(&["keys", "issuing", "--region", "ID-JK", "--out", "."], d));
    let files = ["--trust-list", "published.cose", "--root-key", "root.key.pem"];
    ok(gate(&[&["trust-list", "build"][..], &files].concat(), d));
    std::fs::copy(d.join("published.cose"), d.join("v1.cose")).unwrap();
    let key = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.starts_with("issuing-") && n.ends_with(".pub.json"))
        .unwrap();
    ok(gate(&[&["trust-list", "add-key"][..], &files, &["--key", &key]].concat(), d));

    let install = |offered: &str| {
        gate(&["trust-list", "install", "--trust-list", "gate.cose", "--offered", offered, "--root-key", "root.pub.pem"], d)
    };
    assert!(ok(install("v1.cose")).contains("installed trust list version 1 (was none)"));
    assert!(ok(install("published.cose")).contains("installed trust list version 2 (was 1)"));
    let installed = std::fs::read(d.join("gate.cose")).unwrap();

    let rollback = install("v1.cose");
    assert_eq!(rollback.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&rollback.stdout).contains("kept trust list version 2: offered trust list version 1 is older"));
    let same = install("published.cose");
    assert_eq!(same.status.code(), Some(1));
    assert_eq!(std::fs::read(d.join("gate.cose")).unwrap(), installed, "a refused list must not touch the installed file");

    // A list signed by a root the gate does not pin is an error, not a quiet keep.
    ok(gate(&["keys", "root", "--out", "other"], &{
        std::fs::create_dir(d.join("other")).unwrap();
        d.to_path_buf()
    }));
    let forged = ["--trust-list", "forged.cose", "--root-key", "other/root.key.pem"];
    ok(gate(&[&["trust-list", "build"][..], &forged].concat(), d));
    let refused = install("forged.cose");
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("not pinned"));
}
