//! A prometheus-operator install: its CRDs in the `monitoring.coreos.com` group, the
//! operator with its admission webhooks, and the ServiceMonitors, PrometheusRules and
//! AlertmanagerConfigs teams keep in their namespaces.
//!
//! As in a real install, `servicemonitors` and `prometheusrules` are served and stored at
//! `v1` and `alertmanagerconfigs` only at `v1alpha1`: the group's preferred version does not
//! serve every resource of the group. Receiver credentials stay in Secrets, referenced by
//! name.

use serde_json::{Map, Value, json};

use super::*;

/// (plural, kind, singular, short name, version) of the CRDs.
const CRDS: [(&str, &str, &str, &str, &str); 3] = [
    (
        "alertmanagerconfigs",
        "AlertmanagerConfig",
        "alertmanagerconfig",
        "amcfg",
        "v1alpha1",
    ),
    (
        "prometheusrules",
        "PrometheusRule",
        "prometheusrule",
        "promrule",
        "v1",
    ),
    (
        "servicemonitors",
        "ServiceMonitor",
        "servicemonitor",
        "smon",
        "v1",
    ),
];

const OPERATOR: &str = "prometheus-operator";
const OPERATOR_VERSION: &str = "v0.78.2";

/// The `CustomResourceDefinition` of one prometheus-operator resource: a small schema that
/// keeps the spec's fields, as the operator's own schemas are too large to reproduce.
pub(crate) fn monitoring_crd_value(
    plural: &str,
    kind: &str,
    singular: &str,
    short: &str,
    version: &str,
    at: i64,
) -> Value {
    json!({
        "spec": {
            "conversion": {"strategy": "None"},
            "group": MONITORING_GROUP,
            "names": {"categories": ["prometheus-operator"], "kind": kind, "listKind": format!("{kind}List"), "plural": plural, "shortNames": [short], "singular": singular},
            "scope": "Namespaced",
            "versions": [{
                "name": version,
                "schema": {"openAPIV3Schema": {
                    "description": format!("The `{kind}` custom resource definition (CRD) of the Prometheus Operator."),
                    "properties": {
                        "apiVersion": {"description": "APIVersion defines the versioned schema of this representation of an object.", "type": "string"},
                        "kind": {"description": "Kind is a string value representing the REST resource this object represents.", "type": "string"},
                        "metadata": {"type": "object"},
                        "spec": {"description": format!("Specification of desired {kind} configuration."), "type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    },
                    "required": ["spec"],
                    "type": "object",
                }},
                "served": true,
                "storage": true,
            }],
        },
        "status": crd_status(kind, plural, singular, &format!("{kind}List"), &[short], &["prometheus-operator"], &[version], at),
    })
}

impl Generator<'_> {
    /// The CRDs of the `monitoring.coreos.com` group, as the operator's chart installs them.
    pub(super) fn emit_monitoring_crds(&mut self, created: i64) {
        let created = created + 120 * 86_400;
        for (plural, kind, singular, short, version) in CRDS {
            let value = monitoring_crd_value(plural, kind, singular, short, version, created + 2);
            let mut d = self
                .draft(CRD, None, &format!("{plural}.{MONITORING_GROUP}"), created)
                .annotation("controller-gen.kubebuilder.io/version", "v0.16.4")
                .annotation(
                    "operator.prometheus.io/version",
                    OPERATOR_VERSION.trim_start_matches('v'),
                )
                .manager("helm")
                .status_by("kube-apiserver");
            if let Value::Object(m) = value {
                for (k, v) in m {
                    d = d.set(&k, v);
                }
            }
            self.emit(d);
        }
    }

    /// The operator in kube-system, its Service, and the admission webhooks that validate
    /// and mutate PrometheusRules through that Service.
    pub(super) fn monitoring_stack(&mut self, small: bool) {
        if self.room() < UNIT_MAX {
            return;
        }
        let ks = "kube-system";
        let created = BASE_TIME - 280 * 86_400;
        let labels = str_map(&[
            ("app.kubernetes.io/instance", "kube-prometheus-stack"),
            ("app.kubernetes.io/name", OPERATOR),
        ]);
        let d = self
            .draft(SERVICEACCOUNT, Some(ks), OPERATOR, created)
            .labels(&labels)
            .manager("helm");
        self.emit(d);
        let mut container = self.app_container(
            OPERATOR,
            &format!("quay.io/prometheus-operator/prometheus-operator:{OPERATOR_VERSION}"),
            2,
            10250,
            false,
        );
        container["args"] = json!([
            "--kubelet-service=kube-system/kube-prometheus-stack-kubelet",
            "--web.enable-tls=true",
            "--web.listen-address=:10250",
            "--web.tls-cert-file=/cert/cert",
            "--web.tls-private-key-file=/cert/key",
        ]);
        container["volumeMounts"] =
            json!([{"mountPath": "/cert", "name": "tls-secret", "readOnly": true}]);
        let volumes = json!([{"name": "tls-secret", "secret": {"defaultMode": 420, "items": [{"key": "tls.crt", "path": "cert"}, {"key": "tls.key", "path": "key"}], "secretName": "prometheus-operator-admission"}}]);
        // The webhooks trust the CA that signed the serving certificate; the Secret holds
        // only the certificate and its key.
        let ca = base64_of(&pem_block(&mut self.rng, "CERTIFICATE", 1100));
        let d = self
            .draft(SECRET, Some(ks), "prometheus-operator-admission", created)
            .labels(&labels)
            .set("type", json!("kubernetes.io/tls"))
            .set(
                "data",
                json!({"tls.crt": self.rng.base64(1400), "tls.key": self.rng.base64(1700)}),
            )
            .manager("cert-manager-certificates-issuing");
        self.emit(d);
        let pods = self.deployment_chain(
            ks,
            OPERATOR,
            created,
            &labels,
            vec![container],
            volumes,
            OPERATOR,
            1,
            if small { 1 } else { 2 },
            "helm",
            false,
        );
        self.service_with_endpoints(
            ks,
            OPERATOR,
            created,
            &labels,
            &[("https", 443, 10250)],
            None,
            &pods,
            false,
        );
        for mutating in [false, true] {
            let (k, op, suffix) = if mutating {
                (MUTATINGWEBHOOK, "mutate", "prometheusrulemutate")
            } else {
                (VALIDATINGWEBHOOK, "validate", "prometheusrulevalidate")
            };
            let mut hook = json!({
                "admissionReviewVersions": ["v1", "v1beta1"],
                "clientConfig": {
                    "caBundle": ca,
                    "service": {"name": OPERATOR, "namespace": ks, "path": format!("/admission-prometheusrules/{op}"), "port": 443},
                },
                "failurePolicy": "Ignore",
                "matchPolicy": "Equivalent",
                "name": format!("{suffix}.monitoring.coreos.com"),
                "namespaceSelector": {},
                "objectSelector": {},
                "rules": [{"apiGroups": [MONITORING_GROUP], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"], "resources": ["prometheusrules"], "scope": "Namespaced"}],
                "sideEffects": "None",
                "timeoutSeconds": 10,
            });
            if mutating {
                hook["reinvocationPolicy"] = json!("Never");
            }
            let d = self
                .draft(k, None, "prometheus-operator-admission", created)
                .labels(&labels)
                .set("webhooks", json!([hook]))
                .generation(1)
                .manager("helm");
            self.emit(d);
        }
    }

    /// A team's monitoring: a ServiceMonitor over its services, alerting rules, and the
    /// Alertmanager routing to its channel (whose webhook URL is in a Secret).
    pub(super) fn namespace_monitoring(&mut self, ns: &str, created: i64) {
        let team = ns.split('-').next().unwrap_or(ns);
        let labels = str_map(&[
            ("app.kubernetes.io/part-of", team),
            ("release", "kube-prometheus-stack"),
        ]);
        let d = self
            .draft(SERVICEMONITOR, Some(ns), &format!("{team}-services"), created)
            .labels(&labels)
            .set("spec", json!({
                "endpoints": [{"interval": "30s", "path": "/metrics", "port": "http", "scrapeTimeout": "10s"}],
                "namespaceSelector": {"matchNames": [ns]},
                "selector": {"matchLabels": {"app.kubernetes.io/part-of": team}},
            }));
        self.emit(d);
        let errors = format!(
            "sum by (service) (rate(http_requests_total{{namespace=\"{ns}\",code=~\"5..\"}}[5m])) / sum by (service) (rate(http_requests_total{{namespace=\"{ns}\"}}[5m]))"
        );
        let d = self
            .draft(PROMETHEUSRULE, Some(ns), &format!("{team}-alerts"), created)
            .labels(&labels)
            .set("spec", json!({"groups": [{
                "name": format!("{team}.rules"),
                "rules": [
                    {"expr": errors, "record": "service:http_errors:ratio_rate5m"},
                    {"alert": "HighErrorRate", "annotations": {"description": format!("{{{{ $labels.service }}}} in {ns} answers more than 5% of requests with errors."), "summary": "High HTTP error rate"}, "expr": "service:http_errors:ratio_rate5m > 0.05", "for": "10m", "labels": {"severity": "warning", "team": team}},
                    {"alert": "PodCrashLooping", "annotations": {"summary": "A container restarts repeatedly"}, "expr": format!("increase(kube_pod_container_status_restarts_total{{namespace=\"{ns}\"}}[15m]) > 3"), "for": "5m", "labels": {"severity": "critical", "team": team}},
                ],
            }]}));
        self.emit(d);
        let secret = format!("{team}-alertmanager-slack");
        let mut data = Map::new();
        let hook = format!(
            "https://hooks.slack.com/services/T0{}/B0{}/{}",
            self.rng.suffix(8).to_uppercase(),
            self.rng.suffix(8).to_uppercase(),
            self.rng.base64ish(24)
        );
        data.insert("webhook-url".into(), json!(base64_of(&hook)));
        let d = self
            .draft(SECRET, Some(ns), &secret, created)
            .labels(&labels)
            .set("type", json!("Opaque"))
            .set("data", Value::Object(data));
        self.emit(d);
        let receiver = format!("{team}-slack");
        let d = self
            .draft(ALERTMANAGERCONFIG, Some(ns), &format!("{team}-routing"), created)
            .labels(&labels)
            .set("spec", json!({
                "receivers": [{"name": receiver, "slackConfigs": [{"apiURL": {"key": "webhook-url", "name": secret}, "channel": format!("#{team}-alerts"), "sendResolved": true}]}],
                "route": {"groupBy": ["alertname", "service"], "groupInterval": "5m", "groupWait": "30s", "matchers": [{"matchType": "=", "name": "team", "value": team}], "receiver": receiver, "repeatInterval": "4h"},
            }));
        self.emit(d);
    }

    /// The ServiceMonitor an application's chart adds for its Service.
    pub(super) fn app_service_monitor(
        &mut self,
        ns: &str,
        name: &str,
        created: i64,
        meta_labels: &Map<String, Value>,
        selector: &Map<String, Value>,
    ) {
        let d = self
            .draft(SERVICEMONITOR, Some(ns), name, created)
            .labels(meta_labels)
            .label("release", "kube-prometheus-stack")
            .set(
                "spec",
                json!({
                    "endpoints": [{"interval": "30s", "path": "/metrics", "port": "http"}],
                    "selector": {"matchLabels": selector},
                }),
            );
        self.emit(d);
    }
}
