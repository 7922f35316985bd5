//! A real S3 server on loopback for tests and benchmarks: `s3s-fs` (an S3 implementation on a
//! local directory) served over HTTP with SigV4 authentication, on its own thread and
//! runtime so that it can be stopped and started again on the same port to play an outage.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use kube_autosave::store::S3Options;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

pub const ACCESS_KEY: &str = "AKIAKUBEAUTOSAVETEST";
pub const SECRET_KEY: &str = "kube-autosave-test-secret-key";
pub const BUCKET: &str = "backups";

struct Running {
    shutdown: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

pub struct S3Server {
    addr: SocketAddr,
    /// Added to every request, in milliseconds: a slow S3, to catch a push under way.
    latency_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    root: PathBuf,
    _dir: Option<tempfile::TempDir>,
    running: Mutex<Option<Running>>,
}

impl S3Server {
    /// Starts a server on a free port with an empty bucket [`BUCKET`], data in a temp dir.
    pub fn start() -> S3Server {
        let dir = tempfile::tempdir().expect("temp dir for the S3 server");
        let root = dir.path().to_path_buf();
        let mut server = Self::start_in(&root, "127.0.0.1:0".parse().unwrap());
        server._dir = Some(dir);
        server
    }

    /// Starts a server whose buckets are the folders of `root`.
    pub fn start_in(root: &Path, addr: SocketAddr) -> S3Server {
        std::fs::create_dir_all(root.join(BUCKET)).expect("bucket folder");
        let listener = std::net::TcpListener::bind(addr).expect("bind the S3 server");
        let addr = listener.local_addr().expect("local address");
        let server = S3Server {
            addr,
            latency_ms: Default::default(),
            root: root.to_path_buf(),
            _dir: None,
            running: Mutex::new(None),
        };
        server.serve(listener);
        server
    }

    fn serve(&self, listener: std::net::TcpListener) {
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let root = self.root.clone();
        let latency = self.latency_ms.clone();
        let (shutdown, mut stop) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("S3 server runtime");
            runtime.block_on(async move {
                let fs = s3s_fs::FileSystem::new(&root).expect("s3s-fs root");
                let mut builder = S3ServiceBuilder::new(fs);
                builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
                let service = builder.build();
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let http = ConnBuilder::new(TokioExecutor::new());
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((socket, _)) = accepted else { continue };
                            let (service, latency) = (service.clone(), latency.clone());
                            let slowed = hyper::service::service_fn(move |request| {
                                let (service, latency) = (service.clone(), latency.clone());
                                async move {
                                    let ms = latency.load(std::sync::atomic::Ordering::Relaxed);
                                    if ms > 0 {
                                        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                                    }
                                    hyper::service::Service::call(&service, request).await
                                }
                            });
                            let conn = http
                                .serve_connection(TokioIo::new(socket), slowed)
                                .into_owned();
                            tokio::spawn(conn);
                        }
                        _ = &mut stop => break,
                    }
                }
            });
            // Dropping the runtime aborts every open connection: clients see resets, as they
            // would from a server that went away.
            runtime.shutdown_background();
        });
        *self.running.lock().unwrap() = Some(Running { shutdown, thread });
    }

    /// Delays every request by `latency` from now on.
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.latency_ms.store(
            latency.as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The folder that holds the bucket's keys as files.
    pub fn bucket_dir(&self) -> PathBuf {
        self.root.join(BUCKET)
    }

    /// Options for the project's S3 backend, with the right credentials.
    pub fn options(&self) -> S3Options {
        S3Options {
            region: Some("us-east-1".to_string()),
            endpoint: Some(self.endpoint()),
            path_style: true,
            sse: None,
            static_credentials: Some((ACCESS_KEY.to_string(), SECRET_KEY.to_string())),
        }
    }

    /// Stops serving; connections are dropped and new ones refused.
    pub fn stop(&self) {
        if let Some(running) = self.running.lock().unwrap().take() {
            let _ = running.shutdown.send(());
            let _ = running.thread.join();
        }
    }

    /// Serves again on the same port with the same data.
    pub fn restart(&self) {
        self.stop();
        let listener = std::net::TcpListener::bind(self.addr).expect("rebind the S3 server");
        self.serve(listener);
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A plain S3 client (the AWS SDK, nothing of ours) on the test server, for tests that
/// check what a user of `aws s3` would see.
pub async fn plain_client(server: &S3Server) -> aws_sdk_s3::Client {
    let credentials =
        aws_sdk_s3::config::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test");
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(server.endpoint())
        .force_path_style(true)
        .credentials_provider(credentials)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Every key under `prefix` with its bytes, read with the plain client.
pub async fn read_all(
    client: &aws_sdk_s3::Client,
    prefix: &str,
) -> std::collections::BTreeMap<String, bytes::Bytes> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .expect("list");
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        match page.next_continuation_token() {
            Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
            _ => break,
        }
    }
    let mut out = std::collections::BTreeMap::new();
    for key in keys {
        let object = client
            .get_object()
            .bucket(BUCKET)
            .key(&key)
            .send()
            .await
            .expect("get");
        let body = object.body.collect().await.expect("body").into_bytes();
        out.insert(key, body);
    }
    out
}
