//! `POST /v1/declarations/batch` at the front door: what is refused whole, what is refused per
//! item, the rate quota charged per item, and one fsync for a spooled batch. As in access.rs
//! the broker address is one nothing listens on, so accepted declarations go to the spool;
//! tests/tests/batch.rs has the batch through a real broker into ClickHouse.

use ehac_clients::ClientRegistry;
use ehac_domain::sample::{Flaw, SampleGenerator};
use ehac_gateway::{AccessArgs, Config};
use tokio_util::sync::CancellationToken;

struct Gateway {
    url: String,
    admin: String,
    tokens: Vec<String>,
    http: reqwest::Client,
    spool_dir: std::path::PathBuf,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn gateway_with(clients: &[&str], edit: impl FnOnce(&mut ClientRegistry), config: impl FnOnce(&mut Config)) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let clients_file = dir.path().join("clients.json");
    let tokens = ehac_clients::provision_for_tests(&clients_file, clients).unwrap();
    let mut registry = ehac_clients::file::load(&clients_file).unwrap();
    edit(&mut registry);
    ehac_clients::file::save(&clients_file, &registry).unwrap();
    let spool_dir = dir.path().join("spool");
    let mut c = Config {
        // Nothing listens on port 1: every declaration goes to the spool, quickly.
        accept_after: ehac_gateway::AcceptAfter::BrokerAck,
        produce_timeout_ms: 50,
        ..Config::on_loopback(
            "127.0.0.1:1",
            spool_dir.clone(),
            AccessArgs { clients_file: Some(clients_file), peer_rate_per_second: 0, ..AccessArgs::default() },
        )
    };
    config(&mut c);
    let shutdown = CancellationToken::new();
    let running = ehac_gateway::start(c, shutdown.clone()).await.unwrap();
    Gateway {
        url: format!("http://{}", running.addr),
        admin: format!("http://{}", running.admin_addr),
        tokens,
        http: reqwest::Client::new(),
        spool_dir,
        shutdown,
        _dir: dir,
    }
}

/// `n` declarations naming no client (the key's is taken); every `invalid_every`th has a form
/// error.
fn forms(n: usize, invalid_every: usize, seed: u64) -> Vec<serde_json::Value> {
    let mut generator = SampleGenerator::new(seed);
    (0..n)
        .map(|i| {
            let flaw = if invalid_every > 0 && i % invalid_every == invalid_every - 1 { Flaw::Form } else { Flaw::None };
            serde_json::to_value(generator.declaration(chrono::Utc::now(), "", flaw)).unwrap()
        })
        .collect()
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    json: serde_json::Value,
}

