//! Following one resource's changes between snapshots: a metadata-only watch from a
//! resource version, read line by line as the server sends it, and what is kept per object
//! (its uid and resourceVersion, nothing of its content) to tell which objects changed.
//!
//! Nothing is ever missed on purpose: a watch that expires (410 Gone, or an `ERROR` event
//! with code 410), breaks, or fails otherwise is followed by a metadata-only list of the
//! resource, paged, compared with what is kept, so a change made while no watch ran still
//! comes out as a change and an object gone as a deletion; the next watch starts from that
//! list's resource version. A watch the server ends cleanly (its timeout) resumes from the
//! last resource version seen, which bookmarks keep fresh.
//!
//! This module says which objects changed (the dirty set); it never reads their content and
//! never writes anything anywhere. Reading the changed objects is the checkpoint's business.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::io::AsyncBufReadExt;
use serde::Deserialize;

use super::api::encode_query;
use super::{Api, ApiError, Paging, ResourceType};

/// Asks for the objects' metadata only; a server that cannot render it sends full objects,
/// of which only the metadata is read.
pub const METADATA_WATCH_ACCEPT: &str =
    "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";

const METADATA_LIST_ACCEPT: &str =
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";

/// How long the server keeps one watch open (`timeoutSeconds`) by default; it is resumed
/// from the last resource version afterwards. Below the API server's own minimum request
/// timeout, so the end is ours and clean.
pub const WATCH_TIMEOUT: Duration = Duration::from_secs(290);

/// A line longer than this is not an event of an object the API server stores (etcd takes
/// 1.5 MiB per object): the stream is taken as broken.
const MAX_LINE: usize = 16 << 20;

/// Waits after a failed list or watch, doubling up to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(30));

/// Which object: its namespace (for a namespaced resource) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    pub namespace: Option<String>,
    pub name: String,
}

/// What says whether an object changed: a new uid is a new object, a new resourceVersion
/// a new write of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub uid: String,
    pub resource_version: String,
}

/// An object's metadata as an event or a list item gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    pub object: ObjectRef,
    pub known: Known,
}

/// One line of a watch.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    Added(ObjectHead),
    Modified(ObjectHead),
    Deleted(ObjectHead),
    /// Nothing changed up to this resource version.
    Bookmark {
        resource_version: String,
    },
    /// The server ends the watch with this status (410 Expired when the resource version
    /// is older than what it keeps).
    Error(ApiError),
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    object: RawObject,
}

#[derive(Deserialize, Default)]
struct RawObject {
    #[serde(default)]
    metadata: RawMeta,
    // A Status, in an ERROR event.
    #[serde(default)]
    code: u16,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize, Default)]
struct RawMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    uid: String,
    #[serde(default, rename = "resourceVersion")]
    resource_version: String,
}

impl RawMeta {
    fn head(self, namespaced: bool) -> ObjectHead {
        ObjectHead {
            object: ObjectRef {
                namespace: self.namespace.filter(|ns| namespaced && !ns.is_empty()),
                name: self.name,
            },
            known: Known {
                uid: self.uid,
                resource_version: self.resource_version,
            },
        }
    }
}

/// Reads one line of a watch of a resource (`namespaced` or not).
pub fn parse_event(line: &[u8], namespaced: bool) -> Result<WatchEvent, ApiError> {
    let raw: RawEvent = serde_json::from_slice(line)
        .map_err(|e| ApiError::Decode(format!("a watch event: {e}")))?;
    let object = raw.object;
    let named = |object: RawObject| {
        if object.metadata.name.is_empty() {
            return Err(ApiError::Decode(format!(
                "a watch event of type {} without the object's name",
                raw.kind
            )));
        }
        Ok(object.metadata.head(namespaced))
    };
    match raw.kind.as_str() {
        "ADDED" => named(object).map(WatchEvent::Added),
        "MODIFIED" => named(object).map(WatchEvent::Modified),
        "DELETED" => named(object).map(WatchEvent::Deleted),
        "BOOKMARK" => Ok(WatchEvent::Bookmark {
            resource_version: object.metadata.resource_version,
        }),
        "ERROR" => Ok(WatchEvent::Error(ApiError::Status {
            code: object.code,
            reason: object.reason,
            message: object.message,
            continue_token: None,
        })),
        other => Err(ApiError::Decode(format!(
            "a watch event of unknown type {other:?}"
        ))),
    }
}

