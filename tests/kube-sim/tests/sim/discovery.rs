//! Discovery: the derived documents have the shape of the recorded ones, they agree with
//! each other, and kube's `Discovery` finds every group.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::*;

/// Field names in order, with the JSON type of each value.
fn shape(v: &Value) -> Vec<(String, &'static str)> {
    let ty = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    v.as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), ty(v))).collect())
        .unwrap_or_default()
}

/// Group-version documents sampled for the field-by-field comparison.
const SAMPLE: &[&str] = &[
    "apps/v1",
    "batch/v1",
    "rbac.authorization.k8s.io/v1",
    "networking.k8s.io/v1",
    "coordination.k8s.io/v1",
    "events.k8s.io/v1",
    "policy/v1",
    "autoscaling/v1",
    "autoscaling/v2",
    "apiextensions.k8s.io/v1",
    "apiregistration.k8s.io/v1",
    "discovery.k8s.io/v1",
    "scheduling.k8s.io/v1",
    "node.k8s.io/v1",
    "storage.k8s.io/v1",
    "certificates.k8s.io/v1",
    "admissionregistration.k8s.io/v1",
    "authentication.k8s.io/v1",
    "authorization.k8s.io/v1",
    "flowcontrol.apiserver.k8s.io/v1",
];

#[tokio::test]
async fn legacy_documents_have_the_recorded_shape() {
    let server = start_n(200).await;
    let c = client(&server).await;

    // /api/v1 is derived from api__v1.json and must reproduce it exactly.
    assert_eq!(get_json(&c, "/api/v1").await, fixture("api__v1.json"));

    // /api: the recorded document with this server's address.
    let api = get_json(&c, "/api").await;
    let recorded = fixture("api.json");
    assert_eq!(shape(&api), shape(&recorded));
    assert_eq!(api["versions"], recorded["versions"]);
    assert_eq!(
        api["serverAddressByClientCIDRs"][0]["serverAddress"],
        Value::String(server.addr().to_string())
    );

    // /apis: the recorded group list (same era as aggregated_v2.json), plus the CRD group
    // and the aggregated metrics group at the end.
    let apis = get_json(&c, "/apis").await;
    let recorded = fixture("apis.json");
    assert_eq!(shape(&apis), shape(&recorded));
    let ours = group_names(&apis);
    let theirs = group_names(&recorded);
    assert_eq!(&ours[..theirs.len()], &theirs[..]);
    assert_eq!(
        &ours[theirs.len()..],
        &["example.com", kube_sim::MONITORING_GROUP, "metrics.k8s.io"]
    );
    for (a, b) in apis["groups"]
        .as_array()
        .unwrap()
        .iter()
        .zip(recorded["groups"].as_array().unwrap())
    {
        assert_eq!(shape(a), shape(b), "group entry {}", a["name"]);
        assert_eq!(
            a["preferredVersion"], b["preferredVersion"],
            "preferred version of {}",
            a["name"]
        );
        assert_eq!(shape(&a["preferredVersion"]), shape(&b["preferredVersion"]));
    }

    for gv in SAMPLE {
        let (group, _version) = gv.split_once('/').unwrap();
        // /apis/<group>
        let ours = get_json(&c, &format!("/apis/{group}")).await;
        let recorded = fixture(&format!("apis__{group}.json"));
        assert_eq!(shape(&ours), shape(&recorded), "/apis/{group}");
        assert_eq!(ours["name"], recorded["name"]);
        assert_eq!(shape(&ours["versions"][0]), shape(&recorded["versions"][0]));

        // /apis/<group>/<version>, field by field for every resource both list.
        let ours = get_json(&c, &format!("/apis/{gv}")).await;
        let recorded = fixture(&format!("apis__{}.json", gv.replace('/', "__")));
        assert_eq!(shape(&ours), shape(&recorded), "/apis/{gv}");
        assert_eq!(ours["groupVersion"], recorded["groupVersion"]);
        let mine = ours["resources"].as_array().unwrap();
        let theirs = recorded["resources"].as_array().unwrap();
        let mut compared = 0;
        for r in theirs {
            let Some(m) = mine.iter().find(|m| m["name"] == r["name"]) else {
                continue; // added or removed between the recorded versions
            };
            compared += 1;
            let mut ours_keys = shape(m);
            let mut their_keys = shape(r);
            // storageVersionHash depends on the storage version of the recording's era.
            ours_keys.retain(|(k, _)| k != "storageVersionHash");
            their_keys.retain(|(k, _)| k != "storageVersionHash");
            assert_eq!(ours_keys, their_keys, "{gv} {}", r["name"]);
            for field in [
                "kind",
                "namespaced",
                "singularName",
                "verbs",
                "shortNames",
                "categories",
                "group",
                "version",
            ] {
                assert_eq!(m.get(field), r.get(field), "{gv} {} {field}", r["name"]);
            }
            assert_eq!(
                m.get("storageVersionHash").is_some(),
                r.get("storageVersionHash").is_some(),
                "{gv} {} storageVersionHash presence",
                r["name"]
            );
        }
        assert!(compared > 0, "{gv}: nothing in common with the recording");
    }
}

