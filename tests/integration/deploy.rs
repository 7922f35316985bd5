//! What an operator applies: the kustomize base in `deploy/` rendered by every kubectl the
//! tests are given (the current one and Debian's 1.20, whose kustomize is v2.0.3), the
//! example overlay in `overlays/example/` rendered by those whose kustomize is v4 or later,
//! and the alerts and dashboard of `deploy/monitoring/`. The rendered objects parse as the
//! Kubernetes types they claim to be, describe the pod DESIGN.md asks for, grant read-only
//! rights and carry a `cluster.yaml` the binary loads; the alerts and the dashboard query
//! only metrics a running daemon serves; the Dockerfile builds a small non-root image.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use clap::Parser;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Probe, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube_autosave::cli::{Cli, Common};
use kube_autosave::config;
use kube_autosave::store::Destination;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

use crate::support::cluster::Cluster;
use crate::support::s3_server::S3Server;

const DOCKERFILE: &str = include_str!("../../deploy/Dockerfile");
const BASE_CLUSTER_YAML: &str = include_str!("../../deploy/cluster.yaml");
const OVERLAY_KUSTOMIZATION: &str = include_str!("../../overlays/example/kustomization.yaml");
const OVERLAY_CLUSTER_YAML: &str = include_str!("../../overlays/example/cluster.yaml");
const PROMETHEUS_RULE: &str = include_str!("../../deploy/monitoring/prometheus-rule.yaml");
const DASHBOARD: &str = include_str!("../../deploy/monitoring/dashboard.json");

const NAMESPACE: &str = "kube-system";
/// The kinds without a namespace.
const CLUSTER_SCOPED: [&str; 2] = ["ClusterRole", "ClusterRoleBinding"];

fn repository(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The major version of the kustomize built into `kubectl`. kubectl 1.24 and later name it;
/// 1.21 to 1.23 carry v4 without saying so, and 1.20 and older carry v2.0.3.
fn kustomize_major(kubectl: &str) -> u32 {
    let output = Command::new(kubectl)
        .args(["version", "--client", "-o", "json"])
        .output()
        .unwrap_or_else(|e| panic!("{kubectl} cannot be run: {e}"));
    let version: Json = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "`{kubectl} version --client -o json` is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let leading = |text: &str| -> Option<u32> {
        let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    if let Some(kustomize) = version["kustomizeVersion"].as_str() {
        return leading(kustomize.trim_start_matches('v')).unwrap_or(0);
    }
    match version["clientVersion"]["minor"].as_str().and_then(leading) {
        Some(minor) if minor >= 21 => 4,
        _ => 2,
    }
}

/// What `kubectl kustomize <folder>` printed, as objects.
struct Rendered {
    kubectl: String,
    objects: Vec<Yaml>,
    stderr: String,
}

impl Rendered {
    fn render(kubectl: &str, folder: &str) -> Rendered {
        let output = Command::new(kubectl)
            .arg("kustomize")
            .arg(repository(folder))
            .output()
            .unwrap_or_else(|e| panic!("{kubectl} cannot be run: {e}"));
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            output.status.success(),
            "`{kubectl} kustomize {folder}` failed: {stderr}"
        );
        let stdout = String::from_utf8(output.stdout).expect("UTF-8 YAML");
        let objects = serde_yaml_ng::Deserializer::from_str(&stdout)
            .map(|document| Yaml::deserialize(document).expect("valid YAML"))
            .filter(|value| !value.is_null())
            .collect();
        Rendered {
            kubectl: kubectl.to_string(),
            objects,
            stderr,
        }
    }

    fn of_kind(&self, kind: &str) -> Vec<&Yaml> {
        self.objects
            .iter()
            .filter(|o| o["kind"].as_str() == Some(kind))
            .collect()
    }

    /// The one object of `kind`, as its Kubernetes type.
    fn one<T: DeserializeOwned>(&self, kind: &str) -> T {
        match self.of_kind(kind).as_slice() {
            [one] => typed(one, kind),
            all => panic!(
                "{}: {} objects of kind {kind}, not one",
                self.kubectl,
                all.len()
            ),
        }
    }

    fn named<T: DeserializeOwned>(&self, kind: &str, name: &str) -> T {
        let found = self
            .of_kind(kind)
            .into_iter()
            .find(|o| o["metadata"]["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("{}: no {kind} {name}", self.kubectl));
        typed(found, kind)
    }

    fn kinds(&self) -> BTreeSet<String> {
        self.objects
            .iter()
            .map(|o| {
                o["kind"]
                    .as_str()
                    .expect("every object has a kind")
                    .to_string()
            })
            .collect()
    }

    /// The ConfigMap the pod reads its `cluster.yaml` from: the one its `config` volume names.
    fn pod_config(&self) -> ConfigMap {
        let deployment: Deployment = self.one("Deployment");
        let name = config_volume(&deployment);
        self.named("ConfigMap", &name)
    }
}

fn typed<T: DeserializeOwned>(value: &Yaml, kind: &str) -> T {
    serde_yaml_ng::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{kind} does not parse as its Kubernetes type: {e}"))
}

/// The base rendered by each kubectl, once for all tests.
fn base() -> &'static [Rendered] {
    static BASE: OnceLock<Vec<Rendered>> = OnceLock::new();
    BASE.get_or_init(|| {
        crate::support::kubectls()
            .iter()
            .map(|kubectl| Rendered::render(kubectl, "deploy"))
            .collect()
    })
}

fn pod(deployment: &Deployment) -> &k8s_openapi::api::core::v1::PodSpec {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod template")
}

fn container(deployment: &Deployment) -> &k8s_openapi::api::core::v1::Container {
    &pod(deployment).containers[0]
}

fn args(deployment: &Deployment) -> Vec<String> {
    container(deployment).args.clone().expect("arguments")
}

fn flag<'a>(args: &'a [String], name: &str) -> &'a str {
    let at = args
        .iter()
        .position(|a| a == name)
        .unwrap_or_else(|| panic!("no {name} in {args:?}"));
    &args[at + 1]
}

