//! Burrow-style consumer status over a sliding window of observations. Pure: no I/O, no clock.
//!
//! Burrow evaluates the stream of offset commits it reads from `__consumer_offsets`. The standard
//! Kafka API (OffsetFetch) only answers "what is committed now", so lagwatch samples that every
//! poll, and a commit of the same offset looks exactly like no commit at all. The difference
//! between STALL and STOP therefore comes from group membership (DescribeGroups): a live member
//! that owns the partition is evidence the consumer is still there; without that evidence the
//! consumer is taken to have stopped.

use serde::Serialize;

/// One partition's state as seen by one poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sample {
    pub at_ms: i64,
    /// The group's committed offset: the next message it will read.
    pub committed: i64,
    pub high_watermark: i64,
}

impl Sample {
    /// Messages the group has yet to read. A committed offset past the high watermark (the topic
    /// was recreated, say) counts as no lag rather than a negative one.
    pub fn lag(&self) -> i64 {
        (self.high_watermark - self.committed).max(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Caught up at some point in the window, or moving and not falling behind.
    Ok,
    /// The committed offset moves but the lag grew at every poll of the window.
    Warn,
    /// The committed offset went backwards (a reset or a replay).
    Rewind,
    /// The committed offset did not move for the whole window while there was lag, and a live
    /// member of the group owns the partition.
    Stall,
    /// The committed offset did not move for the whole window while there was lag, and nothing
    /// shows a live consumer.
    Stop,
}

impl Status {
    /// Every status, mildest first; a group's status is its worst partition's.
    pub const ALL: [Status; 5] = [Status::Ok, Status::Warn, Status::Rewind, Status::Stall, Status::Stop];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Rewind => "REWIND",
            Status::Stall => "STALL",
            Status::Stop => "STOP",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known about who consumes a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// A live member of the group holds the partition (or the group has live members and the
    /// broker does not say who holds what).
    Live,
    /// The group has no live member holding it.
    None,
    /// Membership could not be read (the broker refused DescribeGroups).
    Unknown,
}

/// The status rules' parameters.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// How far back the rules look.
    pub window_ms: i64,
    /// A lag at or below this counts as caught up.
    pub ok_lag: i64,
}

/// The status of one partition, given its samples (oldest first) and who owns it.
///
/// `samples` should cover the window: everything newer than `now_ms - window_ms` plus the one
/// sample just before that, which [`History`] keeps. Until the samples reach back a whole window
/// only REWIND can be told apart from OK.
pub fn evaluate(samples: &[Sample], now_ms: i64, rules: &Rules, owner: Owner) -> Status {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return Status::Ok;
    };
    // Never an error while caught up now: an idle partition with nothing to read is fine.
    if last.lag() <= rules.ok_lag {
        return Status::Ok;
    }
    if samples.windows(2).any(|w| w[1].committed < w[0].committed) {
        return Status::Rewind;
    }
    let whole_window = first.at_ms <= now_ms - rules.window_ms;
    if !whole_window || samples.len() < 2 {
        return Status::Ok;
    }
    if samples.iter().any(|s| s.lag() <= rules.ok_lag) {
        return Status::Ok;
    }
    if samples.iter().all(|s| s.committed == first.committed) {
        return match owner {
            Owner::Live => Status::Stall,
            Owner::None | Owner::Unknown => Status::Stop,
        };
    }
    let growing_every_poll = samples.windows(2).all(|w| w[1].lag() >= w[0].lag());
    if growing_every_poll && last.lag() > first.lag() {
        return Status::Warn;
    }
    Status::Ok
}

/// A partition's recent samples for one group: the window plus one older sample as its anchor,
/// and when the committed offset was last seen to move.
#[derive(Debug, Clone, Default)]
pub struct History {
    samples: std::collections::VecDeque<Sample>,
    /// When a poll first saw the current committed offset, if lagwatch has seen it change.
    moved_at_ms: Option<i64>,
}

impl History {
    pub fn push(&mut self, sample: Sample, window_ms: i64) {
        if let Some(previous) = self.samples.back() {
            if previous.committed != sample.committed {
                self.moved_at_ms = Some(sample.at_ms);
            }
        }
        self.samples.push_back(sample);
        let boundary = sample.at_ms - window_ms;
        while self.samples.len() > 2 && self.samples[1].at_ms <= boundary {
            self.samples.pop_front();
        }
    }

    /// The samples, oldest first.
    pub fn samples(&mut self) -> &[Sample] {
        self.samples.make_contiguous()
    }

    pub fn moved_at_ms(&self) -> Option<i64> {
        self.moved_at_ms
    }

