//! One snapshot job, end to end: open the destination and its store, finish the export of
//! an earlier snapshot that was interrupted, read the cluster into a new snapshot, export
//! its plain layout. The CLI's `snapshot`, the `demo` and the daemon all run this.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::export::{ExportError, ExportOptions, ExportProgressFn, export};
use crate::snapshot::manifest::ExportRecord;
use crate::snapshot::{
    Api, ClusterOptions, Manifest, ProgressFn, SnapshotError, SnapshotOptions, connect,
    take_snapshot,
};
use crate::store::wrappers::{CountingBackend, RequestSnapshot};
use crate::store::{
    Destination, DynBackend, LocalBackend, PrefixBackend, S3Backend, S3Options, Store, StoreConfig,
    StoreError, StoreResult,
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
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Export(#[from] ExportError),
}

/// What a job did.
#[derive(Debug, Clone)]
pub struct JobReport {
    pub manifest: Manifest,
    pub export: ExportRecord,
    /// Requests and bytes sent to the destination by this job.
    pub requests: RequestSnapshot,
    pub duration: std::time::Duration,
    /// Earlier snapshots whose interrupted export this job finished.
    pub finished_exports: Vec<String>,
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
    let finished_exports = finish_interrupted_export(&store, settings).await?;

    let client = connect(&settings.cluster).await?;
    let api = Api::new(client, settings.snapshot.retry.clone());
    let snapshot_progress = progress.snapshot.unwrap_or_else(|| Arc::new(|_| {}));
    let mut manifest = take_snapshot(&api, &store, &settings.snapshot, snapshot_progress).await?;
    let export = export(&store, &mut manifest, &settings.export, progress.export).await?;
    Ok(JobReport {
        manifest,
        export,
        requests: counts.snapshot(),
        duration: started.elapsed(),
        finished_exports,
    })
}

/// A crash or an outage between a manifest and the end of its export leaves the newest
/// snapshot without its plain layout; finish it before taking the next one.
async fn finish_interrupted_export(
    store: &Store,
    settings: &JobSettings,
) -> Result<Vec<String>, JobError> {
    let Some(latest) = Manifest::list(store).await?.pop() else {
        return Ok(Vec::new());
    };
    if Manifest::export_record(store, &latest).await?.is_some() {
        return Ok(Vec::new());
    }
    let mut manifest = Manifest::load(store, &latest).await?;
    tracing::info!(snapshot = %latest, "finishing the interrupted export of an earlier snapshot");
    export(store, &mut manifest, &settings.export, None).await?;
    Ok(vec![latest.to_string()])
}
