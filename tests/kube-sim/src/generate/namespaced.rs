//! What some namespaces hold besides their applications: limits and quotas, a pod
//! template, a legacy ReplicationController, one-off Jobs, pods started by hand (one being
//! debugged with an ephemeral container, one using a dynamically allocated GPU), and a
//! Secret applied with `kubectl apply`.
//!
//! Each object is written as the component that creates it does, including what the server
//! adds: the Job selector and labels the Job strategy generates, the claims the resource
//! claim controller creates for a pod. Secret values appear only in Secrets.

use serde_json::{Map, Value, json};

use super::*;

/// Upper bound of the objects [`Generator::namespace_extras`] adds to one namespace.
pub(super) const EXTRAS_MAX: usize = 24;

impl Generator<'_> {
    /// The extras of the `i`-th generated namespace: every kind lands in the first few
    /// namespaces, then in every few.
    pub(super) fn namespace_extras(&mut self, ns: &str, ns_created: i64, i: usize) {
        let created = self.since(ns_created, 300);
        if i.is_multiple_of(4) {
            self.limits_and_quota(ns, created);
        }
        if i.is_multiple_of(5) {
            self.applied_secret(ns, created);
        }
        if i.is_multiple_of(10) {
            self.ci_pod_template(ns, created);
        }
        if i.is_multiple_of(3) {
            self.created_job(ns);
        }
        if i % 12 == 2 {
            self.applied_job(ns, created);
        }
        if i.is_multiple_of(50) {
            self.debugged_pod(ns);
        }
        if i % 25 == 1 {
            self.replication_controller(ns, created);
        }
        if i % 40 == 1 {
            self.gpu_pod(ns, created);
        }
        if i.is_multiple_of(3) {
            self.namespace_monitoring(ns, created);
        }
    }

    fn limits_and_quota(&mut self, ns: &str, created: i64) {
        let d = self
            .draft(LIMITRANGE, Some(ns), "default-limits", created)
            .label("app.kubernetes.io/managed-by", "platform")
            .set("spec", json!({"limits": [
                {"default": {"cpu": "500m", "memory": "512Mi"}, "defaultRequest": {"cpu": "100m", "memory": "128Mi"}, "max": {"cpu": "4", "memory": "8Gi"}, "type": "Container"},
                {"max": {"storage": "200Gi"}, "min": {"storage": "1Gi"}, "type": "PersistentVolumeClaim"},
            ]}));
        self.emit(d);
        let hard = json!({"limits.cpu": "40", "limits.memory": "128Gi", "persistentvolumeclaims": "20", "pods": "100", "requests.cpu": "20", "requests.memory": "64Gi", "requests.storage": "1Ti"});
        let used = json!({
            "limits.cpu": format!("{}", self.rng.range(2, 30)),
            "limits.memory": format!("{}Gi", self.rng.range(2, 90)),
            "persistentvolumeclaims": format!("{}", self.rng.range(0, 6)),
            "pods": format!("{}", self.rng.range(2, 40)),
            "requests.cpu": format!("{}m", 100 * self.rng.range(5, 150)),
            "requests.memory": format!("{}Mi", 128 * self.rng.range(4, 300)),
            "requests.storage": format!("{}Gi", 10 * self.rng.range(0, 40)),
        });
        let d = self
            .draft(RESOURCEQUOTA, Some(ns), "compute-quota", created)
            .label("app.kubernetes.io/managed-by", "platform")
            .set("spec", json!({"hard": hard}))
            .set("status", json!({"hard": hard, "used": used}))
            .status_by("kube-controller-manager");
        self.emit(d);
    }

    /// A Secret written by `kubectl apply`, which keeps the whole applied object, data
    /// included, in the last-applied-configuration annotation.
    fn applied_secret(&mut self, ns: &str, created: i64) {
        let team = ns.split('-').next().unwrap_or(ns);
        let name = format!("{team}-api-keys");
        let mut data = Map::new();
        for key in ["partner-api-key", "webhook-signing-key"] {
            let len = self.rng.range(24, 64) as usize;
            data.insert(key.into(), json!(self.rng.base64(len)));
        }
        let applied = json!({
            "apiVersion": "v1",
            "data": data,
            "kind": "Secret",
            "metadata": {"annotations": {}, "name": name, "namespace": ns},
            "type": "Opaque",
        });
        let d = self
            .draft(SECRET, Some(ns), &name, created)
            .annotation(
                "kubectl.kubernetes.io/last-applied-configuration",
                format!("{applied}\n"),
            )
            .set("type", json!("Opaque"))
            .set("data", Value::Object(data));
        self.emit(d);
    }

    /// The pod template of the CI system's build runners.
    fn ci_pod_template(&mut self, ns: &str, created: i64) {
        let labels = str_map(&[
            ("app.kubernetes.io/name", "build-runner"),
            ("ci.example.com/runner", "true"),
        ]);
        let mut container = self.app_container(
            "runner",
            "registry.example.com/platform/build-runner:3.12.1",
            3,
            50000,
            false,
        );
        if let Some(m) = container.as_object_mut() {
            m.remove("livenessProbe");
            m.remove("readinessProbe");
        }
        let mut template = self.pod_template(&labels, &[container], &json!([]), "default");
        template["spec"]["restartPolicy"] = json!("Never");
        let d = self
            .draft(PODTEMPLATE, Some(ns), "build-runner", created)
            .labels(&labels)
            .set("template", template);
        self.emit(d);
    }

    /// A one-off Job made with `kubectl create job`: no labels of its own, so the Job
    /// defaulting copies the template labels, which the Job strategy filled with the
    /// generated selector's.
    fn created_job(&mut self, ns: &str) {
        let team = ns.split('-').next().unwrap_or(ns);
        let at = BASE_TIME - self.rng.range(2, 90) as i64 * 86_400;
        let name = format!("db-migrate-{}", rfc3339(at)[..10].replace('-', ""));
        let image = format!(
            "registry.example.com/{team}/db-migrate:{}",
            semver(&mut self.rng)
        );
        self.standalone_job(ns, &name, &image, at, &Map::new(), false, "kubectl-create");
    }

    /// A Job applied from a manifest whose template carries labels of its own: the Job
    /// defaulting copies those (before the strategy adds the selector labels to the
    /// template).
    fn applied_job(&mut self, ns: &str, created: i64) {
        let team = ns.split('-').next().unwrap_or(ns);
        let at = self.since(created, 30);
        let version = semver(&mut self.rng);
        let name = format!("schema-migration-{}", version.replace('.', "-"));
        let image = format!("registry.example.com/{team}/schema-migration:{version}");
        let labels = str_map(&[
            ("app.kubernetes.io/component", "migration"),
            ("app.kubernetes.io/name", "schema-migration"),
            ("app.kubernetes.io/part-of", team),
        ]);
        self.standalone_job(
            ns,
            &name,
            &image,
            at,
            &labels,
            true,
            "kubectl-client-side-apply",
        );
    }

    /// A completed Job without an owner and its pod.
    #[allow(clippy::too_many_arguments)]
    fn standalone_job(
        &mut self,
        ns: &str,
        name: &str,
        image: &str,
        at: i64,
        user_labels: &Map<String, Value>,
        applied: bool,
        manager: &'static str,
    ) {
        let uid = self.uid(&JOB, Some(ns), name);
        // generateSelector of the Job strategy.
        let mut template_labels = user_labels.clone();
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", uid.as_str()),
            ("batch.kubernetes.io/job-name", name),
            ("controller-uid", uid.as_str()),
            ("job-name", name),
        ] {
            template_labels.insert(k.into(), json!(v));
        }
        // SetDefaults_Job: a Job without labels gets its template's.
        let job_labels = if user_labels.is_empty() {
            template_labels.clone()
        } else {
            user_labels.clone()
        };
        let mut container = json!({
            "args": ["--apply", "--timeout=10m"],
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            // `kubectl create job` names the container after the Job.
            "name": if applied { "migrate" } else { name },
            "resources": {},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
        });
        if applied {
            container["envFrom"] = json!([{"secretRef": {"name": format!("{name}-db")}}]);
        }
        let template = json!({
            "metadata": {"creationTimestamp": null, "labels": template_labels},
            "spec": {"containers": [container], "dnsPolicy": "ClusterFirst", "restartPolicy": "Never", "schedulerName": "default-scheduler", "securityContext": {}, "terminationGracePeriodSeconds": 30},
        });
        let done = at + self.rng.range(20, 400) as i64;
        let condition = |t: &str| json!({"lastProbeTime": rfc3339(done), "lastTransitionTime": rfc3339(done), "message": "Reached expected number of succeeded pods", "reason": "CompletionsReached", "status": "True", "type": t});
        let d = self
            .draft(JOB, Some(ns), name, at)
            .labels(&job_labels)
            .set(
                "spec",
                json!({
                    "backoffLimit": 6,
                    "completionMode": "NonIndexed",
                    "completions": 1,
                    "manualSelector": false,
                    "parallelism": 1,
                    "podReplacementPolicy": "TerminatingOrFailed",
                    "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}},
                    "suspend": false,
                    "template": template,
                }),
            )
            .set(
                "status",
                json!({
                    "completionTime": rfc3339(done),
                    "conditions": [condition("SuccessCriteriaMet"), condition("Complete")],
                    "ready": 0,
                    "startTime": rfc3339(at),
                    "succeeded": 1,
                    "terminating": 0,
                    "uncountedTerminatedPods": {},
                }),
            )
            .manager(manager)
            .status_by("kube-controller-manager");
        if applied {
            let secret = format!("{name}-db");
            let mut data = Map::new();
            data.insert("DATABASE_URL".into(), json!(self.rng.base64(60)));
            let s = self
                .draft(SECRET, Some(ns), &secret, at - 5)
                .labels(user_labels)
                .set("type", json!("Opaque"))
                .set("data", Value::Object(data));
            self.emit(s);
        }
        self.emit(d);
        let pod_name = format!("{name}-{}", self.rng.suffix(5));
        let node = self.pick_node();
        let mut pod = self.pod_value(
            &node,
            template["spec"]["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            json!([]),
            None,
            false,
            at,
        );
        pod["spec"]["restartPolicy"] = json!("Never");
        let mut d = self
            .draft(POD, Some(ns), &pod_name, at)
            .labels(&template_labels)
            .owner(self.owner_ref(&JOB, Some(ns), name))
            .manager("kube-controller-manager")
            .status_by("kubelet");
        for (k, v) in pod.as_object().cloned().unwrap_or_default() {
            d = d.set(&k, v);
        }
        self.emit(d);
    }

    /// A pod started with `kubectl run` in the gVisor sandbox (its RuntimeClass's overhead
    /// and scheduling merged in by the admission plugin) and then debugged with `kubectl
    /// debug`, which adds an ephemeral container through the `ephemeralcontainers`
    /// subresource.
    fn debugged_pod(&mut self, ns: &str) {
        let name = "toolbox";
        let at = BASE_TIME - self.rng.range(3600, 3 * 86_400) as i64;
        let container = json!({
            "args": ["sleep", "infinity"],
            "image": "registry.example.com/platform/toolbox:1.4.0",
            "imagePullPolicy": "IfNotPresent",
            "name": name,
            "resources": {},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
        });
        let node = self.pick_node();
        let mut pod = self.pod_value(&node, vec![container], json!([]), None, true, at);
        pod["spec"]["runtimeClassName"] = json!(platform::SANDBOX_CLASS);
        pod["spec"]["overhead"] = json!({"cpu": "250m", "memory": "120Mi"});
        pod["spec"]["nodeSelector"] =
            json!({format!("runtime.example.com/{}", platform::SANDBOX_CLASS): "enabled"});
        if let Some(tolerations) = pod["spec"]["tolerations"].as_array_mut() {
            tolerations.push(json!({"effect": "NoSchedule", "key": "runtime.example.com/sandboxed", "operator": "Exists"}));
        }
        let debugger = format!("debugger-{}", self.rng.suffix(5));
        pod["spec"]["ephemeralContainers"] = json!([{
            "image": "busybox:1.36",
            "imagePullPolicy": "IfNotPresent",
            "name": debugger,
            "resources": {},
            "stdin": true,
            "targetContainerName": name,
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "tty": true,
        }]);
        let debug_at = BASE_TIME - self.rng.range(300, 3000) as i64;
        pod["status"]["ephemeralContainerStatuses"] = json!([{
            "containerID": format!("containerd://{}", self.rng.hex(64)),
            "image": "docker.io/library/busybox:1.36",
            "imageID": format!("docker.io/library/busybox@sha256:{}", self.rng.hex(64)),
            "lastState": {},
            "name": debugger,
            "ready": false,
            "restartCount": 0,
            "state": {"running": {"startedAt": rfc3339(debug_at)}},
        }]);
        let mut d = self
            .draft(POD, Some(ns), name, at)
            .label("run", name)
            .manager("kubectl-run")
            .status_by("kubelet");
        for (k, v) in pod.as_object().cloned().unwrap_or_default() {
            d = d.set(&k, v);
        }
        self.emit(d);
    }

    /// A ReplicationController left from before Deployments, and its pods.
    fn replication_controller(&mut self, ns: &str, created: i64) {
        let team = ns.split('-').next().unwrap_or(ns);
        let name = "legacy-reporter";
        let labels = str_map(&[("app", name), ("tier", "backend")]);
        let image = format!(
            "registry.example.com/{team}/reporter:1.{}.0",
            self.rng.range(0, 9)
        );
        let container = self.app_container(name, &image, 3, 8080, false);
        let template = self.pod_template(
            &labels,
            std::slice::from_ref(&container),
            &json!([]),
            "default",
        );
        let replicas = 2;
        let d = self
            .draft(REPLICATIONCONTROLLER, Some(ns), name, created)
            .labels(&labels)
            .set("spec", json!({"replicas": replicas, "selector": labels, "template": template}))
            .set("status", json!({"availableReplicas": replicas, "fullyLabeledReplicas": replicas, "observedGeneration": 1, "readyReplicas": replicas, "replicas": replicas}))
            .generation(1)
            .status_by("kube-controller-manager");
        self.emit(d);
        for _ in 0..replicas {
            let pod_name = format!("{name}-{}", self.rng.suffix(5));
            let node = self.pick_node();
            let at = self.since(created, 30);
            let pod = self.pod_value(&node, vec![container.clone()], json!([]), None, true, at);
            let mut d = self
                .draft(POD, Some(ns), &pod_name, at)
                .labels(&labels)
                .owner(self.owner_ref(&REPLICATIONCONTROLLER, Some(ns), name))
                .manager("kube-controller-manager")
                .status_by("kubelet");
            for (k, v) in pod.as_object().cloned().unwrap_or_default() {
                d = d.set(&k, v);
            }
            self.emit(d);
        }
    }

    /// A pod started with `kubectl run` that asks for a GPU through a resource claim
    /// template: the claim parameters and template, the pod, the claim the resource claim
    /// controller made for it, and the scheduling context of the pod.
    fn gpu_pod(&mut self, ns: &str, created: i64) {
        let params = "gpu-claim-parameters";
        let d = self
            .draft(RESOURCECLAIMPARAMETERS, Some(ns), params, created)
            .set("shareable", json!(false))
            .set("driverRequests", json!([{"driverName": platform::GPU_DRIVER, "requests": [{"namedResources": {"selector": "attributes.quantity[\"memory\"].compareTo(quantity(\"16Gi\")) >= 0"}}]}]));
        self.emit(d);
        let claim_spec = json!({
            "allocationMode": "WaitForFirstConsumer",
            "parametersRef": {"apiGroup": "resource.k8s.io", "kind": "ResourceClaimParameters", "name": params},
            "resourceClassName": platform::GPU_CLASS,
        });
        let d = self
            .draft(RESOURCECLAIMTEMPLATE, Some(ns), "gpu", created)
            .set("spec", json!({"metadata": {"labels": {"app.kubernetes.io/component": "gpu"}}, "spec": claim_spec}));
        self.emit(d);
        let pod = "gpu-smoke-test";
        let claim = format!("{pod}-gpu-{}", self.rng.suffix(5));
        let node = self.nodes[0].clone();
        let at = BASE_TIME - self.rng.range(3600, 5 * 86_400) as i64;
        let container = json!({
            "args": ["nvidia-smi", "-l", "60"],
            "image": "nvcr.io/nvidia/cuda:12.6.2-base-ubuntu24.04",
            "imagePullPolicy": "IfNotPresent",
            "name": pod,
            "resources": {"claims": [{"name": "gpu"}]},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
        });
        let mut value = self.pod_value(&node, vec![container], json!([]), None, true, at);
        value["spec"]["resourceClaims"] =
            json!([{"name": "gpu", "resourceClaimTemplateName": "gpu"}]);
        value["status"]["resourceClaimStatuses"] =
            json!([{"name": "gpu", "resourceClaimName": claim}]);
        let mut d = self
            .draft(POD, Some(ns), pod, at)
            .label("run", pod)
            .manager("kubectl-run")
            .status_by("kubelet");
        for (k, v) in value.as_object().cloned().unwrap_or_default() {
            d = d.set(&k, v);
        }
        self.emit(d);
        let pod_uid = self.uid(&POD, Some(ns), pod);
        let d = self
            .draft(RESOURCECLAIM, Some(ns), &claim, at)
            .label("app.kubernetes.io/component", "gpu")
            .annotation("resource.kubernetes.io/pod-claim-name", "gpu")
            .finalizer("resource.kubernetes.io/delete-protection")
            .owner(self.owner_ref(&POD, Some(ns), pod))
            .set("spec", claim_spec)
            .set("status", json!({
                "allocation": {
                    "availableOnNodes": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node.name]}]}]},
                    "resourceHandles": [{"driverName": platform::GPU_DRIVER, "structuredData": {"nodeName": node.name, "results": [{"namedResources": {"name": "gpu-0"}}]}}],
                    "shareable": false,
                },
                "driverName": platform::GPU_DRIVER,
                "reservedFor": [{"name": pod, "resource": "pods", "uid": pod_uid}],
            }))
            .manager("kube-controller-manager")
            .status_by("kube-scheduler");
        self.emit(d);
        let d = self
            .draft(PODSCHEDULINGCONTEXT, Some(ns), pod, at)
            .owner(self.owner_ref(&POD, Some(ns), pod))
            .set(
                "spec",
                json!({"potentialNodes": [node.name], "selectedNode": node.name}),
            )
            .set("status", json!({"resourceClaims": [{"name": "gpu"}]}))
            .manager("kube-scheduler")
            .status_by("gpu-dra-controller");
        self.emit(d);
    }
}
