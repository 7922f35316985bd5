//! Retention and prune on the S3 server: a month of daily snapshots under a policy keeps
//! exactly what the policy says and reclaims the rest; a prune stopped at any point and run
//! again finishes the job; a prune never deletes what a snapshot at work refers to; two
//! prunes never both work; a dry run changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kube_autosave::job::{JobSettings, open_backend, run_job};
use kube_autosave::repo::Manifest;
use kube_autosave::repo::lock::{LockTimes, lock_prune};
use kube_autosave::repo::prune::{self, PruneOptions, PrunePlan, Selection};
use kube_autosave::repo::retention::Policy;
use kube_autosave::store::wrappers::{FaultOps, FaultyBackend};
use kube_autosave::store::{BackendExt, DynBackend, RemoteFile, SnapshotTime, Store, StoreConfig};

use crate::support::cluster::Cluster;
use crate::support::s3_server::{self, S3Server};
use crate::support::{self, binary, with_s3};

const BASE: &str = "team/prod/";

/// 02:00 UTC on day `day` of October 2026 (the 1st is a Thursday; ISO weeks 40 to 44).
fn october(day: u32) -> SnapshotTime {
    format!("26-10-{day:02}_02-00-00").parse().unwrap()
}

/// Short lock lifetimes, so that a stopped prune's lock expires within the test.
fn quick_locks() -> LockTimes {
    LockTimes {
        lifetime: Duration::from_secs(2),
        poll: Duration::from_millis(50),
        wait: Duration::from_secs(30),
    }
}

/// A cluster with a daily snapshot for `days` days, each after some churn.
struct History {
    s3: S3Server,
    cluster: Cluster,
    dir: tempfile::TempDir,
    settings: JobSettings,
}

impl History {
    async fn new(objects: usize, days: u32) -> History {
        let s3 = S3Server::start();
        let cluster = Cluster::start(objects, 17).await;
        let dir = tempfile::tempdir().unwrap();
        let mut settings = support::job_settings(&s3, &cluster, &dir.path().join("job"));
        // Small packs, so that a month of churn leaves packs partly used.
        settings.store = StoreConfig {
            pack_size: 64 * 1024,
            ..StoreConfig::default()
        };
        settings.locks = quick_locks();
        let history = History {
            s3,
            cluster,
            dir,
            settings,
        };
        for day in 1..=days {
            history.day(day).await;
        }
        history
    }

    /// Churns the cluster (after the first day) and takes the day's snapshot.
    async fn day(&self, day: u32) {
        if day > 1 {
            self.cluster.sim.churn(0.03, u64::from(day));
        }
        let mut settings = self.settings.clone();
        settings.snapshot.time = Some(october(day));
        let backend = open_backend(&settings.destination, &settings.cluster_name, &settings.s3)
            .await
            .unwrap();
        let report = run_job(&settings, backend, Default::default())
            .await
            .expect("daily snapshot");
        assert_eq!(report.manifest.time, october(day));
    }

    /// The binary with the test servers, the folder and a local state of its own.
    fn run(&self, state: &str, args: &[&str]) -> Output {
        let dir = self.dir.path();
        let mut command = binary(dir);
        with_s3(&mut command, &self.s3)
            .args(["--to", "s3://backups/team", "--cluster-name", "prod"])
            .args(["--cache-dir", &dir.join(state).display().to_string()])
            .args(args);
        command.output().unwrap()
    }

    /// `verify --all` from a local state of its own passes.
    fn assert_verifies(&self, state: &str, context: &str) {
        let output = self.run(state, &["verify", "--all"]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{context}: {}",
            text(&output)
        );
    }

    /// The folder's store with a local index of its own.
    async fn store(&self, state: &str) -> (Store, DynBackend) {
        let backend = support::s3_backend(&self.s3, "team/prod").await;
        let store = Store::open(
            backend.clone(),
            &self.dir.path().join(state),
            self.settings.store.clone(),
        )
        .await
        .unwrap();
        (store, backend)
    }

