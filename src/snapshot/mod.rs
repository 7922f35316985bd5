//! Reading a cluster into a snapshot: discover every listable resource, list each one page
//! by page, clean every object with the rules, hash its canonical JSON and hand it to the
//! store; then write the manifest. Objects stream through (a page at a time per resource);
//! only the manifest entries grow with the cluster. A resource or group that cannot be read
//! is recorded as skipped with the reason; it never fails the snapshot as a whole, unless
//! nothing at all could be listed or the namespaces could not: such a snapshot would look
//! complete and restore nothing, so it fails without a manifest instead.
//!
//! This module never writes to the cluster.

pub mod canonical;
pub mod checkpoint;
pub(crate) mod manager;
pub mod rules;
pub mod seen;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

pub use rules::Rules;

use crate::kube::{
    Api, ApiError, ConnectError, DiscoveryError, Paging, ResourceType, RetryPolicy, Skipped,
    discover,
};
use crate::repo::identity;
use crate::repo::list_file;
use crate::repo::manifest::{
    self, Change, Manifest, ManifestObject, ManifestResource, SealedFile, SnapshotStats,
};
use crate::seal::{Encryption, SealError, Sealer};
use crate::store::cache::Table;
use crate::store::{ObjectId, SnapshotTime, Store, StoreError};
use crate::task;

/// The local index's table of sealed plain-layout files: recipe -> the file stored for it.
const SEALED_FILES_TABLE: &str = "sealed-files";

/// How to read the cluster.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    pub cluster_name: String,
    /// Items per list request.
    pub page_size: u32,
    /// Resources listed at the same time.
    pub concurrency: usize,
    pub retry: RetryPolicy,
    pub rules: Rules,
    /// Restarts of one resource's list after expired continue tokens before giving up on it.
    pub max_list_restarts: u32,
    /// The snapshot's name when not now (the next free second after it when taken): for
    /// importing history, and for tests of what happens over days.
    pub time: Option<SnapshotTime>,
    /// Resources whose objects are encrypted, and to whom (`None`: nothing is).
    pub encryption: Option<Encryption>,
    /// Store a checkpoint (`store/checkpoints/`, never exported) instead of a snapshot.
    pub checkpoint: bool,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        Self {
            cluster_name: "cluster".to_string(),
            page_size: 500,
            concurrency: 4,
            retry: RetryPolicy::default(),
            rules: Rules::default(),
            max_list_restarts: 5,
            time: None,
            encryption: None,
            checkpoint: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(
        "{0}; check the kubeconfig and context, and that the API server is reachable from here"
    )]
    Discovery(#[from] DiscoveryError),
    /// Nothing worth a snapshot could be read; no manifest was written.
    #[error(
        "{0}; check that the service account kube-autosave runs as may list them \
         (its RBAC) and that the API server is healthy"
    )]
    Unreadable(String),
    /// The destination folder holds the snapshots of another cluster: a configuration error.
    #[error(transparent)]
    OtherCluster(#[from] identity::OtherCluster),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Seal(#[from] SealError),
}

impl SnapshotError {
    /// A short, stable name for the kind of failure (the daemon's metrics label).
    pub fn reason(&self) -> &'static str {
        match self {
            SnapshotError::Connect(_) => "cluster_connect",
            SnapshotError::Discovery(_) => "cluster_discovery",
            SnapshotError::Unreadable(_) => "cluster_unreadable",
            SnapshotError::OtherCluster(_) => "other_cluster",
            SnapshotError::Store(e) => e.reason(),
            SnapshotError::Seal(SealError::Store(e)) => e.reason(),
            SnapshotError::Seal(_) => "encryption",
        }
    }
}

/// What a snapshot reports while it runs.
#[derive(Debug, Clone)]
pub enum Progress {
    Discovered { resources: usize, skipped: usize },
    Page { objects: u64 },
    ResourceDone { resource: String, objects: u64 },
    ResourceSkipped { resource: String, reason: String },
}

pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// Reads a list page, handing each item to `each` as soon as it is parsed; returns the
/// page's metadata.
fn parse_page(body: &[u8], each: impl FnMut(Value)) -> Result<ListMeta, serde_json::Error> {
    use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use std::fmt;

    #[derive(Deserialize)]
    #[serde(field_identifier, rename_all = "lowercase")]
    enum Field {
        Metadata,
        Items,
        #[serde(other)]
        Other,
    }
    struct Page<F>(F);
    struct Items<'f, F>(&'f mut F);

    impl<'de, F: FnMut(Value)> Visitor<'de> for Page<F> {
        type Value = ListMeta;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list")
        }
        fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<ListMeta, A::Error> {
            let mut metadata = ListMeta::default();
            while let Some(field) = map.next_key()? {
                match field {
                    Field::Metadata => metadata = map.next_value()?,
                    Field::Items => map.next_value_seed(Items(&mut self.0))?,
                    Field::Other => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(metadata)
        }
    }
    impl<'de, F: FnMut(Value)> DeserializeSeed<'de> for Items<'_, F> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de, F: FnMut(Value)> Visitor<'de> for Items<'_, F> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of items")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(item) = seq.next_element()? {
                (self.0)(item);
            }
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    }

    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let metadata = serde::Deserializer::deserialize_map(&mut deserializer, Page(each))?;
    deserializer.end()?;
    Ok(metadata)
}

/// A list page whose items are left unparsed, to look at their metadata first.
#[derive(Deserialize)]
struct RawListPage<'a> {
    #[serde(borrow, default)]
    kind: Cow<'a, str>,
    #[serde(default)]
    metadata: ListMeta,
    #[serde(borrow, default)]
    items: Vec<&'a RawValue>,
}

/// What says whether an object changed since it was last seen.
#[derive(Deserialize, Default)]
struct ItemHead<'a> {
    #[serde(borrow, default)]
    metadata: MetaHead<'a>,
}

