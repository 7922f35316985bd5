//! API discovery: the model of served groups, versions and resources, and every discovery
//! document derived from it.
//!
//! The built-in API surface comes from two recorded documents of a real API server (see
//! `fixtures/k8s-discovery/README.md`): the aggregated discovery list of `/apis` and the legacy
//! `APIResourceList` of `/api/v1`. Every other document (`/apis` as an `APIGroupList`,
//! `/apis/<group>`, `/apis/<group>/<version>`, the aggregated form of `/api`) is derived from
//! them here, the way the real server derives them from one registry. Custom resource groups
//! (from `CustomResourceDefinition` objects) and the aggregated `metrics.k8s.io` group are
//! added to the same model so that every document lists them consistently.

use std::cmp::Ordering;
use std::collections::HashMap;

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::fixtures;

/// The group served by the simulated aggregated API server (the "metrics-server").
pub const METRICS_GROUP: &str = "metrics.k8s.io";
/// The only version of [`METRICS_GROUP`].
pub const METRICS_VERSION: &str = "v1beta1";

/// Content type of aggregated discovery, as sent by the real server.
pub(crate) const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// One served API group and its versions, the preferred version first.
#[derive(Clone, Debug)]
pub(crate) struct GroupDef {
    pub name: String,
    pub versions: Vec<VersionDef>,
}

#[derive(Clone, Debug)]
pub(crate) struct VersionDef {
    pub version: String,
    pub resources: Vec<ResourceDef>,
    /// False when the backend of an aggregated group cannot be reached: the aggregator keeps
    /// listing its last good copy with `freshness: Stale`.
    pub fresh: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct ResourceDef {
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub verbs: Vec<String>,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub subresources: Vec<SubresourceDef>,
    pub storage_version_hash: Option<String>,
    /// Group and version of the response kind as aggregated discovery reports them: empty for
    /// built-in resources (meaning "this group-version"), filled in for custom resources.
    pub response_group: String,
    pub response_version: String,
}

#[derive(Clone, Debug)]
pub(crate) struct SubresourceDef {
    pub name: String,
    pub kind: String,
    pub group: String,
    pub version: String,
    pub verbs: Vec<String>,
}

impl ResourceDef {
    pub(crate) fn has_verb(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }
}

/// How objects of a served resource are rendered from their stored form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum View {
    /// As stored.
    Native,
    /// `events.k8s.io/v1` `Event`, converted from the stored core `Event` (the real server
    /// stores both under the same key and converts on read).
    EventsV1,
}

/// A resource that can be addressed by URL, with everything the request handlers need.
#[derive(Clone, Debug)]
pub(crate) struct Served {
    pub group: String,
    pub version: String,
    pub def: ResourceDef,
    /// The collection holding the objects: (group, plural) of the stored resource.
    pub storage: (String, String),
    pub view: View,
}

impl Served {
    pub(crate) fn api_version(&self) -> String {
        group_version(&self.group, &self.version)
    }
}

pub(crate) fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// The static part of discovery: built-in groups parsed from the fixtures, plus the metrics
/// group. Built once per server.
#[derive(Debug)]
pub(crate) struct BuiltinApis {
    pub core: GroupDef,
    pub groups: Vec<GroupDef>,
    pub metrics: GroupDef,
    served: HashMap<(String, String, String), Served>,
}

impl BuiltinApis {
    pub(crate) fn load() -> Result<BuiltinApis, String> {
        let core = parse_core(fixtures::API_V1)?;
        let groups = parse_aggregated(fixtures::AGGREGATED_V2)?;
        let metrics = metrics_group();
        let mut served = HashMap::new();
        for g in std::iter::once(&core)
            .chain(groups.iter())
            .chain(std::iter::once(&metrics))
        {
            for s in served_of_group(g) {
                served.insert(
                    (s.group.clone(), s.version.clone(), s.def.plural.clone()),
                    s,
                );
            }
        }
        Ok(BuiltinApis {
            core,
            groups,
            metrics,
            served,
        })
    }

