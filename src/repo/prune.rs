//! Forget and prune: the end of a snapshot's life at the destination.
//!
//! `forget` decides, with the retention policy (or the names a person gives), which snapshots
//! go and which kept ones lose their plain layout, and which checkpoints are older than the
//! policy keeps them; it deletes the manifest roots of the snapshots and checkpoints that go
//! and records each dropped layout (`store/layout-dropped/<ts>`). All are small writes. `prune` then reclaims what no remaining snapshot refers to: the plain-layout
//! folders of snapshots that are gone or whose layout was dropped, records left without a
//! snapshot, and packs and index files. A pack whose objects are all unused is deleted; one
//! whose unused share passes `max_unused` is rewritten with only the used objects.
//!
//! Every step is planned first (`plan_*`, which reads only) and then carried out, so
//! `--dry-run` shows exactly what would be done. Both run under the folder's prune lock, and
//! a prune plans only once no writer is at work (see `repo::lock`).
//!
//! Deletions go in an order that never leaves a remaining snapshot pointing at something
//! missing, so a prune stopped at any point and run again finishes the job:
//! 1. dropped-layout records, then manifest roots of forgotten snapshots and checkpoints
//!    (forget);
//! 2. plain-layout folders, then records left without a snapshot;
//! 3. rewritten packs, then the index file that lists them and the kept packs of the index
//!    files it replaces;
//! 4. the replaced index files;
//! 5. unused and rewritten packs.
//!
//! Nothing here deletes a pack a remaining snapshot refers to, and nothing deletes anything
//! that is not in the plan it was given.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};

use crate::repo::lock::{Held, LockError, LockTimes, lock_prune, wait_for_writers};
use crate::repo::manifest::{referenced_ids, times_at};
use crate::repo::point::Point;
use crate::repo::retention::{self, Decision, Policy, SnapshotState};
use crate::store::exclusive::{is_lease_key, lease_is_stale};
use crate::store::pack::{IndexFile, IndexedBlob, IndexedPack, PackBuilder};
use crate::store::{
    BackendExt, DynBackend, Folder, IndexId, ObjectId, PackId, PutOutcome, RemoteFile,
    SnapshotTime, Store, StoreError,
};

/// Batches of up to 1,000 keys deleted at the same time.
const BATCHES_IN_FLIGHT: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("{0}")]
    Policy(String),
    #[error("there is no snapshot {0} in this folder (`kube-autosave list` shows them)")]
    NoSuchSnapshot(SnapshotTime),
    #[error(
        "the remaining snapshots refer to {missing} object(s) that no index file lists or whose pack is gone \
         (the first: {first:#}); run `kube-autosave verify` to see which snapshots are damaged; nothing was deleted"
    )]
    Damaged { missing: usize, first: ObjectId },
}

impl PruneError {
    /// Whether the destination was away (a later try may succeed as it is).
    pub fn is_outage(&self) -> bool {
        match self {
            PruneError::Store(e) => e.is_outage(),
            PruneError::Lock(e) => e.is_outage(),
            _ => false,
        }
    }
}

/// Which snapshots a forget removes.
#[derive(Debug, Clone)]
pub enum Selection {
    /// What the retention policy does not keep; kept snapshots beyond its `keepLayout` lose
    /// their plain layout.
    Policy(Policy),
    /// These snapshots, and no others.
    Named(Vec<SnapshotTime>),
}

/// The snapshots in a folder and the state of their plain layout.
#[derive(Debug, Clone, Default)]
pub struct Snapshots {
    /// Every snapshot with a manifest root, oldest first.
    pub times: Vec<SnapshotTime>,
    /// Those whose plain layout was complete (export record).
    pub exported: HashSet<SnapshotTime>,
    /// Those whose plain layout was dropped.
    pub dropped: HashSet<SnapshotTime>,
    /// Every checkpoint with a manifest root, oldest first.
    pub checkpoints: Vec<SnapshotTime>,
}

impl Snapshots {
    /// Reads the folder's roots and records (four listings).
    pub async fn read(backend: &DynBackend) -> Result<Self, StoreError> {
        let backend = backend.as_ref();
        Ok(Self {
            times: times_at(backend, Folder::Snapshots).await?,
            exported: times_at(backend, Folder::Exports)
                .await?
                .into_iter()
                .collect(),
            dropped: times_at(backend, Folder::DroppedLayouts)
                .await?
                .into_iter()
                .collect(),
            checkpoints: times_at(backend, Folder::Checkpoints).await?,
        })
    }

