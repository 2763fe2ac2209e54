//! What lagwatch asks the cluster, with standard Kafka requests only: Metadata (topics),
//! ListOffsets (high watermarks, one request for all partitions), OffsetFetch per watched group
//! (committed offsets, without joining the group), DescribeGroups (live members), and Fetch of
//! single messages by a consumer that assigns partitions itself and never commits.
//!
//! librdkafka calls block, so [`Cluster::read`] and [`Cluster::message_times`] are meant to run on
//! a blocking thread.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::timestamps::Tp;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading topic metadata: {0}")]
    Metadata(KafkaError),
    #[error("reading high watermarks: {0}")]
    HighWatermarks(KafkaError),
    #[error("creating a Kafka client: {0}")]
    Client(KafkaError),
}

/// Who is in a group right now, per DescribeGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub members: usize,
    /// Partitions held by a member, when the broker returns assignments.
    pub owned: Option<BTreeSet<Tp>>,
}

/// One poll's view of the cluster.
#[derive(Debug, Clone)]
pub struct Reading {
    pub at_ms: i64,
    pub high_watermarks: BTreeMap<Tp, i64>,
    /// Per group: committed offsets of the partitions that have one, or why they could not be read.
    pub committed: BTreeMap<String, Result<BTreeMap<Tp, i64>, String>>,
    /// Per group: its members, or `None` when the broker would not say.
    pub membership: BTreeMap<String, Option<Membership>>,
}

/// Clients to one cluster, kept across polls.
pub struct Cluster {
    brokers: String,
    timeout: Duration,
    topics: Option<Vec<String>>,
    /// Metadata, high watermarks and DescribeGroups. Never subscribes, never commits.
    admin: BaseConsumer,
    /// Reads single messages for their timestamps. Assigns partitions itself; never commits.
    reader: BaseConsumer,
    /// One client per watched group, for OffsetFetch, which takes the group from the client's
    /// `group.id`. It never subscribes, so it never joins the group.
    offset_clients: HashMap<String, BaseConsumer>,
    /// After DescribeGroups failed, it is tried again only after this instant.
    membership_retry_at: Option<Instant>,
    membership_failures: u32,
}

/// How long to wait before asking DescribeGroups again after a broker refused it.
/// The longest wait before asking DescribeGroups again after failures. The first retry comes
/// after 2 s and the wait doubles: a coordinator still loading at broker start (Kafka answers
/// CoordinatorLoadInProgress) is asked again soon, a broker that never answers rarely.
const MEMBERSHIP_RETRY: Duration = Duration::from_secs(60);

fn base_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Lag is measured against the high watermark, whatever is in flight in transactions.
        .set("isolation.level", "read_uncommitted")
        .set("client.id", "ehac-lagwatch");
    config
}

impl Cluster {
    /// `topics` limits which topics' committed offsets are fetched; `None` means every topic
    /// except internal ones (`__`-prefixed).
    pub fn connect(brokers: &str, timeout: Duration, topics: Option<Vec<String>>) -> Result<Cluster, ReadError> {
        // librdkafka wants a group.id before it assigns partitions; this one never joins or
        // commits, so it never appears as a group on the broker.
        let admin = base_config(brokers).set("group.id", "ehac-lagwatch").create().map_err(ReadError::Client)?;
        let reader = base_config(brokers)
            .set("group.id", "ehac-lagwatch")
            // The next message the group will read, or the oldest one left if retention took it.
            .set("auto.offset.reset", "earliest")
            // One message per partition is all that is wanted: keep prefetching small.
            .set("queued.min.messages", "1")
            .set("queued.max.messages.kbytes", "1024")
            .set("max.partition.fetch.bytes", "65536")
            .set("fetch.wait.max.ms", "100")
            .create()
            .map_err(ReadError::Client)?;
        Ok(Cluster {
            brokers: brokers.to_owned(),
            timeout,
            topics,
            admin,
            reader,
            offset_clients: HashMap::new(),
            membership_retry_at: None,
            membership_failures: 0,
        })
    }

