//! The storage seam: one small async trait that every destination implements (S3, a local
//! directory, memory), and wrappers that add behaviour around any of them (a key prefix,
//! request counting, fault injection). Backends know nothing about packs or snapshots; they
//! move bytes under keys. Keys are `/`-separated and relative to the backend's root.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use super::error::StoreResult;

/// What a listing or `head` tells about one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
}

/// Whether `put_if_absent` wrote the key or found it there already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    AlreadyExists,
}

/// A place that stores bytes under keys.
#[async_trait]
pub trait Backend: Send + Sync + fmt::Debug {
    /// A human-readable description of where the data goes (for messages and logs).
    fn describe(&self) -> String;

    /// Writes `data` under `key`, replacing what was there. Readers never see a partial value.
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()>;

    /// Writes `data` under `key` unless the key exists. Content-addressed keys use this: a
    /// second writer of the same content finds it there and does nothing, and two writers
    /// racing write the same bytes.
    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<PutOutcome>;

    /// Creates `key` unless it exists, for names that writers choose for different content
    /// (manifests and export records named by time, the folder's cluster identity): of two
    /// writers creating the same key at the same moment, exactly one gets `Created`, and the
    /// other's bytes are never stored there.
    async fn create(&self, key: &str, data: Bytes) -> StoreResult<PutOutcome>;

    async fn get(&self, key: &str) -> StoreResult<Bytes>;

    /// Reads the bytes `range` (end exclusive) of `key`.
    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes>;

    /// The key's size, or `None` when it does not exist.
    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>>;

    /// Copies `from` to `to` inside the destination without sending the bytes through us.
    async fn copy(&self, from: &str, to: &str) -> StoreResult<()>;

    /// Every key that starts with `prefix`, in no particular order.
    fn list(&self, prefix: &str) -> BoxStream<'_, StoreResult<ObjectMeta>>;

    /// Deletes `key`; deleting a missing key is not an error.
    async fn delete(&self, key: &str) -> StoreResult<()>;

    /// Deletes every key of `keys`; missing keys are not an error. This default deletes
    /// them one by one, a few at a time; S3 deletes up to 1,000 per request.
    async fn delete_many(&self, keys: &[String]) -> StoreResult<()> {
        let deletions: Vec<_> = keys.iter().map(|key| self.delete(key)).collect();
        futures::stream::iter(deletions)
            .buffer_unordered(DELETES_IN_FLIGHT)
            .try_collect::<()>()
            .await
    }

    /// The names of the folders directly under `prefix` (which ends in `/`), sorted: what a
    /// listing with a `/` delimiter gives, without listing every key below them. This
    /// default lists every key; a backend that can ask for the folders alone does.
    async fn list_folders(&self, prefix: &str) -> StoreResult<Vec<String>> {
        let mut folders = std::collections::BTreeSet::new();
        let mut listed = self.list(prefix);
        while let Some(meta) = listed.try_next().await? {
            if let Some((folder, _)) = meta
                .key
                .strip_prefix(prefix)
                .and_then(|rest| rest.split_once('/'))
            {
                folders.insert(folder.to_string());
            }
        }
        Ok(folders.into_iter().collect())
    }
}

pub type DynBackend = Arc<dyn Backend>;

/// Single deletions in flight in [`Backend::delete_many`]'s default.
const DELETES_IN_FLIGHT: usize = 32;

