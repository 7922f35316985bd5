//! `kube-autosave list`, `show`, `diff`, `history` and `verify`: read-only looks at a
//! destination, as text for people or as one JSON document for scripts (`--output json`, the
//! same data).

use clap::{Args, ValueEnum};
use indicatif::HumanBytes;
use serde::Serialize;

use super::{ExitCode, GlobalArgs};
use crate::inspect::diff::{Op, SnapshotDiff};
use crate::inspect::history::{ObjectHistory, Wanted};
use crate::inspect::show::{ObjectFilter, Objects, Overview, objects, overview, read_objects};
use crate::inspect::{self, InspectError, SnapshotRef};
use crate::job::open_backend;
use crate::object_name::ObjectName;
use crate::repo::Manifest;
use crate::repo::prune::LayoutState;
use crate::seal::Keyring;
use crate::store::Store;

/// How `list`, `show`, `diff` and `verify` print what they found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Tables and lines for people.
    Text,
    /// One pretty-printed JSON document on stdout, for scripts (field names in snake_case).
    Json,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// List the checkpoints too (the states recorded between snapshots), marked as such.
    #[arg(long)]
    pub checkpoints: bool,
    /// text for people, json for scripts.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The snapshot or checkpoint: its name (yy-mm-dd_HH-MM-SS), `latest`, or a time in RFC
    /// 3339 (the newest one at or before it).
    pub snapshot: String,
    /// Print the objects of this namespace.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Print the objects of this resource (`deployments`, `deployments.apps` or `Deployment`).
    #[arg(long)]
    pub resource: Option<String>,
    /// Print the objects of this name, whole, as the snapshot holds them (Secret values
    /// hidden; encrypted objects need --identity).
    #[arg(long)]
    pub name: Option<String>,
    /// text for people, json for scripts.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The earlier snapshot or checkpoint: its name (yy-mm-dd_HH-MM-SS), `latest`, or a time
    /// in RFC 3339 (the newest one at or before it).
    #[arg(value_name = "FROM")]
    pub older: String,
    /// The later one, named the same ways.
    #[arg(value_name = "TO")]
    pub newer: String,
    /// text for people, json for scripts.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The object's resource, as `kubectl get` takes it: deployment, deployments, deploy,
    /// deployments.apps.
    pub resource: String,
    /// `<namespace>/<name>`, or `<name>` for a cluster-scoped object.
    #[arg(value_name = "[NAMESPACE/]NAME")]
    pub object: String,
    /// text for people, json for scripts.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The snapshot or checkpoint to verify: its name or `latest` [default: latest].
    #[arg(conflicts_with = "all")]
    pub snapshot: Option<String>,
    /// Verify every snapshot and checkpoint at the destination.
    #[arg(long)]
    pub all: bool,
    /// text for people, json for scripts (`ok` says whether all is well; the exit code is
    /// the same as in text).
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Logs the error and returns the exit code that goes with it.
fn fail(e: impl std::fmt::Display, code: ExitCode) -> ExitCode {
    tracing::error!("{e}");
    code
}

/// Bad input (a name that names nothing) is exit code 2; anything else failed.
pub(crate) fn code_of(e: &InspectError) -> ExitCode {
    match e {
        InspectError::BadSnapshotName(_)
        | InspectError::NoSuchSnapshot { .. }
        | InspectError::NoSuchPoint { .. }
        | InspectError::NothingAtOrBefore { .. }
        | InspectError::UnknownObject { .. }
        | InspectError::AmbiguousResource { .. }
        | InspectError::CheckpointLayout(_) => ExitCode::Usage,
        _ => ExitCode::Failed,
    }
}

/// Opens the store at the configured destination.
pub(crate) async fn open_store(global: &GlobalArgs) -> Result<Store, ExitCode> {
    let common = global.resolve().map_err(|e| fail(e, ExitCode::Usage))?;
    let backend = open_backend(&common.destination, &common.cluster_name, &common.s3)
        .await
        .map_err(|e| fail(e, ExitCode::Failed))?;
    Store::open(backend, &common.cache_dir, common.store.clone())
        .await
        .map_err(|e| fail(e, ExitCode::Failed))
}

