//! A real S3 server on loopback for tests and benchmarks: `s3s-fs` (an S3 implementation on a
//! local directory) served over HTTP with SigV4 authentication, on its own thread and
//! runtime so that it can be stopped and started again on the same port to play an outage.
//!
//! Listings without a delimiter walk only the folder of their prefix. `s3s-fs` walks the
//! whole bucket for each page, which makes a LIST of a few keys cost as much as the bucket
//! holds; S3 costs per key returned, and the benchmark must not charge a later snapshot for
//! the files of the earlier ones. Listings with a `/` delimiter of a folder read that one
//! directory, as S3 answers them without looking at the keys below the sub-folders.
//!
//! It can play a store that ignores conditional writes (`If-None-Match: *`), as some
//! S3-compatible stores do.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use kube_autosave::store::S3Options;
use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{S3, S3Request, S3Response, S3Result};

pub const ACCESS_KEY: &str = "AKIAKUBEAUTOSAVETEST";
pub const SECRET_KEY: &str = "kube-autosave-test-secret-key";
pub const BUCKET: &str = "backups";

struct Running {
    shutdown: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// The PUTs and COPYs the server completed, in order: `(operation, key)`.
type WriteLog = std::sync::Arc<Mutex<Vec<(&'static str, String)>>>;

pub struct S3Server {
    addr: SocketAddr,
    /// Added to every request, in milliseconds: a slow S3, to catch a push under way.
    latency_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Accept `If-None-Match: *` and overwrite anyway, as some S3-compatible stores do.
    ignores_conditions: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Throttling: the share of requests (per million) answered `503 SlowDown` unserved,
    /// and how many were.
    throttle: std::sync::Arc<Throttle>,
    writes: WriteLog,
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
            ignores_conditions: Default::default(),
            throttle: Default::default(),
            writes: Default::default(),
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
        let throttle = self.throttle.clone();
        let ignores_conditions = self.ignores_conditions.clone();
        let writes = self.writes.clone();
        let (shutdown, mut stop) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("S3 server runtime");
            runtime.block_on(async move {
                let fs = s3s_fs::FileSystem::new(&root).expect("s3s-fs root");
                let mut builder = S3ServiceBuilder::new(PrefixListing {
                    fs,
                    root,
                    ignores_conditions,
                    conditional: Default::default(),
                    writes,
                });
                builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
                let service = builder.build();
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let http = ConnBuilder::new(TokioExecutor::new());
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((socket, _)) = accepted else { continue };
                            let (service, latency, throttle) =
                                (service.clone(), latency.clone(), throttle.clone());
                            let slowed = hyper::service::service_fn(move |request| {
                                let (service, latency, throttle) =
                                    (service.clone(), latency.clone(), throttle.clone());
                                async move {
                                    let ms = latency.load(std::sync::atomic::Ordering::Relaxed);
                                    if ms > 0 {
                                        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                                    }
                                    if throttle.this_one() {
                                        return Ok(slow_down());
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

    /// Answers a share `fraction` of the requests from now on with `503 SlowDown`, without
    /// serving them, as S3 does when a prefix gets more requests than it takes.
    pub fn set_throttle(&self, fraction: f64) {
        self.throttle.per_million.store(
            (fraction.clamp(0.0, 1.0) * 1e6) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// The requests answered `503 SlowDown` so far.
    pub fn throttled(&self) -> u64 {
        self.throttle
            .answered
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Delays every request by `latency` from now on.
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.latency_ms.store(
            latency.as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// From now on, accepts `If-None-Match: *` on PUT and overwrites anyway (as older Ceph
    /// RGW and some appliances do), or honours it again.
    pub fn ignore_conditional_writes(&self, on: bool) {
        self.ignores_conditions
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// The PUTs and COPYs completed so far, in the order they completed: `(operation, key)`
    /// with the key relative to the bucket.
    pub fn writes(&self) -> Vec<(&'static str, String)> {
        self.writes.lock().unwrap().clone()
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

    /// Another server on the same data, on a port of its own: someone who can still reach
    /// the bucket while this server plays an outage.
    pub fn twin(&self) -> S3Server {
        S3Server::start_in(&self.root, "127.0.0.1:0".parse().expect("an address"))
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

/// Deletes `key` of the bucket with the plain client, as someone with access to the bucket
/// might.
pub async fn delete(server: &S3Server, key: &str) {
    plain_client(server)
        .await
        .delete_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .expect("delete");
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

/// `s3s-fs`, with listings that walk only the folder of their prefix.
struct PrefixListing {
    fs: s3s_fs::FileSystem,
    root: PathBuf,
    ignores_conditions: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// `s3s-fs` checks `If-None-Match` and then writes; S3 does both at once. Conditional
    /// PUTs take this lock so that of two racing writers exactly one succeeds here too.
    conditional: tokio::sync::Mutex<()>,
    writes: WriteLog,
}

impl PrefixListing {
    /// The bucket's directory and the listing's prefix, refused when either would leave the
    /// server's root.
    fn bucket_and_prefix(&self, input: &ListObjectsV2Input) -> S3Result<(PathBuf, String)> {
        let bucket = self.root.join(&input.bucket);
        if input.bucket.contains('/') || input.bucket.starts_with('.') || !bucket.is_dir() {
            return Err(s3s::s3_error!(NoSuchBucket));
        }
        let prefix = input.prefix.clone().unwrap_or_default();
        if prefix.split('/').any(|part| part == "..") {
            return Err(s3s::s3_error!(InvalidArgument, "bad prefix"));
        }
        Ok((bucket, prefix))
    }

    fn wrote<T>(&self, op: &'static str, key: &str, result: S3Result<T>) -> S3Result<T> {
        if result.is_ok() {
            self.writes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((op, key.to_string()));
        }
        result
    }
}

/// One key found by [`PrefixListing::keys_under`].
struct Listed {
    key: String,
    size: u64,
    modified: std::time::SystemTime,
}

impl PrefixListing {
    /// Every key of `bucket` that starts with `prefix`, sorted; the walk starts at the
    /// deepest folder the prefix names.
    fn keys_under(bucket: &Path, prefix: &str) -> std::io::Result<Vec<Listed>> {
        let folder = &prefix[..prefix.rfind('/').map_or(0, |i| i + 1)];
        let mut keys = Vec::new();
        let mut folders = vec![bucket.join(folder)];
        while let Some(dir) = folders.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let metadata = entry.metadata()?;
                if metadata.is_dir() {
                    folders.push(entry.path());
                    continue;
                }
                let path = entry.path();
                let Some(key) = path
                    .strip_prefix(bucket)
                    .ok()
                    .and_then(|relative| relative.to_str())
                    .map(str::to_string)
                else {
                    continue;
                };
                if key.starts_with(prefix) {
                    keys.push(Listed {
                        key,
                        size: metadata.len(),
                        modified: metadata.modified()?,
                    });
                }
            }
        }
        keys.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Ok(keys)
    }
}

/// Passes each named operation on to `s3s-fs` unchanged.
macro_rules! passed_on {
    ($($method:ident($input:ident) -> $output:ident;)*) => {
        #[async_trait::async_trait]
        impl S3 for PrefixListing {
            $(
                async fn $method(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    self.fs.$method(req).await
                }
            )*

            async fn put_object(
                &self,
                mut req: S3Request<PutObjectInput>,
            ) -> S3Result<S3Response<PutObjectOutput>> {
                if self.ignores_conditions.load(std::sync::atomic::Ordering::Relaxed) {
                    req.input.if_none_match = None;
                }
                let key = req.input.key.clone();
                if req.input.if_none_match.is_some() {
                    let _one_at_a_time = self.conditional.lock().await;
                    let put = self.fs.put_object(req).await;
                    return self.wrote("PUT", &key, put);
                }
                let put = self.fs.put_object(req).await;
                self.wrote("PUT", &key, put)
            }

            async fn copy_object(
                &self,
                req: S3Request<CopyObjectInput>,
            ) -> S3Result<S3Response<CopyObjectOutput>> {
                let key = req.input.key.clone();
                let copied = self.fs.copy_object(req).await;
                self.wrote("COPY", &key, copied)
            }

            async fn list_objects_v2(
                &self,
                req: S3Request<ListObjectsV2Input>,
            ) -> S3Result<S3Response<ListObjectsV2Output>> {
                let prefix = req.input.prefix.as_deref().unwrap_or_default();
                if req.input.delimiter.as_deref() == Some("/")
                    && (prefix.is_empty() || prefix.ends_with('/'))
                {
                    return self.list_folder(req.input).await;
                }
                if req.input.delimiter.is_some() {
                    return self.fs.list_objects_v2(req).await;
                }
                self.list_under_prefix(req.input).await
            }
        }
    };
}

passed_on! {
    create_bucket(CreateBucketInput) -> CreateBucketOutput;
    delete_bucket(DeleteBucketInput) -> DeleteBucketOutput;
    delete_object(DeleteObjectInput) -> DeleteObjectOutput;
    delete_objects(DeleteObjectsInput) -> DeleteObjectsOutput;
    get_bucket_location(GetBucketLocationInput) -> GetBucketLocationOutput;
    get_object(GetObjectInput) -> GetObjectOutput;
    head_bucket(HeadBucketInput) -> HeadBucketOutput;
    head_object(HeadObjectInput) -> HeadObjectOutput;
    list_buckets(ListBucketsInput) -> ListBucketsOutput;
    list_objects(ListObjectsInput) -> ListObjectsOutput;
    create_multipart_upload(CreateMultipartUploadInput) -> CreateMultipartUploadOutput;
    upload_part(UploadPartInput) -> UploadPartOutput;
    upload_part_copy(UploadPartCopyInput) -> UploadPartCopyOutput;
    list_parts(ListPartsInput) -> ListPartsOutput;
    complete_multipart_upload(CompleteMultipartUploadInput) -> CompleteMultipartUploadOutput;
    abort_multipart_upload(AbortMultipartUploadInput) -> AbortMultipartUploadOutput;
}

impl PrefixListing {
    /// A listing with a `/` delimiter of a folder: its files and its sub-folders (common
    /// prefixes), read from that one directory.
    async fn list_folder(
        &self,
        input: ListObjectsV2Input,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let (bucket, prefix) = self.bucket_and_prefix(&input)?;
        let dir = bucket.join(&prefix);
        let entries = tokio::task::spawn_blocking(move || {
            let mut entries: Vec<(String, Option<Listed>)> = Vec::new();
            let listing = match std::fs::read_dir(&dir) {
                Ok(listing) => listing,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(entries),
                Err(e) => return Err(e),
            };
            for entry in listing {
                let entry = entry?;
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                let metadata = entry.metadata()?;
                if metadata.is_dir() {
                    // S3 has no empty folders (deleting keys here leaves directories).
                    if holds_a_file(&entry.path())? {
                        entries.push((format!("{prefix}{name}/"), None));
                    }
                } else {
                    let key = format!("{prefix}{name}");
                    entries.push((
                        key.clone(),
                        Some(Listed {
                            key,
                            size: metadata.len(),
                            modified: metadata.modified()?,
                        }),
                    ));
                }
            }
            entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            Ok(entries)
        })
        .await
        .map_err(|e| s3s::s3_error!(InternalError, "{e}"))?
        .map_err(|e| s3s::s3_error!(InternalError, "{e}"))?;
        let first = input.continuation_token.as_ref().map_or(0, |after| {
            entries.partition_point(|(name, _)| name <= after)
        });
        let max_keys = input.max_keys.unwrap_or(1000).clamp(0, 1000) as usize;
        let page = &entries[first..(first + max_keys).min(entries.len())];
        let is_truncated = first + page.len() < entries.len();
        let contents: Vec<Object> = page
            .iter()
            .filter_map(|(_, listed)| listed.as_ref())
            .map(|listed| Object {
                key: Some(listed.key.clone()),
                size: Some(listed.size as i64),
                last_modified: Some(Timestamp::from(listed.modified)),
                ..Default::default()
            })
            .collect();
        let folders: Vec<CommonPrefix> = page
            .iter()
            .filter(|(_, listed)| listed.is_none())
            .map(|(name, _)| CommonPrefix {
                prefix: Some(name.clone()),
            })
            .collect();
        Ok(S3Response::new(ListObjectsV2Output {
            key_count: Some(page.len() as i32),
            max_keys: Some(max_keys as i32),
            is_truncated: Some(is_truncated),
            next_continuation_token: is_truncated
                .then(|| page.last().map(|(name, _)| name.clone()))
                .flatten(),
            contents: (!contents.is_empty()).then_some(contents),
            common_prefixes: (!folders.is_empty()).then_some(folders),
            continuation_token: input.continuation_token,
            delimiter: input.delimiter,
            encoding_type: input.encoding_type,
            name: Some(input.bucket),
            prefix: input.prefix,
            start_after: input.start_after,
            ..Default::default()
        }))
    }

    async fn list_under_prefix(
        &self,
        input: ListObjectsV2Input,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let (bucket, prefix) = self.bucket_and_prefix(&input)?;
        let keys = tokio::task::spawn_blocking(move || Self::keys_under(&bucket, &prefix))
            .await
            .map_err(|e| s3s::s3_error!(InternalError, "{e}"))?
            .map_err(|e| s3s::s3_error!(InternalError, "{e}"))?;
        let after = match (&input.continuation_token, &input.start_after) {
            (Some(token), Some(start)) => Some(token.max(start).clone()),
            (token, start) => token.clone().or_else(|| start.clone()),
        };
        let first = after.map_or(0, |after| keys.partition_point(|k| k.key <= after));
        let max_keys = input.max_keys.unwrap_or(1000).clamp(0, 1000) as usize;
        let page = &keys[first..(first + max_keys).min(keys.len())];
        let is_truncated = first + page.len() < keys.len();
        let contents: Vec<Object> = page
            .iter()
            .map(|listed| Object {
                key: Some(listed.key.clone()),
                size: Some(listed.size as i64),
                last_modified: Some(Timestamp::from(listed.modified)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListObjectsV2Output {
            key_count: Some(page.len() as i32),
            max_keys: Some(max_keys as i32),
            is_truncated: Some(is_truncated),
            next_continuation_token: is_truncated
                .then(|| page.last().map(|listed| listed.key.clone()))
                .flatten(),
            contents: (!contents.is_empty()).then_some(contents),
            continuation_token: input.continuation_token,
            encoding_type: input.encoding_type,
            name: Some(input.bucket),
            prefix: input.prefix,
            start_after: input.start_after,
            ..Default::default()
        }))
    }
}

/// Whether any file lies under `dir`, at any depth.
fn holds_a_file(dir: &Path) -> std::io::Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() || holds_a_file(&entry.path())? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Which requests the server throttles: a share of them, spread by a hash of their number.
#[derive(Debug, Default)]
struct Throttle {
    per_million: std::sync::atomic::AtomicU64,
    seen: std::sync::atomic::AtomicU64,
    answered: std::sync::atomic::AtomicU64,
}

impl Throttle {
    fn this_one(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let share = self.per_million.load(Relaxed);
        if share == 0 {
            return false;
        }
        // SplitMix64 of the request's number: spread, and the same for every run.
        let mut x = self
            .seen
            .fetch_add(1, Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        let throttled = x % 1_000_000 < share;
        if throttled {
            self.answered.fetch_add(1, Relaxed);
        }
        throttled
    }
}

/// S3's answer to a request rate it will not take.
fn slow_down() -> hyper::Response<s3s::Body> {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                <Message>Please reduce your request rate.</Message>\
                <RequestId>kube-autosave-test</RequestId></Error>";
    let mut response = hyper::Response::new(s3s::Body::from(body.to_string()));
    *response.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    response
}
