//! `kube-autosave run`: the pod nobody watches. A snapshot when it starts and then every
//! `interval`; each snapshot is staged on local disk first, and a pusher moves staged
//! snapshots to the destination (oldest first) and exports their plain layout, retrying every
//! `push_interval` until they land. One thing at a time: a snapshot that comes due while a
//! push runs waits for it. SIGTERM/SIGINT stop it between two steps or cancel the step under
//! way; nothing half-written is ever a complete snapshot, and what was staged is pushed after
//! the next start. Switched off by its configuration, it only serves health and metrics.
//! Between snapshots it watches the cluster and, every `checkpoint_interval` in which
//! something changed, stages a checkpoint of the changes (`checkpoints`), pushed like a
//! snapshot and never exported.
//!
//! The steps are the job's (`crate::job`: take a snapshot, finish an export); what is the
//! daemon's own is staging, the pending table, the schedule and its metrics.

mod checkpoints;
pub mod metrics;
pub mod staging;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::job::{JobError, JobSettings, export_state, finish_export, open_backend, take};
use crate::repo::Manifest;
use crate::repo::lock::{Held, LockError, lease_writer};
use crate::repo::prune::{self, PruneError, PruneOptions, Selection};
use crate::repo::retention::Policy;
use crate::snapshot::SnapshotError;
use crate::store::cache::Table;
use crate::store::wrappers::CountingBackend;
use crate::store::{
    Backend, LocalBackend, RemoteFile, SnapshotTime, Store, StoreError, cache_path,
};

use checkpoints::Checkpoints;
pub use metrics::Metrics;
use staging::StagingBackend;

/// The local index's table of snapshots staged and not yet pushed and exported.
const PENDING_TREE: &str = "pending";

#[derive(Debug, Clone)]
pub struct DaemonSettings {
    pub job: JobSettings,
    pub interval: Duration,
    pub push_interval: Duration,
    /// Between checkpoints of what changed since the point before (none written when
    /// nothing changed); `None` writes none.
    pub checkpoint_interval: Option<Duration>,
    /// The health and metrics endpoint.
    pub listen: SocketAddr,
    /// No new snapshot is taken while staging holds this many bytes or more.
    pub staging_limit: u64,
    /// The retention policy applied after each push that leaves nothing staged; `None`
    /// keeps every snapshot.
    pub retention: Option<Policy>,
    pub prune: PruneOptions,
}

