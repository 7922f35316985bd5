//! The S3 backend (AWS S3 and S3-compatible stores). Credentials come from the standard AWS
//! chain (environment, profile, web identity / IRSA, instance profile); a custom endpoint and
//! path-style addressing serve MinIO, Ceph and friends; server-side encryption headers are
//! sent on every write so that buckets that require them accept the upload.
//!
//! PUT and COPY, which a snapshot sends once per plain-layout file, are signed and sent
//! without the SDK ([`direct`]); every other request goes through the SDK. Both share the
//! credentials, the pacer and the sorting of errors.
//!
//! Errors are sorted into what a user can act on: unreachable endpoint, access denied,
//! missing bucket, missing key, anything else.
//!
//! The chain is asked afresh whenever the SDK needs credentials (at start, when cached ones
//! expire, after a failure): a process that runs for years sees credentials that appear or
//! rotate after it started (a Secret mounted later, a rotated key file), which the SDK's own
//! chain, reading profile files once, would not.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::interceptors::InterceptorContext;
use aws_sdk_s3::config::retry::{ClassifyRetry, RetryAction, RetryConfig};
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier, ServerSideEncryption,
};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use super::backend::{Backend, ObjectMeta, PutOutcome};
use super::error::{StoreError, StoreResult};
use super::pacer::{self, Pacer};

mod direct;

/// Uploads larger than this go as multipart uploads of `MULTIPART_PART` bytes per part.
const MULTIPART_THRESHOLD: usize = 64 * 1024 * 1024;
const MULTIPART_PART: usize = 16 * 1024 * 1024;
/// The pacer's starting limit: above any caller's concurrency, so that only throttling
/// lowers what the callers ask for.
const MAX_IN_FLIGHT: usize = 1024;

/// Server-side encryption requested on every write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    /// `AES256`: S3-managed keys.
    Aes256,
    /// `aws:kms`, with a key id or the bucket's default KMS key.
    Kms { key_id: Option<String> },
}

impl std::str::FromStr for Sse {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "AES256" | "aes256" => Ok(Sse::Aes256),
            "aws:kms" | "kms" => Ok(Sse::Kms { key_id: None }),
            other => Err(format!(
                "unknown server-side encryption {other:?}; use AES256 or aws:kms"
            )),
        }
    }
}

/// How to reach S3.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// The AWS region; when unset, the AWS chain's region, else `us-east-1`.
    pub region: Option<String>,
    /// A custom endpoint such as `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible stores need.
    pub path_style: bool,
    pub sse: Option<Sse>,
    /// Static credentials instead of the AWS chain (tests, or stores with fixed keys).
    pub static_credentials: Option<(String, String)>,
}

/// Leaves throttled answers (503 SlowDown, 429) to the [`Pacer`], which sends every request
/// less often, where the SDK would try the one request again at once and hide the
/// throttling from it.
#[derive(Debug)]
struct ThrottlingToPacer;

impl ClassifyRetry for ThrottlingToPacer {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        match ctx.response().map(|r| r.status().as_u16()) {
            Some(429 | 503) => RetryAction::RetryForbidden,
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "throttling is paced, not retried by the SDK"
    }
}

/// The standard AWS credentials chain, built anew for every request for credentials (the
/// SDK caches what it returns until it expires, so that is rare).
#[derive(Debug)]
struct FreshChain {
    region: Option<Region>,
}

impl aws_credential_types::provider::ProvideCredentials for FreshChain {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::new(async move {
            let mut chain =
                aws_config::default_provider::credentials::DefaultCredentialsChain::builder();
            if let Some(region) = &self.region {
                chain = chain.region(region.clone());
            }
            chain.build().await.provide_credentials().await
        })
    }
}

pub struct S3Backend {
    client: Client,
    /// PUT and COPY, sent without the SDK (see [`direct`]).
    direct: direct::Direct,
    bucket: String,
    endpoint: String,
    sse: Option<Sse>,
    /// Whether the store refuses `If-None-Match: *` on a key that exists: probed at the
    /// first [`Backend::create`].
    conditional_writes: tokio::sync::OnceCell<bool>,
    /// How many requests go out at once; throttling lowers it.
    pacer: Pacer,
}

