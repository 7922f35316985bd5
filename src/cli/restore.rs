//! `kube-autosave restore`: a snapshot (or a checkpoint, or the state at a time) into the
//! cluster of the current kubeconfig context. It says which point it restores and which
//! cluster it writes to before it writes, and prints the plan with `--dry-run`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use kube::config::Kubeconfig;

use super::inspect::{code_of, open_store};
use super::{ExitCode, GlobalArgs};
use crate::inspect::{self, SnapshotRef};
use crate::kube::{Api, ClusterOptions, RetryPolicy, connect};
use crate::repo::point::parse_instant;
use crate::repo::{Manifest, Point};
use crate::restore::{
    Existing, Filters, Loaded, OnDamage, OutsideOwners, Plan, Progress, RestoreError,
    RestoreOptions, Selector, Step, execute, outside_owners, source,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExistingArg {
    /// Leave objects that exist already as they are (reported as skipped).
    Skip,
    /// Replace them with the backup's version.
    Update,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The snapshot or checkpoint: its name (yy-mm-dd_HH-MM-SS) or `latest`.
    #[arg(conflicts_with = "at")]
    pub snapshot: Option<String>,
    /// Restore the state at this time: the newest checkpoint or snapshot at or before it.
    /// RFC 3339 (2026-12-03T10:15:00Z, or with an offset) or a snapshot's name format
    /// (26-12-03_10-15-00, UTC).
    #[arg(long, value_name = "TIME", conflicts_with = "from_layout")]
    pub at: Option<String>,
    /// Read the plain layout instead of the store: the snapshot's `backup/<ts>/` folder at the
    /// destination, or, given a folder, that folder (`[<namespace>/]<resource>.json` files,
    /// e.g. written by an older dump script).
    #[arg(long, value_name = "DIR", num_args = 0..=1)]
    pub from_layout: Option<Option<String>>,
    /// Restore only this namespace (repeatable); cluster-scoped objects are then left out,
    /// except the CRDs of the custom resources restored.
    #[arg(long, short = 'n')]
    pub namespace: Vec<String>,
    /// Leave this namespace out (repeatable).
    #[arg(long)]
    pub exclude_namespace: Vec<String>,
    /// Restore only this resource (repeatable): `deployments`, `deployments.apps` or `Deployment`.
    #[arg(long)]
    pub resource: Vec<String>,
    /// Restore only objects whose labels match (`app=web,tier!=cache`).
    #[arg(long, short = 'l')]
    pub selector: Option<String>,
    /// Restore `kube-system` and `default` too (left out by default: a fresh cluster has them).
    #[arg(long)]
    pub system_namespaces: bool,
    /// What to do with an object that exists already.
    #[arg(long, value_enum, default_value_t = ExistingArg::Skip)]
    pub existing: ExistingArg,
    /// Print the plan (order, action, object) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Restore what can be read when some objects of the store (or plain-layout files) are
    /// damaged: each one left out is named, and the exit code is 3.
    #[arg(long)]
    pub skip_damaged: bool,
    /// Restore objects a controller owns too (a Deployment's ReplicaSets and Pods, a
    /// CronJob's Jobs), with their owners rewired; left out by default, as the controller
    /// recreates them.
    #[arg(long)]
    pub keep_controller_owned: bool,
    /// How long to wait for a created CustomResourceDefinition to be established.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub crd_timeout: Duration,
    /// The kubeconfig to use [default: KUBECONFIG, ~/.kube/config, or the in-cluster account].
    #[arg(long, env = "KUBE_AUTOSAVE_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to restore into [default: the current context].
    #[arg(long, env = "KUBE_AUTOSAVE_CONTEXT")]
    pub context: Option<String>,
}

fn fail(e: impl std::fmt::Display, code: ExitCode) -> ExitCode {
    tracing::error!("{e}");
    code
}

/// Where the objects come from, as the command line says.
enum Source {
    Manifest(SnapshotRef),
    Layout(SnapshotRef),
    Folder(PathBuf),
}

fn source_of(args: &RestoreArgs) -> Result<Source, ExitCode> {
    let parse = |s: &str| -> Result<SnapshotRef, ExitCode> {
        s.parse().map_err(|e| fail(e, ExitCode::Usage))
    };
    if let Some(at) = &args.at {
        let time = parse_instant(at).map_err(|e| fail(e, ExitCode::Usage))?;
        return Ok(Source::Manifest(SnapshotRef::AtOrBefore(time)));
    }
    match (&args.from_layout, &args.snapshot) {
        (None, Some(s)) => Ok(Source::Manifest(parse(s)?)),
        (Some(None), Some(s)) => Ok(Source::Layout(parse(s)?)),
        // `--from-layout latest` (the value is a snapshot, not a folder).
        (Some(Some(value)), None) if value.parse::<SnapshotRef>().is_ok() => {
            Ok(Source::Layout(parse(value)?))
        }
        (Some(Some(dir)), None) => Ok(Source::Folder(PathBuf::from(dir))),
        (Some(Some(_)), Some(_)) => Err(fail(
            "give either a snapshot or a folder to --from-layout, not both",
            ExitCode::Usage,
        )),
        (_, None) => Err(fail(
            "name the snapshot to restore (its time, or `latest`), a time with --at, or a folder \
             with --from-layout <dir>",
            ExitCode::Usage,
        )),
    }
}

async fn load_items(
    global: &GlobalArgs,
    source: &Source,
    filters: &Filters,
    on_damage: OnDamage,
) -> Result<(String, Loaded), ExitCode> {
    let failed = |e: RestoreError| fail(e, ExitCode::Failed);
    let keyring = global
        .resolve()
        .and_then(|common| common.keyring())
        .map_err(|e| fail(e, ExitCode::Usage))?;
    let inspect_failed = |e: inspect::InspectError| {
        let code = code_of(&e);
        fail(e, code)
    };
    match source {
        Source::Folder(dir) => {
            let items = source::from_dir(dir, on_damage, &keyring).map_err(|e| match e {
                RestoreError::NoLayout(_) => fail(e, ExitCode::Usage),
                e => fail(e, ExitCode::Failed),
            })?;
            Ok((dir.display().to_string(), items))
        }
        Source::Layout(which) => {
            let store = open_store(global).await?;
            let time = match inspect::resolve_point(&store, *which)
                .await
                .map_err(inspect_failed)?
            {
                Point::Snapshot(time) => time,
                Point::Checkpoint(time) => {
                    return Err(inspect_failed(inspect::InspectError::CheckpointLayout(
                        time,
                    )));
                }
            };
            let items = source::from_backend_layout(store.backend(), &time, on_damage, &keyring)
                .await
                .map_err(failed)?;
            Ok((format!("the plain layout of snapshot {time}"), items))
        }
        Source::Manifest(which) => {
            let store = open_store(global).await?;
            let point = inspect::resolve_point(&store, *which)
                .await
                .map_err(inspect_failed)?;
            if let SnapshotRef::AtOrBefore(at) = which {
                // Said first: the point chosen is what the restore will be of.
                println!(
                    "point: {} {point}, the newest at or before {}",
                    point.kind(),
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                );
            }
            let manifest = Manifest::load_point(&store, &point)
                .await
                .map_err(|e| fail(e, ExitCode::Failed))?;
            let items = source::from_manifest(
                &store,
                &manifest,
                |rt, o| filters.wants_manifest_object(rt, o.namespace.as_deref(), &o.name),
                on_damage,
                &keyring,
            )
            .await
            .map_err(failed)?;
            Ok((format!("{} {point}", point.kind()), items))
        }
    }
}

/// The cluster a restore writes to, as the kube config it connects with names it: the API
/// server's URL and the context (read the way `connect` reads them: the file given, else
/// `KUBECONFIG` or `~/.kube/config`, else the in-cluster service account).
fn target_of(options: &ClusterOptions) -> String {
    let config = match &options.kubeconfig {
        Some(path) => Kubeconfig::read_from(path).ok(),
        None => Kubeconfig::read().ok(),
    };
    let Some(config) = config else {
        return match kube::Config::incluster() {
            Ok(config) => format!("{} (the in-cluster service account)", config.cluster_url),
            Err(_) => "unknown (no kubeconfig, not in a pod)".to_string(),
        };
    };
    let context = options
        .context
        .clone()
        .or_else(|| config.current_context.clone());
    let server = context
        .as_ref()
        .and_then(|name| config.contexts.iter().find(|c| &c.name == name))
        .and_then(|c| c.context.as_ref())
        .and_then(|c| config.clusters.iter().find(|cl| cl.name == c.cluster))
        .and_then(|cl| cl.cluster.as_ref()?.server.clone());
    format!(
        "{} (kubeconfig context {})",
        server.as_deref().unwrap_or("unknown"),
        context.as_deref().unwrap_or("unknown")
    )
}

fn print_plan(plan: &Plan, existing: Existing) {
    let action = match existing {
        Existing::Skip => "create",
        Existing::Update => "create or update",
    };
    println!("{:<5} {:<31} {:<16} object", "order", "step", "action");
    for p in &plan.objects {
        println!(
            "{:<5} {:<31} {:<16} {}",
            p.step.number(),
            p.step.describe(),
            action,
            p.item.describe()
        );
    }
}

/// What the plan leaves out, and what it does to owner references.
fn print_left_out(plan: &Plan) {
    for (reason, count) in &plan.left_out {
        println!("left out: {count} ({reason})");
    }
    for d in &plan.damaged {
        println!("left out, damaged: {} ({})", d.object, d.reason);
    }
    if !plan.damaged.is_empty() {
        println!("left out: {} (damaged in the backup)", plan.damaged.len());
    }
    for d in &plan.locked {
        println!("left out, encrypted: {} ({})", d.object, d.reason);
    }
    if !plan.locked.is_empty() {
        println!(
            "left out: {} (encrypted; pass --identity with an age identity of their recipients)",
            plan.locked.len()
        );
    }
}

fn print_owners(plan: &Plan, outside: &OutsideOwners) {
    for d in &outside.dropped {
        println!(
            "owner reference dropped: {} -> {} ({})",
            d.object, d.owner, d.reason
        );
    }
    for d in plan.deferred_owners() {
        println!(
            "owner reference added after both exist: {} -> {} ({})",
            d.object, d.owner, d.why
        );
    }
    println!(
        "owner references dropped: {} (owner neither restored nor in the target cluster)",
        outside.dropped.len()
    );
}

pub async fn restore(global: &GlobalArgs, args: &RestoreArgs) -> ExitCode {
    let result = async {
        let source = source_of(args)?;
        let selector = match &args.selector {
            Some(s) => Some(
                s.parse::<Selector>()
                    .map_err(|e| fail(e, ExitCode::Usage))?,
            ),
            None => None,
        };
        let filters = Filters {
            namespaces: args.namespace.clone(),
            exclude_namespaces: args.exclude_namespace.clone(),
            resources: args.resource.clone(),
            selector,
            system_namespaces: args.system_namespaces,
            keep_controller_owned: args.keep_controller_owned,
        };
        let existing = match args.existing {
            ExistingArg::Skip => Existing::Skip,
            ExistingArg::Update => Existing::Update,
        };
        let on_damage = if args.skip_damaged {
            OnDamage::Skip
        } else {
            OnDamage::Fail
        };
        let (what, loaded) = load_items(global, &source, &filters, on_damage).await?;
        let mut plan = Plan::new(loaded.items, &filters);
        plan.damaged = loaded.damaged;
        plan.locked = loaded.locked;
        let cluster = ClusterOptions {
            kubeconfig: args.kubeconfig.clone(),
            context: args.context.clone(),
        };
        let client = connect(&cluster)
            .await
            .map_err(|e| fail(e, ExitCode::Failed))?;
        let api = Api::new(client, RetryPolicy::default());
        // Said before anything is written, so that a wrong context is seen in time.
        println!("target: {}", target_of(&cluster));
        // Objects left out as damaged or encrypted make a run that completed exit 3.
        let completed = if plan.damaged.is_empty() && plan.locked.is_empty() {
            ExitCode::Ok
        } else {
            ExitCode::Partial
        };
        if args.dry_run {
            let outside = outside_owners(&api, &plan)
                .await
                .map_err(|e| fail(e, ExitCode::Failed))?;
            print_plan(&plan, existing);
            print_left_out(&plan);
            print_owners(&plan, &outside);
            println!(
                "dry run: {} objects from {what} would be restored; nothing was changed",
                plan.objects.len()
            );
            return Ok(completed);
        }
        let options = RestoreOptions {
            existing,
            crd_timeout: args.crd_timeout,
            ..RestoreOptions::default()
        };
        eprintln!("restoring {} objects from {what}", plan.objects.len());
        let progress = |event: Progress| match event {
            Progress::Step { step, objects } => {
                eprintln!(
                    "step {:>2}/{} {step}: {objects} objects",
                    step.number(),
                    Step::ALL.len()
                )
            }
            Progress::WaitingForCrds { crds } => {
                eprintln!("waiting for {crds} custom resource definitions to be established")
            }
            Progress::Done { .. } => {}
        };
        let report = execute(&api, &plan, &options, &progress)
            .await
            .map_err(|e| fail(e, ExitCode::Failed))?;
        for what in &report.skipped {
            println!("skipped (exists): {what}");
        }
        for (what, message) in &report.failed {
            println!("FAILED {what}: {message}");
        }
        for crd in &report.crds_not_established {
            println!("not established in time: CustomResourceDefinition {crd}");
        }
        print_left_out(&plan);
        for d in &report.owners_dropped {
            println!(
                "owner reference dropped: {} -> {} ({})",
                d.object, d.owner, d.reason
            );
        }
        for d in &report.owners_added_later {
            println!(
                "owner reference added after both exist: {} -> {} ({})",
                d.object, d.owner, d.why
            );
        }
        println!(
            "restored {what}: {} created, {} updated, {} skipped (already exist), {} failed, \
             {} left out as damaged, {} owner references dropped in {}",
            report.created,
            report.updated,
            report.skipped.len(),
            report.failed.len(),
            report.damaged.len(),
            report.owners_dropped.len(),
            super::output::duration(std::time::Duration::from_millis(report.duration_ms))
        );
        Ok(if report.is_ok() {
            completed
        } else {
            ExitCode::Failed
        })
    }
    .await;
    result.unwrap_or_else(|code| code)
}
