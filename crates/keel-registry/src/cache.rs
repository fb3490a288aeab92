//! A small TTL cache whose misses are fetched once, however many callers ask at once.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

type Slot<V> = Arc<tokio::sync::Mutex<Option<(Instant, V)>>>;

/// Values by key, fresh for `ttl`; concurrent misses of one key wait for a single fetch.
#[derive(Debug)]
pub(crate) struct TtlCache<K, V> {
    ttl: Duration,
    slots: Mutex<HashMap<K, Slot<V>>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub(crate) fn new(ttl: Duration) -> Self {
        TtlCache {
            ttl,
            slots: Mutex::new(HashMap::new()),
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
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            slots.retain(|_, s| {
                Arc::strong_count(s) > 1
                    || s.try_lock()
                        .map_or(true, |v| v.as_ref().is_some_and(|(t, _)| now < *t))
            });
            slots.entry(key.clone()).or_default().clone()
        };
        let mut guard = slot.lock().await;
        if let Some((expires, value)) = guard.as_ref()
            && Instant::now() < *expires
        {
            return Ok(value.clone());
        }
        let value = fetch().await?;
        *guard = Some((Instant::now() + self.ttl, value.clone()));
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
