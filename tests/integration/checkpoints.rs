//! Checkpoints between daily snapshots: the daemon's watches, what a checkpoint holds, and
//! that every change the simulator's event log has reaches one, through broken and expired
//! watches.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube_autosave::repo::Manifest;
use kube_autosave::snapshot::{SnapshotOptions, take_snapshot};
use kube_autosave::store::{LocalBackend, ObjectId, Store, StoreConfig};
use kube_sim::EventKind;

use crate::daemon::{Daemon, write_config};
use crate::support::cluster::{Cluster, quick_retries};
use crate::support::s3_server::S3Server;

const BASE: &str = "team/prod/";

/// An object of a point: its resource (`deployments.apps`), namespace and name.
type Key = (String, Option<String>, String);

fn objects_of(manifest: &Manifest) -> BTreeMap<Key, ObjectId> {
    manifest
        .objects
        .iter()
        .map(|o| {
            let rt = manifest.resource_of(o);
            (
                (rt.qualified_name(), o.namespace.clone(), o.name.clone()),
                o.id,
            )
        })
        .collect()
}

fn changes_of(manifest: &Manifest) -> BTreeSet<Key> {
    manifest
        .changes
        .iter()
        .map(|c| {
            let rt = &manifest.resources[c.resource as usize].resource;
            (rt.qualified_name(), c.namespace.clone(), c.name.clone())
        })
        .collect()
}

fn key_of(key: &kube_sim::ObjectKey) -> Key {
    (
        key.qualified_resource(),
        key.namespace.clone(),
        key.name.clone(),
    )
}

/// The snapshots and checkpoints at the destination, oldest first.
async fn points(s3: &S3Server) -> Vec<Manifest> {
    let cache = tempfile::tempdir().unwrap();
    let store = crate::support::reader_store(s3, BASE, cache.path()).await;
    let mut out = Vec::new();
    for point in Manifest::list_points(&store).await.unwrap() {
        out.push(Manifest::load_point(&store, &point).await.unwrap());
    }
    out
}

/// A store whose destination and cache are folders under `dir`.
async fn local_store(dir: &std::path::Path) -> Store {
    Store::open(
        Arc::new(LocalBackend::new(dir.join("destination")).unwrap()),
        &dir.join("cache"),
        StoreConfig::default(),
    )
    .await
    .unwrap()
}

/// Marks dirty, in `dirty`, every object of `snapshot`'s resources the simulator changed
/// after `rv`, as the watches would; returns the index of each resource by its name and how
/// many objects were not dirty before.
fn dirty_since(
    cluster: &Cluster,
    rv: u64,
    snapshot: &Manifest,
    dirty: &mut kube_autosave::snapshot::checkpoint::Dirty,
) -> (BTreeMap<String, u32>, usize) {
    use kube_autosave::kube::watch::ObjectRef;
    let index_of: BTreeMap<String, u32> = snapshot
        .resources
        .iter()
        .enumerate()
        .map(|(i, r)| (r.resource.qualified_name(), i as u32))
        .collect();
    let mut added = 0;
    for event in cluster.sim.events().into_iter().filter(|e| e.rv > rv) {
        let (resource, namespace, name) = key_of(&event.key);
        if let Some(index) = index_of.get(&resource) {
            let new = dirty
                .entry(*index)
                .or_default()
                .insert(ObjectRef { namespace, name });
            added += usize::from(new);
        }
    }
    (index_of, added)
}

/// The cluster as a fresh snapshot with the daemon's rules sees it now.
async fn fresh_snapshot(cluster: &Cluster) -> BTreeMap<Key, ObjectId> {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    let options = SnapshotOptions {
        cluster_name: "prod".to_string(),
        retry: quick_retries(),
        ..SnapshotOptions::default()
    };
    let manifest = take_snapshot(&cluster.api().await, &store, &options, Arc::new(|_| {}))
        .await
        .unwrap();
    objects_of(&manifest)
}

/// A daemon with a daily interval, checkpoints every 2 s, pushes every second; returned
/// once its first snapshot is pushed and every watch has listed its resource.
fn started(dir: &std::path::Path, s3: &S3Server, cluster: &Cluster) -> Daemon {
    started_with(dir, s3, cluster, "")
}

