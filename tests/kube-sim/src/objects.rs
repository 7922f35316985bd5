//! Helpers for the fields the API server itself writes into objects: timestamps, uids,
//! `managedFields`, and the `events.k8s.io/v1` rendering of core events.
//!
//! Object content never depends on the wall clock: the simulated clock starts at a fixed
//! instant and advances one second per resource version, so that the same seed and the same
//! sequence of requests give byte-identical objects.

use serde_json::{Map, Value, json};

use crate::rng::Rng;

/// The simulated "now" when the server starts: 2025-01-15T10:00:00Z.
pub(crate) const BASE_TIME: i64 = 1_736_935_200;

/// Simulated time of a write at resource version `rv` made after start-up.
pub(crate) fn time_of_rv(start_rv: u64, rv: u64) -> i64 {
    BASE_TIME + rv.saturating_sub(start_rv) as i64
}

/// RFC 3339 in UTC with second precision, as Kubernetes writes `metav1.Time`.
pub(crate) fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// MicroTime (`eventTime`, lease times) has microseconds.
pub(crate) fn rfc3339_micro(secs: i64, micros: u32) -> String {
    let s = rfc3339(secs);
    format!("{}.{:06}Z", &s[..s.len() - 1], micros % 1_000_000)
}

/// The uid of a generated object: a function of the seed and the object's identity, so that
/// owners and dependents can refer to each other without generation-order coupling.
pub(crate) fn uid_for(
    seed: u64,
    group: &str,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> String {
    let label = format!("uid/{group}/{plural}/{}/{name}", namespace.unwrap_or(""));
    Rng::derived(seed, &label).uuid()
}

/// The `fieldsV1` set of a value: every field path, with list items keyed by `name` where
/// they have one, as server-side field management records them.
pub(crate) fn fields_v1(v: &Value) -> Value {
    fn walk(v: &Value, nested: bool) -> Value {
        match v {
            Value::Object(m) => {
                let mut out = Map::new();
                if nested {
                    out.insert(".".into(), json!({}));
                }
                for (k, child) in m {
                    out.insert(format!("f:{k}"), walk(child, true));
                }
                Value::Object(out)
            }
            Value::Array(items) => {
                let mut out = Map::new();
                for item in items {
                    let key = item
                        .get("name")
                        .and_then(Value::as_str)
                        .map(|n| format!("k:{{\"name\":{}}}", crate::store::json_str(n)))
                        .or_else(|| {
                            item.get("uid")
                                .and_then(Value::as_str)
                                .map(|u| format!("k:{{\"uid\":{}}}", crate::store::json_str(u)))
                        });
                    match key {
                        Some(k) => {
                            out.insert(k, walk(item, true));
                        }
                        None => {
                            if let Some(s) = item.as_str() {
                                out.insert(format!("v:{}", crate::store::json_str(s)), json!({}));
                            }
                        }
                    }
                }
                Value::Object(out)
            }
            _ => json!({}),
        }
    }
    walk(v, false)
}

/// One `managedFields` entry for the given top-level fields of `obj` (and, for the main
/// entry, the labels, annotations, owner references and finalizers in its metadata).
pub(crate) fn managed_entry(
    obj: &Map<String, Value>,
    api_version: &str,
    manager: &str,
    time: &str,
    status: bool,
) -> Value {
    let mut fields = Map::new();
    if status {
        if let Some(s) = obj.get("status") {
            fields.insert("status".into(), s.clone());
        }
    } else {
        if let Some(meta) = obj.get("metadata").and_then(Value::as_object) {
            let mut m = Map::new();
            for k in ["annotations", "labels", "ownerReferences", "finalizers"] {
                if let Some(v) = meta.get(k) {
                    m.insert(k.into(), v.clone());
                }
            }
            if !m.is_empty() {
                fields.insert("metadata".into(), Value::Object(m));
            }
        }
        for (k, v) in obj {
            if !matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status") {
                fields.insert(k.clone(), v.clone());
            }
        }
    }
    let mut entry = Map::new();
    entry.insert("apiVersion".into(), json!(api_version));
    entry.insert("fieldsType".into(), json!("FieldsV1"));
    entry.insert("fieldsV1".into(), fields_v1(&Value::Object(fields)));
    entry.insert("manager".into(), json!(manager));
    entry.insert("operation".into(), json!("Update"));
    if status {
        entry.insert("subresource".into(), json!("status"));
    }
    entry.insert("time".into(), json!(time));
    Value::Object(entry)
}

