//! The exporter: from a snapshot manifest, materialize the plain layout
//! `backup/<ts>/[<namespace>/]<resource>.json` that people and scripts read.
//!
//! Each file is a kubectl List of the file's objects, sorted by name. A file is described by
//! its recipe (the ordered ids of its objects); the local index remembers where each recipe
//! was last written, so an unchanged file is a server-side copy of that key, without reading
//! or rendering its objects. Changed files are rendered from the store and uploaded.
//!
//! A group of sealed objects (encrypted Secrets) is never rendered here: the snapshot stored
//! its encrypted file (`<name>.age`), which is copied or uploaded as it is.
//!
//! The exporter runs after the manifest is stored (packs -> index -> manifest -> layout) and
//! can run again on the same manifest: it finishes an interrupted export without redoing
//! what is already in place. It never writes outside `backup/<ts>/`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::repo::manifest::{ExportRecord, ExportedFile, Manifest, SealedFile, Transfer};
use crate::store::cache::Table;
use crate::store::{FileHash, ObjectId, RemoteFile, Store, StoreError};

/// Name of the local index table: recipe -> where that file was last written.
const EXPORTED_TREE: &str = "exported";
/// Bumped whenever the rendering of a file changes, so old recipes are not copied.
const FORMAT: &[u8] = b"kube-autosave list v1\n";
/// The recipe of a sealed file is its blob's id: the same file is copied, never encrypted
/// again.
const SEALED_FORMAT: &[u8] = b"kube-autosave sealed list v1\n";

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("exporting {key}: {source}")]
    Store {
        key: String,
        #[source]
        source: StoreError,
    },
    #[error(transparent)]
    Manifest(StoreError),
}