#[tokio::test]
async fn aggregated_discovery_agrees_with_legacy_documents() {
    let server = start_n(200).await;
    let c = client(&server).await;
    for path in ["/api", "/apis"] {
        let r = send(
            &c,
            "GET",
            path,
            &[("Accept", &format!("{AGGREGATED_ACCEPT},application/json"))],
            None,
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-type").as_deref(),
            Some(AGGREGATED_ACCEPT),
            "{path}"
        );
        let doc = r.json();
        assert_eq!(doc["kind"], "APIGroupDiscoveryList");
        assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2");
        for g in doc["items"].as_array().unwrap() {
            let group = g["metadata"]["name"].as_str().unwrap_or_default();
            for v in g["versions"].as_array().unwrap() {
                assert_eq!(v["freshness"], "Current");
                let version = v["version"].as_str().unwrap();
                let legacy_path = if group.is_empty() {
                    format!("/api/{version}")
                } else {
                    format!("/apis/{group}/{version}")
                };
                let legacy = get_json(&c, &legacy_path).await;
                let mut expected = BTreeSet::new();
                for r in legacy["resources"].as_array().unwrap() {
                    expected.insert((
                        r["name"].as_str().unwrap().to_string(),
                        r["kind"].as_str().unwrap().to_string(),
                        r["verbs"].to_string(),
                        r["namespaced"].as_bool().unwrap(),
                    ));
                }
                let mut got = BTreeSet::new();
                for r in v["resources"].as_array().unwrap() {
                    let name = r["resource"].as_str().unwrap().to_string();
                    let namespaced = r["scope"] == "Namespaced";
                    got.insert((
                        name.clone(),
                        r["responseKind"]["kind"].as_str().unwrap().to_string(),
                        r["verbs"].to_string(),
                        namespaced,
                    ));
                    for s in r["subresources"].as_array().into_iter().flatten() {
                        got.insert((
                            format!("{name}/{}", s["subresource"].as_str().unwrap()),
                            s["responseKind"]["kind"].as_str().unwrap().to_string(),
                            s["verbs"].to_string(),
                            namespaced,
                        ));
                    }
                }
                assert_eq!(got, expected, "{legacy_path}");
            }
        }
        if path == "/apis" {
            let names: Vec<&str> = doc["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g["metadata"]["name"].as_str().unwrap())
                .collect();
            assert!(names.contains(&"example.com") && names.contains(&"metrics.k8s.io"));
            // The recorded built-in part is reproduced exactly.
            let recorded = fixture("aggregated_v2.json");
            let n = recorded["items"].as_array().unwrap().len();
            assert_eq!(
                doc["items"].as_array().unwrap()[..n],
                recorded["items"].as_array().unwrap()[..]
            );
        }
    }
    // The legacy document is the default.
    let r = get(&c, "/apis").await;
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(r.json()["kind"], "APIGroupList");
}

#[tokio::test]
async fn kube_discovery_finds_every_group() {
    let server = start_n(200).await;
    let c = client(&server).await;
    let apis = get_json(&c, "/apis").await;
    let mut expected: BTreeSet<String> = group_names(&apis).into_iter().collect();
    expected.insert(String::new());

    let d = kube::discovery::Discovery::new(c.clone())
        .run()
        .await
        .expect("discovery");
    let found: BTreeSet<String> = d.groups().map(|g| g.name().to_string()).collect();
    assert_eq!(found, expected);
    let apps = d.get("apps").unwrap();
    assert!(apps.recommended_kind("Deployment").is_some());
    let widgets = d
        .get("example.com")
        .unwrap()
        .recommended_kind("Widget")
        .unwrap();
    assert_eq!(widgets.0.plural, "widgets");
    let metrics = d.get("metrics.k8s.io").unwrap();
    assert_eq!(metrics.preferred_version(), Some("v1beta1"));

    let d = kube::discovery::Discovery::new(c.clone())
        .run_aggregated()
        .await
        .expect("aggregated discovery");
    let found: BTreeSet<String> = d.groups().map(|g| g.name().to_string()).collect();
    assert_eq!(found, expected);
    assert_eq!(
        d.get("autoscaling").unwrap().preferred_version(),
        Some("v2")
    );
}

#[tokio::test]
async fn unavailable_aggregated_group() {
    let server = start_n(300).await;
    let c = client(&server).await;
    assert_eq!(
        get(&c, "/apis/metrics.k8s.io/v1beta1/nodes").await.status,
        200
    );
    let pods = get_json(
        &c,
        "/apis/metrics.k8s.io/v1beta1/namespaces/kube-system/pods",
    )
    .await;
    assert_eq!(pods["kind"], "PodMetricsList");
    assert!(!pods["items"].as_array().unwrap().is_empty());

    server.faults().group_unavailable("metrics.k8s.io", true);
    // Still listed, as the aggregator lists every registered APIService.
    let apis = get_json(&c, "/apis").await;
    assert!(group_names(&apis).iter().any(|g| g == "metrics.k8s.io"));
    assert_eq!(get(&c, "/apis/metrics.k8s.io").await.status, 200);
    for path in [
        "/apis/metrics.k8s.io/v1beta1",
        "/apis/metrics.k8s.io/v1beta1/nodes",
        "/apis/metrics.k8s.io/v1beta1/namespaces/kube-system/pods",
    ] {
        let r = get(&c, path).await;
        assert_eq!(r.status, 503, "{path}");
        let s = r.json();
        assert_eq!(s["kind"], "Status");
        assert_eq!(s["reason"], "ServiceUnavailable");
        assert_eq!(
            s["message"],
            "the server is currently unable to handle the request"
        );
        assert_eq!(s["code"], 503);
    }
    // Aggregated discovery keeps the last known resources, marked stale.
    let agg = send(&c, "GET", "/apis", &[("Accept", AGGREGATED_ACCEPT)], None)
        .await
        .json();
    let m = agg["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metadata"]["name"] == "metrics.k8s.io")
        .unwrap();
    assert_eq!(m["versions"][0]["freshness"], "Stale");
    assert_eq!(m["versions"][0]["resources"].as_array().unwrap().len(), 2);

    // kube's legacy discovery fails as a whole on the 503 (it queries every group) ...
    let err = kube::discovery::Discovery::new(c.clone())
        .run()
        .await
        .err()
        .expect("discovery fails");
    match err {
        kube::Error::Api(s) => assert_eq!(s.code, 503),
        other => panic!("unexpected error: {other}"),
    }
    // ... unless the group is excluded; aggregated discovery does not look at freshness.
    let d = kube::discovery::Discovery::new(c.clone())
        .exclude(&["metrics.k8s.io"])
        .run()
        .await
        .expect("discovery without the metrics group");
    assert!(d.get("apps").is_some());
    let d = kube::discovery::Discovery::new(c.clone())
        .run_aggregated()
        .await
        .unwrap();
    assert!(d.get("metrics.k8s.io").is_some());

    server.faults().group_unavailable("metrics.k8s.io", false);
    assert_eq!(get(&c, "/apis/metrics.k8s.io/v1beta1").await.status, 200);
    kube::discovery::Discovery::new(c.clone())
        .run()
        .await
        .expect("discovery works again");
}
