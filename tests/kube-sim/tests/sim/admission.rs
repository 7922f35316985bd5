//! What a create must not carry over from another cluster: a Job's generated selector, a
//! Pod's ephemeral containers, priority and overhead, a Service's ClusterIP; and the defaults
//! a create gets.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use kube_sim::SimConfig;
use serde_json::{Value, json};

use crate::common::*;

const OLD_UID: &str = "5f0c2a8e-1111-4222-8333-444455556666";

async fn empty() -> kube_sim::SimServer {
    start(SimConfig {
        empty: true,
        ..Default::default()
    })
    .await
}

/// A Job as a backup of another cluster holds it: selector and labels from the old uid.
pub fn job_from_backup(name: &str) -> Value {
    let labels = json!({
        "app": "report",
        "batch.kubernetes.io/controller-uid": OLD_UID,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": OLD_UID,
        "job-name": name,
    });
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {
            "backoffLimit": 3,
            "manualSelector": false,
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": OLD_UID}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "report", "image": "registry.example.com/report:1.2"}]},
            },
        },
    })
}

/// What a restore must do to such a Job: drop the selector and the uid labels.
pub fn strip_job(job: &mut Value) {
    job["spec"].as_object_mut().unwrap().remove("selector");
    for pointer in ["/metadata/labels", "/spec/template/metadata/labels"] {
        let labels = job.pointer_mut(pointer).unwrap().as_object_mut().unwrap();
        labels.remove("controller-uid");
        labels.remove("batch.kubernetes.io/controller-uid");
    }
}

/// The message the real server gives for [`job_from_backup`] once it has picked `new_uid`.
pub fn old_selector_message(name: &str, new_uid: &str) -> String {
    let labels = format!(
        r#"map[string]string{{"app":"report", "batch.kubernetes.io/controller-uid":"{OLD_UID}", "batch.kubernetes.io/job-name":"{name}", "controller-uid":"{OLD_UID}", "job-name":"{name}"}}"#
    );
    format!(
        "Job.batch \"{name}\" is invalid: [spec.template.metadata.labels[controller-uid]: Invalid value: {labels}: must be '{new_uid}', spec.template.metadata.labels[batch.kubernetes.io/controller-uid]: Invalid value: {labels}: must be '{new_uid}', spec.selector: Invalid value: v1.LabelSelector{{MatchLabels:map[string]string{{\"batch.kubernetes.io/controller-uid\":\"{OLD_UID}\"}}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}}: `selector` not auto-generated]"
    )
}

/// The uid the server gave the rejected Job, read from the first cause.
pub fn uid_in(message: &str) -> String {
    let start = message.find("must be '").expect("must be '") + "must be '".len();
    message[start..start + 36].to_string()
}

async fn post(c: &kube::Client, path: &str, body: &Value) -> Resp {
    send(c, "POST", path, &[], Some(body.clone())).await
}

