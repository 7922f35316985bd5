//! A bucket other people and programs also write to: two writers never overwrite each
//! other's snapshot, a folder holds one cluster's snapshots, and an object whose name would
//! make an unsafe key is left out and named instead of written outside its snapshot.

use std::process::Output;
use std::sync::Arc;

use kube_autosave::repo::Manifest;
use kube_autosave::snapshot::take_snapshot;
use kube_autosave::store::{Store, StoreConfig};

use crate::support::cluster::Cluster;
use crate::support::s3_server::{self, S3Server};
use crate::support::{binary, snapshot_command, with_s3};

const BASE: &str = "team/prod/";

/// Runs both commands at the same moment.
async fn at_once(mut a: std::process::Command, mut b: std::process::Command) -> (Output, Output) {
    let a = tokio::task::spawn_blocking(move || a.output().unwrap());
    let b = tokio::task::spawn_blocking(move || b.output().unwrap());
    (a.await.unwrap(), b.await.unwrap())
}

fn text(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_on_one_folder_one_is_refused_and_one_cluster_on_two_machines_keeps_both() {
    let s3 = S3Server::start();
    let blue = Cluster::start(400, 61).await;
    let green = Cluster::start(400, 62).await;
    let dir = tempfile::tempdir().unwrap();

    // Two clusters left on the same clusterName start at the same moment: one claims the
    // folder, the other is refused with exit 2 and told what to change.
    let (a, b) = at_once(
        snapshot_command(&s3, &blue, dir.path(), "blue-state"),
        snapshot_command(&s3, &green, dir.path(), "green-state"),
    )
    .await;
    let mut codes = [a.status.code(), b.status.code()];
    codes.sort();
    assert_eq!(codes, [Some(0), Some(2)], "{}\n---\n{}", text(&a), text(&b));
    let refused = if a.status.code() == Some(2) { &a } else { &b };
    let message = text(refused);
    let cache = tempfile::tempdir().unwrap();
    let store = crate::support::reader_store(&s3, BASE, cache.path()).await;
    let first = Manifest::list(&store).await.unwrap();
    assert_eq!(first.len(), 1, "{first:?}");
    for expected in ["kube-system", "clusterName", "--cluster-name", "\"prod\""] {
        assert!(
            message.contains(expected),
            "{expected:?} missing:\n{message}"
        );
    }
    // Both uids are named: the folder's owner and the refused cluster.
    let uid = |cluster: &Cluster| {
        let key = cluster
            .sim
            .objects()
            .into_iter()
            .find(|k| k.resource == "namespaces" && k.name == "kube-system")
            .unwrap();
        cluster.sim.object(&key).unwrap()["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (blue_uid, green_uid) = (uid(&blue), uid(&green));
    assert_ne!(blue_uid, green_uid);
    assert!(
        message.contains(&blue_uid) && message.contains(&green_uid),
        "{message}"
    );
    let owner = if a.status.code() == Some(0) {
        &blue
    } else {
        &green
    };
    let intruder = if a.status.code() == Some(0) {
        &green
    } else {
        &blue
    };

    // Refused again later, whatever its cache holds; the folder is untouched by it.
    tokio::time::sleep(std::time::Duration::from_millis(1050)).await;
    let again = snapshot_command(&s3, intruder, dir.path(), "intruder-state")
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert_eq!(Manifest::list(&store).await.unwrap(), first);

    // One cluster, two machines (a manual snapshot beside the daemon) at the same moment:
    // two snapshots under two names, both complete, nothing overwritten.
    tokio::time::sleep(std::time::Duration::from_millis(1050)).await;
    let (a, b) = at_once(
        snapshot_command(&s3, owner, dir.path(), "machine-one"),
        snapshot_command(&s3, owner, dir.path(), "machine-two"),
    )
    .await;
    assert_eq!(a.status.code(), Some(0), "{}", text(&a));
    assert_eq!(b.status.code(), Some(0), "{}", text(&b));
    let all = Manifest::list(&store).await.unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    for time in &all {
        assert!(Manifest::head(&store, time).await.unwrap().export.is_some());
    }
    let fresh = tempfile::tempdir().unwrap();
    let verify = with_s3(&mut binary(dir.path()), &s3)
        .args([
            "verify",
            "--all",
            "--to",
            "s3://backups/team",
            "--cluster-name",
            "prod",
            "--cache-dir",
            &fresh.path().display().to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
}

/// A manifest is created, never overwritten: saved under a name another writer holds, it
/// takes the next free second, and both snapshots stay whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_snapshot_name_moves_the_manifest_to_the_next_second() {
    let s3 = S3Server::start();
    let cluster = Cluster::start(200, 63).await;
    let cache = tempfile::tempdir().unwrap();
    let settings = crate::support::job_settings(&s3, &cluster, cache.path());
    let store = Store::open(
        crate::support::s3_backend(&s3, BASE).await,
        cache.path(),
        StoreConfig::default(),
    )
    .await
    .unwrap();
    let api = cluster.api().await;
    let first = take_snapshot(&api, &store, &settings.snapshot, Arc::new(|_| {}))
        .await
        .unwrap();
    let stored_first = std::fs::read(
        s3.bucket_dir()
            .join(format!("{BASE}store/snapshots/{}", first.time)),
    )
    .unwrap();

    // Another writer's snapshot under the same name, with other objects.
    cluster.sim.churn(0.2, 3);
    let mut second = take_snapshot(&api, &store, &settings.snapshot, Arc::new(|_| {}))
        .await
        .unwrap();
    let taken = first.time;
    second.time = taken;
    second.save(&store).await.unwrap();
    assert!(second.time > taken, "{:?}", second.time);

    let reread_first = Manifest::load(&store, &first.time).await.unwrap();
    assert_eq!(
        reread_first.objects, first.objects,
        "the first was overwritten"
    );
    assert_eq!(
        std::fs::read(
            s3.bucket_dir()
                .join(format!("{BASE}store/snapshots/{}", first.time))
        )
        .unwrap(),
        stored_first
    );
    let reread_second = Manifest::load(&store, &second.time).await.unwrap();
    assert_eq!(reread_second.objects, second.objects);
    assert_eq!(reread_second.time, second.time);
}

/// An object whose namespace could climb out of the snapshot's folder (`..`), served by an
/// API server that does not validate (a broken aggregated API), is left out and named in the
/// manifest's skipped list; every key written stays inside the cluster's folder, and the
/// next snapshots run as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_whose_namespace_makes_an_unsafe_key_is_skipped_and_named() {
    let s3 = S3Server::start();
    let cluster = Cluster::start(300, 64).await;
    let dir = tempfile::tempdir().unwrap();
    cluster.sim.faults().extra_list_item(
        "configmaps",
        Some(serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "escape",
                "namespace": "..",
                "uid": "00000000-0000-0000-0000-00000000e5c4",
                "resourceVersion": "1",
            },
            "data": {"a": "b"},
        })),
    );
    let output = snapshot_command(&s3, &cluster, dir.path(), "state")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", text(&output));
    assert!(text(&output).contains("escape"), "{}", text(&output));

    let cache = tempfile::tempdir().unwrap();
    let store = crate::support::reader_store(&s3, BASE, cache.path()).await;
    let time = *Manifest::list(&store).await.unwrap().last().unwrap();
    let manifest = Manifest::load(&store, &time).await.unwrap();
    assert!(manifest.export.is_some(), "the snapshot is complete");
    let skipped: Vec<_> = manifest
        .skipped
        .iter()
        .filter(|s| s.name.as_deref() == Some("escape"))
        .collect();
    assert_eq!(skipped.len(), 1, "{:?}", manifest.skipped);
    assert_eq!(skipped[0].namespace.as_deref(), Some(".."));
    assert!(skipped[0].reason.contains("namespace"), "{:?}", skipped[0]);
    assert!(
        !manifest
            .objects
            .iter()
            .any(|o| o.namespace.as_deref() == Some("..")),
    );
    // Every key in the bucket is inside the cluster's folder, none with a `..` segment.
    let client = s3_server::plain_client(&s3).await;
    let everything = s3_server::read_all(&client, "").await;
    assert!(!everything.is_empty());
    for key in everything.keys() {
        assert!(key.starts_with(BASE), "{key}");
        assert!(!key.split('/').any(|part| part == ".."), "{key}");
    }

    // The next snapshot runs as usual (still exit 3 while the object is served, then 0).
    cluster.sim.faults().extra_list_item("configmaps", None);
    tokio::time::sleep(std::time::Duration::from_millis(1050)).await;
    let output = snapshot_command(&s3, &cluster, dir.path(), "state")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(Manifest::list(&store).await.unwrap().len(), 2);
}

