//! Watches: resuming from a resource version, the 410 of a too-old one, bookmarks,
//! metadata-only events, selectors, churn's events, broken connections, and kube's own
//! watch client reading the stream.

use std::time::Duration;

use http_body_util::BodyExt;
use kube_sim::{EventKind, SimServer};
use serde_json::{Value, json};

use crate::common::*;

const METADATA_ACCEPT: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

/// What reading a watch gave.
#[derive(Debug)]
enum Next {
    Event(Value),
    /// The response ended (its last chunk arrived): a timeout or the end of the watch.
    End,
    /// The connection dropped mid-stream.
    Broken,
    /// Nothing within the wait.
    Quiet,
}

/// An open watch, read one event (line) at a time.
struct Watching {
    body: kube::client::Body,
    buf: Vec<u8>,
    ended: bool,
}

impl Watching {
    async fn open(client: &kube::Client, path: &str, headers: &[(&str, &str)]) -> Watching {
        let mut b = hyper::Request::builder().method("GET").uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let resp = client
            .send(b.body(kube::client::Body::from(Vec::new())).unwrap())
            .await
            .expect("watch request sent");
        assert_eq!(resp.status().as_u16(), 200, "GET {path}");
        assert_eq!(
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
        Watching {
            body: resp.into_body(),
            buf: Vec::new(),
            ended: false,
        }
    }

    async fn next(&mut self, within: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return Next::Event(
                    serde_json::from_slice(&line)
                        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&line))),
                );
            }
            if self.ended {
                return Next::End;
            }
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => return Next::Quiet,
                Ok(None) => self.ended = true,
                Ok(Some(Err(_))) => return Next::Broken,
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// Every event until the stream ends (it must, within 10 s).
    async fn until_end(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            match self.next(Duration::from_secs(10)).await {
                Next::Event(e) => out.push(e),
                Next::End => return out,
                other => panic!("the watch did not end: {other:?} after {out:?}"),
            }
        }
    }

    /// The next `n` events (within 10 s).
    async fn take(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        while out.len() < n {
            match self.next(Duration::from_secs(10)).await {
                Next::Event(e) => out.push(e),
                other => panic!("expected {n} events, got {other:?} after {out:?}"),
            }
        }
        out
    }
}

