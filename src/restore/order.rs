//! What a restore creates, in which order, and how each object is prepared: the order puts
//! what others depend on first (definitions, namespaces, storage, identities, configuration,
//! then workloads, custom resources, and admission webhooks and policies last, so that they
//! intercept none of the restore's own creates); kinds that a cluster generates by itself are
//! never restored; fields that would make a create fail or point at the old cluster are
//! removed.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

/// The steps of a restore, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    CustomResourceDefinitions,
    Namespaces,
    StorageClasses,
    PriorityClasses,
    RuntimeClasses,
    PersistentVolumes,
    PersistentVolumeClaims,
    ServiceAccounts,
    Secrets,
    ConfigMaps,
    LimitRanges,
    ResourceQuotas,
    Roles,
    RoleBindings,
    Services,
    Workloads,
    Others,
    CustomResources,
    AdmissionControl,
}

impl Step {
    pub const ALL: [Step; 19] = [
        Step::CustomResourceDefinitions,
        Step::Namespaces,
        Step::StorageClasses,
        Step::PriorityClasses,
        Step::RuntimeClasses,
        Step::PersistentVolumes,
        Step::PersistentVolumeClaims,
        Step::ServiceAccounts,
        Step::Secrets,
        Step::ConfigMaps,
        Step::LimitRanges,
        Step::ResourceQuotas,
        Step::Roles,
        Step::RoleBindings,
        Step::Services,
        Step::Workloads,
        Step::Others,
        Step::CustomResources,
        Step::AdmissionControl,
    ];

    /// 1-based position, as printed in plans.
    pub fn number(self) -> usize {
        self as usize + 1
    }

