//! Determinism of the generated cluster and of churn.

use std::collections::BTreeSet;

use kube_sim::SimConfig;

use crate::common::*;

fn dump(server: &kube_sim::SimServer) -> Vec<(kube_sim::ObjectKey, String)> {
    server
        .objects()
        .into_iter()
        .map(|k| {
            let v = server.object(&k).expect("stored object");
            (k, serde_json::to_string(&v).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn same_seed_same_cluster() {
    let config = SimConfig {
        objects: 2500,
        seed: 42,
        ..Default::default()
    };
    let a = start(config.clone()).await;
    let b = start(config.clone()).await;
    let (da, db) = (dump(&a), dump(&b));
    assert_eq!(da.len(), 2500, "the generator hits N exactly");
    assert!(da == db, "same seed and N give byte-identical objects");
    let c = start(SimConfig { seed: 43, ..config }).await;
    assert!(dump(&c) != da);

    // The size mix of a real cluster: a few hundred bytes to tens of KiB, ~2-4 KiB average.
    let sizes: Vec<usize> = da.iter().map(|(_, s)| s.len()).collect();
    let avg = sizes.iter().sum::<usize>() / sizes.len();
    assert!((2_000..=4_500).contains(&avg), "average object size {avg}");
    assert!(sizes.iter().any(|s| *s < 600));
    assert!(sizes.iter().any(|s| *s > 20_000));
    let kinds: BTreeSet<&str> = da.iter().map(|(k, _)| k.resource.as_str()).collect();
    for k in [
        "configmaps",
        "secrets",
        "services",
        "serviceaccounts",
        "pods",
        "deployments",
        "replicasets",
        "statefulsets",
        "daemonsets",
        "jobs",
        "cronjobs",
        "persistentvolumeclaims",
        "ingresses",
        "networkpolicies",
        "roles",
        "rolebindings",
        "events",
        "endpoints",
        "endpointslices",
        "leases",
        "poddisruptionbudgets",
        "horizontalpodautoscalers",
        "widgets",
        "namespaces",
        "nodes",
        "persistentvolumes",
        "storageclasses",
        "clusterroles",
        "clusterrolebindings",
        "priorityclasses",
        "customresourcedefinitions",
    ] {
        assert!(kinds.contains(k), "no {k}");
    }
    // Service-account tokens and bound volumes as a real cluster has them.
    let secrets: Vec<serde_json::Value> = da
        .iter()
        .filter(|(k, _)| k.resource == "secrets")
        .map(|(_, s)| serde_json::from_str(s).unwrap())
        .collect();
    assert!(
        secrets
            .iter()
            .any(|s| s["type"] == "kubernetes.io/service-account-token")
    );
    let pv = da
        .iter()
        .find(|(k, _)| k.resource == "persistentvolumes")
        .unwrap();
    let pv: serde_json::Value = serde_json::from_str(&pv.1).unwrap();
    assert!(
        pv["spec"]["claimRef"]["uid"].is_string()
            && pv["spec"]["claimRef"]["resourceVersion"].is_string()
    );
}

#[tokio::test]
async fn churn_is_deterministic() {
    let config = SimConfig {
        objects: 2000,
        seed: 5,
        ..Default::default()
    };
    let a = start(config.clone()).await;
    let b = start(config).await;
    let before = dump(&a);
    let rv_before = a.resource_version();
    let ra = a.churn(0.1, 9);
    let rb = b.churn(0.1, 9);
    assert_eq!(ra, rb);
    assert!(dump(&a) == dump(&b));
    assert_eq!(ra.modified.len(), 200);
    assert_eq!(ra.added.len(), 20);
    assert_eq!(ra.deleted.len(), 20);
    let old: std::collections::BTreeMap<_, _> = before.into_iter().collect();
    for k in &ra.modified {
        let now = a.object(k).unwrap();
        let then: serde_json::Value = serde_json::from_str(&old[k]).unwrap();
        let rv: u64 = now["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(rv > rv_before);
        assert_ne!(now, then);
        assert_eq!(now["metadata"]["uid"], then["metadata"]["uid"]);
    }
    for k in &ra.deleted {
        assert!(a.object(k).is_none());
    }
    for k in &ra.added {
        assert!(a.object(k).is_some());
    }
    // A different seed changes different objects.
    let rc = b.churn(0.1, 10);
    assert_ne!(rc.modified, ra.modified);
}
