//! Which resources to read: every group and version the API server reports, at each group's
//! preferred version, resources that support `list`, no subresources. Discovery runs group
//! by group, so one failing group (an aggregated API whose backend is down answers 503) is
//! reported and skipped instead of failing the whole snapshot. Aggregated discovery (one
//! request for all groups) is used when the server offers it; legacy discovery otherwise.

use serde::{Deserialize, Serialize};

use super::api::{Api, ApiError};
use super::manifest::Skipped;

const JSON: &str = "application/json";
const AGGREGATED: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";

/// One listable resource at its group's preferred version.
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

    /// The path of one object.
    pub fn object_path(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}/{name}", self.collection_path(namespace))
    }
}

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
    group: Option<String>,
    version: Option<String>,
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

/// `Ok(None)` when the server does not offer aggregated discovery.
async fn discover_aggregated(api: &Api) -> Result<Option<Discovered>, DiscoveryError> {
    let mut found = Discovered::default();
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
        for group in list.items {
            // Versions are listed in order of preference.
            let Some(preferred) = group.versions.into_iter().next() else {
                continue;
            };
            let name = group.metadata.name;
            if preferred.freshness.as_deref() == Some("Stale") {
                found.skipped.push(Skipped {
                    group: name.clone(),
                    version: Some(preferred.version.clone()),
                    resource: None,
                    namespace: None,
                    code: Some(503),
                    reason: "discovery for this group is stale: its API service is unavailable"
                        .to_string(),
                });
                continue;
            }
            for r in preferred.resources {
                if !r.verbs.iter().any(|v| v == "list") || r.resource.contains('/') {
                    continue;
                }
                found.resources.push(ResourceType {
                    group: name.clone(),
                    version: preferred.version.clone(),
                    kind: r.response_kind.map(|k| k.kind).unwrap_or_default(),
                    resource: r.resource,
                    namespaced: r.scope == "Namespaced",
                });
            }
        }
    }
    found.resources.sort();
    Ok(Some(found))
}

async fn discover_legacy(api: &Api) -> Result<Discovered, DiscoveryError> {
    let fatal = |path: &str| {
        let path = path.to_string();
        move |source| DiscoveryError { path, source }
    };
    let mut found = Discovered::default();

    let body = api.get("/api", JSON).await.map_err(fatal("/api"))?;
    let core: ApiVersions = parse("/api", &body).map_err(fatal("/api"))?;
    let mut groups: Vec<(String, String)> = Vec::new();
    if let Some(version) = core.versions.first() {
        groups.push((String::new(), version.clone()));
    }
    let body = api.get("/apis", JSON).await.map_err(fatal("/apis"))?;
    let list: ApiGroupList = parse("/apis", &body).map_err(fatal("/apis"))?;
    if list.kind != "APIGroupList" && !list.kind.is_empty() {
        return Err(DiscoveryError {
            path: "/apis".to_string(),
            source: ApiError::Decode(format!("expected an APIGroupList, got {}", list.kind)),
        });
    }
    for group in list.groups {
        let version = group
            .preferred_version
            .or_else(|| group.versions.first().cloned())
            .map(|v| v.version);
        if let Some(version) = version {
            groups.push((group.name, version));
        }
    }

    for (group, version) in groups {
        let path = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let resources: ApiResourceList = match api.get(&path, JSON).await {
            Ok(body) => match parse(&path, &body) {
                Ok(list) => list,
                Err(e) => {
                    found
                        .skipped
                        .push(skipped_group(&group, Some(&version), &e));
                    continue;
                }
            },
            Err(e) => {
                tracing::warn!(group = %group, version = %version, error = %e, "skipping API group");
                found
                    .skipped
                    .push(skipped_group(&group, Some(&version), &e));
                continue;
            }
        };
        for r in resources.resources {
            if !r.verbs.iter().any(|v| v == "list") || r.name.contains('/') {
                continue;
            }
            found.resources.push(ResourceType {
                group: r.group.unwrap_or_else(|| group.clone()),
                version: r.version.unwrap_or_else(|| version.clone()),
                kind: r.kind,
                resource: r.name,
                namespaced: r.namespaced,
            });
        }
    }
    found.resources.sort();
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
}
