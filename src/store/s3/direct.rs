//! PUT and COPY without the SDK: the requests a snapshot sends by the ten thousand (one per
//! plain-layout file), signed with SigV4 and sent over one pooled HTTP client.
//!
//! Why: the SDK's orchestrator spends more CPU on a request than signing and sending it do
//! (endpoint rules evaluated per request, interceptors, a configuration bag built and
//! dropped per request, the user-agent string). At 100,000 objects its copies were about
//! 45 % of a second snapshot's CPU. Every other request (GET, LIST, HEAD, DELETE, multipart
//! and conditional uploads) stays with the SDK: they are few. Both paths share the
//! credentials provider, the pacer and the parent's sorting of errors, so a caller cannot
//! tell which one sent a request.
//!
//! This module never retries a throttled answer (the pacer does, for every request alike) and
//! never puts a credential in an error.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::Sse;

/// Tries of one request that failed on the way (no answer, or a 500, 502 or 504): PUT and
/// COPY are idempotent, so sending one again is safe. The SDK path tries as often.
const ATTEMPTS: u32 = 3;
/// The first pause between tries; doubled each time, with jitter.
const BACKOFF: Duration = Duration::from_millis(200);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One try, answer included: a PUT of a large file on a slow link fits.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(300);
/// Credentials that expire sooner than this are fetched again before they are used.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// Why a request did not succeed.
#[derive(Debug)]
pub(super) enum Failure {
    /// No answer: connection refused or reset, DNS, TLS, a timeout.
    Transport(String),
    /// The credentials chain gave none.
    Credentials(String),
    /// The store answered with an error: its status and the error document's code and
    /// message (empty when it sent none).
    Answer {
        status: u16,
        code: String,
        message: String,
    },
}

/// Where a key's URL is: `<endpoint>/<bucket>/<key>` (path style) or
/// `<scheme>://<bucket>.<host>/<key>` (virtual-hosted, AWS's default).
#[derive(Debug, Clone)]
struct Addressing {
    /// The URL up to the key, with its trailing slash.
    base: String,
}

impl Addressing {
    fn new(endpoint: &str, bucket: &str, path_style: bool) -> Self {
        let endpoint = endpoint.trim_end_matches('/');
        let (scheme, rest) = endpoint.split_once("://").unwrap_or(("https", endpoint));
        let host = rest.split(['/', ':']).next().unwrap_or_default();
        // A bucket with dots does not fit a TLS wildcard certificate, and an IP address or
        // `localhost` has no subdomains: those go path style, as the SDK's rules send them.
        let virtual_host = !path_style
            && !bucket.contains('.')
            && host.parse::<std::net::IpAddr>().is_err()
            && !host.starts_with('[')
            && host != "localhost";
        let base = if virtual_host {
            format!("{scheme}://{bucket}.{rest}/")
        } else {
            format!("{endpoint}/{}/", encode_key(bucket))
        };
        Self { base }
    }

    fn url(&self, key: &str) -> String {
        format!("{}{}", self.base, encode_key(key))
    }
}

/// Percent-encodes a key for a URL path or the `x-amz-copy-source` header: RFC 3986's
/// unreserved characters and the key's slashes stay. Signed as it is (S3 signs the path
/// encoded once).
pub(super) fn encode_key(key: &str) -> String {
    const KEY: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(key, KEY).to_string()
}

/// The credentials of the provider, kept until shortly before they expire, or until the store
/// refuses them.
struct CredentialCache {
    provider: SharedCredentialsProvider,
    cached: tokio::sync::Mutex<Option<Credentials>>,
}

impl CredentialCache {
    async fn get(&self) -> Result<Credentials, Failure> {
        let mut cached = self.cached.lock().await;
        if let Some(credentials) = &*cached {
            let fresh = credentials
                .expiry()
                .is_none_or(|expiry| expiry > SystemTime::now() + REFRESH_BEFORE);
            if fresh {
                return Ok(credentials.clone());
            }
        }
        let credentials = self.provider.provide_credentials().await.map_err(|e| {
            Failure::Credentials(format!(
                "no usable AWS credentials were found: {}",
                aws_sdk_s3::error::DisplayErrorContext(&e)
            ))
        })?;
        *cached = Some(credentials.clone());
        Ok(credentials)
    }

