//! What the API server does to a new object between decoding a create and storing it, for
//! the kinds whose server-generated fields a backup tool has to strip before a restore:
//! defaulting (`SetDefaults_*` of the v1 types), the create strategy (`PrepareForCreate`:
//! a Job's generated selector), validation (`ValidateJob`, `ValidatePodCreate`) and
//! allocation (a Service's ClusterIP), answering 422 Invalid with the real messages; and the
//! Priority and RuntimeClass admission plugins, whose refusal of a pod's priority or overhead
//! from another cluster is a 403. Secrets, which a restore writes from decrypted or
//! hand-edited files, are decoded, defaulted and validated on create and update as the real
//! server does (see [`crate::secret`]): undecodable base64 is a 400, the rest a 422.
//!
//! One function per (group, resource), called by the create handler once the new object has
//! its name and uid ([`decode`] first, on the body, for creates and updates). It must never
//! accept what the real server rejects for these kinds, and never change an object of any
//! other kind.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::rng::Rng;
use crate::status::{self, FieldError, go};
use crate::{State, secret};

/// The Service ClusterIP range: kubeadm's default `--service-cluster-ip-range`, which the
/// generated cluster's Services are numbered from.
pub(crate) const SERVICE_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 96, 0, 0), 12);

/// The object being created, as the admission functions need to know it.
pub(crate) struct Create<'a> {
    pub group: &'a str,
    pub plural: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    /// Seed and revision of the create: an allocated ClusterIP is a function of both.
    pub seed: u64,
    pub rv: u64,
}

/// Decodes a create's or an update's body as the server decodes it into the kind's Go type
/// (with conversion and defaults); what does not decode is a 400 Bad Request.
pub(crate) fn decode(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    obj: &mut Map<String, Value>,
) -> Result<(), (u16, Vec<u8>)> {
    if (group, plural) != ("", "secrets") {
        return Ok(());
    }
    secret::read(obj).map_err(|why| {
        status::bad_request(&format!(
            "{kind} in version {} cannot be handled as a {kind}: {why}",
            go::quote(version)
        ))
    })
}

/// Validates an update (a PUT, or the result of a patch) of a kind whose update rules a
/// restore meets: a Secret's (`ValidateSecretUpdate`).
pub(crate) fn admit_update(
    group: &str,
    plural: &str,
    kind: &str,
    name: &str,
    old: &Map<String, Value>,
    new: &Map<String, Value>,
) -> Result<(), (u16, Vec<u8>)> {
    let errors = match (group, plural) {
        ("", "secrets") => secret::validate_update(new, old),
        _ => Vec::new(),
    };
    if errors.is_empty() {
        Ok(())
    } else {
        Err(status::invalid(kind, group, name, &errors))
    }
}

/// Defaults, prepares, validates and allocates for a create; the error is the `Status` reply.
pub(crate) fn admit_create(
    state: &mut State,
    c: &Create<'_>,
    obj: &mut Map<String, Value>,
) -> Result<(), (u16, Vec<u8>)> {
    if (c.group, c.plural) == ("", "pods") {
        // Admission plugins run before validation; theirs is a 403.
        if let Err(why) = pod_priority(state, obj).and_then(|()| pod_overhead(state, obj)) {
            return Err(status::admission_forbidden(c.group, c.plural, c.name, &why));
        }
    }
    let errors = match (c.group, c.plural) {
        ("batch", "jobs") => job(c, obj),
        ("", "pods") => pod(obj),
        ("", "services") => service(state, c, obj),
        ("", "secrets") => secret::validate(obj),
        _ => Vec::new(),
    };
    if errors.is_empty() {
        Ok(())
    } else {
        Err(status::invalid(c.kind, c.group, c.name, &errors))
    }
}

