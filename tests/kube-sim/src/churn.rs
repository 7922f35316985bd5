//! Churn on demand: modify, add and delete objects the way a live cluster changes between
//! two snapshots.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::objects::{self, rfc3339, time_of_rv};
use crate::rng::Rng;
use crate::store::{self, Obj, PutMode};
use crate::{ChurnReport, ObjectKey, Shared};

const MANAGER: &str = "kube-sim-churn";

/// Kinds churn never touches: removing or rewriting them would change the cluster's shape
/// rather than its content; component statuses are computed by the server, never written.
fn untouchable(k: &ObjectKey) -> bool {
    matches!(
        (k.group.as_str(), k.resource.as_str()),
        ("", "namespaces")
            | ("", "componentstatuses")
            | ("apiextensions.k8s.io", "customresourcedefinitions")
            | ("apiregistration.k8s.io", "apiservices")
    )
}

fn deletable(k: &ObjectKey) -> bool {
    match (k.group.as_str(), k.resource.as_str()) {
        ("", "configmaps") => k.name != "kube-root-ca.crt",
        ("", "serviceaccounts") => k.name != "default",
        ("", "secrets") | ("", "events") | ("", "pods") => true,
        _ => false,
    }
}

pub(crate) fn churn(shared: &Shared, fraction: f64, seed: u64) -> ChurnReport {
    let mut rng = Rng::derived(seed, "churn");
    let mut report = ChurnReport::default();
    let mut state = shared.write();
    let total = state.store.live_count();
    let fraction = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let keys: Vec<ObjectKey> = state
        .store
        .keys()
        .into_iter()
        .filter(|k| !untouchable(k))
        .collect();
    let n_mod = ((fraction * total as f64).round() as usize).min(keys.len());
    let n_side = (fraction * total as f64 / 10.0).round() as usize;

    // A partial Fisher-Yates shuffle picks distinct objects deterministically.
    let mut order: Vec<usize> = (0..keys.len()).collect();
    let pick = |rng: &mut Rng, i: usize, order: &mut Vec<usize>| {
        let j = i + rng.below((order.len() - i) as u64) as usize;
        order.swap(i, j);
        order[i]
    };
    for i in 0..n_mod {
        let k = &keys[pick(&mut rng, i, &mut order)];
        let Some(obj) = state.store.get(
            &k.group,
            &k.resource,
            &store::object_key(k.namespace.as_deref(), &k.name),
        ) else {
            continue;
        };
        let Some(Value::Object(mut value)) = obj.full_value(&k.api_version(), &k.kind) else {
            continue;
        };
        let rv = state.store.next_rv();
        let now = rfc3339(time_of_rv(shared.start_rv, rv));
        let tag = format!("{seed}-{rv}");
        let spec_changed = modify(&mut value, k, &mut rng, &tag);
        {
            let meta = objects::metadata_mut(&mut value);
            meta.insert("resourceVersion".into(), json!(rv.to_string()));
            if spec_changed && let Some(g) = meta.get("generation").and_then(Value::as_i64) {
                meta.insert("generation".into(), json!(g + 1));
            }
        }
        objects::record_manager(&mut value, &k.api_version(), MANAGER, &now, false);
        let custom = state
            .store
            .collection(&k.group, &k.resource)
            .is_some_and(|c| c.rtype.custom);
        let value = Value::Object(value);
        let alt =
            (k.group.is_empty() && k.resource == "events").then(|| objects::events_v1_view(&value));
        if let Ok(o) = Obj::from_value(value, custom, alt.as_ref())
            && state
                .store
                .put(&k.group, &k.resource, o, PutMode::Update(None))
                .is_ok()
        {
            report.modified.push(k.clone());
        }
    }

    // Deletions come from the objects not modified.
    let mut deleted = 0;
    let mut i = n_mod;
    while deleted < n_side && i < order.len() {
        let k = keys[pick(&mut rng, i, &mut order)].clone();
        i += 1;
        if !deletable(&k) {
            continue;
        }
        let rv = state.store.next_rv();
        if state
            .store
            .delete(
                &k.group,
                &k.resource,
                &store::object_key(k.namespace.as_deref(), &k.name),
                rv,
            )
            .is_some()
        {
            report.deleted.push(k);
            deleted += 1;
        }
    }

    // Additions: config maps and secrets in existing namespaces.
    let namespaces: Vec<String> = state
        .store
        .current("", "namespaces")
        .iter()
        .map(|o| o.name.to_string())
        .collect();
    for n in 0..n_side {
        if namespaces.is_empty() {
            break;
        }
        let ns = namespaces[rng.below(namespaces.len() as u64) as usize].clone();
        let secret = n % 2 == 1;
        let (plural, kind) = if secret {
            ("secrets", "Secret")
        } else {
            ("configmaps", "ConfigMap")
        };
        let mut name = format!("churn-{seed}-{n}");
        let mut attempt = 0;
        while state
            .store
            .get("", plural, &store::object_key(Some(&ns), &name))
            .is_some()
        {
            attempt += 1;
            name = format!("churn-{seed}-{n}-{attempt}");
        }
        let rv = state.store.next_rv();
        let now = rfc3339(time_of_rv(shared.start_rv, rv));
        let uid = Rng::derived(seed, &format!("churn-uid/{rv}")).uuid();
        let len = rng.range(40, 1200) as usize;
        let payload = rng.base64ish(len);
        let mut value = json!({
            "apiVersion": "v1",
            "kind": kind,
            "metadata": {
                "creationTimestamp": now,
                "labels": {"app.kubernetes.io/managed-by": MANAGER},
                "name": name,
                "namespace": ns,
                "resourceVersion": rv.to_string(),
                "uid": uid,
            },
        });
        if secret {
            value["type"] = json!("Opaque");
            value["data"] =
                json!({"payload": base64::engine::general_purpose::STANDARD.encode(&payload)});
        } else {
            value["data"] = json!({"payload": payload});
        }
        if let Value::Object(m) = &mut value {
            objects::record_manager(m, "v1", MANAGER, &now, false);
        }
        if let Ok(o) = Obj::from_value(value, false, None)
            && state.store.put("", plural, o, PutMode::Create).is_ok()
        {
            report.added.push(ObjectKey {
                group: String::new(),
                version: "v1".into(),
                resource: plural.into(),
                kind: kind.into(),
                namespace: Some(ns),
                name,
            });
        }
    }
    report
}