/// [`started`] with more configuration.
fn started_with(dir: &std::path::Path, s3: &S3Server, cluster: &Cluster, extra: &str) -> Daemon {
    let config = write_config(
        dir,
        s3,
        &format!("  interval: 24h\n  pushInterval: 1s\n{extra}"),
    );
    let daemon = Daemon::start(dir, &config, cluster, &["--checkpoint-interval", "2s"]);
    daemon.wait_for(
        "the snapshot and the watches",
        Duration::from_secs(90),
        |d| {
            let watched = d.metric("watched_resources");
            d.metric("snapshots_total") >= 1.0
                && d.metric("snapshots_pending") == 0.0
                && watched > 0.0
                && d.metric("watch_relists_total") >= watched
        },
    );
    daemon
}

/// What the event log changed after `rv`: objects written (added or modified) and objects
/// deleted, each by its last event.
fn changed_after(cluster: &Cluster, rv: u64) -> (BTreeSet<Key>, BTreeSet<Key>) {
    let mut last: BTreeMap<Key, EventKind> = BTreeMap::new();
    for event in cluster.sim.events().into_iter().filter(|e| e.rv > rv) {
        last.insert(key_of(&event.key), event.kind);
    }
    let written = last
        .iter()
        .filter(|(_, kind)| **kind != EventKind::Deleted)
        .map(|(key, _)| key.clone())
        .collect();
    let deleted = last
        .iter()
        .filter(|(_, kind)| **kind == EventKind::Deleted)
        .map(|(key, _)| key.clone())
        .collect();
    (written, deleted)
}

/// Checks that the points chain: each checkpoint is the point before it with exactly its
/// changes (and deletions), nothing else.
fn assert_chained(points: &[Manifest]) {
    for pair in points.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        if !after.checkpoint {
            continue;
        }
        let (was, is) = (objects_of(before), objects_of(after));
        let changes = changes_of(after);
        for (key, id) in &is {
            if was.get(key) != Some(id) {
                assert!(
                    changes.contains(key),
                    "checkpoint {} changed {key:?} without naming it",
                    after.time
                );
            }
        }
        for key in &changes {
            assert!(
                is.contains_key(key),
                "{key:?} named but not in {}",
                after.time
            );
        }
    }
}

