//! `history`: one object through every snapshot and checkpoint at the destination — each
//! version it had (a new id), when it was first seen, who changed it (the field manager the
//! point's changes name, when they name one), what changed from the version before (as
//! `diff` shows it), and when it was gone.
//!
//! Secret values are hidden exactly as `show` and `diff` hide them ([`super::redact`]). Only
//! the object's own listing is read from each point (see `repo::manifest::ObjectLookup`), so
//! a long history costs its roots, not every manifest whole.

use std::collections::{BTreeMap, BTreeSet};

use futures::TryStreamExt;
use serde::Serialize;
use serde_json::Value;

use super::diff::{Op, json_diff};
use super::redact::Redactor;
use super::{InspectError, PointStamp, open_object};
use crate::kube::ResourceType;
use crate::object_name::ObjectName;
use crate::repo::manifest::ObjectLookup;
use crate::repo::{Manifest, Point};
use crate::seal::Keyring;
use crate::store::{ObjectId, Store, StoreError};

/// The object asked about, as the command line names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// As `kubectl get` takes it: `deployment`, `deployments`, `deploy`, `deployments.apps`.
    pub resource: String,
    /// `None` for a cluster-scoped object.
    pub namespace: Option<String>,
    pub name: String,
}

impl Wanted {
    /// `<namespace>/<name>`, or `<name>` for a cluster-scoped object.
    pub fn new(resource: &str, object: &str) -> Self {
        let (namespace, name) = match object.split_once('/') {
            Some((namespace, name)) => (Some(namespace.to_string()), name.to_string()),
            None => (None, object.to_string()),
        };
        Self {
            resource: resource.to_string(),
            namespace,
            name,
        }
    }

    /// Whether `rt` is the resource asked for.
    pub fn names(&self, rt: &ResourceType) -> bool {
        let pattern = self.resource.as_str();
        let lower = pattern.to_ascii_lowercase();
        rt.is_named_by(pattern)
            || rt.is_named_by(&lower)
            || short_name(&lower).is_some_and(|qualified| rt.qualified_name() == qualified)
    }
}

impl std::fmt::Display for Wanted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = ObjectName::new(self.namespace.as_deref(), &self.name);
        write!(f, "{} {name}", self.resource)
    }
}

/// The short names the API server serves for its built-in resources, as `kubectl get`
/// takes them. A manifest records no discovery short names, so these are the ones known.
fn short_name(name: &str) -> Option<&'static str> {
    Some(match name {
        "cm" => "configmaps",
        "cs" => "componentstatuses",
        "ep" => "endpoints",
        "ev" => "events",
        "limits" => "limitranges",
        "ns" => "namespaces",
        "no" => "nodes",
        "pvc" => "persistentvolumeclaims",
        "pv" => "persistentvolumes",
        "po" => "pods",
        "rc" => "replicationcontrollers",
        "quota" => "resourcequotas",
        "sa" => "serviceaccounts",
        "svc" => "services",
        "crd" | "crds" => "customresourcedefinitions.apiextensions.k8s.io",
        "ds" => "daemonsets.apps",
        "deploy" => "deployments.apps",
        "rs" => "replicasets.apps",
        "sts" => "statefulsets.apps",
        "hpa" => "horizontalpodautoscalers.autoscaling",
        "cj" => "cronjobs.batch",
        "csr" => "certificatesigningrequests.certificates.k8s.io",
        "ing" => "ingresses.networking.k8s.io",
        "netpol" => "networkpolicies.networking.k8s.io",
        "pdb" => "poddisruptionbudgets.policy",
        "pc" => "priorityclasses.scheduling.k8s.io",
        "sc" => "storageclasses.storage.k8s.io",
        _ => return None,
    })
}