/// The object under `key`, created empty when absent or null (as decoding into a Go struct
/// gives a zero value the defaulting then fills in).
fn child<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let v = m.entry(key).or_insert_with(|| json!({}));
    if !v.is_object() {
        *v = json!({});
    }
    match v {
        Value::Object(o) => o,
        _ => unreachable!("replaced by an object above"),
    }
}

/// Present and not null: a non-nil pointer, map or slice in the Go object.
fn present(v: Option<&Value>) -> bool {
    v.is_some_and(|v| !v.is_null())
}

/// The value at a path of keys below a map.
fn at<'a>(m: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    rest.iter().try_fold(m.get(*first)?, |v, k| v.get(*k))
}

fn default_to(m: &mut Map<String, Value>, key: &str, value: Value) {
    if !present(m.get(key)) {
        m.insert(key.to_string(), value);
    }
}

fn str_of<'a>(m: &'a Map<String, Value>, key: &str) -> &'a str {
    m.get(key).and_then(Value::as_str).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Pods and pod templates.

/// `SetDefaults_PodSpec` and `SetDefaults_Container` (pods and every pod template).
fn default_pod_spec(spec: &mut Map<String, Value>) {
    default_to(spec, "dnsPolicy", json!("ClusterFirst"));
    default_to(spec, "restartPolicy", json!("Always"));
    default_to(spec, "securityContext", json!({}));
    default_to(spec, "terminationGracePeriodSeconds", json!(30));
    default_to(spec, "schedulerName", json!("default-scheduler"));
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        let Some(Value::Array(containers)) = spec.get_mut(list) else {
            continue;
        };
        for c in containers.iter_mut().filter_map(Value::as_object_mut) {
            let policy = image_pull_policy(str_of(c, "image"));
            default_to(c, "imagePullPolicy", json!(policy));
            default_to(c, "terminationMessagePath", json!("/dev/termination-log"));
            default_to(c, "terminationMessagePolicy", json!("File"));
        }
    }
}

/// `Always` for an image without tag and digest or tagged `latest`, else `IfNotPresent`.
fn image_pull_policy(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let tag = last.split_once(':').map(|(_, t)| t);
    match (tag, digest) {
        (Some("latest"), _) | (None, false) => "Always",
        _ => "IfNotPresent",
    }
}

/// `SetDefaults_Pod`, `SetDefaults_PodSpec` and `ValidatePodCreate`.
fn pod(obj: &mut Map<String, Value>) -> Vec<FieldError> {
    let spec = child(obj, "spec");
    default_pod_spec(spec);
    default_to(spec, "enableServiceLinks", json!(true));
    let mut errors = Vec::new();
    // Ephemeral containers are added to a running pod through its `ephemeralcontainers`
    // subresource only: a restore must drop them.
    if spec
        .get("ephemeralContainers")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        errors.push(FieldError::forbidden(
            "spec.ephemeralContainers",
            "cannot be set on create",
        ));
    }
    if !str_of(spec, "nodeName").is_empty()
        && spec
            .get("schedulingGates")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    {
        errors.push(FieldError::forbidden(
            "spec.nodeName",
            "cannot be set until all schedulingGates have been cleared",
        ));
    }
    errors
}

/// The classes every cluster has (`pkg/apis/scheduling`, `SystemPriorityClasses`).
const SYSTEM_PRIORITY_CLASSES: [(&str, i64); 2] = [
    ("system-node-critical", 2_000_001_000),
    ("system-cluster-critical", 2_000_000_000),
];

