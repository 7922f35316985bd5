//! How a manifest is stored: the root at `store/snapshots/<ts>`, and the pages and listing
//! parts below it, which are blobs of the content-addressed store.
//!
//! Every snapshot writes its manifest whole, and a day's churn touches a few objects in many
//! places. So the manifest is a tree whose unchanged parts are the blobs of earlier
//! snapshots:
//!
//! - a *listing part* holds the names, ids and sizes of a run of objects of one resource and
//!   namespace (16 on average);
//! - a *page* holds the references of a run of listings, one per resource and namespace (8
//!   on average), each naming its parts;
//! - the root names the pages and holds the resources, what could not be read and the
//!   figures;
//! - a checkpoint's root says `"checkpoint": true`, and a root whose manifest names its
//!   changes refers to one *changes* blob (`[resource, namespace, name, manager]` per
//!   object). Both fields are left out when unset, so a snapshot's root without changes is
//!   byte for byte what it was before they existed.
//!
//! Where a part or a page ends is decided by the key of its last entry alone (content-defined
//! chunking), so an object added or deleted moves the ends of the runs around it only, not of
//! every run after it. A changed object rewrites one part, one page and the root (a reference
//! per page), instead of its group's whole listing and a root with a reference per listing.
//!
//! Format 2, whose root named one listing per resource and namespace, is still read.
//!
//! This module knows the stored shapes and their checks; what a manifest means is the
//! parent's business.

use std::collections::HashMap;

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::{
    Change, Manifest, ManifestObject, ManifestResource, SealedFile, SnapshotStats, malformed,
};
use crate::kube::Skipped;
use crate::repo::point::Point;
use crate::store::{
    ObjectId, PackSource, SnapshotTime, Store, StoreError, StoreResult, StoreWriter,
};

/// The format this build writes: a root of pages.
pub const ROOT_VERSION: u32 = 3;
/// The earlier format, still read: a root of listings.
const ROOT_VERSION_LISTINGS: u32 = 2;
/// The format of a listing part (and of a format-2 listing, which is one part).
const LISTING_VERSION: u32 = 1;
/// The format of a page.
const PAGE_VERSION: u32 = 1;
/// The format of a changes blob.
const CHANGES_VERSION: u32 = 1;

/// A listing part ends after an object whose name hashes to a multiple of this...
const PART_EVERY: u32 = 16;
/// ... or after this many objects, should names never end one (a part is read whole).
const PART_MAX: usize = 512;
/// A page ends after a listing whose resource and namespace hash to a multiple of this...
const PAGE_EVERY: u32 = 8;
/// ... or after this many listings.
const PAGE_MAX: usize = 256;

/// What `store/snapshots/<ts>` holds.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Root {
    pub version: u32,
    pub time: SnapshotTime,
    pub cluster: String,
    pub resources: Vec<ManifestResource>,
    /// The pages, in the order of their listings (format 3).
    #[serde(default)]
    pub pages: Vec<PageRef>,
    /// The listings, one blob each (format 2, read only).
    #[serde(default, skip_serializing)]
    listings: Vec<ListingRefV2>,
    pub skipped: Vec<Skipped>,
    pub stats: SnapshotStats,
    /// A checkpoint's root (in `store/checkpoints/`); left out of a snapshot's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub checkpoint: bool,
    /// The objects new or changed since the point before, when the manifest names them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<ChangesRef>,
}

/// The blob of a manifest's changes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(super) struct ChangesRef {
    pub id: ObjectId,
    pub count: u32,
}

