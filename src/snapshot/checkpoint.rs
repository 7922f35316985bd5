//! A checkpoint: the state of the cluster a few minutes after the point before it, written
//! from what the watches saw change (`kube::watch`), without reading anything else. Each
//! changed object is read once, with a list narrowed to its name, cleaned with the same
//! rules as a snapshot's objects, hashed and stored; an object gone (or now left out by the
//! rules) leaves the manifest. The manifest is the previous point's with those objects
//! replaced, added or removed, marked as a checkpoint, and names each new or changed object
//! with the field manager that changed it. It has no plain layout.
//!
//! What a checkpoint does not do, and leaves to the next snapshot:
//! - sealed resources (encryption): their plain-layout files are rendered by the snapshot
//!   from every object of a namespace, which a checkpoint does not read. A checkpoint keeps
//!   their objects and files as the point before had them; the daemon does not watch them.
//! - resource types that appear between snapshots (a new CRD): a checkpoint knows the
//!   resources of the point before only.
//!
//! This module never writes to the cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use futures::StreamExt;
use serde_json::Value;

use super::manager::last_manager;
use super::{SnapshotError, SnapshotOptions, canonical, parse_page, unsafe_key};
use crate::kube::api::encode_query;
use crate::kube::watch::ObjectRef;
use crate::kube::{Api, ApiError, ResourceType};
use crate::repo::manifest::{self, Change, Manifest, ManifestObject, SnapshotStats};
use crate::store::{ObjectId, SnapshotTime, Store};

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
/// `previous` (the last snapshot or checkpoint). See the module's header for what it leaves
/// to the next snapshot.
pub async fn take_checkpoint(
    api: &Api,
    store: &Store,
    previous: &Manifest,
    dirty: &Dirty,
    options: &SnapshotOptions,
) -> Result<CheckpointOutcome, SnapshotError> {
    let started = Instant::now();
    let wanted: Vec<(u32, &ResourceType, &ObjectRef)> = dirty
        .iter()
        .filter_map(|(index, objects)| {
            let rt = &previous.resources.get(*index as usize)?.resource;
            let sealed = options.encryption.as_ref().is_some_and(|e| e.seals(rt));
            (!sealed).then_some((*index, rt, objects))
        })
        .flat_map(|(index, rt, objects)| objects.iter().map(move |o| (index, rt, o)))
        .collect();

    let mut reads = futures::stream::iter(wanted)
        .map(|(index, rt, object)| async move {
            (index, object, read_one(api, rt, object, options).await)
        })
        .buffered(READ_CONCURRENCY);
    let mut writer = store.writer()?;
    // Key -> the object's entry, or `None` when it leaves the manifest.
    let mut updates: BTreeMap<(u32, Option<String>, String), Option<ManifestObject>> =
        BTreeMap::new();
    let mut changes = Vec::new();
    let mut unread = Dirty::new();
    let mut reads_sent = 0u64;
    while let Some((index, object, read)) = reads.next().await {
        reads_sent += 1;
        let key = (index, object.namespace.clone(), object.name.clone());
        match read {
            Err(e) => {
                tracing::warn!(resource = %previous.resources[index as usize].resource.qualified_name(), namespace = object.namespace.as_deref().unwrap_or_default(), error = %e, "cannot read a changed object; it waits for the next checkpoint");
                unread.entry(index).or_default().insert(object.clone());
            }
            Ok(Read::Gone) => {
                updates.insert(key, None);
            }
            Ok(Read::Kept { id, bytes, manager }) => {
                let before = find(&previous.objects, index, object);
                if before.is_some_and(|b| b.id == id) {
                    // Written, but not in what a snapshot keeps (its status, say).
                    continue;
                }
                writer.add_with_id(id, &bytes).await?;
                changes.push(Change {
                    resource: index,
                    namespace: object.namespace.clone(),
                    name: object.name.clone(),
                    manager,
                });
                updates.insert(
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
    }
    drop(reads);
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
    if updates.is_empty() {
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
        list_requests: 0,
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
        sealed_files: previous.sealed_files.clone(),
        checkpoint: true,
        changes,
    };
    manifest.save(store).await?;
    Ok(CheckpointOutcome {
        manifest: Some(manifest),
        unread,
    })
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
    let Some(mut item) = found else {
        return Ok(Read::Gone);
    };
    // Before the rules: they drop managedFields.
    let manager = last_manager(&item);
    if options.rules.apply(rt, &mut item).is_err() {
        return Ok(Read::Gone);
    }
    let bytes = canonical::to_vec(&item);
    Ok(Read::Kept {
        id: ObjectId::of(&bytes),
        bytes,
        manager,
    })
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
