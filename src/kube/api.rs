//! Requests to the Kubernetes API server with the behaviour a backup needs on a busy or
//! flaky server: a timeout on every request, bounded retries with backoff on 429 (honouring
//! Retry-After), 5xx and dropped connections, and errors that keep the server's `Status`
//! (code, reason, message) so that a skipped resource can say why.

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

/// How hard to try.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request, the first one included.
    pub attempts: u32,
    /// Attempts for 503 Service Unavailable: an aggregated API whose backend is down answers
    /// that for a long time, so it gets fewer tries before the group is skipped.
    pub attempts_unavailable: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Upper bound on a server-requested Retry-After.
    pub max_retry_after: Duration,
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 6,
            attempts_unavailable: 2,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// An API request that did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The server answered with an error status.
    #[error("{code} {reason}: {message}")]
    Status {
        code: u16,
        reason: String,
        message: String,
        /// `metadata.continue` of a 410 Expired status: a token to go on inconsistently.
        continue_token: Option<String>,
    },
    /// No answer: connection refused or reset, or a timeout.
    #[error("no answer from the API server: {0}")]
    Transport(String),
    /// An answer that is not what the API promises.
    #[error("unexpected answer from the API server: {0}")]
    Decode(String),
}

impl ApiError {
    pub fn code(&self) -> Option<u16> {
        match self {
            ApiError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// 410 Gone with reason Expired: a continue token too old to go on consistently.
    pub fn is_expired(&self) -> bool {
        matches!(self, ApiError::Status { code: 410, .. })
    }
}

#[derive(Deserialize, Default)]
struct StatusBody {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    metadata: StatusMeta,
}

#[derive(Deserialize, Default)]
struct StatusMeta {
    #[serde(rename = "continue")]
    continue_token: Option<String>,
}

/// The body of a streaming answer, read as it arrives.
pub type BodyReader = std::pin::Pin<Box<dyn futures::io::AsyncBufRead + Send>>;

/// A thin layer over `kube::Client` for raw requests with retries.
#[derive(Clone)]
pub struct Api {
    client: kube::Client,
    policy: RetryPolicy,
}

impl Api {
    pub fn new(client: kube::Client, policy: RetryPolicy) -> Self {
        Self { client, policy }
    }

    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// GETs `path_and_query` and returns the body of a 2xx answer, retrying what is worth it.
    pub async fn get(&self, path_and_query: &str, accept: &str) -> Result<Bytes, ApiError> {
        self.request(http::Method::GET, path_and_query, accept, None)
            .await
    }

    /// GETs one object; `None` when the server answers 404 Not Found.
    pub async fn get_opt(&self, path: &str) -> Result<Option<Bytes>, ApiError> {
        match self.get(path, "application/json").await {
            Ok(body) => Ok(Some(body)),
            Err(ApiError::Status { code: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// POSTs a JSON object to a collection (a create); returns the created object's body.
    pub async fn post(&self, path: &str, body: Bytes) -> Result<Bytes, ApiError> {
        self.request(http::Method::POST, path, "application/json", Some(body))
            .await
    }

    /// PUTs a JSON object to its own path (a replace); returns the stored object's body.
    pub async fn put(&self, path: &str, body: Bytes) -> Result<Bytes, ApiError> {
        self.request(http::Method::PUT, path, "application/json", Some(body))
            .await
    }

    /// GETs `path_and_query` and hands back the body of a 2xx answer as it arrives, for a
    /// watch: the answer's head must come within the request timeout, its body may last as
    /// long as the server keeps it open. No retries: a watch that cannot open is resumed or
    /// relisted by its caller, which knows from where.
    pub async fn get_streaming(
        &self,
        path_and_query: &str,
        accept: &str,
    ) -> Result<BodyReader, ApiError> {
        let request = http::Request::builder()
            .method(http::Method::GET)
            .uri(path_and_query)
            .header(http::header::ACCEPT, accept)
            // One gzip member per event is more than the client's decoder reads.
            .header(http::header::ACCEPT_ENCODING, "identity")
            .body(Vec::new())
            .map_err(|e| ApiError::Decode(e.to_string()))?;
        let opening = self.client.request_stream(request);
        match tokio::time::timeout(self.policy.request_timeout, opening).await {
            Ok(Ok(body)) => Ok(Box::pin(body)),
            Ok(Err(kube::Error::Api(status))) => Err(ApiError::Status {
                code: status.code,
                reason: status.reason.clone(),
                message: status.message.clone(),
                continue_token: None,
            }),
            Ok(Err(e)) => Err(ApiError::Transport(e.to_string())),
            Err(_) => Err(ApiError::Transport(format!(
                "GET {path_and_query} timed out after {:?}",
                self.policy.request_timeout
            ))),
        }
    }

    /// Sends one request and returns the body of a 2xx answer, retrying 429, 5xx and dropped
    /// connections with backoff (a retried write that had landed answers 409, which callers
    /// of `post` read as "exists").
    pub async fn request(
        &self,
        method: http::Method,
        path_and_query: &str,
        accept: &str,
        body: Option<Bytes>,
    ) -> Result<Bytes, ApiError> {
        let mut attempt = 0u32;
        let mut backoff = self.policy.initial_backoff;
        loop {
            attempt += 1;
            let (err, retry_after) = match self
                .send_once(&method, path_and_query, accept, body.clone())
                .await
            {
                Ok(body) => return Ok(body),
                Err(failure) => failure,
            };
            let budget = match &err {
                ApiError::Status { code: 503, .. } => self.policy.attempts_unavailable,
                ApiError::Status { code, .. } if *code == 429 || *code >= 500 => {
                    self.policy.attempts
                }
                ApiError::Transport(_) => self.policy.attempts,
                _ => return Err(err),
            };
            if attempt >= budget {
                return Err(err);
            }
            let wait = retry_after
                .map(|d| d.min(self.policy.max_retry_after))
                .unwrap_or_else(|| jitter(backoff));
            tracing::debug!(%method, path = path_and_query, attempt, error = %err, ?wait, "retrying");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(self.policy.max_backoff);
        }
    }

    async fn send_once(
        &self,
        method: &http::Method,
        path_and_query: &str,
        accept: &str,
        body: Option<Bytes>,
    ) -> Result<Bytes, (ApiError, Option<Duration>)> {
        let builder = http::Request::builder()
            .method(method.clone())
            .uri(path_and_query)
            .header(http::header::ACCEPT, accept);
        let request = match body {
            Some(body) => builder
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(kube::client::Body::from(body)),
            None => builder.body(kube::client::Body::empty()),
        }
        .map_err(|e| (ApiError::Decode(e.to_string()), None))?;
        let exchange = async {
            let response = self
                .client
                .send(request)
                .await
                .map_err(|e| (ApiError::Transport(e.to_string()), None))?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = response
                .into_body()
                .collect_bytes()
                .await
                .map_err(|e| (ApiError::Transport(e.to_string()), None))?;
            if status.is_success() {
                return Ok(body);
            }
            let parsed: StatusBody = serde_json::from_slice(&body).unwrap_or_default();
            let error = ApiError::Status {
                code: status.as_u16(),
                reason: if parsed.reason.is_empty() {
                    status.canonical_reason().unwrap_or("Error").to_string()
                } else {
                    parsed.reason
                },
                message: if parsed.message.is_empty() {
                    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
                } else {
                    parsed.message
                },
                continue_token: parsed.metadata.continue_token,
            };
            Err((error, retry_after))
        };
        match tokio::time::timeout(self.policy.request_timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err((
                ApiError::Transport(format!(
                    "{method} {path_and_query} timed out after {:?}",
                    self.policy.request_timeout
                )),
                None,
            )),
        }
    }
}

/// Spreads retries of concurrent requests: 50-100 % of the nominal backoff.
fn jitter(backoff: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let fraction = 0.5 + f64::from(nanos % 1000) / 2000.0;
    backoff.mul_f64(fraction)
}

/// Percent-encodes a query parameter value (everything but RFC 3986's unreserved characters).
pub fn encode_query(value: &str) -> String {
    const VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(value, VALUE).to_string()
}