    /// Topics, high watermarks, and every group's committed offsets and members.
    pub fn read(&mut self, groups: &[String]) -> Result<Reading, ReadError> {
        let metadata = self.admin.fetch_metadata(None, self.timeout).map_err(ReadError::Metadata)?;
        let wanted = |name: &str| match &self.topics {
            Some(topics) => topics.iter().any(|t| t == name),
            None => !name.starts_with("__"),
        };
        let mut partitions = TopicPartitionList::new();
        for topic in metadata.topics().iter().filter(|t| wanted(t.name()) && t.error().is_none()) {
            for p in topic.partitions() {
                partitions.add_partition_offset(topic.name(), p.id(), Offset::End).expect("Offset::End is valid");
            }
        }
        let at_ms = chrono::Utc::now().timestamp_millis();
        let mut high_watermarks = BTreeMap::new();
        if partitions.count() > 0 {
            // ListOffsets with the "latest" timestamp (-1) for every partition in one request
            // per leader; fetch_watermarks would ask twice per partition.
            let ends = self.admin.offsets_for_times(partitions.clone(), self.timeout).map_err(ReadError::HighWatermarks)?;
            for e in ends.elements() {
                if let (Offset::Offset(hw), Ok(())) = (e.offset(), e.error()) {
                    high_watermarks.insert((e.topic().to_owned(), e.partition()), hw);
                }
            }
        }

        let mut committed = BTreeMap::new();
        for group in groups {
            let result = self.committed(group, &partitions).map_err(|e| e.to_string());
            committed.insert(group.clone(), result);
        }
        let membership = groups.iter().map(|g| (g.clone(), None)).collect();
        let mut reading = Reading { at_ms, high_watermarks, committed, membership };
        self.read_membership(groups, &mut reading);
        Ok(reading)
    }

    fn committed(&mut self, group: &str, partitions: &TopicPartitionList) -> Result<BTreeMap<Tp, i64>, KafkaError> {
        if !self.offset_clients.contains_key(group) {
            let client = base_config(&self.brokers).set("group.id", group).create()?;
            self.offset_clients.insert(group.to_owned(), client);
        }
        let mut out = BTreeMap::new();
        if partitions.count() == 0 {
            return Ok(out);
        }
        let committed = self.offset_clients[group].committed_offsets(partitions.clone(), self.timeout)?;
        for e in committed.elements() {
            // Offset::Invalid: the group never committed this partition. No number is made up.
            if let (Offset::Offset(offset), Ok(())) = (e.offset(), e.error()) {
                out.insert((e.topic().to_owned(), e.partition()), offset);
            }
        }
        Ok(out)
    }

    fn read_membership(&mut self, groups: &[String], reading: &mut Reading) {
        if self.membership_retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        for group in groups {
            match self.admin.fetch_group_list(Some(group), self.timeout) {
                Ok(list) => {
                    let found = list.groups().iter().find(|g| g.name() == group);
                    let membership = match found {
                        Some(g) => {
                            let assignments: Option<Vec<Vec<Tp>>> =
                                g.members().iter().map(|m| m.assignment().and_then(parse_assignment)).collect();
                            let owned = assignments.filter(|a| !a.is_empty()).map(|a| a.into_iter().flatten().collect());
                            Membership { members: g.members().len(), owned }
                        }
                        None => Membership { members: 0, owned: None },
                    };
                    reading.membership.insert(group.clone(), Some(membership));
                }
                Err(e) => {
                    let wait = (Duration::from_secs(2) * 2u32.saturating_pow(self.membership_failures)).min(MEMBERSHIP_RETRY);
                    self.membership_failures = self.membership_failures.saturating_add(1);
                    tracing::warn!(error = %e, group, retry_in_s = wait.as_secs(), "DescribeGroups failed; without membership a stuck group counts as STOP, not STALL");
                    self.membership_retry_at = Some(Instant::now() + wait);
                    return;
                }
            }
        }
        self.membership_retry_at = None;
        self.membership_failures = 0;
    }