/// The Priority admission plugin (`plugin/pkg/admission/priority`): a pod's `priority` and
/// `preemptionPolicy` are computed from its PriorityClass (or the global default, else 0); a
/// pod that names a class that does not exist, or carries a value other than the computed
/// one (a pod from another cluster whose class differs), is refused. The error is the
/// plugin's message.
fn pod_priority(state: &State, obj: &mut Map<String, Value>) -> Result<(), String> {
    let spec = child(obj, "spec");
    let class_name = str_of(spec, "priorityClassName").to_string();
    let stored = |name: &str| {
        state
            .store
            .get(
                "scheduling.k8s.io",
                "priorityclasses",
                &crate::store::object_key(None, name),
            )
            .and_then(|o| o.full_value("scheduling.k8s.io/v1", "PriorityClass"))
    };
    let class: Option<(i64, String)> = if class_name.is_empty() {
        state
            .store
            .current("scheduling.k8s.io", "priorityclasses")
            .iter()
            .filter_map(|o| o.full_value("scheduling.k8s.io/v1", "PriorityClass"))
            .find(|pc| pc["globalDefault"] == true)
            .map(|pc| class_values(&pc))
    } else if let Some((_, value)) = SYSTEM_PRIORITY_CLASSES
        .iter()
        .find(|(name, _)| *name == class_name)
    {
        Some((*value, "PreemptLowerPriority".to_string()))
    } else {
        match stored(&class_name) {
            Some(pc) => Some(class_values(&pc)),
            None => return Err(format!("no PriorityClass with name {class_name} was found")),
        }
    };
    let priority = class.as_ref().map_or(0, |(value, _)| *value);
    if let Some(given) = spec.get("priority").and_then(Value::as_i64)
        && given != priority
    {
        return Err(format!(
            "the integer value of priority ({given}) must not be provided in pod spec; \
             priority admission controller computed {priority} from the given PriorityClass name"
        ));
    }
    spec.insert("priority".into(), json!(priority));
    if let Some((_, policy)) = class {
        if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str)
            && given != policy
        {
            return Err(format!(
                "the string value of PreemptionPolicy ({given}) must not be provided in pod \
                 spec; priority admission controller computed {policy} from the given \
                 PriorityClass name"
            ));
        }
        spec.insert("preemptionPolicy".into(), json!(policy));
    }
    Ok(())
}

/// The RuntimeClass admission plugin (`plugin/pkg/admission/runtimeclass`, `prepareObjects`
/// and `validateOverhead`): a pod that names a RuntimeClass that does not exist is refused;
/// a pod's `overhead` is the one of its RuntimeClass, and a pod that carries another one, or
/// one without a RuntimeClass that defines it, is refused.
fn pod_overhead(state: &State, obj: &mut Map<String, Value>) -> Result<(), String> {
    let spec = child(obj, "spec");
    let class_name = str_of(spec, "runtimeClassName").to_string();
    let class = if class_name.is_empty() {
        None
    } else {
        let found = state
            .store
            .get(
                "node.k8s.io",
                "runtimeclasses",
                &crate::store::object_key(None, &class_name),
            )
            .and_then(|o| o.full_value("node.k8s.io/v1", "RuntimeClass"));
        match found {
            Some(class) => Some(class),
            None => {
                return Err(format!(
                    "pod rejected: RuntimeClass {class_name:?} not found"
                ));
            }
        }
    };
    let defined = class
        .and_then(|rc| rc.pointer("/overhead/podFixed").cloned())
        .filter(|fixed| !fixed.is_null());
    let given = spec
        .get("overhead")
        .filter(|o| o.as_object().is_some_and(|m| !m.is_empty()))
        .cloned();
    match (defined, given) {
        (Some(fixed), Some(given)) if fixed != given => {
            Err("pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead".into())
        }
        (Some(fixed), _) => {
            spec.insert("overhead".into(), fixed);
            Ok(())
        }
        (None, Some(_)) => Err(
            "pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead"
                .into(),
        ),
        (None, None) => Ok(()),
    }
}

/// A PriorityClass's value and preemption policy (defaulted as the API server does).
fn class_values(pc: &Value) -> (i64, String) {
    (
        pc["value"].as_i64().unwrap_or(0),
        pc["preemptionPolicy"]
            .as_str()
            .unwrap_or("PreemptLowerPriority")
            .to_string(),
    )
}

