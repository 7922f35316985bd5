//! `kube-autosave forget` and `kube-autosave prune`: apply the retention policy (or remove
//! named snapshots) and reclaim what no remaining snapshot refers to. Both print their plan;
//! `--dry-run` prints it and changes nothing.

use std::time::Duration;

use clap::Args;
use indicatif::HumanBytes;

use super::inspect::open_store;
use super::output;
use super::policy::{PolicyArgs, effective_policy};
use super::{ExitCode, GlobalArgs};
use crate::repo::lock::{LockError, LockTimes};
use crate::repo::prune::{
    self, ForgetPlan, ForgetReport, LayoutRemoval, Outcome, PruneError, PruneOptions, PrunePlan,
    PruneReport, Selection,
};
use crate::store::SnapshotTime;

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Forget these snapshots (yy-mm-dd_HH-MM-SS) instead of applying the retention policy.
    pub snapshots: Vec<String>,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Prune after forgetting: reclaim what the remaining snapshots do not refer to.
    #[arg(long)]
    pub prune: bool,
    #[command(flatten)]
    pub run: PruneRunArgs,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub run: PruneRunArgs,
}

#[derive(Debug, Args)]
pub struct PruneRunArgs {
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Rewrite a pack when more than this share of it is unused, e.g. 10% or 0.1.
    #[arg(long, value_parser = parse_share, default_value = "10%")]
    pub max_unused: f64,
    /// How long to wait for another prune, or for snapshots being written, before giving up.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    pub wait: Duration,
}

