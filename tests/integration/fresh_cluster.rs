//! What a fresh cluster makes of a snapshot, with the simulated API server enforcing the
//! real server's create rules and running its garbage collector:
//! - every plain-layout file is accepted by `kubectl create -f`, with the current kubectl and
//!   an old one (Debian's 1.20, which `.ci/run` unpacks and names in
//!   `KUBE_AUTOSAVE_TEST_KUBECTL`, a `:`-separated list of kubectl binaries);
//! - a cluster with an object of every listable kind restores into an empty one, leaving out
//!   exactly what the new cluster's nodes, drivers and controllers write for themselves, and
//!   nothing the restore created is deleted by the garbage collector; a second snapshot holds
//!   the same sanitized objects, kind by kind.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use kube_autosave::job::{JobProgress, JobSettings, open_backend, run_job};
use kube_autosave::repo::Manifest;
use kube_autosave::restore::source::OnDamage;
use kube_autosave::restore::{Existing, Filters, Plan, RestoreOptions, execute, source};
use kube_autosave::snapshot::{Rules, SnapshotOptions};
use kube_autosave::store::{Store, StoreConfig};
use kube_sim::SimConfig;
use serde_json::Value;

use crate::support::cluster::{Cluster, quick_retries};
use crate::support::{self, NODE_AND_CONTROLLER_BOUND};

/// Takes a snapshot of `cluster` into the local folder `destination`; returns its manifest
/// and a store to read it from.
async fn snapshot(cluster: &Cluster, destination: &Path, cache: &Path) -> (Manifest, Store) {
    let settings = JobSettings {
        destination: destination.display().to_string().parse().unwrap(),
        cluster_name: "prod".to_string(),
        s3: Default::default(),
        cache_dir: cache.to_path_buf(),
        cluster: cluster.options(),
        snapshot: SnapshotOptions {
            cluster_name: "prod".to_string(),
            retry: quick_retries(),
            ..SnapshotOptions::default()
        },
        store: StoreConfig::default(),
        export: Default::default(),
        locks: Default::default(),
    };
    let backend = open_backend(&settings.destination, "prod", &settings.s3)
        .await
        .unwrap();
    let report = run_job(&settings, backend.clone(), JobProgress::default())
        .await
        .expect("snapshot job");
    let store = Store::open(backend, &cache.join("reader"), StoreConfig::default())
        .await
        .unwrap();
    (report.manifest, store)
}

/// `kubectl create -f` of each file; the lines of every error the server answered, except
/// `AlreadyExists` (the namespaces every cluster has).
fn create_all(kubectl: &str, kubeconfig: &Path, home: &Path, files: &[PathBuf]) -> Vec<String> {
    let mut rejected = Vec::new();
    for file in files {
        let output = Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(home.join("cache"))
            .args(["create", "-f"])
            .arg(file)
            .env("HOME", home)
            .output()
            .unwrap_or_else(|e| panic!("{kubectl} cannot be run: {e}"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        let errors: Vec<String> = stderr
            .lines()
            .filter(|l| l.starts_with("Error") || l.starts_with("error"))
            .filter(|l| !l.contains("(AlreadyExists)"))
            .map(str::to_string)
            .collect();
        if !output.status.success() && errors.is_empty() && !stderr.contains("(AlreadyExists)") {
            rejected.push(format!("{}: {stderr}", file.display()));
        }
        rejected.extend(errors);
    }
    rejected
}

/// The plain-layout files of a snapshot, in the order the README gives: namespaces and
/// definitions first, then the other cluster-scoped files at the top of the folder (the
/// classes pods name), then the namespaces' folders.
fn layout_files(folder: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            for inner in std::fs::read_dir(&path).unwrap() {
                files.push(inner.unwrap().path());
            }
        } else {
            files.push(path);
        }
    }
    let first = |p: &PathBuf| {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        match name.as_str() {
            "namespaces.json" => 0,
            "customresourcedefinitions.apiextensions.k8s.io.json" => 1,
            _ if p.parent() == Some(folder) => 2,
            _ => 3,
        }
    };
    files.sort_by_key(|p| (first(p), p.clone()));
    files
}