/// `TYPE namespace/name rv` of watch events.
fn summary(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let m = &e["object"]["metadata"];
            format!(
                "{} {}/{} {}",
                e["type"].as_str().unwrap_or_default(),
                m["namespace"].as_str().unwrap_or_default(),
                m["name"].as_str().unwrap_or_default(),
                m["resourceVersion"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

/// The same for the server's own event log, of one resource after a revision.
fn logged(server: &SimServer, resource: &str, after: u64) -> Vec<String> {
    server
        .events()
        .into_iter()
        .filter(|e| e.key.resource == resource && e.rv > after)
        .map(|e| {
            format!(
                "{} {}/{} {}",
                e.kind.as_str(),
                e.key.namespace.unwrap_or_default(),
                e.key.name,
                e.rv
            )
        })
        .collect()
}

async fn write(c: &kube::Client, method: &str, path: &str, body: Value) -> Value {
    let content_type = if method == "PATCH" {
        "application/merge-patch+json"
    } else {
        "application/json"
    };
    let r = send(
        c,
        method,
        path,
        &[("Content-Type", content_type)],
        Some(body),
    )
    .await;
    assert!(
        r.status < 300,
        "{method} {path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()
}

fn config_map(ns: &str, name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns, "labels": labels}, "data": {"k": "v"}})
}

fn rv_of(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("a resource version")
}

#[tokio::test]
async fn resume_gets_exactly_the_changes_after_in_order() {
    let server = start_n(300).await;
    let c = client(&server).await;
    let list = get_json(&c, "/api/v1/configmaps").await;
    let from = rv_of(&list);
    let cms = "/api/v1/namespaces/default/configmaps";
    write(&c, "POST", cms, config_map("default", "a", json!({}))).await;
    write(
        &c,
        "PUT",
        &format!("{cms}/a"),
        config_map("default", "a", json!({"x": "1"})),
    )
    .await;
    write(
        &c,
        "POST",
        "/api/v1/namespaces/default/secrets",
        json!({"metadata": {"name": "s"}}),
    )
    .await;
    write(
        &c,
        "PATCH",
        &format!("{cms}/a"),
        json!({"data": {"k": "w"}}),
    )
    .await;
    let r = send(&c, "DELETE", &format!("{cms}/a"), &[], None).await;
    assert_eq!(r.status, 200);
    write(
        &c,
        "POST",
        "/api/v1/namespaces/kube-public/configmaps",
        config_map("kube-public", "b", json!({})),
    )
    .await;

    let mut w = Watching::open(
        &c,
        &format!("/api/v1/configmaps?watch=1&resourceVersion={from}&timeoutSeconds=1"),
        &[],
    )
    .await;
    let events = w.until_end().await;
    let got = summary(&events);
    let kinds: Vec<&str> = got.iter().map(|s| s.split(' ').next().unwrap()).collect();
    assert_eq!(
        kinds,
        ["ADDED", "MODIFIED", "MODIFIED", "DELETED", "ADDED"],
        "{got:?}"
    );
    assert_eq!(got, logged(&server, "configmaps", from));
    // Objects are typed, as a GET returns them; a deletion carries the last state at the
    // revision of the deletion.
    for e in &events {
        assert_eq!(e["object"]["kind"], "ConfigMap");
        assert_eq!(e["object"]["apiVersion"], "v1");
    }
    assert_eq!(events[3]["object"]["data"]["k"], "w");
    let rvs: Vec<u64> = events.iter().map(|e| rv_of(&e["object"])).collect();
    assert!(rvs.windows(2).all(|p| p[0] < p[1]), "{rvs:?}");

    // From the revision of the third event: the last two; per namespace and under the
    // deprecated `/watch/` path, only that namespace's.
    let mut w = Watching::open(
        &c,
        &format!(
            "/api/v1/configmaps?watch=true&resourceVersion={}&timeoutSeconds=1",
            rvs[2]
        ),
        &[],
    )
    .await;
    assert_eq!(summary(&w.until_end().await), got[3..]);
    let mut w = Watching::open(
        &c,
        &format!(
            "/api/v1/watch/namespaces/kube-public/configmaps?resourceVersion={from}&timeoutSeconds=1"
        ),
        &[],
    )
    .await;
    assert_eq!(summary(&w.until_end().await), got[4..]);
}

#[tokio::test]
async fn without_a_resource_version_the_current_state_then_the_changes() {
    let server = start_n(1000).await;
    let c = client(&server).await;
    let ns = namespace_with_config_maps(&server);
    for rv in ["", "&resourceVersion=0"] {
        let expected = stored_names(&server, "", "configmaps", Some(&ns));
        let path = format!("/api/v1/namespaces/{ns}/configmaps?watch=1{rv}");
        let mut w = Watching::open(&c, &path, &[]).await;
        let first = w.take(expected.len()).await;
        assert!(first.iter().all(|e| e["type"] == "ADDED"));
        assert_eq!(
            names(
                &first
                    .iter()
                    .map(|e| e["object"].clone())
                    .collect::<Vec<_>>()
            ),
            expected
        );
        assert!(matches!(
            w.next(Duration::from_millis(200)).await,
            Next::Quiet
        ));
        let created = write(
            &c,
            "POST",
            &format!("/api/v1/namespaces/{ns}/configmaps"),
            config_map(&ns, &format!("late{}", rv.len()), json!({})),
        )
        .await;
        let e = w.take(1).await;
        assert_eq!(e[0]["type"], "ADDED");
        assert_eq!(e[0]["object"], created);
    }
}

#[tokio::test]
async fn too_old_a_resource_version_is_an_error_event() {
    let server = start_n(300).await;
    let c = client(&server).await;
    let from = server.resource_version();
    let cms = "/api/v1/namespaces/default/configmaps";
    let mut live = Watching::open(&c, &format!("{cms}?watch=1&resourceVersion={from}"), &[]).await;
    write(&c, "POST", cms, config_map("default", "a", json!({}))).await;
    server.compact();
    // The compaction is at a fresh revision: every version handed out so far is too old.
    let compacted = server.resource_version();
    let mut w = Watching::open(&c, &format!("{cms}?watch=1&resourceVersion={from}"), &[]).await;
    let events = w.until_end().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "ERROR");
    let status = &events[0]["object"];
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["code"], 410);
    assert_eq!(status["reason"], "Expired");
    assert_eq!(
        status["message"],
        format!("too old resource version: {from} ({compacted})")
    );

    // An open watch goes on across the compaction.
    write(&c, "POST", cms, config_map("default", "b", json!({}))).await;
    let seen = summary(&live.take(2).await);
    assert!(seen[0].starts_with("ADDED default/a "), "{seen:?}");
    assert!(seen[1].starts_with("ADDED default/b "), "{seen:?}");

    // A resource version that is not a number: 422, as InterpretWatchError makes it.
    let r = get(&c, &format!("{cms}?watch=1&resourceVersion=abc")).await;
    assert_eq!(r.status, 422);
    let s = r.json();
    assert_eq!(s["reason"], "Invalid");
    assert_eq!(
        s["message"],
        r#"configmaps "" is invalid: resourceVersion: Invalid value: "abc": strconv.ParseUint: parsing "abc": invalid syntax"#
    );
}

