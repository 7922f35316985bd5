//! `show`: one snapshot's resources and namespaces with their counts, or its objects, and
//! with `--name` the objects themselves as the snapshot holds them. A Secret's values are
//! hidden (see [`super::redact`]) before anything here returns the object: no Secret value
//! may reach the text or the JSON output.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use futures::TryStreamExt;
use serde::Serialize;
use serde_json::Value;

use super::redact::Redactor;
use super::{InspectError, SnapshotStamp, open_object};
use crate::object_name::ObjectName;
use crate::repo::prune::LayoutState;
use crate::repo::{Manifest, ManifestObject};
use crate::seal::Keyring;
use crate::store::{ObjectId, Store, StoreError};

/// A resource of the snapshot with its number of objects.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ResourceCount {
    /// `deployments.apps`, `configmaps`.
    pub resource: String,
    pub api_version: String,
    pub kind: String,
    pub objects: u64,
}

/// What `show` prints without filters.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    #[serde(flatten)]
    pub snapshot: SnapshotStamp,
    /// `snapshot` or `checkpoint`.
    pub point: &'static str,
    pub cluster: String,
    pub objects: u64,
    /// The plain layout was completed (a checkpoint's manifest is complete as it is).
    pub complete: bool,
    /// Where its plain layout stands: complete, incomplete, or dropped by the retention
    /// policy (the snapshot stays restorable from the store).
    pub layout: LayoutState,
    pub resources: Vec<ResourceCount>,
    /// Namespace -> objects in it.
    pub namespaces: BTreeMap<String, u64>,
    pub cluster_scoped: u64,
    pub skipped: Vec<String>,
}

/// The overview of `manifest`, whose plain layout is `dropped` by the retention policy or not.
pub fn overview(manifest: &Manifest, dropped: bool) -> Overview {
    let resources = manifest
        .resources
        .iter()
        .map(|r| ResourceCount {
            resource: r.resource.qualified_name(),
            api_version: r.resource.api_version(),
            kind: r.resource.kind.clone(),
            objects: r.count,
        })
        .collect();
    let mut namespaces = BTreeMap::new();
    let mut cluster_scoped = 0;
    for (ns, count) in manifest.namespaces() {
        match ns {
            Some(ns) => {
                namespaces.insert(ns.to_string(), count);
            }
            None => cluster_scoped += count,
        }
    }
    let skipped = manifest
        .skipped
        .iter()
        .map(|s| format!("{}: {}", s.what(), s.reason))
        .collect();
    Overview {
        snapshot: manifest.time.into(),
        point: manifest.point().kind(),
        cluster: manifest.cluster.clone(),
        objects: manifest.stats.objects,
        complete: manifest.is_exported() || manifest.checkpoint,
        layout: match (dropped, manifest.is_exported()) {
            _ if manifest.checkpoint => LayoutState::None,
            (true, _) => LayoutState::Dropped,
            (false, true) => LayoutState::Complete,
            (false, false) => LayoutState::Incomplete,
        },
        resources,
        namespaces,
        cluster_scoped,
        skipped,
    }
}

/// Which objects `show --namespace/--resource/--name` prints.
#[derive(Debug, Clone, Default)]
pub struct ObjectFilter {
    pub namespace: Option<String>,
    pub resource: Option<String>,
    pub name: Option<String>,
}

impl ObjectFilter {
    pub fn is_empty(&self) -> bool {
        self.namespace.is_none() && self.resource.is_none() && self.name.is_none()
    }
}

/// What `show` prints with a filter: the objects of the snapshot it selects.
#[derive(Debug, Clone, Serialize)]
pub struct Objects {
    #[serde(flatten)]
    pub snapshot: SnapshotStamp,
    pub cluster: String,
    pub items: Vec<ObjectLine>,
}

/// One object as `show` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectLine {
    pub resource: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    pub id: ObjectId,
    /// Bytes of the object as stored (its sanitized JSON).
    pub size: u32,
    /// The object itself, once [`read_objects`] has read it; a Secret's values hidden.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<Value>,
    /// Read, but encrypted, and no identity given opens it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
}

pub fn objects(manifest: &Manifest, filter: &ObjectFilter) -> Objects {
    let items = manifest
        .objects
        .iter()
        .filter(|o| wanted(manifest, o, filter))
        .map(|o| {
            let rt = manifest.resource_of(o);
            ObjectLine {
                resource: rt.qualified_name(),
                kind: rt.kind.clone(),
                namespace: o.namespace.clone(),
                name: o.name.clone(),
                id: o.id,
                size: o.size,
                object: None,
                encrypted: false,
            }
        })
        .collect();
    Objects {
        snapshot: manifest.time.into(),
        cluster: manifest.cluster.clone(),
        items,
    }
}

/// Reads each object of `objects` from the store into its line, sealed ones opened with
/// `keyring`, and hides the values of Secrets before they are kept.
pub async fn read_objects(
    store: &Store,
    keyring: &Keyring,
    objects: &mut Objects,
) -> Result<(), InspectError> {
    let ids: BTreeSet<ObjectId> = objects.items.iter().map(|line| line.id).collect();
    let stored: BTreeMap<ObjectId, Bytes> = store
        .get_many(ids.into_iter().collect())
        .try_collect()
        .await?;
    let redactor = Redactor::new();
    for line in &mut objects.items {
        let name = ObjectName::new(line.namespace.as_deref(), &line.name);
        let what = format!("{} {name}", line.resource);
        let blob = stored
            .get(&line.id)
            .cloned()
            .ok_or(StoreError::MissingObject(line.id))?;
        let bad = |reason: String| InspectError::BadObject {
            id: line.id,
            what: what.clone(),
            reason,
        };
        let Some(content) = open_object(store, keyring, &what, line.id, blob).await? else {
            line.encrypted = true;
            continue;
        };
        let mut value: Value = serde_json::from_slice(&content).map_err(|e| bad(e.to_string()))?;
        redactor.redact(&line.kind, &line.resource, &mut value);
        line.object = Some(value);
    }
    Ok(())
}

fn wanted(manifest: &Manifest, object: &ManifestObject, filter: &ObjectFilter) -> bool {
    let namespace_ok = filter
        .namespace
        .as_deref()
        .is_none_or(|ns| object.namespace.as_deref() == Some(ns));
    let resource_ok = filter
        .resource
        .as_deref()
        .is_none_or(|r| manifest.resource_of(object).is_named_by(r));
    let name_ok = filter.name.as_deref().is_none_or(|n| object.name == n);
    namespace_ok && resource_ok && name_ok
}
