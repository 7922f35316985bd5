//! `--hour SECONDS`: the daemon recording a cluster through a simulated hour of churn, with
//! the hour played in SECONDS of real time.
//!
//! The harness starts `kube-autosave run` (daily snapshots, checkpoints every 5 simulated
//! minutes), waits for its first snapshot to be exported, then churns the cluster by
//! `--churn` spread over the hour in 60 steps (one a simulated minute), and waits one more
//! checkpoint interval for the last change to land. It reports, for the hour: the bytes and
//! requests the checkpoints sent to S3 against the first snapshot's, the API server's
//! requests, the daemon's resident memory after its first snapshot (sampled every simulated
//! minute; target at most 300 MiB at 100,000 objects), and the RPO achieved: for each step,
//! the simulated time from the change to the first checkpoint taken after it.
//!
//! Time is scaled, not the daemon: it runs as a user runs it, with `--checkpoint-interval`
//! set to five simulated minutes of real time.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use kube_autosave::repo::{Manifest, Point};
use kube_autosave::store::{LocalBackend, SnapshotTime, Store, StoreConfig};
use serde::Serialize;

use super::{Bench, mib};

/// Churn steps in the hour: one a simulated minute.
const STEPS: u32 = 60;
/// Simulated seconds between checkpoints: the daemon's default.
const CHECKPOINT_EVERY: f64 = 300.0;
/// An object: its resource (`deployments.apps`), namespace and name.
type Key = (String, Option<String>, String);

fn key_of(key: &kube_sim::ObjectKey) -> Key {
    (
        key.qualified_resource(),
        key.namespace.clone(),
        key.name.clone(),
    )
}

/// The steady-state memory target at 100,000 objects.
const RSS_TARGET: u64 = 300 * 1024 * 1024;

#[derive(Debug, Serialize)]
pub struct HourFigures {
    pub hour_seconds: u64,
    pub checkpoint_interval_seconds: u64,
    pub first_snapshot_put_bytes: u64,
    pub first_snapshot_requests: u64,
    pub changed_objects: usize,
    pub checkpoints: usize,
    pub hour_put_bytes: u64,
    pub hour_requests: u64,
    pub hour_api_requests: u64,
    pub steady_rss_max_bytes: u64,
    pub steady_rss_last_bytes: u64,
    /// Simulated seconds from a step's change to the start of the first checkpoint naming it.
    pub rpo_max_seconds: f64,
    pub rpo_mean_seconds: f64,
    /// Steps some checkpoint names, but none after them: a change recorded late or lost.
    pub steps_in_no_checkpoint: usize,
    /// Steps whose objects no checkpoint names: left out by the rules, or deleted.
    pub steps_left_out_by_the_rules: usize,
}

/// The daemon, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

async fn store_at(dir: &Path, cache: &Path) -> Store {
    let backend = Arc::new(LocalBackend::new(dir).expect("the S3 server's folder"));
    Store::open(backend, cache, StoreConfig::default())
        .await
        .expect("the store in the S3 server's folder")
}