/// One snapshot at the destination that cannot be exported (its manifest was cut short by a
/// failed upload) does not stop the next ones: `snapshot` says so, exits 3, and the new
/// snapshot is complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_cannot_be_exported_does_not_stop_the_next_one() {
    let s3 = S3Server::start();
    let cluster = Cluster::start(200, 65).await;
    let dir = tempfile::tempdir().unwrap();
    let output = snapshot_command(&s3, &cluster, dir.path(), "state")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let snapshots = s3.bucket_dir().join(format!("{BASE}store/snapshots"));
    let first = std::fs::read_dir(&snapshots)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let whole = std::fs::read(&first).unwrap();
    let truncated = "20-01-01_00-00-00";
    std::fs::write(snapshots.join(truncated), &whole[..whole.len() / 2]).unwrap();

    tokio::time::sleep(std::time::Duration::from_millis(1050)).await;
    let output = snapshot_command(&s3, &cluster, dir.path(), "state")
        .output()
        .unwrap();
    let said = text(&output);
    assert_eq!(output.status.code(), Some(3), "{said}");
    assert!(
        said.contains(&format!(
            "could not finish the export of snapshot {truncated}"
        )),
        "{said}"
    );
    let cache = tempfile::tempdir().unwrap();
    let store = crate::support::reader_store(&s3, BASE, cache.path()).await;
    let all = Manifest::list(&store).await.unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    let newest = all.last().unwrap();
    assert!(
        Manifest::head(&store, newest)
            .await
            .unwrap()
            .export
            .is_some()
    );
}
