//! Resource requests: list, get, create, update (PUT), merge patch and delete, with the API
//! server's semantics (namespaces must exist, conflicts on stale resource versions,
//! server-set metadata, CRDs that add their API when created, continue tokens and their
//! expiry, RBAC and aggregator faults). A create, and an update of a kind with update rules
//! (Secrets), goes through [`crate::admission`]; a delete honours the propagation policy of
//! its `DeleteOptions`.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::admission;
use crate::discovery::{Served, View};
use crate::objects::{self, metadata_mut, rfc3339, time_of_rv};
use crate::rng::Rng;
use crate::selector::{FieldSelector, LabelSelector};
use crate::server::{Reply, Req};
use crate::status::{FieldError, go};
use crate::store::{self, ContinueToken, Obj, PutMode, WriteError};
use crate::{ObjectKey, Shared, State, register_crd, status, watch};

/// Where a resource request points.
struct Target<'a> {
    served: Served,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
    subresource: Option<&'a str>,
}

/// Handles a request below `/api/<version>` or `/apis/<group>/<version>`.
pub(crate) fn resource(
    shared: &Arc<Shared>,
    req: &Req,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Reply {
    // `/watch/...` is the deprecated form of `?watch=true`; it also watches a single object.
    let (rest, watch_path) = match rest {
        ["watch", rest @ ..] => (rest, true),
        rest => (rest, false),
    };
    let watching = watch_path || matches!(req.param("watch"), Some("true" | "1"));
    let (namespace, plural, name, subresource) = match rest {
        [p] => (None, *p, None, None),
        ["namespaces", n] if group.is_empty() => (None, "namespaces", Some(*n), None),
        ["namespaces", n, s] if group.is_empty() && matches!(*s, "status" | "finalize") => {
            (None, "namespaces", Some(*n), Some(*s))
        }
        ["namespaces", n, p] => (Some(*n), *p, None, None),
        ["namespaces", n, p, name] => (Some(*n), *p, Some(*name), None),
        ["namespaces", n, p, name, s] => (Some(*n), *p, Some(*name), Some(*s)),
        [p, name] => (None, *p, Some(*name), None),
        [p, name, s] => (None, *p, Some(*name), Some(*s)),
        _ => return Reply::status(status::path_not_found()),
    };
    let served = {
        let state = shared.read();
        shared.resolve(&state, group, version, plural)
    };
    let Some(served) = served else {
        return Reply::status(status::path_not_found());
    };
    if shared.faults.is_unavailable(group) {
        return Reply::status(status::service_unavailable());
    }
    let namespaced = served.def.namespaced;
    if (namespace.is_some() && !namespaced) || (name.is_some() && namespace.is_none() && namespaced)
    {
        return Reply::status(status::path_not_found());
    }
    let t = Target {
        served,
        namespace,
        name,
        subresource,
    };
    let verb = match (&req.method, t.name, t.subresource) {
        (&hyper::Method::GET, _, None) if watch_path => "watch",
        (&hyper::Method::GET, None, _) if watching => "watch",
        (_, _, _) if watch_path => return Reply::status(status::method_not_allowed()),
        (&hyper::Method::GET, None, _) => "list",
        (&hyper::Method::POST, None, _) => "create",
        (&hyper::Method::DELETE, None, _) => "deletecollection",
        (&hyper::Method::GET, Some(_), _) => "get",
        (&hyper::Method::PUT, Some(_), _) => "update",
        (&hyper::Method::PATCH, Some(_), _) => "patch",
        (&hyper::Method::DELETE, Some(_), None) => "delete",
        _ => return Reply::status(status::method_not_allowed()),
    };
    if shared.faults.is_forbidden(&t.served.def.plural) || shared.faults.is_verb_forbidden(verb) {
        return Reply::status(status::forbidden(
            group,
            &t.served.def.plural,
            t.name.unwrap_or_default(),
            verb,
            t.namespace,
        ));
    }
    if let Some(sub) = t.subresource {
        let Some(def) = t.served.def.subresources.iter().find(|s| s.name == sub) else {
            return Reply::status(status::path_not_found());
        };
        // Only the status subresource is simulated (read and replace).
        if sub != "status" || !def.verbs.iter().any(|v| v == verb) {
            return Reply::status(status::method_not_allowed());
        }
    } else if !t.served.def.has_verb(verb) {
        return Reply::status(status::method_not_allowed());
    }
    if t.served.view == View::EventsV1 && !matches!(verb, "list" | "get" | "watch") {
        // Writes go through the core events API; converting back is not simulated.
        return Reply::status(status::method_not_allowed());
    }
    if verb == "create" && namespaced && t.namespace.is_none() {
        return Reply::status(status::method_not_allowed());
    }
    match verb {
        "list" => list(shared, req, &t),
        "watch" => watch(shared, req, &t),
        "get" => get(shared, req, &t),
        "create" => create(shared, req, &t),
        "update" => update(shared, req, &t),
        "patch" => patch(shared, req, &t),
        "delete" => delete(shared, req, &t),
        _ => Reply::status(status::method_not_allowed()),
    }
}

// ---------------------------------------------------------------------------------------
// Reads.

/// What the client asked the response to be rendered as.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rendering {
    Full,
    Table,
    Metadata,
}

fn rendering(accept: &str) -> Rendering {
    // The first acceptable form wins, as in the server's content negotiation.
    for media in accept.split(',') {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        let base = params.first().copied().unwrap_or_default();
        if base != "application/json" && base != "*/*" {
            continue;
        }
        let as_ = params.iter().find_map(|p| p.strip_prefix("as="));
        let g = params.iter().find_map(|p| p.strip_prefix("g="));
        match (as_, g) {
            (Some("Table"), Some("meta.k8s.io")) => return Rendering::Table,
            (Some("PartialObjectMetadata" | "PartialObjectMetadataList"), Some("meta.k8s.io")) => {
                return Rendering::Metadata;
            }
            (None, _) => return Rendering::Full,
            _ => continue,
        }
    }
    Rendering::Full
}