    /// Every remaining snapshot and checkpoint: what a prune keeps the data of.
    pub fn points(&self) -> Vec<Point> {
        let mut points: Vec<Point> = self
            .times
            .iter()
            .copied()
            .map(Point::Snapshot)
            .chain(self.checkpoints.iter().copied().map(Point::Checkpoint))
            .collect();
        points.sort();
        points
    }

    /// The folder as it is once `plan` is carried out: what a dry run of a forget followed by
    /// a prune plans the prune on.
    pub fn after_forget(mut self, plan: &ForgetPlan) -> Self {
        self.times.retain(|time| !plan.forget.contains(time));
        self.checkpoints
            .retain(|time| !plan.forget_checkpoints.contains(time));
        self.dropped.extend(plan.drop_layout.iter().copied());
        self
    }

    /// The state of one snapshot's plain layout, as `list` shows it.
    pub fn layout(&self, time: &SnapshotTime) -> LayoutState {
        if self.dropped.contains(time) {
            LayoutState::Dropped
        } else if self.exported.contains(time) {
            LayoutState::Complete
        } else {
            LayoutState::Incomplete
        }
    }
}

/// Where a snapshot's plain layout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayoutState {
    Complete,
    /// Not complete yet: its export has not run or not finished.
    Incomplete,
    /// Dropped by the retention policy; the snapshot is restorable from the store.
    Dropped,
    /// A checkpoint's: it never has one (it is restored from the store).
    None,
}

impl std::fmt::Display for LayoutState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LayoutState::Complete => "yes",
            LayoutState::Incomplete => "incomplete",
            LayoutState::Dropped => "dropped",
            LayoutState::None => "none",
        })
    }
}

/// What a forget will do.
#[derive(Debug, Clone)]
pub struct ForgetPlan {
    /// One per snapshot, newest first: kept or not, and why.
    pub decisions: Vec<Decision>,
    /// Snapshots whose manifest root is deleted.
    pub forget: Vec<SnapshotTime>,
    /// Kept snapshots whose plain layout is dropped.
    pub drop_layout: Vec<SnapshotTime>,
    /// Checkpoints whose manifest root is deleted (older than `keepCheckpoints` before the
    /// newest point), oldest first.
    pub forget_checkpoints: Vec<SnapshotTime>,
    /// Checkpoints that stay.
    pub kept_checkpoints: usize,
}

/// Decides what a forget does. Reads only.
pub async fn plan_forget(
    backend: &DynBackend,
    selection: &Selection,
) -> Result<ForgetPlan, PruneError> {
    let snapshots = Snapshots::read(backend).await?;
    let decisions = match selection {
        Selection::Policy(policy) => {
            let states: Vec<SnapshotState> = snapshots
                .times
                .iter()
                .map(|time| SnapshotState {
                    time: *time,
                    // A dropped layout was complete once: the snapshot counts as complete.
                    complete: snapshots.exported.contains(time) || snapshots.dropped.contains(time),
                })
                .collect();
            retention::apply(policy, &states).map_err(|e| PruneError::Policy(e.to_string()))?
        }
        Selection::Named(names) => {
            let wanted: HashSet<&SnapshotTime> = names.iter().collect();
            if let Some(missing) = names.iter().find(|n| !snapshots.times.contains(n)) {
                return Err(PruneError::NoSuchSnapshot(*missing));
            }
            snapshots
                .times
                .iter()
                .rev()
                .map(|time| {
                    let keep = !wanted.contains(time);
                    Decision {
                        time: *time,
                        complete: snapshots.exported.contains(time)
                            || snapshots.dropped.contains(time),
                        keep,
                        layout: keep && !snapshots.dropped.contains(time),
                        reasons: vec![if keep { "not named" } else { "named" }.to_string()],
                    }
                })
                .collect()
        }
    };
    let forget = decisions
        .iter()
        .filter(|d| !d.keep)
        .map(|d| d.time)
        .collect();
    let drop_layout = decisions
        .iter()
        .filter(|d| d.keep && !d.layout && d.complete && !snapshots.dropped.contains(&d.time))
        .map(|d| d.time)
        .collect();
    // Named snapshots are all a person asked to forget; checkpoints go by the policy only.
    let forget_checkpoints = match selection {
        Selection::Policy(policy) => {
            let newest = snapshots.points().last().map(|p| p.time());
            retention::checkpoints_to_forget(policy, &snapshots.checkpoints, newest)
        }
        Selection::Named(_) => Vec::new(),
    };
    Ok(ForgetPlan {
        decisions,
        forget,
        drop_layout,
        kept_checkpoints: snapshots.checkpoints.len() - forget_checkpoints.len(),
        forget_checkpoints,
    })
}

