//! Deterministic generation of a realistic cluster of about N objects.
//!
//! The mix follows what real clusters hold: many pods, replica sets, events, config maps and
//! secrets; controllers owning what they create (`ownerReferences` with `controller: true`:
//! Deployment → ReplicaSet → Pod, CronJob → Job → Pod, StatefulSet/DaemonSet → Pod,
//! Service → EndpointSlice); the fields the server and controllers add (uid, resourceVersion,
//! creationTimestamp, generation, managedFields, status). Sizes range from a few hundred
//! bytes (service accounts, small config maps) to tens of KiB (nodes, Helm release secrets,
//! big config maps, CRDs), about 3 KiB on average.
//!
//! Besides workloads, the cluster holds at least one object of every listable built-in
//! resource of the recorded discovery (the API server's own configuration, CSI and DRA
//! objects, certificates, quotas, standalone Jobs and Pods: see the submodules), and a
//! prometheus-operator install whose group serves one resource only at an older version.
//! These take a small, gently growing share of N.
//!
//! Everything derives from the seed: the same seed and N give byte-identical objects.

use serde_json::{Map, Value, json};

use crate::objects::{BASE_TIME, has_generation, managed_entry, rfc3339, rfc3339_micro, uid_for};
use crate::rng::Rng;

mod monitoring;
mod namespaced;
mod platform;

/// A stored resource kind: where it lives and what it is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct K {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
}

impl K {
    pub(crate) fn api_version(&self) -> String {
        crate::discovery::group_version(self.group, self.version)
    }
}

macro_rules! kinds {
    ($($id:ident = $g:literal $v:literal $p:literal $k:literal;)*) => {
        $(pub(crate) const $id: K = K { group: $g, version: $v, plural: $p, kind: $k };)*
    };
}

kinds! {
    NAMESPACE = "" "v1" "namespaces" "Namespace";
    NODE = "" "v1" "nodes" "Node";
    CONFIGMAP = "" "v1" "configmaps" "ConfigMap";
    SECRET = "" "v1" "secrets" "Secret";
    SERVICE = "" "v1" "services" "Service";
    SERVICEACCOUNT = "" "v1" "serviceaccounts" "ServiceAccount";
    POD = "" "v1" "pods" "Pod";
    EVENT = "" "v1" "events" "Event";
    ENDPOINTS = "" "v1" "endpoints" "Endpoints";
    PVC = "" "v1" "persistentvolumeclaims" "PersistentVolumeClaim";
    PV = "" "v1" "persistentvolumes" "PersistentVolume";
    DEPLOYMENT = "apps" "v1" "deployments" "Deployment";
    REPLICASET = "apps" "v1" "replicasets" "ReplicaSet";
    STATEFULSET = "apps" "v1" "statefulsets" "StatefulSet";
    DAEMONSET = "apps" "v1" "daemonsets" "DaemonSet";
    CONTROLLERREVISION = "apps" "v1" "controllerrevisions" "ControllerRevision";
    JOB = "batch" "v1" "jobs" "Job";
    CRONJOB = "batch" "v1" "cronjobs" "CronJob";
    INGRESS = "networking.k8s.io" "v1" "ingresses" "Ingress";
    INGRESSCLASS = "networking.k8s.io" "v1" "ingressclasses" "IngressClass";
    NETWORKPOLICY = "networking.k8s.io" "v1" "networkpolicies" "NetworkPolicy";
    ROLE = "rbac.authorization.k8s.io" "v1" "roles" "Role";
    ROLEBINDING = "rbac.authorization.k8s.io" "v1" "rolebindings" "RoleBinding";
    CLUSTERROLE = "rbac.authorization.k8s.io" "v1" "clusterroles" "ClusterRole";
    CLUSTERROLEBINDING = "rbac.authorization.k8s.io" "v1" "clusterrolebindings" "ClusterRoleBinding";
    ENDPOINTSLICE = "discovery.k8s.io" "v1" "endpointslices" "EndpointSlice";
    LEASE = "coordination.k8s.io" "v1" "leases" "Lease";
    PDB = "policy" "v1" "poddisruptionbudgets" "PodDisruptionBudget";
    HPA = "autoscaling" "v2" "horizontalpodautoscalers" "HorizontalPodAutoscaler";
    STORAGECLASS = "storage.k8s.io" "v1" "storageclasses" "StorageClass";
    PRIORITYCLASS = "scheduling.k8s.io" "v1" "priorityclasses" "PriorityClass";
    CRD = "apiextensions.k8s.io" "v1" "customresourcedefinitions" "CustomResourceDefinition";
    APISERVICE = "apiregistration.k8s.io" "v1" "apiservices" "APIService";
    WIDGET = "example.com" "v1" "widgets" "Widget";
    COMPONENTSTATUS = "" "v1" "componentstatuses" "ComponentStatus";
    LIMITRANGE = "" "v1" "limitranges" "LimitRange";
    RESOURCEQUOTA = "" "v1" "resourcequotas" "ResourceQuota";
    PODTEMPLATE = "" "v1" "podtemplates" "PodTemplate";
    REPLICATIONCONTROLLER = "" "v1" "replicationcontrollers" "ReplicationController";
    CSR = "certificates.k8s.io" "v1" "certificatesigningrequests" "CertificateSigningRequest";
    CLUSTERTRUSTBUNDLE = "certificates.k8s.io" "v1alpha1" "clustertrustbundles" "ClusterTrustBundle";
    IPADDRESS = "networking.k8s.io" "v1beta1" "ipaddresses" "IPAddress";
    SERVICECIDR = "networking.k8s.io" "v1beta1" "servicecidrs" "ServiceCIDR";
    CSIDRIVER = "storage.k8s.io" "v1" "csidrivers" "CSIDriver";
    CSINODE = "storage.k8s.io" "v1" "csinodes" "CSINode";
    CSISTORAGECAPACITY = "storage.k8s.io" "v1" "csistoragecapacities" "CSIStorageCapacity";
    VOLUMEATTACHMENT = "storage.k8s.io" "v1" "volumeattachments" "VolumeAttachment";
    VOLUMEATTRIBUTESCLASS = "storage.k8s.io" "v1alpha1" "volumeattributesclasses" "VolumeAttributesClass";
    MUTATINGWEBHOOK = "admissionregistration.k8s.io" "v1" "mutatingwebhookconfigurations" "MutatingWebhookConfiguration";
    VALIDATINGWEBHOOK = "admissionregistration.k8s.io" "v1" "validatingwebhookconfigurations" "ValidatingWebhookConfiguration";
    ADMISSIONPOLICY = "admissionregistration.k8s.io" "v1" "validatingadmissionpolicies" "ValidatingAdmissionPolicy";
    ADMISSIONPOLICYBINDING = "admissionregistration.k8s.io" "v1" "validatingadmissionpolicybindings" "ValidatingAdmissionPolicyBinding";
    RUNTIMECLASS = "node.k8s.io" "v1" "runtimeclasses" "RuntimeClass";
    FLOWSCHEMA = "flowcontrol.apiserver.k8s.io" "v1" "flowschemas" "FlowSchema";
    PRIORITYLEVEL = "flowcontrol.apiserver.k8s.io" "v1" "prioritylevelconfigurations" "PriorityLevelConfiguration";
    STORAGEVERSION = "internal.apiserver.k8s.io" "v1alpha1" "storageversions" "StorageVersion";
    STORAGEVERSIONMIGRATION = "storagemigration.k8s.io" "v1alpha1" "storageversionmigrations" "StorageVersionMigration";
    PODSCHEDULINGCONTEXT = "resource.k8s.io" "v1alpha3" "podschedulingcontexts" "PodSchedulingContext";
    RESOURCECLAIM = "resource.k8s.io" "v1alpha3" "resourceclaims" "ResourceClaim";
    RESOURCECLAIMPARAMETERS = "resource.k8s.io" "v1alpha3" "resourceclaimparameters" "ResourceClaimParameters";
    RESOURCECLAIMTEMPLATE = "resource.k8s.io" "v1alpha3" "resourceclaimtemplates" "ResourceClaimTemplate";
    RESOURCECLASS = "resource.k8s.io" "v1alpha3" "resourceclasses" "ResourceClass";
    RESOURCECLASSPARAMETERS = "resource.k8s.io" "v1alpha3" "resourceclassparameters" "ResourceClassParameters";
    RESOURCESLICE = "resource.k8s.io" "v1alpha3" "resourceslices" "ResourceSlice";
    SERVICEMONITOR = "monitoring.coreos.com" "v1" "servicemonitors" "ServiceMonitor";
    PROMETHEUSRULE = "monitoring.coreos.com" "v1" "prometheusrules" "PrometheusRule";
    ALERTMANAGERCONFIG = "monitoring.coreos.com" "v1alpha1" "alertmanagerconfigs" "AlertmanagerConfig";
    POD_METRICS = "metrics.k8s.io" "v1beta1" "pods" "PodMetrics";
    NODE_METRICS = "metrics.k8s.io" "v1beta1" "nodes" "NodeMetrics";
}

/// The group of the prometheus-operator custom resources the generated cluster holds.
pub const MONITORING_GROUP: &str = "monitoring.coreos.com";

/// True for the resources of a custom resource group (served from CRDs).
pub(crate) fn is_custom_group(group: &str) -> bool {
    group == WIDGET.group || group == MONITORING_GROUP
}

fn is_custom(k: &K) -> bool {
    is_custom_group(k.group)
}

/// The namespaces of a fresh cluster.
pub(crate) const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-node-lease", "kube-public", "kube-system"];

/// Receives generated objects; returns the resource version it assigned.
pub(crate) type Sink<'a> = dyn FnMut(&K, Value) -> u64 + 'a;

const TEAMS: [&str; 40] = [
    "payments",
    "checkout",
    "search",
    "catalog",
    "accounts",
    "billing",
    "shipping",
    "inventory",
    "orders",
    "analytics",
    "reporting",
    "identity",
    "notifications",
    "media",
    "pricing",
    "reviews",
    "recommendations",
    "fraud",
    "ledger",
    "gateway",
    "support",
    "marketing",
    "logistics",
    "warehouse",
    "loyalty",
    "messaging",
    "streaming",
    "data",
    "ml",
    "platform",
    "observability",
    "security",
    "compliance",
    "growth",
    "partners",
    "mobile",
    "web",
    "edge",
    "storage",
    "batch",
];
const ENVS: [&str; 5] = ["prod", "staging", "dev", "qa", "sandbox"];
const COMPONENTS: [&str; 20] = [
    "api",
    "web",
    "worker",
    "frontend",
    "backend",
    "cache",
    "gateway",
    "auth",
    "notifier",
    "scheduler",
    "ingest",
    "reporter",
    "exporter",
    "sync",
    "consumer",
    "producer",
    "indexer",
    "proxy",
    "admin",
    "graphql",
];
const ENV_NAMES: [&str; 24] = [
    "LOG_LEVEL",
    "LOG_FORMAT",
    "PORT",
    "METRICS_PORT",
    "DATABASE_HOST",
    "DATABASE_PORT",
    "DATABASE_NAME",
    "REDIS_URL",
    "KAFKA_BROKERS",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "FEATURE_FLAGS",
    "HTTP_TIMEOUT",
    "MAX_CONNECTIONS",
    "CACHE_TTL",
    "REGION",
    "ENVIRONMENT",
    "SENTRY_DSN",
    "GOMAXPROCS",
    "JAVA_OPTS",
    "WORKER_THREADS",
    "QUEUE_NAME",
    "UPSTREAM_URL",
    "TZ",
];

/// A node of the generated cluster, remembered for pods and metrics.
#[derive(Clone, Debug)]
pub(crate) struct NodeInfo {
    pub name: String,
    pub ip: String,
    pub zone: &'static str,
    /// The EC2 instance id of the node's `providerID`, which CSI node plugins report too.
    pub instance: String,
}

/// What the metrics API reports on: nodes and the pods of kube-system.
#[derive(Default, Debug)]
pub(crate) struct MetricsTargets {
    pub nodes: Vec<String>,
    pub pods: Vec<(String, String, Vec<String>)>,
}

/// Generation parameters.
pub(crate) struct Plan {
    pub seed: u64,
    pub objects: usize,
    pub namespaces: Option<usize>,
    pub empty: bool,
    /// (group, version) of every APIService to register.
    pub api_services: Vec<(String, String)>,
}

/// Accumulates the pieces of one object before it is emitted.
struct Draft {
    k: K,
    ns: Option<String>,
    name: String,
    created: i64,
    labels: Map<String, Value>,
    annotations: Map<String, Value>,
    owner: Option<Value>,
    finalizers: Vec<String>,
    body: Map<String, Value>,
    manager: &'static str,
    status_manager: Option<&'static str>,
    generation: Option<i64>,
}

impl Draft {
    fn label(mut self, k: &str, v: impl Into<String>) -> Draft {
        self.labels.insert(k.into(), Value::String(v.into()));
        self
    }
    fn labels(mut self, m: &Map<String, Value>) -> Draft {
        for (k, v) in m {
            self.labels.insert(k.clone(), v.clone());
        }
        self
    }
    fn annotation(mut self, k: &str, v: impl Into<String>) -> Draft {
        self.annotations.insert(k.into(), Value::String(v.into()));
        self
    }
    fn owner(mut self, owner: Value) -> Draft {
        self.owner = Some(owner);
        self
    }
    fn finalizer(mut self, f: &str) -> Draft {
        self.finalizers.push(f.into());
        self
    }
    fn set(mut self, k: &str, v: Value) -> Draft {
        self.body.insert(k.into(), v);
        self
    }
    fn manager(mut self, m: &'static str) -> Draft {
        self.manager = m;
        self
    }
    fn status_by(mut self, m: &'static str) -> Draft {
        self.status_manager = Some(m);
        self
    }
    fn generation(mut self, g: i64) -> Draft {
        self.generation = Some(g);
        self
    }
}

pub(crate) struct Generator<'s> {
    seed: u64,
    rng: Rng,
    target: usize,
    count: usize,
    sink: &'s mut Sink<'s>,
    nodes: Vec<NodeInfo>,
    pod_ip: u32,
    svc_ip: u32,
    pub(crate) metrics: MetricsTargets,
}

/// Upper bound of the objects one application unit can add, so that units are only started
/// when they fit and the total lands exactly on N.
const UNIT_MAX: usize = 64;