fn list(shared: &Shared, req: &Req, t: &Target<'_>) -> Reply {
    let limit = match req.param("limit") {
        None | Some("") => None,
        Some(l) => match l.parse::<usize>() {
            Ok(l) => Some(l).filter(|l| *l > 0),
            Err(_) => return Reply::status(status::bad_request(&format!("invalid limit: {l:?}"))),
        },
    };
    let labels = match LabelSelector::parse(req.param("labelSelector").unwrap_or_default()) {
        Ok(s) => s,
        Err(e) => return Reply::status(status::bad_request(&e)),
    };
    let fields = match FieldSelector::parse(req.param("fieldSelector").unwrap_or_default()) {
        Ok(s) => s,
        Err(e) => return Reply::status(status::bad_request(&e)),
    };
    let token = match req.param("continue").filter(|c| !c.is_empty()) {
        Some(c) => match ContinueToken::decode(c) {
            Ok(t) => Some(t),
            Err(e) => return Reply::status(status::bad_request(&e)),
        },
        None => None,
    };
    if fields.names_one() {
        shared.served.named_list();
    }
    let (storage_group, storage_plural) = (&t.served.storage.0, &t.served.storage.1);
    let state = shared.read();
    let current = state.store.current_rv();
    let (at, start, pages) = match &token {
        Some(tok) => {
            let expired_by_fault = shared.faults.expire_after().is_some_and(|k| tok.pages >= k);
            let compacted = tok.rv > 0 && (tok.rv as u64) < state.store.compacted_rv();
            if expired_by_fault || compacted {
                let fresh = ContinueToken {
                    rv: -1,
                    start: tok.start.clone(),
                    pages: 0,
                };
                return Reply::status(status::expired(&fresh.encode()));
            }
            if tok.rv > 0 && tok.rv as u64 > current {
                return Reply::status(status::bad_request(
                    "continue key is not valid: resource version is newer than the server's",
                ));
            }
            let at = if tok.rv < 0 { current } else { tok.rv as u64 };
            (at, Some(tok.start.as_str()), tok.pages)
        }
        None => (current, None, 0),
    };
    if limit.is_some() && shared.faults.take_drop(pages) {
        return Reply::Drop;
    }
    let page = state.store.list(
        storage_group,
        storage_plural,
        t.namespace,
        start,
        at,
        limit,
        &labels,
        &fields,
    );
    drop(state);
    let next = page.continue_key.as_ref().map(|k| {
        ContinueToken {
            rv: at as i64,
            start: format!("{k}\0"),
            pages: pages + 1,
        }
        .encode()
    });
    let alt = t.served.view == View::EventsV1;
    // The fault's object, once, at the end of the list.
    let extra = next
        .is_none()
        .then(|| shared.faults.extra_item(&t.served.def.plural))
        .flatten();
    let mut meta = format!("{{\"resourceVersion\":\"{at}\"");
    if let Some(c) = &next {
        meta.push_str(",\"continue\":");
        meta.push_str(&store::json_str(c));
    }
    if let Some(r) = page.remaining {
        meta.push_str(&format!(",\"remainingItemCount\":{r}"));
    }
    meta.push('}');
    let rendering = match rendering(&req.accept) {
        Rendering::Metadata if shared.faults.is_full_lists_only() => Rendering::Full,
        other => other,
    };
    match rendering {
        Rendering::Full => {
            shared.served.list_items(false, page.items.len());
            let size: usize = page.items.iter().map(|o| o.item_bytes(alt).len() + 1).sum();
            let mut out = Vec::with_capacity(size + meta.len() + 128);
            out.extend_from_slice(b"{\"kind\":");
            out.extend_from_slice(
                store::json_str(&format!("{}List", t.served.def.kind)).as_bytes(),
            );
            out.extend_from_slice(b",\"apiVersion\":");
            out.extend_from_slice(store::json_str(&t.served.api_version()).as_bytes());
            out.extend_from_slice(b",\"metadata\":");
            out.extend_from_slice(meta.as_bytes());
            out.extend_from_slice(b",\"items\":[");
            for (i, o) in page.items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(o.item_bytes(alt));
            }
            if let Some(item) = &extra {
                if !page.items.is_empty() {
                    out.push(b',');
                }
                out.extend_from_slice(item.to_string().as_bytes());
            }
            out.extend_from_slice(b"]}");
            Reply::json(200, out)
        }
        Rendering::Metadata => {
            shared.served.list_items(true, page.items.len());
            let size: usize = page.items.iter().map(|o| o.metadata.1 as usize + 80).sum();
            let mut out = Vec::with_capacity(size + meta.len() + 128);
            out.extend_from_slice(
                b"{\"kind\":\"PartialObjectMetadataList\",\"apiVersion\":\"meta.k8s.io/v1\",\"metadata\":",
            );
            out.extend_from_slice(meta.as_bytes());
            out.extend_from_slice(b",\"items\":[");
            for (i, o) in page.items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                partial_metadata(&mut out, o, alt);
            }
            if let Some(item) = &extra {
                if !page.items.is_empty() {
                    out.push(b',');
                }
                let partial = serde_json::json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": item["metadata"],
                });
                out.extend_from_slice(partial.to_string().as_bytes());
            }
            out.extend_from_slice(b"]}");
            Reply::json(200, out)
        }
        Rendering::Table => {
            let now = time_of_rv(shared.start_rv, current);
            Reply::json(200, table(&page.items, alt, &meta, now).into_bytes())
        }
    }
}

