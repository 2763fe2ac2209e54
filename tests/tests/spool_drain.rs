//! `ehac spool drain` empties the spool a gateway left behind into Kafka (a StatefulSet scaled
//! down keeps the pod's volume; the gateway that wrote it is gone).
//!
//! A gateway whose broker is away (nothing listens at its address) accepts declarations into
//! its spool and is stopped; the spool directory is then drained against a real broker, and
//! the raw topic is read back: every accepted declaration once, under its own key, and the
//! spool empty.

use std::collections::BTreeSet;
use std::time::Duration;

use ehac_cli::spool::{drain, DrainArgs};
use ehac_codec::RAW;
use ehac_devstack::{Stack, StackOptions, Tools};
use ehac_domain::sample::Flaw;
use ehac_spool::{Spool, SpoolConfig};
use ehac_stream::config::Topics;
use ehac_tests::{anonymous_access, declarations, test_dir};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 12;
const DECLARATIONS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphaned_spool_is_drained_into_the_raw_topic_and_left_empty() {
    ehac_stream::telemetry::init_logging();
    let dir = test_dir(Some("spool-drain"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let spool_dir = dir.join("gateway-spool");

    // A gateway whose broker is away: every declaration is spooled, then the gateway goes.
    let accepted = spool_declarations_with_broker_away(&spool_dir).await;
    assert_eq!(accepted.len(), DECLARATIONS, "every declaration was accepted into the spool");
    assert_eq!(spool_depth(&spool_dir), DECLARATIONS as u64, "the gateway left them in its spool");

    let tools = Tools::find().expect("Kafka and ClickHouse are installed (deploy/local/install.sh)");
    let stack = Stack::start(&tools, StackOptions::ephemeral(dir.join("stack")).unwrap()).await.unwrap();
    let topics = Topics::default();
    stack.provision(&topics, PARTITIONS).await.unwrap();
    let args = DrainArgs {
        dir: spool_dir.clone(),
        kafka_brokers: stack.kafka_brokers(),
        topic_raw: topics.raw.clone(),
        batch: 64,
        give_up_after_secs: 60,
    };

    // A spool a live process holds is refused, not drained behind its back.
    let held = Spool::open(&spool_dir, SpoolConfig::default()).unwrap();
    let refused = drain(&args, &CancellationToken::new()).await;
    assert!(refused.as_ref().is_err_and(|e| e.to_string().contains("open in another process")), "{refused:?}");
    drop(held);

    let report = drain(&args, &CancellationToken::new()).await.unwrap();
    assert_eq!((report.drained, report.remaining), (DECLARATIONS as u64, 0), "{report:?}");

    let in_topic = read_topic(&stack.kafka_brokers(), &topics.raw);
    assert_eq!(in_topic.len(), DECLARATIONS, "one record per spooled declaration in the raw topic");
    let keys: BTreeSet<String> = in_topic.iter().map(|(key, _)| key.clone()).collect();
    assert_eq!(keys, accepted, "the records are the accepted declarations, each under its own id");
    for (key, payload) in &in_topic {
        let raw: ehac_domain::RawDeclaration = RAW.decode(payload).expect("a raw declaration as the gateway encoded it");
        assert_eq!(&raw.declaration_id, key);
    }
    assert_eq!(spool_depth(&spool_dir), 0, "the spool is empty afterwards");
    let again = drain(&args, &CancellationToken::new()).await.unwrap();
    assert_eq!((again.drained, again.remaining), (0, 0), "a second drain has nothing to send");
    assert_eq!(read_topic(&stack.kafka_brokers(), &topics.raw).len(), DECLARATIONS, "and sends nothing again");
}

/// Runs a gateway whose broker address has nothing listening, posts the declarations and stops
/// it. Returns the declaration ids it answered 202 for.
async fn spool_declarations_with_broker_away(spool_dir: &std::path::Path) -> BTreeSet<String> {
    let shutdown = CancellationToken::new();
    // No broker on the address the gateway is given.
    let nowhere = ehac_devstack::Nowhere::new().unwrap();
    let config = ehac_gateway::Config {
        accept_after: ehac_gateway::AcceptAfter::BrokerAck,
        produce_timeout_ms: 100,
        // The point is a spool left behind: no attempt to drain it on exit.
        spool_drain_on_exit_secs: 0,
        ..ehac_gateway::Config::on_loopback(&nowhere.address.to_string(), spool_dir.into(), anonymous_access())
    };
    let gateway = ehac_gateway::start(config, shutdown.clone()).await.unwrap();
    let http = reqwest::Client::new();
    let mut accepted = BTreeSet::new();
    for form in declarations(DECLARATIONS, "kiosk-spool-drain", Flaw::None, 16) {
        let answer = http.post(format!("http://{}/v1/declarations", gateway.addr)).json(&form).send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 202);
        let body: serde_json::Value = answer.json().await.unwrap();
        accepted.insert(body["declaration_id"].as_str().unwrap().to_owned());
    }
    shutdown.cancel();
    // The producer's flush fails (its broker never came); the spool is what matters here.
    let stopped = tokio::time::timeout(Duration::from_secs(60), gateway.wait()).await;
    assert!(stopped.is_ok(), "the gateway stopped");
    accepted
}

fn spool_depth(dir: &std::path::Path) -> u64 {
    Spool::open(dir, SpoolConfig::default()).unwrap().depth().records
}

/// Every record of the topic (key, payload), read from the beginning of each partition up to its
/// high watermark.
fn read_topic(brokers: &str, topic: &str) -> Vec<(String, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "ehac-test-spool-drain-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    let mut remaining = 0i64;
    for partition in 0..PARTITIONS {
        let (low, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)).unwrap();
        remaining += high - low;
        assignment.add_partition_offset(topic, partition, Offset::Beginning).unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut records = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while (records.len() as i64) < remaining {
        assert!(std::time::Instant::now() < deadline, "read {} of {remaining} records", records.len());
        if let Some(message) = consumer.poll(Duration::from_millis(500)) {
            let message = message.unwrap();
            let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
            records.push((key, message.payload().unwrap().to_vec()));
        }
    }
    records
}
