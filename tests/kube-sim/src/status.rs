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

pub(crate) fn invalid(
    kind: &str,
    name: &str,
    group: &str,
    field: &str,
    why: &str,
) -> (u16, Vec<u8>) {
    let msg = format!("{kind} \"{name}\" is invalid: {field}: {why}");
    let mut d = details(name, group, kind);
    d["causes"] = json!([{"reason": "FieldValueRequired", "message": why, "field": field}]);
    (422, failure(422, "Invalid", &msg, Some(d)))
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
