//! The command line: flags and `KUBE_AUTOSAVE_*` environment variables over the
//! `kubeResourcesAutosave:` section of a `cluster.yaml`, and one function per command.
//! Exit codes are part of the interface (see [`ExitCode`]).

#[cfg(feature = "demo")]
mod demo;
mod inspect;
mod output;
mod policy;
mod prune;
mod restore;
mod run;
mod shell;
mod snapshot;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, ConfigError, FileConfig, LogFormat};
use crate::export::ExportOptions;
use crate::job::JobSettings;
use crate::kube::ClusterOptions;
use crate::seal::{Encryption, Keyring, Recipients, SealError};
use crate::snapshot::SnapshotOptions;
use crate::store::{Destination, S3Options, StoreConfig};

/// Exit codes scripts can rely on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Ok = 0,
    /// The command failed; nothing was completed.
    Failed = 1,
    /// Bad flags, configuration or input; nothing was changed.
    Usage = 2,
    /// The snapshot completed but some resources could not be read (listed in the summary).
    Partial = 3,
    /// Another prune holds the folder's lock, or snapshots being written kept a prune
    /// waiting longer than `--wait`; nothing was changed.
    Busy = 4,
}

/// The destination when none is configured: a local folder in the working directory.
pub const DEFAULT_DESTINATION: &str = "kube-autosave-backups";

#[derive(Debug, Parser)]
#[command(
    name = "kube-autosave",
    version,
    about = "Restorable, incremental snapshots of every Kubernetes resource of a cluster in S3"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// A cluster.yaml with a `kubeResourcesAutosave:` section.
    #[arg(long, global = true, env = "KUBE_AUTOSAVE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Destination: s3://bucket[/prefix], file:///path or a path [default: ./kube-autosave-backups]
    #[arg(long = "to", global = true, env = "KUBE_AUTOSAVE_S3_URI")]
    pub to: Option<String>,
    /// The cluster's folder under the destination [default: the config's clusterName, else "cluster"]
    #[arg(long, global = true, env = "KUBE_AUTOSAVE_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// A custom S3 endpoint (MinIO, Ceph, ...), e.g. http://127.0.0.1:9000.
    #[arg(long, global = true, env = "KUBE_AUTOSAVE_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// Path-style S3 addressing (endpoint/bucket/key), which most S3-compatible stores need.
    #[arg(long, global = true, env = "KUBE_AUTOSAVE_PATH_STYLE")]
    pub path_style: bool,
    /// The AWS region [default: from the AWS chain, else us-east-1].
    #[arg(long, global = true, env = "KUBE_AUTOSAVE_REGION")]
    pub region: Option<String>,
    /// Server-side encryption for every write: AES256 or aws:kms.
    #[arg(long, global = true, env = "KUBE_AUTOSAVE_SSE")]
    pub sse: Option<String>,
    /// The KMS key id for --sse aws:kms [default: the bucket's default key].
    #[arg(long, global = true, env = "KUBE_AUTOSAVE_SSE_KMS_KEY_ID")]
    pub sse_kms_key_id: Option<String>,
    /// Where the local index (a cache) and packs live [default: ./kube-autosave-data].
    #[arg(long, global = true, env = "KUBE_AUTOSAVE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// The most disk the local pack copies take, e.g. 512Mi, 2Gi or a byte count [default: 1Gi].
    #[arg(long, global = true, env = "KUBE_AUTOSAVE_PACK_CACHE_SIZE")]
    pub pack_cache_size: Option<String>,
    /// Encrypt Secrets to this age recipient (age1...; repeat for several). Overrides the
    /// config's `encryption.recipients`.
    #[arg(
        long = "recipient",
        global = true,
        env = "KUBE_AUTOSAVE_RECIPIENTS",
        value_delimiter = ','
    )]
    pub recipients: Vec<String>,
    /// A file of age recipients, one per line (`#` comments).
    #[arg(long, global = true, env = "KUBE_AUTOSAVE_RECIPIENTS_FILE")]
    pub recipients_file: Option<PathBuf>,
    /// An age identity file (AGE-SECRET-KEY-1...) to read encrypted Secrets with (restore,
    /// show, diff, history, verify); repeat for several.
    #[arg(
        long = "identity",
        global = true,
        env = "KUBE_AUTOSAVE_IDENTITY",
        value_delimiter = ','
    )]
    pub identities: Vec<PathBuf>,
    /// More log output (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// How log lines are written: text, or json for log pipelines (one object per line)
    /// [default: the config's logFormat, else text].
    #[arg(long, global = true, env = "KUBE_AUTOSAVE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Args, Clone)]
pub struct ClusterArgs {
    /// The kubeconfig to use [default: KUBECONFIG, ~/.kube/config, or the in-cluster account].
    #[arg(long, env = "KUBE_AUTOSAVE_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use [default: the current context].
    #[arg(long, env = "KUBE_AUTOSAVE_CONTEXT")]
    pub context: Option<String>,
    /// Items per list request.
    #[arg(long, env = "KUBE_AUTOSAVE_PAGE_SIZE")]
    pub page_size: Option<u32>,
    /// Resources listed at the same time.
    #[arg(long, env = "KUBE_AUTOSAVE_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// Plain-layout files written at the same time, at most (1-1024) [default: 64]; when
    /// the destination throttles (503 SlowDown), fewer.
    #[arg(long, env = "KUBE_AUTOSAVE_EXPORT_CONCURRENCY", value_parser = export_concurrency)]
    pub export_concurrency: Option<usize>,
}