/// What a forget did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForgetReport {
    pub forgotten: u64,
    pub layouts_dropped: u64,
    pub checkpoints_forgotten: u64,
}

/// Carries out a forget plan while `lock` (the prune lock) is held: the dropped-layout
/// records first (a record for a snapshot that is then forgotten is a stray a prune
/// removes), then the manifest roots, oldest first.
pub async fn forget(
    backend: &DynBackend,
    plan: &ForgetPlan,
    lock: &Held,
) -> Result<ForgetReport, PruneError> {
    let mut report = ForgetReport::default();
    for time in &plan.drop_layout {
        lock.check()?;
        let key = RemoteFile::DroppedLayout(time).key();
        // A record that is there already (an earlier forget stopped after it) says the same.
        let _: PutOutcome = backend
            .create(&key, bytes::Bytes::from_static(b"{}"))
            .await?;
        report.layouts_dropped += 1;
    }
    let mut forget = plan.forget.clone();
    forget.sort();
    for time in &forget {
        lock.check()?;
        backend.delete(&RemoteFile::Snapshot(time).key()).await?;
        report.forgotten += 1;
        tracing::info!(snapshot = %time, "snapshot forgotten");
    }
    for time in &plan.forget_checkpoints {
        lock.check()?;
        backend.delete(&RemoteFile::Checkpoint(time).key()).await?;
        report.checkpoints_forgotten += 1;
    }
    if report.checkpoints_forgotten > 0 {
        tracing::info!(
            checkpoints = report.checkpoints_forgotten,
            "checkpoints forgotten"
        );
    }
    Ok(report)
}

/// Why a plain-layout folder goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutRemoval {
    /// Its snapshot is gone.
    Forgotten,
    /// Its snapshot is kept, without its plain layout.
    Dropped,
}

/// A plain-layout folder a prune deletes.
#[derive(Debug, Clone)]
pub struct LayoutFolder {
    pub time: SnapshotTime,
    pub why: LayoutRemoval,
    pub keys: Vec<String>,
    pub bytes: u64,
}

/// A pack rewritten with only its used objects.
#[derive(Debug, Clone)]
pub struct PackRewrite {
    pub pack: PackId,
    pub size: u64,
    pub keep: Vec<IndexedBlob>,
    /// Raw bytes of the objects kept, and of all the pack's objects.
    pub used_raw: u64,
    pub total_raw: u64,
}

/// What a prune will do.
#[derive(Debug, Clone, Default)]
pub struct PrunePlan {
    /// Snapshots that remain.
    pub snapshots: usize,
    pub layouts: Vec<LayoutFolder>,
    /// Export and dropped-layout records of snapshots that are gone, and stale leases left
    /// beside roots and records by crashed writers.
    pub stray_records: Vec<String>,
    /// Packs at the destination and their bytes.
    pub packs: u64,
    pub pack_bytes: u64,
    pub index_files: u64,
    /// Packs no remaining snapshot uses, with their size.
    pub delete_packs: Vec<(PackId, u64)>,
    /// Of them, packs no index file lists (left by interrupted writers).
    pub unindexed_packs: u64,
    pub rewrite_packs: Vec<PackRewrite>,
    /// Index files replaced by one new index file.
    pub replace_index: Vec<IndexId>,
    /// Packs of the replaced index files that stay as they are.
    pub keep_listed: Vec<IndexedPack>,
    /// Packs index files list that are gone from the destination.
    pub missing_packs: u64,
    /// The unused share above which a pack is rewritten.
    pub max_unused: f64,
}

impl PrunePlan {
    /// Bytes of plain-layout files the plan deletes.
    pub fn layout_bytes(&self) -> u64 {
        self.layouts.iter().map(|l| l.bytes).sum()
    }

