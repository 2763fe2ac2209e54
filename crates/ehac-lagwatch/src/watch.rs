//! Turns each poll's [`Reading`] into a [`Snapshot`]: lag in messages and seconds per partition,
//! status per partition and group, and the status changes a notifier reports. No I/O of its own:
//! message times are read through the closure the caller passes.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::cluster::Reading;
use crate::status::{self, History, Owner, Rules, Sample, Status};
use crate::timestamps::{OffsetTimes, Source, Tp};

/// Everything lagwatch knows after a poll: what the API serves and the metrics show.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub at: String,
    #[serde(skip)]
    pub at_ms: i64,
    pub window_seconds: f64,
    pub groups: BTreeMap<String, GroupView>,
    #[serde(skip)]
    pub high_watermarks: BTreeMap<Tp, i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    pub group: String,
    /// The worst partition status; `None` while the group has committed no offset.
    pub status: Option<Status>,
    /// Live members, when the broker answers DescribeGroups.
    pub members: Option<usize>,
    pub total_lag: i64,
    /// The largest known lag in seconds over the group's partitions.
    pub max_lag_seconds: Option<f64>,
    pub partitions: Vec<PartitionView>,
    /// Partitions of the topics this group reads that it has never committed.
    pub partitions_without_commit: Vec<TopicPartition>,
    /// Why this poll could not read the group's offsets (the view is then the previous one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionView {
    pub topic: String,
    pub partition: i32,
    pub status: Status,
    pub committed_offset: i64,
    pub high_watermark: i64,
    pub lag: i64,
    /// Age of the next message the group will read; 0 when caught up; `None` when lagging but
    /// the message's time could not be found.
    pub lag_seconds: Option<f64>,
    /// Where `lag_seconds` came from: "caught_up", "message" or "interpolated".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_seconds_source: Option<&'static str>,
    /// When a poll first saw the current committed offset, if lagwatch saw it change.
    pub last_commit_at: Option<String>,
    #[serde(skip)]
    pub last_commit_ms: Option<i64>,
    /// The window the status was judged on: its first and last samples.
    pub window: WindowView,
}

#[derive(Debug, Clone, Serialize)]
pub struct WindowView {
    pub complete: bool,
    pub samples: usize,
    pub start: SampleView,
    pub end: SampleView,
}

#[derive(Debug, Clone, Serialize)]
pub struct SampleView {
    pub at: String,
    pub committed_offset: i64,
    pub lag: i64,
}

impl SampleView {
    fn of(s: &Sample) -> Self {
        SampleView { at: rfc3339(s.at_ms), committed_offset: s.committed, lag: s.lag() }
    }
}

/// A group's status changed; what a notifier sends.
#[derive(Debug, Clone, Serialize)]
pub struct StatusChange {
    /// "open" when the group went into a problem status, "close" when it came back to OK.
    pub event: &'static str,
    pub group: String,
    pub status: Status,
    pub previous_status: Option<Status>,
    pub at: String,
    /// When the problem began; the same for an open and its close.
    pub since: String,
    pub total_lag: i64,
    pub max_lag_seconds: Option<f64>,
    /// The partitions not OK (for a close: empty).
    pub partitions: Vec<PartitionView>,
}

/// How lag seconds were found this poll, for the lagwatch's own metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct LookupCounts {
    pub cached: u64,
    pub read: u64,
    pub interpolated: u64,
    pub unknown: u64,
}

pub struct Watcher {
    rules: Rules,
    times: OffsetTimes,
    histories: HashMap<(String, Tp), History>,
    /// The last status per group and when its current problem began.
    statuses: HashMap<String, (Status, i64)>,
    previous: BTreeMap<String, GroupView>,
}

pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Watcher {
    pub fn new(rules: Rules, table_size: usize) -> Self {
        Watcher {
            rules,
            times: OffsetTimes::new(table_size),
            histories: HashMap::new(),
            statuses: HashMap::new(),
            previous: BTreeMap::new(),
        }
    }

    /// Folds one poll in. `read_times` reads the timestamps of messages at the given offsets
    /// (those not cached); what it cannot read is interpolated.
    pub fn observe(
        &mut self,
        reading: &Reading,
        read_times: impl FnOnce(&[(Tp, i64)]) -> BTreeMap<(Tp, i64), i64>,
    ) -> (Snapshot, Vec<StatusChange>, LookupCounts) {
        let now = reading.at_ms;
        for (tp, hw) in &reading.high_watermarks {
            self.times.record_high_watermark(tp, *hw, now);
        }

        // Which message times are needed: every committed offset with lag behind it.
        let mut needed: HashSet<(String, i32, i64)> = HashSet::new();
        let mut to_read = Vec::new();
        for offsets in reading.committed.values().filter_map(|r| r.as_ref().ok()) {
            for (tp, &committed) in offsets {
                let Some(&hw) = reading.high_watermarks.get(tp) else { continue };
                if hw > committed && needed.insert((tp.0.clone(), tp.1, committed)) && self.times.cached(tp, committed).is_none() {
                    to_read.push((tp.clone(), committed));
                }
            }
        }
        let mut counts = LookupCounts { cached: (needed.len() - to_read.len()) as u64, ..Default::default() };
        let read = if to_read.is_empty() { BTreeMap::new() } else { read_times(&to_read) };
        counts.read = read.len() as u64;
        for ((tp, offset), ms) in &read {
            self.times.insert(tp, *offset, *ms);
        }
        self.times.retain(&needed);

        let mut groups = BTreeMap::new();
        let mut changes = Vec::new();
        for (group, result) in &reading.committed {
            let offsets = match result {
                Ok(offsets) => offsets,
                Err(e) => {
                    let mut view = self.previous.get(group).cloned().unwrap_or_else(|| empty_group(group));
                    view.error = Some(e.clone());
                    groups.insert(group.clone(), view);
                    continue;
                }
            };
            let membership = reading.membership.get(group).cloned().flatten();
            let mut partitions = Vec::new();
            for (tp, &committed) in offsets {
                let Some(&high_watermark) = reading.high_watermarks.get(tp) else { continue };
                let sample = Sample { at_ms: now, committed, high_watermark };
                let history = self.histories.entry((group.clone(), tp.clone())).or_default();
                history.push(sample, self.rules.window_ms);
                let owner = match &membership {
                    None => Owner::Unknown,
                    Some(m) if m.members == 0 => Owner::None,
                    Some(m) => match &m.owned {
                        Some(owned) if !owned.contains(tp) => Owner::None,
                        _ => Owner::Live,
                    },
                };
                let moved_at = history.moved_at_ms();
                let samples = history.samples();
                let status = status::evaluate(samples, now, &self.rules, owner);
                let (lag_seconds, source) = if sample.lag() == 0 {
                    (Some(0.0), Some("caught_up"))
                } else {
                    let found = self
                        .times
                        .cached(tp, committed)
                        .map(|t| (t, Source::Message))
                        .or_else(|| self.times.interpolate(tp, committed).map(|t| (t, Source::Interpolated)));
                    match found {
                        Some((t, source)) => {
                            if source == Source::Interpolated {
                                counts.interpolated += 1;
                            }
                            (Some(((now - t).max(0)) as f64 / 1000.0), Some(source.as_str()))
                        }
                        None => {
                            counts.unknown += 1;
                            (None, None)
                        }
                    }
                };
                let first = samples.first().expect("a sample was just pushed");
                partitions.push(PartitionView {
                    topic: tp.0.clone(),
                    partition: tp.1,
                    status,
                    committed_offset: committed,
                    high_watermark,
                    lag: sample.lag(),
                    lag_seconds,
                    lag_seconds_source: source,
                    last_commit_at: moved_at.map(rfc3339),
                    last_commit_ms: moved_at,
                    window: WindowView {
                        complete: first.at_ms <= now - self.rules.window_ms,
                        samples: samples.len(),
                        start: SampleView::of(first),
                        end: SampleView::of(&sample),
                    },
                });
            }
            let read_topics: HashSet<&str> = offsets.keys().map(|(t, _)| t.as_str()).collect();
            let partitions_without_commit = reading
                .high_watermarks
                .keys()
                .filter(|tp| read_topics.contains(tp.0.as_str()) && !offsets.contains_key(*tp))
                .map(|(topic, partition)| TopicPartition { topic: topic.clone(), partition: *partition })
                .collect();
            let status = partitions.iter().map(|p| p.status).max();
            let view = GroupView {
                group: group.clone(),
                status,
                members: membership.as_ref().map(|m| m.members),
                total_lag: partitions.iter().map(|p| p.lag).sum(),
                max_lag_seconds: partitions.iter().filter_map(|p| p.lag_seconds).reduce(f64::max),
                partitions,
                partitions_without_commit,
                error: None,
            };
            if let Some(status) = status {
                if let Some(change) = self.status_change(&view, status, now) {
                    changes.push(change);
                }
            }
            groups.insert(group.clone(), view);
        }
        // Histories of partitions no group has committed any more (a deleted topic, say).
        let live: HashSet<(String, Tp)> =
            groups.values().flat_map(|g| g.partitions.iter().map(|p| (g.group.clone(), (p.topic.clone(), p.partition)))).collect();
        self.histories.retain(|key, _| live.contains(key));
        self.previous = groups.clone();
        let snapshot = Snapshot {
            at: rfc3339(now),
            at_ms: now,
            window_seconds: self.rules.window_ms as f64 / 1000.0,
            groups,
            high_watermarks: reading.high_watermarks.clone(),
        };
        (snapshot, changes, counts)
    }

    fn status_change(&mut self, view: &GroupView, status: Status, now: i64) -> Option<StatusChange> {
        let previous = self.statuses.get(&view.group).copied();
        let since = match previous {
            Some((s, _)) if s == status => return None,
            // One incident from the first problem status to OK, whatever it went through.
            Some((s, since)) if s != Status::Ok => since,
            _ => now,
        };
        self.statuses.insert(view.group.clone(), (status, if status == Status::Ok { now } else { since }));
        let event = match (previous.map(|p| p.0), status) {
            (None | Some(Status::Ok), Status::Ok) => return None,
            (_, Status::Ok) => "close",
            _ => "open",
        };
        Some(StatusChange {
            event,
            group: view.group.clone(),
            status,
            previous_status: previous.map(|p| p.0),
            at: rfc3339(now),
            since: rfc3339(since),
            total_lag: view.total_lag,
            max_lag_seconds: view.max_lag_seconds,
            partitions: view.partitions.iter().filter(|p| p.status != Status::Ok).cloned().collect(),
        })
    }
}

