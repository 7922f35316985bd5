//! `kube-autosave snapshot` and `kube-autosave demo`.

use std::path::PathBuf;

use clap::Args;

use super::output;
use super::{ClusterArgs, ExitCode, GlobalArgs};
use crate::job::{JobError, JobReport, JobSettings, open_backend, run_job};
use crate::snapshot::SnapshotError;
use crate::store::{Destination, Folder};

fn layout_location(settings: &JobSettings, report: &JobReport) -> String {
    let base = settings.destination.base_prefix(&settings.cluster_name);
    let folder = Folder::Backup(&report.manifest.time).prefix();
    match &settings.destination {
        Destination::S3 { bucket, prefix } => {
            let base = if prefix.is_empty() {
                settings.cluster_name.clone()
            } else {
                base
            };
            format!("s3://{bucket}/{base}/{folder}")
        }
        Destination::Local { path } => path
            .join(&settings.cluster_name)
            .join(folder)
            .display()
            .to_string(),
    }
}

/// Runs one job and prints its summary; returns the exit code.
async fn run_and_report(settings: &JobSettings) -> Result<JobReport, ExitCode> {
    let backend = open_backend(&settings.destination, &settings.cluster_name, &settings.s3)
        .await
        .map_err(|e| {
            tracing::error!("{e}");
            ExitCode::Failed
        })?;
    let (progress, bar) = output::job_progress();
    let result = run_job(settings, backend, progress).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match result {
        Ok(report) => {
            for earlier in &report.catch_up.finished {
                println!("finished the interrupted export of snapshot {earlier}");
            }
            for (earlier, why) in &report.catch_up.failed {
                println!(
                    "could not finish the export of snapshot {earlier} ({why}); the next run tries again"
                );
            }
            print!(
                "{}",
                output::summary(&report, &layout_location(settings, &report))
            );
            Ok(report)
        }
        Err(e @ JobError::Snapshot(SnapshotError::OtherCluster(_))) => {
            tracing::error!("snapshot refused: {e}");
            Err(ExitCode::Usage)
        }
        Err(e) => {
            tracing::error!("snapshot failed: {e}");
            Err(ExitCode::Failed)
        }
    }
}

fn exit_code(report: &JobReport) -> ExitCode {
    if report.manifest.skipped.is_empty() && report.catch_up.failed.is_empty() {
        ExitCode::Ok
    } else {
        ExitCode::Partial
    }
}

pub async fn snapshot(global: &GlobalArgs, cluster: &ClusterArgs) -> ExitCode {
    let common = match global.resolve() {
        Ok(common) => common,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::Usage;
        }
    };
    let settings = common.job_settings(cluster);
    match run_and_report(&settings).await {
        Ok(report) => exit_code(&report),
        Err(code) => code,
    }
}

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
