//! Object storage and listing: an in-memory, multi-version imitation of the API server's
//! etcd storage.
//!
//! Every object is kept pre-serialized (the JSON bytes of a list item), so that a page of a
//! list is built by concatenating bytes. Each collection (one per stored resource) is a vector
//! sorted by the etcd key relative to the resource (`namespace/name`, or `name`), which gives
//! the real server's order: namespace, then name. Writes keep the superseded versions until
//! the next compaction so that a paged list continued at its resource version sees the
//! snapshot it started from, as with etcd; continuing from a compacted version answers
//! 410 Expired, also as with etcd.
//!
//! Every write is also an event: the store keeps the changes since the last compaction
//! (what a watch resumes from, as the watch cache and etcd keep theirs) and a journal of
//! every change for tests, and signals each new revision to the open watches.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;

use crate::selector::{FieldSelector, LabelSelector};
use crate::{EventKind, ObjectKey, SimEvent};

/// One version of one object, serialized.
#[derive(Debug)]
pub(crate) struct Obj {
    pub namespace: Option<Box<str>>,
    pub name: Box<str>,
    pub uid: Box<str>,
    pub rv: u64,
    /// Labels as `key\0value\0key\0value` (neither can contain NUL): one allocation per
    /// object instead of two per label, which matters with 10^5..10^6 objects.
    pub labels: Box<str>,
    /// The object as an item of a list. For built-in resources without `apiVersion` and
    /// `kind` (the real server leaves them out of list items); custom resources keep them.
    pub item: Bytes,
    /// Where `metadata` is in `item` (start, length): a metadata-only rendering copies it.
    pub metadata: (u32, u32),
    /// True when `item` carries `apiVersion` and `kind`.
    pub typed: bool,
    /// For core events: the `events.k8s.io/v1` rendering of the same object.
    pub alt: Option<Bytes>,
}

impl Obj {
    /// Builds a stored object from its full JSON form. `typed` keeps `apiVersion`/`kind` in
    /// list items (custom resources).
    pub(crate) fn from_value(
        mut value: Value,
        typed: bool,
        alt: Option<&Value>,
    ) -> Result<Obj, String> {
        let meta = value
            .get("metadata")
            .and_then(Value::as_object)
            .ok_or("object has no metadata")?;
        let name = meta
            .get("name")
            .and_then(Value::as_str)
            .ok_or("object has no metadata.name")?
            .into();
        let namespace = meta
            .get("namespace")
            .and_then(Value::as_str)
            .map(Into::into);
        let uid = meta
            .get("uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .into();
        let rv = meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut labels = String::new();
        if let Some(m) = meta.get("labels").and_then(Value::as_object) {
            for (k, v) in m {
                let v = v.as_str().unwrap_or_default();
                if k.contains('\0') || v.contains('\0') {
                    continue;
                }
                if !labels.is_empty() {
                    labels.push('\0');
                }
                labels.push_str(k);
                labels.push('\0');
                labels.push_str(v);
            }
        }
        let labels = labels.into_boxed_str();
        if !typed && let Some(m) = value.as_object_mut() {
            m.remove("apiVersion");
            m.remove("kind");
        }
        let item = compact_json(&value)?;
        let metadata = metadata_range(&item).ok_or("object has no metadata")?;
        let alt = match alt {
            Some(a) => {
                let mut a = a.clone();
                if let Some(m) = a.as_object_mut() {
                    m.remove("apiVersion");
                    m.remove("kind");
                }
                Some(compact_json(&a)?)
            }
            None => None,
        };
        Ok(Obj {
            namespace,
            name,
            uid,
            rv,
            labels,
            item,
            metadata,
            typed,
            alt,
        })
    }

    /// The JSON of `metadata` in the given rendering (`alt` = events.k8s.io view).
    pub(crate) fn metadata_bytes(&self, alt: bool) -> &[u8] {
        let item = self.item_bytes(alt);
        let (start, len) = match (alt, &self.alt) {
            (true, Some(alt)) => metadata_range(alt).unwrap_or((0, 0)),
            _ => self.metadata,
        };
        match item.get(start as usize..(start + len) as usize) {
            Some(metadata) if len > 0 => metadata,
            _ => b"{}",
        }
    }

    pub(crate) fn label(&self, key: &str) -> Option<&str> {
        let mut parts = self.labels.split('\0');
        while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
            if k == key {
                return Some(v);
            }
        }
        None
    }

