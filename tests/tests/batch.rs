//! A flight's manifest through `POST /v1/declarations/batch` into a real broker and ClickHouse:
//! exactly the valid items land in Kafka and then in ClickHouse, a retried batch gets the same
//! ids and adds no row, and a batch sent while the broker is away is spooled with one fsync and
//! drained once the broker is there.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ehac_devstack::{Nowhere, Stack, StackOptions, Tools};
use ehac_domain::sample::{Flaw, SampleGenerator};
use ehac_gateway::Config;
use ehac_stream::config::Topics;
use ehac_tests::{pipeline, test_dir};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

/// Every record on `topic` from the beginning to its current end: (key, client_id).
fn read_topic(brokers: &str, topic: &str) -> Vec<(String, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "batch-test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let timeout = Duration::from_secs(10);
    let mut assignment = TopicPartitionList::new();
    let mut open = HashSet::new();
    for t in consumer.fetch_metadata(Some(topic), timeout).unwrap().topics() {
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout).unwrap();
            if low < high {
                assignment.add_partition_offset(topic, p.id(), Offset::Offset(low)).unwrap();
                open.insert(p.id());
            }
        }
    }
    let mut records = Vec::new();
    if open.is_empty() {
        return records;
    }
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !open.is_empty() {
        assert!(Instant::now() < deadline, "reading {topic} did not reach its end");
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let raw = ehac_codec::RAW.decode(m.payload().unwrap()).unwrap();
                records.push((String::from_utf8(m.key().unwrap().to_vec()).unwrap(), raw.form.client_id));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    records
}

