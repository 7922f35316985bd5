//! Points in time: `list --checkpoints`, `restore --at`, `diff` between any two points, and
//! `history` of one object, against checkpoints and snapshots at a real destination.
//!
//! The story: a config map (and a Secret beside it) is changed five times by five field
//! managers, with a checkpoint after each change, between a morning snapshot and one eight
//! days later. The points are named by fixed times, so that "the state at 09:12" is one
//! checkpoint and no test waits for the clock.

use std::process::Output;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use kube_autosave::kube::Api;
use kube_autosave::repo::Manifest;
use kube_autosave::snapshot::{SnapshotOptions, take_snapshot};
use kube_autosave::store::{SnapshotTime, Store};
use serde_json::{Value, json};

use crate::support::cluster::Cluster;
use crate::support::s3_server::S3Server;

/// The namespace the story's objects live in (not a system namespace: `restore` takes it).
const NAMESPACE: &str = "shop";
const CONFIG: &str = "/api/v1/namespaces/shop/configmaps";
const SECRETS: &str = "/api/v1/namespaces/shop/secrets";
/// The Secret's value in each version: never in any output.
fn password(version: usize) -> String {
    format!("hunter2-version-{version}")
}

fn base64(text: &str) -> String {
    crate::support::objects::base64(text.as_bytes())
}

/// The morning snapshot's time; checkpoint `i` is `5 i` minutes later, the last snapshot
/// eight days later.
fn base() -> DateTime<Utc> {
    "2026-11-20T09:00:00Z".parse().unwrap()
}

fn at(offset: Duration) -> SnapshotTime {
    SnapshotTime::from_datetime(base() + offset)
}

fn checkpoint_time(i: usize) -> SnapshotTime {
    at(Duration::minutes(5 * i as i64))
}

fn last_snapshot_time() -> SnapshotTime {
    at(Duration::days(8))
}

struct Story {
    s3: S3Server,
    cluster: Cluster,
    cache: tempfile::TempDir,
}

impl Story {
    /// The cluster, the morning snapshot, five changes each followed by a checkpoint, and the
    /// snapshot eight days later.
    async fn tell() -> Story {
        let story = Story {
            s3: S3Server::start(),
            cluster: Cluster::start(120, 17).await,
            cache: tempfile::tempdir().unwrap(),
        };
        let api = story.cluster.api().await;
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": NAMESPACE}});
        post(&api, "/api/v1/namespaces?fieldManager=setup", namespace).await;
        post(&api, &format!("{CONFIG}?fieldManager=setup"), config_map(0)).await;
        post(&api, &format!("{SECRETS}?fieldManager=setup"), secret(0)).await;
        story.point(&api, at(Duration::zero()), false).await;
        for i in 1..=5 {
            let manager = format!("editor-{i}");
            put(
                &api,
                &format!("{CONFIG}/flags?fieldManager={manager}"),
                config_map(i),
            )
            .await;
            if i % 2 == 0 {
                put(
                    &api,
                    &format!("{SECRETS}/db?fieldManager={manager}"),
                    secret(i),
                )
                .await;
            }
            story.point(&api, checkpoint_time(i), true).await;
        }
        story.point(&api, last_snapshot_time(), false).await;
        story
    }

    /// The writer's store: the same local state (and seen-objects cache) for every point, as
    /// the daemon has.
    async fn store(&self, name: &str) -> Store {
        crate::support::reader_store(&self.s3, "team/prod/", &self.cache.path().join(name)).await
    }

    /// A snapshot, or a checkpoint with a full read, named `time`.
    async fn point(&self, api: &Api, time: SnapshotTime, checkpoint: bool) -> Manifest {
        let store = self.store("writer").await;
        let options = SnapshotOptions {
            cluster_name: "prod".to_string(),
            retry: crate::support::cluster::quick_retries(),
            time: Some(time),
            checkpoint,
            ..SnapshotOptions::default()
        };
        let manifest = take_snapshot(api, &store, &options, std::sync::Arc::new(|_| {}))
            .await
            .unwrap();
        assert_eq!((manifest.time, manifest.checkpoint), (time, checkpoint));
        manifest
    }