/// The checkpoint interval when none is configured.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// The staging cap when none is configured.
pub const DEFAULT_STAGING_LIMIT: u64 = 4 * 1024 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The destination folder is another cluster's: a configuration to fix, not an outage.
    #[error(transparent)]
    OtherCluster(#[from] crate::repo::identity::OtherCluster),
    #[error("cannot serve the health and metrics endpoint on {address}: {source}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Why a push did not finish; it is tried again at the next push interval.
#[derive(Debug, thiserror::Error)]
enum PushError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Job(#[from] JobError),
    #[error("the export of {} snapshot(s) failed (first {first}); they are tried again at the next push", .count)]
    Exports { count: usize, first: SnapshotTime },
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

struct Daemon {
    settings: DaemonSettings,
    store: Store,
    staging: Arc<StagingBackend>,
    /// Snapshots staged and not yet pushed and exported, by name.
    pending: Table<()>,
    metrics: Arc<Metrics>,
    remote_counts: Arc<crate::store::wrappers::RequestCounts>,
    endpoint: String,
    /// The writer's lease held from a snapshot until its push: while it is held no prune
    /// deletes what the staged snapshot refers to.
    lease: std::sync::Mutex<Option<Held>>,
    /// Snapshots may wait in staging that were taken without a lease (the destination was
    /// away, or an earlier run staged them): the next push checks what they refer to.
    unleased_staging: std::sync::atomic::AtomicBool,
    /// A checkpoint waits in staging for a push (it needs no export, so it is not pending).
    staged_checkpoint: std::sync::atomic::AtomicBool,
    /// A staged checkpoint was dropped (a prune took what it refers to): the checkpoints
    /// after the last snapshot no longer chain, and a snapshot is due now.
    checkpoints_lost: std::sync::atomic::AtomicBool,
}

impl Daemon {
    fn pending_count(&self) -> u64 {
        self.pending.len() as u64
    }

    fn update_pending(&self) {
        self.metrics
            .set(&self.metrics.snapshots_pending, self.pending_count());
    }

    /// Records `time` as waiting for its push and export, durably: a kill right after must
    /// not forget it.
    fn mark_pending(&self, time: &SnapshotTime) -> Result<(), StoreError> {
        self.pending.insert(time.to_string().as_bytes(), &())?;
        self.pending.flush()?;
        self.update_pending();
        Ok(())
    }

    fn unmark_pending(&self, time: &SnapshotTime) -> Result<(), StoreError> {
        self.pending.remove(time.to_string().as_bytes())?;
        self.pending.flush()
    }

    fn pending_times(&self) -> Vec<SnapshotTime> {
        self.pending
            .keys()
            .iter()
            .filter_map(|k| std::str::from_utf8(k).ok().and_then(|s| s.parse().ok()))
            .collect()
    }

    /// Marks as pending every snapshot that waits in staging, and every one at the
    /// destination whose export never finished (an earlier run's, or another machine's with
    /// a cache that is gone). An unreachable destination only leaves the second kind for a
    /// later start.
    async fn find_unfinished(&self) -> Result<(), StoreError> {
        for name in staging::staged_manifests(self.staging.staging()).await? {
            if let Ok(time) = name.parse() {
                self.mark_pending(&time)?;
            }
        }
        match export_state(&self.store).await {
            Ok(state) => {
                if let Some(newest) = &state.newest_exported {
                    self.metrics.completed(newest);
                }
                for time in state.unexported {
                    self.mark_pending(&time)?;
                }
            }
            Err(e) if e.is_outage() => {
                tracing::warn!(error = %e, "cannot list the snapshots at the destination; unfinished exports are looked for at the next start");
            }
            Err(e) => return Err(e),
        }
        self.update_pending();
        Ok(())
    }

    /// Whether staging holds the configured limit or more; says so in logs, metrics and
    /// `/readyz` when that changes.
    fn staging_is_full(&self) -> Result<bool, StoreError> {
        let used = staging::staged_bytes(self.staging.staging())?;
        let limit = self.settings.staging_limit;
        let m = &self.metrics;
        m.set(&m.staging_bytes, used);
        let full = used >= limit;
        let was = m.staging_full.swap(full, Ordering::Relaxed);
        if full && !was {
            tracing::error!(
                staged_bytes = used,
                limit_bytes = limit,
                destination = %self.endpoint,
                "staging is full: no new snapshot until the destination takes the staged ones \
                 (staged snapshots are never deleted to make room)"
            );
        } else if was && !full {
            tracing::info!(
                staged_bytes = used,
                "staging has room again; snapshots resume"
            );
        }
        Ok(full)
    }

    /// Takes and stages one snapshot; `Ok(None)` when it failed and is tried again later.
    async fn take_snapshot(&self) -> Result<Option<Manifest>, DaemonError> {
        let started = std::time::Instant::now();
        match self.take_lease().await {
            Ok(()) => {}
            // While the destination is away the snapshot is staged without a lease, and its
            // push checks what it refers to instead.
            Err(e) if e.is_outage() => {
                self.unleased_staging.store(true, Ordering::SeqCst);
                tracing::warn!(error = %e, "cannot take a writer's lease at the destination; the push checks what the snapshot refers to");
            }
            Err(e) => {
                let m = &self.metrics;
                m.snapshot_failures.inc();
                m.failed("snapshot", "locked");
                tracing::error!(error = %e, "snapshot not taken; trying again at the next push interval");
                return Ok(None);
            }
        }
        let result = async {
            // Packs removed at the destination since the last snapshot (a lifecycle rule,
            // someone cleaning up): their objects must be uploaded again, not referred to.
            match self.store.check_packs().await {
                Ok(_) => {}
                Err(e) if e.is_outage() => {
                    tracing::warn!(error = %e, "cannot check the local index against the destination; checking at the next snapshot");
                }
                Err(e) => return Err(e.into()),
            }
            take(&self.settings.job, &self.store, Arc::new(|_| {})).await
        }
        .await;
        if result.is_err() {
            // Nothing to push: a lease held on would keep prunes waiting.
            self.release_lease().await;
        }
        let m = &self.metrics;
        match result {
            Ok(manifest) => {
                if let Err(e) = self.mark_pending(&manifest.time) {
                    tracing::error!(error = %e, "cannot record the staged snapshot");
                }
                m.snapshots_taken.inc();
                m.set(&m.last_snapshot_timestamp, unix_now());
                m.snapshot_duration.observe(started.elapsed().as_secs_f64());
                m.set(&m.last_snapshot_objects, manifest.stats.objects);
                m.set(
                    &m.last_snapshot_new_objects,
                    manifest.stats.store.new_objects,
                );
                m.skipped(&manifest.skipped);
                m.ready.store(true, Ordering::Relaxed);
                tracing::info!(
                    snapshot = %manifest.time,
                    duration_ms = started.elapsed().as_millis() as u64,
                    objects = manifest.stats.objects,
                    new_objects = manifest.stats.store.new_objects,
                    skipped = manifest.skipped.len(),
                    "snapshot staged"
                );
                for skipped in &manifest.skipped {
                    tracing::warn!(resource = %skipped.what(), reason = %skipped.reason, "skipped");
                }
                m.recorded(manifest.time.datetime().timestamp().max(0) as u64);
                Ok(Some(manifest))
            }
            Err(SnapshotError::OtherCluster(other)) => Err(other.into()),
            Err(e) => {
                m.snapshot_failures.inc();
                m.failed("snapshot", e.reason());
                tracing::error!(error = %e, "snapshot failed; trying again at the next push interval");
                Ok(None)
            }
        }
    }

    /// Starts the watches for the checkpoints after `snapshot`, when checkpoints are on.
    /// `None` when they are off or the cluster cannot be reached: the next snapshot tries
    /// again, and until then the snapshots alone record the cluster.
    async fn start_checkpoints(&self, snapshot: Manifest) -> Option<Checkpoints> {
        self.settings.checkpoint_interval?;
        let observer = self.metrics.clone();
        match Checkpoints::start(&self.settings.job, &self.store, snapshot, observer).await {
            Ok(checkpoints) => {
                let m = &self.metrics;
                m.set(&m.watched_resources, checkpoints.watched() as u64);
                Some(checkpoints)
            }
            Err(e) => {
                let m = &self.metrics;
                m.set(&m.watched_resources, 0);
                m.checkpoint_failures.inc();
                m.failed("checkpoint", "cluster_connect");
                tracing::error!(error = %e, "cannot watch the cluster; no checkpoints until the next snapshot");
                None
            }
        }
    }

    /// Writes and stages a checkpoint of what changed since the last point, if anything
    /// did. A failure is counted and logged; its changes wait for the next checkpoint.
    async fn write_checkpoint(&self, checkpoints: &mut Checkpoints) {
        let started = std::time::Instant::now();
        let tick = unix_now();
        // Read before the changes are taken: with every watch running, what they hold then
        // is everything that changed up to now.
        let watching = checkpoints.all_watching();
        let m = &self.metrics;
        if !checkpoints.has_changes() {
            if watching {
                m.recorded(tick);
            }
            return;
        }
        match self.take_lease().await {
            Ok(()) => {}
            Err(e) if e.is_outage() => {
                self.unleased_staging.store(true, Ordering::SeqCst);
                tracing::warn!(error = %e, "cannot take a writer's lease at the destination; the push checks what the checkpoint refers to");
            }
            Err(e) => {
                m.checkpoint_failures.inc();
                m.failed("checkpoint", "locked");
                tracing::error!(error = %e, "checkpoint not written; its changes wait for the next one");
                return;
            }
        }
        match checkpoints.write(&self.store, &self.settings.job).await {
            Ok(Some(manifest)) => {
                self.staged_checkpoint.store(true, Ordering::SeqCst);
                m.checkpoints_taken.inc();
                m.set(&m.last_checkpoint_timestamp, unix_now());
                m.set(&m.last_checkpoint_objects, manifest.changes.len() as u64);
                if watching {
                    m.recorded(tick);
                }
                tracing::info!(
                    checkpoint = %manifest.time,
                    duration_ms = started.elapsed().as_millis() as u64,
                    changes = manifest.changes.len(),
                    objects = manifest.stats.objects,
                    "checkpoint staged"
                );
            }
            Ok(None) => {
                if watching {
                    m.recorded(tick);
                }
            }
            Err(e) => {
                m.checkpoint_failures.inc();
                m.failed("checkpoint", e.reason());
                tracing::error!(error = %e, "checkpoint failed; its changes wait for the next one");
            }
        }
        if self.pending_count() == 0 && !self.staged_checkpoint.load(Ordering::SeqCst) {
            // Nothing to push: a lease held on would keep prunes waiting.
            self.release_lease().await;
        }
    }

    /// Takes the writer's lease unless it holds one.
    async fn take_lease(&self) -> Result<(), LockError> {
        if self.holds_lease() {
            return Ok(());
        }
        let held = lease_writer(
            self.staging.remote(),
            "kube-autosave run",
            &self.settings.job.locks,
        )
        .await?;
        *self.lease.lock().unwrap_or_else(|e| e.into_inner()) = Some(held);
        Ok(())
    }

    /// Whether a lease is held and has not lapsed.
    fn holds_lease(&self) -> bool {
        let mut lease = self.lease.lock().unwrap_or_else(|e| e.into_inner());
        if lease.as_ref().is_some_and(|held| held.check().is_err()) {
            *lease = None;
        }
        lease.is_some()
    }

    async fn release_lease(&self) {
        let held = self.lease.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(held) = held
            && let Err(e) = held.release().await
        {
            tracing::warn!(error = %e, "cannot remove the writer's lease; it expires by itself");
        }
    }

    /// Drops every staged snapshot that refers to objects no longer stored: a prune ran
    /// while it waited without a lease (the destination was away), and deleted packs it
    /// counted on. Its objects are uploaded again by the next snapshot.
    async fn drop_unrestorable_staged(&self) -> Result<(), StoreError> {
        self.store.check_packs().await?;
        for name in staging::staged_manifests(self.staging.staging()).await? {
            let Ok(time) = name.parse::<SnapshotTime>() else {
                continue;
            };
            let missing = crate::repo::manifest::unstored_blobs(&self.store, &time).await?;
            if missing > 0 {
                self.staging
                    .staging()
                    .delete(&RemoteFile::Snapshot(&time).key())
                    .await?;
                self.unmark_pending(&time)?;
                self.metrics.failed("push", "pruned_meanwhile");
                tracing::error!(snapshot = %time, missing, "a prune deleted objects this staged snapshot refers to while it waited for the destination; it is dropped, and the next snapshot stores them again");
            }
        }
        for name in staging::staged_checkpoints(self.staging.staging()).await? {
            let Ok(time) = name.parse::<SnapshotTime>() else {
                continue;
            };
            let point = crate::repo::Point::Checkpoint(time);
            let missing = crate::repo::manifest::unstored_point_blobs(&self.store, &point).await?;
            if missing > 0 {
                self.staging
                    .staging()
                    .delete(&RemoteFile::Checkpoint(&time).key())
                    .await?;
                // The checkpoints after it build on the same objects: a snapshot starts the
                // chain again.
                self.checkpoints_lost.store(true, Ordering::SeqCst);
                self.metrics.failed("push", "pruned_meanwhile");
                tracing::error!(checkpoint = %time, missing, "a prune deleted objects this staged checkpoint refers to while it waited for the destination; it is dropped, and a snapshot is taken now");
            }
        }
        Ok(())
    }

    /// Pushes what is staged and exports every pending snapshot, oldest first; then, when
    /// snapshots waited and nothing is left staged, applies the retention policy.
    async fn push(&self) -> Result<(), PushError> {
        let before = self.remote_counts.snapshot();
        // The retention policy is applied after snapshots land, not after every checkpoint's
        // push: a prune reads every manifest, and checkpoints come every few minutes.
        let snapshots_waited =
            self.pending_count() > 0 || self.metrics.staging_full.load(Ordering::Relaxed);
        let result = async {
            self.take_lease().await.map_err(JobError::from)?;
            if self.unleased_staging.load(Ordering::SeqCst) {
                self.drop_unrestorable_staged().await?;
                self.unleased_staging.store(false, Ordering::SeqCst);
            }
            self.push_pending().await
        }
        .await;
        self.release_lease().await;
        if result.is_ok() && self.pending_count() == 0 && snapshots_waited {
            self.maintain().await;
        }
        let sent = self.remote_counts.snapshot().since(&before);
        let m = &self.metrics;
        m.bytes_uploaded.inc_by(sent.put_bytes);
        self.update_pending();
        if let Ok(used) = staging::staged_bytes(self.staging.staging()) {
            m.set(&m.staging_bytes, used);
            if used < self.settings.staging_limit {
                m.staging_full.store(false, Ordering::Relaxed);
            }
        }
        result
    }

    /// Applies the retention policy and prunes, when one is set. A failure is logged and
    /// counted; it never stops the daemon, and the next push tries again.
    async fn maintain(&self) {
        let Some(policy) = self
            .settings
            .retention
            .as_ref()
            .filter(|p| p.does_something())
        else {
            return;
        };
        let selection = Selection::Policy(policy.clone());
        let m = &self.metrics;
        match prune::run(
            &self.store,
            self.staging.remote(),
            Some(&selection),
            true,
            &self.settings.prune,
            false,
        )
        .await
        {
            Ok(outcome) => {
                let forgotten = outcome
                    .forget
                    .as_ref()
                    .and_then(|(_, r)| r.as_ref())
                    .map_or(0, |r| r.forgotten);
                let reclaimed = outcome
                    .prune
                    .as_ref()
                    .and_then(|(_, r)| r.as_ref())
                    .map_or(0, |r| r.bytes_reclaimed());
                m.snapshots_forgotten.inc_by(forgotten);
                m.prune_reclaimed_bytes.inc_by(reclaimed);
                m.set(&m.last_prune_timestamp, unix_now());
                tracing::info!(forgotten, reclaimed_bytes = reclaimed, policy = %policy, "retention policy applied");
            }
            Err(e) => {
                m.prune_failures.inc();
                m.failed("prune", prune_reason(&e));
                tracing::error!(error = %e, "cannot apply the retention policy; trying again after the next push");
            }
        }
    }

    /// Pushes what is staged, then exports each pending snapshot, oldest first. A snapshot
    /// whose export fails for a reason other than an outage is logged, counted and left
    /// pending; the others still get their turn.
    async fn push_pending(&self) -> Result<(), PushError> {
        let concurrency = self.settings.job.export.concurrency;
        let pushed = staging::push_staged(&self.staging, concurrency).await?;
        for (staged, stored) in &pushed.renamed {
            self.mark_pending(stored)?;
            self.unmark_pending(staged)?;
        }
        let mut failed = Vec::new();
        for time in self.pending_times() {
            match finish_export(&self.store, &time, &self.settings.job.export).await {
                Ok(Some(record)) => {
                    self.metrics.bytes_copied.inc_by(record.bytes_copied);
                }
                Ok(None) => {}
                Err(e) if e.is_outage() => return Err(e.into()),
                Err(e) => {
                    let m = &self.metrics;
                    m.export_failures.inc();
                    m.failed("export", e.reason());
                    tracing::error!(
                        snapshot = %time,
                        error = %e,
                        "cannot export the snapshot; it is tried again at the next push"
                    );
                    failed.push(time);
                    continue;
                }
            }
            // The export's record was staged; push it.
            staging::push_staged(&self.staging, concurrency).await?;
            self.unmark_pending(&time)?;
            self.metrics.completed(&time);
            tracing::info!(snapshot = %time, "snapshot pushed and exported");
        }
        self.store.cache().flush().await?;
        match failed.first() {
            None => Ok(()),
            Some(first) => Err(PushError::Exports {
                count: failed.len(),
                first: *first,
            }),
        }
    }
}

fn prune_reason(e: &PruneError) -> &'static str {
    match e {
        PruneError::Store(e) | PruneError::Lock(LockError::Store(e)) => e.reason(),
        PruneError::Lock(_) => "locked",
        PruneError::Damaged { .. } => "damaged",
        _ => "other",
    }
}

impl PushError {
    fn reason(&self) -> &'static str {
        match self {
            PushError::Store(e) => e.reason(),
            PushError::Job(e) => e.reason(),
            PushError::Exports { .. } => "export_failed",
        }
    }
}

