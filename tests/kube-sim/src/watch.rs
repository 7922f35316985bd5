//! Watches, as the API server's watch cache serves them (`storage/cacher/cacher.go`,
//! `watch_cache.go`, `cache_watcher.go`; `endpoints/handlers/watch.go` for the stream).
//!
//! A watch is a task that sends one JSON `WatchEvent` per line down a chunked response:
//! without a resource version (or with `"0"`) an `ADDED` event for every current object,
//! then every change after it, read from the store's history in revision order. A watch
//! that asks for a revision older than the history gets `200` and one `ERROR` event with a
//! 410 `Expired` Status (`too old resource version: <rv> (<oldest kept>)`), as the watch
//! cache answers; a revision newer than the store's gets, after 3 seconds, an `ERROR` event
//! with the 504 `Timeout` the cacher gives up with. A watcher with selectors sees an object
//! that stops matching as `DELETED` and one that starts matching as `ADDED`
//! (`cacheWatcher.convertToWatchEvent`). It never holds the store's lock across an await.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::rng::Rng;
use crate::selector::{FieldSelector, LabelSelector};
use crate::server::{Dropped, Reply};
use crate::store::{self, Change, Obj};
use crate::{EventKind, Shared, status};

/// How event objects are rendered (from the request's `Accept` header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rendering {
    Full,
    /// `PartialObjectMetadata` (`as=PartialObjectMetadata;g=meta.k8s.io;v=v1`).
    Metadata,
    /// A server-side `Table` of one row per event, as `kubectl get -w` asks for.
    Table,
}

/// Where a watch starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// `resourceVersion` unset or `"0"`: the current state as `ADDED` events, then changes.
    Current,
    /// Every change after this revision.
    After(u64),
    /// Changes from the current revision on, without the state (`sendInitialEvents=false`
    /// without a resource version).
    Latest,
    /// A streaming list (`sendInitialEvents=true`): the current state, at least at this
    /// revision, as `ADDED` events, a `BOOKMARK` annotated `k8s.io/initial-events-end`
    /// (with `allowWatchBookmarks`), then changes.
    Initial(u64),
}

/// An accepted watch request.
pub(crate) struct Watch {
    /// Where the objects are stored.
    pub group: String,
    pub plural: String,
    /// What the objects are reported as.
    pub api_version: String,
    pub kind: String,
    /// The `events.k8s.io/v1` rendering of core events.
    pub alt: bool,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub rendering: Rendering,
    pub start: Start,
    pub bookmarks: bool,
    /// `timeoutSeconds`, or what the server picks without it.
    pub timeout: Duration,
}

/// The API server's `--min-request-timeout`: a watch without `timeoutSeconds` lasts a
/// random time between one and two of it.
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(1800);

/// How long the cacher waits for a resource version newer than its own.
const FRESHNESS_WAIT: Duration = Duration::from_secs(3);

/// The timeout of a watch without `timeoutSeconds`.
pub(crate) fn default_timeout(seed: u64, request: u64) -> Duration {
    let extra = Rng::derived(seed, &format!("watch-timeout/{request}"))
        .below(MIN_REQUEST_TIMEOUT.as_secs());
    MIN_REQUEST_TIMEOUT + Duration::from_secs(extra)
}

/// Starts the watch's task; the reply streams what it sends.
pub(crate) fn serve(shared: &Arc<Shared>, watch: Watch) -> Reply {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(run(shared.clone(), watch, tx));
    Reply::Stream(rx)
}

type Sender = mpsc::Sender<Result<Bytes, Dropped>>;