    pub fn describe(self) -> &'static str {
        match self {
            Step::CustomResourceDefinitions => "custom resource definitions",
            Step::Namespaces => "namespaces",
            Step::StorageClasses => "storage classes",
            Step::PriorityClasses => "priority classes",
            Step::RuntimeClasses => "runtime classes",
            Step::PersistentVolumes => "persistent volumes",
            Step::PersistentVolumeClaims => "persistent volume claims",
            Step::ServiceAccounts => "service accounts",
            Step::Secrets => "secrets",
            Step::ConfigMaps => "config maps",
            Step::LimitRanges => "limit ranges",
            Step::ResourceQuotas => "resource quotas",
            Step::Roles => "roles",
            Step::RoleBindings => "role bindings",
            Step::Services => "services",
            Step::Workloads => "workloads",
            Step::Others => "other resources",
            Step::CustomResources => "custom resources",
            Step::AdmissionControl => "admission webhooks and policies",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Whether a group is one the API server itself serves (as opposed to a CRD or an
/// aggregated API): the core group, the historical unqualified groups, and `*.k8s.io`.
pub fn is_builtin_group(group: &str) -> bool {
    !group.contains('.') || group.ends_with(".k8s.io") || group == "k8s.io"
}

/// The step of an object of `kind` in `group`; `custom` says its group is defined by a CRD.
pub fn step_of(group: &str, kind: &str, custom: bool) -> Step {
    if custom {
        return Step::CustomResources;
    }
    match (group, kind) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") => Step::CustomResourceDefinitions,
        ("", "Namespace") => Step::Namespaces,
        ("storage.k8s.io", "StorageClass") => Step::StorageClasses,
        ("scheduling.k8s.io", "PriorityClass") => Step::PriorityClasses,
        // A pod that names a RuntimeClass the cluster lacks is refused by its admission
        // plugin, as one whose PriorityClass is missing is.
        ("node.k8s.io", "RuntimeClass") => Step::RuntimeClasses,
        ("", "PersistentVolume") => Step::PersistentVolumes,
        ("", "PersistentVolumeClaim") => Step::PersistentVolumeClaims,
        ("", "ServiceAccount") => Step::ServiceAccounts,
        ("", "Secret") => Step::Secrets,
        ("", "ConfigMap") => Step::ConfigMaps,
        ("", "LimitRange") => Step::LimitRanges,
        ("", "ResourceQuota") => Step::ResourceQuotas,
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => Step::Roles,
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => Step::RoleBindings,
        ("", "Service") => Step::Services,
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("batch", "Job" | "CronJob")
        | ("", "Pod" | "ReplicationController") => Step::Workloads,
        // Created before them, a webhook or policy would judge (or call out for) every
        // create of the restore, while the services behind webhooks may not run yet.
        (
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration"
            | "MutatingWebhookConfiguration"
            | "ValidatingAdmissionPolicy"
            | "ValidatingAdmissionPolicyBinding"
            | "MutatingAdmissionPolicy"
            | "MutatingAdmissionPolicyBinding",
        ) => Step::AdmissionControl,
        (group, _) if !is_builtin_group(group) => Step::CustomResources,
        _ => Step::Others,
    }
}

/// Why an object is never restored (a fresh cluster generates it, or it belongs to the old
/// cluster's machinery), or `None` when it may be.
pub fn never_restored(group: &str, kind: &str, object: &Value) -> Option<&'static str> {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match (group, kind) {
        ("", "Node") => Some("nodes register themselves"),
        ("", "Event") | ("events.k8s.io", "Event") => Some("events are history"),
        ("", "Endpoints") | ("discovery.k8s.io", "EndpointSlice") => {
            Some("endpoints are generated from services")
        }
        ("coordination.k8s.io", "Lease") => Some("leases are held by running components"),
        ("", "ComponentStatus") => Some("component statuses are generated"),
        ("apps", "ControllerRevision") => Some("controller revisions are generated"),
        ("metrics.k8s.io", _) => Some("metrics are generated"),
        ("storage.k8s.io", "CSINode") => Some("CSI nodes are registered by each node's kubelet"),
        ("storage.k8s.io", "VolumeAttachment") => {
            Some("volume attachments are made by the attach-detach controller for running pods")
        }
        ("resource.k8s.io", "ResourceSlice") => {
            Some("resource slices are published by the new nodes' drivers")
        }
        ("networking.k8s.io", "IPAddress") => {
            Some("IP addresses are allocated to services by the new cluster")
        }
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            Some("certificate signing requests belong to the old cluster's signers and nodes")
        }
        ("certificates.k8s.io", "PodCertificateRequest") => {
            Some("pod certificate requests are made by the new nodes' kubelets")
        }
        ("storagemigration.k8s.io", "StorageVersionMigration") => {
            Some("storage version migrations ran against the old cluster's storage")
        }
        ("internal.apiserver.k8s.io", "StorageVersion") => {
            Some("storage versions are published by the API servers")
        }
        ("apiregistration.k8s.io", "APIService")
            if object.pointer("/spec/service").is_none_or(Value::is_null) =>
        {
            Some("built-in API services are registered by the API server")
        }
        ("", "Secret")
            if object.get("type").and_then(Value::as_str)
                == Some("kubernetes.io/service-account-token") =>
        {
            Some("service account tokens are issued by the new cluster")
        }
        ("", "ConfigMap") if name == "kube-root-ca.crt" => {
            Some("kube-root-ca.crt is published in every namespace by the new cluster")
        }
        ("", "ServiceAccount") if name == "default" => {
            Some("the default service account is created in every namespace by the new cluster")
        }
        _ => None,
    }
}