#[tokio::test]
async fn bookmarks_when_asked_for_and_not_otherwise() {
    let server = start_n(300).await;
    server.set_bookmark_interval(Duration::from_millis(150));
    let c = client(&server).await;
    let now = server.resource_version();
    let path = format!("/apis/apps/v1/deployments?watch=1&resourceVersion={now}&timeoutSeconds=1");
    let mut w = Watching::open(&c, &format!("{path}&allowWatchBookmarks=true"), &[]).await;
    let events = w.until_end().await;
    assert!(events.len() >= 3, "{events:?}");
    for e in &events {
        assert_eq!(e["type"], "BOOKMARK");
        assert_eq!(
            e["object"],
            json!({"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"resourceVersion": now.to_string()}})
        );
    }
    let mut w = Watching::open(&c, &path, &[]).await;
    assert!(w.until_end().await.is_empty());
    // Metadata only: the bookmark is a PartialObjectMetadata.
    let mut w = Watching::open(
        &c,
        &format!("{path}&allowWatchBookmarks=true"),
        &[("Accept", METADATA_ACCEPT)],
    )
    .await;
    let events = w.take(1).await;
    assert_eq!(events[0]["object"]["kind"], "PartialObjectMetadata");
}

#[tokio::test]
async fn metadata_only_events() {
    let server = start_n(300).await;
    let c = client(&server).await;
    let from = server.resource_version();
    let cms = "/api/v1/namespaces/default/configmaps";
    let created = write(
        &c,
        "POST",
        cms,
        config_map("default", "a", json!({"l": "1"})),
    )
    .await;
    send(&c, "DELETE", &format!("{cms}/a"), &[], None).await;
    let mut w = Watching::open(
        &c,
        &format!("{cms}?watch=1&resourceVersion={from}&timeoutSeconds=1"),
        &[("Accept", METADATA_ACCEPT)],
    )
    .await;
    let events = w.until_end().await;
    assert_eq!(events.len(), 2);
    for e in &events {
        let o = &e["object"];
        assert_eq!(o["kind"], "PartialObjectMetadata");
        assert_eq!(o["apiVersion"], "meta.k8s.io/v1");
        assert!(o.get("data").is_none());
        assert_eq!(o["metadata"]["labels"]["l"], "1");
    }
    assert_eq!(events[0]["object"]["metadata"], created["metadata"]);
    assert_eq!(events[1]["type"], "DELETED");
    assert!(rv_of(&events[1]["object"]) > rv_of(&created));
}

#[tokio::test]
async fn selectors_filter_and_leaving_the_selection_is_a_deletion() {
    let server = start_n(300).await;
    let c = client(&server).await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let mut w = Watching::open(&c, &format!("{cms}?watch=1&labelSelector=team%3Dblue"), &[]).await;
    let mut named =
        Watching::open(&c, "/api/v1/watch/namespaces/default/configmaps/other", &[]).await;
    write(
        &c,
        "POST",
        cms,
        config_map("default", "a", json!({"team": "blue"})),
    )
    .await;
    write(
        &c,
        "POST",
        cms,
        config_map("default", "other", json!({"team": "red"})),
    )
    .await;
    let moved = write(
        &c,
        "PATCH",
        &format!("{cms}/a"),
        json!({"metadata": {"labels": {"team": "red"}}}),
    )
    .await;
    write(
        &c,
        "PATCH",
        &format!("{cms}/a"),
        json!({"metadata": {"labels": {"team": "blue"}}}),
    )
    .await;
    write(
        &c,
        "PATCH",
        &format!("{cms}/other"),
        json!({"data": {"k": "2"}}),
    )
    .await;
    let events = w.take(3).await;
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ADDED", "DELETED", "ADDED"]);
    assert!(
        events
            .iter()
            .all(|e| e["object"]["metadata"]["name"] == "a")
    );
    // The deletion shows the last state that matched, at the revision it stopped matching.
    assert_eq!(events[1]["object"]["metadata"]["labels"]["team"], "blue");
    assert_eq!(rv_of(&events[1]["object"]), rv_of(&moved));
    assert!(matches!(
        w.next(Duration::from_millis(200)).await,
        Next::Quiet
    ));
    let events = named.take(2).await;
    assert_eq!(summary(&events)[0].split(' ').next(), Some("ADDED"));
    assert_eq!(events[1]["type"], "MODIFIED");
    assert_eq!(events[1]["object"]["data"]["k"], "2");
    assert!(matches!(
        named.next(Duration::from_millis(200)).await,
        Next::Quiet
    ));
}

#[tokio::test]
async fn churn_emits_the_events_of_the_log() {
    let server = start_n(2000).await;
    let c = client(&server).await;
    let from = server.resource_version();
    let mut all = Watching::open(
        &c,
        &format!("/api/v1/configmaps?watch=1&resourceVersion={from}"),
        &[],
    )
    .await;
    let report = server.churn(0.05, 3);
    let expected = logged(&server, "configmaps", from);
    let modified = report
        .modified
        .iter()
        .filter(|k| k.resource == "configmaps")
        .count();
    assert!(modified > 0 && !expected.is_empty());
    assert_eq!(summary(&all.take(expected.len()).await), expected);
    assert!(matches!(
        all.next(Duration::from_millis(200)).await,
        Next::Quiet
    ));
    // The log holds the whole churn, every kind, in revision order.
    let log = server.events();
    assert_eq!(
        log.len(),
        report.modified.len() + report.added.len() + report.deleted.len()
    );
    assert!(log.windows(2).all(|p| p[0].rv < p[1].rv));
    assert_eq!(
        log.iter().filter(|e| e.kind == EventKind::Deleted).count(),
        report.deleted.len()
    );
}

#[tokio::test]
async fn a_broken_watch_ends_the_stream() {
    let server = start_n(300).await;
    let c = client(&server).await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let now = server.resource_version();
    let mut w = Watching::open(&c, &format!("{cms}?watch=1&resourceVersion={now}"), &[]).await;
    write(&c, "POST", cms, config_map("default", "a", json!({}))).await;
    assert_eq!(w.take(1).await[0]["type"], "ADDED");
    server.faults().break_watches();
    assert!(matches!(w.next(Duration::from_secs(5)).await, Next::Broken));
    // A watch opened afterwards works, and resumes where the broken one was.
    let mut again = Watching::open(
        &c,
        &format!("{cms}?watch=1&resourceVersion={now}&timeoutSeconds=1"),
        &[],
    )
    .await;
    assert_eq!(summary(&again.until_end().await).len(), 1);
}

/// Every event parses as kube's `WatchEvent` of the typed object, as kube's watch reads
/// each line: objects, bookmarks and the 410 error.
#[tokio::test]
async fn kube_reads_the_stream() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::WatchEvent;

    let server = start_n(300).await;
    server.set_bookmark_interval(Duration::from_millis(100));
    let c = client(&server).await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let from = server.resource_version();
    write(&c, "POST", cms, config_map("default", "a", json!({}))).await;
    send(&c, "DELETE", &format!("{cms}/a"), &[], None).await;
    let path =
        format!("{cms}?watch=1&resourceVersion={from}&timeoutSeconds=1&allowWatchBookmarks=true");
    let parse = |e: Value| {
        serde_json::from_value::<WatchEvent<ConfigMap>>(e.clone())
            .unwrap_or_else(|err| panic!("{err}: {e}"))
    };
    let events: Vec<WatchEvent<ConfigMap>> = Watching::open(&c, &path, &[])
        .await
        .until_end()
        .await
        .into_iter()
        .map(parse)
        .collect();
    assert!(
        matches!(&events[0], WatchEvent::Added(cm) if cm.metadata.name.as_deref() == Some("a"))
    );
    assert!(matches!(&events[1], WatchEvent::Deleted(_)));
    assert!(events.len() > 3);
    assert!(
        events[2..]
            .iter()
            .all(|e| matches!(e, WatchEvent::Bookmark(_)))
    );
    server.compact();
    let events = Watching::open(&c, &path, &[]).await.until_end().await;
    match events.into_iter().map(parse).next() {
        Some(WatchEvent::Error(e)) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
        }
        other => panic!("expected a 410 error event: {other:?}"),
    }
}

