//! Staging: snapshot data lands on local disk first and is pushed to the destination later,
//! so an S3 outage never costs a snapshot.
//!
//! [`StagingBackend`] sits between the store and the destination. Writes under `store/`
//! (packs, index files, manifests) go to a local staging folder; reads look there first and
//! then at the destination; listings merge both. Writes of the plain layout (`backup/`) go
//! straight to the destination, because they are server-side copies of files already there.
//! [`push_staged`] then moves staged files to the destination in the write order the store's
//! invariants demand — packs, then index files, then manifests (snapshots', then
//! checkpoints'), oldest first, then export records — deleting each staged file only once
//! the destination has it.

use std::collections::BTreeMap;
use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use crate::repo::manifest::{NAME_TRIES, retimed_root};
use crate::store::backend::listed_at_once;
use crate::store::{
    Backend, BackendExt, DynBackend, Folder, LocalBackend, ObjectMeta, PutOutcome, RemoteFile,
    SnapshotTime, StoreError, StoreResult,
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
    // The folder's cluster identity is a claim on the destination itself: staging it would
    // let two clusters both believe they own the folder until their pushes met.
    key.starts_with(STAGED_PREFIX) && key != RemoteFile::ClusterIdentity.key()
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

    /// A staged name is free only if the destination does not have it either; the push
    /// creates it there, and takes the next free name if another writer was first after all.
    async fn create(&self, key: &str, data: Bytes) -> StoreResult<PutOutcome> {
        if !staged(key) {
            return self.remote.create(key, data).await;
        }
        match self.remote.head(key).await {
            Ok(Some(_)) => return Ok(PutOutcome::AlreadyExists),
            Ok(None) => {}
            // Away: staging decides now, and the push checks again.
            Err(e) if e.is_outage() => {}
            Err(e) => return Err(e),
        }
        self.staging.create(key, data).await
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
        listed_at_once(async move {
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
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.staging.delete(key).await?;
        self.remote.delete(key).await
    }

    async fn delete_many(&self, keys: &[String]) -> StoreResult<()> {
        self.staging.delete_many(keys).await?;
        self.remote.delete_many(keys).await
    }

    async fn list_folders(&self, prefix: &str) -> StoreResult<Vec<String>> {
        let mut folders = self.staging.list_folders(prefix).await?;
        folders.extend(self.remote.list_folders(prefix).await?);
        folders.sort();
        folders.dedup();
        Ok(folders)
    }
}

/// What a push moved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub files: u64,
    pub bytes: u64,
    pub manifests: u64,
    /// Staged snapshots stored under another name, because another writer had taken theirs
    /// at the destination meanwhile: `(staged name, stored name)`.
    pub renamed: Vec<(SnapshotTime, SnapshotTime)>,
}

/// Bytes of everything in the staging folder: what the staging cap is checked against.
pub fn staged_bytes(staging: &LocalBackend) -> StoreResult<u64> {
    fn walk(dir: &std::path::Path) -> std::io::Result<u64> {
        let mut total = 0;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                total += walk(&entry.path())?;
            } else if kind.is_file() {
                total += entry.metadata()?.len();
            }
        }
        Ok(total)
    }
    match walk(staging.root()) {
        Ok(total) => Ok(total),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(StoreError::io(staging.root(), e)),
    }
}

/// Manifests (snapshot names) waiting in the staging folder, oldest first.
pub async fn staged_manifests(staging: &LocalBackend) -> StoreResult<Vec<String>> {
    staged_names(staging, Folder::Snapshots).await
}

/// Checkpoint roots (their times) waiting in the staging folder, oldest first.
pub async fn staged_checkpoints(staging: &LocalBackend) -> StoreResult<Vec<String>> {
    staged_names(staging, Folder::Checkpoints).await
}

/// The names of the files of `folder` waiting in the staging folder, oldest first.
async fn staged_names(staging: &LocalBackend, folder: Folder<'_>) -> StoreResult<Vec<String>> {
    Ok(staging
        .list_all(&folder.prefix())
        .await?
        .iter()
        .filter_map(|m| folder.name_in(&m.key).map(str::to_string))
        .collect())
}

/// Moves every staged file to the destination: packs, then index files, then sealing keys,
/// then manifests (oldest first), then export records. A file is removed from staging only after the
/// destination has it, so an interrupted push loses nothing and the next one carries on.
///
/// Nothing is overwritten: content-addressed files that are there already are the same
/// bytes; a manifest whose name another writer took meanwhile is stored under the next free
/// name (see [`Pushed::renamed`]).
pub async fn push_staged(backend: &StagingBackend, concurrency: usize) -> StoreResult<Pushed> {
    let mut pushed = Pushed::default();
    for folder in [
        Folder::Packs,
        Folder::Index,
        Folder::Keys,
        Folder::Snapshots,
        Folder::Checkpoints,
        Folder::Exports,
    ] {
        let staged = backend.staging.list_all(&folder.prefix()).await?;
        let by_time = matches!(
            folder,
            Folder::Snapshots | Folder::Checkpoints | Folder::Exports
        );
        // Manifests one by one, in name (= time) order; content-addressed files in parallel.
        let width = if by_time { 1 } else { concurrency.max(1) };
        let moved: Vec<(u64, Option<(SnapshotTime, SnapshotTime)>)> = futures::stream::iter(staged)
            .map(|meta| async move {
                let data = backend.staging.get(&meta.key).await?;
                let size = data.len() as u64;
                let renamed = match folder {
                    Folder::Snapshots | Folder::Checkpoints => {
                        push_manifest(backend, folder, &meta.key, data).await?
                    }
                    Folder::Exports | Folder::Keys => {
                        // Another writer that finished the same export wrote the same
                        // fact; its record stands. A run's sealing keys are stored once.
                        backend.remote.create(&meta.key, data).await?;
                        None
                    }
                    _ => {
                        backend.remote.put_if_absent(&meta.key, data).await?;
                        None
                    }
                };
                backend.staging.delete(&meta.key).await?;
                Ok::<_, StoreError>((size, renamed))
            })
            .buffered(width)
            .try_collect()
            .await?;
        for (size, renamed) in moved {
            pushed.files += 1;
            pushed.bytes += size;
            if matches!(folder, Folder::Snapshots) {
                pushed.manifests += 1;
                // Only snapshots wait for an export under their name.
                pushed.renamed.extend(renamed);
            }
        }
    }
    Ok(pushed)
}

