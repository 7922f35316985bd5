//! Create, update, patch and delete, CRDs that add their API, and the create log.

use std::time::Duration;

use kube_sim::{ObjectKey, SimConfig};
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn create_update_delete() {
    let server = start(SimConfig {
        objects: 300,
        tls: true,
        ..Default::default()
    })
    .await;
    assert!(server.url().starts_with("https://"));
    let c = client(&server).await;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "restored", "namespace": "default", "labels": {"a": "b"}}, "data": {"k": "v"}});
    let r = send(
        &c,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        &[("Content-Type", "application/json")],
        Some(cm.clone()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let created = r.json();
    let meta = &created["metadata"];
    for f in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "managedFields",
    ] {
        assert!(meta.get(f).is_some(), "{f}");
    }
    assert_eq!(created["data"]["k"], "v");
    assert_eq!(created["kind"], "ConfigMap");
    // Again: 409 AlreadyExists.
    let r = send(
        &c,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        &[],
        Some(cm.clone()),
    )
    .await;
    assert_eq!(r.status, 409);
    let s = r.json();
    assert_eq!(s["reason"], "AlreadyExists");
    assert_eq!(s["message"], r#"configmaps "restored" already exists"#);
    // Missing namespace: 404 naming the namespace.
    let r = send(
        &c,
        "POST",
        "/api/v1/namespaces/nope/configmaps",
        &[],
        Some(json!({"metadata": {"name": "x"}, "data": {}})),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], r#"namespaces "nope" not found"#);
    // A create must not carry a resourceVersion (a restore has to strip it).
    let mut stale = cm.clone();
    stale["metadata"]["name"] = json!("with-rv");
    stale["metadata"]["resourceVersion"] = json!("123");
    stale["metadata"]["uid"] = json!("d3b07384-d9a0-4e6f-8b8c-1b2f4a7c9e01");
    let r = send(
        &c,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        &[],
        Some(stale.clone()),
    )
    .await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.json()["message"],
        "Internal error occurred: resourceVersion should not be set on objects to be created"
    );
    // Without it, a given uid is replaced by a new one.
    if let Some(m) = stale["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    let r = send(
        &c,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        &[],
        Some(stale),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_ne!(
        r.json()["metadata"]["uid"],
        "d3b07384-d9a0-4e6f-8b8c-1b2f4a7c9e01"
    );
    assert_eq!(
        send(
            &c,
            "DELETE",
            "/api/v1/namespaces/default/configmaps/with-rv",
            &[],
            None
        )
        .await
        .status,
        200
    );
    // Create the namespace, then the object in it; metadata without server fields is fine.
    let r = send(
        &c,
        "POST",
        "/api/v1/namespaces",
        &[],
        Some(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "nope"}})),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["status"]["phase"], "Active");
    let r = send(
        &c,
        "POST",
        "/api/v1/namespaces/nope/configmaps",
        &[],
        Some(json!({"metadata": {"name": "x"}, "data": {}})),
    )
    .await;
    assert_eq!(r.status, 201);
    // Update with a stale resourceVersion: 409 Conflict; without one: accepted.
    let mut updated = created.clone();
    updated["data"]["k"] = json!("v2");
    updated["metadata"]["resourceVersion"] = json!("1");
    let path = "/api/v1/namespaces/default/configmaps/restored";
    let r = send(&c, "PUT", path, &[], Some(updated.clone())).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["reason"], "Conflict");
    updated["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"].clone();
    let r = send(&c, "PUT", path, &[], Some(updated.clone())).await;
    assert_eq!(r.status, 200);
    let after = r.json();
    assert_eq!(after["data"]["k"], "v2");
    assert_eq!(after["metadata"]["uid"], created["metadata"]["uid"]);
    assert_ne!(
        after["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    if let Some(m) = updated["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    updated["data"]["k"] = json!("v3");
    assert_eq!(send(&c, "PUT", path, &[], Some(updated)).await.status, 200);
    // Merge patch.
    let r = send(
        &c,
        "PATCH",
        path,
        &[("Content-Type", "application/merge-patch+json")],
        Some(json!({"data": {"extra": "1"}})),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"], json!({"k": "v3", "extra": "1"}));
    // Delete, then 404.
    let r = send(&c, "DELETE", path, &[], None).await;
    assert_eq!(r.status, 200);
    let r = get(&c, path).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], r#"configmaps "restored" not found"#);
    // Group resources are qualified in messages.
    let r = get(&c, "/apis/apps/v1/namespaces/default/deployments/none").await;
    assert_eq!(r.json()["message"], r#"deployments.apps "none" not found"#);
    let log: Vec<String> = server
        .create_log()
        .iter()
        .map(|k| format!("{}/{}", k.resource, k.name))
        .collect();
    assert_eq!(
        log,
        vec![
            "configmaps/restored",
            "configmaps/with-rv",
            "namespaces/nope",
            "configmaps/x"
        ]
    );
    // Deleting a namespace removes what it holds.
    assert_eq!(
        send(&c, "DELETE", "/api/v1/namespaces/nope", &[], None)
            .await
            .status,
        200
    );
    assert!(stored_names(&server, "", "configmaps", Some("nope")).is_empty());
}

fn widget_crd() -> serde_json::Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"kind": "Widget", "listKind": "WidgetList", "plural": "widgets", "singular": "widget"},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}, "subresources": {"status": {}}}],
        },
    })
}