    /// The binary with this story's destination.
    fn run(&self, args: &[&str]) -> Output {
        let dir = self.cache.path();
        let mut command = crate::support::binary(dir);
        crate::support::with_s3(&mut command, &self.s3)
            .args(["--to", "s3://backups/team", "--cluster-name", "prod"])
            .args(["--cache-dir", &dir.join("cli").display().to_string()])
            .args(args);
        command.output().unwrap()
    }

    /// The binary's one JSON document, after it exited with 0.
    fn json(&self, args: &[&str]) -> Value {
        let output = self.run(args);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", text(&output));
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not one JSON document ({e}):\n{}", text(&output)))
    }
}

fn config_map(version: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "flags", "namespace": NAMESPACE},
        "data": {"version": version.to_string(), "checkout": "on"}})
}

fn secret(version: usize) -> Value {
    let value = base64(&password(version));
    let applied = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db", "namespace": NAMESPACE}, "data": {"password": value}});
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "db", "namespace": NAMESPACE, "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": applied.to_string()}},
        "data": {"password": value}})
}

async fn post(api: &Api, path: &str, body: Value) {
    api.post(path, Bytes::from(body.to_string()))
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
}

async fn put(api: &Api, path: &str, body: Value) {
    api.put(path, Bytes::from(body.to_string()))
        .await
        .unwrap_or_else(|e| panic!("PUT {path}: {e}"));
}