/// The name of the ConfigMap the pod's `config` volume mounts.
fn config_volume(deployment: &Deployment) -> String {
    let volumes = pod(deployment).volumes.as_ref().expect("volumes");
    let config = volumes
        .iter()
        .find(|v| v.name == "config")
        .expect("a config volume");
    config
        .config_map
        .as_ref()
        .expect("the config volume is a ConfigMap")
        .name
        .clone()
}

/// `text` loaded as the pod loads it: the container's own arguments read by the binary's
/// flag parser (a flag it does not know fails here), `--config` pointing at `text` written
/// to a file, and resolved into the settings every command starts from.
fn load_as_the_pod_does(args: &[String], text: &str) -> Common {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.yaml");
    std::fs::write(&path, text).unwrap();
    let mut argv = vec!["kube-autosave".to_string()];
    argv.extend(args.iter().cloned());
    let at = argv.iter().position(|a| a == "--config").unwrap() + 1;
    argv[at] = path.display().to_string();
    let cli = Cli::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("the binary refuses the container's arguments {args:?}: {e}"));
    assert!(
        matches!(cli.command, kube_autosave::cli::Command::Run(_)),
        "the container runs `run`: {args:?}"
    );
    let common = cli
        .global
        .resolve()
        .unwrap_or_else(|e| panic!("the cluster.yaml does not load: {e}\n{text}"));
    // What `run` reads on top of the common settings.
    let file = &common.file;
    for (key, value) in [
        ("interval", &file.interval),
        ("pushInterval", &file.push_interval),
    ] {
        if let Some(value) = value {
            config::parse_duration(key, value).unwrap();
        }
    }
    if let Some(limit) = &file.staging_limit {
        assert!(config::parse_size("stagingLimit", limit).unwrap() > 0);
    }
    common
}

#[test]
fn the_base_renders_with_every_kubectl_into_kube_system_without_warnings() {
    for rendered in base() {
        let kubectl = &rendered.kubectl;
        eprintln!(
            "{kubectl} (kustomize v{}) renders deploy/",
            kustomize_major(kubectl)
        );
        assert!(
            !rendered.stderr.contains("Warning") && !rendered.stderr.contains("deprecated"),
            "{kubectl} warns about deploy/: {}",
            rendered.stderr
        );
        assert_eq!(
            rendered.kinds(),
            BTreeSet::from(
                [
                    "ClusterRole",
                    "ClusterRoleBinding",
                    "ConfigMap",
                    "Deployment",
                    "PersistentVolumeClaim",
                    "ServiceAccount",
                ]
                .map(String::from)
            ),
            "{kubectl}: the base holds no monitoring resource (clusters without the \
             Prometheus operator refuse them)"
        );
        for object in &rendered.objects {
            let kind = object["kind"].as_str().unwrap();
            let namespace = object["metadata"]["namespace"].as_str();
            let expected = (!CLUSTER_SCOPED.contains(&kind)).then_some(NAMESPACE);
            assert_eq!(namespace, expected, "{kubectl}: {kind}");
            assert_eq!(
                object["metadata"]["labels"]["app.kubernetes.io/name"].as_str(),
                Some("kube-autosave"),
                "{kubectl}: {kind} is labelled"
            );
        }
    }
}

