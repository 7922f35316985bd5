//! The generated cluster: well-typed Kubernetes objects (each deserializes as its
//! k8s-openapi type; owners and dependents refer to each other correctly), at least one
//! object of every listable resource of every served group-version, the prometheus-operator
//! group with a resource only at a non-preferred version, and the fields the server
//! generates for standalone Jobs.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::{
    admissionregistration, apiserverinternal, apps, autoscaling, batch, certificates, coordination,
    core, discovery, flowcontrol, networking, node, policy, rbac, scheduling, storage,
    storagemigration,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use serde_json::Value;

use crate::common::*;

fn check<T: serde::de::DeserializeOwned>(v: &Value) -> Result<(), String> {
    serde_json::from_value::<T>(v.clone())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn generated_objects_are_well_typed() {
    let server = start_n(3000).await;
    let mut uids: BTreeMap<String, (String, Option<String>, String)> = BTreeMap::new();
    let mut objects = Vec::new();
    for k in server.objects() {
        let v = server.object(&k).unwrap();
        if k.kind == "ComponentStatus" {
            // Computed by the server on each request: no uid, resource version or timestamp.
            assert_eq!(v["metadata"].as_object().unwrap().len(), 2, "{v}");
            assert!(v["metadata"]["creationTimestamp"].is_null());
            objects.push((k, v));
            continue;
        }
        let uid = v["metadata"]["uid"].as_str().unwrap().to_string();
        assert!(
            uids.insert(uid, (k.kind.clone(), k.namespace.clone(), k.name.clone()))
                .is_none(),
            "duplicate uid"
        );
        objects.push((k, v));
    }
    let mut checked = BTreeSet::new();
    for (k, v) in &objects {
        let result = match k.kind.as_str() {
            "ConfigMap" => check::<core::v1::ConfigMap>(v),
            "Secret" => check::<core::v1::Secret>(v),
            "Service" => check::<core::v1::Service>(v),
            "ServiceAccount" => check::<core::v1::ServiceAccount>(v),
            "Pod" => check::<core::v1::Pod>(v),
            "Event" => check::<core::v1::Event>(v),
            "Endpoints" => check::<core::v1::Endpoints>(v),
            "PersistentVolumeClaim" => check::<core::v1::PersistentVolumeClaim>(v),
            "PersistentVolume" => check::<core::v1::PersistentVolume>(v),
            "Namespace" => check::<core::v1::Namespace>(v),
            "Node" => check::<core::v1::Node>(v),
            "Deployment" => check::<apps::v1::Deployment>(v),
            "ReplicaSet" => check::<apps::v1::ReplicaSet>(v),
            "StatefulSet" => check::<apps::v1::StatefulSet>(v),
            "DaemonSet" => check::<apps::v1::DaemonSet>(v),
            "ControllerRevision" => check::<apps::v1::ControllerRevision>(v),
            "Job" => check::<batch::v1::Job>(v),
            "CronJob" => check::<batch::v1::CronJob>(v),
            "Ingress" => check::<networking::v1::Ingress>(v),
            "IngressClass" => check::<networking::v1::IngressClass>(v),
            "NetworkPolicy" => check::<networking::v1::NetworkPolicy>(v),
            "Role" => check::<rbac::v1::Role>(v),
            "RoleBinding" => check::<rbac::v1::RoleBinding>(v),
            "ClusterRole" => check::<rbac::v1::ClusterRole>(v),
            "ClusterRoleBinding" => check::<rbac::v1::ClusterRoleBinding>(v),
            "EndpointSlice" => check::<discovery::v1::EndpointSlice>(v),
            "Lease" => check::<coordination::v1::Lease>(v),
            "PodDisruptionBudget" => check::<policy::v1::PodDisruptionBudget>(v),
            "HorizontalPodAutoscaler" => check::<autoscaling::v2::HorizontalPodAutoscaler>(v),
            "StorageClass" => check::<storage::v1::StorageClass>(v),
            "PriorityClass" => check::<scheduling::v1::PriorityClass>(v),
            "CustomResourceDefinition" => check::<CustomResourceDefinition>(v),
            "APIService" => check::<APIService>(v),
            "ComponentStatus" => check::<core::v1::ComponentStatus>(v),
            "LimitRange" => check::<core::v1::LimitRange>(v),
            "ResourceQuota" => check::<core::v1::ResourceQuota>(v),
            "PodTemplate" => check::<core::v1::PodTemplate>(v),
            "ReplicationController" => check::<core::v1::ReplicationController>(v),
            "CertificateSigningRequest" => check::<certificates::v1::CertificateSigningRequest>(v),
            "ClusterTrustBundle" => check::<certificates::v1alpha1::ClusterTrustBundle>(v),
            "IPAddress" => check::<networking::v1beta1::IPAddress>(v),
            "ServiceCIDR" => check::<networking::v1beta1::ServiceCIDR>(v),
            "CSIDriver" => check::<storage::v1::CSIDriver>(v),
            "CSINode" => check::<storage::v1::CSINode>(v),
            "CSIStorageCapacity" => check::<storage::v1::CSIStorageCapacity>(v),
            "VolumeAttachment" => check::<storage::v1::VolumeAttachment>(v),
            "VolumeAttributesClass" => check::<storage::v1alpha1::VolumeAttributesClass>(v),
            "MutatingWebhookConfiguration" => {
                check::<admissionregistration::v1::MutatingWebhookConfiguration>(v)
            }
            "ValidatingWebhookConfiguration" => {
                check::<admissionregistration::v1::ValidatingWebhookConfiguration>(v)
            }
            "ValidatingAdmissionPolicy" => {
                check::<admissionregistration::v1::ValidatingAdmissionPolicy>(v)
            }
            "ValidatingAdmissionPolicyBinding" => {
                check::<admissionregistration::v1::ValidatingAdmissionPolicyBinding>(v)
            }
            "RuntimeClass" => check::<node::v1::RuntimeClass>(v),
            "FlowSchema" => check::<flowcontrol::v1::FlowSchema>(v),
            "PriorityLevelConfiguration" => check::<flowcontrol::v1::PriorityLevelConfiguration>(v),
            "StorageVersion" => check::<apiserverinternal::v1alpha1::StorageVersion>(v),
            "StorageVersionMigration" => {
                check::<storagemigration::v1alpha1::StorageVersionMigration>(v)
            }
            // resource.k8s.io/v1alpha3 of the recorded discovery (Kubernetes 1.31 development)
            // has kinds k8s-openapi does not model; custom resources have no type there.
            "PodSchedulingContext"
            | "ResourceClaim"
            | "ResourceClaimParameters"
            | "ResourceClaimTemplate"
            | "ResourceClass"
            | "ResourceClassParameters"
            | "ResourceSlice"
            | "Widget"
            | "ServiceMonitor"
            | "PrometheusRule"
            | "AlertmanagerConfig" => Ok(()),
            other => Err(format!("unexpected kind {other}")),
        };
        if let Err(e) = result {
            panic!(
                "{} {:?}/{} does not deserialize: {e}\n{v:#}",
                k.kind, k.namespace, k.name
            );
        }
        checked.insert(k.kind.clone());

        // Every owner reference points at a stored object of that kind and name; an object
        // has at most one controller.
        let owners = v["metadata"]["ownerReferences"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(owners.iter().filter(|o| o["controller"] == true).count() <= 1);
        for o in v["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let uid = o["uid"].as_str().unwrap();
            let (kind, ns, name) = uids
                .get(uid)
                .unwrap_or_else(|| panic!("dangling owner of {}/{}", k.kind, k.name));
            assert_eq!(kind, o["kind"].as_str().unwrap());
            assert_eq!(name, o["name"].as_str().unwrap());
            assert!(ns.is_none() || *ns == k.namespace);
        }
        // Timestamps a status reports are not older than the object.
        let Some(created) = v["metadata"]["creationTimestamp"].as_str() else {
            continue;
        };
        if let Some(start) = v["status"]["startTime"].as_str() {
            assert!(start >= created, "{} started before it was created", k.name);
        }
    }
    assert!(checked.len() >= 65, "{checked:?}");
}

/// The `list` paths of every listable resource of every served group-version, from
/// aggregated discovery (every version, not only the preferred one).
async fn listable_paths(c: &kube::Client) -> Vec<String> {
    let mut paths = Vec::new();
    for root in ["/api", "/apis"] {
        let r = send(c, "GET", root, &[("Accept", AGGREGATED_ACCEPT)], None).await;
        assert_eq!(r.status, 200);
        for g in r.json()["items"].as_array().unwrap() {
            let group = g["metadata"]["name"].as_str().unwrap_or_default();
            for v in g["versions"].as_array().unwrap() {
                let version = v["version"].as_str().unwrap();
                for res in v["resources"].as_array().into_iter().flatten() {
                    if !res["verbs"].as_array().unwrap().iter().any(|v| v == "list") {
                        continue;
                    }
                    let plural = res["resource"].as_str().unwrap();
                    paths.push(if group.is_empty() {
                        format!("/api/{version}/{plural}")
                    } else {
                        format!("/apis/{group}/{version}/{plural}")
                    });
                }
            }
        }
    }
    paths
}

#[tokio::test]
async fn every_listable_resource_holds_objects() {
    // None is legitimately empty: a real cluster holds objects of every one of these kinds
    // once the feature behind it is in use, and the recorded server enables them all.
    for n in [300, 1000, 2000] {
        let server = start_n(n).await;
        let c = client(&server).await;
        let paths = listable_paths(&c).await;
        assert!(paths.len() > 70, "{paths:?}");
        let mut empty = Vec::new();
        for p in &paths {
            let list = get_json(&c, p).await;
            if list["items"].as_array().unwrap().is_empty() {
                empty.push(p.clone());
            }
        }
        assert!(empty.is_empty(), "N={n}: nothing listed at {empty:?}");
    }
}

#[tokio::test]
async fn monitoring_group_serves_a_resource_only_at_its_older_version() {
    let server = start_n(1000).await;
    let c = client(&server).await;
    let group = kube_sim::MONITORING_GROUP;
    let legacy = get_json(&c, &format!("/apis/{group}")).await;
    assert_eq!(
        legacy["preferredVersion"]["groupVersion"],
        format!("{group}/v1")
    );
    let versions: Vec<&str> = legacy["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["v1", "v1alpha1"]);
    let resources = |doc: Value| -> Vec<String> {
        doc["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        resources(get_json(&c, &format!("/apis/{group}/v1")).await),
        ["prometheusrules", "servicemonitors"]
    );
    assert_eq!(
        resources(get_json(&c, &format!("/apis/{group}/v1alpha1")).await),
        ["alertmanagerconfigs"]
    );
    let r = send(&c, "GET", "/apis", &[("Accept", AGGREGATED_ACCEPT)], None).await;
    let doc = r.json();
    let entry = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metadata"]["name"] == group)
        .expect("the group is in aggregated discovery");
    assert_eq!(entry["versions"][0]["version"], "v1");
    assert_eq!(entry["versions"][1]["version"], "v1alpha1");
    assert_eq!(
        entry["versions"][1]["resources"][0]["resource"],
        "alertmanagerconfigs"
    );

    // Not served at the preferred version; listed, as custom resources are, with their type.
    assert_eq!(
        get(&c, &format!("/apis/{group}/v1/alertmanagerconfigs"))
            .await
            .status,
        404
    );
    let list = get_json(&c, &format!("/apis/{group}/v1alpha1/alertmanagerconfigs")).await;
    let items = list["items"].as_array().unwrap();
    assert!(!items.is_empty());
    for i in items {
        assert_eq!(i["apiVersion"], format!("{group}/v1alpha1"));
        assert_eq!(i["kind"], "AlertmanagerConfig");
        // Receiver credentials are referenced, never inlined.
        let secret = i["spec"]["receivers"][0]["slackConfigs"][0]["apiURL"]["name"]
            .as_str()
            .unwrap();
        let ns = i["metadata"]["namespace"].as_str().unwrap();
        assert_eq!(
            get(&c, &format!("/api/v1/namespaces/{ns}/secrets/{secret}"))
                .await
                .status,
            200
        );
    }
    let stored: BTreeSet<String> = server
        .objects()
        .into_iter()
        .filter(|k| k.group == group)
        .map(|k| format!("{}/{}", k.resource, k.version))
        .collect();
    assert_eq!(
        stored,
        BTreeSet::from([
            "alertmanagerconfigs/v1alpha1".to_string(),
            "prometheusrules/v1".to_string(),
            "servicemonitors/v1".to_string(),
        ])
    );
    // The aggregator registers every served version of the group.
    for v in ["v1", "v1alpha1"] {
        let svc = get_json(
            &c,
            &format!("/apis/apiregistration.k8s.io/v1/apiservices/{v}.{group}"),
        )
        .await;
        assert_eq!(svc["spec"]["groupPriorityMinimum"], 1000);
    }
    // The admission webhooks of the operator point at its Service.
    for kind in [
        "validatingwebhookconfigurations",
        "mutatingwebhookconfigurations",
    ] {
        let list = get_json(&c, &format!("/apis/admissionregistration.k8s.io/v1/{kind}")).await;
        for hook in list["items"][0]["webhooks"].as_array().unwrap() {
            let svc = &hook["clientConfig"]["service"];
            let path = format!(
                "/api/v1/namespaces/{}/services/{}",
                svc["namespace"].as_str().unwrap(),
                svc["name"].as_str().unwrap()
            );
            assert_eq!(get(&c, &path).await.status, 200, "{kind}: {path}");
        }
    }
}

#[tokio::test]
async fn standalone_jobs_have_the_generated_selector() {
    let server = start_n(1000).await;
    let c = client(&server).await;
    let jobs = get_json(&c, "/apis/batch/v1/jobs").await;
    let pods = get_json(&c, "/api/v1/pods").await;
    let pods = pods["items"].as_array().unwrap();
    let generated = [
        "batch.kubernetes.io/controller-uid",
        "batch.kubernetes.io/job-name",
        "controller-uid",
        "job-name",
    ];
    let (mut copied, mut own) = (0, 0);
    for job in jobs["items"].as_array().unwrap() {
        let meta = &job["metadata"];
        if meta.get("ownerReferences").is_some() {
            continue;
        }
        let uid = meta["uid"].as_str().unwrap();
        let name = meta["name"].as_str().unwrap();
        assert_eq!(
            job["spec"]["selector"],
            serde_json::json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
            "{name}"
        );
        // Defaulted to false on create, as SetDefaults_Job does: the selector is generated.
        assert_eq!(job["spec"]["manualSelector"], false, "{name}");
        let template = job["spec"]["template"]["metadata"]["labels"]
            .as_object()
            .unwrap();
        for (label, value) in generated.iter().zip([uid, name, uid, name]) {
            assert_eq!(template[*label], value, "{name}: {label}");
        }
        // Job defaulting copies the template labels into a Job that has none of its own.
        let labels = meta["labels"].as_object().unwrap();
        if labels.contains_key("controller-uid") {
            assert_eq!(labels, template, "{name}");
            copied += 1;
        } else {
            let mut user = template.clone();
            user.retain(|k, _| !generated.contains(&k.as_str()));
            assert_eq!(labels, &user, "{name}");
            own += 1;
        }
        // Its pod is the Job's, carries the selector's labels, and is finished.
        let pod = pods
            .iter()
            .find(|p| p["metadata"]["ownerReferences"][0]["uid"] == uid)
            .unwrap_or_else(|| panic!("no pod of {name}"));
        assert_eq!(pod["metadata"]["labels"].as_object().unwrap(), template);
        assert_eq!(pod["status"]["phase"], "Succeeded");
    }
    assert!(copied >= 2 && own >= 1, "{copied} {own}");
}

#[tokio::test]
async fn standalone_pods_and_applied_secrets() {
    let server = start_n(1000).await;
    let c = client(&server).await;
    let pods = get_json(&c, "/api/v1/pods").await;
    let standalone: Vec<&Value> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"].get("ownerReferences").is_none())
        .collect();
    let debugged = standalone
        .iter()
        .find(|p| p["spec"].get("ephemeralContainers").is_some())
        .expect("a pod with an ephemeral container");
    let debugger = debugged["spec"]["ephemeralContainers"][0]["name"].clone();
    assert_eq!(
        debugged["status"]["ephemeralContainerStatuses"][0]["name"],
        debugger
    );
    check::<core::v1::Pod>(debugged).unwrap();

    // A Secret applied with kubectl keeps its data in the last-applied annotation, and its
    // values are nowhere else.
    let secrets = get_json(&c, "/api/v1/secrets").await;
    let mut applied = 0;
    let mut values = BTreeSet::new();
    for s in secrets["items"].as_array().unwrap() {
        for v in s["data"].as_object().into_iter().flat_map(|m| m.values()) {
            let v = v.as_str().unwrap();
            if v.len() >= 16 {
                values.insert(v.to_string());
            }
        }
        let Some(last) =
            s["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
                .as_str()
        else {
            continue;
        };
        let last: Value = serde_json::from_str(last).unwrap();
        assert_eq!(last["kind"], "Secret");
        assert_eq!(last["data"], s["data"]);
        applied += 1;
    }
    assert!(applied >= 1);
    fn strings(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::String(s) => {
                if s.starts_with('{')
                    && let Ok(inner) = serde_json::from_str::<Value>(s)
                {
                    strings(&inner, out);
                }
                out.insert(s.clone());
            }
            Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
            Value::Object(m) => m.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }
    let mut elsewhere = BTreeSet::new();
    for k in server.objects() {
        if k.kind != "Secret" {
            strings(&server.object(&k).unwrap(), &mut elsewhere);
        }
    }
    let leaked: Vec<&String> = values.intersection(&elsewhere).collect();
    assert!(
        leaked.is_empty(),
        "{} secret values outside secrets",
        leaked.len()
    );
}

#[tokio::test]
async fn new_kinds_are_deterministic() {
    let a = start_n(1000).await;
    let b = start_n(1000).await;
    let dump = |s: &kube_sim::SimServer| -> Vec<String> {
        s.objects()
            .into_iter()
            .filter(|k| !matches!(k.group.as_str(), "" | "apps" | "batch"))
            .map(|k| serde_json::to_string(&s.object(&k).unwrap()).unwrap())
            .collect()
    };
    let da = dump(&a);
    assert!(da.len() > 200);
    assert!(da == dump(&b));
}
