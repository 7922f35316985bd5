//! The HTTP side: accepting connections (plain or TLS), authentication, the request-level
//! faults (latency, throttling, dropped connections), routing, and the discovery endpoints.
//! Resource requests are handed to [`crate::handlers`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::discovery::{self, AGGREGATED_CONTENT_TYPE};
use crate::{Shared, handlers, openapi, status};

/// Largest request body accepted (the real server's limit is 3 MiB for most requests; a
/// restore may send large objects, so allow more).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// A parsed request, as the handlers see it.
pub(crate) struct Req {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub accept: String,
    pub content_type: String,
    pub user_agent: Option<String>,
    pub body: Bytes,
}

impl Req {
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What to do with a request.
pub(crate) enum Reply {
    Json {
        code: u16,
        body: Vec<u8>,
        content_type: &'static str,
        retry_after: Option<u64>,
    },
    /// Close the connection without answering (the dropped-connection fault).
    Drop,
    /// A watch: `200` and a chunked JSON body of what the channel yields; an error ends the
    /// body without its last chunk (a dropped connection).
    Stream(tokio::sync::mpsc::Receiver<Result<Bytes, Dropped>>),
}

impl Reply {
    pub(crate) fn json(code: u16, body: Vec<u8>) -> Reply {
        Reply::Json {
            code,
            body,
            content_type: "application/json",
            retry_after: None,
        }
    }

    pub(crate) fn status((code, body): (u16, Vec<u8>)) -> Reply {
        Reply::json(code, body)
    }
}

/// The error a service returns to make hyper close the connection without a response (or a
/// body, to end it without its last chunk).
#[derive(Debug)]
pub(crate) struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

type Body = BoxBody<Bytes, Dropped>;

/// The body of a watch: the frames its task sends.
struct Streamed(tokio::sync::mpsc::Receiver<Result<Bytes, Dropped>>);

impl hyper::body::Body for Streamed {
    type Data = Bytes;
    type Error = Dropped;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Dropped>>> {
        self.0
            .poll_recv(cx)
            .map(|next| next.map(|r| r.map(hyper::body::Frame::data)))
    }
}

/// Accepts connections until `stop` fires.
pub(crate) async fn serve(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            match acceptor {
                Some(a) => {
                    if let Ok(tls) = a.accept(stream).await {
                        serve_connection(TokioIo::new(tls), shared, stop).await;
                    }
                }
                None => serve_connection(TokioIo::new(stream), shared, stop).await,
            }
        });
    }
}

async fn serve_connection<I>(io: I, shared: Arc<Shared>, mut stop: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let shared = shared.clone();
        async move { handle(shared, req).await }
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::select! {
        _ = conn => {}
        _ = stop.changed() => {}
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Dropped> {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let latency = shared.faults.current_latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(secs) = shared.faults.take_throttle() {
        let (code, body) = status::too_many_requests(secs);
        return Ok(to_response(Reply::Json {
            code,
            body,
            content_type: "application/json",
            retry_after: Some(secs),
        }));
    }
    if !authorized(&req, &shared.config.token) {
        return Ok(to_response(Reply::status(status::unauthorized())));
    }
    let header = |name: header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let accept = header(header::ACCEPT);
    let content_type = header(header::CONTENT_TYPE);
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    // A DELETE may carry DeleteOptions (the propagation policy).
    let body = if matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return Ok(to_response(Reply::status(status::bad_request(&format!(
                    "unable to read the request body: {e}"
                )))));
            }
        }
    } else {
        Bytes::new()
    };
    let req = Req {
        method,
        path,
        query,
        accept,
        content_type,
        user_agent,
        body,
    };
    match route(&shared, &req) {
        Reply::Drop => Err(Dropped),
        reply => Ok(to_response(reply)),
    }
}

fn authorized<B>(req: &Request<B>, token: &str) -> bool {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t.trim() == token)
}

fn to_response(reply: Reply) -> Response<Body> {
    let (code, body, content_type, retry_after) = match reply {
        Reply::Json {
            code,
            body,
            content_type,
            retry_after,
        } => (
            code,
            Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed(),
            content_type,
            retry_after,
        ),
        Reply::Stream(rx) => (200, Streamed(rx).boxed(), "application/json", None),
        Reply::Drop => (
            500,
            Full::new(Bytes::new()).map_err(|e| match e {}).boxed(),
            "application/json",
            None,
        ),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() =
        hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    if let Some(secs) = retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        h.insert(header::RETRY_AFTER, v);
    }
    resp
}