#[test]
fn the_deployment_is_one_recreated_critical_non_root_pod_with_probes_and_a_state_volume() {
    for rendered in base() {
        let deployment: Deployment = rendered.one("Deployment");
        let account: ServiceAccount = rendered.one("ServiceAccount");
        let spec = deployment.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(
            spec.strategy.as_ref().unwrap().type_.as_deref(),
            Some("Recreate")
        );
        let pod = pod(&deployment);
        assert_eq!(
            pod.priority_class_name.as_deref(),
            Some("system-cluster-critical")
        );
        assert_eq!(pod.service_account_name, account.metadata.name);
        assert_eq!(
            pod.security_context.as_ref().unwrap().run_as_non_root,
            Some(true)
        );
        let container = container(&deployment);
        let security = container.security_context.as_ref().unwrap();
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        // Probes and metrics on the named port the PodMonitor scrapes.
        let ports = container.ports.as_ref().unwrap();
        assert!(ports.iter().any(|p| p.name.as_deref() == Some("metrics")));
        let probe = |probe: &Option<Probe>| {
            let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
            (get.path.clone().unwrap(), get.port.clone())
        };
        let metrics_port =
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("metrics".into());
        assert_eq!(
            probe(&container.liveness_probe),
            ("/healthz".to_string(), metrics_port.clone())
        );
        assert_eq!(
            probe(&container.readiness_probe),
            ("/readyz".to_string(), metrics_port)
        );
        let resources = container.resources.as_ref().unwrap();
        for key in ["cpu", "memory"] {
            assert!(resources.requests.as_ref().unwrap().contains_key(key));
            assert!(resources.limits.as_ref().unwrap().contains_key(key));
        }
        // `run`, with JSON logs for the cluster's log collector.
        let args = args(&deployment);
        assert_eq!(args[0], "run");
        assert_eq!(flag(&args, "--log-format"), "json");
        // The cache directory the container is told to use is a mounted volume (the root
        // filesystem is read-only).
        let cache = flag(&args, "--cache-dir");
        let mounts = container.volume_mounts.as_ref().unwrap();
        assert!(
            mounts
                .iter()
                .any(|m| m.mount_path == cache && m.read_only != Some(true))
        );
        let config = flag(&args, "--config");
        let config_mount = mounts
            .iter()
            .find(|m| config.starts_with(&m.mount_path))
            .expect("the config file is on a mounted volume");
        assert_eq!(config_mount.name, "config");
    }
}

/// kustomize names the generated ConfigMap after its content, and the pod's volume follows
/// that name: a changed cluster.yaml rolls the pod.
#[test]
fn the_config_volume_names_the_generated_config_map() {
    for rendered in base() {
        let kubectl = &rendered.kubectl;
        let deployment: Deployment = rendered.one("Deployment");
        let config: ConfigMap = rendered.one("ConfigMap");
        let name = config.metadata.name.unwrap();
        let suffix = name
            .strip_prefix("kube-autosave-")
            .unwrap_or_else(|| panic!("{kubectl}: {name} is not the generated ConfigMap"));
        assert_eq!(suffix.len(), 10, "{kubectl}: {name} has no content hash");
        assert_eq!(config_volume(&deployment), name, "{kubectl}");
    }
}

