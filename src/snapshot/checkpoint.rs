//! A checkpoint: the state of the cluster a few minutes after the point before it, written
//! from what the watches saw change (`kube::watch`), without reading anything else. Each
//! changed object is read once, with a list narrowed to its name, cleaned with the same
//! rules as a snapshot's objects, hashed and stored; an object gone (or now left out by the
//! rules) leaves the manifest. The manifest is the previous point's with those objects
//! replaced, added or removed, marked as a checkpoint, and names each new or changed object
//! with the field manager that changed it. It has no plain layout.
//!
//! Sealed resources (encryption) are stored as a snapshot stores them: a namespace where
//! any of their objects changed is listed again in full, its new objects are encrypted, and
//! its encrypted plain-layout file is rendered again from all its objects (or taken from the
//! local index when the same objects made one before), since the file is what a restore
//! and the exporter read.
//!
//! What a checkpoint leaves to the next snapshot: resource types that appear between
//! snapshots (a new CRD), since a checkpoint knows the resources of the point before only.
//!
//! This module never writes to the cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;

use super::manager::last_manager;
use super::{SnapshotError, SnapshotOptions, canonical, parse_page, unsafe_key};
use crate::kube::api::encode_query;
use crate::kube::watch::ObjectRef;
use crate::kube::{Api, ApiError, Paging, ResourceType};
use crate::repo::list_file;
use crate::repo::manifest::{self, Change, Manifest, ManifestObject, SnapshotStats};
use crate::repo::manifest::{GroupKey, SealedFile};
use crate::seal::{SealError, Sealer};
use crate::store::cache::Table;
use crate::store::{ObjectId, SnapshotTime, Store, StoreError, StoreWriter};

/// Changed objects read at the same time.
const READ_CONCURRENCY: usize = 4;

/// The objects that changed since the point before, by the index of their resource in that
/// point's manifest.
pub type Dirty = BTreeMap<u32, BTreeSet<ObjectRef>>;

/// What a checkpoint did.
#[derive(Debug)]
pub struct CheckpointOutcome {
    /// The saved checkpoint; `None` when no object changed in what a snapshot keeps (a
    /// status write, or an object created and deleted in between): nothing was saved.
    pub manifest: Option<Manifest>,
    /// Objects that could not be read (the API server failed): still dirty, for the next
    /// checkpoint.
    pub unread: Dirty,
}

/// What became of one changed object.
enum Read {
    Kept {
        id: ObjectId,
        bytes: Vec<u8>,
        manager: Option<String>,
    },
    /// Deleted, or left out by the rules, or unsafe as a key: not in the checkpoint.
    Gone,
}

