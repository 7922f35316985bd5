//! Which cluster this is: the uid of its `kube-system` namespace, which every cluster has and
//! which lives as long as the cluster. The repository records it to keep one cluster per
//! folder.

use serde::Deserialize;

use super::api::{Api, ApiError};

/// The namespace whose uid names the cluster: every cluster has it, and it is never deleted.
const IDENTITY_NAMESPACE: &str = "kube-system";

/// The uid of the cluster's `kube-system` namespace, read with a list narrowed to its name
/// (the service account may list, not get); `None` when the server has no such namespace or
/// may not be asked (then no check is possible, and none is made).
pub async fn kube_system_uid(api: &Api) -> Result<Option<String>, ApiError> {
    #[derive(Deserialize)]
    struct Namespaces {
        items: Vec<Namespace>,
    }
    #[derive(Deserialize)]
    struct Namespace {
        metadata: Metadata,
    }
    #[derive(Deserialize)]
    struct Metadata {
        uid: Option<String>,
    }
    let path = super::ResourceType::namespaces().named_list_path(None, IDENTITY_NAMESPACE);
    let body = match api.get(&path, "application/json").await {
        Ok(body) => body,
        Err(ApiError::Status { code: 403, .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(serde_json::from_slice::<Namespaces>(&body)
        .ok()
        .and_then(|list| list.items.into_iter().next())
        .and_then(|ns| ns.metadata.uid)
        .filter(|uid| !uid.is_empty()))
}
