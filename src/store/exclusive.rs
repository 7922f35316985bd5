//! Creating a key exactly once on a store that ignores conditional writes.
//!
//! AWS S3 and most S3-compatible stores honour `If-None-Match: *` on PUT, which makes
//! [`Backend::create`] one request. Some (older Ceph RGW, some appliances) accept the header
//! and overwrite anyway. [`honours_conditional_writes`] finds out once, with a probe key
//! written twice; on a store that fails it, [`create_under_lease`] reserves the name with a
//! lease object first, as restic's locks do without conditional writes: write a lease with a
//! random token, wait for concurrent writers to land theirs, read it back, and go ahead only
//! if the token is still ours. Writers that all follow the protocol never both create the
//! key. A crashed writer's lease expires.
//!
//! This module only ever writes the probe key, the lease beside the key (`<key>.lease`) and
//! the key itself; it deletes only the probe and its own lease. A crashed writer's lease is
//! left behind; a prune deletes it once it is stale ([`lease_is_stale`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::backend::{Backend, BackendExt, PutOutcome};
use super::error::{StoreError, StoreResult};

/// How long a writer waits for concurrent writers' leases to land before it reads its own
/// back. S3 is strongly consistent; this covers requests still in flight.
const SETTLE: Duration = Duration::from_millis(400);
/// A lease older than this is a crashed writer's and is taken over.
const LEASE_TTL: Duration = Duration::from_secs(60);
const TRIES: usize = 30;

/// Whether `backend` refuses a conditional write of a key that exists: writes a probe key
/// beside `near` twice with [`Backend::put_if_absent`] and deletes it.
pub async fn honours_conditional_writes(backend: &dyn Backend, near: &str) -> StoreResult<bool> {
    let probe = format!("{near}.conditional-write-probe-{}", token());
    let first = backend
        .put_if_absent(&probe, Bytes::from_static(b"first"))
        .await?;
    let second = backend
        .put_if_absent(&probe, Bytes::from_static(b"second"))
        .await;
    let _ = backend.delete(&probe).await;
    Ok(first == PutOutcome::Created && second? == PutOutcome::AlreadyExists)
}

/// Creates `key` unless it exists, reserving it with a lease object first.
pub async fn create_under_lease(
    backend: &dyn Backend,
    key: &str,
    data: Bytes,
) -> StoreResult<PutOutcome> {
    let lease = format!("{key}.lease");
    let ours = token();
    for attempt in 0..TRIES {
        if attempt > 0 {
            // Apart, so that two writers do not keep meeting.
            tokio::time::sleep(SETTLE / 2 + jitter(SETTLE)).await;
        }
        if let Some(held) = backend.get_opt(&lease).await?
            && let Some((holder, expires)) = parse_lease(&held)
            && holder != ours
            && expires > unix_now()
        {
            continue;
        }
        let expires = unix_now() + LEASE_TTL.as_secs();
        backend
            .put(&lease, Bytes::from(format!("{ours} {expires}")))
            .await?;
        tokio::time::sleep(SETTLE).await;
        let holder = backend
            .get_opt(&lease)
            .await?
            .and_then(|held| parse_lease(&held).map(|(holder, _)| holder));
        if holder.as_deref() != Some(ours.as_str()) {
            continue;
        }
        let outcome = if backend.head(key).await?.is_some() {
            PutOutcome::AlreadyExists
        } else {
            backend.put(key, data).await?;
            PutOutcome::Created
        };
        let _ = backend.delete(&lease).await;
        return Ok(outcome);
    }
    Err(StoreError::Remote {
        endpoint: backend.describe(),
        op: "create",
        key: key.to_string(),
        message: format!("other writers held the lease {lease} for {TRIES} tries"),
    })
}

/// Whether `key` is the lease beside a key created under one.
pub fn is_lease_key(key: &str) -> bool {
    key.ends_with(".lease")
}

