//! `Status` objects: the error bodies of the API server, with the reasons, messages and
//! details real clients match on.

use serde::Serialize;
use serde_json::{Value, json};

/// The service account the simulated RBAC reports as the requesting user.
pub(crate) const USER: &str = "system:serviceaccount:kube-system:kube-autosave";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Status<'a> {
    kind: &'static str,
    api_version: &'static str,
    metadata: Value,
    status: &'static str,
    message: &'a str,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Value>,
    code: u16,
}

/// A failure `Status`, serialized with the real server's field order.
pub(crate) fn failure(code: u16, reason: &str, message: &str, details: Option<Value>) -> Vec<u8> {
    failure_with_meta(code, reason, message, details, json!({}))
}

pub(crate) fn failure_with_meta(
    code: u16,
    reason: &str,
    message: &str,
    details: Option<Value>,
    metadata: Value,
) -> Vec<u8> {
    let s = Status {
        kind: "Status",
        api_version: "v1",
        metadata,
        status: "Failure",
        message,
        reason,
        details,
        code,
    };
    serde_json::to_vec(&s).unwrap_or_default()
}

/// The `details` of an error about one named object (or a collection when `name` is empty).
pub(crate) fn details(name: &str, group: &str, plural: &str) -> Value {
    let mut d = serde_json::Map::new();
    if !name.is_empty() {
        d.insert("name".into(), json!(name));
    }
    if !group.is_empty() {
        d.insert("group".into(), json!(group));
    }
    d.insert("kind".into(), json!(plural));
    Value::Object(d)
}

/// `plural.group`, the qualified resource name used in messages.
pub(crate) fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

pub(crate) fn not_found(group: &str, plural: &str, name: &str) -> (u16, Vec<u8>) {
    let msg = format!("{} \"{name}\" not found", qualified(group, plural));
    (
        404,
        failure(404, "NotFound", &msg, Some(details(name, group, plural))),
    )
}

pub(crate) fn path_not_found() -> (u16, Vec<u8>) {
    (
        404,
        failure(
            404,
            "NotFound",
            "the server could not find the requested resource",
            Some(json!({})),
        ),
    )
}

pub(crate) fn already_exists(group: &str, plural: &str, name: &str) -> (u16, Vec<u8>) {
    let msg = format!("{} \"{name}\" already exists", qualified(group, plural));
    (
        409,
        failure(
            409,
            "AlreadyExists",
            &msg,
            Some(details(name, group, plural)),
        ),
    )
}

pub(crate) fn conflict(group: &str, plural: &str, name: &str) -> (u16, Vec<u8>) {
    let msg = format!(
        "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
        qualified(group, plural)
    );
    (
        409,
        failure(409, "Conflict", &msg, Some(details(name, group, plural))),
    )
}

pub(crate) fn bad_request(message: &str) -> (u16, Vec<u8>) {
    (400, failure(400, "BadRequest", message, None))
}

/// One cause of a 422 Invalid: a `field.Error` of the API server's validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FieldError {
    /// The cause type (`FieldValueInvalid`, ...), reported as the cause's `reason`.
    reason: &'static str,
    /// The field path, e.g. `spec.template.metadata.labels[job-name]`.
    field: String,
    /// The message without the field (`ErrorBody`): `Invalid value: <value>: <detail>`.
    body: String,
}

impl FieldError {
    /// `Required value[: detail]`.
    pub(crate) fn required(field: &str, detail: &str) -> FieldError {
        FieldError::new("FieldValueRequired", field, "Required value", None, detail)
    }

    /// `Forbidden[: detail]`.
    pub(crate) fn forbidden(field: &str, detail: &str) -> FieldError {
        FieldError::new("FieldValueForbidden", field, "Forbidden", None, detail)
    }

    /// `Invalid value: <value>[: detail]`; `value` is already rendered (see [`go`]).
    pub(crate) fn invalid(field: &str, value: &str, detail: &str) -> FieldError {
        FieldError::new(
            "FieldValueInvalid",
            field,
            "Invalid value",
            Some(value),
            detail,
        )
    }

    /// `Too long: must have at most <max> bytes` (the value is never shown).
    pub(crate) fn too_long(field: &str, max: usize) -> FieldError {
        let detail = format!("must have at most {max} bytes");
        FieldError::new("FieldValueTooLong", field, "Too long", None, &detail)
    }

    /// `Unsupported value: <value>: supported values: "a", "b"`.
    pub(crate) fn not_supported(field: &str, value: &str, supported: &[&str]) -> FieldError {
        let quoted: Vec<String> = supported.iter().map(|s| go::quote(s)).collect();
        let detail = format!("supported values: {}", quoted.join(", "));
        FieldError::new(
            "FieldValueNotSupported",
            field,
            "Unsupported value",
            Some(value),
            &detail,
        )
    }

    fn new(
        reason: &'static str,
        field: &str,
        what: &str,
        value: Option<&str>,
        detail: &str,
    ) -> FieldError {
        let mut body = what.to_string();
        if let Some(v) = value {
            body.push_str(": ");
            body.push_str(v);
        }
        if !detail.is_empty() {
            body.push_str(": ");
            body.push_str(detail);
        }
        FieldError {
            reason,
            field: field.to_string(),
            body,
        }
    }

    /// `field: body`, as `field.Error.Error()`.
    pub(crate) fn message(&self) -> String {
        format!("{}: {}", self.field, self.body)
    }
}

