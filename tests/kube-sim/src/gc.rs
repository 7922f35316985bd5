//! The garbage collector of kube-controller-manager (`pkg/controller/garbagecollector`,
//! `attemptToDeleteItem`, `classifyReferences`, `isDangling`): an owner reference dangles
//! when no object of its apiVersion and kind has its name (in the dependent's namespace for
//! a namespaced owner, at the cluster scope otherwise), or the one that does has another
//! uid. A dependent whose references all dangle is deleted; one with at least one existing
//! owner loses only its dangling references. Deleting an owner makes its own dependents
//! dangle, so a collection repeats to a fixed point: the cascade of a background deletion.
//!
//! It never touches an object with a reference it cannot resolve (a kind the server does
//! not serve, or a namespaced owner of a cluster-scoped object): the real collector retries
//! those forever instead of deciding. It never deletes an object that has an existing owner.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::discovery::group_version;
use crate::objects::{self, rfc3339, time_of_rv};
use crate::store::{self, Obj, PutMode};
use crate::{GcReport, ObjectKey, Shared, State};

/// The manager the collector's writes are recorded under, as on the real server.
const MANAGER: &str = "kube-controller-manager";

#[derive(Deserialize)]
struct Meta {
    #[serde(rename = "ownerReferences", default)]
    owner_references: Vec<OwnerRef>,
    #[serde(default)]
    finalizers: Vec<String>,
}

#[derive(Deserialize)]
struct OwnerRef {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    uid: String,
}

/// Where the objects of one apiVersion and kind are stored.
struct Storage {
    group: String,
    plural: String,
    namespaced: bool,
}

/// Sweeps until nothing changes.
pub(crate) fn collect(shared: &Shared) -> GcReport {
    let mut report = GcReport::default();
    while sweep(shared, &mut report) {}
    report
}

/// One pass over every object with owner references, under the write lock; returns whether
/// it changed anything.
fn sweep(shared: &Shared, report: &mut GcReport) -> bool {
    let mut state = shared.write();
    let kinds = kinds(shared, &state);
    let mut changed = false;
    for (key, obj) in with_owners(&state) {
        // An earlier step of this pass deleted or rewrote it: the next pass looks again.
        let current = state.store.get(
            &key.group,
            &key.resource,
            &store::object_key(key.namespace.as_deref(), &key.name),
        );
        if current.is_none_or(|c| c.rv != obj.rv) {
            changed = true;
            continue;
        }
        let Some(meta) = meta_of(&obj) else {
            continue;
        };
        let mut solid = 0;
        let mut dangling = Vec::new();
        let mut resolvable = true;
        for r in &meta.owner_references {
            let Some(owner) = kinds.get(&(r.api_version.clone(), r.kind.clone())) else {
                resolvable = false;
                break;
            };
            if owner.namespaced && key.namespace.is_none() {
                resolvable = false;
                break;
            }
            let ns = if owner.namespaced {
                key.namespace.as_deref()
            } else {
                None
            };
            let found =
                state
                    .store
                    .get(&owner.group, &owner.plural, &store::object_key(ns, &r.name));
            if found.is_some_and(|o| *o.uid == *r.uid) {
                solid += 1;
            } else {
                dangling.push(r.uid.clone());
            }
        }
        if !resolvable || meta.owner_references.is_empty() {
            continue;
        }
        if solid > 0 {
            if !dangling.is_empty() && drop_refs(shared, &mut state, &key, &obj, &dangling) {
                report.orphan_refs_removed.push(key);
                changed = true;
            }
            continue;
        }
        // No owner left: a background deletion, or an orphaning one if the object asks for
        // it with the `orphan` finalizer.
        if meta.finalizers.iter().any(|f| f == "orphan") {
            orphan_dependents(shared, &mut state, &obj.uid);
        }
        let rv = state.store.next_rv();
        crate::handlers::remove(
            &mut state,
            &key.group,
            &key.resource,
            key.namespace.as_deref(),
            &key.name,
            rv,
        );
        report.deleted.push(key);
        changed = true;
    }
    changed
}

