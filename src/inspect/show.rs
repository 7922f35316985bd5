//! `show`: one snapshot's resources and namespaces with their counts, or its objects.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::repo::{Manifest, ManifestObject};
use crate::store::ObjectId;

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
    pub resources: Vec<ResourceCount>,
    /// Namespace -> objects in it.
    pub namespaces: BTreeMap<String, u64>,
    pub cluster_scoped: u64,
    pub skipped: Vec<String>,
}

pub fn overview(manifest: &Manifest) -> Overview {
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
        resources,
        namespaces,
        cluster_scoped,
        skipped,
    }
}

/// Which objects `show --namespace/--resource` prints.
#[derive(Debug, Clone, Default)]
pub struct ObjectFilter {
    pub namespace: Option<String>,
    pub resource: Option<String>,
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
    pub size: u32,
}

pub fn objects(manifest: &Manifest, filter: &ObjectFilter) -> Vec<ObjectLine> {
    manifest
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
            }
        })
        .collect()
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
    namespace_ok && resource_ok
}
