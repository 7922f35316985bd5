//! Staging: snapshot data lands on local disk first and is pushed to the destination later,
//! so an S3 outage never costs a snapshot.
//!
//! [`StagingBackend`] sits between the store and the destination. Writes under `store/`
//! (packs, index files, manifests) go to a local staging folder; reads look there first and
//! then at the destination; listings merge both. Writes of the plain layout (`backup/`) go
//! straight to the destination, because they are server-side copies of files already there.
//! [`push_staged`] then moves staged files to the destination in the write order the store's
//! invariants demand — packs, then index files, then manifests, oldest first, then export
//! records — deleting each staged file only once the destination has it.

use std::collections::BTreeMap;
use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use crate::store::{
    Backend, BackendExt, DynBackend, Folder, LocalBackend, ObjectMeta, PutOutcome, StoreError,
    StoreResult,
};

/// Keys under this prefix are staged; everything else goes straight to the destination.
const STAGED_PREFIX: &str = "store/";

#[derive(Debug)]
pub struct StagingBackend {
    staging: LocalBackend,
    remote: DynBackend,
}

impl StagingBackend {
    pub fn new(staging: LocalBackend, remote: DynBackend) -> Self {
        Self { staging, remote }
    }

    pub fn remote(&self) -> &DynBackend {
        &self.remote
    }

    pub fn staging(&self) -> &LocalBackend {
        &self.staging
    }
}

fn staged(key: &str) -> bool {
    key.starts_with(STAGED_PREFIX)
}

#[async_trait]
impl Backend for StagingBackend {
    fn describe(&self) -> String {
        // The store's local index belongs to the destination, staged or not.
        self.remote.describe()
    }

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        if staged(key) {
            self.staging.put(key, data).await
        } else {
            self.remote.put(key, data).await
        }
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<PutOutcome> {
        if staged(key) {
            self.staging.put_if_absent(key, data).await
        } else {
            self.remote.put_if_absent(key, data).await
        }
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        match self.staging.get_opt(key).await? {
            Some(data) => Ok(data),
            None => self.remote.get(key).await,
        }
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        if self.staging.exists(key).await? {
            self.staging.get_range(key, range).await
        } else {
            self.remote.get_range(key, range).await
        }
    }

    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        match self.staging.head(key).await? {
            Some(meta) => Ok(Some(meta)),
            None => self.remote.head(key).await,
        }
    }

    async fn copy(&self, from: &str, to: &str) -> StoreResult<()> {
        self.remote.copy(from, to).await
    }

    fn list(&self, prefix: &str) -> BoxStream<'_, StoreResult<ObjectMeta>> {
        let prefix = prefix.to_string();
        futures::stream::once(async move {
            // Staging first: a file pushed meanwhile (put at the destination, then removed
            // from staging) is then seen in one of the two, never in neither.
            let staged = self.staging.list_all(&prefix).await?;
            let mut merged: BTreeMap<String, ObjectMeta> = BTreeMap::new();
            for meta in self.remote.list_all(&prefix).await? {
                merged.insert(meta.key.clone(), meta);
            }
            for meta in staged {
                merged.insert(meta.key.clone(), meta);
            }
            Ok::<_, StoreError>(merged.into_values().collect::<Vec<_>>())
        })
        .map(|listed| match listed {
            Ok(all) => futures::stream::iter(all.into_iter().map(Ok)).boxed(),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        })
        .flatten()
        .boxed()
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.staging.delete(key).await?;
        self.remote.delete(key).await
    }
}

/// What a push moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    pub files: u64,
    pub bytes: u64,
    pub manifests: u64,
}

/// Manifests (snapshot names) waiting in the staging folder, oldest first.
pub async fn staged_manifests(staging: &LocalBackend) -> StoreResult<Vec<String>> {
    let folder = Folder::Snapshots;
    Ok(staging
        .list_all(&folder.prefix())
        .await?
        .iter()
        .filter_map(|m| folder.name_in(&m.key).map(str::to_string))
        .collect())
}

/// Moves every staged file to the destination: packs, then index files, then manifests
/// (oldest first), then export records. A file is removed from staging only after the destination has it, so an
/// interrupted push loses nothing and the next one carries on.
pub async fn push_staged(backend: &StagingBackend, concurrency: usize) -> StoreResult<Pushed> {
    let mut pushed = Pushed::default();
    for folder in [
        Folder::Packs,
        Folder::Index,
        Folder::Snapshots,
        Folder::Exports,
    ] {
        let staged = backend.staging.list_all(&folder.prefix()).await?;
        let by_time = matches!(folder, Folder::Snapshots | Folder::Exports);
        // Manifests one by one, in name (= time) order; content-addressed files in parallel.
        let width = if by_time { 1 } else { concurrency.max(1) };
        let sizes: Vec<u64> = futures::stream::iter(staged)
            .map(|meta| async move {
                let data = backend.staging.get(&meta.key).await?;
                let size = data.len() as u64;
                if by_time {
                    backend.remote.put(&meta.key, data).await?;
                } else {
                    backend.remote.put_if_absent(&meta.key, data).await?;
                }
                backend.staging.delete(&meta.key).await?;
                Ok(size)
            })
            .buffered(width)
            .try_collect()
            .await?;
        for size in sizes {
            pushed.files += 1;
            pushed.bytes += size;
            if matches!(folder, Folder::Snapshots) {
                pushed.manifests += 1;
            }
        }
    }
    Ok(pushed)
}
