//! What a snapshot could not read from the cluster, and why: a whole group, one resource,
//! or one object. Discovery and listing report them; the manifest keeps them.

use serde::{Deserialize, Serialize};

/// Something a snapshot could not read, and why. Nothing is skipped silently.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Skipped {
    pub group: String,
    pub version: Option<String>,
    /// `None` when the whole group was skipped.
    pub resource: Option<String>,
    pub namespace: Option<String>,
    /// One object left out (its namespace or name cannot be a key at the destination).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    /// The HTTP status, when the server answered.
    pub code: Option<u16>,
    pub reason: String,
}

impl Skipped {
    /// What was skipped, without an object's name: a metric label must stay within the
    /// number of resource types, and a name may say more than an operator wants in metrics.
    pub fn resource_label(&self) -> String {
        Skipped {
            name: None,
            ..self.clone()
        }
        .what()
    }

    /// A short, stable reason for metrics and alerts; the full one is in `reason`.
    pub fn reason_code(&self) -> &'static str {
        match (self.code, &self.name) {
            (None, Some(_)) => "unsafe_name",
            (Some(401), _) => "unauthorized",
            (Some(403), _) => "forbidden",
            (Some(404), _) => "not_found",
            (Some(429), _) => "throttled",
            (Some(503), _) => "unavailable",
            (Some(code), _) if code >= 500 => "server_error",
            (Some(_), _) => "client_error",
            (None, None) => "error",
        }
    }

    /// `deployments.apps`, `configmaps`, or `metrics.k8s.io/v1beta1` for a whole group; one
    /// object is `configmaps <namespace>/<name>`.
    pub fn what(&self) -> String {
        if let (Some(resource), Some(name)) = (&self.resource, &self.name) {
            let qualified = match self.group.as_str() {
                "" => resource.clone(),
                group => format!("{resource}.{group}"),
            };
            return match &self.namespace {
                Some(ns) => format!("{qualified} {ns:?}/{name:?}"),
                None => format!("{qualified} {name:?}"),
            };
        }
        match (&self.resource, self.group.as_str()) {
            (Some(r), "") => r.clone(),
            (Some(r), g) => format!("{r}.{g}"),
            (None, g) => match &self.version {
                Some(v) if g.is_empty() => v.clone(),
                Some(v) => format!("{g}/{v}"),
                None => g.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skipped(code: Option<u16>, name: Option<&str>) -> Skipped {
        Skipped {
            group: "apps".into(),
            version: Some("v1".into()),
            resource: Some("deployments".into()),
            namespace: Some("team".into()),
            name: name.map(str::to_string),
            code,
            reason: "why".into(),
        }
    }

    #[test]
    fn metric_labels_leave_out_object_names_and_stay_few() {
        let one = skipped(None, Some("a name with spaces"));
        assert_eq!(one.resource_label(), "deployments.apps");
        assert_eq!(one.reason_code(), "unsafe_name");
        assert_eq!(skipped(Some(403), None).reason_code(), "forbidden");
        assert_eq!(skipped(Some(503), None).reason_code(), "unavailable");
        assert_eq!(skipped(Some(500), None).reason_code(), "server_error");
        assert_eq!(skipped(None, None).reason_code(), "error");
    }
}