/// Serves the health and metrics endpoint and does nothing else until `shutdown` completes:
/// `run` switched off by its configuration. A process that exited instead would be restarted
/// by its Deployment over and over. Logs `why` once.
pub async fn idle(
    listen: SocketAddr,
    why: &str,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DaemonError> {
    let metrics = Arc::new(Metrics::default());
    metrics.disabled.store(true, Ordering::Relaxed);
    let (bound, server) =
        metrics::serve(listen, metrics)
            .await
            .map_err(|source| DaemonError::Listen {
                address: listen,
                source,
            })?;
    tracing::info!(endpoint = %bound, "{why}");
    tokio::select! {
        _ = server => {}
        _ = shutdown => tracing::info!("stopping"),
    }
    Ok(())
}

/// Runs the daemon until `shutdown` completes.
pub async fn run(
    settings: DaemonSettings,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DaemonError> {
    let job = &settings.job;
    let remote = open_backend(&job.destination, &job.cluster_name, &job.s3).await?;
    let endpoint = remote.describe();
    let counting = Arc::new(CountingBackend::new(remote));
    let remote_counts = counting.counts();
    let staging_dir = cache_path(&job.cache_dir, counting.as_ref()).with_extension("staging");
    let staging = Arc::new(StagingBackend::new(
        LocalBackend::new(&staging_dir)?,
        counting,
    ));
    let store =
        Store::open_tolerating_outage(staging.clone(), &job.cache_dir, job.store.clone()).await?;
    // The local index is ours now (sled's lock): what an interrupted run half-wrote into
    // staging can go.
    let swept = staging.staging().remove_temp_files()?;
    if swept > 0 {
        tracing::info!(
            files = swept,
            "removed half-written files of an interrupted run"
        );
    }
    let pending = store.cache().table(PENDING_TREE)?;
    let metrics = Arc::new(Metrics::default());
    metrics.set(&metrics.interval, settings.interval.as_secs());
    metrics.set(
        &metrics.checkpoint_interval,
        settings.checkpoint_interval.map_or(0, |d| d.as_secs()),
    );
    let (bound, server) = metrics::serve(settings.listen, metrics.clone())
        .await
        .map_err(|source| DaemonError::Listen {
            address: settings.listen,
            source,
        })?;
    let server = tokio::spawn(server);
    tracing::info!(
        destination = %endpoint,
        interval = ?settings.interval,
        push_interval = ?settings.push_interval,
        endpoint = %bound,
        "kube-autosave is running"
    );
    let daemon = Daemon {
        settings,
        store,
        staging,
        pending,
        metrics,
        remote_counts,
        endpoint,
        lease: std::sync::Mutex::new(None),
        unleased_staging: std::sync::atomic::AtomicBool::new(true),
        staged_checkpoint: std::sync::atomic::AtomicBool::new(false),
        checkpoints_lost: std::sync::atomic::AtomicBool::new(false),
    };
    daemon.find_unfinished().await?;

    let mut shutdown = std::pin::pin!(shutdown);
    let mut next_snapshot = Instant::now();
    let mut next_push = Instant::now();
    // The watches after the last snapshot, and when their next checkpoint is due.
    let mut checkpoints: Option<Checkpoints> = None;
    let mut next_checkpoint = Instant::now();
    loop {
        if daemon.checkpoints_lost.swap(false, Ordering::SeqCst) {
            checkpoints = None;
            next_snapshot = Instant::now();
        }
        let snapshot_due = Instant::now() >= next_snapshot;
        let checkpoint_every = daemon.settings.checkpoint_interval;
        let checkpoint_due = checkpoints.is_some() && Instant::now() >= next_checkpoint;
        let push_wanted = daemon.pending_count() > 0
            || daemon.metrics.staging_full.load(Ordering::Relaxed)
            || daemon.staged_checkpoint.load(Ordering::SeqCst);
        let push_due = push_wanted && Instant::now() >= next_push;
        let step = async {
            if snapshot_due && daemon.staging_is_full()? {
                // Never make room by deleting a staged snapshot: wait for the pushes.
                next_snapshot = Instant::now() + daemon.settings.push_interval;
            } else if snapshot_due {
                if let Some(snapshot) = daemon.take_snapshot().await? {
                    next_snapshot += daemon.settings.interval;
                    if next_snapshot < Instant::now() {
                        next_snapshot = Instant::now() + daemon.settings.interval;
                    }
                    // The new snapshot holds everything the old watches saw; new watches
                    // start from what it saw.
                    checkpoints = None;
                    checkpoints = daemon.start_checkpoints(snapshot).await;
                    if let Some(every) = checkpoint_every {
                        next_checkpoint = Instant::now() + every;
                    }
                } else {
                    next_snapshot = Instant::now() + daemon.settings.push_interval;
                }
                // Push right away what the snapshot staged.
                next_push = Instant::now();
            } else if checkpoint_due {
                // At the staging cap the changes stay with the watches until there is room.
                if let Some(checkpoints) = checkpoints.as_mut()
                    && !daemon.staging_is_full()?
                {
                    daemon.write_checkpoint(checkpoints).await;
                }
                let every = checkpoint_every.unwrap_or(daemon.settings.interval);
                next_checkpoint += every;
                if next_checkpoint < Instant::now() {
                    next_checkpoint = Instant::now() + every;
                }
                // What it staged goes at the next push, right away unless pushes wait for
                // the destination.
            } else if push_due {
                daemon.metrics.pushing.store(true, Ordering::Relaxed);
                let started = std::time::Instant::now();
                let pushed = daemon.push().await;
                daemon
                    .metrics
                    .push_duration
                    .observe(started.elapsed().as_secs_f64());
                daemon.metrics.pushing.store(false, Ordering::Relaxed);
                match pushed {
                    Ok(()) => {
                        daemon.staged_checkpoint.store(false, Ordering::SeqCst);
                        let m = &daemon.metrics;
                        m.pushes.inc();
                        m.set(&m.last_push_timestamp, unix_now());
                    }
                    Err(e) => {
                        let m = &daemon.metrics;
                        m.push_failures.inc();
                        m.failed("push", e.reason());
                        tracing::error!(
                            destination = %daemon.endpoint,
                            error = %e,
                            retry_in = ?daemon.settings.push_interval,
                            "push failed; the snapshot stays staged and is pushed later"
                        );
                        next_push = Instant::now() + daemon.settings.push_interval;
                    }
                }
            } else {
                let mut wake = if push_wanted {
                    next_snapshot.min(next_push)
                } else {
                    next_snapshot
                };
                if checkpoints.is_some() {
                    wake = wake.min(next_checkpoint);
                }
                tokio::time::sleep_until(wake).await;
            }
            Ok::<(), DaemonError>(())
        };
        tokio::select! {
            stepped = step => if let Err(e) = stepped {
                daemon.store.cache().flush().await?;
                server.abort();
                return Err(e);
            },
            _ = &mut shutdown => {
                tracing::info!("stopping; staged snapshots are pushed after the next start");
                break;
            }
        }
    }
    daemon.store.cache().flush().await?;
    server.abort();
    Ok(())
}
