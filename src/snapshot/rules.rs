//! What a snapshot keeps and how objects are cleaned so that they can be created in a fresh
//! cluster. Every rule is configurable; the defaults follow DESIGN.md: strip what the server
//! assigns, leave out what controllers or the cluster recreate by themselves.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::kube::ResourceType;

/// The snapshot rules (the `rules:` part of the configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Rules {
    /// Remove `status` from every object.
    pub strip_status: bool,
    /// `metadata` fields the server assigns, removed from every object.
    pub strip_metadata: Vec<String>,
    /// More fields to remove, as JSON pointers (`/metadata/annotations/example.com~1x`).
    pub strip_fields: Vec<String>,
    /// Remove Service `spec.clusterIP`/`clusterIPs` (kept for headless services).
    pub strip_service_cluster_ip: bool,
    /// Remove the PVC binding annotations `pv.kubernetes.io/bind-completed` and
    /// `pv.kubernetes.io/bound-by-controller`.
    pub strip_pvc_binding: bool,
    /// Remove PV `spec.claimRef.uid`/`resourceVersion`.
    pub strip_pv_claim_ref_identity: bool,
    /// Remove what the API server generates from an object's identity or from the old
    /// cluster and rejects in a create (see [`strip_generated_identity`]).
    pub strip_generated_identity: bool,
    /// Only these resources (`configmaps`, `deployments.apps`); empty means all.
    pub include_resources: Vec<String>,
    /// Resources left out (`events`, `leases.coordination.k8s.io`, or a group: `*.metrics.k8s.io`).
    pub exclude_resources: Vec<String>,
    /// Only these namespaces; empty means all. Cluster-scoped objects are always kept.
    pub include_namespaces: Vec<String>,
    pub exclude_namespaces: Vec<String>,
    /// A label selector sent to the API server with every list (`app=web,tier!=cache`).
    pub label_selector: Option<String>,
    /// Keep objects that a controller owns (a `controller: true` ownerReference).
    pub keep_controller_owned: bool,
    /// Keep Secrets of type `kubernetes.io/service-account-token`.
    pub keep_service_account_tokens: bool,
}

/// `metadata` fields the server assigns: an old cluster's values make a create in another
/// cluster fail or mislead.
pub const SERVER_METADATA: [&str; 8] = [
    "uid",
    "resourceVersion",
    "selfLink",
    "creationTimestamp",
    "generation",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

impl Default for Rules {
    fn default() -> Self {
        Self {
            strip_status: true,
            strip_metadata: SERVER_METADATA.map(String::from).to_vec(),
            strip_fields: Vec::new(),
            strip_service_cluster_ip: true,
            strip_pvc_binding: true,
            strip_pv_claim_ref_identity: true,
            strip_generated_identity: true,
            include_resources: Vec::new(),
            // History, what controllers derive from other objects, what running components
            // hold, and what the server computes when asked (metrics, component statuses:
            // nobody can create them, so they have no place in a layout made for creates).
            exclude_resources: [
                "events",
                "events.events.k8s.io",
                "endpoints",
                "endpointslices.discovery.k8s.io",
                "leases.coordination.k8s.io",
                "componentstatuses",
                "*.metrics.k8s.io",
            ]
            .map(String::from)
            .to_vec(),
            include_namespaces: Vec::new(),
            exclude_namespaces: Vec::new(),
            label_selector: None,
            keep_controller_owned: false,
            keep_service_account_tokens: false,
        }
    }
}

/// Why an object was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exclusion {
    Namespace,
    ControllerOwned,
    ServiceAccountToken,
}

impl Rules {
    /// Whether a resource type is read at all.
    pub fn wants_resource(&self, rt: &ResourceType) -> bool {
        let included = self.include_resources.is_empty()
            || self.include_resources.iter().any(|p| rt.is_named_by(p));
        included && !self.exclude_resources.iter().any(|p| rt.is_named_by(p))
    }

    /// Whether no resource of `group` is read whatever it serves (a `*.<group>` exclusion):
    /// a group left out on purpose is not missed when its discovery fails.
    pub fn excludes_group(&self, group: &str) -> bool {
        self.exclude_resources
            .iter()
            .any(|p| p.strip_prefix("*.") == Some(group))
    }

    pub fn wants_namespace(&self, namespace: &str) -> bool {
        let included = self.include_namespaces.is_empty()
            || self.include_namespaces.iter().any(|n| n == namespace);
        included && !self.exclude_namespaces.iter().any(|n| n == namespace)
    }

