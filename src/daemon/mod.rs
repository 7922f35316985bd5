//! `kube-autosave run`: the pod nobody watches. A snapshot when it starts and then every
//! `interval`; each snapshot is staged on local disk first, and a pusher moves staged
//! snapshots to the destination (oldest first) and exports their plain layout, retrying every
//! `push_interval` until they land. One thing at a time: a snapshot that comes due while a
//! push runs waits for it. SIGTERM/SIGINT stop it between two steps or cancel the step under
//! way; nothing half-written is ever a complete snapshot, and what was staged is pushed after
//! the next start. Switched off by its configuration, it only serves health and metrics.

pub mod metrics;
pub mod staging;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::export::export;
use crate::job::{JobSettings, open_backend};
use crate::snapshot::{Api, Manifest, connect, take_snapshot};
use crate::store::wrappers::CountingBackend;
use crate::store::{LocalBackend, SnapshotTime, Store, StoreError, cache_path};

pub use metrics::Metrics;
use staging::StagingBackend;

/// The local index's table of snapshots staged and not yet pushed and exported.
const PENDING_TREE: &str = "pending";

#[derive(Debug, Clone)]
pub struct DaemonSettings {
    pub job: JobSettings,
    pub interval: Duration,
    pub push_interval: Duration,
    /// The health and metrics endpoint.
    pub listen: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
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
    Export(#[from] crate::export::ExportError),
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
    pending: sled::Tree,
    metrics: Arc<Metrics>,
    remote_counts: Arc<crate::store::wrappers::RequestCounts>,
    endpoint: String,
}

impl Daemon {
    fn pending_count(&self) -> u64 {
        self.pending.len() as u64
    }

    fn update_pending(&self) {
        self.metrics
            .set(&self.metrics.snapshots_pending, self.pending_count());
    }

    fn mark_pending(&self, time: &SnapshotTime) -> Result<(), StoreError> {
        self.pending
            .insert(time.to_string().as_bytes(), &[])
            .map_err(|e| StoreError::Index {
                path: self.store.cache().path().to_path_buf(),
                message: e.to_string(),
            })?;
        self.update_pending();
        Ok(())
    }

    async fn take_snapshot(&self) -> bool {
        let started = std::time::Instant::now();
        let result = async {
            let client = connect(&self.settings.job.cluster).await?;
            let api = Api::new(client, self.settings.job.snapshot.retry.clone());
            take_snapshot(
                &api,
                &self.store,
                &self.settings.job.snapshot,
                Arc::new(|_| {}),
            )
            .await
        }
        .await;
        let m = &self.metrics;
        match result {
            Ok(manifest) => {
                if let Err(e) = self.mark_pending(&manifest.time) {
                    tracing::error!(error = %e, "cannot record the staged snapshot");
                }
                m.add(&m.snapshots_taken, 1);
                m.set(&m.last_snapshot_timestamp, unix_now());
                m.set(
                    &m.last_snapshot_duration_ms,
                    started.elapsed().as_millis() as u64,
                );
                m.set(&m.last_snapshot_objects, manifest.stats.objects);
                m.set(
                    &m.last_snapshot_new_objects,
                    manifest.stats.store.new_objects,
                );
                m.set(&m.last_snapshot_skipped, manifest.skipped.len() as u64);
                m.ready.store(true, Ordering::Relaxed);
                tracing::info!(
                    snapshot = %manifest.time,
                    objects = manifest.stats.objects,
                    new_objects = manifest.stats.store.new_objects,
                    skipped = manifest.skipped.len(),
                    "snapshot staged"
                );
                for skipped in &manifest.skipped {
                    tracing::warn!(resource = %skipped.what(), reason = %skipped.reason, "skipped");
                }
                true
            }
            Err(e) => {
                m.add(&m.snapshot_failures, 1);
                tracing::error!(error = %e, "snapshot failed; trying again at the next push interval");
                false
            }
        }
    }

    /// Pushes what is staged and exports every pending snapshot, oldest first.
    async fn push(&self) -> Result<(), PushError> {
        let before = self.remote_counts.snapshot();
        let result = self.push_pending().await;
        let sent = self.remote_counts.snapshot().since(&before);
        let m = &self.metrics;
        m.add(&m.bytes_uploaded, sent.put_bytes);
        m.add(&m.bytes_copied, sent.copy_bytes);
        self.update_pending();
        result
    }

    async fn push_pending(&self) -> Result<(), PushError> {
        let concurrency = self.settings.job.export.concurrency;
        staging::push_staged(&self.staging, concurrency).await?;
        let pending: Vec<SnapshotTime> = self
            .pending
            .iter()
            .keys()
            .filter_map(|k| k.ok())
            .filter_map(|k| std::str::from_utf8(&k).ok().and_then(|s| s.parse().ok()))
            .collect();
        for time in pending {
            if Manifest::export_record(&self.store, &time).await?.is_none() {
                let mut manifest = Manifest::load(&self.store, &time).await?;
                let record =
                    export(&self.store, &mut manifest, &self.settings.job.export, None).await?;
                self.metrics
                    .add(&self.metrics.bytes_copied, record.bytes_copied);
            }
            // The export's record was staged; push it.
            staging::push_staged(&self.staging, concurrency).await?;
            self.pending
                .remove(time.to_string().as_bytes())
                .map_err(|e| StoreError::Index {
                    path: self.store.cache().path().to_path_buf(),
                    message: e.to_string(),
                })?;
            tracing::info!(snapshot = %time, "snapshot pushed and exported");
        }
        self.store.cache().flush().await?;
        Ok(())
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
    let pending = store.cache().tree(PENDING_TREE)?;
    let metrics = Arc::new(Metrics::default());
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
    };
    // Snapshots staged by an earlier run that stopped before recording them as pending.
    for name in staging::staged_manifests(daemon.staging.staging()).await? {
        if let Ok(time) = name.parse() {
            daemon.mark_pending(&time)?;
        }
    }
    daemon.update_pending();

    let mut shutdown = std::pin::pin!(shutdown);
    let mut next_snapshot = Instant::now();
    let mut next_push = Instant::now();
    loop {
        let snapshot_due = Instant::now() >= next_snapshot;
        let push_due = daemon.pending_count() > 0 && Instant::now() >= next_push;
        let step = async {
            if snapshot_due {
                if daemon.take_snapshot().await {
                    next_snapshot += daemon.settings.interval;
                    if next_snapshot < Instant::now() {
                        next_snapshot = Instant::now() + daemon.settings.interval;
                    }
                } else {
                    next_snapshot = Instant::now() + daemon.settings.push_interval;
                }
                // Push right away what the snapshot staged.
                next_push = Instant::now();
            } else if push_due {
                daemon.metrics.pushing.store(true, Ordering::Relaxed);
                let pushed = daemon.push().await;
                daemon.metrics.pushing.store(false, Ordering::Relaxed);
                match pushed {
                    Ok(()) => {
                        let m = &daemon.metrics;
                        m.add(&m.pushes, 1);
                        m.set(&m.last_push_timestamp, unix_now());
                    }
                    Err(e) => {
                        let m = &daemon.metrics;
                        m.add(&m.push_failures, 1);
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
                let wake = if daemon.pending_count() > 0 {
                    next_snapshot.min(next_push)
                } else {
                    next_snapshot
                };
                tokio::time::sleep_until(wake).await;
            }
        };
        tokio::select! {
            _ = step => {}
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