/// Whether a lease (the bytes of a `<key>.lease` object) no longer holds anything: expired,
/// or not a lease at all (which no writer honours either). Judged by this machine's clock.
pub fn lease_is_stale(held: &[u8]) -> bool {
    parse_lease(held).is_none_or(|(_, expires)| expires <= unix_now())
}

fn parse_lease(held: &[u8]) -> Option<(String, u64)> {
    let text = std::str::from_utf8(held).ok()?;
    let (holder, expires) = text.trim().split_once(' ')?;
    Some((holder.to_string(), expires.parse().ok()?))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A token no other writer picks: the time, the process and a counter, hashed.
pub(crate) fn token() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut hasher = blake3::Hasher::new();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    hasher.update(&nanos.to_le_bytes());
    hasher.update(&std::process::id().to_le_bytes());
    hasher.update(
        &COUNTER
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_le_bytes(),
    );
    hasher.finalize().to_hex()[..32].to_string()
}

fn jitter(up_to: Duration) -> Duration {
    let bytes = blake3::hash(token().as_bytes());
    let fraction = f64::from(bytes.as_bytes()[0]) / 255.0;
    up_to.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::MemoryBackend;

    /// A store that takes `If-None-Match` and overwrites anyway.
    #[derive(Debug, Default)]
    struct Overwriting(MemoryBackend);

    #[async_trait::async_trait]
    impl Backend for Overwriting {
        fn describe(&self) -> String {
            "overwriting://".into()
        }
        async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
            self.0.put(key, data).await
        }
        async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<PutOutcome> {
            self.0.put(key, data).await?;
            Ok(PutOutcome::Created)
        }
        async fn create(&self, key: &str, data: Bytes) -> StoreResult<PutOutcome> {
            create_under_lease(self, key, data).await
        }
        async fn get(&self, key: &str) -> StoreResult<Bytes> {
            self.0.get(key).await
        }
        async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> StoreResult<Bytes> {
            self.0.get_range(key, range).await
        }
        async fn head(&self, key: &str) -> StoreResult<Option<super::super::ObjectMeta>> {
            self.0.head(key).await
        }
        async fn copy(&self, from: &str, to: &str) -> StoreResult<()> {
            self.0.copy(from, to).await
        }
        fn list(
            &self,
            prefix: &str,
        ) -> futures::stream::BoxStream<'_, StoreResult<super::super::ObjectMeta>> {
            self.0.list(prefix)
        }
        async fn delete(&self, key: &str) -> StoreResult<()> {
            self.0.delete(key).await
        }
    }

    #[tokio::test]
    async fn the_probe_tells_the_two_kinds_of_store_apart_and_leaves_nothing() {
        let honest = MemoryBackend::default();
        assert!(honours_conditional_writes(&honest, "a/b").await.unwrap());
        assert!(honest.list_all("").await.unwrap().is_empty());
        let overwriting = Overwriting::default();
        assert!(
            !honours_conditional_writes(&overwriting, "a/b")
                .await
                .unwrap()
        );
        assert!(overwriting.list_all("").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn of_writers_racing_for_one_name_under_leases_exactly_one_creates_it() {
        let store = Arc::new(Overwriting::default());
        let writers: Vec<_> = (0..4u8)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    let outcome = store.create("snap/1", Bytes::from(vec![n])).await.unwrap();
                    (n, outcome)
                })
            })
            .collect();
        let mut created = Vec::new();
        for writer in writers {
            let (n, outcome) = writer.await.unwrap();
            if outcome == PutOutcome::Created {
                created.push(n);
            }
        }
        assert_eq!(created.len(), 1, "{created:?}");
        assert_eq!(
            store.get("snap/1").await.unwrap(),
            Bytes::from(vec![created[0]])
        );
        // No lease is left behind.
        assert_eq!(
            store.list_keys("").await.unwrap(),
            vec!["snap/1".to_string()]
        );
    }
}