/// Reads the objects in `dirty`, stores the changed ones and saves a checkpoint built from
/// `previous` (the last snapshot or checkpoint). `sealer` encrypts the changes of sealed
/// resources; without one they are not read and come back in
/// [`CheckpointOutcome::unread`]. See the module's header for what it leaves to the next
/// snapshot.
pub async fn take_checkpoint(
    api: &Api,
    store: &Store,
    previous: &Manifest,
    dirty: &Dirty,
    options: &SnapshotOptions,
    sealer: Option<&Sealer>,
) -> Result<CheckpointOutcome, SnapshotError> {
    let started = Instant::now();
    let sealed_files = match sealer {
        Some(_) => Some(
            store
                .cache()
                .table::<SealedFile>(super::SEALED_FILES_TABLE)?,
        ),
        None => None,
    };
    let mut gathered = Gathered {
        writer: store.writer()?,
        updates: BTreeMap::new(),
        changes: Vec::new(),
        unread: Dirty::new(),
        reads: 0,
        lists: 0,
        files: BTreeMap::new(),
    };
    let mut one_by_one: Vec<(u32, &ResourceType, &ObjectRef)> = Vec::new();
    for (index, objects) in dirty {
        let Some(resource) = previous.resources.get(*index as usize) else {
            continue;
        };
        let rt = &resource.resource;
        if options.encryption.as_ref().is_some_and(|e| e.seals(rt)) {
            let Some(sealer) = sealer else {
                // Nothing to encrypt with: not stored in the clear, and not lost either.
                gathered
                    .unread
                    .entry(*index)
                    .or_default()
                    .extend(objects.iter().cloned());
                continue;
            };
            let groups: BTreeSet<Option<&str>> =
                objects.iter().map(|o| o.namespace.as_deref()).collect();
            for namespace in groups {
                let sealing = Sealing {
                    sealer,
                    store,
                    files: sealed_files.as_ref(),
                };
                let read = gathered
                    .reseal_group(api, previous, *index, rt, namespace, &sealing, options)
                    .await;
                match read {
                    Ok(()) => {}
                    Err(Failed::Store(e)) => return Err(e.into()),
                    Err(Failed::Seal(e)) => return Err(e.into()),
                    Err(Failed::Api(e)) => {
                        tracing::warn!(resource = %rt.qualified_name(), namespace = namespace.unwrap_or_default(), error = %e, "cannot list the changed objects' namespace; they wait for the next checkpoint");
                        gathered.unread.entry(*index).or_default().extend(
                            objects
                                .iter()
                                .filter(|o| o.namespace.as_deref() == namespace)
                                .cloned(),
                        );
                    }
                }
            }
            continue;
        }
        let many = objects.len() as u64;
        if many > 1 && many * LIST_SHARE > resource.count {
            // One list of the resource costs less than this many narrowed ones.
            if let Err(e) = gathered
                .list_in_full(api, previous, *index, rt, objects, options)
                .await
            {
                match e {
                    Failed::Store(e) => return Err(e.into()),
                    Failed::Seal(e) => return Err(e.into()),
                    Failed::Api(e) => {
                        tracing::warn!(resource = %rt.qualified_name(), error = %e, "cannot list the resource's changed objects; they wait for the next checkpoint");
                        gathered
                            .unread
                            .entry(*index)
                            .or_default()
                            .extend(objects.iter().cloned());
                    }
                }
            }
            continue;
        }
        one_by_one.extend(objects.iter().map(|o| (*index, rt, o)));
    }
    let mut reads = futures::stream::iter(one_by_one)
        .map(|(index, rt, object)| async move {
            (index, object, read_one(api, rt, object, options).await)
        })
        .buffered(READ_CONCURRENCY);
    while let Some((index, object, read)) = reads.next().await {
        gathered.reads += 1;
        gathered.take(previous, index, object, read).await?;
    }
    drop(reads);
    let Gathered {
        writer,
        mut updates,
        mut changes,
        unread,
        reads: reads_sent,
        lists,
        files,
    } = gathered;
    // A gone object that no earlier point had is no change either.
    updates.retain(|(index, namespace, name), update| {
        update.is_some()
            || find(
                &previous.objects,
                *index,
                &ObjectRef {
                    namespace: namespace.clone(),
                    name: name.clone(),
                },
            )
            .is_some()
    });
    let store_stats = writer.finish().await?;
    let mut manifest_files = previous.sealed_files.clone();
    let mut files_changed = false;
    for (group, file) in files {
        let before = manifest_files.get(&group).map(|f| f.id);
        files_changed |= before != file.as_ref().map(|f| f.id);
        match file {
            Some(file) => manifest_files.insert(group, file),
            None => manifest_files.remove(&group),
        };
    }
    if updates.is_empty() && !files_changed {
        return Ok(CheckpointOutcome {
            manifest: None,
            unread,
        });
    }
    changes.sort_by(|a, b| {
        (a.resource, &a.namespace, &a.name).cmp(&(b.resource, &b.namespace, &b.name))
    });

    let objects = merged(&previous.objects, updates);
    let mut resources = previous.resources.clone();
    for resource in &mut resources {
        resource.count = 0;
    }
    for object in &objects {
        if let Some(resource) = resources.get_mut(object.resource as usize) {
            resource.count += 1;
        }
    }
    let stats = SnapshotStats {
        objects: objects.len() as u64,
        bytes: objects.iter().map(|o| u64::from(o.size)).sum(),
        excluded: previous.stats.excluded,
        duration_ms: started.elapsed().as_millis() as u64,
        list_requests: lists,
        get_requests: reads_sent,
        list_restarts: 0,
        store: store_stats,
    };
    let mut manifest = Manifest {
        version: manifest::MANIFEST_VERSION,
        // After the point before, even within its second: a point at a time is the newest
        // one at or before it.
        time: SnapshotTime::now().max(previous.time.next_second()),
        cluster: previous.cluster.clone(),
        resources,
        objects,
        skipped: previous.skipped.clone(),
        stats,
        export: None,
        sealed_files: manifest_files,
        checkpoint: true,
        changes,
    };
    manifest.save(store).await?;
    Ok(CheckpointOutcome {
        manifest: Some(manifest),
        unread,
    })
}