#[derive(Deserialize, Default)]
struct MetaHead<'a> {
    #[serde(borrow, default)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    uid: Cow<'a, str>,
    #[serde(borrow, default, rename = "resourceVersion")]
    resource_version: Cow<'a, str>,
}

#[derive(Deserialize, Default)]
struct ListMeta {
    #[serde(rename = "continue", default)]
    continue_token: Option<String>,
}

/// The store writer stopped (its error is what the caller reports).
struct WriterGone;

/// The objects read from one resource.
#[derive(Default)]
struct ResourceOutcome {
    entries: Vec<ManifestObject>,
    skipped: Option<Skipped>,
    /// Objects left out because their namespace or name cannot be part of a key.
    unsafe_objects: Vec<Skipped>,
    excluded: u64,
    bytes: u64,
    pages: u64,
    gets: u64,
    restarts: u64,
    /// The objects of a sealed resource as read (namespace, name, id, plaintext): its
    /// plain-layout files are rendered and encrypted once the list is complete.
    plaintexts: Vec<(Option<String>, String, ObjectId, Bytes)>,
    /// The encrypted plain-layout file of each namespace of a sealed resource.
    sealed_files: Vec<(Option<String>, SealedFile)>,
    /// Why objects of a sealed resource could not be encrypted (the resource is skipped:
    /// nothing is stored in the clear instead).
    seal_failure: Option<String>,
    /// Objects read in full that are new or whose id changed since the previous snapshot,
    /// when the snapshot records changes.
    changes: Vec<Change>,
}

/// Asks for the objects' metadata only; a server that cannot render it sends full objects.
const METADATA_ACCEPT: &str =
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";

/// When more than one object in this many changed, the resource is listed again in full
/// instead of reading the changed objects one by one.
const GET_SHARE: u64 = 8;

/// Changed objects of one resource read at the same time.
const GET_CONCURRENCY: usize = 4;

struct Lister<'a> {
    api: &'a Api,
    store: &'a Store,
    seen_cache: &'a SeenCache,
    options: &'a SnapshotOptions,
    objects: mpsc::Sender<(ObjectId, Bytes)>,
    progress: &'a ProgressFn,
    seen: &'a AtomicU64,
    sealer: Option<&'a Sealer>,
    /// Recipe of a sealed file -> the file stored for it (a table of the local index).
    sealed_files: Option<&'a Table<SealedFile>>,
    /// Whether to record which objects are new or changed: only when the seen cache has a
    /// previous snapshot to compare with. Without one every object would be new, and at a
    /// million objects the list would cost seconds and tens of megabytes for nothing.
    record_changes: bool,
}

use tokio::sync::mpsc;

use seen::{Outcome, ResourceSeen, Seen, SeenCache};