// ---------------------------------------------------------------------------------------
// Jobs.

const LEGACY_UID_LABEL: &str = "controller-uid";
const UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
const LEGACY_NAME_LABEL: &str = "job-name";
const NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// `SetDefaults_Job`, `PrepareForCreate` (`generateSelector`) and `ValidateJob`.
fn job(c: &Create<'_>, obj: &mut Map<String, Value>) -> Vec<FieldError> {
    let metadata_labels_empty = obj
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty);
    let spec = child(obj, "spec");
    if !present(spec.get("completions")) && !present(spec.get("parallelism")) {
        spec.insert("completions".into(), json!(1));
    }
    default_to(spec, "parallelism", json!(1));
    let backoff = if present(spec.get("backoffLimitPerIndex")) {
        i32::MAX
    } else {
        6
    };
    default_to(spec, "backoffLimit", json!(backoff));
    default_to(spec, "completionMode", json!("NonIndexed"));
    default_to(spec, "suspend", json!(false));
    let replacement = if present(spec.get("podFailurePolicy")) {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    default_to(spec, "podReplacementPolicy", json!(replacement));
    default_to(spec, "manualSelector", json!(false));
    let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
    let template = child(spec, "template");
    default_pod_spec(child(template, "spec"));
    // SetDefaults_Job makes the Job's labels the very map of the template's labels when the
    // Job has none; the selector generation below then adds to that one map, so such a Job
    // ends up labelled with the generated labels too.
    let share_labels = metadata_labels_empty
        && template
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .is_some_and(Value::is_object);
    if !manual {
        generate_selector(spec, c.name, c.uid);
    }
    if share_labels && let Some(labels) = at(spec, &["template", "metadata", "labels"]).cloned() {
        child(obj, "metadata").insert("labels".into(), labels);
    }
    let spec = child(obj, "spec");
    validate_job(spec, c.name, c.uid, manual)
}

/// The template labels and the selector that make the Job's pods its own: added where
/// absent; a value set by the client (an old Job's uid) is left for validation to reject.
fn generate_selector(spec: &mut Map<String, Value>, name: &str, uid: &str) {
    let labels = child(child(child(spec, "template"), "metadata"), "labels");
    for key in [LEGACY_NAME_LABEL, NAME_LABEL] {
        labels.entry(key).or_insert_with(|| json!(name));
    }
    for key in [LEGACY_UID_LABEL, UID_LABEL] {
        labels.entry(key).or_insert_with(|| json!(uid));
    }
    child(child(spec, "selector"), "matchLabels")
        .entry(UID_LABEL)
        .or_insert_with(|| json!(uid));
}

/// `validateGeneratedSelector` (with the prefixed labels required, as on create) and the
/// selector checks of `ValidateJobSpec`, in the server's order.
fn validate_job(spec: &Map<String, Value>, name: &str, uid: &str, manual: bool) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let selector = spec.get("selector").filter(|s| !s.is_null());
    let template_labels = at(spec, &["template", "metadata", "labels"]).and_then(Value::as_object);
    if !manual && let Some(sel) = selector {
        let expected = [
            (LEGACY_UID_LABEL, uid),
            (LEGACY_NAME_LABEL, name),
            (UID_LABEL, uid),
            (NAME_LABEL, name),
        ];
        for (key, value) in expected {
            if let Some(e) = has_label(template_labels, key, value) {
                errors.push(e);
            }
        }
        if let Ok(parsed) = Selector::of(Some(sel))
            && !parsed.matches(|k| expected.iter().find(|(ek, _)| *ek == k).map(|(_, v)| *v))
        {
            errors.push(FieldError::invalid(
                "spec.selector",
                &render_selector(sel),
                "`selector` not auto-generated",
            ));
        }
    }
    let restart = at(spec, &["template", "spec", "restartPolicy"])
        .and_then(Value::as_str)
        .unwrap_or_default();
    match restart {
        "OnFailure" | "Never" => {}
        "" | "Always" => errors.push(FieldError::required(
            "spec.template.spec.restartPolicy",
            r#"valid values: "OnFailure", "Never""#,
        )),
        other => errors.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            &go::quote(other),
            &["OnFailure", "Never"],
        )),
    }
    if selector.is_none() {
        errors.push(FieldError::required("spec.selector", ""));
    }
    if let Ok(parsed) = Selector::of(selector)
        && !parsed.matches(|k| {
            template_labels
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
        })
    {
        errors.push(FieldError::invalid(
            "spec.template.metadata.labels",
            &go::string_map(template_labels),
            "`selector` does not match template `labels`",
        ));
    }
    errors
}