    /// Every key of the folder with its bytes.
    async fn bucket(&self) -> BTreeMap<String, Bytes> {
        s3_server::read_all(&s3_server::plain_client(&self.s3).await, BASE).await
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn total_bytes(bucket: &BTreeMap<String, Bytes>) -> u64 {
    bucket.values().map(|b| b.len() as u64).sum()
}

/// The snapshots whose plain layout has files at the destination.
fn layout_folders(bucket: &BTreeMap<String, Bytes>) -> BTreeSet<SnapshotTime> {
    bucket
        .keys()
        .filter_map(|k| k.strip_prefix(&format!("{BASE}backup/")))
        .filter_map(|rest| rest.split('/').next()?.parse().ok())
        .collect()
}

/// What `keepDaily 7, keepWeekly 4` keeps of October 1 to 30: the 24th to the 30th, and the
/// newest of ISO weeks 41 to 44 (the 11th, 18th, 25th and 30th).
fn kept_of_october() -> Vec<SnapshotTime> {
    [11, 18, 24, 25, 26, 27, 28, 29, 30]
        .into_iter()
        .map(october)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_under_a_policy_keeps_exactly_what_it_says_and_every_kept_snapshot_restores() {
    let history = History::new(300, 30).await;
    let before = history.bucket().await;
    assert_eq!(layout_folders(&before).len(), 30);

    let config = history.dir.path().join("cluster.yaml");
    std::fs::write(
        &config,
        "kubeResourcesAutosave:\n  retention:\n    keepDaily: 7\n    keepWeekly: 4\n    keepLayout: 3\n",
    )
    .unwrap();
    let config = config.display().to_string();
    // Leases that writers on a store without conditional writes left beside a root and an
    // export record: one expired (a crashed writer's), one that still holds.
    let (_, backend) = history.store("leases").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let stale = format!("{}.lease", RemoteFile::Snapshot(&october(30)).key());
    let live = format!("{}.lease", RemoteFile::Export(&october(29)).key());
    for (key, expires) in [(&stale, now - 10), (&live, now + 3_600)] {
        let lease = format!("crashed-writer {expires}");
        backend.put(key, lease.into()).await.unwrap();
    }
    let output = history.run("cli", &["--config", &config, "forget", "--prune"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(backend.get_opt(&stale).await.unwrap().is_none());
    assert!(backend.get_opt(&live).await.unwrap().is_some());
    backend.delete(&live).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("keepDaily 7"), "{stdout}");
    assert!(
        stdout.contains("9 snapshot(s) kept, 21 forgotten"),
        "{stdout}"
    );

    let after = history.bucket().await;
    let (store, _) = history.store("reader").await;
    assert_eq!(Manifest::list(&store).await.unwrap(), kept_of_october());
    assert_eq!(
        layout_folders(&after),
        [28, 29, 30].into_iter().map(october).collect()
    );
    println!(
        "30 daily snapshots of 300 objects: {} bytes at the destination before, {} after \
         ({} keys before, {} after)",
        total_bytes(&before),
        total_bytes(&after),
        before.len(),
        after.len()
    );
    assert!(total_bytes(&after) < total_bytes(&before) / 2);

    // `list` says which snapshots have their plain layout.
    let output = history.run("cli", &["list"]);
    let listed = String::from_utf8_lossy(&output.stdout);
    for time in kept_of_october() {
        let line = listed
            .lines()
            .find(|l| l.starts_with(&time.to_string()))
            .unwrap_or_else(|| panic!("{time} not listed: {listed}"));
        let layout = if time >= october(28) {
            "yes"
        } else {
            "dropped"
        };
        assert!(line.ends_with(layout), "{line}");
    }
    // And so does `show`, in text and in JSON.
    for (day, text_says, json_says) in [
        (
            27,
            "plain layout dropped by the retention policy",
            "dropped",
        ),
        (30, "plain layout complete", "complete"),
    ] {
        let time = october(day).to_string();
        let output = history.run("cli", &["show", &time]);
        let shown = String::from_utf8_lossy(&output.stdout);
        assert!(shown.lines().next().unwrap().contains(text_says), "{shown}");
        let output = history.run("cli", &["show", &time, "--output", "json"]);
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(json["layout"], json_says, "{json}");
    }

    // Every kept snapshot verifies from a fresh cache and restores into an empty cluster,
    // with its layout or without; diff works between layout-less snapshots.
    history.assert_verifies("fresh", "after the prune");
    for time in kept_of_october() {
        let target = Cluster::start_with(kube_sim::SimConfig {
            empty: true,
            ..kube_sim::SimConfig::default()
        })
        .await;
        let kubeconfig = target.kubeconfig.display().to_string();
        let output = history.run(
            "fresh",
            &["restore", &time.to_string(), "--kubeconfig", &kubeconfig],
        );
        assert_eq!(output.status.code(), Some(0), "{time}: {}", text(&output));
        assert!(
            target.sim.create_log().len() > 100,
            "{time}: {}",
            text(&output)
        );
    }
    let output = history.run(
        "fresh",
        &["diff", &october(11).to_string(), &october(25).to_string()],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));

    // Run again: nothing left to do.
    let output = history.run("cli", &["--config", &config, "forget", "--prune"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(history.bucket().await.len(), after.len());
}

/// The writes a forget and prune of `plan` make, roughly (the lock, its release, records,
/// deletions): where to stop one part-way.
fn writes_of(forget: &prune::ForgetPlan, plan: &PrunePlan) -> usize {
    2 + forget.forget.len()
        + forget.drop_layout.len()
        + plan.layout_files() as usize
        + plan.stray_records.len()
        + plan.rewrite_packs.len()
        + plan.replace_index.len()
        + plan.delete_packs.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_stopped_at_any_point_and_run_again_finishes_the_job() {
    let history = History::new(300, 12).await;
    let policy = Policy {
        keep_daily: Some(3),
        keep_layout: Some(1),
        ..Policy::default()
    };
    let selection = Selection::Policy(policy);
    // Every pack with an unused object is rewritten: the rewrite path is stopped too.
    let options = PruneOptions {
        max_unused: 0.0,
        lock: quick_locks(),
        holder: "test prune".to_string(),
    };
    let (_, plain) = history.store("plan").await;
    for fraction in [0.0, 0.2, 0.45, 0.7, 0.95] {
        let faulty = Arc::new(FaultyBackend::new(plain.clone()));
        let faults = faulty.state();
        let backend: DynBackend = faulty;
        let store = Store::open(
            backend.clone(),
            &history.dir.path().join(format!("prune-{fraction}")),
            history.settings.store.clone(),
        )
        .await
        .unwrap();
        let dry = prune::run(&store, &backend, Some(&selection), true, &options, true)
            .await
            .unwrap();
        let (forget, _) = dry.forget.unwrap();
        let (plan, _) = dry.prune.unwrap();
        let writes = writes_of(&forget, &plan);
        let stop_after = ((writes as f64 * fraction) as usize).max(1);
        faults.fail_after_writes(stop_after, FaultOps::Writes);
        let stopped = prune::run(&store, &backend, Some(&selection), true, &options, false).await;
        assert!(
            stopped.is_err(),
            "a prune of about {writes} writes stopped after {stop_after} should fail"
        );
        faults.heal();
        // What is left verifies: nothing a remaining snapshot refers to is gone.
        history.assert_verifies(
            &format!("verify-{fraction}"),
            &format!("stopped after {stop_after} of {writes} writes"),
        );
    }
    // The last run finishes; its lock is taken over from the stopped one once it expires.
    let (store, backend) = history.store("final").await;
    let done = prune::run(&store, &backend, Some(&selection), true, &options, false)
        .await
        .unwrap();
    let report = done.prune.unwrap().1.unwrap();
    println!("the run that finished: {report:?}");
    assert_eq!(
        Manifest::list(&store).await.unwrap(),
        [10, 11, 12].into_iter().map(october).collect::<Vec<_>>()
    );
    let bucket = history.bucket().await;
    assert_eq!(layout_folders(&bucket), [october(12)].into_iter().collect());
    // Exactly what the policy keeps: a further prune finds nothing to delete or rewrite.
    let again = prune::run(&store, &backend, Some(&selection), true, &options, true)
        .await
        .unwrap();
    let (forget, plan) = (again.forget.unwrap().0, again.prune.unwrap().0);
    assert!(forget.forget.is_empty() && forget.drop_layout.is_empty());
    assert!(plan.is_empty(), "{plan:?}");
    assert!(
        !bucket
            .keys()
            .any(|k| k.starts_with(&format!("{BASE}store/locks/"))),
        "no lock or lease is left"
    );
    history.assert_verifies("verify-final", "after the prune");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_written_while_a_prune_starts_is_never_pruned_from_under_it() {
    let history = History::new(300, 4).await;
    let (store, backend) = history.store("prune").await;
    let options = PruneOptions {
        lock: quick_locks(),
        ..PruneOptions::default()
    };
    // Three snapshots forgotten: the prune below has their layouts and objects to reclaim.
    let forgotten = Selection::Named(vec![october(1), october(2), october(3)]);
    prune::run(&store, &backend, Some(&forgotten), false, &options, false)
        .await
        .unwrap();
    history.cluster.sim.churn(0.3, 99);
    // A slow store, so that the snapshot is still uploading when the prune starts.
    history.s3.set_latency(Duration::from_millis(15));
    let mut settings = history.settings.clone();
    settings.snapshot.time = Some(october(5));
    let snapshot = async {
        let backend = open_backend(&settings.destination, &settings.cluster_name, &settings.s3)
            .await
            .unwrap();
        run_job(&settings, backend, Default::default()).await
    };
    // Once the snapshot's lease is there, a prune. Had it not waited for the writer, it would
    // have planned without the new snapshot's root and deleted its packs, which nothing
    // referred to yet.
    let prune = async {
        let lease = format!("{BASE}store/locks/writer-");
        let plain = s3_server::plain_client(&history.s3).await;
        let started = std::time::Instant::now();
        loop {
            let listed = plain
                .list_objects_v2()
                .bucket(s3_server::BUCKET)
                .prefix(&lease)
                .send()
                .await
                .unwrap();
            if !listed.contents().is_empty() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the snapshot never took its lease"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        prune::run(&store, &backend, None, true, &options, false).await
    };
    let (taken, pruned) = tokio::join!(snapshot, prune);
    let taken = taken.expect("the snapshot succeeds");
    let (plan, report) = pruned
        .expect("the prune waits for the snapshot, then runs")
        .prune
        .unwrap();
    history.s3.set_latency(Duration::ZERO);
    assert_eq!(taken.manifest.time, october(5));
    // It planned once the snapshot was stored: two snapshots remained, the new one with them.
    assert_eq!(plan.snapshots, 2);
    assert_eq!(
        Manifest::list(&store).await.unwrap(),
        vec![october(4), october(5)]
    );
    assert_eq!(report.unwrap().layout_folders, 3);
    history.assert_verifies("fresh", "after the prune");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_prune_is_told_who_holds_the_lock_and_two_prunes_never_delete_twice() {
    let history = History::new(200, 5).await;
    let (store, backend) = history.store("holder").await;
    let before = history.bucket().await;
    let held = lock_prune(&backend, "a prune in another terminal", &quick_locks())
        .await
        .unwrap();
    let output = history.run("cli", &["prune", "--wait", "1s"]);
    assert_eq!(output.status.code(), Some(4), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("another prune is at work")
            && stderr.contains("a prune in another terminal"),
        "{stderr}"
    );
    let mut unchanged = history.bucket().await;
    unchanged.retain(|k, _| !k.contains("/store/locks/"));
    assert_eq!(unchanged, before);
    held.release().await.unwrap();

    // Two at once: one waits for the other, and the second finds nothing left to do.
    let selection = Selection::Named(vec![october(1), october(2)]);
    let dry = prune::run(
        &store,
        &backend,
        Some(&selection),
        true,
        &PruneOptions::default(),
        true,
    )
    .await
    .unwrap();
    let planned = dry.prune.unwrap().0;
    let packs = (planned.delete_packs.len() + planned.rewrite_packs.len()) as u64;
    assert!(planned.layout_files() > 0 && packs > 0, "{planned:?}");
    let options = PruneOptions {
        lock: quick_locks(),
        ..PruneOptions::default()
    };
    let (other, other_backend) = history.store("other").await;
    let (a, b) = tokio::join!(
        prune::run(&store, &backend, Some(&selection), true, &options, false),
        prune::run(&other, &other_backend, None, true, &options, false),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let deleted = |outcome: &prune::Outcome| {
        let report = outcome.prune.as_ref().unwrap().1.as_ref().unwrap();
        (report.layout_files, report.packs_deleted)
    };
    let (a_files, a_packs) = deleted(&a);
    let (b_files, b_packs) = deleted(&b);
    // The prune without a forget may have run first, with nothing yet to do.
    assert_eq!(a_files + b_files, planned.layout_files());
    assert_eq!(a_packs + b_packs, packs);
    history.assert_verifies("fresh", "after the prune");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_prints_the_plan_and_changes_nothing() {
    let history = History::new(200, 4).await;
    let before = history.bucket().await;
    let output = history.run(
        "cli",
        &[
            "forget",
            "--prune",
            "--dry-run",
            "--keep-last",
            "1",
            "--keep-layout",
            "1",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("dry run: nothing was changed"), "{stdout}");
    assert!(
        stdout.contains("1 snapshot(s) to keep, 3 to forget"),
        "{stdout}"
    );
    assert!(stdout.contains("reclaims about"), "{stdout}");
    let output = history.run("cli", &["prune", "--dry-run"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    // Keys and bytes, as they were.
    assert_eq!(history.bucket().await, before);

    // Bad input changes nothing either.
    let output = history.run("cli", &["forget"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let output = history.run("cli", &["forget", "26-01-01_00-00-00"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let output = history.run("cli", &["prune", "--max-unused", "150%"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let mut after = history.bucket().await;
    after.retain(|k, _| !k.contains("/store/locks/"));
    assert_eq!(after, before);
    let _ = history.store("unused").await;
    assert!(
        support::s3_backend(&history.s3, "team/prod")
            .await
            .list_keys("store/locks/")
            .await
            .unwrap()
            .is_empty()
    );
}