async fn post_batch(
    http: &reqwest::Client,
    gateway: &str,
    token: &str,
    items: &[serde_json::Value],
    key: &str,
) -> (u16, serde_json::Value) {
    let response = http
        .post(format!("{gateway}/v1/declarations/batch"))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(items)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn metric(http: &reqwest::Client, admin: &str, name: &str) -> f64 {
    let metrics = http.get(format!("{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    metrics
        .lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// The accepted ids of a batch answer, and the statuses of all its items in order.
fn outcome(answer: &serde_json::Value) -> (Vec<String>, Vec<u64>) {
    let results = answer["results"].as_array().unwrap_or_else(|| panic!("{answer}"));
    let statuses = results.iter().map(|r| r["status"].as_u64().unwrap()).collect();
    let ids = results.iter().filter_map(|r| r["declaration_id"].as_str().map(str::to_owned)).collect();
    (ids, statuses)
}

fn run_id() -> String {
    format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_lands_item_by_item_and_a_retry_adds_nothing() {
    let p = pipeline();
    let dir = tempfile::tempdir().unwrap();
    let clients_file = dir.path().join("clients.json");
    let (airline, other) = (format!("airline-{}", run_id()), format!("other-{}", run_id()));
    let tokens = ehac_clients::provision_for_tests(&clients_file, &[&airline, &other]).unwrap();
    let mut registry = ehac_clients::file::load(&clients_file).unwrap();
    // A check-in system's quota: a manifest at once.
    let client = registry.clients.get_mut(&airline).unwrap();
    (client.rate_per_second, client.burst) = (500, 2_000);
    ehac_clients::file::save(&clients_file, &registry).unwrap();
    let shutdown = CancellationToken::new();
    let config = p.gateway_config(dir.path().join("spool"), clients_file.clone(), 10_000);
    let running = ehac_gateway::start(config, shutdown.clone()).await.unwrap();
    let (gateway, admin) = (format!("http://{}", running.addr), format!("http://{}", running.admin_addr));
    let http = reqwest::Client::new();

    // 500 passengers: every 25th with a form error, every 40th failing a reference check, and
    // one declared for another client.
    let mut generator = SampleGenerator::new(404);
    let mut expected = Vec::new();
    let mut items = Vec::new();
    for i in 0..500 {
        let flaw = if i % 25 == 24 {
            Flaw::Form
        } else if i % 40 == 39 {
            Flaw::Reference
        } else {
            Flaw::None
        };
        let mut item = serde_json::to_value(generator.declaration(chrono::Utc::now(), "", flaw)).unwrap();
        expected.push(if flaw == Flaw::None { 202 } else { 422 });
        if i == 123 {
            item["client_id"] = other.clone().into();
            expected[i] = 403;
        }
        items.push(item);
    }
    let valid = expected.iter().filter(|s| **s == 202).count();
    assert!(valid > 400 && valid < 480, "{valid}");

    let (status, answer) = post_batch(&http, &gateway, &tokens[0], &items, "manifest-GA404-20261220").await;
    assert_eq!(status, 207, "{answer}");
    let (ids, statuses) = outcome(&answer);
    assert_eq!(statuses, expected, "one result per item, in order, refused exactly where the item is bad");
    assert_eq!(ids.len(), valid);
    assert_eq!(answer["results"][123]["errors"][0]["field"], "client_id");
    assert_eq!(metric(&http, &admin, "ehac_gateway_spooled_total").await, 0.0, "the broker acknowledged the batch");

    // Exactly the accepted items are in Kafka, once each.
    let (brokers, raw) = (p.brokers.clone(), p.topics.raw.clone());
    let in_kafka = tokio::task::spawn_blocking(move || read_topic(&brokers, &raw)).await.unwrap();
    let ours: Vec<&(String, String)> = in_kafka.iter().filter(|(_, client)| *client == airline || *client == other).collect();
    assert_eq!(ours.len(), valid, "as many records as accepted items, none of the refused");
    let keys: HashSet<&str> = ours.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(keys, ids.iter().map(String::as_str).collect::<HashSet<_>>(), "the records are the accepted ids");
    assert!(ours.iter().all(|(_, client)| *client == airline), "every record is the authenticated client's");

    // The airline's system did not get the answer and sends the manifest again.
    let (status, retried) = post_batch(&http, &gateway, &tokens[0], &items, "manifest-GA404-20261220").await;
    assert_eq!(status, 207);
    assert_eq!(outcome(&retried), (ids.clone(), expected.clone()), "the same ids and results");

    let rows = format!("SELECT count() FROM ehac.declarations WHERE client_id = '{airline}'");
    assert_eq!(p.wait_for_count(&rows, valid as u64, Duration::from_secs(120)).await, valid as u64);
    // Let the retry's copies arrive, if the pipeline were to store them.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stored = p.sql(&format!("SELECT count(), uniqExact(declaration_id) FROM ehac.declarations WHERE client_id = '{airline}'")).await;
    assert_eq!(stored, format!("{valid}\t{valid}\n"), "each accepted passenger stored once, the retry added no row");
    let stored_ids = p.sql(&format!("SELECT declaration_id FROM ehac.declarations WHERE client_id = '{airline}'")).await;
    assert_eq!(stored_ids.lines().collect::<HashSet<_>>(), ids.iter().map(String::as_str).collect::<HashSet<_>>());
    shutdown.cancel();
}

/// The broker is not there yet: the gateway's produce deadline passes, the whole batch goes to
/// the spool in one append with one fsync, and once a broker comes up on that address the
/// spool drains it: every accepted id is in Kafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_while_kafka_is_away_is_spooled_with_one_fsync_and_drained_later() {
    // The broker's address is held, refusing connections, until the broker starts on it.
    let nowhere = Nowhere::new().unwrap();
    let (port, brokers) = (nowhere.address.port(), nowhere.address.to_string());
    let dir = test_dir(Some("batch-spool"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let shutdown = CancellationToken::new();
    let config =
        Config { produce_timeout_ms: 300, ..Config::on_loopback(&brokers, dir.join("gateway-spool"), ehac_tests::anonymous_access()) };
    let running = ehac_gateway::start(config, shutdown.clone()).await.unwrap();
    let (gateway, admin) = (format!("http://{}", running.addr), format!("http://{}", running.admin_addr));
    let http = reqwest::Client::new();
    let client = format!("ship-{}", run_id());
    let mut generator = SampleGenerator::new(77);
    let items: Vec<serde_json::Value> =
        (0..500).map(|_| serde_json::to_value(generator.declaration(chrono::Utc::now(), &client, Flaw::None)).unwrap()).collect();

    let fsyncs_before = metric(&http, &admin, "ehac_gateway_spool_fsyncs_total").await;
    let (status, answer) = post_batch(&http, &gateway, "anonymous", &items, "manifest-KM-Kelud-1").await;
    assert_eq!(status, 200, "{answer}");
    let (ids, _) = outcome(&answer);
    assert_eq!(ids.len(), 500);
    assert_eq!(metric(&http, &admin, "ehac_gateway_spooled_total").await, 500.0);
    assert_eq!(metric(&http, &admin, "ehac_gateway_spool_fsyncs_total").await - fsyncs_before, 1.0, "one fsync for 500 declarations");
    assert_eq!(metric(&http, &admin, "ehac_gateway_spool_drained_total").await, 0.0);

    // The broker comes up on the address the gateway was given.
    let tools = Tools::find().unwrap();
    drop(nowhere);
    let stack = Stack::start(&tools, StackOptions::ephemeral(&dir).unwrap().with_kafka_port(port)).await.unwrap();
    stack.provision(&Topics::default(), 2).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while metric(&http, &admin, "ehac_gateway_spool_drained_total").await < 500.0 {
        assert!(Instant::now() < deadline, "the spool did not drain within 90 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let raw = Topics::default().raw;
    let in_kafka = tokio::task::spawn_blocking(move || read_topic(&brokers, &raw)).await.unwrap();
    let keys: HashSet<&str> = in_kafka.iter().filter(|(_, c)| *c == client).map(|(key, _)| key.as_str()).collect();
    // librdkafka may also deliver the first, timed-out sends once the broker is up: the same
    // ids, which the sink drops. What must hold is that every accepted id is there.
    assert_eq!(keys, ids.iter().map(String::as_str).collect::<HashSet<_>>(), "every spooled declaration reached Kafka");
    shutdown.cancel();
    running.wait().await.unwrap();
    drop(stack);
}

/// `--accept-after write-ahead`: every declaration, single or in a batch, is answered after the
/// spool's fsync and reaches Kafka and ClickHouse through the drain, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_ahead_gateway_answers_from_its_spool_and_every_declaration_is_stored_once() {
    let p = pipeline();
    let dir = tempfile::tempdir().unwrap();
    let clients_file = dir.path().join("clients.json");
    let client = format!("write-ahead-{}", run_id());
    let token = ehac_clients::provision_for_tests(&clients_file, &[&client]).unwrap().remove(0);
    let shutdown = CancellationToken::new();
    let config =
        Config { accept_after: ehac_gateway::AcceptAfter::WriteAhead, ..p.gateway_config(dir.path().join("spool"), clients_file, 10_000) };
    let running = ehac_gateway::start(config, shutdown.clone()).await.unwrap();
    let (gateway, admin) = (format!("http://{}", running.addr), format!("http://{}", running.admin_addr));
    let http = reqwest::Client::new();

    let mut generator = SampleGenerator::new(505);
    let forms: Vec<serde_json::Value> =
        (0..60).map(|_| serde_json::to_value(generator.declaration(chrono::Utc::now(), "", Flaw::None)).unwrap()).collect();
    let mut ids = HashSet::new();
    for form in &forms[..20] {
        let response = http.post(format!("{gateway}/v1/declarations")).bearer_auth(&token).json(form).send().await.unwrap();
        assert_eq!(response.status(), 202);
        let answer: serde_json::Value = response.json().await.unwrap();
        ids.insert(answer["declaration_id"].as_str().unwrap().to_owned());
    }
    let (status, answer) = post_batch(&http, &gateway, &token, &forms[20..], "write-ahead-batch").await;
    assert_eq!(status, 200, "{answer}");
    ids.extend(outcome(&answer).0);
    assert_eq!(ids.len(), 60);
    assert_eq!(metric(&http, &admin, "ehac_gateway_spooled_total").await, 60.0, "every declaration was answered from the spool");

    let rows = format!("SELECT count() FROM ehac.declarations WHERE client_id = '{client}'");
    assert_eq!(p.wait_for_count(&rows, 60, Duration::from_secs(120)).await, 60);
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&http, &admin, "ehac_gateway_spool_drained_total").await < 60.0 {
        assert!(Instant::now() < deadline, "the drain counted what it sent");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stored = p.sql(&format!("SELECT count(), uniqExact(declaration_id) FROM ehac.declarations WHERE client_id = '{client}'")).await;
    assert_eq!(stored, "60\t60\n");
    let stored_ids = p.sql(&format!("SELECT declaration_id FROM ehac.declarations WHERE client_id = '{client}'")).await;
    assert_eq!(stored_ids.lines().map(str::to_owned).collect::<HashSet<_>>(), ids);
    shutdown.cancel();
}
