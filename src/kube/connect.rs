//! Connecting to the cluster with the standard kubeconfig chain: `--kubeconfig` and
//! `--context` when given, else `KUBECONFIG`, `~/.kube/config`, or the in-cluster service
//! account.

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};

#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

/// The cluster could not be reached with the configured kubeconfig or service account; the
/// message says what to fix.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ConnectError(pub String);

pub async fn connect(options: &ClusterOptions) -> Result<kube::Client, ConnectError> {
    // Both rustls back ends are linked (kube uses ring, the AWS SDK aws-lc); name one for the
    // process, or rustls refuses to pick. A second call finds it installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kube_options = KubeConfigOptions {
        context: options.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &options.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| {
                ConnectError(format!("cannot read kubeconfig {}: {e}", path.display()))
            })?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &kube_options)
                .await
                .map_err(|e| ConnectError(format!("kubeconfig {}: {e}", path.display())))?
        }
        None if options.context.is_some() => kube::Config::from_kubeconfig(&kube_options)
            .await
            .map_err(|e| ConnectError(format!("kubeconfig: {e}")))?,
        None => kube::Config::infer().await.map_err(|e| {
            ConnectError(format!(
                "no cluster configured ({e}); pass --kubeconfig, set KUBECONFIG, or run in a pod"
            ))
        })?,
    };
    let mut config = config;
    // Our own retry policy (`api::RetryPolicy`) is bounded and honours Retry-After; kube's
    // would retry 429/503 for minutes underneath it.
    config.default_retry = false;
    kube::Client::try_from(config)
        .map_err(|e| ConnectError(format!("cannot create the API client: {e}")))
}