/// When more than one object of a resource changed, and more than one in this many of its
/// objects did, the resource is listed in full instead of reading each one (as a snapshot
/// decides for the objects its metadata list finds changed).
const LIST_SHARE: u64 = 8;

/// Why a read of changed objects stopped.
enum Failed {
    Api(ApiError),
    Store(StoreError),
    Seal(SealError),
}

/// What sealing a group needs.
struct Sealing<'a> {
    sealer: &'a Sealer,
    store: &'a Store,
    /// Recipe of a sealed file -> the file stored for it (the snapshot's table).
    files: Option<&'a Table<SealedFile>>,
}

/// What the reads of the changed objects gave so far.
struct Gathered {
    writer: StoreWriter,
    /// Key -> the object's entry, or `None` when it leaves the manifest.
    updates: BTreeMap<(u32, Option<String>, String), Option<ManifestObject>>,
    changes: Vec<Change>,
    unread: Dirty,
    /// Narrowed lists (one object each) and pages of full lists sent.
    reads: u64,
    lists: u64,
    /// The encrypted plain-layout file of each sealed group read again (`None`: the group
    /// has no object left).
    files: BTreeMap<GroupKey, Option<SealedFile>>,
}

impl Gathered {
    /// Takes what became of one changed object: stored and recorded when its content is
    /// new, left for the next checkpoint when it could not be read.
    async fn take(
        &mut self,
        previous: &Manifest,
        index: u32,
        object: &ObjectRef,
        read: Result<Read, ApiError>,
    ) -> Result<(), StoreError> {
        let key = (index, object.namespace.clone(), object.name.clone());
        match read {
            Err(e) => {
                tracing::warn!(resource = %previous.resources[index as usize].resource.qualified_name(), namespace = object.namespace.as_deref().unwrap_or_default(), error = %e, "cannot read a changed object; it waits for the next checkpoint");
                self.unread.entry(index).or_default().insert(object.clone());
            }
            Ok(Read::Gone) => {
                self.updates.insert(key, None);
            }
            Ok(Read::Kept { id, bytes, manager }) => {
                let before = find(&previous.objects, index, object);
                if before.is_some_and(|b| b.id == id) {
                    // Written, but not in what a snapshot keeps (its status, say).
                    return Ok(());
                }
                self.writer.add_with_id(id, &bytes).await?;
                self.changes.push(Change {
                    resource: index,
                    namespace: object.namespace.clone(),
                    name: object.name.clone(),
                    manager,
                });
                self.updates.insert(
                    key,
                    Some(ManifestObject {
                        resource: index,
                        namespace: object.namespace.clone(),
                        name: object.name.clone(),
                        id,
                        size: bytes.len() as u32,
                    }),
                );
            }
        }
        Ok(())
    }

    /// Forgets what was taken of `objects` of resource `index` (their store writes stay: a
    /// prune removes what no point refers to).
    fn forget(&mut self, index: u32, objects: &BTreeSet<ObjectRef>) {
        self.updates.retain(|(i, namespace, name), _| {
            *i != index
                || !objects.contains(&ObjectRef {
                    namespace: namespace.clone(),
                    name: name.clone(),
                })
        });
        self.changes.retain(|c| {
            c.resource != index
                || !objects.contains(&ObjectRef {
                    namespace: c.namespace.clone(),
                    name: c.name.clone(),
                })
        });
    }

