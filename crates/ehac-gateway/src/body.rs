//! How long a request's body may take to arrive once its headers have. A client that declares a
//! body and then sends it a byte at a time would otherwise hold its connection (and its caller's
//! slot) for as long as it likes; past the deadline it gets 408 and the connection is closed.
//! The deadline grows with the declared length, at the slowest upload rate the gateway allows
//! for (a kiosk on a congested airport uplink), so a large manifest on a slow line still arrives.

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline {
    /// What every body gets, however small.
    pub base: Duration,
    /// The slowest upload allowed for: each byte declared adds `1 / min_bytes_per_second`
    /// seconds. 0: no allowance, the base is the deadline.
    pub min_bytes_per_second: u64,
}

impl BodyDeadline {
    /// The deadline for a body of `declared` bytes (`None`: no Content-Length, chunked), on a
    /// route whose bodies are at most `largest` bytes. A length beyond `largest` is refused
    /// with 413 once that much has arrived, so it earns no more time than `largest`; a body of
    /// unknown length is allowed the time of the largest.
    pub fn for_body(&self, declared: Option<u64>, largest: u64) -> Duration {
        if self.min_bytes_per_second == 0 {
            return self.base;
        }
        let bytes = declared.unwrap_or(largest).min(largest);
        self.base + Duration::from_millis(bytes.saturating_mul(1_000) / self.min_bytes_per_second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_grows_with_the_declared_length_up_to_the_routes_largest_body() {
        let deadline = BodyDeadline { base: Duration::from_secs(5), min_bytes_per_second: 32 * 1024 };
        let largest = 4 << 20;
        assert_eq!(deadline.for_body(Some(0), largest), Duration::from_secs(5));
        assert_eq!(deadline.for_body(Some(64 * 1024), largest), Duration::from_secs(7));
        assert_eq!(deadline.for_body(Some(4 << 20), largest), Duration::from_secs(5 + 128));
        assert_eq!(deadline.for_body(Some(u64::MAX), largest), Duration::from_secs(5 + 128), "a huge declared length earns nothing more");
        assert_eq!(deadline.for_body(None, largest), Duration::from_secs(5 + 128), "unknown length: the largest body's time");
        let flat = BodyDeadline { min_bytes_per_second: 0, ..deadline };
        assert_eq!(flat.for_body(Some(4 << 20), largest), Duration::from_secs(5));
    }
}
