//! The OpenAPI contract: the committed `schemas/openapi.json` is what the code derives, the
//! public listener serves it, and schemathesis (PyPI), driven by it against a live gateway with
//! a valid key, finds no 5xx and no answer outside the contract. As in access.rs, the broker
//! address is one nothing listens on, so accepted declarations go to the spool (the 202 is the
//! same either way) and every 202 carries a signed pass.

use std::path::{Path, PathBuf};

use ehac_gateway::{AccessArgs, Config};
use tokio_util::sync::CancellationToken;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_committed_contract_is_the_one_the_code_derives() {
    let committed = std::fs::read_to_string(repo_root().join("schemas/openapi.json")).unwrap();
    assert!(
        committed == ehac_gateway::openapi::json(),
        "schemas/openapi.json is stale: cargo run -p ehac-gateway -- --print-openapi > schemas/openapi.json"
    );
    let contract: serde_json::Value = serde_json::from_str(&committed).unwrap();
    assert_eq!(contract["openapi"], "3.1.0");
    let answers = contract["paths"]["/v1/declarations"]["post"]["responses"].as_object().unwrap();
    for status in ["202", "400", "401", "403", "408", "413", "415", "422", "429", "503"] {
        let content = &answers[status]["content"]["application/json"]["schema"]["$ref"];
        assert!(content.is_string(), "answer {status} is described with its body: {:#}", answers[status]);
    }
    assert!(answers["429"]["headers"]["Retry-After"].is_object() && answers["401"]["headers"]["WWW-Authenticate"].is_object());
    assert!(answers["408"]["headers"]["Connection"].is_object() && answers["503"]["headers"]["Retry-After"].is_object());
    let batch = &contract["paths"]["/v1/declarations/batch"]["post"];
    for status in ["200", "207", "400", "401", "408", "413", "415", "429", "503"] {
        assert!(
            batch["responses"][status]["content"]["application/json"]["schema"]["$ref"].is_string(),
            "batch answer {status}: {batch:#}"
        );
    }
    let items = &batch["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!((&items["type"], &items["minItems"], &items["maxItems"]), (&"array".into(), &1.into(), &500.into()), "{items:#}");
}

/// schemathesis from `EHAC_SCHEMATHESIS`, or the virtualenv deploy/local/install.sh makes.
fn schemathesis() -> PathBuf {
    let path = std::env::var_os("EHAC_SCHEMATHESIS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/ehac/schemathesis-venv/bin/schemathesis")
    });
    assert!(path.is_file(), "schemathesis not found at {}: run deploy/local/install.sh (or set EHAC_SCHEMATHESIS)", path.display());
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_contract() {
    let schemathesis = schemathesis();
    let dir = tempfile::tempdir().unwrap();
    let clients_file = dir.path().join("clients.json");
    let token = ehac_clients::provision_for_tests(&clients_file, &["contract-client"]).unwrap().remove(0);
    // No rate limit for this client: schemathesis sends as fast as it can.
    let mut registry = ehac_clients::file::load(&clients_file).unwrap();
    registry.clients.get_mut("contract-client").unwrap().rate_per_second = 0;
    ehac_clients::file::save(&clients_file, &registry).unwrap();
    let key_file = dir.path().join("issuing.jwk");
    std::fs::write(&key_file, ehac_pass::IssuingKey::generate("ID-JK").unwrap().to_jwk()).unwrap();
    let shutdown = CancellationToken::new();
    let config = Config {
        accept_after: ehac_gateway::AcceptAfter::BrokerAck,
        produce_timeout_ms: 50,
        // Its broker never comes: no drain of the spool on exit.
        spool_drain_on_exit_secs: 0,
        spool_max_bytes: 256 << 20,
        pass_key: Some(key_file),
        ..Config::on_loopback(
            "127.0.0.1:1",
            dir.path().join("spool"),
            AccessArgs { clients_file: Some(clients_file), peer_rate_per_second: 0, ..AccessArgs::default() },
        )
    };
    let running = ehac_gateway::start(config, shutdown.clone()).await.unwrap();
    let url = format!("http://{}/openapi.json", running.addr);
    let served = reqwest::get(&url).await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.text().await.unwrap(), ehac_gateway::openapi::json(), "the public listener serves the contract");
    let admin = reqwest::get(format!("http://{}/openapi.json", running.admin_addr)).await.unwrap();
    assert_ne!(admin.status(), 200, "the admin listener serves admin routes only");

    let seed = std::env::var("EHAC_SCHEMATHESIS_SEED").unwrap_or_else(|_| "20201219".into());
    let examples = std::env::var("EHAC_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "150".into());
    let output = tokio::process::Command::new(&schemathesis)
        .args(["--config-file", &repo_root().join("tests/contract/schemathesis.toml").display().to_string()])
        .args(["run", &url, "--checks", "all", "--max-examples", &examples, "--seed", &seed, "--workers", "2"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .env("NO_COLOR", "1")
        // Its example database goes to the working directory: keep it out of the clone.
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    shutdown.cancel();
    let report = String::from_utf8_lossy(&output.stdout);
    let summary: Vec<&str> = report.lines().filter(|l| l.contains("generated") || l.contains("passed") || l.contains("failed")).collect();
    println!("schemathesis (seed {seed}, {examples} examples): {}", summary.join(" | "));
    assert!(
        output.status.success(),
        "schemathesis found failures (replay with EHAC_SCHEMATHESIS_SEED={seed}):\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains(" passed"), "schemathesis ran no test case:\n{report}");
}