/// What is kept of one object: a 128-bit digest of its uid and resourceVersion, which tells
/// a change as well as both strings do in a fraction of the memory (a cluster of a million
/// objects keeps a million of these).
type Version = [u8; 16];

fn version_of(known: &Known) -> Version {
    let mut hasher = blake3::Hasher::new();
    hasher.update(known.uid.as_bytes());
    hasher.update(&[0]);
    hasher.update(known.resource_version.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    out
}

/// What is kept of one resource: every object's uid and resourceVersion (as a digest), the
/// objects that changed since the dirty set was last taken, and where the next watch starts.
#[derive(Debug, Default)]
pub struct ResourceState {
    objects: HashMap<ObjectRef, Version>,
    dirty: BTreeSet<ObjectRef>,
    /// The resource version to watch from; `None`: list first.
    resume: Option<String>,
}

impl ResourceState {
    /// What a snapshot saw of the resource: the first list compares with it, so that what
    /// changed between the snapshot's list and the first watch is dirty too.
    pub fn seen(objects: impl IntoIterator<Item = (ObjectRef, Known)>) -> Self {
        Self {
            objects: objects
                .into_iter()
                .map(|(object, known)| (object, version_of(&known)))
                .collect(),
            ..Self::default()
        }
    }

    /// Objects kept.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Takes the objects that changed (were added, written or deleted) since the last take.
    pub fn take_dirty(&mut self) -> BTreeSet<ObjectRef> {
        std::mem::take(&mut self.dirty)
    }

    /// Gives back objects taken with [`Self::take_dirty`] whose change did not land.
    pub fn restore_dirty(&mut self, objects: impl IntoIterator<Item = ObjectRef>) {
        self.dirty.extend(objects);
    }

    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Applies one event; returns whether it made an object dirty.
    pub fn apply(&mut self, event: &WatchEvent) -> bool {
        match event {
            WatchEvent::Added(head) | WatchEvent::Modified(head) => {
                self.note_rv(&head.known.resource_version);
                let version = version_of(&head.known);
                let same = self.objects.get(&head.object) == Some(&version);
                if !same {
                    self.objects.insert(head.object.clone(), version);
                    self.dirty.insert(head.object.clone());
                }
                !same
            }
            WatchEvent::Deleted(head) => {
                self.note_rv(&head.known.resource_version);
                self.objects.remove(&head.object);
                // Dirty even when it was not kept: the checkpoint finds it gone, which is
                // nothing to do when no earlier point had it either.
                self.dirty.insert(head.object.clone());
                true
            }
            WatchEvent::Bookmark { resource_version } => {
                self.note_rv(resource_version);
                false
            }
            WatchEvent::Error(_) => false,
        }
    }

    fn note_rv(&mut self, resource_version: &str) {
        if !resource_version.is_empty() {
            self.resume = Some(resource_version.to_string());
        }
    }

    /// Replaces what is kept with a list of the resource at `resource_version`: every object
    /// new, written or gone since is dirty. Returns how many.
    pub fn relisted(
        &mut self,
        listed: HashMap<ObjectRef, Known>,
        resource_version: Option<String>,
    ) -> usize {
        let before = self.dirty.len();
        let listed: HashMap<ObjectRef, Version> = listed
            .into_iter()
            .map(|(object, known)| (object, version_of(&known)))
            .collect();
        for (object, version) in &listed {
            if self.objects.get(object) != Some(version) {
                self.dirty.insert(object.clone());
            }
        }
        for object in self.objects.keys() {
            if !listed.contains_key(object) {
                self.dirty.insert(object.clone());
            }
        }
        self.objects = listed;
        self.resume = resource_version.filter(|rv| !rv.is_empty());
        self.dirty.len() - before
    }

    /// Forgets where to resume: the next watch lists first.
    fn expire(&mut self) {
        self.resume = None;
    }

    pub fn resume_point(&self) -> Option<&str> {
        self.resume.as_deref()
    }
}

/// Why a watch was started again (a metric's label: a short, fixed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// The server ended it cleanly (its timeout): resumed from the last resource version.
    Closed,
    /// Its resource version is older than the server keeps (410): relisted.
    Expired,
    /// The connection broke, or the stream was not what the API promises: relisted.
    Broken,
    /// The server refused or ended it with another error: relisted after a pause.
    Failed,
}