/// `ValidateHasLabel`.
fn has_label(labels: Option<&Map<String, Value>>, key: &str, expected: &str) -> Option<FieldError> {
    let field = format!("spec.template.metadata.labels[{key}]");
    let detail = format!("must be '{expected}'");
    match labels.and_then(|l| l.get(key)) {
        None => Some(FieldError::required(&field, &detail)),
        Some(v) if v.as_str() != Some(expected) => Some(FieldError::invalid(
            &field,
            &go::string_map(labels),
            &detail,
        )),
        Some(_) => None,
    }
}

/// A `metav1.LabelSelector` as the server prints it in a message (Go's `%#v`).
fn render_selector(sel: &Value) -> String {
    let labels = go::string_map(sel.get("matchLabels").and_then(Value::as_object));
    let expressions = match sel.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(items) => {
            let inner: Vec<String> = items
                .iter()
                .map(|r| {
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        go::quote(r.get("key").and_then(Value::as_str).unwrap_or_default()),
                        go::quote(
                            r.get("operator")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                        ),
                        go::strings(r.get("values").and_then(Value::as_array).map(Vec::as_slice)),
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", inner.join(", "))
        }
    };
    format!("v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{expressions}}}")
}

/// A structured label selector as `metav1.LabelSelectorAsSelector` reads it: null selects
/// nothing, an empty one everything; a malformed one is an error (and not checked further).
enum Selector {
    Nothing,
    Requirements(Vec<(String, Op)>),
}

enum Op {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

impl Selector {
    fn of(sel: Option<&Value>) -> Result<Selector, ()> {
        let Some(sel) = sel.filter(|s| !s.is_null()) else {
            return Ok(Selector::Nothing);
        };
        let mut reqs = Vec::new();
        if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in m {
                reqs.push((k.clone(), Op::In(vec![v.as_str().ok_or(())?.to_string()])));
            }
        }
        for r in sel
            .get("matchExpressions")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let key = r.get("key").and_then(Value::as_str).ok_or(())?.to_string();
            let values: Vec<String> = r
                .get("values")
                .and_then(Value::as_array)
                .map(|vs| {
                    vs.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let op = match r.get("operator").and_then(Value::as_str) {
                Some("In") if !values.is_empty() => Op::In(values),
                Some("NotIn") if !values.is_empty() => Op::NotIn(values),
                Some("Exists") if values.is_empty() => Op::Exists,
                Some("DoesNotExist") if values.is_empty() => Op::DoesNotExist,
                _ => return Err(()),
            };
            reqs.push((key, op));
        }
        Ok(Selector::Requirements(reqs))
    }

    fn matches<'a>(&self, labels: impl Fn(&str) -> Option<&'a str>) -> bool {
        let Selector::Requirements(reqs) = self else {
            return false;
        };
        reqs.iter().all(|(k, op)| {
            let v = labels(k);
            match op {
                Op::In(vs) => v.is_some_and(|v| vs.iter().any(|x| x == v)),
                Op::NotIn(vs) => !v.is_some_and(|v| vs.iter().any(|x| x == v)),
                Op::Exists => v.is_some(),
                Op::DoesNotExist => v.is_none(),
            }
        })
    }
}

// ---------------------------------------------------------------------------------------
// Services.

/// The ClusterIPs of the stored Services, parsed once per Service version.
#[derive(Debug, Default)]
pub(crate) struct ClusterIps {
    by_service: HashMap<String, (u64, Vec<Ipv4Addr>)>,
}

#[derive(Deserialize)]
struct ServiceIps {
    spec: Option<ServiceSpecIps>,
}

#[derive(Deserialize)]
struct ServiceSpecIps {
    #[serde(rename = "clusterIP")]
    cluster_ip: Option<String>,
    #[serde(rename = "clusterIPs")]
    cluster_ips: Option<Vec<String>>,
}

impl ClusterIps {
    /// Every IPv4 ClusterIP held by a stored Service now.
    fn allocated(&mut self, state_store: &crate::store::Store) -> HashSet<Ipv4Addr> {
        let services = state_store.current("", "services");
        let mut live = HashSet::with_capacity(services.len());
        let mut out = HashSet::new();
        for s in &services {
            let key = crate::store::object_key(s.namespace.as_deref(), &s.name);
            let entry = self.by_service.entry(key.clone()).or_default();
            if entry.0 != s.rv {
                let parsed = serde_json::from_slice::<ServiceIps>(&s.item)
                    .ok()
                    .and_then(|v| v.spec);
                let ips = parsed
                    .map(|spec| {
                        let mut all = spec.cluster_ips.unwrap_or_default();
                        all.extend(spec.cluster_ip);
                        all
                    })
                    .unwrap_or_default();
                *entry = (s.rv, ips.iter().filter_map(|ip| ip.parse().ok()).collect());
            }
            out.extend(entry.1.iter().copied());
            live.insert(key);
        }
        self.by_service.retain(|k, _| live.contains(k));
        out
    }
}

/// Offsets of the range, as the bitmap allocator counts them: the network and broadcast
/// addresses are not in it.
fn range_bounds() -> (u32, u32) {
    let (net, bits) = SERVICE_CIDR;
    let base = u32::from(net);
    let size = 1u32 << (32 - bits);
    (base, size)
}

fn cidr_text() -> String {
    format!("{}/{}", SERVICE_CIDR.0, SERVICE_CIDR.1)
}

fn in_range(ip: Ipv4Addr) -> bool {
    let (base, size) = range_bounds();
    let v = u32::from(ip);
    v > base && v < base + size - 1
}

/// A free address, as `AllocateNext` picks one: from the upper part of the range first (the
/// lower band, at most 256 addresses, is kept for addresses asked for by value), at an
/// offset that is a function of the seed and revision, then the next free one.
fn allocate_next(allocated: &HashSet<Ipv4Addr>, seed: u64, rv: u64) -> Option<Ipv4Addr> {
    let (base, size) = range_bounds();
    let usable = size - 2;
    let band = (usable / 16).clamp(16, 256);
    let upper = usable - band;
    let start = Rng::derived(seed, &format!("clusterIP/{rv}")).below(u64::from(upper)) as u32;
    let upper_offsets = (0..upper).map(|i| band + (start + i) % upper);
    let lower_offsets = 0..band;
    upper_offsets
        .chain(lower_offsets)
        .map(|off| Ipv4Addr::from(base + 1 + off))
        .find(|ip| !allocated.contains(ip))
}

fn strings_of(m: &Map<String, Value>, key: &str) -> Vec<String> {
    m.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// `SetDefaults_Service`, then the create path of the Service storage: `normalizeClusterIPs`,
/// `initIPFamilyFields` on a single-stack IPv4 cluster, and `allocClusterIPs`.
fn service(state: &mut State, c: &Create<'_>, obj: &mut Map<String, Value>) -> Vec<FieldError> {
    let spec = child(obj, "spec");
    default_service(spec);
    if !present(spec.get("clusterIPs")) || strings_of(spec, "clusterIPs").is_empty() {
        let ip = str_of(spec, "clusterIP").to_string();
        if !ip.is_empty() {
            spec.insert("clusterIPs".into(), json!([ip]));
        }
    }
    if str_of(spec, "type") == "ExternalName" {
        return Vec::new();
    }
    let cluster_ips = strings_of(spec, "clusterIPs");
    let headless =
        str_of(spec, "clusterIP") == "None" || cluster_ips.first().is_some_and(|ip| ip == "None");
    let has_selector = spec
        .get("selector")
        .and_then(Value::as_object)
        .is_some_and(|s| !s.is_empty());
    if !present(spec.get("ipFamilyPolicy")) {
        let policy = if headless && !has_selector {
            "RequireDualStack"
        } else {
            "SingleStack"
        };
        spec.insert("ipFamilyPolicy".into(), json!(policy));
    }
    let policy = str_of(spec, "ipFamilyPolicy").to_string();
    let mut errors = Vec::new();
    for (i, ip) in cluster_ips.iter().enumerate() {
        if (i == 0 && ip == "None") || ip.parse::<IpAddr>().is_ok() {
            continue;
        }
        errors.push(FieldError::invalid(
            &format!("spec.clusterIPs[{i}]"),
            &go::quote(ip),
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
    }
    if !errors.is_empty() {
        return errors;
    }
    let mut families = strings_of(spec, "ipFamilies");
    if policy == "SingleStack" {
        if cluster_ips.len() == 2 {
            errors.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                &go::quote(&policy),
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
            ));
        }
        if families.len() == 2 {
            errors.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                &go::quote(&policy),
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
            ));
        }
    }
    let ips_value: Vec<Value> = cluster_ips.iter().map(|s| json!(s)).collect();
    for (i, ip) in cluster_ips.iter().enumerate() {
        if ip == "None" {
            break;
        }
        if i < families.len() {
            continue;
        }
        match ip.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => families.push("IPv4".to_string()),
            _ => errors.push(FieldError::invalid(
                &format!("spec.clusterIPs[{i}]"),
                &go::strings(Some(&ips_value)),
                "IPv6 is not configured on this cluster",
            )),
        }
    }
    if !errors.is_empty() {
        return errors;
    }
    if headless && !has_selector {
        if families.is_empty() {
            families.push("IPv4".to_string());
        }
        // A selectorless headless Service may name both families even on a single-stack
        // cluster: the server adds the other one unless it is asked for one.
        if families.len() < 2 && policy != "SingleStack" {
            let other = if families[0] == "IPv4" {
                "IPv6"
            } else {
                "IPv4"
            };
            families.push(other.to_string());
        }
        spec.insert("ipFamilies".into(), json!(families));
        return Vec::new();
    }
    if policy == "RequireDualStack" {
        errors.push(FieldError::invalid(
            "spec.ipFamilyPolicy",
            &go::quote(&policy),
            "this cluster is not configured for dual-stack services",
        ));
    }
    for (i, f) in families.iter().enumerate() {
        if f != "IPv4" {
            errors.push(FieldError::invalid(
                &format!("spec.ipFamilies[{i}]"),
                &go::quote(f),
                "not configured on this cluster",
            ));
        }
    }
    if !errors.is_empty() {
        return errors;
    }
    if families.is_empty() {
        families.push("IPv4".to_string());
    }
    spec.insert("ipFamilies".into(), json!(families));
    if headless {
        return Vec::new();
    }
    let allocated = state.cluster_ips.allocated(&state.store);
    let ip = match cluster_ips.first() {
        Some(requested) => {
            let ip: Ipv4Addr = match requested.parse() {
                Ok(ip) => ip,
                Err(_) => return Vec::new(),
            };
            let why = if !in_range(ip) {
                Some(format!(
                    "the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}",
                    cidr_text()
                ))
            } else if allocated.contains(&ip) {
                Some("provided IP is already allocated".to_string())
            } else {
                None
            };
            if let Some(why) = why {
                return vec![FieldError::invalid(
                    "spec.clusterIPs",
                    &go::strings(Some(&ips_value)),
                    &format!("failed to allocate IP {requested}: {why}"),
                )];
            }
            ip
        }
        None => match allocate_next(&allocated, c.seed, c.rv) {
            Some(ip) => ip,
            // The real server answers 500 when the range is full; 2^20 addresses make that
            // unreachable here.
            None => return Vec::new(),
        },
    };
    spec.insert("clusterIP".into(), json!(ip.to_string()));
    spec.insert("clusterIPs".into(), json!([ip.to_string()]));
    Vec::new()
}

