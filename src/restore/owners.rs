//! Owner references across a restore. A backup's `metadata.ownerReferences` carry the old
//! cluster's uids; left as they are, the garbage collector of the new cluster finds none of
//! those owners and deletes the dependents. So: owners are created before their dependents,
//! each reference gets the uid its owner has in the new cluster (created now, or found there
//! already), and a reference to an owner that is neither restored nor in the new cluster is
//! dropped and reported.
//!
//! This module plans and rewires references; it never writes to the cluster itself (the
//! lookups of owners outside the backup are GETs).

use crate::object_name::ObjectName;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::order::Step;
use super::source::Item;
use crate::kube::{Api, ResourceType};

/// An object as an owner reference names it: its group, kind, namespace (`None` when
/// cluster-scoped) and name. The version is left out: a reference may name another version
/// of the same kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ObjectRef {
    pub group: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn of(item: &Item) -> ObjectRef {
        ObjectRef {
            group: item.group.clone(),
            kind: item.kind.clone(),
            namespace: item.namespace.clone(),
            name: item.name.clone(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        };
        let name = ObjectName::new(self.namespace.as_deref(), &self.name);
        write!(f, "{kind} {name}")
    }
}

/// Where the owner of one reference is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// Restored by the same plan, created before the dependent.
    Restored(ObjectRef),
    /// Restored by the same plan, but created after the dependent (an ownership cycle, or a
    /// namespace or definition owned by something of a later step): the dependent is created
    /// without this reference, and it is added once every object is created.
    Deferred { owner: ObjectRef, why: &'static str },
    /// Not restored: looked up in the target cluster by kind and name, in the dependent's
    /// namespace when the kind is namespaced there.
    Outside {
        group: String,
        kind: String,
        namespace: Option<String>,
        name: String,
    },
    /// Dropped while planning (the reason says why).
    Dropped(&'static str),
}

/// One entry of an object's `metadata.ownerReferences`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerLink {
    /// Its position in `metadata.ownerReferences`.
    pub index: usize,
    pub owner: Owner,
}

/// A reference the restore leaves out of an object, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct DroppedOwner {
    /// `Kind namespace/name` of the dependent.
    pub object: String,
    /// The owner as the reference names it.
    pub owner: String,
    pub reason: String,
}

/// A reference added after the dependent was created.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct DeferredOwner {
    pub object: String,
    pub owner: String,
    pub why: &'static str,
}

/// The group of an `apiVersion` (`apps/v1` -> `apps`, `v1` -> ``).
fn group_of(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(g, _)| g)
}

/// The object's owner references, each first taken as an owner outside the backup; the plan
/// resolves those it restores itself ([`resolve`]).
pub fn links_of(item: &Item, object: &Value) -> Vec<OwnerLink> {
    let Some(refs) = object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    refs.iter()
        .enumerate()
        .map(|(index, r)| {
            let text = |field: &str| {
                r.get(field)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            };
            let owner = match (text("apiVersion"), text("kind"), text("name")) {
                (Some(api_version), Some(kind), Some(name)) => Owner::Outside {
                    group: group_of(api_version).to_string(),
                    kind: kind.to_string(),
                    namespace: item.namespace.clone(),
                    name: name.to_string(),
                },
                _ => Owner::Dropped("the reference has no apiVersion, kind or name"),
            };
            OwnerLink { index, owner }
        })
        .collect()
}

/// Whether an object has an owner reference with `controller: true`: a controller (a
/// ReplicaSet's Deployment, a Job's CronJob) recreates such objects from its own spec.
pub fn is_controller_owned(object: &Value) -> bool {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        })
}

/// What the ordering needs of each planned object.
pub struct Node<'a> {
    pub key: ObjectRef,
    pub step: Step,
    pub links: &'a mut Vec<OwnerLink>,
}

/// Objects that keep their step whatever owns them: the namespace must exist before anything
/// in it, and a definition must be established before its custom resources.
fn pinned(key: &ObjectRef) -> bool {
    matches!(
        (key.group.as_str(), key.kind.as_str()),
        ("", "Namespace") | ("apiextensions.k8s.io", "CustomResourceDefinition")
    )
}

