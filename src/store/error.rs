//! Errors of the store: every variant names the key, object or path it concerns, and the
//! user-facing message says what to do about it.

use std::path::PathBuf;

use super::id::{ObjectId, PackId};

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid destination {uri:?}: {reason}")]
    InvalidUri { uri: String, reason: String },

    #[error("{key}: not found")]
    NotFound { key: String },

    #[error(
        "could not connect to the endpoint URL {endpoint} ({op} {key}): {message}; \
         check the endpoint, the network and that the S3 service is up"
    )]
    Unreachable {
        endpoint: String,
        op: &'static str,
        key: String,
        message: String,
    },

    #[error(
        "access denied by {endpoint} ({op} {key}): {message}; check the AWS credentials \
         (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profile or IRSA role), the bucket policy \
         and, for a KMS-encrypted bucket, --sse aws:kms with the right key id"
    )]
    AccessDenied {
        endpoint: String,
        op: &'static str,
        key: String,
        message: String,
    },

    #[error("bucket {bucket:?} does not exist at {endpoint}; create it or fix the destination URI")]
    NoSuchBucket { endpoint: String, bucket: String },

    #[error(
        "{endpoint} kept throttling requests ({op} {key}: {message}) through every pause; \
         it is tried again later. Fewer requests at once (exportConcurrency) or a bucket \
         prefix of its own may help"
    )]
    Throttled {
        endpoint: String,
        op: &'static str,
        key: String,
        message: String,
    },

    #[error("{op} {key} at {endpoint} failed: {message}")]
    Remote {
        endpoint: String,
        op: &'static str,
        key: String,
        message: String,
    },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("object {object} in pack {pack:#} is corrupt: {reason}; run `kube-autosave verify`")]
    Corrupt {
        object: ObjectId,
        pack: PackId,
        reason: String,
    },

    #[error("object {0:#} is not in the store (no index file lists it)")]
    MissingObject(ObjectId),

    #[error("{key}: malformed {what}: {reason}")]
    Malformed {
        key: String,
        what: &'static str,
        reason: String,
    },

    #[error(
        "the local index at {path} is in use by another kube-autosave process; stop it or \
         point --cache-dir elsewhere"
    )]
    IndexLocked { path: PathBuf },

    #[error("local index at {path}: {message}")]
    Index { path: PathBuf, message: String },
}

impl StoreError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }

    /// A short, stable name for the kind of error: the `reason` label of the daemon's
    /// failure counters.
    pub fn reason(&self) -> &'static str {
        match self {
            StoreError::InvalidUri { .. } => "invalid_uri",
            StoreError::NotFound { .. } => "not_found",
            StoreError::Unreachable { .. } => "unreachable",
            StoreError::AccessDenied { .. } => "access_denied",
            StoreError::NoSuchBucket { .. } => "no_such_bucket",
            StoreError::Throttled { .. } => "throttled",
            StoreError::Remote { .. } => "remote_error",
            StoreError::Io { .. } => "local_io",
            StoreError::Corrupt { .. } => "corrupt",
            StoreError::MissingObject(_) => "missing_object",
            StoreError::Malformed { .. } => "malformed",
            StoreError::IndexLocked { .. } | StoreError::Index { .. } => "local_index",
        }
    }

    /// True when the error says the key does not exist (as opposed to a failure to tell).
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    /// True for errors about reaching or using the destination rather than about its data:
    /// the network, DNS, TLS, 5xx and throttling, missing or expired credentials, a denied
    /// request, a bucket that is not (yet) there. They may go away without
    /// anything here changing (a credentials file mounted later, a policy fixed, a bucket
    /// created), so the daemon stages and retries instead of stopping, and one-shot commands
    /// stop at the first instead of reporting every key as damaged.
    pub fn is_outage(&self) -> bool {
        matches!(
            self,
            StoreError::Unreachable { .. }
                | StoreError::Throttled { .. }
                | StoreError::Remote { .. }
                | StoreError::AccessDenied { .. }
                | StoreError::NoSuchBucket { .. }
        )
    }
}
