//! `diff`: what changed between two snapshots or checkpoints — objects added, removed and changed, and for
//! a changed object the JSON operations (RFC 6902-like, with the old value as `from`) that
//! turn its sanitized form in the first snapshot into the one in the second.
//!
//! Secret values are never shown (see [`super::redact`]): each is replaced by its size and a
//! digest keyed for this run only, so a diff tells which values changed without what they are.

use crate::object_name::ObjectName;
use std::collections::{BTreeMap, HashSet};

use futures::TryStreamExt;
use serde::Serialize;
use serde_json::Value;

use super::redact::Redactor;
use super::{InspectError, PointStamp, open_object};
use crate::repo::Manifest;
use crate::seal::Keyring;
use crate::store::{ObjectId, SnapshotTime, Store};

/// An object named the way both snapshots agree on (the version may differ).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ObjectRef {
    /// `deployments.apps`, `configmaps`.
    pub resource: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = ObjectName::new(self.namespace.as_deref(), &self.name);
        write!(f, "{} {name}", self.resource)
    }
}

/// One change inside an object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    Add {
        path: String,
        value: Value,
    },
    Remove {
        path: String,
        from: Value,
    },
    Replace {
        path: String,
        from: Value,
        value: Value,
    },
}

impl Op {
    pub fn path(&self) -> &str {
        match self {
            Op::Add { path, .. } | Op::Remove { path, .. } | Op::Replace { path, .. } => path,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Changed {
    #[serde(flatten)]
    pub object: ObjectRef,
    pub from_id: ObjectId,
    pub to_id: ObjectId,
    pub ops: Vec<Op>,
    /// Encrypted, and no identity given opens it: changed, but what changed is not known.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SnapshotDiff {
    pub from: SnapshotTime,
    pub to: SnapshotTime,
    /// `snapshot` or `checkpoint`, for `from` and `to`.
    pub from_point: &'static str,
    pub to_point: &'static str,
    pub added: Vec<ObjectRef>,
    pub removed: Vec<ObjectRef>,
    pub changed: Vec<Changed>,
}

impl SnapshotDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

fn objects_of(manifest: &Manifest) -> BTreeMap<ObjectRef, ObjectId> {
    manifest
        .objects
        .iter()
        .map(|o| {
            let rt = manifest.resource_of(o);
            (
                ObjectRef {
                    resource: rt.qualified_name(),
                    kind: rt.kind.clone(),
                    namespace: o.namespace.clone(),
                    name: o.name.clone(),
                },
                o.id,
            )
        })
        .collect()
}

/// Compares two manifests; reads the changed objects (both versions) from the store, sealed
/// ones opened with `keyring`.
pub async fn diff(
    store: &Store,
    a: &Manifest,
    b: &Manifest,
    keyring: &Keyring,
) -> Result<SnapshotDiff, InspectError> {
    let before = objects_of(a);
    let after = objects_of(b);
    let added = after
        .keys()
        .filter(|k| !before.contains_key(*k))
        .cloned()
        .collect();
    let removed = before
        .keys()
        .filter(|k| !after.contains_key(*k))
        .cloned()
        .collect();
    let changed_ids: Vec<(ObjectRef, ObjectId, ObjectId)> = before
        .iter()
        .filter_map(|(k, old)| match after.get(k) {
            Some(new) if new != old => Some((k.clone(), *old, *new)),
            _ => None,
        })
        .collect();
    let wanted: HashSet<ObjectId> = changed_ids
        .iter()
        .flat_map(|(_, old, new)| [*old, *new])
        .collect();
    let stored: BTreeMap<ObjectId, bytes::Bytes> = store
        .get_many(wanted.into_iter().collect())
        .try_collect()
        .await?;
    // Sealed objects opened, or `None` when no identity given opens them.
    let mut contents: BTreeMap<ObjectId, Option<bytes::Bytes>> = BTreeMap::new();
    for (id, blob) in stored {
        let opened = open_object(store, keyring, &format!("object {id:#}"), id, blob).await?;
        contents.insert(id, opened);
    }
    let parse = |id: &ObjectId, what: &ObjectRef| -> Result<Option<Value>, InspectError> {
        let Some(bytes) = contents
            .get(id)
            .ok_or(crate::store::StoreError::MissingObject(*id))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(bytes)
            .map(Some)
            .map_err(|e| InspectError::BadObject {
                id: *id,
                what: what.to_string(),
                reason: e.to_string(),
            })
    };
    let redactor = Redactor::new();
    let mut changed = Vec::with_capacity(changed_ids.len());
    for (object, from_id, to_id) in changed_ids {
        let (Some(mut old), Some(mut new)) = (parse(&from_id, &object)?, parse(&to_id, &object)?)
        else {
            changed.push(Changed {
                object,
                from_id,
                to_id,
                ops: Vec::new(),
                encrypted: true,
            });
            continue;
        };
        redactor.redact(&object.kind, &object.resource, &mut old);
        redactor.redact(&object.kind, &object.resource, &mut new);
        let mut ops = Vec::new();
        json_diff(&old, &new, &mut String::new(), &mut ops);
        if ops.is_empty() && old == new {
            // The same object under two keyed ids (sealed with another key): unchanged.
            continue;
        }
        changed.push(Changed {
            object,
            from_id,
            to_id,
            ops,
            encrypted: false,
        });
    }
    let (from, to) = (PointStamp::from(a.point()), PointStamp::from(b.point()));
    Ok(SnapshotDiff {
        from: a.time,
        to: b.time,
        from_point: from.point,
        to_point: to.point,
        added,
        removed,
        changed,
    })
}

/// Appends to `ops` the operations that turn `a` into `b`, under the JSON pointer `path`.
/// Objects are compared key by key, arrays of equal length element by element; an array
/// whose length changed is replaced whole (short, and what a reader wants to see).
pub fn json_diff(a: &Value, b: &Value, path: &mut String, ops: &mut Vec<Op>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (key, old) in x {
                let len = path.len();
                push_token(path, key);
                match y.get(key) {
                    Some(new) => json_diff(old, new, path, ops),
                    None => ops.push(Op::Remove {
                        path: path.clone(),
                        from: old.clone(),
                    }),
                }
                path.truncate(len);
            }
            for (key, new) in y {
                if !x.contains_key(key) {
                    let len = path.len();
                    push_token(path, key);
                    ops.push(Op::Add {
                        path: path.clone(),
                        value: new.clone(),
                    });
                    path.truncate(len);
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (old, new)) in x.iter().zip(y).enumerate() {
                let len = path.len();
                push_token(path, &i.to_string());
                json_diff(old, new, path, ops);
                path.truncate(len);
            }
        }
        _ if a == b => {}
        _ => ops.push(Op::Replace {
            path: path.clone(),
            from: a.clone(),
            value: b.clone(),
        }),
    }
}

/// A JSON pointer token: `~` as `~0`, `/` as `~1`.
fn push_token(path: &mut String, token: &str) {
    path.push('/');
    for c in token.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ops(a: Value, b: Value) -> Vec<Op> {
        let mut ops = Vec::new();
        json_diff(&a, &b, &mut String::new(), &mut ops);
        // Key order depends on serde_json's features; the set of operations does not.
        ops.sort_by(|x, y| x.path().cmp(y.path()));
        ops
    }

    #[test]
    fn replace_add_remove_with_escaped_paths() {
        let got = ops(
            json!({"spec": {"replicas": 1, "x": [1, 2]}, "metadata": {"labels": {"a/b": "1"}}}),
            json!({"spec": {"replicas": 2, "x": [1, 3]}, "metadata": {"labels": {"c~d": "2"}}}),
        );
        assert_eq!(
            got,
            vec![
                Op::Remove {
                    path: "/metadata/labels/a~1b".into(),
                    from: json!("1")
                },
                Op::Add {
                    path: "/metadata/labels/c~0d".into(),
                    value: json!("2")
                },
                Op::Replace {
                    path: "/spec/replicas".into(),
                    from: json!(1),
                    value: json!(2)
                },
                Op::Replace {
                    path: "/spec/x/1".into(),
                    from: json!(2),
                    value: json!(3)
                },
            ]
        );
        let json = serde_json::to_value(&got[2]).unwrap();
        assert_eq!(
            json,
            json!({"op": "replace", "path": "/spec/replicas", "from": 1, "value": 2})
        );
    }

    #[test]
    fn secret_values_are_hidden_but_their_changes_show() {
        let secret = ObjectRef {
            resource: "secrets".into(),
            kind: "Secret".into(),
            namespace: Some("prod".into()),
            name: "db".into(),
        };
        let redactor = Redactor::new();
        let mut old =
            json!({"kind": "Secret", "data": {"password": "c2VjcmV0", "user": "YWRtaW4="}});
        let mut new =
            json!({"kind": "Secret", "data": {"password": "czNjcjN0", "user": "YWRtaW4="}});
        redactor.redact(&secret.kind, &secret.resource, &mut old);
        redactor.redact(&secret.kind, &secret.resource, &mut new);
        let mut found = Vec::new();
        json_diff(&old, &new, &mut String::new(), &mut found);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path(), "/data/password");
        let shown = serde_json::to_string(&found).unwrap();
        assert!(
            !shown.contains("c2VjcmV0") && !shown.contains("czNjcjN0"),
            "{shown}"
        );
        assert!(shown.contains("<secret value: 8 bytes, "), "{shown}");

        // Other kinds are shown as they are.
        let config = ObjectRef {
            resource: "configmaps".into(),
            kind: "ConfigMap".into(),
            ..secret
        };
        let mut value = json!({"data": {"password": "plain"}});
        redactor.redact(&config.kind, &config.resource, &mut value);
        assert_eq!(value["data"]["password"], "plain");
    }

    #[test]
    fn equal_values_have_no_ops_and_resized_arrays_are_replaced_whole() {
        assert!(ops(json!({"a": [1, {"b": 2}]}), json!({"a": [1, {"b": 2}]})).is_empty());
        assert_eq!(
            ops(json!({"a": [1]}), json!({"a": [1, 2]})),
            vec![Op::Replace {
                path: "/a".into(),
                from: json!([1]),
                value: json!([1, 2])
            }]
        );
    }
}
