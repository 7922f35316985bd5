//! Helpers shared by the tests: starting servers, kube clients, raw requests.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::HeaderMap;
use kube::client::Body;
use kube_sim::{SimConfig, SimServer};
use serde_json::Value;

pub const AGGREGATED_ACCEPT: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

pub async fn start(config: SimConfig) -> SimServer {
    SimServer::start(config).await.expect("server starts")
}

pub async fn start_n(objects: usize) -> SimServer {
    start(SimConfig {
        objects,
        ..Default::default()
    })
    .await
}

/// A kube client configured from the server's own kubeconfig, without kube's automatic
/// retries of 429/503/504 (so that the tests see every response as the server sent it).
pub async fn client(server: &SimServer) -> kube::Client {
    client_with(server, false).await
}

/// A kube client as applications get it by default: 429, 503 and 504 are retried (up to 15
/// times with exponential backoff, honouring Retry-After).
pub async fn client_with(server: &SimServer, retry: bool) -> kube::Client {
    let kc =
        kube::config::Kubeconfig::from_yaml(&server.kubeconfig_yaml()).expect("kubeconfig parses");
    let mut config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("kubeconfig loads");
    config.default_retry = retry;
    kube::Client::try_from(config).expect("client")
}

pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// Sends a request through the kube client (which adds the bearer token) and returns the
/// response whatever its status.
pub async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Resp {
    let mut b = hyper::Request::builder().method(method).uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let body = match body {
        Some(v) => Body::from(serde_json::to_vec(&v).unwrap()),
        None => Body::from(Vec::new()),
    };
    let resp = client
        .send(b.body(body).unwrap())
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Resp {
        status,
        headers,
        body,
    }
}

pub async fn get(client: &kube::Client, path: &str) -> Resp {
    send(client, "GET", path, &[], None).await
}

pub async fn get_json(client: &kube::Client, path: &str) -> Value {
    let r = get(client, path).await;
    assert_eq!(
        r.status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()
}

/// Lists a collection page by page; returns the items and the page responses' metadata.
pub async fn list_paged(
    client: &kube::Client,
    path: &str,
    limit: usize,
) -> (Vec<Value>, Vec<Value>) {
    let mut items = Vec::new();
    let mut metas = Vec::new();
    let mut cont: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &cont {
            Some(c) => format!("{path}{sep}limit={limit}&continue={}", urlencode(c)),
            None => format!("{path}{sep}limit={limit}"),
        };
        let page = get_json(client, &url).await;
        let meta = page["metadata"].clone();
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        cont = meta
            .get("continue")
            .and_then(Value::as_str)
            .map(str::to_string);
        metas.push(meta);
        if cont.is_none() {
            return (items, metas);
        }
    }
}

pub fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A recorded discovery document from the fixtures.
pub fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/k8s-discovery")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// `namespace/name` of list items.
pub fn names(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| {
            let m = &i["metadata"];
            match m.get("namespace").and_then(Value::as_str) {
                Some(ns) => format!("{ns}/{}", m["name"].as_str().unwrap_or_default()),
                None => m["name"].as_str().unwrap_or_default().to_string(),
            }
        })
        .collect()
}

/// `namespace/name` of the stored objects of one resource.
pub fn stored_names(
    server: &SimServer,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
) -> Vec<String> {
    server
        .objects()
        .into_iter()
        .filter(|k| k.group == group && k.resource == resource)
        .filter(|k| namespace.is_none() || k.namespace.as_deref() == namespace)
        .map(|k| match k.namespace {
            Some(ns) => format!("{ns}/{}", k.name),
            None => k.name,
        })
        .collect()
}

/// A raw HTTP/1.1 exchange on a plain connection, without the kube client: for requests
/// without credentials and for observing dropped connections. Returns None when the server
/// closed the connection without a response.
pub async fn raw(server: &SimServer, request: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    if out.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&out).to_string();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, text))
}

pub fn raw_get(path: &str, token: Option<&str>) -> String {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n")
}

/// The names of the groups an `/apis` document lists, in its order.
pub fn group_names(apis: &Value) -> Vec<String> {
    apis["groups"]
        .as_array()
        .expect("an APIGroupList")
        .iter()
        .map(|g| g["name"].as_str().expect("a group's name").to_string())
        .collect()
}
