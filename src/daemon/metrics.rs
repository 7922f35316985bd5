//! What the daemon tells Kubernetes and Prometheus: `/healthz` (the process serves),
//! `/readyz` (the first snapshot is staged, or the daemon is switched off and idle on
//! purpose), `/metrics` in the Prometheus text format.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// The daemon's figures; every field is updated as things happen.
#[derive(Debug, Default)]
pub struct Metrics {
    pub ready: AtomicBool,
    /// Switched off by the configuration: nothing to wait for.
    pub disabled: AtomicBool,
    pub snapshots_taken: AtomicU64,
    pub snapshot_failures: AtomicU64,
    pub last_snapshot_timestamp: AtomicU64,
    pub last_snapshot_duration_ms: AtomicU64,
    pub last_snapshot_objects: AtomicU64,
    pub last_snapshot_new_objects: AtomicU64,
    pub last_snapshot_skipped: AtomicU64,
    pub pushes: AtomicU64,
    pub push_failures: AtomicU64,
    /// Snapshots whose export failed for another reason than an outage (each try).
    pub export_failures: AtomicU64,
    pub last_push_timestamp: AtomicU64,
    pub snapshots_pending: AtomicU64,
    pub pushing: AtomicBool,
    /// Staging holds its limit or more; no new snapshot until pushes make room.
    pub staging_full: AtomicBool,
    pub staging_bytes: AtomicU64,
    pub bytes_uploaded: AtomicU64,
    pub bytes_copied: AtomicU64,
    /// Snapshots the retention policy removed.
    pub snapshots_forgotten: AtomicU64,
    /// Bytes the prunes took off the destination.
    pub prune_reclaimed_bytes: AtomicU64,
    pub last_prune_timestamp: AtomicU64,
    pub prune_failures: AtomicU64,
    /// Failures by step (`snapshot`, `push`, `export`) and reason, e.g. `access_denied`.
    pub failures: Mutex<std::collections::BTreeMap<(&'static str, &'static str), u64>>,
}

impl Metrics {
    pub fn set(&self, field: &AtomicU64, value: u64) {
        field.store(value, Ordering::Relaxed);
    }

    pub fn add(&self, field: &AtomicU64, value: u64) {
        field.fetch_add(value, Ordering::Relaxed);
    }

    /// Counts one failure of `step` for `reason`.
    pub fn failed(&self, step: &'static str, reason: &'static str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        *failures.entry((step, reason)).or_default() += 1;
    }

    /// The Prometheus text exposition of every figure.
    pub fn render(&self) -> String {
        let get = |f: &AtomicU64| f.load(Ordering::Relaxed);
        let flag = |f: &AtomicBool| u64::from(f.load(Ordering::Relaxed));
        let rows: [(&str, &str, &str, u64); 23] = [
            (
                "kube_autosave_enabled",
                "gauge",
                "0 when the configuration switches snapshots off",
                1 - flag(&self.disabled),
            ),
            (
                "kube_autosave_ready",
                "gauge",
                "1 once the first snapshot is staged",
                flag(&self.ready),
            ),
            (
                "kube_autosave_snapshots_total",
                "counter",
                "Snapshots taken (staged)",
                get(&self.snapshots_taken),
            ),
            (
                "kube_autosave_snapshot_failures_total",
                "counter",
                "Snapshots that failed",
                get(&self.snapshot_failures),
            ),
            (
                "kube_autosave_last_snapshot_timestamp_seconds",
                "gauge",
                "Unix time of the last successful snapshot",
                get(&self.last_snapshot_timestamp),
            ),
            (
                "kube_autosave_last_snapshot_duration_seconds",
                "gauge",
                "Duration of the last snapshot",
                0,
            ),
            (
                "kube_autosave_last_snapshot_objects",
                "gauge",
                "Objects in the last snapshot",
                get(&self.last_snapshot_objects),
            ),
            (
                "kube_autosave_last_snapshot_new_objects",
                "gauge",
                "Objects the last snapshot stored for the first time",
                get(&self.last_snapshot_new_objects),
            ),
            (
                "kube_autosave_last_snapshot_resources_skipped",
                "gauge",
                "Resources or groups the last snapshot could not read",
                get(&self.last_snapshot_skipped),
            ),
            (
                "kube_autosave_pushes_total",
                "counter",
                "Successful pushes to the destination",
                get(&self.pushes),
            ),
            (
                "kube_autosave_push_failures_total",
                "counter",
                "Pushes that failed (retried every push interval)",
                get(&self.push_failures),
            ),
            (
                "kube_autosave_export_failures_total",
                "counter",
                "Exports of a pushed snapshot that failed for another reason than an outage \
                 (a damaged manifest or pack); retried every push interval",
                get(&self.export_failures),
            ),
            (
                "kube_autosave_last_push_timestamp_seconds",
                "gauge",
                "Unix time of the last successful push",
                get(&self.last_push_timestamp),
            ),
            (
                "kube_autosave_snapshots_pending",
                "gauge",
                "Snapshots staged locally and not yet pushed and exported",
                get(&self.snapshots_pending),
            ),
            (
                "kube_autosave_pushing",
                "gauge",
                "1 while a push is under way",
                flag(&self.pushing),
            ),
            (
                "kube_autosave_staging_bytes",
                "gauge",
                "Bytes staged on local disk and not yet pushed",
                get(&self.staging_bytes),
            ),
            (
                "kube_autosave_staging_full",
                "gauge",
                "1 while staging holds its limit: snapshots are paused until pushes make room",
                flag(&self.staging_full),
            ),
            (
                "kube_autosave_uploaded_bytes_total",
                "counter",
                "Bytes uploaded to the destination",
                get(&self.bytes_uploaded),
            ),
            (
                "kube_autosave_copied_bytes_total",
                "counter",
                "Bytes copied server-side at the destination",
                get(&self.bytes_copied),
            ),
            (
                "kube_autosave_snapshots_forgotten_total",
                "counter",
                "Snapshots the retention policy removed",
                get(&self.snapshots_forgotten),
            ),
            (
                "kube_autosave_prune_reclaimed_bytes_total",
                "counter",
                "Bytes prunes took off the destination (plain-layout files, packs)",
                get(&self.prune_reclaimed_bytes),
            ),
            (
                "kube_autosave_last_prune_timestamp_seconds",
                "gauge",
                "Unix time of the last successful prune",
                get(&self.last_prune_timestamp),
            ),
            (
                "kube_autosave_prune_failures_total",
                "counter",
                "Applications of the retention policy that failed (tried again after the next push)",
                get(&self.prune_failures),
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            if name == "kube_autosave_last_snapshot_duration_seconds" {
                let ms = get(&self.last_snapshot_duration_ms);
                out.push_str(&format!("{name} {}.{:03}\n", ms / 1000, ms % 1000));
            } else {
                out.push_str(&format!("{name} {value}\n"));
            }
        }
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let name = "kube_autosave_failures_total";
        out.push_str(&format!(
            "# HELP {name} Failed snapshots, pushes, exports and prunes by step and reason (outages are retried)\n# TYPE {name} counter\n"
        ));
        for ((step, reason), count) in failures.iter() {
            out.push_str(&format!(
                "{name}{{step=\"{step}\",reason=\"{reason}\"}} {count}\n"
            ));
        }
        out
    }
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
            "text/plain; version=0.0.4; charset=utf-8",
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
