//! `kube-autosave snapshot`.

use super::output;
use super::{ClusterArgs, ExitCode, GlobalArgs};
use crate::job::{JobError, JobReport, JobSettings, open_backend, run_job};
use crate::snapshot::SnapshotError;
use crate::store::{Destination, Folder};

pub(super) fn layout_location(settings: &JobSettings, report: &JobReport) -> String {
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
pub(super) async fn run_and_report(settings: &JobSettings) -> Result<JobReport, ExitCode> {
    let backend = open_backend(&settings.destination, &settings.cluster_name, &settings.s3)
        .await
        .map_err(|e| {
            tracing::error!("{e}");
            ExitCode::Failed
        })?;
    let (progress, bar) = output::job_progress();
    // On the runtime's workers, where the tasks of its connections run: polled by
    // `block_on` on the main thread, the job would be woken across threads (a task switch
    // in the kernel) for each of its thousands of requests' answers.
    let job = {
        let settings = settings.clone();
        tokio::spawn(async move { run_job(&settings, backend, progress).await })
    };
    let result = crate::task::joined(job.await);
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

pub(super) fn exit_code(report: &JobReport) -> ExitCode {
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
