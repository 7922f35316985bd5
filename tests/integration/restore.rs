//! Restore, as an operator uses it after losing a cluster: snapshot cluster A, restore into
//! an empty cluster B, snapshot B, and find the same objects with the same sanitized content
//! — from the store's manifest or from the plain layout alone. The simulated API server
//! records the order of creates, so the restore order is checked where it is observed.

use std::collections::{BTreeMap, BTreeSet};

use kube_autosave::export::ExportOptions;
use kube_autosave::inspect::diff::json_diff;
use kube_autosave::job::{JobProgress, JobSettings, open_backend, run_job};
use kube_autosave::kube::Api;
use kube_autosave::repo::Manifest;
use kube_autosave::restore::{
    Existing, Filters, OnDamage, Plan, RestoreOptions, RestoreReport, execute, order, source,
};
use kube_autosave::snapshot::SnapshotOptions;
use kube_autosave::store::{BackendExt, ObjectId, Store, StoreConfig};
use kube_sim::SimConfig;
use serde_json::{Value, json};

use crate::support;
use crate::support::cluster::{Cluster, quick_retries};
use crate::support::s3_server::S3Server;

/// (qualified resource, namespace, name)
type Key = (String, Option<String>, String);

struct World {
    s3: S3Server,
    cache: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        World {
            s3: S3Server::start(),
            cache: tempfile::tempdir().unwrap(),
        }
    }

    fn settings(&self, cluster: &Cluster, name: &str) -> JobSettings {
        JobSettings {
            destination: "s3://backups/team".parse().unwrap(),
            cluster_name: name.to_string(),
            s3: self.s3.options(),
            cache_dir: self.cache.path().join(name),
            cluster: cluster.options(),
            snapshot: SnapshotOptions {
                cluster_name: name.to_string(),
                retry: quick_retries(),
                ..SnapshotOptions::default()
            },
            store: StoreConfig::default(),
            export: ExportOptions::default(),
            locks: Default::default(),
        }
    }

    /// Takes a snapshot of `cluster` under the cluster name `name`; returns its manifest
    /// and the store it is in.
    async fn snapshot(&self, cluster: &Cluster, name: &str) -> (Manifest, Store) {
        let settings = self.settings(cluster, name);
        let backend = open_backend(&settings.destination, name, &settings.s3)
            .await
            .unwrap();
        let report = run_job(&settings, backend.clone(), JobProgress::default())
            .await
            .expect("snapshot job");
        let store = Store::open(
            backend,
            &settings.cache_dir.join("reader"),
            StoreConfig::default(),
        )
        .await
        .unwrap();
        (report.manifest, store)
    }
}

async fn empty_cluster() -> Cluster {
    Cluster::start_with(SimConfig {
        empty: true,
        ..SimConfig::default()
    })
    .await
}

/// Every object of a snapshot with its content.
async fn contents(manifest: &Manifest, store: &Store) -> BTreeMap<Key, (String, Value)> {
    support::snapshot_contents(manifest, store)
        .await
        .into_iter()
        .map(|(rt, o, value)| {
            let key = (rt.qualified_name(), o.namespace.clone(), o.name.clone());
            (key, (rt.group.clone(), value))
        })
        .collect()
}