impl<'s> Generator<'s> {
    pub(crate) fn new(plan: &Plan, sink: &'s mut Sink<'s>) -> Generator<'s> {
        Generator {
            seed: plan.seed,
            rng: Rng::derived(plan.seed, "cluster"),
            target: plan.objects,
            count: 0,
            sink,
            nodes: Vec::new(),
            pod_ip: 0,
            svc_ip: 20,
            metrics: MetricsTargets::default(),
        }
    }

    fn room(&self) -> usize {
        self.target.saturating_sub(self.count)
    }

    fn uid(&self, k: &K, ns: Option<&str>, name: &str) -> String {
        uid_for(self.seed, k.group, k.plural, ns, name)
    }

    fn draft(&self, k: K, ns: Option<&str>, name: &str, created: i64) -> Draft {
        Draft {
            k,
            ns: ns.map(str::to_string),
            name: name.to_string(),
            created,
            labels: Map::new(),
            annotations: Map::new(),
            owner: None,
            finalizers: Vec::new(),
            body: Map::new(),
            manager: "kubectl-client-side-apply",
            status_manager: None,
            generation: None,
        }
    }

    /// An owner reference to a controller.
    fn owner_ref(&self, k: &K, ns: Option<&str>, name: &str) -> Value {
        json!([{
            "apiVersion": k.api_version(),
            "blockOwnerDeletion": true,
            "controller": true,
            "kind": k.kind,
            "name": name,
            "uid": self.uid(k, ns, name),
        }])
    }

    /// Finishes an object (metadata, managedFields) and hands it to the sink; returns the
    /// resource version it got.
    fn emit(&mut self, d: Draft) -> u64 {
        let uid = self.uid(&d.k, d.ns.as_deref(), &d.name);
        let mut meta = Map::new();
        meta.insert("name".into(), json!(d.name));
        if let Some(ns) = &d.ns {
            meta.insert("namespace".into(), json!(ns));
        }
        meta.insert("uid".into(), json!(uid));
        meta.insert("creationTimestamp".into(), json!(rfc3339(d.created)));
        if !d.labels.is_empty() {
            meta.insert("labels".into(), Value::Object(d.labels));
        }
        if !d.annotations.is_empty() {
            meta.insert("annotations".into(), Value::Object(d.annotations));
        }
        if let Some(o) = d.owner {
            meta.insert("ownerReferences".into(), o);
        }
        if !d.finalizers.is_empty() {
            meta.insert("finalizers".into(), json!(d.finalizers));
        }
        // Kinds the real server gives a generation although `has_generation` does not list
        // them (set explicitly with `Draft::generation`).
        if has_generation(d.k.kind, is_custom(&d.k)) || d.generation.is_some() {
            meta.insert("generation".into(), json!(d.generation.unwrap_or(1)));
        }
        let mut obj = Map::new();
        obj.insert("apiVersion".into(), json!(d.k.api_version()));
        obj.insert("kind".into(), json!(d.k.kind));
        obj.insert("metadata".into(), Value::Object(meta));
        for (k, v) in d.body {
            obj.insert(k, v);
        }
        let av = d.k.api_version();
        let persisted = d.k.group != crate::discovery::METRICS_GROUP;
        if persisted {
            let mut managed = vec![managed_entry(
                &obj,
                &av,
                d.manager,
                &rfc3339(d.created),
                false,
            )];
            if let Some(sm) = d.status_manager
                && obj.contains_key("status")
            {
                managed.push(managed_entry(&obj, &av, sm, &rfc3339(d.created + 7), true));
            }
            if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
                meta.insert("managedFields".into(), Value::Array(managed));
            }
            self.count += 1;
        }
        (self.sink)(&d.k, Value::Object(obj))
    }

    fn next_pod_ip(&mut self) -> String {
        self.pod_ip += 1;
        nth_address("10.244", self.pod_ip, 2)
    }

    fn next_svc_ip(&mut self) -> String {
        self.svc_ip += 1;
        nth_address("10.96", self.svc_ip, 1)
    }

    fn pick_node(&mut self) -> NodeInfo {
        let i = self.rng.below(self.nodes.len() as u64) as usize;
        self.nodes[i].clone()
    }

    /// A time between `after` and the simulated start, biased to the recent past.
    fn since(&mut self, after: i64, max_age_days: u64) -> i64 {
        let max_age = (max_age_days * 86_400) as i64;
        let lo = after.max(BASE_TIME - max_age);
        if lo >= BASE_TIME - 60 {
            return BASE_TIME - 60;
        }
        lo + self.rng.below((BASE_TIME - 60 - lo) as u64) as i64
    }

    // ------------------------------------------------------------------------------------
    // The cluster.

    pub(crate) fn run(mut self, plan: &Plan) -> MetricsTargets {
        let ns_created = BASE_TIME - 400 * 86_400;
        for ns in SYSTEM_NAMESPACES {
            self.namespace(ns, ns_created, true);
        }
        if plan.empty {
            return self.metrics;
        }
        let small = plan.objects < 600;
        let node_count = (plan.objects / 1000).clamp(1, 500);
        self.nodes(node_count);
        for ns in SYSTEM_NAMESPACES {
            if self.room() > 2 {
                self.namespace_baseline(ns, ns_created);
            }
        }
        self.cluster_scoped(small, &plan.api_services);
        self.kube_system(small);
        self.platform(small);
        self.monitoring_stack(small);
        let ns_count = plan
            .namespaces
            .unwrap_or_else(|| (plan.objects / 100).max(3));
        let mut namespaces = Vec::new();
        for i in 0..ns_count {
            if self.room() < 3 {
                break;
            }
            let name = namespace_name(i);
            let created = BASE_TIME - self.rng.range(20, 380) as i64 * 86_400;
            self.namespace(&name, created, false);
            self.namespace_baseline(&name, created);
            namespaces.push((name, created, 0usize));
        }
        if namespaces.is_empty() {
            namespaces.push(("default".to_string(), ns_created, 0));
        }
        for (i, (ns, created, _)) in namespaces.clone().iter().enumerate() {
            // What a few namespaces hold besides applications; it must leave room for them.
            if self.room() < UNIT_MAX + namespaced::EXTRAS_MAX {
                break;
            }
            self.namespace_extras(ns, *created, i);
        }
        let mut unit = 0usize;
        while self.room() > UNIT_MAX {
            let slot = unit % namespaces.len();
            let (ns, created, idx) = namespaces[slot].clone();
            namespaces[slot].2 += 1;
            self.app_unit(&ns, created, idx, unit);
            unit += 1;
        }
        let mut i = 0usize;
        while self.room() > 0 {
            let (ns, created, _) = namespaces[i % namespaces.len()].clone();
            self.filler(&ns, created, i);
            i += 1;
        }
        self.metrics
    }

    fn namespace(&mut self, name: &str, created: i64, system: bool) {
        let mut d = self
            .draft(NAMESPACE, None, name, created)
            .label("kubernetes.io/metadata.name", name)
            .set("spec", json!({"finalizers": ["kubernetes"]}))
            .set("status", json!({"phase": "Active"}))
            .manager(if system {
                "kube-apiserver"
            } else {
                "kubectl-create"
            });
        if !system {
            let team = name.split('-').next().unwrap_or(name).to_string();
            let istio = if self.rng.chance(0.5) {
                "enabled"
            } else {
                "disabled"
            };
            d = d.label("team", team).label("istio-injection", istio);
        }
        self.emit(d);
    }

    /// What every namespace holds: the `default` service account and the root CA bundle.
    fn namespace_baseline(&mut self, ns: &str, created: i64) {
        let d = self
            .draft(SERVICEACCOUNT, Some(ns), "default", created)
            .manager("kube-controller-manager");
        self.emit(d);
        let ca = pem_block(&mut self.rng, "CERTIFICATE", 1050);
        let d = self
            .draft(CONFIGMAP, Some(ns), "kube-root-ca.crt", created)
            .annotation(
                "kubernetes.io/description",
                "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.",
            )
            .set("data", json!({"ca.crt": ca}))
            .manager("kube-controller-manager");
        self.emit(d);
    }

    fn nodes(&mut self, n: usize) {
        const ZONES: [&str; 3] = ["eu-west-1a", "eu-west-1b", "eu-west-1c"];
        for i in 0..n {
            let zone = ZONES[i % 3];
            let ip = format!("10.0.{}.{}", (i / 200) * 8 + (i % 3) * 2, 10 + i % 200);
            let name = format!("ip-{}.eu-west-1.compute.internal", ip.replace('.', "-"));
            let created = BASE_TIME - self.rng.range(1, 60) as i64 * 86_400;
            let mut images = Vec::new();
            for j in 0..self.rng.range(18, 32) as usize {
                let repo = format!(
                    "registry.example.com/{}/{}",
                    TEAMS[(i + j * 7) % TEAMS.len()],
                    COMPONENTS[j % COMPONENTS.len()]
                );
                let digest = self.rng.hex(64);
                let tag = semver(&mut self.rng);
                images.push(json!({
                    "names": [format!("{repo}@sha256:{digest}"), format!("{repo}:{tag}")],
                    "sizeBytes": self.rng.range(5_000_000, 900_000_000),
                }));
            }
            let cond = |t: &str, s: &str, reason: &str, msg: &str| json!({"lastHeartbeatTime": rfc3339(BASE_TIME - 40), "lastTransitionTime": rfc3339(created + 30), "message": msg, "reason": reason, "status": s, "type": t});
            let cidr = format!("10.244.{}.0/24", i % 256);
            let instance = format!("i-0{}", self.rng.hex(16));
            let mut d = self
                .draft(NODE, None, &name, created)
                .label("beta.kubernetes.io/arch", "amd64")
                .label("beta.kubernetes.io/instance-type", "m6i.xlarge")
                .label("beta.kubernetes.io/os", "linux")
                .label("failure-domain.beta.kubernetes.io/region", "eu-west-1")
                .label("failure-domain.beta.kubernetes.io/zone", zone)
                .label("kubernetes.io/arch", "amd64")
                .label("kubernetes.io/hostname", name.clone())
                .label("kubernetes.io/os", "linux")
                .label("node.kubernetes.io/instance-type", "m6i.xlarge")
                .label("topology.kubernetes.io/region", "eu-west-1")
                .label("topology.kubernetes.io/zone", zone)
                .annotation("alpha.kubernetes.io/provided-node-ip", ip.clone())
                .annotation("node.alpha.kubernetes.io/ttl", "0")
                .annotation("volumes.kubernetes.io/controller-managed-attach-detach", "true")
                .set("spec", json!({
                    "podCIDR": cidr,
                    "podCIDRs": [cidr],
                    "providerID": format!("aws:///{zone}/{instance}"),
                }))
                .set("status", json!({
                    "addresses": [
                        {"address": ip, "type": "InternalIP"},
                        {"address": name, "type": "Hostname"},
                        {"address": name, "type": "InternalDNS"},
                    ],
                    "allocatable": {"cpu": "3920m", "ephemeral-storage": "76224326324", "hugepages-1Gi": "0", "hugepages-2Mi": "0", "memory": "15208880Ki", "pods": "110"},
                    "capacity": {"cpu": "4", "ephemeral-storage": "83873772Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0", "memory": "16233904Ki", "pods": "110"},
                    "conditions": [
                        cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                        cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                        cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                        cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
                    ],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                    "images": images,
                    "nodeInfo": {
                        "architecture": "amd64",
                        "bootID": self.rng.uuid(),
                        "containerRuntimeVersion": "containerd://1.7.22",
                        "kernelVersion": "6.1.112-124.190.amzn2023.x86_64",
                        "kubeProxyVersion": "v1.31.0",
                        "kubeletVersion": "v1.31.0",
                        "machineID": self.rng.hex(32),
                        "operatingSystem": "linux",
                        "osImage": "Amazon Linux 2023.6.20241031",
                        "systemUUID": self.rng.uuid(),
                    },
                }))
                .manager("kubelet")
                .status_by("kubelet");
            if i == 0 {
                d = d
                    .label("node-role.kubernetes.io/control-plane", "")
                    .annotation(
                        "kubeadm.alpha.kubernetes.io/cri-socket",
                        "unix:///run/containerd/containerd.sock",
                    );
            }
            self.emit(d);
            self.metrics.nodes.push(name.clone());
            self.nodes.push(NodeInfo {
                name,
                ip,
                zone,
                instance,
            });
        }
    }

    fn cluster_scoped(&mut self, small: bool, api_services: &[(String, String)]) {
        let created = BASE_TIME - 400 * 86_400;
        // Storage classes.
        let classes: &[(&str, &str, bool)] = if small {
            &[("gp3", "ebs.csi.aws.com", true)]
        } else {
            &[
                ("gp3", "ebs.csi.aws.com", true),
                ("gp2", "kubernetes.io/aws-ebs", false),
                ("efs-sc", "efs.csi.aws.com", false),
            ]
        };
        for (name, provisioner, default) in classes {
            let mut d = self
                .draft(STORAGECLASS, None, name, created)
                .set("provisioner", json!(provisioner))
                .set(
                    "parameters",
                    json!({"type": name, "fsType": "ext4", "encrypted": "true"}),
                )
                .set("reclaimPolicy", json!("Delete"))
                .set("volumeBindingMode", json!("WaitForFirstConsumer"))
                .set("allowVolumeExpansion", json!(true));
            if *default {
                d = d.annotation("storageclass.kubernetes.io/is-default-class", "true");
            }
            self.emit(d);
        }
        // Priority classes.
        let mut prios: Vec<(&str, i64, &str)> = vec![
            (
                "system-cluster-critical",
                2_000_000_000,
                "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
            ),
            (
                "system-node-critical",
                2_000_001_000,
                "Used for system critical pods that must not be moved from their current node.",
            ),
        ];
        if !small {
            prios.push(("high-priority", 1_000_000, "Customer-facing services."));
            prios.push(("batch-low", -10, "Preemptible batch workloads."));
        }
        for (name, value, desc) in prios {
            let d = self
                .draft(PRIORITYCLASS, None, name, created)
                .set("value", json!(value))
                .set("description", json!(desc))
                .set("preemptionPolicy", json!("PreemptLowerPriority"))
                .manager("kube-apiserver");
            self.emit(d);
        }
        {
            let d = self
                .draft(INGRESSCLASS, None, "nginx", created)
                .annotation("ingressclass.kubernetes.io/is-default-class", "true")
                .label("app.kubernetes.io/name", "ingress-nginx")
                .set("spec", json!({"controller": "k8s.io/ingress-nginx"}));
            self.emit(d);
        }
        self.emit_widget_crd(created);
        self.emit_monitoring_crds(created);
        // APIServices: one per served group-version, as the aggregator registers them.
        for (group, version) in api_services {
            if small && group != crate::discovery::METRICS_GROUP {
                continue;
            }
            let name = format!("{version}.{group}");
            let mut spec = json!({
                "group": group,
                "groupPriorityMinimum": if group.is_empty() { 18000 } else { 17000 },
                "version": version,
                "versionPriority": 15,
            });
            let mut d = self.draft(APISERVICE, None, &name, created);
            if group == crate::discovery::METRICS_GROUP {
                spec = json!({
                    "group": group,
                    "groupPriorityMinimum": 100,
                    "insecureSkipTLSVerify": true,
                    "service": {"name": "metrics-server", "namespace": "kube-system", "port": 443},
                    "version": version,
                    "versionPriority": 100,
                });
                d = d
                    .label("app.kubernetes.io/name", "metrics-server")
                    .manager("helm");
            } else if is_custom_group(group) {
                // As the CRD registration controller registers every served CRD version.
                d = d
                    .label("kube-aggregator.kubernetes.io/automanaged", "true")
                    .manager("kube-apiserver");
                spec["groupPriorityMinimum"] = json!(1000);
                spec["versionPriority"] = json!(100);
            } else {
                d = d
                    .label("kube-aggregator.kubernetes.io/automanaged", "onstart")
                    .manager("kube-apiserver");
            }
            let status = json!({"conditions": [{
                "lastTransitionTime": rfc3339(created + 60),
                "message": if group == crate::discovery::METRICS_GROUP { "all checks passed" } else { "Local APIServices are always available" },
                "reason": "Passed",
                "status": "True",
                "type": "Available",
            }]});
            let d = d
                .set("spec", spec)
                .set("status", status)
                .status_by("kube-apiserver");
            self.emit(d);
        }
        // Cluster roles and bindings.
        let roles = cluster_role_templates();
        let take = if small { 4 } else { roles.len() };
        for (name, rules) in roles.into_iter().take(take) {
            let mut d = self
                .draft(CLUSTERROLE, None, &name, created)
                .label("kubernetes.io/bootstrapping", "rbac-defaults")
                .annotation("rbac.authorization.kubernetes.io/autoupdate", "true")
                .set("rules", rules)
                .manager("kube-apiserver");
            if matches!(name.as_str(), "admin" | "edit" | "view") {
                d = d.set(
                    "aggregationRule",
                    json!({"clusterRoleSelectors": [{"matchLabels": {format!("rbac.authorization.k8s.io/aggregate-to-{name}"): "true"}}]}),
                );
            }
            self.emit(d);
            let binds = !matches!(name.as_str(), "admin" | "edit" | "view")
                && (name.starts_with("system:controller:")
                    || name.starts_with("system:kube")
                    || name == "cluster-admin"
                    || !name.starts_with("system:"));
            if binds {
                let subject = if let Some(c) = name.strip_prefix("system:controller:") {
                    json!({"kind": "ServiceAccount", "name": c, "namespace": "kube-system"})
                } else if name == "cluster-admin" {
                    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters"})
                } else if name.starts_with("system:") {
                    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name})
                } else {
                    json!({"kind": "ServiceAccount", "name": name, "namespace": "kube-system"})
                };
                let d = self
                    .draft(CLUSTERROLEBINDING, None, &name, created)
                    .label("kubernetes.io/bootstrapping", "rbac-defaults")
                    .annotation("rbac.authorization.kubernetes.io/autoupdate", "true")
                    .set("roleRef", json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}))
                    .set("subjects", json!([subject]))
                    .manager("kube-apiserver");
                self.emit(d);
            }
        }
    }

    /// The `widgets.example.com` CRD: a big object, as real CRDs with full schemas are.
    fn emit_widget_crd(&mut self, created: i64) {
        let crd = widget_crd_value(&mut self.rng);
        let mut d = self
            .draft(CRD, None, "widgets.example.com", created)
            .label("app.kubernetes.io/name", "widget-operator")
            .annotation("controller-gen.kubebuilder.io/version", "v0.16.5")
            .manager("helm")
            .status_by("kube-apiserver");
        if let Value::Object(m) = crd {
            for (k, v) in m {
                d = d.set(&k, v);
            }
        }
        self.emit(d);
    }

    fn kube_system(&mut self, small: bool) {
        let ks = "kube-system";
        let created = BASE_TIME - 400 * 86_400;
        // kubernetes service in default.
        self.service_with_endpoints(
            "default",
            "kubernetes",
            created,
            &Map::new(),
            &[("https", 443, 6443)],
            Some("10.96.0.1".to_string()),
            &[],
            false,
        );
        // Controller service accounts.
        let sas: Vec<&str> = if small {
            vec!["coredns", "kube-proxy", "kube-autosave"]
        } else {
            let mut all: Vec<&str> = KUBE_CONTROLLERS
                .iter()
                .filter(|c| **c != "route-controller")
                .chain(&KUBE_SYSTEM_ADD_ON_ACCOUNTS)
                .copied()
                .collect();
            all.sort_unstable();
            all
        };
        for sa in sas {
            let d = self
                .draft(SERVICEACCOUNT, Some(ks), sa, created)
                .manager("kube-controller-manager");
            self.emit(d);
        }
        self.sa_token_secret(ks, "kube-autosave", created);
        // CoreDNS.
        let corefile = ".:53 {\n    errors\n    health {\n       lameduck 5s\n    }\n    ready\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n       pods insecure\n       fallthrough in-addr.arpa ip6.arpa\n       ttl 30\n    }\n    prometheus :9153\n    forward . /etc/resolv.conf {\n       max_concurrent 1000\n    }\n    cache 30\n    loop\n    reload\n    loadbalance\n}\n";
        let d = self
            .draft(CONFIGMAP, Some(ks), "coredns", created)
            .set("data", json!({"Corefile": corefile}))
            .manager("kubeadm");
        self.emit(d);
        let labels = str_map(&[("k8s-app", "kube-dns")]);
        let containers = vec![json!({
            "args": ["-conf", "/etc/coredns/Corefile"],
            "image": "registry.k8s.io/coredns/coredns:v1.11.3",
            "imagePullPolicy": "IfNotPresent",
            "livenessProbe": {"failureThreshold": 5, "httpGet": {"path": "/health", "port": 8080, "scheme": "HTTP"}, "initialDelaySeconds": 60, "periodSeconds": 10, "successThreshold": 1, "timeoutSeconds": 5},
            "name": "coredns",
            "ports": [
                {"containerPort": 53, "name": "dns", "protocol": "UDP"},
                {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
                {"containerPort": 9153, "name": "metrics", "protocol": "TCP"},
            ],
            "readinessProbe": {"failureThreshold": 3, "httpGet": {"path": "/ready", "port": 8181, "scheme": "HTTP"}, "periodSeconds": 10, "successThreshold": 1, "timeoutSeconds": 1},
            "resources": {"limits": {"memory": "170Mi"}, "requests": {"cpu": "100m", "memory": "70Mi"}},
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}, "readOnlyRootFilesystem": true},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "volumeMounts": [{"mountPath": "/etc/coredns", "name": "config-volume", "readOnly": true}],
        })];
        let volumes = json!([{"configMap": {"defaultMode": 420, "items": [{"key": "Corefile", "path": "Corefile"}], "name": "coredns"}, "name": "config-volume"}]);
        let pods = self.deployment_chain(
            ks, "coredns", created, &labels, containers, volumes, "coredns", 2, 1, "kubeadm", true,
        );
        self.service_with_endpoints(
            ks,
            "kube-dns",
            created,
            &labels,
            &[
                ("dns", 53, 53),
                ("dns-tcp", 53, 53),
                ("metrics", 9153, 9153),
            ],
            Some("10.96.0.10".to_string()),
            &pods,
            false,
        );
        // kube-proxy on every node.
        let kp_conf = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nbindAddress: 0.0.0.0\nclientConnection:\n  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf\nclusterCIDR: 10.244.0.0/16\nconfigSyncPeriod: 15m0s\nconntrack:\n  maxPerCore: 32768\n  min: 131072\n  tcpCloseWaitTimeout: 1h0m0s\n  tcpEstablishedTimeout: 24h0m0s\nenableProfiling: false\nhealthzBindAddress: 0.0.0.0:10256\nipvs:\n  minSyncPeriod: 0s\n  scheduler: \"\"\n  syncPeriod: 30s\nkind: KubeProxyConfiguration\nmetricsBindAddress: 127.0.0.1:10249\nmode: iptables\nnodePortAddresses: null\noomScoreAdj: -999\nportRange: \"\"\n";
        let d = self
            .draft(CONFIGMAP, Some(ks), "kube-proxy", created)
            .label("app", "kube-proxy")
            .set("data", json!({"config.conf": kp_conf, "kubeconfig.conf": "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt\n    server: https://10.0.0.10:6443\n  name: default\ncontexts:\n- context:\n    cluster: default\n    namespace: default\n    user: default\n  name: default\ncurrent-context: default\nusers:\n- name: default\n  user:\n    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token\n"}))
            .manager("kubeadm");
        self.emit(d);
        let kp_labels = str_map(&[("k8s-app", "kube-proxy")]);
        let kp_container = json!({
            "command": ["/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf", "--hostname-override=$(NODE_NAME)"],
            "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}}],
            "image": "registry.k8s.io/kube-proxy:v1.31.0",
            "imagePullPolicy": "IfNotPresent",
            "name": "kube-proxy",
            "resources": {},
            "securityContext": {"privileged": true},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "volumeMounts": [
                {"mountPath": "/var/lib/kube-proxy", "name": "kube-proxy"},
                {"mountPath": "/run/xtables.lock", "name": "xtables-lock"},
                {"mountPath": "/lib/modules", "name": "lib-modules", "readOnly": true},
            ],
        });
        let kp_volumes = json!([
            {"configMap": {"defaultMode": 420, "name": "kube-proxy"}, "name": "kube-proxy"},
            {"hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"}, "name": "xtables-lock"},
            {"hostPath": {"path": "/lib/modules", "type": ""}, "name": "lib-modules"},
        ]);
        self.daemonset_chain(
            ks,
            "kube-proxy",
            created,
            &kp_labels,
            kp_container,
            kp_volumes,
            "kube-proxy",
            "kubeadm",
        );
        // Node heartbeats.
        let nodes = self.nodes.clone();
        for n in &nodes {
            let d = self
                .draft(LEASE, Some("kube-node-lease"), &n.name, created)
                .owner(json!([{"apiVersion": "v1", "kind": "Node", "name": n.name, "uid": self.uid(&NODE, None, &n.name)}]))
                .set("spec", json!({"holderIdentity": n.name, "leaseDurationSeconds": 40, "renewTime": rfc3339_micro(BASE_TIME - 5, 123_456)}))
                .manager("kubelet");
            self.emit(d);
        }
        if small {
            return;
        }
        // Node agents: the CNI and the CSI node plugin.
        for (name, image, sa) in [
            (
                "aws-node",
                "602401143452.dkr.ecr.eu-west-1.amazonaws.com/amazon-k8s-cni:v1.18.5",
                "aws-node",
            ),
            (
                "ebs-csi-node",
                "public.ecr.aws/ebs-csi-driver/aws-ebs-csi-driver:v1.35.0",
                "ebs-csi-node-sa",
            ),
        ] {
            let labels = str_map(&[("app.kubernetes.io/name", name), ("k8s-app", name)]);
            let mut container = self.app_container(name, image, 6, 61678, false);
            if let Some(m) = container.as_object_mut() {
                m.remove("readinessProbe");
            }
            container["securityContext"] = json!({"privileged": true});
            container["volumeMounts"] = json!([{"mountPath": "/host/var/log", "name": "log-dir"}, {"mountPath": "/var/run", "name": "run-dir"}]);
            let volumes = json!([
                {"hostPath": {"path": "/var/log", "type": "DirectoryOrCreate"}, "name": "log-dir"},
                {"hostPath": {"path": "/var/run", "type": ""}, "name": "run-dir"},
            ]);
            self.daemonset_chain(ks, name, created, &labels, container, volumes, sa, "eks");
        }
        // Static control-plane pods on the first node, owned by the Node.
        let cp = self.nodes[0].clone();
        for comp in [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ] {
            let name = format!("{comp}-{}", cp.name);
            let image = if comp == "etcd" {
                "registry.k8s.io/etcd:3.5.15-0".to_string()
            } else {
                format!("registry.k8s.io/{comp}:v1.31.0")
            };
            let mut args = vec![format!("--advertise-address={}", cp.ip)];
            for j in 0..self.rng.range(15, 30) {
                args.push(format!("--{comp}-flag-{j}={}", self.rng.hex(12)));
            }
            let container = json!({
                "command": std::iter::once(Value::String(comp.to_string())).chain(args.into_iter().map(Value::String)).collect::<Vec<_>>(),
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "livenessProbe": {"failureThreshold": 8, "httpGet": {"host": cp.ip, "path": "/livez", "port": 6443, "scheme": "HTTPS"}, "initialDelaySeconds": 10, "periodSeconds": 10, "successThreshold": 1, "timeoutSeconds": 15},
                "name": comp,
                "resources": {"requests": {"cpu": "250m"}},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "volumeMounts": [{"mountPath": "/etc/kubernetes/pki", "name": "k8s-certs", "readOnly": true}],
            });
            let labels = str_map(&[("component", comp), ("tier", "control-plane")]);
            let mut pod = self.pod_value(&cp, vec![container], json!([{"hostPath": {"path": "/etc/kubernetes/pki", "type": "DirectoryOrCreate"}, "name": "k8s-certs"}]), None, true, created);
            pod["spec"]["hostNetwork"] = json!(true);
            pod["spec"]["priorityClassName"] = json!("system-node-critical");
            pod["spec"]["priority"] = json!(2_000_001_000);
            let owner = json!([{"apiVersion": "v1", "controller": true, "kind": "Node", "name": cp.name, "uid": self.uid(&NODE, None, &cp.name)}]);
            let mut d = self
                .draft(POD, Some(ks), &name, created)
                .labels(&labels)
                .annotation("kubernetes.io/config.hash", self.rng.hex(32))
                .annotation("kubernetes.io/config.source", "file")
                .owner(owner)
                .manager("kubelet")
                .status_by("kubelet");
            for (k, v) in pod.as_object().cloned().unwrap_or_default() {
                d = d.set(&k, v);
            }
            self.emit(d);
            self.metrics
                .pods
                .push((ks.to_string(), name, vec![comp.to_string()]));
        }
        // Leader election.
        for holder in ["kube-controller-manager", "kube-scheduler"] {
            let id = format!("{}_{}", cp.name, self.rng.uuid());
            self.lease(ks, holder, &id, created, 15);
        }
        let lease_name = format!("apiserver-{}", self.rng.suffix(26));
        let d = self
            .draft(LEASE, Some(ks), &lease_name, created)
            .label("apiserver.kubernetes.io/identity", "kube-apiserver")
            .label("kubernetes.io/hostname", cp.name.clone())
            .set("spec", json!({"holderIdentity": format!("apiserver-{}_{}", self.rng.suffix(8), self.rng.uuid()), "leaseDurationSeconds": 3600, "renewTime": rfc3339_micro(BASE_TIME - 3, 654_321)}))
            .manager("kube-apiserver");
        self.emit(d);
        // Configuration config maps.
        let auth = json!({
            "client-ca-file": pem_block(&mut self.rng, "CERTIFICATE", 1400),
            "requestheader-allowed-names": "[\"front-proxy-client\"]",
            "requestheader-client-ca-file": pem_block(&mut self.rng, "CERTIFICATE", 1400),
            "requestheader-extra-headers-prefix": "[\"X-Remote-Extra-\"]",
            "requestheader-group-headers": "[\"X-Remote-Group\"]",
            "requestheader-username-headers": "[\"X-Remote-User\"]",
        });
        for (name, data) in [
            ("extension-apiserver-authentication", auth),
            (
                "kubeadm-config",
                json!({"ClusterConfiguration": format!("apiServer: {{}}\napiVersion: kubeadm.k8s.io/v1beta4\ncertificatesDir: /etc/kubernetes/pki\nclusterName: kubernetes\ncontrolPlaneEndpoint: {}:6443\ncontrollerManager: {{}}\ndns: {{}}\nencryptionAlgorithm: RSA-2048\netcd:\n  local:\n    dataDir: /var/lib/etcd\nimageRepository: registry.k8s.io\nkind: ClusterConfiguration\nkubernetesVersion: v1.31.0\nnetworking:\n  dnsDomain: cluster.local\n  podSubnet: 10.244.0.0/16\n  serviceSubnet: 10.96.0.0/12\nproxy: {{}}\nscheduler: {{}}\n", cp.ip)}),
            ),
            (
                "kubelet-config",
                json!({"kubelet": "apiVersion: kubelet.config.k8s.io/v1beta1\nauthentication:\n  anonymous:\n    enabled: false\n  webhook:\n    cacheTTL: 0s\n    enabled: true\n  x509:\n    clientCAFile: /etc/kubernetes/pki/ca.crt\nauthorization:\n  mode: Webhook\ncgroupDriver: systemd\nclusterDNS:\n- 10.96.0.10\nclusterDomain: cluster.local\ncontainerRuntimeEndpoint: \"\"\ncpuManagerReconcilePeriod: 0s\nevictionPressureTransitionPeriod: 0s\nfileCheckFrequency: 0s\nhealthzBindAddress: 127.0.0.1\nhealthzPort: 10248\nhttpCheckFrequency: 0s\nimageMaximumGCAge: 0s\nimageMinimumGCAge: 0s\nkind: KubeletConfiguration\nlogging:\n  flushFrequency: 0\n  options:\n    json:\n      infoBufferSize: \"0\"\n    text:\n      infoBufferSize: \"0\"\n  verbosity: 0\nmemorySwap: {}\nnodeStatusReportFrequency: 0s\nnodeStatusUpdateFrequency: 0s\nrotateCertificates: true\nruntimeRequestTimeout: 0s\nshutdownGracePeriod: 0s\nshutdownGracePeriodCriticalPods: 0s\nstaticPodPath: /etc/kubernetes/manifests\nstreamingConnectionIdleTimeout: 0s\nsyncFrequency: 0s\nvolumeStatsAggPeriod: 0s\n"}),
            ),
            (
                "kube-apiserver-legacy-service-account-token-tracking",
                json!({"since": "2024-01-10"}),
            ),
        ] {
            let d = self
                .draft(CONFIGMAP, Some(ks), name, created)
                .set("data", data)
                .manager("kube-apiserver");
            self.emit(d);
        }
        let ca = pem_block(&mut self.rng, "CERTIFICATE", 1050);
        let d = self
            .draft(CONFIGMAP, Some("kube-public"), "cluster-info", created)
            .set("data", json!({"kubeconfig": format!("apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://{}:6443\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {{}}\nusers: null\n", ca.replace('\n', ""), cp.ip), "jws-kubeconfig-abcdef": format!("eyJhbGciOiJIUzI1NiIsImtpZCI6ImFiY2RlZiJ9..{}", self.rng.base64ish(43))}))
            .manager("kubeadm");
        self.emit(d);
        let d = self
            .draft(SECRET, Some(ks), "bootstrap-token-abcdef", created)
            .set("type", json!("bootstrap.kubernetes.io/token"))
            .set("data", json!({
                "auth-extra-groups": "c3lzdGVtOmJvb3RzdHJhcHBlcnM6a3ViZWFkbTpkZWZhdWx0LW5vZGUtdG9rZW4=",
                "expiration": "MjAyNS0wMS0xNlQxMDowMDowMFo=",
                "token-id": "YWJjZGVm",
                "token-secret": self.rng.base64(24),
                "usage-bootstrap-authentication": "dHJ1ZQ==",
                "usage-bootstrap-signing": "dHJ1ZQ==",
            }))
            .manager("kubeadm");
        self.emit(d);
        // metrics-server.
        let ms_labels = str_map(&[("k8s-app", "metrics-server")]);
        let container = self.app_container(
            "metrics-server",
            "registry.k8s.io/metrics-server/metrics-server:v0.7.2",
            4,
            10250,
            false,
        );
        let pods = self.deployment_chain(
            ks,
            "metrics-server",
            created,
            &ms_labels,
            vec![container],
            json!([{"emptyDir": {}, "name": "tmp-dir"}]),
            "metrics-server",
            1,
            2,
            "helm",
            true,
        );
        self.service_with_endpoints(
            ks,
            "metrics-server",
            created,
            &ms_labels,
            &[("https", 443, 10250)],
            None,
            &pods,
            false,
        );
        for (pod, _) in pods.iter().take(3) {
            self.event(
                ks,
                &POD,
                pod,
                0,
                "Normal",
                "Started",
                "Started container metrics-server",
                "kubelet",
                &cp.name,
                BASE_TIME - 300,
            );
        }
    }

    // ------------------------------------------------------------------------------------
    // Building blocks.

    fn app_container(
        &mut self,
        name: &str,
        image: &str,
        env: usize,
        port: u16,
        config: bool,
    ) -> Value {
        let mut envs = Vec::new();
        let start = self.rng.below(ENV_NAMES.len() as u64) as usize;
        for j in 0..env {
            let key = ENV_NAMES[(start + j) % ENV_NAMES.len()];
            let e = match self.rng.below(8) {
                0 => {
                    json!({"name": key, "valueFrom": {"secretKeyRef": {"key": key.to_lowercase(), "name": format!("{name}-secrets")}}})
                }
                1 => {
                    json!({"name": key, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}})
                }
                _ => {
                    json!({"name": key, "value": format!("{}-{}", key.to_lowercase(), self.rng.hex(6))})
                }
            };
            envs.push(e);
        }
        let mut c = json!({
            "env": envs,
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "livenessProbe": {"failureThreshold": 3, "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"}, "initialDelaySeconds": 10, "periodSeconds": 10, "successThreshold": 1, "timeoutSeconds": 1},
            "name": name,
            "ports": [{"containerPort": port, "name": "http", "protocol": "TCP"}],
            "readinessProbe": {"failureThreshold": 3, "httpGet": {"path": "/readyz", "port": "http", "scheme": "HTTP"}, "periodSeconds": 5, "successThreshold": 1, "timeoutSeconds": 1},
            "resources": {"limits": {"cpu": "1", "memory": format!("{}Mi", 256 * self.rng.range(1, 8))}, "requests": {"cpu": format!("{}m", 50 * self.rng.range(1, 10)), "memory": format!("{}Mi", 64 * self.rng.range(1, 8))}},
            "securityContext": {"allowPrivilegeEscalation": false, "runAsNonRoot": true, "runAsUser": 10001},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
        });
        if config {
            c["volumeMounts"] =
                json!([{"mountPath": "/etc/app", "name": "config", "readOnly": true}]);
        }
        c
    }

    /// A pod's spec and status as the scheduler and kubelet leave them.
    #[allow(clippy::too_many_arguments)]
    fn pod_value(
        &mut self,
        node: &NodeInfo,
        containers: Vec<Value>,
        volumes: Value,
        sa: Option<&str>,
        running: bool,
        created: i64,
    ) -> Value {
        let api_access = format!("kube-api-access-{}", self.rng.suffix(5));
        let mut containers = containers;
        for c in &mut containers {
            let mount = json!({"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": api_access, "readOnly": true});
            match c.get_mut("volumeMounts").and_then(Value::as_array_mut) {
                Some(m) => m.push(mount),
                None => c["volumeMounts"] = json!([mount]),
            }
        }
        let mut vols = volumes.as_array().cloned().unwrap_or_default();
        vols.push(json!({"name": api_access, "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"items": [{"key": "ca.crt", "path": "ca.crt"}], "name": "kube-root-ca.crt"}},
            {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}, "path": "namespace"}]}},
        ]}}));
        let started = created + 1 + self.rng.below(3) as i64;
        let ip = self.next_pod_ip();
        let statuses: Vec<Value> = containers
            .iter()
            .map(|c| {
                let image = c["image"].as_str().unwrap_or_default().to_string();
                let repo = image.split(':').next().unwrap_or_default().to_string();
                let state = if running {
                    json!({"running": {"startedAt": rfc3339(started + 5)}})
                } else {
                    json!({"terminated": {"containerID": format!("containerd://{}", self.rng.hex(64)), "exitCode": 0, "finishedAt": rfc3339(started + 65), "reason": "Completed", "startedAt": rfc3339(started + 5)}})
                };
                json!({
                    "containerID": format!("containerd://{}", self.rng.hex(64)),
                    "image": image,
                    "imageID": format!("{repo}@sha256:{}", self.rng.hex(64)),
                    "lastState": {},
                    "name": c["name"],
                    "ready": running,
                    "restartCount": if running { self.rng.below(3) } else { 0 },
                    "started": running,
                    "state": state,
                })
            })
            .collect();
        let cond = |t: &str, status: bool, at: i64| json!({"lastProbeTime": null, "lastTransitionTime": rfc3339(at), "status": if status { "True" } else { "False" }, "type": t});
        let mut spec = json!({
            "containers": containers,
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": true,
            "nodeName": node.name,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "restartPolicy": if running { "Always" } else { "OnFailure" },
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "serviceAccount": sa.unwrap_or("default"),
            "serviceAccountName": sa.unwrap_or("default"),
            "terminationGracePeriodSeconds": 30,
            "tolerations": [
                {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300},
                {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 300},
            ],
            "volumes": vols,
        });
        if sa.is_none()
            && let Some(m) = spec.as_object_mut()
        {
            m.remove("serviceAccount");
        }
        json!({
            "spec": spec,
            "status": {
                "conditions": [
                    cond("PodReadyToStartContainers", running, started + 4),
                    cond("Initialized", true, started),
                    cond("Ready", running, started + 6),
                    cond("ContainersReady", running, started + 6),
                    cond("PodScheduled", true, started),
                ],
                "containerStatuses": statuses,
                "hostIP": node.ip,
                "hostIPs": [{"ip": node.ip}],
                "phase": if running { "Running" } else { "Succeeded" },
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "qosClass": "Burstable",
                "startTime": rfc3339(started),
            },
        })
    }

    fn pod_template(
        &self,
        labels: &Map<String, Value>,
        containers: &[Value],
        volumes: &Value,
        sa: &str,
    ) -> Value {
        let mut spec = json!({
            "containers": containers,
            "dnsPolicy": "ClusterFirst",
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "terminationGracePeriodSeconds": 30,
        });
        if sa != "default" {
            spec["serviceAccount"] = json!(sa);
            spec["serviceAccountName"] = json!(sa);
        }
        if volumes.as_array().is_some_and(|v| !v.is_empty()) {
            spec["volumes"] = volumes.clone();
        }
        json!({"metadata": {"creationTimestamp": null, "labels": labels}, "spec": spec})
    }

    /// Deployment → ReplicaSets (current and old revisions) → Pods. Returns (pod name, ip).
    #[allow(clippy::too_many_arguments)]
    fn deployment_chain(
        &mut self,
        ns: &str,
        name: &str,
        created: i64,
        labels: &Map<String, Value>,
        containers: Vec<Value>,
        volumes: Value,
        sa: &str,
        replicas: u64,
        revision: u64,
        manager: &'static str,
        events: bool,
    ) -> Vec<(String, String)> {
        let template = self.pod_template(labels, &containers, &volumes, sa);
        let generation = revision as i64 + self.rng.below(2) as i64;
        let ready = replicas;
        let d = self
            .draft(DEPLOYMENT, Some(ns), name, created)
            .labels(labels)
            .annotation("deployment.kubernetes.io/revision", revision.to_string())
            .set("spec", json!({
                "progressDeadlineSeconds": 600,
                "replicas": replicas,
                "revisionHistoryLimit": 10,
                "selector": {"matchLabels": labels},
                "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}, "type": "RollingUpdate"},
                "template": template,
            }))
            .set("status", json!({
                "availableReplicas": ready,
                "conditions": [
                    {"lastTransitionTime": rfc3339(created + 40), "lastUpdateTime": rfc3339(created + 40), "message": "Deployment has minimum availability.", "reason": "MinimumReplicasAvailable", "status": "True", "type": "Available"},
                    {"lastTransitionTime": rfc3339(created + 2), "lastUpdateTime": rfc3339(created + 90), "message": format!("ReplicaSet \"{name}\" has successfully progressed."), "reason": "NewReplicaSetAvailable", "status": "True", "type": "Progressing"},
                ],
                "observedGeneration": generation,
                "readyReplicas": ready,
                "replicas": replicas,
                "updatedReplicas": replicas,
            }))
            .generation(generation)
            .manager(manager)
            .status_by("kube-controller-manager");
        self.emit(d);
        let old = revision.saturating_sub(1).min(3);
        let mut pods = Vec::new();
        for r in (revision - old)..=revision {
            let hash = self.rng.suffix(10);
            let rs_name = format!("{name}-{hash}");
            let current = r == revision;
            let rs_replicas = if current { replicas } else { 0 };
            let mut rs_labels = labels.clone();
            rs_labels.insert("pod-template-hash".into(), json!(hash));
            let mut rs_template = template.clone();
            rs_template["metadata"]["labels"] = Value::Object(rs_labels.clone());
            let rs_created = self.since(created, 200);
            let d = self
                .draft(REPLICASET, Some(ns), &rs_name, rs_created)
                .labels(&rs_labels)
                .annotation("deployment.kubernetes.io/desired-replicas", replicas.to_string())
                .annotation("deployment.kubernetes.io/max-replicas", (replicas + replicas.div_ceil(4)).to_string())
                .annotation("deployment.kubernetes.io/revision", r.to_string())
                .owner(self.owner_ref(&DEPLOYMENT, Some(ns), name))
                .set("spec", json!({"replicas": rs_replicas, "selector": {"matchLabels": rs_labels}, "template": rs_template}))
                .set("status", if current {
                    json!({"availableReplicas": replicas, "fullyLabeledReplicas": replicas, "observedGeneration": 1, "readyReplicas": replicas, "replicas": replicas})
                } else {
                    json!({"observedGeneration": 2, "replicas": 0})
                })
                .generation(if current { 1 } else { 2 })
                .manager("kube-controller-manager")
                .status_by("kube-controller-manager");
            self.emit(d);
            if !current {
                continue;
            }
            let mut used = Vec::new();
            for _ in 0..replicas {
                let mut suffix = self.rng.suffix(5);
                while used.contains(&suffix) {
                    suffix = self.rng.suffix(5);
                }
                used.push(suffix.clone());
                let pod_name = format!("{rs_name}-{suffix}");
                let node = self.pick_node();
                // Events live for an hour: only pods (re)started recently still have
                // their lifecycle events.
                let recent = events && self.rng.chance(0.3);
                let pod_created = if recent {
                    (BASE_TIME - self.rng.range(60, 3500) as i64).max(rs_created)
                } else {
                    self.since(rs_created, 14)
                };
                let pod = self.pod_value(
                    &node,
                    containers.clone(),
                    volumes.clone(),
                    Some(sa),
                    true,
                    pod_created,
                );
                let ip = pod["status"]["podIP"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let mut d = self
                    .draft(POD, Some(ns), &pod_name, pod_created)
                    .labels(&rs_labels)
                    .owner(self.owner_ref(&REPLICASET, Some(ns), &rs_name))
                    .manager("kube-controller-manager")
                    .status_by("kubelet");
                for (k, v) in pod.as_object().cloned().unwrap_or_default() {
                    d = d.set(&k, v);
                }
                let rv = self.emit(d);
                if ns == "kube-system" {
                    let names = containers
                        .iter()
                        .filter_map(|c| c["name"].as_str().map(str::to_string))
                        .collect();
                    self.metrics
                        .pods
                        .push((ns.to_string(), pod_name.clone(), names));
                }
                if events {
                    self.pod_events(
                        ns,
                        &pod_name,
                        rv,
                        &containers,
                        &node.name,
                        pod_created,
                        recent,
                    );
                }
                pods.push((pod_name, ip));
            }
        }
        if events && self.rng.chance(0.5) {
            let rs = format!("{name}-{}", self.rng.suffix(10));
            let at = BASE_TIME - self.rng.range(60, 3000) as i64;
            self.event(
                ns,
                &DEPLOYMENT,
                name,
                0,
                "Normal",
                "ScalingReplicaSet",
                &format!("Scaled up replica set {rs} to {replicas}"),
                "deployment-controller",
                "",
                at,
            );
        }
        pods
    }

    /// DaemonSet → ControllerRevision and one Pod per node.
    #[allow(clippy::too_many_arguments)]
    fn daemonset_chain(
        &mut self,
        ns: &str,
        name: &str,
        created: i64,
        labels: &Map<String, Value>,
        container: Value,
        volumes: Value,
        sa: &str,
        manager: &'static str,
    ) {
        let template = self.pod_template(labels, std::slice::from_ref(&container), &volumes, sa);
        let n = self.nodes.len() as u64;
        let d = self
            .draft(DAEMONSET, Some(ns), name, created)
            .labels(labels)
            .annotation("deprecated.daemonset.template.generation", "1")
            .set("spec", json!({"revisionHistoryLimit": 10, "selector": {"matchLabels": labels}, "template": template, "updateStrategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}, "type": "RollingUpdate"}}))
            .set("status", json!({"currentNumberScheduled": n, "desiredNumberScheduled": n, "numberAvailable": n, "numberMisscheduled": 0, "numberReady": n, "observedGeneration": 1, "updatedNumberScheduled": n}))
            .manager(manager)
            .status_by("kube-controller-manager");
        self.emit(d);
        let hash = self.rng.suffix(10);
        if self.room() > 0 {
            let d = self
                .draft(CONTROLLERREVISION, Some(ns), &format!("{name}-{hash}"), created)
                .labels(labels)
                .label("controller-revision-hash", hash.clone())
                .owner(self.owner_ref(&DAEMONSET, Some(ns), name))
                .set("data", json!({"spec": {"template": {"$patch": "replace", "metadata": template["metadata"], "spec": template["spec"]}}}))
                .set("revision", json!(1))
                .manager("kube-controller-manager");
            self.emit(d);
        }
        let nodes = self.nodes.clone();
        for node in nodes {
            if self.room() == 0 {
                break;
            }
            let pod_name = format!("{name}-{}", self.rng.suffix(5));
            let pod_created = self.since(created, 60);
            let mut pod = self.pod_value(
                &node,
                vec![container.clone()],
                volumes.clone(),
                Some(sa),
                true,
                pod_created,
            );
            pod["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node.name]}]}]}}});
            pod["spec"]["priorityClassName"] = json!("system-node-critical");
            pod["spec"]["priority"] = json!(2_000_001_000);
            let mut d = self
                .draft(POD, Some(ns), &pod_name, pod_created)
                .labels(labels)
                .label("controller-revision-hash", hash.clone())
                .label("pod-template-generation", "1")
                .owner(self.owner_ref(&DAEMONSET, Some(ns), name))
                .manager("kube-controller-manager")
                .status_by("kubelet");
            for (k, v) in pod.as_object().cloned().unwrap_or_default() {
                d = d.set(&k, v);
            }
            self.emit(d);
            if ns == "kube-system" {
                let c = container["name"].as_str().unwrap_or_default().to_string();
                self.metrics.pods.push((ns.to_string(), pod_name, vec![c]));
            }
        }
    }

    /// Service, Endpoints and an EndpointSlice owned by the Service.
    #[allow(clippy::too_many_arguments)]
    fn service_with_endpoints(
        &mut self,
        ns: &str,
        name: &str,
        created: i64,
        selector: &Map<String, Value>,
        ports: &[(&str, u16, u16)],
        cluster_ip: Option<String>,
        pods: &[(String, String)],
        headless: bool,
    ) {
        let ip = if headless {
            "None".to_string()
        } else {
            cluster_ip.unwrap_or_else(|| self.next_svc_ip())
        };
        let svc_ports: Vec<Value> = ports
            .iter()
            .map(|(n, p, t)| json!({"name": n, "port": p, "protocol": if n.starts_with("dns") && !n.contains("tcp") { "UDP" } else { "TCP" }, "targetPort": t}))
            .collect();
        let mut spec = json!({
            "clusterIP": ip,
            "clusterIPs": [ip],
            "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "ports": svc_ports,
            "sessionAffinity": "None",
            "type": "ClusterIP",
        });
        if !selector.is_empty() {
            spec["selector"] = Value::Object(selector.clone());
        }
        let d = self
            .draft(SERVICE, Some(ns), name, created)
            .labels(selector)
            .set("spec", spec)
            .set("status", json!({"loadBalancer": {}}));
        let d = if ns == "default" && name == "kubernetes" {
            d.label("component", "apiserver")
                .label("provider", "kubernetes")
                .manager("kube-apiserver")
        } else {
            d
        };
        self.emit(d);
        if !headless && self.room() > 0 {
            self.ip_address(&ip, ns, name, created);
        }
        if self.room() == 0 {
            return;
        }
        let addresses: Vec<Value> = pods
            .iter()
            .map(|(p, ip)| json!({"ip": ip, "nodeName": self.nodes.first().map(|n| n.name.clone()).unwrap_or_default(), "targetRef": {"kind": "Pod", "name": p, "namespace": ns, "uid": self.uid(&POD, Some(ns), p)}}))
            .collect();
        let ep_ports: Vec<Value> = ports
            .iter()
            .map(|(n, _, t)| json!({"name": n, "port": t, "protocol": if n.starts_with("dns") && !n.contains("tcp") { "UDP" } else { "TCP" }}))
            .collect();
        let subsets = if ns == "default" && name == "kubernetes" {
            let ip = self.nodes.first().map(|n| n.ip.clone()).unwrap_or_default();
            json!([{"addresses": [{"ip": ip}], "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}])
        } else if addresses.is_empty() {
            json!([])
        } else {
            json!([{"addresses": addresses, "ports": ep_ports}])
        };
        let mut d = self
            .draft(ENDPOINTS, Some(ns), name, created)
            .labels(selector)
            .annotation(
                "endpoints.kubernetes.io/last-change-trigger-time",
                rfc3339(BASE_TIME - 3600),
            )
            .manager("kube-controller-manager");
        if subsets.as_array().is_some_and(|s| !s.is_empty()) {
            d = d.set("subsets", subsets);
        }
        if headless {
            d = d.label("service.kubernetes.io/headless", "");
        }
        self.emit(d);
        if self.room() == 0 {
            return;
        }
        let slice_name = format!("{name}-{}", self.rng.suffix(5));
        let endpoints: Vec<Value> = pods
            .iter()
            .map(|(p, ip)| json!({"addresses": [ip], "conditions": {"ready": true, "serving": true, "terminating": false}, "nodeName": self.nodes.first().map(|n| n.name.clone()).unwrap_or_default(), "targetRef": {"kind": "Pod", "name": p, "namespace": ns, "uid": self.uid(&POD, Some(ns), p)}, "zone": self.nodes.first().map(|n| n.zone).unwrap_or_default()}))
            .collect();
        let mut d = self
            .draft(ENDPOINTSLICE, Some(ns), &slice_name, created)
            .labels(selector)
            .label(
                "endpointslice.kubernetes.io/managed-by",
                "endpointslice-controller.k8s.io",
            )
            .label("kubernetes.io/service-name", name)
            .annotation(
                "endpoints.kubernetes.io/last-change-trigger-time",
                rfc3339(BASE_TIME - 3600),
            )
            .owner(self.owner_ref(&SERVICE, Some(ns), name))
            .set("addressType", json!("IPv4"))
            .set("endpoints", json!(endpoints))
            .set("ports", json!(ep_ports))
            .manager("kube-controller-manager");
        if headless {
            d = d.label("service.kubernetes.io/headless", "");
        }
        self.emit(d);
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &mut self,
        ns: &str,
        k: &K,
        name: &str,
        rv: u64,
        kind: &str,
        reason: &str,
        message: &str,
        component: &str,
        host: &str,
        at: i64,
    ) {
        if self.room() == 0 {
            return;
        }
        let ev_name = format!("{name}.{}", self.rng.hex(16));
        let mut involved = json!({"apiVersion": k.api_version(), "kind": k.kind, "name": name, "namespace": ns, "uid": self.uid(k, Some(ns), name)});
        if rv > 0 {
            involved["resourceVersion"] = json!(rv.to_string());
        }
        let count = if self.rng.chance(0.2) {
            self.rng.range(2, 40)
        } else {
            1
        };
        let mut source = json!({"component": component});
        if !host.is_empty() {
            source["host"] = json!(host);
        }
        let d = self
            .draft(EVENT, Some(ns), &ev_name, at)
            .set("involvedObject", involved)
            .set("reason", json!(reason))
            .set("message", json!(message))
            .set("source", source)
            .set("firstTimestamp", json!(rfc3339(at)))
            .set(
                "lastTimestamp",
                json!(rfc3339(at + if count > 1 { 600 } else { 0 })),
            )
            .set("count", json!(count))
            .set("type", json!(kind))
            .set("eventTime", Value::Null)
            .set("reportingComponent", json!(component))
            .set("reportingInstance", json!(host))
            .manager(if component == "kubelet" {
                "kubelet"
            } else {
                "kube-controller-manager"
            });
        self.emit(d);
    }

    #[allow(clippy::too_many_arguments)]
    fn pod_events(
        &mut self,
        ns: &str,
        pod: &str,
        rv: u64,
        containers: &[Value],
        node: &str,
        created: i64,
        recent: bool,
    ) {
        if !recent {
            // A long-running pod only has the events of its recent trouble, if any.
            if self.rng.chance(0.1) {
                let at = BASE_TIME - self.rng.range(700, 3500) as i64;
                self.event(
                    ns,
                    &POD,
                    pod,
                    rv,
                    "Warning",
                    "Unhealthy",
                    "Readiness probe failed: HTTP probe failed with statuscode: 503",
                    "kubelet",
                    node,
                    at,
                );
            }
            return;
        }
        let at = created;
        self.event(
            ns,
            &POD,
            pod,
            rv,
            "Normal",
            "Scheduled",
            &format!("Successfully assigned {ns}/{pod} to {node}"),
            "default-scheduler",
            "",
            at,
        );
        for c in containers.iter().take(1) {
            let image = c["image"].as_str().unwrap_or_default();
            let cname = c["name"].as_str().unwrap_or_default();
            self.event(
                ns,
                &POD,
                pod,
                rv,
                "Normal",
                "Pulled",
                &format!("Container image \"{image}\" already present on machine"),
                "kubelet",
                node,
                at + 2,
            );
            self.event(
                ns,
                &POD,
                pod,
                rv,
                "Normal",
                "Created",
                &format!("Created container {cname}"),
                "kubelet",
                node,
                at + 3,
            );
            self.event(
                ns,
                &POD,
                pod,
                rv,
                "Normal",
                "Started",
                &format!("Started container {cname}"),
                "kubelet",
                node,
                at + 4,
            );
        }
        if self.rng.chance(0.15) {
            self.event(
                ns,
                &POD,
                pod,
                rv,
                "Warning",
                "Unhealthy",
                "Readiness probe failed: HTTP probe failed with statuscode: 503",
                "kubelet",
                node,
                at + 30,
            );
        }
    }

    fn sa_token_secret(&mut self, ns: &str, sa: &str, created: i64) {
        let name = format!("{sa}-token-{}", self.rng.suffix(5));
        // Secret data is base64 of the JWT and of the PEM bundle.
        let jwt = format!(
            "eyJhbGciOiJSUzI1NiIsImtpZCI6I{}.{}.{}",
            self.rng.base64ish(40),
            self.rng.base64ish(600),
            self.rng.base64ish(342)
        );
        let token = base64_of(&jwt);
        let ca = base64_of(&pem_block(&mut self.rng, "CERTIFICATE", 1050));
        let d = self
            .draft(SECRET, Some(ns), &name, created)
            .annotation("kubernetes.io/service-account.name", sa)
            .annotation(
                "kubernetes.io/service-account.uid",
                self.uid(&SERVICEACCOUNT, Some(ns), sa),
            )
            .set("type", json!("kubernetes.io/service-account-token"))
            .set(
                "data",
                json!({"ca.crt": ca, "namespace": base64_of(ns), "token": token}),
            )
            .manager("kube-controller-manager");
        self.emit(d);
    }

    fn lease(&mut self, ns: &str, name: &str, holder: &str, created: i64, duration: u64) {
        let d = self
            .draft(LEASE, Some(ns), name, created)
            .set("spec", json!({
                "acquireTime": rfc3339_micro(BASE_TIME - self.rng.range(3600, 864_000) as i64, 117_000),
                "holderIdentity": holder,
                "leaseDurationSeconds": duration,
                "leaseTransitions": self.rng.below(12),
                "renewTime": rfc3339_micro(BASE_TIME - 2, 881_000),
            }))
            .manager(if ns == "kube-system" { "kube-controller-manager" } else { "leader-election" });
        self.emit(d);
    }

    fn configmap(
        &mut self,
        ns: &str,
        name: &str,
        created: i64,
        labels: &Map<String, Value>,
        big: bool,
    ) {
        let mut data = Map::new();
        let files = self.rng.range(1, 4);
        for f in 0..files {
            let len = if big && f == 0 {
                self.rng.range(12_000, 50_000)
            } else {
                self.rng.range(80, 2_000)
            } as usize;
            data.insert(
                format!(
                    "{}.{}",
                    ["application", "settings", "logging", "routes"][f as usize % 4],
                    ["yaml", "json", "properties", "conf"][(f as usize + len) % 4]
                ),
                json!(config_text(&mut self.rng, len)),
            );
        }
        let d = self
            .draft(CONFIGMAP, Some(ns), name, created)
            .labels(labels)
            .set("data", Value::Object(data))
            .manager(if big {
                "helm"
            } else {
                "kubectl-client-side-apply"
            });
        self.emit(d);
    }

    fn opaque_secret(&mut self, ns: &str, name: &str, created: i64, labels: &Map<String, Value>) {
        let mut data = Map::new();
        for _ in 0..self.rng.range(1, 6) {
            let key = ENV_NAMES[self.rng.below(ENV_NAMES.len() as u64) as usize].to_lowercase();
            let len = self.rng.range(16, 120) as usize;
            data.insert(key, json!(self.rng.base64(len)));
        }
        let d = self
            .draft(SECRET, Some(ns), name, created)
            .labels(labels)
            .set("type", json!("Opaque"))
            .set("data", Value::Object(data));
        self.emit(d);
    }

    // ------------------------------------------------------------------------------------
    // Application units: what a team deploys into its namespace.

    /// One application. The first three are a stateful set, a cron job and a deployment, so
    /// that even a small cluster holds every kind they bring (volumes, attachments, jobs,
    /// autoscalers, ingresses...); the others are drawn.
    fn app_unit(&mut self, ns: &str, ns_created: i64, idx: usize, unit: usize) {
        let off = (crate::rng::hash_str(ns) % COMPONENTS.len() as u64) as usize;
        let comp = COMPONENTS[(idx + off) % COMPONENTS.len()];
        let name = if idx < COMPONENTS.len() {
            comp.to_string()
        } else {
            format!("{comp}-{}", idx / COMPONENTS.len())
        };
        let created = self.since(ns_created, 360);
        let roll = match unit {
            0 => 70,
            1 => 82,
            2 => 0,
            _ => self.rng.below(100),
        };
        if roll < 70 {
            // The first drawn application has every optional part, for the same reason.
            self.deployment_app(ns, &name, created, unit == 2);
        } else if roll < 82 {
            self.statefulset_app(ns, &name, created);
        } else if roll < 94 {
            self.cronjob_app(ns, &name, created);
        } else {
            self.config_app(ns, &name, created);
        }
    }

    fn app_labels(&self, ns: &str, name: &str) -> Map<String, Value> {
        let team = ns.split('-').next().unwrap_or(ns);
        str_map(&[
            ("app.kubernetes.io/instance", name),
            ("app.kubernetes.io/name", name),
            ("app.kubernetes.io/part-of", team),
        ])
    }

    /// A deployment and what comes with it; `full` adds every optional part.
    fn deployment_app(&mut self, ns: &str, name: &str, created: i64, full: bool) {
        let team = ns.split('-').next().unwrap_or(ns).to_string();
        let labels = self.app_labels(ns, name);
        let helm = self.rng.chance(0.3);
        let mut meta_labels = labels.clone();
        if helm {
            meta_labels.insert("app.kubernetes.io/managed-by".into(), json!("Helm"));
            meta_labels.insert(
                "helm.sh/chart".into(),
                json!(format!("{name}-{}", semver(&mut self.rng))),
            );
        }
        let manager = if helm {
            "helm"
        } else {
            "kubectl-client-side-apply"
        };
        // Configuration first, as a real rollout applies it.
        let cm_name = format!("{name}-config");
        let big = self.rng.chance(0.03);
        self.configmap(ns, &cm_name, created, &meta_labels, big);
        if self.rng.chance(0.3) {
            self.configmap(ns, &format!("{name}-env"), created, &meta_labels, false);
        }
        self.opaque_secret(ns, &format!("{name}-secrets"), created, &meta_labels);
        let sa = if self.rng.chance(0.6) {
            let d = self
                .draft(SERVICEACCOUNT, Some(ns), name, created)
                .labels(&meta_labels);
            self.emit(d);
            if self.rng.chance(0.2) {
                self.sa_token_secret(ns, name, created);
            }
            name.to_string()
        } else {
            "default".to_string()
        };
        let image = format!(
            "registry.example.com/{team}/{name}:{}",
            semver(&mut self.rng)
        );
        let env = self.rng.range(2, 9) as usize;
        let mut containers = vec![self.app_container(name, &image, env, 8080, true)];
        if self.rng.chance(0.2) {
            containers.push(self.app_container(
                "sidecar",
                "registry.example.com/platform/envoy:1.31.2",
                2,
                15090,
                false,
            ));
        }
        let volumes =
            json!([{"configMap": {"defaultMode": 420, "name": cm_name}, "name": "config"}]);
        let replicas = self.rng.range(1, 3);
        let revision = self.rng.range(1, 6);
        let pods = self.deployment_chain(
            ns, name, created, &labels, containers, volumes, &sa, replicas, revision, manager, true,
        );
        let headless = self.rng.chance(0.1);
        self.service_with_endpoints(
            ns,
            name,
            created,
            &labels,
            &[("http", 80, 8080)],
            None,
            &pods,
            headless,
        );
        if helm {
            self.helm_release(ns, name, created, revision);
        }
        if full || self.rng.chance(0.3) {
            let d = self
                .draft(HPA, Some(ns), name, created)
                .labels(&meta_labels)
                .set("spec", json!({"maxReplicas": 10, "metrics": [{"resource": {"name": "cpu", "target": {"averageUtilization": 70, "type": "Utilization"}}, "type": "Resource"}], "minReplicas": replicas, "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}}))
                .set("status", json!({
                    "conditions": [
                        {"lastTransitionTime": rfc3339(created + 60), "message": "recommended size matches current size", "reason": "ReadyForNewScale", "status": "True", "type": "AbleToScale"},
                        {"lastTransitionTime": rfc3339(created + 60), "message": "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)", "reason": "ValidMetricFound", "status": "True", "type": "ScalingActive"},
                        {"lastTransitionTime": rfc3339(created + 60), "message": "the desired count is within the acceptable range", "reason": "DesiredWithinRange", "status": "False", "type": "ScalingLimited"},
                    ],
                    "currentMetrics": [{"resource": {"current": {"averageUtilization": self.rng.range(5, 90), "averageValue": format!("{}m", self.rng.range(5, 400))}, "name": "cpu"}, "type": "Resource"}],
                    "currentReplicas": replicas,
                    "desiredReplicas": replicas,
                }))
                .manager(manager)
                .status_by("kube-controller-manager");
            self.emit(d);
        }
        if full || self.rng.chance(0.25) {
            self.pdb(ns, name, created, &labels, replicas);
        }
        if full || self.rng.chance(0.25) {
            let host = format!("{name}.{ns}.example.com");
            let tls = format!("{name}-tls");
            let d = self
                .draft(SECRET, Some(ns), &tls, created)
                .labels(&meta_labels)
                .annotation("cert-manager.io/certificate-name", tls.clone())
                .annotation("cert-manager.io/issuer-name", "letsencrypt")
                .set("type", json!("kubernetes.io/tls"))
                .set(
                    "data",
                    json!({"tls.crt": self.rng.base64(2400), "tls.key": self.rng.base64(1700)}),
                )
                .manager("cert-manager-certificates-issuing");
            self.emit(d);
            let d = self
                .draft(INGRESS, Some(ns), name, created)
                .labels(&meta_labels)
                .annotation("cert-manager.io/cluster-issuer", "letsencrypt")
                .annotation("nginx.ingress.kubernetes.io/proxy-body-size", "8m")
                .set("spec", json!({"ingressClassName": "nginx", "rules": [{"host": host, "http": {"paths": [{"backend": {"service": {"name": name, "port": {"number": 80}}}, "path": "/", "pathType": "Prefix"}]}}], "tls": [{"hosts": [host], "secretName": tls}]}))
                .set("status", json!({"loadBalancer": {"ingress": [{"hostname": format!("a{}.elb.eu-west-1.amazonaws.com", self.rng.hex(20))}]}}))
                .manager(manager)
                .status_by("nginx-ingress-controller");
            self.emit(d);
        }
        if full || self.rng.chance(0.25) {
            let d = self
                .draft(NETWORKPOLICY, Some(ns), &format!("{name}-allow"), created)
                .labels(&meta_labels)
                .set("spec", json!({"ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}, {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": team}}}], "ports": [{"port": 8080, "protocol": "TCP"}]}], "podSelector": {"matchLabels": labels}, "policyTypes": ["Ingress"]}))
                .manager(manager);
            self.emit(d);
        }
        if full || self.rng.chance(0.3) {
            self.role_pair(ns, name, created, &meta_labels, &sa);
        }
        if full || self.rng.chance(0.1) {
            self.lease(
                ns,
                &format!("{name}-leader"),
                &pods.first().map(|p| p.0.clone()).unwrap_or_default(),
                created,
                15,
            );
        }
        if full || self.rng.chance(0.12) {
            self.widget(ns, name, created, &meta_labels);
        }
        if full || self.rng.chance(0.15) {
            self.app_service_monitor(ns, name, created, &meta_labels, &labels);
        }
    }

    fn statefulset_app(&mut self, ns: &str, name: &str, created: i64) {
        let labels = self.app_labels(ns, name);
        let replicas = self.rng.range(1, 3);
        let (image, port) = *self.rng.pick(&[
            ("postgres:16.6", 5432u16),
            ("redis:7.4.1", 6379),
            ("bitnami/kafka:3.8.1", 9092),
            ("bitnami/rabbitmq:3.13.7", 5672),
        ]);
        self.configmap(ns, &format!("{name}-config"), created, &labels, false);
        self.opaque_secret(ns, &format!("{name}-auth"), created, &labels);
        let container = self.app_container(name, image, 4, port, true);
        let mut container = container;
        container["volumeMounts"] = json!([{"mountPath": "/etc/app", "name": "config", "readOnly": true}, {"mountPath": "/data", "name": "data"}]);
        let volumes = json!([{"configMap": {"defaultMode": 420, "name": format!("{name}-config")}, "name": "config"}]);
        let template = self.pod_template(
            &labels,
            std::slice::from_ref(&container),
            &volumes,
            "default",
        );
        let size = format!("{}Gi", 10 * self.rng.range(1, 20));
        let svc = format!("{name}-headless");
        let hash = format!("{name}-{}", self.rng.suffix(10));
        let d = self
            .draft(STATEFULSET, Some(ns), name, created)
            .labels(&labels)
            .set("spec", json!({
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
                "podManagementPolicy": "OrderedReady",
                "replicas": replicas,
                "revisionHistoryLimit": 10,
                "selector": {"matchLabels": labels},
                "serviceName": svc,
                "template": template,
                "updateStrategy": {"rollingUpdate": {"partition": 0}, "type": "RollingUpdate"},
                "volumeClaimTemplates": [{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"creationTimestamp": null, "name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}, "storageClassName": "gp3", "volumeMode": "Filesystem"}, "status": {"phase": "Pending"}}],
            }))
            .set("status", json!({"availableReplicas": replicas, "collisionCount": 0, "currentReplicas": replicas, "currentRevision": hash, "observedGeneration": 1, "readyReplicas": replicas, "replicas": replicas, "updateRevision": hash, "updatedReplicas": replicas}))
            .status_by("kube-controller-manager");
        self.emit(d);
        let d = self
            .draft(CONTROLLERREVISION, Some(ns), &hash, created)
            .labels(&labels)
            .label("controller.kubernetes.io/hash", hash.rsplit('-').next().unwrap_or_default())
            .owner(self.owner_ref(&STATEFULSET, Some(ns), name))
            .set("data", json!({"spec": {"template": {"$patch": "replace", "metadata": template["metadata"], "spec": template["spec"]}}}))
            .set("revision", json!(1))
            .manager("kube-controller-manager");
        self.emit(d);
        let mut pods = Vec::new();
        for i in 0..replicas {
            let pod_name = format!("{name}-{i}");
            let claim = format!("data-{name}-{i}");
            let node = self.pick_node();
            let mut vols = volumes.as_array().cloned().unwrap_or_default();
            vols.insert(
                0,
                json!({"name": "data", "persistentVolumeClaim": {"claimName": claim}}),
            );
            let pod_created = self.since(created, 30);
            let mut pod = self.pod_value(
                &node,
                vec![container.clone()],
                Value::Array(vols),
                None,
                true,
                pod_created,
            );
            pod["spec"]["hostname"] = json!(pod_name);
            pod["spec"]["subdomain"] = json!(svc);
            let ip = pod["status"]["podIP"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let mut d = self
                .draft(POD, Some(ns), &pod_name, pod_created)
                .labels(&labels)
                .label("apps.kubernetes.io/pod-index", i.to_string())
                .label("controller-revision-hash", hash.clone())
                .label("statefulset.kubernetes.io/pod-name", pod_name.clone())
                .owner(self.owner_ref(&STATEFULSET, Some(ns), name))
                .manager("kube-controller-manager")
                .status_by("kubelet");
            for (k, v) in pod.as_object().cloned().unwrap_or_default() {
                d = d.set(&k, v);
            }
            self.emit(d);
            pods.push((pod_name, ip));
            // The claim and the volume bound to it.
            let pvc_uid = self.uid(&PVC, Some(ns), &claim);
            let pv_name = format!("pvc-{pvc_uid}");
            let d = self
                .draft(PVC, Some(ns), &claim, created)
                .labels(&labels)
                .annotation("pv.kubernetes.io/bind-completed", "yes")
                .annotation("pv.kubernetes.io/bound-by-controller", "yes")
                .annotation("volume.beta.kubernetes.io/storage-provisioner", "ebs.csi.aws.com")
                .annotation("volume.kubernetes.io/selected-node", node.name.clone())
                .annotation("volume.kubernetes.io/storage-provisioner", "ebs.csi.aws.com")
                .finalizer("kubernetes.io/pvc-protection")
                .set("spec", json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}, "storageClassName": "gp3", "volumeMode": "Filesystem", "volumeName": pv_name}))
                .set("status", json!({"accessModes": ["ReadWriteOnce"], "capacity": {"storage": size}, "phase": "Bound"}))
                .manager("kube-controller-manager")
                .status_by("kube-controller-manager");
            let pvc_rv = self.emit(d);
            let volume_handle = format!("vol-0{}", self.rng.hex(16));
            let d = self
                .draft(PV, None, &pv_name, created + 3)
                .annotation("pv.kubernetes.io/provisioned-by", "ebs.csi.aws.com")
                .annotation("volume.kubernetes.io/provisioner-deletion-secret-name", "")
                .annotation("volume.kubernetes.io/provisioner-deletion-secret-namespace", "")
                .finalizer("external-provisioner.volume.kubernetes.io/finalizer")
                .finalizer("kubernetes.io/pv-protection")
                .set("spec", json!({
                    "accessModes": ["ReadWriteOnce"],
                    "capacity": {"storage": size},
                    "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": claim, "namespace": ns, "resourceVersion": pvc_rv.to_string(), "uid": pvc_uid},
                    "csi": {"driver": "ebs.csi.aws.com", "fsType": "ext4", "volumeAttributes": {"storage.kubernetes.io/csiProvisionerIdentity": format!("1736000000000-{}-ebs.csi.aws.com", self.rng.range(1000, 9999))}, "volumeHandle": volume_handle},
                    "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": [node.zone]}]}]}},
                    "persistentVolumeReclaimPolicy": "Delete",
                    "storageClassName": "gp3",
                    "volumeMode": "Filesystem",
                }))
                .set("status", json!({"lastPhaseTransitionTime": rfc3339(created + 4), "phase": "Bound"}))
                .manager("csi-provisioner")
                .status_by("kube-controller-manager");
            self.emit(d);
            if self.room() > 0 {
                self.volume_attachment(&pv_name, &volume_handle, &node, pod_created);
            }
        }
        self.service_with_endpoints(
            ns,
            &svc,
            created,
            &labels,
            &[("tcp", port, port)],
            None,
            &pods,
            true,
        );
        if self.rng.chance(0.5) {
            self.pdb(ns, name, created, &labels, replicas);
        }
        for (pod, _) in pods.iter().take(1) {
            let node = self.pick_node().name;
            let at = BASE_TIME - self.rng.range(60, 3500) as i64;
            self.event(
                ns,
                &POD,
                pod,
                0,
                "Normal",
                "Pulled",
                &format!("Container image \"{image}\" already present on machine"),
                "kubelet",
                &node,
                at,
            );
        }
    }

    fn cronjob_app(&mut self, ns: &str, name: &str, created: i64) {
        let labels = self.app_labels(ns, name);
        let team = ns.split('-').next().unwrap_or(ns).to_string();
        let image = format!(
            "registry.example.com/{team}/{name}-job:{}",
            semver(&mut self.rng)
        );
        let mut container = self.app_container(name, &image, 3, 8080, false);
        if let Some(m) = container.as_object_mut() {
            m.remove("livenessProbe");
            m.remove("readinessProbe");
            m.remove("ports");
        }
        container["args"] = json!(["--run-once", format!("--task={name}")]);
        let minutes = *self.rng.pick(&[15i64, 30, 60, 360, 1440]);
        let schedule = match minutes {
            15 => "*/15 * * * *".to_string(),
            30 => "*/30 * * * *".to_string(),
            60 => format!("{} * * * *", self.rng.below(60)),
            360 => format!("{} */6 * * *", self.rng.below(60)),
            _ => format!("{} {} * * *", self.rng.below(60), self.rng.below(24)),
        };
        let job_template = json!({"metadata": {"creationTimestamp": null}, "spec": {"backoffLimit": 3, "template": {"metadata": {"creationTimestamp": null, "labels": labels}, "spec": {"containers": [container], "dnsPolicy": "ClusterFirst", "restartPolicy": "OnFailure", "schedulerName": "default-scheduler", "securityContext": {}, "terminationGracePeriodSeconds": 30}}, "ttlSecondsAfterFinished": 86400}});
        let last = (BASE_TIME / 60 / minutes) * minutes * 60;
        let d = self
            .draft(CRONJOB, Some(ns), name, created)
            .labels(&labels)
            .set("spec", json!({"concurrencyPolicy": "Forbid", "failedJobsHistoryLimit": 1, "jobTemplate": job_template, "schedule": schedule, "successfulJobsHistoryLimit": 3, "suspend": false}))
            .set("status", json!({"lastScheduleTime": rfc3339(last), "lastSuccessfulTime": rfc3339(last + 70)}))
            .status_by("kube-controller-manager");
        self.emit(d);
        self.configmap(ns, &format!("{name}-job-config"), created, &labels, false);
        let jobs = self.rng.range(1, 3);
        for j in 0..jobs {
            let at = last - (j as i64) * minutes * 60;
            let job = format!("{name}-{}", at / 60);
            let mut job_labels = labels.clone();
            job_labels.insert(
                "batch.kubernetes.io/controller-uid".into(),
                json!(self.uid(&JOB, Some(ns), &job)),
            );
            job_labels.insert("batch.kubernetes.io/job-name".into(), json!(job));
            job_labels.insert(
                "controller-uid".into(),
                json!(self.uid(&JOB, Some(ns), &job)),
            );
            job_labels.insert("job-name".into(), json!(job));
            let mut spec = job_template["spec"].clone();
            spec["completionMode"] = json!("NonIndexed");
            spec["completions"] = json!(1);
            spec["manualSelector"] = json!(false);
            spec["parallelism"] = json!(1);
            spec["podReplacementPolicy"] = json!("TerminatingOrFailed");
            spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": self.uid(&JOB, Some(ns), &job)}});
            spec["suspend"] = json!(false);
            spec["template"]["metadata"]["labels"] = Value::Object(job_labels.clone());
            let d = self
                .draft(JOB, Some(ns), &job, at)
                .labels(&job_labels)
                .annotation("batch.kubernetes.io/cronjob-scheduled-timestamp", rfc3339(at))
                .owner(self.owner_ref(&CRONJOB, Some(ns), name))
                .set("spec", spec)
                .set("status", json!({"completionTime": rfc3339(at + 65), "conditions": [{"lastProbeTime": rfc3339(at + 65), "lastTransitionTime": rfc3339(at + 65), "message": "Reached expected number of succeeded pods", "reason": "CompletionsReached", "status": "True", "type": "SuccessCriteriaMet"}, {"lastProbeTime": rfc3339(at + 65), "lastTransitionTime": rfc3339(at + 65), "message": "Reached expected number of succeeded pods", "reason": "CompletionsReached", "status": "True", "type": "Complete"}], "ready": 0, "startTime": rfc3339(at), "succeeded": 1, "terminating": 0, "uncountedTerminatedPods": {}}))
                .manager("kube-controller-manager")
                .status_by("kube-controller-manager");
            self.emit(d);
            let pod_name = format!("{job}-{}", self.rng.suffix(5));
            let node = self.pick_node();
            let pod = self.pod_value(&node, vec![container.clone()], json!([]), None, false, at);
            let mut d = self
                .draft(POD, Some(ns), &pod_name, at)
                .labels(&job_labels)
                .owner(self.owner_ref(&JOB, Some(ns), &job))
                .manager("kube-controller-manager")
                .status_by("kubelet");
            for (k, v) in pod.as_object().cloned().unwrap_or_default() {
                d = d.set(&k, v);
            }
            let rv = self.emit(d);
            if j == 0 {
                self.event(
                    ns,
                    &JOB,
                    &job,
                    0,
                    "Normal",
                    "SuccessfulCreate",
                    &format!("Created pod: {pod_name}"),
                    "job-controller",
                    "",
                    at + 1,
                );
                self.event(
                    ns,
                    &POD,
                    &pod_name,
                    rv,
                    "Normal",
                    "Started",
                    &format!("Started container {name}"),
                    "kubelet",
                    &node.name,
                    at + 4,
                );
                self.event(
                    ns,
                    &JOB,
                    &job,
                    0,
                    "Normal",
                    "Completed",
                    "Job completed",
                    "job-controller",
                    "",
                    at + 66,
                );
                self.event(
                    ns,
                    &CRONJOB,
                    name,
                    0,
                    "Normal",
                    "SawCompletedJob",
                    &format!("Saw completed job: {job}, condition: Complete"),
                    "cronjob-controller",
                    "",
                    at + 67,
                );
            }
        }
    }

    /// Mostly configuration: config maps, secrets, a Helm release, RBAC.
    fn config_app(&mut self, ns: &str, name: &str, created: i64) {
        let labels = self.app_labels(ns, name);
        for i in 0..self.rng.range(2, 5) {
            let big = self.rng.chance(0.08);
            self.configmap(ns, &format!("{name}-{i}"), created, &labels, big);
        }
        for i in 0..self.rng.range(1, 3) {
            self.opaque_secret(ns, &format!("{name}-credentials-{i}"), created, &labels);
        }
        let revision = self.rng.range(1, 4);
        self.helm_release(ns, name, created, revision);
        self.role_pair(ns, name, created, &labels, "default");
        if self.rng.chance(0.3) {
            self.widget(ns, name, created, &labels);
        }
    }

    fn pdb(
        &mut self,
        ns: &str,
        name: &str,
        created: i64,
        labels: &Map<String, Value>,
        replicas: u64,
    ) {
        let d = self
            .draft(PDB, Some(ns), name, created)
            .labels(labels)
            .set("spec", json!({"maxUnavailable": 1, "selector": {"matchLabels": labels}}))
            .set("status", json!({"conditions": [{"lastTransitionTime": rfc3339(created + 30), "message": "", "observedGeneration": 1, "reason": "SufficientPods", "status": "True", "type": "DisruptionAllowed"}], "currentHealthy": replicas, "desiredHealthy": replicas.saturating_sub(1), "disruptionsAllowed": 1, "expectedPods": replicas, "observedGeneration": 1}))
            .status_by("kube-controller-manager");
        self.emit(d);
    }

    fn role_pair(
        &mut self,
        ns: &str,
        name: &str,
        created: i64,
        labels: &Map<String, Value>,
        sa: &str,
    ) {
        let d = self
            .draft(ROLE, Some(ns), name, created)
            .labels(labels)
            .set("rules", json!([
                {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
                {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
            ]));
        self.emit(d);
        let d = self
            .draft(ROLEBINDING, Some(ns), name, created)
            .labels(labels)
            .set(
                "roleRef",
                json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}),
            )
            .set(
                "subjects",
                json!([{"kind": "ServiceAccount", "name": sa, "namespace": ns}]),
            );
        self.emit(d);
    }

    /// A Helm release secret: a large opaque blob, one per revision kept.
    fn helm_release(&mut self, ns: &str, name: &str, created: i64, revision: u64) {
        for r in revision.saturating_sub(1).max(1)..=revision {
            if self.room() == 0 {
                return;
            }
            let len = self.rng.range(3_000, 24_000) as usize;
            let status = if r == revision {
                "deployed"
            } else {
                "superseded"
            };
            let at = self.since(created, 200);
            let d = self
                .draft(
                    SECRET,
                    Some(ns),
                    &format!("sh.helm.release.v1.{name}.v{r}"),
                    at,
                )
                .label("modifiedAt", (BASE_TIME - 86_400).to_string())
                .label("name", name)
                .label("owner", "helm")
                .label("status", status)
                .label("version", r.to_string())
                .set("type", json!("helm.sh/release.v1"))
                .set("data", json!({"release": self.rng.base64(len)}))
                .manager("helm");
            self.emit(d);
        }
    }

    fn widget(&mut self, ns: &str, name: &str, created: i64, labels: &Map<String, Value>) {
        let size = *self.rng.pick(&["small", "medium", "large"]);
        let d = self
            .draft(WIDGET, Some(ns), name, created)
            .labels(labels)
            .set("spec", json!({"color": *self.rng.pick(&["red", "green", "blue"]), "size": size, "replicas": self.rng.range(1, 5), "owner": ns, "parts": (0..self.rng.range(1, 6)).map(|i| json!({"name": format!("part-{i}"), "quantity": i + 1})).collect::<Vec<_>>()}))
            .set("status", json!({"conditions": [{"lastTransitionTime": rfc3339(created + 5), "message": "Widget is ready", "observedGeneration": 1, "reason": "Reconciled", "status": "True", "type": "Ready"}], "observedGeneration": 1, "phase": "Ready"}))
            .manager("widget-operator")
            .status_by("widget-operator");
        self.emit(d);
    }

    /// Single objects that top the cluster up to exactly N.
    fn filler(&mut self, ns: &str, ns_created: i64, i: usize) {
        let created = self.since(ns_created, 300);
        let labels = str_map(&[(
            "app.kubernetes.io/part-of",
            ns.split('-').next().unwrap_or(ns),
        )]);
        match self.rng.below(100) {
            0..40 => self.configmap(ns, &format!("settings-{i}"), created, &labels, false),
            40..65 => self.opaque_secret(ns, &format!("credentials-{i}"), created, &labels),
            65..85 => {
                let at = BASE_TIME - self.rng.range(60, 3500) as i64;
                self.event(
                    ns,
                    &NAMESPACE,
                    ns,
                    0,
                    "Normal",
                    "Synced",
                    &format!("Sync {i} completed"),
                    "argocd-application-controller",
                    "",
                    at,
                );
            }
            _ => {
                let d = self
                    .draft(
                        SERVICEACCOUNT,
                        Some(ns),
                        &format!("automation-{i}"),
                        created,
                    )
                    .labels(&labels);
                self.emit(d);
            }
        }
    }
}