impl ExportError {
    /// Whether the destination was away (a later try may succeed as it is).
    pub fn is_outage(&self) -> bool {
        match self {
            ExportError::Store { source, .. } | ExportError::Manifest(source) => source.is_outage(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Files copied or uploaded at the same time.
    pub concurrency: usize,
}

impl Default for ExportOptions {
    fn default() -> Self {
        // Mostly server-side copies: each is one short request, so many in flight.
        Self {
            concurrency: crate::config::DEFAULT_EXPORT_CONCURRENCY,
        }
    }
}

/// One file to write.
#[derive(Debug, Clone)]
pub struct PlannedFile {
    pub namespace: Option<String>,
    pub name: String,
    pub key: String,
    pub ids: Vec<ObjectId>,
    /// The size of each object, in the order of `ids`.
    pub sizes: Vec<u32>,
    /// The size of the rendered file.
    pub size: u64,
    pub recipe: FileHash,
    /// For a group of sealed objects, the encrypted file the snapshot stored: it is written
    /// as it is (`<name>.age`), never rendered.
    pub sealed: Option<SealedFile>,
}

/// Where a recipe was last written (kept in the local index).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Written {
    key: String,
    size: u64,
    how: Transfer,
}

/// The file name of a resource: the plural, qualified by the group when the same plural is
/// served by more than one group and this one is not the core group.
fn file_names(manifest: &Manifest) -> Vec<String> {
    let mut groups_of: HashMap<&str, Vec<&str>> = HashMap::new();
    let plurals = manifest
        .resources
        .iter()
        .map(|r| (r.resource.resource.as_str(), r.resource.group.as_str()))
        .chain(
            manifest
                .skipped
                .iter()
                .filter_map(|s| s.resource.as_deref().map(|r| (r, s.group.as_str()))),
        );
    for (plural, group) in plurals {
        let groups = groups_of.entry(plural).or_default();
        if !groups.contains(&group) {
            groups.push(group);
        }
    }
    manifest
        .resources
        .iter()
        .map(|r| {
            let rt = &r.resource;
            let shared = groups_of
                .get(rt.resource.as_str())
                .is_some_and(|g| g.len() > 1);
            if shared && !rt.group.is_empty() {
                format!("{}.{}.json", rt.resource, rt.group)
            } else {
                format!("{}.json", rt.resource)
            }
        })
        .collect()
}

/// The files of a manifest's plain layout, in key order: one per run of objects of the same
/// resource and namespace.
pub fn plan(manifest: &Manifest) -> Vec<PlannedFile> {
    let mut files = planned_files(manifest);
    files.sort_by(|a, b| a.key.cmp(&b.key));
    debug_assert!(
        files.windows(2).all(|w| w[0].key != w[1].key),
        "manifest objects are not sorted by resource and namespace"
    );
    files
}

/// The files of a manifest's plain layout in the manifest's order (by resource, then
/// namespace), which is about the order the snapshot stored their objects in: files that
/// follow one another read the same frames of the same packs.
fn planned_files(manifest: &Manifest) -> Vec<PlannedFile> {
    let names = file_names(manifest);
    manifest
        .groups()
        .map(|group| {
            let first = &group[0];
            let name = &names[first.resource as usize];
            let ids: Vec<ObjectId> = group.iter().map(|o| o.id).collect();
            let sizes: Vec<u32> = group.iter().map(|o| o.size).collect();
            let bytes = sizes.iter().map(|&size| u64::from(size)).sum();
            let sealed = manifest
                .sealed_files
                .get(&(first.resource, first.namespace.clone()))
                .copied();
            let mut hasher = blake3::Hasher::new();
            let (name, size) = match &sealed {
                Some(file) => {
                    hasher.update(SEALED_FORMAT);
                    hasher.update(file.id.as_bytes());
                    (format!("{name}{}", crate::seal::FILE_EXTENSION), file.size)
                }
                None => {
                    hasher.update(FORMAT);
                    for id in &ids {
                        hasher.update(id.as_bytes());
                    }
                    (name.clone(), rendered_size(ids.len(), bytes))
                }
            };
            PlannedFile {
                namespace: first.namespace.clone(),
                key: RemoteFile::Layout {
                    time: &manifest.time,
                    namespace: first.namespace.as_deref(),
                    name: &name,
                }
                .key(),
                name,
                size,
                recipe: FileHash::from_bytes(*hasher.finalize().as_bytes()),
                ids,
                sizes,
                sealed,
            }
        })
        .collect()
}

pub use crate::repo::list_file::{LIST_HEAD, LIST_TAIL, render, rendered_size};

/// Whether `data` is exactly what [`render`] makes of the objects of `file`, checked by
/// hashing each object's part of it against its id: no object needs to be read. A sealed
/// file is checked against the id of the encrypted file the snapshot stored.
pub fn is_rendering_of(data: &[u8], file: &PlannedFile) -> bool {
    if data.len() as u64 != file.size {
        return false;
    }
    if let Some(sealed) = &file.sealed {
        return ObjectId::of(data) == sealed.id;
    }
    let Some(mut rest) = data.strip_prefix(LIST_HEAD) else {
        return false;
    };
    for (i, (id, &size)) in file.ids.iter().zip(&file.sizes).enumerate() {
        let separator: &[u8] = if i == 0 { b"\n" } else { b",\n" };
        let Some(after) = rest.strip_prefix(separator) else {
            return false;
        };
        let Some((object, after)) = after.split_at_checked(size as usize) else {
            return false;
        };
        if ObjectId::of(object) != *id {
            return false;
        }
        rest = after;
    }
    rest == LIST_TAIL
}

/// Files recorded in the local index at once: one sled write for this many files instead
/// of one each (about a tenth of a second export's CPU at 100,000 objects).
const REMEMBER_BATCH: usize = 256;

struct Exporter<'a> {
    store: &'a Store,
    written: Table<Written>,
    /// Files written and not yet recorded in `written`. Recorded before the export returns,
    /// whether it succeeds or fails.
    pending: std::sync::Mutex<Vec<(FileHash, Written)>>,
}

impl Exporter<'_> {
    fn lookup(&self, recipe: &FileHash) -> Option<Written> {
        self.written.get(recipe.as_bytes())
    }