fn text(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// No version of the Secret's value, plain or in base64, in `output`.
fn assert_no_secret(output: &str) {
    for version in 0..=5 {
        let value = password(version);
        assert!(!output.contains(&value), "{value} in:\n{output}");
        assert!(
            !output.contains(&base64(&value)),
            "{value} (base64) in:\n{output}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_shows_every_version_with_its_manager_and_list_diff_and_verify_see_checkpoints() {
    let story = Story::tell().await;

    // `history`: six versions, in order, each with the manager that made it.
    for name in ["configmap", "configmaps", "cm", "ConfigMap"] {
        let history = story.json(&["history", name, "shop/flags", "-o", "json"]);
        assert_eq!(history["resource"], "configmaps", "{history:#}");
        let versions = history["versions"].as_array().unwrap();
        assert_eq!(versions.len(), 6, "{name}: {history:#}");
        assert_eq!(history["points"], 7);
        for (i, version) in versions.iter().enumerate() {
            let seen = if i == 0 {
                at(Duration::zero())
            } else {
                checkpoint_time(i)
            };
            assert_eq!(version["time"], seen.to_string(), "{version:#}");
            assert_eq!(
                version["point"],
                if i == 0 { "snapshot" } else { "checkpoint" }
            );
            if i == 0 {
                // The first snapshot of a cache names no changes.
                assert_eq!(version["manager"], Value::Null);
                assert!(version["ops"].as_array().unwrap().is_empty());
                continue;
            }
            assert_eq!(version["manager"], format!("editor-{i}"), "{version:#}");
            assert_eq!(
                version["ops"],
                json!([{"op": "replace", "path": "/data/version",
                        "from": (i - 1).to_string(), "value": i.to_string()}]),
                "{version:#}"
            );
        }
    }
    let output = story.run(&["history", "cm", "shop/flags"]);
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(0), "{shown}");
    assert!(shown.contains("first seen, by unknown"), "{shown}");
    assert!(shown.contains("changed, by editor-3"), "{shown}");
    assert!(
        shown.contains("replace /data/version: \"2\" -> \"3\""),
        "{shown}"
    );

    // The Secret's history says who changed it and hides every value, the last-applied
    // annotation's too.
    let output = story.run(&["history", "secret", "shop/db", "-o", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_no_secret(&text(&output));
    let history: Value = serde_json::from_slice(&output.stdout).unwrap();
    let managers: Vec<&Value> = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| &v["manager"])
        .collect();
    assert_eq!(
        managers,
        [&Value::Null, &json!("editor-2"), &json!("editor-4")]
    );
    let output = story.run(&["history", "secrets", "shop/db"]);
    assert_no_secret(&text(&output));
    assert!(
        text(&output).contains("<secret value: "),
        "{}",
        text(&output)
    );

    // An object no point holds is bad input, with what to check.
    let output = story.run(&["history", "cm", "flags"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("write <namespace>/<name>"),
        "{}",
        text(&output)
    );
    for (resource, object) in [("configmap", "shop/nope"), ("widgets", "shop/flags")] {
        let output = story.run(&["history", resource, object]);
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        assert!(
            text(&output).contains("is in no snapshot or checkpoint"),
            "{}",
            text(&output)
        );
        assert!(output.stdout.is_empty());
    }

    // `list` shows the snapshots; `list --checkpoints` the checkpoints too, marked.
    let listed = story.json(&["list", "-o", "json"]);
    let points = |listed: &Value| -> Vec<(String, String)> {
        listed
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["time"].as_str().unwrap().to_string(),
                    p["point"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        points(&listed),
        [
            (last_snapshot_time().to_string(), "snapshot".to_string()),
            (at(Duration::zero()).to_string(), "snapshot".to_string()),
        ]
    );
    let output = story.run(&["list"]);
    assert!(
        text(&output).contains("and 5 checkpoint(s) between them"),
        "{}",
        text(&output)
    );
    let listed = story.json(&["list", "--checkpoints", "-o", "json"]);
    let mut expected = vec![(last_snapshot_time().to_string(), "snapshot".to_string())];
    for i in (1..=5).rev() {
        expected.push((checkpoint_time(i).to_string(), "checkpoint".to_string()));
    }
    expected.push((at(Duration::zero()).to_string(), "snapshot".to_string()));
    assert_eq!(points(&listed), expected);
    let checkpoint = &listed[1];
    assert_eq!(checkpoint["layout"], "none", "{checkpoint:#}");
    // Each point names what changed since the one before: the config map, and the Secret
    // after an even change; the first snapshot names nothing (nothing to compare with),
    // and the last one nothing, as nothing changed after the last checkpoint.
    let changes: Vec<u64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["changes"].as_u64().unwrap())
        .collect();
    assert_eq!(changes, [0, 1, 2, 1, 2, 1, 0], "{listed:#}");
    let output = story.run(&["list", "--checkpoints"]);
    assert!(text(&output).contains("checkpoint, "), "{}", text(&output));

    // `diff` from a checkpoint (by name, or as a time) to a snapshot.
    let from = checkpoint_time(2).to_string();
    let to = last_snapshot_time().to_string();
    for from in [from.as_str(), "2026-11-20T09:12:30Z"] {
        let diff = story.json(&["diff", from, &to, "-o", "json"]);
        assert_eq!(
            (&diff["from_point"], &diff["to_point"]),
            (&json!("checkpoint"), &json!("snapshot"))
        );
        let changed: Vec<&Value> = diff["changed"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["namespace"] == NAMESPACE)
            .collect();
        assert_eq!(changed.len(), 2, "{diff:#}");
        assert_no_secret(&diff.to_string());
    }
    let output = story.run(&["diff", "26-11-20_09-12-00", &to]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("RFC 3339"), "{}", text(&output));

    // Checkpoints are never exported: what a snapshot run would finish is the snapshots.
    let store = story.store("reader").await;
    assert_eq!(
        kube_autosave::job::unexported(&store).await.unwrap(),
        [at(Duration::zero()), last_snapshot_time()]
    );

    // `verify --all` reads the checkpoints too.
    let verified = story.json(&["verify", "--all", "-o", "json"]);
    assert_eq!(verified["ok"], true, "{verified:#}");
    assert_eq!(verified["checkpoints"].as_array().unwrap().len(), 5);
    assert_eq!(verified["snapshots"].as_array().unwrap().len(), 2);

    // A damaged checkpoint root is left out of a history, which goes on without it.
    let damaged = kube_autosave::store::RemoteFile::Checkpoint(&checkpoint_time(3)).key();
    store
        .backend()
        .put(&damaged, Bytes::from_static(b"not a manifest"))
        .await
        .unwrap();
    let history = story.json(&["history", "cm", "shop/flags", "-o", "json"]);
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 5, "{history:#}");
    assert_eq!(
        history["unreadable"][0]["time"],
        checkpoint_time(3).to_string()
    );
    assert_eq!(versions[3]["time"], checkpoint_time(4).to_string());
    assert_eq!(versions[3]["ops"][0]["from"], "2", "{history:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_at_a_time_between_two_changes_restores_the_state_between_them() {
    let story = Story::tell().await;
    for (when, version) in [
        // Between the second change's checkpoint (09:10) and the third change.
        ("2026-11-20T09:12:00Z", 2),
        // The same instant with an offset, and in the snapshot-name format.
        ("2026-11-20T10:12:00+01:00", 2),
        ("26-11-20_09-25-00", 5),
    ] {
        let fresh = Cluster::start(0, 1).await;
        let kubeconfig = fresh.kubeconfig.display().to_string();
        let output = story.run(&[
            "restore",
            "--at",
            when,
            "-n",
            NAMESPACE,
            "--kubeconfig",
            &kubeconfig,
        ]);
        assert_eq!(output.status.code(), Some(0), "{when}: {}", text(&output));
        let chosen = if version == 5 {
            checkpoint_time(5)
        } else {
            checkpoint_time(2)
        };
        assert!(
            text(&output).contains(&format!("point: checkpoint {chosen}")),
            "{when}: {}",
            text(&output)
        );
        assert_no_secret(&text(&output));
        let objects = fresh.sim.objects();
        let flags = objects
            .iter()
            .find(|k| k.resource == "configmaps" && k.name == "flags")
            .unwrap_or_else(|| panic!("{when}: no config map restored"));
        let restored = fresh.sim.object(flags).unwrap();
        assert_eq!(restored["data"]["version"], version.to_string(), "{when}");
        let db = objects
            .iter()
            .find(|k| k.resource == "secrets" && k.name == "db")
            .unwrap();
        let secret = fresh.sim.object(db).unwrap();
        let expected = base64(&password(version - version % 2));
        assert_eq!(secret["data"]["password"], expected, "{when}");
    }

    // Older than every point: bad input, nothing restored.
    let fresh = Cluster::start(0, 1).await;
    let output = story.run(&[
        "restore",
        "--at",
        "2026-11-20T08:59:59Z",
        "--kubeconfig",
        &fresh.kubeconfig.display().to_string(),
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("is as old as"), "{}", text(&output));
    let output = story.run(&["restore", "--at", "last tuesday"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_removes_old_checkpoints_and_prune_keeps_what_the_remaining_points_need() {
    let story = Story::tell().await;
    // Eight days after the morning snapshot, a cut 7d23h45m back falls at 09:15: the
    // checkpoints of 09:05 and 09:10 go, those of 09:15 and later stay.
    let output = story.run(&[
        "forget",
        "--keep-checkpoints",
        "7d23h45m",
        "--prune",
        "--max-unused",
        "0",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        text(&output).contains("checkpoints: 3 kept, 2 forgotten"),
        "{}",
        text(&output)
    );
    let store = story.store("reader").await;
    assert_eq!(
        Manifest::list_checkpoints(&store).await.unwrap(),
        (3..=5).map(checkpoint_time).collect::<Vec<_>>()
    );
    assert_eq!(Manifest::list(&store).await.unwrap().len(), 2);

    let verified = story.json(&["verify", "--all", "-o", "json"]);
    assert_eq!(verified["ok"], true, "{verified:#}");
    let history = story.json(&["history", "cm", "shop/flags", "-o", "json"]);
    let versions: Vec<&Value> = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| &v["time"])
        .collect();
    let expected: Vec<String> = [at(Duration::zero())]
        .into_iter()
        .chain((3..=5).map(checkpoint_time))
        .map(|t| t.to_string())
        .collect();
    assert_eq!(
        versions,
        expected
            .iter()
            .map(|t| json!(t))
            .collect::<Vec<_>>()
            .iter()
            .collect::<Vec<_>>()
    );

    // The default keeps a week: eight days later, the rest go too; the snapshots stay.
    let output = story.run(&["forget", "--keep-checkpoints", "7d", "--prune"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(Manifest::list_checkpoints(&store).await.unwrap().is_empty());
    assert_eq!(Manifest::list(&store).await.unwrap().len(), 2);
    let verified = story.json(&["verify", "--all", "-o", "json"]);
    assert_eq!(verified["ok"], true, "{verified:#}");
}