/// Resolves the references to objects the plan restores, breaks ownership cycles, and gives
/// each object the step and wave it is created in: an owner's dependents come in its step or
/// a later one, and within a step in a later wave. Returns (step, wave) per node.
pub fn resolve(nodes: &mut [Node<'_>]) -> Vec<(Step, usize)> {
    let index: HashMap<ObjectRef, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.key.clone(), i))
        .collect();
    let keys: Vec<ObjectRef> = nodes.iter().map(|n| n.key.clone()).collect();
    // dependent -> its restored owners.
    let mut owners_of: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, node) in nodes.iter_mut().enumerate() {
        for link in node.links.iter_mut() {
            let Owner::Outside {
                group,
                kind,
                namespace,
                name,
            } = &link.owner
            else {
                continue;
            };
            let candidate = |namespace: Option<String>| ObjectRef {
                group: group.clone(),
                kind: kind.clone(),
                namespace,
                name: name.clone(),
            };
            // A namespaced dependent's owner is in its namespace or cluster-scoped.
            let found = index
                .get(&candidate(namespace.clone()))
                .or_else(|| index.get(&candidate(None)))
                .copied();
            match found {
                Some(owner) if owner == i => {
                    link.owner = Owner::Dropped("the reference names the object itself");
                }
                Some(owner) => {
                    link.owner = Owner::Restored(keys[owner].clone());
                    owners_of[i].push(owner);
                }
                None => {}
            }
        }
    }
    // Break cycles: within each strongly connected set of owners, keep the references that
    // go forward in (step, name) order and defer the others.
    let components = strongly_connected(&owners_of);
    let mut deferred: BTreeSet<(usize, usize)> = BTreeSet::new();
    for component in components.iter().filter(|c| c.len() > 1) {
        let mut ordered = component.clone();
        ordered.sort_by(|a, b| {
            (nodes[*a].step, &nodes[*a].key).cmp(&(nodes[*b].step, &nodes[*b].key))
        });
        let position: HashMap<usize, usize> =
            ordered.iter().enumerate().map(|(p, i)| (*i, p)).collect();
        for &dependent in component {
            for &owner in &owners_of[dependent] {
                if let (Some(o), Some(d)) = (position.get(&owner), position.get(&dependent))
                    && o > d
                {
                    deferred.insert((dependent, owner));
                }
            }
        }
    }
    for (dependent, owners) in owners_of.iter().enumerate() {
        if pinned(&nodes[dependent].key) {
            for &owner in owners {
                if nodes[owner].step > nodes[dependent].step {
                    deferred.insert((dependent, owner));
                }
            }
        }
    }
    for &(dependent, owner) in &deferred {
        let cycle = components
            .iter()
            .any(|c| c.len() > 1 && c.contains(&dependent) && c.contains(&owner));
        let why = if cycle {
            "the objects own each other (a cycle)"
        } else {
            "the owner is created in a later step"
        };
        let owner_key = nodes[owner].key.clone();
        for link in nodes[dependent].links.iter_mut() {
            if link.owner == Owner::Restored(owner_key.clone()) {
                link.owner = Owner::Deferred {
                    owner: owner_key.clone(),
                    why,
                };
            }
        }
        owners_of[dependent].retain(|o| *o != owner);
    }
    // The rest is acyclic: place each object after its owners, owners first (Kahn's order).
    let mut dependents_of: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut waiting: Vec<usize> = vec![0; nodes.len()];
    for (dependent, owners) in owners_of.iter().enumerate() {
        waiting[dependent] = owners.len();
        for &owner in owners {
            dependents_of[owner].push(dependent);
        }
    }
    let mut placed: Vec<(Step, usize)> = nodes.iter().map(|n| (n.step, 0)).collect();
    let mut ready: Vec<usize> = (0..nodes.len()).filter(|&i| waiting[i] == 0).collect();
    while let Some(owner) = ready.pop() {
        let (step, wave) = placed[owner];
        for &dependent in &dependents_of[owner] {
            let current = &mut placed[dependent];
            if step > current.0 {
                *current = (step, wave + 1);
            } else if step == current.0 {
                current.1 = current.1.max(wave + 1);
            }
            waiting[dependent] -= 1;
            if waiting[dependent] == 0 {
                ready.push(dependent);
            }
        }
    }
    placed
}