/// Waits until the checkpoints hold every change the event log has after `rv` (written
/// objects the rules keep named as changes, deleted ones gone); returns the points.
async fn wait_for_changes(
    s3: &S3Server,
    cluster: &Cluster,
    rv: u64,
    kept: &BTreeMap<Key, ObjectId>,
    within: Duration,
) -> Vec<Manifest> {
    let (written, deleted) = changed_after(cluster, rv);
    // Only what a snapshot keeps: the rules leave some objects out.
    let wanted: BTreeSet<Key> = written
        .into_iter()
        .filter(|k| kept.contains_key(k))
        .collect();
    assert!(!wanted.is_empty());
    let deadline = Instant::now() + within;
    loop {
        let all = points(s3).await;
        let after_rv: Vec<&Manifest> = all.iter().filter(|m| m.checkpoint).collect();
        let named: BTreeSet<Key> = after_rv.iter().flat_map(|m| changes_of(m)).collect();
        let last = all.last().map(objects_of).unwrap_or_default();
        let missing: Vec<&Key> = wanted.difference(&named).collect();
        let still_there: Vec<&Key> = deleted.iter().filter(|k| last.contains_key(*k)).collect();
        if missing.is_empty() && still_there.is_empty() {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "after {within:?}: changes in no checkpoint: {missing:?}; deleted but kept: {still_there:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_in_a_checkpoint_within_the_interval_and_the_last_one_is_the_cluster() {
    let s3 = S3Server::start();
    let cluster = Cluster::start(400, 61).await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = started(dir.path(), &s3, &cluster);
    let rv = cluster.sim.resource_version();
    let changed_at = Instant::now();
    let report = cluster.sim.churn(0.03, 7);
    assert!(!report.modified.is_empty() && !report.deleted.is_empty());
    let now = fresh_snapshot(&cluster).await;

    // The interval, the push and a few seconds.
    let all = wait_for_changes(&s3, &cluster, rv, &now, Duration::from_secs(12)).await;
    assert!(changed_at.elapsed() < Duration::from_secs(13));
    assert_chained(&all);
    let last = all.last().unwrap();
    assert!(last.checkpoint);
    assert!(last.export.is_none());
    assert_eq!(objects_of(last), now, "the last checkpoint is the cluster");
    // Who changed the objects came with them (the simulator's objects have managedFields).
    assert!(
        all.iter()
            .filter(|m| m.checkpoint)
            .flat_map(|m| &m.changes)
            .any(|c| c.manager.is_some())
    );

    assert!(daemon.metric("checkpoints_total") >= 1.0);
    assert!(daemon.metric("watch_events_total") > 0.0);
    assert!(daemon.metric("last_checkpoint_timestamp_seconds") > 0.0);
    assert!(daemon.metric("checkpoint_interval_seconds") == 2.0);
    daemon.wait_for("a fresh recovery point", Duration::from_secs(10), |d| {
        (0.0..10.0).contains(&d.metric("recovery_point_age_seconds"))
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_and_expired_watches_leave_no_change_out_of_the_checkpoints() {
    let s3 = S3Server::start();
    let cluster = Cluster::start(400, 62).await;
    cluster
        .sim
        .set_bookmark_interval(Duration::from_millis(500));
    let dir = tempfile::tempdir().unwrap();
    let daemon = started(dir.path(), &s3, &cluster);
    let relists = daemon.metric("watch_relists_total");
    let rv = cluster.sim.resource_version();

    for round in 0..3u64 {
        cluster.sim.churn(0.02, 100 + round);
        // The connections drop; what changes before the watches are back is found by
        // their lists.
        cluster.sim.faults().break_watches();
        cluster.sim.churn(0.02, 200 + round);
        // Every resource version handed out so far is too old now.
        cluster.sim.compact();
        cluster.sim.churn(0.01, 300 + round);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let now = fresh_snapshot(&cluster).await;
    let all = wait_for_changes(&s3, &cluster, rv, &now, Duration::from_secs(30)).await;
    assert_chained(&all);
    // Quiet now: the last point is the cluster, whatever checkpoint it took.
    daemon.wait_for("the last checkpoint", Duration::from_secs(20), |_| true);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all = points(&s3).await;
        if objects_of(all.last().unwrap()) == now {
            assert_chained(&all);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the last point is not the cluster"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    assert!(
        daemon.metric("watch_relists_total") > relists,
        "no relist after the breaks"
    );
    assert!(daemon.metric("watch_restarts_total{reason=\"broken\"}") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_the_snapshot_lists_reach_the_checkpoints() {
    let s3 = S3Server::start();
    let cluster = Cluster::start(600, 63).await;
    // A slow API server: the snapshot lists for a few seconds while objects change.
    cluster.sim.faults().latency(Duration::from_millis(30));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &s3, "  interval: 24h\n  pushInterval: 1s\n");
    let daemon = Daemon::start(
        dir.path(),
        &config,
        &cluster,
        &["--checkpoint-interval", "2s"],
    );
    let mut round = 0u64;
    while daemon.metric("snapshots_total") < 1.0 {
        assert!(round < 600, "no snapshot");
        cluster.sim.churn(0.002, 400 + round);
        round += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        round > 3,
        "the snapshot was too quick to change anything while it listed"
    );
    // And while the watches start.
    for extra in 0..5 {
        cluster.sim.churn(0.002, 10_000 + extra);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.sim.faults().latency(Duration::ZERO);
    let now = fresh_snapshot(&cluster).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = points(&s3).await;
        if all.last().is_some_and(|last| objects_of(last) == now) {
            assert!(all.iter().any(|m| m.checkpoint), "no checkpoint");
            assert_chained(&all);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the last point is not the cluster: {:?}",
            all.last().map(|last| {
                let last = objects_of(last);
                now.iter()
                    .filter(|(k, id)| last.get(*k) != Some(*id))
                    .map(|(k, _)| k.clone())
                    .chain(last.keys().filter(|k| !now.contains_key(*k)).cloned())
                    .take(10)
                    .collect::<Vec<_>>()
            })
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_of_most_objects_lists_their_resources_instead_of_reading_each() {
    use kube_autosave::kube::watch::ObjectRef;
    use kube_autosave::snapshot::checkpoint::{Dirty, take_checkpoint};

    let cluster = Cluster::start(600, 64).await;
    let api = cluster.api().await;
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    let options = SnapshotOptions {
        cluster_name: "prod".to_string(),
        retry: quick_retries(),
        ..SnapshotOptions::default()
    };
    let snapshot = take_snapshot(&api, &store, &options, Arc::new(|_| {}))
        .await
        .unwrap();
    let rv = cluster.sim.resource_version();
    cluster.sim.churn(0.2, 17);
    // Every object dirty, as a watch without what the snapshot saw finds them.
    let mut dirty = Dirty::new();
    for o in &snapshot.objects {
        dirty.entry(o.resource).or_default().insert(ObjectRef {
            namespace: o.namespace.clone(),
            name: o.name.clone(),
        });
    }
    let (_, added) = dirty_since(&cluster, rv, &snapshot, &mut dirty);
    let dirty_objects = snapshot.objects.len() + added;
    // Small pages, and every continue token too old once a page was read: each list starts
    // again, with bigger pages, and what the aborted one took is not counted twice.
    let small_pages = SnapshotOptions {
        page_size: 10,
        ..options.clone()
    };
    cluster.sim.faults().expire_continue_after(Some(1));
    let before = cluster.sim.served();
    let outcome = take_checkpoint(&api, &store, &snapshot, &dirty, &small_pages, None)
        .await
        .unwrap();
    let served = cluster.sim.served();
    cluster.sim.faults().expire_continue_after(None);
    assert!(outcome.unread.is_empty());
    let checkpoint = outcome.manifest.expect("a checkpoint");
    assert!(checkpoint.checkpoint);
    let changed: Vec<_> = checkpoint
        .changes
        .iter()
        .map(|c| (c.resource, &c.namespace, &c.name))
        .collect();
    let distinct: BTreeSet<_> = changed.iter().collect();
    assert_eq!(distinct.len(), changed.len(), "a change recorded twice");
    // Small resources are read object by object, the others listed.
    let narrowed = served.named_lists - before.named_lists;
    assert!(
        narrowed * 4 < dirty_objects as u64,
        "{narrowed} objects read one by one of {dirty_objects}"
    );
    assert!(served.full_list_items > before.full_list_items);
    assert_eq!(objects_of(&checkpoint), fresh_snapshot(&cluster).await);
    assert_chained(&[snapshot, checkpoint]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_changes_are_encrypted_and_their_files_made_again_as_a_snapshot_makes_them() {
    use kube_autosave::seal::{Encryption, Recipients, Sealer};
    use kube_autosave::snapshot::checkpoint::{Dirty, take_checkpoint};

    let cluster = Cluster::start(400, 65).await;
    let api = cluster.api().await;
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let options = SnapshotOptions {
        cluster_name: "prod".to_string(),
        retry: quick_retries(),
        encryption: Some(Encryption {
            recipients: Recipients::parse([("r".to_string(), recipient.as_str())]).unwrap(),
            resources: vec!["secrets".to_string()],
        }),
        ..SnapshotOptions::default()
    };
    let snapshot = take_snapshot(&api, &store, &options, Arc::new(|_| {}))
        .await
        .unwrap();
    assert!(!snapshot.sealed_files.is_empty());
    let rv = cluster.sim.resource_version();
    cluster.sim.churn(0.1, 23);
    let mut dirty = Dirty::new();
    let (index_of, _) = dirty_since(&cluster, rv, &snapshot, &mut dirty);
    let secrets = index_of["secrets"];
    assert!(dirty.contains_key(&secrets));
    let sealer = Sealer::open(&store, options.encryption.as_ref().unwrap())
        .await
        .unwrap();
    let outcome = take_checkpoint(&api, &store, &snapshot, &dirty, &options, Some(&sealer))
        .await
        .unwrap();
    assert!(outcome.unread.is_empty());
    let checkpoint = outcome.manifest.expect("a checkpoint");
    assert!(checkpoint.changes.iter().any(|c| c.resource == secrets));
    assert_ne!(checkpoint.sealed_files, snapshot.sealed_files);
    assert_chained(&[snapshot.clone(), checkpoint.clone()]);

    // A snapshot now, with the same local keys, stores nothing new for the Secrets: the
    // same objects and the same encrypted files.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let now = take_snapshot(&api, &store, &options, Arc::new(|_| {}))
        .await
        .unwrap();
    assert_eq!(objects_of(&checkpoint), objects_of(&now));
    assert_eq!(checkpoint.sealed_files, now.sealed_files);
    // And a changed namespace's file opens with the identity.
    let identity_file = dir.path().join("key.txt");
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(&identity_file, identity.to_string().expose_secret()).unwrap();
    }
    let keyring = kube_autosave::seal::Keyring::load(&[identity_file]).unwrap();
    let (group, file) = checkpoint
        .sealed_files
        .iter()
        .find(|(group, file)| snapshot.sealed_files.get(*group) != Some(*file))
        .unwrap();
    let data = store.get(&file.id).await.unwrap();
    let opened = keyring.open_file("a sealed file", &data).unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&opened).unwrap();
    let names: BTreeSet<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    let in_manifest: BTreeSet<&str> = checkpoint
        .objects
        .iter()
        .filter(|o| (o.resource, &o.namespace) == (group.0, &group.1))
        .map(|o| o.name.as_str())
        .collect();
    assert_eq!(names, in_manifest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_daemon_checkpoints_secrets_only_encrypted() {
    let s3 = S3Server::start();
    let cluster = Cluster::start(400, 66).await;
    let dir = tempfile::tempdir().unwrap();
    let identity = age::x25519::Identity::generate();
    let identity_file = dir.path().join("key.txt");
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(&identity_file, identity.to_string().expose_secret()).unwrap();
    }
    let extra = format!(
        "  encryption:\n    recipients: [{}]\n",
        identity.to_public()
    );
    let _daemon = started_with(dir.path(), &s3, &cluster, &extra);
    let rv = cluster.sim.resource_version();
    cluster.sim.churn(0.05, 29);
    let secrets_changed = changed_after(&cluster, rv)
        .0
        .iter()
        .any(|(resource, _, _)| resource == "secrets");
    assert!(secrets_changed);

    let deadline = Instant::now() + Duration::from_secs(20);
    let (snapshot, checkpoint) = loop {
        let all = points(&s3).await;
        let with_secrets = all.iter().find(|m| {
            m.checkpoint
                && changes_of(m)
                    .iter()
                    .any(|(resource, _, _)| resource == "secrets")
        });
        if let Some(checkpoint) = with_secrets {
            break (all[0].clone(), checkpoint.clone());
        }
        assert!(Instant::now() < deadline, "no checkpoint of the Secrets");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(!snapshot.checkpoint);
    let cache = tempfile::tempdir().unwrap();
    let store = crate::support::reader_store(&s3, BASE, cache.path()).await;
    let keyring = kube_autosave::seal::Keyring::load(&[identity_file]).unwrap();
    let changed_files: Vec<_> = checkpoint
        .sealed_files
        .iter()
        .filter(|(group, file)| snapshot.sealed_files.get(*group) != Some(*file))
        .collect();
    assert!(!changed_files.is_empty());
    for (_, file) in changed_files {
        let data = store.get(&file.id).await.unwrap();
        let opened = keyring.open_file("a sealed file", &data).unwrap();
        assert!(serde_json::from_slice::<serde_json::Value>(&opened).is_ok());
    }
    // The Secrets' objects are stored sealed: none reads as JSON without the key.
    let secrets = snapshot
        .resources
        .iter()
        .position(|r| r.resource.resource == "secrets")
        .unwrap() as u32;
    for change in checkpoint.changes.iter().filter(|c| c.resource == secrets) {
        let object = checkpoint
            .objects
            .iter()
            .find(|o| {
                o.resource == secrets && o.namespace == change.namespace && o.name == change.name
            })
            .unwrap();
        let stored = store.get(&object.id).await.unwrap();
        assert!(serde_json::from_slice::<serde_json::Value>(&stored).is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_written_while_s3_is_away_are_staged_and_pushed_when_it_is_back() {
    let s3 = S3Server::start();
    let cluster = Cluster::start(300, 67).await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = started(dir.path(), &s3, &cluster);
    s3.stop();
    let rv = cluster.sim.resource_version();
    cluster.sim.churn(0.03, 41);
    daemon.wait_for("a staged checkpoint", Duration::from_secs(20), |d| {
        d.metric("checkpoints_total") >= 1.0 && d.metric("push_failures_total") >= 1.0
    });
    cluster.sim.churn(0.03, 42);
    s3.restart();
    let now = fresh_snapshot(&cluster).await;
    let all = wait_for_changes(&s3, &cluster, rv, &now, Duration::from_secs(30)).await;
    assert_chained(&all);
    let deadline = Instant::now() + Duration::from_secs(20);
    while objects_of(points(&s3).await.last().unwrap()) != now {
        assert!(
            Instant::now() < deadline,
            "the last point is not the cluster"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