fn export_concurrency(text: &str) -> Result<usize, String> {
    let n = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of files"))?;
    config::check_export_concurrency("--export-concurrency", n).map_err(|e| e.to_string())
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Take one snapshot now: discover, list, store, export the plain layout.
    Snapshot(ClusterArgs),
    /// Run as the autosave daemon: a snapshot at start and every interval, staged locally
    /// and pushed to the destination, retried until it lands; health and metrics over HTTP.
    Run(run::RunArgs),
    /// Try it without a cluster: start the bundled simulated API server, snapshot it twice
    /// (before and after some changes) into a local folder, and show where to look.
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
    /// The snapshots at the destination, newest first (with --checkpoints, the checkpoints
    /// between them too).
    List(inspect::ListArgs),
    /// One snapshot's (or checkpoint's) resources and namespaces with counts, or its objects.
    Show(inspect::ShowArgs),
    /// Objects added, removed and changed between two snapshots or checkpoints.
    Diff(inspect::DiffArgs),
    /// Every version of one object across the snapshots and checkpoints: when each was first
    /// seen, which field manager made it, what changed, and when it was deleted.
    History(inspect::HistoryArgs),
    /// Check that what the manifests reference is stored intact; exit 1 on any problem.
    Verify(inspect::VerifyArgs),
    /// Restore a snapshot into the cluster of the current kubeconfig context.
    Restore(restore::RestoreArgs),
    /// Apply the retention policy (or forget the snapshots named): remove the snapshots it
    /// does not keep and drop the plain layout of kept ones beyond `keepLayout`.
    Forget(prune::ForgetArgs),
    /// Reclaim what no remaining snapshot refers to: plain-layout folders, records, packs
    /// and index files.
    Prune(prune::PruneArgs),
    /// Print the completion script for a shell: `source <(kube-autosave completions bash)`.
    Completions(shell::CompletionsArgs),
    /// Print the manual page (roff), or write one page per command with --dir.
    Man(shell::ManArgs),
}

/// Settings that do not depend on the command.
pub struct Common {
    pub file: FileConfig,
    pub destination: Destination,
    pub cluster_name: String,
    pub s3: S3Options,
    pub cache_dir: PathBuf,
    /// The store's tunables that the configuration sets.
    pub store: StoreConfig,
    /// What writers encrypt, and to whom (`None`: nothing).
    pub encryption: Option<Encryption>,
    /// Identity files readers open encrypted objects with.
    pub identities: Vec<PathBuf>,
}

impl GlobalArgs {
    pub fn resolve(&self) -> Result<Common, ConfigError> {
        let file = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let (key, uri) = match (&self.to, &file.s3_uri) {
            (Some(to), _) => ("--to", to.clone()),
            (None, Some(uri)) => ("s3URI", uri.clone()),
            (None, None) => ("--to", DEFAULT_DESTINATION.to_string()),
        };
        let destination = config::parse_destination(key, &uri)?;
        let cluster_name = self
            .cluster_name
            .clone()
            .or_else(|| file.cluster_name.clone())
            .unwrap_or_else(|| "cluster".to_string());
        if cluster_name.is_empty() || cluster_name.contains('/') {
            return Err(ConfigError::Value {
                key: "clusterName".to_string(),
                value: cluster_name,
                problem: "must be a non-empty name without '/'".to_string(),
            });
        }
        let sse = match self.sse.clone().or_else(|| file.sse.clone()) {
            Some(sse) => Some(config::parse_sse(
                "sse",
                &sse,
                self.sse_kms_key_id
                    .clone()
                    .or_else(|| file.sse_kms_key_id.clone()),
            )?),
            None => None,
        };
        let s3 = S3Options {
            region: self.region.clone().or_else(|| file.region.clone()),
            endpoint: self
                .s3_endpoint
                .clone()
                .or_else(|| file.s3_endpoint.clone()),
            path_style: self.path_style || file.path_style.unwrap_or(false),
            sse,
            static_credentials: None,
        };
        let cache_dir = self
            .cache_dir
            .clone()
            .or_else(|| file.cache_dir.clone())
            .unwrap_or_else(|| PathBuf::from("kube-autosave-data"));
        let mut store = StoreConfig::default();
        let pack_cache_size = match (&self.pack_cache_size, &file.pack_cache_size) {
            (Some(v), _) => Some(("--pack-cache-size", v)),
            (None, Some(v)) => Some(("kubeResourcesAutosave.packCacheSize", v)),
            (None, None) => None,
        };
        if let Some((key, value)) = pack_cache_size {
            store.local_pack_cache_bytes = config::parse_size(key, value)?;
        }
        let encryption = self.encryption(&file)?;
        Ok(Common {
            file,
            destination,
            cluster_name,
            s3,
            cache_dir,
            store,
            encryption,
            identities: self.identities.clone(),
        })
    }