/// Tarjan's strongly connected components of the graph `edges[node] = [successors]`,
/// iterative (an owner chain can be long).
fn strongly_connected(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut components = Vec::new();
    let mut next = 0;
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        // (node, next edge to follow)
        let mut work = vec![(root, 0usize)];
        while let Some(&mut (v, ref mut edge)) = work.last_mut() {
            if *edge == 0 && index[v] == usize::MAX {
                index[v] = next;
                low[v] = next;
                next += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            if let Some(&w) = edges[v].get(*edge) {
                *edge += 1;
                if index[w] == usize::MAX {
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                components.push(component);
            }
        }
    }
    components
}

/// An owner outside the backup as a reference names it: (group, kind, the dependent's
/// namespace, name).
type OutsideKey = (String, String, Option<String>, String);

/// The owners outside the backup, as found in the target cluster.
#[derive(Debug, Clone, Default)]
pub struct OutsideOwners {
    /// (group, kind, dependent's namespace, name) -> the owner's uid in the target.
    found: HashMap<OutsideKey, String>,
    /// The references dropped because their owner is not there (or cannot be looked up).
    pub dropped: Vec<DroppedOwner>,
}

impl OutsideOwners {
    fn uid(&self, group: &str, kind: &str, namespace: &Option<String>, name: &str) -> Option<&str> {
        self.found
            .get(&(
                group.to_string(),
                kind.to_string(),
                namespace.clone(),
                name.to_string(),
            ))
            .map(String::as_str)
    }
}

/// Looks up, in the target cluster, each owner that the plan does not restore; `types`
/// says where each (group, kind) lives there.
pub async fn look_up_outside<'a>(
    api: &Api,
    planned: impl Iterator<Item = (&'a Item, &'a [OwnerLink])>,
    types: &HashMap<(String, String), ResourceType>,
) -> OutsideOwners {
    let mut out = OutsideOwners::default();
    let mut asked: BTreeMap<OutsideKey, Result<String, String>> = BTreeMap::new();
    for (item, links) in planned {
        for link in links {
            let (group, kind, namespace, name) = match &link.owner {
                Owner::Outside {
                    group,
                    kind,
                    namespace,
                    name,
                } => (group, kind, namespace, name),
                Owner::Dropped(reason) => {
                    out.dropped.push(DroppedOwner {
                        object: item.describe(),
                        owner: format!("reference {}", link.index),
                        reason: reason.to_string(),
                    });
                    continue;
                }
                _ => continue,
            };
            let key = (group.clone(), kind.clone(), namespace.clone(), name.clone());
            let answer = match asked.get(&key) {
                Some(answer) => answer.clone(),
                None => {
                    let answer = look_up(api, types, &key).await;
                    asked.insert(key.clone(), answer.clone());
                    answer
                }
            };
            let owner = owner_text(group, kind, namespace, name, types);
            match answer {
                Ok(uid) => {
                    out.found.insert(key, uid);
                }
                Err(reason) => out.dropped.push(DroppedOwner {
                    object: item.describe(),
                    owner,
                    reason,
                }),
            }
        }
    }
    out.dropped.sort();
    out
}

/// The owner as a message names it, in its namespace only when its kind is namespaced.
fn owner_text(
    group: &str,
    kind: &str,
    namespace: &Option<String>,
    name: &str,
    types: &HashMap<(String, String), ResourceType>,
) -> String {
    let namespaced = types
        .get(&(group.to_string(), kind.to_string()))
        .is_none_or(|rt| rt.namespaced);
    ObjectRef {
        group: group.to_string(),
        kind: kind.to_string(),
        namespace: namespace.clone().filter(|_| namespaced),
        name: name.to_string(),
    }
    .to_string()
}