/// Metrics objects for the nodes and kube-system pods of a generated cluster.
pub(crate) fn metrics_objects(seed: u64, targets: &MetricsTargets) -> Vec<(K, Value)> {
    let mut rng = Rng::derived(seed, "metrics");
    let ts = rfc3339(BASE_TIME - 12);
    let mut out = Vec::new();
    for n in &targets.nodes {
        out.push((
            NODE_METRICS,
            json!({
                "apiVersion": "metrics.k8s.io/v1beta1",
                "kind": "NodeMetrics",
                "metadata": {"creationTimestamp": rfc3339(BASE_TIME), "labels": {"kubernetes.io/hostname": n}, "name": n},
                "timestamp": ts,
                "usage": {"cpu": format!("{}n", rng.range(50_000_000, 2_000_000_000)), "memory": format!("{}Ki", rng.range(900_000, 9_000_000))},
                "window": "20.05s",
            }),
        ));
    }
    for (ns, pod, containers) in &targets.pods {
        out.push((
            POD_METRICS,
            json!({
                "apiVersion": "metrics.k8s.io/v1beta1",
                "kind": "PodMetrics",
                "metadata": {"creationTimestamp": rfc3339(BASE_TIME), "name": pod, "namespace": ns},
                "timestamp": ts,
                "containers": containers.iter().map(|c| json!({"name": c, "usage": {"cpu": format!("{}n", rng.range(100_000, 90_000_000)), "memory": format!("{}Ki", rng.range(8_000, 400_000))}})).collect::<Vec<_>>(),
                "window": "18.563s",
            }),
        ));
    }
    out
}

