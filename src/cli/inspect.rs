//! `kube-autosave list`, `show`, `diff` and `verify`: read-only looks at a destination.

use crate::object_name::ObjectName;
use clap::{Args, ValueEnum};
use serde::Serialize;

use super::output::bytes;
use super::{ExitCode, GlobalArgs};
use crate::inspect::diff::{Op, SnapshotDiff};
use crate::inspect::show::{ObjectFilter, objects, overview};
use crate::inspect::{self, InspectError, SnapshotRef};
use crate::job::open_backend;
use crate::repo::Manifest;
use crate::seal::Keyring;
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// For people.
    Text,
    /// One JSON document, for scripts.
    Json,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The snapshot: its time (yy-mm-dd_HH-MM-SS) or `latest`.
    pub snapshot: String,
    /// Print the objects of this namespace.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Print the objects of this resource (`deployments`, `deployments.apps` or `Deployment`).
    #[arg(long)]
    pub resource: Option<String>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The earlier snapshot: its time or `latest`.
    #[arg(value_name = "FROM")]
    pub older: String,
    /// The later snapshot: its time or `latest`.
    #[arg(value_name = "TO")]
    pub newer: String,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The snapshot to verify: its time or `latest` [default: latest].
    #[arg(conflicts_with = "all")]
    pub snapshot: Option<String>,
    /// Verify every snapshot at the destination.
    #[arg(long)]
    pub all: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Logs the error and returns the exit code that goes with it.
fn fail(e: impl std::fmt::Display, code: ExitCode) -> ExitCode {
    tracing::error!("{e}");
    code
}

fn code_of(e: &InspectError) -> ExitCode {
    match e {
        InspectError::BadSnapshotName(_) | InspectError::NoSuchSnapshot { .. } => ExitCode::Usage,
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

fn print_json<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(json) => println!("{json}"),
        Err(e) => tracing::error!("cannot write the JSON output: {e}"),
    }
}

fn finish(result: Result<ExitCode, ExitCode>) -> ExitCode {
    result.unwrap_or_else(|code| code)
}

pub async fn list(global: &GlobalArgs, args: &ListArgs) -> ExitCode {
    finish(
        async {
            let store = open_store(global).await?;
            let summaries = inspect::list::list(&store)
                .await
                .map_err(|e| fail(e, ExitCode::Failed))?;
            if args.output == OutputFormat::Json {
                print_json(&summaries);
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
                match &s.error {
                    Some(error) => println!("{:<17}  unreadable: {error}", s.time.to_string()),
                    None => println!(
                        "{:<17}  {:>9}  {:>8}  {:>11}  {:>10}  {}",
                        s.time.to_string(),
                        s.objects,
                        s.resources_skipped,
                        s.new_objects,
                        bytes(s.bytes_uploaded),
                        s.layout
                    ),
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
            let store = open_store(global).await?;
            let manifest = load(&store, which).await?;
            if args.namespace.is_some() || args.resource.is_some() {
                let filter = ObjectFilter {
                    namespace: args.namespace.clone(),
                    resource: args.resource.clone(),
                };
                let lines = objects(&manifest, &filter);
                if args.output == OutputFormat::Json {
                    print_json(&lines);
                    return Ok(ExitCode::Ok);
                }
                for line in &lines {
                    let name = ObjectName::new(line.namespace.as_deref(), &line.name);
                    println!(
                        "{:<28}  {name}  {}  {}",
                        line.kind,
                        line.id,
                        bytes(u64::from(line.size))
                    );
                }
                println!("{} objects", lines.len());
                return Ok(ExitCode::Ok);
            }
            let overview = overview(&manifest);
            if args.output == OutputFormat::Json {
                print_json(&overview);
                return Ok(ExitCode::Ok);
            }
            println!(
                "snapshot {} of {}: {} objects, plain layout {}",
                manifest.time,
                manifest.cluster,
                manifest.stats.objects,
                if manifest.is_exported() {
                    "complete"
                } else {
                    "not complete"
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
            Ok(ExitCode::Ok)
        }
        .await,
    )
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
        "{} -> {}: {} added, {} removed, {} changed",
        diff.from,
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
            match op {
                Op::Add { path, value } => println!("    add {path}: {}", short(value)),
                Op::Remove { path, from } => println!("    remove {path}: {}", short(from)),
                Op::Replace { path, from, value } => {
                    println!("    replace {path}: {} -> {}", short(from), short(value))
                }
            }
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
                OutputFormat::Json => print_json(&diff),
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
            let times = if args.all {
                Manifest::list(&store)
                    .await
                    .map_err(|e| fail(e, ExitCode::Failed))?
            } else {
                let time = inspect::resolve(&store, which.unwrap_or(SnapshotRef::Latest))
                    .await
                    .map_err(|e| {
                        let code = code_of(&e);
                        fail(e, code)
                    })?;
                vec![time]
            };
            let report = inspect::verify::verify(&store, &times, &keyring)
                .await
                .map_err(|e| fail(e, ExitCode::Failed))?;
            if args.output == OutputFormat::Json {
                print_json(&report);
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
                println!(
                    "verified {} snapshot(s): {} objects in {} packs, {} plain-layout files: {}",
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