fn kind_of(value: &Value) -> &str {
    value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Snapshot B must hold exactly what was restored from A (A minus what is never restored),
/// with equal content.
async fn assert_same_objects(a: (&Manifest, &Store), b: (&Manifest, &Store)) {
    let before = contents(a.0, a.1).await;
    let after = contents(b.0, b.1).await;
    let mut expected = BTreeMap::new();
    let mut never = BTreeSet::new();
    for (key, (group, value)) in before {
        // The metrics API reports what runs; it is generated in both clusters.
        if group == "metrics.k8s.io" {
            continue;
        }
        match order::never_restored(&group, kind_of(&value), &value) {
            Some(_) => {
                never.insert(kind_of(&value).to_string());
            }
            None => {
                expected.insert(key, value);
            }
        }
    }
    // What is left out is only what a fresh cluster makes by itself.
    for kind in &never {
        assert!(
            [
                "Node",
                "APIService",
                "ServiceAccount",
                "ConfigMap",
                "ControllerRevision"
            ]
            .iter()
            .chain(&crate::support::NODE_AND_CONTROLLER_BOUND)
            .any(|k| k == kind),
            "{kind} objects were left out of the restore"
        );
    }
    let actual: BTreeMap<Key, Value> = after
        .into_iter()
        .filter(|(_, (group, _))| group != "metrics.k8s.io")
        .map(|(k, (_, v))| (k, v))
        .collect();
    let missing: Vec<&Key> = expected
        .keys()
        .filter(|k| !actual.contains_key(*k))
        .collect();
    let extra: Vec<&Key> = actual
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    assert!(missing.is_empty(), "not restored: {missing:?}");
    assert!(extra.is_empty(), "in B but not in A: {extra:?}");
    let mut differing = Vec::new();
    for (key, value) in &expected {
        if &actual[key] != value {
            let mut ops = Vec::new();
            json_diff(value, &actual[key], &mut String::new(), &mut ops);
            differing.push((key.clone(), ops));
        }
    }
    assert!(
        differing.is_empty(),
        "{} objects differ, e.g. {:?}",
        differing.len(),
        &differing[..differing.len().min(3)]
    );
    assert!(
        expected.keys().any(|k| k.0 == "widgets.example.com"),
        "the test cluster has custom resources"
    );
    assert!(
        expected
            .keys()
            .any(|k| k.0 == "customresourcedefinitions.apiextensions.k8s.io")
    );
}

fn everything() -> Filters {
    Filters {
        system_namespaces: true,
        ..Filters::default()
    }
}

async fn restore(
    items: Vec<source::Item>,
    filters: &Filters,
    target: &Cluster,
    existing: Existing,
) -> (Plan, RestoreReport) {
    let plan = Plan::new(items, filters);
    let options = RestoreOptions {
        existing,
        crd_timeout: std::time::Duration::from_secs(10),
        ..RestoreOptions::default()
    };
    let report = execute(&target.api().await, &plan, &options, &|_| {})
        .await
        .expect("restore");
    (plan, report)
}

async fn items_from_manifest(
    store: &Store,
    manifest: &Manifest,
    filters: &Filters,
) -> Vec<source::Item> {
    source::from_manifest(
        store,
        manifest,
        |rt, o| filters.wants_manifest_object(rt, o.namespace.as_deref(), &o.name),
        OnDamage::Fail,
        &kube_autosave::seal::Keyring::default(),
    )
    .await
    .unwrap()
    .items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_restored_into_an_empty_cluster_snapshots_the_same() {
    let world = World::new();
    let a = Cluster::start(1_500, 81).await;
    let b = empty_cluster().await;
    // A CRD takes a moment to be established, as on a real server.
    b.sim
        .set_crd_establish_delay(std::time::Duration::from_millis(300));
    let (manifest_a, store_a) = world.snapshot(&a, "a").await;

    let filters = everything();
    let items = items_from_manifest(&store_a, &manifest_a, &filters).await;
    let (plan, report) = restore(items, &filters, &b, Existing::Skip).await;
    assert!(
        report.failed.is_empty(),
        "failed: {:?}",
        &report.failed[..report.failed.len().min(5)]
    );
    assert!(report.crds_not_established.is_empty());
    // Only the namespaces a fresh cluster has exist already.
    assert_eq!(
        report.skipped,
        [
            "Namespace default",
            "Namespace kube-node-lease",
            "Namespace kube-public",
            "Namespace kube-system"
        ]
    );
    assert_eq!(report.created as usize, plan.objects.len() - 4);

    let (manifest_b, store_b) = world.snapshot(&b, "b").await;
    assert_same_objects((&manifest_a, &store_a), (&manifest_b, &store_b)).await;

    // The order the server saw: every create's step is at or after the previous one's;
    // the CRD before its custom resources, each namespace before its objects.
    let log = b.sim.create_log();
    assert_eq!(log.len() as u64, report.created);
    let steps: Vec<order::Step> = log
        .iter()
        .map(|k| order::step_of(&k.group, &k.kind, k.group == "example.com"))
        .collect();
    assert!(
        steps.windows(2).all(|w| w[0] <= w[1]),
        "creates out of order"
    );
    let position = |pred: &dyn Fn(&kube_sim::ObjectKey) -> bool| log.iter().position(pred);
    let crd = position(&|k| k.kind == "CustomResourceDefinition").expect("CRD created");
    let first_widget = position(&|k| k.group == "example.com").expect("widgets created");
    assert!(crd < first_widget);
    for (i, key) in log.iter().enumerate() {
        if let Some(ns) = &key.namespace
            && let Some(created) = position(&|k| k.kind == "Namespace" && &k.name == ns)
        {
            assert!(created < i, "{key:?} created before its namespace");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_from_the_plain_layout_alone_gives_the_same_cluster() {
    let world = World::new();
    let a = Cluster::start(1_200, 82).await;
    let b = empty_cluster().await;
    let (manifest_a, store_a) = world.snapshot(&a, "a").await;

    // Only the plain layout: a folder on disk, as an older dump script leaves it.
    let folder = tempfile::tempdir().unwrap();
    let backup = format!("backup/{}/", manifest_a.time);
    for meta in store_a.backend().list_all(&backup).await.unwrap() {
        let relative = meta.key.strip_prefix(&backup).unwrap();
        let path = folder.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, store_a.backend().get(&meta.key).await.unwrap()).unwrap();
    }
    let items = source::from_dir(
        folder.path(),
        OnDamage::Fail,
        &kube_autosave::seal::Keyring::default(),
    )
    .unwrap()
    .items;
    assert_eq!(items.len(), manifest_a.objects.len());
    let (_, report) = restore(items, &everything(), &b, Existing::Skip).await;
    assert!(
        report.failed.is_empty(),
        "failed: {:?}",
        &report.failed[..report.failed.len().min(5)]
    );

    let (manifest_b, store_b) = world.snapshot(&b, "b").await;
    assert_same_objects((&manifest_a, &store_a), (&manifest_b, &store_b)).await;

    // The same layout read through the destination gives the same objects.
    let through_backend = source::from_backend_layout(
        store_a.backend(),
        &manifest_a.time,
        OnDamage::Fail,
        &kube_autosave::seal::Keyring::default(),
    )
    .await
    .unwrap()
    .items;
    assert_eq!(through_backend.len(), manifest_a.objects.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_objects_are_skipped_and_reported_or_replaced_when_asked() {
    let world = World::new();
    let a = Cluster::start(1_000, 83).await;
    let b = empty_cluster().await;
    let (manifest_a, store_a) = world.snapshot(&a, "a").await;
    let api_b = b.api().await;

    // B has one namespace of A already, and one of its config maps was changed there.
    let namespace = manifest_a
        .objects
        .iter()
        .filter_map(|o| o.namespace.clone())
        .find(|ns| ns != "kube-system" && ns != "default" && ns.starts_with(char::is_alphabetic))
        .unwrap();
    let one = Filters {
        namespaces: vec![namespace.clone()],
        ..Filters::default()
    };
    let items = items_from_manifest(&store_a, &manifest_a, &one).await;
    let (first, report) = restore(items, &one, &b, Existing::Skip).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert!(report.created > 1);
    let configmap = first
        .objects
        .iter()
        .find(|p| p.item.kind == "ConfigMap")
        .expect("a config map in the namespace")
        .item
        .clone();
    let path = format!(
        "/api/v1/namespaces/{namespace}/configmaps/{}",
        configmap.name
    );
    let mut current: Value =
        serde_json::from_slice(&api_b.get_opt(&path).await.unwrap().unwrap()).unwrap();
    current["data"] = serde_json::json!({"changed": "in B"});
    api_b
        .put(&path, serde_json::to_vec(&current).unwrap().into())
        .await
        .unwrap();
    let data_of = |api: kube_autosave::kube::Api, path: String| async move {
        let v: Value = serde_json::from_slice(&api.get_opt(&path).await.unwrap().unwrap()).unwrap();
        v["data"].clone()
    };

    // Everything: the namespace's objects exist and are skipped, each reported.
    let filters = Filters::default();
    let items = items_from_manifest(&store_a, &manifest_a, &filters).await;
    let (plan, report) = restore(items.clone(), &filters, &b, Existing::Skip).await;
    assert!(
        report.failed.is_empty(),
        "{:?}",
        &report.failed[..report.failed.len().min(5)]
    );
    // ... and the system namespaces a fresh cluster has that are not left out by default.
    let mut expected_skipped: BTreeSet<String> =
        first.objects.iter().map(|p| p.item.describe()).collect();
    expected_skipped.extend([
        "Namespace kube-node-lease".into(),
        "Namespace kube-public".into(),
    ]);
    let skipped: BTreeSet<String> = report.skipped.iter().cloned().collect();
    assert_eq!(skipped, expected_skipped);
    assert_eq!(
        report.created as usize + report.skipped.len(),
        plan.objects.len()
    );
    assert_eq!(
        data_of(api_b.clone(), path.clone()).await,
        serde_json::json!({"changed": "in B"})
    );

    // --existing=update: every object exists now, and each is replaced by the backup's.
    let (plan, report) = restore(items, &filters, &b, Existing::Update).await;
    assert!(
        report.failed.is_empty(),
        "{:?}",
        &report.failed[..report.failed.len().min(5)]
    );
    assert_eq!(report.updated as usize, plan.objects.len());
    assert_eq!(report.created, 0);
    assert_eq!(
        data_of(api_b.clone(), path.clone()).await,
        configmap.value().unwrap()["data"]
    );
}

/// A CRD of namespaced `Gadget`s in `example.org`.
fn gadget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.org"},
        "spec": {
            "group": "example.org",
            "names": {"kind": "Gadget", "listKind": "GadgetList", "plural": "gadgets", "singular": "gadget"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
            }]
        }
    })
}

/// POSTs `object` to `collection`; returns what the server stored.
async fn create(api: &Api, collection: &str, object: Value) -> Value {
    let body = api
        .post(collection, serde_json::to_vec(&object).unwrap().into())
        .await
        .unwrap_or_else(|e| panic!("create in {collection}: {e}"));
    serde_json::from_slice(&body).unwrap()
}

async fn get(api: &Api, path: &str) -> Option<Value> {
    api.get_opt(path)
        .await
        .unwrap()
        .map(|b| serde_json::from_slice(&b).unwrap())
}

fn uid(object: &Value) -> String {
    object["metadata"]["uid"].as_str().unwrap().to_string()
}

fn owner(api_version: &str, kind: &str, of: &Value) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "name": of["metadata"]["name"], "uid": uid(of)})
}