    /// The recipients of the flags (or else of the config) and of the recipients file;
    /// `None` when there are none at all.
    fn encryption(&self, file: &FileConfig) -> Result<Option<Encryption>, ConfigError> {
        let section = file.encryption.clone().unwrap_or_default();
        let mut entries: Vec<(String, String)> = if self.recipients.is_empty() {
            let key = |i| format!("{}.encryption.recipients[{i}]", config::SECTION);
            section
                .recipients
                .iter()
                .enumerate()
                .map(|(i, r)| (key(i), r.clone()))
                .collect()
        } else {
            self.recipients
                .iter()
                .map(|r| ("--recipient".to_string(), r.clone()))
                .collect()
        };
        let recipients_file = self
            .recipients_file
            .as_ref()
            .or(section.recipients_file.as_ref());
        let bad = |e: SealError| ConfigError::Setting {
            key: "encryption".to_string(),
            problem: e.to_string(),
        };
        if let Some(path) = recipients_file {
            entries.extend(Recipients::read_file(path).map_err(bad)?);
        }
        if entries.is_empty() {
            return Ok(None);
        }
        let recipients =
            Recipients::parse(entries.iter().map(|(o, r)| (o.clone(), r.as_str()))).map_err(bad)?;
        let resources = section.resources.unwrap_or_else(|| {
            crate::seal::DEFAULT_SEALED_RESOURCES
                .iter()
                .map(|r| r.to_string())
                .collect()
        });
        Ok(Some(Encryption {
            recipients,
            resources,
        }))
    }
}

impl Common {
    /// The identities readers were given (none: sealed objects are named, not read).
    pub fn keyring(&self) -> Result<Keyring, ConfigError> {
        Keyring::load(&self.identities).map_err(|e| ConfigError::Setting {
            key: "--identity".to_string(),
            problem: e.to_string(),
        })
    }
}

impl Common {
    pub fn job_settings(&self, cluster: &ClusterArgs) -> JobSettings {
        let mut snapshot = SnapshotOptions {
            cluster_name: self.cluster_name.clone(),
            rules: self.file.rules.clone().unwrap_or_default(),
            ..SnapshotOptions::default()
        };
        if let Some(page_size) = cluster.page_size.or(self.file.page_size) {
            snapshot.page_size = page_size.max(1);
        }
        if let Some(concurrency) = cluster.concurrency.or(self.file.concurrency) {
            snapshot.concurrency = concurrency.max(1);
        }
        snapshot.encryption = self.encryption.clone();
        JobSettings {
            destination: self.destination.clone(),
            cluster_name: self.cluster_name.clone(),
            s3: self.s3.clone(),
            cache_dir: self.cache_dir.clone(),
            cluster: ClusterOptions {
                kubeconfig: cluster.kubeconfig.clone(),
                context: cluster.context.clone(),
            },
            snapshot,
            store: self.store.clone(),
            export: ExportOptions {
                concurrency: cluster
                    .export_concurrency
                    .or(self.file.export_concurrency)
                    .unwrap_or(config::DEFAULT_EXPORT_CONCURRENCY),
            },
            locks: Default::default(),
        }
    }
}

/// The log format: the flag or its variable, else the config's `logFormat`. Logging starts
/// before the command reads its configuration, so the file is read here too; a file that
/// does not load leaves text, and the command reports what is wrong with it.
fn log_format(global: &GlobalArgs) -> LogFormat {
    if let Some(format) = global.log_format {
        return format;
    }
    global
        .config
        .as_deref()
        .and_then(|path| FileConfig::load(path).ok())
        .and_then(|file| file.log_format)
        .unwrap_or_default()
}

fn init_logging(verbose: u8, format: LogFormat) {
    let default = match verbose {
        0 => "kube_autosave=info",
        1 => "kube_autosave=debug,info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KUBE_AUTOSAVE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        // One object per event with its fields at the top level, and no span context:
        // the field names are the interface log pipelines match on.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}

/// Parses the command line, runs the command, and returns the process exit code.
pub async fn main() -> i32 {
    let cli = shell::parse();
    init_logging(cli.global.verbose, log_format(&cli.global));
    let code = match &cli.command {
        Command::Snapshot(cluster) => snapshot::snapshot(&cli.global, cluster).await,
        Command::Run(args) => run::run(&cli.global, args).await,
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::demo(&cli.global, args).await,
        Command::List(args) => inspect::list(&cli.global, args).await,
        Command::Show(args) => inspect::show(&cli.global, args).await,
        Command::Diff(args) => inspect::diff(&cli.global, args).await,
        Command::History(args) => inspect::history(&cli.global, args).await,
        Command::Verify(args) => inspect::verify(&cli.global, args).await,
        Command::Restore(args) => restore::restore(&cli.global, args).await,
        Command::Forget(args) => prune::forget(&cli.global, args).await,
        Command::Prune(args) => prune::prune(&cli.global, args).await,
        Command::Completions(args) => shell::completions(args),
        Command::Man(args) => shell::man(args),
    };
    code as i32
}