impl fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Backend")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("sse", &self.sse)
            .finish_non_exhaustive()
    }
}

impl S3Backend {
    pub async fn connect(bucket: &str, options: &S3Options) -> StoreResult<Self> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &options.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let credentials = match &options.static_credentials {
            Some((access_key, secret_key)) => {
                SharedCredentialsProvider::new(aws_sdk_s3::config::Credentials::new(
                    access_key.clone(),
                    secret_key.clone(),
                    None,
                    None,
                    "kube-autosave-static",
                ))
            }
            None => SharedCredentialsProvider::new(FreshChain {
                region: options.region.clone().map(Region::new),
            }),
        };
        loader = loader.credentials_provider(credentials.clone());
        let shared = loader.load().await;
        let mut config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(options.path_style)
            // The SDK's default CRC32 checksums on every request cost CPU on both ends and
            // are refused by some S3-compatible stores. The payload is signed (SHA-256) for
            // the transfer; what the store holds is checked against its BLAKE3 id on every
            // read, and the plain layout by `verify`.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .retry_classifier(ThrottlingToPacer)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .read_timeout(Duration::from_secs(60))
                    .operation_attempt_timeout(Duration::from_secs(300))
                    .build(),
            );
        if shared.region().is_none() {
            config = config.region(Region::new("us-east-1"));
        }
        if let Some(endpoint) = &options.endpoint {
            config = config.endpoint_url(endpoint.clone());
        }
        let region = shared
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".to_string());
        let endpoint = options
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let direct = direct::Direct::new(
            &endpoint,
            bucket,
            options.path_style,
            &region,
            credentials,
            options.sse.as_ref(),
        );
        Ok(Self {
            client: Client::from_conf(config.build()),
            direct,
            bucket: bucket.to_string(),
            endpoint,
            sse: options.sse.clone(),
            conditional_writes: tokio::sync::OnceCell::new(),
            pacer: Pacer::new(MAX_IN_FLIGHT),
        })
    }

    fn remote_error(&self, op: &'static str, key: &str, message: String) -> StoreError {
        StoreError::Remote {
            endpoint: self.endpoint.clone(),
            op,
            key: key.to_string(),
            message,
        }
    }

    /// Sends one request under the pacer's limit, again after a pause for as long as the
    /// store throttles it (up to [`pacer::MAX_TRIES`] tries). `size` is what it carries.
    async fn paced<T, F, Fut>(&self, size: u64, send: F) -> StoreResult<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = StoreResult<T>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            let permit = self.pacer.acquire().await;
            match send().await {
                Err(e @ StoreError::Throttled { .. }) => {
                    let pause = permit.throttled(tries);
                    if tries >= pacer::MAX_TRIES {
                        return Err(e);
                    }
                    tokio::time::sleep(pause).await;
                }
                answered @ (Ok(_) | Err(StoreError::NotFound { .. })) => {
                    permit.succeeded(size);
                    return answered;
                }
                // Unreachable, denied, ...: says nothing about the store's load.
                failed => return failed,
            }
        }
    }

    /// A GET of `key` (of `range` of it, where given), read whole.
    async fn get_object(&self, key: &str, range: Option<Range<u64>>) -> StoreResult<Bytes> {
        let size = range.as_ref().map_or(u64::MAX, |r| r.end - r.start);
        let out = self
            .paced(size, || {
                let range = range.clone();
                async move {
                    self.client
                        .get_object()
                        .bucket(&self.bucket)
                        .key(key)
                        .set_range(range.map(|r| format!("bytes={}-{}", r.start, r.end - 1)))
                        .send()
                        .await
                        .map_err(|e| self.error("get", key, e))
                }
            })
            .await?;
        let body = out.body.collect().await.map_err(|e| StoreError::Remote {
            endpoint: self.endpoint.clone(),
            op: "get",
            key: key.to_string(),
            message: e.to_string(),
        })?;
        Ok(body.into_bytes())
    }

    fn error<E>(&self, op: &'static str, key: &str, err: SdkError<E>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let endpoint = self.endpoint.clone();
        let key = key.to_string();
        let message = DisplayErrorContext(&err).to_string();
        match &err {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                if message.contains("credentials") {
                    StoreError::AccessDenied {
                        endpoint,
                        op,
                        key,
                        message: "no usable AWS credentials were found".to_string(),
                    }
                } else {
                    StoreError::Unreachable {
                        endpoint,
                        op,
                        key,
                        message,
                    }
                }
            }
            SdkError::ServiceError(service) => self.answered(
                op,
                key,
                service.raw().status().as_u16(),
                service.err().code().unwrap_or(""),
                service.err().message(),
                message,
            ),
            _ if message.contains("credentials") => StoreError::AccessDenied {
                endpoint,
                op,
                key,
                message: "no usable AWS credentials were found".to_string(),
            },
            _ => StoreError::Remote {
                endpoint,
                op,
                key,
                message,
            },
        }
    }

    /// Sorts an error answer of the store (`status`, the error document's `code` and
    /// `text`) into what a user can act on. `message` is the whole error, for the rest.
    fn answered(
        &self,
        op: &'static str,
        key: String,
        status: u16,
        code: &str,
        text: Option<&str>,
        message: String,
    ) -> StoreError {
        let endpoint = self.endpoint.clone();
        match code {
            "NoSuchBucket" => StoreError::NoSuchBucket {
                endpoint,
                bucket: self.bucket.clone(),
            },
            "NoSuchKey" | "NotFound" => StoreError::NotFound { key },
            "SlowDown"
            | "Throttling"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "RequestThrottled"
            | "TooManyRequests" => StoreError::Throttled {
                endpoint,
                op,
                key,
                message: code.to_string(),
            },
            _ if matches!(status, 429 | 503) => StoreError::Throttled {
                endpoint,
                op,
                key,
                message: format!("HTTP {status} {code}"),
            },
            "AccessDenied"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "InvalidToken"
            | "ExpiredToken"
            | "KMS.AccessDeniedException" => StoreError::AccessDenied {
                endpoint,
                op,
                key,
                message: text.unwrap_or(code).to_string(),
            },
            _ if status == 404 => StoreError::NotFound { key },
            _ if status == 403 => StoreError::AccessDenied {
                endpoint,
                op,
                key,
                message: format!("HTTP 403 {code}"),
            },
            _ => StoreError::Remote {
                endpoint,
                op,
                key,
                message,
            },
        }
    }

    /// The error of a request sent by [`direct`], sorted as the SDK's are.
    fn failed(&self, op: &'static str, key: &str, failure: direct::Failure) -> StoreError {
        let endpoint = self.endpoint.clone();
        let key = key.to_string();
        match failure {
            direct::Failure::Transport(message) => StoreError::Unreachable {
                endpoint,
                op,
                key,
                message,
            },
            direct::Failure::Credentials(message) => StoreError::AccessDenied {
                endpoint,
                op,
                key,
                message,
            },
            direct::Failure::Answer {
                status,
                code,
                message,
            } => {
                let whole = format!("HTTP {status} {code}: {message}");
                let text = (!message.is_empty()).then_some(message.as_str());
                self.answered(op, key, status, &code, text, whole)
            }
        }
    }

    fn sse_header(&self) -> (Option<ServerSideEncryption>, Option<String>) {
        match &self.sse {
            None => (None, None),
            Some(Sse::Aes256) => (Some(ServerSideEncryption::Aes256), None),
            Some(Sse::Kms { key_id }) => (Some(ServerSideEncryption::AwsKms), key_id.clone()),
        }
    }

    /// A large upload in parts, each request paced (a throttled part is sent again, not the
    /// whole file).
    async fn put_multipart(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let created = self
            .paced(0, || {
                let (sse, kms_key) = self.sse_header();
                async move {
                    self.client
                        .create_multipart_upload()
                        .bucket(&self.bucket)
                        .key(key)
                        .set_server_side_encryption(sse)
                        .set_ssekms_key_id(kms_key)
                        .send()
                        .await
                        .map_err(|e| self.error("create multipart upload", key, e))
                }
            })
            .await?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let result = async {
            let mut parts = Vec::new();
            for (i, chunk) in data.chunks(MULTIPART_PART).enumerate() {
                let number = i as i32 + 1;
                let (upload_id, body) = (&upload_id, data.slice_ref(chunk));
                let part = self
                    .paced(body.len() as u64, || {
                        let body = body.clone();
                        async move {
                            self.client
                                .upload_part()
                                .bucket(&self.bucket)
                                .key(key)
                                .upload_id(upload_id)
                                .part_number(number)
                                .body(ByteStream::from(body))
                                .send()
                                .await
                                .map_err(|e| self.error("upload part", key, e))
                        }
                    })
                    .await?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(part.e_tag().map(str::to_string))
                        .build(),
                );
            }
            let completed = CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build();
            self.paced(0, || {
                let (completed, upload_id) = (completed.clone(), &upload_id);
                async move {
                    self.client
                        .complete_multipart_upload()
                        .bucket(&self.bucket)
                        .key(key)
                        .upload_id(upload_id)
                        .multipart_upload(completed)
                        .send()
                        .await
                        .map_err(|e| self.error("complete multipart upload", key, e))
                }
            })
            .await?;
            Ok(())
        }
        .await;
        if result.is_err() {
            // Leave no orphaned parts behind; the error that matters is the first one.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }
}

