//! Secrets as the API server reads, defaults and validates them, for restores that create
//! Secrets from files (`kubectl create -f`) or from a backup tool's store:
//!
//! - decoding (`sigs.k8s.io/json` into `v1.Secret`): every `data` value is standard base64,
//!   decoded as Go's `base64.StdEncoding` does, and fields have their JSON types; what does
//!   not decode is a 400 (`Secret in version "v1" cannot be handled as a Secret: illegal
//!   base64 data at input byte 4`);
//! - conversion and defaults (`Convert_v1_Secret_To_core_Secret`, `SetDefaults_Secret`):
//!   `stringData` is merged into `data` (its keys win) and never stored, `type` defaults to
//!   `Opaque`, and `data` is stored re-encoded, as the server stores the decoded bytes;
//! - validation (`ValidateSecret`, `ValidateSecretUpdate` in
//!   `pkg/apis/core/validation/validation.go`): keys are config-map keys, the data totals at
//!   most 1 MiB, each built-in type has its required keys or annotation, and an `immutable`
//!   Secret keeps its data, its type and its immutability.
//!
//! Nothing here looks at any other kind; object metadata (names, labels) is not validated.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::status::{FieldError, go};

/// `core.MaxSecretSize`: the decoded bytes of `data`, all keys together.
const MAX_SECRET_SIZE: usize = 1024 * 1024;

/// `validation.DNS1123SubdomainMaxLength`, the longest config-map key.
const MAX_KEY_LENGTH: usize = 253;

const SERVICE_ACCOUNT_NAME_KEY: &str = "kubernetes.io/service-account.name";

/// Decodes a Secret body into the stored form: `data` checked and re-encoded, `stringData`
/// merged into it, `type` defaulted. The error is the decoder's message (a 400).
pub(crate) fn read(obj: &mut Map<String, Value>) -> Result<(), String> {
    let mut data = decoded_field(obj, "data", "map[string][]uint8", |v| match v {
        Value::String(s) => {
            go_base64(s.as_bytes()).map_err(|at| format!("illegal base64 data at input byte {at}"))
        }
        Value::Null => Ok(Vec::new()),
        other => Err(type_error(other, "Secret.data", "[]uint8")),
    })?;
    let strings = decoded_field(obj, "stringData", "map[string]string", |v| match v {
        Value::String(s) => Ok(s.clone().into_bytes()),
        Value::Null => Ok(Vec::new()),
        other => Err(type_error(other, "Secret.stringData", "string")),
    })?;
    match obj.get("type") {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(other) => return Err(type_error(other, "Secret.type", "v1.SecretType")),
    }
    match obj.get("immutable") {
        None | Some(Value::Null | Value::Bool(_)) => {}
        Some(other) => return Err(type_error(other, "Secret.immutable", "bool")),
    }
    // Conversion to the internal type: stringData overwrites data, key by key.
    if let Some(strings) = strings
        && !strings.is_empty()
    {
        data.get_or_insert_with(BTreeMap::new).extend(strings);
    }
    obj.remove("stringData");
    if let Some(data) = data {
        let encoded: Map<String, Value> = data
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    json!(base64::engine::general_purpose::STANDARD.encode(v)),
                )
            })
            .collect();
        obj.insert("data".into(), Value::Object(encoded));
    }
    if obj
        .get("type")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        obj.insert("type".into(), json!("Opaque"));
    }
    Ok(())
}

/// A map field decoded value by value; `None` when absent or null.
fn decoded_field(
    obj: &Map<String, Value>,
    field: &str,
    go_type: &str,
    value: impl Fn(&Value) -> Result<Vec<u8>, String>,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| Ok((k.clone(), value(v)?)))
            .collect::<Result<_, String>>()
            .map(Some),
        Some(other) => Err(type_error(other, &format!("Secret.{field}"), go_type)),
    }
}