#[derive(Deserialize)]
struct Created<'a> {
    #[serde(borrow, rename = "creationTimestamp")]
    creation_timestamp: Option<&'a str>,
}

fn raw_metadata(o: &Obj, alt: bool) -> &str {
    std::str::from_utf8(o.metadata_bytes(alt)).unwrap_or("{}")
}

/// Appends the object as a `PartialObjectMetadata`.
pub(crate) fn partial_metadata(out: &mut Vec<u8>, o: &Obj, alt: bool) {
    out.extend_from_slice(
        b"{\"kind\":\"PartialObjectMetadata\",\"apiVersion\":\"meta.k8s.io/v1\",\"metadata\":",
    );
    out.extend_from_slice(o.metadata_bytes(alt));
    out.push(b'}');
}

/// The server-side table of the generic table convertor: name and age.
pub(crate) fn table(items: &[Arc<Obj>], alt: bool, meta: &str, now: i64) -> String {
    let mut rows = Vec::with_capacity(items.len());
    for o in items {
        let m = raw_metadata(o, alt);
        let created = serde_json::from_str::<Created<'_>>(m)
            .ok()
            .and_then(|c| c.creation_timestamp.map(str::to_string))
            .unwrap_or_default();
        let age = parse_rfc3339(&created)
            .map(|t| human_age(now - t))
            .unwrap_or_else(|| "<unknown>".to_string());
        rows.push(format!(
            "{{\"cells\":[{},{}],\"object\":{{\"kind\":\"PartialObjectMetadata\",\"apiVersion\":\"meta.k8s.io/v1\",\"metadata\":{m}}}}}",
            store::json_str(&o.name),
            store::json_str(&age)
        ));
    }
    format!(
        "{{\"kind\":\"Table\",\"apiVersion\":\"meta.k8s.io/v1\",\"metadata\":{meta},\"columnDefinitions\":[{{\"name\":\"Name\",\"type\":\"string\",\"format\":\"name\",\"description\":\"Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated.\",\"priority\":0}},{{\"name\":\"Age\",\"type\":\"string\",\"format\":\"\",\"description\":\"CreationTimestamp is a timestamp representing the server time when this object was created.\",\"priority\":0}}],\"rows\":[{}]}}",
        rows.join(",")
    )
}

/// Seconds since the epoch of an RFC 3339 UTC timestamp as written by this server.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days-from-civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Age as kubectl prints it.
fn human_age(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86_400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        format!("{m}m{}s", s % 60)
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        format!("{h}h{}m", m % 60)
    } else if h < 48 {
        format!("{h}h")
    } else if d < 8 {
        format!("{d}d{}h", h % 24)
    } else if d < 730 {
        format!("{d}d")
    } else {
        format!("{}y{}d", d / 365, d % 365)
    }
}

/// A watch of a collection (or, under `/watch/`, of one object: a `metadata.name` field
/// selector, as the real server turns it into): parameters checked as `ListResource` and
/// the cacher check them, then [`crate::watch`] streams the events.
fn watch(shared: &Arc<Shared>, req: &Req, t: &Target<'_>) -> Reply {
    let labels = match LabelSelector::parse(req.param("labelSelector").unwrap_or_default()) {
        Ok(s) => s,
        Err(e) => return Reply::status(status::bad_request(&e)),
    };
    let mut field_text = req.param("fieldSelector").unwrap_or_default().to_string();
    if let Some(name) = t.name {
        if !field_text.is_empty() {
            field_text.push(',');
        }
        field_text.push_str(&format!("metadata.name={name}"));
    }
    let fields = match FieldSelector::parse(&field_text) {
        Ok(s) => s,
        Err(e) => return Reply::status(status::bad_request(&e)),
    };
    let send_initial = match req.param("sendInitialEvents") {
        None | Some("") => None,
        Some("true" | "1") => Some(true),
        Some("false" | "0") => Some(false),
        Some(other) => {
            return Reply::status(status::bad_request(&format!(
                "invalid sendInitialEvents: {other:?}"
            )));
        }
    };
    // `validateWatchOptions` of the ListOptions.
    let mut errors = Vec::new();
    let rv_match = req.param("resourceVersionMatch").unwrap_or_default();
    if send_initial.is_some() && rv_match != "NotOlderThan" {
        errors.push(FieldError::forbidden(
            "resourceVersionMatch",
            "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        ));
    }
    if !rv_match.is_empty() {
        if send_initial.is_none() {
            errors.push(FieldError::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            ));
        }
        if rv_match != "NotOlderThan" {
            errors.push(FieldError::not_supported(
                "resourceVersionMatch",
                &go::quote(rv_match),
                &["NotOlderThan"],
            ));
        }
        if req.param("continue").is_some_and(|c| !c.is_empty()) {
            errors.push(FieldError::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden when continue is provided",
            ));
        }
    }
    if !errors.is_empty() {
        return Reply::status(status::invalid("ListOptions", "meta.k8s.io", "", &errors));
    }
    let start = match req.param("resourceVersion").unwrap_or_default() {
        "" | "0" => match send_initial {
            Some(true) => watch::Start::Initial(0),
            Some(false) => watch::Start::Latest,
            None => watch::Start::Current,
        },
        rv => match rv.parse::<u64>() {
            Ok(rv) if send_initial == Some(true) => watch::Start::Initial(rv),
            Ok(rv) => watch::Start::After(rv),
            // `APIObjectVersioner.ParseResourceVersion`'s error, through
            // `InterpretWatchError`: 422 Invalid of the resource.
            Err(e) => {
                return Reply::status(status::invalid(
                    &t.served.def.plural,
                    &t.served.group,
                    "",
                    &[FieldError::invalid(
                        "resourceVersion",
                        &go::quote(rv),
                        &format!(
                            "strconv.ParseUint: parsing {}: {}",
                            go::quote(rv),
                            parse_error(&e)
                        ),
                    )],
                ));
            }
        },
    };
    let timeout = match req.param("timeoutSeconds").filter(|s| !s.is_empty()) {
        None => watch::default_timeout(
            shared.config.seed,
            shared.requests.load(std::sync::atomic::Ordering::Relaxed),
        ),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n > 0 => std::time::Duration::from_secs(n as u64),
            Ok(_) => watch::default_timeout(
                shared.config.seed,
                shared.requests.load(std::sync::atomic::Ordering::Relaxed),
            ),
            Err(_) => {
                return Reply::status(status::bad_request(&format!(
                    "invalid timeoutSeconds: {s:?}"
                )));
            }
        },
    };
    let rendering = match rendering(&req.accept) {
        Rendering::Full => watch::Rendering::Full,
        Rendering::Metadata => watch::Rendering::Metadata,
        Rendering::Table => watch::Rendering::Table,
    };
    watch::serve(
        shared,
        watch::Watch {
            group: t.served.storage.0.clone(),
            plural: t.served.storage.1.clone(),
            api_version: t.served.api_version(),
            kind: t.served.def.kind.clone(),
            alt: t.served.view == View::EventsV1,
            namespace: t.namespace.map(str::to_string),
            labels,
            fields,
            rendering,
            start,
            bookmarks: matches!(req.param("allowWatchBookmarks"), Some("true" | "1")),
            timeout,
        },
    )
}