    /// Lists `rt` in full, page by page, and takes the objects of `objects` from it (those
    /// not listed are gone). An expired continue token starts the list again.
    async fn list_in_full(
        &mut self,
        api: &Api,
        previous: &Manifest,
        index: u32,
        rt: &ResourceType,
        objects: &BTreeSet<ObjectRef>,
        options: &SnapshotOptions,
    ) -> Result<(), Failed> {
        let mut paging = paging(rt, None, options);
        let mut listed: BTreeSet<ObjectRef> = BTreeSet::new();
        loop {
            let path = paging.path();
            self.lists += 1;
            let body = match api.get(&path, "application/json").await {
                Ok(body) => body,
                Err(e) if paging.restart(&e) => {
                    // Taken again as the new list finds them (perhaps changed again, or back).
                    self.forget(index, &listed);
                    listed.clear();
                    continue;
                }
                Err(e) => return Err(Failed::Api(e)),
            };
            let mut items = Vec::new();
            let metadata = parse_page(&body, |item| {
                let object = object_ref(rt, &item);
                if objects.contains(&object) {
                    items.push((object, item));
                }
            })
            .map_err(|e| Failed::Api(ApiError::Decode(format!("{path}: {e}"))))?;
            for (object, item) in items {
                let read = clean(rt, &object, item, options);
                self.take(previous, index, &object, Ok(read))
                    .await
                    .map_err(Failed::Store)?;
                listed.insert(object);
            }
            if !paging.advance(metadata.continue_token) {
                break;
            }
        }
        for object in objects.difference(&listed) {
            self.take(previous, index, object, Ok(Read::Gone))
                .await
                .map_err(Failed::Store)?;
        }
        Ok(())
    }
}

impl Gathered {
    /// Lists one group of a sealed resource (a namespace, or all of a cluster-scoped one) in
    /// full, stores its new objects encrypted and its encrypted plain-layout file, and puts
    /// the group's objects in place of the previous point's.
    #[allow(clippy::too_many_arguments)]
    async fn reseal_group(
        &mut self,
        api: &Api,
        previous: &Manifest,
        index: u32,
        rt: &ResourceType,
        namespace: Option<&str>,
        sealing: &Sealing<'_>,
        options: &SnapshotOptions,
    ) -> Result<(), Failed> {
        if let Some(namespace) = namespace
            && unsafe_key(rt, Some(namespace), "-").is_some()
        {
            return Ok(());
        }
        let (items, pages) = list_all(api, rt, namespace, options).await?;
        self.lists += pages;
        // Name -> (id, plaintext, manager), in the manifest's order.
        let mut group: BTreeMap<String, (ObjectId, Bytes, Option<String>)> = BTreeMap::new();
        for item in items {
            let object = object_ref(rt, &item);
            if let Read::Kept { bytes, manager, .. } = clean(rt, &object, item, options) {
                let id = sealing.sealer.id_of(&bytes);
                group.insert(object.name, (id, Bytes::from(bytes), manager));
            }
        }
        let namespace = namespace.map(str::to_string);
        let before: Vec<&ManifestObject> = previous
            .objects
            .iter()
            .filter(|o| o.resource == index && o.namespace == namespace)
            .collect();
        for gone in before.iter().filter(|o| !group.contains_key(&o.name)) {
            self.updates
                .insert((index, namespace.clone(), gone.name.clone()), None);
        }
        for (name, (id, bytes, manager)) in &group {
            let was = before.iter().find(|o| &o.name == name).map(|o| o.id);
            if was == Some(*id) {
                continue;
            }
            // Encrypting costs more than hashing: only what the store does not hold.
            if !sealing.store.contains(id).map_err(Failed::Store)? {
                let sealed = sealing
                    .sealer
                    .seal_object(id, bytes)
                    .map_err(Failed::Seal)?;
                self.writer
                    .add_with_id(*id, &sealed)
                    .await
                    .map_err(Failed::Store)?;
            }
            self.changes.push(Change {
                resource: index,
                namespace: namespace.clone(),
                name: name.clone(),
                manager: manager.clone(),
            });
            self.updates.insert(
                (index, namespace.clone(), name.clone()),
                Some(ManifestObject {
                    resource: index,
                    namespace: namespace.clone(),
                    name: name.clone(),
                    id: *id,
                    size: bytes.len() as u32,
                }),
            );
        }
        let file = if group.is_empty() {
            None
        } else {
            let ids: Vec<ObjectId> = group.values().map(|g| g.0).collect();
            let recipe = super::sealed_file_recipe(sealing.sealer, &ids);
            let known = sealing
                .files
                .and_then(|table| table.get(recipe.as_bytes()))
                .filter(|file| sealing.store.contains(&file.id).unwrap_or(false));
            match known {
                Some(file) => Some(file),
                None => {
                    let objects: Vec<Bytes> = group.values().map(|g| g.1.clone()).collect();
                    let data = sealing
                        .sealer
                        .seal_file(&list_file::render(&objects))
                        .map_err(Failed::Seal)?;
                    let file = SealedFile {
                        id: ObjectId::of(&data),
                        size: data.len() as u64,
                    };
                    self.writer
                        .add_with_id(file.id, &data)
                        .await
                        .map_err(Failed::Store)?;
                    if let Some(table) = sealing.files {
                        table
                            .insert(recipe.as_bytes(), &file)
                            .map_err(Failed::Store)?;
                    }
                    Some(file)
                }
            }
        };
        self.files.insert((index, namespace), file);
        Ok(())
    }
}

