//! What the commands print: a progress bar on a terminal (plain log lines otherwise) and the
//! summary at the end of a snapshot.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

use crate::job::{JobProgress, JobReport};
use crate::snapshot::Progress;

/// A duration for people, to the millisecond: `1m 2s 345ms`. Finer parts say nothing about
/// a job that takes seconds and would only make the line longer.
pub fn duration(d: Duration) -> humantime::FormattedDuration {
    let millis = (d.as_micros() + 500) / 1000;
    humantime::format_duration(Duration::from_millis(
        u64::try_from(millis).unwrap_or(u64::MAX),
    ))
}

/// Progress reporting for one job: a spinner with counts on a terminal, log lines otherwise.
pub fn job_progress() -> (JobProgress, Option<ProgressBar>) {
    if !std::io::stderr().is_terminal() {
        let snapshot = Arc::new(|event: Progress| match event {
            Progress::Discovered { resources, skipped } => {
                tracing::info!(resources, skipped, "discovered the cluster's resources")
            }
            Progress::ResourceDone { resource, objects } => {
                tracing::debug!(%resource, objects, "listed")
            }
            Progress::ResourceSkipped { resource, reason } => {
                tracing::warn!(%resource, %reason, "skipped")
            }
            Progress::Page { .. } => {}
        });
        return (
            JobProgress {
                snapshot: Some(snapshot),
                export: None,
            },
            None,
        );
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let objects = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let resources = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (snapshot_bar, seen, done) = (bar.clone(), objects.clone(), resources.clone());
    let snapshot = Arc::new(move |event: Progress| {
        use std::sync::atomic::Ordering::Relaxed;
        match event {
            Progress::Discovered { resources, .. } => {
                snapshot_bar.set_length(resources as u64);
                snapshot_bar.set_message(format!("listing {resources} resources"));
            }
            Progress::Page { objects } => {
                let total = seen.fetch_add(objects, Relaxed) + objects;
                snapshot_bar.set_message(format!(
                    "listing: {} resources done, {total} objects read",
                    done.load(Relaxed)
                ));
            }
            Progress::ResourceDone { .. } => {
                done.fetch_add(1, Relaxed);
            }
            Progress::ResourceSkipped { resource, reason } => {
                snapshot_bar.println(format!("skipped {resource}: {reason}"));
            }
        }
    });
    let export_bar = bar.clone();
    let files = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let export = Arc::new(move |_: &crate::repo::manifest::ExportedFile| {
        let n = files.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        export_bar.set_message(format!("writing the plain layout: {n} files"));
    });
    (
        JobProgress {
            snapshot: Some(snapshot),
            export: Some(export),
        },
        Some(bar),
    )
}

/// The end-of-job summary.
pub fn summary(report: &JobReport, layout: &str) -> String {
    let m = &report.manifest;
    let s = &m.stats;
    let namespaces = m.namespaces().keys().filter(|ns| ns.is_some()).count();
    let mut out = String::new();
    let mut line = |label: &str, value: String| out.push_str(&format!("  {label:<14}{value}\n"));
    line("snapshot", format!("{} of cluster {:?}", m.time, m.cluster));
    line(
        "objects",
        format!(
            "{} in {} resources, {} namespaces ({} left out by the rules)",
            s.objects,
            m.resources.len(),
            namespaces,
            s.excluded
        ),
    );
    line(
        "new objects",
        format!(
            "{} ({} raw, {} compressed)",
            s.store.new_objects,
            HumanBytes(s.store.new_raw_bytes),
            HumanBytes(s.store.compressed_bytes)
        ),
    );
    line(
        "uploaded",
        format!(
            "{} in {} PUT requests ({} plain-layout files uploaded)",
            HumanBytes(report.requests.put_bytes),
            report.requests.puts,
            report.export.files_uploaded
        ),
    );
    line(
        "copied",
        format!(
            "{} server-side in {} files",
            HumanBytes(report.export.bytes_copied),
            report.export.files_copied
        ),
    );
    line("duration", duration(report.duration).to_string());
    line("plain layout", layout.to_string());
    if m.skipped.is_empty() {
        line("skipped", "nothing".to_string());
    } else {
        line(
            "skipped",
            format!("{} (the snapshot is otherwise complete):", m.skipped.len()),
        );
        for skipped in &m.skipped {
            out.push_str(&format!("    {}: {}\n", skipped.what(), skipped.reason));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn durations_are_rounded_to_the_millisecond() {
        let shown = |d: Duration| super::duration(d).to_string();
        assert_eq!(shown(Duration::from_micros(1_234_567)), "1s 235ms");
        assert_eq!(shown(Duration::from_secs(62)), "1m 2s");
        assert_eq!(shown(Duration::from_micros(400)), "0s");
    }
}