    async fn forget(&self) {
        *self.cached.lock().await = None;
    }
}

/// Signs and sends PUT and COPY requests to one bucket.
pub(super) struct Direct {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    credentials: CredentialCache,
    region: String,
    addressing: Addressing,
    /// The server-side encryption headers every write carries.
    sse: Vec<(&'static str, String)>,
}

impl Direct {
    pub(super) fn new(
        endpoint: &str,
        bucket: &str,
        path_style: bool,
        region: &str,
        provider: SharedCredentialsProvider,
        sse: Option<&Sse>,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let provider_tls = Arc::new(rustls::crypto::ring::default_provider());
        let tls = match hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider_tls.clone())
        {
            Ok(builder) => builder,
            Err(e) => {
                // Plain-HTTP endpoints still work; an HTTPS one fails with a TLS error that
                // says the certificate is not trusted.
                tracing::warn!(error = %e, "no trusted root certificates were found on this system");
                let config = rustls::ClientConfig::builder_with_provider(provider_tls)
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default protocol versions")
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
            }
        };
        let connector = tls.https_or_http().enable_http1().wrap_connector(connector);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let sse = match sse {
            None => Vec::new(),
            Some(Sse::Aes256) => vec![("x-amz-server-side-encryption", "AES256".to_string())],
            Some(Sse::Kms { key_id }) => {
                let mut headers = vec![("x-amz-server-side-encryption", "aws:kms".to_string())];
                if let Some(key_id) = key_id {
                    headers.push((
                        "x-amz-server-side-encryption-aws-kms-key-id",
                        key_id.clone(),
                    ));
                }
                headers
            }
        };
        Self {
            http,
            credentials: CredentialCache {
                provider,
                cached: tokio::sync::Mutex::new(None),
            },
            region: region.to_string(),
            addressing: Addressing::new(endpoint, bucket, path_style),
            sse,
        }
    }

    /// Stores `body` at `key`.
    pub(super) async fn put(&self, key: &str, body: Bytes) -> Result<(), Failure> {
        let url = self.addressing.url(key);
        self.send(&url, &[], body).await
    }

    /// Copies `from` to `to` within the bucket, server-side. `source` is the
    /// `x-amz-copy-source` value (`<bucket>/<encoded key>`).
    pub(super) async fn copy(&self, source: &str, to: &str) -> Result<(), Failure> {
        let url = self.addressing.url(to);
        self.send(&url, &[("x-amz-copy-source", source)], Bytes::new())
            .await
    }