#[async_trait]
impl Backend for S3Backend {
    fn describe(&self) -> String {
        format!("s3://{} at {}", self.bucket, self.endpoint)
    }

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        if data.len() > MULTIPART_THRESHOLD {
            return self.put_multipart(key, data).await;
        }
        self.paced(data.len() as u64, || {
            let data = data.clone();
            async move {
                self.direct
                    .put(key, data)
                    .await
                    .map_err(|e| self.failed("put", key, e))
            }
        })
        .await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<PutOutcome> {
        if data.len() > MULTIPART_THRESHOLD {
            if self.head(key).await?.is_some() {
                return Ok(PutOutcome::AlreadyExists);
            }
            self.put_multipart(key, data).await?;
            return Ok(PutOutcome::Created);
        }
        // A throttled conditional PUT was not carried out: sending it again is safe.
        self.paced(data.len() as u64, || {
            let (sse, kms_key) = self.sse_header();
            let data = data.clone();
            async move {
                let sent = self
                    .client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .if_none_match("*")
                    .set_server_side_encryption(sse)
                    .set_ssekms_key_id(kms_key)
                    .body(ByteStream::from(data))
                    .send()
                    .await;
                match sent {
                    Ok(_) => Ok(PutOutcome::Created),
                    Err(SdkError::ServiceError(e))
                        if matches!(
                            e.err().code(),
                            Some("PreconditionFailed") | Some("ConditionalRequestConflict")
                        ) =>
                    {
                        Ok(PutOutcome::AlreadyExists)
                    }
                    Err(e) => Err(self.error("put", key, e)),
                }
            }
        })
        .await
    }

