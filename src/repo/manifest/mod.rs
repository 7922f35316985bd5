//! The snapshot manifest, as the repository stores it: what a snapshot holds (every object with its resource, namespace,
//! name, id and size), what it could not read and why, and its figures.
//!
//! It is stored as a tree (see [`stored`]), so that a snapshot that changes little costs
//! little: the listings of its objects and the pages that name them are blobs of the
//! content-addressed store, shared by every snapshot in which they did not change; the root,
//! `store/snapshots/<ts>`, names the pages and holds the rest. It is written after the packs
//! and index files it points at, pages and listings included.
//!
//! Once the plain layout is in place, the exporter writes `store/exports/<ts>` with its
//! figures; a snapshot without it has an incomplete plain layout.
//!
//! A *checkpoint* is a manifest of the same shape whose root is at `store/checkpoints/<ts>`
//! and says `"checkpoint": true`: the state of the cluster between two snapshots. It is
//! never exported. Any manifest may name the objects that are new or changed since the
//! point before it, each with the field manager that changed it last ([`Change`]), in one
//! blob of the store the root refers to.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::kube::{ResourceType, Skipped};
use crate::repo::point::Point;

use crate::store::{
    BackendExt, Folder, ObjectId, PackSource, PutOutcome, PutStats, RemoteFile, SnapshotTime,
    Store, StoreError, StoreResult,
};

mod stored;

/// The format of the manifests this build writes (it reads the one before, too).
pub const MANIFEST_VERSION: u32 = stored::ROOT_VERSION;

/// One object of the snapshot. `resource` indexes [`Manifest::resources`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestObject {
    pub resource: u32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub namespace: Option<String>,
    pub name: String,
    pub id: ObjectId,
    pub size: u32,
}

/// An object new or changed since the point before the manifest's, with the field manager
/// that changed it last (from `metadata.managedFields`, as the API server recorded it;
/// `None` when the object had none). `resource` indexes [`Manifest::resources`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub resource: u32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub namespace: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub manager: Option<String>,
}

/// A resource type that was read, with the number of objects kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestResource {
    #[serde(flatten)]
    pub resource: ResourceType,
    pub count: u64,
}

/// The figures of one snapshot.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotStats {
    pub objects: u64,
    /// Canonical JSON bytes of the kept objects.
    pub bytes: u64,
    /// Objects the server returned that the rules left out.
    pub excluded: u64,
    pub duration_ms: u64,
    /// List requests sent to the API server (pages).
    pub list_requests: u64,
    /// Single objects read from the API server (changed since the previous snapshot), each
    /// with a list narrowed to its name.
    #[serde(default)]
    pub get_requests: u64,
    /// Lists restarted after an expired continue token.
    pub list_restarts: u64,
    pub store: PutStats,
}

/// One plain-layout file the exporter wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedFile {
    /// The key under the cluster's base, `backup/<ts>/...`.
    pub key: String,
    pub size: u64,
    pub objects: u64,
    /// `copied` (server-side, from an identical earlier file) or `uploaded`.
    pub how: Transfer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transfer {
    Copied,
    Uploaded,
}

/// What the exporter did, stored at `store/exports/<ts>` once the plain layout is complete.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRecord {
    pub files: u64,
    pub bytes_uploaded: u64,
    pub bytes_copied: u64,
    pub files_uploaded: u64,
    pub files_copied: u64,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub version: u32,
    pub time: SnapshotTime,
    pub cluster: String,
    pub resources: Vec<ManifestResource>,
    /// Sorted by resource, namespace and name.
    pub objects: Vec<ManifestObject>,
    pub skipped: Vec<Skipped>,
    pub stats: SnapshotStats,
    /// Present once the plain layout is complete.
    pub export: Option<ExportRecord>,
    /// The encrypted plain-layout file of each group of sealed objects.
    pub sealed_files: BTreeMap<GroupKey, SealedFile>,
    /// A checkpoint (root in `store/checkpoints/`, never exported), not a snapshot.
    pub checkpoint: bool,
    /// The objects new or changed since the point before, sorted like `objects` (empty
    /// when unknown: the first snapshot of a cache records none).
    pub changes: Vec<Change>,
}

