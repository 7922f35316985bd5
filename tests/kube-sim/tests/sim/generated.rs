//! The generated objects are well-typed Kubernetes objects: each deserializes as its
//! k8s-openapi type, and owners and dependents refer to each other correctly.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::{
    apps, autoscaling, batch, coordination, core, discovery, networking, policy, rbac, scheduling,
    storage,
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
            "Widget" => Ok(()),
            other => Err(format!("unexpected kind {other}")),
        };
        if let Err(e) = result {
            panic!(
                "{} {:?}/{} does not deserialize: {e}\n{v:#}",
                k.kind, k.namespace, k.name
            );
        }
        checked.insert(k.kind.clone());

        // Every owner reference points at a stored object of that kind and name.
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
        let created = v["metadata"]["creationTimestamp"].as_str().unwrap();
        if let Some(start) = v["status"]["startTime"].as_str() {
            assert!(start >= created, "{} started before it was created", k.name);
        }
    }
    assert!(checked.len() >= 30, "{checked:?}");
}
