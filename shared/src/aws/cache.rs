//! What adapters read rarely and use often (templates, campaigns, secrets), kept in
//! memory between invocations for a while.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Values as last read, each kept for `ttl` from its read.
#[derive(Debug)]
pub(crate) struct TtlCache<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (Instant, V)>>,
    /// One read at a time: the records of a batch that miss together wait for the
    /// first one's read instead of each making its own.
    loading: tokio::sync::Mutex<()>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::new(HashMap::new()), loading: tokio::sync::Mutex::new(()) }
    }

    /// The value while fresh; otherwise what `load` reads, kept for the next callers.
    pub(crate) async fn get_or_load<E, Fut>(&self, key: &K, load: impl FnOnce() -> Fut) -> Result<V, E>
    where
        Fut: Future<Output = Result<V, E>>,
    {
        if let Some(hit) = self.get(key) {
            return Ok(hit);
        }
        let _loading = self.loading.lock().await;
        if let Some(hit) = self.get(key) {
            return Ok(hit);
        }
        let loaded = load().await?;
        self.put(key.clone(), loaded.clone());
        Ok(loaded)
    }

    /// The value while fresh, `None` when it must be read again.
    fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().ok()?;
        entries.get(key).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, v)| v.clone())
    }

    fn put(&self, key: K, value: V) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(key, (Instant::now(), value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn callers_that_miss_together_share_one_read_and_a_failed_read_is_not_kept() {
        let reads = AtomicU32::new(0);
        let load = |value: Result<u32, &'static str>| {
            let reads = &reads;
            move || async move {
                reads.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                value
            }
        };
        let cache = TtlCache::new(Duration::from_secs(60));
        let got = futures::future::join_all((0..5).map(|_| cache.get_or_load(&"t", load(Ok(7))))).await;
        assert_eq!(got, vec![Ok(7); 5]);
        assert_eq!(reads.load(Ordering::SeqCst), 1, "five misses at once, one read");

        let failing = TtlCache::new(Duration::from_secs(60));
        assert_eq!(failing.get_or_load(&"t", load(Err("down"))).await, Err("down"));
        assert_eq!(failing.get_or_load(&"t", load(Ok(8))).await, Ok(8), "the failure was not kept");

        let stale = TtlCache::new(Duration::ZERO);
        stale.get_or_load(&"t", load(Ok(1))).await.unwrap();
        assert_eq!(stale.get_or_load(&"t", load(Ok(2))).await, Ok(2), "read again once expired");
        assert_eq!(reads.load(Ordering::SeqCst), 5);
    }
}
