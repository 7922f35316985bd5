//! Lists: every object exactly once for every page size, real list metadata, snapshot
//! semantics under concurrent writes, selectors, and expiring continue tokens.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::*;

#[tokio::test]
async fn every_object_exactly_once_for_every_page_size() {
    let server = start_n(1500).await;
    let c = client(&server).await;
    let collections = [
        ("/api/v1/configmaps", "", "configmaps", None),
        ("/api/v1/pods", "", "pods", None),
        ("/apis/apps/v1/replicasets", "apps", "replicasets", None),
        (
            "/api/v1/namespaces/kube-system/configmaps",
            "",
            "configmaps",
            Some("kube-system"),
        ),
        ("/api/v1/namespaces", "", "namespaces", None),
        (
            "/apis/example.com/v1/widgets",
            "example.com",
            "widgets",
            None,
        ),
    ];
    for (path, group, resource, ns) in collections {
        let expected = stored_names(&server, group, resource, ns);
        assert!(!expected.is_empty(), "{path} is empty");
        // Unpaged: the whole collection, ordered by namespace then name.
        let all = get_json(&c, path).await;
        let all_names = names(all["items"].as_array().unwrap());
        assert_eq!(all_names, expected, "{path}");
        assert!(all["metadata"].get("continue").is_none());
        for limit in [1, 2, 3, 7, 50, 499, 500, 501, 100_000] {
            if limit == 1 && expected.len() > 400 {
                continue; // one request per object: covered by the smaller collections
            }
            let (items, metas) = list_paged(&c, path, limit).await;
            let got = names(&items);
            assert_eq!(got, expected, "{path} limit={limit}");
            let unique: BTreeSet<&String> = got.iter().collect();
            assert_eq!(unique.len(), got.len(), "{path} limit={limit}: duplicates");
            assert_eq!(
                metas.len(),
                expected.len().div_ceil(limit),
                "{path} limit={limit}: pages"
            );
            let mut seen = 0;
            for (i, m) in metas.iter().enumerate() {
                assert!(
                    m["resourceVersion"]
                        .as_str()
                        .is_some_and(|rv| !rv.is_empty())
                );
                seen += if i + 1 < metas.len() {
                    limit
                } else {
                    expected.len() - seen
                };
                if i + 1 < metas.len() {
                    assert_eq!(
                        m["remainingItemCount"],
                        Value::from(expected.len() - seen),
                        "{path} limit={limit} page {i}"
                    );
                    assert!(m["continue"].is_string());
                } else {
                    assert!(m.get("remainingItemCount").is_none());
                    assert!(m.get("continue").is_none());
                }
            }
        }
    }
}

#[tokio::test]
async fn list_shape_matches_the_real_server() {
    let server = start_n(800).await;
    let c = client(&server).await;
    let r = get(&c, "/api/v1/configmaps?limit=5").await;
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    let text = String::from_utf8_lossy(&r.body).to_string();
    assert!(
        text.starts_with(
            r#"{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":""#
        ),
        "{text:.120}"
    );
    let list = r.json();
    for item in list["items"].as_array().unwrap() {
        // Built-in items carry no type information in a list.
        assert!(item.get("apiVersion").is_none() && item.get("kind").is_none());
        let m = &item["metadata"];
        for f in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
        ] {
            assert!(m.get(f).is_some(), "{f} missing in {m}");
        }
    }
    let deployments = get_json(&c, "/apis/apps/v1/deployments").await;
    assert_eq!(deployments["kind"], "DeploymentList");
    assert_eq!(deployments["apiVersion"], "apps/v1");
    // Custom resources do carry them.
    let widgets = get_json(&c, "/apis/example.com/v1/widgets").await;
    assert_eq!(widgets["kind"], "WidgetList");
    for w in widgets["items"].as_array().unwrap() {
        assert_eq!(w["apiVersion"], "example.com/v1");
        assert_eq!(w["kind"], "Widget");
    }
    // events.k8s.io serves the stored core events, converted.
    let core = get_json(&c, "/api/v1/events").await;
    let v1 = get_json(&c, "/apis/events.k8s.io/v1/events").await;
    assert_eq!(
        names(core["items"].as_array().unwrap()),
        names(v1["items"].as_array().unwrap())
    );
    let (a, b) = (&core["items"][0], &v1["items"][0]);
    assert_eq!(a["message"], b["note"]);
    assert_eq!(a["involvedObject"], b["regarding"]);
    // A GET returns the object with its type.
    let key = server
        .objects()
        .into_iter()
        .find(|k| k.resource == "deployments")
        .unwrap();
    let path = format!(
        "/apis/apps/v1/namespaces/{}/deployments/{}",
        key.namespace.as_deref().unwrap(),
        key.name
    );
    let obj = get_json(&c, &path).await;
    assert_eq!(obj["kind"], "Deployment");
    assert_eq!(obj["apiVersion"], "apps/v1");
    assert_eq!(Some(obj.clone()), server.object(&key));
    // Objects owned by controllers say so.
    let owner = &obj["metadata"].get("ownerReferences");
    assert!(owner.is_none());
    let rs = get_json(&c, "/apis/apps/v1/replicasets?limit=1").await;
    let refs = &rs["items"][0]["metadata"]["ownerReferences"][0];
    assert_eq!(refs["kind"], "Deployment");
    assert_eq!(refs["controller"], true);
}