/// A manifest's changes: `[resource, namespace, name, manager]` each.
#[derive(Debug, Serialize, Deserialize)]
struct Changes {
    changes: u32,
    items: Vec<(u32, Option<String>, String, Option<String>)>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(super) struct PageRef {
    pub id: ObjectId,
    /// The listings the page holds.
    listings: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Page {
    page: u32,
    listings: Vec<ListingRef>,
}

/// The objects of one resource in one namespace: one plain-layout file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ListingRef {
    pub resource: u32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub namespace: Option<String>,
    /// The listing's parts, in the order of their objects.
    pub parts: Vec<ObjectId>,
    pub objects: u32,
    /// The group's plain-layout file, encrypted, when its objects are sealed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub file: Option<SealedFile>,
}

/// A listing as a format-2 root names it: one blob.
#[derive(Debug, Deserialize)]
struct ListingRefV2 {
    resource: u32,
    #[serde(default)]
    namespace: Option<String>,
    id: ObjectId,
    objects: u32,
    #[serde(default)]
    file: Option<SealedFile>,
}

/// A listing part: objects of one resource in one namespace, as `[name, id, size]`.
#[derive(Debug, Serialize, Deserialize)]
struct Part {
    listing: u32,
    items: Vec<(String, ObjectId, u32)>,
}

/// Whether a content-defined run ends after the entry with `key`: one key in `every`, by its
/// hash, which is the same in every build (blake3), so runs end in the same places from one
/// snapshot to the next.
fn ends_run(key: &[&[u8]], every: u32) -> bool {
    let mut hasher = blake3::Hasher::new();
    for part in key {
        hasher.update(part);
        hasher.update(&[0]);
    }
    let hash = hasher.finalize();
    let head: [u8; 4] = hash.as_bytes()[..4].try_into().expect("four bytes");
    u32::from_le_bytes(head).is_multiple_of(every)
}

/// Splits `entries` into runs that end where `ends` says or at `max` entries.
fn runs<T>(entries: &[T], max: usize, ends: impl Fn(&T) -> bool) -> Vec<&[T]> {
    let mut runs = Vec::new();
    let mut start = 0;
    for (i, entry) in entries.iter().enumerate() {
        if i + 1 - start == max || ends(entry) {
            runs.push(&entries[start..=i]);
            start = i + 1;
        }
    }
    if start < entries.len() {
        runs.push(&entries[start..]);
    }
    runs
}

/// Hands the manifest's parts and pages to `writer` (which stores only the ones the store
/// does not hold) and returns the root that names them. The caller finishes the writer
/// before it stores the root.
pub(super) async fn write_tree(
    writer: &mut StoreWriter,
    manifest: &Manifest,
    key: &str,
) -> StoreResult<Root> {
    let mut listings = Vec::new();
    for group in manifest.groups() {
        let first = &group[0];
        let mut parts = Vec::new();
        for run in runs(group, PART_MAX, |o| {
            ends_run(&[o.name.as_bytes()], PART_EVERY)
        }) {
            let part = Part {
                listing: LISTING_VERSION,
                items: run.iter().map(|o| (o.name.clone(), o.id, o.size)).collect(),
            };
            let json = serde_json::to_vec(&part).map_err(|e| malformed(key, e))?;
            parts.push(writer.add(&json).await?);
        }
        listings.push(ListingRef {
            resource: first.resource,
            namespace: first.namespace.clone(),
            parts,
            objects: group.len() as u32,
            file: manifest
                .sealed_files
                .get(&(first.resource, first.namespace.clone()))
                .copied(),
        });
    }
    // A resource's index in the manifest changes when a resource type comes or goes; its
    // name does not.
    let names: Vec<String> = manifest
        .resources
        .iter()
        .map(|r| r.resource.qualified_name())
        .collect();
    let mut pages = Vec::new();
    for run in runs(&listings, PAGE_MAX, |l| {
        let namespace = l.namespace.as_deref().unwrap_or_default();
        ends_run(
            &[names[l.resource as usize].as_bytes(), namespace.as_bytes()],
            PAGE_EVERY,
        )
    }) {
        let page = Page {
            page: PAGE_VERSION,
            listings: run.to_vec(),
        };
        let json = serde_json::to_vec(&page).map_err(|e| malformed(key, e))?;
        pages.push(PageRef {
            id: writer.add(&json).await?,
            listings: run.len() as u32,
        });
    }
    let changes = if manifest.changes.is_empty() {
        None
    } else {
        let blob = Changes {
            changes: CHANGES_VERSION,
            items: manifest
                .changes
                .iter()
                .map(|c| {
                    let Change {
                        resource,
                        namespace,
                        name,
                        manager,
                    } = c.clone();
                    (resource, namespace, name, manager)
                })
                .collect(),
        };
        let json = serde_json::to_vec(&blob).map_err(|e| malformed(key, e))?;
        Some(ChangesRef {
            id: writer.add(&json).await?,
            count: manifest.changes.len() as u32,
        })
    };
    Ok(Root {
        version: ROOT_VERSION,
        time: manifest.time,
        cluster: manifest.cluster.clone(),
        resources: manifest.resources.clone(),
        pages,
        listings: Vec::new(),
        skipped: manifest.skipped.clone(),
        stats: manifest.stats,
        checkpoint: manifest.checkpoint,
        changes,
    })
}

/// Reads and checks the root of the snapshot or checkpoint `point`, in either format.
/// Returns its key too.
pub(super) async fn read_root(store: &Store, point: &Point) -> StoreResult<(String, Root)> {
    let key = point.root_key();
    let bytes = store.backend().get(&key).await?;
    let json = zstd::stream::decode_all(&bytes[..]).map_err(|e| malformed(&key, e))?;
    let root = decode_root(&key, &json)?;
    if root.checkpoint != point.is_checkpoint() {
        return Err(malformed(
            &key,
            format!(
                "the root of a {} is in the folder of {}s",
                if root.checkpoint {
                    "checkpoint"
                } else {
                    "snapshot"
                },
                point.kind()
            ),
        ));
    }
    Ok((key, root))
}

/// The changes a root names, in their stored order (none when it names none).
pub(super) async fn read_changes(
    store: &Store,
    key: &str,
    root: &Root,
    source: PackSource,
) -> StoreResult<Vec<Change>> {
    let Some(reference) = root.changes else {
        return Ok(Vec::new());
    };
    let what = format!("{key} (changes {:#})", reference.id);
    let mut blobs = std::pin::pin!(store.read_many(vec![reference.id], source));
    let blob = match blobs.try_next().await? {
        Some((_, blob)) => blob,
        None => return Err(StoreError::MissingObject(reference.id)),
    };
    let changes: Changes = serde_json::from_slice(&blob).map_err(|e| malformed(&what, e))?;
    if changes.changes != CHANGES_VERSION || changes.items.len() != reference.count as usize {
        return Err(malformed(&what, "unexpected version or number of changes"));
    }
    let resources = root.resources.len();
    changes
        .items
        .into_iter()
        .map(|(resource, namespace, name, manager)| {
            if resource as usize >= resources {
                return Err(malformed(&what, "a change names no resource"));
            }
            Ok(Change {
                resource,
                namespace,
                name,
                manager,
            })
        })
        .collect()
}

pub(super) fn decode_root(key: &str, json: &[u8]) -> StoreResult<Root> {
    #[derive(Deserialize)]
    struct Versioned {
        version: u32,
    }
    let Versioned { version } = serde_json::from_slice(json).map_err(|e| malformed(key, e))?;
    if version != ROOT_VERSION && version != ROOT_VERSION_LISTINGS {
        return Err(malformed(
            key,
            format!(
                "version {version} is not supported (this build reads versions \
                 {ROOT_VERSION_LISTINGS} and {ROOT_VERSION})"
            ),
        ));
    }
    let root: Root = serde_json::from_slice(json).map_err(|e| malformed(key, e))?;
    let shape_fits = match version {
        ROOT_VERSION => root.listings.is_empty(),
        _ => root.pages.is_empty(),
    };
    if !shape_fits {
        return Err(malformed(key, "pages and listings in one root"));
    }
    Ok(root)
}

/// The listings of a root, in order: read from its pages (format 3) or from the root itself
/// (format 2).
pub(super) async fn listings(
    store: &Store,
    key: &str,
    root: &Root,
    source: PackSource,
) -> StoreResult<Vec<ListingRef>> {
    if root.version == ROOT_VERSION_LISTINGS {
        return Ok(root
            .listings
            .iter()
            .map(|l| ListingRef {
                resource: l.resource,
                namespace: l.namespace.clone(),
                parts: vec![l.id],
                objects: l.objects,
                file: l.file,
            })
            .collect());
    }
    let pages: Vec<&PageRef> = root.pages.iter().collect();
    read_pages(store, key, &pages, root.resources.len(), source).await
}

/// The listings of `pages`, in order. `resources` is the number of resources of their root.
pub(super) async fn read_pages(
    store: &Store,
    key: &str,
    pages: &[&PageRef],
    resources: usize,
    source: PackSource,
) -> StoreResult<Vec<ListingRef>> {
    let mut ids: Vec<ObjectId> = pages.iter().map(|p| p.id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut read: HashMap<ObjectId, Page> = HashMap::with_capacity(ids.len());
    let mut blobs = std::pin::pin!(store.read_many(ids, source));
    while let Some((id, blob)) = blobs.try_next().await? {
        let what = || format!("{key} (page {id:#})");
        let page: Page = serde_json::from_slice(&blob).map_err(|e| malformed(&what(), e))?;
        if page.page != PAGE_VERSION {
            return Err(malformed(&what(), "unexpected page version"));
        }
        read.insert(id, page);
    }
    let mut listings = Vec::new();
    for page_ref in pages {
        let page = read
            .get(&page_ref.id)
            .ok_or(StoreError::MissingObject(page_ref.id))?;
        if page.listings.len() != page_ref.listings as usize {
            let what = format!("{key} (page {:#})", page_ref.id);
            return Err(malformed(&what, "unexpected number of listings"));
        }
        listings.extend(page.listings.iter().cloned());
    }
    for listing in &listings {
        if listing.resource as usize >= resources || listing.parts.is_empty() {
            return Err(malformed(key, "a listing names no resource or no part"));
        }
    }
    Ok(listings)
}

/// Reads the parts of `listings` and calls `each` with every listing and its objects as
/// `(name, id, size)`, in order. A part shared by listings is read once.
pub(super) async fn read_listings(
    store: &Store,
    key: &str,
    listings: &[ListingRef],
    source: PackSource,
    mut each: impl FnMut(&ListingRef, Vec<(String, ObjectId, u32)>),
) -> StoreResult<()> {
    let mut uses: HashMap<ObjectId, u32> = HashMap::new();
    for id in listings.iter().flat_map(|l| &l.parts) {
        *uses.entry(*id).or_default() += 1;
    }
    let mut parts: HashMap<ObjectId, Vec<(String, ObjectId, u32)>> =
        HashMap::with_capacity(uses.len());
    let mut blobs = std::pin::pin!(store.read_many(uses.keys().copied().collect(), source));
    while let Some((id, blob)) = blobs.try_next().await? {
        let what = || format!("{key} (listing {id:#})");
        let part: Part = serde_json::from_slice(&blob).map_err(|e| malformed(&what(), e))?;
        if part.listing != LISTING_VERSION || part.items.is_empty() {
            return Err(malformed(&what(), "unexpected version or an empty listing"));
        }
        parts.insert(id, part.items);
    }
    for listing in listings {
        let mut items = Vec::new();
        for id in &listing.parts {
            let uses = uses.get_mut(id).expect("counted above");
            *uses -= 1;
            let part = if *uses == 0 {
                parts.remove(id)
            } else {
                parts.get(id).cloned()
            };
            items.extend(part.ok_or(StoreError::MissingObject(*id))?);
        }
        if items.len() != listing.objects as usize {
            let what = format!("{key} (listing of {} objects)", listing.objects);
            return Err(malformed(&what, "unexpected number of objects"));
        }
        each(listing, items);
    }
    Ok(())
}

/// What looking up one object in many points reads once: pages and listing parts by id
/// (unchanged ones are shared by the points, so most points cost their root alone).
#[derive(Debug, Default)]
pub(super) struct Lookup {
    pages: HashMap<ObjectId, Vec<ListingRef>>,
    parts: HashMap<ObjectId, Vec<(String, ObjectId, u32)>>,
}

/// One blob, checked against its id.
async fn read_blob(store: &Store, id: ObjectId, source: PackSource) -> StoreResult<bytes::Bytes> {
    let mut blobs = std::pin::pin!(store.read_many(vec![id], source));
    match blobs.try_next().await? {
        Some((_, blob)) => Ok(blob),
        None => Err(StoreError::MissingObject(id)),
    }
}

impl Lookup {
    /// The listings of `root` for the resource `resource` (an index into its resources) and
    /// `namespace`.
    async fn listings_of(
        &mut self,
        store: &Store,
        key: &str,
        root: &Root,
        resource: u32,
        namespace: Option<&str>,
    ) -> StoreResult<Vec<ListingRef>> {
        let wanted = |l: &ListingRef| l.resource == resource && l.namespace.as_deref() == namespace;
        if root.version == ROOT_VERSION_LISTINGS {
            let all = listings(store, key, root, PackSource::LocalCopyFirst).await?;
            return Ok(all.into_iter().filter(wanted).collect());
        }
        // The pages no point before had, read together.
        let unread: Vec<&PageRef> = root
            .pages
            .iter()
            .filter(|p| !self.pages.contains_key(&p.id))
            .collect();
        let mut read = read_pages(
            store,
            key,
            &unread,
            root.resources.len(),
            PackSource::LocalCopyFirst,
        )
        .await?
        .into_iter();
        for page_ref in unread {
            let listings: Vec<ListingRef> =
                read.by_ref().take(page_ref.listings as usize).collect();
            self.pages.entry(page_ref.id).or_insert(listings);
        }
        let mut found = Vec::new();
        for page_ref in &root.pages {
            if let Some(listings) = self.pages.get(&page_ref.id) {
                found.extend(listings.iter().filter(|l| wanted(l)).cloned());
            }
        }
        Ok(found)
    }

    /// The id of the object `name` in `listing`, reading its parts (each once).
    async fn id_in(
        &mut self,
        store: &Store,
        key: &str,
        listing: &ListingRef,
        name: &str,
    ) -> StoreResult<Option<ObjectId>> {
        for part in &listing.parts {
            if !self.parts.contains_key(part) {
                let blob = read_blob(store, *part, PackSource::LocalCopyFirst).await?;
                let what = format!("{key} (listing {part:#})");
                let read: Part = serde_json::from_slice(&blob).map_err(|e| malformed(&what, e))?;
                if read.listing != LISTING_VERSION {
                    return Err(malformed(&what, "unexpected listing version"));
                }
                self.parts.insert(*part, read.items);
            }
            if let Some((_, id, _)) = self.parts[part].iter().find(|(n, _, _)| n == name) {
                return Ok(Some(*id));
            }
        }
        Ok(None)
    }

    /// The object `namespace/name` of every resource of `point` that `wanted` accepts, with
    /// its change when the point names one, and the resources of the point.
    pub(super) async fn find(
        &mut self,
        store: &Store,
        point: &Point,
        wanted: &dyn Fn(&crate::kube::ResourceType) -> bool,
        namespace: Option<&str>,
        name: &str,
    ) -> StoreResult<(Vec<ManifestResource>, Vec<(u32, ObjectId, Option<Change>)>)> {
        let (key, root) = read_root(store, point).await?;
        let mut found = Vec::new();
        for (index, resource) in root.resources.iter().enumerate() {
            if !wanted(&resource.resource) {
                continue;
            }
            let index = index as u32;
            let namespace = namespace.filter(|_| resource.resource.namespaced);
            for listing in self
                .listings_of(store, &key, &root, index, namespace)
                .await?
            {
                if let Some(id) = self.id_in(store, &key, &listing, name).await? {
                    found.push((index, id, None));
                    break;
                }
            }
        }
        if !found.is_empty() && root.changes.is_some() {
            let changes = read_changes(store, &key, &root, PackSource::LocalCopyFirst).await?;
            for (index, _, change) in &mut found {
                let namespace =
                    namespace.filter(|_| root.resources[*index as usize].resource.namespaced);
                *change = changes
                    .iter()
                    .find(|c| {
                        c.resource == *index
                            && c.name == name
                            && c.namespace.as_deref() == namespace
                    })
                    .cloned();
            }
        }
        Ok((root.resources, found))
    }
}

/// The objects of `listings`, in order.
pub(super) async fn read_objects(
    store: &Store,
    key: &str,
    listings: &[ListingRef],
    capacity: usize,
    source: PackSource,
) -> StoreResult<Vec<ManifestObject>> {
    let mut objects = Vec::with_capacity(capacity);
    read_listings(store, key, listings, source, |listing, items| {
        objects.extend(items.into_iter().map(|(name, id, size)| ManifestObject {
            resource: listing.resource,
            namespace: listing.namespace.clone(),
            name,
            id,
            size,
        }));
    })
    .await?;
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::kube::ResourceType;
    use crate::store::{DynBackend, LocalBackend, RemoteFile, StoreConfig};

    fn resource(plural: &str) -> ManifestResource {
        ManifestResource {
            resource: ResourceType {
                group: String::new(),
                version: "v1".to_string(),
                kind: plural.to_string(),
                resource: plural.to_string(),
                namespaced: true,
            },
            count: 0,
        }
    }

    /// `namespaces` namespaces of `per_namespace` config maps and one secret each.
    fn manifest(namespaces: usize, per_namespace: usize) -> Manifest {
        let mut objects = Vec::new();
        for (resource, count) in [(0, per_namespace), (1, 1)] {
            for ns in 0..namespaces {
                for i in 0..count {
                    let name = format!("object-{i:05}");
                    objects.push(ManifestObject {
                        resource,
                        namespace: Some(format!("ns-{ns:04}")),
                        id: ObjectId::of(format!("{resource}/{ns}/{name}").as_bytes()),
                        name,
                        size: 100,
                    });
                }
            }
        }
        Manifest {
            version: ROOT_VERSION,
            time: "26-12-03_10-00-00".parse().unwrap(),
            cluster: "test".to_string(),
            resources: vec![resource("configmaps"), resource("secrets")],
            stats: SnapshotStats {
                objects: objects.len() as u64,
                ..Default::default()
            },
            objects,
            skipped: Vec::new(),
            export: None,
            sealed_files: BTreeMap::from([(
                (1, Some("ns-0003".to_string())),
                SealedFile {
                    id: ObjectId::of(b"sealed file"),
                    size: 7,
                },
            )]),
            checkpoint: false,
            changes: Vec::new(),
        }
    }

    async fn store(dir: &std::path::Path, remote: &DynBackend, cache: &str) -> Store {
        Store::open(remote.clone(), &dir.join(cache), StoreConfig::default())
            .await
            .unwrap()
    }

    #[test]
    fn runs_end_by_content_so_an_insertion_moves_only_its_own_run() {
        let keys: Vec<String> = (0..2_000).map(|i| format!("name-{i}")).collect();
        let ends = |k: &String| ends_run(&[k.as_bytes()], PART_EVERY);
        let before: Vec<Vec<String>> = runs(&keys, PART_MAX, ends)
            .iter()
            .map(|r| r.to_vec())
            .collect();
        assert!(
            (2_000 / 32..2_000 / 8).contains(&before.len()),
            "{} runs of 2,000 keys",
            before.len()
        );
        let mut inserted = keys.clone();
        inserted.insert(1_000, "name-1000a".to_string());
        let after: Vec<Vec<String>> = runs(&inserted, PART_MAX, ends)
            .iter()
            .map(|r| r.to_vec())
            .collect();
        let changed = after.iter().filter(|r| !before.contains(r)).count();
        assert!(changed <= 2, "{changed} runs changed");
        assert_eq!(after.len(), before.len() + changed - 1);
        // A run never passes its maximum, whatever the keys.
        let never = runs(&keys, 10, |_| false);
        assert!(never.iter().all(|r| r.len() == 10) && never.len() == 200);
    }

    /// A manifest reads back as it was saved, and a second snapshot in which one object
    /// changed stores one listing part, one page and its root: a few kilobytes, not the
    /// listings of its group nor a root with one reference per listing.
    #[tokio::test]
    async fn a_manifest_round_trips_and_one_changed_object_costs_one_part_and_one_page() {
        let dir = tempfile::tempdir().unwrap();
        let remote: DynBackend = Arc::new(LocalBackend::new(dir.path().join("remote")).unwrap());
        let writer = store(dir.path(), &remote, "a").await;
        let mut first = manifest(400, 200);
        let first_bytes = first.save(&writer).await.unwrap();

        let reader = store(dir.path(), &remote, "b").await;
        let loaded = Manifest::load(&reader, &first.time).await.unwrap();
        assert_eq!(loaded.objects, first.objects);
        assert_eq!(loaded.sealed_files, first.sealed_files);
        assert_eq!(loaded.version, ROOT_VERSION);

        let mut second = manifest(400, 200);
        second.time = "26-12-03_11-00-00".parse().unwrap();
        second.objects[55_555].id = ObjectId::of(b"changed");
        let second_bytes = second.save(&writer).await.unwrap();
        let root_bytes = remote
            .get(&RemoteFile::Snapshot(&second.time).key())
            .await
            .unwrap()
            .len() as u64;
        assert!(
            // Format 2 stored about 9 kB of listing and a 33 kB root here.
            second_bytes - root_bytes < 5_000 && root_bytes < first_bytes / 400,
            "{second_bytes} bytes ({root_bytes} of them the root) after {first_bytes}"
        );
        let loaded = Manifest::load(&reader, &second.time).await.unwrap();
        assert_eq!(loaded.objects, second.objects);

        // A prune keeps the pages, the listings, the objects and the sealed file.
        let referenced = super::super::referenced_ids(
            &reader,
            &[Point::Snapshot(first.time), Point::Snapshot(second.time)],
        )
        .await
        .unwrap();
        let (key, root) = read_root(&reader, &Point::Snapshot(second.time))
            .await
            .unwrap();
        let listings = listings(&reader, &key, &root, PackSource::Destination)
            .await
            .unwrap();
        let expected: std::collections::HashSet<ObjectId> = root
            .pages
            .iter()
            .map(|p| p.id)
            .chain(listings.iter().flat_map(|l| l.parts.iter().copied()))
            .chain(first.objects.iter().chain(&second.objects).map(|o| o.id))
            .chain([ObjectId::of(b"sealed file")])
            .collect();
        assert!(expected.is_subset(&referenced));
        assert!(
            referenced.len() > expected.len(),
            "the first snapshot's own page and part"
        );
    }

    /// Stores of format 2 (a root naming one listing blob per group) stay readable: load,
    /// prune's references and a renamed staged root.
    #[tokio::test]
    async fn a_format_2_manifest_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let remote: DynBackend = Arc::new(LocalBackend::new(dir.path().join("remote")).unwrap());
        let store = store(dir.path(), &remote, "a").await;
        let manifest = manifest(5, 3);
        let mut writer = store.writer().unwrap();
        let mut listings = Vec::new();
        for group in manifest.groups() {
            let items: Vec<_> = group.iter().map(|o| (&o.name, o.id, o.size)).collect();
            let json = serde_json::json!({ "listing": 1, "items": items });
            let id = writer.add(json.to_string().as_bytes()).await.unwrap();
            let mut listing = serde_json::json!({
                "resource": group[0].resource,
                "namespace": group[0].namespace,
                "id": id,
                "objects": group.len(),
            });
            if let Some(file) = manifest
                .sealed_files
                .get(&(group[0].resource, group[0].namespace.clone()))
            {
                listing["file"] = serde_json::to_value(file).unwrap();
            }
            listings.push(listing);
        }
        writer.finish().await.unwrap();
        let root = serde_json::json!({
            "version": 2,
            "time": manifest.time,
            "cluster": manifest.cluster,
            "resources": manifest.resources,
            "listings": listings,
            "skipped": [],
            "stats": manifest.stats,
        });
        let key = RemoteFile::Snapshot(&manifest.time).key();
        let stored = super::super::encode_json(&key, &root).unwrap();
        remote.put(&key, stored.clone()).await.unwrap();

        let loaded = Manifest::load(&store, &manifest.time).await.unwrap();
        assert_eq!(loaded.objects, manifest.objects);
        assert_eq!(loaded.sealed_files, manifest.sealed_files);
        assert_eq!(loaded.version, ROOT_VERSION_LISTINGS);
        let referenced = super::super::referenced_ids(&store, &[Point::Snapshot(manifest.time)])
            .await
            .unwrap();
        assert!(manifest.objects.iter().all(|o| referenced.contains(&o.id)));
        assert_eq!(
            referenced.len(),
            manifest.objects.len() + listings.len() + 1
        );

        let later = manifest.time.next_second();
        let renamed = super::super::retimed_root(&key, &stored, later).unwrap();
        remote
            .put(&RemoteFile::Snapshot(&later).key(), renamed)
            .await
            .unwrap();
        let moved = Manifest::load(&store, &later).await.unwrap();
        assert_eq!((moved.time, moved.objects), (later, manifest.objects));
    }

    /// After a prune deleted a pack that holds only a page of the manifest (no object), the
    /// writer's check finds the snapshot unrestorable; before, it finds nothing missing.
    #[tokio::test]
    async fn a_deleted_page_makes_a_snapshot_unstored() {
        let dir = tempfile::tempdir().unwrap();
        let remote: DynBackend = Arc::new(LocalBackend::new(dir.path().join("remote")).unwrap());
        let store = store(dir.path(), &remote, "a").await;
        let mut manifest = manifest(20, 3);
        // The objects are stored by the snapshot's writer, before the manifest.
        let mut writer = store.writer().unwrap();
        for object in &mut manifest.objects {
            object.id = writer.add(object.name.as_bytes()).await.unwrap();
        }
        writer.finish().await.unwrap();
        manifest.save(&store).await.unwrap();
        let unstored = super::super::unstored_blobs(&store, &manifest.time).await;
        assert_eq!(unstored.unwrap(), 1, "the sealed file was never stored");

        manifest.sealed_files.clear();
        manifest.time = manifest.time.next_second();
        manifest.save(&store).await.unwrap();
        let unstored = super::super::unstored_blobs(&store, &manifest.time).await;
        assert_eq!(unstored.unwrap(), 0);

        let (_, root) = read_root(&store, &Point::Snapshot(manifest.time))
            .await
            .unwrap();
        let page = store.location(&root.pages[0].id).await.unwrap().pack;
        let object = store.location(&manifest.objects[0].id).await.unwrap().pack;
        assert_ne!(page, object, "the manifest has packs of its own");
        remote.delete(&RemoteFile::Pack(&page).key()).await.unwrap();
        store.check_packs().await.unwrap();
        let unstored = super::super::unstored_blobs(&store, &manifest.time).await;
        assert!(unstored.unwrap() >= 1);
    }

    /// A snapshot's root without changes has exactly the fields it had before checkpoints
    /// and changes existed, so roots written before and after read and hash the same.
    #[tokio::test]
    async fn a_snapshot_root_without_changes_is_unchanged_by_the_new_fields() {
        let dir = tempfile::tempdir().unwrap();
        let remote: DynBackend = Arc::new(LocalBackend::new(dir.path().join("remote")).unwrap());
        let store = store(dir.path(), &remote, "a").await;
        let mut snapshot = manifest(3, 2);
        snapshot.save(&store).await.unwrap();
        let stored = remote
            .get(&RemoteFile::Snapshot(&snapshot.time).key())
            .await
            .unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&zstd::stream::decode_all(&stored[..]).unwrap()).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        // In serde_json's order.
        let old = [
            "cluster",
            "pages",
            "resources",
            "skipped",
            "stats",
            "time",
            "version",
        ];
        assert_eq!(keys, old);
    }

