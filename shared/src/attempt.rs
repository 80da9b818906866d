//! Tokens that name one attempt at a conditional write.
//!
//! The SDK retries a request whose answer was lost (a timeout, a 500) even when the
//! first try was applied; the retry then fails its own condition. A write that carries
//! a token of its attempt recognizes, in the item its failed condition returns, its own
//! earlier success.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// A value no other attempt shares: std's per-process random hash keys over a counter
/// and the clock, as 16 hex digits.
pub fn token() -> String {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    h.write_i64(chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default());
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_differ() {
        let tokens: std::collections::BTreeSet<String> = (0..1000).map(|_| super::token()).collect();
        assert_eq!(tokens.len(), 1000);
        assert!(tokens.iter().all(|t| t.len() == 16));
    }
}