/// One version of the object: what it was from the point where it was first seen.
#[derive(Debug, Clone, Serialize)]
pub struct Version {
    /// The point where this version was first seen.
    #[serde(flatten)]
    pub seen: PointStamp,
    pub id: ObjectId,
    /// The field manager that made this version, as that point's changes name it; `None`
    /// when they do not (the first snapshot of a cache names no changes).
    pub manager: Option<String>,
    /// What changed from the version before (empty for the first, and for one that came
    /// back as it was after a deletion).
    pub ops: Vec<Op>,
    /// The object had been deleted, and was created again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub recreated: bool,
    /// Encrypted, and no identity given opens it: what changed is not known.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
    /// The first point after this version where the object was gone, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<PointStamp>,
}

/// What `history` prints.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectHistory {
    /// `deployments.apps`, `configmaps`.
    pub resource: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    /// How many snapshots and checkpoints were looked at.
    pub points: usize,
    /// Oldest first.
    pub versions: Vec<Version>,
    /// Points whose manifest could not be read (`verify` says more): the object is unknown
    /// there, and the history goes on without them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<Unreadable>,
}

/// A point `history` could not read.
#[derive(Debug, Clone, Serialize)]
pub struct Unreadable {
    #[serde(flatten)]
    pub point: PointStamp,
    pub error: String,
}

/// What one point says of the object.
enum Presence {
    /// The point did not read its resource: the object is unknown there, not gone.
    Unknown,
    /// The point holds it, with the manager its changes name (`None`: unknown).
    Held {
        id: ObjectId,
        manager: Option<String>,
    },
    Gone,
}

/// Follows `wanted` through every snapshot and checkpoint of `store`, oldest first, and
/// reads each of its versions (sealed ones opened with `keyring`) to say what changed.
pub async fn history(
    store: &Store,
    wanted: &Wanted,
    keyring: &Keyring,
) -> Result<ObjectHistory, InspectError> {
    let points = Manifest::list_points(store).await?;
    if points.is_empty() {
        return Err(InspectError::NoSnapshots(store.backend().describe()));
    }
    let mut lookup = ObjectLookup::new();
    let names = |rt: &ResourceType| wanted.names(rt);
    let mut seen: Vec<(Point, Presence)> = Vec::new();
    let mut resources: BTreeMap<String, ResourceType> = BTreeMap::new();
    let mut read_anywhere = false;
    let mut namespaced = false;
    let mut unreadable = Vec::new();
    for point in &points {
        let found = lookup
            .find(
                store,
                point,
                &names,
                wanted.namespace.as_deref(),
                &wanted.name,
            )
            .await;
        let found = match found {
            Ok(found) => found,
            Err(e) if e.is_outage() => return Err(e.into()),
            Err(e) => {
                unreadable.push(Unreadable {
                    point: (*point).into(),
                    error: e.to_string(),
                });
                continue;
            }
        };
        let read = found.resources.iter().any(|rt| wanted.names(rt));
        read_anywhere |= read;
        namespaced |= found
            .resources
            .iter()
            .any(|rt| rt.namespaced && wanted.names(rt));
        let here = found.found.first().map(|f| {
            let manager = f.change.as_ref().map(|c| c.manager.clone());
            (f.id, manager)
        });
        for f in &found.found {
            resources.insert(f.resource.qualified_name(), f.resource.clone());
        }
        let presence = match here {
            _ if !read => Presence::Unknown,
            Some((id, manager)) => Presence::Held {
                id,
                manager: manager.flatten(),
            },
            None => Presence::Gone,
        };
        seen.push((*point, presence));
    }
    if resources.len() > 1 {
        return Err(InspectError::AmbiguousResource {
            name: wanted.resource.clone(),
            candidates: resources.into_keys().collect(),
        });
    }
    let Some((_, resource)) = resources.pop_first() else {
        let what = if !read_anywhere {
            format!("{wanted} (no point read a resource of that name)")
        } else if namespaced && wanted.namespace.is_none() {
            format!("{wanted} (its resource is namespaced: write <namespace>/<name>)")
        } else {
            wanted.to_string()
        };
        return Err(InspectError::UnknownObject {
            what,
            at: store.backend().describe(),
        });
    };

    let mut versions: Vec<Version> = Vec::new();
    let mut present = false;
    for (point, presence) in seen {
        match presence {
            Presence::Unknown => {}
            Presence::Held { id, manager } => {
                let last = versions.last();
                let recreated = !present && last.is_some();
                if last.is_none_or(|v| v.id != id) || recreated {
                    versions.push(Version {
                        seen: point.into(),
                        id,
                        manager,
                        ops: Vec::new(),
                        recreated,
                        encrypted: false,
                        deleted_at: None,
                    });
                }
                present = true;
            }
            Presence::Gone if present => {
                if let Some(version) = versions.last_mut() {
                    version.deleted_at = Some(point.into());
                }
                present = false;
            }
            Presence::Gone => {}
        }
    }
    describe_changes(store, keyring, &resource, &mut versions).await?;
    Ok(ObjectHistory {
        resource: resource.qualified_name(),
        kind: resource.kind.clone(),
        namespace: wanted.namespace.clone().filter(|_| resource.namespaced),
        name: wanted.name.clone(),
        points: points.len(),
        versions,
        unreadable,
    })
}