/// Every object of `rt` in `namespace` (`None`: all), in full, page by page; also the pages
/// it took. An expired continue token starts the list again.
async fn list_all(
    api: &Api,
    rt: &ResourceType,
    namespace: Option<&str>,
    options: &SnapshotOptions,
) -> Result<(Vec<Value>, u64), Failed> {
    let mut paging = paging(rt, namespace, options);
    let mut pages = 0;
    let mut items = Vec::new();
    loop {
        let path = paging.path();
        pages += 1;
        let body = match api.get(&path, "application/json").await {
            Ok(body) => body,
            Err(e) if paging.restart(&e) => {
                items.clear();
                continue;
            }
            Err(e) => return Err(Failed::Api(e)),
        };
        let metadata = parse_page(&body, |item| items.push(item))
            .map_err(|e| Failed::Api(ApiError::Decode(format!("{path}: {e}"))))?;
        if !paging.advance(metadata.continue_token) {
            return Ok((items, pages));
        }
    }
}

/// A list of `rt` in `namespace` (`None`: all) as the snapshot pages it.
fn paging<'a>(
    rt: &'a ResourceType,
    namespace: Option<&'a str>,
    options: &'a SnapshotOptions,
) -> Paging<'a> {
    Paging::new(
        rt,
        namespace,
        options.rules.label_selector.as_deref(),
        options.page_size,
        options.max_list_restarts,
    )
}

/// Which object a listed item is.
fn object_ref(rt: &ResourceType, item: &Value) -> ObjectRef {
    let metadata = item.get("metadata");
    let field = |name: &str| {
        metadata
            .and_then(|m| m.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    ObjectRef {
        namespace: field("namespace").filter(|_| rt.namespaced),
        name: field("name").unwrap_or_default(),
    }
}

/// The entry of `object` of resource `index` in a sorted object list.
fn find<'a>(
    objects: &'a [ManifestObject],
    index: u32,
    object: &ObjectRef,
) -> Option<&'a ManifestObject> {
    objects
        .binary_search_by(|o| {
            (o.resource, o.namespace.as_deref(), o.name.as_str()).cmp(&(
                index,
                object.namespace.as_deref(),
                object.name.as_str(),
            ))
        })
        .ok()
        .map(|at| &objects[at])
}