/// A manifest without its objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    pub time: SnapshotTime,
    pub cluster: String,
    pub resources: Vec<ManifestResource>,
    pub skipped: Vec<Skipped>,
    pub stats: SnapshotStats,
    pub export: Option<ExportRecord>,
    pub checkpoint: bool,
    /// How many changes the manifest names (without reading them).
    pub changes: u64,
}

impl ManifestHead {
    pub fn point(&self) -> Point {
        point_of(self.checkpoint, self.time)
    }
}

fn point_of(checkpoint: bool, time: SnapshotTime) -> Point {
    if checkpoint {
        Point::Checkpoint(time)
    } else {
        Point::Snapshot(time)
    }
}

/// The plain-layout file of a group of sealed objects, encrypted to the recipients when the
/// snapshot was taken (the exporter cannot read sealed objects): a blob of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedFile {
    pub id: ObjectId,
    pub size: u64,
}

/// A group of the manifest: a resource (index into [`Manifest::resources`]) and namespace.
pub type GroupKey = (u32, Option<String>);

impl Manifest {
    pub fn resource_of(&self, object: &ManifestObject) -> &ResourceType {
        &self.resources[object.resource as usize].resource
    }

    /// Counts of objects per namespace (`None` for cluster-scoped objects).
    pub fn namespaces(&self) -> BTreeMap<Option<&str>, u64> {
        let mut counts = BTreeMap::new();
        for object in &self.objects {
            *counts.entry(object.namespace.as_deref()).or_default() += 1;
        }
        counts
    }

    pub fn is_exported(&self) -> bool {
        self.export.is_some()
    }

    /// The point this manifest is: a snapshot or a checkpoint at its time.
    pub fn point(&self) -> Point {
        point_of(self.checkpoint, self.time)
    }

    /// The objects grouped by resource and namespace (runs of the sorted object list): one
    /// group per plain-layout file.
    pub fn groups(&self) -> impl Iterator<Item = &[ManifestObject]> {
        self.objects
            .chunk_by(|a, b| a.resource == b.resource && a.namespace == b.namespace)
    }

    /// Stores the manifest: its listings and pages through the store (packs, then index files), then
    /// the root. Callers have finished the store writer of the objects first, so every id in
    /// it is in a stored pack listed by a stored index file. Returns the bytes the manifest
    /// added to the store (new pages and listings, and the root).
    ///
    /// The root is created, never overwritten: when another writer took the snapshot's name
    /// first, the snapshot takes the next free second and `self.time` says which. A
    /// checkpoint's root goes to `store/checkpoints/`, a snapshot's to `store/snapshots/`.
    pub async fn save(&mut self, store: &Store) -> StoreResult<u64> {
        let key = self.point().root_key();
        let mut writer = store.writer()?;
        let root = stored::write_tree(&mut writer, self, &key).await?;
        let added = writer.finish().await?.compressed_bytes;
        let (time, size) = create_root(store, root).await?;
        self.time = time;
        Ok(added + size)
    }

    /// Reads a manifest, its pages and listings and, when the plain layout is complete, its export
    /// record. Listings are read from local pack copies where there are good ones.
    pub async fn load(store: &Store, time: &SnapshotTime) -> StoreResult<Self> {
        Self::load_from(store, &Point::Snapshot(*time), PackSource::LocalCopyFirst).await
    }

    /// Reads the manifest of a snapshot or a checkpoint, as [`Manifest::load`] does.
    pub async fn load_point(store: &Store, point: &Point) -> StoreResult<Self> {
        Self::load_from(store, point, PackSource::LocalCopyFirst).await
    }

    /// Like [`Manifest::load`], but reads the listings from the destination only, never from
    /// local copies: what `verify` needs, so that a listing whose pack is gone is noticed.
    pub async fn load_from_destination(store: &Store, time: &SnapshotTime) -> StoreResult<Self> {
        Self::load_from(store, &Point::Snapshot(*time), PackSource::Destination).await
    }

