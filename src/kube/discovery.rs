//! Which resources to read: every resource of every version the API server serves, read once,
//! at the most preferred version of its group that serves it (a resource is its group and
//! plural: `monitoring.coreos.com` may prefer `v1` and serve `alertmanagerconfigs` at
//! `v1alpha1` only; `autoscaling` serves `horizontalpodautoscalers` at `v2` and `v1`, the
//! same objects twice). Only resources that support `list`, no subresources.
//!
//! Discovery runs group version by group version, so one that fails (an aggregated API whose
//! backend is down answers 503, or is listed as stale) is reported in `skipped` instead of
//! failing the whole snapshot, and costs only the resources no other version serves: those
//! are read at the next version that does. Aggregated discovery (one request for all groups)
//! is used when the server offers it; legacy discovery otherwise.
//!
//! Discovery never decides what the rules leave out; it reports what the server serves.

use std::collections::HashSet;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::api::{Api, ApiError};
use super::skipped::Skipped;

const JSON: &str = "application/json";
const AGGREGATED: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";

/// One listable resource, at the version it is read at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResourceType {
    /// `""` for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    /// The plural resource name, e.g. `deployments`.
    pub resource: String,
    pub namespaced: bool,
}

impl ResourceType {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments` for the core group's resources, `deployments.apps` otherwise; the form
    /// users write in include/exclude rules (as `kubectl get deployments.apps`).
    pub fn qualified_name(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    /// Whether `pattern` names this resource, the way users write it, the same in
    /// `includeResources`/`excludeResources` and `--resource`: `deployments.apps` (plural and
    /// group), `*.metrics.k8s.io` (every resource of a group), or a plural or kind alone
    /// (`deployments`, `Deployment`, any case for the kind). A name alone means the core
    /// group's resource when the core group has one of that name, as kubectl resolves it,
    /// else that resource in every group: `pods` is never `pods.metrics.k8s.io`, and `events`
    /// never a custom resource that happens to share the plural.
    pub fn is_named_by(&self, pattern: &str) -> bool {
        if let Some(group) = pattern.strip_prefix("*.") {
            return self.group == group;
        }
        if pattern == self.qualified_name() {
            return true;
        }
        let names = |plural: &str, kind: &str| {
            plural == pattern || (!kind.is_empty() && kind.eq_ignore_ascii_case(pattern))
        };
        if !names(&self.resource, &self.kind) {
            return false;
        }
        self.group.is_empty() || !CORE_RESOURCES.iter().any(|(p, k)| names(p, k))
    }

    /// The core group's namespaces, which every cluster serves.
    pub fn namespaces() -> Self {
        ResourceType {
            group: String::new(),
            version: "v1".to_string(),
            kind: "Namespace".to_string(),
            resource: "namespaces".to_string(),
            namespaced: false,
        }
    }

    /// The collection path, cluster-wide or in one namespace.
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        let base = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match namespace {
            Some(ns) => format!("{base}/namespaces/{ns}/{}", self.resource),
            None => format!("{base}/{}", self.resource),
        }
    }

    /// A list of this resource in `namespace` narrowed to the object called `name` (a
    /// `metadata.name` field selector, which every resource supports): how one object is read
    /// by a client that may list but not get.
    pub fn named_list_path(&self, namespace: Option<&str>, name: &str) -> String {
        let selector = format!("metadata.name={name}");
        format!(
            "{}?fieldSelector={}",
            self.collection_path(namespace),
            super::api::encode_query(&selector)
        )
    }

    /// One page of a list of this resource in `namespace` (`None`: all): at most `limit`
    /// items, narrowed by a label selector where given, from a continue token where given.
    pub fn list_page_path(
        &self,
        namespace: Option<&str>,
        limit: u32,
        label_selector: Option<&str>,
        continue_token: Option<&str>,
    ) -> String {
        let mut path = format!("{}?limit={}", self.collection_path(namespace), limit.max(1));
        if let Some(selector) = label_selector {
            path.push_str("&labelSelector=");
            path.push_str(&super::api::encode_query(selector));
        }
        if let Some(token) = continue_token {
            path.push_str("&continue=");
            path.push_str(&super::api::encode_query(token));
        }
        path
    }

    /// The path of one object.
    pub fn object_path(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}/{name}", self.collection_path(namespace))
    }
}

/// The core group's resources (`/api/v1`, plural and kind): a set Kubernetes keeps fixed, which
/// custom resources can never join.
const CORE_RESOURCES: &[(&str, &str)] = &[
    ("bindings", "Binding"),
    ("componentstatuses", "ComponentStatus"),
    ("configmaps", "ConfigMap"),
    ("endpoints", "Endpoints"),
    ("events", "Event"),
    ("limitranges", "LimitRange"),
    ("namespaces", "Namespace"),
    ("nodes", "Node"),
    ("persistentvolumeclaims", "PersistentVolumeClaim"),
    ("persistentvolumes", "PersistentVolume"),
    ("pods", "Pod"),
    ("podtemplates", "PodTemplate"),
    ("replicationcontrollers", "ReplicationController"),
    ("resourcequotas", "ResourceQuota"),
    ("secrets", "Secret"),
    ("serviceaccounts", "ServiceAccount"),
    ("services", "Service"),
];

/// What discovery found, and what it could not read.
#[derive(Debug, Default, Clone)]
pub struct Discovered {
    pub resources: Vec<ResourceType>,
    pub skipped: Vec<Skipped>,
}

// --- legacy discovery documents -------------------------------------------------------------

#[derive(Deserialize)]
struct ApiGroupList {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    groups: Vec<ApiGroup>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiGroup {
    name: String,
    #[serde(default)]
    versions: Vec<GroupVersion>,
    preferred_version: Option<GroupVersion>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct GroupVersion {
    version: String,
}

#[derive(Deserialize)]
struct ApiVersions {
    #[serde(default)]
    versions: Vec<String>,
}

#[derive(Deserialize)]
struct ApiResourceList {
    #[serde(default)]
    resources: Vec<ApiResource>,
}

#[derive(Deserialize)]
struct ApiResource {
    name: String,
    kind: String,
    #[serde(default)]
    namespaced: bool,
    #[serde(default)]
    verbs: Vec<String>,
}

// --- aggregated discovery (apidiscovery.k8s.io/v2) --------------------------------------------

#[derive(Deserialize)]
struct GroupDiscoveryList {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    items: Vec<GroupDiscovery>,
}

#[derive(Deserialize)]
struct GroupDiscovery {
    #[serde(default)]
    metadata: NameMeta,
    #[serde(default)]
    versions: Vec<VersionDiscovery>,
}

#[derive(Deserialize, Default)]
struct NameMeta {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct VersionDiscovery {
    version: String,
    #[serde(default)]
    resources: Vec<ResourceDiscovery>,
    #[serde(default)]
    freshness: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceDiscovery {
    resource: String,
    response_kind: Option<Gvk>,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    verbs: Vec<String>,
}

#[derive(Deserialize)]
struct Gvk {
    #[serde(default)]
    kind: String,
}

/// An error that stops discovery as a whole: the server's root documents are unreadable.
#[derive(Debug, thiserror::Error)]
#[error("API discovery failed at {path}: {source}")]
pub struct DiscoveryError {
    pub path: String,
    #[source]
    pub source: ApiError,
}

fn parse<T: for<'de> Deserialize<'de>>(path: &str, body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::Decode(format!("{path}: {e}")))
}

fn skipped_group(group: &str, version: Option<&str>, err: &ApiError) -> Skipped {
    Skipped {
        group: group.to_string(),
        version: version.map(str::to_string),
        resource: None,
        namespace: None,
        name: None,
        code: err.code(),
        reason: err.to_string(),
    }
}

/// Discovers every listable resource, aggregated discovery first, legacy otherwise.
pub async fn discover(api: &Api) -> Result<Discovered, DiscoveryError> {
    match discover_aggregated(api).await {
        Ok(Some(found)) => return Ok(found),
        Ok(None) => {}
        Err(e) => {
            tracing::debug!(error = %e, "aggregated discovery unavailable; using legacy discovery")
        }
    }
    discover_legacy(api).await
}

/// Whether discovery lists this resource as one to read: it can be listed and is no
/// subresource.
fn listable(name: &str, verbs: &[String]) -> bool {
    verbs.iter().any(|v| v == "list") && !name.contains('/')
}

/// Every resource of every served version once, at the most preferred version that serves
/// it. `candidates` holds each group's versions in order of preference (groups in any
/// order); a resource is identified by its group and plural, so the first version that
/// lists it wins and later ones are the same objects served again.
fn union(candidates: Vec<ResourceType>) -> Vec<ResourceType> {
    let mut seen = HashSet::new();
    let mut resources: Vec<ResourceType> = candidates
        .into_iter()
        .filter(|rt| seen.insert((rt.group.clone(), rt.resource.clone())))
        .collect();
    resources.sort();
    resources
}

/// The candidates and skipped versions of aggregated discovery documents.
fn from_aggregated(groups: Vec<GroupDiscovery>, found: &mut Discovered) -> Vec<ResourceType> {
    let mut candidates = Vec::new();
    for group in groups {
        let name = group.metadata.name;
        // Versions are listed in order of preference.
        for version in group.versions {
            if version.freshness.as_deref() == Some("Stale") {
                found.skipped.push(Skipped {
                    group: name.clone(),
                    version: Some(version.version.clone()),
                    resource: None,
                    namespace: None,
                    name: None,
                    code: Some(503),
                    reason: "discovery for this group version is stale: its API service is \
                             unavailable"
                        .to_string(),
                });
                continue;
            }
            for r in version.resources {
                if !listable(&r.resource, &r.verbs) {
                    continue;
                }
                candidates.push(ResourceType {
                    group: name.clone(),
                    version: version.version.clone(),
                    kind: r.response_kind.map(|k| k.kind).unwrap_or_default(),
                    resource: r.resource,
                    namespaced: r.scope == "Namespaced",
                });
            }
        }
    }
    candidates
}

/// Aggregated discovery (apidiscovery.k8s.io/v2): `/api` and `/apis`, two requests for every
/// group and version. `Ok(None)` when the server does not offer it.
pub async fn discover_aggregated(api: &Api) -> Result<Option<Discovered>, DiscoveryError> {
    let mut found = Discovered::default();
    let mut candidates = Vec::new();
    for path in ["/api", "/apis"] {
        let body = api
            .get(path, AGGREGATED)
            .await
            .map_err(|source| DiscoveryError {
                path: path.to_string(),
                source,
            })?;
        let list: GroupDiscoveryList = parse(path, &body).map_err(|source| DiscoveryError {
            path: path.to_string(),
            source,
        })?;
        if list.kind != "APIGroupDiscoveryList" {
            return Ok(None);
        }
        candidates.extend(from_aggregated(list.items, &mut found));
    }
    found.resources = union(candidates);
    found.skipped.sort();
    Ok(Some(found))
}

/// Group versions whose resource lists are read at the same time in legacy discovery.
const LEGACY_CONCURRENCY: usize = 8;

/// Every group version of legacy discovery documents, each group's in order of preference:
/// the preferred version first, then the others as listed.
fn legacy_group_versions(core: ApiVersions, list: ApiGroupList) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = core
        .versions
        .into_iter()
        .map(|v| (String::new(), v))
        .collect();
    for group in list.groups {
        let preferred = group
            .preferred_version
            .map(|v| v.version)
            .or_else(|| group.versions.first().map(|v| v.version.clone()));
        let Some(preferred) = preferred else {
            continue;
        };
        let others: Vec<String> = group
            .versions
            .into_iter()
            .map(|v| v.version)
            .filter(|v| *v != preferred)
            .collect();
        out.push((group.name.clone(), preferred));
        out.extend(others.into_iter().map(|v| (group.name.clone(), v)));
    }
    out
}

/// Legacy discovery: `/api`, `/apis`, then the resource list of every group version.
pub async fn discover_legacy(api: &Api) -> Result<Discovered, DiscoveryError> {
    let fatal = |path: &str| {
        let path = path.to_string();
        move |source| DiscoveryError { path, source }
    };
    let body = api.get("/api", JSON).await.map_err(fatal("/api"))?;
    let core: ApiVersions = parse("/api", &body).map_err(fatal("/api"))?;
    let body = api.get("/apis", JSON).await.map_err(fatal("/apis"))?;
    let list: ApiGroupList = parse("/apis", &body).map_err(fatal("/apis"))?;
    if list.kind != "APIGroupList" && !list.kind.is_empty() {
        return Err(DiscoveryError {
            path: "/apis".to_string(),
            source: ApiError::Decode(format!("expected an APIGroupList, got {}", list.kind)),
        });
    }

    // `buffered` keeps the order, so each group's versions stay in order of preference.
    let lists: Vec<(String, String, Result<ApiResourceList, ApiError>)> =
        futures::stream::iter(legacy_group_versions(core, list))
            .map(|(group, version)| async move {
                let path = if group.is_empty() {
                    format!("/api/{version}")
                } else {
                    format!("/apis/{group}/{version}")
                };
                let list = match api.get(&path, JSON).await {
                    Ok(body) => parse(&path, &body),
                    Err(e) => Err(e),
                };
                (group, version, list)
            })
            .buffered(LEGACY_CONCURRENCY)
            .collect()
            .await;

    let mut found = Discovered::default();
    let mut candidates = Vec::new();
    for (group, version, list) in lists {
        let resources = match list {
            Ok(list) => list.resources,
            Err(e) => {
                tracing::warn!(group = %group, version = %version, error = %e, "skipping API group version");
                found
                    .skipped
                    .push(skipped_group(&group, Some(&version), &e));
                continue;
            }
        };
        // The path's group and version: an entry's own `group`/`version` name the kind it
        // returns (a subresource's, say), not where it is served.
        for r in resources {
            if !listable(&r.name, &r.verbs) {
                continue;
            }
            candidates.push(ResourceType {
                group: group.clone(),
                version: version.clone(),
                kind: r.kind,
                resource: r.name,
                namespaced: r.namespaced,
            });
        }
    }
    found.resources = union(candidates);
    found.skipped.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        let deploy = ResourceType {
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            resource: "deployments".into(),
            namespaced: true,
        };
        assert_eq!(deploy.api_version(), "apps/v1");
        assert_eq!(deploy.qualified_name(), "deployments.apps");
        assert_eq!(deploy.collection_path(None), "/apis/apps/v1/deployments");
        assert_eq!(
            deploy.collection_path(Some("x")),
            "/apis/apps/v1/namespaces/x/deployments"
        );
        let cm = ResourceType {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            resource: "configmaps".into(),
            namespaced: true,
        };
        assert_eq!(cm.api_version(), "v1");
        assert_eq!(cm.qualified_name(), "configmaps");
        assert_eq!(cm.collection_path(None), "/api/v1/configmaps");
    }

    fn rt(group: &str, version: &str, resource: &str, kind: &str) -> ResourceType {
        ResourceType {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            resource: resource.into(),
            namespaced: true,
        }
    }

    /// (qualified name, version) of each resource, sorted by name.
    fn read_at(resources: &[ResourceType]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = resources
            .iter()
            .map(|r| (r.qualified_name(), r.version.clone()))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn each_resource_is_read_once_at_the_most_preferred_version_that_serves_it() {
        let resources = union(vec![
            // monitoring.coreos.com prefers v1, which lacks alertmanagerconfigs.
            rt(
                "monitoring.coreos.com",
                "v1",
                "servicemonitors",
                "ServiceMonitor",
            ),
            rt("monitoring.coreos.com", "v1", "prometheuses", "Prometheus"),
            rt(
                "monitoring.coreos.com",
                "v1alpha1",
                "alertmanagerconfigs",
                "AlertmanagerConfig",
            ),
            rt(
                "monitoring.coreos.com",
                "v1alpha1",
                "servicemonitors",
                "ServiceMonitor",
            ),
            // Served by two older versions: the newer of them.
            rt("networking.k8s.io", "v1", "ingresses", "Ingress"),
            rt("networking.k8s.io", "v1beta1", "ipaddresses", "IPAddress"),
            rt("networking.k8s.io", "v1alpha1", "ipaddresses", "IPAddress"),
            rt(
                "autoscaling",
                "v2",
                "horizontalpodautoscalers",
                "HorizontalPodAutoscaler",
            ),
            rt(
                "autoscaling",
                "v1",
                "horizontalpodautoscalers",
                "HorizontalPodAutoscaler",
            ),
            // The same plural in another group is another resource.
            rt("", "v1", "events", "Event"),
            rt("events.k8s.io", "v1", "events", "Event"),
        ]);
        let at = |name: &str, version: &str| (name.to_string(), version.to_string());
        assert_eq!(
            read_at(&resources),
            vec![
                at("alertmanagerconfigs.monitoring.coreos.com", "v1alpha1"),
                at("events", "v1"),
                at("events.events.k8s.io", "v1"),
                at("horizontalpodautoscalers.autoscaling", "v2"),
                at("ingresses.networking.k8s.io", "v1"),
                at("ipaddresses.networking.k8s.io", "v1beta1"),
                at("prometheuses.monitoring.coreos.com", "v1"),
                at("servicemonitors.monitoring.coreos.com", "v1"),
            ]
        );
    }

    #[test]
    fn aggregated_discovery_reads_every_version_and_reports_a_stale_one() {
        let doc = serde_json::json!({
            "kind": "APIGroupDiscoveryList",
            "items": [{
                "metadata": {"name": "monitoring.coreos.com"},
                "versions": [
                    {"version": "v1", "resources": [
                        {"resource": "servicemonitors", "responseKind": {"kind": "ServiceMonitor"},
                         "scope": "Namespaced", "verbs": ["get", "list"]},
                        {"resource": "servicemonitors/status", "responseKind": {"kind": "ServiceMonitor"},
                         "scope": "Namespaced", "verbs": ["get", "list"]}]},
                    {"version": "v1beta1", "freshness": "Stale", "resources": [
                        {"resource": "thanosrulers", "responseKind": {"kind": "ThanosRuler"},
                         "scope": "Namespaced", "verbs": ["get", "list"]}]},
                    {"version": "v1alpha1", "resources": [
                        {"resource": "alertmanagerconfigs", "responseKind": {"kind": "AlertmanagerConfig"},
                         "scope": "Namespaced", "verbs": ["get", "list"]},
                        {"resource": "servicemonitors", "responseKind": {"kind": "ServiceMonitor"},
                         "scope": "Namespaced", "verbs": ["get", "list"]},
                        {"resource": "reviews", "responseKind": {"kind": "Review"},
                         "scope": "Namespaced", "verbs": ["create"]}]}
                ]
            }]
        });
        let list: GroupDiscoveryList = serde_json::from_value(doc).unwrap();
        let mut found = Discovered::default();
        let resources = union(from_aggregated(list.items, &mut found));
        assert_eq!(
            read_at(&resources),
            vec![
                (
                    "alertmanagerconfigs.monitoring.coreos.com".to_string(),
                    "v1alpha1".to_string()
                ),
                (
                    "servicemonitors.monitoring.coreos.com".to_string(),
                    "v1".to_string()
                ),
            ]
        );
        assert!(
            resources
                .iter()
                .any(|r| r.resource == "alertmanagerconfigs" && r.kind == "AlertmanagerConfig")
        );
        let skipped: Vec<(String, Option<u16>)> =
            found.skipped.iter().map(|s| (s.what(), s.code)).collect();
        assert_eq!(
            skipped,
            vec![("monitoring.coreos.com/v1beta1".to_string(), Some(503))]
        );
    }

    #[test]
    fn legacy_discovery_asks_for_every_version_the_preferred_one_first() {
        let core: ApiVersions =
            serde_json::from_value(serde_json::json!({"versions": ["v1"]})).unwrap();
        let list: ApiGroupList = serde_json::from_value(serde_json::json!({
            "kind": "APIGroupList",
            "groups": [
                {"name": "autoscaling", "preferredVersion": {"version": "v2"},
                 "versions": [{"version": "v1"}, {"version": "v2"}]},
                {"name": "batch", "versions": [{"version": "v1"}]},
                {"name": "empty", "versions": []}
            ]
        }))
        .unwrap();
        let versions = legacy_group_versions(core, list);
        let pair = |g: &str, v: &str| (g.to_string(), v.to_string());
        assert_eq!(
            versions,
            vec![
                pair("", "v1"),
                pair("autoscaling", "v2"),
                pair("autoscaling", "v1"),
                pair("batch", "v1"),
            ]
        );
    }
}