async fn look_up(
    api: &Api,
    types: &HashMap<(String, String), ResourceType>,
    (group, kind, namespace, name): &OutsideKey,
) -> Result<String, String> {
    let Some(rt) = types.get(&(group.clone(), kind.clone())) else {
        return Err("not in the backup, and the target cluster serves no such kind".to_string());
    };
    let namespace = if rt.namespaced {
        match namespace {
            Some(ns) => Some(ns.as_str()),
            None => {
                return Err(
                    "a cluster-scoped object cannot be owned by a namespaced one".to_string(),
                );
            }
        }
    } else {
        None
    };
    match api.get_opt(&rt.object_path(namespace, name)).await {
        Ok(Some(body)) => {
            uid_of(&body).ok_or_else(|| "the target cluster's copy has no metadata.uid".to_string())
        }
        Ok(None) => Err("not in the backup and not in the target cluster".to_string()),
        Err(e) => Err(format!(
            "not in the backup, and cannot be looked up in the target cluster: {e}"
        )),
    }
}

/// `metadata.uid` of an API server's answer.
pub fn uid_of(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(body)
        .ok()?
        .pointer("/metadata/uid")?
        .as_str()
        .map(str::to_string)
}

/// What [`rewire`] is to do with deferred references.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deferred {
    /// Leave them out (the create, before the owner exists).
    Leave,
    /// Put them in (the update once every object is created).
    Include,
}