    /// One PUT (a COPY is a PUT with a source header), tried again after transport
    /// failures, 500, 502 and 504, and once with fresh credentials after the store refuses
    /// the ones it was sent with.
    async fn send(&self, url: &str, headers: &[(&str, &str)], body: Bytes) -> Result<(), Failure> {
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let credentials = self.credentials.get().await?;
            let request = self.signed(url, headers, &body, credentials)?;
            let failure = match tokio::time::timeout(ATTEMPT_TIMEOUT, self.exchange(request)).await
            {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(failure)) => failure,
                Err(_) => Failure::Transport(format!(
                    "no answer within {}",
                    humantime::format_duration(ATTEMPT_TIMEOUT)
                )),
            };
            let again = match &failure {
                Failure::Transport(_) => true,
                Failure::Answer {
                    status: 500 | 502 | 504,
                    ..
                } => true,
                Failure::Answer { code, .. }
                    if !refreshed
                        && matches!(
                            code.as_str(),
                            "ExpiredToken" | "InvalidToken" | "InvalidAccessKeyId"
                        ) =>
                {
                    // Rotated or expired before their stated expiry: ask the chain again.
                    refreshed = true;
                    self.credentials.forget().await;
                    attempt -= 1;
                    true
                }
                _ => false,
            };
            if !again || attempt >= ATTEMPTS {
                return Err(failure);
            }
            let pause = BACKOFF * 2u32.pow(attempt.saturating_sub(1));
            tokio::time::sleep(super::super::pacer::jittered(pause)).await;
        }
    }

    fn signed(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &Bytes,
        credentials: Credentials,
    ) -> Result<http::Request<Full<Bytes>>, Failure> {
        let signing_failed = |e: &dyn std::fmt::Display| {
            Failure::Transport(format!("the request could not be signed: {e}"))
        };
        let identity: Identity = credentials.into();
        let mut settings = SigningSettings::default();
        // S3 signs the path as sent (encoded once, not normalized) and wants the payload's
        // SHA-256 in `x-amz-content-sha256`.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| signing_failed(&e))?
            .into();
        let all_headers: Vec<(&str, &str)> = headers
            .iter()
            .copied()
            .chain(self.sse.iter().map(|(name, value)| (*name, value.as_str())))
            .collect();
        let signable = SignableRequest::new(
            "PUT",
            url,
            all_headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| signing_failed(&e))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| signing_failed(&e))?
            .into_parts();
        let mut request = http::Request::builder().method(Method::PUT).uri(url);
        for (name, value) in &all_headers {
            request = request.header(*name, *value);
        }
        let mut request = request
            .body(Full::new(body.clone()))
            .map_err(|e| signing_failed(&e))?;
        instructions.apply_to_request_http1x(&mut request);
        Ok(request)
    }

    /// Sends one request and reads its answer: `Ok` for a 2xx without an error document.
    async fn exchange(&self, request: http::Request<Full<Bytes>>) -> Result<(), Failure> {
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| Failure::Transport(error_chain(&e)))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| Failure::Transport(error_chain(&e)))?
            .to_bytes();
        // A copy can fail after its 200 went out: the error comes as the body.
        let document = std::str::from_utf8(&body).unwrap_or_default();
        let failed_late = (200..300).contains(&status) && document.contains("<Error>");
        if (200..300).contains(&status) && !failed_late {
            return Ok(());
        }
        Err(Failure::Answer {
            status: if failed_late { 500 } else { status },
            code: element(document, "Code").unwrap_or_default().to_string(),
            message: element(document, "Message").unwrap_or_default().to_string(),
        })
    }
}

/// The text of the first `<name>` element of an S3 error document.
fn element<'a>(document: &'a str, name: &str) -> Option<&'a str> {
    let start = document.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + document[start..].find(&format!("</{name}>"))?;
    Some(&document[start..end])
}

/// An error and its sources, as one line: hyper's own message says little ("client error
/// (Connect)") without them.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_percent_encoded_with_their_slashes() {
        assert_eq!(
            encode_key("backup/17-05-04_13-48-33/ns a/x+y.json"),
            "backup/17-05-04_13-48-33/ns%20a/x%2By.json"
        );
    }

    #[test]
    fn addressing_follows_the_endpoint_and_bucket() {
        let path = Addressing::new("http://127.0.0.1:9000/", "bucket", false);
        assert_eq!(path.url("a b/c"), "http://127.0.0.1:9000/bucket/a%20b/c");
        let forced = Addressing::new("https://minio.example", "bucket", true);
        assert_eq!(forced.url("k"), "https://minio.example/bucket/k");
        let aws = Addressing::new("https://s3.eu-west-1.amazonaws.com", "bucket", false);
        assert_eq!(aws.url("k"), "https://bucket.s3.eu-west-1.amazonaws.com/k");
        let dotted = Addressing::new("https://s3.eu-west-1.amazonaws.com", "my.bucket", false);
        assert_eq!(
            dotted.url("k"),
            "https://s3.eu-west-1.amazonaws.com/my.bucket/k"
        );
    }

    #[test]
    fn error_documents_are_read() {
        let document = "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code>\
                        <Message>Please reduce your request rate.</Message></Error>";
        assert_eq!(element(document, "Code"), Some("SlowDown"));
        assert_eq!(
            element(document, "Message"),
            Some("Please reduce your request rate.")
        );
        assert_eq!(element("", "Code"), None);
    }
}
