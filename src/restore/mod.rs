//! Restore: create a snapshot's objects in a cluster (a fresh one, typically), from the
//! store's manifest or from a plain-layout folder alone. Plan, then execute: the plan says
//! what is created in which order (owners before their dependents) and what is left out and
//! why; executing it creates each object with a POST, gives each owner reference the uid its
//! owner has in the new cluster, treats "already exists" as skipped (or replaces the object
//! with `--existing=update`), waits for CRDs to be established before their custom
//! resources, and reports every failure with the API server's message.
//!
//! A restore never deletes anything, and never writes to the destination.

pub mod order;
pub mod owners;
pub mod selector;
pub mod source;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;

pub use order::Step;
pub use owners::{DeferredOwner, DroppedOwner, ObjectRef, OutsideOwners};
pub use selector::{Selector, SelectorError};
pub use source::{Damaged, Item, Loaded, OnDamage};

use crate::kube::{Api, ApiError, ResourceType, discover};
use crate::store::StoreError;
use owners::{Deferred, Owner, OwnerLink};

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "{object} cannot be read from the store: {source}; to restore everything else, run \
         again with --skip-damaged (it names each object it leaves out)"
    )]
    Damaged {
        object: String,
        #[source]
        source: StoreError,
    },
    #[error("{origin}: cannot be read as Kubernetes objects: {reason}")]
    Parse { origin: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no plain-layout files at {0}; check the snapshot time, or give the folder that holds \
         the <namespace>/<resource>.json files"
    )]
    NoLayout(String),
    #[error(
        "cannot read the target cluster's API discovery: {0}; check the kubeconfig and \
         context, and that the API server is reachable"
    )]
    Discovery(String),
}

/// What to do with an object that exists in the cluster already.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Existing {
    /// Leave it as it is, and report it as skipped.
    #[default]
    Skip,
    /// Replace it with the backup's version.
    Update,
}

/// Which objects to restore.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Only these namespaces (and their Namespace objects); cluster-scoped objects are then
    /// left out, except the CRDs of the custom resources restored. Empty means all.
    pub namespaces: Vec<String>,
    pub exclude_namespaces: Vec<String>,
    /// Only these resources (`deployments`, `deployments.apps`, `Deployment`), and the
    /// namespaces that hold them. Empty means all.
    pub resources: Vec<String>,
    pub selector: Option<Selector>,
    /// Restore `kube-system` and `default` too (they exist in a fresh cluster; their objects
    /// are mostly the cluster's own). Naming them in `namespaces` does the same.
    pub system_namespaces: bool,
    /// Restore objects that a controller owns (a `controller: true` owner reference: a
    /// Deployment's ReplicaSets and Pods, a CronJob's Jobs). Left out by default, as the
    /// snapshot rules leave them out: the controller recreates them.
    pub keep_controller_owned: bool,
}

/// Namespaces restored only when asked.
const SYSTEM_NAMESPACES: [&str; 2] = ["kube-system", "default"];

impl Filters {
    /// Whether the namespace (of a namespaced object, or a Namespace's own name) is wanted;
    /// `None` with the reason otherwise.
    fn namespace_wanted(&self, namespace: &str) -> Result<(), &'static str> {
        if self.exclude_namespaces.iter().any(|n| n == namespace) {
            return Err("namespace excluded");
        }
        if !self.namespaces.is_empty() {
            return if self.namespaces.iter().any(|n| n == namespace) {
                Ok(())
            } else {
                Err("namespace not selected")
            };
        }
        if SYSTEM_NAMESPACES.contains(&namespace) && !self.system_namespaces {
            return Err("system namespace (restored only when asked)");
        }
        Ok(())
    }

    fn resource_wanted(&self, rt: &ResourceType) -> bool {
        self.resources.is_empty() || self.resources.iter().any(|r| rt.is_named_by(r))
    }

    fn item_resource_wanted(&self, item: &Item) -> bool {
        let rt = ResourceType {
            group: item.group.clone(),
            version: item.version.clone(),
            kind: item.kind.clone(),
            resource: item.resource.clone().unwrap_or_default(),
            namespaced: item.namespaced.unwrap_or(false),
        };
        self.resource_wanted(&rt)
    }

    /// A quick check on what a manifest knows before the object is read.
    pub fn wants_manifest_object(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
    ) -> bool {
        // Namespaces and CRDs are kept for the objects they hold; the plan decides.
        let container = matches!(
            (rt.group.as_str(), rt.kind.as_str()),
            ("", "Namespace") | ("apiextensions.k8s.io", "CustomResourceDefinition")
        );
        if !container && !self.resource_wanted(rt) {
            return false;
        }
        match (namespace, rt.group.as_str(), rt.kind.as_str()) {
            (Some(ns), _, _) => self.namespace_wanted(ns).is_ok(),
            (None, "", "Namespace") => self.namespace_wanted(name).is_ok(),
            // Cluster-scoped objects and CRDs are decided in the plan.
            (None, _, _) => true,
        }
    }
}