impl Restart {
    pub fn reason(self) -> &'static str {
        match self {
            Restart::Closed => "closed",
            Restart::Expired => "expired",
            Restart::Broken => "broken",
            Restart::Failed => "failed",
        }
    }
}

/// What the watches tell whoever counts (the daemon's metrics). Only reports.
pub trait WatchObserver: Send + Sync {
    /// Events read (bookmarks included).
    fn events(&self, _count: u64) {}
    /// A metadata-only list replaced what was kept; `changed` objects came out dirty.
    fn relisted(&self, _rt: &ResourceType, _changed: usize) {}
    fn restarted(&self, _rt: &ResourceType, _why: Restart) {}
}

/// The resource cannot be watched at all (the server does not serve watches of it, or the
/// service account may not): its changes wait for the next snapshot.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {resource}: {source}; its changes wait for the next snapshot")]
pub struct Unwatchable {
    pub resource: String,
    #[source]
    pub source: ApiError,
}

/// One resource's watch, kept going: list when there is no resume point, watch from it,
/// start again when it ends.
pub struct ResourceWatch {
    pub api: Api,
    pub rt: ResourceType,
    /// The snapshot's label selector, so that the watch sees the objects its lists do.
    pub label_selector: Option<String>,
    /// Items per page of a list.
    pub page_size: u32,
    /// Restarts of a list after its continue token expired before it fails.
    pub max_list_restarts: u32,
    /// How long the server keeps one watch open ([`WATCH_TIMEOUT`]).
    pub timeout: Duration,
    /// Lists of all the watches at the same time: a broken connection to the API server
    /// breaks every watch at once, and their lists should not all hit it together.
    pub lists: Arc<tokio::sync::Semaphore>,
    pub state: Arc<Mutex<ResourceState>>,
    pub observer: Arc<dyn WatchObserver>,
}

/// How one watch ended.
enum Ended {
    Restart(Restart, Option<ApiError>),
    Refused(ApiError),
}

