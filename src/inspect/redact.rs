//! Hiding Secret values from everything a command prints. A Secret's values sit in `data` and
//! `stringData`, and again in the `kubectl.kubernetes.io/last-applied-configuration`
//! annotation that `kubectl apply` leaves on it (the whole applied object, values included):
//! all three are replaced by their size and a digest keyed for this run, so output still tells
//! which values changed and which are equal, never what they are. The key is never stored or
//! printed, so a digest cannot be used to confirm a guessed value outside the run.
//!
//! This module only rewrites values handed to it; it must never log or return what it hides.

use serde_json::Value;

/// The annotation `kubectl apply` writes with the whole applied object.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Hides the values of Secrets with a key of its own.
pub struct Redactor {
    key: [u8; 32],
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new()
    }
}

impl Redactor {
    pub fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut key = [0u8; 32];
        for chunk in key.chunks_mut(8) {
            // Each RandomState is seeded from the operating system's randomness.
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u128(nanos);
            chunk.copy_from_slice(&hasher.finish().to_le_bytes());
        }
        Self { key }
    }

    /// Whether objects of this kind and resource (plural, with or without its group) hold
    /// secret values.
    pub fn is_secret(kind: &str, resource: &str) -> bool {
        kind == "Secret" && (resource == "secrets" || resource.is_empty())
    }

    /// Replaces the secret values of `value`, an object of `kind` / `resource`, in place;
    /// other kinds are left as they are.
    pub fn redact(&self, kind: &str, resource: &str, value: &mut Value) {
        if !Self::is_secret(kind, resource) {
            return;
        }
        for field in ["data", "stringData"] {
            let Some(Value::Object(values)) = value.get_mut(field) else {
                continue;
            };
            for v in values.values_mut() {
                self.hide(v);
            }
        }
        if let Some(Value::Object(annotations)) = value.pointer_mut("/metadata/annotations")
            && let Some(applied) = annotations.get_mut(LAST_APPLIED)
        {
            self.hide(applied);
        }
    }

    fn hide(&self, v: &mut Value) {
        let text = match &mut *v {
            Value::String(s) => std::mem::take(s),
            other => other.to_string(),
        };
        let digest = blake3::keyed_hash(&self.key, text.as_bytes()).to_hex();
        *v = Value::String(format!(
            "<secret value: {} bytes, {}>",
            text.len(),
            &digest[..12]
        ));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn data_string_data_and_last_applied_are_hidden() {
        let applied = r#"{"apiVersion":"v1","kind":"Secret","data":{"password":"c2VjcmV0"}}"#;
        let mut secret = json!({
            "kind": "Secret",
            "metadata": {"name": "db", "annotations": {LAST_APPLIED: applied, "team": "a"}},
            "data": {"password": "c2VjcmV0"},
            "stringData": {"token": "hunter2"}
        });
        let redactor = Redactor::new();
        redactor.redact("Secret", "secrets", &mut secret);
        let shown = secret.to_string();
        for value in ["c2VjcmV0", "hunter2"] {
            assert!(!shown.contains(value), "{shown}");
        }
        assert_eq!(secret["metadata"]["annotations"]["team"], "a");
        assert!(
            secret["metadata"]["annotations"][LAST_APPLIED]
                .as_str()
                .unwrap()
                .starts_with(&format!("<secret value: {} bytes, ", applied.len()))
        );

        // The same value gives the same digest within a run, so changes still show.
        let mut again = json!({"data": {"password": "c2VjcmV0"}});
        redactor.redact("Secret", "secrets", &mut again);
        assert_eq!(again["data"]["password"], secret["data"]["password"]);

        let mut config =
            json!({"metadata": {"annotations": {LAST_APPLIED: "{}"}}, "data": {"k": "v"}});
        redactor.redact("ConfigMap", "configmaps", &mut config);
        assert_eq!(config["data"]["k"], "v");
        assert_eq!(config["metadata"]["annotations"][LAST_APPLIED], "{}");
    }
}
