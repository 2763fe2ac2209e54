//! Kafka clients configured once for the whole pipeline. Only standard Kafka APIs are used, so
//! the same code runs against Apache Kafka, Redpanda, MSK and (here) tansu.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::admin::Readiness;

/// An idempotent producer: acks from all in-sync replicas, no duplicates from its own retries.
///
/// `EHAC_KAFKA_IDEMPOTENCE=false` turns idempotence off, for brokers that mishandle it: tansu
/// 0.6, restarted while idempotent producers are connected, panics in its SQLite engine
/// ("more or less than one row" in idempotent_message_check) and stops serving. Without it a
/// producer retry may write a record twice; the sink drops the copy by declaration id, so the
/// tables stay exactly-once.
pub fn producer(brokers: &str) -> Result<FutureProducer, KafkaError> {
    producer_with_linger(brokers, Duration::from_millis(5))
}

/// [`producer`] with its own `linger.ms`: how long a record may wait for others to share its
/// request. A service that answers a person per record (the gateway) wants it short.
pub fn producer_with_linger(brokers: &str, linger: Duration) -> Result<FutureProducer, KafkaError> {
    let idempotence = std::env::var("EHAC_KAFKA_IDEMPOTENCE").map_or(true, |v| v != "false");
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", if idempotence { "true" } else { "false" })
        .set("acks", "all")
        .set("linger.ms", linger.as_millis().to_string())
        .set("message.timeout.ms", "30000")
        .create()
}

/// Logs partition assignments so an operator can follow rebalances.
pub struct RebalanceLog;

impl ClientContext for RebalanceLog {}

impl ConsumerContext for RebalanceLog {
    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => tracing::info!(partitions = %describe(tpl), "partitions assigned"),
            Rebalance::Revoke(tpl) => tracing::info!(partitions = %describe(tpl), "partitions revoked"),
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

pub fn describe(tpl: &TopicPartitionList) -> String {
    tpl.elements().iter().map(|e| format!("{}/{}", e.topic(), e.partition())).collect::<Vec<_>>().join(",")
}

pub type GroupConsumer = StreamConsumer<RebalanceLog>;

/// Settings of every consumer-group member: commits only what the caller says is done (no
/// auto-commit), new groups start at the earliest offset, cooperative rebalancing, and a
/// bounded prefetch so a stalled consumer holds little memory.
pub fn consumer_config(brokers: &str, group: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", std::env::var("EHAC_KAFKA_ASSIGNMENT").unwrap_or_else(|_| "cooperative-sticky".into()))
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("queued.max.messages.kbytes", "16384");
    // Static membership (KIP-345): a member restarted with the same instance id takes its
    // partitions back at once instead of waiting for the group to notice the old one is gone.
    if let Ok(instance) = std::env::var("EHAC_KAFKA_GROUP_INSTANCE_ID") {
        config.set("group.instance.id", instance);
    }
    config
}

/// A consumer-group member for a batch-at-a-time service, subscribed to `topics`.
pub fn consumer(brokers: &str, group: &str, topics: &[&str]) -> Result<GroupConsumer, KafkaError> {
    let consumer: GroupConsumer = consumer_config(brokers, group).create_with_context(RebalanceLog)?;
    consumer.subscribe(topics)?;
    Ok(consumer)
}

/// Creates the topics with `partitions` each, leaving existing ones as they are.
pub async fn ensure_topics(brokers: &str, topics: &[&str], partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let new: Vec<NewTopic> = topics.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1))).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&new, &options).await? {
        match result {
            Ok(topic) => tracing::info!(topic, partitions, "topic created"),
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => tracing::info!(topic, "topic exists"),
            Err((topic, code)) => anyhow::bail!("creating topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// Waits for the first message, then gathers more until `max` messages or `linger` has passed.
/// `None` once shutdown fired. Consume errors mark the `kafka` readiness check down and are
/// retried; librdkafka reconnects by itself. A member that holds partitions but has nothing to
/// read is ready too: an idle topic is not a fault. Messages are copied out of librdkafka's
/// buffers so the batch can outlive the poll.
pub async fn next_batch(
    consumer: &GroupConsumer,
    max: usize,
    linger: Duration,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> Option<Vec<OwnedMessage>> {
    loop {
        match gather(consumer, max, linger, shutdown).await {
            Ok(Gathered::Shutdown) => return None,
            Ok(Gathered::Idle) => {
                if consumer.assignment().is_ok_and(|a| a.count() > 0) {
                    readiness.ready("kafka");
                }
            }
            Ok(Gathered::Batch(batch)) => {
                readiness.ready("kafka");
                return Some(batch);
            }
            Err(e) => {
                readiness.not_ready("kafka", e.to_string());
                tracing::warn!(error = %e, "consume failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

enum Gathered {
    Batch(Vec<OwnedMessage>),
    /// Nothing arrived for a second.
    Idle,
    Shutdown,
}

async fn gather(consumer: &GroupConsumer, max: usize, linger: Duration, shutdown: &CancellationToken) -> Result<Gathered, KafkaError> {
    let mut batch = Vec::with_capacity(max);
    tokio::select! {
        _ = shutdown.cancelled() => return Ok(Gathered::Shutdown),
        first = tokio::time::timeout(Duration::from_secs(1), consumer.recv()) => match first {
            Ok(message) => batch.push(message?.detach()),
            Err(_idle) => return Ok(Gathered::Idle),
        },
    }
    let deadline = tokio::time::Instant::now() + linger;
    while batch.len() < max {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(message) => batch.push(message?.detach()),
            Err(_elapsed) => break,
        }
    }
    Ok(Gathered::Batch(batch))
}

/// Commits, for every partition in `batch`, the offset after its last message. Call only once
/// everything the batch produced is durable downstream. A failed commit is logged, not fatal:
/// the batch is then read again, which is the at-least-once side of the trade.
pub fn commit_batch(consumer: &GroupConsumer, batch: &[OwnedMessage]) {
    if let Err(e) = try_commit(consumer, batch) {
        tracing::warn!(error = %e, "offset commit failed; the batch may be replayed");
    }
}

fn try_commit(consumer: &GroupConsumer, batch: &[OwnedMessage]) -> Result<(), KafkaError> {
    let mut next: HashMap<(&str, i32), i64> = HashMap::new();
    for m in batch {
        let entry = next.entry((m.topic(), m.partition())).or_insert(0);
        *entry = (*entry).max(m.offset() + 1);
    }
    if next.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    }
    consumer.commit(&tpl, CommitMode::Sync)
}