    /// [`Manifest::load_from_destination`] for a snapshot or a checkpoint.
    pub async fn load_point_from_destination(store: &Store, point: &Point) -> StoreResult<Self> {
        Self::load_from(store, point, PackSource::Destination).await
    }

    async fn load_from(store: &Store, point: &Point, source: PackSource) -> StoreResult<Self> {
        let (key, root) = stored::read_root(store, point).await?;
        let changes = stored::read_changes(store, &key, &root, source).await?;
        let listings = stored::listings(store, &key, &root, source).await?;
        let sealed_files = listings
            .iter()
            .filter_map(|l| Some(((l.resource, l.namespace.clone()), l.file?)))
            .collect();
        let objects =
            stored::read_objects(store, &key, &listings, root.stats.objects as usize, source)
                .await?;
        drop(listings);
        let export = match point {
            Point::Snapshot(time) => Self::export_record(store, time).await?,
            Point::Checkpoint(_) => None,
        };
        Ok(Manifest {
            version: root.version,
            time: root.time,
            cluster: root.cluster,
            resources: root.resources,
            objects,
            skipped: root.skipped,
            stats: root.stats,
            export,
            sealed_files,
            checkpoint: root.checkpoint,
            changes,
        })
    }

    /// A manifest's figures without its objects (two small reads): what `list` shows.
    pub async fn head(store: &Store, time: &SnapshotTime) -> StoreResult<ManifestHead> {
        Self::head_point(store, &Point::Snapshot(*time)).await
    }

    /// [`Manifest::head`] of a snapshot or a checkpoint (a checkpoint's is one read).
    pub async fn head_point(store: &Store, point: &Point) -> StoreResult<ManifestHead> {
        let (_, root) = stored::read_root(store, point).await?;
        let export = match point {
            Point::Snapshot(time) => Self::export_record(store, time).await?,
            Point::Checkpoint(_) => None,
        };
        Ok(ManifestHead {
            time: root.time,
            cluster: root.cluster,
            resources: root.resources,
            skipped: root.skipped,
            stats: root.stats,
            export,
            checkpoint: root.checkpoint,
            changes: root.changes.map_or(0, |c| u64::from(c.count)),
        })
    }

    /// The export record of a snapshot, `None` while its plain layout is incomplete.
    pub async fn export_record(
        store: &Store,
        time: &SnapshotTime,
    ) -> StoreResult<Option<ExportRecord>> {
        let key = RemoteFile::Export(time).key();
        match store.backend().get_opt(&key).await? {
            Some(bytes) => Ok(Some(
                serde_json::from_slice(&bytes).map_err(|e| malformed(&key, e))?,
            )),
            None => Ok(None),
        }
    }

    /// Records that the plain layout of the snapshot `time` is complete. A record that is
    /// there already (another writer finished the same export) stays as it is.
    pub async fn record_export(
        store: &Store,
        time: &SnapshotTime,
        record: &ExportRecord,
    ) -> StoreResult<()> {
        let key = RemoteFile::Export(time).key();
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| malformed(&key, e))?;
        store.backend().create(&key, bytes.into()).await?;
        Ok(())
    }

    /// The snapshots at the store, oldest first.
    pub async fn list(store: &Store) -> StoreResult<Vec<SnapshotTime>> {
        times_in(store, Folder::Snapshots).await
    }

    /// The checkpoints at the store, oldest first.
    pub async fn list_checkpoints(store: &Store) -> StoreResult<Vec<SnapshotTime>> {
        times_in(store, Folder::Checkpoints).await
    }

    /// Every snapshot and checkpoint at the store, oldest first (two listings).
    pub async fn list_points(store: &Store) -> StoreResult<Vec<Point>> {
        points_at(store.backend().as_ref()).await
    }

    /// The newest snapshot or checkpoint at or before `at` (a snapshot wins over a checkpoint
    /// of the same second); `None` when every point is newer.
    pub async fn point_at(
        store: &Store,
        at: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<Option<Point>> {
        let points = Self::list_points(store).await?;
        Ok(crate::repo::point::newest_at_or_before(&points, at))
    }

    /// The snapshots whose plain layout is complete, oldest first.
    pub async fn list_exported(store: &Store) -> StoreResult<Vec<SnapshotTime>> {
        times_in(store, Folder::Exports).await
    }

    /// The snapshots whose plain layout the retention policy dropped, oldest first. They stay
    /// restorable, diffable and verifiable from the store.
    pub async fn list_dropped_layouts(store: &Store) -> StoreResult<Vec<SnapshotTime>> {
        times_in(store, Folder::DroppedLayouts).await
    }
}

