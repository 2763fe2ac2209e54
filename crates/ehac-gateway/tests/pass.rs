//! The signed pass in the 202: issued with the broker away (the declaration goes to the spool),
//! verified offline by the gate's own library with a root-signed trust list, and carrying the
//! triage the enricher computes for the same declaration.

use chrono::{Duration, Utc};
use ehac_domain::sample::{Flaw, SampleGenerator};
use ehac_domain::{Policy, RawDeclaration, ReferenceData};
use ehac_gateway::{AccessArgs, Config};
use ehac_pass::{IssuingKey, RootKey, TrustList, TrustedKey, Verdict, VerifiedTrustList};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn every_202_carries_a_pass_the_gate_accepts_offline_even_with_the_broker_away() {
    let dir = tempfile::tempdir().unwrap();
    let issuing = IssuingKey::generate("ID-BT").unwrap();
    let key_file = dir.path().join("issuing.jwk");
    std::fs::write(&key_file, issuing.to_jwk()).unwrap();
    let root = RootKey::generate().unwrap();
    let mut list = TrustList::new(Duration::hours(24));
    let now = Utc::now();
    list.add_key(TrustedKey::new(&issuing.public_key(), "ID-BT", now - Duration::days(1), now + Duration::days(30)).unwrap()).unwrap();
    let trust = VerifiedTrustList::load(&list.sign(&root, now), &[root.public()]).unwrap();

    let shutdown = CancellationToken::new();
    let config = Config {
        accept_after: ehac_gateway::AcceptAfter::BrokerAck,
        produce_timeout_ms: 50,
        // Its broker never comes: no drain of the spool on exit.
        spool_drain_on_exit_secs: 0,
        pass_key: Some(key_file),
        ..Config::on_loopback(
            "127.0.0.1:1",
            dir.path().join("spool"),
            AccessArgs { allow_anonymous: true, peer_rate_per_second: 0, ..AccessArgs::default() },
        )
    };
    let running = ehac_gateway::start(config, shutdown.clone()).await.unwrap();
    let http = reqwest::Client::new();
    let mut generator = SampleGenerator::new(15);
    let mut triages = std::collections::BTreeMap::new();
    for _ in 0..40 {
        let form = generator.declaration(Utc::now(), "kiosk-dps-01", Flaw::None);
        let response = http
            .post(format!("http://{}/v1/declarations", running.addr))
            .header("content-type", "application/json")
            .json(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let body: serde_json::Value = response.json().await.unwrap();
        let pass = body["pass"].as_str().unwrap_or_else(|| panic!("a pass in {body}"));
        assert!(pass.starts_with("EH1:"), "{pass}");

        // What the enricher will compute for this declaration.
        let raw = RawDeclaration {
            declaration_id: body["declaration_id"].as_str().unwrap().to_owned(),
            received_at_ms: Utc::now().timestamp_millis(),
            gateway_version: "test".into(),
            form: form.clone(),
        };
        let enriched = ehac_domain::accept(raw, ReferenceData::embedded(), &Policy::default(), "test").unwrap();

        match ehac_pass::verify(pass, &trust, &form.trip.arrival_port, Utc::now()) {
            Verdict::Accept(view) => {
                assert_eq!(view.traveller_name, form.traveller.full_name);
                assert_eq!(view.flight, form.trip.flight_number);
                assert_eq!(view.triage.as_str(), enriched.enrichment.triage, "pass and warehouse agree on triage");
                *triages.entry(enriched.enrichment.triage.clone()).or_insert(0) += 1;
            }
            other => panic!("the gate must accept a fresh pass: {other:?}"),
        }
        // Another airport's gate refuses it.
        let elsewhere = if form.trip.arrival_port == "CGK" { "DPS" } else { "CGK" };
        assert!(matches!(ehac_pass::verify(pass, &trust, elsewhere, Utc::now()), Verdict::Reject { .. }));
    }
    assert!(triages.len() > 1, "the sample covers more than one triage level: {triages:?}");
    let metrics = http.get(format!("http://{}/metrics", running.admin_addr)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("ehac_gateway_spooled_total{service=\"gateway\"} 40"), "all 40 were accepted into the spool:\n{metrics}");
    assert!(metrics.contains("ehac_gateway_pass_sign_seconds_count{service=\"gateway\"} 40"), "{metrics}");
    shutdown.cancel();
}