/// A listing read whole by `listing` (a directory walk, a merge of two listings), as the
/// stream [`Backend::list`] returns: its keys, or its one error.
pub fn listed_at_once<'a>(
    listing: impl std::future::Future<Output = StoreResult<Vec<ObjectMeta>>> + Send + 'a,
) -> BoxStream<'a, StoreResult<ObjectMeta>> {
    futures::stream::once(listing)
        .map_ok(|all| futures::stream::iter(all.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
}

/// Conveniences built from the core operations.
#[async_trait]
pub trait BackendExt: Backend {
    /// All keys under `prefix`, sorted.
    async fn list_all(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        let mut all: Vec<ObjectMeta> = self.list(prefix).try_collect().await?;
        all.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(all)
    }

    /// The keys under `prefix`, sorted.
    async fn list_keys(&self, prefix: &str) -> StoreResult<Vec<String>> {
        Ok(self
            .list_all(prefix)
            .await?
            .into_iter()
            .map(|m| m.key)
            .collect())
    }

    async fn exists(&self, key: &str) -> StoreResult<bool> {
        Ok(self.head(key).await?.is_some())
    }

    /// `get` that answers `None` for a missing key instead of an error.
    async fn get_opt(&self, key: &str) -> StoreResult<Option<Bytes>> {
        match self.get(key).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl<T: Backend + ?Sized> BackendExt for T {}

#[async_trait]
impl<T: Backend + ?Sized> Backend for Arc<T> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        (**self).put(key, data).await
    }
    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<PutOutcome> {
        (**self).put_if_absent(key, data).await
    }
    async fn create(&self, key: &str, data: Bytes) -> StoreResult<PutOutcome> {
        (**self).create(key, data).await
    }
    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        (**self).get(key).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        (**self).get_range(key, range).await
    }
    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        (**self).head(key).await
    }
    async fn copy(&self, from: &str, to: &str) -> StoreResult<()> {
        (**self).copy(from, to).await
    }
    fn list(&self, prefix: &str) -> BoxStream<'_, StoreResult<ObjectMeta>> {
        (**self).list(prefix)
    }
    async fn delete(&self, key: &str) -> StoreResult<()> {
        (**self).delete(key).await
    }
    async fn list_folders(&self, prefix: &str) -> StoreResult<Vec<String>> {
        (**self).list_folders(prefix).await
    }
    async fn delete_many(&self, keys: &[String]) -> StoreResult<()> {
        (**self).delete_many(keys).await
    }
}

/// Puts every key of `inner` under `prefix/` (object_store's `PrefixStore`): the cluster's
/// base folder inside a bucket.
#[derive(Debug)]
pub struct PrefixBackend<B> {
    inner: B,
    prefix: String,
}

impl<B: Backend> PrefixBackend<B> {
    /// `prefix` without leading or trailing slashes; empty means no prefix.
    pub fn new(inner: B, prefix: &str) -> Self {
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        Self { inner, prefix }
    }

    fn full(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }
}

#[async_trait]
impl<B: Backend> Backend for PrefixBackend<B> {
    fn describe(&self) -> String {
        format!(
            "{}/{}",
            self.inner.describe().trim_end_matches('/'),
            self.prefix.trim_end_matches('/')
        )
    }
    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.inner.put(&self.full(key), data).await
    }
    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<PutOutcome> {
        self.inner.put_if_absent(&self.full(key), data).await
    }
    async fn create(&self, key: &str, data: Bytes) -> StoreResult<PutOutcome> {
        self.inner.create(&self.full(key), data).await
    }
    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.inner.get(&self.full(key)).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.inner.get_range(&self.full(key), range).await
    }
    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        let meta = self.inner.head(&self.full(key)).await?;
        Ok(meta.map(|m| ObjectMeta {
            key: key.to_string(),
            size: m.size,
        }))
    }
    async fn copy(&self, from: &str, to: &str) -> StoreResult<()> {
        self.inner.copy(&self.full(from), &self.full(to)).await
    }
    fn list(&self, prefix: &str) -> BoxStream<'_, StoreResult<ObjectMeta>> {
        let strip = self.prefix.len();
        self.inner
            .list(&self.full(prefix))
            .map_ok(move |m| ObjectMeta {
                key: m.key[strip..].to_string(),
                size: m.size,
            })
            .boxed()
    }
    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.inner.delete(&self.full(key)).await
    }
    async fn list_folders(&self, prefix: &str) -> StoreResult<Vec<String>> {
        self.inner.list_folders(&self.full(prefix)).await
    }
    async fn delete_many(&self, keys: &[String]) -> StoreResult<()> {
        let full: Vec<String> = keys.iter().map(|k| self.full(k)).collect();
        self.inner.delete_many(&full).await
    }
}