/// A namespace takes its objects with it: each is a deletion of its own, at its own
/// revision, before the namespace's.
#[tokio::test]
async fn deleting_a_namespace_deletes_its_objects_one_by_one() {
    let server = start_n(1000).await;
    let c = client(&server).await;
    let ns = namespace_with_config_maps(&server);
    let in_ns = stored_names(&server, "", "configmaps", Some(&ns));
    let from = server.resource_version();
    let r = send(&c, "DELETE", &format!("/api/v1/namespaces/{ns}"), &[], None).await;
    assert_eq!(r.status, 200);
    let mut w = Watching::open(
        &c,
        &format!("/api/v1/configmaps?watch=1&resourceVersion={from}&timeoutSeconds=1"),
        &[],
    )
    .await;
    let events = w.until_end().await;
    assert!(events.iter().all(|e| e["type"] == "DELETED"));
    let objects: Vec<Value> = events.iter().map(|e| e["object"].clone()).collect();
    assert_eq!(names(&objects), in_ns);
    let log = server.events();
    assert!(log.windows(2).all(|p| p[0].rv < p[1].rv), "{log:?}");
    let last = log.last().unwrap();
    assert_eq!(
        (last.key.resource.as_str(), last.key.name.as_str()),
        ("namespaces", ns.as_str())
    );
    assert!(log.len() > in_ns.len());
}

