//! A gateway whose log cannot be written (stdout and stderr on /dev/full, which answers every
//! write with ENOSPC, as a full log disk does) still accepts declarations. Found in the chaos
//! matrix when the machine's disk filled: tracing-subscriber reported the failed write with
//! eprintln!, which panicked in the spool's writer thread, and the gateway answered 503 from
//! then on. The broker address is one nothing listens on, so every declaration takes the
//! logged spool path.

use std::process::{Command, Stdio};
use std::time::Duration;

use ehac_domain::sample::{Flaw, SampleGenerator};

#[tokio::test]
async fn a_gateway_that_cannot_write_its_log_keeps_accepting_declarations() {
    let full = || std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full exists on Linux");
    let dir = tempfile::tempdir().unwrap();
    let mut gateway = Command::new(env!("CARGO_BIN_EXE_ehac-gateway"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--allow-anonymous", "--peer-rate-per-second", "0", "--kafka-brokers", "127.0.0.1:1", "--produce-timeout-ms", "50"])
        // Its broker never comes: try the spool on exit only briefly.
        .args(["--spool-drain-on-exit-secs", "1"])
        .arg("--spool-dir")
        .arg(dir.path().join("spool"))
        .env("RUST_LOG", "debug")
        .stdout(Stdio::from(full()))
        .stderr(Stdio::from(full()))
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    // Its log is lost: the ports it bound are read back from /proc.
    let (port, _admin) = ehac_devstack::api_and_admin_ports(&mut gateway, Duration::from_secs(30)).await.expect("the gateway came up");
    let mut generator = SampleGenerator::new(99);
    for i in 0..50 {
        let form = generator.declaration(chrono::Utc::now(), "kiosk-full-disk", Flaw::None);
        let answer = http.post(format!("http://127.0.0.1:{port}/v1/declarations")).json(&form).send().await;
        let status = answer.map(|a| a.status().as_u16()).map_err(|e| e.to_string());
        assert_eq!(status, Ok(202), "declaration {i}");
    }
    assert!(gateway.try_wait().unwrap().is_none(), "the gateway is still running");
    // SAFETY: kill(2) on the child we spawned.
    unsafe { libc::kill(gateway.id() as i32, libc::SIGTERM) };
    let status = gateway.wait().unwrap();
    assert!(status.success(), "and drains on SIGTERM: {status}");
}
