//! Behaviour layered over any backend without touching the backends themselves: request
//! counting (for stats, the benchmark and tests) and fault injection (for tests of the
//! failure paths). Neither changes what is stored.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

use super::backend::{Backend, ObjectMeta, PutOutcome};
use super::error::{StoreError, StoreResult};

/// Counts of requests and bytes sent through a [`CountingBackend`].
#[derive(Debug, Default)]
pub struct RequestCounts {
    pub puts: AtomicU64,
    pub put_bytes: AtomicU64,
    pub copies: AtomicU64,
    pub gets: AtomicU64,
    pub get_bytes: AtomicU64,
    pub heads: AtomicU64,
    pub lists: AtomicU64,
    pub deletes: AtomicU64,
}

/// A point-in-time copy of [`RequestCounts`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RequestSnapshot {
    pub puts: u64,
    pub put_bytes: u64,
    pub copies: u64,
    pub gets: u64,
    pub get_bytes: u64,
    pub heads: u64,
    pub lists: u64,
    pub deletes: u64,
}

impl RequestSnapshot {
    pub fn total_requests(&self) -> u64 {
        self.puts + self.copies + self.gets + self.heads + self.lists + self.deletes
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &RequestSnapshot) -> RequestSnapshot {
        RequestSnapshot {
            puts: self.puts - earlier.puts,
            put_bytes: self.put_bytes - earlier.put_bytes,
            copies: self.copies - earlier.copies,
            gets: self.gets - earlier.gets,
            get_bytes: self.get_bytes - earlier.get_bytes,
            heads: self.heads - earlier.heads,
            lists: self.lists - earlier.lists,
            deletes: self.deletes - earlier.deletes,
        }
    }
}

impl RequestCounts {
    pub fn snapshot(&self) -> RequestSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RequestSnapshot {
            puts: get(&self.puts),
            put_bytes: get(&self.put_bytes),
            copies: get(&self.copies),
            gets: get(&self.gets),
            get_bytes: get(&self.get_bytes),
            heads: get(&self.heads),
            lists: get(&self.lists),
            deletes: get(&self.deletes),
        }
    }
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Counts every request (and the bytes of puts and gets) sent to the inner backend.
#[derive(Debug)]
pub struct CountingBackend<B> {
    inner: B,
    counts: Arc<RequestCounts>,
}

impl<B: Backend> CountingBackend<B> {
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            counts: Arc::default(),
        }
    }

    pub fn counts(&self) -> Arc<RequestCounts> {
        self.counts.clone()
    }
}

#[async_trait]
impl<B: Backend> Backend for CountingBackend<B> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        add(&self.counts.puts, 1);
        add(&self.counts.put_bytes, data.len() as u64);
        self.inner.put(key, data).await
    }
    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<PutOutcome> {
        add(&self.counts.puts, 1);
        add(&self.counts.put_bytes, data.len() as u64);
        self.inner.put_if_absent(key, data).await
    }
    async fn create(&self, key: &str, data: Bytes) -> StoreResult<PutOutcome> {
        add(&self.counts.puts, 1);
        add(&self.counts.put_bytes, data.len() as u64);
        self.inner.create(key, data).await
    }
    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        add(&self.counts.gets, 1);
        let data = self.inner.get(key).await?;
        add(&self.counts.get_bytes, data.len() as u64);
        Ok(data)
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        add(&self.counts.gets, 1);
        let data = self.inner.get_range(key, range).await?;
        add(&self.counts.get_bytes, data.len() as u64);
        Ok(data)
    }
    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        add(&self.counts.heads, 1);
        self.inner.head(key).await
    }
    async fn copy(&self, from: &str, to: &str) -> StoreResult<()> {
        add(&self.counts.copies, 1);
        self.inner.copy(from, to).await
    }
    fn list(&self, prefix: &str) -> BoxStream<'_, StoreResult<ObjectMeta>> {
        // One LIST request per page of 1000 keys, as S3 answers it.
        let counts = self.counts.clone();
        add(&counts.lists, 1);
        let mut seen = 0u64;
        self.inner
            .list(prefix)
            .inspect(move |_| {
                seen += 1;
                if seen.is_multiple_of(1000) {
                    add(&counts.lists, 1);
                }
            })
            .boxed()
    }
    async fn delete(&self, key: &str) -> StoreResult<()> {
        add(&self.counts.deletes, 1);
        self.inner.delete(key).await
    }
    async fn list_folders(&self, prefix: &str) -> StoreResult<Vec<String>> {
        add(&self.counts.lists, 1);
        self.inner.list_folders(prefix).await
    }
    async fn delete_many(&self, keys: &[String]) -> StoreResult<()> {
        // As S3 answers it: one request per 1,000 keys.
        add(&self.counts.deletes, keys.len().div_ceil(1000) as u64);
        self.inner.delete_many(keys).await
    }
}

