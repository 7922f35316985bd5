//! The deployment manifests parse as the Kubernetes types they claim to be, describe the pod
//! DESIGN.md asks for, and grant read-only rights; the Dockerfile builds a small non-root image.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube_autosave::config::FileConfig;
use serde::Deserialize;

const MANIFESTS: &str = include_str!("../../deploy/kube-autosave.yaml");
const DOCKERFILE: &str = include_str!("../../deploy/Dockerfile");

fn typed<T: serde::de::DeserializeOwned>(value: serde_yaml_ng::Value, kind: &str) -> T {
    serde_yaml_ng::from_value(value)
        .unwrap_or_else(|e| panic!("{kind} does not parse as its Kubernetes type: {e}"))
}

struct Parsed {
    deployment: Deployment,
    role: ClusterRole,
    binding: ClusterRoleBinding,
    account: ServiceAccount,
    config: ConfigMap,
    claim: PersistentVolumeClaim,
}

fn parse() -> Parsed {
    let (mut deployment, mut role, mut binding, mut account, mut config, mut claim) =
        (None, None, None, None, None, None);
    for document in serde_yaml_ng::Deserializer::from_str(MANIFESTS) {
        let value = serde_yaml_ng::Value::deserialize(document).expect("valid YAML");
        let kind = value["kind"]
            .as_str()
            .expect("every document has a kind")
            .to_string();
        match kind.as_str() {
            "Deployment" => deployment = Some(typed(value, "Deployment")),
            "ClusterRole" => role = Some(typed(value, "ClusterRole")),
            "ClusterRoleBinding" => binding = Some(typed(value, "ClusterRoleBinding")),
            "ServiceAccount" => account = Some(typed(value, "ServiceAccount")),
            "ConfigMap" => config = Some(typed(value, "ConfigMap")),
            "PersistentVolumeClaim" => claim = Some(typed(value, "PersistentVolumeClaim")),
            other => panic!("unexpected kind {other}"),
        }
    }
    Parsed {
        deployment: deployment.expect("a Deployment"),
        role: role.expect("a ClusterRole"),
        binding: binding.expect("a ClusterRoleBinding"),
        account: account.expect("a ServiceAccount"),
        config: config.expect("a ConfigMap"),
        claim: claim.expect("a PersistentVolumeClaim"),
    }
}

#[test]
fn the_deployment_is_one_recreated_critical_non_root_pod_with_probes_and_a_state_volume() {
    let Parsed {
        deployment,
        account,
        ..
    } = parse();
    assert_eq!(
        deployment.metadata.namespace.as_deref(),
        Some("kube-system")
    );
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.strategy.unwrap().type_.as_deref(), Some("Recreate"));
    let pod = spec.template.spec.unwrap();
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-cluster-critical")
    );
    assert_eq!(pod.service_account_name, account.metadata.name);
    assert_eq!(
        pod.security_context.as_ref().unwrap().run_as_non_root,
        Some(true)
    );
    let container = &pod.containers[0];
    let security = container.security_context.as_ref().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    let probe_path = |probe: &Option<k8s_openapi::api::core::v1::Probe>| {
        probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .clone()
            .unwrap()
    };
    assert_eq!(probe_path(&container.liveness_probe), "/healthz");
    assert_eq!(probe_path(&container.readiness_probe), "/readyz");
    let resources = container.resources.as_ref().unwrap();
    for key in ["cpu", "memory"] {
        assert!(resources.requests.as_ref().unwrap().contains_key(key));
        assert!(resources.limits.as_ref().unwrap().contains_key(key));
    }
    // The cache directory the container is told to use is a mounted volume (the root
    // filesystem is read-only).
    let args = container.args.as_ref().unwrap();
    let cache = &args[args.iter().position(|a| a == "--cache-dir").unwrap() + 1];
    let mounts = container.volume_mounts.as_ref().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| &m.mount_path == cache && m.read_only != Some(true))
    );
    let config = &args[args.iter().position(|a| a == "--config").unwrap() + 1];
    assert!(mounts.iter().any(|m| config.starts_with(&m.mount_path)));
}

/// The state volume outlives the pod (staged snapshots survive a rescheduling) and holds the
/// local pack cache and a full staging folder at their default caps.
#[test]
fn the_state_is_on_a_claim_large_enough_for_both_caps() {
    let Parsed {
        deployment, claim, ..
    } = parse();
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    let volumes = pod.volumes.unwrap();
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
    assert_eq!(
        deployment_strategy(&parse().deployment).as_deref(),
        Some("Recreate")
    );
}

fn deployment_strategy(deployment: &Deployment) -> Option<String> {
    deployment.spec.as_ref()?.strategy.as_ref()?.type_.clone()
}

#[test]
fn rbac_is_read_only_and_bound_to_the_pods_account() {
    let Parsed {
        role,
        binding,
        account,
        ..
    } = parse();
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
}

#[test]
fn the_config_map_holds_a_valid_enabled_cluster_yaml() {
    let Parsed { config, .. } = parse();
    let text = &config.data.unwrap()["cluster.yaml"];
    let parsed = FileConfig::parse(std::path::Path::new("cluster.yaml"), text).unwrap();
    assert_eq!(parsed.enabled, Some(true));
    assert!(parsed.s3_uri.unwrap().starts_with("s3://"));
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
