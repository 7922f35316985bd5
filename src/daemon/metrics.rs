//! What the daemon tells Kubernetes and Prometheus: `/healthz` (the process serves),
//! `/readyz` (the first snapshot is staged, or the daemon is switched off and idle on
//! purpose), `/metrics` in the OpenMetrics text format, through the Prometheus client
//! crate (names, HELP, TYPE and units are its business, not ours). It only reports: it never
//! decides anything the daemon does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

use crate::kube::watch::{Restart, WatchObserver};
use crate::kube::{ResourceType, Skipped};
use crate::store::SnapshotTime;

/// The labels of a failure: the step (`snapshot`, `push`, `export`, `prune`) and a short
/// reason such as `access_denied`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub step: &'static str,
    pub reason: &'static str,
}

/// The labels of a skipped resource: `deployments.apps`, or a whole group version, and why
/// (see [`Skipped::reason_code`]).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SkipLabels {
    pub resource: String,
    pub reason: &'static str,
}

/// The labels of a watch restart: why it ended (see `kube::watch::Restart::reason`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RestartLabels {
    pub reason: &'static str,
}

/// The daemon's figures, registered once with the Prometheus client; every one is updated
/// as things happen, except the age of the last complete snapshot, worked out at each
/// scrape.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Read by `/readyz` too.
    pub ready: AtomicBool,
    /// Switched off by the configuration: nothing to wait for.
    pub disabled: AtomicBool,
    pub pushing: AtomicBool,
    /// Staging holds its limit or more; no new snapshot until pushes make room.
    pub staging_full: AtomicBool,
    /// When the daemon started, the age's base while no complete snapshot is known.
    started: u64,
    enabled_gauge: Gauge,
    ready_gauge: Gauge,
    pushing_gauge: Gauge,
    staging_full_gauge: Gauge,
    pub interval: Gauge,
    pub snapshots_taken: Counter,
    pub snapshot_failures: Counter,
    pub snapshot_duration: Histogram,
    pub last_snapshot_timestamp: Gauge,
    pub last_snapshot_objects: Gauge,
    pub last_snapshot_new_objects: Gauge,
    pub last_snapshot_skipped: Gauge,
    pub resources_skipped: Family<SkipLabels, Counter>,
    /// The capture time of the newest snapshot pushed and exported (0 while none is known).
    pub last_complete_timestamp: Gauge,
    complete_age: Gauge,
    pub pushes: Counter,
    pub push_failures: Counter,
    pub push_duration: Histogram,
    /// Snapshots whose export failed for another reason than an outage (each try).
    pub export_failures: Counter,
    pub last_push_timestamp: Gauge,
    pub snapshots_pending: Gauge,
    pub staging_bytes: Gauge,
    pub bytes_uploaded: Counter,
    pub bytes_copied: Counter,
    /// Snapshots the retention policy removed.
    pub snapshots_forgotten: Counter,
    /// Bytes the prunes took off the destination.
    pub prune_reclaimed_bytes: Counter,
    pub last_prune_timestamp: Gauge,
    pub prune_failures: Counter,
    /// Failures by step and reason.
    pub failures: Family<FailureLabels, Counter>,
    pub checkpoint_interval: Gauge,
    pub checkpoints_taken: Counter,
    pub checkpoint_failures: Counter,
    pub last_checkpoint_timestamp: Gauge,
    pub last_checkpoint_objects: Gauge,
    /// When the recorded state was last known to be the cluster's: a snapshot, a checkpoint,
    /// or a checkpoint interval with every watch running and nothing changed (0: never).
    pub recorded_timestamp: Gauge,
    recovery_point_age: Gauge,
    pub watched_resources: Gauge,
    pub watch_events: Counter,
    pub watch_relists: Counter,
    pub watch_restarts: Family<RestartLabels, Counter>,
}

/// A labelled family that is described (HELP, TYPE) before its first event: Prometheus and
/// the alerts then know the name from the first scrape, where the client would leave an
/// empty family out.
#[derive(Debug)]
struct Declared<S, M: 'static>(Family<S, M>);