    fn remember(&self, recipe: &FileHash, written: &Written) -> Result<(), StoreError> {
        let full = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.push((*recipe, written.clone()));
            if pending.len() < REMEMBER_BATCH {
                return Ok(());
            }
            std::mem::take(&mut *pending)
        };
        self.record(&full)
    }

    /// Records the files written since the last batch.
    fn flush(&self) -> Result<(), StoreError> {
        let rest = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        self.record(&rest)
    }

    fn record(&self, files: &[(FileHash, Written)]) -> Result<(), StoreError> {
        self.written.insert_many(
            files
                .iter()
                .map(|(recipe, written)| (recipe.as_bytes(), written)),
        )
    }

    async fn export_file(&self, file: PlannedFile) -> Result<ExportedFile, ExportError> {
        let fail = |source| ExportError::Store {
            key: file.key.clone(),
            source,
        };
        let done = |written: &Written| ExportedFile {
            key: file.key.clone(),
            size: written.size,
            objects: file.ids.len() as u64,
            how: written.how,
        };
        if let Some(previous) = self.lookup(&file.recipe) {
            if previous.key == file.key {
                // Written by an earlier, interrupted run of this export.
                return Ok(done(&previous));
            }
            match self.store.backend().copy(&previous.key, &file.key).await {
                Ok(()) => {
                    let written = Written {
                        key: file.key.clone(),
                        how: Transfer::Copied,
                        ..previous
                    };
                    self.remember(&file.recipe, &written).map_err(fail)?;
                    return Ok(done(&written));
                }
                Err(StoreError::NotFound { .. }) => {
                    tracing::debug!(from = %previous.key, "copy source is gone; uploading");
                }
                Err(e) => return Err(fail(e)),
            }
        }
        let data = match &file.sealed {
            // From the local copy of its pack when there is one, as rendered files' objects.
            Some(sealed) => {
                let mut read: Vec<(ObjectId, Bytes)> = self
                    .store
                    .get_many(vec![sealed.id])
                    .try_collect()
                    .await
                    .map_err(fail)?;
                read.pop()
                    .map(|(_, data)| data)
                    .ok_or(StoreError::MissingObject(sealed.id))
                    .map_err(fail)?
            }
            None => self.render(&file).await.map_err(fail)?,
        };
        let written = Written {
            key: file.key.clone(),
            size: data.len() as u64,
            how: Transfer::Uploaded,
        };
        self.store
            .backend()
            .put(&file.key, data)
            .await
            .map_err(fail)?;
        self.remember(&file.recipe, &written).map_err(fail)?;
        Ok(done(&written))
    }

    /// The file rendered from its objects, read from the store.
    async fn render(&self, file: &PlannedFile) -> Result<Bytes, StoreError> {
        let by_id: HashMap<ObjectId, Bytes> =
            self.store.get_many(file.ids.clone()).try_collect().await?;
        let objects: Vec<Bytes> = file
            .ids
            .iter()
            .map(|id| match by_id.get(id) {
                // A sealed object in a group without its encrypted file: never rendered in
                // the clear, and not readable here anyway.
                Some(object) if crate::store::sealed::is_sealed(object) => {
                    Err(StoreError::Malformed {
                        key: file.key.clone(),
                        what: "plain-layout file",
                        reason: format!("object {id} is sealed and its group has no sealed file"),
                    })
                }
                Some(object) => Ok(object.clone()),
                None => Err(StoreError::MissingObject(*id)),
            })
            .collect::<Result<_, _>>()?;
        Ok(render(&objects))
    }
}

/// What the exporter reports while it runs.
pub type ExportProgressFn = Arc<dyn Fn(&ExportedFile) + Send + Sync>;

