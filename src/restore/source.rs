//! Where a restore reads objects from: a snapshot's manifest (objects from the store), the
//! plain layout of a snapshot at the destination, or a plain-layout folder on disk written
//! by older dump scripts (`[<namespace>/]<resource>.json`, each a List). An object or file
//! that cannot be read stops the read with an error that names it, or, when asked, is left
//! out and named. A source only reads.

use crate::object_name::ObjectName;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::RestoreError;
use crate::kube::ResourceType;
use crate::repo::{Manifest, ManifestObject};
use crate::seal::{Keyring, SealError};
use crate::store::{
    BackendExt, DynBackend, Folder, ObjectId, PackId, SnapshotTime, Store, StoreError, StoreResult,
};

/// One object to restore, with what is known of its type.
#[derive(Debug, Clone)]
pub struct Item {
    pub group: String,
    pub version: String,
    pub kind: String,
    /// The plural resource name, when the source knows it (a manifest does; a layout file's
    /// name suggests it).
    pub resource: Option<String>,
    /// Whether the resource is namespaced, when the source knows it.
    pub namespaced: Option<bool>,
    pub namespace: Option<String>,
    pub name: String,
    /// The object's JSON. Kept as text, not as a tree: a tree takes several times the
    /// memory, and a restore holds every object of a snapshot until it is done.
    pub object: Bytes,
    /// Where the object came from (an object id or a file), for messages.
    pub origin: String,
}

impl Item {
    /// The object as a JSON tree.
    pub fn value(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_slice(&self.object)
    }

    /// `Kind namespace/name` or `Kind name`.
    pub fn describe(&self) -> String {
        let name = ObjectName::new(self.namespace.as_deref(), &self.name);
        format!("{} {name}", self.kind)
    }

    /// `deployments.apps` when the resource is known, else the kind.
    pub fn resource_name(&self) -> String {
        match (&self.resource, self.group.as_str()) {
            (Some(r), "") => r.clone(),
            (Some(r), g) => format!("{r}.{g}"),
            (None, _) => self.kind.clone(),
        }
    }

    pub fn resource_type(&self) -> Option<ResourceType> {
        Some(ResourceType {
            group: self.group.clone(),
            version: self.version.clone(),
            kind: self.kind.clone(),
            resource: self.resource.clone()?,
            namespaced: self.namespaced?,
        })
    }
}

/// Something a source could not read: an object of the store, or a plain-layout file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Damaged {
    /// `Kind namespace/name` of the object, or `file <path>`.
    pub object: String,
    pub reason: String,
}

/// What to do with an object or file that cannot be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnDamage {
    /// Stop: the error names it.
    #[default]
    Fail,
    /// Leave it out, and name it in the plan and the report.
    Skip,
}

/// The items a source gave, and what it could not read (with [`OnDamage::Skip`]).
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub items: Vec<Item>,
    pub damaged: Vec<Damaged>,
    /// Encrypted objects or files that no identity given opens: always left out, by name,
    /// so that a restore without the key still restores everything else.
    pub locked: Vec<Damaged>,
}

/// Whether a store error means the data itself is damaged (a pack gone or changed, an
/// object no index lists), as opposed to a failure to reach the store.
fn is_damage(e: &StoreError) -> bool {
    matches!(e, StoreError::Corrupt { .. } | StoreError::MissingObject(_))
}