/// The spec and status of the `widgets.example.com` CRD, with a schema as large as real
/// operator CRDs have.
pub(crate) fn widget_crd_value(rng: &mut Rng) -> Value {
    let mut props = Map::new();
    for i in 0..60 {
        let name = format!(
            "{}{}",
            ["color", "size", "mode", "target", "policy", "limit"][i % 6],
            i / 6
        );
        props.insert(
            name.clone(),
            json!({
                "description": format!("{name} configures how the widget operator reconciles this aspect of the widget. {}", config_text(rng, 160)),
                "type": if i % 3 == 0 { "integer" } else { "string" },
            }),
        );
    }
    props.insert("color".into(), json!({"description": "Color of the widget.", "enum": ["red", "green", "blue"], "type": "string"}));
    props.insert(
        "size".into(),
        json!({"description": "Size of the widget.", "type": "string"}),
    );
    props.insert("replicas".into(), json!({"description": "Desired number of widget instances.", "format": "int32", "minimum": 0, "type": "integer"}));
    props.insert(
        "owner".into(),
        json!({"description": "Team owning the widget.", "type": "string"}),
    );
    props.insert("parts".into(), json!({"description": "Parts of the widget.", "items": {"properties": {"name": {"type": "string"}, "quantity": {"type": "integer"}}, "required": ["name"], "type": "object"}, "type": "array"}));
    json!({
        "spec": {
            "conversion": {"strategy": "None"},
            "group": "example.com",
            "names": {"categories": ["all"], "kind": "Widget", "listKind": "WidgetList", "plural": "widgets", "shortNames": ["wg"], "singular": "widget"},
            "scope": "Namespaced",
            "versions": [{
                "additionalPrinterColumns": [
                    {"jsonPath": ".spec.color", "name": "Color", "type": "string"},
                    {"jsonPath": ".status.phase", "name": "Phase", "type": "string"},
                    {"jsonPath": ".metadata.creationTimestamp", "name": "Age", "type": "date"},
                ],
                "name": "v1",
                "schema": {"openAPIV3Schema": {
                    "description": "Widget is the Schema for the widgets API.",
                    "properties": {
                        "apiVersion": {"description": "APIVersion defines the versioned schema of this representation of an object.", "type": "string"},
                        "kind": {"description": "Kind is a string value representing the REST resource this object represents.", "type": "string"},
                        "metadata": {"type": "object"},
                        "spec": {"description": "WidgetSpec defines the desired state of Widget.", "properties": props, "type": "object"},
                        "status": {"description": "WidgetStatus defines the observed state of Widget.", "properties": {
                            "conditions": {"items": {"properties": {"lastTransitionTime": {"format": "date-time", "type": "string"}, "message": {"type": "string"}, "observedGeneration": {"type": "integer"}, "reason": {"type": "string"}, "status": {"type": "string"}, "type": {"type": "string"}}, "required": ["lastTransitionTime", "message", "reason", "status", "type"], "type": "object"}, "type": "array"},
                            "observedGeneration": {"format": "int64", "type": "integer"},
                            "phase": {"type": "string"},
                        }, "type": "object"},
                    },
                    "type": "object",
                }},
                "served": true,
                "storage": true,
                "subresources": {"status": {}},
            }],
        },
        "status": crd_status("Widget", "widgets", "widget", "WidgetList", &["wg"], &["all"], &["v1"], BASE_TIME - 400 * 86_400 + 2),
    })
}