/// A streaming list (`sendInitialEvents=true`): the state as ADDED events, a bookmark that
/// ends them, then the changes; its parameters checked as `validateWatchOptions` does.
#[tokio::test]
async fn streaming_list() {
    let server = start_n(300).await;
    let c = client(&server).await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let expected = stored_names(&server, "", "configmaps", Some("default"));
    let now = server.resource_version();
    let mut w = Watching::open(
        &c,
        &format!("{cms}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"),
        &[],
    )
    .await;
    let first = w.take(expected.len() + 1).await;
    let objects: Vec<Value> = first[..expected.len()]
        .iter()
        .map(|e| e["object"].clone())
        .collect();
    assert_eq!(names(&objects), expected);
    assert_eq!(
        first[expected.len()],
        json!({"type": "BOOKMARK", "object": {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"resourceVersion": now.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}}})
    );
    write(&c, "POST", cms, config_map("default", "a", json!({}))).await;
    assert_eq!(w.take(1).await[0]["type"], "ADDED");

    let r = get(&c, &format!("{cms}?watch=1&sendInitialEvents=true")).await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["message"],
        r#"ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"#
    );
    let r = get(&c, &format!("{cms}?watch=1&resourceVersionMatch=Exact")).await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["message"],
        r#"ListOptions.meta.k8s.io "" is invalid: [resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided, resourceVersionMatch: Unsupported value: "Exact": supported values: "NotOlderThan"]"#
    );
}