    /// The list-item bytes in the given rendering (`alt` = events.k8s.io view).
    pub(crate) fn item_bytes(&self, alt: bool) -> &Bytes {
        if alt {
            self.alt.as_ref().unwrap_or(&self.item)
        } else {
            &self.item
        }
    }

    /// The object as a GET returns it: with `apiVersion` and `kind` first.
    pub(crate) fn full_bytes(&self, api_version: &str, kind: &str, alt: bool) -> Vec<u8> {
        let item = self.item_bytes(alt);
        if self.typed && !alt {
            return item.to_vec();
        }
        let mut out = Vec::with_capacity(item.len() + 64);
        out.extend_from_slice(b"{\"kind\":");
        out.extend_from_slice(json_str(kind).as_bytes());
        out.extend_from_slice(b",\"apiVersion\":");
        out.extend_from_slice(json_str(api_version).as_bytes());
        if item.len() > 2 {
            out.push(b',');
            out.extend_from_slice(&item[1..]);
        } else {
            out.push(b'}');
        }
        out
    }

    /// The full object parsed back into a JSON value.
    pub(crate) fn full_value(&self, api_version: &str, kind: &str) -> Option<Value> {
        serde_json::from_slice(&self.full_bytes(api_version, kind, false)).ok()
    }
}

/// Where the `metadata` member's value is in a serialized object.
fn metadata_range(item: &[u8]) -> Option<(u32, u32)> {
    #[derive(serde::Deserialize)]
    struct MetaOnly<'a> {
        #[serde(borrow)]
        metadata: &'a serde_json::value::RawValue,
    }
    let raw = serde_json::from_slice::<MetaOnly<'_>>(item)
        .ok()?
        .metadata
        .get();
    let start = raw.as_ptr() as usize - item.as_ptr() as usize;
    Some((u32::try_from(start).ok()?, u32::try_from(raw.len()).ok()?))
}

/// Serialized JSON without the spare capacity of the growing buffer (up to half of it,
/// which would otherwise stay allocated for the lifetime of the object).
fn compact_json(v: &Value) -> Result<Bytes, String> {
    let mut bytes = serde_json::to_vec(v).map_err(|e| e.to_string())?;
    bytes.shrink_to_fit();
    Ok(Bytes::from(bytes))
}

pub(crate) fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

/// The etcd key of an object relative to its resource prefix.
pub(crate) fn object_key(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

#[derive(Debug)]
struct Entry {
    key: Box<str>,
    /// The revision at which `cur` took effect.
    cur_rv: u64,
    /// The current state; `None` is a tombstone (deleted at `cur_rv`).
    cur: Option<Arc<Obj>>,
    /// Superseded states, oldest first, kept until compaction.
    old: Vec<(u64, Option<Arc<Obj>>)>,
}

impl Entry {
    fn at(&self, rv: u64) -> Option<&Arc<Obj>> {
        if self.cur_rv <= rv {
            return self.cur.as_ref();
        }
        self.old
            .iter()
            .rev()
            .find(|(r, _)| *r <= rv)
            .and_then(|(_, o)| o.as_ref())
    }

    fn is_plain(&self) -> bool {
        self.old.is_empty() && self.cur.is_some()
    }
}

/// What a collection holds.
#[derive(Clone, Debug)]
pub(crate) struct ResourceType {
    pub group: String,
    /// The version objects are stored and reported at.
    pub version: String,
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
    /// False for the aggregated metrics API, whose objects are not stored in etcd and are not
    /// part of [`crate::SimServer::objects`].
    pub persisted: bool,
    /// A custom resource (from a CRD): list items carry `apiVersion` and `kind`.
    pub custom: bool,
}

#[derive(Debug)]
pub(crate) struct Collection {
    pub rtype: ResourceType,
    entries: Vec<Entry>,
    /// Revision of the last write to this collection.
    last_change: u64,
    /// Entries that are tombstones or carry history; while zero, counts are index arithmetic.
    irregular: usize,
    live: usize,
}

impl Collection {
    fn new(rtype: ResourceType) -> Collection {
        Collection {
            rtype,
            entries: Vec::new(),
            last_change: 0,
            irregular: 0,
            live: 0,
        }
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|e| (*e.key).cmp(key))
    }

    /// Index range of the keys of one namespace (or everything).
    fn range(&self, namespace: Option<&str>) -> (usize, usize) {
        match namespace {
            None => (0, self.entries.len()),
            Some(ns) => {
                // "ns/" .. "ns0": '0' is the byte after '/'.
                let lo_key = format!("{ns}/");
                let hi_key = format!("{ns}0");
                let lo = self.entries.partition_point(|e| *e.key < *lo_key);
                let hi = self.entries.partition_point(|e| *e.key < *hi_key);
                (lo, hi)
            }
        }
    }
}