/// `10%`, `0.1` or `10` (percent when above 1).
fn parse_share(text: &str) -> Result<f64, String> {
    let trimmed = text.trim();
    let (number, percent) = match trimmed.strip_suffix('%') {
        Some(number) => (number, true),
        None => (trimmed, false),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a share; write it as 10% or 0.1"))?;
    let share = if percent || value > 1.0 {
        value / 100.0
    } else {
        value
    };
    if !(0.0..=1.0).contains(&share) {
        return Err(format!("{text:?} is not between 0% and 100%"));
    }
    Ok(share)
}

fn options(args: &PruneRunArgs, holder: &str) -> PruneOptions {
    PruneOptions {
        max_unused: args.max_unused,
        lock: LockTimes {
            wait: args.wait,
            ..LockTimes::default()
        },
        holder: holder.to_string(),
    }
}

pub async fn forget(global: &GlobalArgs, args: &ForgetArgs) -> ExitCode {
    let selection = if args.snapshots.is_empty() {
        let common = match global.resolve() {
            Ok(common) => common,
            Err(e) => return fail(e, ExitCode::Usage),
        };
        let policy = match effective_policy(common.file.retention.as_ref(), &args.policy) {
            Ok(policy) => policy,
            Err(e) => return fail(e, ExitCode::Usage),
        };
        if !policy.does_something() {
            return fail(
                "no retention policy is set (`retention:` in the configuration, or --keep-daily \
                 and the other --keep-* flags) and no snapshot is named; nothing to forget",
                ExitCode::Usage,
            );
        }
        println!("retention policy: {policy}");
        Selection::Policy(policy)
    } else {
        let mut names = Vec::new();
        for name in &args.snapshots {
            match name.parse::<SnapshotTime>() {
                Ok(time) => names.push(time),
                Err(e) => return fail(e, ExitCode::Usage),
            }
        }
        Selection::Named(names)
    };
    let holder = if args.prune {
        "kube-autosave forget --prune"
    } else {
        "kube-autosave forget"
    };
    execute(global, Some(&selection), args.prune, &args.run, holder).await
}

pub async fn prune(global: &GlobalArgs, args: &PruneArgs) -> ExitCode {
    execute(global, None, true, &args.run, "kube-autosave prune").await
}

async fn execute(
    global: &GlobalArgs,
    selection: Option<&Selection>,
    prune_too: bool,
    args: &PruneRunArgs,
    holder: &str,
) -> ExitCode {
    let store = match open_store(global).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let outcome = match prune::run(
        &store,
        store.backend(),
        selection,
        prune_too,
        &options(args, holder),
        args.dry_run,
    )
    .await
    {
        Ok(outcome) => outcome,
        Err(e) => {
            let code = code_of(&e);
            return fail(e, code);
        }
    };
    print_outcome(&outcome);
    if args.dry_run {
        println!("dry run: nothing was changed");
    }
    ExitCode::Ok
}

fn code_of(e: &PruneError) -> ExitCode {
    match e {
        PruneError::Lock(LockError::Held { .. } | LockError::WritersAtWork { .. }) => {
            ExitCode::Busy
        }
        PruneError::NoSuchSnapshot(_) | PruneError::Policy(_) => ExitCode::Usage,
        _ => ExitCode::Failed,
    }
}

fn fail(e: impl std::fmt::Display, code: ExitCode) -> ExitCode {
    tracing::error!("{e}");
    code
}

fn print_outcome(outcome: &Outcome) {
    if let Some((plan, report)) = &outcome.forget {
        print_forget(plan, report.as_ref());
    }
    if let Some((plan, report)) = &outcome.prune {
        print_prune(plan, report.as_ref());
    }
}

fn print_forget(plan: &ForgetPlan, report: Option<&ForgetReport>) {
    println!("{:<17}  {:<6}  {:<10}  why", "snapshot", "action", "layout");
    for d in &plan.decisions {
        let layout = if !d.keep {
            "-"
        } else if plan.drop_layout.contains(&d.time) {
            "drop"
        } else if d.layout {
            "keep"
        } else if d.complete {
            "dropped"
        } else {
            "incomplete"
        };
        println!(
            "{:<17}  {:<6}  {:<10}  {}",
            d.time.to_string(),
            if d.keep { "keep" } else { "forget" },
            layout,
            d.reasons.join(", ")
        );
    }
    let kept = plan.decisions.iter().filter(|d| d.keep).count();
    match report {
        Some(r) => println!(
            "{kept} snapshot(s) kept, {} forgotten, {} plain layout(s) dropped",
            r.forgotten, r.layouts_dropped
        ),
        None => println!(
            "{kept} snapshot(s) to keep, {} to forget, {} plain layout(s) to drop",
            plan.forget.len(),
            plan.drop_layout.len()
        ),
    }
    let checkpoints = plan.kept_checkpoints + plan.forget_checkpoints.len();
    if checkpoints > 0 {
        let (verb, forgotten) = match report {
            Some(r) => ("forgotten", r.checkpoints_forgotten as usize),
            None => ("to forget", plan.forget_checkpoints.len()),
        };
        let oldest_kept = match (plan.kept_checkpoints, plan.forget_checkpoints.last()) {
            (0, _) | (_, None) => String::new(),
            (_, Some(newest_forgotten)) => {
                format!(" (every one up to {newest_forgotten})")
            }
        };
        println!(
            "checkpoints: {} kept, {forgotten} {verb}{oldest_kept}",
            plan.kept_checkpoints
        );
    }
}

fn print_prune(plan: &PrunePlan, report: Option<&PruneReport>) {
    let folders = |why: LayoutRemoval| plan.layouts.iter().filter(|l| l.why == why).count();
    println!(
        "plain layout: {} folder(s) of forgotten snapshots and {} dropped, {} file(s), {}",
        folders(LayoutRemoval::Forgotten),
        folders(LayoutRemoval::Dropped),
        plan.layout_files(),
        HumanBytes(plan.layout_bytes())
    );
    if !plan.stray_records.is_empty() {
        println!(
            "records of snapshots that are gone: {}",
            plan.stray_records.len()
        );
    }
    println!(
        "packs: {} at the destination ({}); {} unused to delete ({}{}), {} to rewrite ({}, above {:.0}% unused)",
        plan.packs,
        HumanBytes(plan.pack_bytes),
        plan.delete_packs.len(),
        HumanBytes(plan.pack_bytes_deleted()),
        if plan.unindexed_packs > 0 {
            format!(", {} in no index file", plan.unindexed_packs)
        } else {
            String::new()
        },
        plan.rewrite_packs.len(),
        HumanBytes(plan.pack_bytes_rewritten()),
        plan.max_unused * 100.0,
    );
    println!(
        "index files: {} read, {} to replace{}",
        plan.index_files,
        plan.replace_index.len(),
        if plan.missing_packs > 0 {
            format!(" ({} pack(s) they list are gone)", plan.missing_packs)
        } else {
            String::new()
        }
    );
    match report {
        Some(r) => println!(
            "pruned in {}: {} layout file(s), {} record(s), {} pack(s) and {} index file(s) deleted; \
             {} pack(s) and {} index file(s) written; {} reclaimed",
            output::duration(Duration::from_millis(r.duration_ms)),
            r.layout_files,
            r.records,
            r.packs_deleted,
            r.index_files_deleted,
            r.packs_written,
            r.index_files_written,
            HumanBytes(r.bytes_reclaimed())
        ),
        None => println!("reclaims about {}", HumanBytes(plan.bytes_reclaimed())),
    }
}