    pub fn last(&self) -> Option<&Sample> {
        self.samples.back()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules = Rules { window_ms: 60_000, ok_lag: 0 };
    const NOW: i64 = 1_000_000;

    /// Samples every 10 s ending at NOW, from (committed, high watermark) pairs.
    fn window(points: &[(i64, i64)]) -> Vec<Sample> {
        let n = points.len() as i64;
        points
            .iter()
            .enumerate()
            .map(|(i, &(committed, high_watermark))| Sample { at_ms: NOW - (n - 1 - i as i64) * 10_000, committed, high_watermark })
            .collect()
    }

    #[test]
    fn an_idle_partition_with_zero_lag_is_ok_however_long_nothing_moves() {
        let samples = window(&[(500, 500); 8]);
        assert_eq!(evaluate(&samples, NOW, &RULES, Owner::None), Status::Ok);
    }

    #[test]
    fn no_movement_with_lag_and_no_live_member_is_stop() {
        let samples = window(&[(100, 150), (100, 180), (100, 200), (100, 260), (100, 300), (100, 310), (100, 400)]);
        assert_eq!(evaluate(&samples, NOW, &RULES, Owner::None), Status::Stop);
        assert_eq!(
            evaluate(&samples, NOW, &RULES, Owner::Unknown),
            Status::Stop,
            "without membership there is no evidence of a live consumer"
        );
    }

    #[test]
    fn no_movement_with_lag_and_a_live_owner_is_stall() {
        let samples = window(&[(100, 150); 7]);
        assert_eq!(evaluate(&samples, NOW, &RULES, Owner::Live), Status::Stall);
    }

    #[test]
    fn a_committed_offset_going_back_is_rewind_even_before_the_window_is_full() {
        let samples = window(&[(100, 400), (120, 400), (40, 400)]);
        assert_eq!(evaluate(&samples, NOW, &RULES, Owner::Live), Status::Rewind);
    }

    #[test]
    fn moving_but_lag_growing_at_every_poll_is_warn() {
        let samples = window(&[(100, 150), (110, 170), (120, 200), (130, 240), (140, 280), (150, 330), (160, 400)]);
        assert_eq!(evaluate(&samples, NOW, &RULES, Owner::Live), Status::Warn);
    }

    #[test]
    fn moving_with_lag_that_sometimes_shrinks_is_ok() {
        let samples = window(&[(100, 150), (110, 170), (160, 200), (170, 240), (230, 280), (290, 330), (300, 400)]);
        assert_eq!(evaluate(&samples, NOW, &RULES, Owner::Live), Status::Ok);
    }

    #[test]
    fn caught_up_once_in_the_window_is_ok_even_if_stuck_since() {
        let samples = window(&[(150, 150), (150, 170), (150, 200), (150, 240), (150, 280), (150, 330), (150, 400)]);
        assert_eq!(evaluate(&samples, NOW, &RULES, Owner::None), Status::Ok);
    }

    #[test]
    fn a_window_not_yet_full_cannot_be_stop_or_warn() {
        let samples = window(&[(100, 150), (100, 180), (100, 200)]);
        assert_eq!(evaluate(&samples, NOW, &RULES, Owner::None), Status::Ok);
    }

    #[test]
    fn lag_within_the_ok_threshold_counts_as_caught_up() {
        let rules = Rules { ok_lag: 10, ..RULES };
        let samples = window(&[(100, 105); 7]);
        assert_eq!(evaluate(&samples, NOW, &rules, Owner::None), Status::Ok);
        assert_eq!(evaluate(&samples, NOW, &RULES, Owner::None), Status::Stop);
    }

    #[test]
    fn a_committed_offset_past_the_high_watermark_is_no_lag() {
        assert_eq!(Sample { at_ms: 0, committed: 12, high_watermark: 10 }.lag(), 0);
    }

    #[test]
    fn history_keeps_the_window_plus_one_anchor_and_notes_when_the_offset_moved() {
        let mut history = History::default();
        for (i, committed) in [5, 5, 7, 7, 7, 7, 7, 7, 7, 7].into_iter().enumerate() {
            history.push(Sample { at_ms: i as i64 * 10_000, committed, high_watermark: 9 }, 30_000);
        }
        let samples = history.samples();
        assert_eq!(
            samples.iter().map(|s| s.at_ms).collect::<Vec<_>>(),
            [60_000, 70_000, 80_000, 90_000],
            "anchor at the boundary, then the window"
        );
        assert_eq!(history.moved_at_ms(), Some(20_000));
    }

    #[test]
    fn the_worst_status_is_stop() {
        assert_eq!(Status::ALL.iter().max(), Some(&Status::Stop));
        assert!(Status::Warn < Status::Stall);
    }
}