/// Reads every version (each id once), hides Secret values and fills in each version's
/// operations from the one before.
async fn describe_changes(
    store: &Store,
    keyring: &Keyring,
    resource: &ResourceType,
    versions: &mut [Version],
) -> Result<(), InspectError> {
    let ids: BTreeSet<ObjectId> = versions.iter().map(|v| v.id).collect();
    let stored: BTreeMap<ObjectId, bytes::Bytes> = store
        .get_many(ids.into_iter().collect())
        .try_collect()
        .await?;
    let redactor = Redactor::new();
    let mut objects: BTreeMap<ObjectId, Option<Value>> = BTreeMap::new();
    for (id, blob) in stored {
        let what = format!("{} object {id:#}", resource.qualified_name());
        let value = match open_object(store, keyring, &what, id, blob).await? {
            Some(bytes) => {
                let mut value: Value =
                    serde_json::from_slice(&bytes).map_err(|e| InspectError::BadObject {
                        id,
                        what: what.clone(),
                        reason: e.to_string(),
                    })?;
                redactor.redact(&resource.kind, &resource.resource, &mut value);
                Some(value)
            }
            None => None,
        };
        objects.insert(id, value);
    }
    let mut before: Option<&Option<Value>> = None;
    for version in versions.iter_mut() {
        let now = objects
            .get(&version.id)
            .ok_or(StoreError::MissingObject(version.id))?;
        match (before, now) {
            (_, None) | (Some(None), _) => version.encrypted = true,
            (Some(Some(old)), Some(new)) => {
                json_diff(old, new, &mut String::new(), &mut version.ops);
            }
            (None, Some(_)) => {}
        }
        before = Some(now);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(group: &str, resource: &str, kind: &str) -> ResourceType {
        ResourceType {
            group: group.to_string(),
            version: "v1".to_string(),
            kind: kind.to_string(),
            resource: resource.to_string(),
            namespaced: true,
        }
    }

    #[test]
    fn a_resource_is_named_by_kind_plural_or_short_name() {
        let deployments = rt("apps", "deployments", "Deployment");
        for name in [
            "deployment",
            "Deployment",
            "deployments",
            "deploy",
            "deployments.apps",
        ] {
            assert!(Wanted::new(name, "web/api").names(&deployments), "{name}");
        }
        assert!(!Wanted::new("deploy", "web/api").names(&rt("apps", "replicasets", "ReplicaSet")));
        assert!(Wanted::new("cm", "a").names(&rt("", "configmaps", "ConfigMap")));
        let wanted = Wanted::new("namespace", "web");
        assert_eq!((wanted.namespace, wanted.name.as_str()), (None, "web"));
    }
}