/// `SetDefaults_Service`.
fn default_service(spec: &mut Map<String, Value>) {
    default_to(spec, "sessionAffinity", json!("None"));
    let timeout_set = present(at(
        spec,
        &["sessionAffinityConfig", "clientIP", "timeoutSeconds"],
    ));
    match str_of(spec, "sessionAffinity") {
        "None" => {
            spec.remove("sessionAffinityConfig");
        }
        "ClientIP" if !timeout_set => {
            spec.insert(
                "sessionAffinityConfig".into(),
                json!({"clientIP": {"timeoutSeconds": 10800}}),
            );
        }
        _ => {}
    }
    default_to(spec, "type", json!("ClusterIP"));
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default_to(p, "protocol", json!("TCP"));
            let unset = match p.get("targetPort") {
                None | Some(Value::Null) => true,
                Some(Value::Number(n)) => n.as_i64() == Some(0),
                Some(Value::String(s)) => s.is_empty(),
                Some(_) => false,
            };
            if unset && let Some(port) = p.get("port").cloned() {
                p.insert("targetPort".into(), port);
            }
        }
    }
    let svc_type = str_of(spec, "type").to_string();
    let external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let externally_accessible = svc_type == "LoadBalancer"
        || svc_type == "NodePort"
        || (svc_type == "ClusterIP" && external_ips);
    if externally_accessible {
        default_to(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if matches!(svc_type.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        default_to(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if svc_type == "LoadBalancer" {
        default_to(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policies() {
        assert_eq!(image_pull_policy("nginx"), "Always");
        assert_eq!(image_pull_policy("nginx:latest"), "Always");
        assert_eq!(image_pull_policy("nginx:1.27"), "IfNotPresent");
        assert_eq!(image_pull_policy("registry:5000/nginx"), "Always");
        assert_eq!(image_pull_policy("nginx@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn selector_rendering() {
        let sel = json!({"matchLabels": {"b": "2", "a": "1"}});
        assert_eq!(
            render_selector(&sel),
            r#"v1.LabelSelector{MatchLabels:map[string]string{"a":"1", "b":"2"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"#
        );
        let sel = json!({"matchExpressions": [{"key": "k", "operator": "In", "values": ["x"]}]});
        assert_eq!(
            render_selector(&sel),
            r#"v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:"k", Operator:"In", Values:[]string{"x"}}}}"#
        );
    }

    #[test]
    fn range() {
        assert!(!in_range(Ipv4Addr::new(10, 96, 0, 0)));
        assert!(in_range(Ipv4Addr::new(10, 96, 0, 1)));
        assert!(in_range(Ipv4Addr::new(10, 111, 255, 254)));
        assert!(!in_range(Ipv4Addr::new(10, 111, 255, 255)));
        assert!(!in_range(Ipv4Addr::new(10, 112, 0, 1)));
        let ip = allocate_next(&HashSet::new(), 1, 5).unwrap();
        assert!(in_range(ip));
        // The lower band (10.96.0.1 .. 10.96.1.0) is left to addresses asked for by value.
        assert!(u32::from(ip) > u32::from(Ipv4Addr::new(10, 96, 1, 0)));
    }
}