/// Gives each owner reference of `object` its owner's uid in the target cluster, from
/// `uids` (restored owners) and `outside`; removes the references whose owner has no uid
/// there and returns them, with the reason.
pub fn rewire(
    item: &Item,
    object: &mut Value,
    links: &[OwnerLink],
    uids: &HashMap<ObjectRef, String>,
    outside: &OutsideOwners,
    deferred: Deferred,
) -> Vec<DroppedOwner> {
    let mut dropped = Vec::new();
    let Some(Value::Array(refs)) = object.pointer_mut("/metadata/ownerReferences") else {
        return dropped;
    };
    let mut keep = vec![false; refs.len()];
    for link in links {
        let Some(reference) = refs.get_mut(link.index) else {
            continue;
        };
        // The new uid of an owner restored in this run; a reference to one that could not
        // be restored is dropped, and said.
        let mut restored_uid = |owner: &ObjectRef| {
            let uid = uids.get(owner).cloned();
            if uid.is_none() {
                dropped.push(DroppedOwner {
                    object: item.describe(),
                    owner: owner.to_string(),
                    reason: "the owner could not be restored".to_string(),
                });
            }
            uid
        };
        let uid = match &link.owner {
            Owner::Restored(owner) => restored_uid(owner),
            Owner::Deferred { owner, .. } => match deferred {
                Deferred::Leave => None,
                Deferred::Include => restored_uid(owner),
            },
            Owner::Outside {
                group,
                kind,
                namespace,
                name,
            } => outside
                .uid(group, kind, namespace, name)
                .map(str::to_string),
            Owner::Dropped(_) => None,
        };
        if let Some(uid) = uid
            && let Some(map) = reference.as_object_mut()
        {
            map.insert("uid".into(), Value::String(uid));
            keep[link.index] = true;
        }
    }
    let mut position = 0;
    refs.retain(|_| {
        let kept = keep[position];
        position += 1;
        kept
    });
    if refs.is_empty()
        && let Some(Value::Object(meta)) = object.get_mut("metadata")
    {
        meta.remove("ownerReferences");
    }
    dropped
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use serde_json::json;

    use super::*;

    fn item(group: &str, kind: &str, namespace: Option<&str>, name: &str, object: Value) -> Item {
        Item {
            group: group.to_string(),
            version: "v1".to_string(),
            kind: kind.to_string(),
            resource: None,
            namespaced: Some(namespace.is_some()),
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
            object: Bytes::from(object.to_string()),
            origin: "test".to_string(),
        }
    }

    fn owned_by(refs: &[(&str, &str, &str)]) -> Value {
        let refs: Vec<Value> = refs
            .iter()
            .map(|(api, kind, name)| {
                json!({"apiVersion": api, "kind": kind, "name": name, "uid": format!("old-{name}")})
            })
            .collect();
        json!({"metadata": {"name": "x", "ownerReferences": refs}})
    }

    /// ConfigMap `n/name`, owned by ConfigMap `n/owner`.
    fn config_map_owned_by(name: &str, owner: &str) -> Item {
        let owners = owned_by(&[("v1", "ConfigMap", owner)]);
        item("", "ConfigMap", Some("n"), name, owners)
    }

    /// Plans the objects as a restore does; returns (key, step, wave, links) per object.
    fn plan(objects: Vec<(Item, Step)>) -> Vec<(String, Step, usize, Vec<OwnerLink>)> {
        let mut links: Vec<Vec<OwnerLink>> = objects
            .iter()
            .map(|(item, _)| links_of(item, &item.value().unwrap()))
            .collect();
        let mut nodes: Vec<Node<'_>> = objects
            .iter()
            .zip(links.iter_mut())
            .map(|((item, step), links)| Node {
                key: ObjectRef::of(item),
                step: *step,
                links,
            })
            .collect();
        let placed = resolve(&mut nodes);
        objects
            .iter()
            .zip(placed)
            .zip(links)
            .map(|(((item, _), (step, wave)), links)| (item.describe(), step, wave, links))
            .collect()
    }

    #[test]
    fn owners_come_before_their_dependents_even_from_a_later_step() {
        let widget = item("example.com", "Widget", Some("a"), "w", json!({}));
        let parent = item("", "ConfigMap", Some("a"), "parent", json!({}));
        let child = item(
            "",
            "ConfigMap",
            Some("a"),
            "child",
            owned_by(&[
                ("example.com/v1", "Widget", "w"),
                ("v1", "ConfigMap", "parent"),
            ]),
        );
        let grandchild = item(
            "",
            "Secret",
            Some("a"),
            "s",
            owned_by(&[
                ("v1", "ConfigMap", "child"),
                ("apps/v1", "Deployment", "gone"),
            ]),
        );
        let planned = plan(vec![
            (grandchild, Step::Secrets),
            (child, Step::ConfigMaps),
            (parent, Step::ConfigMaps),
            (widget, Step::CustomResources),
        ]);
        let by_name: HashMap<&str, &(String, Step, usize, Vec<OwnerLink>)> =
            planned.iter().map(|p| (p.0.as_str(), p)).collect();
        assert_eq!(by_name["Widget a/w"].1, Step::CustomResources);
        assert_eq!(by_name["Widget a/w"].2, 0);
        // The child moves to its widget's step, after it; its own child after it.
        assert_eq!(by_name["ConfigMap a/child"].1, Step::CustomResources);
        assert_eq!(by_name["ConfigMap a/child"].2, 1);
        assert_eq!(by_name["Secret a/s"].1, Step::CustomResources);
        assert_eq!(by_name["Secret a/s"].2, 2);
        assert_eq!(by_name["ConfigMap a/parent"].1, Step::ConfigMaps);
        let secret_links = &by_name["Secret a/s"].3;
        assert_eq!(
            secret_links[0].owner,
            Owner::Restored(ObjectRef {
                group: String::new(),
                kind: "ConfigMap".into(),
                namespace: Some("a".into()),
                name: "child".into()
            })
        );
        assert!(
            matches!(&secret_links[1].owner, Owner::Outside { kind, .. } if kind == "Deployment")
        );
    }

    #[test]
    fn a_cycle_is_broken_by_deferring_one_reference() {
        let a = config_map_owned_by("a", "b");
        let b = config_map_owned_by("b", "a");
        let me = config_map_owned_by("me", "me");
        let planned = plan(vec![
            (b, Step::ConfigMaps),
            (a, Step::ConfigMaps),
            (me, Step::ConfigMaps),
        ]);
        // "a" comes first and waits for its reference to "b"; "b" is created after "a".
        let (_, _, wave_b, links_b) = &planned[0];
        let (_, _, wave_a, links_a) = &planned[1];
        assert!(
            matches!(&links_a[0].owner, Owner::Deferred { owner, why } if owner.name == "b" && why.contains("cycle"))
        );
        assert!(matches!(&links_b[0].owner, Owner::Restored(owner) if owner.name == "a"));
        assert!(wave_a < wave_b);
        assert!(matches!(planned[2].3[0].owner, Owner::Dropped(_)));
    }

    #[test]
    fn a_namespace_keeps_its_step_and_waits_for_a_later_owner() {
        let ns = item(
            "",
            "Namespace",
            None,
            "team",
            owned_by(&[("example.com/v1", "Tenant", "t")]),
        );
        let tenant = item("example.com", "Tenant", None, "t", json!({}));
        let planned = plan(vec![
            (ns, Step::Namespaces),
            (tenant, Step::CustomResources),
        ]);
        assert_eq!(planned[0].1, Step::Namespaces);
        assert!(
            matches!(&planned[0].3[0].owner, Owner::Deferred { why, .. } if why.contains("later step"))
        );
    }

    #[test]
    fn long_owner_chains_are_placed_without_deep_recursion_in_the_cycle_search() {
        let objects: Vec<(Item, Step)> = (0..2_000)
            .map(|i| {
                let object = if i == 0 {
                    item("", "ConfigMap", Some("n"), "c0", json!({}))
                } else {
                    config_map_owned_by(&format!("c{i}"), &format!("c{}", i - 1))
                };
                (object, Step::ConfigMaps)
            })
            .collect();
        let planned = plan(objects);
        assert_eq!(planned[1_999].2, 1_999);
    }

    #[test]
    fn rewiring_sets_new_uids_and_drops_what_has_none() {
        let dependent = item(
            "",
            "Secret",
            Some("a"),
            "s",
            owned_by(&[
                ("apps/v1", "Deployment", "web"),
                ("v1", "ConfigMap", "gone"),
                ("v1", "ConfigMap", "failed"),
            ]),
        );
        let mut object = dependent.value().unwrap();
        let cm = |name: &str| ObjectRef {
            group: String::new(),
            kind: "ConfigMap".into(),
            namespace: Some("a".into()),
            name: name.into(),
        };
        let links = vec![
            OwnerLink {
                index: 0,
                owner: Owner::Restored(ObjectRef {
                    group: "apps".into(),
                    kind: "Deployment".into(),
                    namespace: Some("a".into()),
                    name: "web".into(),
                }),
            },
            OwnerLink {
                index: 1,
                owner: Owner::Outside {
                    group: String::new(),
                    kind: "ConfigMap".into(),
                    namespace: Some("a".into()),
                    name: "gone".into(),
                },
            },
            OwnerLink {
                index: 2,
                owner: Owner::Restored(cm("failed")),
            },
        ];
        let uids = HashMap::from([(
            ObjectRef {
                group: "apps".into(),
                kind: "Deployment".into(),
                namespace: Some("a".into()),
                name: "web".into(),
            },
            "new-web".to_string(),
        )]);
        let dropped = rewire(
            &dependent,
            &mut object,
            &links,
            &uids,
            &OutsideOwners::default(),
            Deferred::Leave,
        );
        assert_eq!(
            object["metadata"]["ownerReferences"],
            json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "new-web"}])
        );
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].owner, "ConfigMap a/failed");
        // No owner left: no ownerReferences at all.
        let mut object = dependent.value().unwrap();
        rewire(
            &dependent,
            &mut object,
            &links,
            &HashMap::new(),
            &OutsideOwners::default(),
            Deferred::Leave,
        );
        assert!(object["metadata"].get("ownerReferences").is_none());
    }

    #[test]
    fn controller_owned_objects_are_told_apart() {
        let pod =
            json!({"metadata": {"ownerReferences": [{"kind": "ReplicaSet", "controller": true}]}});
        let cm =
            json!({"metadata": {"ownerReferences": [{"kind": "Widget", "controller": false}]}});
        assert!(is_controller_owned(&pod));
        assert!(!is_controller_owned(&cm));
        assert!(!is_controller_owned(&json!({"metadata": {}})));
    }
}