    /// Decides whether to keep `object` (an item of a list of `rt`) and, if so, cleans it in
    /// place: sets `apiVersion`/`kind` (list items of built-in kinds come without them) and
    /// removes what the rules strip.
    pub fn apply(&self, rt: &ResourceType, object: &mut Value) -> Result<(), Exclusion> {
        let Some(map) = object.as_object_mut() else {
            return Ok(());
        };
        if rt.namespaced {
            let namespace = map
                .get("metadata")
                .and_then(|m| m.get("namespace"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if !self.wants_namespace(namespace) {
                return Err(Exclusion::Namespace);
            }
        }
        if !self.keep_controller_owned && is_controller_owned(map) {
            return Err(Exclusion::ControllerOwned);
        }
        if !self.keep_service_account_tokens
            && rt.group.is_empty()
            && rt.resource == "secrets"
            && map.get("type").and_then(Value::as_str)
                == Some("kubernetes.io/service-account-token")
        {
            return Err(Exclusion::ServiceAccountToken);
        }

        map.entry("apiVersion")
            .or_insert_with(|| Value::String(rt.api_version()));
        map.entry("kind")
            .or_insert_with(|| Value::String(rt.kind.clone()));
        if self.strip_status {
            map.remove("status");
        }
        if let Some(Value::Object(metadata)) = map.get_mut("metadata") {
            for field in &self.strip_metadata {
                metadata.remove(field);
            }
        }
        match (rt.group.as_str(), rt.resource.as_str()) {
            ("", "services") if self.strip_service_cluster_ip => strip_cluster_ip(map),
            ("", "persistentvolumeclaims") if self.strip_pvc_binding => {
                if let Some(Value::Object(annotations)) = map
                    .get_mut("metadata")
                    .and_then(|m| m.get_mut("annotations"))
                {
                    annotations.remove("pv.kubernetes.io/bind-completed");
                    annotations.remove("pv.kubernetes.io/bound-by-controller");
                    if annotations.is_empty()
                        && let Some(Value::Object(metadata)) = map.get_mut("metadata")
                    {
                        metadata.remove("annotations");
                    }
                }
            }
            ("", "persistentvolumes") if self.strip_pv_claim_ref_identity => {
                if let Some(Value::Object(claim_ref)) =
                    map.get_mut("spec").and_then(|s| s.get_mut("claimRef"))
                {
                    claim_ref.remove("uid");
                    claim_ref.remove("resourceVersion");
                }
            }
            _ => {}
        }
        if self.strip_generated_identity {
            strip_generated_identity(&rt.group, &rt.kind, object);
        }
        for pointer in &self.strip_fields {
            remove_pointer(object, pointer);
        }
        Ok(())
    }
}

/// Labels the API server puts on a Job and its pod template from the Job's name and uid
/// (pkg/registry/batch/job/strategy.go, `generateSelector`).
const JOB_GENERATED_LABELS: [&str; 4] = [
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
    "job-name",
    "batch.kubernetes.io/job-name",
];

/// Pod fields the admission plugins compute from the cluster's classes and refuse, in a
/// create, when they differ from what they compute: `priority` and `preemptionPolicy` from
/// the PriorityClass (plugin/pkg/admission/priority), `overhead` from the RuntimeClass
/// (plugin/pkg/admission/runtimeclass). A fresh cluster computes them again.
const POD_COMPUTED_FIELDS: [&str; 3] = ["priority", "preemptionPolicy", "overhead"];

/// Removes from `object` (of `kind` in `group`) what the API server generated from the
/// object's identity or from the old cluster and answers a create in a fresh cluster with an
/// error for, so that the object can be created as it is (by a restore or by
/// `kubectl create -f`), and gets them generated again:
///
/// - a Job without `manualSelector: true`: `spec.selector` and the labels of
///   [`JOB_GENERATED_LABELS`] on the Job and its pod template. The server selects pods by
///   the Job's uid and refuses any other selector with 422 "`selector` not auto-generated"
///   (pkg/apis/batch/validation, `ValidateGeneratedSelector`).
/// - a Pod: `spec.ephemeralContainers`, which "cannot be set on create"
///   (pkg/apis/core/validation, `ValidatePodCreate`), and [`POD_COMPUTED_FIELDS`].
///
/// Label maps left empty are removed. Other kinds are left as they are.
pub fn strip_generated_identity(group: &str, kind: &str, object: &mut Value) {
    match (group, kind) {
        ("batch", "Job") => {
            let manual = object
                .pointer("/spec/manualSelector")
                .and_then(Value::as_bool)
                == Some(true);
            if manual {
                return;
            }
            if let Some(Value::Object(spec)) = object.get_mut("spec") {
                spec.remove("selector");
            }
            for metadata in ["/metadata", "/spec/template/metadata"] {
                if let Some(Value::Object(metadata)) = object.pointer_mut(metadata) {
                    remove_labels(metadata, &JOB_GENERATED_LABELS);
                }
            }
        }
        ("", "Pod") => {
            if let Some(Value::Object(spec)) = object.get_mut("spec") {
                spec.remove("ephemeralContainers");
                for field in POD_COMPUTED_FIELDS {
                    spec.remove(field);
                }
            }
        }
        _ => {}
    }
}

/// Removes `names` from `metadata.labels`, and the map when nothing is left in it.
fn remove_labels(metadata: &mut serde_json::Map<String, Value>, names: &[&str]) {
    let Some(Value::Object(labels)) = metadata.get_mut("labels") else {
        return;
    };
    for name in names {
        labels.remove(*name);
    }
    if labels.is_empty() {
        metadata.remove("labels");
    }
}

fn is_controller_owned(map: &serde_json::Map<String, Value>) -> bool {
    map.get("metadata")
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        })
}