/// A page of a list.
pub(crate) struct Page {
    pub items: Vec<Arc<Obj>>,
    /// Key of the last item returned, when more items follow.
    pub continue_key: Option<String>,
    /// Items after this page (only computed without selectors, as on the real server).
    pub remaining: Option<u64>,
}

/// One write as a watch sees it.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub rv: u64,
    pub kind: EventKind,
    /// Storage group and resource of the object.
    pub group: Arc<str>,
    pub plural: Arc<str>,
    /// The new state; for a deletion, the last state (with its own resource version: the
    /// watch reports it at `rv`).
    pub obj: Arc<Obj>,
    /// The state before the write (none for a creation).
    pub prev: Option<Arc<Obj>>,
}

/// Everything stored, and the revision counter.
#[derive(Debug)]
pub(crate) struct Store {
    rv: u64,
    compacted: u64,
    collections: BTreeMap<(String, String), Collection>,
    /// Changes after the compaction point, in revision order.
    history: VecDeque<Change>,
    /// Revision of the newest change dropped from the history.
    dropped: u64,
    /// Every change since start-up, never compacted (for tests).
    journal: Vec<SimEvent>,
    /// The newest revision with a change, for the open watches to wake up on.
    notify: tokio::sync::watch::Sender<u64>,
}

impl Default for Store {
    fn default() -> Store {
        Store {
            rv: 0,
            compacted: 0,
            collections: BTreeMap::new(),
            history: VecDeque::new(),
            dropped: 0,
            journal: Vec::new(),
            notify: tokio::sync::watch::Sender::new(0),
        }
    }
}

/// The outcome of a write that can conflict.
#[derive(Debug)]
pub(crate) enum WriteError {
    NotFound,
    AlreadyExists,
    Conflict,
}

impl Store {
    pub(crate) fn new() -> Store {
        Store::default()
    }

    pub(crate) fn current_rv(&self) -> u64 {
        self.rv
    }

    pub(crate) fn compacted_rv(&self) -> u64 {
        self.compacted
    }

    /// Reserves the next revision.
    pub(crate) fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    pub(crate) fn ensure_collection(&mut self, rtype: ResourceType) {
        self.collections
            .entry((rtype.group.clone(), rtype.plural.clone()))
            .or_insert_with(|| Collection::new(rtype));
    }

    pub(crate) fn collection(&self, group: &str, plural: &str) -> Option<&Collection> {
        self.collections
            .get(&(group.to_string(), plural.to_string()))
    }

    fn collection_mut(&mut self, group: &str, plural: &str) -> Option<&mut Collection> {
        self.collections
            .get_mut(&(group.to_string(), plural.to_string()))
    }

    pub(crate) fn remove_collection(&mut self, group: &str, plural: &str) {
        self.collections
            .remove(&(group.to_string(), plural.to_string()));
    }