    pub(crate) fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&Served> {
        self.served
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
    }

    /// Every built-in resource that holds objects, once per stored collection, with the
    /// version objects are stored and reported at (the group's preferred version that serves
    /// the resource).
    pub(crate) fn storage_resources(&self) -> Vec<Served> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for g in std::iter::once(&self.core)
            .chain(self.groups.iter())
            .chain(std::iter::once(&self.metrics))
        {
            for s in served_of_group(g) {
                if s.view == View::Native && seen.insert(s.storage.clone()) {
                    out.push(s);
                }
            }
        }
        out
    }
}

/// The served resources of a group: every version, every top-level resource.
pub(crate) fn served_of_group(g: &GroupDef) -> Vec<Served> {
    let mut out = Vec::new();
    for v in &g.versions {
        for r in &v.resources {
            let (storage, view) = if g.name == "events.k8s.io" && r.plural == "events" {
                ((String::new(), "events".to_string()), View::EventsV1)
            } else {
                ((g.name.clone(), r.plural.clone()), View::Native)
            };
            out.push(Served {
                group: g.name.clone(),
                version: v.version.clone(),
                def: r.clone(),
                storage,
                view,
            });
        }
    }
    out
}

/// `storageVersionHash` as the real server computes it: base64 of the first 8 bytes of the
/// SHA-256 of `group/version/Kind` of the storage version.
pub(crate) fn storage_version_hash(group: &str, version: &str, kind: &str) -> String {
    let digest = Sha256::digest(format!("{group}/{version}/{kind}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(&digest[..8])
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn str_of(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Parses the aggregated discovery list of `/apis`.
fn parse_aggregated(text: &str) -> Result<Vec<GroupDef>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("aggregated_v2.json: {e}"))?;
    let items = doc
        .get("items")
        .and_then(Value::as_array)
        .ok_or("aggregated_v2.json: no items")?;
    let mut groups = Vec::new();
    for item in items {
        let name = item
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .ok_or("aggregated_v2.json: group without a name")?
            .to_string();
        let mut versions = Vec::new();
        for v in item
            .get("versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let version = str_of(v, "version");
            let mut resources = Vec::new();
            for r in v
                .get("resources")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let kind = r
                    .pointer("/responseKind/kind")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let subresources = r
                    .get("subresources")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|s| SubresourceDef {
                        name: str_of(s, "subresource"),
                        kind: s
                            .pointer("/responseKind/kind")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        group: s
                            .pointer("/responseKind/group")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        version: s
                            .pointer("/responseKind/version")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        verbs: strings(&s["verbs"]),
                    })
                    .collect();
                resources.push(ResourceDef {
                    plural: str_of(r, "resource"),
                    singular: str_of(r, "singularResource"),
                    kind,
                    namespaced: r.get("scope").and_then(Value::as_str) == Some("Namespaced"),
                    verbs: strings(&r["verbs"]),
                    short_names: strings(&r["shortNames"]),
                    categories: strings(&r["categories"]),
                    subresources,
                    storage_version_hash: None,
                    response_group: r
                        .pointer("/responseKind/group")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    response_version: r
                        .pointer("/responseKind/version")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                });
            }
            versions.push(VersionDef {
                version,
                resources,
                fresh: true,
            });
        }
        groups.push(GroupDef { name, versions });
    }
    // Aggregated discovery carries no storageVersionHash; the legacy documents do. The
    // storage version of a resource is the preferred version of its group that serves it,
    // except for events.k8s.io Events, which are stored as core Events.
    for g in &mut groups {
        let mut storage_of: HashMap<String, String> = HashMap::new();
        for v in &g.versions {
            for r in &v.resources {
                storage_of
                    .entry(r.plural.clone())
                    .or_insert_with(|| v.version.clone());
            }
        }
        for v in &mut g.versions {
            for r in &mut v.resources {
                // Virtual resources (reviews, create-only APIs) have no storage.
                if !r.has_verb("watch") {
                    continue;
                }
                r.storage_version_hash = Some(if g.name == "events.k8s.io" && r.kind == "Event" {
                    storage_version_hash("", "v1", "Event")
                } else {
                    let sv = storage_of
                        .get(&r.plural)
                        .cloned()
                        .unwrap_or_else(|| v.version.clone());
                    storage_version_hash(&g.name, &sv, &r.kind)
                });
            }
        }
    }
    Ok(groups)
}