/// Finds one object in many points, reading of each point its root, the pages of its
/// listings and the parts of the object's listing; pages and parts shared by points are read
/// once. What `history` walks every point with, without loading whole manifests.
#[derive(Debug, Default)]
pub struct ObjectLookup(stored::Lookup);

/// One object as a point holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundObject {
    pub resource: ResourceType,
    pub id: ObjectId,
    /// The point's change of the object, when the point names it as new or changed.
    pub change: Option<Change>,
}

/// What a point says of the object looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookedUp {
    /// The resources the point read (a resource it skipped is not among them: its objects
    /// are unknown there, not gone).
    pub resources: Vec<ResourceType>,
    /// The object in each resource `wanted` accepted that holds it.
    pub found: Vec<FoundObject>,
}

impl ObjectLookup {
    pub fn new() -> Self {
        Self::default()
    }

    /// The object `namespace/name` (the namespace is ignored for cluster-scoped resources)
    /// in every resource of `point` that `wanted` accepts.
    pub async fn find(
        &mut self,
        store: &Store,
        point: &Point,
        wanted: &dyn Fn(&ResourceType) -> bool,
        namespace: Option<&str>,
        name: &str,
    ) -> StoreResult<LookedUp> {
        let (resources, found) = self.0.find(store, point, wanted, namespace, name).await?;
        let found = found
            .into_iter()
            .map(|(index, id, change)| FoundObject {
                resource: resources[index as usize].resource.clone(),
                id,
                change,
            })
            .collect();
        Ok(LookedUp {
            resources: resources.into_iter().map(|r| r.resource).collect(),
            found,
        })
    }
}

/// Every id the snapshots and checkpoints `points` refer to: their pages and listings, the
/// objects in them, their sealed plain-layout files and their changes. A page or listing
/// shared by several points is read once. What a prune must keep.
pub async fn referenced_ids(
    store: &Store,
    points: &[Point],
) -> StoreResult<std::collections::HashSet<ObjectId>> {
    let mut ids = std::collections::HashSet::new();
    for point in points {
        let (key, root) = stored::read_root(store, point).await?;
        ids.extend(root.changes.map(|c| c.id));
        // A page read for an earlier snapshot was read with every listing it names.
        let fresh_pages: Vec<_> = root.pages.iter().filter(|p| ids.insert(p.id)).collect();
        let mut listings = if root.version == stored::ROOT_VERSION {
            let resources = root.resources.len();
            stored::read_pages(
                store,
                &key,
                &fresh_pages,
                resources,
                PackSource::LocalCopyFirst,
            )
            .await?
        } else {
            stored::listings(store, &key, &root, PackSource::LocalCopyFirst).await?
        };
        for listing in &listings {
            ids.extend(listing.file.map(|f| f.id));
        }
        listings.retain_mut(|l| {
            let fresh = l.parts.iter().any(|id| !ids.contains(id));
            ids.extend(l.parts.iter().copied());
            fresh
        });
        stored::read_listings(
            store,
            &key,
            &listings,
            PackSource::LocalCopyFirst,
            |_, items| ids.extend(items.into_iter().map(|(_, id, _)| id)),
        )
        .await?;
    }
    Ok(ids)
}

/// How many of the blobs the snapshot `time` refers to (pages, listings, objects, sealed
/// files) the local index no longer holds: what a writer asks after a prune may have run
/// while it was not looking (its lease lapsed, or the snapshot waited in staging), once the
/// store has checked its index against the packs. A tree that can no longer be read counts
/// as one.
pub async fn unstored_blobs(store: &Store, time: &SnapshotTime) -> StoreResult<usize> {
    unstored_point_blobs(store, &Point::Snapshot(*time)).await
}