    /// Adds an object while the initial cluster is generated: no history, sorted later by
    /// [`Store::finish_bulk`].
    pub(crate) fn bulk_insert(&mut self, group: &str, plural: &str, obj: Obj) {
        if let Some(c) = self.collection_mut(group, plural) {
            let key = object_key(obj.namespace.as_deref(), &obj.name);
            c.last_change = c.last_change.max(obj.rv);
            c.live += 1;
            c.entries.push(Entry {
                key: key.into(),
                cur_rv: obj.rv,
                cur: Some(Arc::new(obj)),
                old: Vec::new(),
            });
        }
    }

    pub(crate) fn finish_bulk(&mut self) {
        for c in self.collections.values_mut() {
            c.entries.sort_by(|a, b| a.key.cmp(&b.key));
        }
    }

    pub(crate) fn get(&self, group: &str, plural: &str, key: &str) -> Option<Arc<Obj>> {
        let c = self.collection(group, plural)?;
        let i = c.find(key).ok()?;
        c.entries[i].cur.clone()
    }

    /// Writes a new version of an object. `expect` selects create (must not exist) or
    /// update (must exist; with `Some(rv)`, the current version must be `rv`).
    pub(crate) fn put(
        &mut self,
        group: &str,
        plural: &str,
        obj: Obj,
        mode: PutMode,
    ) -> Result<(), WriteError> {
        let rv = obj.rv;
        let key = object_key(obj.namespace.as_deref(), &obj.name);
        let c = self
            .collection_mut(group, plural)
            .ok_or(WriteError::NotFound)?;
        let obj = Arc::new(obj);
        let written = obj.clone();
        let prev = match c.find(&key) {
            Ok(i) => {
                let e = &mut c.entries[i];
                match (&mode, &e.cur) {
                    (PutMode::Create, Some(_)) => return Err(WriteError::AlreadyExists),
                    (PutMode::Update(_), None) => return Err(WriteError::NotFound),
                    (PutMode::Update(Some(expected)), Some(cur)) if cur.rv != *expected => {
                        return Err(WriteError::Conflict);
                    }
                    _ => {}
                }
                let was_plain = e.is_plain();
                if e.cur.is_none() {
                    c.live += 1;
                }
                let prev = e.cur.replace(obj);
                e.old.push((e.cur_rv, prev.clone()));
                e.cur_rv = rv;
                if was_plain {
                    c.irregular += 1;
                }
                prev
            }
            Err(i) => {
                if let PutMode::Update(_) = mode {
                    return Err(WriteError::NotFound);
                }
                c.live += 1;
                c.entries.insert(
                    i,
                    Entry {
                        key: key.into(),
                        cur_rv: rv,
                        cur: Some(obj),
                        old: Vec::new(),
                    },
                );
                // A new key did not exist at older revisions: that is history too.
                c.irregular += 1;
                c.entries[i].old.push((0, None));
                None
            }
        };
        c.last_change = rv;
        let kind = if prev.is_some() {
            EventKind::Modified
        } else {
            EventKind::Added
        };
        self.record(group, plural, kind, rv, written, prev);
        Ok(())
    }

    /// Records a change for the watches and the journal, and wakes the watches up.
    fn record(
        &mut self,
        group: &str,
        plural: &str,
        kind: EventKind,
        rv: u64,
        obj: Arc<Obj>,
        prev: Option<Arc<Obj>>,
    ) {
        let Some(c) = self.collection(group, plural) else {
            return;
        };
        self.journal.push(SimEvent {
            rv,
            kind,
            key: key_of(&c.rtype, &obj),
        });
        // Consecutive changes of one collection share its names.
        let (group, plural) = match self.history.back() {
            Some(last) if *last.group == *group && *last.plural == *plural => {
                (last.group.clone(), last.plural.clone())
            }
            _ => (Arc::from(group), Arc::from(plural)),
        };
        self.history.push_back(Change {
            rv,
            kind,
            group,
            plural,
            obj,
            prev,
        });
        self.notify.send_replace(rv);
    }