/// The garbage collector's deletions and rewrites are events like any other write.
#[tokio::test]
async fn the_garbage_collector_emits_events() {
    let server = start_n(300).await;
    let c = client(&server).await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let owner = write(&c, "POST", cms, config_map("default", "owner", json!({}))).await;
    let owner_ref = |name: &str, uid: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": name, "uid": uid});
    let uid = owner["metadata"]["uid"].as_str().unwrap().to_string();
    for (name, refs) in [
        (
            "orphan",
            vec![owner_ref("gone", "00000000-0000-0000-0000-000000000000")],
        ),
        (
            "mixed",
            vec![
                owner_ref("owner", &uid),
                owner_ref("gone", "00000000-0000-0000-0000-000000000000"),
            ],
        ),
    ] {
        let mut cm = config_map("default", name, json!({}));
        cm["metadata"]["ownerReferences"] = json!(refs);
        write(&c, "POST", cms, cm).await;
    }
    let from = server.resource_version();
    let mut w = Watching::open(&c, &format!("{cms}?watch=1&resourceVersion={from}"), &[]).await;
    let report = server.collect_garbage();
    assert_eq!(report.deleted.len(), 1);
    assert_eq!(report.orphan_refs_removed.len(), 1);
    let events = w.take(2).await;
    let got = summary(&events);
    assert_eq!(got, logged(&server, "configmaps", from));
    assert!(
        got.iter().any(|e| e.starts_with("DELETED default/orphan ")),
        "{got:?}"
    );
    assert!(
        got.iter().any(|e| e.starts_with("MODIFIED default/mixed ")),
        "{got:?}"
    );
}

/// A resource version newer than the server's: the cacher waits 3 s for it, then ends the
/// watch with a 504 Timeout ERROR event; one that arrives in time starts the watch.
#[tokio::test]
async fn too_new_a_resource_version_times_out() {
    let server = start_n(300).await;
    let c = client(&server).await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let now = server.resource_version();
    let started = std::time::Instant::now();
    let mut w = Watching::open(
        &c,
        &format!("{cms}?watch=1&resourceVersion={}", now + 100),
        &[],
    )
    .await;
    let events = w.until_end().await;
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0]["object"],
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("Timeout: Too large resource version: {}, current: {now}", now + 100),
            "reason": "Timeout",
            "details": {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1},
            "code": 504,
        })
    );
    let mut w = Watching::open(
        &c,
        &format!("{cms}?watch=1&resourceVersion={}", now + 1),
        &[],
    )
    .await;
    write(&c, "POST", cms, config_map("default", "a", json!({}))).await;
    write(&c, "POST", cms, config_map("default", "b", json!({}))).await;
    let events = w.take(1).await;
    assert_eq!(events[0]["object"]["metadata"]["name"], "b");
}

/// A namespace other than `default` that holds config maps.
fn namespace_with_config_maps(server: &SimServer) -> String {
    server
        .objects()
        .into_iter()
        .find(|k| k.resource == "configmaps" && k.namespace.as_deref() != Some("default"))
        .and_then(|k| k.namespace)
        .unwrap()
}