/// Writes the plain layout of `manifest`, then records the export in the repository
/// (`store/exports/<ts>`) and returns the record; the manifest itself is not touched.
/// Running it again on a manifest whose export was interrupted finishes the job.
pub async fn export(
    store: &Store,
    manifest: &Manifest,
    options: &ExportOptions,
    progress: Option<ExportProgressFn>,
) -> Result<ExportRecord, ExportError> {
    let started = Instant::now();
    let written = store
        .cache()
        .table(EXPORTED_TREE)
        .map_err(ExportError::Manifest)?;
    let exporter = Exporter {
        store,
        written,
        pending: std::sync::Mutex::default(),
    };
    if exporter.written.is_empty() {
        seed_from_latest_export(store, &exporter, manifest).await;
    }
    // In the manifest's order, not the keys': the objects of files rendered one after
    // another sit in the same frames, which are then decompressed once.
    let files = planned_files(manifest);
    // After a failure no new file is started, but the ones under way finish and are
    // recorded, so that the next run does not upload them again.
    let failed = std::sync::atomic::AtomicBool::new(false);
    let outcomes: Vec<Option<Result<ExportedFile, ExportError>>> = futures::stream::iter(files)
        .map(|file| {
            let (failed, exporter, progress) = (&failed, &exporter, &progress);
            async move {
                if failed.load(std::sync::atomic::Ordering::SeqCst) {
                    return None;
                }
                let outcome = exporter.export_file(file).await;
                match &outcome {
                    Ok(file) => {
                        if let Some(progress) = progress {
                            progress(file);
                        }
                    }
                    Err(_) => failed.store(true, std::sync::atomic::Ordering::SeqCst),
                }
                Some(outcome)
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    let mut results = Vec::with_capacity(outcomes.len());
    let mut first_error = None;
    for outcome in outcomes.into_iter().flatten() {
        match outcome {
            Ok(file) => results.push(file),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    // What was written is recorded even after a failure, so that the next run copies it.
    let recorded = exporter.flush();
    if let Some(e) = first_error {
        recorded.map_err(ExportError::Manifest)?;
        store.cache().flush().await.map_err(ExportError::Manifest)?;
        return Err(e);
    }
    recorded.map_err(ExportError::Manifest)?;
    let mut record = ExportRecord {
        files: results.len() as u64,
        ..ExportRecord::default()
    };
    for file in &results {
        match file.how {
            Transfer::Copied => {
                record.files_copied += 1;
                record.bytes_copied += file.size;
            }
            Transfer::Uploaded => {
                record.files_uploaded += 1;
                record.bytes_uploaded += file.size;
            }
        }
    }
    record.duration_ms = started.elapsed().as_millis() as u64;
    Manifest::record_export(store, &manifest.time, &record)
        .await
        .map_err(ExportError::Manifest)?;
    store.cache().flush().await.map_err(ExportError::Manifest)?;
    Ok(record)
}

/// A lost local index forgets where files were written; the newest exported snapshot knows
/// (its files are rendered from its manifest), so the next export copies instead of
/// uploading everything again.
async fn seed_from_latest_export(store: &Store, exporter: &Exporter<'_>, current: &Manifest) {
    let Ok(exported) = Manifest::list_exported(store).await else {
        return;
    };
    // A layout the retention policy dropped has no files left to copy.
    let dropped = Manifest::list_dropped_layouts(store)
        .await
        .unwrap_or_default();
    for time in exported
        .iter()
        .rev()
        .filter(|t| **t != current.time && !dropped.contains(t))
    {
        let Ok(manifest) = Manifest::load(store, time).await else {
            continue;
        };
        for file in plan(&manifest) {
            let written = Written {
                key: file.key,
                size: file.size,
                how: Transfer::Copied,
            };
            let _ = exporter.remember(&file.recipe, &written);
        }
        // Recorded before the export looks anything up.
        let _ = exporter.flush();
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_files_are_kubectl_lists() {
        let objects = vec![
            Bytes::from_static(
                br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}"#,
            ),
            Bytes::from_static(
                br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b"}}"#,
            ),
        ];
        let file = render(&objects);
        let parsed: serde_json::Value = serde_json::from_slice(&file).unwrap();
        assert_eq!(parsed["kind"], "List");
        assert_eq!(parsed["apiVersion"], "v1");
        assert_eq!(parsed["items"].as_array().unwrap().len(), 2);
        assert_eq!(parsed["items"][1]["metadata"]["name"], "b");
        let empty: serde_json::Value = serde_json::from_slice(&render(&[])).unwrap();
        assert_eq!(empty["items"], serde_json::json!([]));
    }

    #[test]
    fn the_size_of_a_file_is_known_before_it_is_rendered() {
        for n in 0..4 {
            let objects: Vec<Bytes> = (0..n)
                .map(|i| Bytes::from(format!("{{\"n\":{}}}", "7".repeat(i + 1))))
                .collect();
            let bytes: u64 = objects.iter().map(|o| o.len() as u64).sum();
            assert_eq!(
                rendered_size(n, bytes),
                render(&objects).len() as u64,
                "{n}"
            );
        }
    }
    #[test]
    fn a_file_is_checked_against_its_objects_ids_without_them() {
        let objects: Vec<Bytes> = ["a", "bb", "ccc"]
            .iter()
            .map(|name| Bytes::from(format!("{{\"metadata\":{{\"name\":\"{name}\"}}}}")))
            .collect();
        let file = |objects: &[Bytes]| PlannedFile {
            namespace: None,
            name: "configmaps".into(),
            key: "backup/x/configmaps.json".into(),
            ids: objects.iter().map(|o| ObjectId::of(o)).collect(),
            sizes: objects.iter().map(|o| o.len() as u32).collect(),
            size: render(objects).len() as u64,
            recipe: FileHash::from_bytes([0; 32]),
            sealed: None,
        };
        for n in 0..=objects.len() {
            assert!(is_rendering_of(
                &render(&objects[..n]),
                &file(&objects[..n])
            ));
        }
        let planned = file(&objects);
        let good = render(&objects).to_vec();
        // One byte changed anywhere, in an object or in the List around them.
        for at in [0, LIST_HEAD.len() + 3, good.len() / 2, good.len() - 2] {
            let mut bad = good.clone();
            bad[at] ^= 0x20;
            assert!(!is_rendering_of(&bad, &planned), "byte {at}");
        }
        // The same objects in another order, and a file cut short.
        let swapped = [objects[1].clone(), objects[0].clone(), objects[2].clone()];
        assert!(!is_rendering_of(&render(&swapped), &planned));
        assert!(!is_rendering_of(&good[..good.len() - 1], &planned));
        assert!(!is_rendering_of(b"", &planned));
    }
}