/// The objects of a manifest that `wanted` accepts (asked before reading them), read from
/// the store; sealed ones opened with `keyring`.
pub async fn from_manifest(
    store: &Store,
    manifest: &Manifest,
    wanted: impl Fn(&ResourceType, &ManifestObject) -> bool,
    on_damage: OnDamage,
    keyring: &Keyring,
) -> Result<Loaded, RestoreError> {
    let chosen: Vec<&ManifestObject> = manifest
        .objects
        .iter()
        .filter(|o| wanted(manifest.resource_of(o), o))
        .collect();
    let describe = |o: &ManifestObject| {
        let kind = &manifest.resource_of(o).kind;
        format!(
            "{kind} {}",
            ObjectName::new(o.namespace.as_deref(), &o.name)
        )
    };
    let ids: Vec<ObjectId> = chosen
        .iter()
        .map(|o| o.id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let (contents, unreadable) = match read_objects(store, ids, on_damage).await {
        Ok(read) => read,
        Err(e) => {
            let damaged = match &e {
                StoreError::Corrupt { object, .. } | StoreError::MissingObject(object) => {
                    Some(*object)
                }
                _ => None,
            };
            let Some(damaged) = damaged else {
                return Err(e.into());
            };
            let mut named: Vec<String> = chosen
                .iter()
                .filter(|o| o.id == damaged)
                .map(|o| describe(o))
                .collect();
            named.sort();
            return Err(RestoreError::Damaged {
                object: named.join(", "),
                source: e,
            });
        }
    };
    let mut loaded = Loaded {
        items: Vec::with_capacity(chosen.len()),
        ..Loaded::default()
    };
    for o in chosen {
        let rt = manifest.resource_of(o);
        let origin = format!("object {:#}", o.id);
        let read = match (unreadable.get(&o.id), contents.get(&o.id)) {
            (Some(reason), _) => Err(reason.clone()),
            (None, Some(object)) => {
                let opened = keyring
                    .open_object(store, &describe(o), &o.id, object.clone())
                    .await;
                match opened {
                    Err(e) if e.is_locked() => {
                        loaded.locked.push(Damaged {
                            object: describe(o),
                            reason: e.to_string(),
                        });
                        continue;
                    }
                    Err(SealError::Store(e)) if !is_damage(&e) => return Err(e.into()),
                    Err(e) => Err(e.to_string()),
                    Ok(object) => serde_json::from_slice::<IgnoredAny>(&object)
                        .map(|_| object)
                        .map_err(|e| format!("{origin} is not JSON: {e}")),
                }
            }
            (None, None) => Err(StoreError::MissingObject(o.id).to_string()),
        };
        let object = match (read, on_damage) {
            (Ok(object), _) => object,
            (Err(reason), OnDamage::Skip) => {
                loaded.damaged.push(Damaged {
                    object: describe(o),
                    reason,
                });
                continue;
            }
            (Err(reason), OnDamage::Fail) => {
                return Err(RestoreError::Parse {
                    origin: format!("{} ({origin})", describe(o)),
                    reason,
                });
            }
        };
        loaded.items.push(Item {
            group: rt.group.clone(),
            version: rt.version.clone(),
            kind: rt.kind.clone(),
            resource: Some(rt.resource.clone()),
            namespaced: Some(rt.namespaced),
            namespace: o.namespace.clone(),
            name: o.name.clone(),
            object,
            origin,
        });
    }
    loaded.damaged.sort();
    loaded.locked.sort();
    Ok(loaded)
}

/// Objects read, and (with [`OnDamage::Skip`]) why each damaged one could not be.
type Read = (HashMap<ObjectId, Bytes>, BTreeMap<ObjectId, String>);

/// Reads the objects, every pack at most once while nothing is damaged. On the first damage,
/// fails, or (skipping) reads the rest pack by pack, and a damaged pack object by object, to
/// tell exactly which objects cannot be read.
async fn read_objects(
    store: &Store,
    ids: Vec<ObjectId>,
    on_damage: OnDamage,
) -> Result<Read, StoreError> {
    let mut contents = HashMap::with_capacity(ids.len());
    let mut damage = None;
    {
        let mut stream = std::pin::pin!(store.get_many(ids.clone()));
        while let Some(next) = stream.next().await {
            match next {
                Ok((id, bytes)) => {
                    contents.insert(id, bytes);
                }
                Err(e) if is_damage(&e) => {
                    damage = Some(e);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
    }
    let Some(first) = damage else {
        return Ok((contents, BTreeMap::new()));
    };
    if on_damage == OnDamage::Fail {
        return Err(first);
    }
    tracing::warn!(error = %first, "the store holds damaged objects; reading the rest one pack at a time");
    let mut unreadable = BTreeMap::new();
    let mut by_pack: BTreeMap<PackId, Vec<ObjectId>> = BTreeMap::new();
    for id in ids.into_iter().filter(|id| !contents.contains_key(id)) {
        match store.location(&id).await {
            Ok(location) => by_pack.entry(location.pack).or_default().push(id),
            Err(e) if is_damage(&e) => {
                unreadable.insert(id, e.to_string());
            }
            Err(e) => return Err(e),
        }
    }
    let packs: Vec<StoreResult<PackRead>> = futures::stream::iter(by_pack.into_values())
        .map(|ids| read_pack(store, ids))
        .buffer_unordered(4)
        .collect()
        .await;
    for pack in packs {
        for (id, read) in pack? {
            match read {
                Ok(bytes) => {
                    contents.insert(id, bytes);
                }
                Err(reason) => {
                    unreadable.insert(id, reason);
                }
            }
        }
    }
    Ok((contents, unreadable))
}

/// Each object of a pack with its bytes, or why it cannot be read.
type PackRead = Vec<(ObjectId, Result<Bytes, String>)>;

/// The objects of one pack; when the pack is damaged, each object on its own (a damaged
/// chunk leaves the pack's other chunks readable).
async fn read_pack(store: &Store, ids: Vec<ObjectId>) -> StoreResult<PackRead> {
    match store.get_many(ids.clone()).try_collect::<Vec<_>>().await {
        Ok(found) => Ok(found.into_iter().map(|(id, b)| (id, Ok(b))).collect()),
        Err(e) if is_damage(&e) => {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                match store.get(&id).await {
                    Ok(bytes) => out.push((id, Ok(bytes))),
                    Err(e) if is_damage(&e) => out.push((id, Err(e.to_string()))),
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        }
        Err(e) => Err(e),
    }
}

/// Parses a plain-layout file into `loaded`; a file that cannot be parsed fails, or (skipping)
/// is named and left out.
fn take_file(
    loaded: &mut Loaded,
    origin: &str,
    relative: &str,
    bytes: &[u8],
    on_damage: OnDamage,
    keyring: &Keyring,
) -> Result<(), RestoreError> {
    let opened;
    let (relative, bytes) = match relative.strip_suffix(crate::seal::FILE_EXTENSION) {
        Some(plain) => match keyring.open_file(&format!("file {origin}"), bytes) {
            Ok(data) => {
                opened = data;
                (plain, &opened[..])
            }
            Err(e) if e.is_locked() => {
                loaded.locked.push(Damaged {
                    object: format!("file {origin}"),
                    reason: e.to_string(),
                });
                return Ok(());
            }
            Err(e) => {
                return take_file_error(loaded, origin, e.to_string(), on_damage);
            }
        },
        None => (relative, bytes),
    };
    match parse_file(origin, relative, bytes) {
        Ok(items) => loaded.items.extend(items),
        Err(RestoreError::Parse { reason, .. }) => {
            return take_file_error(loaded, origin, reason, on_damage);
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

/// A file that cannot be read: fails, or (skipping) is named and left out.
fn take_file_error(
    loaded: &mut Loaded,
    origin: &str,
    reason: String,
    on_damage: OnDamage,
) -> Result<(), RestoreError> {
    match on_damage {
        OnDamage::Skip => {
            loaded.damaged.push(Damaged {
                object: format!("file {origin}"),
                reason,
            });
            Ok(())
        }
        OnDamage::Fail => Err(RestoreError::Parse {
            origin: origin.to_string(),
            reason,
        }),
    }
}

/// Whether a plain-layout file holds objects: a List, or an encrypted List.
fn is_layout_file(relative: &str) -> bool {
    relative
        .strip_suffix(crate::seal::FILE_EXTENSION)
        .unwrap_or(relative)
        .ends_with(".json")
}

/// The objects of a snapshot's plain layout at the destination (`backup/<ts>/`).
pub async fn from_backend_layout(
    backend: &DynBackend,
    time: &SnapshotTime,
    on_damage: OnDamage,
    keyring: &Keyring,
) -> Result<Loaded, RestoreError> {
    let folder = Folder::Backup(time).prefix();
    let listed = backend.list_all(&folder).await?;
    if listed.is_empty() {
        return Err(RestoreError::NoLayout(format!(
            "{} at {}",
            folder,
            backend.describe()
        )));
    }
    let mut loaded = Loaded::default();
    for meta in listed {
        let Some(relative) = meta.key.strip_prefix(&folder) else {
            continue;
        };
        if !is_layout_file(relative) {
            continue;
        }
        let bytes = backend.get(&meta.key).await?;
        take_file(&mut loaded, &meta.key, relative, &bytes, on_damage, keyring)?;
    }
    Ok(loaded)
}

/// The objects of a plain-layout folder on disk: `<dir>/[<namespace>/]<resource>.json`
/// (and `.json.age`, opened with `keyring`).
pub fn from_dir(
    dir: &Path,
    on_damage: OnDamage,
    keyring: &Keyring,
) -> Result<Loaded, RestoreError> {
    let io = |path: &Path, e: std::io::Error| RestoreError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    if !dir.is_dir() {
        return Err(RestoreError::NoLayout(dir.display().to_string()));
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let path = entry.map_err(|e| io(dir, e))?.path();
        if path.is_dir() {
            for inner in std::fs::read_dir(&path).map_err(|e| io(&path, e))? {
                files.push(inner.map_err(|e| io(&path, e))?.path());
            }
        } else {
            files.push(path);
        }
    }
    files.sort();
    let mut loaded = Loaded::default();
    for path in files {
        let Ok(relative) = path.strip_prefix(dir) else {
            continue;
        };
        let relative = relative.to_string_lossy().replace('\\', "/");
        if !is_layout_file(&relative) {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
        take_file(
            &mut loaded,
            &path.display().to_string(),
            &relative,
            &bytes,
            on_damage,
            keyring,
        )?;
    }
    Ok(loaded)
}

/// What a restore needs to know of an item before it reads the rest.
#[derive(Deserialize)]
struct ItemHead {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    metadata: ItemMeta,
}

#[derive(Deserialize, Default)]
struct ItemMeta {
    name: Option<String>,
    namespace: Option<String>,
}

/// Parses one List file; `relative` is `[<namespace>/]<resource>[.<group>].json`.
fn parse_file(origin: &str, relative: &str, bytes: &[u8]) -> Result<Vec<Item>, RestoreError> {
    let parse_error = |reason: String| RestoreError::Parse {
        origin: origin.to_string(),
        reason,
    };
    let (folder_namespace, file) = match relative.split_once('/') {
        Some((ns, file)) => (Some(ns.to_string()), file),
        None => (None, relative),
    };
    let stem = file.strip_suffix(".json").unwrap_or(file);
    // The members of the file, their values left as text.
    let members: std::collections::HashMap<std::borrow::Cow<str>, &RawValue> =
        serde_json::from_slice(bytes).map_err(|e| parse_error(e.to_string()))?;
    let items: Vec<&[u8]> = match (members.get("items"), members.contains_key("metadata")) {
        (Some(items), _) if items.get() == "null" => Vec::new(),
        (Some(items), _) => serde_json::from_str::<Vec<&RawValue>>(items.get())
            .map_err(|e| parse_error(format!("`items` is not an array: {e}")))?
            .iter()
            .map(|item| item.get().as_bytes())
            .collect(),
        // A single object instead of a List.
        (None, true) => vec![bytes],
        (None, false) => {
            return Err(parse_error(
                "not a List: it has no `items` array".to_string(),
            ));
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, object) in items.into_iter().enumerate() {
        let head: ItemHead =
            serde_json::from_slice(object).map_err(|e| parse_error(format!("item {i}: {e}")))?;
        let (Some(api_version), Some(kind)) = (head.api_version, head.kind) else {
            return Err(parse_error(format!(
                "item {i} has no apiVersion and kind; every item of a List needs both"
            )));
        };
        let Some(name) = head.metadata.name else {
            return Err(parse_error(format!("item {i} has no metadata.name")));
        };
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), api_version.clone()),
        };
        // `deployments.json`, or `<plural>.<group>.json` where plurals are shared.
        let resource = stem
            .strip_suffix(&format!(".{group}"))
            .filter(|_| !group.is_empty())
            .unwrap_or(stem)
            .to_string();
        let namespace = head.metadata.namespace.or_else(|| folder_namespace.clone());
        out.push(Item {
            group,
            version,
            kind,
            resource: (!resource.contains('.')).then_some(resource),
            namespaced: Some(folder_namespace.is_some()),
            namespace: namespace.filter(|_| folder_namespace.is_some()),
            name,
            object: Bytes::copy_from_slice(object),
            origin: origin.to_string(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_files_give_type_namespace_and_resource() {
        let file = br#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"a"}}]}"#;
        let items = parse_file("k", "a/deployments.json", file).unwrap();
        assert_eq!(items.len(), 1);
        let item = &items[0];
        assert_eq!((item.group.as_str(), item.version.as_str()), ("apps", "v1"));
        assert_eq!(item.resource.as_deref(), Some("deployments"));
        assert_eq!(item.namespace.as_deref(), Some("a"));
        assert_eq!(item.namespaced, Some(true));

        let file = br#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"name":"e"}}]}"#;
        let items = parse_file("k", "events.events.k8s.io.json", file).unwrap();
        assert_eq!(items[0].resource.as_deref(), Some("events"));
        assert_eq!(items[0].namespaced, Some(false));

        let bad = br#"{"apiVersion":"v1","kind":"List","items":[{"metadata":{"name":"x"}}]}"#;
        let err = parse_file("k", "configmaps.json", bad).unwrap_err();
        assert!(err.to_string().contains("apiVersion and kind"), "{err}");

        // Each item keeps its own text; an empty List and a lone object are read too.
        let file = br#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":{"k":"v"}},
            {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b"}}]}"#;
        let items = parse_file("k", "ns/configmaps.json", file).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].value().unwrap()["data"]["k"], "v");
        assert_eq!(
            &items[1].object[..],
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b"}}"#
        );
        for empty in [&br#"{"kind":"List","items":null}"#[..], br#"{"items":[]}"#] {
            assert!(
                parse_file("k", "configmaps.json", empty)
                    .unwrap()
                    .is_empty()
            );
        }
        let lone = br#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}}"#;
        assert_eq!(
            parse_file("k", "namespaces.json", lone).unwrap()[0].name,
            "a"
        );
        for bad in [&br#"{"kind":"List"}"#[..], br#"{"items":{}}"#, b"[1]", b"{"] {
            assert!(parse_file("k", "configmaps.json", bad).is_err());
        }
    }
}