fn route(shared: &Arc<Shared>, req: &Req) -> Reply {
    let segs: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    let discovery_path = matches!(
        segs.as_slice(),
        ["version"]
            | ["healthz"]
            | ["livez"]
            | ["readyz"]
            | ["api"]
            | ["api", _]
            | ["apis"]
            | ["apis", _]
            | ["apis", _, _]
    );
    if discovery_path && req.method != Method::GET {
        return Reply::status(status::method_not_allowed());
    }
    match segs.as_slice() {
        ["version"] => Reply::json(200, to_vec(&discovery::version_doc())),
        ["healthz"] | ["livez"] | ["readyz"] => Reply::Json {
            code: 200,
            body: b"ok".to_vec(),
            content_type: "text/plain; charset=utf-8",
            retry_after: None,
        },
        ["api"] => {
            if discovery::wants_aggregated(&req.accept) {
                let core = shared.core_group();
                aggregated(discovery::aggregated_list(std::iter::once(&core)))
            } else {
                Reply::json(
                    200,
                    to_vec(&discovery::legacy_api_versions(&shared.address)),
                )
            }
        }
        ["api", version] => {
            if shared.faults.is_unavailable("") {
                return Reply::status(status::service_unavailable());
            }
            match shared
                .apis
                .core
                .versions
                .iter()
                .find(|v| v.version == *version)
            {
                Some(v) => Reply::json(200, to_vec(&discovery::legacy_resource_list("", v))),
                None => Reply::status(status::path_not_found()),
            }
        }
        ["apis"] => {
            let state = shared.read();
            let groups = shared.groups(&state);
            drop(state);
            if discovery::wants_aggregated(&req.accept) {
                aggregated(discovery::aggregated_list(groups.iter()))
            } else {
                Reply::json(200, to_vec(&discovery::legacy_group_list(groups.iter())))
            }
        }
        ["apis", group] => {
            let state = shared.read();
            let groups = shared.groups(&state);
            drop(state);
            match groups.iter().find(|g| g.name == *group) {
                Some(g) => Reply::json(200, to_vec(&discovery::legacy_group(g))),
                None => Reply::status(status::path_not_found()),
            }
        }
        ["apis", group, version] => {
            let state = shared.read();
            let groups = shared.groups(&state);
            drop(state);
            let Some(v) = groups
                .iter()
                .find(|g| g.name == *group)
                .and_then(|g| g.versions.iter().find(|v| v.version == *version))
            else {
                return Reply::status(status::path_not_found());
            };
            if shared.faults.is_unavailable(group) {
                return Reply::status(status::service_unavailable());
            }
            Reply::json(200, to_vec(&discovery::legacy_resource_list(group, v)))
        }
        ["openapi", "v3", rest @ ..] if req.method == Method::GET => {
            let state = shared.read();
            let groups = shared.groups(&state);
            drop(state);
            let core = shared.core_group();
            if rest.is_empty() {
                Reply::json(200, to_vec(&openapi::index(&core, &groups)))
            } else {
                match openapi::document(&core, &groups, rest) {
                    Some(doc) => Reply::json(200, to_vec(&doc)),
                    None => Reply::status(status::path_not_found()),
                }
            }
        }
        ["openapi", "v2"] if req.method == Method::GET => {
            if req.accept.contains("protobuf") {
                Reply::Json {
                    code: 200,
                    body: openapi::v2_protobuf(),
                    content_type: openapi::V2_PROTOBUF,
                    retry_after: None,
                }
            } else {
                Reply::json(200, to_vec(&openapi::v2_json()))
            }
        }
        ["api", version, rest @ ..] => handlers::resource(shared, req, "", version, rest),
        ["apis", group, version, rest @ ..] => {
            handlers::resource(shared, req, group, version, rest)
        }
        _ => Reply::status(status::path_not_found()),
    }
}

fn aggregated(doc: serde_json::Value) -> Reply {
    Reply::Json {
        code: 200,
        body: to_vec(&doc),
        content_type: AGGREGATED_CONTENT_TYPE,
        retry_after: None,
    }
}

fn to_vec(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}