/// What Go's `strconv.ParseUint` says about a string that is not a `uint64`.
fn parse_error(e: &std::num::ParseIntError) -> &'static str {
    match e.kind() {
        std::num::IntErrorKind::PosOverflow => "value out of range",
        _ => "invalid syntax",
    }
}

fn get(shared: &Shared, req: &Req, t: &Target<'_>) -> Reply {
    let name = t.name.unwrap_or_default();
    let key = store::object_key(t.namespace, name);
    let obj = {
        let state = shared.read();
        state
            .store
            .get(&t.served.storage.0, &t.served.storage.1, &key)
    };
    let Some(obj) = obj else {
        return Reply::status(status::not_found(
            &t.served.group,
            &t.served.def.plural,
            name,
        ));
    };
    let alt = t.served.view == View::EventsV1;
    shared.served.get_one();
    match rendering(&req.accept) {
        Rendering::Full => Reply::json(
            200,
            obj.full_bytes(&t.served.api_version(), &t.served.def.kind, alt),
        ),
        Rendering::Metadata => {
            let mut out = Vec::new();
            partial_metadata(&mut out, &obj, alt);
            Reply::json(200, out)
        }
        Rendering::Table => {
            let now = time_of_rv(shared.start_rv, shared.read().store.current_rv());
            let meta = format!("{{\"resourceVersion\":\"{}\"}}", obj.rv);
            Reply::json(
                200,
                table(std::slice::from_ref(&obj), alt, &meta, now).into_bytes(),
            )
        }
    }
}

// ---------------------------------------------------------------------------------------
// Writes.

fn parse_body(req: &Req) -> Result<Map<String, Value>, Reply> {
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Reply::status(status::bad_request(
            "the request body is not a JSON object",
        ))),
        Err(e) => Err(Reply::status(status::bad_request(&format!(
            "couldn't get version/kind; json parse error: {e}"
        )))),
    }
}

/// Checks `apiVersion`/`kind` of a body against the endpoint and fills them in if absent.
fn check_type(obj: &mut Map<String, Value>, served: &Served) -> Result<(), Reply> {
    let expected_av = served.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        Some(av) if av != expected_av => {
            return Err(Reply::status(status::bad_request(&format!(
                "the API version in the data ({av}) does not match the expected API version ({expected_av})"
            ))));
        }
        _ => {}
    }
    match obj.get("kind").and_then(Value::as_str) {
        Some(k) if k != served.def.kind => {
            return Err(Reply::status(status::bad_request(&format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                served.def.kind
            ))));
        }
        _ => {}
    }
    obj.insert("apiVersion".into(), json!(expected_av));
    obj.insert("kind".into(), json!(served.def.kind));
    Ok(())
}

/// The object's namespace is the request's, as the API server sets it: another one in the
/// body is refused, none is filled in, and a cluster-scoped object has none.
fn settle_namespace(meta: &mut Map<String, Value>, url: Option<&str>) -> Result<(), Reply> {
    match (url, meta.get("namespace").and_then(Value::as_str)) {
        (Some(url), Some(body)) if url != body => Err(Reply::status(status::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ))),
        (Some(url), _) => {
            meta.insert("namespace".into(), json!(url));
            Ok(())
        }
        (None, _) => {
            meta.remove("namespace");
            Ok(())
        }
    }
}

fn custom(state: &State, t: &Target<'_>) -> bool {
    state
        .store
        .collection(&t.served.storage.0, &t.served.storage.1)
        .is_some_and(|c| c.rtype.custom)
}

fn has_status_subresource(t: &Target<'_>) -> bool {
    t.served.def.subresources.iter().any(|s| s.name == "status")
}

fn namespace_exists(state: &State, ns: &str) -> bool {
    state.store.get("", "namespaces", ns).is_some()
}

/// Writes one object version and builds the reply body from it.
fn store_object(
    state: &mut State,
    t: &Target<'_>,
    value: Value,
    mode: PutMode,
    code: u16,
) -> Result<Reply, WriteError> {
    let alt = (t.served.storage.0.is_empty() && t.served.storage.1 == "events")
        .then(|| objects::events_v1_view(&value));
    let is_custom = custom(state, t);
    let obj = match Obj::from_value(value, is_custom, alt.as_ref()) {
        Ok(o) => o,
        Err(e) => return Ok(Reply::status(status::bad_request(&e))),
    };
    let body = obj.full_bytes(&t.served.api_version(), &t.served.def.kind, false);
    state
        .store
        .put(&t.served.storage.0, &t.served.storage.1, obj, mode)?;
    Ok(Reply::json(code, body))
}