fn parse_ref(s: &str) -> Result<SnapshotRef, ExitCode> {
    s.parse().map_err(|e| fail(e, ExitCode::Usage))
}

async fn load(store: &Store, which: SnapshotRef) -> Result<Manifest, ExitCode> {
    inspect::load(store, which).await.map_err(|e| {
        let code = code_of(&e);
        fail(e, code)
    })
}

/// Prints `value` as one pretty-printed JSON document on stdout.
fn print_json<T: Serialize>(value: &T) -> Result<(), ExitCode> {
    let json = serde_json::to_string_pretty(value).map_err(|e| {
        fail(
            format!("cannot write the JSON output: {e}"),
            ExitCode::Failed,
        )
    })?;
    println!("{json}");
    Ok(())
}

fn finish(result: Result<ExitCode, ExitCode>) -> ExitCode {
    result.unwrap_or_else(|code| code)
}

pub async fn list(global: &GlobalArgs, args: &ListArgs) -> ExitCode {
    finish(
        async {
            let store = open_store(global).await?;
            let summaries = inspect::list::list(&store, args.checkpoints)
                .await
                .map_err(|e| fail(e, ExitCode::Failed))?;
            if args.output == OutputFormat::Json {
                print_json(&summaries)?;
                return Ok(ExitCode::Ok);
            }
            if summaries.is_empty() {
                println!("no snapshots at {}", store.backend().describe());
                return Ok(ExitCode::Ok);
            }
            println!(
                "{:<17}  {:>9}  {:>8}  {:>11}  {:>10}  layout",
                "snapshot", "objects", "skipped", "new objects", "uploaded"
            );
            for s in &summaries {
                let time = s.snapshot.time.to_string();
                match &s.error {
                    Some(error) => println!("{time:<17}  unreadable: {error}"),
                    None if s.point == "checkpoint" => println!(
                        "{time:<17}  {:>9}  {:>8}  {:>11}  {:>10}  checkpoint, {} changed",
                        s.objects,
                        s.resources_skipped,
                        s.new_objects,
                        HumanBytes(s.bytes_uploaded).to_string(),
                        s.changes
                    ),
                    None => println!(
                        "{time:<17}  {:>9}  {:>8}  {:>11}  {:>10}  {}",
                        s.objects,
                        s.resources_skipped,
                        s.new_objects,
                        HumanBytes(s.bytes_uploaded).to_string(),
                        s.layout
                    ),
                }
            }
            if !args.checkpoints {
                let checkpoints = Manifest::list_checkpoints(&store)
                    .await
                    .map_err(|e| fail(e, ExitCode::Failed))?;
                if !checkpoints.is_empty() {
                    println!(
                        "and {} checkpoint(s) between them (`list --checkpoints` shows them)",
                        checkpoints.len()
                    );
                }
            }
            Ok(ExitCode::Ok)
        }
        .await,
    )
}

pub async fn show(global: &GlobalArgs, args: &ShowArgs) -> ExitCode {
    finish(
        async {
            let which = parse_ref(&args.snapshot)?;
            let keyring = match args.name {
                Some(_) => Some(keyring(global)?),
                None => None,
            };
            let store = open_store(global).await?;
            let manifest = load(&store, which).await?;
            let filter = ObjectFilter {
                namespace: args.namespace.clone(),
                resource: args.resource.clone(),
                name: args.name.clone(),
            };
            if filter.is_empty() {
                let dropped = Manifest::list_dropped_layouts(&store)
                    .await
                    .map_err(|e| fail(e, ExitCode::Failed))?
                    .contains(&manifest.time);
                let overview = overview(&manifest, dropped);
                match args.output {
                    OutputFormat::Json => print_json(&overview)?,
                    OutputFormat::Text => print_overview(&overview),
                }
                return Ok(ExitCode::Ok);
            }
            let mut objects = objects(&manifest, &filter);
            if let Some(keyring) = &keyring {
                read_objects(&store, keyring, &mut objects)
                    .await
                    .map_err(|e| fail(e, ExitCode::Failed))?;
            }
            match args.output {
                OutputFormat::Json => print_json(&objects)?,
                OutputFormat::Text => print_objects(&objects)?,
            }
            Ok(ExitCode::Ok)
        }
        .await,
    )
}