#[tokio::test]
async fn a_job_with_an_old_selector_is_rejected_and_created_once_stripped() {
    let server = empty().await;
    let c = client(&server).await;
    let jobs = "/apis/batch/v1/namespaces/default/jobs";
    let mut job = job_from_backup("nightly");
    let r = post(&c, jobs, &job).await;
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    let s = r.json();
    let message = s["message"].as_str().unwrap();
    let new_uid = uid_in(message);
    assert_ne!(new_uid, OLD_UID);
    assert_eq!(message, old_selector_message("nightly", &new_uid));
    assert_eq!(s["reason"], "Invalid");
    assert_eq!(s["code"], 422);
    assert_eq!(s["details"]["kind"], "Job");
    assert_eq!(s["details"]["group"], "batch");
    assert_eq!(s["details"]["name"], "nightly");
    let causes = s["details"]["causes"].as_array().unwrap();
    let fields: Vec<&str> = causes
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "spec.template.metadata.labels[controller-uid]",
            "spec.template.metadata.labels[batch.kubernetes.io/controller-uid]",
            "spec.selector"
        ]
    );
    assert!(causes.iter().all(|c| c["reason"] == "FieldValueInvalid"));
    assert!(
        causes[2]["message"]
            .as_str()
            .unwrap()
            .ends_with(": `selector` not auto-generated")
    );
    assert!(server.create_log().is_empty());

    // The selector alone is not enough: the old uid labels conflict with the generated
    // selector too.
    job["spec"].as_object_mut().unwrap().remove("selector");
    let r = post(&c, jobs, &job).await;
    assert_eq!(r.status, 422);
    let fields: Vec<String> = r.json()["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        fields,
        [
            "spec.template.metadata.labels[controller-uid]",
            "spec.template.metadata.labels[batch.kubernetes.io/controller-uid]",
            "spec.template.metadata.labels"
        ]
    );

    strip_job(&mut job);
    let r = post(&c, jobs, &job).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let created = r.json();
    let uid = created["metadata"]["uid"].as_str().unwrap();
    assert_ne!(uid, OLD_UID);
    let spec = &created["spec"];
    assert_eq!(
        spec["selector"],
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
    );
    assert_eq!(
        spec["template"]["metadata"]["labels"],
        json!({
            "app": "report",
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": "nightly",
            "controller-uid": uid,
            "job-name": "nightly",
        })
    );
    // The Job's own labels were given: they stay as sent.
    assert_eq!(
        created["metadata"]["labels"],
        json!({"app": "report", "batch.kubernetes.io/job-name": "nightly", "job-name": "nightly"})
    );
    // SetDefaults_Job.
    for (field, value) in [
        ("manualSelector", json!(false)),
        ("completions", json!(1)),
        ("parallelism", json!(1)),
        ("backoffLimit", json!(3)),
        ("completionMode", json!("NonIndexed")),
        ("suspend", json!(false)),
        ("podReplacementPolicy", json!("TerminatingOrFailed")),
    ] {
        assert_eq!(spec[field], value, "{field}");
    }
    assert_eq!(spec["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    assert_eq!(
        spec["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    assert_eq!(
        get_json(&c, &format!("{jobs}/nightly")).await["spec"],
        created["spec"]
    );
}

#[tokio::test]
async fn a_job_without_labels_is_labelled_like_its_pods() {
    let server = empty().await;
    let c = client(&server).await;
    let job = json!({
        "metadata": {"name": "bare"},
        "spec": {"template": {"metadata": {"labels": {"app": "bare"}}, "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}},
    });
    let r = post(&c, "/apis/batch/v1/namespaces/default/jobs", &job).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let created = r.json();
    // SetDefaults_Job shares the template's label map with the Job, and the selector
    // generation adds to that map.
    assert_eq!(
        created["metadata"]["labels"],
        created["spec"]["template"]["metadata"]["labels"]
    );
    assert_eq!(
        created["metadata"]["labels"]["controller-uid"],
        created["metadata"]["uid"]
    );
    assert_eq!(
        created["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "Always"
    );
}

#[tokio::test]
async fn a_manual_selector_is_kept_and_must_match_the_template() {
    let server = empty().await;
    let c = client(&server).await;
    let jobs = "/apis/batch/v1/namespaces/default/jobs";
    let job = json!({
        "metadata": {"name": "manual"},
        "spec": {
            "manualSelector": true,
            "selector": {"matchLabels": {"app": "manual"}},
            "template": {"metadata": {"labels": {"app": "manual"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}},
        },
    });
    let r = post(&c, jobs, &job).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let created = r.json();
    assert_eq!(created["spec"]["selector"], job["spec"]["selector"]);
    assert_eq!(
        created["spec"]["template"]["metadata"]["labels"],
        json!({"app": "manual"})
    );

    let mut other = job.clone();
    other["metadata"]["name"] = json!("mismatch");
    other["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
    let r = post(&c, jobs, &other).await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["message"],
        r#"Job.batch "mismatch" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{"app":"other"}: `selector` does not match template `labels`"#
    );

    let mut no_selector = job.clone();
    no_selector["metadata"]["name"] = json!("unselected");
    no_selector["spec"]
        .as_object_mut()
        .unwrap()
        .remove("selector");
    let r = post(&c, jobs, &no_selector).await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["message"],
        r#"Job.batch "unselected" is invalid: [spec.selector: Required value, spec.template.metadata.labels: Invalid value: map[string]string{"app":"manual"}: `selector` does not match template `labels`]"#
    );

    let mut always = job.clone();
    always["metadata"]["name"] = json!("always");
    always["spec"]["template"]["spec"]
        .as_object_mut()
        .unwrap()
        .remove("restartPolicy");
    let r = post(&c, jobs, &always).await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["message"],
        r#"Job.batch "always" is invalid: spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never""#
    );
}

#[tokio::test]
async fn a_pod_with_ephemeral_containers_is_rejected() {
    let server = empty().await;
    let c = client(&server).await;
    let mut pod = json!({
        "metadata": {"name": "debugged"},
        "spec": {
            "containers": [{"name": "app", "image": "nginx:1.27"}],
            "ephemeralContainers": [{"name": "debugger-x7k2p", "image": "busybox:1.36", "targetContainerName": "app"}],
        },
    });
    let r = post(&c, "/api/v1/namespaces/default/pods", &pod).await;
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    let s = r.json();
    assert_eq!(
        s["message"],
        r#"Pod "debugged" is invalid: spec.ephemeralContainers: Forbidden: cannot be set on create"#
    );
    assert_eq!(
        s["details"],
        json!({"name": "debugged", "kind": "Pod", "causes": [{"reason": "FieldValueForbidden", "message": "Forbidden: cannot be set on create", "field": "spec.ephemeralContainers"}]})
    );

    pod["spec"]
        .as_object_mut()
        .unwrap()
        .remove("ephemeralContainers");
    let r = post(&c, "/api/v1/namespaces/default/pods", &pod).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let spec = &r.json()["spec"];
    assert_eq!(spec["restartPolicy"], "Always");
    assert_eq!(spec["schedulerName"], "default-scheduler");
    assert_eq!(spec["terminationGracePeriodSeconds"], 30);
    assert_eq!(spec["enableServiceLinks"], true);
    assert_eq!(
        spec["containers"][0]["terminationMessagePath"],
        "/dev/termination-log"
    );
}

/// The Priority admission plugin: a pod's priority comes from its class; one computed in
/// another cluster, or a class that does not exist, is refused with 403.
#[tokio::test]
async fn a_pod_priority_is_computed_from_its_class_and_never_taken_from_the_body() {
    let server = empty().await;
    let c = client(&server).await;
    let pods = "/api/v1/namespaces/default/pods";
    let pod = |name: &str, spec: Value| {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "app", "image": "nginx:1.27"}]);
        json!({"metadata": {"name": name}, "spec": spec})
    };
    let r = post(&c, pods, &pod("old", json!({"priority": 1000}))).await;
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json()["message"],
        "pods \"old\" is forbidden: the integer value of priority (1000) must not be provided \
         in pod spec; priority admission controller computed 0 from the given PriorityClass name"
    );
    let r = post(
        &c,
        pods,
        &pod("nameless", json!({"priorityClassName": "batch-low"})),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json()["message"],
        "pods \"nameless\" is forbidden: no PriorityClass with name batch-low was found"
    );
    let critical = json!({"priorityClassName": "system-node-critical", "priority": 2_000_001_000,
                          "preemptionPolicy": "Never"});
    let r = post(&c, pods, &pod("critical", critical)).await;
    assert_eq!(r.status, 403);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("the string value of PreemptionPolicy (Never) must not be provided"),
        "{}",
        r.json()
    );

    // A class created first; a pod without the computed fields gets them.
    let class = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                       "metadata": {"name": "batch-low"}, "value": 100, "preemptionPolicy": "Never"});
    let r = post(&c, "/apis/scheduling.k8s.io/v1/priorityclasses", &class).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = post(
        &c,
        pods,
        &pod("batch", json!({"priorityClassName": "batch-low"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["spec"]["priority"], 100);
    assert_eq!(r.json()["spec"]["preemptionPolicy"], "Never");
    let r = post(&c, pods, &pod("plain", json!({}))).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["spec"]["priority"], 0);
    let r = post(
        &c,
        pods,
        &pod("node", json!({"priorityClassName": "system-node-critical"})),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["spec"]["priority"], 2_000_001_000);
    assert_eq!(r.json()["spec"]["preemptionPolicy"], "PreemptLowerPriority");
}

/// The RuntimeClass admission plugin: a pod's overhead is its RuntimeClass's, never its own.
#[tokio::test]
async fn a_pod_overhead_comes_from_its_runtime_class() {
    let server = empty().await;
    let c = client(&server).await;
    let pods = "/api/v1/namespaces/default/pods";
    let pod = |name: &str, spec: Value| {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "app", "image": "nginx:1.27"}]);
        json!({"metadata": {"name": name}, "spec": spec})
    };
    let overhead = json!({"cpu": "250m", "memory": "120Mi"});
    let r = post(&c, pods, &pod("old", json!({"overhead": overhead}))).await;
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json()["message"],
        "pods \"old\" is forbidden: pod rejected: Pod Overhead set without corresponding \
         RuntimeClass defined Overhead"
    );
    let class = json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                       "metadata": {"name": "kata"}, "handler": "kata",
                       "overhead": {"podFixed": overhead}});
    let r = post(&c, "/apis/node.k8s.io/v1/runtimeclasses", &class).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let other = json!({"runtimeClassName": "kata", "overhead": {"cpu": "1", "memory": "1Gi"}});
    let r = post(&c, pods, &pod("other", other)).await;
    assert_eq!(r.status, 403);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .ends_with("Pod's Overhead doesn't match RuntimeClass's defined Overhead")
    );
    let r = post(&c, pods, &pod("kata", json!({"runtimeClassName": "kata"}))).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["spec"]["overhead"], overhead);
}