/// The status the apiextensions controllers give an accepted, established CRD.
#[allow(clippy::too_many_arguments)]
pub(crate) fn crd_status(
    kind: &str,
    plural: &str,
    singular: &str,
    list_kind: &str,
    short: &[&str],
    categories: &[&str],
    stored: &[&str],
    at: i64,
) -> Value {
    let mut accepted =
        json!({"kind": kind, "listKind": list_kind, "plural": plural, "singular": singular});
    if !short.is_empty() {
        accepted["shortNames"] = json!(short);
    }
    if !categories.is_empty() {
        accepted["categories"] = json!(categories);
    }
    json!({
        "acceptedNames": accepted,
        "conditions": [
            {"lastTransitionTime": rfc3339(at), "message": "no conflicts found", "reason": "NoConflicts", "status": "True", "type": "NamesAccepted"},
            {"lastTransitionTime": rfc3339(at), "message": "the initial names have been accepted", "reason": "InitialNamesAccepted", "status": "True", "type": "Established"},
        ],
        "storedVersions": stored,
    })
}

/// Cluster roles of a kubeadm cluster (names and representative rules).
fn cluster_role_templates() -> Vec<(String, Value)> {
    let all_verbs: &[&str] = &[
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ];
    let read: &[&str] = &["get", "list", "watch"];
    let core_res: &[&str] = &[
        "configmaps",
        "endpoints",
        "persistentvolumeclaims",
        "pods",
        "replicationcontrollers",
        "services",
        "secrets",
        "serviceaccounts",
        "events",
        "limitranges",
        "resourcequotas",
    ];
    let apps_res: &[&str] = &[
        "daemonsets",
        "deployments",
        "deployments/rollback",
        "deployments/scale",
        "replicasets",
        "replicasets/scale",
        "statefulsets",
        "statefulsets/scale",
    ];
    let mut out = vec![(
        "cluster-admin".to_string(),
        json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
    )];
    for (name, verbs) in [("admin", all_verbs), ("edit", all_verbs), ("view", read)] {
        let mut rules = Vec::new();
        for g in [
            "",
            "apps",
            "batch",
            "autoscaling",
            "networking.k8s.io",
            "policy",
            "discovery.k8s.io",
            "coordination.k8s.io",
            "rbac.authorization.k8s.io",
            "example.com",
        ] {
            let res: &[&str] = match g {
                "" => core_res,
                "apps" => apps_res,
                "batch" => &["cronjobs", "jobs"],
                "autoscaling" => &["horizontalpodautoscalers"],
                "networking.k8s.io" => &["ingresses", "networkpolicies"],
                "policy" => &["poddisruptionbudgets"],
                "discovery.k8s.io" => &["endpointslices"],
                "coordination.k8s.io" => &["leases"],
                "rbac.authorization.k8s.io" => &["roles", "rolebindings"],
                _ => &["widgets"],
            };
            rules.push(rule(&[g], res, verbs));
            let status: Vec<String> = res.iter().map(|r| format!("{r}/status")).collect();
            rules.push(rule(&[g], &status, read));
        }
        out.push((name.to_string(), Value::Array(rules)));
    }
    for (i, c) in KUBE_CONTROLLERS.iter().enumerate() {
        let res = core_res[i % core_res.len()];
        out.push((
            format!("system:controller:{c}"),
            json!([
                rule(&[""], &[res], all_verbs),
                rule(&[""], &[format!("{res}/status")], &["update"]),
                rule(
                    &["", "events.k8s.io"],
                    &["events"],
                    &["create", "patch", "update"]
                ),
            ]),
        ));
    }
    for name in [
        "system:aggregate-to-admin",
        "system:aggregate-to-edit",
        "system:aggregate-to-view",
        "system:auth-delegator",
        "system:basic-user",
        "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        "system:coredns",
        "system:discovery",
        "system:heapster",
        "system:kube-aggregator",
        "system:kube-controller-manager",
        "system:kube-dns",
        "system:kube-scheduler",
        "system:kubelet-api-admin",
        "system:monitoring",
        "system:node",
        "system:node-bootstrapper",
        "system:node-problem-detector",
        "system:node-proxier",
        "system:persistent-volume-provisioner",
        "system:public-info-viewer",
        "system:service-account-issuer-discovery",
        "system:volume-scheduler",
        "kube-autosave",
        "metrics-server",
    ] {
        out.push((
            name.to_string(),
            json!([
                rule(&[""], &["nodes", "pods", "services", "endpoints"], read),
                rule(&["discovery.k8s.io"], &["endpointslices"], read),
                {"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"], "verbs": ["get"]},
            ]),
        ));
    }
    out
}