/// The `fieldManager` option of a write checked as `ValidateCreateOptions` (and its update
/// and patch twins) check it, before the body is read: 422 Invalid `<Verb>Options`.
fn check_write_options(req: &Req) -> Result<(), Reply> {
    let errors = objects::field_manager_errors(req.param("fieldManager").unwrap_or_default());
    if errors.is_empty() {
        return Ok(());
    }
    let kind = match req.method {
        hyper::Method::POST => "CreateOptions",
        hyper::Method::PATCH => "PatchOptions",
        _ => "UpdateOptions",
    };
    Err(Reply::status(crate::status::invalid(
        kind,
        "meta.k8s.io",
        "",
        &errors,
    )))
}

/// Who the request's write is recorded for in `managedFields`.
fn manager_of(req: &Req) -> String {
    objects::field_manager(req.param("fieldManager"), req.user_agent.as_deref())
}

fn create(shared: &Arc<Shared>, req: &Req, t: &Target<'_>) -> Reply {
    if let Err(reply) = check_write_options(req) {
        return reply;
    }
    let mut obj = match parse_body(req) {
        Ok(o) => o,
        Err(r) => return r,
    };
    if let Err(r) = check_type(&mut obj, &t.served) {
        return r;
    }
    if let Err(reply) = decode(t, &mut obj) {
        return Reply::status(reply);
    }
    let group = t.served.group.clone();
    let plural = t.served.def.plural.clone();
    let kind = t.served.def.kind.clone();
    {
        let meta = metadata_mut(&mut obj);
        if let Err(reply) = settle_namespace(meta, t.namespace) {
            return reply;
        }
        // The storage layer refuses a create that names a version (a restore must strip
        // it); it reports that as an internal error.
        if meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|rv| !rv.is_empty() && rv != "0")
        {
            return Reply::status(status::internal(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "generation",
        ] {
            meta.remove(k);
        }
    }
    let mut state = shared.write();
    if let Some(ns) = t.namespace
        && !namespace_exists(&state, ns)
    {
        return Reply::status(status::not_found("", "namespaces", ns));
    }
    let rv = state.store.next_rv();
    let name = {
        let meta = metadata_mut(&mut obj);
        match meta
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            Some(n) => n.to_string(),
            None => match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => {
                    let n = format!(
                        "{prefix}{}",
                        Rng::derived(shared.config.seed, &format!("generateName/{rv}")).suffix(5)
                    );
                    meta.insert("name".into(), json!(n));
                    n
                }
                _ => {
                    return Reply::status(status::invalid(
                        &kind,
                        &group,
                        "",
                        &[FieldError::required(
                            "metadata.name",
                            "name or generateName is required",
                        )],
                    ));
                }
            },
        }
    };
    let key = store::object_key(t.namespace, &name);
    if state
        .store
        .get(&t.served.storage.0, &t.served.storage.1, &key)
        .is_some()
    {
        return Reply::status(status::already_exists(&group, &plural, &name));
    }
    let now = rfc3339(time_of_rv(shared.start_rv, rv));
    let is_custom = custom(&state, t);
    let uid = Rng::derived(shared.config.seed, &format!("create/{rv}")).uuid();
    {
        let meta = metadata_mut(&mut obj);
        meta.insert("uid".into(), json!(uid));
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.insert("creationTimestamp".into(), json!(now));
        if objects::has_generation(&kind, is_custom) {
            meta.insert("generation".into(), json!(1));
        }
    }
    // The status of a resource with a status subresource is the controllers' business: a
    // create starts from an empty one, as on the real server.
    if has_status_subresource(t) {
        obj.remove("status");
    }
    let admitted = admission::admit_create(
        &mut state,
        &admission::Create {
            group: &group,
            plural: &plural,
            kind: &kind,
            name: &name,
            uid: &uid,
            seed: shared.config.seed,
            rv,
        },
        &mut obj,
    );
    if let Err(reply) = admitted {
        return Reply::status(reply);
    }
    let crd_delay = *shared.crd_delay.lock().unwrap_or_else(|p| p.into_inner());
    match (group.as_str(), plural.as_str()) {
        ("", "namespaces") => {
            let meta = metadata_mut(&mut obj);
            let labels = meta.entry("labels").or_insert_with(|| json!({}));
            if let Value::Object(l) = labels {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
            obj.insert("spec".into(), json!({"finalizers": ["kubernetes"]}));
            obj.insert("status".into(), json!({"phase": "Active"}));
        }
        ("", "pods") => {
            obj.insert(
                "status".into(),
                json!({"phase": "Pending", "qosClass": "BestEffort"}),
            );
        }
        ("", "services") => {
            obj.insert("status".into(), json!({"loadBalancer": {}}));
        }
        ("", "persistentvolumeclaims") | ("", "persistentvolumes") => {
            obj.insert("status".into(), json!({"phase": "Pending"}));
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            obj.insert(
                "status".into(),
                crd_status_of(&obj, crd_delay.is_zero(), &now),
            );
        }
        _ => {}
    }
    let api_version = t.served.api_version();
    objects::record_manager(&mut obj, &api_version, &manager_of(req), &now, false);
    let value = Value::Object(obj);
    let is_crd = group == "apiextensions.k8s.io" && plural == "customresourcedefinitions";
    if is_crd && register_crd(&mut state, &value, crd_delay.is_zero()).is_none() {
        return Reply::status(status::invalid(
            &kind,
            &group,
            &name,
            &[FieldError::required(
                "spec",
                "group, names and versions are required",
            )],
        ));
    }
    let reply = match store_object(&mut state, t, value, PutMode::Create, 201) {
        Ok(reply) => reply,
        Err(_) => return Reply::status(status::already_exists(&group, &plural, &name)),
    };
    shared
        .create_log
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(ObjectKey {
            group: t.served.storage.0.clone(),
            version: state
                .store
                .collection(&t.served.storage.0, &t.served.storage.1)
                .map(|c| c.rtype.version.clone())
                .unwrap_or_else(|| t.served.version.clone()),
            resource: t.served.storage.1.clone(),
            kind,
            namespace: t.namespace.map(str::to_string),
            name: name.clone(),
        });
    drop(state);
    if is_crd && !crd_delay.is_zero() {
        schedule_establish(shared, name, crd_delay);
    }
    reply
}