/// Prepares an object for a create in another cluster. Objects from a snapshot are mostly
/// clean already; plain-layout files written by other tools may not be.
pub fn sanitize(group: &str, kind: &str, object: &mut Value) {
    let Some(map) = object.as_object_mut() else {
        return;
    };
    map.remove("status");
    if let Some(Value::Object(meta)) = map.get_mut("metadata") {
        for field in crate::snapshot::rules::SERVER_METADATA {
            meta.remove(field);
        }
    }
    match (group, kind) {
        ("", "Service") => {
            if let Some(Value::Object(spec)) = map.get_mut("spec") {
                let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
                if !headless {
                    spec.remove("clusterIP");
                    spec.remove("clusterIPs");
                }
            }
        }
        ("", "PersistentVolume") => {
            if let Some(Value::Object(claim)) = object.pointer_mut("/spec/claimRef") {
                claim.remove("uid");
                claim.remove("resourceVersion");
            }
        }
        ("", "PersistentVolumeClaim") => {
            if let Some(Value::Object(annotations)) = object.pointer_mut("/metadata/annotations") {
                annotations.remove("pv.kubernetes.io/bind-completed");
                annotations.remove("pv.kubernetes.io/bound-by-controller");
            }
        }
        _ => {}
    }
    crate::snapshot::rules::strip_generated_identity(group, kind, object);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn definitions_and_namespaces_come_first_custom_resources_last() {
        let crd = step_of("apiextensions.k8s.io", "CustomResourceDefinition", false);
        let ns = step_of("", "Namespace", false);
        let cm = step_of("", "ConfigMap", false);
        let deploy = step_of("apps", "Deployment", false);
        let ingress = step_of("networking.k8s.io", "Ingress", false);
        let widget = step_of("example.com", "Widget", false);
        assert!(crd < ns && ns < cm && cm < deploy && deploy < ingress && ingress < widget);
        assert_eq!(widget, Step::CustomResources);
        assert_eq!(
            step_of("snapshot.storage.k8s.io", "VolumeSnapshot", true),
            Step::CustomResources
        );
        assert!(
            step_of("", "PersistentVolume", false) < step_of("", "PersistentVolumeClaim", false)
        );
        assert!(
            step_of("rbac.authorization.k8s.io", "ClusterRole", false)
                < step_of("rbac.authorization.k8s.io", "ClusterRoleBinding", false)
        );
    }

    #[test]
    fn cluster_generated_objects_are_never_restored() {
        let plain = json!({"metadata": {"name": "x"}});
        assert!(never_restored("", "Node", &plain).is_some());
        assert!(never_restored("events.k8s.io", "Event", &plain).is_some());
        assert!(never_restored("metrics.k8s.io", "PodMetrics", &plain).is_some());
        assert!(never_restored("apps", "ControllerRevision", &plain).is_some());
        let builtin = json!({"metadata": {"name": "v1.apps"}, "spec": {"service": null}});
        let aggregated = json!({"metadata": {"name": "v1beta1.example.com"},
            "spec": {"service": {"name": "api", "namespace": "example"}}});
        assert!(never_restored("apiregistration.k8s.io", "APIService", &builtin).is_some());
        assert!(never_restored("apiregistration.k8s.io", "APIService", &aggregated).is_none());
        let token =
            json!({"metadata": {"name": "t"}, "type": "kubernetes.io/service-account-token"});
        assert!(never_restored("", "Secret", &token).is_some());
        assert!(never_restored("", "Secret", &plain).is_none());
        let sa = json!({"metadata": {"name": "default"}});
        assert!(never_restored("", "ServiceAccount", &sa).is_some());
        assert!(never_restored("", "ServiceAccount", &plain).is_none());
        let ca = json!({"metadata": {"name": "kube-root-ca.crt"}});
        assert!(never_restored("", "ConfigMap", &ca).is_some());
    }

    #[test]
    fn what_nodes_drivers_and_controllers_write_is_never_restored_each_with_its_reason() {
        let plain = json!({"metadata": {"name": "x"}});
        let cases = [
            ("storage.k8s.io", "CSINode", "kubelet"),
            (
                "storage.k8s.io",
                "VolumeAttachment",
                "attach-detach controller",
            ),
            ("resource.k8s.io", "ResourceSlice", "drivers"),
            ("networking.k8s.io", "IPAddress", "allocated to services"),
            (
                "certificates.k8s.io",
                "CertificateSigningRequest",
                "signers",
            ),
            ("certificates.k8s.io", "PodCertificateRequest", "kubelets"),
            (
                "storagemigration.k8s.io",
                "StorageVersionMigration",
                "old cluster's storage",
            ),
            ("internal.apiserver.k8s.io", "StorageVersion", "API servers"),
        ];
        for (group, kind, says) in cases {
            let reason = never_restored(group, kind, &plain)
                .unwrap_or_else(|| panic!("{kind}.{group} would be restored"));
            assert!(reason.contains(says), "{kind}: {reason}");
        }
        // Their neighbours in the same groups are restored.
        for (group, kind) in [
            ("storage.k8s.io", "CSIDriver"),
            ("storage.k8s.io", "StorageClass"),
            ("resource.k8s.io", "ResourceClaim"),
            ("networking.k8s.io", "ServiceCIDR"),
            ("certificates.k8s.io", "ClusterTrustBundle"),
        ] {
            assert_eq!(never_restored(group, kind, &plain), None, "{kind}");
        }
    }

    #[test]
    fn admission_webhooks_and_policies_come_after_everything_they_could_intercept() {
        let last = *Step::ALL.last().unwrap();
        for kind in [
            "ValidatingWebhookConfiguration",
            "MutatingWebhookConfiguration",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
            "MutatingAdmissionPolicy",
            "MutatingAdmissionPolicyBinding",
        ] {
            let step = step_of("admissionregistration.k8s.io", kind, false);
            assert_eq!(step, Step::AdmissionControl, "{kind}");
            assert_eq!(step, last);
            assert!(step > step_of("example.com", "Widget", true));
        }
        assert_eq!(Step::ALL.len(), Step::AdmissionControl.number());
    }

    #[test]
    fn jobs_lose_their_generated_selector_and_uid_labels() {
        let mut job = json!({
            "metadata": {"name": "j", "uid": "u", "labels": {"controller-uid": "u", "app": "a"}},
            "spec": {
                "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
                "template": {"metadata": {"labels": {
                    "batch.kubernetes.io/controller-uid": "u", "controller-uid": "u",
                    "job-name": "j", "app": "a"}}}
            },
            "status": {"succeeded": 1}
        });
        sanitize("batch", "Job", &mut job);
        assert_eq!(
            job,
            json!({
                "metadata": {"name": "j", "labels": {"app": "a"}},
                "spec": {"template": {"metadata": {"labels": {"app": "a"}}}}
            })
        );
        let mut manual =
            json!({"spec": {"manualSelector": true, "selector": {"matchLabels": {"a": "b"}}}});
        sanitize("batch", "Job", &mut manual);
        assert!(manual.pointer("/spec/selector").is_some());
    }

    #[test]
    fn services_pvs_and_claims_lose_what_binds_them_to_the_old_cluster() {
        let mut svc =
            json!({"spec": {"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "ports": []}});
        sanitize("", "Service", &mut svc);
        assert_eq!(svc, json!({"spec": {"ports": []}}));
        let mut headless = json!({"spec": {"clusterIP": "None"}});
        sanitize("", "Service", &mut headless);
        assert_eq!(headless, json!({"spec": {"clusterIP": "None"}}));
        let mut pv = json!({"spec": {"claimRef": {"name": "c", "namespace": "n", "uid": "u", "resourceVersion": "1"}}});
        sanitize("", "PersistentVolume", &mut pv);
        assert_eq!(
            pv,
            json!({"spec": {"claimRef": {"name": "c", "namespace": "n"}}})
        );
        let mut pvc = json!({"metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes", "keep": "1"}}});
        sanitize("", "PersistentVolumeClaim", &mut pvc);
        assert_eq!(pvc, json!({"metadata": {"annotations": {"keep": "1"}}}));
    }
}
