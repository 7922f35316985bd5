//! The cluster's own machinery beyond workloads: API priority and fairness, admission
//! policies, CSI storage objects, certificates, the service IP allocator, dynamic resource
//! allocation, storage versions and component statuses, each as the component that owns it
//! writes it.
//!
//! A real cluster always holds most of these, whatever runs on it, so every generated
//! cluster above the smallest gets at least one object of each; their number grows only
//! gently with N (per node, or a handful), so that workloads keep dominating the mix. Nothing
//! here holds secret values.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::*;

/// Resources whose storage version the API server records, as (group, resource, version),
/// the most common first.
const STORAGE_VERSIONS: [(&str, &str, &str); 20] = [
    ("", "configmaps", "v1"),
    ("", "secrets", "v1"),
    ("apps", "deployments", "v1"),
    ("", "pods", "v1"),
    ("", "services", "v1"),
    ("", "serviceaccounts", "v1"),
    ("apps", "statefulsets", "v1"),
    ("apps", "daemonsets", "v1"),
    ("apps", "replicasets", "v1"),
    ("batch", "jobs", "v1"),
    ("batch", "cronjobs", "v1"),
    ("networking.k8s.io", "ingresses", "v1"),
    ("rbac.authorization.k8s.io", "roles", "v1"),
    ("rbac.authorization.k8s.io", "rolebindings", "v1"),
    ("coordination.k8s.io", "leases", "v1"),
    ("discovery.k8s.io", "endpointslices", "v1"),
    ("policy", "poddisruptionbudgets", "v1"),
    ("autoscaling", "horizontalpodautoscalers", "v2"),
    ("", "persistentvolumeclaims", "v1"),
    ("", "namespaces", "v1"),
];

/// The CSI driver the cluster's volumes come from.
pub(super) const EBS_DRIVER: &str = "ebs.csi.aws.com";
/// The dynamic resource allocation driver of the GPU nodes.
pub(super) const GPU_DRIVER: &str = "gpu.resource.example.com";
/// The resource class of [`GPU_DRIVER`].
pub(super) const GPU_CLASS: &str = "gpu.example.com";
/// The RuntimeClass of sandboxed pods (present in every generated cluster).
pub(super) const SANDBOX_CLASS: &str = "gvisor";

