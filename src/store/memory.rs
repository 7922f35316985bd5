//! An in-memory backend for unit tests. It behaves like the others (atomic puts,
//! put-if-absent, copies) but keeps nothing when dropped; never use it for real data.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

use super::backend::{Backend, ObjectMeta, PutOutcome};
use super::error::{StoreError, StoreResult};

#[derive(Debug, Default)]
pub struct MemoryBackend {
    objects: Mutex<BTreeMap<String, Bytes>>,
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Bytes>> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn not_found(key: &str) -> StoreError {
    StoreError::NotFound {
        key: key.to_string(),
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn describe(&self) -> String {
        "memory://".to_string()
    }
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.objects().insert(key.to_string(), data);
        Ok(())
    }
    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<PutOutcome> {
        let mut objects = self.objects();
        if objects.contains_key(key) {
            return Ok(PutOutcome::AlreadyExists);
        }
        objects.insert(key.to_string(), data);
        Ok(PutOutcome::Created)
    }
    async fn create(&self, key: &str, data: Bytes) -> StoreResult<PutOutcome> {
        // One lock around the check and the insert: already exclusive.
        self.put_if_absent(key, data).await
    }
    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.objects()
            .get(key)
            .cloned()
            .ok_or_else(|| not_found(key))
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        let data = self.get(key).await?;
        let (start, end) = (range.start as usize, range.end as usize);
        if start > end || end > data.len() {
            return Err(StoreError::Malformed {
                key: key.to_string(),
                what: "range",
                reason: format!("{start}..{end} is outside 0..{}", data.len()),
            });
        }
        Ok(data.slice(start..end))
    }
    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        Ok(self.objects().get(key).map(|d| ObjectMeta {
            key: key.to_string(),
            size: d.len() as u64,
        }))
    }
    async fn copy(&self, from: &str, to: &str) -> StoreResult<()> {
        let mut objects = self.objects();
        let data = objects.get(from).cloned().ok_or_else(|| not_found(from))?;
        objects.insert(to.to_string(), data);
        Ok(())
    }
    fn list(&self, prefix: &str) -> BoxStream<'_, StoreResult<ObjectMeta>> {
        let found: Vec<_> = self
            .objects()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| {
                Ok(ObjectMeta {
                    key: k.clone(),
                    size: v.len() as u64,
                })
            })
            .collect();
        futures::stream::iter(found).boxed()
    }
    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.objects().remove(key);
        Ok(())
    }
}