pub async fn run(bench: &Bench, hour_seconds: u64) -> HourFigures {
    let scale = hour_seconds as f64 / 3600.0;
    let interval = ((CHECKPOINT_EVERY * scale).round() as u64).max(1);
    let work = bench.work.path();
    let config = work.join("cluster.yaml");
    std::fs::write(&config, "kubeResourcesAutosave:\n  enabled: true\n").expect("config");
    let log = work.join("daemon.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut command =
        bench.user_command(Command::new(env!("CARGO_BIN_EXE_kube-autosave")), &["run"]);
    command
        .args(["--config", &config.display().to_string()])
        .args(["--kubeconfig", &bench.kubeconfig.display().to_string()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--interval", "24h"])
        .args(["--checkpoint-interval", &format!("{interval}s")])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("daemon log"));
    println!(
        "\nhour: a simulated hour in {hour_seconds} s, checkpoints every {interval} s \
         (5 simulated minutes), churn {} over the hour in {STEPS} steps",
        bench.args.churn
    );
    let before_first = bench.proxy.counters.snapshot();
    let daemon = Running(command.spawn().expect("start the daemon"));
    let pid = daemon.0.id();

    // The first snapshot: exported.
    let cache = tempfile::tempdir().expect("a temporary folder");
    let started = Instant::now();
    loop {
        let store = store_at(&bench.cluster_dir(), cache.path()).await;
        if !Manifest::list_exported(&store)
            .await
            .unwrap_or_default()
            .is_empty()
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            eprintln!(
                "the daemon's first snapshot did not land; its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::process::exit(1)
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let first = bench.proxy.counters.snapshot().since(&before_first);
    println!(
        "hour: first snapshot exported after {:.1} s: {} PUT, {} requests",
        started.elapsed().as_secs_f64(),
        mib(first.put_bytes),
        first.requests
    );
    // The watches start after the snapshot; let them settle for one interval.
    tokio::time::sleep(Duration::from_secs(interval)).await;

    let before = bench.proxy.counters.snapshot();
    let api_before = bench.sim.request_count();
    let mut rss = Vec::new();
    // Each step's time and the objects it added or changed (deletions are not named).
    let mut changes: Vec<(SystemTime, Vec<Key>)> = Vec::new();
    let mut changed_objects = 0;
    let step = Duration::from_secs_f64(hour_seconds as f64 / f64::from(STEPS));
    let hour_started = Instant::now();
    for i in 0..STEPS {
        let due = hour_started + step * i;
        tokio::time::sleep_until(due.into()).await;
        let churn = bench.sim.churn(
            bench.args.churn / f64::from(STEPS),
            bench.args.seed + 1000 + u64::from(i),
        );
        let keys = churn
            .modified
            .iter()
            .chain(&churn.added)
            .map(key_of)
            .collect();
        changes.push((SystemTime::now(), keys));
        changed_objects += churn.modified.len() + churn.added.len() + churn.deleted.len();
        rss.extend(rss_bytes(pid));
    }
    tokio::time::sleep_until((hour_started + step * STEPS).into()).await;
    // The last change's checkpoint, and a few seconds for it to land.
    tokio::time::sleep(Duration::from_secs(interval + 5)).await;
    rss.extend(rss_bytes(pid));
    let hour = bench.proxy.counters.snapshot().since(&before);
    let api_requests = bench.sim.request_count() - api_before;
    drop(daemon);

    let store = store_at(&bench.cluster_dir(), cache.path()).await;
    let checkpoints: Vec<SnapshotTime> = Manifest::list_checkpoints(&store)
        .await
        .expect("the checkpoints");
    // What each checkpoint names as changed; a checkpoint is named by the second it started.
    let mut named: Vec<(SystemTime, BTreeSet<Key>)> = Vec::new();
    for time in &checkpoints {
        let manifest = Manifest::load_point(&store, &Point::Checkpoint(*time))
            .await
            .expect("a readable checkpoint");
        let keys = manifest
            .changes
            .iter()
            .map(|c| {
                let rt = &manifest.resources[c.resource as usize].resource;
                (rt.qualified_name(), c.namespace.clone(), c.name.clone())
            })
            .collect();
        named.push((SystemTime::from(time.datetime()), keys));
    }
    // A step's RPO: from the change to the start of the first checkpoint that names one of
    // its objects. A step whose objects no checkpoint names changed only what the rules
    // leave out (events, leases, ...) or only deleted: it is counted apart.
    let all_named: BTreeSet<&Key> = named.iter().flat_map(|(_, keys)| keys).collect();
    let mut rpos = Vec::new();
    let mut unseen = 0;
    let mut left_out = 0;
    for (change, keys) in &changes {
        if !keys.iter().any(|k| all_named.contains(k)) {
            left_out += 1;
            continue;
        }
        let after = named.iter().find(|(t, names)| {
            *t + Duration::from_secs(1) >= *change && keys.iter().any(|k| names.contains(k))
        });
        match after {
            Some((t, _)) => {
                let real = t.duration_since(*change).unwrap_or_default().as_secs_f64();
                rpos.push(real / scale);
            }
            None => unseen += 1,
        }
    }
    let figures = HourFigures {
        hour_seconds,
        checkpoint_interval_seconds: interval,
        first_snapshot_put_bytes: first.put_bytes,
        first_snapshot_requests: first.requests,
        changed_objects,
        checkpoints: checkpoints.len(),
        hour_put_bytes: hour.put_bytes,
        hour_requests: hour.requests,
        hour_api_requests: api_requests,
        steady_rss_max_bytes: rss.iter().copied().max().unwrap_or(0),
        steady_rss_last_bytes: rss.last().copied().unwrap_or(0),
        rpo_max_seconds: rpos.iter().copied().fold(0.0, f64::max),
        rpo_mean_seconds: rpos.iter().sum::<f64>() / rpos.len().max(1) as f64,
        steps_in_no_checkpoint: unseen,
        steps_left_out_by_the_rules: left_out,
    };
    println!(
        "hour: {} objects changed, {} checkpoints\n\
         \x20 S3 in the hour:        {} PUT in {} requests (first snapshot: {} in {})\n\
         \x20 API server requests:   {} in the hour\n\
         \x20 daemon RSS:            {} at most, {} at the end (after the first snapshot)\n\
         \x20 RPO achieved:          {:.0} s at most, {:.0} s on average (simulated); \
         {} steps missed, {} only of what the rules leave out or delete",
        figures.changed_objects,
        figures.checkpoints,
        mib(figures.hour_put_bytes),
        figures.hour_requests,
        mib(figures.first_snapshot_put_bytes),
        figures.first_snapshot_requests,
        figures.hour_api_requests,
        mib(figures.steady_rss_max_bytes),
        mib(figures.steady_rss_last_bytes),
        figures.rpo_max_seconds,
        figures.rpo_mean_seconds,
        figures.steps_in_no_checkpoint,
        figures.steps_left_out_by_the_rules,
    );
    let pass = figures.steady_rss_max_bytes <= RSS_TARGET;
    println!(
        "{} daemon RSS through the hour: {} <= {} (defined at 100,000 objects)",
        if pass { "PASS" } else { "MISS" },
        mib(figures.steady_rss_max_bytes),
        mib(RSS_TARGET)
    );
    figures
}
