//! A small TTL cache whose misses are fetched once, however many callers ask at once.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

type Slot<V> = Arc<tokio::sync::Mutex<Option<(Instant, V)>>>;

/// How far ahead a deadline lies at most: about a century, where the clock cannot hold more.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + after`, saturating: a duration that the clock cannot add (an `expires_in` of
/// `u64::MAX` seconds from a token server, a cache lifetime of `Duration::MAX`) gives a
/// deadline about a century away instead of a panic.
pub(crate) fn saturating_deadline(now: Instant, after: Duration) -> Instant {
    now.checked_add(after)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

/// Values by key, fresh for `ttl`; concurrent misses of one key wait for a single fetch.
#[derive(Debug)]
pub(crate) struct TtlCache<K, V> {
    ttl: Duration,
    max_entries: usize,
    slots: Mutex<HashMap<K, Slot<V>>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self::bounded(ttl, usize::MAX)
    }

    /// A cache holding at most `max_entries` keys: while it is full of fresh values, a new
    /// key is fetched every time rather than kept.
    pub(crate) fn bounded(ttl: Duration, max_entries: usize) -> Self {
        TtlCache {
            ttl,
            max_entries,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Caches `value` under `key` as fresh, replacing what was there (a value just fetched
    /// by another path, e.g. an uncached confirmation).
    pub(crate) async fn put(&self, key: &K, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        if let Some(slot) = self.slot(key) {
            *slot.lock().await = Some((saturating_deadline(Instant::now(), self.ttl), value));
        }
    }

    /// The slot of `key`, dropping expired ones first; `None` when the cache is full.
    fn slot(&self, key: &K) -> Option<Slot<V>> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        slots.retain(|_, s| {
            Arc::strong_count(s) > 1
                || s.try_lock()
                    .map_or(true, |v| v.as_ref().is_some_and(|(t, _)| now < *t))
        });
        if !slots.contains_key(key) && slots.len() >= self.max_entries {
            None
        } else {
            Some(slots.entry(key.clone()).or_default().clone())
        }
    }

    /// The fresh cached value of `key`, or the result of `fetch` (cached when `Ok`).
    pub(crate) async fn get_or_fetch<E, F, Fut>(&self, key: &K, fetch: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        if self.ttl.is_zero() {
            return fetch().await;
        }
        let Some(slot) = self.slot(key) else {
            return fetch().await;
        };
        let mut guard = slot.lock().await;
        if let Some((expires, value)) = guard.as_ref()
            && Instant::now() < *expires
        {
            return Ok(value.clone());
        }
        let value = fetch().await?;
        *guard = Some((saturating_deadline(Instant::now(), self.ttl), value.clone()));
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(start_paused = true)]
    async fn fetches_once_per_ttl_even_when_asked_concurrently() {
        let cache: Arc<TtlCache<String, u32>> = Arc::new(TtlCache::new(Duration::from_secs(10)));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (cache, calls) = (cache.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch(&"k".to_owned(), || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, ()>(7)
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(7));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(11)).await;
        let v = cache
            .get_or_fetch(&"k".to_owned(), || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(8)
            })
            .await;
        assert_eq!(v, Ok(8));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_put_value_is_served_fresh_and_replaces_the_cached_one() {
        let cache: TtlCache<u8, u8> = TtlCache::new(Duration::from_secs(10));
        assert_eq!(
            cache.get_or_fetch(&1, || async { Ok::<_, ()>(1) }).await,
            Ok(1)
        );
        cache.put(&1, 2).await;
        assert_eq!(
            cache.get_or_fetch(&1, || async { Ok::<_, ()>(3) }).await,
            Ok(2)
        );
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(
            cache.get_or_fetch(&1, || async { Ok::<_, ()>(4) }).await,
            Ok(4)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_longest_ttl_saturates_instead_of_overflowing_the_clock() {
        let cache: TtlCache<u8, u8> = TtlCache::new(Duration::MAX);
        assert_eq!(
            cache.get_or_fetch(&1, || async { Ok::<_, ()>(1) }).await,
            Ok(1)
        );
        tokio::time::advance(Duration::from_secs(50 * 365 * 24 * 3600)).await;
        assert_eq!(
            cache.get_or_fetch(&1, || async { Ok::<_, ()>(2) }).await,
            Ok(1)
        );
        let now = Instant::now();
        assert!(saturating_deadline(now, Duration::MAX) > now + FAR_FUTURE / 2);
        assert_eq!(
            saturating_deadline(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
    }

    #[tokio::test]
    async fn a_full_cache_fetches_new_keys_without_keeping_them() {
        let cache: TtlCache<u8, u8> = TtlCache::bounded(Duration::from_secs(60), 2);
        for key in [1, 2] {
            assert_eq!(
                cache
                    .get_or_fetch(&key, || async { Ok::<_, ()>(key) })
                    .await,
                Ok(key)
            );
        }
        // Full: key 3 is fetched each time, keys 1 and 2 stay cached.
        assert_eq!(
            cache.get_or_fetch(&3, || async { Ok::<_, ()>(30) }).await,
            Ok(30)
        );
        assert_eq!(
            cache.get_or_fetch(&3, || async { Ok::<_, ()>(31) }).await,
            Ok(31)
        );
        assert_eq!(
            cache.get_or_fetch(&1, || async { Ok::<_, ()>(10) }).await,
            Ok(1)
        );
        assert_eq!(cache.slots.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn errors_are_not_cached() {
        let cache: TtlCache<u8, u8> = TtlCache::new(Duration::from_secs(60));
        assert_eq!(
            cache
                .get_or_fetch(&1, || async { Err::<u8, _>("down") })
                .await,
            Err("down")
        );
        assert_eq!(
            cache.get_or_fetch(&1, || async { Ok::<_, &str>(3) }).await,
            Ok(3)
        );
        assert_eq!(
            cache.get_or_fetch(&1, || async { Ok::<_, &str>(4) }).await,
            Ok(3)
        );
    }
}