fn service(name: &str, cluster_ip: Option<&str>) -> Value {
    let mut spec = json!({"selector": {"app": name}, "ports": [{"name": "http", "port": 80}]});
    if let Some(ip) = cluster_ip {
        spec["clusterIP"] = json!(ip);
    }
    json!({"metadata": {"name": name}, "spec": spec})
}

#[tokio::test]
async fn services_get_a_free_cluster_ip_from_the_service_range() {
    let server = start_n(1000).await;
    let c = client(&server).await;
    let services = "/api/v1/namespaces/default/services";
    let existing = get_json(&c, "/api/v1/services").await["items"]
        .as_array()
        .unwrap()
        .clone();
    let taken: HashSet<String> = existing
        .iter()
        .filter_map(|s| s["spec"]["clusterIP"].as_str().map(str::to_string))
        .collect();
    assert!(taken.contains("10.96.0.10"), "{taken:?}");

    let r = post(&c, services, &service("fresh", None)).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let created = r.json();
    let spec = &created["spec"];
    let ip: Ipv4Addr = spec["clusterIP"].as_str().unwrap().parse().unwrap();
    let (lo, hi) = (
        u32::from(Ipv4Addr::new(10, 96, 0, 0)),
        u32::from(Ipv4Addr::new(10, 111, 255, 255)),
    );
    assert!(u32::from(ip) > lo && u32::from(ip) < hi, "{ip}");
    assert!(!taken.contains(&ip.to_string()), "{ip} is taken");
    assert_eq!(spec["clusterIPs"], json!([ip.to_string()]));
    assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
    assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
    assert_eq!(spec["type"], "ClusterIP");
    assert_eq!(spec["sessionAffinity"], "None");
    assert_eq!(spec["internalTrafficPolicy"], "Cluster");
    assert_eq!(spec["ports"][0]["protocol"], "TCP");
    assert_eq!(spec["ports"][0]["targetPort"], 80);
    assert_eq!(created["status"], json!({"loadBalancer": {}}));

    let r = post(&c, services, &service("outside", Some("10.0.0.5"))).await;
    assert_eq!(r.status, 422);
    let s = r.json();
    assert_eq!(
        s["message"],
        r#"Service "outside" is invalid: spec.clusterIPs: Invalid value: []string{"10.0.0.5"}: failed to allocate IP 10.0.0.5: the provided IP (10.0.0.5) is not in the valid range. The range of valid IPs is 10.96.0.0/12"#
    );
    assert_eq!(s["details"]["causes"][0]["field"], "spec.clusterIPs");

    // Taken by a Service of the generated cluster, and by the one just created.
    for (name, taken_ip) in [
        ("dns-copy", "10.96.0.10".to_string()),
        ("twin", ip.to_string()),
    ] {
        let r = post(&c, services, &service(name, Some(&taken_ip))).await;
        assert_eq!(r.status, 422, "{taken_ip}");
        assert_eq!(
            r.json()["message"],
            format!(
                "Service \"{name}\" is invalid: spec.clusterIPs: Invalid value: []string{{\"{taken_ip}\"}}: failed to allocate IP {taken_ip}: provided IP is already allocated"
            )
        );
    }

    // A free address asked for by value is kept.
    let r = post(&c, services, &service("pinned", Some("10.100.200.7"))).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["spec"]["clusterIPs"], json!(["10.100.200.7"]));

    // Headless Services keep "None" and get no address.
    let r = post(&c, services, &service("headless", Some("None"))).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let spec = &r.json()["spec"];
    assert_eq!(spec["clusterIP"], "None");
    assert_eq!(spec["clusterIPs"], json!(["None"]));
    assert_eq!(spec["ipFamilyPolicy"], "SingleStack");

    // ExternalName Services get none either.
    let r = post(
        &c,
        services,
        &json!({"metadata": {"name": "external"}, "spec": {"type": "ExternalName", "externalName": "db.example.com"}}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json()["spec"].get("clusterIP").is_none());

    // Every Service now has its own address.
    let all = get_json(&c, "/api/v1/services").await["items"]
        .as_array()
        .unwrap()
        .clone();
    let mut seen = HashSet::new();
    for s in &all {
        if let Some(ip) = s["spec"]["clusterIP"].as_str().filter(|ip| *ip != "None") {
            assert!(seen.insert(ip.to_string()), "{ip} is used twice");
        }
    }
}