/// One object the plan restores.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The step it is created in: its kind's, or a later one where an owner of it is.
    pub step: Step,
    /// Within the step, objects of a wave are created together, after the waves before
    /// (which hold their owners).
    pub wave: usize,
    pub item: Item,
    /// Its owner references, and where each owner is.
    pub owners: Vec<OwnerLink>,
}

/// What a restore will do.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// In the order they are created.
    pub objects: Vec<Planned>,
    /// Reason -> objects left out for it.
    pub left_out: BTreeMap<String, u64>,
    /// Objects the source could not read, left out (`--skip-damaged`).
    pub damaged: Vec<Damaged>,
    /// Encrypted objects (or `.age` files) no identity given could open, left out.
    pub locked: Vec<Damaged>,
}

/// Why controller-owned objects are left out.
pub const CONTROLLER_OWNED: &str = "owned by a controller that recreates it";

fn is_crd(item: &Item) -> bool {
    item.group == "apiextensions.k8s.io" && item.kind == "CustomResourceDefinition"
}

/// The group a CRD defines.
fn crd_group(crd: &Value) -> Option<String> {
    crd.pointer("/spec/group")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// An item made ready for the create, with its owner references (not resolved yet).
type Prepared = (Item, Vec<OwnerLink>);

/// The item with its object made ready for the create, as text again, with its owner
/// references (not resolved yet).
fn prepared(mut item: Item, mut object: Value) -> Prepared {
    order::sanitize(&item.group, &item.kind, &mut object);
    let owners = owners::links_of(&item, &object);
    item.object = Bytes::from(object.to_string());
    (item, owners)
}

/// A planned object in its kind's step, placed by the owner graph later.
fn planned(step: Step, (item, owners): Prepared) -> Planned {
    Planned {
        step,
        wave: 0,
        item,
        owners,
    }
}

impl Plan {
    /// Orders and filters the items; prepares each object for the create. Each object is
    /// parsed here once, and kept as text again once prepared.
    pub fn new(items: Vec<Item>, filters: &Filters) -> Plan {
        let mut plan = Plan::default();
        let crd_groups: BTreeSet<String> = items
            .iter()
            .filter(|i| is_crd(i))
            .filter_map(|i| crd_group(&i.value().ok()?))
            .collect();
        let mut crds: Vec<(Prepared, Option<String>)> = Vec::new();
        let mut namespaces = Vec::new();
        for item in items {
            let mut leave = |reason: &str| {
                *plan.left_out.entry(reason.to_string()).or_default() += 1;
            };
            let Ok(object) = item.value() else {
                leave("not a JSON object");
                continue;
            };
            if let Some(reason) = order::never_restored(&item.group, &item.kind, &object) {
                leave(reason);
                continue;
            }
            if !filters.keep_controller_owned && owners::is_controller_owned(&object) {
                leave(CONTROLLER_OWNED);
                continue;
            }
            let is_namespace = item.group.is_empty() && item.kind == "Namespace";
            if !filters.item_resource_wanted(&item) {
                if is_namespace {
                    // Kept if objects of it are restored (decided below).
                    namespaces.push(prepared(item, object));
                } else if is_crd(&item) {
                    let group = crd_group(&object);
                    crds.push((prepared(item, object), group));
                } else {
                    leave("resource not selected");
                }
                continue;
            }
            let own_namespace = match (&item.namespace, item.group.as_str(), item.kind.as_str()) {
                (Some(ns), _, _) => Some(ns.clone()),
                (None, "", "Namespace") => Some(item.name.clone()),
                (None, _, _) => None,
            };
            match &own_namespace {
                Some(ns) => {
                    if let Err(reason) = filters.namespace_wanted(ns) {
                        leave(reason);
                        continue;
                    }
                }
                None if !filters.namespaces.is_empty() => {
                    if is_crd(&item) {
                        // Kept if one of its custom resources is restored (decided below).
                        let group = crd_group(&object);
                        crds.push((prepared(item, object), group));
                    } else {
                        leave("cluster-scoped (left out with --namespace)");
                    }
                    continue;
                }
                None => {}
            }
            if let Some(selector) = &filters.selector {
                let labels: BTreeMap<String, String> = object
                    .pointer("/metadata/labels")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                            .collect()
                    })
                    .unwrap_or_default();
                // Namespaces and CRDs that hold selected objects are kept regardless.
                let container = item.kind == "Namespace" || item.kind == "CustomResourceDefinition";
                if !container && !selector.matches(&labels) {
                    leave("labels not selected");
                    continue;
                }
            }
            let custom = crd_groups.contains(&item.group);
            let step = order::step_of(&item.group, &item.kind, custom);
            plan.objects.push(planned(step, prepared(item, object)));
        }
        let restored_groups: BTreeSet<String> =
            plan.objects.iter().map(|p| p.item.group.clone()).collect();
        for (item, group) in crds {
            if group.is_some_and(|g| restored_groups.contains(&g)) {
                plan.objects
                    .push(planned(Step::CustomResourceDefinitions, item));
            } else {
                *plan
                    .left_out
                    .entry("cluster-scoped (left out with --namespace)".to_string())
                    .or_default() += 1;
            }
        }
        let used_namespaces: BTreeSet<String> = plan
            .objects
            .iter()
            .filter_map(|p| p.item.namespace.clone())
            .collect();
        for item in namespaces {
            let name = &item.0.name;
            if used_namespaces.contains(name) && filters.namespace_wanted(name).is_ok() {
                plan.objects.push(planned(Step::Namespaces, item));
            } else {
                *plan
                    .left_out
                    .entry("resource not selected".to_string())
                    .or_default() += 1;
            }
        }
        plan.place_by_owners();
        plan.objects.sort_by(|a, b| {
            (
                a.step,
                a.wave,
                &a.item.namespace,
                &a.item.group,
                &a.item.kind,
                &a.item.name,
            )
                .cmp(&(
                    b.step,
                    b.wave,
                    &b.item.namespace,
                    &b.item.group,
                    &b.item.kind,
                    &b.item.name,
                ))
        });
        plan
    }

    /// Resolves owner references to restored objects and gives each object its step and
    /// wave after its owners (cycles broken, see [`owners::resolve`]).
    fn place_by_owners(&mut self) {
        let mut nodes: Vec<owners::Node<'_>> = self
            .objects
            .iter_mut()
            .map(|p| owners::Node {
                key: ObjectRef::of(&p.item),
                step: p.step,
                links: &mut p.owners,
            })
            .collect();
        let placed = owners::resolve(&mut nodes);
        for (p, (step, wave)) in self.objects.iter_mut().zip(placed) {
            p.step = step;
            p.wave = wave;
        }
    }

    /// The references created only after their dependents, and why.
    pub fn deferred_owners(&self) -> Vec<DeferredOwner> {
        let mut out: Vec<DeferredOwner> = self
            .objects
            .iter()
            .flat_map(|p| {
                p.owners.iter().filter_map(|link| match &link.owner {
                    Owner::Deferred { owner, why } => Some(DeferredOwner {
                        object: p.item.describe(),
                        owner: owner.to_string(),
                        why,
                    }),
                    _ => None,
                })
            })
            .collect();
        out.sort();
        out
    }

    /// Objects per step, in order.
    pub fn steps(&self) -> Vec<(Step, usize)> {
        let mut counts: BTreeMap<Step, usize> = BTreeMap::new();
        for p in &self.objects {
            *counts.entry(p.step).or_default() += 1;
        }
        counts.into_iter().collect()
    }
}