fn config_map(name: &str, owners: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "ownerReferences": owners}, "data": {"k": name}})
}

/// Waits until the simulated server serves a CRD's group.
async fn established(api: &Api, name: &str) {
    for _ in 0..100 {
        let crd = get(
            api,
            &format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"),
        )
        .await;
        let ok = crd
            .as_ref()
            .and_then(|c| c.pointer("/status/conditions"))
            .is_some_and(|c| {
                c.as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["type"] == "Established" && c["status"] == "True")
            });
        if ok {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{name} not established");
}

/// The binary with `world`'s destination, as cluster `name`.
fn run_binary(world: &World, name: &str, args: &[&str]) -> std::process::Output {
    let dir = world.cache.path();
    let mut command = crate::support::binary(dir);
    crate::support::with_s3(&mut command, &world.s3)
        .args(["--to", "s3://backups/team", "--cluster-name", name])
        .args([
            "--cache-dir",
            &dir.join(format!("cli-{name}")).display().to_string(),
        ])
        .args(args);
    command.output().unwrap()
}

fn output_text(output: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_references_point_at_the_restored_owners_new_uids() {
    let world = World::new();
    let a = empty_cluster().await;
    // Another seed: the same creates in both clusters must not give the same uids.
    let b = Cluster::start_with(SimConfig {
        empty: true,
        seed: 4242,
        ..SimConfig::default()
    })
    .await;
    let (api_a, api_b) = (a.api().await, b.api().await);
    let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    create(&api_a, crds, gadget_crd()).await;
    established(&api_a, "gadgets.example.org").await;
    create(
        &api_a,
        "/api/v1/namespaces",
        json!({"metadata": {"name": "shop"}}),
    )
    .await;
    let cms = "/api/v1/namespaces/shop/configmaps";
    let gadget = create(
        &api_a,
        "/apis/example.org/v1/namespaces/shop/gadgets",
        json!({"apiVersion": "example.org/v1", "kind": "Gadget", "metadata": {"name": "g"}, "spec": {"size": 3}}),
    )
    .await;
    let parent = create(&api_a, cms, config_map("parent", vec![])).await;
    create(
        &api_a,
        cms,
        config_map(
            "child",
            vec![
                owner("example.org/v1", "Gadget", &gadget),
                owner("v1", "ConfigMap", &parent),
            ],
        ),
    )
    .await;
    let deployment = create(
        &api_a,
        "/apis/apps/v1/namespaces/shop/deployments",
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}),
    )
    .await;
    create(
        &api_a,
        "/api/v1/namespaces/shop/secrets",
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "web-config", "ownerReferences": [owner("apps/v1", "Deployment", &deployment)]},
            "data": {"k": "dg=="}}),
    )
    .await;
    // Owned by one object that never was in the backup, and one that exists only in B.
    let gone = json!({"metadata": {"name": "gone", "uid": "0a1b2c3d-0000-4000-8000-000000000001"}});
    let only_in_b =
        json!({"metadata": {"name": "only-in-b", "uid": "0a1b2c3d-0000-4000-8000-000000000002"}});
    create(
        &api_a,
        cms,
        config_map(
            "orphan",
            vec![
                owner("v1", "ConfigMap", &gone),
                owner("v1", "ConfigMap", &only_in_b),
            ],
        ),
    )
    .await;
    // In the backup and in B already (skipped): its dependent takes B's uid.
    let existing = create(&api_a, cms, config_map("existing", vec![])).await;
    create(
        &api_a,
        cms,
        config_map("of-existing", vec![owner("v1", "ConfigMap", &existing)]),
    )
    .await;
    // Two objects that own each other.
    let cycle_a = create(&api_a, cms, config_map("cycle-a", vec![])).await;
    let cycle_b = create(
        &api_a,
        cms,
        config_map("cycle-b", vec![owner("v1", "ConfigMap", &cycle_a)]),
    )
    .await;
    let mut cycle_a = get(&api_a, &format!("{cms}/cycle-a")).await.unwrap();
    cycle_a["metadata"]["ownerReferences"] = json!([owner("v1", "ConfigMap", &cycle_b)]);
    api_a
        .put(
            &format!("{cms}/cycle-a"),
            serde_json::to_vec(&cycle_a).unwrap().into(),
        )
        .await
        .unwrap();
    world.snapshot(&a, "a").await;

    create(
        &api_b,
        "/api/v1/namespaces",
        json!({"metadata": {"name": "shop"}}),
    )
    .await;
    create(&api_b, cms, config_map("only-in-b", vec![])).await;
    create(&api_b, cms, config_map("existing", vec![])).await;
    let kubeconfig = b.kubeconfig.display().to_string();

    // The dry run names the target, and the reference it will drop; it changes nothing.
    let before = b.sim.create_log().len();
    let output = run_binary(
        &world,
        "a",
        &[
            "restore",
            "latest",
            "--dry-run",
            "--kubeconfig",
            &kubeconfig,
        ],
    );
    let text = output_text(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout.lines().next(),
        Some(format!("target: {} (kubeconfig context kube-sim)", b.sim.url()).as_str()),
        "{text}"
    );
    assert!(
        stdout.contains(
            "owner reference dropped: ConfigMap shop/orphan -> ConfigMap shop/gone \
             (not in the backup and not in the target cluster)"
        ),
        "{text}"
    );
    assert!(stdout.contains("owner references dropped: 1 "), "{text}");
    assert!(
        stdout.contains("owner reference added after both exist: ConfigMap shop/cycle-a -> ConfigMap shop/cycle-b (the objects own each other (a cycle))"),
        "{text}"
    );
    assert_eq!(b.sim.create_log().len(), before);

    // The real thing, through the binary: the target first, then the restore.
    let output = run_binary(
        &world,
        "a",
        &["restore", "latest", "--kubeconfig", &kubeconfig],
    );
    let text = output_text(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with(&format!(
            "target: {} (kubeconfig context kube-sim)\n",
            b.sim.url()
        )),
        "{text}"
    );
    assert!(
        stdout.contains("0 failed, 0 left out as damaged, 1 owner references dropped"),
        "{text}"
    );

    // Every reference in B names its owner's uid in B.
    let in_b = |path: String| {
        let api = api_b.clone();
        async move {
            get(&api, &path)
                .await
                .unwrap_or_else(|| panic!("{path} not restored"))
        }
    };
    let gadget_b = in_b("/apis/example.org/v1/namespaces/shop/gadgets/g".into()).await;
    let refs_of = |o: &Value| -> Vec<(String, String)> {
        o["metadata"]["ownerReferences"]
            .as_array()
            .map(|refs| {
                refs.iter()
                    .map(|r| {
                        (
                            r["name"].as_str().unwrap().to_string(),
                            r["uid"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let child = in_b(format!("{cms}/child")).await;
    let parent_b = in_b(format!("{cms}/parent")).await;
    assert_ne!(uid(&gadget_b), uid(&gadget));
    assert_eq!(
        refs_of(&child),
        [
            ("g".to_string(), uid(&gadget_b)),
            ("parent".to_string(), uid(&parent_b))
        ]
    );
    let deployment_b = in_b("/apis/apps/v1/namespaces/shop/deployments/web".into()).await;
    let secret = in_b("/api/v1/namespaces/shop/secrets/web-config".into()).await;
    assert_ne!(uid(&deployment_b), uid(&deployment));
    assert_eq!(refs_of(&secret), [("web".to_string(), uid(&deployment_b))]);
    let only_in_b = in_b(format!("{cms}/only-in-b")).await;
    assert_eq!(
        refs_of(&in_b(format!("{cms}/orphan")).await),
        [("only-in-b".to_string(), uid(&only_in_b))]
    );
    let existing_b = in_b(format!("{cms}/existing")).await;
    assert_eq!(
        refs_of(&in_b(format!("{cms}/of-existing")).await),
        [("existing".to_string(), uid(&existing_b))]
    );
    let (cycle_a_b, cycle_b_b) = (
        in_b(format!("{cms}/cycle-a")).await,
        in_b(format!("{cms}/cycle-b")).await,
    );
    assert_eq!(
        refs_of(&cycle_a_b),
        [("cycle-b".to_string(), uid(&cycle_b_b))]
    );
    assert_eq!(
        refs_of(&cycle_b_b),
        [("cycle-a".to_string(), uid(&cycle_a_b))]
    );

    // Owners were created before their dependents, across steps too.
    let log = b.sim.create_log();
    let position = |kind: &str, name: &str| {
        log.iter()
            .position(|k| k.kind == kind && k.name == name)
            .unwrap_or_else(|| panic!("{kind} {name} not created"))
    };
    assert!(position("Gadget", "g") < position("ConfigMap", "child"));
    assert!(position("ConfigMap", "parent") < position("ConfigMap", "child"));
    assert!(position("Deployment", "web") < position("Secret", "web-config"));
    assert!(position("ConfigMap", "cycle-a") < position("ConfigMap", "cycle-b"));
}

/// Writes a plain-layout file: `relative` holds a List of `items`.
fn write_list(dir: &std::path::Path, relative: &str, items: Vec<Value>) {
    let path = dir.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    std::fs::write(path, serde_json::to_vec_pretty(&list).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_webhooks_and_policies_are_created_after_everything_else() {
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path();
    let admission = |kind: &str, name: &str, extra: Value| {
        let mut object = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": {"name": name}});
        object
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        object
    };
    let webhook = json!({"webhooks": [{"name": "check.example.org", "admissionReviewVersions": ["v1"],
        "sideEffects": "None", "clientConfig": {"service": {"namespace": "shop", "name": "checker"}}}]});
    write_list(
        dir,
        "validatingwebhookconfigurations.json",
        vec![admission(
            "ValidatingWebhookConfiguration",
            "check",
            webhook.clone(),
        )],
    );
    write_list(
        dir,
        "mutatingwebhookconfigurations.json",
        vec![admission("MutatingWebhookConfiguration", "mutate", webhook)],
    );
    write_list(
        dir,
        "validatingadmissionpolicies.json",
        vec![admission(
            "ValidatingAdmissionPolicy",
            "policy",
            json!({"spec": {"validations": [{"expression": "true"}]}}),
        )],
    );
    write_list(
        dir,
        "validatingadmissionpolicybindings.json",
        vec![admission(
            "ValidatingAdmissionPolicyBinding",
            "binding",
            json!({"spec": {"policyName": "policy", "validationActions": ["Deny"]}}),
        )],
    );
    write_list(dir, "customresourcedefinitions.json", vec![gadget_crd()]);
    write_list(
        dir,
        "namespaces.json",
        vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})],
    );
    write_list(
        dir,
        "shop/configmaps.json",
        vec![config_map("settings", vec![])],
    );
    write_list(
        dir,
        "shop/services.json",
        vec![json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "checker"}, "spec": {"ports": [{"port": 443}]}})],
    );
    write_list(
        dir,
        "shop/gadgets.json",
        vec![json!({"apiVersion": "example.org/v1", "kind": "Gadget", "metadata": {"name": "g"}})],
    );

    let b = empty_cluster().await;
    let items = source::from_dir(
        dir,
        OnDamage::Fail,
        &kube_autosave::seal::Keyring::default(),
    )
    .unwrap()
    .items;
    let (plan, report) = restore(items, &Filters::default(), &b, Existing::Skip).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.created as usize, plan.objects.len());
    let log = b.sim.create_log();
    assert_eq!(log.len(), 9);
    let is_admission = |k: &kube_sim::ObjectKey| k.group == "admissionregistration.k8s.io";
    let first_admission = log.iter().position(is_admission).unwrap();
    assert_eq!(first_admission, 5, "{log:#?}");
    assert!(log[first_admission..].iter().all(is_admission), "{log:#?}");
    assert_eq!(
        log[first_admission - 1].kind,
        "Gadget",
        "custom resources before, {log:#?}"
    );
}

/// An older dump script's folder: it kept what controllers own, events, and `status`.
fn old_dump(dir: &std::path::Path) {
    let uid = |n: u8| format!("6f1c0000-0000-4000-8000-0000000000{n:02}");
    let meta = |name: &str, n: u8, owner: Option<(&str, &str, &str, u8)>| {
        let mut m = json!({"name": name, "namespace": "legacy", "uid": uid(n), "resourceVersion": "12345",
            "creationTimestamp": "2023-01-01T00:00:00Z"});
        if let Some((api, kind, owner_name, owner_uid)) = owner {
            m["ownerReferences"] = json!([{"apiVersion": api, "kind": kind, "name": owner_name,
                "uid": uid(owner_uid), "controller": true, "blockOwnerDeletion": true}]);
        }
        m
    };
    let pod_spec = json!({"containers": [{"name": "web", "image": "nginx"}]});
    write_list(
        dir,
        "namespaces.json",
        vec![json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "legacy", "uid": uid(1)}, "status": {"phase": "Active"}})],
    );
    write_list(
        dir,
        "legacy/deployments.json",
        vec![json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": meta("web", 2, None),
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec}},
        "status": {"replicas": 1, "readyReplicas": 1}})],
    );
    write_list(
        dir,
        "legacy/replicasets.json",
        vec![json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": meta("web-5d8f", 3, Some(("apps/v1", "Deployment", "web", 2))),
        "spec": {"selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d8f"}},
            "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": "5d8f"}}, "spec": pod_spec}},
        "status": {"replicas": 1}})],
    );
    write_list(
        dir,
        "legacy/pods.json",
        vec![json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": meta("web-5d8f-x2x9", 4, Some(("apps/v1", "ReplicaSet", "web-5d8f", 3))),
        "spec": {"containers": [{"name": "web", "image": "nginx"}], "nodeName": "node-1"},
        "status": {"phase": "Running", "podIP": "10.1.2.3"}})],
    );
    let job_spec = json!({"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "n", "image": "busybox"}]}}});
    write_list(
        dir,
        "legacy/cronjobs.json",
        vec![json!({"apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": meta("nightly", 5, None),
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": job_spec}},
        "status": {"lastScheduleTime": "2023-01-01T03:00:00Z"}})],
    );
    let mut job = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": meta("nightly-27890", 6, Some(("batch/v1", "CronJob", "nightly", 5))),
        "spec": job_spec, "status": {"succeeded": 1}});
    job["metadata"]["labels"] = json!({"batch.kubernetes.io/controller-uid": uid(6)});
    job["spec"]["selector"] =
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid(6)}});
    write_list(dir, "legacy/jobs.json", vec![job]);
    write_list(
        dir,
        "legacy/events.json",
        vec![json!({"apiVersion": "v1", "kind": "Event",
        "metadata": meta("web.17a", 7, None), "involvedObject": {"kind": "Pod", "name": "web-5d8f-x2x9"},
        "reason": "Started"})],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_dump_restores_without_what_controllers_recreate_unless_asked() {
    let folder = tempfile::tempdir().unwrap();
    old_dump(folder.path());
    let items = || {
        source::from_dir(
            folder.path(),
            OnDamage::Fail,
            &kube_autosave::seal::Keyring::default(),
        )
        .unwrap()
        .items
    };
    let plan = Plan::new(items(), &Filters::default());
    let planned: Vec<String> = plan.objects.iter().map(|p| p.item.describe()).collect();
    assert_eq!(
        planned,
        [
            "Namespace legacy",
            "Deployment legacy/web",
            "CronJob legacy/nightly"
        ]
    );
    assert_eq!(
        plan.left_out,
        BTreeMap::from([
            (kube_autosave::restore::CONTROLLER_OWNED.to_string(), 3),
            ("events are history".to_string(), 1),
        ])
    );

    // The dry run of the binary counts them too.
    let b = empty_cluster().await;
    let kubeconfig = b.kubeconfig.display().to_string();
    let dir = folder.path().display().to_string();
    let world = World::new();
    let output = run_binary(
        &world,
        "x",
        &[
            "restore",
            "--from-layout",
            &dir,
            "--dry-run",
            "--kubeconfig",
            &kubeconfig,
        ],
    );
    let text = output_text(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("left out: 3 (owned by a controller that recreates it)"),
        "{text}"
    );
    assert!(text.contains("left out: 1 (events are history)"), "{text}");
    assert!(b.sim.create_log().is_empty());

    // Restored: only what no controller recreates.
    let output = run_binary(
        &world,
        "x",
        &[
            "restore",
            "--from-layout",
            &dir,
            "--kubeconfig",
            &kubeconfig,
        ],
    );
    let text = output_text(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    let created: BTreeSet<(String, String)> = b
        .sim
        .create_log()
        .iter()
        .map(|k| (k.kind.clone(), k.name.clone()))
        .collect();
    assert_eq!(b.sim.create_log().len(), 3);
    assert_eq!(
        created,
        BTreeSet::from([
            ("Namespace".to_string(), "legacy".to_string()),
            ("CronJob".to_string(), "nightly".to_string()),
            ("Deployment".to_string(), "web".to_string()),
        ])
    );

    // With --keep-controller-owned: everything but the event, each owner first, each
    // reference to its owner's new uid.
    let c = empty_cluster().await;
    let filters = Filters {
        keep_controller_owned: true,
        ..Filters::default()
    };
    let (_, report) = restore(items(), &filters, &c, Existing::Skip).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert!(
        report.owners_dropped.is_empty(),
        "{:?}",
        report.owners_dropped
    );
    assert_eq!(report.created, 6);
    let log = c.sim.create_log();
    let position = |kind: &str| log.iter().position(|k| k.kind == kind).unwrap();
    assert!(position("Deployment") < position("ReplicaSet"));
    assert!(position("ReplicaSet") < position("Pod"));
    assert!(position("CronJob") < position("Job"));
    let api = c.api().await;
    let ns = "/namespaces/legacy";
    for (dependent, owner) in [
        (
            format!("/apis/apps/v1{ns}/replicasets/web-5d8f"),
            format!("/apis/apps/v1{ns}/deployments/web"),
        ),
        (
            format!("/api/v1{ns}/pods/web-5d8f-x2x9"),
            format!("/apis/apps/v1{ns}/replicasets/web-5d8f"),
        ),
        (
            format!("/apis/batch/v1{ns}/jobs/nightly-27890"),
            format!("/apis/batch/v1{ns}/cronjobs/nightly"),
        ),
    ] {
        let dependent = get(&api, &dependent).await.unwrap();
        let owner = get(&api, &owner).await.unwrap();
        let reference = &dependent["metadata"]["ownerReferences"][0];
        assert_eq!(
            reference["uid"].as_str(),
            Some(uid(&owner).as_str()),
            "{dependent}"
        );
        assert_eq!(reference["controller"], true);
        assert!(!uid(&owner).starts_with("6f1c0000"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_objects_stop_a_restore_or_with_skip_damaged_are_named_and_left_out() {
    let world = World::new();
    let a = Cluster::start(600, 84).await;
    // Small packs, so that damage to one pack leaves others intact.
    let settings = JobSettings {
        store: StoreConfig {
            pack_size: 64 * 1024,
            ..StoreConfig::default()
        },
        ..world.settings(&a, "a")
    };
    let backend = open_backend(&settings.destination, "a", &settings.s3)
        .await
        .unwrap();
    let manifest = run_job(&settings, backend.clone(), JobProgress::default())
        .await
        .expect("snapshot job")
        .manifest;
    let reader = |name: &str| {
        let (backend, dir) = (backend.clone(), world.cache.path().join(name));
        async move {
            Store::open(backend, &dir, StoreConfig::default())
                .await
                .unwrap()
        }
    };
    let store = reader("reader").await;
    let filters = Filters::default();
    let wanted = |rt: &kube_autosave::kube::ResourceType,
                  o: &kube_autosave::repo::ManifestObject| {
        filters.wants_manifest_object(rt, o.namespace.as_deref(), &o.name)
    };
    let chosen: Vec<&kube_autosave::repo::ManifestObject> = manifest
        .objects
        .iter()
        .filter(|o| wanted(manifest.resource_of(o), o))
        .collect();
    let mut by_pack: BTreeMap<kube_autosave::store::PackId, Vec<ObjectId>> = BTreeMap::new();
    // Packs that hold a namespace, a definition or a class pods name are spared: without
    // them, the objects that need them are refused, which is another story.
    let mut spared = BTreeSet::new();
    for o in &chosen {
        let pack = store.location(&o.id).await.unwrap().pack;
        by_pack.entry(pack).or_default().push(o.id);
        let kind = manifest.resource_of(o).kind.as_str();
        if matches!(
            kind,
            "Namespace" | "CustomResourceDefinition" | "PriorityClass" | "RuntimeClass"
        ) {
            spared.insert(pack);
        }
    }
    assert!(by_pack.len() > 3, "{} packs", by_pack.len());
    let mut packs = by_pack
        .iter()
        .filter(|(pack, ids)| ids.len() > 4 && !spared.contains(*pack));
    let (gone, gone_ids) = packs.next().unwrap();
    let (flipped, flipped_ids) = packs.next().unwrap();
    // One pack deleted, one byte flipped in another: the S3 server's files are its bucket.
    let files = world.s3.bucket_dir().join("team/a");
    std::fs::remove_file(files.join(kube_autosave::store::RemoteFile::Pack(gone).key())).unwrap();
    let location = store.location(&flipped_ids[0]).await.unwrap();
    let path = files.join(kube_autosave::store::RemoteFile::Pack(flipped).key());
    let mut data = std::fs::read(&path).unwrap();
    data[(location.offset + u64::from(location.length) / 2) as usize] ^= 0x01;
    std::fs::write(&path, data).unwrap();

    // Without the flag: the error names a damaged object and the way out.
    let fresh = reader("fresh").await;
    let err = source::from_manifest(
        &fresh,
        &manifest,
        wanted,
        OnDamage::Fail,
        &kube_autosave::seal::Keyring::default(),
    )
    .await
    .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("--skip-damaged"), "{message}");
    let named = chosen
        .iter()
        .filter(|o| gone_ids.contains(&o.id) || flipped_ids.contains(&o.id))
        .any(|o| {
            message.starts_with(&format!(
                "{} {}",
                manifest.resource_of(o).kind,
                o.namespace
                    .as_ref()
                    .map_or(o.name.clone(), |ns| format!("{ns}/{}", o.name))
            ))
        });
    assert!(named, "{message}");

    // With it: everything else is read; each damaged object is named.
    let loaded = source::from_manifest(
        &fresh,
        &manifest,
        wanted,
        OnDamage::Skip,
        &kube_autosave::seal::Keyring::default(),
    )
    .await
    .unwrap();
    assert_eq!(loaded.items.len() + loaded.damaged.len(), chosen.len());
    let describe = |o: &kube_autosave::repo::ManifestObject| match &o.namespace {
        Some(ns) => format!("{} {ns}/{}", manifest.resource_of(o).kind, o.name),
        None => format!("{} {}", manifest.resource_of(o).kind, o.name),
    };
    let damaged: BTreeSet<String> = loaded.damaged.iter().map(|d| d.object.clone()).collect();
    let of = |ids: &[ObjectId]| -> BTreeSet<String> {
        chosen
            .iter()
            .filter(|o| ids.contains(&o.id))
            .map(|o| describe(o))
            .collect()
    };
    // Every object of the deleted pack; some, not all, of the flipped one (its other chunks
    // are intact); nothing else.
    assert!(of(gone_ids).is_subset(&damaged));
    let flipped_damaged = damaged.intersection(&of(flipped_ids)).count();
    assert!(flipped_damaged >= 1, "{damaged:?}");
    assert_eq!(damaged.len(), of(gone_ids).len() + flipped_damaged);
    for d in &loaded.damaged {
        assert!(
            d.reason.contains("is missing") || d.reason.contains("is corrupt"),
            "{d:?}"
        );
    }

    // The binary: exit 1 without the flag, exit 3 with it, the damaged named in the output;
    // the damaged objects are not in the target, the others are.
    let b = empty_cluster().await;
    let kubeconfig = b.kubeconfig.display().to_string();
    let output = run_binary(
        &world,
        "a",
        &["restore", "latest", "--kubeconfig", &kubeconfig],
    );
    let text = output_text(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("--skip-damaged"), "{text}");
    assert!(b.sim.create_log().is_empty());
    let output = run_binary(
        &world,
        "a",
        &[
            "restore",
            "latest",
            "--skip-damaged",
            "--kubeconfig",
            &kubeconfig,
        ],
    );
    let text = output_text(&output);
    assert_eq!(output.status.code(), Some(3), "{text}");
    for d in &loaded.damaged {
        assert!(
            text.contains(&format!("left out, damaged: {} (", d.object)),
            "{text}"
        );
    }
    assert!(
        text.contains(&format!(
            "left out: {} (damaged in the backup)",
            damaged.len()
        )),
        "{text}"
    );
    assert!(text.contains(" 0 failed, "), "{text}");
    let created: BTreeSet<String> = b
        .sim
        .create_log()
        .iter()
        .map(|k| match &k.namespace {
            Some(ns) => format!("{} {ns}/{}", k.kind, k.name),
            None => format!("{} {}", k.kind, k.name),
        })
        .collect();
    assert!(created.is_disjoint(&damaged));
    assert!(created.len() > 100);
}
