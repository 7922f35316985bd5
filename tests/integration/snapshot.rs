//! Reading a cluster into a snapshot, against the simulated API server over real HTTP: the
//! snapshot holds exactly the server's objects minus the default exclusions, every object is
//! cleaned so that it can be created in a fresh cluster, faults end in a complete snapshot
//! that names what it missed, and unchanged objects are never stored twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use kube_autosave::repo::Manifest;
use kube_autosave::snapshot::{Rules, SnapshotOptions, take_snapshot};
use kube_autosave::store::{LocalBackend, ObjectId, Store, StoreConfig};
use kube_sim::ObjectKey;
use serde_json::Value;

use crate::support::cluster::Cluster;

/// (qualified resource, namespace, name): how tests compare snapshots with the server.
type Key = (String, Option<String>, String);

fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

fn sim_key(k: &ObjectKey) -> Key {
    (
        qualified(&k.group, &k.resource),
        k.namespace.clone(),
        k.name.clone(),
    )
}

/// The default exclusions, written out from DESIGN.md independently of the rules code.
fn kept_by_default(sim: &kube_sim::SimServer, k: &ObjectKey) -> bool {
    let excluded_resource = matches!(
        (k.group.as_str(), k.resource.as_str()),
        ("", "events")
            | ("events.k8s.io", "events")
            | ("", "endpoints")
            | ("discovery.k8s.io", "endpointslices")
            | ("coordination.k8s.io", "leases")
            | ("", "componentstatuses")
    );
    if excluded_resource {
        return false;
    }
    let object = sim.object(k).expect("listed object exists");
    let controlled = object["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| refs.iter().any(|r| r["controller"] == Value::Bool(true)));
    let token = k.resource == "secrets" && object["type"] == "kubernetes.io/service-account-token";
    !controlled && !token
}

fn expected(sim: &kube_sim::SimServer) -> BTreeSet<Key> {
    sim.objects()
        .iter()
        .filter(|k| kept_by_default(sim, k))
        .map(sim_key)
        .collect()
}

/// The snapshot's objects, leaving out the metrics API (computed by the server, not stored).
fn snapshot_keys(manifest: &Manifest) -> BTreeSet<Key> {
    manifest
        .objects
        .iter()
        .filter(|o| manifest.resource_of(o).group != "metrics.k8s.io")
        .map(|o| {
            (
                manifest.resource_of(o).qualified_name(),
                o.namespace.clone(),
                o.name.clone(),
            )
        })
        .collect()
}

/// Asserts that `snapshot` holds what the full read `full` holds (the metrics aside, which
/// change on every read).
fn same_as_full_read(snapshot: &Manifest, full: &Manifest) {
    let without_metrics = |m: BTreeMap<Key, ObjectId>| -> BTreeMap<Key, ObjectId> {
        m.into_iter()
            .filter(|(k, _)| !k.0.ends_with(".metrics.k8s.io"))
            .collect()
    };
    assert_eq!(
        without_metrics(ids_by_key(full)),
        without_metrics(ids_by_key(snapshot))
    );
    assert_eq!(full.stats.excluded, snapshot.stats.excluded);
    assert_eq!(full.stats.bytes, snapshot.stats.bytes);
}

fn ids_by_key(manifest: &Manifest) -> BTreeMap<Key, ObjectId> {
    manifest
        .objects
        .iter()
        .map(|o| {
            (
                (
                    manifest.resource_of(o).qualified_name(),
                    o.namespace.clone(),
                    o.name.clone(),
                ),
                o.id,
            )
        })
        .collect()
}

struct Fixture {
    cluster: Cluster,
    store: Store,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Fixture {
    async fn new(objects: usize, seed: u64) -> Fixture {
        let cluster = Cluster::start(objects, seed).await;
        let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let backend = Arc::new(LocalBackend::new(data.path()).unwrap());
        let store = Store::open(backend, cache.path(), StoreConfig::default())
            .await
            .unwrap();
        Fixture {
            cluster,
            store,
            _dirs: (data, cache),
        }
    }

    async fn snapshot(&self, options: &SnapshotOptions) -> Manifest {
        let api = self.cluster.api().await;
        // Snapshot names have a resolution of one second; never wait in the test for that.
        take_snapshot(&api, &self.store, options, Arc::new(|_| {}))
            .await
            .expect("snapshot")
    }

    /// A snapshot read in full, as with a fresh local cache.
    async fn full_read(&self, options: &SnapshotOptions) -> Manifest {
        let fresh_cache = tempfile::tempdir().unwrap();
        let fresh = Store::open(
            self.store.backend().clone(),
            fresh_cache.path(),
            StoreConfig::default(),
        )
        .await
        .unwrap();
        let api = self.cluster.api().await;
        let full = take_snapshot(&api, &fresh, options, Arc::new(|_| {}))
            .await
            .unwrap();
        assert_eq!(full.stats.store.objects, full.stats.objects);
        full
    }

    async fn objects(&self, manifest: &Manifest) -> BTreeMap<Key, Value> {
        let ids = ids_by_key(manifest);
        let by_id: BTreeMap<ObjectId, Bytes> = self
            .store
            .get_many(ids.values().copied().collect())
            .map(|r| r.unwrap())
            .collect()
            .await;
        ids.into_iter()
            .map(|(k, id)| (k, serde_json::from_slice(&by_id[&id]).unwrap()))
            .collect()
    }
}

fn options() -> SnapshotOptions {
    SnapshotOptions {
        cluster_name: "test".to_string(),
        retry: crate::support::cluster::quick_retries(),
        ..SnapshotOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_holds_exactly_the_servers_objects_minus_the_default_exclusions() {
    crate::support::init_logging();
    let fx = Fixture::new(3_000, 11).await;
    let manifest = fx.snapshot(&options()).await;

    assert!(manifest.skipped.is_empty(), "{:?}", manifest.skipped);
    assert_eq!(snapshot_keys(&manifest), expected(&fx.cluster.sim));
    // The CRD and its custom resources are in it; the metrics API, which nobody can create,
    // is not.
    let resources: BTreeSet<String> = manifest
        .resources
        .iter()
        .filter(|r| r.count > 0)
        .map(|r| r.resource.qualified_name())
        .collect();
    for wanted in [
        "customresourcedefinitions.apiextensions.k8s.io",
        "widgets.example.com",
        "deployments.apps",
        "configmaps",
        "namespaces",
    ] {
        assert!(
            resources.contains(wanted),
            "{wanted} missing from {resources:?}"
        );
    }
    assert!(!resources.iter().any(|r| r.ends_with(".metrics.k8s.io")));
    // No subresources, and every listed resource at one version only.
    assert!(
        manifest
            .resources
            .iter()
            .all(|r| !r.resource.resource.contains('/'))
    );
    // The manifest's counts and figures agree with its objects.
    let total: u64 = manifest.resources.iter().map(|r| r.count).sum();
    assert_eq!(total, manifest.objects.len() as u64);
    assert_eq!(manifest.stats.objects, total);
    assert_eq!(manifest.stats.store.new_objects, total);
    assert!(manifest.stats.excluded > 0);
    // It is stored, after the data it points at.
    let loaded = Manifest::load(&fx.store, &manifest.time).await.unwrap();
    assert_eq!(loaded, manifest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_cleaned_so_they_can_be_created_in_a_fresh_cluster() {
    let fx = Fixture::new(2_000, 12).await;
    let manifest = fx.snapshot(&options()).await;
    let objects = fx.objects(&manifest).await;
    let sim = &fx.cluster.sim;

    let (mut services, mut headless, mut pvcs, mut pvs) = (0, 0, 0, 0);
    for (key, object) in &objects {
        let (resource, namespace, name) = key;
        let metadata = &object["metadata"];
        assert_eq!(metadata["name"], name.as_str());
        assert_eq!(metadata["namespace"].as_str(), namespace.as_deref());
        assert!(
            object["apiVersion"].is_string() && object["kind"].is_string(),
            "{key:?}"
        );
        assert!(object.get("status").is_none(), "{key:?} has a status");
        for field in [
            "uid",
            "resourceVersion",
            "selfLink",
            "creationTimestamp",
            "generation",
            "managedFields",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            assert!(
                metadata.get(field).is_none(),
                "{key:?} keeps metadata.{field}"
            );
        }
        match resource.as_str() {
            "services" => {
                services += 1;
                let ip = &object["spec"]["clusterIP"];
                if ip == "None" {
                    headless += 1;
                } else {
                    assert!(ip.is_null(), "{key:?} keeps clusterIP {ip}");
                    assert!(object["spec"].get("clusterIPs").is_none());
                }
            }
            "persistentvolumeclaims" => {
                pvcs += 1;
                let annotations = &metadata["annotations"];
                assert!(annotations.get("pv.kubernetes.io/bind-completed").is_none());
                assert!(
                    annotations
                        .get("pv.kubernetes.io/bound-by-controller")
                        .is_none()
                );
            }
            "persistentvolumes" => {
                if let Some(claim) = object["spec"].get("claimRef") {
                    pvs += 1;
                    assert!(claim.get("uid").is_none() && claim.get("resourceVersion").is_none());
                    assert!(claim["name"].is_string());
                }
            }
            _ => {}
        }
    }
    assert!(services > 0 && headless > 0 && pvcs > 0 && pvs > 0);

    // What the server sent had all of it (the test is not vacuous), and kinds match the server.
    let bound_pvc = sim
        .objects()
        .into_iter()
        .find(|k| k.resource == "persistentvolumeclaims")
        .and_then(|k| sim.object(&k))
        .unwrap();
    assert_eq!(
        bound_pvc["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"],
        "yes"
    );
    for k in sim
        .objects()
        .iter()
        .filter(|k| kept_by_default(sim, k))
        .step_by(37)
    {
        let ours = &objects[&sim_key(k)];
        assert_eq!(ours["kind"], k.kind.as_str());
        assert_eq!(ours["apiVersion"], k.api_version().as_str());
    }

    // What the server generated from the old objects' identity and would refuse in a create:
    // the Jobs' selectors and uid labels, the pods' class-computed priority (the Jobs and
    // their pods are owned by CronJobs, so kept on request only).
    let owned_too = SnapshotOptions {
        rules: Rules {
            keep_controller_owned: true,
            ..Rules::default()
        },
        ..options()
    };
    let manifest = fx.snapshot(&owned_too).await;
    let objects = fx.objects(&manifest).await;
    let (mut jobs, mut pods) = (0, 0);
    for (key, object) in &objects {
        match key.0.as_str() {
            "jobs.batch" => {
                jobs += 1;
                assert!(object["spec"].get("selector").is_none(), "{key:?}");
                for labels in [
                    &object["metadata"]["labels"],
                    &object["spec"]["template"]["metadata"]["labels"],
                ] {
                    for generated in [
                        "controller-uid",
                        "batch.kubernetes.io/controller-uid",
                        "job-name",
                        "batch.kubernetes.io/job-name",
                    ] {
                        assert!(labels.get(generated).is_none(), "{key:?}: {labels}");
                    }
                }
                assert!(object["spec"]["template"]["spec"]["containers"].is_array());
            }
            "pods" => {
                pods += 1;
                for field in [
                    "priority",
                    "preemptionPolicy",
                    "overhead",
                    "ephemeralContainers",
                ] {
                    assert!(object["spec"].get(field).is_none(), "{key:?} keeps {field}");
                }
            }
            _ => {}
        }
    }
    assert!(jobs > 0 && pods > 0, "{jobs} jobs, {pods} pods");
    let generated = |resource: &str, pointer: &str| {
        sim.objects()
            .iter()
            .filter(|k| k.resource == resource)
            .any(|k| sim.object(k).unwrap().pointer(pointer).is_some())
    };
    assert!(generated("jobs", "/spec/selector/matchLabels"));
    assert!(generated("pods", "/spec/priority"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exclusion_rule_can_be_changed() {
    let fx = Fixture::new(2_000, 13).await;
    let sim = &fx.cluster.sim;
    let all: Vec<ObjectKey> = sim.objects();

    // Keep what the defaults leave out.
    let keep_all = SnapshotOptions {
        rules: Rules {
            exclude_resources: Vec::new(),
            keep_controller_owned: true,
            keep_service_account_tokens: true,
            ..Rules::default()
        },
        ..options()
    };
    let manifest = fx.snapshot(&keep_all).await;
    let every: BTreeSet<Key> = all.iter().map(sim_key).collect();
    // Core events are also served as events.k8s.io events: both are in the snapshot.
    let got: BTreeSet<Key> = snapshot_keys(&manifest)
        .into_iter()
        .filter(|k| k.0 != "events.events.k8s.io")
        .collect();
    assert_eq!(got, every);
    let has = |pred: &dyn Fn(&ObjectKey, &Value) -> bool| {
        all.iter()
            .any(|k| pred(k, &sim.object(k).unwrap()) && got.contains(&sim_key(k)))
    };
    assert!(has(&|k, _| k.resource == "events"));
    assert!(has(&|k, _| k.resource == "leases"));
    assert!(has(
        &|_, o| o["metadata"]["ownerReferences"][0]["controller"] == true
    ));
    assert!(has(
        &|_, o| o["type"] == "kubernetes.io/service-account-token"
    ));

    // Namespaces and resources in and out.
    let namespace = all
        .iter()
        .find_map(|k| k.namespace.clone().filter(|ns| ns.ends_with("-prod")))
        .unwrap();
    let rules = SnapshotOptions {
        rules: Rules {
            exclude_namespaces: vec![namespace.clone()],
            include_resources: vec![
                "configmaps".into(),
                "deployments.apps".into(),
                "namespaces".into(),
            ],
            ..Rules::default()
        },
        ..options()
    };
    let manifest = fx.snapshot(&rules).await;
    let got = snapshot_keys(&manifest);
    let want: BTreeSet<Key> = all
        .iter()
        .filter(|k| kept_by_default(sim, k))
        .map(sim_key)
        .filter(|(r, ns, _)| {
            ["configmaps", "deployments.apps", "namespaces"].contains(&r.as_str())
                && ns.as_deref() != Some(namespace.as_str())
        })
        .collect();
    assert_eq!(got, want);
    assert!(
        got.iter()
            .any(|(r, _, n)| r == "namespaces" && *n == namespace)
    );

    // A label selector goes to the server.
    let (label, value) = all
        .iter()
        .filter(|k| k.resource == "configmaps")
        .find_map(|k| {
            let o = sim.object(k)?;
            let labels = o["metadata"]["labels"].as_object()?;
            labels
                .iter()
                .find(|(name, _)| name.as_str() == "app.kubernetes.io/name")
                .map(|(name, v)| (name.clone(), v.as_str().unwrap_or_default().to_string()))
        })
        .unwrap();
    let selected = SnapshotOptions {
        rules: Rules {
            label_selector: Some(format!("{label}={value}")),
            include_resources: vec!["configmaps".into()],
            ..Rules::default()
        },
        ..options()
    };
    let manifest = fx.snapshot(&selected).await;
    let want: BTreeSet<Key> = all
        .iter()
        .filter(|k| k.resource == "configmaps" && kept_by_default(sim, k))
        .filter(|k| sim.object(k).unwrap()["metadata"]["labels"][&label] == value.as_str())
        .map(sim_key)
        .collect();
    assert!(!want.is_empty());
    assert_eq!(snapshot_keys(&manifest), want);
}

/// Each fault ends with a complete snapshot that names exactly what it skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_end_in_a_complete_snapshot_that_names_what_it_missed() {
    let fx = Fixture::new(2_000, 14).await;
    let sim = &fx.cluster.sim;
    let everything = expected(sim);

    // 403 on one resource.
    sim.faults().forbid("configmaps", true);
    let manifest = fx.snapshot(&options()).await;
    sim.faults().forbid("configmaps", false);
    let skipped: Vec<(String, Option<u16>)> = manifest
        .skipped
        .iter()
        .map(|s| (s.what(), s.code))
        .collect();
    assert_eq!(skipped, vec![("configmaps".to_string(), Some(403))]);
    assert!(
        manifest.skipped[0].reason.contains("forbidden"),
        "{:?}",
        manifest.skipped
    );
    let without: BTreeSet<Key> = everything
        .iter()
        .filter(|k| k.0 != "configmaps")
        .cloned()
        .collect();
    assert_eq!(snapshot_keys(&manifest), without);

    // 503 from an aggregated API whose backend is down: missed and said so when the rules
    // keep it, not when they leave the group out (the metrics API is left out by default).
    sim.faults().group_unavailable("metrics.k8s.io", true);
    let left_out = fx.snapshot(&options()).await;
    assert!(left_out.skipped.is_empty(), "{:?}", left_out.skipped);
    let keep_metrics = SnapshotOptions {
        rules: Rules {
            exclude_resources: Rules::default()
                .exclude_resources
                .into_iter()
                .filter(|r| r != "*.metrics.k8s.io")
                .collect(),
            ..Rules::default()
        },
        ..options()
    };
    let manifest = fx.snapshot(&keep_metrics).await;
    sim.faults().group_unavailable("metrics.k8s.io", false);
    assert!(!manifest.skipped.is_empty());
    for skipped in &manifest.skipped {
        assert_eq!(skipped.group, "metrics.k8s.io", "{skipped:?}");
        assert_eq!(skipped.code, Some(503), "{skipped:?}");
    }
    assert_eq!(snapshot_keys(&manifest), everything);

    // 410 Gone on expired continue tokens mid-list: restarted, no duplicates, no holes.
    sim.faults().expire_continue_after(Some(2));
    let small_pages = SnapshotOptions {
        page_size: 20,
        ..options()
    };
    let manifest = fx.snapshot(&small_pages).await;
    sim.faults().expire_continue_after(None);
    assert!(manifest.skipped.is_empty(), "{:?}", manifest.skipped);
    assert!(manifest.stats.list_restarts > 0);
    assert_eq!(snapshot_keys(&manifest), everything);
    let total = manifest.objects.len();
    let distinct: BTreeSet<Key> = ids_by_key(&manifest).into_keys().collect();
    assert_eq!(distinct.len(), total, "an object appears twice");

    // 429 with Retry-After: waited for, nothing lost.
    sim.faults().throttle(3, 1);
    let manifest = fx.snapshot(&options()).await;
    assert!(manifest.skipped.is_empty(), "{:?}", manifest.skipped);
    assert_eq!(snapshot_keys(&manifest), everything);

    // A connection dropped mid-list: retried.
    sim.faults().drop_connection_after_pages(Some(1));
    let manifest = fx.snapshot(&small_pages).await;
    assert!(manifest.skipped.is_empty(), "{:?}", manifest.skipped);
    assert_eq!(snapshot_keys(&manifest), everything);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_objects_are_stored_once_and_churn_stores_exactly_the_changes() {
    let fx = Fixture::new(3_000, 15).await;
    let sim = &fx.cluster.sim;
    let first = fx.snapshot(&options()).await;
    assert!(first.stats.store.new_objects > 0);

    let second = fx.snapshot(&options()).await;
    assert_eq!(second.stats.store.new_objects, 0);
    assert_eq!(second.stats.store.packs_written, 0);
    assert_eq!(ids_by_key(&second), ids_by_key(&first));

    // Remember the server's objects, churn 1 %, and compute what really changed.
    let before: BTreeMap<ObjectKey, Value> = sim
        .objects()
        .into_iter()
        .map(|k| (k.clone(), sim.object(&k).unwrap()))
        .collect();
    let churn = sim.churn(0.01, 99);
    assert!(!churn.modified.is_empty());
    let third = fx.snapshot(&options()).await;
    let server_fields = |mut v: Value| {
        for f in ["resourceVersion", "generation", "managedFields"] {
            v["metadata"].as_object_mut().unwrap().remove(f);
        }
        v.as_object_mut().unwrap().remove("status");
        v
    };
    let kept_now: BTreeSet<Key> = expected(sim);
    let mut really_changed: BTreeSet<Key> = churn
        .modified
        .iter()
        .filter(|k| kept_now.contains(&sim_key(k)))
        .filter(|k| server_fields(before[*k].clone()) != server_fields(sim.object(k).unwrap()))
        .map(sim_key)
        .collect();
    really_changed.extend(
        churn
            .added
            .iter()
            .map(sim_key)
            .filter(|k| kept_now.contains(k)),
    );

    let (old, new) = (ids_by_key(&second), ids_by_key(&third));
    let changed: BTreeSet<Key> = new
        .iter()
        .filter(|(k, _)| k.0 != "pods.metrics.k8s.io" && k.0 != "nodes.metrics.k8s.io")
        .filter(|(k, id)| old.get(*k) != Some(*id))
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(changed, really_changed);
    assert!(!changed.is_empty());
    let new_ids: BTreeSet<ObjectId> = changed.iter().map(|k| new[k]).collect();
    assert_eq!(third.stats.store.new_objects, new_ids.len() as u64);
    for deleted in &churn.deleted {
        assert!(!new.contains_key(&sim_key(deleted)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_unchanged_since_the_last_snapshot_are_not_read_again_and_the_snapshot_is_the_same()
{
    let fx = Fixture::new(3_000, 16).await;
    // The service account of the deployment may list and watch, not get.
    fx.cluster.sim.faults().forbid_verb("get", true);
    let requests = fx.cluster.sim.request_count();
    let first = fx.snapshot(&options()).await;
    assert!(first.skipped.is_empty(), "{:?}", first.skipped);
    // The first snapshot reads every object in full: all of them go to the store writer.
    assert_eq!(first.stats.store.objects, first.stats.objects);
    assert_eq!(first.stats.get_requests, 0);
    // Every request a snapshot sends is a list page or a list narrowed to one changed
    // object, apart from discovery.
    let discovery = fx.cluster.sim.request_count() - requests - first.stats.list_requests;
    fx.cluster.sim.churn(0.01, 7);
    let served = fx.cluster.sim.served();
    let requests = fx.cluster.sim.request_count();
    let second = fx.snapshot(&options()).await;
    let served = fx.cluster.sim.served() - served;
    assert_eq!(
        fx.cluster.sim.request_count() - requests,
        discovery + second.stats.list_requests + second.stats.get_requests
    );

    // Only what changed was cleaned, hashed and handed on: the objects whose id changed or
    // that are new, and the metrics, which have no resourceVersion to compare.
    let (old, new) = (ids_by_key(&first), ids_by_key(&second));
    let metrics = new
        .keys()
        .filter(|k| k.0.ends_with(".metrics.k8s.io"))
        .count();
    let changed = new
        .iter()
        .filter(|(k, id)| !k.0.ends_with(".metrics.k8s.io") && old.get(*k) != Some(*id))
        .count();
    assert!(changed > 0);
    assert_eq!(second.stats.store.objects as usize, metrics + changed);
    assert_eq!(second.stats.objects, new.len() as u64);
    // The server sent the metadata of most objects, not the objects: only the changed ones
    // were read in full (one by one, or with their resource where many of it changed).
    assert!(
        served.metadata_list_items > new.len() as u64 / 2,
        "{served:?}"
    );
    assert!(served.full_list_items < new.len() as u64 / 4, "{served:?}");
    // Changed objects were read one by one, each with a list narrowed to its name, and one
    // more such list read the kube-system namespace, whose uid says whose folder this is.
    assert!(served.named_lists > 0, "{served:?}");
    assert_eq!(second.stats.get_requests + 1, served.named_lists);
    assert_eq!(served.gets, 0);
    assert!(second.skipped.is_empty(), "{:?}", second.skipped);

    // And the snapshot is what a full read of the same cluster gives (another local cache).
    same_as_full_read(&second, &fx.full_read(&options()).await);

    // Other rules: everything is read in full again.
    let mut other = options();
    other.rules.keep_service_account_tokens = true;
    let third = fx.snapshot(&other).await;
    assert_eq!(third.stats.store.objects, third.stats.objects);

    // A damaged cache file costs a full read, not the snapshot.
    let path = fx.store.local_file("seen");
    assert!(path.exists());
    std::fs::write(&path, b"not a cache").unwrap();
    let fourth = fx.snapshot(&other).await;
    assert_eq!(fourth.stats.store.objects, fourth.stats.objects);
    let fifth = fx.snapshot(&other).await;
    assert!(fifth.stats.store.objects < fifth.stats.objects / 2);

    // A server that cannot list metadata only answers with full objects: they are compared
    // the same way, and the snapshot is the same.
    fx.cluster.sim.faults().full_lists_only(true);
    fx.cluster.sim.churn(0.01, 8);
    let served = fx.cluster.sim.served();
    let sixth = fx.snapshot(&other).await;
    let served = fx.cluster.sim.served() - served;
    // (The one named list is of the kube-system namespace, whose uid says whose folder
    // this is.)
    assert_eq!((served.metadata_list_items, served.named_lists), (0, 1));
    assert!(sixth.stats.store.objects < sixth.stats.objects / 2);
    same_as_full_read(&sixth, &fx.full_read(&other).await);

    // Where many objects of a resource changed, it is listed again in full instead of read
    // object by object.
    fx.cluster.sim.faults().full_lists_only(false);
    fx.cluster.sim.churn(0.4, 9);
    let served = fx.cluster.sim.served();
    let requests = fx.cluster.sim.request_count();
    let seventh = fx.snapshot(&other).await;
    let served = fx.cluster.sim.served() - served;
    // The metadata pages of the resources listed in full after all count as list requests.
    assert_eq!(
        fx.cluster.sim.request_count() - requests,
        discovery + seventh.stats.list_requests + seventh.stats.get_requests
    );
    assert!(served.metadata_list_items > 0, "{served:?}");
    assert!(
        served.full_list_items > seventh.stats.objects / 4,
        "{served:?}"
    );
    assert!(served.named_lists < seventh.stats.objects / 8, "{served:?}");
    same_as_full_read(&seventh, &fx.full_read(&other).await);
}

fn crd(group: &str, plural: &str, kind: &str, version: &str) -> Value {
    serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group,
            "names": {"kind": kind, "listKind": format!("{kind}List"), "plural": plural,
                      "singular": kind.to_lowercase()},
            "scope": "Namespaced",
            "versions": [{"name": version, "served": true, "storage": true,
                          "schema": {"openAPIV3Schema": {"type": "object",
                                     "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    })
}

/// The (group, plural) of every resource the manifest read, with the version it read it at.
fn versions_read(manifest: &Manifest) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    for r in &manifest.resources {
        let rt = &r.resource;
        let before = out.insert((rt.group.clone(), rt.resource.clone()), rt.version.clone());
        assert!(before.is_none(), "{} read twice", rt.qualified_name());
    }
    out
}

/// Creates a CRD; the generated cluster may hold the same one already (prometheus-operator's
/// are part of it), which is as good.
async fn create_crd(api: &kube_autosave::kube::Api, crd: Value) {
    let path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    match api.post(path, Bytes::from(crd.to_string())).await {
        Ok(_) | Err(kube_autosave::kube::ApiError::Status { code: 409, .. }) => {}
        Err(e) => panic!("POST {path}: {e}"),
    }
}

/// A group whose preferred version lacks a resource (prometheus-operator's
/// `monitoring.coreos.com`: `alertmanagerconfigs` only at `v1alpha1`), and the built-in
/// resources served only by a non-preferred version, are read, once, at the version that
/// serves them; legacy discovery finds the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_served_only_by_a_non_preferred_version_are_read_at_it() {
    let fx = Fixture::new(300, 17).await;
    let api = fx.cluster.api().await;
    let post = |path: &str, body: Value| {
        let api = api.clone();
        let path = path.to_string();
        async move {
            api.post(&path, Bytes::from(body.to_string()))
                .await
                .unwrap_or_else(|e| panic!("POST {path}: {e}"))
        }
    };
    let group = "monitoring.coreos.com";
    for (plural, kind, version) in [
        ("servicemonitors", "ServiceMonitor", "v1"),
        ("alertmanagerconfigs", "AlertmanagerConfig", "v1alpha1"),
    ] {
        create_crd(&api, crd(group, plural, kind, version)).await;
        post(
            &format!("/apis/{group}/{version}/namespaces/default/{plural}"),
            serde_json::json!({
                "apiVersion": format!("{group}/{version}"), "kind": kind,
                "metadata": {"name": "main", "namespace": "default"},
                "spec": {"note": plural}
            }),
        )
        .await;
    }
    // The server prefers v1, which lacks alertmanagerconfigs.
    let preferred: Value = serde_json::from_slice(
        &api.get(&format!("/apis/{group}"), "application/json")
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(preferred["preferredVersion"]["version"], "v1");

    let manifest = fx.snapshot(&options()).await;
    assert!(manifest.skipped.is_empty(), "{:?}", manifest.skipped);
    let read = versions_read(&manifest);
    let at =
        |group: &str, plural: &str| read.get(&(group.to_string(), plural.to_string())).cloned();
    assert_eq!(at(group, "servicemonitors").as_deref(), Some("v1"));
    assert_eq!(
        at(group, "alertmanagerconfigs").as_deref(),
        Some("v1alpha1")
    );
    for plural in ["ipaddresses", "servicecidrs"] {
        assert_eq!(
            at("networking.k8s.io", plural).as_deref(),
            Some("v1beta1"),
            "{plural}"
        );
    }
    // Served at v2 and v1: read once, at v2.
    assert_eq!(
        at("autoscaling", "horizontalpodautoscalers").as_deref(),
        Some("v2")
    );
    // Everything the server holds, and nothing twice (a resource read at two versions would
    // show its objects twice).
    assert_eq!(ids_by_key(&manifest).len(), manifest.objects.len());
    let mut everything = expected(&fx.cluster.sim);
    everything.extend(
        [("alertmanagerconfigs", "main"), ("servicemonitors", "main")].map(|(plural, name)| {
            (
                format!("{plural}.{group}"),
                Some("default".to_string()),
                name.to_string(),
            )
        }),
    );
    assert_eq!(snapshot_keys(&manifest), everything);

    // The objects are stored, and laid out, at the version they were read at.
    let objects = fx.objects(&manifest).await;
    let key = |plural: &str| {
        (
            format!("{plural}.{group}"),
            Some("default".to_string()),
            "main".to_string(),
        )
    };
    assert_eq!(
        objects[&key("alertmanagerconfigs")]["apiVersion"],
        "monitoring.coreos.com/v1alpha1"
    );
    assert_eq!(
        objects[&key("servicemonitors")]["apiVersion"],
        "monitoring.coreos.com/v1"
    );
    kube_autosave::export::export(&fx.store, &manifest, &Default::default(), None)
        .await
        .unwrap();
    for (plural, kind, version) in [
        ("servicemonitors", "ServiceMonitor", "v1"),
        ("alertmanagerconfigs", "AlertmanagerConfig", "v1alpha1"),
    ] {
        let file = fx
            ._dirs
            .0
            .path()
            .join(format!("backup/{}/default/{plural}.json", manifest.time));
        let list: Value = serde_json::from_slice(
            &std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())),
        )
        .unwrap();
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{list}");
        assert_eq!(items[0]["apiVersion"], format!("{group}/{version}"));
        assert_eq!(items[0]["kind"], kind);
        assert_eq!(items[0]["spec"]["note"], plural);
    }

    // Legacy discovery (a document per group version) finds the same resources at the same
    // versions as aggregated discovery.
    let aggregated = kube_autosave::kube::discovery::discover_aggregated(&api)
        .await
        .unwrap()
        .expect("the simulator offers aggregated discovery");
    let legacy = kube_autosave::kube::discovery::discover_legacy(&api)
        .await
        .unwrap();
    assert!(legacy.skipped.is_empty(), "{:?}", legacy.skipped);
    assert_eq!(legacy.resources, aggregated.resources);
    assert!(legacy.resources.iter().any(|r| r.group == group
        && r.resource == "alertmanagerconfigs"
        && r.version == "v1alpha1"));
}

/// An unavailable group version costs only what no other version serves, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_group_version_is_reported_and_the_others_are_still_read() {
    let fx = Fixture::new(200, 18).await;
    let api = fx.cluster.api().await;
    for (plural, kind, version) in [
        ("servicemonitors", "ServiceMonitor", "v1"),
        ("alertmanagerconfigs", "AlertmanagerConfig", "v1alpha1"),
    ] {
        create_crd(&api, crd("monitoring.coreos.com", plural, kind, version)).await;
    }
    fx.cluster
        .sim
        .faults()
        .group_unavailable("monitoring.coreos.com", true);
    for found in [
        kube_autosave::kube::discovery::discover_aggregated(&api)
            .await
            .unwrap()
            .unwrap(),
        kube_autosave::kube::discovery::discover_legacy(&api)
            .await
            .unwrap(),
    ] {
        let skipped: Vec<(String, Option<u16>)> =
            found.skipped.iter().map(|s| (s.what(), s.code)).collect();
        assert_eq!(
            skipped,
            vec![
                ("monitoring.coreos.com/v1".to_string(), Some(503)),
                ("monitoring.coreos.com/v1alpha1".to_string(), Some(503)),
            ]
        );
        assert!(
            found
                .resources
                .iter()
                .all(|r| r.group != "monitoring.coreos.com")
        );
        assert!(found.resources.iter().any(|r| r.resource == "configmaps"));
    }
}