/// Changes an object's content; returns whether its spec (or data) changed.
fn modify(
    value: &mut serde_json::Map<String, Value>,
    k: &ObjectKey,
    rng: &mut Rng,
    tag: &str,
) -> bool {
    if let Some(Value::Object(data)) = value.get_mut("data")
        && matches!(k.kind.as_str(), "ConfigMap" | "Secret")
    {
        let text = format!("revision {tag}: {}", rng.hex(16));
        let v = if k.kind == "Secret" {
            base64::engine::general_purpose::STANDARD.encode(text)
        } else {
            text
        };
        data.insert("churn".into(), json!(v));
        return true;
    }
    if k.kind == "Event" {
        let count = value.get("count").and_then(Value::as_i64).unwrap_or(1);
        value.insert("count".into(), json!(count + 1));
        return false;
    }
    if let Some(Value::Object(spec)) = value.get_mut("spec") {
        if let Some(r) = spec.get("replicas").and_then(Value::as_i64) {
            spec.insert("replicas".into(), json!(r % 4 + 1));
            return true;
        }
        if k.kind == "Widget" {
            spec.insert(
                "color".into(),
                json!(*rng.pick(&["red", "green", "blue", "yellow"])),
            );
            return true;
        }
    }
    let meta = objects::metadata_mut(value);
    let ann = meta.entry("annotations").or_insert_with(|| json!({}));
    if let Value::Object(a) = ann {
        a.insert("kube-sim.example.com/revision".into(), json!(tag));
    }
    false
}
