//! A minimal OpenAPI v3 surface, derived from discovery: the `/openapi/v3` index and one
//! document per group-version listing each resource's object path with its `patch`
//! operation, its `x-kubernetes-group-version-kind` and the `fieldValidation` parameter.
//!
//! That is what kubectl reads to learn that the server validates fields itself
//! (`kubectl create`/`replace` then send `fieldValidation=Strict` instead of validating
//! against schemas on the client). Schemas are not served.

use serde_json::{Map, Value, json};

use crate::discovery::{GroupDef, VersionDef};
use crate::rng::hash_str;

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn gv_doc(group: &str, v: &VersionDef) -> Value {
    let prefix = format!("/{}", gv_path(group, &v.version));
    let mut paths = Map::new();
    for r in &v.resources {
        if !r.has_verb("patch") {
            continue;
        }
        let path = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{prefix}/{}/{{name}}", r.plural)
        };
        paths.insert(
            path,
            json!({
                "patch": {
                    "description": format!("partially update the specified {}", r.kind),
                    "parameters": [
                        {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                        {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                        {"name": "fieldValidation", "in": "query", "description": "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields.", "schema": {"type": "string", "uniqueItems": true}},
                    ],
                    "responses": {"200": {"description": "OK"}},
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": {"group": group, "kind": r.kind, "version": v.version},
                }
            }),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.31.0"},
        "paths": paths,
        "components": {"schemas": {}},
    })
}

/// The `/openapi/v3` index.
pub(crate) fn index(core: &GroupDef, groups: &[GroupDef]) -> Value {
    let mut paths = Map::new();
    for g in std::iter::once(core).chain(groups.iter()) {
        for v in &g.versions {
            let p = gv_path(&g.name, &v.version);
            // The hash changes with the document, as the real server's does, so clients
            // caching by URL see new CRDs.
            let hash = format!("{:016X}", hash_str(&gv_doc(&g.name, v).to_string()));
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}),
            );
        }
    }
    json!({"paths": paths})
}

/// `/openapi/v3/<api/v1 | apis/group/version>`.
pub(crate) fn document(core: &GroupDef, groups: &[GroupDef], rest: &[&str]) -> Option<Value> {
    let (group, version) = match rest {
        ["api", v] => ("", *v),
        ["apis", g, v] => (*g, *v),
        _ => return None,
    };
    let g = std::iter::once(core)
        .chain(groups.iter())
        .find(|g| g.name == group)?;
    let v = g.versions.iter().find(|v| v.version == version)?;
    Some(gv_doc(group, v))
}

/// Content type of the protobuf form of `/openapi/v2`.
pub(crate) const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// `/openapi/v2` without definitions: kubectl falls back to it to validate documents the v3
/// verifier does not cover (e.g. `kind: List` files), and skips validation for kinds it has
/// no schema for.
pub(crate) fn v2_json() -> Value {
    json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.31.0"}, "paths": {}, "definitions": {}})
}

/// The same document in the protobuf encoding clients ask for first
/// (`openapi.v2.Document{swagger: "2.0", info: {title, version}}`).
pub(crate) fn v2_protobuf() -> Vec<u8> {
    fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
        out.push((number << 3) | 2);
        // Every field here is shorter than 128 bytes: a one-byte length.
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }
    let mut info = Vec::new();
    field(&mut info, 1, b"Kubernetes");
    field(&mut info, 2, b"v1.31.0");
    let mut doc = Vec::new();
    field(&mut doc, 1, b"2.0");
    field(&mut doc, 2, &info);
    doc
}