    /// A checkpoint with changes goes to its own folder, reads back with its changes, is not
    /// a snapshot, keeps its kind when renamed, and a prune keeps its changes blob.
    #[tokio::test]
    async fn a_checkpoint_and_its_changes_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let remote: DynBackend = Arc::new(LocalBackend::new(dir.path().join("remote")).unwrap());
        let store = store(dir.path(), &remote, "a").await;
        let mut snapshot = manifest(5, 2);
        snapshot.save(&store).await.unwrap();
        let mut checkpoint = manifest(5, 2);
        checkpoint.time = snapshot.time.next_second();
        checkpoint.checkpoint = true;
        checkpoint.objects[1].id = ObjectId::of(b"changed");
        checkpoint.changes = vec![
            Change {
                resource: 0,
                namespace: Some("ns-0000".to_string()),
                name: "object-00001".to_string(),
                manager: Some("kubectl-edit".to_string()),
            },
            Change {
                resource: 1,
                namespace: Some("ns-0002".to_string()),
                name: "object-00000".to_string(),
                manager: None,
            },
        ];
        checkpoint.save(&store).await.unwrap();
        let key = RemoteFile::Checkpoint(&checkpoint.time).key();
        let stored = remote.get(&key).await.unwrap();

        let point = Point::Checkpoint(checkpoint.time);
        let loaded = Manifest::load_point(&store, &point).await.unwrap();
        assert_eq!(loaded, checkpoint);
        assert_eq!(loaded.point(), point);
        let head = Manifest::head_point(&store, &point).await.unwrap();
        assert_eq!(
            (head.checkpoint, head.changes, head.export),
            (true, 2, None)
        );
        assert_eq!(Manifest::list(&store).await.unwrap(), vec![snapshot.time]);
        assert_eq!(
            Manifest::list_checkpoints(&store).await.unwrap(),
            vec![checkpoint.time]
        );
        assert_eq!(
            Manifest::list_points(&store).await.unwrap(),
            vec![Point::Snapshot(snapshot.time), point]
        );
        let err = Manifest::load(&store, &checkpoint.time).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");