/// `metadata.uid` and `metadata.resourceVersion` of a listed object ("" when absent).
fn identity(item: &Value) -> (String, String) {
    let field = |name: &str| {
        item.get("metadata")
            .and_then(|m| m.get(name))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (field("uid"), field("resourceVersion"))
}

impl Lister<'_> {
    /// Reads one resource: only what changed when the previous snapshot saw it, else in full.
    async fn list(&self, index: u32, rt: &ResourceType) -> Result<ResourceOutcome, WriterGone> {
        let previous = self.seen_cache.take(rt);
        let sealer = self.sealer_of(rt);
        let mut changes = ResourceOutcome::default();
        let read = match sealer {
            _ if previous.is_empty() => None,
            None => {
                self.list_changes(index, rt, &previous, &mut changes)
                    .await?
            }
            Some(sealer) => {
                self.list_sealed_changes(index, rt, sealer, &previous, &mut changes)
                    .await?
            }
        };
        // A sealed group's file is rendered from every one of its objects, and sealed
        // objects stored earlier are not readable here: the full list reads them all (and
        // still compares them with what was seen, for the changes).
        let reuse = !(read.is_none() && sealer.is_some());
        let (mut outcome, seen_now) = match read {
            Some(seen_now) => (changes, seen_now),
            None => {
                let (mut full, seen_now) = self.list_full(index, rt, &previous, reuse).await?;
                // The requests of a read of the changes that gave way count too.
                full.pages += changes.pages;
                full.gets += changes.gets;
                (full, seen_now)
            }
        };
        if let (Some(sealer), None) = (sealer, &outcome.skipped) {
            match self.seal_files(sealer, &mut outcome) {
                Ok(files) => {
                    for file in files {
                        self.objects.send(file).await.map_err(|_| WriterGone)?;
                    }
                }
                Err(e) => outcome.seal_failure = Some(e.to_string()),
            }
            if let Some(why) = outcome.seal_failure.take() {
                let e = ApiError::Decode(format!("cannot encrypt its objects: {why}"));
                outcome = self.skip(rt, outcome, &e);
            }
        }
        if outcome.skipped.is_none() {
            (self.progress)(Progress::ResourceDone {
                resource: rt.qualified_name(),
                objects: outcome.entries.len() as u64,
            });
            self.seen_cache.record(rt, seen_now);
        }
        Ok(outcome)
    }

    /// A list of one namespace's objects (`None`: all namespaces), page by page.
    fn paging<'a>(&'a self, rt: &'a ResourceType, namespace: Option<&'a str>) -> Paging<'a> {
        Paging::new(
            rt,
            namespace,
            self.options.rules.label_selector.as_deref(),
            self.options.page_size,
            self.options.max_list_restarts,
        )
    }

    /// Reads one object with a list narrowed to its name (a `metadata.name` field selector),
    /// which every resource supports: the service account then needs `list` and `watch`
    /// only, where `get` on every resource would also grant subresources such as
    /// `nodes/proxy` (the kubelet's API) and `pods/log`. `None` when it is gone.
    async fn read_one(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, ApiError> {
        let path = rt.named_list_path(namespace, name);
        let body = self.api.get(&path, "application/json").await?;
        let mut found = None;
        parse_page(&body, |item| {
            found.get_or_insert(item);
        })
        .map_err(|e| ApiError::Decode(format!("{path}: {e}")))?;
        Ok(found)
    }

    /// Lists the metadata of the objects only, takes the unchanged ones (same uid and
    /// resourceVersion) as the previous snapshot saw them and reads the others one by one.
    /// `None` when a full list is the better or the only way: the server cannot list
    /// metadata only, a request failed (the full list retries it, or says why it skips the
    /// resource), or more than one object in [`GET_SHARE`] changed. Its objects and requests
    /// go into `outcome`.
    ///
    /// The set of objects is the one of the metadata list; a changed object is read as it
    /// is when its turn comes, which may be a later version than the one listed.
    async fn list_changes(
        &self,
        index: u32,
        rt: &ResourceType,
        previous: &ResourceSeen,
        outcome: &mut ResourceOutcome,
    ) -> Result<Option<Vec<Seen>>, WriterGone> {
        let mut seen_now: Vec<Seen> = Vec::new();
        let mut changed: Vec<(Option<String>, String)> = Vec::new();
        let mut paging = self.paging(rt, None);
        let mut count = 0u64;
        loop {
            let path = paging.path();
            outcome.pages += 1;
            let body = match self.api.get(&path, METADATA_ACCEPT).await {
                Ok(body) => body,
                Err(e) => {
                    tracing::debug!(resource = %rt.qualified_name(), error = %e, "metadata list failed; listing in full");
                    return Ok(None);
                }
            };
            let Ok(page) = serde_json::from_slice::<RawListPage>(&body) else {
                return Ok(None);
            };
            if page.kind != "PartialObjectMetadataList" {
                tracing::debug!(resource = %rt.qualified_name(), "the server lists full objects only");
                return Ok(None);
            }
            for raw in page.items {
                count += 1;
                let Ok(ItemHead { metadata: head }) = serde_json::from_str::<ItemHead>(raw.get())
                else {
                    return Ok(None);
                };
                if !self.reuse(index, rt, &head, previous, outcome, &mut seen_now) {
                    let namespace = head.namespace.filter(|_| rt.namespaced);
                    changed.push((namespace.map(Cow::into_owned), head.name.into_owned()));
                }
            }
            // Stop early when it is clear that a full list is cheaper.
            if changed.len() > 64 && changed.len() as u64 * GET_SHARE > count {
                return Ok(None);
            }
            if !paging.advance(page.metadata.continue_token) {
                break;
            }
        }
        if changed.len() as u64 * GET_SHARE > count {
            return Ok(None);
        }
        let mut fetched =
            futures::stream::iter(changed)
                .map(|(namespace, name)| async move {
                    self.read_one(rt, namespace.as_deref(), &name).await
                })
                .buffered(GET_CONCURRENCY);
        while let Some(fetched) = fetched.next().await {
            outcome.gets += 1;
            let item = match fetched {
                Ok(Some(item)) => item,
                // Deleted since it was listed.
                Ok(None) => continue,
                Err(e) => {
                    tracing::debug!(resource = %rt.qualified_name(), error = %e, "reading a changed object failed; listing in full");
                    return Ok(None);
                }
            };
            if let Some(object) = self.clean(index, rt, item, previous, outcome, &mut seen_now) {
                self.objects.send(object).await.map_err(|_| WriterGone)?;
            }
        }
        self.seen.fetch_add(count, Ordering::Relaxed);
        (self.progress)(Progress::Page { objects: count });
        Ok(Some(seen_now))
    }

    /// For a sealed resource: lists the metadata only, takes the namespaces where nothing
    /// changed as the previous snapshot saw them, file included, and lists each namespace
    /// where something changed in full, since its file is rendered from all its objects.
    /// `None` when a full list is the better or the only way (as for [`Self::list_changes`]);
    /// its requests go into `outcome` either way.
    async fn list_sealed_changes(
        &self,
        index: u32,
        rt: &ResourceType,
        sealer: &Sealer,
        previous: &ResourceSeen,
        outcome: &mut ResourceOutcome,
    ) -> Result<Option<Vec<Seen>>, WriterGone> {
        if !rt.namespaced {
            return Ok(None);
        }
        let mut seen_now: Vec<Seen> = Vec::new();
        let mut namespaces: BTreeMap<String, bool> = BTreeMap::new();
        let mut paging = self.paging(rt, None);
        let mut count = 0u64;
        loop {
            let path = paging.path();
            outcome.pages += 1;
            let Ok(body) = self.api.get(&path, METADATA_ACCEPT).await else {
                return Ok(None);
            };
            let Ok(page) = serde_json::from_slice::<RawListPage>(&body) else {
                return Ok(None);
            };
            if page.kind != "PartialObjectMetadataList" {
                return Ok(None);
            }
            for raw in page.items {
                count += 1;
                let Ok(ItemHead { metadata: head }) = serde_json::from_str::<ItemHead>(raw.get())
                else {
                    return Ok(None);
                };
                let Some(namespace) = head.namespace.as_deref() else {
                    return Ok(None);
                };
                // A namespace goes into a request path: only a valid one.
                if unsafe_key(rt, Some(namespace), &head.name).is_some() {
                    return Ok(None);
                }
                let reused = self.reuse(index, rt, &head, previous, outcome, &mut seen_now);
                *namespaces.entry(namespace.to_string()).or_default() |= !reused;
            }
            if !paging.advance(page.metadata.continue_token) {
                break;
            }
        }
        // A namespace whose objects are all unchanged keeps its file, when the set of its
        // objects is one a file was made for (an object deleted makes another set).
        let mut reused: Vec<&ManifestObject> = outcome.entries.iter().collect();
        reused.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let mut unchanged_files = Vec::new();
        for group in reused.chunk_by(|a, b| a.namespace == b.namespace) {
            let Some(namespace) = &group[0].namespace else {
                continue;
            };
            if namespaces.get(namespace) == Some(&true) {
                continue;
            }
            let ids: Vec<ObjectId> = group.iter().map(|e| e.id).collect();
            match self.known_sealed_file(sealer, &ids) {
                Some(file) => unchanged_files.push((Some(namespace.clone()), file)),
                None => {
                    namespaces.insert(namespace.clone(), true);
                }
            }
        }
        let all = namespaces.len();
        let changed: Vec<String> = namespaces
            .into_iter()
            .filter_map(|(namespace, changed)| changed.then_some(namespace))
            .collect();
        // Reading most namespaces one by one costs more than one list of them all.
        if changed.len() > 4 && changed.len() * 2 > all {
            return Ok(None);
        }
        outcome.sealed_files.extend(unchanged_files);
        let is_changed = |namespace: &Option<String>| {
            namespace
                .as_ref()
                .is_some_and(|ns| changed.binary_search(ns).is_ok())
        };
        let removed: u64 = outcome
            .entries
            .iter()
            .filter(|e| is_changed(&e.namespace))
            .map(|e| u64::from(e.size))
            .sum();
        let excluded = seen_now
            .iter()
            .filter(|s| is_changed(&s.namespace) && matches!(s.outcome, Outcome::Excluded))
            .count() as u64;
        // Read again below, in full.
        outcome.bytes -= removed;
        outcome.excluded -= excluded;
        outcome.entries.retain(|e| !is_changed(&e.namespace));
        seen_now.retain(|s| !is_changed(&s.namespace));
        for namespace in &changed {
            let mut paging = self.paging(rt, Some(namespace));
            loop {
                let path = paging.path();
                outcome.pages += 1;
                let Ok(body) = self.api.get(&path, "application/json").await else {
                    return Ok(None);
                };
                let mut cleaned: Vec<(ObjectId, Bytes)> = Vec::new();
                let parsed = parse_page(&body, |item| {
                    cleaned.extend(self.clean(index, rt, item, previous, outcome, &mut seen_now));
                });
                let Ok(metadata) = parsed else {
                    return Ok(None);
                };
                for object in cleaned {
                    self.objects.send(object).await.map_err(|_| WriterGone)?;
                }
                if !paging.advance(metadata.continue_token) {
                    break;
                }
            }
        }
        self.seen.fetch_add(count, Ordering::Relaxed);
        (self.progress)(Progress::Page { objects: count });
        Ok(Some(seen_now))
    }

    /// Lists every object in full, page by page; with `reuse`, objects unchanged since
    /// `previous` are taken from it rather than cleaned and hashed again (the others are
    /// compared with it all the same, for the changes).
    async fn list_full(
        &self,
        index: u32,
        rt: &ResourceType,
        previous: &ResourceSeen,
        reuse: bool,
    ) -> Result<(ResourceOutcome, Vec<Seen>), WriterGone> {
        let mut outcome = ResourceOutcome::default();
        let mut seen_now: Vec<Seen> = Vec::new();
        let mut paging = self.paging(rt, None);
        loop {
            let path = paging.path();
            outcome.pages += 1;
            let body = match self.api.get(&path, "application/json").await {
                Ok(body) => body,
                Err(e) if paging.restart(&e) => {
                    // Forget what this resource gave so far (the store keeps the objects;
                    // they are not sent twice).
                    outcome.restarts += 1;
                    outcome.entries.clear();
                    outcome.plaintexts.clear();
                    outcome.changes.clear();
                    outcome.excluded = 0;
                    outcome.bytes = 0;
                    seen_now.clear();
                    continue;
                }
                Err(e) => return Ok((self.skip(rt, outcome, &e), seen_now)),
            };
            // Cleaned objects of this page, handed to the store once the page is read.
            let mut cleaned: Vec<(ObjectId, Bytes)> = Vec::new();
            let mut count = 0u64;
            let parsed = if previous.is_empty() || !reuse {
                // Nothing to take as it was: every item in full, one at a time, so that only
                // one item's tree is in memory.
                parse_page(&body, |item| {
                    count += 1;
                    cleaned.extend(self.clean(
                        index,
                        rt,
                        item,
                        previous,
                        &mut outcome,
                        &mut seen_now,
                    ));
                })
            } else {
                serde_json::from_slice::<RawListPage>(&body).and_then(|page| {
                    for raw in page.items {
                        count += 1;
                        let reused =
                            serde_json::from_str::<ItemHead>(raw.get()).is_ok_and(|item| {
                                self.reuse(
                                    index,
                                    rt,
                                    &item.metadata,
                                    previous,
                                    &mut outcome,
                                    &mut seen_now,
                                )
                            });
                        if reused {
                            continue;
                        }
                        let item = serde_json::from_str(raw.get())?;
                        cleaned.extend(self.clean(
                            index,
                            rt,
                            item,
                            previous,
                            &mut outcome,
                            &mut seen_now,
                        ));
                    }
                    Ok(page.metadata)
                })
            };
            let metadata = match parsed {
                Ok(metadata) => metadata,
                Err(e) => {
                    let e = ApiError::Decode(format!("{path}: {e}"));
                    return Ok((self.skip(rt, outcome, &e), seen_now));
                }
            };
            for object in cleaned {
                self.objects.send(object).await.map_err(|_| WriterGone)?;
            }
            self.seen.fetch_add(count, Ordering::Relaxed);
            (self.progress)(Progress::Page { objects: count });
            if !paging.advance(metadata.continue_token) {
                break;
            }
        }
        Ok((outcome, seen_now))
    }

    /// Takes an object unchanged since the previous snapshot (same uid and resourceVersion)
    /// as it was then, without parsing it; returns whether it did.
    fn reuse(
        &self,
        index: u32,
        rt: &ResourceType,
        head: &MetaHead,
        previous: &ResourceSeen,
        outcome: &mut ResourceOutcome,
        seen_now: &mut Vec<Seen>,
    ) -> bool {
        if head.uid.is_empty() || head.resource_version.is_empty() {
            return false;
        }
        let namespace = head.namespace.as_deref().filter(|_| rt.namespaced);
        let key = seen::object_key(namespace, &head.name);
        let Some(before) = previous.get(&key) else {
            return false;
        };
        if before.uid != head.uid || before.resource_version != head.resource_version {
            return false;
        }
        match before.outcome {
            Outcome::Excluded => outcome.excluded += 1,
            Outcome::Kept { id, size } => {
                // An object the store lost (its pack gone from the destination) is read and
                // stored again; referring to it would make the snapshot unrestorable. While
                // the index has forgotten nothing since the cache was written, none was lost.
                if !self.seen_cache.ids_still_held() && !self.store.contains(&id).unwrap_or(false) {
                    return false;
                }
                outcome.bytes += u64::from(size);
                outcome.entries.push(ManifestObject {
                    resource: index,
                    namespace: before.namespace.clone(),
                    name: before.name.clone(),
                    id,
                    size,
                });
            }
        }
        seen_now.push(before.clone());
        true
    }

    /// Cleans an object with the rules; returns it, canonical and hashed, when it is kept.
    /// When changes are recorded, one whose id differs from the one in `previous` (or that
    /// is not there) is a change.
    fn clean(
        &self,
        index: u32,
        rt: &ResourceType,
        mut item: Value,
        previous: &ResourceSeen,
        outcome: &mut ResourceOutcome,
        seen_now: &mut Vec<Seen>,
    ) -> Option<(ObjectId, Bytes)> {
        let (uid, resource_version) = identity(&item);
        // Before the rules drop managedFields.
        let manager = if self.record_changes {
            manager::last_manager(&item)
        } else {
            None
        };
        let kept = self.options.rules.apply(rt, &mut item).is_ok();
        let metadata = item.get("metadata");
        let name = metadata
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let namespace = metadata
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .filter(|_| rt.namespaced)
            .map(str::to_string);
        let mut record = Seen {
            namespace,
            name,
            uid,
            resource_version,
            outcome: Outcome::Excluded,
        };
        if let Some(why) = unsafe_key(rt, record.namespace.as_deref(), &record.name) {
            outcome.unsafe_objects.push(Skipped {
                group: rt.group.clone(),
                version: Some(rt.version.clone()),
                resource: Some(rt.resource.clone()),
                namespace: record.namespace,
                name: Some(record.name),
                code: None,
                reason: why,
            });
            return None;
        }
        // Without both, a later snapshot cannot tell whether the object changed.
        let remember = !record.uid.is_empty() && !record.resource_version.is_empty();
        if !kept {
            outcome.excluded += 1;
            if remember {
                seen_now.push(record);
            }
            return None;
        }
        let bytes = Bytes::from(canonical::to_vec(&item));
        drop(item);
        let sealer = self.sealer_of(rt);
        let id = match sealer {
            Some(sealer) => sealer.id_of(&bytes),
            None => ObjectId::of(&bytes),
        };
        let size = bytes.len() as u32;
        outcome.bytes += bytes.len() as u64;
        outcome.entries.push(ManifestObject {
            resource: index,
            namespace: record.namespace.clone(),
            name: record.name.clone(),
            id,
            size,
        });
        record.outcome = Outcome::Kept { id, size };
        if self.record_changes {
            let key = seen::object_key(record.namespace.as_deref(), &record.name);
            let before = previous.get(&key).map(|seen| seen.outcome);
            if !matches!(before, Some(Outcome::Kept { id: was, .. }) if was == id) {
                outcome.changes.push(Change {
                    resource: index,
                    namespace: record.namespace.clone(),
                    name: record.name.clone(),
                    manager,
                });
            }
        }
        let stored = match sealer {
            None => Some((id, bytes)),
            Some(sealer) => {
                outcome.plaintexts.push((
                    record.namespace.clone(),
                    record.name.clone(),
                    id,
                    bytes.clone(),
                ));
                // Encrypting costs more than hashing: only what the store does not hold.
                if self.store.contains(&id).unwrap_or(false) {
                    None
                } else {
                    match sealer.seal_object(&id, &bytes) {
                        Ok(sealed) => Some((id, Bytes::from(sealed))),
                        Err(e) => {
                            outcome.seal_failure.get_or_insert(e.to_string());
                            None
                        }
                    }
                }
            }
        };
        if remember {
            seen_now.push(record);
        }
        stored
    }

    /// The sealed file stored earlier for a group of these objects, in this order.
    fn known_sealed_file(&self, sealer: &Sealer, ids: &[ObjectId]) -> Option<SealedFile> {
        self.known_sealed_file_of(&sealed_file_recipe(sealer, ids))
    }

    /// The sealed file stored earlier for `recipe`, while the store holds it.
    fn known_sealed_file_of(&self, recipe: &blake3::Hash) -> Option<SealedFile> {
        self.sealed_files
            .and_then(|table| table.get(recipe.as_bytes()))
            .filter(|file| self.store.contains(&file.id).unwrap_or(false))
    }

    /// The sealer, when objects of `rt` are sealed.
    fn sealer_of(&self, rt: &ResourceType) -> Option<&Sealer> {
        self.sealer.filter(|sealer| sealer.seals(rt))
    }

    /// The encrypted plain-layout file of each namespace of a sealed resource, from the
    /// plaintexts its list gave (which it then drops): an unchanged group keeps the file
    /// stored for it before, so that the exporter copies it; a changed one is rendered as
    /// the exporter renders plain files and encrypted. Returns the new files to store.
    fn seal_files(
        &self,
        sealer: &Sealer,
        outcome: &mut ResourceOutcome,
    ) -> Result<Vec<(ObjectId, Bytes)>, SealError> {
        let mut plaintexts = std::mem::take(&mut outcome.plaintexts);
        // The manifest's order, so that the file lists its objects as the manifest does.
        plaintexts.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let mut new_files = Vec::new();
        for group in plaintexts.chunk_by(|a, b| a.0 == b.0) {
            let ids: Vec<ObjectId> = group.iter().map(|g| g.2).collect();
            let recipe = sealed_file_recipe(sealer, &ids);
            let file = match self.known_sealed_file_of(&recipe) {
                Some(file) => file,
                None => {
                    let objects: Vec<Bytes> = group.iter().map(|g| g.3.clone()).collect();
                    let data = sealer.seal_file(&list_file::render(&objects))?;
                    let file = SealedFile {
                        id: ObjectId::of(&data),
                        size: data.len() as u64,
                    };
                    if let Some(table) = self.sealed_files {
                        table.insert(recipe.as_bytes(), &file)?;
                    }
                    new_files.push((file.id, Bytes::from(data)));
                    file
                }
            };
            outcome.sealed_files.push((group[0].0.clone(), file));
        }
        Ok(new_files)
    }

    fn skip(
        &self,
        rt: &ResourceType,
        mut outcome: ResourceOutcome,
        e: &ApiError,
    ) -> ResourceOutcome {
        tracing::warn!(resource = %rt.qualified_name(), error = %e, "skipping resource");
        (self.progress)(Progress::ResourceSkipped {
            resource: rt.qualified_name(),
            reason: e.to_string(),
        });
        outcome.entries.clear();
        outcome.plaintexts.clear();
        outcome.sealed_files.clear();
        outcome.changes.clear();
        outcome.skipped = Some(Skipped {
            group: rt.group.clone(),
            version: Some(rt.version.clone()),
            resource: Some(rt.resource.clone()),
            namespace: None,
            name: None,
            code: e.code(),
            reason: e.to_string(),
        });
        outcome
    }
}