/// The `metadata` map of an object, created if missing or malformed.
pub(crate) fn metadata_mut(obj: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let meta = obj.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    match meta {
        Value::Object(m) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

/// Sets or refreshes one manager's `managedFields` entry.
pub(crate) fn record_manager(
    obj: &mut Map<String, Value>,
    api_version: &str,
    manager: &str,
    time: &str,
    status_only: bool,
) {
    let entry = managed_entry(obj, api_version, manager, time, status_only);
    let meta = metadata_mut(obj);
    let list = meta.entry("managedFields").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    if let Value::Array(entries) = list {
        let same = |e: &Value| {
            e.get("manager").and_then(Value::as_str) == Some(manager)
                && e.get("subresource").is_some() == status_only
        };
        match entries.iter_mut().find(|e| same(e)) {
            Some(e) => *e = entry,
            None => entries.push(entry),
        }
    }
}

/// The most a `fieldManager` may hold (apimachinery's `FieldManagerMaxLength`).
pub(crate) const FIELD_MANAGER_MAX: usize = 128;

/// The problems of a `fieldManager` option as `ValidateFieldManager` finds them: too long,
/// or a character that is not printable (each one named with its position, as Go's
/// `%#U`).
pub(crate) fn field_manager_errors(manager: &str) -> Vec<crate::status::FieldError> {
    use crate::status::{FieldError, go};
    let mut errors = Vec::new();
    if manager.len() > FIELD_MANAGER_MAX {
        errors.push(FieldError::too_long("fieldManager", FIELD_MANAGER_MAX));
    }
    for (i, c) in manager.char_indices() {
        if c.is_control() || (c.is_whitespace() && c != ' ') {
            errors.push(FieldError::invalid(
                "fieldManager",
                &go::quote(manager),
                &format!("invalid character U+{:04X} (at position {i})", c as u32),
            ));
        }
    }
    errors
}

/// Who a write is recorded for in `managedFields`: the request's `fieldManager` option
/// when it names one (checked first, see [`field_manager_errors`]), else the program name
/// of its User-Agent, as the real server does.
pub(crate) fn field_manager(option: Option<&str>, user_agent: Option<&str>) -> String {
    match option.filter(|m| !m.is_empty()) {
        Some(manager) => manager.to_string(),
        None => manager_from_user_agent(user_agent),
    }
}

/// The manager name the real server derives from a User-Agent: the program name.
pub(crate) fn manager_from_user_agent(ua: Option<&str>) -> String {
    let ua = ua.unwrap_or("unknown");
    let first = ua.split('/').next().unwrap_or("unknown").trim();
    if first.is_empty() {
        "unknown".to_string()
    } else {
        first.chars().take(128).collect()
    }
}

/// Kinds whose `metadata.generation` the real server maintains (those whose spec a
/// controller reconciles, and every custom resource); others leave it out.
pub(crate) fn has_generation(kind: &str, custom: bool) -> bool {
    custom
        || matches!(
            kind,
            "Deployment"
                | "ReplicaSet"
                | "StatefulSet"
                | "DaemonSet"
                | "Job"
                | "CronJob"
                | "Ingress"
                | "IngressClass"
                | "NetworkPolicy"
                | "PodDisruptionBudget"
                | "HorizontalPodAutoscaler"
                | "EndpointSlice"
                | "CustomResourceDefinition"
                | "ValidatingAdmissionPolicy"
                | "FlowSchema"
                | "PriorityLevelConfiguration"
        )
}

/// The `events.k8s.io/v1` form of a core `Event`.
pub(crate) fn events_v1_view(core: &Value) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    out.insert("kind".into(), json!("Event"));
    let get = |k: &str| core.get(k).cloned();
    if let Some(m) = get("metadata") {
        out.insert("metadata".into(), m);
    }
    out.insert("eventTime".into(), get("eventTime").unwrap_or(Value::Null));
    let renames = [
        ("action", "action"),
        ("reason", "reason"),
        ("involvedObject", "regarding"),
        ("related", "related"),
        ("message", "note"),
        ("type", "type"),
        ("reportingComponent", "reportingController"),
        ("reportingInstance", "reportingInstance"),
        ("series", "series"),
        ("source", "deprecatedSource"),
        ("firstTimestamp", "deprecatedFirstTimestamp"),
        ("lastTimestamp", "deprecatedLastTimestamp"),
        ("count", "deprecatedCount"),
    ];
    for (from, to) in renames {
        if let Some(v) = get(from)
            && !v.is_null()
            && v != json!("")
        {
            out.insert(to.into(), v);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_format() {
        assert_eq!(rfc3339(BASE_TIME), "2025-01-15T10:00:00Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_micro(0, 42), "1970-01-01T00:00:00.000042Z");
    }

    #[test]
    fn managed_fields_shape() {
        let obj = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let e = managed_entry(obj.as_object().unwrap(), "v1", "kubectl", "t", false);
        assert_eq!(
            e["fieldsV1"],
            json!({"f:metadata": {".": {}, "f:labels": {".": {}, "f:a": {}}}, "f:spec": {".": {}, "f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}}}}})
        );
    }

    #[test]
    fn user_agent_manager() {
        assert_eq!(
            manager_from_user_agent(Some("kubectl/v1.32.4 (linux/amd64) kubernetes/abc")),
            "kubectl"
        );
        assert_eq!(manager_from_user_agent(None), "unknown");
    }
}