fn print_overview(overview: &Overview) {
    println!(
        "{} {} of {}: {} objects, plain layout {}",
        overview.point,
        overview.snapshot.time,
        overview.cluster,
        overview.objects,
        match overview.layout {
            LayoutState::Complete => "complete",
            LayoutState::Incomplete => "not complete",
            LayoutState::Dropped => "dropped by the retention policy (restorable from the store)",
            LayoutState::None => "none (a checkpoint is restored from the store)",
        }
    );
    println!("\nresources:");
    for r in &overview.resources {
        println!("  {:<48} {:>8}", r.resource, r.objects);
    }
    println!("\nnamespaces:");
    println!(
        "  {:<48} {:>8}",
        "(cluster-scoped)", overview.cluster_scoped
    );
    for (ns, count) in &overview.namespaces {
        println!("  {ns:<48} {count:>8}");
    }
    if !overview.skipped.is_empty() {
        println!("\nskipped:");
        for s in &overview.skipped {
            println!("  {s}");
        }
    }
}

/// One line per object; an object that was read follows its line, pretty-printed.
fn print_objects(objects: &Objects) -> Result<(), ExitCode> {
    for line in &objects.items {
        let name = ObjectName::new(line.namespace.as_deref(), &line.name);
        println!(
            "{:<28}  {name}  {}  {}",
            line.kind,
            line.id,
            HumanBytes(u64::from(line.size))
        );
        if line.encrypted {
            println!("  encrypted (pass --identity to read it)");
        }
        if let Some(object) = &line.object {
            print_json(object)?;
        }
    }
    println!("{} objects", objects.items.len());
    Ok(())
}

/// A value for one line of text output.
fn short(value: &serde_json::Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(57).collect();
        format!("{cut}...")
    } else {
        text
    }
}

fn print_diff(diff: &SnapshotDiff) {
    println!(
        "{} {} -> {} {}: {} added, {} removed, {} changed",
        diff.from_point,
        diff.from,
        diff.to_point,
        diff.to,
        diff.added.len(),
        diff.removed.len(),
        diff.changed.len()
    );
    let name = |ns: &Option<String>, name: &str| ObjectName::new(ns.as_deref(), name).to_string();
    for o in &diff.added {
        println!("+ {} {}", o.kind, name(&o.namespace, &o.name));
    }
    for o in &diff.removed {
        println!("- {} {}", o.kind, name(&o.namespace, &o.name));
    }
    for c in &diff.changed {
        let o = &c.object;
        if c.encrypted {
            println!(
                "~ {} {}: encrypted (pass --identity to see what changed)",
                o.kind,
                name(&o.namespace, &o.name)
            );
            continue;
        }
        let paths: Vec<&str> = c.ops.iter().map(Op::path).collect();
        println!(
            "~ {} {}: {}",
            o.kind,
            name(&o.namespace, &o.name),
            paths.join(", ")
        );
        for op in &c.ops {
            print_op(op);
        }
    }
}

fn print_op(op: &Op) {
    match op {
        Op::Add { path, value } => println!("    add {path}: {}", short(value)),
        Op::Remove { path, from } => println!("    remove {path}: {}", short(from)),
        Op::Replace { path, from, value } => {
            println!("    replace {path}: {} -> {}", short(from), short(value))
        }
    }
}

/// The identities given (`--identity`); a bad identity file is a usage error.
fn keyring(global: &GlobalArgs) -> Result<Keyring, ExitCode> {
    global
        .resolve()
        .and_then(|common| common.keyring())
        .map_err(|e| fail(e, ExitCode::Usage))
}

pub async fn diff(global: &GlobalArgs, args: &DiffArgs) -> ExitCode {
    finish(
        async {
            let from = parse_ref(&args.older)?;
            let to = parse_ref(&args.newer)?;
            let store = open_store(global).await?;
            let a = load(&store, from).await?;
            let b = load(&store, to).await?;
            let keyring = keyring(global)?;
            let diff = inspect::diff::diff(&store, &a, &b, &keyring)
                .await
                .map_err(|e| fail(e, ExitCode::Failed))?;
            match args.output {
                OutputFormat::Json => print_json(&diff)?,
                OutputFormat::Text => print_diff(&diff),
            }
            Ok(ExitCode::Ok)
        }
        .await,
    )
}

