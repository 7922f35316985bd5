//! Shared fixtures of the integration tests: real servers on loopback and test data.

pub mod cluster;
pub mod objects;
pub mod s3_server;

use std::sync::Arc;

use kube_autosave::store::{DynBackend, PrefixBackend, S3Backend, Store, StoreConfig};

pub use s3_server::S3Server;

/// The project's S3 backend on the test server's bucket, under `prefix`.
pub async fn s3_backend(server: &S3Server, prefix: &str) -> DynBackend {
    let s3 = S3Backend::connect(s3_server::BUCKET, &server.options())
        .await
        .expect("S3 backend");
    Arc::new(PrefixBackend::new(s3, prefix))
}

/// A reader's store on the test server under `prefix`, with its own local index in `cache`
/// (as a restore or a verify on another machine).
pub async fn reader_store(server: &S3Server, prefix: &str, cache: &std::path::Path) -> Store {
    Store::open(
        s3_backend(server, prefix).await,
        cache,
        StoreConfig::default(),
    )
    .await
    .expect("a reader's store")
}

/// Logs of the test run go to the test's output when RUST_LOG is set.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
