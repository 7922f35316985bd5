//! The garbage collector: dangling owner references, cascades, orphaning deletes.

use std::time::Duration;

use kube_sim::{GcReport, ObjectKey, SimConfig, SimServer};
use serde_json::{Value, json};

use crate::common::*;

const DEAD_UID: &str = "0b5e4d6a-0000-4000-8000-00000000dead";

async fn empty() -> SimServer {
    start(SimConfig {
        empty: true,
        ..Default::default()
    })
    .await
}

fn configmap_key(name: &str) -> ObjectKey {
    ObjectKey {
        group: String::new(),
        version: "v1".into(),
        resource: "configmaps".into(),
        kind: "ConfigMap".into(),
        namespace: Some("default".into()),
        name: name.into(),
    }
}

fn owner_ref(api_version: &str, kind: &str, name: &str, uid: &str) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "name": name, "uid": uid})
}

/// Creates a config map in `default` with the given owner references; returns it.
async fn configmap(c: &kube::Client, name: &str, owners: Vec<Value>) -> Value {
    let mut meta = json!({"name": name});
    if !owners.is_empty() {
        meta["ownerReferences"] = Value::Array(owners);
    }
    let r = send(
        c,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        &[],
        Some(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": name}}),
        ),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

fn uid(v: &Value) -> &str {
    v["metadata"]["uid"].as_str().expect("uid")
}

async fn configmap_status(c: &kube::Client, name: &str) -> u16 {
    get(c, &format!("/api/v1/namespaces/default/configmaps/{name}"))
        .await
        .status
}

#[tokio::test]
async fn dangling_references_are_collected_and_live_ones_kept() {
    let server = empty().await;
    let c = client(&server).await;
    let owner = configmap(&c, "owner", vec![]).await;
    let owner_uid = uid(&owner).to_string();
    let kube_system = get_json(&c, "/api/v1/namespaces/kube-system").await;
    configmap(
        &c,
        "kept",
        vec![owner_ref("v1", "ConfigMap", "owner", &owner_uid)],
    )
    .await;
    // The owner's name with another uid: an older object of the same name.
    configmap(
        &c,
        "old-uid",
        vec![owner_ref("v1", "ConfigMap", "owner", DEAD_UID)],
    )
    .await;
    configmap(
        &c,
        "no-owner",
        vec![owner_ref("v1", "ConfigMap", "gone", DEAD_UID)],
    )
    .await;
    let mixed = configmap(
        &c,
        "mixed",
        vec![
            owner_ref("v1", "ConfigMap", "owner", &owner_uid),
            owner_ref("apps/v1", "Deployment", "gone", DEAD_UID),
        ],
    )
    .await;
    // A cluster-scoped owner is looked up at the cluster scope.
    configmap(
        &c,
        "namespace-owned",
        vec![owner_ref(
            "v1",
            "Namespace",
            "kube-system",
            uid(&kube_system),
        )],
    )
    .await;
    // A kind the server does not serve: the collector cannot decide, and leaves it.
    configmap(
        &c,
        "unknown-kind",
        vec![owner_ref("example.org/v1", "Gadget", "g", DEAD_UID)],
    )
    .await;

    let report = server.collect_garbage();
    assert_eq!(
        report,
        GcReport {
            deleted: vec![configmap_key("no-owner"), configmap_key("old-uid")],
            orphan_refs_removed: vec![configmap_key("mixed")],
        }
    );
    for (name, status) in [
        ("owner", 200),
        ("kept", 200),
        ("mixed", 200),
        ("namespace-owned", 200),
        ("unknown-kind", 200),
        ("old-uid", 404),
        ("no-owner", 404),
    ] {
        assert_eq!(configmap_status(&c, name).await, status, "{name}");
    }
    let after = get_json(&c, "/api/v1/namespaces/default/configmaps/mixed").await;
    assert_eq!(
        after["metadata"]["ownerReferences"],
        json!([owner_ref("v1", "ConfigMap", "owner", &owner_uid)])
    );
    let before_rv: u64 = mixed["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let after_rv: u64 = after["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(after_rv > before_rv, "{before_rv} -> {after_rv}");
    assert!(
        after["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["manager"] == "kube-controller-manager"),
        "{after}"
    );
    // A fixed point: nothing is left to do.
    assert_eq!(server.collect_garbage(), GcReport::default());
}

#[tokio::test]
async fn deleting_an_owner_cascades_unless_dependents_are_orphaned() {
    let server = empty().await;
    let c = client(&server).await;
    let root = configmap(&c, "root", vec![]).await;
    let child = configmap(
        &c,
        "child",
        vec![owner_ref("v1", "ConfigMap", "root", uid(&root))],
    )
    .await;
    configmap(
        &c,
        "grandchild",
        vec![owner_ref("v1", "ConfigMap", "child", uid(&child))],
    )
    .await;
    let r = send(
        &c,
        "POST",
        "/api/v1/namespaces/default/secrets",
        &[],
        Some(json!({"metadata": {"name": "secret-child", "ownerReferences": [owner_ref("v1", "ConfigMap", "root", uid(&root))]}})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    // Nothing dangles yet.
    assert_eq!(server.collect_garbage(), GcReport::default());

    let r = send(
        &c,
        "DELETE",
        "/api/v1/namespaces/default/configmaps/root",
        &[],
        Some(json!({"propagationPolicy": "Background"})),
    )
    .await;
    assert_eq!(r.status, 200);
    let report = server.collect_garbage();
    let names: Vec<&str> = report.deleted.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["child", "grandchild", "secret-child"], "{report:?}");
    assert!(report.orphan_refs_removed.is_empty());
    for name in ["child", "grandchild"] {
        assert_eq!(configmap_status(&c, name).await, 404, "{name}");
    }

    // Orphan: the dependents stay, without the reference.
    let parent = configmap(&c, "parent", vec![]).await;
    configmap(
        &c,
        "kid",
        vec![owner_ref("v1", "ConfigMap", "parent", uid(&parent))],
    )
    .await;
    let r = send(
        &c,
        "DELETE",
        "/api/v1/namespaces/default/configmaps/parent",
        &[],
        Some(json!({"propagationPolicy": "Orphan"})),
    )
    .await;
    assert_eq!(r.status, 200);
    let kid = get_json(&c, "/api/v1/namespaces/default/configmaps/kid").await;
    assert!(kid["metadata"].get("ownerReferences").is_none(), "{kid}");
    assert_eq!(server.collect_garbage(), GcReport::default());

    // An unknown policy is refused as the server validates DeleteOptions.
    let r = send(
        &c,
        "DELETE",
        "/api/v1/namespaces/default/configmaps/kid?propagationPolicy=Later",
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["message"],
        r#"DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: "Later": supported values: "Foreground", "Background", "Orphan", "nil""#
    );
}

#[tokio::test]
async fn batch_v1_jobs_orphan_their_pods_by_default() {
    let server = empty().await;
    let c = client(&server).await;
    let job = json!({
        "metadata": {"name": "once"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}}},
    });
    let r = send(
        &c,
        "POST",
        "/apis/batch/v1/namespaces/default/jobs",
        &[],
        Some(job),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let job = r.json();
    let pod = json!({
        "metadata": {"name": "once-abcde", "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "once", "uid": uid(&job), "controller": true}]},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]},
    });
    let r = send(
        &c,
        "POST",
        "/api/v1/namespaces/default/pods",
        &[],
        Some(pod),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    // No propagation policy: batch/v1 Jobs orphan, as the real server keeps it.
    let r = send(
        &c,
        "DELETE",
        "/apis/batch/v1/namespaces/default/jobs/once",
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(server.collect_garbage(), GcReport::default());
    let pod = get_json(&c, "/api/v1/namespaces/default/pods/once-abcde").await;
    assert!(pod["metadata"].get("ownerReferences").is_none(), "{pod}");
}

#[tokio::test]
async fn the_generated_cluster_has_no_garbage() {
    let server = start_n(1000).await;
    let before = server.objects();
    let report = server.collect_garbage();
    assert_eq!(report, GcReport::default());
    assert_eq!(server.objects(), before);
}

#[tokio::test]
async fn the_background_collector_runs_until_the_server_stops() {
    let server = start(SimConfig {
        empty: true,
        garbage_collector: Some(Duration::from_millis(20)),
        ..Default::default()
    })
    .await;
    let c = client(&server).await;
    configmap(
        &c,
        "dangling",
        vec![owner_ref("v1", "ConfigMap", "gone", DEAD_UID)],
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while configmap_status(&c, "dangling").await != 404 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the background collector did not delete the dependent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
