//! `kube-autosave demo`: the whole story against the bundled simulated API server, no
//! cluster needed. Behind the `demo` cargo feature (on by default), so that the image built
//! for clusters does not carry the simulator.

use std::path::PathBuf;

use clap::Args;

use super::snapshot::{exit_code, layout_location, run_and_report};
use super::{ClusterArgs, ExitCode, GlobalArgs};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Objects in the simulated cluster.
    #[arg(long, default_value_t = 5_000)]
    pub objects: usize,
    /// The folder that receives the snapshots (and the simulator's kubeconfig).
    #[arg(long, default_value = "kube-autosave-demo")]
    pub dir: PathBuf,
}

pub async fn demo(global: &GlobalArgs, args: &DemoArgs) -> ExitCode {
    let sim = match kube_sim::SimServer::start(kube_sim::SimConfig {
        objects: args.objects,
        ..kube_sim::SimConfig::default()
    })
    .await
    {
        Ok(sim) => sim,
        Err(e) => {
            tracing::error!("cannot start the simulated API server: {e}");
            return ExitCode::Failed;
        }
    };
    let kubeconfig = args.dir.join("kubeconfig.yaml");
    if let Err(e) =
        std::fs::create_dir_all(&args.dir).and_then(|_| sim.write_kubeconfig(&kubeconfig))
    {
        tracing::error!("cannot write {}: {e}", kubeconfig.display());
        return ExitCode::Failed;
    }
    println!(
        "simulated API server with {} objects at {} (kubeconfig: {})",
        sim.objects().len(),
        sim.url(),
        kubeconfig.display()
    );
    let mut global = global.clone();
    global.to = Some(args.dir.join("backups").display().to_string());
    global
        .cluster_name
        .get_or_insert_with(|| "demo-cluster".to_string());
    global
        .cache_dir
        .get_or_insert_with(|| args.dir.join("cache"));
    let common = match global.resolve() {
        Ok(common) => common,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::Usage;
        }
    };
    let cluster = ClusterArgs {
        kubeconfig: Some(kubeconfig.clone()),
        context: None,
        page_size: None,
        concurrency: None,
        export_concurrency: None,
    };
    let settings = common.job_settings(&cluster);

    println!("\nfirst snapshot:");
    if let Err(code) = run_and_report(&settings).await {
        return code;
    }
    let churn = sim.churn(0.01, 7);
    println!(
        "\nthe cluster changed: {} objects modified, {} added, {} deleted\n\nsecond snapshot:",
        churn.modified.len(),
        churn.added.len(),
        churn.deleted.len()
    );
    // Snapshot names have a resolution of one second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let report = match run_and_report(&settings).await {
        Ok(report) => report,
        Err(code) => return code,
    };
    println!(
        "\nLook at the plain layout with `ls {}` and apply any file with `kubectl apply -f`.\n\
         The simulated cluster stops when this command ends.",
        layout_location(&settings, &report)
    );
    exit_code(&report)
}