/// What a sealed file is made of: the key of its objects' ids and the ids, in order.
fn sealed_file_recipe(sealer: &Sealer, ids: &[ObjectId]) -> blake3::Hash {
    let mut recipe = blake3::Hasher::new_derive_key("kube-autosave sealed file v1");
    recipe.update(sealer.key_reference());
    for id in ids {
        recipe.update(id.as_bytes());
    }
    recipe.finalize()
}

/// Takes one snapshot of the cluster behind `api` into `store` and writes its manifest.
pub async fn take_snapshot(
    api: &Api,
    store: &Store,
    options: &SnapshotOptions,
    progress: ProgressFn,
) -> Result<Manifest, SnapshotError> {
    let started = Instant::now();
    let time = unused_time(store, options.time, options.checkpoint).await?;
    check_cluster(api, store, &options.cluster_name).await?;

    let sealer = match &options.encryption {
        Some(encryption) => Some(Sealer::open(store, encryption).await?),
        None => None,
    };
    let sealed_files = match &sealer {
        Some(_) => Some(store.cache().table::<SealedFile>(SEALED_FILES_TABLE)?),
        None => None,
    };
    // The previous snapshot's objects are read from disk while discovery asks the API server.
    // Its ids depend on the sealing key, so each key (or none) has its own.
    let seen_path = match &sealer {
        Some(sealer) => store.local_file(&format!(
            "seen-sealed-{}",
            hex::encode(&sealer.key_reference()[..8])
        )),
        None => store.local_file("seen"),
    };
    let rules = options.rules.clone();
    let holdings = store.cache().holdings()?;
    let opening =
        tokio::task::spawn_blocking(move || SeenCache::open(&seen_path, &rules).holding(holdings));
    let discovered = discover(api).await?;
    // A group the rules leave out whole is not missed when its discovery fails.
    let mut skipped: Vec<Skipped> = discovered
        .skipped
        .into_iter()
        .filter(|s| s.resource.is_some() || !options.rules.excludes_group(&s.group))
        .collect();
    let resources: Vec<ResourceType> = discovered
        .resources
        .into_iter()
        .filter(|rt| options.rules.wants_resource(rt))
        .collect();
    progress(Progress::Discovered {
        resources: resources.len(),
        skipped: skipped.len(),
    });

    // One writer takes objects from every lister: compression and packing stay in one place
    // while hashing and cleaning run in the listers, in parallel.
    let (sender, mut receiver) = mpsc::channel::<(ObjectId, Bytes)>(2048);
    let mut writer = store.writer()?;
    let writing = tokio::spawn(async move {
        while let Some((id, bytes)) = receiver.recv().await {
            writer.add_with_id(id, &bytes).await?;
        }
        writer.finish().await
    });

    let seen = AtomicU64::new(0);
    let seen_cache = task::joined(opening.await);
    let lister = Lister {
        api,
        store,
        seen_cache: &seen_cache,
        options,
        objects: sender,
        progress: &progress,
        seen: &seen,
        sealer: sealer.as_ref(),
        sealed_files: sealed_files.as_ref(),
        record_changes: seen_cache.has_previous(),
    };
    let outcomes: Vec<Result<ResourceOutcome, WriterGone>> =
        // By index: a closure given `&ResourceType` would make the future not `Send` (the
        // compiler cannot prove it for every lifetime), and the job runs as a spawned task.
        futures::stream::iter(0..resources.len())
            .map(|i| lister.list(i as u32, &resources[i]))
            .buffered(options.concurrency.max(1))
            .collect()
            .await;
    drop(lister);
    let store_stats = task::joined(writing.await)?;

    let mut stats = SnapshotStats {
        store: store_stats,
        ..SnapshotStats::default()
    };
    let mut manifest_resources = Vec::new();
    // Sized once: growing by doubling would hold two copies of the largest list there is.
    let mut objects = Vec::with_capacity(
        outcomes
            .iter()
            .flatten()
            .map(|outcome| outcome.entries.len())
            .sum(),
    );
    let mut manifest_sealed_files = BTreeMap::new();
    let mut changes = Vec::new();
    for (rt, outcome) in resources.into_iter().zip(outcomes) {
        // The writer finished without error, so every lister got its objects through.
        let Ok(mut outcome) = outcome else {
            unreachable!("a lister lost the store writer, which did not fail")
        };
        stats.list_requests += outcome.pages;
        stats.get_requests += outcome.gets;
        stats.list_restarts += outcome.restarts;
        skipped.append(&mut outcome.unsafe_objects);
        if let Some(skip) = outcome.skipped {
            skipped.push(skip);
            continue;
        }
        stats.excluded += outcome.excluded;
        stats.bytes += outcome.bytes;
        let index = manifest_resources.len() as u32;
        for entry in &mut outcome.entries {
            entry.resource = index;
        }
        for (namespace, file) in outcome.sealed_files {
            manifest_sealed_files.insert((index, namespace), file);
        }
        for mut change in outcome.changes {
            change.resource = index;
            changes.push(change);
        }
        manifest_resources.push(ManifestResource {
            resource: rt,
            count: outcome.entries.len() as u64,
        });
        objects.append(&mut outcome.entries);
    }
    // Keys are unique, so an unstable sort gives the one order, without a stable sort's
    // buffer of half the list.
    objects.sort_unstable_by(|a, b| {
        (a.resource, &a.namespace, &a.name).cmp(&(b.resource, &b.namespace, &b.name))
    });
    changes.sort_unstable_by(|a, b| {
        (a.resource, &a.namespace, &a.name).cmp(&(b.resource, &b.namespace, &b.name))
    });
    skipped.sort();
    if let Some(what) = unusable(&options.rules, &manifest_resources, &skipped) {
        // Nothing refers to what the writer stored; the seen-objects cache stays as the
        // last good snapshot left it.
        return Err(SnapshotError::Unreadable(what));
    }
    stats.objects = objects.len() as u64;
    stats.duration_ms = started.elapsed().as_millis() as u64;

    let mut manifest = Manifest {
        version: manifest::MANIFEST_VERSION,
        time,
        cluster: options.cluster_name.clone(),
        resources: manifest_resources,
        objects,
        skipped,
        stats,
        export: None,
        sealed_files: manifest_sealed_files,
        checkpoint: options.checkpoint,
        changes,
    };
    // Every object this snapshot saw is stored by now (and the next snapshot takes an id
    // from the cache only while the local index holds it, which the store checks against
    // the packs at the destination), so the cache is written while the manifest goes up.
    let (saved, ()) = tokio::join!(
        manifest.save(store),
        task::blocking(move || seen_cache.save())
    );
    saved?;
    Ok(manifest)
}