/// Which operations a [`FaultyBackend`] fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOps {
    /// put, put_if_absent, copy, delete
    Writes,
    /// every operation
    All,
}

/// Fails operations on demand: after a number of successful writes, or while switched on.
/// Used by tests to interrupt an upload half-way or to play an S3 outage.
#[derive(Debug)]
pub struct FaultyBackend<B> {
    inner: B,
    state: Arc<FaultState>,
}

/// The switch board of a [`FaultyBackend`]; clone the `Arc` to flip faults from a test.
#[derive(Debug)]
pub struct FaultState {
    failing: AtomicBool,
    ops: std::sync::Mutex<FaultOps>,
    /// Writes still allowed before failing starts (usize::MAX = no limit).
    writes_left: AtomicUsize,
}

impl FaultState {
    /// Fail `ops` from now on, until [`FaultState::heal`].
    pub fn fail(&self, ops: FaultOps) {
        *self.ops.lock().unwrap_or_else(|e| e.into_inner()) = ops;
        self.failing.store(true, Ordering::SeqCst);
    }

    /// Let `writes` more writes through, then fail `ops`.
    pub fn fail_after_writes(&self, writes: usize, ops: FaultOps) {
        *self.ops.lock().unwrap_or_else(|e| e.into_inner()) = ops;
        self.writes_left.store(writes, Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.failing.store(false, Ordering::SeqCst);
        self.writes_left.store(usize::MAX, Ordering::SeqCst);
    }

    fn check(&self, op: &'static str, key: &str, is_write: bool) -> StoreResult<()> {
        let ops = *self.ops.lock().unwrap_or_else(|e| e.into_inner());
        let applies = is_write || ops == FaultOps::All;
        if is_write {
            let left = self.writes_left.load(Ordering::SeqCst);
            if left != usize::MAX {
                if left == 0 {
                    self.failing.store(true, Ordering::SeqCst);
                } else {
                    self.writes_left.store(left - 1, Ordering::SeqCst);
                }
            }
        }
        if applies && self.failing.load(Ordering::SeqCst) {
            // An outage, as a store that went away reports it.
            return Err(StoreError::Unreachable {
                endpoint: "fault injection".to_string(),
                op,
                key: key.to_string(),
                message: "injected fault".to_string(),
            });
        }
        Ok(())
    }
}

impl<B: Backend> FaultyBackend<B> {
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            state: Arc::new(FaultState {
                failing: AtomicBool::new(false),
                ops: std::sync::Mutex::new(FaultOps::Writes),
                writes_left: AtomicUsize::new(usize::MAX),
            }),
        }
    }

    pub fn state(&self) -> Arc<FaultState> {
        self.state.clone()
    }
}

#[async_trait]
impl<B: Backend> Backend for FaultyBackend<B> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.state.check("put", key, true)?;
        self.inner.put(key, data).await
    }
    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<PutOutcome> {
        self.state.check("put", key, true)?;
        self.inner.put_if_absent(key, data).await
    }
    async fn create(&self, key: &str, data: Bytes) -> StoreResult<PutOutcome> {
        self.state.check("put", key, true)?;
        self.inner.create(key, data).await
    }
    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.state.check("get", key, false)?;
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.state.check("get", key, false)?;
        self.inner.get_range(key, range).await
    }
    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        self.state.check("head", key, false)?;
        self.inner.head(key).await
    }
    async fn copy(&self, from: &str, to: &str) -> StoreResult<()> {
        self.state.check("copy", to, true)?;
        self.inner.copy(from, to).await
    }
    fn list(&self, prefix: &str) -> BoxStream<'_, StoreResult<ObjectMeta>> {
        if let Err(e) = self.state.check("list", prefix, false) {
            return futures::stream::once(async move { Err(e) }).boxed();
        }
        self.inner.list(prefix)
    }
    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.state.check("delete", key, true)?;
        self.inner.delete(key).await
    }
    async fn list_folders(&self, prefix: &str) -> StoreResult<Vec<String>> {
        self.state.check("list", prefix, false)?;
        self.inner.list_folders(prefix).await
    }
    async fn delete_many(&self, keys: &[String]) -> StoreResult<()> {
        // Key by key, so that a fault can stop a batch part-way, as a crash would.
        for key in keys {
            self.delete(key).await?;
        }
        Ok(())
    }
}