/// The state volume outlives the pod (staged snapshots survive a rescheduling) and holds the
/// local pack cache and a full staging folder at their default caps.
#[test]
fn the_state_is_on_a_claim_large_enough_for_both_caps() {
    for rendered in base() {
        let deployment: Deployment = rendered.one("Deployment");
        let claim: PersistentVolumeClaim = rendered.one("PersistentVolumeClaim");
        let volumes = pod(&deployment).volumes.as_ref().unwrap();
        let state = volumes.iter().find(|v| v.name == "state").unwrap();
        let claimed = state
            .persistent_volume_claim
            .as_ref()
            .expect("the state volume is a PersistentVolumeClaim");
        assert_eq!(Some(claimed.claim_name.clone()), claim.metadata.name);
        let spec = claim.spec.unwrap();
        assert_eq!(
            spec.access_modes.unwrap(),
            vec!["ReadWriteOnce".to_string()]
        );
        let storage = &spec.resources.unwrap().requests.unwrap()["storage"].0;
        let gib: u64 = storage
            .strip_suffix("Gi")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("storage {storage:?} is not in Gi"));
        let needed = kube_autosave::daemon::DEFAULT_STAGING_LIMIT
            + kube_autosave::store::StoreConfig::default().local_pack_cache_bytes;
        assert!(
            gib * 1024 * 1024 * 1024 > needed,
            "{storage} cannot hold a full staging folder and the pack cache"
        );
        // One pod at a time may hold a ReadWriteOnce claim.
        let strategy = deployment.spec.and_then(|s| s.strategy?.type_);
        assert_eq!(strategy.as_deref(), Some("Recreate"));
    }
}

#[test]
fn rbac_is_read_only_and_bound_to_the_pods_account() {
    for rendered in base() {
        let role: ClusterRole = rendered.one("ClusterRole");
        let binding: ClusterRoleBinding = rendered.one("ClusterRoleBinding");
        let account: ServiceAccount = rendered.one("ServiceAccount");
        let deployment: Deployment = rendered.one("Deployment");
        for rule in role.rules.unwrap() {
            // Resources are listed and watched, never fetched with `get`, which on `*` would
            // also grant nodes/proxy and pods/log; `get` only for the discovery documents.
            let allowed: &[&str] = if rule.non_resource_urls.is_some() {
                &["get"]
            } else {
                &["list", "watch"]
            };
            for verb in &rule.verbs {
                assert!(
                    allowed.contains(&verb.as_str()),
                    "verb {verb} in {rule:?} grants more than reading lists"
                );
            }
        }
        assert_eq!(binding.role_ref.kind, "ClusterRole");
        assert_eq!(Some(binding.role_ref.name.clone()), role.metadata.name);
        let subject = &binding.subjects.unwrap()[0];
        assert_eq!(subject.kind, "ServiceAccount");
        assert_eq!(Some(subject.name.clone()), account.metadata.name);
        assert_eq!(subject.namespace, account.metadata.namespace);
        assert_eq!(subject.namespace, deployment.metadata.namespace);
        assert_eq!(pod(&deployment).service_account_name, account.metadata.name);
    }
}

#[test]
fn the_config_map_holds_a_valid_enabled_cluster_yaml() {
    for rendered in base() {
        let deployment: Deployment = rendered.one("Deployment");
        let text = &rendered.pod_config().data.unwrap()["cluster.yaml"];
        assert_eq!(
            text, BASE_CLUSTER_YAML,
            "generated from deploy/cluster.yaml"
        );
        let loaded = load_as_the_pod_does(&args(&deployment), text);
        assert_eq!(loaded.file.enabled, Some(true));
        assert!(matches!(loaded.destination, Destination::S3 { .. }));
    }
}