fn rule<S: AsRef<str>>(groups: &[&str], resources: &[S], verbs: &[&str]) -> Value {
    let resources: Vec<&str> = resources.iter().map(AsRef::as_ref).collect();
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn str_map(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect()
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Configuration-file-like text of about `len` bytes.
fn config_text(rng: &mut Rng, len: usize) -> String {
    const KEYS: [&str; 16] = [
        "timeout",
        "retries",
        "endpoint",
        "enabled",
        "threshold",
        "interval",
        "buffer",
        "mode",
        "region",
        "cluster",
        "replicas",
        "level",
        "format",
        "path",
        "batch",
        "window",
    ];
    let mut out = String::with_capacity(len + 40);
    while out.len() < len {
        let k = KEYS[rng.below(KEYS.len() as u64) as usize];
        let section = KEYS[rng.below(KEYS.len() as u64) as usize];
        let n = rng.range(4, 24) as usize;
        let v = rng.hex(n);
        out.push_str(&format!("{section}.{k}: {v}\n"));
    }
    out
}

fn namespace_name(i: usize) -> String {
    let team = TEAMS[i % TEAMS.len()];
    let env = ENVS[(i / TEAMS.len()) % ENVS.len()];
    let round = i / (TEAMS.len() * ENVS.len());
    if round == 0 {
        format!("{team}-{env}")
    } else {
        format!("{team}-{env}-{round}")
    }
}

fn semver(rng: &mut Rng) -> String {
    format!(
        "{}.{}.{}",
        rng.range(0, 4),
        rng.range(0, 30),
        rng.range(0, 20)
    )
}

/// A PEM block of about `len` base64 characters.
fn pem_block(rng: &mut Rng, label: &str, len: usize) -> String {
    let body = rng.base64ish(len);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The `n`-th address of a /16 (`prefix` is its first two octets), 250 to a /24, the first
/// `first - 1` of each left out (the gateway's, or the pod CIDR's bridge).
/// The controllers of kube-controller-manager, each with its `system:controller:` role.
const KUBE_CONTROLLERS: [&str; 31] = [
    "attachdetach-controller",
    "certificate-controller",
    "clusterrole-aggregation-controller",
    "cronjob-controller",
    "daemon-set-controller",
    "deployment-controller",
    "disruption-controller",
    "endpoint-controller",
    "endpointslice-controller",
    "endpointslicemirroring-controller",
    "ephemeral-volume-controller",
    "expand-controller",
    "generic-garbage-collector",
    "horizontal-pod-autoscaler",
    "job-controller",
    "namespace-controller",
    "node-controller",
    "persistent-volume-binder",
    "pod-garbage-collector",
    "pv-protection-controller",
    "pvc-protection-controller",
    "replicaset-controller",
    "replication-controller",
    "resourcequota-controller",
    "root-ca-cert-publisher",
    "route-controller",
    "service-account-controller",
    "service-controller",
    "statefulset-controller",
    "ttl-after-finished-controller",
    "ttl-controller",
];

/// The service accounts of `kube-system` in a full-size cluster besides the controllers'
/// (all but the route controller's, which runs only with a cloud provider): the add-ons'
/// and ours.
const KUBE_SYSTEM_ADD_ON_ACCOUNTS: [&str; 8] = [
    "aws-node",
    "bootstrap-signer",
    "coredns",
    "ebs-csi-node-sa",
    "kube-autosave",
    "kube-proxy",
    "metrics-server",
    "token-cleaner",
];

fn nth_address(prefix: &str, n: u32, first: u32) -> String {
    format!("{prefix}.{}.{}", (n / 250) % 256, first + n % 250)
}