/// 422 Invalid as `errors.NewInvalid` builds it: the message names the kind qualified by
/// its group (`Job.batch`) and aggregates the distinct causes (`[a, b]` when several).
pub(crate) fn invalid(
    kind: &str,
    group: &str,
    name: &str,
    errors: &[FieldError],
) -> (u16, Vec<u8>) {
    let qualified_kind = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    let mut messages: Vec<String> = Vec::new();
    for e in errors {
        let m = e.message();
        if !messages.contains(&m) {
            messages.push(m);
        }
    }
    let msg = match messages.as_slice() {
        [] => format!("{qualified_kind} \"{name}\" is invalid"),
        [one] => format!("{qualified_kind} \"{name}\" is invalid: {one}"),
        many => format!(
            "{qualified_kind} \"{name}\" is invalid: [{}]",
            many.join(", ")
        ),
    };
    let mut d = details(name, group, kind);
    d["causes"] = Value::Array(
        errors
            .iter()
            .map(|e| json!({"reason": e.reason, "message": e.body, "field": e.field}))
            .collect(),
    );
    (422, failure(422, "Invalid", &msg, Some(d)))
}

/// Values rendered as the API server's messages show them: Go's `%#v` of the internal
/// types (`map[string]string{"a":"b"}`, `[]string{"x"}`, quoted strings).
pub(crate) mod go {
    use serde_json::{Map, Value};

    /// A Go double-quoted string literal (`strconv.Quote`).
    pub(crate) fn quote(s: &str) -> String {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    out.push_str(&format!("\\x{:02x}", c as u32));
                }
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    /// `map[string]string{...}` with sorted keys, `map[string]string(nil)` for none.
    pub(crate) fn string_map(m: Option<&Map<String, Value>>) -> String {
        let Some(m) = m else {
            return "map[string]string(nil)".to_string();
        };
        let mut pairs: Vec<(&String, &str)> = m
            .iter()
            .map(|(k, v)| (k, v.as_str().unwrap_or_default()))
            .collect();
        pairs.sort();
        let inner: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}:{}", quote(k), quote(v)))
            .collect();
        format!("map[string]string{{{}}}", inner.join(", "))
    }

    /// `[]string{...}`, `[]string(nil)` for none.
    pub(crate) fn strings(items: Option<&[Value]>) -> String {
        let Some(items) = items else {
            return "[]string(nil)".to_string();
        };
        let inner: Vec<String> = items
            .iter()
            .map(|v| quote(v.as_str().unwrap_or_default()))
            .collect();
        format!("[]string{{{}}}", inner.join(", "))
    }
}

/// 500 as the server reports errors of its storage layer.
pub(crate) fn internal(cause: &str) -> (u16, Vec<u8>) {
    let msg = format!("Internal error occurred: {cause}");
    (
        500,
        failure(
            500,
            "InternalError",
            &msg,
            Some(json!({"causes": [{"message": cause}]})),
        ),
    )
}

pub(crate) fn method_not_allowed() -> (u16, Vec<u8>) {
    (
        405,
        failure(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
            Some(json!({})),
        ),
    )
}

pub(crate) fn unsupported_media_type(content_type: &str) -> (u16, Vec<u8>) {
    let msg = format!(
        "the body of the request was in an unknown format - accepted media types include: application/json, application/merge-patch+json, application/strategic-merge-patch+json; got {content_type}"
    );
    (415, failure(415, "UnsupportedMediaType", &msg, None))
}

/// 403 as RBAC words it; `namespace` None means the cluster scope.
pub(crate) fn forbidden(
    group: &str,
    plural: &str,
    name: &str,
    verb: &str,
    namespace: Option<&str>,
) -> (u16, Vec<u8>) {
    let subject = if name.is_empty() {
        qualified(group, plural)
    } else {
        format!("{} \"{name}\"", qualified(group, plural))
    };
    let scope = match namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    let msg = format!(
        "{subject} is forbidden: User \"{USER}\" cannot {verb} resource \"{plural}\" in API group \"{group}\" {scope}"
    );
    (
        403,
        failure(403, "Forbidden", &msg, Some(details(name, group, plural))),
    )
}

/// 403 as an admission plugin words it: `pods "x" is forbidden: <why>`.
pub(crate) fn admission_forbidden(
    group: &str,
    plural: &str,
    name: &str,
    why: &str,
) -> (u16, Vec<u8>) {
    let msg = format!(
        "{} \"{name}\" is forbidden: {why}",
        qualified(group, plural)
    );
    (
        403,
        failure(403, "Forbidden", &msg, Some(details(name, group, plural))),
    )
}

pub(crate) fn unauthorized() -> (u16, Vec<u8>) {
    (401, failure(401, "Unauthorized", "Unauthorized", None))
}

pub(crate) fn service_unavailable() -> (u16, Vec<u8>) {
    (
        503,
        failure(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
            None,
        ),
    )
}

pub(crate) fn too_many_requests(retry_after: u64) -> (u16, Vec<u8>) {
    (
        429,
        failure(
            429,
            "TooManyRequests",
            "Too many requests, please try again later.",
            Some(json!({"retryAfterSeconds": retry_after})),
        ),
    )
}

/// 410 for an expired continue token, with a fresh, inconsistent token to resume with.
pub(crate) fn expired(fresh_continue: &str) -> (u16, Vec<u8>) {
    (
        410,
        failure_with_meta(
            410,
            "Expired",
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
            None,
            json!({"continue": fresh_continue}),
        ),
    )
}

/// A success `Status`, e.g. for deletions of resources that do not return the object.
pub(crate) fn success(details: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }))
    .unwrap_or_default()
}