/// The status the apiextensions controllers give a new CRD.
fn crd_status_of(obj: &Map<String, Value>, established: bool, now: &str) -> Value {
    let names = obj
        .get("spec")
        .and_then(|s| s.get("names"))
        .cloned()
        .unwrap_or(json!({}));
    let mut accepted = names.clone();
    if accepted.get("listKind").is_none()
        && let Some(k) = names.get("kind").and_then(Value::as_str)
    {
        accepted["listKind"] = json!(format!("{k}List"));
    }
    if accepted.get("singular").is_none()
        && let Some(k) = names.get("kind").and_then(Value::as_str)
    {
        accepted["singular"] = json!(k.to_lowercase());
    }
    let stored: Vec<Value> = obj
        .get("spec")
        .and_then(|s| s.get("versions"))
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    let established_cond = if established {
        json!({"lastTransitionTime": now, "message": "the initial names have been accepted", "reason": "InitialNamesAccepted", "status": "True", "type": "Established"})
    } else {
        json!({"lastTransitionTime": now, "message": "not all names are accepted", "reason": "Installing", "status": "False", "type": "Established"})
    };
    json!({
        "acceptedNames": accepted,
        "conditions": [
            {"lastTransitionTime": now, "message": "no conflicts found", "reason": "NoConflicts", "status": "True", "type": "NamesAccepted"},
            established_cond,
        ],
        "storedVersions": stored,
    })
}

/// Establishes a CRD after a delay, as the establishing controller does.
fn schedule_establish(shared: &Arc<Shared>, name: String, delay: std::time::Duration) {
    let shared = shared.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let mut state = shared.write();
        let Some(obj) = state
            .store
            .get("apiextensions.k8s.io", "customresourcedefinitions", &name)
        else {
            return;
        };
        let Some(mut value) = obj.full_value("apiextensions.k8s.io/v1", "CustomResourceDefinition")
        else {
            return;
        };
        let rv = state.store.next_rv();
        let now = rfc3339(time_of_rv(shared.start_rv, rv));
        if let Some(m) = value.as_object() {
            let st = crd_status_of(m, true, &now);
            value["status"] = st;
        }
        value["metadata"]["resourceVersion"] = json!(rv.to_string());
        register_crd(&mut state, &value, true);
        if let Ok(o) = Obj::from_value(value, false, None) {
            let _ = state.store.put(
                "apiextensions.k8s.io",
                "customresourcedefinitions",
                o,
                PutMode::Update(None),
            );
        }
    });
}

fn update(shared: &Shared, req: &Req, t: &Target<'_>) -> Reply {
    if let Err(reply) = check_write_options(req) {
        return reply;
    }
    let mut obj = match parse_body(req) {
        Ok(o) => o,
        Err(r) => return r,
    };
    if let Err(r) = check_type(&mut obj, &t.served) {
        return r;
    }
    replace(shared, req, t, obj, true)
}