/// Why an object's namespace or name would make an unsafe or invalid key at the destination
/// (`None` when it is fine). A real API server enforces the same rules on create (namespace
/// names are DNS labels, object names path segments: apimachinery's `ValidateNamespaceName`
/// and `IsValidPathSegmentName`); an aggregated API or a broken server may not, and a name
/// such as `..` must never place a file outside the snapshot's folder.
fn unsafe_key(rt: &ResourceType, namespace: Option<&str>, name: &str) -> Option<String> {
    if rt.namespaced {
        let Some(namespace) = namespace else {
            return Some("a namespaced object without a namespace".to_string());
        };
        let label = !namespace.is_empty()
            && namespace.len() <= 63
            && namespace
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !namespace.starts_with('-')
            && !namespace.ends_with('-');
        if !label {
            return Some(format!(
                "namespace {namespace:?} is not a DNS label, so it cannot name a folder"
            ));
        }
    }
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '%']) {
        return Some(format!("name {name:?} is not a valid object name"));
    }
    if name.chars().any(char::is_control) {
        return Some("the name holds control characters".to_string());
    }
    None
}

/// Refuses to snapshot into a folder that holds another cluster's snapshots, and claims an
/// unclaimed one. When the check cannot be made (no kube-system namespace, the destination
/// away while the daemon stages), the snapshot goes ahead: a backup is worth more than the
/// check, which the next snapshot makes.
async fn check_cluster(api: &Api, store: &Store, cluster_name: &str) -> Result<(), SnapshotError> {
    let uid = match crate::kube::kube_system_uid(api).await {
        Ok(Some(uid)) => uid,
        Ok(None) => {
            tracing::warn!(
                "the cluster has no readable kube-system namespace; cannot check that the destination folder is this cluster's"
            );
            return Ok(());
        }
        // Discovery, next, meets the same problem and reports it.
        Err(_) => return Ok(()),
    };
    match identity::claim(store, &uid, cluster_name).await {
        Ok(identity::Claim::Ours) => Ok(()),
        Ok(identity::Claim::Theirs(other)) => Err(other.into()),
        Err(e) if e.is_outage() => {
            tracing::warn!(error = %e, "cannot check which cluster the destination folder belongs to; checking at the next snapshot");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Why a snapshot that read `read` and skipped `skipped` is not one: no resource at all was
/// listed, or the namespaces were not (and the rules want them), which a restore needs
/// before anything namespaced. `None` for a snapshot worth keeping.
fn unusable(rules: &Rules, read: &[ManifestResource], skipped: &[Skipped]) -> Option<String> {
    let reason = |s: &Skipped| format!("{}: {}", s.what(), s.reason);
    if read.is_empty() {
        return Some(match skipped.first() {
            Some(first) => format!(
                "no resource could be listed ({} skipped, e.g. {})",
                skipped.len(),
                reason(first)
            ),
            None => "the API server lists no resource that the rules include (includeResources, \
                     excludeResources)"
                .to_string(),
        });
    }
    let namespaces = ResourceType::namespaces();
    let listed = read
        .iter()
        .any(|r| r.resource.group.is_empty() && r.resource.resource == "namespaces");
    if !rules.wants_resource(&namespaces) || listed {
        return None;
    }
    // Skipped itself, or with the whole core group.
    let why = skipped
        .iter()
        .find(|s| s.group.is_empty() && s.resource.as_deref().is_none_or(|r| r == "namespaces"))
        .map(reason)
        .unwrap_or_else(|| "the API server does not list them".to_string());
    Some(format!(
        "the namespaces could not be listed ({why}); a snapshot without them cannot be \
         restored (to leave them out on purpose, add namespaces to excludeResources)"
    ))
}

/// Now, or the next free second if a snapshot (a checkpoint, for one) of this second exists
/// already.
async fn unused_time(
    store: &Store,
    wanted: Option<SnapshotTime>,
    checkpoint: bool,
) -> Result<SnapshotTime, StoreError> {
    let listed = if checkpoint {
        Manifest::list_checkpoints(store).await
    } else {
        Manifest::list(store).await
    };
    let taken = match listed {
        Ok(taken) => taken,
        // While the destination is away (the daemon stages snapshots), a collision within
        // the same second is the only risk, and the daemon never snapshots that often.
        Err(e) if e.is_outage() => Vec::new(),
        Err(e) => return Err(e),
    };
    if let Some(mut time) = wanted {
        while taken.contains(&time) {
            time = time.next_second();
        }
        return Ok(time);
    }
    let mut time = SnapshotTime::now();
    while taken.contains(&time) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        time = SnapshotTime::now().max(time.next_second());
    }
    Ok(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(body: &str) -> Result<(Vec<String>, Option<String>), serde_json::Error> {
        let mut names = Vec::new();
        let metadata = parse_page(body.as_bytes(), |item| {
            names.push(item["metadata"]["name"].as_str().unwrap().to_string())
        })?;
        Ok((names, metadata.continue_token))
    }

    #[test]
    fn list_pages_are_read_item_by_item() {
        let page = r#"{"kind":"ConfigMapList","apiVersion":"v1",
            "metadata":{"resourceVersion":"7","continue":"abc"},
            "items":[{"metadata":{"name":"a"}},{"metadata":{"name":"b\u00e9"}}]}"#;
        assert_eq!(
            names(page).unwrap(),
            (
                vec!["a".to_string(), "bé".to_string()],
                Some("abc".to_string())
            )
        );
        assert_eq!(names(r#"{"items":null}"#).unwrap(), (vec![], None));
        assert_eq!(names(r#"{"metadata":{}}"#).unwrap(), (vec![], None));
        assert!(names(r#"{"items":[{"metadata":{"name":"a"}},{"#).is_err());
        assert!(names(r#"{"items":[]} trailing"#).is_err());
        assert!(names(r#"[]"#).is_err());
    }
    #[test]
    fn list_pages_carry_an_encoded_selector_and_continue_token() {
        let rt = ResourceType {
            group: "apps".to_string(),
            version: "v1".to_string(),
            kind: "Deployment".to_string(),
            resource: "deployments".to_string(),
            namespaced: true,
        };
        assert_eq!(
            rt.list_page_path(Some("prod"), 0, Some("app in (a,b)"), Some("t=1")),
            "/apis/apps/v1/namespaces/prod/deployments?limit=1\
             &labelSelector=app%20in%20%28a%2Cb%29&continue=t%3D1"
        );
        assert_eq!(
            rt.list_page_path(None, 500, None, None),
            "/apis/apps/v1/deployments?limit=500"
        );
    }

    fn resource(group: &str, plural: &str) -> ManifestResource {
        ManifestResource {
            resource: ResourceType {
                group: group.into(),
                version: "v1".into(),
                kind: String::new(),
                resource: plural.into(),
                namespaced: false,
            },
            count: 1,
        }
    }

    fn forbidden(group: &str, plural: Option<&str>) -> Skipped {
        Skipped {
            group: group.into(),
            version: Some("v1".into()),
            resource: plural.map(str::to_string),
            namespace: None,
            name: None,
            code: Some(403),
            reason: "403 Forbidden: no".into(),
        }
    }

    #[test]
    fn a_snapshot_without_any_resource_or_without_namespaces_is_none() {
        let rules = Rules::default();
        let fine = [resource("", "namespaces"), resource("", "configmaps")];
        assert_eq!(
            unusable(&rules, &fine, &[forbidden("", Some("secrets"))]),
            None
        );

        let why = unusable(&rules, &[], &[forbidden("", Some("configmaps"))]).unwrap();
        assert!(why.contains("no resource could be listed"), "{why}");
        assert!(why.contains("configmaps: 403 Forbidden"), "{why}");
        let why = unusable(&rules, &[], &[]).unwrap();
        assert!(why.contains("includeResources"), "{why}");

        let no_namespaces = [resource("", "configmaps")];
        let why = unusable(&rules, &no_namespaces, &[forbidden("", Some("namespaces"))]).unwrap();
        assert!(
            why.contains("namespaces could not be listed (namespaces: 403"),
            "{why}"
        );
        assert!(unusable(&rules, &no_namespaces, &[]).is_some());
        // Left out by the rules: not a failure.
        let only = Rules {
            include_resources: vec!["configmaps".into()],
            ..Rules::default()
        };
        assert_eq!(unusable(&only, &no_namespaces, &[]), None);
    }
}
