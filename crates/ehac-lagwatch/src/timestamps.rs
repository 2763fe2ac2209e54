//! When was the message at a given offset written? Lag in seconds is the age of the next message a
//! group will read, so lagwatch needs that time for every committed offset with lag behind it.
//!
//! The first answer is the message's own timestamp, read once and cached per (topic, partition,
//! offset). When the message cannot be read (deleted by retention, a broker error), the time is
//! interpolated from a table of high watermarks seen by earlier polls, as kafka-lag-exporter does.

use std::collections::{HashMap, HashSet, VecDeque};

/// A topic partition.
pub type Tp = (String, i32);

/// Where a message time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The message's own timestamp (CreateTime or LogAppendTime).
    Message,
    /// Interpolated between two high watermarks seen by earlier polls.
    Interpolated,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Message => "message",
            Source::Interpolated => "interpolated",
        }
    }
}

#[derive(Debug)]
pub struct OffsetTimes {
    read: HashMap<(String, i32, i64), i64>,
    /// Per partition, (high watermark, a poll that saw it), oldest first.
    watermarks: HashMap<Tp, VecDeque<(i64, i64)>>,
    table_size: usize,
}

impl OffsetTimes {
    /// `table_size` bounds each partition's watermark table; older points are thinned out, not
    /// dropped, so old offsets can still be placed, more coarsely.
    pub fn new(table_size: usize) -> Self {
        OffsetTimes { read: HashMap::new(), watermarks: HashMap::new(), table_size: table_size.max(4) }
    }

    /// Notes that the partition's high watermark was `high_watermark` at `at_ms`.
    pub fn record_high_watermark(&mut self, tp: &Tp, high_watermark: i64, at_ms: i64) {
        let table = self.watermarks.entry(tp.clone()).or_default();
        let n = table.len();
        match table.back() {
            // A flat stretch is kept as its first and last sighting: the next message was
            // written after the last one.
            Some(&(last, _)) if high_watermark == last && n >= 2 && table[n - 2].0 == last => {
                table[n - 1].1 = at_ms;
                return;
            }
            // The partition was truncated or recreated: earlier points describe other messages.
            Some(&(last, _)) if high_watermark < last => table.clear(),
            _ => {}
        }
        table.push_back((high_watermark, at_ms));
        if table.len() > self.table_size {
            // Drop every other point of the older half: recent times stay precise.
            let half = table.len() / 2;
            let mut i = 0;
            table.retain(|_| {
                i += 1;
                i > half || i % 2 == 1
            });
        }
    }

    /// The cached time of the message at this offset, if it was read before.
    pub fn cached(&self, tp: &Tp, offset: i64) -> Option<i64> {
        self.read.get(&(tp.0.clone(), tp.1, offset)).copied()
    }

    pub fn insert(&mut self, tp: &Tp, offset: i64, timestamp_ms: i64) {
        self.read.insert((tp.0.clone(), tp.1, offset), timestamp_ms);
    }

    /// Forgets read times of offsets no group has committed any more.
    pub fn retain(&mut self, wanted: &HashSet<(String, i32, i64)>) {
        self.read.retain(|key, _| wanted.contains(key));
    }

    /// When the message at `offset` was written, from the watermark table: between the last
    /// poll whose high watermark did not include it and the first one that did. `None` if the
    /// table does not reach back that far.
    pub fn interpolate(&self, tp: &Tp, offset: i64) -> Option<i64> {
        let table = self.watermarks.get(tp)?;
        let after = table.iter().position(|&(hw, _)| hw > offset)?;
        let (hw_after, t_after) = table[after];
        let (hw_before, t_before) = *table.get(after.checked_sub(1)?)?;
        let fraction = (offset - hw_before) as f64 / (hw_after - hw_before) as f64;
        Some(t_before + ((t_after - t_before) as f64 * fraction).round() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> Tp {
        ("raw".into(), 3)
    }

    #[test]
    fn an_offset_between_two_watermarks_is_placed_in_proportion() {
        let mut times = OffsetTimes::new(100);
        times.record_high_watermark(&tp(), 100, 10_000);
        times.record_high_watermark(&tp(), 200, 20_000);
        times.record_high_watermark(&tp(), 200, 30_000);
        times.record_high_watermark(&tp(), 300, 40_000);
        assert_eq!(times.interpolate(&tp(), 150), Some(15_000));
        assert_eq!(times.interpolate(&tp(), 100), Some(10_000));
        // The watermark was still 200 at 30 s: offset 200 and on were written after that.
        assert_eq!(times.interpolate(&tp(), 250), Some(35_000));
    }

    #[test]
    fn offsets_older_than_the_table_or_not_written_yet_have_no_time() {
        let mut times = OffsetTimes::new(100);
        times.record_high_watermark(&tp(), 100, 10_000);
        times.record_high_watermark(&tp(), 200, 20_000);
        assert_eq!(times.interpolate(&tp(), 50), None);
        assert_eq!(times.interpolate(&tp(), 200), None);
        assert_eq!(times.interpolate(&("other".into(), 0), 1), None);
    }

    #[test]
    fn a_full_table_thins_its_older_half_and_keeps_reaching_back() {
        let mut times = OffsetTimes::new(10);
        for i in 1..=1_000 {
            times.record_high_watermark(&tp(), i * 10, i * 1_000);
        }
        let table = &times.watermarks[&tp()];
        assert!(table.len() <= 10, "{}", table.len());
        assert_eq!(table.back(), Some(&(10_000, 1_000_000)));
        assert!(table.front().unwrap().0 < 5_000, "old offsets stay placeable: {table:?}");
        let t = times.interpolate(&tp(), 9_995).unwrap();
        assert!((999_000..=1_000_000).contains(&t), "{t}");
    }

    #[test]
    fn a_watermark_going_back_starts_a_new_table() {
        let mut times = OffsetTimes::new(100);
        times.record_high_watermark(&tp(), 500, 10_000);
        times.record_high_watermark(&tp(), 600, 20_000);
        times.record_high_watermark(&tp(), 5, 30_000);
        times.record_high_watermark(&tp(), 10, 40_000);
        assert_eq!(times.interpolate(&tp(), 550), None);
        assert_eq!(times.interpolate(&tp(), 6), Some(32_000));
    }

    #[test]
    fn read_times_are_cached_until_no_group_needs_them() {
        let mut times = OffsetTimes::new(10);
        times.insert(&tp(), 42, 1_234);
        assert_eq!(times.cached(&tp(), 42), Some(1_234));
        times.retain(&HashSet::from([("raw".to_owned(), 3, 43)]));
        assert_eq!(times.cached(&tp(), 42), None);
    }
}
