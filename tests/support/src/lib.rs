//! What kube-autosave's integration tests and benchmarks share: real servers on loopback (an
//! S3 server, the simulated API server reached through a kubeconfig), the store and job
//! set-ups the tests start from, and realistic test objects.
//!
//! It never fakes what it stands for: the S3 server speaks S3 over HTTP with SigV4, the
//! cluster is kube-sim over TLS, and the project is reached through its public API.

pub mod cluster;
pub mod objects;
pub mod prometheus;
pub mod s3_server;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use futures::TryStreamExt;
use kube_autosave::kube::ResourceType;
use kube_autosave::repo::{Manifest, ManifestObject};
use kube_autosave::store::{DynBackend, ObjectId, PrefixBackend, S3Backend, Store, StoreConfig};

pub use s3_server::S3Server;

/// The kinds a restore leaves to the new cluster's nodes, drivers and controllers (each with
/// its reason in the plan); a snapshot still records them.
pub const NODE_AND_CONTROLLER_BOUND: [&str; 7] = [
    "CSINode",
    "VolumeAttachment",
    "ResourceSlice",
    "IPAddress",
    "CertificateSigningRequest",
    "StorageVersion",
    "StorageVersionMigration",
];

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

/// A job's settings for `s3://backups/team`, cluster `prod`, on the test servers.
pub fn job_settings(
    s3: &S3Server,
    cluster: &cluster::Cluster,
    cache_dir: &Path,
) -> kube_autosave::job::JobSettings {
    kube_autosave::job::JobSettings {
        destination: "s3://backups/team".parse().unwrap(),
        cluster_name: "prod".to_string(),
        s3: s3.options(),
        cache_dir: cache_dir.to_path_buf(),
        cluster: cluster.options(),
        snapshot: kube_autosave::snapshot::SnapshotOptions {
            cluster_name: "prod".to_string(),
            retry: cluster::quick_retries(),
            ..Default::default()
        },
        store: StoreConfig::default(),
        export: Default::default(),
        locks: Default::default(),
    }
}

/// One snapshot job with `settings`, a second after the last one (snapshot names have a
/// resolution of one second).
pub async fn snapshot_job(
    settings: &kube_autosave::job::JobSettings,
) -> kube_autosave::job::JobReport {
    tokio::time::sleep(std::time::Duration::from_millis(1050)).await;
    let backend = kube_autosave::job::open_backend(
        &settings.destination,
        &settings.cluster_name,
        &settings.s3,
    )
    .await
    .unwrap();
    kube_autosave::job::run_job(settings, backend, Default::default())
        .await
        .expect("snapshot job")
}

/// Every object of a snapshot with its resource and its content, read from `store`.
pub async fn snapshot_contents<'m>(
    manifest: &'m Manifest,
    store: &Store,
) -> Vec<(&'m ResourceType, &'m ManifestObject, serde_json::Value)> {
    let ids: Vec<ObjectId> = manifest.objects.iter().map(|o| o.id).collect();
    let bytes: std::collections::HashMap<ObjectId, bytes::Bytes> = store
        .get_many(ids)
        .try_collect()
        .await
        .expect("the snapshot's objects");
    manifest
        .objects
        .iter()
        .map(|o| {
            let content = serde_json::from_slice(&bytes[&o.id]).expect("stored objects are JSON");
            (manifest.resource_of(o), o, content)
        })
        .collect()
}

/// The resource type of an object of the simulated cluster, as discovery finds it.
pub fn resource_type_of(key: &kube_sim::ObjectKey) -> ResourceType {
    ResourceType {
        group: key.group.clone(),
        version: key.version.clone(),
        kind: key.kind.clone(),
        resource: key.resource.clone(),
        namespaced: key.namespace.is_some(),
    }
}

/// `program` run in `dir` with a clean environment: nothing of the machine's AWS or kube
/// set-up leaks in.
pub fn clean_command(program: impl AsRef<std::ffi::OsStr>, dir: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        // Keep the AWS chain to what the test gives it.
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        );
    command
}

/// The test S3 server's credentials and region, in the environment.
pub fn s3_credentials(command: &mut Command) -> &mut Command {
    command
        .env("AWS_ACCESS_KEY_ID", s3_server::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", s3_server::SECRET_KEY)
        .env("AWS_REGION", "us-east-1")
}

/// The test S3 server for the binary: credentials in the environment, endpoint in flags.
pub fn with_s3<'a>(command: &'a mut Command, s3: &S3Server) -> &'a mut Command {
    s3_credentials(command).args(["--s3-endpoint", &s3.endpoint(), "--path-style"])
}

/// Logs of the test run go to the test's output when RUST_LOG is set.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