    /// The changes after revision `rv`, or `Err(compacted revision)` when it is older than
    /// the history. A new watch needs `rv` at or after the compaction point; a `live` one,
    /// which has seen every change up to `rv`, only needs none of the later ones dropped
    /// (compaction does not disturb open watches, as it does not disturb the watch cache's).
    pub(crate) fn changes_after(&self, rv: u64, live: bool) -> Result<Vec<Change>, u64> {
        let floor = if live { self.dropped } else { self.compacted };
        if rv < floor {
            return Err(self.compacted);
        }
        let from = self.history.partition_point(|c| c.rv <= rv);
        Ok(self.history.range(from..).cloned().collect())
    }

    /// A receiver that changes with every new change.
    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.notify.subscribe()
    }

    /// Every change since start-up.
    pub(crate) fn journal(&self) -> &[SimEvent] {
        &self.journal
    }

    /// Deletes an object at revision `rv`; returns the deleted version.
    pub(crate) fn delete(
        &mut self,
        group: &str,
        plural: &str,
        key: &str,
        rv: u64,
    ) -> Option<Arc<Obj>> {
        let c = self.collection_mut(group, plural)?;
        let i = c.find(key).ok()?;
        let e = &mut c.entries[i];
        let prev = e.cur.take()?;
        let was_plain = e.old.is_empty();
        e.old.push((e.cur_rv, Some(prev.clone())));
        e.cur_rv = rv;
        if was_plain {
            c.irregular += 1;
        }
        c.live -= 1;
        c.last_change = rv;
        self.record(
            group,
            plural,
            EventKind::Deleted,
            rv,
            prev.clone(),
            Some(prev.clone()),
        );
        Some(prev)
    }

    /// Forgets every version older than `rv` that is superseded at `rv`, and tombstones.
    /// Continue tokens of older revisions become invalid (410 Expired).
    pub(crate) fn compact(&mut self, rv: u64) {
        let rv = rv.min(self.rv);
        if rv <= self.compacted {
            return;
        }
        self.compacted = rv;
        let kept = self.history.partition_point(|c| c.rv <= rv);
        if kept > 0 {
            self.dropped = self.history[kept - 1].rv;
            self.history.drain(..kept);
        }
        for c in self.collections.values_mut() {
            if c.irregular == 0 {
                continue;
            }
            c.entries.retain_mut(|e| {
                if e.cur_rv <= rv {
                    e.old.clear();
                    e.old.shrink_to_fit();
                    return e.cur.is_some();
                }
                // Keep the newest superseded version visible at `rv`, drop older ones.
                if let Some(pos) = e.old.iter().rposition(|(r, _)| *r <= rv) {
                    e.old.drain(..pos);
                }
                true
            });
            c.irregular = c.entries.iter().filter(|e| !e.is_plain()).count();
        }
    }

    /// Lists a collection at revision `at`, starting at key `start` (inclusive).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn list(
        &self,
        group: &str,
        plural: &str,
        namespace: Option<&str>,
        start: Option<&str>,
        at: u64,
        limit: Option<usize>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Page {
        let Some(c) = self.collection(group, plural) else {
            return Page {
                items: Vec::new(),
                continue_key: None,
                remaining: None,
            };
        };
        let (lo, hi) = c.range(namespace);
        let from = match start {
            Some(s) => lo.max(c.entries.partition_point(|e| *e.key < *s)),
            None => lo,
        };
        let filtered = !labels.is_empty() || !fields.is_empty();
        let limit = limit.filter(|l| *l > 0);
        let mut items = Vec::with_capacity(limit.unwrap_or(64).min(hi.saturating_sub(from)));
        let mut i = from;
        let mut last_index = None;
        while i < hi {
            if let Some(l) = limit
                && items.len() >= l
            {
                break;
            }
            if let Some(obj) = c.entries[i].at(at)
                && (!filtered
                    || (labels.matches(|k| obj.label(k))
                        && fields.matches(obj.namespace.as_deref(), &obj.name, &obj.item)))
            {
                items.push(obj.clone());
                last_index = Some(i);
            }
            i += 1;
        }
        // More items follow only if another visible, matching item exists.
        let (continue_key, remaining) = match (limit, last_index) {
            (Some(_), Some(last)) if i < hi => {
                let rest = &c.entries[last + 1..hi];
                let remaining = if filtered {
                    // Only whether one more matches matters: no count is reported.
                    u64::from(rest.iter().filter_map(|e| e.at(at)).any(|o| {
                        labels.matches(|k| o.label(k))
                            && fields.matches(o.namespace.as_deref(), &o.name, &o.item)
                    }))
                } else if c.irregular == 0 && c.last_change <= at {
                    rest.len() as u64
                } else {
                    rest.iter().filter_map(|e| e.at(at)).count() as u64
                };
                if remaining == 0 {
                    (None, None)
                } else {
                    (
                        Some(c.entries[last].key.to_string()),
                        (!filtered).then_some(remaining),
                    )
                }
            }
            _ => (None, None),
        };
        Page {
            items,
            continue_key,
            remaining,
        }
    }

    /// Every stored (persisted) object, in collection then key order.
    pub(crate) fn keys(&self) -> Vec<ObjectKey> {
        let mut out = Vec::new();
        for c in self.collections.values() {
            if !c.rtype.persisted {
                continue;
            }
            for e in &c.entries {
                if let Some(o) = &e.cur {
                    out.push(key_of(&c.rtype, o));
                }
            }
        }
        out
    }

    /// Current objects of one collection.
    pub(crate) fn current(&self, group: &str, plural: &str) -> Vec<Arc<Obj>> {
        self.collection(group, plural)
            .map(|c| c.entries.iter().filter_map(|e| e.cur.clone()).collect())
            .unwrap_or_default()
    }

    pub(crate) fn collections(&self) -> impl Iterator<Item = &Collection> {
        self.collections.values()
    }

    pub(crate) fn live_count(&self) -> usize {
        self.collections
            .values()
            .filter(|c| c.rtype.persisted)
            .map(|c| c.live)
            .sum()
    }
}

