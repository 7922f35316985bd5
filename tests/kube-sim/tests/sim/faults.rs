//! Every fault switches on and off.

use std::time::{Duration, Instant};

use crate::common::*;

#[tokio::test]
async fn authentication_is_required() {
    let server = start_n(100).await;
    for token in [None, Some("wrong")] {
        let (code, text) = raw(&server, &raw_get("/api/v1/namespaces", token))
            .await
            .unwrap();
        assert_eq!(code, 401);
        assert!(text.contains(r#""reason":"Unauthorized""#), "{text}");
    }
    let (code, _) = raw(
        &server,
        &raw_get("/api/v1/namespaces", Some("kube-sim-token")),
    )
    .await
    .unwrap();
    assert_eq!(code, 200);
}

#[tokio::test]
async fn forbidden_resources() {
    let server = start_n(600).await;
    let c = client(&server).await;
    server.faults().forbid("configmaps", true);
    let r = get(&c, "/api/v1/configmaps?limit=500").await;
    assert_eq!(r.status, 403);
    let s = r.json();
    assert_eq!(s["reason"], "Forbidden");
    assert_eq!(
        s["message"],
        r#"configmaps is forbidden: User "system:serviceaccount:kube-system:kube-autosave" cannot list resource "configmaps" in API group "" at the cluster scope"#
    );
    assert_eq!(s["details"]["kind"], "configmaps");
    let r = get(&c, "/api/v1/namespaces/kube-system/configmaps/coredns").await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json()["message"],
        r#"configmaps "coredns" is forbidden: User "system:serviceaccount:kube-system:kube-autosave" cannot get resource "configmaps" in API group "" in the namespace "kube-system""#
    );
    // Other resources are unaffected; a plural is denied in every group.
    assert_eq!(get(&c, "/api/v1/secrets").await.status, 200);
    server.faults().forbid("pods", true);
    assert_eq!(get(&c, "/api/v1/pods").await.status, 403);
    let r = get(&c, "/apis/metrics.k8s.io/v1beta1/pods").await;
    assert_eq!(r.status, 403);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains(r#"in API group "metrics.k8s.io""#)
    );
    server.faults().forbid("configmaps", false);
    assert_eq!(get(&c, "/api/v1/configmaps?limit=500").await.status, 200);
    assert_eq!(get(&c, "/api/v1/pods").await.status, 403);
    server.faults().clear();
    assert_eq!(get(&c, "/api/v1/pods").await.status, 200);
}

#[tokio::test]
async fn unavailable_group() {
    let server = start_n(300).await;
    let c = client(&server).await;
    server.faults().group_unavailable("apps", true);
    assert_eq!(get(&c, "/apis/apps/v1/deployments").await.status, 503);
    assert_eq!(get(&c, "/apis/apps/v1").await.status, 503);
    assert_eq!(get(&c, "/api/v1/pods").await.status, 200);
    server.faults().group_unavailable("apps", false);
    assert_eq!(get(&c, "/apis/apps/v1/deployments").await.status, 200);
}

#[tokio::test]
async fn throttling() {
    let server = start_n(100).await;
    let c = client(&server).await;
    server.faults().throttle(2, 3);
    for _ in 0..2 {
        let r = get(&c, "/api/v1/namespaces").await;
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after").as_deref(), Some("3"));
        let s = r.json();
        assert_eq!(s["reason"], "TooManyRequests");
        assert_eq!(s["details"]["retryAfterSeconds"], 3);
    }
    assert_eq!(get(&c, "/api/v1/namespaces").await.status, 200);
    server.faults().throttle(5, 1);
    server.faults().throttle(0, 1);
    assert_eq!(get(&c, "/api/v1/namespaces").await.status, 200);
    // kube's default client waits Retry-After and retries on its own.
    let retrying = client_with(&server, true).await;
    server.faults().throttle(1, 1);
    let t = Instant::now();
    assert_eq!(get(&retrying, "/api/v1/namespaces").await.status, 200);
    assert!(t.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn latency() {
    let server = start_n(100).await;
    let c = client(&server).await;
    server.faults().latency(Duration::from_millis(300));
    let t = Instant::now();
    assert_eq!(get(&c, "/api/v1/namespaces").await.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    server.faults().latency(Duration::ZERO);
    let t = Instant::now();
    assert_eq!(get(&c, "/api/v1/namespaces").await.status, 200);
    assert!(t.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn dropped_connection_mid_list() {
    let server = start_n(600).await;
    let c = client(&server).await;
    server.faults().drop_connection_after_pages(Some(1));
    let p1 = get_json(&c, "/api/v1/configmaps?limit=10").await;
    let token = urlencode(p1["metadata"]["continue"].as_str().unwrap());
    let path = format!("/api/v1/configmaps?limit=10&continue={token}");
    // The second page's connection closes without a response ...
    assert!(
        raw(&server, &raw_get(&path, Some("kube-sim-token")))
            .await
            .is_none()
    );
    // ... once: the retry succeeds.
    let (code, _) = raw(&server, &raw_get(&path, Some("kube-sim-token")))
        .await
        .unwrap();
    assert_eq!(code, 200);
    // Through kube the failure is a transport error, not an API error.
    server.faults().drop_connection_after_pages(Some(0));
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::all(c.clone());
    let err = api
        .list(&kube::api::ListParams::default().limit(10))
        .await
        .unwrap_err();
    assert!(!matches!(err, kube::Error::Api(_)), "{err}");
    assert_eq!(
        api.list(&kube::api::ListParams::default().limit(10))
            .await
            .unwrap()
            .items
            .len(),
        10
    );
    // Unpaged lists are never dropped; switched off, nothing is.
    server.faults().drop_connection_after_pages(Some(0));
    assert_eq!(get(&c, "/api/v1/namespaces").await.status, 200);
    server.faults().drop_connection_after_pages(None);
    assert_eq!(get(&c, "/api/v1/configmaps?limit=10").await.status, 200);
}