fn strip_cluster_ip(map: &mut serde_json::Map<String, Value>) {
    let Some(Value::Object(spec)) = map.get_mut("spec") else {
        return;
    };
    if spec.get("clusterIP").and_then(Value::as_str) == Some("None") {
        return;
    }
    spec.remove("clusterIP");
    spec.remove("clusterIPs");
}

/// Checks that `pointer` is a JSON pointer to a field (RFC 6901): it starts with `/`, and
/// every `~` is `~0` (a `~`) or `~1` (a `/`). Says what is wrong otherwise.
pub fn check_pointer(pointer: &str) -> Result<(), String> {
    if !pointer.starts_with('/') {
        return Err(
            "is not a JSON pointer: it must start with `/`, e.g. /metadata/annotations/example.com~1note"
                .to_string(),
        );
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(
                "is not a JSON pointer: `~` must be followed by 0 (for `~`) or 1 (for `/`)"
                    .to_string(),
            );
        }
    }
    Ok(())
}

/// Removes the value at a JSON pointer, if there is one.
fn remove_pointer(value: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    match value.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.remove(&last);
        }
        Some(Value::Array(items)) => {
            if let Ok(i) = last.parse::<usize>()
                && i < items.len()
            {
                items.remove(i);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rt(group: &str, resource: &str, kind: &str) -> ResourceType {
        ResourceType {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            resource: resource.into(),
            namespaced: true,
        }
    }

    #[test]
    fn server_fields_are_stripped_and_type_is_set() {
        let mut cm = json!({
            "metadata": {"name": "a", "namespace": "n", "uid": "u", "resourceVersion": "5",
                         "creationTimestamp": "t", "managedFields": [], "generation": 2,
                         "selfLink": "/x", "labels": {"k": "v"}},
            "data": {"x": "y"},
            "status": {"phase": "x"}
        });
        Rules::default()
            .apply(&rt("", "configmaps", "ConfigMap"), &mut cm)
            .unwrap();
        assert_eq!(
            cm,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "a", "namespace": "n", "labels": {"k": "v"}},
                   "data": {"x": "y"}})
        );
    }

    #[test]
    fn service_cluster_ip_is_removed_unless_headless() {
        let rules = Rules::default();
        let svc = rt("", "services", "Service");
        let mut normal = json!({"metadata": {"name": "a"}, "spec": {"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "ports": []}});
        rules.apply(&svc, &mut normal).unwrap();
        assert_eq!(normal["spec"], json!({"ports": []}));
        let mut headless = json!({"metadata": {"name": "a"}, "spec": {"clusterIP": "None", "clusterIPs": ["None"]}});
        rules.apply(&svc, &mut headless).unwrap();
        assert_eq!(headless["spec"]["clusterIP"], "None");
    }

    #[test]
    fn controller_owned_and_token_secrets_are_left_out_by_default() {
        let rules = Rules::default();
        let mut pod = json!({"metadata": {"name": "p", "ownerReferences": [{"kind": "ReplicaSet", "controller": true}]}});
        assert_eq!(
            rules.apply(&rt("", "pods", "Pod"), &mut pod),
            Err(Exclusion::ControllerOwned)
        );
        let mut token =
            json!({"metadata": {"name": "t"}, "type": "kubernetes.io/service-account-token"});
        assert_eq!(
            rules.apply(&rt("", "secrets", "Secret"), &mut token),
            Err(Exclusion::ServiceAccountToken)
        );
        let keep = Rules {
            keep_controller_owned: true,
            keep_service_account_tokens: true,
            ..Rules::default()
        };
        assert!(keep.apply(&rt("", "pods", "Pod"), &mut pod).is_ok());
        assert!(keep.apply(&rt("", "secrets", "Secret"), &mut token).is_ok());
    }

    #[test]
    fn pvc_and_pv_binding_details_are_removed() {
        let rules = Rules::default();
        let mut pvc = json!({"metadata": {"name": "c", "annotations": {
            "pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes", "keep": "me"}}});
        rules
            .apply(
                &rt("", "persistentvolumeclaims", "PersistentVolumeClaim"),
                &mut pvc,
            )
            .unwrap();
        assert_eq!(pvc["metadata"]["annotations"], json!({"keep": "me"}));
        let mut pv = json!({"metadata": {"name": "v"}, "spec": {"claimRef": {"name": "c", "namespace": "n", "uid": "u", "resourceVersion": "1"}}});
        let mut pv_rt = rt("", "persistentvolumes", "PersistentVolume");
        pv_rt.namespaced = false;
        rules.apply(&pv_rt, &mut pv).unwrap();
        assert_eq!(
            pv["spec"]["claimRef"],
            json!({"name": "c", "namespace": "n"})
        );
    }

    #[test]
    fn extra_fields_resources_and_namespaces() {
        let rules = Rules {
            strip_fields: vec![
                "/metadata/annotations/example.com~1note".into(),
                "/spec/x".into(),
            ],
            exclude_namespaces: vec!["scratch".into()],
            ..Rules::default()
        };
        let mut obj = json!({"metadata": {"name": "a", "namespace": "n", "annotations": {"example.com/note": "x", "y": "z"}}, "spec": {"x": 1, "y": 2}});
        rules
            .apply(&rt("example.com", "widgets", "Widget"), &mut obj)
            .unwrap();
        assert_eq!(obj["metadata"]["annotations"], json!({"y": "z"}));
        assert_eq!(obj["spec"], json!({"y": 2}));
        let mut scratch = json!({"metadata": {"name": "a", "namespace": "scratch"}});
        assert_eq!(
            rules.apply(&rt("", "configmaps", "ConfigMap"), &mut scratch),
            Err(Exclusion::Namespace)
        );
        assert!(!rules.wants_resource(&rt("", "events", "Event")));
        assert!(!rules.wants_resource(&rt("coordination.k8s.io", "leases", "Lease")));
        assert!(!rules.wants_resource(&rt("metrics.k8s.io", "pods", "PodMetrics")));
        assert!(!rules.wants_resource(&rt("", "componentstatuses", "ComponentStatus")));
        assert!(rules.excludes_group("metrics.k8s.io") && !rules.excludes_group("apps"));
        assert!(rules.wants_resource(&rt("apps", "deployments", "Deployment")));
        let only = Rules {
            include_resources: vec!["deployments.apps".into(), "configmaps".into()],
            exclude_resources: vec!["*.metrics.k8s.io".into()],
            ..Rules::default()
        };
        assert!(only.wants_resource(&rt("apps", "deployments", "Deployment")));
        assert!(only.wants_resource(&rt("", "configmaps", "ConfigMap")));
        assert!(!only.wants_resource(&rt("", "secrets", "Secret")));
        assert!(!only.wants_resource(&rt("metrics.k8s.io", "pods", "PodMetrics")));
    }

    /// A resource is named the same way in the rules as in `--resource`: a plural or kind
    /// alone is the core group's resource where it has one, else every group's.
    #[test]
    fn resources_are_named_as_kubectl_resolves_them() {
        let deployments = rt("apps", "deployments", "Deployment");
        let events = rt("", "events", "Event");
        let new_events = rt("events.k8s.io", "events", "Event");
        let custom_events = rt("example.com", "events", "Event");
        let metrics_pods = rt("metrics.k8s.io", "pods", "PodMetrics");
        for pattern in [
            "deployments",
            "Deployment",
            "deployment",
            "deployments.apps",
        ] {
            assert!(deployments.is_named_by(pattern), "{pattern}");
        }
        assert!(!deployments.is_named_by("deployments.extensions"));
        for pattern in ["events", "Event"] {
            assert!(events.is_named_by(pattern));
            assert!(!new_events.is_named_by(pattern) && !custom_events.is_named_by(pattern));
        }
        assert!(new_events.is_named_by("events.events.k8s.io"));
        assert!(!metrics_pods.is_named_by("pods") && metrics_pods.is_named_by("*.metrics.k8s.io"));
        // The rules agree: excluding `deployments` excludes them, as `--resource` selects them.
        let rules = Rules {
            exclude_resources: vec!["deployments".into(), "Secret".into()],
            ..Rules::default()
        };
        assert!(!rules.wants_resource(&deployments));
        assert!(!rules.wants_resource(&rt("", "secrets", "Secret")));
        assert!(rules.wants_resource(&rt("", "configmaps", "ConfigMap")));
    }

    #[test]
    fn a_jobs_generated_selector_and_labels_are_removed_unless_manual() {
        let mut job = json!({
            "metadata": {"name": "j", "labels": {
                "controller-uid": "u", "batch.kubernetes.io/controller-uid": "u",
                "job-name": "j", "batch.kubernetes.io/job-name": "j"}},
            "spec": {
                "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
                "template": {"metadata": {"labels": {
                    "batch.kubernetes.io/controller-uid": "u", "controller-uid": "u",
                    "batch.kubernetes.io/job-name": "j", "job-name": "j", "app": "a"}},
                    "spec": {"containers": []}}
            }
        });
        strip_generated_identity("batch", "Job", &mut job);
        assert_eq!(
            job,
            json!({
                "metadata": {"name": "j"},
                "spec": {"template": {"metadata": {"labels": {"app": "a"}},
                                      "spec": {"containers": []}}}
            }),
            "an emptied label map goes too"
        );

        let manual = json!({
            "metadata": {"name": "m", "labels": {"controller-uid": "u"}},
            "spec": {"manualSelector": true, "selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b", "job-name": "m"}}}}
        });
        let mut kept = manual.clone();
        strip_generated_identity("batch", "Job", &mut kept);
        assert_eq!(kept, manual);

        // A Job of another group is not the batch Job.
        let other = json!({"spec": {"selector": {"matchLabels": {"a": "b"}}}});
        let mut kept = other.clone();
        strip_generated_identity("example.com", "Job", &mut kept);
        assert_eq!(kept, other);
    }

    #[test]
    fn a_pods_ephemeral_containers_and_class_computed_fields_are_removed() {
        let mut pod = json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{"name": "c", "image": "i"}],
                "ephemeralContainers": [{"name": "debugger", "image": "busybox"}],
                "priorityClassName": "high", "priority": 1000, "preemptionPolicy": "Never",
                "runtimeClassName": "kata", "overhead": {"cpu": "250m"},
                "nodeName": "node-1"
            }
        });
        strip_generated_identity("", "Pod", &mut pod);
        assert_eq!(
            pod["spec"],
            json!({"containers": [{"name": "c", "image": "i"}], "priorityClassName": "high",
                   "runtimeClassName": "kata", "nodeName": "node-1"})
        );
        // Pod templates are not pods: admission computes nothing for them.
        let deployment = json!({"spec": {"template": {"spec": {"priority": 5}}}});
        let mut kept = deployment.clone();
        strip_generated_identity("apps", "Deployment", &mut kept);
        assert_eq!(kept, deployment);
    }

    #[test]
    fn generated_identity_goes_with_the_rules_unless_switched_off() {
        let job_rt = rt("batch", "jobs", "Job");
        let job = json!({"metadata": {"name": "j", "uid": "u"},
                         "spec": {"selector": {"matchLabels": {"controller-uid": "u"}}}});
        let mut cleaned = job.clone();
        Rules::default().apply(&job_rt, &mut cleaned).unwrap();
        assert_eq!(
            cleaned,
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "spec": {}})
        );
        let off = Rules {
            strip_generated_identity: false,
            ..Rules::default()
        };
        let mut kept = job.clone();
        off.apply(&job_rt, &mut kept).unwrap();
        assert_eq!(kept["spec"], job["spec"]);
        let parsed: Rules = serde_json::from_str(r#"{"stripGeneratedIdentity": false}"#).unwrap();
        assert_eq!(parsed, off);
    }

    #[test]
    fn json_pointers_are_checked() {
        for good in [
            "/spec/x",
            "/metadata/annotations/example.com~1note",
            "/a~0b",
            "/",
        ] {
            assert!(check_pointer(good).is_ok(), "{good}");
        }
        for bad in ["", "spec/x", "/a~2b", "/a~", "metadata.annotations"] {
            assert!(check_pointer(bad).is_err(), "{bad}");
        }
    }
}