pub(crate) fn key_of(rtype: &ResourceType, o: &Obj) -> ObjectKey {
    ObjectKey {
        group: rtype.group.clone(),
        version: rtype.version.clone(),
        resource: rtype.plural.clone(),
        kind: rtype.kind.clone(),
        namespace: o.namespace.as_deref().map(str::to_string),
        name: o.name.to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PutMode {
    Create,
    /// Update an existing object; with a resource version, only if it is still current.
    Update(Option<u64>),
}

/// A decoded continue token: where the next page starts and at which revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContinueToken {
    /// -1: continue at the newest revision (handed out with 410 Expired).
    pub rv: i64,
    /// The key after which the next page starts (the last key returned plus `\0`).
    pub start: String,
    /// Pages of this list already served (used by the expiry fault).
    pub pages: usize,
}

impl ContinueToken {
    /// The real server's format: base64url (no padding) of a small JSON document.
    pub(crate) fn encode(&self) -> String {
        let doc = format!(
            "{{\"v\":\"meta.k8s.io/v1\",\"rv\":{},\"start\":{},\"p\":{}}}",
            self.rv,
            json_str(&self.start),
            self.pages
        );
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(doc)
    }

    pub(crate) fn decode(token: &str) -> Result<ContinueToken, String> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.trim_end_matches('='))
            .map_err(|e| format!("continue key is not valid: {e}"))?;
        let doc: Value =
            serde_json::from_slice(&raw).map_err(|e| format!("continue key is not valid: {e}"))?;
        if doc.get("v").and_then(Value::as_str) != Some("meta.k8s.io/v1") {
            return Err(
                "continue key is not valid: server does not recognize this encoded key".into(),
            );
        }
        let rv = doc
            .get("rv")
            .and_then(Value::as_i64)
            .ok_or("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")?;
        if rv == 0 || rv < -1 {
            return Err(
                "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)".into(),
            );
        }
        let start = doc
            .get("start")
            .and_then(Value::as_str)
            .ok_or("continue key is not valid: encoded start key empty")?
            .to_string();
        if start.is_empty() || start.starts_with('/') || start.contains("..") {
            return Err("continue key is not valid: key is not a valid relative key".into());
        }
        let pages = doc.get("p").and_then(Value::as_u64).unwrap_or(1) as usize;
        Ok(ContinueToken { rv, start, pages })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm(ns: &str, name: &str, rv: u64) -> Obj {
        Obj::from_value(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns, "resourceVersion": rv.to_string(), "labels": {"n": name}}}),
            false,
            None,
        )
        .unwrap()
    }

    fn rtype() -> ResourceType {
        ResourceType {
            group: String::new(),
            version: "v1".into(),
            plural: "configmaps".into(),
            kind: "ConfigMap".into(),
            namespaced: true,
            persisted: true,
            custom: false,
        }
    }

    #[test]
    fn snapshot_paging() {
        let mut s = Store::new();
        s.ensure_collection(rtype());
        for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
            let rv = s.next_rv();
            assert_eq!(rv, i as u64 + 1);
            s.bulk_insert("", "configmaps", cm("ns", name, rv));
        }
        s.finish_bulk();
        let none = (LabelSelector::default(), FieldSelector::default());
        let at = s.current_rv();
        let p1 = s.list("", "configmaps", None, None, at, Some(2), &none.0, &none.1);
        assert_eq!(p1.items.len(), 2);
        assert_eq!(p1.remaining, Some(2));
        let start = format!("{}\0", p1.continue_key.clone().unwrap());
        // Delete c, add bb, modify d: the continued list still shows the snapshot.
        let rv = s.next_rv();
        s.delete("", "configmaps", "ns/c", rv);
        let rv = s.next_rv();
        s.put("", "configmaps", cm("ns", "bb", rv), PutMode::Create)
            .unwrap();
        let rv = s.next_rv();
        s.put(
            "",
            "configmaps",
            cm("ns", "d", rv),
            PutMode::Update(Some(4)),
        )
        .unwrap();
        let p2 = s.list(
            "",
            "configmaps",
            None,
            Some(&start),
            at,
            Some(2),
            &none.0,
            &none.1,
        );
        let names: Vec<_> = p2.items.iter().map(|o| o.name.to_string()).collect();
        assert_eq!(names, vec!["c", "d"]);
        assert_eq!(p2.items[1].rv, 4);
        assert!(p2.continue_key.is_none());
        // At the newest revision.
        let newest = |s: &Store| {
            s.list(
                "",
                "configmaps",
                Some("ns"),
                None,
                s.current_rv(),
                None,
                &none.0,
                &none.1,
            )
        };
        let now = newest(&s);
        let names: Vec<_> = now.items.iter().map(|o| o.name.to_string()).collect();
        assert_eq!(names, vec!["a", "b", "bb", "d"]);
        s.compact(s.current_rv());
        let now2 = newest(&s);
        assert_eq!(now2.items.len(), 4);
        assert!(matches!(
            s.put(
                "",
                "configmaps",
                cm("ns", "d", 99),
                PutMode::Update(Some(4))
            ),
            Err(WriteError::Conflict)
        ));
    }

    #[test]
    fn token_round_trip() {
        let t = ContinueToken {
            rv: 42,
            start: "ns/name\0".into(),
            pages: 3,
        };
        assert_eq!(ContinueToken::decode(&t.encode()).unwrap(), t);
        assert!(ContinueToken::decode("not a token").is_err());
    }

    #[test]
    fn full_bytes_adds_type() {
        let o = cm("ns", "a", 1);
        let v: Value = serde_json::from_slice(&o.full_bytes("v1", "ConfigMap", false)).unwrap();
        assert_eq!(v["kind"], "ConfigMap");
        assert_eq!(v["metadata"]["name"], "a");
        let item: Value = serde_json::from_slice(&o.item).unwrap();
        assert!(item.get("kind").is_none());
        assert_eq!(o.label("n"), Some("a"));
        assert_eq!(o.label("m"), None);
        let e = Obj::from_value(
            json!({"metadata": {"name": "x", "labels": {"a": "", "b": "2"}}}),
            false,
            None,
        )
        .unwrap();
        assert_eq!(e.label("a"), Some(""));
        assert_eq!(e.label("b"), Some("2"));
    }
}