/// `previous` (sorted by resource, namespace, name) with `updates` applied, still sorted.
fn merged(
    previous: &[ManifestObject],
    updates: BTreeMap<(u32, Option<String>, String), Option<ManifestObject>>,
) -> Vec<ManifestObject> {
    let mut out = Vec::with_capacity(previous.len() + updates.len());
    let mut updates = updates.into_iter().peekable();
    for object in previous {
        let key = (object.resource, &object.namespace, &object.name);
        while let Some(((resource, namespace, name), _)) = updates.peek() {
            if (*resource, namespace, name) >= key {
                break;
            }
            if let Some((_, Some(added))) = updates.next() {
                out.push(added);
            }
        }
        match updates.peek() {
            Some(((resource, namespace, name), _)) if (*resource, namespace, name) == key => {
                if let Some((_, Some(replaced))) = updates.next() {
                    out.push(replaced);
                }
            }
            _ => out.push(object.clone()),
        }
    }
    out.extend(updates.filter_map(|(_, update)| update));
    out
}

/// Reads one changed object with a list narrowed to its name (and to the rules' label
/// selector, so that an object that left it is gone here as it is from a snapshot), and
/// cleans it as a snapshot does.
async fn read_one(
    api: &Api,
    rt: &ResourceType,
    object: &ObjectRef,
    options: &SnapshotOptions,
) -> Result<Read, ApiError> {
    let namespace = object.namespace.as_deref().filter(|_| rt.namespaced);
    if unsafe_key(rt, namespace, &object.name).is_some() {
        return Ok(Read::Gone);
    }
    let mut path = rt.named_list_path(namespace, &object.name);
    if let Some(selector) = &options.rules.label_selector {
        path.push_str("&labelSelector=");
        path.push_str(&encode_query(selector));
    }
    let body = api.get(&path, "application/json").await?;
    let mut found: Option<Value> = None;
    parse_page(&body, |item| {
        found.get_or_insert(item);
    })
    .map_err(|e| ApiError::Decode(format!("{path}: {e}")))?;
    let Some(item) = found else {
        return Ok(Read::Gone);
    };
    Ok(clean(rt, object, item, options))
}

/// Cleans a changed object as a snapshot does.
fn clean(
    rt: &ResourceType,
    object: &ObjectRef,
    mut item: Value,
    options: &SnapshotOptions,
) -> Read {
    if unsafe_key(rt, object.namespace.as_deref(), &object.name).is_some() {
        return Read::Gone;
    }
    // Before the rules: they drop managedFields.
    let manager = last_manager(&item);
    if options.rules.apply(rt, &mut item).is_err() {
        return Read::Gone;
    }
    let bytes = canonical::to_vec(&item);
    Read::Kept {
        id: ObjectId::of(&bytes),
        bytes,
        manager,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(resource: u32, namespace: Option<&str>, name: &str, byte: u8) -> ManifestObject {
        ManifestObject {
            resource,
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
            id: ObjectId::of(&[byte]),
            size: 1,
        }
    }

    fn key(o: &ManifestObject) -> (u32, Option<String>, String) {
        (o.resource, o.namespace.clone(), o.name.clone())
    }

    #[test]
    fn changes_are_merged_into_the_sorted_objects() {
        let previous = vec![
            entry(0, None, "a", 1),
            entry(0, None, "c", 1),
            entry(1, Some("ns"), "x", 1),
            entry(1, Some("ns"), "z", 1),
        ];
        let added_first = entry(0, None, "0", 2);
        let replaced = entry(0, None, "c", 2);
        let added_between = entry(1, Some("ns"), "y", 2);
        let added_last = entry(2, None, "q", 2);
        let updates: BTreeMap<_, _> = [
            (key(&added_first), Some(added_first.clone())),
            (key(&replaced), Some(replaced.clone())),
            (key(&previous[2]), None),
            (key(&added_between), Some(added_between.clone())),
            (key(&added_last), Some(added_last.clone())),
        ]
        .into_iter()
        .collect();
        let out = merged(&previous, updates);
        assert_eq!(
            out,
            vec![
                added_first,
                previous[0].clone(),
                replaced,
                added_between,
                previous[3].clone(),
                added_last
            ]
        );
        assert!(
            find(
                &out,
                1,
                &ObjectRef {
                    namespace: Some("ns".into()),
                    name: "y".into()
                }
            )
            .is_some()
        );
        assert!(
            find(
                &out,
                1,
                &ObjectRef {
                    namespace: Some("ns".into()),
                    name: "x".into()
                }
            )
            .is_none()
        );
    }
}
