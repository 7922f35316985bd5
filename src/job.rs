//! One snapshot job, end to end: open the destination and its store, finish the exports of
//! earlier snapshots that were interrupted, read the cluster into a new snapshot, export its
//! plain layout. The CLI's `snapshot` and the `demo` run it whole; the daemon runs its steps
//! around staging.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::export::{ExportError, ExportOptions, ExportProgressFn, export};
use crate::kube::{Api, ClusterOptions, connect};
use crate::repo::Manifest;
use crate::repo::lock::{Held, LockError, LockTimes, lease_writer};
use crate::repo::manifest::ExportRecord;
use crate::snapshot::{ProgressFn, SnapshotError, SnapshotOptions, take_snapshot};
use crate::store::wrappers::{CountingBackend, RequestSnapshot};
use crate::store::{
    Destination, DynBackend, LocalBackend, PrefixBackend, S3Backend, S3Options, SnapshotTime,
    Store, StoreConfig, StoreError, StoreResult,
};

/// Everything one snapshot job needs to know.
#[derive(Debug, Clone)]
pub struct JobSettings {
    pub destination: Destination,
    pub cluster_name: String,
    pub s3: S3Options,
    /// The local index and pack cache live here.
    pub cache_dir: PathBuf,
    pub cluster: ClusterOptions,
    pub snapshot: SnapshotOptions,
    pub store: StoreConfig,
    pub export: ExportOptions,
    /// How the job's writer lease lives and how long it waits for a prune.
    pub locks: LockTimes,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// What a job did.
#[derive(Debug, Clone)]
pub struct JobReport {
    pub manifest: Manifest,
    pub export: ExportRecord,
    /// Requests and bytes sent to the destination by this job.
    pub requests: RequestSnapshot,
    pub duration: std::time::Duration,
    /// Earlier snapshots whose interrupted exports this job finished, and those it could not.
    pub catch_up: CatchUp,
}

/// What finishing the interrupted exports of earlier snapshots did. A failure here never
/// stops the new snapshot: it is reported and tried again at the next run.
#[derive(Debug, Clone, Default)]
pub struct CatchUp {
    pub finished: Vec<SnapshotTime>,
    /// The snapshots whose export failed again, with why.
    pub failed: Vec<(SnapshotTime, String)>,
}

/// The cluster's base folder at a destination, as a backend.
pub async fn open_backend(
    destination: &Destination,
    cluster_name: &str,
    s3: &S3Options,
) -> StoreResult<DynBackend> {
    let base = destination.base_prefix(cluster_name);
    Ok(match destination {
        Destination::S3 { bucket, .. } => Arc::new(PrefixBackend::new(
            S3Backend::connect(bucket, s3).await?,
            &base,
        )),
        Destination::Local { path } => {
            Arc::new(PrefixBackend::new(LocalBackend::new(path)?, &base))
        }
    })
}

/// Progress callbacks for a job.
#[derive(Clone, Default)]
pub struct JobProgress {
    pub snapshot: Option<ProgressFn>,
    pub export: Option<ExportProgressFn>,
}

/// Runs one snapshot job against `backend` (already opened, so callers can wrap it).
pub async fn run_job(
    settings: &JobSettings,
    backend: DynBackend,
    progress: JobProgress,
) -> Result<JobReport, JobError> {
    let started = Instant::now();
    let counting = Arc::new(CountingBackend::new(backend));
    let counts = counting.counts();
    let store = Store::open(counting, &settings.cache_dir, settings.store.clone()).await?;
    let catch_up = finish_exports(&store, &settings.export).await?;

    let snapshot_progress = progress.snapshot.unwrap_or_else(|| Arc::new(|_| {}));
    let lease = lease(&store, "kube-autosave snapshot", &settings.locks).await?;
    let manifest = match take(settings, &store, snapshot_progress).await {
        Ok(manifest) => end_lease(&store, lease, manifest).await?,
        Err(e) => {
            let _ = lease.release().await;
            return Err(e.into());
        }
    };
    let export = export(&store, &manifest, &settings.export, progress.export).await?;
    Ok(JobReport {
        manifest,
        export,
        requests: counts.snapshot(),
        duration: started.elapsed(),
        catch_up,
    })
}

/// Takes a writer's lease on the destination (waiting while a prune is at work), then
/// brings the local index up to date with it: a prune that finished before the lease may
/// have deleted packs the index still knows, and their objects must be uploaded again, not
/// referred to.
pub async fn lease(store: &Store, what: &str, times: &LockTimes) -> Result<Held, JobError> {
    let lease = lease_writer(store.backend(), what, times).await?;
    store.check_packs().await?;
    Ok(lease)
}

/// Ends a writer's lease once `manifest` (a snapshot's or a checkpoint's) is stored. A lease
/// that could not be renewed in time may have let a prune run meanwhile: the point then
/// stands only if every object it refers to is still stored; otherwise its root is removed
/// again and the job fails, to be taken again.
pub async fn end_lease(
    store: &Store,
    lease: Held,
    manifest: Manifest,
) -> Result<Manifest, JobError> {
    let lost = lease.check();
    if let Err(e) = lease.release().await {
        tracing::warn!(error = %e, "cannot remove the writer's lease; it expires by itself");
    }
    let Err(lost) = lost else {
        return Ok(manifest);
    };
    store.check_packs().await?;
    let point = manifest.point();
    let missing = crate::repo::manifest::unstored_point_blobs(store, &point).await?;
    if missing == 0 {
        tracing::warn!(snapshot = %manifest.time, error = %lost, "the writer's lease lapsed; every object of the snapshot is still stored");
        return Ok(manifest);
    }
    store.backend().delete(&point.root_key()).await?;
    tracing::error!(snapshot = %manifest.time, missing, "the writer's lease lapsed and a prune removed objects the snapshot refers to; the snapshot was removed");
    Err(lost.into())
}

/// The job's snapshot step: connects to the cluster (afresh each time, so that a rotated
/// token or certificate is picked up) and reads it into a new snapshot in `store`.
pub async fn take(
    settings: &JobSettings,
    store: &Store,
    progress: ProgressFn,
) -> Result<Manifest, SnapshotError> {
    let client = connect(&settings.cluster).await?;
    let api = Api::new(client, settings.snapshot.retry.clone());
    take_snapshot(&api, store, &settings.snapshot, progress).await
}

/// The snapshots at the destination that have a manifest and no export record, oldest
/// first: a crash, an outage or a failed export left their plain layout incomplete. Read
/// from the destination, not from local state, so a fresh cache finds them too. Checkpoints
/// are never exported: their roots are in a folder of their own, which is not read here.
pub async fn unexported(store: &Store) -> StoreResult<Vec<SnapshotTime>> {
    Ok(export_state(store).await?.unexported)
}

/// Which snapshots at the destination are complete (pushed and exported) and which wait for
/// their export.
#[derive(Debug, Default)]
pub struct ExportState {
    /// Oldest first.
    pub unexported: Vec<SnapshotTime>,
    pub newest_exported: Option<SnapshotTime>,
}

pub async fn export_state(store: &Store) -> StoreResult<ExportState> {
    let exported: std::collections::HashSet<SnapshotTime> =
        Manifest::list_exported(store).await?.into_iter().collect();
    Ok(ExportState {
        newest_exported: exported.iter().max().copied(),
        unexported: Manifest::list(store)
            .await?
            .into_iter()
            .filter(|time| !exported.contains(time))
            .collect(),
    })
}

/// Exports one snapshot whose manifest is stored, unless its export record shows it done.
/// Returns whether it exported anything.
pub async fn finish_export(
    store: &Store,
    time: &SnapshotTime,
    options: &ExportOptions,
) -> Result<Option<ExportRecord>, JobError> {
    if Manifest::export_record(store, time).await?.is_some() {
        return Ok(None);
    }
    let manifest = Manifest::load(store, time).await?;
    tracing::info!(snapshot = %time, "finishing the interrupted export of an earlier snapshot");
    Ok(Some(export(store, &manifest, options, None).await?))
}

/// Finishes the export of every earlier snapshot left without its plain layout, oldest
/// first. One that fails again (a damaged manifest, an unreadable pack) is logged and
/// reported, and the others still get their turn. Only an unreachable destination stops it:
/// the new snapshot would fail the same way.
pub async fn finish_exports(store: &Store, options: &ExportOptions) -> Result<CatchUp, JobError> {
    let mut catch_up = CatchUp::default();
    for time in unexported(store).await? {
        match finish_export(store, &time, options).await {
            Ok(_) => catch_up.finished.push(time),
            Err(e) if e.is_outage() => return Err(e),
            Err(e) => {
                tracing::error!(
                    snapshot = %time,
                    error = %e,
                    "cannot finish the export of an earlier snapshot; it is tried again at the next run"
                );
                catch_up.failed.push((time, e.to_string()));
            }
        }
    }
    Ok(catch_up)
}

impl JobError {
    /// A short, stable name for the kind of failure (the daemon's metrics label).
    pub fn reason(&self) -> &'static str {
        match self {
            JobError::Store(e)
            | JobError::Export(ExportError::Store { source: e, .. })
            | JobError::Export(ExportError::Manifest(e)) => e.reason(),
            JobError::Snapshot(e) => e.reason(),
            JobError::Lock(LockError::Store(e)) => e.reason(),
            JobError::Lock(_) => "locked",
        }
    }

    /// Whether the error is an outage that a later try may not meet.
    pub fn is_outage(&self) -> bool {
        match self {
            JobError::Store(e) => e.is_outage(),
            JobError::Export(e) => e.is_outage(),
            JobError::Lock(e) => e.is_outage(),
            JobError::Snapshot(_) => false,
        }
    }
}