        let (_, root) = read_root(&store, &point).await.unwrap();
        let changes_id = root.changes.unwrap().id;
        let referenced = super::super::referenced_ids(&store, &[point])
            .await
            .unwrap();
        assert!(referenced.contains(&changes_id));
        let snapshot_only = super::super::referenced_ids(&store, &[Point::Snapshot(snapshot.time)])
            .await
            .unwrap();
        assert!(!snapshot_only.contains(&changes_id));

        // Renamed as a push renames a staged root: still a checkpoint.
        let later = checkpoint.time.next_second();
        let renamed = super::super::retimed_root(&key, &stored, later).unwrap();
        let moved = Point::of_root_key(&key).unwrap().at(later);
        remote.put(&moved.root_key(), renamed).await.unwrap();
        let loaded = Manifest::load_point(&store, &moved).await.unwrap();
        assert_eq!((loaded.time, loaded.checkpoint), (later, true));
        assert_eq!(loaded.changes, checkpoint.changes);

        // A checkpoint's root put in the snapshots' folder is refused, not taken for one.
        let misplaced = super::super::retimed_root(&key, &stored, later.next_second()).unwrap();
        let wrong = RemoteFile::Snapshot(&later.next_second()).key();
        remote.put(&wrong, misplaced).await.unwrap();
        let err = Manifest::load(&store, &later.next_second())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("folder of snapshots"), "{err}");
    }

    /// One object looked up in a snapshot and a checkpoint: its id in each, its change where
    /// the point names one, nothing in a namespace or resource that does not hold it; the
    /// pages the two points share are read once.
    #[tokio::test]
    async fn an_object_is_looked_up_in_many_points_reading_shared_pages_once() {
        let dir = tempfile::tempdir().unwrap();
        let remote: DynBackend = Arc::new(LocalBackend::new(dir.path().join("remote")).unwrap());
        let store = store(dir.path(), &remote, "a").await;
        let mut snapshot = manifest(40, 30);
        snapshot.save(&store).await.unwrap();
        let mut checkpoint = manifest(40, 30);
        checkpoint.time = snapshot.time.next_second();
        checkpoint.checkpoint = true;
        let changed = checkpoint
            .objects
            .iter()
            .position(|o| o.namespace.as_deref() == Some("ns-0007") && o.name == "object-00003")
            .unwrap();
        checkpoint.objects[changed].id = ObjectId::of(b"version 2");
        checkpoint.changes = vec![Change {
            resource: 0,
            namespace: Some("ns-0007".to_string()),
            name: "object-00003".to_string(),
            manager: Some("editor".to_string()),
        }];
        checkpoint.save(&store).await.unwrap();

        let configmaps = |rt: &crate::kube::ResourceType| rt.resource == "configmaps";
        let mut lookup = super::super::ObjectLookup::new();
        let first = lookup
            .find(
                &store,
                &Point::Snapshot(snapshot.time),
                &configmaps,
                Some("ns-0007"),
                "object-00003",
            )
            .await
            .unwrap();
        assert_eq!(first.found.len(), 1);
        assert_eq!(first.found[0].id, snapshot.objects[changed].id);
        assert_eq!(first.found[0].change, None);
        let pages_read = lookup.0.pages.len();
        let second = lookup
            .find(
                &store,
                &Point::Checkpoint(checkpoint.time),
                &configmaps,
                Some("ns-0007"),
                "object-00003",
            )
            .await
            .unwrap();
        assert_eq!(second.found[0].id, ObjectId::of(b"version 2"));
        assert_eq!(
            second.found[0].change.as_ref().unwrap().manager.as_deref(),
            Some("editor")
        );
        // Only the changed page is new.
        assert_eq!(lookup.0.pages.len(), pages_read + 1);
        for (namespace, name) in [
            (Some("ns-0007"), "object-99999"),
            (Some("nope"), "object-00003"),
        ] {
            let none = lookup
                .find(
                    &store,
                    &Point::Snapshot(snapshot.time),
                    &configmaps,
                    namespace,
                    name,
                )
                .await
                .unwrap();
            assert!(none.found.is_empty() && none.resources.len() == 2);
        }
    }

    #[test]
    fn a_root_of_an_unknown_version_or_of_both_shapes_is_refused() {
        let root = |version: u32, both: bool| {
            let mut root = serde_json::json!({
                "version": version, "time": "26-12-03_10-00-00", "cluster": "c",
                "resources": [], "pages": [], "skipped": [], "stats": SnapshotStats::default(),
            });
            if both {
                root["pages"] = serde_json::json!([{ "id": ObjectId::of(b"p"), "listings": 1 }]);
                root["listings"] =
                    serde_json::json!([{ "resource": 0, "id": ObjectId::of(b"l"), "objects": 1 }]);
            }
            serde_json::to_vec(&root).unwrap()
        };
        assert!(decode_root("k", &root(3, false)).is_ok());
        let err = decode_root("k", &root(4, false)).unwrap_err().to_string();
        assert!(err.contains("version 4 is not supported"), "{err}");
        for version in [2, 3] {
            let err = decode_root("k", &root(version, true))
                .unwrap_err()
                .to_string();
            assert!(err.contains("pages and listings"), "{err}");
        }
    }
}