/// encoding/json's `UnmarshalTypeError` for a value of the wrong JSON type.
fn type_error(value: &Value, field: &str, go_type: &str) -> String {
    format!(
        "json: cannot unmarshal {} into Go struct field {field} of type {go_type}",
        json_kind(value)
    )
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Go's `base64.StdEncoding.Decode`: padding required, `\r` and `\n` skipped, bits after
/// the last full byte ignored. The error is the offset Go's `CorruptInputError` reports.
fn go_base64(src: &[u8]) -> Result<Vec<u8>, usize> {
    let is_newline = |c: u8| c == b'\n' || c == b'\r';
    let mut out = Vec::with_capacity(src.len() / 4 * 3);
    let mut si = 0;
    while si < src.len() {
        // One quantum of four characters (`decodeQuantum`).
        let mut quantum = [0u8; 4];
        let mut j = 0;
        let mut len = 4;
        while j < 4 {
            if si == src.len() {
                if j == 0 {
                    return Ok(out);
                }
                return Err(si - j);
            }
            let c = src[si];
            si += 1;
            if let Some(v) = sextet(c) {
                quantum[j] = v;
                j += 1;
                continue;
            }
            if is_newline(c) {
                continue;
            }
            if c != b'=' || j < 2 {
                return Err(si - 1);
            }
            if j == 2 {
                // "==" is expected; the first one is read.
                while si < src.len() && is_newline(src[si]) {
                    si += 1;
                }
                if si == src.len() {
                    return Err(src.len());
                }
                if src[si] != b'=' {
                    return Err(si - 1);
                }
                si += 1;
            }
            while si < src.len() && is_newline(src[si]) {
                si += 1;
            }
            if si < src.len() {
                return Err(si);
            }
            len = j;
            break;
        }
        let v = u32::from(quantum[0]) << 18
            | u32::from(quantum[1]) << 12
            | u32::from(quantum[2]) << 6
            | u32::from(quantum[3]);
        let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        out.extend_from_slice(&bytes[..len - 1]);
    }
    Ok(out)
}

fn sextet(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// The decoded `data` of a Secret that [`read`] accepted.
fn data_of(obj: &Map<String, Value>) -> BTreeMap<&str, Vec<u8>> {
    obj.get("data")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let bytes = v
                        .as_str()
                        .and_then(|s| go_base64(s.as_bytes()).ok())
                        .unwrap_or_default();
                    (k.as_str(), bytes)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn type_of(obj: &Map<String, Value>) -> &str {
    obj.get("type").and_then(Value::as_str).unwrap_or_default()
}

/// `ValidateSecret`, less the object metadata: keys, size and the built-in types' required
/// keys, in the server's order (keys sorted here, where Go ranges over a map).
pub(crate) fn validate(obj: &Map<String, Value>) -> Vec<FieldError> {
    let data = data_of(obj);
    let mut errors = Vec::new();
    for key in data.keys() {
        for why in config_map_key_errors(key) {
            errors.push(FieldError::invalid(
                &format!("data[{key}]"),
                &go::quote(key),
                &why,
            ));
        }
    }
    if data.values().map(Vec::len).sum::<usize>() > MAX_SECRET_SIZE {
        errors.push(FieldError::too_long("data", MAX_SECRET_SIZE));
    }
    let required = |key: &str| FieldError::required(&format!("data[{key}]"), "");
    match type_of(obj) {
        "kubernetes.io/service-account-token" => {
            let named = obj
                .get("metadata")
                .and_then(|m| m.get("annotations"))
                .and_then(|a| a.get(SERVICE_ACCOUNT_NAME_KEY))
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            if !named {
                errors.push(FieldError::required(
                    &format!("metadata.annotations[{SERVICE_ACCOUNT_NAME_KEY}]"),
                    "",
                ));
            }
        }
        t @ ("kubernetes.io/dockercfg" | "kubernetes.io/dockerconfigjson") => {
            let key = if t == "kubernetes.io/dockercfg" {
                ".dockercfg"
            } else {
                ".dockerconfigjson"
            };
            match data.get(key) {
                None => errors.push(required(key)),
                Some(bytes) => {
                    if let Some(why) = unmarshal_object_error(bytes) {
                        errors.push(FieldError::invalid(
                            &format!("data[{key}]"),
                            &go::quote("<secret contents redacted>"),
                            &why,
                        ));
                    }
                }
            }
        }
        // Either may be empty, but one of them must be there.
        "kubernetes.io/basic-auth"
            if !data.contains_key("username") && !data.contains_key("password") =>
        {
            errors.push(required("username"));
            errors.push(required("password"));
        }
        "kubernetes.io/ssh-auth" if data.get("ssh-privatekey").is_none_or(Vec::is_empty) => {
            errors.push(required("ssh-privatekey"));
        }
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if !data.contains_key(key) {
                    errors.push(required(key));
                }
            }
        }
        _ => {}
    }
    errors
}

/// `ValidateSecretUpdate`: the type never changes, an immutable Secret keeps its data and
/// stays immutable; then [`validate`].
pub(crate) fn validate_update(
    new: &Map<String, Value>,
    old: &Map<String, Value>,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if type_of(new) != type_of(old) {
        errors.push(FieldError::invalid(
            "type",
            &go::quote(type_of(new)),
            "field is immutable",
        ));
    }
    let immutable = |o: &Map<String, Value>| o.get("immutable") == Some(&Value::Bool(true));
    if immutable(old) {
        let detail = "field is immutable when `immutable` is set";
        if !immutable(new) {
            errors.push(FieldError::forbidden("immutable", detail));
        }
        if data_of(new) != data_of(old) {
            errors.push(FieldError::forbidden("data", detail));
        }
    }
    errors.extend(validate(new));
    errors
}

/// `validation.IsConfigMapKey`.
fn config_map_key_errors(key: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if key.len() > MAX_KEY_LENGTH {
        errors.push(format!("must be no more than {MAX_KEY_LENGTH} characters"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    if key.is_empty() || !key.chars().all(allowed) {
        errors.push(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' \
             (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is \
             '[-._a-zA-Z0-9]+')"
                .to_string(),
        );
    }
    match key {
        "." => errors.push("must not be '.'".to_string()),
        ".." => errors.push("must not be '..'".to_string()),
        k if k.starts_with("..") => errors.push("must not start with '..'".to_string()),
        _ => {}
    }
    errors
}

/// Why `json.Unmarshal` into a `map[string]interface{}` fails, if it does: Go's wording for
/// an empty or truncated document, one that is not an object, and one that does not start
/// like JSON; serde_json's description of other syntax errors.
fn unmarshal_object_error(bytes: &[u8]) -> Option<String> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Null | Value::Object(_)) => None,
        Ok(other) => Some(format!(
            "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
            json_kind(&other)
        )),
        Err(e) if e.is_eof() => Some("unexpected end of JSON input".to_string()),
        Err(e) => {
            let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
            match first {
                Some(&c) if !b"{[\"-0123456789tfn".contains(&c) => Some(format!(
                    "invalid character {} looking for beginning of value",
                    go_quote_char(c)
                )),
                _ => Some(e.to_string()),
            }
        }
    }
}

/// encoding/json's `quoteChar`.
fn go_quote_char(c: u8) -> String {
    match c {
        b'\'' => r"'\''".to_string(),
        b'"' => "'\"'".to_string(),
        c if c.is_ascii_graphic() || c == b' ' => format!("'{}'", c as char),
        c => format!("'\\x{c:02x}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn messages(errors: &[FieldError]) -> Vec<String> {
        errors.iter().map(FieldError::message).collect()
    }

    #[test]
    fn base64_as_go_decodes_it() {
        assert_eq!(go_base64(b"").unwrap(), b"");
        assert_eq!(go_base64(b"dA==").unwrap(), b"t");
        assert_eq!(go_base64(b"YWJj").unwrap(), b"abc");
        assert_eq!(go_base64(b"YWJjZA==").unwrap(), b"abcd");
        assert_eq!(go_base64(b"YWJjZGU=").unwrap(), b"abcde");
        // Newlines are skipped anywhere, trailing bits are ignored (not strict).
        assert_eq!(go_base64(b"YW\r\nJj\n").unwrap(), b"abc");
        assert_eq!(go_base64(b"YR==").unwrap(), b"a");
        // The offsets Go reports.
        assert_eq!(go_base64(b"billy"), Err(4)); // "illegal base64 data at input byte 4"
        assert_eq!(go_base64(b"abc"), Err(0));
        assert_eq!(go_base64(b"admin"), Err(4));
        assert_eq!(go_base64(b"ab$d"), Err(2));
        assert_eq!(go_base64(b"a==="), Err(1));
        assert_eq!(go_base64(b"ab="), Err(3));
        assert_eq!(go_base64(b"ab=x"), Err(2));
        assert_eq!(go_base64(b"abc=d"), Err(4));
        assert_eq!(go_base64(b"dA==dA=="), Err(4));
        assert_eq!(go_base64(b"YWJj-_"), Err(4)); // URL-safe alphabet is not standard
        assert_eq!(go_base64("plain text".as_bytes()), Err(5));
    }

    #[test]
    fn reading_merges_string_data_and_defaults_the_type() {
        let mut s = secret(json!({
            "metadata": {"name": "s"},
            "data": {"a": "YR==", "b": "Yg==", "wrapped": "YW\nJj"},
            "stringData": {"b": "from-string-data", "c": "see"},
        }));
        read(&mut s).unwrap();
        assert_eq!(
            Value::Object(s),
            json!({
                "metadata": {"name": "s"},
                "data": {"a": "YQ==", "b": "ZnJvbS1zdHJpbmctZGF0YQ==", "c": "c2Vl", "wrapped": "YWJj"},
                "type": "Opaque",
            })
        );
        let mut s = secret(json!({"stringData": {"k": "v"}, "type": "kubernetes.io/tls"}));
        read(&mut s).unwrap();
        assert_eq!(s["data"], json!({"k": "dg=="}));
        assert_eq!(s["type"], "kubernetes.io/tls");
    }

    #[test]
    fn reading_refuses_what_does_not_decode() {
        let err = |v: Value| read(&mut secret(v)).unwrap_err();
        assert_eq!(
            err(json!({"data": {"password": "wombat!"}})),
            "illegal base64 data at input byte 6"
        );
        assert_eq!(
            err(json!({"data": {"n": 5}})),
            "json: cannot unmarshal number into Go struct field Secret.data of type []uint8"
        );
        assert_eq!(
            err(json!({"data": ["a"]})),
            "json: cannot unmarshal array into Go struct field Secret.data of type map[string][]uint8"
        );
        assert_eq!(
            err(json!({"stringData": {"k": true}})),
            "json: cannot unmarshal bool into Go struct field Secret.stringData of type string"
        );
        assert_eq!(
            err(json!({"immutable": "yes"})),
            "json: cannot unmarshal string into Go struct field Secret.immutable of type bool"
        );
    }

    #[test]
    fn keys_must_be_config_map_keys() {
        let long = "k".repeat(254);
        let mut s = secret(
            json!({"data": {"ok-key_1.txt": "", ".": "", "..": "", "..x": "", "a b": "", long.clone(): ""}}),
        );
        read(&mut s).unwrap();
        let regex = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
        assert_eq!(
            messages(&validate(&s)),
            [
                r#"data[.]: Invalid value: ".": must not be '.'"#.to_string(),
                r#"data[..]: Invalid value: "..": must not be '..'"#.to_string(),
                r#"data[..x]: Invalid value: "..x": must not start with '..'"#.to_string(),
                format!(r#"data[a b]: Invalid value: "a b": {regex}"#),
                format!(
                    r#"data[{long}]: Invalid value: "{long}": must be no more than 253 characters"#
                ),
            ]
        );
    }

    #[test]
    fn data_totals_at_most_one_mebibyte() {
        let half = base64::engine::general_purpose::STANDARD.encode(vec![0u8; MAX_SECRET_SIZE / 2]);
        let mut s = secret(json!({"data": {"a": half, "b": half}}));
        read(&mut s).unwrap();
        assert!(validate(&s).is_empty());
        let mut s = secret(json!({"data": {"a": half, "b": half, "c": "eA=="}}));
        read(&mut s).unwrap();
        assert_eq!(
            messages(&validate(&s)),
            ["data: Too long: must have at most 1048576 bytes"]
        );
    }

    #[test]
    fn built_in_types_need_their_keys() {
        let check = |v: Value| {
            let mut s = secret(v);
            read(&mut s).unwrap();
            messages(&validate(&s))
        };
        assert_eq!(
            check(
                json!({"type": "kubernetes.io/service-account-token", "data": {"token": "dA=="}})
            ),
            ["metadata.annotations[kubernetes.io/service-account.name]: Required value"]
        );
        assert!(
            check(json!({"type": "kubernetes.io/service-account-token", "metadata": {"annotations": {"kubernetes.io/service-account.name": "default"}}}))
                .is_empty()
        );
        assert_eq!(
            check(json!({"type": "kubernetes.io/dockercfg"})),
            ["data[.dockercfg]: Required value"]
        );
        assert_eq!(
            check(
                json!({"type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": "{\"auths\":"}})
            ),
            [
                r#"data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": unexpected end of JSON input"#
            ]
        );
        assert_eq!(
            check(
                json!({"type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": "[]"}})
            ),
            [
                r#"data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": json: cannot unmarshal array into Go value of type map[string]interface {}"#
            ]
        );
        assert_eq!(
            check(
                json!({"type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": "auths"}})
            ),
            [
                r#"data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": invalid character 'a' looking for beginning of value"#
            ]
        );
        assert!(
            check(json!({"type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": "{\"auths\":{}}"}}))
                .is_empty()
        );
        assert_eq!(
            check(json!({"type": "kubernetes.io/basic-auth", "data": {"user": "dA=="}})),
            [
                "data[username]: Required value",
                "data[password]: Required value"
            ]
        );
        assert!(
            check(json!({"type": "kubernetes.io/basic-auth", "data": {"password": ""}})).is_empty()
        );
        assert_eq!(
            check(json!({"type": "kubernetes.io/ssh-auth", "data": {"ssh-privatekey": ""}})),
            ["data[ssh-privatekey]: Required value"]
        );
        assert_eq!(
            check(json!({"type": "kubernetes.io/tls", "data": {"tls.key": ""}})),
            ["data[tls.crt]: Required value"]
        );
        assert!(
            check(json!({"type": "helm.sh/release.v1", "data": {"release": "dA=="}})).is_empty()
        );
    }

    #[test]
    fn an_immutable_secret_keeps_its_data_and_type() {
        let read_one = |v: Value| {
            let mut s = secret(v);
            read(&mut s).unwrap();
            s
        };
        let old = read_one(json!({"immutable": true, "data": {"k": "dg=="}}));
        let same = read_one(json!({"immutable": true, "stringData": {"k": "v"}}));
        assert!(validate_update(&same, &old).is_empty());
        let changed = read_one(json!({"data": {"k": "dw=="}, "type": "kubernetes.io/tls"}));
        assert_eq!(
            messages(&validate_update(&changed, &old)),
            [
                r#"type: Invalid value: "kubernetes.io/tls": field is immutable"#,
                "immutable: Forbidden: field is immutable when `immutable` is set",
                "data: Forbidden: field is immutable when `immutable` is set",
                "data[tls.crt]: Required value",
                "data[tls.key]: Required value",
            ]
        );
        let mutable = read_one(json!({"data": {"k": "dg=="}}));
        assert!(validate_update(&read_one(json!({"data": {"k": "dw=="}})), &mutable).is_empty());
    }
}