    pub fn layout_files(&self) -> u64 {
        self.layouts.iter().map(|l| l.keys.len() as u64).sum()
    }

    /// Bytes of packs deleted outright, and of packs rewritten.
    pub fn pack_bytes_deleted(&self) -> u64 {
        self.delete_packs.iter().map(|(_, size)| size).sum()
    }

    pub fn pack_bytes_rewritten(&self) -> u64 {
        self.rewrite_packs.iter().map(|r| r.size).sum()
    }

    /// Bytes the plan takes off the destination: layout files, unused packs, and the unused
    /// share of rewritten packs.
    pub fn bytes_reclaimed(&self) -> u64 {
        let rewritten: u64 = self
            .rewrite_packs
            .iter()
            .map(|r| {
                let unused =
                    r.total_raw.saturating_sub(r.used_raw) as f64 / r.total_raw.max(1) as f64;
                (r.size as f64 * unused) as u64
            })
            .sum();
        self.layout_bytes() + self.pack_bytes_deleted() + rewritten
    }

    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.layouts.is_empty()
            && self.stray_records.is_empty()
            && self.delete_packs.is_empty()
            && self.rewrite_packs.is_empty()
            && self.replace_index.is_empty()
    }
}

/// Decides what a prune does with the folder in the state `snapshots` (read just before,
/// or as a forget will leave it). Reads only: the listings of the remaining snapshots, every index file, leases beside roots and records, and the listings of `store/packs/`, `store/snapshots/`, `store/exports/` and
/// `backup/`.
///
/// `max_unused` (0 to 1) is the unused share of a pack above which it is rewritten.
pub async fn plan_prune(
    store: &Store,
    backend: &DynBackend,
    snapshots: &Snapshots,
    max_unused: f64,
) -> Result<PrunePlan, PruneError> {
    let remaining: HashSet<SnapshotTime> = snapshots.times.iter().copied().collect();
    let mut plan = PrunePlan {
        snapshots: remaining.len(),
        max_unused,
        ..PrunePlan::default()
    };

    // Plain-layout folders of snapshots that are gone or whose layout was dropped: the
    // folders are listed with a delimiter (one request), then only the ones that go.
    let backup = Folder::BackupRoot.prefix();
    for name in backend.list_folders(&backup).await? {
        let Ok(time) = name.parse::<SnapshotTime>() else {
            continue;
        };
        let why = if !remaining.contains(&time) {
            LayoutRemoval::Forgotten
        } else if snapshots.dropped.contains(&time) {
            LayoutRemoval::Dropped
        } else {
            continue;
        };
        let listed = backend.list_all(&Folder::Backup(&time).prefix()).await?;
        if listed.is_empty() {
            continue;
        }
        plan.layouts.push(LayoutFolder {
            time,
            why,
            bytes: listed.iter().map(|m| m.size).sum(),
            keys: listed.into_iter().map(|m| m.key).collect(),
        });
    }
    let gone = |time: &&SnapshotTime| !remaining.contains(time);
    for time in snapshots.exported.iter().filter(gone) {
        plan.stray_records.push(RemoteFile::Export(time).key());
    }
    for time in snapshots.dropped.iter().filter(gone) {
        plan.stray_records
            .push(RemoteFile::DroppedLayout(time).key());
    }
    // Leases a writer that crashed while it created a root or a record left beside it, on a
    // store without conditional writes (`store/exclusive.rs`). No writer is at work while a
    // prune plans, so only a stale one is found; a live one is left alone all the same.
    for folder in [Folder::Snapshots, Folder::Checkpoints, Folder::Exports] {
        for meta in backend.list_all(&folder.prefix()).await? {
            if is_lease_key(&meta.key)
                && let Some(held) = backend.get_opt(&meta.key).await?
                && lease_is_stale(&held)
            {
                plan.stray_records.push(meta.key);
            }
        }
    }
    plan.stray_records.sort();

    // What the remaining snapshots and checkpoints refer to.
    let referenced = referenced_ids(store, &snapshots.points()).await?;

    // Every pack at the destination, and what the index files say is in them.
    let mut sizes: HashMap<PackId, u64> = HashMap::new();
    let packs_folder = Folder::Packs;
    for meta in backend.list_all(&packs_folder.prefix()).await? {
        if let Some(pack) = packs_folder
            .name_in(&meta.key)
            .and_then(|name| name.parse::<PackId>().ok())
        {
            sizes.insert(pack, meta.size);
        }
    }
    plan.packs = sizes.len() as u64;
    plan.pack_bytes = sizes.values().sum();
    let index_folder = Folder::Index;
    let mut indexed: Vec<(IndexId, IndexFile)> = Vec::new();
    for meta in backend.list_all(&index_folder.prefix()).await? {
        let Some(id) = index_folder
            .name_in(&meta.key)
            .and_then(|name| name.parse::<IndexId>().ok())
        else {
            continue;
        };
        let bytes = backend.get(&meta.key).await?;
        indexed.push((id, IndexFile::decode(&meta.key, &id, &bytes)?));
    }
    plan.index_files = indexed.len() as u64;

    // Each referenced object is kept in one pack: when concurrent writers stored it twice,
    // in the pack that keeps the largest share of its content, so the other one can go.
    let mut usage: HashMap<PackId, (u64, u64)> = HashMap::new(); // (used raw, total raw)
    for (_, index) in &indexed {
        for pack in &index.packs {
            let entry = usage.entry(pack.id).or_default();
            for blob in &pack.blobs {
                entry.1 += u64::from(blob.raw_length);
                if referenced.contains(&blob.id) {
                    entry.0 += u64::from(blob.raw_length);
                }
            }
        }
    }
    let share = |pack: &PackId| {
        let (used, total) = usage.get(pack).copied().unwrap_or_default();
        if total == 0 {
            0.0
        } else {
            used as f64 / total as f64
        }
    };
    let mut home: HashMap<ObjectId, PackId> = HashMap::new();
    for (_, index) in &indexed {
        for pack in index.packs.iter().filter(|p| sizes.contains_key(&p.id)) {
            for blob in pack.blobs.iter().filter(|b| referenced.contains(&b.id)) {
                home.entry(blob.id)
                    .and_modify(|current| {
                        let better = (share(&pack.id), pack.id) > (share(current), *current);
                        if better {
                            *current = pack.id;
                        }
                    })
                    .or_insert(pack.id);
            }
        }
    }
    if home.len() < referenced.len() {
        let first = referenced
            .iter()
            .find(|id| !home.contains_key(id))
            .copied()
            .unwrap_or_else(|| ObjectId::of(b""));
        return Err(PruneError::Damaged {
            missing: referenced.len() - home.len(),
            first,
        });
    }

    // Decide each indexed pack.
    let mut seen_packs: HashSet<PackId> = HashSet::new();
    let mut replaced: HashSet<IndexId> = HashSet::new();
    let mut changed_packs: HashSet<PackId> = HashSet::new();
    for (index_id, index) in &indexed {
        for pack in &index.packs {
            let Some(size) = sizes.get(&pack.id).copied() else {
                plan.missing_packs += 1;
                replaced.insert(*index_id);
                continue;
            };
            if !seen_packs.insert(pack.id) {
                // Listed by two index files: decided once.
                if changed_packs.contains(&pack.id) {
                    replaced.insert(*index_id);
                }
                continue;
            }
            let keep: Vec<IndexedBlob> = pack
                .blobs
                .iter()
                .filter(|b| home.get(&b.id) == Some(&pack.id))
                .cloned()
                .collect();
            let total_raw: u64 = pack.blobs.iter().map(|b| u64::from(b.raw_length)).sum();
            let used_raw: u64 = keep.iter().map(|b| u64::from(b.raw_length)).sum();
            if keep.is_empty() {
                plan.delete_packs.push((pack.id, size));
            } else if total_raw > 0 && (total_raw - used_raw) as f64 / total_raw as f64 > max_unused
            {
                plan.rewrite_packs.push(PackRewrite {
                    pack: pack.id,
                    size,
                    keep,
                    used_raw,
                    total_raw,
                });
            } else {
                continue;
            }
            changed_packs.insert(pack.id);
            replaced.insert(*index_id);
        }
    }
    // Packs no index file lists: an interrupted writer's (writers are not at work now).
    for (pack, size) in &sizes {
        if !seen_packs.contains(pack) {
            plan.delete_packs.push((*pack, *size));
            plan.unindexed_packs += 1;
        }
    }
    plan.delete_packs.sort();
    // The packs the replaced index files list that stay as they are go into the new index.
    let mut listed_again: HashSet<PackId> = HashSet::new();
    for (index_id, index) in &indexed {
        if !replaced.contains(index_id) {
            for pack in &index.packs {
                listed_again.insert(pack.id);
            }
        }
    }
    for (index_id, index) in &indexed {
        if !replaced.contains(index_id) {
            continue;
        }
        for pack in &index.packs {
            if sizes.contains_key(&pack.id)
                && !changed_packs.contains(&pack.id)
                && listed_again.insert(pack.id)
            {
                plan.keep_listed.push(pack.clone());
            }
        }
    }
    plan.replace_index = replaced.into_iter().collect();
    plan.replace_index.sort();
    Ok(plan)
}