/// Parses the legacy `APIResourceList` of `/api/v1` into the model: `name/sub` entries become
/// subresources of their parent.
fn parse_core(text: &str) -> Result<GroupDef, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("api__v1.json: {e}"))?;
    let list = doc
        .get("resources")
        .and_then(Value::as_array)
        .ok_or("api__v1.json: no resources")?;
    let mut resources: Vec<ResourceDef> = Vec::new();
    for r in list {
        let name = str_of(r, "name");
        if let Some((parent, sub)) = name.split_once('/') {
            let parent = resources
                .iter_mut()
                .find(|p| p.plural == parent)
                .ok_or_else(|| format!("api__v1.json: subresource {name} before its parent"))?;
            parent.subresources.push(SubresourceDef {
                name: sub.to_string(),
                kind: str_of(r, "kind"),
                group: str_of(r, "group"),
                version: str_of(r, "version"),
                verbs: strings(&r["verbs"]),
            });
        } else {
            resources.push(ResourceDef {
                plural: name,
                singular: str_of(r, "singularName"),
                kind: str_of(r, "kind"),
                namespaced: r.get("namespaced").and_then(Value::as_bool) == Some(true),
                verbs: strings(&r["verbs"]),
                short_names: strings(&r["shortNames"]),
                categories: strings(&r["categories"]),
                subresources: Vec::new(),
                storage_version_hash: r
                    .get("storageVersionHash")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                response_group: String::new(),
                response_version: String::new(),
            });
        }
    }
    Ok(GroupDef {
        name: String::new(),
        versions: vec![VersionDef {
            version: "v1".to_string(),
            resources,
            fresh: true,
        }],
    })
}

/// What metrics-server registers behind the `v1beta1.metrics.k8s.io` APIService.
fn metrics_group() -> GroupDef {
    let res = |plural: &str, singular: &str, kind: &str, namespaced: bool| ResourceDef {
        plural: plural.to_string(),
        singular: singular.to_string(),
        kind: kind.to_string(),
        namespaced,
        verbs: vec!["get".to_string(), "list".to_string()],
        short_names: Vec::new(),
        categories: Vec::new(),
        subresources: Vec::new(),
        storage_version_hash: None,
        response_group: String::new(),
        response_version: String::new(),
    };
    GroupDef {
        name: METRICS_GROUP.to_string(),
        versions: vec![VersionDef {
            version: METRICS_VERSION.to_string(),
            resources: vec![
                res("nodes", "node", "NodeMetrics", false),
                res("pods", "pod", "PodMetrics", true),
            ],
            fresh: true,
        }],
    }
}