    async fn create(&self, key: &str, data: Bytes) -> StoreResult<PutOutcome> {
        let honoured = *self
            .conditional_writes
            .get_or_try_init(|| async {
                let honoured = super::exclusive::honours_conditional_writes(self, key).await?;
                if !honoured {
                    tracing::warn!(
                        endpoint = %self.endpoint,
                        "this S3 store ignores conditional writes (If-None-Match); snapshot \
                         names are reserved with lease objects instead, which costs about a \
                         second per snapshot"
                    );
                }
                Ok::<_, StoreError>(honoured)
            })
            .await?;
        if honoured {
            self.put_if_absent(key, data).await
        } else {
            super::exclusive::create_under_lease(self, key, data).await
        }
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        self.get_object(key, None).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        self.get_object(key, Some(range)).await
    }

    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        let answer = self
            .paced(0, || async move {
                self.client
                    .head_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| self.error("head", key, e))
            })
            .await;
        match answer {
            Ok(out) => Ok(Some(ObjectMeta {
                key: key.to_string(),
                size: out.content_length().unwrap_or(0).max(0) as u64,
            })),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    async fn copy(&self, from: &str, to: &str) -> StoreResult<()> {
        let source = format!(
            "{}/{}",
            direct::encode_key(&self.bucket),
            direct::encode_key(from)
        );
        self.paced(0, || async {
            self.direct
                .copy(&source, to)
                .await
                .map_err(|e| match self.failed("copy", from, e) {
                    // A missing source answers NoSuchKey; name the source, not the target.
                    StoreError::NotFound { .. } => StoreError::NotFound {
                        key: from.to_string(),
                    },
                    other => other,
                })
        })
        .await
    }

    fn list(&self, prefix: &str) -> BoxStream<'_, StoreResult<ObjectMeta>> {
        let prefix = prefix.to_string();
        futures::stream::try_unfold(
            (Some(None::<String>), prefix),
            move |(token, prefix)| async move {
                let Some(token) = token else {
                    return Ok(None);
                };
                let page = self
                    .paced(0, || {
                        let (prefix, token) = (&prefix, token.clone());
                        async move {
                            self.client
                                .list_objects_v2()
                                .bucket(&self.bucket)
                                .prefix(prefix)
                                .set_continuation_token(token)
                                .send()
                                .await
                                .map_err(|e| self.error("list", prefix, e))
                        }
                    })
                    .await?;
                let items: Vec<StoreResult<ObjectMeta>> = page
                    .contents()
                    .iter()
                    .filter_map(|o| {
                        Some(Ok(ObjectMeta {
                            key: o.key()?.to_string(),
                            size: o.size().unwrap_or(0).max(0) as u64,
                        }))
                    })
                    .collect();
                let next = if page.is_truncated().unwrap_or(false) {
                    page.next_continuation_token().map(|t| Some(t.to_string()))
                } else {
                    None
                };
                Ok(Some((futures::stream::iter(items), (next, prefix))))
            },
        )
        .try_flatten()
        .boxed()
    }

    async fn delete_many(&self, keys: &[String]) -> StoreResult<()> {
        for batch in keys.chunks(1000) {
            let Some(first) = batch.first() else {
                continue;
            };
            let objects = batch
                .iter()
                .map(|key| ObjectIdentifier::builder().key(key).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| self.remote_error("delete", first, e.to_string()))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| self.remote_error("delete", first, e.to_string()))?;
            let out = self
                .paced(0, || {
                    let delete = delete.clone();
                    async move {
                        self.client
                            .delete_objects()
                            .bucket(&self.bucket)
                            .delete(delete)
                            .send()
                            .await
                            .map_err(|e| self.error("delete", first, e))
                    }
                })
                .await?;
            if let Some(failed) = out.errors().first() {
                let key = failed.key().unwrap_or(first);
                return Err(self.remote_error(
                    "delete",
                    key,
                    format!(
                        "{} of {} keys not deleted ({}: {})",
                        out.errors().len(),
                        batch.len(),
                        failed.code().unwrap_or("error"),
                        failed.message().unwrap_or_default()
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn list_folders(&self, prefix: &str) -> StoreResult<Vec<String>> {
        let mut folders = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .paced(0, || {
                    let token = token.clone();
                    async move {
                        self.client
                            .list_objects_v2()
                            .bucket(&self.bucket)
                            .prefix(prefix)
                            .delimiter("/")
                            .set_continuation_token(token)
                            .send()
                            .await
                            .map_err(|e| self.error("list", prefix, e))
                    }
                })
                .await?;
            folders.extend(page.common_prefixes().iter().filter_map(|p| {
                let name = p.prefix()?.strip_prefix(prefix)?.strip_suffix('/')?;
                Some(name.to_string())
            }));
            match page.next_continuation_token() {
                Some(next) if page.is_truncated().unwrap_or(false) => {
                    token = Some(next.to_string())
                }
                _ => break,
            }
        }
        folders.sort();
        Ok(folders)
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.paced(0, || async move {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| self.error("delete", key, e))
        })
        .await?;
        Ok(())
    }
}