async fn run(shared: Arc<Shared>, w: Watch, tx: Sender) {
    let deadline = tokio::time::Instant::now() + w.timeout;
    let mut breaks = shared.faults.watch_breaks();
    let bookmark_every = shared.bookmark_interval();
    let (mut changes, mut cursor, first) = match opening(&shared, &w).await {
        Ok(opened) => opened,
        Err(error) => {
            let _ = tx.send(Ok(error)).await;
            return;
        }
    };
    for line in first {
        if tx.send(Ok(line)).await.is_err() {
            return;
        }
    }
    let mut bookmark =
        tokio::time::interval_at(tokio::time::Instant::now() + bookmark_every, bookmark_every);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return,
            _ = breaks.changed() => {
                // An error ends the body without its last chunk: the connection drops.
                let _ = tx.send(Err(Dropped)).await;
                return;
            }
            _ = tx.closed() => return,
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                let (lines, next, expired) = {
                    let state = shared.read();
                    let now = state.store.current_rv();
                    match state.store.changes_after(cursor, true) {
                        Ok(cs) => {
                            let lines = cs
                                .iter()
                                .filter_map(|c| event_for(&shared, &w, c, now))
                                .collect::<Vec<_>>();
                            (lines, now, false)
                        }
                        Err(oldest) => (vec![too_old(cursor, oldest)], cursor, true),
                    }
                };
                cursor = next;
                for line in lines {
                    if tx.send(Ok(line)).await.is_err() {
                        return;
                    }
                }
                if expired {
                    return;
                }
            }
            _ = bookmark.tick(), if w.bookmarks => {
                let line = bookmark_line(&w, cursor, false);
                if tx.send(Ok(line)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Subscribes to changes and computes where the watch starts: the receiver, the revision
/// the watch is at, and the events to send first; or the `ERROR` event that ends it.
async fn opening(
    shared: &Shared,
    w: &Watch,
) -> Result<(tokio::sync::watch::Receiver<u64>, u64, Vec<Bytes>), Bytes> {
    if let Start::After(rv) | Start::Initial(rv) = w.start {
        // The cacher waits for its cache to reach a newer revision, then gives up.
        let mut changes = shared.read().store.subscribe();
        let waited = tokio::time::timeout(FRESHNESS_WAIT, async {
            while shared.read().store.current_rv() < rv {
                if changes.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        if waited.is_err() {
            let current = shared.read().store.current_rv();
            return Err(error_line(&status::failure(
                504,
                "Timeout",
                &format!("Timeout: Too large resource version: {rv}, current: {current}"),
                Some(json!({
                    "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                    "retryAfterSeconds": 1,
                })),
            )));
        }
    }
    let state = shared.read();
    let changes = state.store.subscribe();
    let current = state.store.current_rv();
    match w.start {
        Start::After(rv) => match state.store.changes_after(rv, false) {
            Ok(cs) => {
                let lines = cs
                    .iter()
                    .filter_map(|c| event_for(shared, w, c, current))
                    .collect();
                Ok((changes, current, lines))
            }
            Err(oldest) => Err(too_old(rv, oldest)),
        },
        Start::Latest => Ok((changes, current, Vec::new())),
        Start::Current | Start::Initial(_) => {
            let page = state.store.list(
                &w.group,
                &w.plural,
                w.namespace.as_deref(),
                None,
                current,
                None,
                &w.labels,
                &w.fields,
            );
            let mut lines: Vec<Bytes> = page
                .items
                .iter()
                .map(|o| line("ADDED", &object(shared, w, o, None, current)))
                .collect();
            if matches!(w.start, Start::Initial(_)) && w.bookmarks {
                lines.push(bookmark_line(w, current, true));
            }
            Ok((changes, current, lines))
        }
    }
}

/// What one change is for this watcher, if anything.
fn event_for(shared: &Shared, w: &Watch, c: &Change, now: u64) -> Option<Bytes> {
    if *c.group != *w.group || *c.plural != *w.plural {
        return None;
    }
    let cur = (c.kind != EventKind::Deleted && matches(w, &c.obj)).then_some(&c.obj);
    let prev = c.prev.as_ref().filter(|p| matches(w, p));
    match (cur, prev) {
        (Some(o), None) => Some(line("ADDED", &object(shared, w, o, None, now))),
        (Some(o), Some(_)) => Some(line("MODIFIED", &object(shared, w, o, None, now))),
        // The last state the watcher saw, at the revision of the change.
        (None, Some(p)) => Some(line("DELETED", &object(shared, w, p, Some(c.rv), now))),
        (None, None) => None,
    }
}

fn matches(w: &Watch, o: &Obj) -> bool {
    if let Some(ns) = &w.namespace
        && o.namespace.as_deref() != Some(ns.as_str())
    {
        return false;
    }
    w.labels.matches(|k| o.label(k)) && w.fields.matches(o.namespace.as_deref(), &o.name, &o.item)
}

/// The event's object in the watch's rendering; `rv` replaces its resource version.
fn object(shared: &Shared, w: &Watch, o: &Arc<Obj>, rv: Option<u64>, now: u64) -> Vec<u8> {
    let (bytes, pointer) = match w.rendering {
        Rendering::Full => (
            o.full_bytes(&w.api_version, &w.kind, w.alt),
            "/metadata/resourceVersion",
        ),
        Rendering::Metadata => {
            let mut out = Vec::new();
            crate::handlers::partial_metadata(&mut out, o, w.alt);
            (out, "/metadata/resourceVersion")
        }
        Rendering::Table => {
            let meta = format!("{{\"resourceVersion\":\"{}\"}}", rv.unwrap_or(o.rv));
            let at = crate::objects::time_of_rv(shared.start_rv, now);
            (
                crate::handlers::table(std::slice::from_ref(o), w.alt, &meta, at).into_bytes(),
                "/rows/0/object/metadata/resourceVersion",
            )
        }
    };
    let Some(rv) = rv else {
        return bytes;
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(mut v) => {
            if let Some(slot) = v.pointer_mut(pointer) {
                *slot = Value::String(rv.to_string());
            }
            serde_json::to_vec(&v).unwrap_or(bytes)
        }
        Err(_) => bytes,
    }
}

/// A `BOOKMARK`: an object of the watched kind with only its resource version (and the
/// annotation that ends the initial events of a streaming list).
fn bookmark_line(w: &Watch, rv: u64, initial_events_end: bool) -> Bytes {
    let (api_version, kind) = match w.rendering {
        Rendering::Full => (w.api_version.as_str(), w.kind.as_str()),
        Rendering::Metadata | Rendering::Table => ("meta.k8s.io/v1", "PartialObjectMetadata"),
    };
    let mut object = json!({
        "kind": kind,
        "apiVersion": api_version,
        "metadata": {"resourceVersion": rv.to_string()},
    });
    if initial_events_end {
        object["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line("BOOKMARK", &serde_json::to_vec(&object).unwrap_or_default())
}

/// The `ERROR` event of a watch from a revision whose changes are no longer kept.
fn too_old(rv: u64, oldest: u64) -> Bytes {
    error_line(&status::failure(
        410,
        "Expired",
        &format!("too old resource version: {rv} ({oldest})"),
        None,
    ))
}

fn error_line(status: &[u8]) -> Bytes {
    line("ERROR", status)
}

/// One `WatchEvent` and its newline.
fn line(kind: &str, object: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(object.len() + 32);
    out.extend_from_slice(b"{\"type\":");
    out.extend_from_slice(store::json_str(kind).as_bytes());
    out.extend_from_slice(b",\"object\":");
    out.extend_from_slice(object);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}