#[tokio::test]
async fn continued_lists_show_the_snapshot_they_started_from() {
    let server = start_n(1000).await;
    let c = client(&server).await;
    let before = stored_names(&server, "", "configmaps", None);
    let first = get_json(&c, "/api/v1/configmaps?limit=40").await;
    let rv = first["metadata"]["resourceVersion"].clone();
    let mut items = first["items"].as_array().unwrap().clone();
    let mut cont = first["metadata"]["continue"].as_str().map(str::to_string);
    let mut round = 0;
    while let Some(token) = cont {
        // Writes between pages: modified, added and deleted objects.
        server.churn(0.05, round);
        round += 1;
        let page = get_json(
            &c,
            &format!("/api/v1/configmaps?limit=40&continue={}", urlencode(&token)),
        )
        .await;
        assert_eq!(page["metadata"]["resourceVersion"], rv);
        items.extend(page["items"].as_array().unwrap().clone());
        cont = page["metadata"]["continue"].as_str().map(str::to_string);
    }
    assert_eq!(
        names(&items),
        before,
        "the paged list is the snapshot at its first page"
    );
    let start: u64 = rv.as_str().unwrap().parse().unwrap();
    for i in &items {
        let item_rv: u64 = i["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(item_rv <= start);
    }
    // A new list sees the changes.
    let after = get_json(&c, "/api/v1/configmaps").await;
    assert_eq!(
        names(after["items"].as_array().unwrap()),
        stored_names(&server, "", "configmaps", None)
    );
    assert_ne!(stored_names(&server, "", "configmaps", None), before);
}

#[tokio::test]
async fn continue_token_expires_after_k_pages() {
    let server = start_n(600).await;
    let c = client(&server).await;
    server.faults().expire_continue_after(Some(2));
    let p1 = get_json(&c, "/api/v1/configmaps?limit=10").await;
    let t1 = p1["metadata"]["continue"].as_str().unwrap().to_string();
    let p2 = get_json(
        &c,
        &format!("/api/v1/configmaps?limit=10&continue={}", urlencode(&t1)),
    )
    .await;
    let t2 = p2["metadata"]["continue"].as_str().unwrap().to_string();
    let r = get(
        &c,
        &format!("/api/v1/configmaps?limit=10&continue={}", urlencode(&t2)),
    )
    .await;
    assert_eq!(r.status, 410);
    let s = r.json();
    assert_eq!(s["kind"], "Status");
    assert_eq!(s["apiVersion"], "v1");
    assert_eq!(s["status"], "Failure");
    assert_eq!(s["reason"], "Expired");
    assert_eq!(s["code"], 410);
    assert_eq!(
        s["message"],
        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list."
    );
    // The token in the Status continues where the expired one would have.
    let fresh = s["metadata"]["continue"].as_str().unwrap();
    let p3 = get_json(
        &c,
        &format!("/api/v1/configmaps?limit=10&continue={}", urlencode(fresh)),
    )
    .await;
    let mut expected_names = stored_names(&server, "", "configmaps", None);
    expected_names.truncate(30);
    let got: Vec<String> = [&p1, &p2, &p3]
        .iter()
        .flat_map(|p| names(p["items"].as_array().unwrap()))
        .collect();
    assert_eq!(got, expected_names);
    // Through kube: the error is an API error with reason Expired.
    let api: kube::Api<kube::api::DynamicObject> = kube::Api::all_with(
        c.clone(),
        &kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
    );
    let err = api
        .list(
            &kube::api::ListParams::default()
                .limit(10)
                .continue_token(&t2),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(e) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
        }
        other => panic!("unexpected {other}"),
    }
    // Switched off: old tokens work again.
    server.faults().expire_continue_after(None);
    assert_eq!(
        get(
            &c,
            &format!("/api/v1/configmaps?limit=10&continue={}", urlencode(&t2))
        )
        .await
        .status,
        200
    );
    // A compaction expires every outstanding token for real.
    server.compact();
    assert_eq!(
        get(
            &c,
            &format!("/api/v1/configmaps?limit=10&continue={}", urlencode(&t1))
        )
        .await
        .status,
        410
    );
    // A malformed token is a bad request.
    assert_eq!(
        get(&c, "/api/v1/configmaps?limit=10&continue=garbage")
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn selectors() {
    let server = start_n(1000).await;
    let c = client(&server).await;
    let pods = get_json(&c, "/api/v1/pods").await;
    let items = pods["items"].as_array().unwrap();
    let with = |f: &dyn Fn(&Value) -> bool| -> Vec<String> {
        names(
            &items
                .iter()
                .filter(|i| f(&i["metadata"]["labels"]))
                .cloned()
                .collect::<Vec<_>>(),
        )
    };
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("k8s-app=kube-dns", with(&|l| l["k8s-app"] == "kube-dns")),
        ("k8s-app!=kube-dns", with(&|l| l["k8s-app"] != "kube-dns")),
        (
            "pod-template-hash",
            with(&|l| l.get("pod-template-hash").is_some()),
        ),
        (
            "!pod-template-hash",
            with(&|l| l.get("pod-template-hash").is_none()),
        ),
        (
            "app.kubernetes.io/name in (api,web)",
            with(&|l| l["app.kubernetes.io/name"] == "api" || l["app.kubernetes.io/name"] == "web"),
        ),
        (
            "app.kubernetes.io/name notin (api,web)",
            with(&|l| l["app.kubernetes.io/name"] != "api" && l["app.kubernetes.io/name"] != "web"),
        ),
    ];
    for (sel, expected) in cases {
        assert!(!expected.is_empty(), "{sel} matches nothing");
        let (got, metas) = list_paged(
            &c,
            &format!("/api/v1/pods?labelSelector={}", urlencode(sel)),
            7,
        )
        .await;
        assert_eq!(names(&got), expected, "{sel}");
        // No remaining count with a selector, as on the real server.
        assert!(metas.iter().all(|m| m.get("remainingItemCount").is_none()));
    }
    let first = &names(items)[0];
    let (ns, name) = first.split_once('/').unwrap();
    let one = get_json(
        &c,
        &format!("/api/v1/pods?fieldSelector=metadata.name%3D{name}"),
    )
    .await;
    assert!(names(one["items"].as_array().unwrap()).contains(first));
    let in_ns = get_json(
        &c,
        &format!("/api/v1/pods?fieldSelector=metadata.namespace%3D{ns}"),
    )
    .await;
    assert_eq!(
        names(in_ns["items"].as_array().unwrap()),
        stored_names(&server, "", "pods", Some(ns))
    );
    assert_eq!(
        get(&c, "/api/v1/pods?labelSelector=a%20b%20c").await.status,
        400
    );
    // Other fields, as kubectl describe and node-scoped clients use them.
    let node = items[0]["spec"]["nodeName"].as_str().unwrap();
    let on_node = get_json(
        &c,
        &format!("/api/v1/pods?fieldSelector=spec.nodeName%3D{node}"),
    )
    .await;
    let expected: Vec<String> = names(
        &items
            .iter()
            .filter(|p| p["spec"]["nodeName"] == node)
            .cloned()
            .collect::<Vec<_>>(),
    );
    assert_eq!(names(on_node["items"].as_array().unwrap()), expected);
    let events = get_json(&c, "/api/v1/events").await;
    let first = &events["items"][0]["involvedObject"];
    let sel = format!(
        "involvedObject.name={},involvedObject.namespace={},involvedObject.kind={}",
        first["name"].as_str().unwrap(),
        first["namespace"].as_str().unwrap(),
        first["kind"].as_str().unwrap()
    );
    let about = get_json(
        &c,
        &format!("/api/v1/events?fieldSelector={}", urlencode(&sel)),
    )
    .await;
    let about = about["items"].as_array().unwrap();
    assert!(!about.is_empty());
    assert!(
        about
            .iter()
            .all(|e| e["involvedObject"]["name"] == first["name"])
    );
}

/// What a snapshot client does: discover every listable resource (at its most stable
/// version: some are served only at a version other than their group's preferred one) and
/// page through each with kube's dynamic API; every stored object comes back exactly once.
#[tokio::test]
async fn kube_dynamic_lists_cover_every_object() {
    use kube::api::{Api, DynamicObject, ListParams};
    use kube::discovery::{Discovery, verbs};
    let server = start_n(1200).await;
    let c = client(&server).await;
    let discovery = Discovery::new(c.clone())
        .exclude(&["metrics.k8s.io", "events.k8s.io"])
        .run()
        .await
        .unwrap();
    let mut seen = BTreeSet::new();
    for group in discovery.groups() {
        for (ar, caps) in group.resources_by_stability() {
            if !caps.supports_operation(verbs::LIST) {
                continue;
            }
            let api: Api<DynamicObject> = Api::all_with(c.clone(), &ar);
            let mut params = ListParams::default().limit(50);
            loop {
                let page = api.list(&params).await.unwrap();
                for o in &page.items {
                    let key = (
                        ar.group.clone(),
                        ar.plural.clone(),
                        o.metadata.namespace.clone(),
                        o.metadata.name.clone().unwrap(),
                    );
                    assert!(seen.insert(key.clone()), "twice: {key:?}");
                }
                match page.metadata.continue_ {
                    Some(t) if !t.is_empty() => params = params.continue_token(&t),
                    _ => break,
                }
            }
        }
    }
    let stored: BTreeSet<_> = server
        .objects()
        .into_iter()
        .map(|k| (k.group, k.resource, k.namespace, Some(k.name)))
        .collect();
    let seen: BTreeSet<_> = seen
        .into_iter()
        .map(|(g, r, ns, n)| (g, r, ns, Some(n)))
        .collect();
    assert_eq!(seen, stored);
}

#[tokio::test]
async fn metadata_only_lists_and_gets_carry_each_objects_metadata_and_nothing_else() {
    let server = start_n(800).await;
    let c = client(&server).await;
    let metadata_accept =
        "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
    for path in [
        "/api/v1/configmaps",
        "/apis/apps/v1/deployments",
        "/api/v1/namespaces",
    ] {
        let full = get_json(&c, path).await;
        let partial = send(&c, "GET", path, &[("Accept", metadata_accept)], None).await;
        assert_eq!(partial.status, 200);
        let partial = partial.json();
        assert_eq!(partial["kind"], "PartialObjectMetadataList", "{path}");
        assert_eq!(partial["apiVersion"], "meta.k8s.io/v1");
        let (full_items, partial_items) = (
            full["items"].as_array().unwrap(),
            partial["items"].as_array().unwrap(),
        );
        assert!(!full_items.is_empty());
        assert_eq!(full_items.len(), partial_items.len(), "{path}");
        for (f, p) in full_items.iter().zip(partial_items) {
            assert_eq!(p["kind"], "PartialObjectMetadata");
            assert_eq!(p["metadata"], f["metadata"], "{path}");
            assert_eq!(p.as_object().unwrap().len(), 3, "{path}: {p}");
        }
        // One object, as metadata only.
        let first = &full_items[0]["metadata"];
        let (prefix, resource) = path.rsplit_once('/').unwrap();
        let object_path = match first["namespace"].as_str() {
            Some(ns) => format!("{prefix}/namespaces/{ns}/{resource}"),
            None => path.to_string(),
        };
        let one = send(
            &c,
            "GET",
            &format!("{object_path}/{}", first["name"].as_str().unwrap()),
            &[(
                "Accept",
                "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
            )],
            None,
        )
        .await;
        assert_eq!(one.status, 200, "{object_path}");
        assert_eq!(one.json()["metadata"], *first);
    }
    // A server that cannot render metadata only answers with the full list.
    let served = server.served();
    server.faults().full_lists_only(true);
    let partial = send(
        &c,
        "GET",
        "/api/v1/configmaps",
        &[("Accept", metadata_accept)],
        None,
    )
    .await
    .json();
    assert_eq!(partial["kind"], "ConfigMapList");
    let served = server.served() - served;
    assert_eq!(served.metadata_list_items, 0);
    assert_eq!(
        served.full_list_items,
        partial["items"].as_array().unwrap().len() as u64
    );
}
