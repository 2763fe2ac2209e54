//! Prometheus series from each snapshot. A series exists exactly while lagwatch has a number for
//! it: partitions a group never committed have none, lag in seconds that could not be found is
//! NaN, and a group whose members all left keeps its series (its commits are still there).

use std::collections::HashSet;

use prometheus::{Gauge, GaugeVec, Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

use crate::status::Status;
use crate::watch::{LookupCounts, Snapshot};

pub struct Metrics {
    lag_messages: GaugeVec,
    lag_seconds: GaugeVec,
    committed_offset: GaugeVec,
    last_commit: GaugeVec,
    group_lag_messages: GaugeVec,
    group_max_lag_seconds: GaugeVec,
    group_status: GaugeVec,
    group_members: GaugeVec,
    high_watermark: GaugeVec,
    pub polls: IntCounterVec,
    pub poll_seconds: Histogram,
    pub last_poll: Gauge,
    pub errors: IntCounterVec,
    lookups: IntCounterVec,
    pub notifications: IntCounterVec,
    /// Label sets set by the previous snapshot, per vector, to remove the ones that vanish.
    previous: Vec<HashSet<Vec<String>>>,
}

const PARTITION: &[&str] = &["group", "topic", "partition"];

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let gauge = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<GaugeVec> {
            let g = GaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let metrics = Metrics {
            lag_messages: gauge("consumer_lag_messages", "Messages after the group's committed offset, per partition", PARTITION)?,
            lag_seconds: gauge("consumer_lag_seconds", "Age of the next message the group will read (0 when caught up; NaN when its time is unknown)", PARTITION)?,
            committed_offset: gauge("consumer_committed_offset", "The group's committed offset: the next message it will read", PARTITION)?,
            last_commit: gauge("consumer_last_commit_timestamp_seconds", "When lagwatch first saw the current committed offset (polling: up to one interval late); absent until it has seen one change", PARTITION)?,
            group_lag_messages: gauge("consumer_group_lag_messages", "Messages the group has yet to read, over all its partitions", &["group"])?,
            group_max_lag_seconds: gauge("consumer_group_max_lag_seconds", "Largest known lag in seconds over the group's partitions", &["group"])?,
            group_status: gauge("consumer_group_status", "1 for the group's current Burrow-style status (OK, WARN, REWIND, STALL, STOP), 0 for the others", &["group", "status"])?,
            group_members: gauge("consumer_group_members", "Live members of the group (absent when the broker does not answer DescribeGroups)", &["group"])?,
            high_watermark: gauge("partition_high_watermark", "Offset the next message written to the partition will get", &["topic", "partition"])?,
            polls: counter("lagwatch_polls_total", "Polls of the cluster, by result", &["result"])?,
            poll_seconds: {
                let h = Histogram::with_opts(HistogramOpts::new("lagwatch_poll_seconds", "Time to read the cluster and compute lag and status").buckets(prometheus::exponential_buckets(0.005, 2.0, 12)?))?;
                registry.register(Box::new(h.clone()))?;
                h
            },
            last_poll: {
                let g = Gauge::new("lagwatch_last_poll_timestamp_seconds", "When the last successful poll read the cluster")?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            errors: counter("lagwatch_errors_total", "Failed reads, by what was being read", &["stage"])?,
            lookups: counter("lagwatch_message_time_lookups_total", "How the time of the message at a committed offset was found", &["source"])?,
            notifications: counter("lagwatch_notifications_total", "Webhook notifications, by event and result", &["event", "result"])?,
            previous: vec![HashSet::new(); 9],
        };
        Ok(metrics)
    }

    pub fn count_lookups(&self, counts: &LookupCounts) {
        for (source, n) in
            [("cache", counts.cached), ("message", counts.read), ("interpolated", counts.interpolated), ("unknown", counts.unknown)]
        {
            self.lookups.with_label_values(&[source]).inc_by(n);
        }
    }

    pub fn update(&mut self, snapshot: &Snapshot) {
        let mut now: Vec<HashSet<Vec<String>>> = vec![HashSet::new(); 9];
        let mut set = |slot: usize, vec: &GaugeVec, labels: Vec<String>, value: f64| {
            let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
            vec.with_label_values(&refs).set(value);
            now[slot].insert(labels);
        };
        for group in snapshot.groups.values() {
            for p in &group.partitions {
                let labels = vec![group.group.clone(), p.topic.clone(), p.partition.to_string()];
                set(0, &self.lag_messages, labels.clone(), p.lag as f64);
                set(1, &self.lag_seconds, labels.clone(), p.lag_seconds.unwrap_or(f64::NAN));
                set(2, &self.committed_offset, labels.clone(), p.committed_offset as f64);
                if let Some(ms) = p.last_commit_ms {
                    set(3, &self.last_commit, labels, ms as f64 / 1000.0);
                }
            }
            if let Some(status) = group.status {
                set(4, &self.group_lag_messages, vec![group.group.clone()], group.total_lag as f64);
                set(5, &self.group_max_lag_seconds, vec![group.group.clone()], group.max_lag_seconds.unwrap_or(f64::NAN));
                for s in Status::ALL {
                    set(6, &self.group_status, vec![group.group.clone(), s.as_str().to_owned()], if s == status { 1.0 } else { 0.0 });
                }
            }
            if let Some(members) = group.members {
                set(7, &self.group_members, vec![group.group.clone()], members as f64);
            }
        }
        // Watermarks of partitions that no longer exist go with them.
        for ((topic, partition), hw) in &snapshot.high_watermarks {
            set(8, &self.high_watermark, vec![topic.clone(), partition.to_string()], *hw as f64);
        }
        let vecs = [
            &self.lag_messages,
            &self.lag_seconds,
            &self.committed_offset,
            &self.last_commit,
            &self.group_lag_messages,
            &self.group_max_lag_seconds,
            &self.group_status,
            &self.group_members,
            &self.high_watermark,
        ];
        for (slot, vec) in vecs.into_iter().enumerate() {
            for gone in self.previous[slot].difference(&now[slot]) {
                let refs: Vec<&str> = gone.iter().map(String::as_str).collect();
                let _ = vec.remove_label_values(&refs);
            }
        }
        self.previous = now;

        self.last_poll.set(snapshot.at_ms as f64 / 1000.0);
    }
}