/// The API group a `CustomResourceDefinition` object adds, if it is established.
/// Returns the group name and the version entries of this CRD alone (several CRDs may share
/// a group; the caller merges them).
pub(crate) fn crd_group(crd: &Value) -> Option<(String, Vec<VersionDef>)> {
    let spec = crd.get("spec")?;
    let group = spec.get("group")?.as_str()?.to_string();
    let names = spec.get("names")?;
    let plural = names.get("plural")?.as_str()?.to_string();
    let kind = names.get("kind")?.as_str()?.to_string();
    let singular = names
        .get("singular")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
    let versions = spec.get("versions")?.as_array()?;
    let storage_version = versions
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .or_else(|| versions.first())
        .and_then(|v| v.get("name"))
        .and_then(Value::as_str)?
        .to_string();
    let mut out = Vec::new();
    for v in versions {
        if v.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let version = v.get("name")?.as_str()?.to_string();
        let mut subresources = Vec::new();
        if v.pointer("/subresources/scale").is_some() {
            subresources.push(SubresourceDef {
                name: "scale".to_string(),
                kind: "Scale".to_string(),
                group: "autoscaling".to_string(),
                version: "v1".to_string(),
                verbs: vec!["get".into(), "patch".into(), "update".into()],
            });
        }
        if v.pointer("/subresources/status").is_some() {
            subresources.push(SubresourceDef {
                name: "status".to_string(),
                kind: kind.clone(),
                group: group.clone(),
                version: version.clone(),
                verbs: vec!["get".into(), "patch".into(), "update".into()],
            });
        }
        out.push(VersionDef {
            version: version.clone(),
            resources: vec![ResourceDef {
                plural: plural.clone(),
                singular: singular.clone(),
                kind: kind.clone(),
                namespaced,
                // The order the apiextensions server uses for custom resources.
                verbs: [
                    "delete",
                    "deletecollection",
                    "get",
                    "list",
                    "patch",
                    "create",
                    "update",
                    "watch",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
                short_names: strings(&names["shortNames"]),
                categories: strings(&names["categories"]),
                subresources,
                storage_version_hash: Some(storage_version_hash(&group, &storage_version, &kind)),
                response_group: group.clone(),
                response_version: version.clone(),
            }],
            fresh: true,
        });
    }
    if out.is_empty() {
        return None;
    }
    Some((group, out))
}

/// Kubernetes version priority: GA before beta before alpha before anything else; higher
/// major and minor numbers first; non-Kubernetes names alphabetically.
pub(crate) fn version_priority_cmp(a: &str, b: &str) -> Ordering {
    fn parse(v: &str) -> Option<(u32, u32, u32)> {
        let rest = v.strip_prefix('v')?;
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let major: u32 = rest[..digits_end].parse().ok()?;
        let tail = &rest[digits_end..];
        if tail.is_empty() {
            return Some((3, major, 0));
        }
        let (stage, num) = if let Some(n) = tail.strip_prefix("beta") {
            (2, n)
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (1, n)
        } else {
            return None;
        };
        Some((stage, major, num.parse().ok()?))
    }
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => y.cmp(&x),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// Merges the per-CRD version entries of several CRDs into groups (sorted by group name),
/// with versions in priority order and resources sorted by plural.
pub(crate) fn merge_crd_groups(parts: Vec<(String, Vec<VersionDef>)>) -> Vec<GroupDef> {
    let mut by_group: std::collections::BTreeMap<String, Vec<VersionDef>> = Default::default();
    for (group, versions) in parts {
        let entry = by_group.entry(group).or_default();
        for v in versions {
            if let Some(existing) = entry.iter_mut().find(|e| e.version == v.version) {
                existing.resources.extend(v.resources);
            } else {
                entry.push(v);
            }
        }
    }
    by_group
        .into_iter()
        .map(|(name, mut versions)| {
            versions.sort_by(|a, b| version_priority_cmp(&a.version, &b.version));
            for v in &mut versions {
                v.resources.sort_by(|a, b| a.plural.cmp(&b.plural));
            }
            GroupDef { name, versions }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Documents. Keys are written in alphabetical order, the order of the recorded documents.

fn gv_for_discovery(group: &str, version: &str) -> Value {
    json!({"groupVersion": group_version(group, version), "version": version})
}

/// `/apis/<group>`: an `APIGroup`.
pub(crate) fn legacy_group(g: &GroupDef) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "APIGroup",
        "name": g.name,
        "preferredVersion": gv_for_discovery(&g.name, &g.versions[0].version),
        "versions": g.versions.iter().map(|v| gv_for_discovery(&g.name, &v.version)).collect::<Vec<_>>(),
    })
}

fn legacy_group_entry(g: &GroupDef) -> Value {
    json!({
        "name": g.name,
        "preferredVersion": gv_for_discovery(&g.name, &g.versions[0].version),
        "versions": g.versions.iter().map(|v| gv_for_discovery(&g.name, &v.version)).collect::<Vec<_>>(),
    })
}

/// `/apis`: an `APIGroupList`.
pub(crate) fn legacy_group_list<'a>(groups: impl Iterator<Item = &'a GroupDef>) -> Value {
    json!({
        "apiVersion": "v1",
        "groups": groups.map(legacy_group_entry).collect::<Vec<_>>(),
        "kind": "APIGroupList",
    })
}

/// `/api`: `APIVersions`, from the recorded document with this server's address.
pub(crate) fn legacy_api_versions(server_address: &str) -> Value {
    let mut doc: Value = serde_json::from_str(fixtures::API).unwrap_or_else(|_| {
        json!({"kind": "APIVersions", "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0"}], "versions": ["v1"]})
    });
    if let Some(entries) = doc
        .get_mut("serverAddressByClientCIDRs")
        .and_then(Value::as_array_mut)
    {
        for e in entries {
            e["serverAddress"] = Value::String(server_address.to_string());
        }
    }
    doc
}

