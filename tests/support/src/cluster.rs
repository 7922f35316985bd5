//! The simulated API server as the tests use it: started on loopback with a seeded cluster,
//! reached through a kubeconfig it writes, like a real cluster.

use kube_autosave::kube::{Api, ClusterOptions, RetryPolicy, connect};
use kube_sim::{SimConfig, SimServer};

pub struct Cluster {
    pub sim: SimServer,
    pub kubeconfig: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub async fn start(objects: usize, seed: u64) -> Cluster {
        Self::start_with(SimConfig {
            objects,
            seed,
            ..SimConfig::default()
        })
        .await
    }

    pub async fn start_with(config: SimConfig) -> Cluster {
        let sim = SimServer::start(config)
            .await
            .expect("simulated API server");
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        sim.write_kubeconfig(&kubeconfig).unwrap();
        Cluster {
            sim,
            kubeconfig,
            _dir: dir,
        }
    }

    pub fn options(&self) -> ClusterOptions {
        ClusterOptions {
            kubeconfig: Some(self.kubeconfig.clone()),
            context: None,
        }
    }

    /// An API client with short retry waits, so fault tests stay quick.
    pub async fn api(&self) -> Api {
        let client = connect(&self.options())
            .await
            .expect("client for the simulator");
        Api::new(client, quick_retries())
    }
}

pub fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: std::time::Duration::from_millis(20),
        max_backoff: std::time::Duration::from_millis(200),
        ..RetryPolicy::default()
    }
}