pub async fn verify(global: &GlobalArgs, args: &VerifyArgs) -> ExitCode {
    finish(
        async {
            let which = match &args.snapshot {
                Some(s) => Some(parse_ref(s)?),
                None => None,
            };
            let keyring = keyring(global)?;
            let store = open_store(global).await?;
            let points = if args.all {
                Manifest::list_points(&store)
                    .await
                    .map_err(|e| fail(e, ExitCode::Failed))?
            } else {
                let point = inspect::resolve_point(&store, which.unwrap_or(SnapshotRef::Latest))
                    .await
                    .map_err(|e| {
                        let code = code_of(&e);
                        fail(e, code)
                    })?;
                vec![point]
            };
            let report = inspect::verify::verify_points(&store, &points, &keyring)
                .await
                .map_err(|e| fail(e, ExitCode::Failed))?;
            if args.output == OutputFormat::Json {
                print_json(&report.verdict())?;
            } else {
                for note in &report.notes {
                    println!("note: {note}");
                }
                for problem in &report.problems {
                    println!("PROBLEM {}", problem.message);
                }
                for sealed in &report.sealed {
                    println!("encrypted: {sealed}");
                }
                let checkpoints = match report.checkpoints.len() {
                    0 => String::new(),
                    n => format!(" and {n} checkpoint(s)"),
                };
                println!(
                    "verified {} snapshot(s){checkpoints}: {} objects in {} packs, {} plain-layout files: {}",
                    report.snapshots.len(),
                    report.objects_checked,
                    report.packs_checked,
                    report.files_checked,
                    if report.is_ok() {
                        "all good".to_string()
                    } else {
                        format!("{} problem(s)", report.problems.len())
                    }
                );
            }
            Ok(if report.is_ok() {
                ExitCode::Ok
            } else {
                ExitCode::Failed
            })
        }
        .await,
    )
}

pub async fn history(global: &GlobalArgs, args: &HistoryArgs) -> ExitCode {
    finish(
        async {
            let wanted = Wanted::new(&args.resource, &args.object);
            if wanted.name.is_empty() || wanted.namespace.as_deref() == Some("") {
                return Err(fail(
                    format!(
                        "{:?} is not an object; write <namespace>/<name>, or <name> for a \
                         cluster-scoped one",
                        args.object
                    ),
                    ExitCode::Usage,
                ));
            }
            let keyring = keyring(global)?;
            let store = open_store(global).await?;
            let history = inspect::history::history(&store, &wanted, &keyring)
                .await
                .map_err(|e| {
                    let code = code_of(&e);
                    fail(e, code)
                })?;
            match args.output {
                OutputFormat::Json => print_json(&history)?,
                OutputFormat::Text => print_history(&history),
            }
            Ok(ExitCode::Ok)
        }
        .await,
    )
}

fn print_history(history: &ObjectHistory) {
    let name = ObjectName::new(history.namespace.as_deref(), &history.name);
    println!(
        "{} {name}: {} version(s) in {} snapshot(s) and checkpoint(s)",
        history.resource,
        history.versions.len(),
        history.points
    );
    for (i, v) in history.versions.iter().enumerate() {
        let what = match (i, v.recreated) {
            (0, _) => "first seen",
            (_, true) => "created again",
            _ => "changed",
        };
        println!(
            "{:<17}  {:<10}  {what}, by {}  ({})",
            v.seen.stamp.time.to_string(),
            v.seen.point,
            v.manager.as_deref().unwrap_or("unknown"),
            v.id
        );
        if v.encrypted {
            println!("    encrypted (pass --identity to see what changed)");
        }
        for op in &v.ops {
            print_op(op);
        }
        if let Some(deleted) = &v.deleted_at {
            println!(
                "{:<17}  {:<10}  deleted",
                deleted.stamp.time.to_string(),
                deleted.point
            );
        }
    }
    for u in &history.unreadable {
        println!(
            "{:<17}  {:<10}  unreadable, left out: {}",
            u.point.stamp.time.to_string(),
            u.point.point,
            u.error
        );
    }
}