impl<S, M> EncodeMetric for Declared<S, M>
where
    S: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync,
    M: EncodeMetric + TypedMetric + Default + std::fmt::Debug + Send + Sync,
{
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }

    fn is_empty(&self) -> bool {
        false
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Snapshot durations, 1 s to about an hour; a push takes from half a second (nothing new)
/// to hours (a first push of a large cluster over a slow link).
fn snapshot_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(1.0, 2.0, 13)
}

fn push_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.5, 2.0, 16)
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kube_autosave");
        // Helpers that register and hand back a metric, so each reads on one line below.
        fn gauge(r: &mut Registry, name: &str, help: &str) -> Gauge {
            let g = Gauge::default();
            r.register(name, help, g.clone());
            g
        }
        fn gauge_in(r: &mut Registry, name: &str, unit: Unit, help: &str) -> Gauge {
            let g = Gauge::default();
            r.register_with_unit(name, help, unit, g.clone());
            g
        }
        fn counter(r: &mut Registry, name: &str, help: &str) -> Counter {
            let c = Counter::default();
            r.register(name, help, c.clone());
            c
        }
        fn counter_in(r: &mut Registry, name: &str, unit: Unit, help: &str) -> Counter {
            let c = Counter::default();
            r.register_with_unit(name, help, unit, c.clone());
            c
        }
        let r = &mut registry;
        let enabled_gauge = gauge(
            r,
            "enabled",
            "0 when the configuration switches snapshots off",
        );
        let ready_gauge = gauge(r, "ready", "1 once the first snapshot is staged");
        let interval = gauge_in(
            r,
            "snapshot_interval",
            Unit::Seconds,
            "The configured time between snapshots",
        );
        let snapshots_taken = counter(r, "snapshots", "Snapshots taken (staged)");
        let snapshot_failures = counter(r, "snapshot_failures", "Snapshots that failed");
        let snapshot_duration = Histogram::new(snapshot_buckets());
        r.register_with_unit(
            "snapshot_duration",
            "How long taking and staging a snapshot took",
            Unit::Seconds,
            snapshot_duration.clone(),
        );
        let last_snapshot_timestamp = gauge_in(
            r,
            "last_snapshot_timestamp",
            Unit::Seconds,
            "Unix time of the last successful snapshot (staged)",
        );
        let last_snapshot_objects =
            gauge(r, "last_snapshot_objects", "Objects in the last snapshot");
        let last_snapshot_new_objects = gauge(
            r,
            "last_snapshot_new_objects",
            "Objects the last snapshot stored for the first time",
        );
        let last_snapshot_skipped = gauge(
            r,
            "last_snapshot_resources_skipped",
            "Resources, groups or objects the last snapshot could not read",
        );
        let resources_skipped = Family::<SkipLabels, Counter>::default();
        r.register(
            "resources_skipped",
            "Resources, groups or objects left out of snapshots, by resource and reason",
            Declared(resources_skipped.clone()),
        );
        let last_complete_timestamp = gauge_in(
            r,
            "last_complete_snapshot_timestamp",
            Unit::Seconds,
            "Unix time at which the newest snapshot pushed and exported was taken (0 while none is known)",
        );
        let complete_age = gauge_in(
            r,
            "last_complete_snapshot_age",
            Unit::Seconds,
            "Seconds since the newest snapshot pushed and exported was taken; since the daemon \
             started while none is known",
        );
        let pushes = counter(r, "pushes", "Successful pushes to the destination");
        let push_failures = counter(
            r,
            "push_failures",
            "Pushes that failed (retried every push interval)",
        );
        let push_duration = Histogram::new(push_buckets());
        r.register_with_unit(
            "push_duration",
            "How long a push and the exports it finished took, successful or not",
            Unit::Seconds,
            push_duration.clone(),
        );
        let export_failures = counter(
            r,
            "export_failures",
            "Exports of a pushed snapshot that failed for another reason than an outage \
             (a damaged manifest or pack); retried every push interval",
        );
        let last_push_timestamp = gauge_in(
            r,
            "last_push_timestamp",
            Unit::Seconds,
            "Unix time of the last successful push",
        );
        let snapshots_pending = gauge(
            r,
            "snapshots_pending",
            "Snapshots staged locally and not yet pushed and exported",
        );
        let pushing_gauge = gauge(r, "pushing", "1 while a push is under way");
        let staging_bytes = gauge_in(
            r,
            "staging",
            Unit::Bytes,
            "Bytes staged on local disk and not yet pushed",
        );
        let staging_full_gauge = gauge(
            r,
            "staging_full",
            "1 while staging holds its limit: snapshots are paused until pushes make room",
        );
        let bytes_uploaded = counter_in(
            r,
            "uploaded",
            Unit::Bytes,
            "Bytes uploaded to the destination",
        );
        let bytes_copied = counter_in(
            r,
            "copied",
            Unit::Bytes,
            "Bytes copied server-side at the destination",
        );
        let snapshots_forgotten = counter(
            r,
            "snapshots_forgotten",
            "Snapshots the retention policy removed",
        );
        let prune_reclaimed_bytes = counter_in(
            r,
            "prune_reclaimed",
            Unit::Bytes,
            "Bytes prunes took off the destination (plain-layout files, packs)",
        );
        let last_prune_timestamp = gauge_in(
            r,
            "last_prune_timestamp",
            Unit::Seconds,
            "Unix time of the last successful prune",
        );
        let prune_failures = counter(
            r,
            "prune_failures",
            "Applications of the retention policy that failed (tried again after the next push)",
        );
        let failures = Family::<FailureLabels, Counter>::default();
        r.register(
            "failures",
            "Failed snapshots, pushes, exports and prunes by step and reason (outages are retried)",
            Declared(failures.clone()),
        );
        let checkpoint_interval = gauge_in(
            r,
            "checkpoint_interval",
            Unit::Seconds,
            "The configured time between checkpoints (0: none are written)",
        );
        let checkpoints_taken = counter(r, "checkpoints", "Checkpoints written (staged)");
        let checkpoint_failures = counter(
            r,
            "checkpoint_failures",
            "Checkpoints that failed; their changes wait for the next one",
        );
        let last_checkpoint_timestamp = gauge_in(
            r,
            "last_checkpoint_timestamp",
            Unit::Seconds,
            "Unix time of the last checkpoint written (staged)",
        );
        let last_checkpoint_objects = gauge(
            r,
            "last_checkpoint_changes",
            "Objects new or changed in the last checkpoint",
        );
        let recorded_timestamp = gauge_in(
            r,
            "recovery_point_timestamp",
            Unit::Seconds,
            "Unix time up to which the cluster's changes are recorded: the last snapshot, \
             checkpoint, or checkpoint interval in which every watch ran and nothing changed",
        );
        let recovery_point_age = gauge_in(
            r,
            "recovery_point_age",
            Unit::Seconds,
            "Seconds since the cluster's changes were last known to be recorded (the recovery \
             point objective met); since the daemon started while none is",
        );
        let watched_resources = gauge(
            r,
            "watched_resources",
            "Resource types watched for checkpoints",
        );
        let watch_events = counter(
            r,
            "watch_events",
            "Events read from the watches (bookmarks included)",
        );
        let watch_relists = counter(
            r,
            "watch_relists",
            "Metadata-only lists of a watched resource, each compared with what was kept: at \
             a watch's start and after it expired, broke or failed",
        );
        let watch_restarts = Family::<RestartLabels, Counter>::default();
        r.register(
            "watch_restarts",
            "Watches started again, by why they ended (closed by the server, expired, broken, \
             failed)",
            Declared(watch_restarts.clone()),
        );
        Self {
            registry,
            ready: AtomicBool::new(false),
            disabled: AtomicBool::new(false),
            pushing: AtomicBool::new(false),
            staging_full: AtomicBool::new(false),
            started: unix_now(),
            enabled_gauge,
            ready_gauge,
            pushing_gauge,
            staging_full_gauge,
            interval,
            snapshots_taken,
            snapshot_failures,
            snapshot_duration,
            last_snapshot_timestamp,
            last_snapshot_objects,
            last_snapshot_new_objects,
            last_snapshot_skipped,
            resources_skipped,
            last_complete_timestamp,
            complete_age,
            pushes,
            push_failures,
            push_duration,
            export_failures,
            last_push_timestamp,
            snapshots_pending,
            staging_bytes,
            bytes_uploaded,
            bytes_copied,
            snapshots_forgotten,
            prune_reclaimed_bytes,
            last_prune_timestamp,
            prune_failures,
            failures,
            checkpoint_interval,
            checkpoints_taken,
            checkpoint_failures,
            last_checkpoint_timestamp,
            last_checkpoint_objects,
            recorded_timestamp,
            recovery_point_age,
            watched_resources,
            watch_events,
            watch_relists,
            watch_restarts,
        }
    }

    /// Records that the cluster's changes are recorded up to `at` (Unix seconds).
    pub fn recorded(&self, at: u64) {
        let at = i64::try_from(at).unwrap_or(i64::MAX);
        if at > self.recorded_timestamp.get() {
            self.recorded_timestamp.set(at);
        }
    }

    /// Sets a gauge from a count or a size (which never reach `i64::MAX`).
    pub fn set(&self, gauge: &Gauge, value: u64) {
        gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
    }

    /// Counts one failure of `step` for `reason`.
    pub fn failed(&self, step: &'static str, reason: &'static str) {
        self.failures
            .get_or_create(&FailureLabels { step, reason })
            .inc();
    }

    /// Counts what the last snapshot left out, and keeps their number for the gauge.
    pub fn skipped(&self, skipped: &[Skipped]) {
        self.set(&self.last_snapshot_skipped, skipped.len() as u64);
        for s in skipped {
            self.resources_skipped
                .get_or_create(&SkipLabels {
                    resource: s.resource_label(),
                    reason: s.reason_code(),
                })
                .inc();
        }
    }

    /// Records a snapshot pushed and exported, taken at `taken`; an older one than the
    /// newest known changes nothing.
    pub fn completed(&self, taken: &SnapshotTime) {
        let at = taken.datetime().timestamp();
        if at > self.last_complete_timestamp.get() {
            self.last_complete_timestamp.set(at);
        }
    }

    /// The OpenMetrics text exposition of every figure.
    pub fn render(&self) -> String {
        let flag = |f: &AtomicBool| i64::from(f.load(Ordering::Relaxed));
        self.enabled_gauge.set(1 - flag(&self.disabled));
        self.ready_gauge.set(flag(&self.ready));
        self.pushing_gauge.set(flag(&self.pushing));
        self.staging_full_gauge.set(flag(&self.staging_full));
        if !self.disabled.load(Ordering::Relaxed) {
            let base = match self.last_complete_timestamp.get() {
                0 => self.started,
                at => at as u64,
            };
            self.set(&self.complete_age, unix_now().saturating_sub(base));
            let base = match self.recorded_timestamp.get() {
                0 => self.started,
                at => at as u64,
            };
            self.set(&self.recovery_point_age, unix_now().saturating_sub(base));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    if metrics.disabled.load(Ordering::Relaxed) {
        (StatusCode::OK, "disabled by the configuration; idle\n")
    } else if metrics.staging_full.load(Ordering::Relaxed) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "staging is full: snapshots are paused until the destination takes the staged ones\n",
        )
    } else if metrics.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no snapshot staged yet\n")
    }
}

async fn metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
}

/// Binds the endpoint; the returned future serves until dropped.
pub async fn serve(
    address: SocketAddr,
    metrics: Arc<Metrics>,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = ()>)> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(self::metrics))
        .with_state(metrics);
    Ok((bound, async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the health and metrics endpoint stopped");
        }
    }))
}

/// The watches' figures.
impl WatchObserver for Metrics {
    fn events(&self, count: u64) {
        self.watch_events.inc_by(count);
    }

    fn relisted(&self, _rt: &ResourceType, _changed: usize) {
        self.watch_relists.inc();
    }

    fn restarted(&self, _rt: &ResourceType, why: Restart) {
        self.watch_restarts
            .get_or_create(&RestartLabels {
                reason: why.reason(),
            })
            .inc();
    }
}