fn kubectl_version(kubectl: &str) -> String {
    Command::new(kubectl)
        .args(["version", "--client"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_plain_layout_file_is_accepted_by_kubectl_create() {
    let source = Cluster::start(2_000, 71).await;
    let dir = tempfile::tempdir().unwrap();
    let destination = dir.path().join("backups");
    let (manifest, _) = snapshot(&source, &destination, &dir.path().join("cache")).await;
    let folder = destination
        .join("prod/backup")
        .join(manifest.time.to_string());
    let files = layout_files(&folder);
    assert!(files.len() > 20, "{} files", files.len());

    for kubectl in crate::support::kubectls() {
        let target = Cluster::start_with(SimConfig {
            empty: true,
            tls: true,
            ..SimConfig::default()
        })
        .await;
        let home = tempfile::tempdir().unwrap();
        let rejected = create_all(&kubectl, &target.kubeconfig, home.path(), &files);
        let created = target.sim.create_log().len();
        eprintln!(
            "{} ({}): {} files, {created} objects created, {} rejected",
            kubectl,
            kubectl_version(&kubectl),
            files.len(),
            rejected.len()
        );
        assert!(
            rejected.is_empty(),
            "{kubectl} rejected {} objects, e.g.:\n{}",
            rejected.len(),
            rejected[..rejected.len().min(10)].join("\n")
        );
        // Everything but the namespaces a fresh cluster has was created.
        assert_eq!(created as u64, manifest.stats.objects - 4, "{kubectl}");
    }
}

/// Kind -> objects, of a manifest.
fn kinds(manifest: &Manifest) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for o in &manifest.objects {
        *counts
            .entry(manifest.resource_of(o).kind.clone())
            .or_default() += 1;
    }
    counts
}

/// (group, kind, namespace, name) -> the object's sanitized content.
async fn contents(
    manifest: &Manifest,
    store: &Store,
) -> BTreeMap<(String, String, Option<String>, String), Value> {
    support::snapshot_contents(manifest, store)
        .await
        .into_iter()
        .map(|(rt, o, value)| {
            let key = (
                rt.group.clone(),
                rt.kind.clone(),
                o.namespace.clone(),
                o.name.clone(),
            );
            (key, value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_every_kind_restores_and_survives_the_garbage_collector() {
    // The demo's cluster (`kube-autosave demo`: 5,000 objects, seed 1).
    let a = Cluster::start(5_000, 1).await;
    let b = Cluster::start_with(SimConfig {
        empty: true,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let destination = dir.path().join("backups");
    let (manifest_a, store_a) = snapshot(&a, &destination, &dir.path().join("cache-a")).await;

    // Every listable kind the cluster serves and the rules keep is in the plain layout.
    let kinds_a = kinds(&manifest_a);
    let rules = Rules::default();
    let mut kept_kinds = BTreeSet::new();
    for key in a.sim.objects() {
        let rt = support::resource_type_of(&key);
        let object = a.sim.object(&key).expect("a listed object exists");
        let owned = object["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|refs| refs.iter().any(|r| r["controller"] == true));
        let token = object["type"] == "kubernetes.io/service-account-token";
        if rules.wants_resource(&rt) && !owned && !token {
            kept_kinds.insert(key.kind.clone());
        }
    }
    assert_eq!(kinds_a.keys().cloned().collect::<BTreeSet<_>>(), kept_kinds);
    assert!(kept_kinds.len() > 50, "{kept_kinds:?}");
    let folder = destination
        .join("prod/backup")
        .join(manifest_a.time.to_string());
    let in_layout: BTreeSet<String> = source::from_dir(
        &folder,
        OnDamage::Fail,
        &kube_autosave::seal::Keyring::default(),
    )
    .unwrap()
    .items
    .into_iter()
    .map(|item| item.kind)
    .collect();
    let in_manifest: BTreeSet<String> = kinds_a.keys().cloned().collect();
    assert_eq!(in_layout, in_manifest);
    // A resource served only by a version older than its group's preferred one is read.
    let alertmanager = manifest_a
        .resources
        .iter()
        .find(|r| r.resource.kind == "AlertmanagerConfig")
        .expect("AlertmanagerConfig objects are in the snapshot");
    assert_eq!(alertmanager.resource.version, "v1alpha1");
    assert!(alertmanager.count > 0);

    let filters = Filters {
        system_namespaces: true,
        ..Filters::default()
    };
    let items = source::from_manifest(
        &store_a,
        &manifest_a,
        |rt, o| filters.wants_manifest_object(rt, o.namespace.as_deref(), &o.name),
        OnDamage::Fail,
        &kube_autosave::seal::Keyring::default(),
    )
    .await
    .unwrap()
    .items;
    let plan = Plan::new(items, &filters);
    let planned: BTreeSet<String> = plan.objects.iter().map(|p| p.item.kind.clone()).collect();
    for kind in NODE_AND_CONTROLLER_BOUND {
        if kinds_a.contains_key(kind) {
            assert!(!planned.contains(kind), "{kind} would be restored");
        }
    }
    let report = execute(
        &b.api().await,
        &plan,
        &RestoreOptions {
            existing: Existing::Skip,
            crd_timeout: std::time::Duration::from_secs(10),
            ..RestoreOptions::default()
        },
        &|_| {},
    )
    .await
    .expect("restore");
    assert!(
        report.failed.is_empty(),
        "{} failed, e.g. {:?}",
        report.failed.len(),
        &report.failed[..report.failed.len().min(5)]
    );

    // The garbage collector sweeps: nothing the restore created may go.
    let swept = b.sim.collect_garbage();
    assert!(
        swept.deleted.is_empty(),
        "deleted by the garbage collector: {:?}",
        swept.deleted
    );
    assert!(
        swept.orphan_refs_removed.is_empty(),
        "{:?}",
        swept.orphan_refs_removed
    );

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (manifest_b, store_b) =
        snapshot(&b, &destination.join("b"), &dir.path().join("cache-b")).await;
    let kinds_b = kinds(&manifest_b);
    let before = contents(&manifest_a, &store_a).await;
    let after = contents(&manifest_b, &store_b).await;
    let restored: BTreeSet<_> = plan
        .objects
        .iter()
        .map(|p| {
            (
                p.item.group.clone(),
                p.item.kind.clone(),
                p.item.namespace.clone(),
                p.item.name.clone(),
            )
        })
        .collect();
    let mut table = String::from("kind                                   A      planned  B\n");
    let mut differing = Vec::new();
    for (kind, count) in &kinds_a {
        let planned = restored.iter().filter(|k| &k.1 == kind).count();
        table.push_str(&format!(
            "{kind:<38} {count:>6} {planned:>8} {:>6}\n",
            kinds_b.get(kind).copied().unwrap_or(0)
        ));
    }
    eprintln!("{table}");
    for key in &restored {
        match after.get(key) {
            None => differing.push(format!("{key:?} is missing after the restore")),
            Some(value) if Some(value) != before.get(key) => {
                let mut ops = Vec::new();
                kube_autosave::inspect::diff::json_diff(
                    &before[key],
                    value,
                    &mut String::new(),
                    &mut ops,
                );
                differing.push(format!("{key:?}: {ops:?}"));
            }
            Some(_) => {}
        }
    }
    assert!(
        differing.is_empty(),
        "{} restored objects differ:\n{}\n{table}",
        differing.len(),
        differing[..differing.len().min(8)].join("\n")
    );
}