/// The overlay in `overlays/example/`: its files parse and its cluster.yaml loads with any
/// kubectl; rendered by each kubectl whose kustomize is v4 or later, it sets the bucket, the
/// IAM role, the retention policy and the image, and adds the alerts and the dashboard.
#[test]
fn the_example_overlay_sets_bucket_role_retention_and_image_and_adds_monitoring() {
    let kustomization: Yaml = serde_yaml_ng::from_str(OVERLAY_KUSTOMIZATION).unwrap();
    let resources: Vec<&str> = kustomization["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(resources, ["../../deploy", "../../deploy/monitoring"]);
    let check_config = |common: &Common| {
        assert_eq!(common.file.enabled, Some(true));
        assert_eq!(
            common.destination,
            Destination::S3 {
                bucket: "example-bucket".to_string(),
                prefix: "kube-autosave".to_string()
            }
        );
        let retention = common.file.retention.as_ref().expect("a retention policy");
        assert!(!retention.keeps_everything(), "{retention}");
        assert!(retention.keep_layout.is_some(), "{retention}");
    };
    let base_deployment: Deployment = base()[0].one("Deployment");
    check_config(&load_as_the_pod_does(
        &args(&base_deployment),
        OVERLAY_CLUSTER_YAML,
    ));

    let (modern, old): (Vec<String>, Vec<String>) = crate::support::kubectls()
        .into_iter()
        .partition(|kubectl| kustomize_major(kubectl) >= 4);
    for kubectl in &old {
        eprintln!(
            "{kubectl} does not render overlays/example/: its kustomize (v2) knows neither \
             directories in resources nor `patches:`"
        );
    }
    if modern.is_empty() {
        eprintln!(
            "overlays/example/ was not rendered: no kubectl given has kustomize v4 or later \
             (KUBE_AUTOSAVE_TEST_KUBECTL); only its files and cluster.yaml were checked"
        );
    }
    for kubectl in &modern {
        let rendered = Rendered::render(kubectl, "overlays/example");
        eprintln!("{kubectl} renders overlays/example/");
        assert!(
            !rendered.stderr.contains("Warning") && !rendered.stderr.contains("deprecated"),
            "{kubectl} warns about overlays/example/: {}",
            rendered.stderr
        );
        let account: ServiceAccount = rendered.one("ServiceAccount");
        let role = account
            .metadata
            .annotations
            .unwrap_or_default()
            .remove("eks.amazonaws.com/role-arn")
            .expect("the IRSA annotation");
        assert!(role.starts_with("arn:aws:iam::"), "{role}");

        let deployment: Deployment = rendered.one("Deployment");
        let config = rendered.pod_config();
        assert_ne!(config.metadata.name, base()[0].pod_config().metadata.name);
        let text = &config.data.unwrap()["cluster.yaml"];
        assert_eq!(
            text, OVERLAY_CLUSTER_YAML,
            "{kubectl}: replaced by the overlay's"
        );
        check_config(&load_as_the_pod_does(&args(&deployment), text));
        let image = container(&deployment).image.clone().unwrap();
        assert!(image.ends_with("/kube-autosave:0.1.0"), "{image}");

        assert_eq!(rendered.of_kind("PrometheusRule").len(), 1, "{kubectl}");
        assert_eq!(rendered.of_kind("PodMonitor").len(), 1, "{kubectl}");
        let dashboard: ConfigMap = rendered.named("ConfigMap", "kube-autosave-dashboard");
        let labels = dashboard.metadata.labels.unwrap();
        assert_eq!(labels["grafana_dashboard"], "1");
        for object in &rendered.objects {
            let kind = object["kind"].as_str().unwrap();
            if !CLUSTER_SCOPED.contains(&kind) {
                assert_eq!(object["metadata"]["namespace"].as_str(), Some(NAMESPACE));
            }
        }
    }
}

/// `deploy/monitoring/` holds files only, as the base does: every kubectl renders it.
#[test]
fn the_monitoring_kustomization_renders_the_rule_the_pod_monitor_and_the_dashboard() {
    let base_deployment: Deployment = base()[0].one("Deployment");
    for kubectl in crate::support::kubectls() {
        let rendered = Rendered::render(&kubectl, "deploy/monitoring");
        assert!(
            !rendered.stderr.contains("Warning") && !rendered.stderr.contains("deprecated"),
            "{kubectl} warns about deploy/monitoring/: {}",
            rendered.stderr
        );
        assert_eq!(
            rendered.kinds(),
            BTreeSet::from(["ConfigMap", "PodMonitor", "PrometheusRule"].map(String::from)),
            "{kubectl}"
        );
        for object in &rendered.objects {
            assert_eq!(
                object["metadata"]["namespace"].as_str(),
                Some(NAMESPACE),
                "{kubectl}"
            );
        }
        // Grafana's sidecar loads the ConfigMap by its label; no hash in its name, so a new
        // version replaces the old one.
        let dashboard: ConfigMap = rendered.named("ConfigMap", "kube-autosave-dashboard");
        assert_eq!(dashboard.metadata.labels.unwrap()["grafana_dashboard"], "1");
        assert_eq!(dashboard.data.unwrap()["kube-autosave.json"], DASHBOARD);
        // The PodMonitor scrapes the Deployment's pods on their metrics port.
        let monitors = rendered.of_kind("PodMonitor");
        let monitor = &monitors[0]["spec"];
        let pod_labels = base_deployment
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone()
            .unwrap();
        let selector = monitor["selector"]["matchLabels"].as_mapping().unwrap();
        for (key, value) in selector {
            assert_eq!(
                pod_labels.get(key.as_str().unwrap()).map(String::as_str),
                value.as_str()
            );
        }
        let port = monitor["podMetricsEndpoints"][0]["port"].as_str().unwrap();
        let ports = container(&base_deployment).ports.clone().unwrap();
        assert!(ports.iter().any(|p| p.name.as_deref() == Some(port)));
        assert_eq!(
            monitor["podMetricsEndpoints"][0]["path"].as_str(),
            Some("/metrics")
        );
    }
}

/// The rules of the PrometheusRule, as written.
fn alerts() -> Vec<Yaml> {
    let rule: Yaml = serde_yaml_ng::from_str(PROMETHEUS_RULE).expect("valid YAML");
    assert_eq!(
        rule["apiVersion"].as_str(),
        Some("monitoring.coreos.com/v1")
    );
    assert_eq!(rule["kind"].as_str(), Some("PrometheusRule"));
    let groups = rule["spec"]["groups"].as_sequence().expect("groups");
    groups
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules").clone())
        .collect()
}

#[test]
fn every_alert_has_a_duration_a_severity_a_summary_and_a_runbook() {
    let alerts = alerts();
    let mut names = BTreeSet::new();
    for alert in &alerts {
        let name = alert["alert"]
            .as_str()
            .expect("an alert, not a recording rule");
        assert!(names.insert(name), "{name} twice");
        assert!(alert["expr"].as_str().is_some_and(|e| !e.trim().is_empty()));
        let duration = alert["for"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no `for`"));
        humantime::parse_duration(duration).unwrap_or_else(|e| panic!("{name}: for {e}"));
        let severity = alert["labels"]["severity"].as_str();
        assert!(
            matches!(severity, Some("critical" | "warning")),
            "{name}: severity {severity:?}"
        );
        let annotations = &alert["annotations"];
        assert!(annotations["summary"].as_str().is_some(), "{name}: summary");
        let description = annotations["description"].as_str().unwrap_or_default();
        assert!(
            description.contains("Runbook: "),
            "{name}: the description says what to check"
        );
    }
    let find = |name: &str| {
        alerts
            .iter()
            .find(|a| a["alert"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no alert {name}"))
    };
    let too_old = find("KubeAutosaveSnapshotTooOld");
    let expr = too_old["expr"].as_str().unwrap();
    for part in [
        "kube_autosave_last_complete_snapshot_age_seconds",
        "1.5 * kube_autosave_snapshot_interval_seconds",
        "kube_autosave_enabled == 1",
    ] {
        assert!(expr.contains(part), "{expr}");
    }
    assert_eq!(too_old["for"].as_str(), Some("15m"));
    assert_eq!(too_old["labels"]["severity"].as_str(), Some("critical"));
    let push = find("KubeAutosavePushFailing");
    assert!(
        push["expr"]
            .as_str()
            .unwrap()
            .contains("kube_autosave_push_failures_total")
    );
    let skipped = find("KubeAutosaveResourcesSkipped");
    assert!(
        skipped["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains("kube_autosave_resources_skipped_total")
    );
}

/// The panels of the dashboard, rows' panels included.
fn panels(dashboard: &Json) -> Vec<&Json> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        out.push(panel);
        if let Some(inner) = panel["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

#[test]
fn the_dashboard_queries_prometheus_through_a_datasource_variable() {
    let dashboard: Json = serde_json::from_str(DASHBOARD).expect("valid JSON");
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    assert!(dashboard["uid"].as_str().is_some());
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let datasource = variables
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    let mut ids = BTreeSet::new();
    let mut exprs = Vec::new();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().unwrap();
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "{title}: id twice"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    for wanted in [
        "histogram_quantile(0.9, sum(rate(kube_autosave_snapshot_duration_seconds_bucket",
        "histogram_quantile(0.9, sum(rate(kube_autosave_push_duration_seconds_bucket",
        "kube_autosave_last_complete_snapshot_age_seconds",
        "kube_autosave_last_snapshot_new_objects",
        "sum by (resource, reason) (increase(kube_autosave_resources_skipped_total",
        "sum by (step, reason) (increase(kube_autosave_failures_total",
        "kube_autosave_staging_bytes",
        "kube_autosave_uploaded_bytes_total",
        "kube_autosave_copied_bytes_total",
        "kube_autosave_prune_reclaimed_bytes_total",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(wanted)),
            "no panel queries {wanted}"
        );
    }
}

/// Every `kube_autosave_...` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("kube_autosave_") {
        let starts_a_word = !rest[..at].chars().next_back().is_some_and(is_name);
        let tail = &rest[at..];
        let end = tail.find(|c: char| !is_name(c)).unwrap_or(tail.len());
        if starts_a_word {
            names.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

/// Every string in a JSON document.
fn strings<'a>(value: &'a Json, out: &mut Vec<&'a str>) {
    match value {
        Json::String(s) => out.push(s),
        Json::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Json::Object(fields) => fields.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// The metrics the alerts and the dashboard name, by where they are named.
fn metrics_used() -> Vec<(String, BTreeSet<String>)> {
    let mut used = Vec::new();
    for alert in alerts() {
        let name = alert["alert"].as_str().unwrap().to_string();
        let mut text = alert["expr"].as_str().unwrap().to_string();
        if let Some(annotations) = alert["annotations"].as_mapping() {
            for value in annotations.values() {
                text.push_str(value.as_str().unwrap_or_default());
            }
        }
        used.push((format!("alert {name}"), metric_names(&text)));
    }
    let dashboard: Json = serde_json::from_str(DASHBOARD).unwrap();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().unwrap();
        let exprs = panel["targets"].as_array().into_iter().flatten();
        let text: String = exprs.filter_map(|t| t["expr"].as_str()).collect();
        used.push((format!("panel {title:?}"), metric_names(&text)));
    }
    // Variables' queries, descriptions: anything else the dashboard names.
    let mut all = Vec::new();
    strings(&dashboard, &mut all);
    used.push(("the dashboard".to_string(), metric_names(&all.join(" "))));
    used
}

/// A running daemon's `/metrics` once it has pushed its first snapshot and applied its
/// retention policy, having met a resource it may not list. Labelled families with no event
/// yet (`failures_total`) are there by their HELP and TYPE.
async fn scrape_a_running_daemon() -> String {
    let s3 = S3Server::start();
    let cluster = Cluster::start(200, 51).await;
    cluster.sim.faults().forbid("configmaps", true);
    let dir = tempfile::tempdir().unwrap();
    let config = crate::daemon::write_config(
        dir.path(),
        &s3,
        "  pushInterval: 1s\n  retention:\n    keepLast: 3\n",
    );
    let daemon =
        crate::daemon::Daemon::start(dir.path(), &config, &cluster, &["--log-format", "json"]);
    daemon.wait_for("a push and a prune", Duration::from_secs(90), |d| {
        d.metric("pushes_total") >= 1.0 && d.metric("last_prune_timestamp_seconds") > 0.0
    });
    daemon.get("/metrics").expect("/metrics answers").1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_and_dashboard_use_only_metrics_a_running_daemon_serves() {
    let used = metrics_used();
    assert!(
        used.iter().filter(|(_, names)| !names.is_empty()).count() > 10,
        "the alerts and panels name metrics: {used:?}"
    );
    let text = scrape_a_running_daemon().await;
    let exposition = crate::support::prometheus::parse(&text)
        .unwrap_or_else(|e| panic!("/metrics is not OpenMetrics text: {e}\n{text}"));
    let served = exposition.exported_names();
    let unknown: Vec<String> = used
        .iter()
        .flat_map(|(place, names)| {
            names
                .iter()
                .filter(|n| !served.contains(*n))
                .map(move |n| format!("{place}: {n}"))
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "metrics the daemon does not serve:\n{}\nit serves: {served:?}",
        unknown.join("\n")
    );
}

#[test]
fn the_dockerfile_is_multi_stage_and_runs_as_non_root() {
    let stages = DOCKERFILE
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert!(stages >= 2, "a build stage and a runtime stage");
    assert!(DOCKERFILE.contains("--bin kube-autosave"));
    // The image carries the daemon, not the simulated API server of `demo`.
    assert!(DOCKERFILE.contains("--no-default-features"));
    assert!(
        DOCKERFILE
            .lines()
            .any(|l| l.starts_with("USER ") && !l.contains("root"))
    );
}