fn patch(shared: &Shared, req: &Req, t: &Target<'_>) -> Reply {
    if let Err(reply) = check_write_options(req) {
        return reply;
    }
    let ct = req
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    if ct != "application/merge-patch+json" && ct != "application/strategic-merge-patch+json" {
        return Reply::status(status::unsupported_media_type(ct));
    }
    let patch = match serde_json::from_slice::<Value>(&req.body) {
        Ok(p @ Value::Object(_)) => p,
        _ => return Reply::status(status::bad_request("the patch is not a JSON object")),
    };
    let name = t.name.unwrap_or_default();
    let current = {
        let state = shared.read();
        state.store.get(
            &t.served.storage.0,
            &t.served.storage.1,
            &store::object_key(t.namespace, name),
        )
    };
    let Some(current) = current else {
        return Reply::status(status::not_found(
            &t.served.group,
            &t.served.def.plural,
            name,
        ));
    };
    let Some(mut value) = current.full_value(&t.served.api_version(), &t.served.def.kind) else {
        return Reply::status(status::bad_request("stored object is unreadable"));
    };
    merge_patch(&mut value, &patch);
    let Value::Object(obj) = value else {
        return Reply::status(status::bad_request(
            "the patched object is not a JSON object",
        ));
    };
    // A patch only checks the resource version if it sets one.
    let explicit_rv = patch.pointer("/metadata/resourceVersion").is_some();
    let mut obj = obj;
    if !explicit_rv {
        metadata_mut(&mut obj).remove("resourceVersion");
    }
    replace(shared, req, t, obj, false)
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// [`admission::decode`] of a body sent to the target.
fn decode(t: &Target<'_>, obj: &mut Map<String, Value>) -> Result<(), (u16, Vec<u8>)> {
    admission::decode(
        &t.served.group,
        &t.served.version,
        &t.served.def.plural,
        &t.served.def.kind,
        obj,
    )
}

/// Replaces an object (PUT, or the result of a patch) with server-side bookkeeping.
fn replace(
    shared: &Shared,
    req: &Req,
    t: &Target<'_>,
    mut obj: Map<String, Value>,
    strict_name: bool,
) -> Reply {
    if let Err(reply) = decode(t, &mut obj) {
        return Reply::status(reply);
    }
    let name = t.name.unwrap_or_default().to_string();
    let group = t.served.group.clone();
    let plural = t.served.def.plural.clone();
    let status_only = t.subresource == Some("status");
    {
        let meta = metadata_mut(&mut obj);
        match meta.get("name").and_then(Value::as_str) {
            Some(n) if n != name && strict_name => {
                return Reply::status(status::bad_request(&format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            _ => {
                meta.insert("name".into(), json!(name));
            }
        }
        if let Err(reply) = settle_namespace(meta, t.namespace) {
            return reply;
        }
    }
    let mut state = shared.write();
    let key = store::object_key(t.namespace, &name);
    let Some(current) = state
        .store
        .get(&t.served.storage.0, &t.served.storage.1, &key)
    else {
        return Reply::status(status::not_found(&group, &plural, &name));
    };
    let expected = match metadata_mut(&mut obj)
        .get("resourceVersion")
        .and_then(Value::as_str)
    {
        Some(rv) => match rv.parse::<u64>() {
            Ok(rv) => Some(rv),
            Err(_) => {
                return Reply::status(status::invalid(
                    &t.served.def.kind,
                    &group,
                    &name,
                    &[FieldError::invalid(
                        "metadata.resourceVersion",
                        &go::quote(rv),
                        "must be a number",
                    )],
                ));
            }
        },
        None => None,
    };
    if let Some(e) = expected
        && e != current.rv
    {
        return Reply::status(status::conflict(&group, &plural, &name));
    }
    let Some(Value::Object(old)) = current.full_value(&t.served.api_version(), &t.served.def.kind)
    else {
        return Reply::status(status::bad_request("stored object is unreadable"));
    };
    let old_meta = old
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut new = if status_only {
        let mut n = old.clone();
        n.insert(
            "status".into(),
            obj.get("status").cloned().unwrap_or(json!({})),
        );
        n
    } else {
        if has_status_subresource(t) {
            match old.get("status") {
                Some(s) => obj.insert("status".into(), s.clone()),
                None => obj.remove("status"),
            };
        }
        obj
    };
    if !status_only
        && let Err(reply) =
            admission::admit_update(&group, &plural, &t.served.def.kind, &name, &old, &new)
    {
        return Reply::status(reply);
    }
    let rv = state.store.next_rv();
    let now = rfc3339(time_of_rv(shared.start_rv, rv));
    let is_custom = custom(&state, t);
    let spec_changed = ["spec", "data", "template", "rules"]
        .iter()
        .any(|k| new.get(*k) != old.get(*k));
    {
        let meta = metadata_mut(&mut new);
        for k in ["uid", "creationTimestamp"] {
            match old_meta.get(k) {
                Some(v) => meta.insert(k.into(), v.clone()),
                None => meta.remove(k),
            };
        }
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        if objects::has_generation(&t.served.def.kind, is_custom) {
            let g = old_meta
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            meta.insert(
                "generation".into(),
                json!(if spec_changed && !status_only {
                    g + 1
                } else {
                    g
                }),
            );
        } else {
            meta.remove("generation");
        }
        if !meta.contains_key("managedFields")
            && let Some(mf) = old_meta.get("managedFields")
        {
            meta.insert("managedFields".into(), mf.clone());
        }
    }
    objects::record_manager(
        &mut new,
        &t.served.api_version(),
        &manager_of(req),
        &now,
        status_only,
    );
    let value = Value::Object(new);
    if group == "apiextensions.k8s.io" && plural == "customresourcedefinitions" {
        let established = state.crds.get(&name).is_some_and(|c| c.established);
        register_crd(&mut state, &value, established);
    }
    match store_object(&mut state, t, value, PutMode::Update(Some(current.rv)), 200) {
        Ok(reply) => reply,
        Err(WriteError::Conflict) => Reply::status(status::conflict(&group, &plural, &name)),
        Err(_) => Reply::status(status::not_found(&group, &plural, &name)),
    }
}

fn delete(shared: &Shared, req: &Req, t: &Target<'_>) -> Reply {
    let name = t.name.unwrap_or_default().to_string();
    let group = t.served.group.clone();
    let plural = t.served.def.plural.clone();
    let (sg, sp) = (t.served.storage.0.clone(), t.served.storage.1.clone());
    let options = match DeleteOptions::of(req) {
        Ok(o) => o,
        Err(reply) => return reply,
    };
    let mut state = shared.write();
    let key = store::object_key(t.namespace, &name);
    let Some(current) = state.store.get(&sg, &sp, &key) else {
        return Reply::status(status::not_found(&group, &plural, &name));
    };
    let mut shown = current.full_value(&t.served.api_version(), &t.served.def.kind);
    let finalizers: Vec<String> = shown
        .as_ref()
        .and_then(|v| v.pointer("/metadata/finalizers"))
        .and_then(Value::as_array)
        .map(|f| {
            f.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    // With the Orphan policy the collector takes the owner out of its dependents' references
    // before the owner goes (immediately here, where the real server waits on the `orphan`
    // finalizer); with the others the dependents are left to the collector.
    if options.orphans(
        &t.served.group,
        &t.served.version,
        &t.served.def.plural,
        &finalizers,
    ) {
        crate::gc::orphan_dependents(shared, &mut state, &current.uid);
    }
    let rv = state.store.next_rv();
    let now = rfc3339(time_of_rv(shared.start_rv, rv));
    if sg.is_empty()
        && sp == "namespaces"
        && let Some(v) = shown.as_mut()
    {
        // The namespace is reported as terminating while its content goes.
        v["metadata"]["deletionTimestamp"] = json!(now);
        v["status"] = json!({"phase": "Terminating"});
    }
    remove(&mut state, &sg, &sp, t.namespace, &name, rv);
    drop(state);
    match shown {
        Some(v) => Reply::json(200, serde_json::to_vec(&v).unwrap_or_default()),
        None => Reply::json(
            200,
            status::success(
                json!({"name": name, "group": group, "kind": plural, "uid": current.uid.to_string()}),
            ),
        ),
    }
}

/// Deletes a stored object, with what goes with it at once: a namespace takes everything
/// in it (immediately, where the real server's namespace controller takes a while), a CRD
/// its API and custom resources. Each deletion has its own revision, the first `rv` and
/// the object's own the last, as the controllers delete them one by one before the object
/// goes: a watch resumed from any of them misses none of the others.
pub(crate) fn remove(
    state: &mut State,
    group: &str,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
    rv: u64,
) {
    let mut contents: Vec<(String, String, String)> = Vec::new();
    if group.is_empty() && plural == "namespaces" {
        let targets: Vec<(String, String)> = state
            .store
            .collections()
            .filter(|c| c.rtype.namespaced)
            .map(|c| (c.rtype.group.clone(), c.rtype.plural.clone()))
            .collect();
        for (g, p) in targets {
            for o in state.store.current(&g, &p) {
                if o.namespace.as_deref() == Some(name) {
                    contents.push((g.clone(), p.clone(), store::object_key(Some(name), &o.name)));
                }
            }
        }
    }
    let crd = if group == "apiextensions.k8s.io" && plural == "customresourcedefinitions" {
        state.crds.remove(name)
    } else {
        None
    };
    if let Some(crd) = &crd {
        for o in state.store.current(&crd.group, &crd.plural) {
            let k = store::object_key(o.namespace.as_deref(), &o.name);
            contents.push((crd.group.clone(), crd.plural.clone(), k));
        }
    }
    contents.push((
        group.to_string(),
        plural.to_string(),
        store::object_key(namespace, name),
    ));
    for (i, (g, p, k)) in contents.iter().enumerate() {
        let at = if i == 0 { rv } else { state.store.next_rv() };
        state.store.delete(g, p, k, at);
    }
    if let Some(crd) = crd {
        state.store.remove_collection(&crd.group, &crd.plural);
    }
}

/// The dependents policy of a delete (`DeleteOptions` in the body or the query).
struct DeleteOptions {
    propagation_policy: Option<String>,
    orphan_dependents: Option<bool>,
}

impl DeleteOptions {
    fn of(req: &Req) -> Result<DeleteOptions, Reply> {
        let body = if req.body.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            match serde_json::from_slice::<Value>(&req.body) {
                Ok(v) => v,
                Err(e) => {
                    return Err(Reply::status(status::bad_request(&format!(
                        "the body of the delete request is not DeleteOptions: {e}"
                    ))));
                }
            }
        };
        let propagation_policy = body
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .or(req.param("propagationPolicy"))
            .map(str::to_string);
        let orphan_dependents = body
            .get("orphanDependents")
            .and_then(Value::as_bool)
            .or(req.param("orphanDependents").map(|v| v == "true"));
        // ValidateDeleteOptions.
        let mut errors = Vec::new();
        if let Some(p) = &propagation_policy {
            if orphan_dependents.is_some() {
                errors.push(FieldError::invalid(
                    "propagationPolicy",
                    &go::quote(p),
                    "orphanDependents and deletionPropagation cannot be both set",
                ));
            }
            if !matches!(p.as_str(), "Foreground" | "Background" | "Orphan") {
                errors.push(FieldError::not_supported(
                    "propagationPolicy",
                    &go::quote(p),
                    &["Foreground", "Background", "Orphan", "nil"],
                ));
            }
        }
        if !errors.is_empty() {
            return Err(Reply::status(status::invalid(
                "DeleteOptions",
                "meta.k8s.io",
                "",
                &errors,
            )));
        }
        Ok(DeleteOptions {
            propagation_policy,
            orphan_dependents,
        })
    }

    /// Whether the dependents are orphaned: the request's choice, else the object's own
    /// finalizers, else the resource's default (Orphan for `batch/v1` Jobs and `v1`
    /// ReplicationControllers, kept from before server-side garbage collection).
    fn orphans(&self, group: &str, version: &str, plural: &str, finalizers: &[String]) -> bool {
        if let Some(p) = &self.propagation_policy {
            return p == "Orphan";
        }
        if let Some(o) = self.orphan_dependents {
            return o;
        }
        if finalizers.iter().any(|f| f == "orphan") {
            return true;
        }
        if finalizers.iter().any(|f| f == "foregroundDeletion") {
            return false;
        }
        matches!(
            (group, version, plural),
            ("batch", "v1", "jobs") | ("", "v1", "replicationcontrollers")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert!(
            rendering(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
            ) == Rendering::Table
        );
        assert!(rendering("application/json") == Rendering::Full);
        assert!(
            rendering("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1")
                == Rendering::Metadata
        );
        assert!(rendering("") == Rendering::Full);
    }

    #[test]
    fn ages() {
        assert_eq!(human_age(5), "5s");
        assert_eq!(human_age(3 * 86_400 + 7200), "3d2h");
        assert_eq!(human_age(40 * 86_400), "40d");
        assert_eq!(
            parse_rfc3339("2025-01-15T10:00:00Z"),
            Some(objects::BASE_TIME)
        );
    }

    #[test]
    fn merge() {
        let mut v = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        merge_patch(&mut v, &json!({"a": {"b": null, "e": 3}, "d": [2]}));
        assert_eq!(v, json!({"a": {"c": 2, "e": 3}, "d": [2]}));
    }
}