impl ResourceWatch {
    fn lock(&self) -> std::sync::MutexGuard<'_, ResourceState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Watches until dropped; returns only when the resource cannot be watched.
    pub async fn run(self) -> Unwatchable {
        let mut backoff = BACKOFF.0;
        loop {
            let resume = self.lock().resume.clone();
            let from = match resume {
                Some(rv) => rv,
                None => match self.relist().await {
                    Ok(rv) => rv,
                    Err(e) => {
                        if let Some(code) = e.code().filter(|c| matches!(c, 403..=405)) {
                            tracing::debug!(resource = %self.rt.qualified_name(), code, "cannot list");
                            return self.unwatchable(e);
                        }
                        tracing::warn!(resource = %self.rt.qualified_name(), error = %e, retry_in = ?backoff, "cannot list the resource to watch it; trying again");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF.1);
                        continue;
                    }
                },
            };
            let opened = std::time::Instant::now();
            let (ended, read) = self.watch_from(&from).await;
            if read > 0 {
                backoff = BACKOFF.0;
            }
            match ended {
                Ended::Refused(e) => return self.unwatchable(e),
                Ended::Restart(why, error) => {
                    self.observer.restarted(&self.rt, why);
                    if why != Restart::Closed {
                        self.lock().expire();
                    }
                    if let Some(e) = &error {
                        tracing::info!(resource = %self.rt.qualified_name(), reason = why.reason(), error = %e, "watch ended; listing again");
                    }
                    // A watch that fails at once, or that a proxy ends at once, is not
                    // opened again in a tight loop.
                    let at_once = read == 0 && opened.elapsed() < Duration::from_secs(1);
                    if at_once || (matches!(why, Restart::Failed | Restart::Broken) && read == 0) {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF.1);
                    }
                }
            }
        }
    }

    fn unwatchable(&self, source: ApiError) -> Unwatchable {
        Unwatchable {
            resource: self.rt.qualified_name(),
            source,
        }
    }

    fn selector_query(&self) -> String {
        match &self.label_selector {
            Some(selector) => format!("&labelSelector={}", encode_query(selector)),
            None => String::new(),
        }
    }

    /// Lists the metadata of every object, page by page, and replaces what is kept with it;
    /// returns the list's resource version. A continue token that expires starts it again.
    pub async fn relist(&self) -> Result<String, ApiError> {
        #[derive(Deserialize, Default)]
        struct Page {
            #[serde(default)]
            metadata: PageMeta,
            #[serde(default)]
            items: Option<Vec<Item>>,
        }
        #[derive(Deserialize, Default)]
        struct PageMeta {
            #[serde(default, rename = "resourceVersion")]
            resource_version: String,
            #[serde(default, rename = "continue")]
            continue_token: Option<String>,
        }
        #[derive(Deserialize)]
        struct Item {
            #[serde(default)]
            metadata: RawMeta,
        }

        // Closed only when the watches are dropped, which also drops this.
        let _permit = self.lists.acquire().await;
        let mut paging = Paging::new(
            &self.rt,
            None,
            self.label_selector.as_deref(),
            self.page_size,
            self.max_list_restarts,
        );
        let mut listed = HashMap::new();
        let mut resource_version = None;
        loop {
            let path = paging.path();
            let body = match self.api.get(&path, METADATA_LIST_ACCEPT).await {
                Ok(body) => body,
                Err(e) if paging.restart(&e) => {
                    listed.clear();
                    resource_version = None;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let page: Page = serde_json::from_slice(&body)
                .map_err(|e| ApiError::Decode(format!("{path}: {e}")))?;
            // Every page of a list is at the first page's resource version.
            resource_version.get_or_insert(page.metadata.resource_version);
            for item in page.items.unwrap_or_default() {
                let head = item.metadata.head(self.rt.namespaced);
                if !head.object.name.is_empty() {
                    listed.insert(head.object, head.known);
                }
            }
            if !paging.advance(page.metadata.continue_token) {
                break;
            }
        }
        let resource_version = resource_version
            .filter(|rv| !rv.is_empty())
            .ok_or_else(|| {
                ApiError::Decode(format!(
                    "a list of {} without a resource version to watch from",
                    self.rt.qualified_name()
                ))
            })?;
        let changed = self.lock().relisted(listed, Some(resource_version.clone()));
        self.observer.relisted(&self.rt, changed);
        Ok(resource_version)
    }

    /// One watch from `from`, until it ends; also returns how many events it read.
    async fn watch_from(&self, from: &str) -> (Ended, u64) {
        let path = format!(
            "{}?watch=true&allowWatchBookmarks=true&resourceVersion={}&timeoutSeconds={}{}",
            self.rt.collection_path(None),
            encode_query(from),
            self.timeout.as_secs().max(1),
            self.selector_query()
        );
        let mut body = match self.api.get_streaming(&path, METADATA_WATCH_ACCEPT).await {
            Ok(body) => body,
            Err(e @ ApiError::Status { code: 410, .. }) => {
                return (Ended::Restart(Restart::Expired, Some(e)), 0);
            }
            Err(
                e @ ApiError::Status {
                    code: 403..=405, ..
                },
            ) => {
                return (Ended::Refused(e), 0);
            }
            Err(e) => return (Ended::Restart(Restart::Failed, Some(e)), 0),
        };
        let mut read = 0u64;
        let mut line = Vec::new();
        loop {
            line.clear();
            let got = futures::io::AsyncReadExt::take(&mut body, MAX_LINE as u64)
                .read_until(b'\n', &mut line)
                .await;
            match got {
                Ok(0) => return (Ended::Restart(Restart::Closed, None), read),
                Ok(_) if line.last() != Some(&b'\n') => {
                    let e = ApiError::Transport(format!(
                        "the watch of {} ended within an event",
                        self.rt.qualified_name()
                    ));
                    return (Ended::Restart(Restart::Broken, Some(e)), read);
                }
                Ok(_) => {}
                Err(e) => {
                    let e = ApiError::Transport(e.to_string());
                    return (Ended::Restart(Restart::Broken, Some(e)), read);
                }
            }
            let text = line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            let event = match parse_event(text, self.rt.namespaced) {
                Ok(event) => event,
                Err(e) => return (Ended::Restart(Restart::Broken, Some(e)), read),
            };
            read += 1;
            self.observer.events(1);
            if let WatchEvent::Error(e) = event {
                let why = if e.code() == Some(410) {
                    Restart::Expired
                } else {
                    Restart::Failed
                };
                return (Ended::Restart(why, Some(e)), read);
            }
            self.lock().apply(&event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(namespace: Option<&str>, name: &str) -> ObjectRef {
        ObjectRef {
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        }
    }

    fn known(uid: &str, rv: &str) -> Known {
        Known {
            uid: uid.to_string(),
            resource_version: rv.to_string(),
        }
    }

    #[test]
    fn events_are_read_from_metadata_and_full_objects() {
        let line = br#"{"type":"MODIFIED","object":{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{"name":"a","namespace":"ns","uid":"u1","resourceVersion":"12","managedFields":[]}}}"#;
        let WatchEvent::Modified(head) = parse_event(line, true).unwrap() else {
            panic!("not MODIFIED");
        };
        assert_eq!(head.object, object(Some("ns"), "a"));
        assert_eq!(head.known, known("u1", "12"));

        let full = br#"{"type":"ADDED","object":{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"team","uid":"u2","resourceVersion":"3"},"spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active"}}}"#;
        let WatchEvent::Added(head) = parse_event(full, false).unwrap() else {
            panic!("not ADDED");
        };
        assert_eq!(head.object, object(None, "team"));

        let deleted = br#"{"type":"DELETED","object":{"metadata":{"name":"a","namespace":"ns","uid":"u1","resourceVersion":"13"}}}"#;
        assert!(
            matches!(parse_event(deleted, true).unwrap(), WatchEvent::Deleted(h) if h.known.resource_version == "13")
        );
    }

    #[test]
    fn bookmarks_and_errors() {
        let bookmark = br#"{"type":"BOOKMARK","object":{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"99","annotations":{"k8s.io/initial-events-end":"true"}}}}"#;
        assert!(matches!(
            parse_event(bookmark, true).unwrap(),
            WatchEvent::Bookmark { resource_version } if resource_version == "99"
        ));
        let expired = br#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 5 (40)","reason":"Expired","code":410}}"#;
        let WatchEvent::Error(e) = parse_event(expired, true).unwrap() else {
            panic!("not ERROR");
        };
        assert!(e.is_expired());
        assert!(e.to_string().contains("too old resource version"), "{e}");
    }

    #[test]
    fn what_is_not_an_event_is_an_error() {
        assert!(parse_event(b"{\"type\":\"ADDED\",\"object\":{", true).is_err());
        assert!(parse_event(br#"{"type":"SOMETHING","object":{}}"#, true).is_err());
        assert!(parse_event(br#"{"type":"ADDED","object":{"metadata":{}}}"#, true).is_err());
        assert!(parse_event(b"[]", true).is_err());
    }

    #[test]
    fn events_make_objects_dirty_once_and_move_the_resume_point() {
        let mut state = ResourceState::seen([(object(Some("ns"), "a"), known("u1", "5"))]);
        let head = |name: &str, uid: &str, rv: &str| ObjectHead {
            object: object(Some("ns"), name),
            known: known(uid, rv),
        };
        // The state a snapshot saw, sent again: nothing changed.
        assert!(!state.apply(&WatchEvent::Added(head("a", "u1", "5"))));
        assert!(!state.has_dirty());
        assert!(state.apply(&WatchEvent::Modified(head("a", "u1", "6"))));
        assert!(state.apply(&WatchEvent::Added(head("b", "u2", "7"))));
        assert!(state.apply(&WatchEvent::Deleted(head("a", "u1", "8"))));
        assert!(!state.apply(&WatchEvent::Bookmark {
            resource_version: "10".into()
        }));
        assert_eq!(state.resume_point(), Some("10"));
        let dirty = state.take_dirty();
        assert_eq!(
            dirty.into_iter().collect::<Vec<_>>(),
            vec![object(Some("ns"), "a"), object(Some("ns"), "b")]
        );
        assert!(!state.has_dirty());
        assert_eq!(state.len(), 1);
        state.restore_dirty([object(Some("ns"), "b")]);
        assert!(state.has_dirty());
    }

    #[test]
    fn a_relist_finds_what_changed_while_no_watch_ran() {
        let mut state = ResourceState::seen([
            (object(None, "same"), known("u1", "5")),
            (object(None, "written"), known("u2", "5")),
            (object(None, "recreated"), known("u3", "5")),
            (object(None, "deleted"), known("u4", "5")),
        ]);
        let listed: HashMap<_, _> = [
            (object(None, "same"), known("u1", "5")),
            (object(None, "written"), known("u2", "9")),
            (object(None, "recreated"), known("u5", "5")),
            (object(None, "new"), known("u6", "11")),
        ]
        .into_iter()
        .collect();
        assert_eq!(state.relisted(listed, Some("12".into())), 4);
        assert_eq!(state.resume_point(), Some("12"));
        let dirty: Vec<String> = state.take_dirty().into_iter().map(|o| o.name).collect();
        assert_eq!(dirty, ["deleted", "new", "recreated", "written"]);
        assert_eq!(state.len(), 4);
    }

    /// Against the simulated API server: one resource's watch, kept going.
    mod against_the_simulator {
        use std::collections::BTreeSet;
        use std::sync::atomic::{AtomicU64, Ordering};

        use kube_sim::{EventKind, SimConfig, SimServer};

        use super::super::*;
        use crate::kube::{ClusterOptions, RetryPolicy, connect};

        #[derive(Default)]
        struct Counts {
            events: AtomicU64,
            relists: AtomicU64,
            restarts: Mutex<Vec<Restart>>,
        }
        impl WatchObserver for Counts {
            fn events(&self, count: u64) {
                self.events.fetch_add(count, Ordering::SeqCst);
            }
            fn relisted(&self, _rt: &ResourceType, _changed: usize) {
                self.relists.fetch_add(1, Ordering::SeqCst);
            }
            fn restarted(&self, _rt: &ResourceType, why: Restart) {
                self.restarts.lock().unwrap().push(why);
            }
        }

        fn configmaps() -> ResourceType {
            ResourceType {
                group: String::new(),
                version: "v1".into(),
                kind: "ConfigMap".into(),
                resource: "configmaps".into(),
                namespaced: true,
            }
        }

        struct Setup {
            sim: SimServer,
            api: Api,
            _dir: tempfile::TempDir,
        }

        async fn setup(seed: u64) -> Setup {
            let sim = SimServer::start(SimConfig {
                objects: 400,
                seed,
                ..SimConfig::default()
            })
            .await
            .unwrap();
            let dir = tempfile::tempdir().unwrap();
            let kubeconfig = dir.path().join("kubeconfig");
            sim.write_kubeconfig(&kubeconfig).unwrap();
            let client = connect(&ClusterOptions {
                kubeconfig: Some(kubeconfig),
                context: None,
            })
            .await
            .unwrap();
            let policy = RetryPolicy {
                initial_backoff: Duration::from_millis(20),
                max_backoff: Duration::from_millis(200),
                ..RetryPolicy::default()
            };
            Setup {
                sim,
                api: Api::new(client, policy),
                _dir: dir,
            }
        }

        fn watch(
            setup: &Setup,
            state: &Arc<Mutex<ResourceState>>,
            counts: &Arc<Counts>,
        ) -> ResourceWatch {
            ResourceWatch {
                api: setup.api.clone(),
                rt: configmaps(),
                label_selector: None,
                page_size: 50,
                max_list_restarts: 5,
                timeout: WATCH_TIMEOUT,
                lists: Arc::new(tokio::sync::Semaphore::new(2)),
                state: state.clone(),
                observer: counts.clone(),
            }
        }

        /// The config maps the simulator's event log changed after `rv`.
        fn changed_after(sim: &SimServer, rv: u64) -> BTreeSet<ObjectRef> {
            sim.events()
                .into_iter()
                .filter(|e| e.rv > rv && e.key.group.is_empty() && e.key.resource == "configmaps")
                .map(|e| ObjectRef {
                    namespace: e.key.namespace,
                    name: e.key.name,
                })
                .collect()
        }

        /// Waits until the dirty set (taken and gathered into `seen`) holds `wanted`.
        async fn gather(
            state: &Arc<Mutex<ResourceState>>,
            seen: &mut BTreeSet<ObjectRef>,
            wanted: &BTreeSet<ObjectRef>,
        ) {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                seen.extend(state.lock().unwrap().take_dirty());
                if wanted.is_subset(seen) {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "missing: {:?}",
                    wanted.difference(seen).collect::<Vec<_>>()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }

        async fn listed(state: &Arc<Mutex<ResourceState>>) {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while state.lock().unwrap().resume_point().is_none() {
                assert!(tokio::time::Instant::now() < deadline, "never listed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        #[tokio::test]
        async fn every_change_in_the_event_log_comes_out_through_breaks_and_bookmarks() {
            let setup = setup(3).await;
            setup.sim.set_bookmark_interval(Duration::from_millis(200));
            let state = Arc::new(Mutex::new(ResourceState::default()));
            let counts = Arc::new(Counts::default());
            let task = tokio::spawn(watch(&setup, &state, &counts).run());
            listed(&state).await;
            let first = state.lock().unwrap().take_dirty();
            // Nothing was kept before: every config map was new.
            assert!(first.len() > 5, "{}", first.len());
            let start = setup.sim.resource_version();

            let mut seen = BTreeSet::new();
            setup.sim.churn(0.05, 11);
            gather(&state, &mut seen, &changed_after(&setup.sim, start)).await;
            assert_eq!(counts.relists.load(Ordering::SeqCst), 1);

            // Bookmarks move the resume point without a change.
            let before = setup.sim.resource_version();
            tokio::time::sleep(Duration::from_millis(600)).await;
            let resume: u64 = state
                .lock()
                .unwrap()
                .resume_point()
                .unwrap()
                .parse()
                .unwrap();
            assert!(resume >= before, "{resume} < {before}");

            // A broken watch: a relist, and what changed meanwhile is dirty still.
            setup.sim.faults().break_watches();
            setup.sim.churn(0.05, 12);
            gather(&state, &mut seen, &changed_after(&setup.sim, start)).await;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while counts.relists.load(Ordering::SeqCst) < 2 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no relist after a break"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(counts.restarts.lock().unwrap().contains(&Restart::Broken));
            // Only what changed: the relist did not make everything dirty again.
            assert!(
                seen.len() < first.len() + 40,
                "{} of {}",
                seen.len(),
                first.len()
            );
            assert!(counts.events.load(Ordering::SeqCst) > 0);
            task.abort();
        }

        #[tokio::test]
        async fn a_watch_the_server_ends_is_resumed_without_a_list() {
            let setup = setup(5).await;
            let state = Arc::new(Mutex::new(ResourceState::default()));
            let counts = Arc::new(Counts::default());
            let short = ResourceWatch {
                timeout: Duration::from_secs(1),
                ..watch(&setup, &state, &counts)
            };
            let task = tokio::spawn(short.run());
            listed(&state).await;
            state.lock().unwrap().take_dirty();
            let start = setup.sim.resource_version();
            // Past the watch's timeout: the server ended it, and it went on from where it was.
            tokio::time::sleep(Duration::from_millis(2500)).await;
            setup.sim.churn(0.05, 31);
            let mut seen = BTreeSet::new();
            gather(&state, &mut seen, &changed_after(&setup.sim, start)).await;
            assert!(counts.restarts.lock().unwrap().contains(&Restart::Closed));
            assert_eq!(counts.relists.load(Ordering::SeqCst), 1);
            task.abort();
        }

        #[tokio::test]
        async fn a_relist_whose_continue_token_expires_starts_again_and_keeps_every_object() {
            let setup = setup(6).await;
            let counts = Arc::new(Counts::default());
            let whole = Arc::new(Mutex::new(ResourceState::default()));
            watch(&setup, &whole, &counts).relist().await.unwrap();
            let everything = whole.lock().unwrap().objects.clone();
            assert!(everything.len() > 4, "{} config maps", everything.len());

            // Pages of two, and every token handed out with a first page too old: the list
            // starts again with bigger pages until one is enough.
            setup.sim.faults().expire_continue_after(Some(1));
            let state = Arc::new(Mutex::new(ResourceState::default()));
            let paged = ResourceWatch {
                page_size: 2,
                ..watch(&setup, &state, &counts)
            };
            paged.relist().await.unwrap();
            assert_eq!(state.lock().unwrap().objects, everything);

            // Out of restarts, the expiry is the relist's failure, and nothing is replaced.
            let state = Arc::new(Mutex::new(ResourceState::default()));
            let stubborn = ResourceWatch {
                page_size: 2,
                max_list_restarts: 0,
                ..watch(&setup, &state, &counts)
            };
            let e = stubborn.relist().await.unwrap_err();
            assert!(e.is_expired(), "{e}");
            assert!(state.lock().unwrap().objects.is_empty());
            setup.sim.faults().expire_continue_after(None);
        }

        #[tokio::test]
        async fn a_watch_from_a_compacted_resource_version_relists_and_misses_nothing() {
            let setup = setup(4).await;
            let state = Arc::new(Mutex::new(ResourceState::default()));
            let counts = Arc::new(Counts::default());
            let task = tokio::spawn(watch(&setup, &state, &counts).run());
            listed(&state).await;
            state.lock().unwrap().take_dirty();
            task.abort();
            let start = setup.sim.resource_version();

            // No watch runs while objects change and the history is compacted.
            let report = setup.sim.churn(0.1, 21);
            setup.sim.compact();
            let wanted = changed_after(&setup.sim, start);
            assert!(!wanted.is_empty());
            let deleted: BTreeSet<ObjectRef> = setup
                .sim
                .events()
                .into_iter()
                .filter(|e| {
                    e.rv > start && e.kind == EventKind::Deleted && e.key.resource == "configmaps"
                })
                .map(|e| ObjectRef {
                    namespace: e.key.namespace,
                    name: e.key.name,
                })
                .collect();
            assert!(!report.deleted.is_empty());

            let task = tokio::spawn(watch(&setup, &state, &counts).run());
            let mut seen = BTreeSet::new();
            gather(&state, &mut seen, &wanted).await;
            assert!(counts.restarts.lock().unwrap().contains(&Restart::Expired));
            assert_eq!(counts.relists.load(Ordering::SeqCst), 2);
            // Deleted ones are gone from what is kept.
            let kept = &state.lock().unwrap().objects;
            assert!(deleted.iter().all(|d| !kept.contains_key(d)));
            task.abort();
        }
    }
}
