//! How much of the front door one caller may hold at once. Each request holds one of its
//! caller's slots from its headers to its answer, body included: the authenticated client's,
//! or, where no client is known (anonymous mode), its address's. A caller with all its slots
//! taken gets 429 at once, so a client that trickles its bodies holds no more than its own cap
//! and every other client is served meanwhile. The gateway's own slots (`--max-requests-in-flight`)
//! are taken only once a body has arrived, for the work, so bodies still arriving cannot starve
//! the clients that sent theirs.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Whose slots a request holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Holder {
    Client(String),
    Address(IpAddr),
}

impl Holder {
    /// The `limit` label of the refusals metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Holder::Client(_) => "client",
            Holder::Address(_) => "address",
        }
    }
}

/// Requests in flight per holder, each held to its cap (0: no cap).
pub struct CallerSlots {
    per_client: usize,
    per_address: usize,
    held: Arc<Mutex<HashMap<Holder, usize>>>,
}

/// One request's slot; given back when dropped (answered, or the client went away).
#[must_use]
pub struct Slot {
    held: Arc<Mutex<HashMap<Holder, usize>>>,
    holder: Holder,
}

impl CallerSlots {
    pub fn new(per_client: usize, per_address: usize) -> CallerSlots {
        CallerSlots { per_client, per_address, held: Arc::default() }
    }

    /// A slot for `holder`, or `None` when it holds its cap already.
    pub fn try_take(&self, holder: Holder) -> Option<Slot> {
        let cap = match holder {
            Holder::Client(_) => self.per_client,
            Holder::Address(_) => self.per_address,
        };
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let count = held.entry(holder.clone()).or_default();
        if cap > 0 && *count >= cap {
            return None;
        }
        *count += 1;
        Some(Slot { held: self.held.clone(), holder })
    }

    /// Requests `holder` has in flight.
    #[cfg(test)]
    fn holding(&self, holder: &Holder) -> usize {
        self.held.lock().unwrap().get(holder).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        // Holders without a request in flight are forgotten, so the table does not grow.
        if let Some(count) = held.get_mut(&self.holder) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.holder);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_gets_its_cap_others_are_unaffected_and_a_dropped_slot_is_given_back() {
        let slots = CallerSlots::new(2, 1);
        let (a, b) = (Holder::Client("a".into()), Holder::Client("b".into()));
        let first = slots.try_take(a.clone()).unwrap();
        let _second = slots.try_take(a.clone()).unwrap();
        assert!(slots.try_take(a.clone()).is_none(), "over the client's cap");
        assert!(slots.try_take(b.clone()).is_some(), "another client has its own");
        drop(first);
        assert_eq!(slots.holding(&a), 1);
        assert!(slots.try_take(a.clone()).is_some());

        let address = Holder::Address("192.0.2.1".parse().unwrap());
        let held = slots.try_take(address.clone()).unwrap();
        assert!(slots.try_take(address.clone()).is_none(), "over the address's cap");
        drop(held);
        assert_eq!(slots.holding(&address), 0);
        assert!(slots.held.lock().unwrap().get(&address).is_none(), "an idle holder is forgotten");
    }

    #[test]
    fn a_cap_of_zero_is_no_cap() {
        let slots = CallerSlots::new(0, 0);
        let held: Vec<Slot> = (0..1_000).map(|_| slots.try_take(Holder::Client("a".into())).unwrap()).collect();
        assert_eq!(slots.holding(&Holder::Client("a".into())), 1_000);
        drop(held);
        assert_eq!(slots.holding(&Holder::Client("a".into())), 0);
    }
}