impl Generator<'_> {
    /// Cluster-scoped objects of the control plane and the node agents. Stops early when
    /// the cluster is too small for them.
    pub(super) fn platform(&mut self, small: bool) {
        let created = BASE_TIME - 400 * 86_400;
        if self.room() < 60 {
            return;
        }
        self.component_statuses();
        self.service_cidr(created);
        self.flow_control(small, created);
        self.admission_policy(created);
        self.runtime_classes(small, created);
        self.csi(small, created);
        self.certificates(created);
        self.resource_classes(created);
        self.storage_versions(created);
        self.storage_version_migration(created);
    }

    /// What `kubectl get componentstatuses` shows. The API server computes these on every
    /// request by probing the components: they carry no uid, resource version or creation
    /// timestamp, and are never written.
    fn component_statuses(&mut self) {
        for name in ["controller-manager", "etcd-0", "scheduler"] {
            let v = json!({
                "apiVersion": "v1",
                "kind": "ComponentStatus",
                "metadata": {"creationTimestamp": null, "name": name},
                "conditions": [{"message": "ok", "status": "True", "type": "Healthy"}],
            });
            self.count += 1;
            (self.sink)(&COMPONENTSTATUS, v);
        }
    }

    /// The default ServiceCIDR the API server creates from `--service-cluster-ip-range`.
    fn service_cidr(&mut self, created: i64) {
        let d = self
            .draft(SERVICECIDR, None, "kubernetes", created)
            .finalizer("networking.k8s.io/service-cidr-finalizer")
            .set("spec", json!({"cidrs": ["10.96.0.0/12"]}))
            .set("status", json!({"conditions": [{"lastTransitionTime": rfc3339(created + 1), "message": "Kubernetes Service CIDR is ready", "reason": "", "status": "True", "type": "Ready"}]}))
            .manager("kube-apiserver")
            .status_by("kube-apiserver");
        self.emit(d);
    }

    /// The IPAddress the allocator writes for a Service's ClusterIP.
    pub(super) fn ip_address(&mut self, ip: &str, ns: &str, service: &str, created: i64) {
        let d = self
            .draft(IPADDRESS, None, ip, created)
            .label("ipaddress.kubernetes.io/ip-family", "IPv4")
            .label("ipaddress.kubernetes.io/managed-by", "ipallocator.k8s.io")
            .set(
                "spec",
                json!({"parentRef": {"group": "", "name": service, "namespace": ns, "resource": "services"}}),
            )
            .manager("kube-apiserver");
        self.emit(d);
    }

    /// The API priority and fairness configuration the API server maintains: the mandatory
    /// objects, and the suggested ones in clusters that are not tiny.
    fn flow_control(&mut self, small: bool, created: i64) {
        // (name, shares, lendable %, queues; 0 = exempt, reject = no queuing)
        let levels: &[(&str, u32, u32, u32)] = &[
            ("catch-all", 5, 0, 0),
            ("exempt", 0, 0, 0),
            ("global-default", 20, 50, 128),
            ("leader-election", 10, 0, 16),
            ("node-high", 40, 25, 64),
            ("system", 30, 33, 64),
            ("workload-high", 40, 50, 128),
            ("workload-low", 100, 90, 128),
        ];
        for &(name, shares, lendable, queues) in levels {
            let mandatory = matches!(name, "catch-all" | "exempt");
            if small && !mandatory && name != "global-default" {
                continue;
            }
            let spec = if name == "exempt" {
                json!({"exempt": {"lendablePercent": 0, "nominalConcurrencyShares": 0}, "type": "Exempt"})
            } else if queues == 0 {
                json!({"limited": {"lendablePercent": lendable, "limitResponse": {"type": "Reject"}, "nominalConcurrencyShares": shares}, "type": "Limited"})
            } else {
                json!({"limited": {"lendablePercent": lendable, "limitResponse": {"queuing": {"handSize": if queues > 64 { 6 } else { 4 }, "queueLengthLimit": 50, "queues": queues}, "type": "Queue"}, "nominalConcurrencyShares": shares}, "type": "Limited"})
            };
            let d = self
                .draft(PRIORITYLEVEL, None, name, created)
                .annotation("apf.kubernetes.io/autoupdate-spec", "true")
                .set("spec", spec)
                .set("status", json!({}))
                .generation(1)
                .manager("api-priority-and-fairness-config-producer-v1");
            self.emit(d);
        }
        let group = |g: &str| json!({"group": {"name": g}, "kind": "Group"});
        let user = |u: &str| json!({"kind": "User", "user": {"name": u}});
        let sa = |ns: &str, n: &str| json!({"kind": "ServiceAccount", "serviceAccount": {"name": n, "namespace": ns}});
        let everything = json!({"apiGroups": ["*"], "clusterScope": true, "namespaces": ["*"], "resources": ["*"], "verbs": ["*"]});
        // (name, precedence, level, by user, subjects)
        let schemas: Vec<(&str, u32, &str, bool, Vec<Value>)> = vec![
            (
                "catch-all",
                10_000,
                "catch-all",
                true,
                vec![
                    group("system:unauthenticated"),
                    group("system:authenticated"),
                ],
            ),
            (
                "endpoint-controller",
                150,
                "workload-high",
                true,
                vec![
                    user("system:kube-controller-manager"),
                    sa("kube-system", "endpoint-controller"),
                ],
            ),
            ("exempt", 1, "exempt", false, vec![group("system:masters")]),
            (
                "global-default",
                9900,
                "global-default",
                true,
                vec![
                    group("system:unauthenticated"),
                    group("system:authenticated"),
                ],
            ),
            (
                "kube-controller-manager",
                800,
                "workload-high",
                false,
                vec![user("system:kube-controller-manager")],
            ),
            (
                "kube-scheduler",
                800,
                "workload-high",
                false,
                vec![user("system:kube-scheduler")],
            ),
            (
                "kube-system-service-accounts",
                900,
                "workload-high",
                true,
                vec![
                    json!({"kind": "ServiceAccount", "serviceAccount": {"name": "*", "namespace": "kube-system"}}),
                ],
            ),
            (
                "service-accounts",
                9000,
                "workload-low",
                true,
                vec![group("system:serviceaccounts")],
            ),
            (
                "system-leader-election",
                100,
                "leader-election",
                true,
                vec![
                    user("system:kube-controller-manager"),
                    user("system:kube-scheduler"),
                ],
            ),
            (
                "system-node-high",
                400,
                "node-high",
                true,
                vec![group("system:nodes")],
            ),
            (
                "system-nodes",
                500,
                "system",
                true,
                vec![group("system:nodes")],
            ),
        ];
        for (name, precedence, level, by_user, subjects) in schemas {
            let mandatory = matches!(name, "catch-all" | "exempt");
            if small && !mandatory && name != "global-default" {
                continue;
            }
            let mut spec = json!({
                "matchingPrecedence": precedence,
                "priorityLevelConfiguration": {"name": level},
                "rules": [{
                    "nonResourceRules": [{"nonResourceURLs": ["*"], "verbs": ["*"]}],
                    "resourceRules": [everything],
                    "subjects": subjects,
                }],
            });
            if by_user {
                spec["distinguisherMethod"] = json!({"type": "ByUser"});
            }
            let d = self
                .draft(FLOWSCHEMA, None, name, created)
                .annotation("apf.kubernetes.io/autoupdate-spec", "true")
                .set("spec", spec)
                .set("status", json!({"conditions": [{
                    "lastTransitionTime": rfc3339(created + 2),
                    "message": format!("This FlowSchema references the PriorityLevelConfiguration object named \"{level}\" and it exists"),
                    "reason": "Found",
                    "status": "False",
                    "type": "Dangling",
                }]}))
                .generation(1)
                .manager("api-priority-and-fairness-config-producer-v1")
                .status_by("api-priority-and-fairness-config-consumer-v1");
            self.emit(d);
        }
    }

    /// A ValidatingAdmissionPolicy and its binding, as a platform team applies them.
    fn admission_policy(&mut self, created: i64) {
        let created = created + 30 * 86_400;
        let name = "require-part-of-label";
        let d = self
            .draft(ADMISSIONPOLICY, None, name, created)
            .label("app.kubernetes.io/part-of", "platform")
            .set("spec", json!({
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "matchPolicy": "Equivalent",
                    "namespaceSelector": {},
                    "objectSelector": {},
                    "resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["deployments", "statefulsets", "daemonsets"], "scope": "*"}],
                },
                "validations": [{
                    "expression": "has(object.metadata.labels) && 'app.kubernetes.io/part-of' in object.metadata.labels",
                    "message": "workloads must name the system they are part of in the label app.kubernetes.io/part-of",
                    "reason": "Invalid",
                }],
            }))
            .set("status", json!({"observedGeneration": 1, "typeChecking": {}}))
            .generation(1)
            .status_by("policy-controller");
        self.emit(d);
        let d = self
            .draft(ADMISSIONPOLICYBINDING, None, &format!("{name}-binding"), created)
            .label("app.kubernetes.io/part-of", "platform")
            .set("spec", json!({
                "matchResources": {
                    "matchPolicy": "Equivalent",
                    "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "kube-public", "kube-node-lease"]}]},
                    "objectSelector": {},
                },
                "policyName": name,
                "validationActions": ["Warn", "Audit"],
            }))
            .generation(1);
        self.emit(d);
    }

    fn runtime_classes(&mut self, small: bool, created: i64) {
        let classes: &[(&str, &str, &str, &str)] = if small {
            &[(SANDBOX_CLASS, "runsc", "250m", "120Mi")]
        } else {
            &[
                (SANDBOX_CLASS, "runsc", "250m", "120Mi"),
                ("kata", "kata-qemu", "500m", "160Mi"),
            ]
        };
        for (name, handler, cpu, memory) in classes {
            let d = self
                .draft(RUNTIMECLASS, None, name, created + 60 * 86_400)
                .label("app.kubernetes.io/part-of", "platform")
                .set("handler", json!(handler))
                .set(
                    "overhead",
                    json!({"podFixed": {"cpu": cpu, "memory": memory}}),
                )
                .set(
                    "scheduling",
                    json!({"nodeSelector": {format!("runtime.example.com/{name}"): "enabled"}, "tolerations": [{"effect": "NoSchedule", "key": "runtime.example.com/sandboxed", "operator": "Exists"}]}),
                );
            self.emit(d);
        }
    }

    /// The CSI drivers, what their node plugins register per node, the capacity the
    /// external provisioner publishes, and the volume attributes classes.
    fn csi(&mut self, small: bool, created: i64) {
        let mut drivers = vec![(EBS_DRIVER, true, "ReadWriteOnceWithFSType", true)];
        if !small {
            drivers.push(("efs.csi.aws.com", false, "None", false));
        }
        for (name, attach, fs_group, capacity) in drivers {
            let d = self
                .draft(CSIDRIVER, None, name, created)
                .label("app.kubernetes.io/component", "csi-driver")
                .label("app.kubernetes.io/managed-by", "Helm")
                .label(
                    "app.kubernetes.io/name",
                    name.replace(".csi.", "-csi-").replace(".com", "-driver"),
                )
                .set(
                    "spec",
                    json!({
                        "attachRequired": attach,
                        "fsGroupPolicy": fs_group,
                        "podInfoOnMount": false,
                        "requiresRepublish": false,
                        "seLinuxMount": false,
                        "storageCapacity": capacity,
                        "volumeLifecycleModes": ["Persistent"],
                    }),
                )
                .manager("helm");
            self.emit(d);
        }
        let nodes = self.nodes.clone();
        for n in &nodes {
            let d = self
                .draft(CSINODE, None, &n.name, created.max(BASE_TIME - 60 * 86_400))
                .annotation("storage.alpha.kubernetes.io/migrated-plugins", "kubernetes.io/aws-ebs,kubernetes.io/azure-disk,kubernetes.io/azure-file,kubernetes.io/cinder,kubernetes.io/gce-pd,kubernetes.io/portworx-volume,kubernetes.io/vsphere-volume")
                .owner(json!([{"apiVersion": "v1", "kind": "Node", "name": n.name, "uid": self.uid(&NODE, None, &n.name)}]))
                .set("spec", json!({"drivers": [{
                    "allocatable": {"count": 25},
                    "name": EBS_DRIVER,
                    "nodeID": n.instance,
                    "topologyKeys": ["kubernetes.io/os", "topology.ebs.csi.aws.com/zone", "topology.kubernetes.io/zone"],
                }]}))
                .manager("kubelet");
            self.emit(d);
        }
        let mut zones: Vec<&'static str> = nodes.iter().map(|n| n.zone).collect();
        zones.sort_unstable();
        zones.dedup();
        for zone in zones {
            let name = format!("csisc-{}", self.rng.suffix(5));
            let d = self
                .draft(
                    CSISTORAGECAPACITY,
                    Some("kube-system"),
                    &name,
                    BASE_TIME - 3600,
                )
                .label("csi.storage.k8s.io/drivername", EBS_DRIVER)
                .label("csi.storage.k8s.io/managed-by", "external-provisioner")
                .set("storageClassName", json!("gp3"))
                .set(
                    "nodeTopology",
                    json!({"matchLabels": {"topology.ebs.csi.aws.com/zone": zone}}),
                )
                .set("capacity", json!(format!("{}Ti", self.rng.range(40, 200))))
                .set("maximumVolumeSize", json!("16Ti"))
                .manager("csi-provisioner");
            self.emit(d);
        }
        let classes: &[(&str, &str, &str)] = if small {
            &[("gp3-baseline", "3000", "125")]
        } else {
            &[
                ("gp3-baseline", "3000", "125"),
                ("gp3-fast", "16000", "1000"),
            ]
        };
        for (name, iops, throughput) in classes {
            let d = self
                .draft(VOLUMEATTRIBUTESCLASS, None, name, created + 90 * 86_400)
                .set("driverName", json!(EBS_DRIVER))
                .set(
                    "parameters",
                    json!({"iops": iops, "throughput": throughput, "type": "gp3"}),
                );
            self.emit(d);
        }
    }

    /// The attachment of a CSI volume to the node its pod runs on, as the attach/detach
    /// controller creates it and the external attacher reports it.
    pub(super) fn volume_attachment(
        &mut self,
        pv: &str,
        volume_handle: &str,
        node: &NodeInfo,
        at: i64,
    ) {
        // The name the attach/detach controller derives from the volume, driver and node.
        let digest = Sha256::digest(format!("{volume_handle}{EBS_DRIVER}{}", node.name).as_bytes());
        let name = format!(
            "csi-{}",
            digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let d = self
            .draft(VOLUMEATTACHMENT, None, &name, at)
            .annotation("csi.alpha.kubernetes.io/node-id", node.instance.clone())
            .finalizer("external-attacher/ebs-csi-aws-com")
            .set("spec", json!({"attacher": EBS_DRIVER, "nodeName": node.name, "source": {"persistentVolumeName": pv}}))
            .set("status", json!({"attached": true, "attachmentMetadata": {"devicePath": format!("/dev/xvd{}", (b'a' + self.rng.below(26) as u8) as char)}}))
            .manager("kube-controller-manager")
            .status_by("csi-attacher");
        self.emit(d);
    }

    /// Serving-certificate requests of kubelets that rotated their certificate within the
    /// last hour (the CSR cleaner removes issued requests after an hour), and a trust bundle
    /// the platform team publishes.
    fn certificates(&mut self, created: i64) {
        let rotating = (1 + self.nodes.len() / 20).min(self.nodes.len());
        let nodes: Vec<NodeInfo> = self.nodes.iter().take(rotating).cloned().collect();
        for n in &nodes {
            let name = format!("csr-{}", self.rng.suffix(5));
            let at = BASE_TIME - self.rng.range(120, 3300) as i64;
            let request = base64_of(&pem_block(&mut self.rng, "CERTIFICATE REQUEST", 600));
            let certificate = base64_of(&pem_block(&mut self.rng, "CERTIFICATE", 1000));
            let d = self
                .draft(CSR, None, &name, at)
                .set("spec", json!({
                    "groups": ["system:nodes", "system:authenticated"],
                    "request": request,
                    "signerName": "kubernetes.io/kubelet-serving",
                    "usages": ["digital signature", "server auth"],
                    "username": format!("system:node:{}", n.name),
                }))
                .set("status", json!({
                    "certificate": certificate,
                    "conditions": [{"lastTransitionTime": rfc3339(at + 2), "lastUpdateTime": rfc3339(at + 2), "message": "Auto-approving kubelet serving certificate after SubjectAccessReview.", "reason": "AutoApproved", "status": "True", "type": "Approved"}],
                }))
                .manager("kubelet")
                .status_by("kube-controller-manager");
            self.emit(d);
        }
        let bundle = format!(
            "{}{}",
            pem_block(&mut self.rng, "CERTIFICATE", 1200),
            pem_block(&mut self.rng, "CERTIFICATE", 1200)
        );
        let d = self
            .draft(
                CLUSTERTRUSTBUNDLE,
                None,
                "corp-root-ca",
                created + 30 * 86_400,
            )
            .label("app.kubernetes.io/part-of", "platform")
            .set("spec", json!({"trustBundle": bundle}));
        self.emit(d);
    }

    /// Dynamic resource allocation for the GPU nodes: the class, its parameters and what
    /// the driver's kubelet plugin publishes per node.
    fn resource_classes(&mut self, created: i64) {
        let created = created + 200 * 86_400;
        let d = self
            .draft(RESOURCECLASSPARAMETERS, Some("kube-system"), "gpu-class-parameters", created)
            .label("app.kubernetes.io/name", "gpu-dra-driver")
            .set("vendorParameters", json!([{"driverName": GPU_DRIVER, "parameters": {"apiVersion": "gpu.resource.example.com/v1alpha1", "kind": "GpuClassParameters", "sharing": {"strategy": "TimeSlicing"}}}]))
            .set("filters", json!([{"driverName": GPU_DRIVER, "namedResources": {"selector": "attributes.string[\"model\"] == \"A10G\""}}]))
            .manager("helm");
        self.emit(d);
        let d = self
            .draft(RESOURCECLASS, None, GPU_CLASS, created)
            .label("app.kubernetes.io/name", "gpu-dra-driver")
            .set("driverName", json!(GPU_DRIVER))
            .set("parametersRef", json!({"apiGroup": "resource.k8s.io", "kind": "ResourceClassParameters", "name": "gpu-class-parameters", "namespace": "kube-system"}))
            .set("structuredParameters", json!(true))
            .manager("helm");
        self.emit(d);
        let nodes = self.nodes.clone();
        for n in &nodes {
            let name = format!("{}-{GPU_DRIVER}-{}", n.name, self.rng.suffix(5));
            let at = BASE_TIME - self.rng.range(3600, 20 * 86_400) as i64;
            let d = self
                .draft(RESOURCESLICE, None, &name, at)
                .owner(json!([{"apiVersion": "v1", "controller": true, "kind": "Node", "name": n.name, "uid": self.uid(&NODE, None, &n.name)}]))
                .set("nodeName", json!(n.name))
                .set("driverName", json!(GPU_DRIVER))
                .set("namedResources", json!({"instances": [
                    {"attributes": [{"name": "model", "string": "A10G"}, {"name": "memory", "quantity": "24Gi"}, {"name": "index", "int": 0}], "name": "gpu-0"},
                ]}))
                .manager("kubelet");
            self.emit(d);
        }
    }

    /// What the storage version manager of the API server records for the resources it
    /// writes; a handful in small clusters, more as the cluster grows.
    fn storage_versions(&mut self, created: i64) {
        let take = (3 + self.target / 2000).min(STORAGE_VERSIONS.len());
        let server_id = format!("kube-apiserver-{}", self.rng.uuid());
        for (group, resource, version) in STORAGE_VERSIONS.iter().take(take) {
            let name = format!(
                "{}.{resource}",
                if group.is_empty() { "core" } else { group }
            );
            let gv = crate::discovery::group_version(group, version);
            let d = self
                .draft(STORAGEVERSION, None, &name, created)
                .set("spec", json!({}))
                .set("status", json!({
                    "commonEncodingVersion": gv,
                    "conditions": [{"lastTransitionTime": rfc3339(created + 5), "message": "Common encoding version set", "observedGeneration": 1, "reason": "CommonEncodingVersionSet", "status": "True", "type": "AllEncodingVersionsEqual"}],
                    "storageVersions": [{"apiServerID": server_id, "decodableVersions": [gv], "encodingVersion": gv, "servedVersions": [gv]}],
                }))
                .manager("kube-apiserver")
                .status_by("kube-apiserver");
            self.emit(d);
        }
    }

    /// A finished migration of the secrets to the current encryption key.
    fn storage_version_migration(&mut self, created: i64) {
        let at = created + 300 * 86_400;
        let d = self
            .draft(STORAGEVERSIONMIGRATION, None, "secrets-encryption-key-rotation", at)
            .set("spec", json!({"resource": {"group": "", "resource": "secrets", "version": "v1"}}))
            .set("status", json!({
                "conditions": [
                    {"lastUpdateTime": rfc3339(at + 40), "message": "The migration has succeeded", "reason": "StorageVersionMigrationSucceeded", "status": "True", "type": "Succeeded"},
                ],
                "resourceVersion": self.rng.range(10_000, 90_000).to_string(),
            }))
            .manager("kubectl-create")
            .status_by("kube-controller-manager");
        self.emit(d);
    }
}