#[tokio::test]
async fn crd_before_its_custom_resources() {
    let server = start(SimConfig {
        empty: true,
        ..Default::default()
    })
    .await;
    let c = client(&server).await;
    let namespaces = stored_names(&server, "", "namespaces", None);
    assert_eq!(
        namespaces,
        vec!["default", "kube-node-lease", "kube-public", "kube-system"]
    );
    assert_eq!(server.objects().len(), 4);
    let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "default"}, "spec": {"color": "red"}, "status": {"phase": "Ready"}});
    let wpath = "/apis/example.com/v1/namespaces/default/widgets";
    assert_eq!(
        send(&c, "POST", wpath, &[], Some(widget.clone()))
            .await
            .status,
        404
    );
    let apis = get_json(&c, "/apis").await;
    assert!(
        !apis["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "example.com")
    );

    let r = send(
        &c,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        &[],
        Some(widget_crd()),
    )
    .await;
    assert_eq!(r.status, 201);
    let conditions = r.json()["status"]["conditions"].clone();
    assert!(
        conditions
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    );
    let apis = get_json(&c, "/apis").await;
    assert!(group_names(&apis).iter().any(|g| g == "example.com"));
    let rl = get_json(&c, "/apis/example.com/v1").await;
    assert_eq!(rl["resources"][0]["name"], "widgets");
    let r = send(&c, "POST", wpath, &[], Some(widget)).await;
    assert_eq!(r.status, 201);
    let w = r.json();
    assert_eq!(w["metadata"]["generation"], 1);
    // The status of a resource with a status subresource is not taken from a create.
    assert!(w.get("status").is_none());
    let list = get_json(&c, "/apis/example.com/v1/widgets").await;
    assert_eq!(list["items"][0]["kind"], "Widget");
    let log = server.create_log();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].resource, "customresourcedefinitions");
    assert_eq!(
        log[1],
        ObjectKey {
            group: "example.com".into(),
            version: "v1".into(),
            resource: "widgets".into(),
            kind: "Widget".into(),
            namespace: Some("default".into()),
            name: "w".into(),
        }
    );
    // kube sees the new group.
    let d = kube::discovery::Discovery::new(c.clone())
        .run()
        .await
        .unwrap();
    assert!(d.get("example.com").is_some());
    // Deleting the CRD removes the API and its objects.
    let r = send(
        &c,
        "DELETE",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(get(&c, "/apis/example.com/v1/widgets").await.status, 404);
    assert_eq!(server.objects().len(), 4);
}