/// `/api/v1` or `/apis/<group>/<version>`: an `APIResourceList`, subresources as `name/sub`
/// entries. The core list has no `apiVersion`, as on the real server.
pub(crate) fn legacy_resource_list(group: &str, v: &VersionDef) -> Value {
    let mut entries: Vec<(String, Value)> = Vec::new();
    for r in &v.resources {
        let mut e = serde_json::Map::new();
        if !r.categories.is_empty() {
            e.insert("categories".into(), json!(r.categories));
        }
        e.insert("kind".into(), json!(r.kind));
        e.insert("name".into(), json!(r.plural));
        e.insert("namespaced".into(), json!(r.namespaced));
        if !r.short_names.is_empty() {
            e.insert("shortNames".into(), json!(r.short_names));
        }
        e.insert("singularName".into(), json!(r.singular));
        if let Some(h) = &r.storage_version_hash {
            e.insert("storageVersionHash".into(), json!(h));
        }
        e.insert("verbs".into(), json!(r.verbs));
        entries.push((r.plural.clone(), Value::Object(e)));
        for s in &r.subresources {
            let mut e = serde_json::Map::new();
            // Only a response kind from another group-version is spelled out (e.g. Scale).
            let foreign = !s.group.is_empty() && s.group != group;
            if foreign {
                e.insert("group".into(), json!(s.group));
            }
            e.insert("kind".into(), json!(s.kind));
            let name = format!("{}/{}", r.plural, s.name);
            e.insert("name".into(), json!(name));
            e.insert("namespaced".into(), json!(r.namespaced));
            e.insert("singularName".into(), json!(""));
            e.insert("verbs".into(), json!(s.verbs));
            if foreign {
                e.insert("version".into(), json!(s.version));
            }
            entries.push((name, Value::Object(e)));
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let resources: Vec<Value> = entries.into_iter().map(|(_, e)| e).collect();
    if group.is_empty() {
        json!({"groupVersion": v.version, "kind": "APIResourceList", "resources": resources})
    } else {
        json!({
            "apiVersion": "v1",
            "groupVersion": group_version(group, &v.version),
            "kind": "APIResourceList",
            "resources": resources,
        })
    }
}

fn aggregated_resource(r: &ResourceDef) -> Value {
    let mut e = serde_json::Map::new();
    if !r.categories.is_empty() {
        e.insert("categories".into(), json!(r.categories));
    }
    e.insert("resource".into(), json!(r.plural));
    e.insert(
        "responseKind".into(),
        json!({"group": r.response_group, "kind": r.kind, "version": r.response_version}),
    );
    e.insert(
        "scope".into(),
        json!(if r.namespaced {
            "Namespaced"
        } else {
            "Cluster"
        }),
    );
    if !r.short_names.is_empty() {
        e.insert("shortNames".into(), json!(r.short_names));
    }
    e.insert("singularResource".into(), json!(r.singular));
    if !r.subresources.is_empty() {
        let subs: Vec<Value> = r
            .subresources
            .iter()
            .map(|s| {
                json!({
                    "responseKind": {"group": s.group, "kind": s.kind, "version": s.version},
                    "subresource": s.name,
                    "verbs": s.verbs,
                })
            })
            .collect();
        e.insert("subresources".into(), Value::Array(subs));
    }
    e.insert("verbs".into(), json!(r.verbs));
    Value::Object(e)
}

fn aggregated_group(g: &GroupDef) -> Value {
    let mut metadata = serde_json::Map::new();
    metadata.insert("creationTimestamp".into(), Value::Null);
    if !g.name.is_empty() {
        metadata.insert("name".into(), json!(g.name));
    }
    let versions: Vec<Value> = g
        .versions
        .iter()
        .map(|v| {
            let mut e = serde_json::Map::new();
            e.insert(
                "freshness".into(),
                json!(if v.fresh { "Current" } else { "Stale" }),
            );
            if !v.resources.is_empty() {
                e.insert(
                    "resources".into(),
                    Value::Array(v.resources.iter().map(aggregated_resource).collect()),
                );
            }
            e.insert("version".into(), json!(v.version));
            Value::Object(e)
        })
        .collect();
    json!({"metadata": Value::Object(metadata), "versions": versions})
}

/// Aggregated discovery (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`) of `/api` or
/// `/apis`.
pub(crate) fn aggregated_list<'a>(groups: impl Iterator<Item = &'a GroupDef>) -> Value {
    json!({
        "apiVersion": "apidiscovery.k8s.io/v2",
        "items": groups.map(aggregated_group).collect::<Vec<_>>(),
        "kind": "APIGroupDiscoveryList",
        "metadata": {},
    })
}

/// True when an `Accept` header asks for aggregated discovery v2 as JSON (the only form this
/// server offers; a client that accepts only v2beta1 or protobuf gets the legacy document).
pub(crate) fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|media| {
        let mut parts = media.split(';').map(str::trim);
        let base = parts.next().unwrap_or_default();
        if !base.eq_ignore_ascii_case("application/json") {
            return false;
        }
        let (mut g, mut v, mut as_) = (false, false, false);
        for p in parts {
            match p.split_once('=') {
                Some(("g", "apidiscovery.k8s.io")) => g = true,
                Some(("v", "v2")) => v = true,
                Some(("as", "APIGroupDiscoveryList")) => as_ = true,
                _ => {}
            }
        }
        g && v && as_
    })
}