    /// Reads the message at each (partition, offset) and returns its timestamp in ms. If that
    /// message is gone, the first one after it stands in: it is the next one the group will
    /// read. Gives up on what is not read by `deadline`; the caller interpolates those.
    pub fn message_times(&mut self, wanted: &[(Tp, i64)], deadline: Instant) -> BTreeMap<(Tp, i64), i64> {
        let mut found = BTreeMap::new();
        // One offset per partition can be assigned at a time; several groups reading one topic
        // at different offsets take several rounds.
        let mut pending: Vec<&(Tp, i64)> = wanted.iter().collect();
        pending.sort();
        pending.dedup();
        while !pending.is_empty() && Instant::now() < deadline {
            let mut round: BTreeMap<&Tp, i64> = BTreeMap::new();
            let mut rest = Vec::new();
            for item in pending {
                if round.contains_key(&item.0) {
                    rest.push(item);
                } else {
                    round.insert(&item.0, item.1);
                }
            }
            pending = rest;
            let mut assignment = TopicPartitionList::new();
            for (tp, offset) in &round {
                assignment.add_partition_offset(&tp.0, tp.1, Offset::Offset(*offset)).expect("a valid offset");
            }
            if let Err(e) = self.reader.assign(&assignment) {
                tracing::warn!(error = %e, "assigning partitions to read message times failed");
                break;
            }
            while !round.is_empty() && Instant::now() < deadline {
                match self.reader.poll(Duration::from_millis(100)) {
                    Some(Ok(message)) => {
                        let tp = (message.topic().to_owned(), message.partition());
                        if let Some(&offset) = round.get(&tp) {
                            if message.offset() >= offset {
                                if let Some(ms) = message.timestamp().to_millis() {
                                    found.insert((tp.clone(), offset), ms);
                                }
                                round.remove(&tp);
                            }
                        }
                    }
                    Some(Err(e)) => tracing::debug!(error = %e, "reading a message for its time"),
                    None => {}
                }
            }
            // Stop prefetching what is no longer wanted.
            let _ = self.reader.unassign();
        }
        found
    }
}

/// The partitions in a consumer-protocol assignment (what DescribeGroups returns per member):
/// version i16, then [topic: string, partitions: [i32]], then user data, which is ignored.
pub fn parse_assignment(bytes: &[u8]) -> Option<Vec<Tp>> {
    let mut r = bytes;
    fn take<'a>(r: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if r.len() < n {
            return None;
        }
        let (head, tail) = r.split_at(n);
        *r = tail;
        Some(head)
    }
    let i16_ = |r: &mut &[u8]| take(r, 2).map(|b| i16::from_be_bytes([b[0], b[1]]));
    let i32_ = |r: &mut &[u8]| take(r, 4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let _version = i16_(&mut r)?;
    let topics = i32_(&mut r)?;
    let mut out = Vec::new();
    for _ in 0..topics.max(0) {
        let len = i16_(&mut r)?;
        let name = std::str::from_utf8(take(&mut r, len.max(0) as usize)?).ok()?.to_owned();
        let count = i32_(&mut r)?;
        for _ in 0..count.max(0) {
            out.push((name.clone(), i32_(&mut r)?));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_protocol_assignment_lists_its_partitions() {
        // As tansu stored one member's assignment: version 0, topic "explore-32525", partitions 0, 1, 2, no user data.
        let bytes = [
            0, 0, 0, 0, 0, 1, 0, 13, 101, 120, 112, 108, 111, 114, 101, 45, 51, 50, 53, 50, 53, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0,
            0, 2, 0, 0, 0, 0,
        ];
        let topic = "explore-32525".to_owned();
        assert_eq!(parse_assignment(&bytes), Some(vec![(topic.clone(), 0), (topic.clone(), 1), (topic, 2)]));
    }

    #[test]
    fn a_truncated_assignment_is_not_guessed_at() {
        assert_eq!(parse_assignment(&[0, 0, 0, 0, 0, 1, 0, 13, 101]), None);
        assert_eq!(parse_assignment(&[]), None);
    }
}