/// How to restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub existing: Existing,
    /// How long to wait for a created CRD to be established.
    pub crd_timeout: Duration,
    /// Creates in flight at once within a step.
    pub concurrency: usize,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        Self {
            existing: Existing::Skip,
            crd_timeout: Duration::from_secs(60),
            concurrency: 8,
        }
    }
}

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Updated,
    /// It existed already and was left as it is.
    Skipped,
    Failed {
        message: String,
    },
}

/// What a restore did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreReport {
    pub created: u64,
    pub updated: u64,
    /// `Kind namespace/name` of each object that existed already.
    pub skipped: Vec<String>,
    /// `Kind namespace/name` and the API server's message.
    pub failed: Vec<(String, String)>,
    pub left_out: BTreeMap<String, u64>,
    /// Objects the source could not read, left out.
    pub damaged: Vec<Damaged>,
    /// Owner references left out of restored objects: their owner is neither restored nor
    /// in the target cluster, or could not be restored.
    pub owners_dropped: Vec<DroppedOwner>,
    /// Owner references added once their owner was created, after the dependent.
    pub owners_added_later: Vec<DeferredOwner>,
    /// CRDs that were not established in time.
    pub crds_not_established: Vec<String>,
    pub duration_ms: u64,
}

impl RestoreReport {
    pub fn is_ok(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Progress of a running restore.
#[derive(Debug, Clone)]
pub enum Progress {
    Step { step: Step, objects: usize },
    WaitingForCrds { crds: usize },
    Done { objects: u64 },
}

/// Where to create objects of each (group, kind) in the target cluster, from its discovery.
struct Targets {
    by_kind: HashMap<(String, String), ResourceType>,
}

impl Targets {
    async fn discover(api: &Api) -> Result<Targets, RestoreError> {
        let found = discover(api)
            .await
            .map_err(|e| RestoreError::Discovery(e.to_string()))?;
        let by_kind = found
            .resources
            .into_iter()
            .map(|rt| ((rt.group.clone(), rt.kind.clone()), rt))
            .collect();
        Ok(Targets { by_kind })
    }

    /// The type to POST an item to: the item's own group and version, with the resource
    /// name and scope the target reports for its kind (the source's, if the target does
    /// not know the kind).
    fn resolve(&self, item: &Item) -> Option<ResourceType> {
        let known = self
            .by_kind
            .get(&(item.group.clone(), item.kind.clone()))
            .map(|rt| (rt.resource.clone(), rt.namespaced));
        let (resource, namespaced) =
            known.or_else(|| Some((item.resource.clone()?, item.namespaced?)))?;
        Some(ResourceType {
            group: item.group.clone(),
            version: item.version.clone(),
            kind: item.kind.clone(),
            resource,
            namespaced,
        })
    }

    async fn outside_owners(&self, api: &Api, plan: &Plan) -> OutsideOwners {
        let planned = plan.objects.iter().map(|p| (&p.item, p.owners.as_slice()));
        owners::look_up_outside(api, planned, &self.by_kind).await
    }
}

/// Looks up, in the cluster behind `api`, the owners the plan names but does not restore:
/// the references to those not there are dropped (what `--dry-run` shows; [`execute`] looks
/// them up again when it starts).
pub async fn outside_owners(api: &Api, plan: &Plan) -> Result<OutsideOwners, RestoreError> {
    let needed = plan.objects.iter().any(|p| {
        p.owners
            .iter()
            .any(|l| matches!(l.owner, Owner::Outside { .. } | Owner::Dropped(_)))
    });
    if !needed {
        return Ok(OutsideOwners::default());
    }
    Ok(Targets::discover(api)
        .await?
        .outside_owners(api, plan)
        .await)
}

/// What happened to one planned object.
struct Done {
    index: usize,
    outcome: Outcome,
    /// Its uid in the target, when something it owns needs it.
    uid: Option<String>,
    dropped: Vec<DroppedOwner>,
}

/// Runs a plan against the cluster behind `api`.
pub async fn execute(
    api: &Api,
    plan: &Plan,
    options: &RestoreOptions,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<RestoreReport, RestoreError> {
    let started = Instant::now();
    let mut report = RestoreReport {
        left_out: plan.left_out.clone(),
        damaged: plan.damaged.clone(),
        ..RestoreReport::default()
    };
    let mut targets = Targets::discover(api).await?;
    let outside = targets.outside_owners(api, plan).await;
    report.owners_dropped = outside.dropped.clone();
    // The objects whose uid a dependent needs.
    let owners_needed: HashSet<ObjectRef> = plan
        .objects
        .iter()
        .flat_map(|p| p.owners.iter())
        .filter_map(|l| match &l.owner {
            Owner::Restored(owner) | Owner::Deferred { owner, .. } => Some(owner.clone()),
            _ => None,
        })
        .collect();
    let mut uids: HashMap<ObjectRef, String> = HashMap::new();
    let mut outcomes: Vec<Option<Outcome>> = vec![None; plan.objects.len()];
    for (step, count) in plan.steps() {
        progress(Progress::Step {
            step,
            objects: count,
        });
        let in_step: Vec<usize> = (0..plan.objects.len())
            .filter(|&i| plan.objects[i].step == step)
            .collect();
        let waves: BTreeSet<usize> = in_step.iter().map(|&i| plan.objects[i].wave).collect();
        for wave in waves {
            let (uids_now, targets_now, outside) = (&uids, &targets, &outside);
            let owners_needed = &owners_needed;
            let done: Vec<Done> = futures::stream::iter(
                in_step
                    .iter()
                    .copied()
                    .filter(|&i| plan.objects[i].wave == wave),
            )
            .map(|index| async move {
                let p = &plan.objects[index];
                let mut object = match p.item.value() {
                    Ok(object) => object,
                    Err(_) => {
                        return Done {
                            index,
                            outcome: failed("the object is not valid JSON".to_string()),
                            uid: None,
                            dropped: Vec::new(),
                        };
                    }
                };
                let dropped = owners::rewire(
                    &p.item,
                    &mut object,
                    &p.owners,
                    uids_now,
                    outside,
                    Deferred::Leave,
                );
                let wants_uid = owners_needed.contains(&ObjectRef::of(&p.item));
                let target = targets_now.resolve(&p.item);
                let (outcome, uid) =
                    restore_one(api, &p.item, object, target, options.existing, wants_uid).await;
                Done {
                    index,
                    outcome,
                    uid,
                    dropped,
                }
            })
            .buffer_unordered(options.concurrency.max(1))
            .collect()
            .await;
            for d in done {
                if let Some(uid) = d.uid {
                    uids.insert(ObjectRef::of(&plan.objects[d.index].item), uid);
                }
                report.owners_dropped.extend(d.dropped);
                outcomes[d.index] = Some(d.outcome);
            }
        }
        if step == Step::CustomResourceDefinitions {
            let names: Vec<&str> = in_step
                .iter()
                .map(|&i| plan.objects[i].item.name.as_str())
                .collect();
            progress(Progress::WaitingForCrds { crds: names.len() });
            report.crds_not_established = wait_established(api, &names, options.crd_timeout).await;
            // The new groups are served now: learn where their resources live.
            targets = Targets::discover(api).await?;
        }
    }
    // References deferred past their owners' creation: added now that every owner exists.
    for (index, p) in plan.objects.iter().enumerate() {
        let deferred: Vec<DeferredOwner> = plan_deferred(p);
        let written = matches!(outcomes[index], Some(Outcome::Created | Outcome::Updated));
        if deferred.is_empty() || !written {
            continue;
        }
        let Some(target) = targets.resolve(&p.item) else {
            continue;
        };
        match add_deferred_owners(api, p, &target, &uids, &outside).await {
            Ok(dropped) => {
                let dropped_owners: BTreeSet<&str> =
                    dropped.iter().map(|d| d.owner.as_str()).collect();
                report.owners_added_later.extend(
                    deferred
                        .into_iter()
                        .filter(|d| !dropped_owners.contains(d.owner.as_str())),
                );
                report.owners_dropped.extend(dropped);
            }
            Err(message) => {
                report
                    .owners_dropped
                    .extend(deferred.into_iter().map(|d| DroppedOwner {
                        object: d.object,
                        owner: d.owner,
                        reason: format!("could not be added once the owner was created: {message}"),
                    }))
            }
        }
    }
    for (index, outcome) in outcomes.into_iter().enumerate() {
        let what = plan.objects[index].item.describe();
        match outcome {
            Some(Outcome::Created) => report.created += 1,
            Some(Outcome::Updated) => report.updated += 1,
            Some(Outcome::Skipped) => report.skipped.push(what),
            Some(Outcome::Failed { message }) => report.failed.push((what, message)),
            None => {}
        }
    }
    report.skipped.sort();
    report.failed.sort();
    report.owners_dropped.sort();
    report.owners_added_later.sort();
    report.duration_ms = started.elapsed().as_millis() as u64;
    progress(Progress::Done {
        objects: plan.objects.len() as u64,
    });
    Ok(report)
}

/// The deferred references of one planned object.
fn plan_deferred(p: &Planned) -> Vec<DeferredOwner> {
    p.owners
        .iter()
        .filter_map(|link| match &link.owner {
            Owner::Deferred { owner, why } => Some(DeferredOwner {
                object: p.item.describe(),
                owner: owner.to_string(),
                why,
            }),
            _ => None,
        })
        .collect()
}

/// Gives a created object its full owner references, deferred ones included, with a
/// replace at its current resource version. Returns the references dropped after all.
async fn add_deferred_owners(
    api: &Api,
    p: &Planned,
    target: &ResourceType,
    uids: &HashMap<ObjectRef, String>,
    outside: &OutsideOwners,
) -> Result<Vec<DroppedOwner>, String> {
    let mut wanted = p.item.value().map_err(|e| e.to_string())?;
    let dropped = owners::rewire(
        &p.item,
        &mut wanted,
        &p.owners,
        uids,
        outside,
        Deferred::Include,
    );
    let namespace = p.item.namespace.as_deref().filter(|_| target.namespaced);
    let path = target.object_path(namespace, &p.item.name);
    let current = api
        .get_opt(&path)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("it was deleted during the restore")?;
    let mut current: Value = serde_json::from_slice(&current).map_err(|e| e.to_string())?;
    let references = wanted
        .pointer("/metadata/ownerReferences")
        .cloned()
        .unwrap_or(Value::Null);
    let Some(meta) = current.get_mut("metadata").and_then(Value::as_object_mut) else {
        return Err("the object in the cluster has no metadata".to_string());
    };
    if references.is_null() {
        meta.remove("ownerReferences");
    } else {
        meta.insert("ownerReferences".into(), references);
    }
    let body = serde_json::to_vec(&current).map_err(|e| e.to_string())?;
    api.put(&path, Bytes::from(body))
        .await
        .map_err(|e| e.to_string())?;
    Ok(dropped)
}

fn failed(message: String) -> Outcome {
    Outcome::Failed { message }
}

/// Creates one object (made ready: owner references rewired); returns what happened and,
/// when `wants_uid`, the object's uid in the cluster.
async fn restore_one(
    api: &Api,
    item: &Item,
    mut object: Value,
    target: Option<ResourceType>,
    existing: Existing,
    wants_uid: bool,
) -> (Outcome, Option<String>) {
    let Some(rt) = target else {
        return (
            failed(format!(
                "the cluster serves no resource of kind {} in {}; install what provides it (a \
                 CRD or an aggregated API) and restore again",
                item.kind,
                if item.group.is_empty() {
                    "the core group".to_string()
                } else {
                    format!("group {}", item.group)
                },
            )),
            None,
        );
    };
    let namespace = if rt.namespaced {
        match item.namespace.as_deref() {
            Some(ns) => Some(ns),
            None => {
                return (
                    failed(format!(
                        "{} is namespaced but the backup names no namespace for it",
                        rt.qualified_name()
                    )),
                    None,
                );
            }
        }
    } else {
        None
    };
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        match namespace {
            Some(ns) => meta.insert("namespace".into(), Value::String(ns.to_string())),
            None => meta.remove("namespace"),
        };
    }
    let collection = rt.collection_path(namespace);
    let body = match serde_json::to_vec(&object) {
        Ok(body) => Bytes::from(body),
        Err(e) => return (failed(format!("cannot encode the object: {e}")), None),
    };
    let uid = |body: &[u8]| wants_uid.then(|| owners::uid_of(body)).flatten();
    let path = rt.object_path(namespace, &item.name);
    match api.post(&collection, body).await {
        Ok(created) => (Outcome::Created, uid(&created)),
        Err(ApiError::Status {
            code: 409, reason, ..
        }) if reason == "AlreadyExists" => match existing {
            Existing::Skip if wants_uid => match api.get_opt(&path).await {
                Ok(Some(current)) => (Outcome::Skipped, uid(&current)),
                // Gone again, or unreadable: its dependents drop the reference and say so.
                _ => (Outcome::Skipped, None),
            },
            Existing::Skip => (Outcome::Skipped, None),
            Existing::Update => update(api, &path, object, wants_uid).await,
        },
        Err(e) => (failed(e.to_string()), None),
    }
}

/// Replaces the current object with the backup's, at the current resource version.
async fn update(
    api: &Api,
    path: &str,
    mut object: Value,
    wants_uid: bool,
) -> (Outcome, Option<String>) {
    let current = match api.get_opt(path).await {
        Ok(Some(current)) => current,
        Ok(None) => {
            return (
                failed("it existed, then was deleted during the restore".to_string()),
                None,
            );
        }
        Err(e) => return (failed(format!("reading the current object: {e}")), None),
    };
    let version = serde_json::from_slice::<Value>(&current)
        .ok()
        .and_then(|v| v.pointer("/metadata/resourceVersion").cloned());
    let Some(version) = version else {
        return (
            failed("the current object has no metadata.resourceVersion".to_string()),
            None,
        );
    };
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), version);
    }
    let body = match serde_json::to_vec(&object) {
        Ok(body) => Bytes::from(body),
        Err(e) => return (failed(format!("cannot encode the object: {e}")), None),
    };
    match api.put(path, body).await {
        Ok(stored) => (
            Outcome::Updated,
            wants_uid.then(|| owners::uid_of(&stored)).flatten(),
        ),
        Err(e) => (failed(e.to_string()), None),
    }
}

/// Waits until each CRD reports `Established`; returns those that did not in time.
async fn wait_established(api: &Api, names: &[&str], timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut waiting: Vec<&str> = names.to_vec();
    loop {
        let mut still = Vec::new();
        for name in waiting {
            let path = format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}");
            let established = match api.get_opt(&path).await {
                Ok(Some(body)) => serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|crd| {
                        crd.pointer("/status/conditions")?
                            .as_array()?
                            .iter()
                            .find(|c| c.get("type").and_then(Value::as_str) == Some("Established"))
                            .map(|c| c.get("status").and_then(Value::as_str) == Some("True"))
                    })
                    .unwrap_or(false),
                _ => false,
            };
            if !established {
                still.push(name);
            }
        }
        if still.is_empty() {
            return Vec::new();
        }
        if Instant::now() >= deadline {
            tracing::warn!(crds = ?still, "custom resource definitions not established in time; their custom resources may fail");
            return still.into_iter().map(str::to_string).collect();
        }
        waiting = still;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