#[tokio::test]
async fn crd_establishes_after_a_delay() {
    let server = start(SimConfig {
        empty: true,
        ..Default::default()
    })
    .await;
    server.set_crd_establish_delay(Duration::from_millis(300));
    let c = client(&server).await;
    let r = send(
        &c,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        &[],
        Some(widget_crd()),
    )
    .await;
    assert_eq!(r.status, 201);
    let established = |v: &serde_json::Value| {
        v["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    };
    assert!(!established(&r.json()));
    assert_eq!(get(&c, "/apis/example.com/v1/widgets").await.status, 404);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(get(&c, "/apis/example.com/v1/widgets").await.status, 200);
    let crd = get_json(
        &c,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
    )
    .await;
    assert!(established(&crd));
}

#[tokio::test]
async fn kube_api_round_trip() {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, PostParams};
    let server = start_n(300).await;
    let c = client(&server).await;
    let api: Api<Secret> = Api::namespaced(c.clone(), "default");
    let mut s = Secret::default();
    s.metadata.name = Some("from-kube".into());
    s.string_data = None;
    s.data = Some([("k".to_string(), k8s_openapi::ByteString(b"v".to_vec()))].into());
    let created = api.create(&PostParams::default(), &s).await.unwrap();
    assert!(created.metadata.uid.is_some());
    let err = api.create(&PostParams::default(), &s).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 409 && e.reason == "AlreadyExists"),
        "{err}"
    );
    let got = api.get("from-kube").await.unwrap();
    assert_eq!(
        got.metadata.resource_version,
        created.metadata.resource_version
    );
    api.delete("from-kube", &Default::default()).await.unwrap();
    assert!(api.get_opt("from-kube").await.unwrap().is_none());
}

/// Writes are recorded for the `fieldManager` they name (else the User-Agent's program), each
/// manager with the time of its last write, and a `fieldManager` the real server refuses
/// (too long, not printable) is a 422 Invalid of the write's options.
#[tokio::test]
async fn writes_are_recorded_for_their_field_manager() {
    let server = start(SimConfig {
        objects: 0,
        ..Default::default()
    })
    .await;
    let c = client(&server).await;
    let path = "/api/v1/namespaces/default/configmaps";
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "managed", "namespace": "default"}, "data": {"k": "1"}});
    let json_type = [("Content-Type", "application/json")];
    let r = send(
        &c,
        "POST",
        &format!("{path}?fieldManager=alice"),
        &json_type,
        Some(cm.clone()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let patch = [("Content-Type", "application/merge-patch+json")];
    let r = send(
        &c,
        "PATCH",
        &format!("{path}/managed?fieldManager=bob"),
        &patch,
        Some(json!({"data": {"k": "2"}})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let entries = r.json()["metadata"]["managedFields"].clone();
    let managers: Vec<(&str, &str)> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["manager"].as_str().unwrap(), e["time"].as_str().unwrap()))
        .collect();
    assert_eq!(managers.len(), 2, "{entries}");
    assert_eq!((managers[0].0, managers[1].0), ("alice", "bob"));
    assert!(managers[0].1 < managers[1].1, "{entries}");
    assert!(
        entries
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["operation"] == "Update")
    );

    for (manager, verb, kind) in [
        ("x".repeat(129), "PATCH", "PatchOptions"),
        ("tab%09bed".to_string(), "PUT", "UpdateOptions"),
    ] {
        let r = send(
            &c,
            verb,
            &format!("{path}/managed?fieldManager={manager}"),
            if verb == "PATCH" { &patch } else { &json_type },
            Some(if verb == "PATCH" {
                json!({"data": {"k": "3"}})
            } else {
                cm.clone()
            }),
        )
        .await;
        assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
        let message = r.json()["message"].as_str().unwrap().to_string();
        assert!(
            message.starts_with(&format!(
                "{kind}.meta.k8s.io \"\" is invalid: fieldManager: "
            )),
            "{message}"
        );
    }
}