/// Removes the references to `owner_uid` from every object that has one (what the
/// collector does for a deletion with the `Orphan` policy); returns the objects changed.
pub(crate) fn orphan_dependents(
    shared: &Shared,
    state: &mut State,
    owner_uid: &str,
) -> Vec<ObjectKey> {
    let mut changed = Vec::new();
    for (key, obj) in with_owners(state) {
        let refers =
            meta_of(&obj).is_some_and(|m| m.owner_references.iter().any(|r| r.uid == owner_uid));
        if refers && drop_refs(shared, state, &key, &obj, &[owner_uid.to_string()]) {
            changed.push(key);
        }
    }
    changed
}

/// Every apiVersion and kind the server serves, with where its objects are stored.
fn kinds(shared: &Shared, state: &State) -> HashMap<(String, String), Storage> {
    let mut out = HashMap::new();
    let mut groups = vec![shared.core_group()];
    groups.extend(shared.groups(state));
    for g in &groups {
        for v in &g.versions {
            for r in &v.resources {
                let Some(served) = shared.resolve(state, &g.name, &v.version, &r.plural) else {
                    continue;
                };
                out.entry((group_version(&g.name, &v.version), r.kind.clone()))
                    .or_insert(Storage {
                        group: served.storage.0,
                        plural: served.storage.1,
                        namespaced: r.namespaced,
                    });
            }
        }
    }
    out
}

/// The stored objects that have owner references, in collection then key order.
fn with_owners(state: &State) -> Vec<(ObjectKey, Arc<Obj>)> {
    const NEEDLE: &[u8] = b"\"ownerReferences\"";
    let mut out = Vec::new();
    for c in state.store.collections() {
        if !c.rtype.persisted {
            continue;
        }
        for o in state.store.current(&c.rtype.group, &c.rtype.plural) {
            if o.metadata_bytes(false)
                .windows(NEEDLE.len())
                .any(|w| w == NEEDLE)
            {
                out.push((store::key_of(&c.rtype, &o), o));
            }
        }
    }
    out
}

fn meta_of(obj: &Obj) -> Option<Meta> {
    serde_json::from_slice(obj.metadata_bytes(false)).ok()
}

/// Rewrites an object without the references to the given owner uids, as the collector's
/// patch does: a new resource version and the collector's `managedFields` entry.
fn drop_refs(
    shared: &Shared,
    state: &mut State,
    key: &ObjectKey,
    obj: &Obj,
    uids: &[String],
) -> bool {
    let api_version = key.api_version();
    let Some(Value::Object(mut value)) = obj.full_value(&api_version, &key.kind) else {
        return false;
    };
    let rv = state.store.next_rv();
    {
        let meta = objects::metadata_mut(&mut value);
        if let Some(Value::Array(refs)) = meta.get_mut("ownerReferences") {
            refs.retain(|r| {
                !r.get("uid")
                    .and_then(Value::as_str)
                    .is_some_and(|u| uids.iter().any(|x| x == u))
            });
            if refs.is_empty() {
                meta.remove("ownerReferences");
            }
        }
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
    }
    let now = rfc3339(time_of_rv(shared.start_rv, rv));
    objects::record_manager(&mut value, &api_version, MANAGER, &now, false);
    let custom = state
        .store
        .collection(&key.group, &key.resource)
        .is_some_and(|c| c.rtype.custom);
    let value = Value::Object(value);
    let alt =
        (key.group.is_empty() && key.resource == "events").then(|| objects::events_v1_view(&value));
    match Obj::from_value(value, custom, alt.as_ref()) {
        Ok(o) => state
            .store
            .put(&key.group, &key.resource, o, PutMode::Update(Some(obj.rv)))
            .is_ok(),
        Err(_) => false,
    }
}

/// Sweeps every `period` until the server stops, like the controller running continuously.
pub(crate) async fn run(
    shared: Arc<Shared>,
    period: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
        }
        collect(&shared);
    }
}
