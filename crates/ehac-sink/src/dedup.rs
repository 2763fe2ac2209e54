//! Which records a partition task must not write again. Pure; the task feeds it.
//!
//! A record is a duplicate when its identity (the declaration id for declarations; the source
//! position for rejections, since one declaration may be rejected again after a replay) is
//! already in ClickHouse or already written by this task. Duplicates reach the sink in two
//! ways: the sink's own replay after a crash or rebalance (the same offsets again), and a record
//! written twice upstream (an enricher replay, a gateway spool drained after a produce that did
//! land, a client retry). Both land in the same partition, because the key is the declaration
//! id, and close behind the original, so a window of recent identities per partition, warmed
//! from ClickHouse when the partition is assigned, catches them.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

/// Two identities per record are looked up and remembered; SipHash and a second copy of each
/// identity were a visible share of the sink's CPU. The identities come from our own gateway and
/// enricher, and foldhash is still seeded per process.
type Seen = HashSet<Arc<str>, foldhash::fast::RandomState>;

pub struct Dedup {
    seen: Seen,
    order: VecDeque<Arc<str>>,
    capacity: usize,
}

impl Dedup {
    /// `stored`: identities already in ClickHouse for this partition's recent offsets.
    pub fn new(stored: impl IntoIterator<Item = String>, capacity: usize) -> Self {
        let mut dedup = Dedup { seen: Seen::default(), order: VecDeque::new(), capacity: capacity.max(1) };
        for identity in stored {
            dedup.remember(identity.into());
        }
        dedup
    }

    /// Whether to write a record with this identity; remembers it when the answer is yes, so a
    /// second copy in the same batch is dropped too.
    pub fn admit(&mut self, identity: &str) -> bool {
        if self.seen.contains(identity) {
            return false;
        }
        self.remember(identity.into());
        true
    }

    fn remember(&mut self, identity: Arc<str>) {
        if self.seen.insert(identity.clone()) {
            self.order.push_back(identity);
            while self.order.len() > self.capacity {
                if let Some(oldest) = self.order.pop_front() {
                    self.seen.remove(&oldest);
                }
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_and_repeated_identities_are_refused() {
        let mut d = Dedup::new(["a".to_owned(), "b".to_owned()], 10);
        assert!(!d.admit("a"), "already in ClickHouse");
        assert!(d.admit("c"));
        assert!(!d.admit("c"), "second copy in the same partition");
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn the_window_forgets_the_oldest() {
        let mut d = Dedup::new(Vec::<String>::new(), 2);
        assert!(d.admit("a"));
        assert!(d.admit("b"));
        assert!(d.admit("c"));
        assert!(d.admit("a"), "a fell out of a window of two");
        assert!(!d.admit("c"));
    }
}