/// `/version`: the server claims the release the recorded discovery documents come from.
pub(crate) fn version_doc() -> Value {
    json!({
        "major": "1",
        "minor": "31",
        "gitVersion": "v1.31.0",
        "gitCommit": "9edcffcde5595e8a5b1a35f88c421764e575afce",
        "gitTreeState": "clean",
        "buildDate": "2024-08-13T07:28:49Z",
        "goVersion": "go1.22.5",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_priority() {
        let mut v = vec!["v1alpha1", "v2", "v1beta1", "v1", "foo", "v1beta2", "v10"];
        v.sort_by(|a, b| version_priority_cmp(a, b));
        assert_eq!(
            v,
            vec!["v10", "v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]
        );
    }

    #[test]
    fn accept_negotiation() {
        assert!(wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(!wants_aggregated("application/json"));
        assert!(!wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
        ));
    }

    #[test]
    fn storage_hash_matches_recorded() {
        // From the recorded apps/v1 document.
        assert_eq!(
            storage_version_hash("apps", "v1", "Deployment"),
            "8aSe+NMegvE="
        );
    }

    #[test]
    fn aggregated_round_trips_to_the_recorded_document() {
        let apis = BuiltinApis::load().unwrap();
        let derived = aggregated_list(apis.groups.iter());
        let recorded: Value = serde_json::from_str(fixtures::AGGREGATED_V2).unwrap();
        assert_eq!(derived, recorded);
    }

    #[test]
    fn core_round_trips_to_the_recorded_document() {
        let apis = BuiltinApis::load().unwrap();
        let derived = legacy_resource_list("", &apis.core.versions[0]);
        let recorded: Value = serde_json::from_str(fixtures::API_V1).unwrap();
        assert_eq!(derived, recorded);
    }
}
