//! `kube-autosave run`: the daemon, configured by the `kubeResourcesAutosave:` section of a
//! `cluster.yaml` (where `enabled: true` is the switch), `KUBE_AUTOSAVE_*` variables and flags.
//! Switched off, it stays up and idle, serving health and metrics, until it is stopped.

use std::net::SocketAddr;

use clap::Args;

use super::policy::{PolicyArgs, effective_policy};
use super::{ClusterArgs, ExitCode, GlobalArgs};
use crate::config::{self, ConfigError};
use crate::daemon::{DaemonSettings, idle, run as run_daemon};

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Time between snapshots, e.g. 24h, 90m [default: the config's interval, else 24h].
    #[arg(long, env = "KUBE_AUTOSAVE_INTERVAL")]
    pub interval: Option<String>,
    /// Retry period for pushes that failed [default: the config's pushInterval, else 1m].
    #[arg(long, env = "KUBE_AUTOSAVE_PUSH_INTERVAL")]
    pub push_interval: Option<String>,
    /// Time between checkpoints of what changed, e.g. 5m; 0 for none [default: the
    /// config's checkpointInterval, else 5m].
    #[arg(long, env = "KUBE_AUTOSAVE_CHECKPOINT_INTERVAL")]
    pub checkpoint_interval: Option<String>,
    /// No new snapshot while staged snapshots take this much local disk, e.g. 4Gi
    /// [default: the config's stagingLimit, else 4Gi].
    #[arg(long, env = "KUBE_AUTOSAVE_STAGING_LIMIT")]
    pub staging_limit: Option<String>,
    /// Address of the health and metrics endpoint [default: :8080].
    #[arg(long, env = "KUBE_AUTOSAVE_LISTEN")]
    pub listen: Option<String>,
    /// The retention policy applied after each push [default: the config's `retention:`,
    /// else every snapshot is kept].
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// `:8080`, `0.0.0.0:8080` or `127.0.0.1:9100`.
fn parse_listen(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    let full = if value.starts_with(':') {
        format!("0.0.0.0{value}")
    } else {
        value.to_string()
    };
    full.parse().map_err(|_| ConfigError::Value {
        key: key.to_string(),
        value: value.to_string(),
        problem: "is not an address to listen on; write e.g. :8080 or 127.0.0.1:8080".to_string(),
    })
}

/// What `run` does.
enum Mode {
    Run(Box<DaemonSettings>),
    /// The configuration file switches it off: serve health and metrics, say why, idle.
    Disabled {
        listen: SocketAddr,
        why: String,
    },
}

/// The whole configuration is checked even when it is switched off, so that switching it on
/// brings no surprise.
fn settings(global: &GlobalArgs, args: &RunArgs) -> Result<Mode, ConfigError> {
    let common = global.resolve()?;
    let (key, interval) = match (&args.interval, &common.file.interval) {
        (Some(v), _) => ("--interval", v.clone()),
        (None, Some(v)) => ("kubeResourcesAutosave.interval", v.clone()),
        (None, None) => ("--interval", "24h".to_string()),
    };
    let interval = config::parse_duration(key, &interval)?;
    let (key, push) = match (&args.push_interval, &common.file.push_interval) {
        (Some(v), _) => ("--push-interval", v.clone()),
        (None, Some(v)) => ("kubeResourcesAutosave.pushInterval", v.clone()),
        (None, None) => ("--push-interval", "1m".to_string()),
    };
    let push_interval = config::parse_duration(key, &push)?;
    let checkpoint_interval = match (&args.checkpoint_interval, &common.file.checkpoint_interval) {
        (Some(v), _) => config::parse_interval_or_off("--checkpoint-interval", v)?,
        (None, Some(v)) => {
            config::parse_interval_or_off("kubeResourcesAutosave.checkpointInterval", v)?
        }
        (None, None) => Some(crate::daemon::DEFAULT_CHECKPOINT_INTERVAL),
    };
    let (key, listen) = match (&args.listen, &common.file.listen) {
        (Some(v), _) => ("--listen", v.clone()),
        (None, Some(v)) => ("kubeResourcesAutosave.listen", v.clone()),
        (None, None) => ("--listen", ":8080".to_string()),
    };
    let listen = parse_listen(key, &listen)?;
    let staging_limit = match (&args.staging_limit, &common.file.staging_limit) {
        (Some(v), _) => Some(("--staging-limit", v.clone())),
        (None, Some(v)) => Some(("kubeResourcesAutosave.stagingLimit", v.clone())),
        (None, None) => None,
    };
    let staging_limit = match staging_limit {
        Some((key, value)) => match config::parse_size(key, &value)? {
            // A cap of nothing would never let a snapshot be taken.
            0 => {
                return Err(ConfigError::Value {
                    key: key.to_string(),
                    value,
                    problem: "must be more than zero".to_string(),
                });
            }
            bytes => bytes,
        },
        None => crate::daemon::DEFAULT_STAGING_LIMIT,
    };
    if let Some(path) = &global.config {
        let key = format!("{}.enabled", config::SECTION);
        let why = match common.file.enabled {
            Some(true) => None,
            Some(false) => Some(format!("{key} is false in {}", path.display())),
            None => Some(format!(
                "{key} is not set in {} (it must be true to take snapshots)",
                path.display()
            )),
        };
        if let Some(why) = why {
            return Ok(Mode::Disabled {
                listen,
                why: format!("{why}; nothing to do"),
            });
        }
    }
    let policy = effective_policy(common.file.retention.as_ref(), &args.policy)?;
    let retention = policy.does_something().then_some(policy);
    Ok(Mode::Run(Box::new(DaemonSettings {
        job: common.job_settings(&args.cluster),
        interval,
        push_interval,
        checkpoint_interval,
        listen,
        staging_limit,
        retention,
        prune: crate::repo::prune::PruneOptions {
            holder: "kube-autosave run (retention)".to_string(),
            ..Default::default()
        },
    })))
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

pub async fn run(global: &GlobalArgs, args: &RunArgs) -> ExitCode {
    let result = match settings(global, args) {
        Ok(Mode::Run(settings)) => run_daemon(*settings, shutdown_signal()).await,
        // Exiting would have a Deployment restart the pod over and over.
        Ok(Mode::Disabled { listen, why }) => idle(listen, &why, shutdown_signal()).await,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::Usage;
        }
    };
    match result {
        Ok(()) => ExitCode::Ok,
        Err(e @ crate::daemon::DaemonError::OtherCluster(_)) => {
            tracing::error!("{e}");
            ExitCode::Usage
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn listen_addresses() {
        assert_eq!(super::parse_listen("l", ":8080").unwrap().port(), 8080);
        assert!(super::parse_listen("l", "127.0.0.1:9").is_ok());
        let err = super::parse_listen("kubeResourcesAutosave.listen", "8080x").unwrap_err();
        assert!(err.to_string().contains("kubeResourcesAutosave.listen"));
    }
}