/// What a prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub layout_folders: u64,
    pub layout_files: u64,
    pub layout_bytes: u64,
    pub records: u64,
    pub packs_deleted: u64,
    pub pack_bytes_deleted: u64,
    pub packs_written: u64,
    pub pack_bytes_written: u64,
    pub index_files_deleted: u64,
    pub index_files_written: u64,
    pub duration_ms: u64,
}

impl PruneReport {
    /// Bytes no longer stored at the destination.
    pub fn bytes_reclaimed(&self) -> u64 {
        (self.layout_bytes + self.pack_bytes_deleted).saturating_sub(self.pack_bytes_written)
    }
}

/// Carries out a prune plan while `lock` (the prune lock) is held, in the order the module
/// header gives, checking the lock between steps. The local index is brought up to date at
/// the end.
pub async fn prune(
    store: &Store,
    backend: &DynBackend,
    plan: &PrunePlan,
    lock: &Held,
) -> Result<PruneReport, PruneError> {
    let started = Instant::now();
    let mut report = PruneReport::default();

    for folder in &plan.layouts {
        lock.check()?;
        delete_all(backend, folder.keys.iter().cloned()).await?;
        report.layout_folders += 1;
        report.layout_files += folder.keys.len() as u64;
        report.layout_bytes += folder.bytes;
        tracing::info!(snapshot = %folder.time, files = folder.keys.len(), "plain layout deleted");
    }
    lock.check()?;
    delete_all(backend, plan.stray_records.iter().cloned()).await?;
    report.records = plan.stray_records.len() as u64;

    // Rewritten packs and the index file that lists them, before anything they replace goes.
    let mut written: Vec<IndexedPack> = Vec::new();
    if !plan.rewrite_packs.is_empty() {
        lock.check()?;
        let config = store.config();
        let mut builder = PackBuilder::new(config.compression_level)?;
        let ids: Vec<ObjectId> = plan
            .rewrite_packs
            .iter()
            .flat_map(|r| r.keep.iter().map(|b| b.id))
            .collect();
        let objects = store.read_many(ids, crate::store::PackSource::Destination);
        let mut objects = std::pin::pin!(objects);
        let mut sealed = Vec::new();
        while let Some((id, bytes)) = objects.try_next().await? {
            builder.add(id, &bytes)?;
            if builder.len() >= config.pack_size {
                sealed.push(builder.seal()?);
            }
        }
        if !builder.is_empty() {
            sealed.push(builder.seal()?);
        }
        for pack in sealed {
            lock.check()?;
            backend
                .put_if_absent(&RemoteFile::Pack(&pack.id).key(), pack.data.clone())
                .await?;
            report.packs_written += 1;
            report.pack_bytes_written += pack.data.len() as u64;
            written.push(pack.indexed());
        }
    }
    let written_ids: HashSet<PackId> = written.iter().map(|p| p.id).collect();
    if !plan.replace_index.is_empty() {
        lock.check()?;
        let mut packs = plan.keep_listed.clone();
        packs.extend(written);
        if !packs.is_empty() {
            let (id, bytes) = IndexFile::new(packs).encode()?;
            backend
                .put_if_absent(&RemoteFile::Index(&id).key(), bytes)
                .await?;
            report.index_files_written += 1;
        }
        lock.check()?;
        delete_all(
            backend,
            plan.replace_index
                .iter()
                .map(|id| RemoteFile::Index(id).key()),
        )
        .await?;
        report.index_files_deleted = plan.replace_index.len() as u64;
    }

    lock.check()?;
    // A rewritten pack can come out byte for byte like one the plan deletes (a rewrite that
    // was interrupted after its pack was written): that one stays.
    let packs: Vec<(PackId, u64)> = plan
        .delete_packs
        .iter()
        .copied()
        .chain(plan.rewrite_packs.iter().map(|r| (r.pack, r.size)))
        .filter(|(pack, _)| !written_ids.contains(pack))
        .collect();
    delete_all(
        backend,
        packs.iter().map(|(pack, _)| RemoteFile::Pack(pack).key()),
    )
    .await?;
    report.packs_deleted = packs.len() as u64;
    report.pack_bytes_deleted = packs.iter().map(|(_, size)| size).sum();
    for (pack, _) in &packs {
        store.local_packs().remove(pack);
    }

    // Removed index files make the local index rebuild itself; gone packs are forgotten.
    store.check_packs().await?;
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

async fn delete_all(
    backend: &DynBackend,
    keys: impl Iterator<Item = String>,
) -> Result<(), StoreError> {
    let keys: Vec<String> = keys.collect();
    futures::stream::iter(keys.chunks(1000))
        .map(|batch| backend.delete_many(batch))
        .buffer_unordered(BATCHES_IN_FLIGHT)
        .try_collect::<()>()
        .await
}

/// How a forget and prune run. `backend` is the cluster's folder at the destination, where
/// everything is listed, written and deleted; `store` (the local index over it) only reads
/// objects. (The daemon's store reads through its staging folder; a prune must never write
/// there.)
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// The unused share of a pack (0 to 1) above which it is rewritten.
    pub max_unused: f64,
    pub lock: LockTimes,
    /// Who is at work, for the lock: the command.
    pub holder: String,
}