/// Creates a staged manifest root (a snapshot's or a checkpoint's, in `folder`) at the
/// destination. When its name is taken by another writer's (not by an earlier push of this
/// one), it goes under the next free second.
async fn push_manifest(
    backend: &StagingBackend,
    folder: Folder<'_>,
    key: &str,
    data: Bytes,
) -> StoreResult<Option<(SnapshotTime, SnapshotTime)>> {
    if backend.remote.create(key, data.clone()).await? == PutOutcome::Created {
        return Ok(None);
    }
    if backend.remote.get_opt(key).await?.as_deref() == Some(&data[..]) {
        // Pushed before, and the push stopped before it could clear staging.
        return Ok(None);
    }
    let Some(staged_time) = folder
        .name_in(key)
        .and_then(|name| name.parse::<SnapshotTime>().ok())
    else {
        return Err(StoreError::Malformed {
            key: key.to_string(),
            what: "staged manifest",
            reason: "its name is not a snapshot time".to_string(),
        });
    };
    let mut time = staged_time;
    for _ in 0..NAME_TRIES {
        time = time.next_second();
        let renamed = retimed_root(key, &data, time)?;
        // The renamed root's key, from its own kind.
        let new_key = match folder {
            Folder::Checkpoints => RemoteFile::Checkpoint(&time).key(),
            _ => RemoteFile::Snapshot(&time).key(),
        };
        if backend.remote.create(&new_key, renamed).await? == PutOutcome::Created {
            tracing::warn!(
                staged = %staged_time,
                stored = %time,
                "another writer took the staged snapshot's name; it is stored under the next free one"
            );
            return Ok(Some((staged_time, time)));
        }
    }
    Err(StoreError::Malformed {
        key: key.to_string(),
        what: "staged manifest",
        reason: format!("{NAME_TRIES} snapshot names in a row are taken by other writers"),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::repo::Manifest;
    use crate::repo::manifest::MANIFEST_VERSION;
    use crate::store::{Store, StoreConfig};

    fn manifest(time: SnapshotTime, cluster: &str) -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            time,
            cluster: cluster.to_string(),
            resources: Vec::new(),
            objects: Vec::new(),
            skipped: Vec::new(),
            stats: Default::default(),
            export: None,
            sealed_files: Default::default(),
            checkpoint: false,
            changes: Vec::new(),
        }
    }

    /// A snapshot staged while the destination was away, whose name another writer took at
    /// the destination meanwhile, is pushed under the next free second; the other writer's
    /// manifest stays as it was, and a manifest pushed twice is not renamed.
    #[tokio::test]
    async fn a_staged_manifest_whose_name_was_taken_is_pushed_under_the_next_second() {
        let dir = tempfile::tempdir().unwrap();
        let remote: DynBackend = Arc::new(LocalBackend::new(dir.path().join("remote")).unwrap());
        let elsewhere: DynBackend =
            Arc::new(LocalBackend::new(dir.path().join("elsewhere")).unwrap());
        let time: SnapshotTime = "26-12-02_10-00-00".parse().unwrap();
        let key = RemoteFile::Snapshot(&time).key();

        // The other writer's manifest at the destination.
        let open = |backend: &DynBackend, cache: &str| {
            let (backend, cache) = (backend.clone(), dir.path().join(cache));
            async move { Store::open(backend, &cache, StoreConfig::default()).await }
        };
        let theirs = open(&remote, "a").await.unwrap();
        manifest(time, "theirs").save(&theirs).await.unwrap();
        let stored_theirs = remote.get(&key).await.unwrap();

        // Ours, staged under the same name (written elsewhere, then moved into staging).
        let ours = open(&elsewhere, "b").await.unwrap();
        manifest(time, "ours").save(&ours).await.unwrap();
        let staging = StagingBackend::new(
            LocalBackend::new(dir.path().join("staging")).unwrap(),
            remote.clone(),
        );
        staging
            .staging()
            .put(&key, elsewhere.get(&key).await.unwrap())
            .await
            .unwrap();

        let pushed = push_staged(&staging, 4).await.unwrap();
        assert_eq!(pushed.renamed, vec![(time, time.next_second())]);
        assert_eq!(remote.get(&key).await.unwrap(), stored_theirs);
        assert!(
            staged_manifests(staging.staging())
                .await
                .unwrap()
                .is_empty()
        );
        let reader = Store::open(
            remote.clone(),
            &dir.path().join("c"),
            StoreConfig::default(),
        )
        .await
        .unwrap();
        let moved = Manifest::load(&reader, &time.next_second()).await.unwrap();
        assert_eq!(
            (moved.cluster.as_str(), moved.time),
            ("ours", time.next_second())
        );

        // The same bytes pushed again (a push killed before it cleared staging): no rename.
        staging.staging().put(&key, stored_theirs).await.unwrap();
        let pushed = push_staged(&staging, 4).await.unwrap();
        assert!(pushed.renamed.is_empty());
        assert_eq!(Manifest::list(&reader).await.unwrap().len(), 2);
    }
}