impl Gateway {
    async fn send(&self, token: &str, content_type: &str, key: Option<&str>, body: Vec<u8>) -> Answer {
        let mut request = self
            .http
            .post(format!("{}/v1/declarations/batch", self.url))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await.expect("the gateway answers");
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let text = response.text().await.unwrap();
        Answer { status, headers, json: serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")) }
    }

    async fn batch(&self, token: &str, items: &[serde_json::Value]) -> Answer {
        self.send(token, "application/json", None, serde_json::to_vec(items).unwrap()).await
    }

    async fn metric(&self, name: &str) -> f64 {
        let metrics = self.http.get(format!("{}/metrics", self.admin)).send().await.unwrap().text().await.unwrap();
        metrics
            .lines()
            .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    }

    async fn spooled(&self) -> f64 {
        self.metric("ehac_gateway_spooled_total").await
    }
}

/// The results' statuses, checked to be one per item and in order.
fn statuses(answer: &Answer, items: usize) -> Vec<u64> {
    let results = answer.json["results"].as_array().unwrap_or_else(|| panic!("no results: {}", answer.json));
    assert_eq!(results.len(), items, "one result per item");
    results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            assert_eq!(r["index"], i, "results in the order sent: {r}");
            r["status"].as_u64().unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_gets_a_result_per_item_and_is_spooled_with_one_fsync() {
    let g = gateway_with(&["airline-ga"], |r| r.clients.get_mut("airline-ga").unwrap().rate_per_second = 0, |_| {}).await;
    let items = forms(500, 10, 7);
    let fsyncs_before = g.metric("ehac_gateway_spool_fsyncs_total").await;
    let answer = g.batch(&g.tokens[0], &items).await;
    assert_eq!(answer.status, 207, "{}", answer.json);
    for (i, status) in statuses(&answer, 500).iter().enumerate() {
        assert_eq!(*status, if i % 10 == 9 { 422 } else { 202 }, "item {i}: {}", answer.json["results"][i]);
    }
    assert_eq!((answer.json["accepted"].as_u64(), answer.json["rejected"].as_u64()), (Some(450), Some(50)));
    let rejected = &answer.json["results"][9];
    assert_eq!(rejected["error"], "invalid_declaration", "the single 422's body: {rejected}");
    assert!(rejected["errors"].as_array().is_some_and(|e| !e.is_empty() && e[0]["code"].is_string()), "{rejected}");
    let accepted = &answer.json["results"][0];
    assert!(accepted["declaration_id"].as_str().is_some_and(|id| id.len() == 36) && accepted["received_at"].is_string(), "{accepted}");
    assert_eq!(g.spooled().await, 450.0, "exactly the accepted items are spooled");
    assert_eq!(g.metric("ehac_gateway_spool_fsyncs_total").await - fsyncs_before, 1.0, "one fsync for the whole batch");
    assert_eq!(g.metric("ehac_gateway_batch_items_total").await, 500.0);
    assert_eq!(g.metric("ehac_gateway_batch_requests_total").await, 1.0);
    let segments: Vec<_> =
        std::fs::read_dir(&g.spool_dir).unwrap().flatten().filter(|e| e.path().extension().is_some_and(|x| x == "seg")).collect();
    assert_eq!(segments.len(), 1, "one segment holds the batch");

    // The same manifest as NDJSON, all valid: 200.
    let valid = forms(20, 0, 8);
    let lines: Vec<u8> = valid.iter().flat_map(|f| [serde_json::to_vec(f).unwrap(), b"\n".to_vec()].concat()).collect();
    let answer = g.send(&g.tokens[0], "application/x-ndjson", None, lines).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert!(statuses(&answer, 20).iter().all(|s| *s == 202));
    assert_eq!(g.spooled().await, 470.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clients_item_is_refused_alone_and_a_retry_keeps_its_ids() {
    let g = gateway_with(&["airline-a", "airline-b"], |_| {}, |_| {}).await;
    let mut items = forms(5, 0, 11);
    items[2]["client_id"] = "airline-b".into();
    items[3]["client_id"] = "airline-a".into();
    items[4]["declaration_id"] = "PNR-X1Y2Z3-01".into();
    let body = serde_json::to_vec(&items).unwrap();
    let first = g.send(&g.tokens[0], "application/json", Some("manifest-GA404-20261220"), body.clone()).await;
    assert_eq!(first.status, 207, "{}", first.json);
    assert_eq!(statuses(&first, 5), [202, 202, 403, 202, 202]);
    let refused = &first.json["results"][2];
    assert_eq!((&refused["error"], &refused["errors"][0]["field"]), (&"forbidden".into(), &"client_id".into()), "{refused}");
    assert_eq!(
        first.json["results"][4]["declaration_id"],
        ehac_gateway::client_declaration_id("airline-a", "PNR-X1Y2Z3-01"),
        "an item's own id is scoped by the client as for a single declaration"
    );
    let retry = g.send(&g.tokens[0], "application/json", Some("manifest-GA404-20261220"), body.clone()).await;
    let ids = |a: &Answer| a.json["results"].as_array().unwrap().iter().map(|r| r["declaration_id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&retry), ids(&first), "a retried batch gets the same ids, item by item");
    let other_key = g.send(&g.tokens[0], "application/json", Some("manifest-GA404-other"), body.clone()).await;
    assert_ne!(ids(&other_key)[0], ids(&first)[0], "another batch key is another declaration");
    assert_eq!(ids(&other_key)[4], ids(&first)[4], "but an item's own id stays its own");
    let unkeyed = g.send(&g.tokens[0], "application/json", None, body).await;
    assert_ne!(ids(&unkeyed)[0], ids(&first)[0]);
    // The other client sending the same key gets other ids.
    let mut for_b = forms(5, 0, 11);
    for_b[2]["client_id"] = "airline-b".into();
    let from_b = g.send(&g.tokens[1], "application/json", Some("manifest-GA404-20261220"), serde_json::to_vec(&for_b).unwrap()).await;
    assert_eq!(statuses(&from_b, 5), [202; 5]);
    assert_ne!(ids(&from_b)[0], ids(&first)[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_empty_oversized_and_unsupported_batches_are_refused_whole() {
    let g = gateway_with(
        &["airline-c"],
        |_| {},
        |c| {
            c.max_batch_items = 50;
            c.max_batch_body_bytes = 256 << 10;
        },
    )
    .await;
    let token = &g.tokens[0];
    let too_many = g.batch(token, &forms(51, 0, 3)).await;
    assert_eq!((too_many.status, &too_many.json["error"]), (413, &"too_many_items".into()), "{}", too_many.json);
    let mut big = forms(50, 0, 4);
    for item in &mut big {
        item["traveller"]["full_name"] = "x".repeat(6_000).into();
    }
    let too_big = g.batch(token, &big).await;
    assert_eq!((too_big.status, &too_big.json["error"]), (413, &"payload_too_large".into()), "{}", too_big.json);
    let empty = g.batch(token, &[]).await;
    assert_eq!((empty.status, &empty.json["error"]), (400, &"empty_batch".into()));
    let mut typo = forms(3, 0, 5);
    typo[1]["trip"]["gate"] = "B7".into();
    let malformed = g.batch(token, &typo).await;
    assert_eq!(malformed.status, 400, "{}", malformed.json);
    assert_eq!(malformed.json["errors"][0]["field"], "[1].trip.gate", "the path names the item");
    let single = g.send(token, "application/json", None, serde_json::to_vec(&typo[0]).unwrap()).await;
    assert_eq!(single.status, 400, "one object is not a batch: {}", single.json);
    // An item the schema does not allow but serde reads (a struct from an array) fails the
    // rules: rejected alone, never accepted (the contract test's schemathesis sends these).
    let mut odd = forms(2, 0, 5);
    odd[1]["traveller"] = serde_json::json!([null, null]);
    let answer = g.batch(token, &odd).await;
    assert_eq!((answer.status, statuses(&answer, 2)), (207, vec![202, 422]), "{}", answer.json);
    let text = g.send(token, "text/plain", None, serde_json::to_vec(&forms(1, 0, 6)).unwrap()).await;
    assert_eq!(text.status, 415);
    assert_eq!(g.spooled().await, 1.0, "nothing of a refused batch was accepted, one item of the odd one");
}

/// The quota is charged per item, whole or not at all: a batch the quota cannot cover now is a
/// 429 and takes nothing; one larger than the burst can never fit and is a 413.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_quota_is_charged_per_item_and_a_batch_it_cannot_cover_takes_nothing() {
    let g = gateway_with(
        &["port-tanjung-priok"],
        |r| {
            let client = r.clients.get_mut("port-tanjung-priok").unwrap();
            client.rate_per_second = 1;
            client.burst = 10;
        },
        |_| {},
    )
    .await;
    let token = &g.tokens[0];
    let over_burst = g.batch(token, &forms(11, 0, 1)).await;
    assert_eq!((over_burst.status, &over_burst.json["error"]), (413, &"batch_over_burst".into()), "{}", over_burst.json);
    assert_eq!(g.batch(token, &forms(8, 0, 2)).await.status, 200);
    let throttled = g.batch(token, &forms(5, 0, 3)).await;
    assert_eq!(throttled.status, 429, "8 of 10 used, 5 more do not fit: {}", throttled.json);
    let retry_after: u64 = throttled.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    assert_eq!(g.spooled().await, 8.0, "the refused batch accepted nothing");
    // The 2 units left were not taken by the refused batch.
    assert_eq!(g.batch(token, &forms(2, 0, 4)).await.status, 200);
    assert_eq!(g.spooled().await, 10.0);
}
