//! Kafka clients configured once for the whole pipeline. Only standard Kafka APIs are used, so
//! the same code runs against Apache Kafka, MSK, Confluent and Redpanda.

use std::collections::HashMap;
use std::time::{Duration, Instant};

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
use crate::config::MembershipArgs;

/// The settings every producer shares: idempotent (no duplicates or reordering from its own
/// retries) with acks from all in-sync replicas.
fn producer_config(brokers: &str, linger: Duration) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", linger.as_millis().to_string())
        .set("message.timeout.ms", "30000");
    config
}

/// An idempotent producer: acks from all in-sync replicas, no duplicates from its own retries.
pub fn producer(brokers: &str) -> Result<FutureProducer, KafkaError> {
    producer_with_linger(brokers, Duration::from_millis(5))
}

/// [`producer`] with its own `linger.ms`: how long a record may wait for others to share its
/// request. A service that answers a person per record (the gateway) wants it short.
pub fn producer_with_linger(brokers: &str, linger: Duration) -> Result<FutureProducer, KafkaError> {
    producer_config(brokers, linger).create()
}

/// A transactional producer (`transactional.id`): what it writes and the input offsets it
/// commits become visible together or not at all. The id must be stable for one instance across
/// restarts, so a restarted instance fences its dead predecessor and aborts the transaction it
/// left open at once, instead of read_committed consumers waiting for that transaction's timeout.
/// Call `init_transactions` before use.
pub fn transactional_producer(brokers: &str, transactional_id: &str, transaction_timeout: Duration) -> Result<FutureProducer, KafkaError> {
    producer_config(brokers, Duration::from_millis(5))
        .set("transactional.id", transactional_id)
        .set("transaction.timeout.ms", transaction_timeout.as_millis().to_string())
        // librdkafka requires a delivery to give up no later than its transaction would.
        .set("message.timeout.ms", transaction_timeout.as_millis().to_string())
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

impl MembershipArgs {
    /// Settings of every consumer-group member: commits only what the caller says is done (no
    /// auto-commit), new groups start at the earliest offset, this member's assignment strategy
    /// and instance id, and a bounded prefetch so a stalled consumer holds little memory.
    pub fn consumer_config(&self, brokers: &str, group: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // Records of aborted transactions are never read (librdkafka's default, stated because
            // the enricher's exactly-once output depends on it).
            .set("isolation.level", "read_committed")
            .set("partition.assignment.strategy", &self.kafka_assignment)
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("queued.max.messages.kbytes", "16384");
        if let Some(instance) = &self.kafka_group_instance_id {
            config.set("group.instance.id", instance);
        }
        config
    }

    /// A consumer-group member for a batch-at-a-time service, subscribed to `topics`.
    pub fn consumer(&self, brokers: &str, group: &str, topics: &[&str]) -> Result<GroupConsumer, KafkaError> {
        let consumer: GroupConsumer = self.consumer_config(brokers, group).create_with_context(RebalanceLog)?;
        consumer.subscribe(topics)?;
        Ok(consumer)
    }

    pub fn watch(&self, registry: &prometheus::Registry, topics: &[&str]) -> prometheus::Result<AssignmentWatch> {
        let exit_after = (self.unassigned_exit_secs > 0).then(|| Duration::from_secs(self.unassigned_exit_secs));
        // Three session timeouts: longer than any rebalance the group should need.
        AssignmentWatch::new(registry, topics, Duration::from_secs(30), exit_after)
    }
}

/// Creates the topics with `partitions` each and the broker's default replication factor (1 on
/// a single node, 3 on a cluster, whose `min.insync.replicas` then applies), leaving existing
/// ones as they are.
pub async fn ensure_topics(brokers: &str, topics: &[&str], partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    // -1: the broker's default.replication.factor (CreateTopics v4+, Kafka 2.4 on).
    let new: Vec<NewTopic> = topics.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(-1))).collect();
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
/// An empty batch after a second with nothing to read (so the caller can look after its group
/// membership); `None` once shutdown fired. Consume errors mark the `kafka` readiness check down
/// and are retried (librdkafka reconnects by itself); a fatal error, after which the consumer
/// can do nothing more, is returned. A member that holds partitions but has nothing to read is
/// ready too: an idle topic is not a fault. Messages are copied out of librdkafka's buffers so
/// the batch can outlive the poll.
pub async fn next_batch(
    consumer: &GroupConsumer,
    max: usize,
    linger: Duration,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> Result<Option<Vec<OwnedMessage>>, KafkaError> {
    let mut last_warning = None;
    loop {
        match gather(consumer, max, linger, shutdown).await {
            Ok(Gathered::Shutdown) => return Ok(None),
            Ok(Gathered::Idle) => {
                if consumer.assignment().is_ok_and(|a| a.count() > 0) {
                    readiness.ready("kafka");
                }
                return Ok(Some(Vec::new()));
            }
            Ok(Gathered::Batch(batch)) => {
                readiness.ready("kafka");
                return Ok(Some(batch));
            }
            Err(e) => {
                // A fatal error ends this consumer for good (seen: a static member fenced
                // after its coordinator was partitioned off); only a new process recovers.
                if let Some((code, reason)) = consumer.client().fatal_error() {
                    tracing::error!(error = %reason, "the consumer failed for good: exiting so that a supervisor restarts this member");
                    return Err(KafkaError::MessageConsumptionFatal(code));
                }
                // An error is an event librdkafka queued (it reconnects by itself), not a
                // failed call: read on at once. Sleeping per event once made a consumer spend a
                // minute after a broker restart working through the outage's queued "all
                // brokers down" events before it read a message again.
                readiness.not_ready("kafka", e.to_string());
                if last_warning.is_none_or(|at: Instant| at.elapsed() > Duration::from_secs(5)) {
                    tracing::warn!(error = %e, "consume failed; librdkafka retries");
                    last_warning = Some(Instant::now());
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
            Ok(Ok(message)) => batch.push(message.detach()),
            // Never drop what was gathered: the consumer's position is already past it, and a
            // later commit would skip it. The error is an event; the batch goes on as it is.
            Ok(Err(e)) => {
                tracing::debug!(error = %e, gathered = batch.len(), "consume error while gathering; the batch ends here");
                break;
            }
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
    let tpl = next_offsets(batch)?;
    if tpl.count() == 0 {
        return Ok(());
    }
    consumer.commit(&tpl, CommitMode::Sync)
}

/// For every partition in `batch`, the offset after its last message: what a group commits
/// once the batch is done (directly, or inside a transaction).
pub fn next_offsets(batch: &[OwnedMessage]) -> Result<TopicPartitionList, KafkaError> {
    let mut next: HashMap<(&str, i32), i64> = HashMap::new();
    for m in batch {
        let entry = next.entry((m.topic(), m.partition())).or_insert(0);
        *entry = (*entry).max(m.offset() + 1);
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    }
    Ok(tpl)
}

/// Notices a member that holds no partitions while its group has lag that nobody consumes
/// (the group's committed offsets stand still): after a broker restart or a missed rebalance a
/// consumer can sit in its group with an empty assignment for good, and the backlog then waits
/// for nobody. (A member left without partitions because the group has more members than
/// partitions is fine: the others' commits move.) Such a member turns not ready, sets the
/// `kafka_member_stranded` gauge (alerted on), and after `exit_after` asks its service to exit
/// so that its supervisor starts it afresh, which makes it join the group anew.
pub struct AssignmentWatch {
    topics: Vec<String>,
    grace: Duration,
    exit_after: Option<Duration>,
    unassigned_since: Option<Instant>,
    stranded_since: Option<Instant>,
    last_check: Option<Instant>,
    /// The group's committed offsets summed, at the last check.
    last_committed: Option<i64>,
    stranded: prometheus::IntGauge,
}

/// What the watch tells its service to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    Fine,
    /// Stranded for longer than `exit_after`: leave, so that a supervisor restarts the process.
    Exit,
    /// librdkafka reported a fatal error (for example a static member fenced by another with
    /// the same `group.instance.id`): the consumer can do nothing more, only a new process can.
    Fatal,
}

impl AssignmentWatch {
    /// `grace`: how long an empty assignment is normal (a rebalance in progress); `exit_after`:
    /// how long a stranded member waits for the group to give it partitions before it exits
    /// (`None`: never exits, only reports).
    pub fn new(
        registry: &prometheus::Registry,
        topics: &[&str],
        grace: Duration,
        exit_after: Option<Duration>,
    ) -> prometheus::Result<Self> {
        let stranded = prometheus::IntGauge::new(
            "kafka_member_stranded",
            "1 while this consumer holds no partitions although its group has lag on its topics",
        )?;
        registry.register(Box::new(stranded.clone()))?;
        Ok(AssignmentWatch {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            grace,
            exit_after,
            unassigned_since: None,
            stranded_since: None,
            last_check: None,
            last_committed: None,
            stranded,
        })
    }

    /// Call often (every poll); it queries the broker at most every 5 s, and only while the
    /// assignment is empty. Blocking: call from a thread that may block for a moment.
    pub fn check<C: ConsumerContext>(&mut self, consumer: &impl Consumer<C>, readiness: &Readiness) -> Membership {
        let now = Instant::now();
        if consumer.assignment().is_ok_and(|a| a.count() > 0) {
            if self.stranded_since.take().is_some() {
                tracing::info!("partitions assigned again");
                readiness.ready("assignment");
            }
            self.unassigned_since = None;
            self.last_committed = None;
            self.stranded.set(0);
            return Membership::Fine;
        }
        let since = *self.unassigned_since.get_or_insert(now);
        if now - since < self.grace || self.last_check.is_some_and(|t| now - t < Duration::from_secs(5)) {
            return self.verdict(now);
        }
        self.last_check = Some(now);
        let progress = match group_lag(consumer, &self.topics) {
            Ok(progress) => progress,
            Err(e) => {
                tracing::debug!(error = %e, "could not read the group's lag");
                return self.verdict(now);
            }
        };
        let moved = self.last_committed.replace(progress.committed).is_none_or(|before| before != progress.committed);
        match progress.lag {
            lag if lag == 0 || moved => {
                // Nothing to read, or others are reading it: an idle member is fine.
                if self.stranded_since.take().is_some() {
                    readiness.ready("assignment");
                }
                self.stranded.set(0);
            }
            lag => {
                if self.stranded_since.is_none() {
                    tracing::warn!(lag, "this member holds no partitions while its group has lag");
                    self.stranded_since = Some(now);
                }
                self.stranded.set(1);
                readiness.not_ready("assignment", format!("no partitions assigned while the group has {lag} messages of lag"));
            }
        }
        self.verdict(now)
    }

    fn verdict(&self, now: Instant) -> Membership {
        match (self.stranded_since, self.exit_after) {
            (Some(since), Some(limit)) if now - since >= limit => {
                tracing::error!(after = ?limit, "still no partitions while the group has lag: exiting so that a supervisor restarts this member");
                Membership::Exit
            }
            _ => Membership::Fine,
        }
    }
}

/// A group's position on its topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupProgress {
    /// Messages beyond the committed offsets (a partition with no commit counts from its low
    /// watermark), not counting the last offset of each partition.
    pub lag: i64,
    /// The committed offsets summed: it moves while anybody consumes.
    pub committed: i64,
}

/// Where the consumer's group stands on `topics`.
pub fn group_lag<C: ConsumerContext>(consumer: &impl Consumer<C>, topics: &[String]) -> Result<GroupProgress, KafkaError> {
    let timeout = Duration::from_secs(5);
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        for t in metadata.topics() {
            for p in t.partitions() {
                tpl.add_partition(t.name(), p.id());
            }
        }
    }
    let offsets = consumer.committed_offsets(tpl, timeout)?;
    let (mut lag, mut committed) = (0, 0);
    for element in offsets.elements() {
        let (low, high) = consumer.fetch_watermarks(element.topic(), element.partition(), timeout)?;
        let from = match element.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        committed += from;
        // One offset per partition may be a transaction's commit marker, which no reader ever
        // receives: a backlog of one is no backlog.
        lag += (high - from - 1).max(0);
    }
    Ok(GroupProgress { lag, committed })
}

/// Where [`tally`] starts reading each partition.
#[derive(Debug, Clone)]
pub enum ReadFrom {
    Beginning,
    /// The group's committed offsets: what the group has not consumed yet.
    Committed(String),
}

/// What [`tally`] read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub messages: u64,
    pub distinct_keys: u64,
}

/// Reads `topics` (read_committed) from `from` to their current end and counts the messages and
/// distinct keys (over all the topics): what a reader would get. For checks and reports, not
/// for the hot path.
pub fn tally(brokers: &str, topics: &[&str], from: ReadFrom) -> anyhow::Result<Tally> {
    let mut keys = std::collections::HashSet::new();
    let mut messages = 0;
    for topic in topics {
        messages += tally_topic(brokers, topic, &from, &mut keys)?;
    }
    Ok(Tally { messages, distinct_keys: keys.len() as u64 })
}

fn tally_topic(brokers: &str, topic: &str, from: &ReadFrom, keys: &mut std::collections::HashSet<Vec<u8>>) -> anyhow::Result<u64> {
    use rdkafka::consumer::BaseConsumer;
    let group = match from {
        ReadFrom::Committed(group) => group.as_str(),
        ReadFrom::Beginning => "ehac-tally",
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()?;
    let timeout = Duration::from_secs(10);
    let mut tpl = TopicPartitionList::new();
    for t in consumer.fetch_metadata(Some(topic), timeout)?.topics() {
        for p in t.partitions() {
            tpl.add_partition(t.name(), p.id());
        }
    }
    let committed = match from {
        ReadFrom::Beginning => None,
        ReadFrom::Committed(_) => Some(consumer.committed_offsets(tpl.clone(), timeout)?),
    };
    // Partitions with something to read, and where each starts.
    let mut start = TopicPartitionList::new();
    let mut open = std::collections::HashSet::new();
    for element in tpl.elements() {
        let (low, high) = consumer.fetch_watermarks(topic, element.partition(), timeout)?;
        let offset = match committed.as_ref().and_then(|c| c.find_partition(topic, element.partition())).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => low,
        };
        if offset < high {
            start.add_partition_offset(topic, element.partition(), Offset::Offset(offset))?;
            open.insert(element.partition());
        }
    }
    if open.is_empty() {
        return Ok(0);
    }
    consumer.assign(&start)?;
    let mut messages = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    while !open.is_empty() {
        anyhow::ensure!(Instant::now() < deadline, "reading {topic} did not reach its end within 300 s");
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                messages += 1;
                keys.insert(m.key().map(<[u8]>::to_vec).unwrap_or_default());
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                open.remove(&partition);
            }
            Some(Err(e)) => anyhow::bail!("reading {topic}: {e}"),
            None => {}
        }
    }
    Ok(messages)
}