/// [`unstored_blobs`] of a snapshot or a checkpoint.
pub async fn unstored_point_blobs(store: &Store, point: &Point) -> StoreResult<usize> {
    let ids = match referenced_ids(store, std::slice::from_ref(point)).await {
        Ok(ids) => ids,
        Err(e) if e.is_outage() => return Err(e),
        Err(_) => return Ok(1),
    };
    let mut missing = 0;
    for id in &ids {
        if !store.contains(id)? {
            missing += 1;
        }
    }
    Ok(missing)
}

/// How many names after the first a manifest root tries before it gives up: other writers
/// would have to be taking a snapshot every second for a minute.
pub const NAME_TRIES: usize = 60;

/// Creates the root at its time's name in its folder, or at the next free second after it.
/// Returns the time it was stored under and its size.
async fn create_root(store: &Store, mut root: stored::Root) -> StoreResult<(SnapshotTime, u64)> {
    for _ in 0..NAME_TRIES {
        let key = point_of(root.checkpoint, root.time).root_key();
        let bytes = encode_json(&key, &root)?;
        let size = bytes.len() as u64;
        if store.backend().create(&key, bytes).await? == PutOutcome::Created {
            return Ok((root.time, size));
        }
        tracing::info!(snapshot = %root.time, "another writer took this snapshot name; taking the next second");
        root.time = root.time.next_second();
    }
    Err(malformed(
        &point_of(root.checkpoint, root.time).root_key(),
        format!("{NAME_TRIES} snapshot names in a row are taken by other writers"),
    ))
}

/// A stored manifest root (as read from `key`) renamed to `time`: what a push does with a
/// staged snapshot whose name another writer took at the destination meanwhile. A
/// checkpoint's root stays a checkpoint's: it goes to `Point::of_root_key(key)` at `time`.
pub fn retimed_root(key: &str, stored: &[u8], time: SnapshotTime) -> StoreResult<bytes::Bytes> {
    let json = zstd::stream::decode_all(stored).map_err(|e| malformed(key, e))?;
    // Any version this build reads is renamed as it is, without rewriting its format.
    let decoded = stored::decode_root(key, &json)?;
    let mut root: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&json).map_err(|e| malformed(key, e))?;
    root.insert(
        "time".to_string(),
        serde_json::to_value(time).map_err(|e| malformed(key, e))?,
    );
    encode_json(&point_of(decoded.checkpoint, time).root_key(), &root)
}

async fn times_in(store: &Store, folder: Folder<'_>) -> StoreResult<Vec<SnapshotTime>> {
    times_at(store.backend().as_ref(), folder).await
}

/// Every snapshot and checkpoint in `backend`, oldest first.
pub async fn points_at(backend: &dyn crate::store::Backend) -> StoreResult<Vec<Point>> {
    let mut points: Vec<Point> = times_at(backend, Folder::Snapshots)
        .await?
        .into_iter()
        .map(Point::Snapshot)
        .chain(
            times_at(backend, Folder::Checkpoints)
                .await?
                .into_iter()
                .map(Point::Checkpoint),
        )
        .collect();
    points.sort();
    Ok(points)
}

/// The snapshot times named in `folder` of `backend` (roots, export or dropped-layout
/// records), oldest first.
pub async fn times_at(
    backend: &dyn crate::store::Backend,
    folder: Folder<'_>,
) -> StoreResult<Vec<SnapshotTime>> {
    let mut times: Vec<SnapshotTime> = backend
        .list_all(&folder.prefix())
        .await?
        .iter()
        .filter_map(|m| folder.name_in(&m.key))
        .filter_map(|name| name.parse().ok())
        .collect();
    times.sort();
    Ok(times)
}

fn malformed(key: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Malformed {
        key: key.to_string(),
        what: "manifest",
        reason: reason.to_string(),
    }
}

fn encode_json<T: Serialize>(key: &str, value: &T) -> StoreResult<bytes::Bytes> {
    let json = serde_json::to_vec(value).map_err(|e| malformed(key, e))?;
    let compressed = zstd::bulk::compress(&json, 3).map_err(|e| malformed(key, e))?;
    Ok(bytes::Bytes::from(compressed))
}