fn empty_group(group: &str) -> GroupView {
    GroupView {
        group: group.to_owned(),
        status: None,
        members: None,
        total_lag: 0,
        max_lag_seconds: None,
        partitions: Vec::new(),
        partitions_without_commit: Vec::new(),
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Membership;

    const RULES: Rules = Rules { window_ms: 30_000, ok_lag: 0 };

    fn reading(at_ms: i64, hw: i64, committed: Option<i64>, members: Option<usize>) -> Reading {
        let tp: Tp = ("enriched".into(), 0);
        let other: Tp = ("enriched".into(), 1);
        Reading {
            at_ms,
            high_watermarks: BTreeMap::from([(tp.clone(), hw), (other, 0)]),
            committed: BTreeMap::from([("sink".to_owned(), Ok(committed.map(|c| BTreeMap::from([(tp, c)])).unwrap_or_default()))]),
            membership: BTreeMap::from([("sink".to_owned(), members.map(|members| Membership { members, owned: None }))]),
        }
    }

    #[test]
    fn lag_seconds_is_the_age_of_the_next_message_to_read_and_zero_when_caught_up() {
        let mut watcher = Watcher::new(RULES, 100);
        let (snapshot, _, counts) = watcher.observe(&reading(100_000, 50, Some(40), Some(1)), |wanted| {
            assert_eq!(wanted, [(("enriched".to_owned(), 0), 40)]);
            BTreeMap::from([((("enriched".to_owned(), 0), 40), 70_000)])
        });
        let p = &snapshot.groups["sink"].partitions[0];
        assert_eq!((p.lag, p.lag_seconds, p.lag_seconds_source), (10, Some(30.0), Some("message")));
        assert_eq!(counts.read, 1);
        assert_eq!(
            snapshot.groups["sink"].partitions_without_commit,
            [TopicPartition { topic: "enriched".into(), partition: 1 }],
            "no made-up lag for a partition never committed"
        );

        // Cached: not read again.
        let (snapshot, _, counts) = watcher.observe(&reading(101_000, 60, Some(40), Some(1)), |_| panic!("cached"));
        assert_eq!(snapshot.groups["sink"].partitions[0].lag_seconds, Some(31.0));
        assert_eq!(counts.cached, 1);

        let (snapshot, _, _) = watcher.observe(&reading(102_000, 60, Some(60), Some(1)), |_| panic!("nothing to read"));
        let p = &snapshot.groups["sink"].partitions[0];
        assert_eq!((p.lag, p.lag_seconds), (0, Some(0.0)));
    }

    #[test]
    fn an_unreadable_message_is_placed_from_the_watermark_table_or_left_unknown() {
        let mut watcher = Watcher::new(RULES, 100);
        watcher.observe(&reading(10_000, 100, Some(100), None), |_| BTreeMap::new());
        watcher.observe(&reading(20_000, 200, Some(100), None), |_| BTreeMap::new());
        let (snapshot, _, counts) = watcher.observe(&reading(30_000, 300, Some(150), None), |_| BTreeMap::new());
        let p = &snapshot.groups["sink"].partitions[0];
        assert_eq!((p.lag_seconds, p.lag_seconds_source), (Some(15.0), Some("interpolated")));
        assert_eq!(counts.interpolated, 1);

        let (snapshot, _, counts) = watcher.observe(&reading(40_000, 300, Some(50), None), |_| BTreeMap::new());
        assert_eq!(snapshot.groups["sink"].partitions[0].lag_seconds, None, "older than the table: unknown, not invented");
        assert_eq!(snapshot.groups["sink"].max_lag_seconds, None);
        assert_eq!(counts.unknown, 1);
    }

    #[test]
    fn a_group_without_commits_has_no_status_and_no_partitions() {
        let mut watcher = Watcher::new(RULES, 100);
        let (snapshot, changes, _) = watcher.observe(&reading(10_000, 100, None, Some(0)), |_| BTreeMap::new());
        let group = &snapshot.groups["sink"];
        assert_eq!((group.status, group.partitions.len(), group.max_lag_seconds), (None, 0, None));
        assert!(changes.is_empty());
    }

    #[test]
    fn a_stopped_group_opens_an_incident_and_closes_it_when_caught_up() {
        let mut watcher = Watcher::new(RULES, 100);
        let mut events = Vec::new();
        let mut statuses = Vec::new();
        // Caught up, then stuck at 100 while the topic grows, then caught up again.
        let polls = [(100, 100), (110, 100), (120, 100), (130, 100), (140, 100), (150, 100), (160, 160)];
        for (i, (hw, committed)) in polls.into_iter().enumerate() {
            let (snapshot, changes, _) =
                watcher.observe(&reading(i as i64 * 10_000, hw, Some(committed), Some(0)), |w| w.iter().map(|k| (k.clone(), 0)).collect());
            statuses.push(snapshot.groups["sink"].status.unwrap());
            events.extend(changes.into_iter().map(|c| (c.event, c.status, c.since)));
        }
        use Status::*;
        assert_eq!(statuses, [Ok, Ok, Ok, Ok, Stop, Stop, Ok], "STOP once a whole window passed with lag and no commit");
        assert_eq!(events, [("open", Stop, rfc3339(40_000)), ("close", Ok, rfc3339(40_000))]);
    }

    #[test]
    fn a_live_member_that_does_not_commit_is_stall() {
        let mut watcher = Watcher::new(RULES, 100);
        let mut last = None;
        for i in 0..5 {
            let (snapshot, _, _) =
                watcher.observe(&reading(i * 10_000, 150 + i, Some(100), Some(2)), |w| w.iter().map(|k| (k.clone(), 0)).collect());
            last = snapshot.groups["sink"].status;
        }
        assert_eq!(last, Some(Status::Stall));
    }
}