impl Default for PruneOptions {
    fn default() -> Self {
        Self {
            max_unused: DEFAULT_MAX_UNUSED,
            lock: LockTimes::default(),
            holder: "kube-autosave prune".to_string(),
        }
    }
}

/// A pack with more than a tenth unused is rewritten: rewriting reads and writes the used
/// part, so a lower threshold spends more requests and bytes than it saves.
pub const DEFAULT_MAX_UNUSED: f64 = 0.10;

/// What a forget and a prune planned and, unless it was a dry run, did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub forget: Option<(ForgetPlan, Option<ForgetReport>)>,
    pub prune: Option<(PrunePlan, Option<PruneReport>)>,
}

/// Forgets what `selection` says (when given) and then, when `prune` is set, prunes. A dry
/// run plans both (the prune on the folder as the forget would leave it) and changes
/// nothing, not even a lock. Otherwise the prune lock is held throughout, and the prune
/// waits for writers before it plans.
pub async fn run(
    store: &Store,
    backend: &DynBackend,
    selection: Option<&Selection>,
    prune_too: bool,
    options: &PruneOptions,
    dry_run: bool,
) -> Result<Outcome, PruneError> {
    let mut outcome = Outcome::default();
    if dry_run {
        let mut snapshots = Snapshots::read(backend).await?;
        if let Some(selection) = selection {
            let plan = plan_forget(backend, selection).await?;
            snapshots = snapshots.after_forget(&plan);
            outcome.forget = Some((plan, None));
        }
        if prune_too {
            store.check_packs().await?;
            outcome.prune = Some((
                plan_prune(store, backend, &snapshots, options.max_unused).await?,
                None,
            ));
        }
        return Ok(outcome);
    }
    let lock = lock_prune(backend, &options.holder, &options.lock).await?;
    let result = async {
        if let Some(selection) = selection {
            let plan = plan_forget(backend, selection).await?;
            let report = forget(backend, &plan, &lock).await?;
            outcome.forget = Some((plan, Some(report)));
        }
        if prune_too {
            wait_for_writers(backend, &options.lock).await?;
            // Another prune may have replaced index files and packs since this store opened.
            store.check_packs().await?;
            let snapshots = Snapshots::read(backend).await?;
            let plan = plan_prune(store, backend, &snapshots, options.max_unused).await?;
            let report = prune(store, backend, &plan, &lock).await?;
            outcome.prune = Some((plan, Some(report)));
        }
        Ok::<_, PruneError>(())
    }
    .await;
    // Released on every path; an unreleased lock would only expire.
    let released = lock.release().await;
    result?;
    released?;
    Ok(outcome)
}
