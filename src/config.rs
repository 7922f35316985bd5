//! Configuration: the `kubeResourcesAutosave:` section of a `cluster.yaml`, overridden by
//! `KUBE_AUTOSAVE_*` environment variables and flags (the CLI does that merge). Parsing is
//! strict: an unknown key, a bad duration or a bad URI is an error that names the key and the
//! value, so a typo never turns into a backup that silently goes elsewhere or never runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::repo::retention::{self, Policy};
use crate::snapshot::Rules;
use crate::store::{Destination, Sse};

/// The section's name in `cluster.yaml`.
pub const SECTION: &str = "kubeResourcesAutosave";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {value:?} {problem}")]
    Value {
        key: String,
        value: String,
        problem: String,
    },
    /// A setting that is wrong as a whole (its value may be a secret, or a file's content).
    #[error("{key}: {problem}")]
    Setting { key: String, problem: String },
}

/// The `kubeResourcesAutosave:` section as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(rename = "s3URI")]
    pub s3_uri: Option<String>,
    pub cluster_name: Option<String>,
    pub interval: Option<String>,
    pub push_interval: Option<String>,
    /// Between checkpoints of what changed (`5m`; `0` switches them off).
    #[serde(default, deserialize_with = "number_or_string")]
    pub checkpoint_interval: Option<String>,
    /// The daemon's staging cap: a byte count or a size such as `4Gi`.
    #[serde(default, deserialize_with = "number_or_string")]
    pub staging_limit: Option<String>,
    pub s3_endpoint: Option<String>,
    pub path_style: Option<bool>,
    pub region: Option<String>,
    pub sse: Option<String>,
    pub sse_kms_key_id: Option<String>,
    pub cache_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub page_size: Option<u32>,
    pub concurrency: Option<usize>,
    /// Plain-layout files written at once (the most; throttling lowers it).
    pub export_concurrency: Option<usize>,
    /// The cap of the local pack copies: a byte count or a size such as `512Mi`, `1Gi`.
    #[serde(default, deserialize_with = "number_or_string")]
    pub pack_cache_size: Option<String>,
    pub rules: Option<Rules>,
    /// Which snapshots to keep; none set keeps every snapshot.
    pub retention: Option<Policy>,
    /// Client-side encryption of Secrets (and other resources named) with age.
    pub encryption: Option<EncryptionConfig>,
    /// How log lines are written: `text` or `json` (one object per line).
    pub log_format: Option<LogFormat>,
}

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people: one aligned line per event.
    #[default]
    Text,
    /// For log pipelines: one JSON object per line, with the event's fields at the top
    /// level (`snapshot`, `resource`, `namespace`, `key`, `error`, `duration_ms`, ...).
    Json,
}

/// The `encryption:` section: the age recipients sealed resources are encrypted to.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EncryptionConfig {
    /// age X25519 recipients (`age1...`).
    #[serde(default)]
    pub recipients: Vec<String>,
    /// A file of recipients, one per line (`#` comments), e.g. a mounted ConfigMap.
    pub recipients_file: Option<PathBuf>,
    /// Resources sealed, as in `includeResources` [default: secrets].
    pub resources: Option<Vec<String>>,
}

/// A setting written either as a number or as a string (`1073741824` or `1Gi`), kept as
/// text so that its parser can name it in an error.
fn number_or_string<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Number(u64),
        Text(String),
    }
    Ok(
        Option::<Written>::deserialize(deserializer)?.map(|w| match w {
            Written::Number(n) => n.to_string(),
            Written::Text(t) => t,
        }),
    )
}

#[derive(Deserialize)]
struct ClusterYaml {
    #[serde(rename = "kubeResourcesAutosave")]
    section: Option<serde_yaml_ng::Value>,
}

impl FileConfig {
    /// Reads the section from a `cluster.yaml`; other top-level keys belong to other tools
    /// and are ignored. A file without the section is an empty configuration.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let parse_error = |message: String| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        };
        let file: ClusterYaml =
            serde_yaml_ng::from_str(text).map_err(|e| parse_error(e.to_string()))?;
        let Some(section) = file.section else {
            return Ok(Self::default());
        };
        if section.is_null() {
            return Ok(Self::default());
        }
        check_retention_written(&section)?;
        let config: Self = serde_yaml_ng::from_value(section)
            .map_err(|e| parse_error(format!("{SECTION}: {e}")))?;
        if let Some(rules) = &config.rules {
            check_rules(rules)?;
        }
        if let Some(policy) = &config.retention {
            check_retention(&format!("{SECTION}.retention"), policy)?;
        }
        if let Some(encryption) = &config.encryption {
            check_encryption(encryption)?;
        }
        if let Some(n) = config.export_concurrency {
            check_export_concurrency(&format!("{SECTION}.exportConcurrency"), n)?;
        }
        Ok(config)
    }
}

/// The most files an export writes at once: 64 keeps real S3 (10-60 ms a request) busy
/// while a loopback store gains nothing from more.
pub const DEFAULT_EXPORT_CONCURRENCY: usize = 64;

/// An export concurrency between 1 and 1024.
pub fn check_export_concurrency(key: &str, n: usize) -> Result<usize, ConfigError> {
    if (1..=1024).contains(&n) {
        Ok(n)
    } else {
        Err(ConfigError::Value {
            key: key.to_string(),
            value: n.to_string(),
            problem: "is not between 1 and 1024 files at once".to_string(),
        })
    }
}

/// Checks the recipients written in the section (a recipients file is read when the
/// configuration is resolved) and that the list of sealed resources is not empty.
fn check_encryption(encryption: &EncryptionConfig) -> Result<(), ConfigError> {
    for (i, recipient) in encryption.recipients.iter().enumerate() {
        let key = format!("{SECTION}.encryption.recipients[{i}]");
        crate::seal::Recipients::parse([(key.clone(), recipient.as_str())]).map_err(|e| {
            ConfigError::Value {
                key,
                value: recipient.clone(),
                problem: match e {
                    crate::seal::SealError::Recipient { problem, .. } => problem,
                    e => e.to_string(),
                },
            }
        })?;
    }
    if encryption.resources.as_ref().is_some_and(Vec::is_empty) {
        return Err(ConfigError::Value {
            key: format!("{SECTION}.encryption.resources"),
            value: "[]".to_string(),
            problem: "names no resource; leave it out to seal Secrets".to_string(),
        });
    }
    Ok(())
}

/// Checks what the rules hand to the API server or apply to every object, so that a typo
/// stops the program at the start instead of failing every list or removing nothing.
fn check_rules(rules: &Rules) -> Result<(), ConfigError> {
    if let Some(selector) = &rules.label_selector {
        // The parser checks keys and values as the API server does.
        if let Err(e) = selector.parse::<crate::restore::selector::Selector>() {
            let problem = e.reason;
            return Err(ConfigError::Value {
                key: format!("{SECTION}.rules.labelSelector"),
                value: selector.clone(),
                problem: format!(
                    "is not a label selector ({problem}); write it as kubectl does, e.g. \
                     `app=web,tier!=cache` or `env in (prod,staging)`"
                ),
            });
        }
    }
    for pointer in &rules.strip_fields {
        crate::snapshot::rules::check_pointer(pointer).map_err(|problem| ConfigError::Value {
            key: format!("{SECTION}.rules.stripFields"),
            value: pointer.clone(),
            problem,
        })?;
    }
    Ok(())
}

/// Reads the values of `retention:` before the section is deserialized, so that a bad one is
/// named with its key and value as other settings are (the deserializer names neither). Its
/// unknown keys are left to the deserializer, which names them.
fn check_retention_written(section: &serde_yaml_ng::Value) -> Result<(), ConfigError> {
    use serde_yaml_ng::Value;
    let Some(Value::Mapping(retention)) = section.get("retention") else {
        return Ok(());
    };
    for (name, written) in retention {
        let Some(name) = name.as_str() else {
            continue;
        };
        let problem = match (name, written) {
            (_, Value::Null) => None,
            ("keepWithin" | "keepCheckpoints", Value::String(text)) => {
                retention::parse_within(text).err()
            }
            // No unit is needed to say none.
            ("keepCheckpoints", Value::Number(n)) if n.as_u64() == Some(0) => None,
            // A bare number has no unit: 30 could be seconds or days.
            ("keepWithin" | "keepCheckpoints", _) => Some(
                "is not a duration; write it with a unit, e.g. 30d, 2w, 6months or 1y".to_string(),
            ),
            (
                "keepLast" | "keepHourly" | "keepDaily" | "keepWeekly" | "keepMonthly"
                | "keepYearly" | "keepLayout",
                _,
            ) => match written.as_u64().map(u32::try_from) {
                Some(Ok(_)) => None,
                Some(Err(_)) => Some("is too large".to_string()),
                None => Some("is not a count; write a whole number, 0 or more".to_string()),
            },
            _ => None,
        };
        if let Some(problem) = problem {
            let value = match written {
                Value::String(text) => text.clone(),
                other => serde_yaml_ng::to_string(other)
                    .map(|text| text.trim_end().to_string())
                    .unwrap_or_default(),
            };
            return Err(ConfigError::Value {
                key: format!("{SECTION}.retention.{name}"),
                value,
                problem,
            });
        }
    }
    Ok(())
}

/// Refuses a retention policy that would forget every snapshot (all its rules at 0); `key`
/// names where the policy comes from in the error.
pub fn check_retention(key: &str, policy: &Policy) -> Result<(), ConfigError> {
    policy.check().map_err(|e| ConfigError::Value {
        key: key.to_string(),
        value: policy.to_string(),
        problem: match e {
            retention::PolicyError::KeepsNothing(_) => {
                "keeps no snapshot, as every keep rule in it is 0; set one above 0 (e.g. \
                 keepLast 1), or set none to keep every snapshot"
                    .to_string()
            }
        },
    })
}

/// Parses a duration such as `24h`, `90m`, `30s` or `1h30m`; `key` names the setting in the
/// error.
pub fn parse_duration(key: &str, value: &str) -> Result<Duration, ConfigError> {
    let duration = humantime::parse_duration(value.trim()).map_err(|e| ConfigError::Value {
        key: key.to_string(),
        value: value.to_string(),
        problem: format!("is not a duration ({e}); write e.g. 24h, 90m or 30s"),
    })?;
    if duration.is_zero() {
        return Err(ConfigError::Value {
            key: key.to_string(),
            value: value.to_string(),
            problem: "must be longer than zero".to_string(),
        });
    }
    Ok(duration)
}

/// Parses the interval of a setting that `0` switches off (`checkpointInterval`): `None` for
/// `0` (or any zero duration, `0s`), else the duration. `key` names the setting in the error.
pub fn parse_interval_or_off(key: &str, value: &str) -> Result<Option<Duration>, ConfigError> {
    if value.trim() == "0" {
        return Ok(None);
    }
    let duration = humantime::parse_duration(value.trim()).map_err(|e| ConfigError::Value {
        key: key.to_string(),
        value: value.to_string(),
        problem: format!("is not a duration ({e}); write e.g. 5m or 30s, or 0 for none"),
    })?;
    if duration.is_zero() {
        return Ok(None);
    }
    if duration < Duration::from_secs(1) {
        // Checkpoints are named by the second.
        return Err(ConfigError::Value {
            key: key.to_string(),
            value: value.to_string(),
            problem: "is shorter than a second; write e.g. 5m or 30s, or 0 for none".to_string(),
        });
    }
    Ok(Some(duration))
}

/// Parses a size in bytes: a plain count (`1073741824`), or a count with a binary suffix
/// (`Ki`, `Mi`, `Gi`, `Ti`, as Kubernetes writes them, `KiB`... also accepted) or a decimal
/// one (`k`/`K`, `M`, `G`, `T`). `key` names the setting in the error.
pub fn parse_size(key: &str, value: &str) -> Result<u64, ConfigError> {
    let problem = |problem: &str| ConfigError::Value {
        key: key.to_string(),
        value: value.to_string(),
        problem: problem.to_string(),
    };
    let text = value.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, suffix) = text.split_at(digits);
    if number.is_empty() {
        return Err(problem(
            "is not a size; write a byte count or e.g. 512Mi, 1Gi, 500M",
        ));
    }
    let unit: u64 = match suffix.trim_start() {
        "" | "B" => 1,
        "Ki" | "KiB" => 1 << 10,
        "Mi" | "MiB" => 1 << 20,
        "Gi" | "GiB" => 1 << 30,
        "Ti" | "TiB" => 1 << 40,
        "k" | "K" | "kB" | "KB" => 1_000,
        "M" | "MB" => 1_000_000,
        "G" | "GB" => 1_000_000_000,
        "T" | "TB" => 1_000_000_000_000,
        _ => {
            return Err(problem(
                "has an unknown unit; write a byte count or a whole number with Ki, Mi, Gi, \
                 Ti (or k, M, G, T), e.g. 512Mi or 1Gi",
            ));
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| problem("is too large"))
}

pub fn parse_destination(key: &str, value: &str) -> Result<Destination, ConfigError> {
    value
        .parse()
        .map_err(|e: crate::store::StoreError| ConfigError::Value {
            key: key.to_string(),
            value: value.to_string(),
            problem: format!("is not a valid destination: {e}"),
        })
}

pub fn parse_sse(key: &str, value: &str, kms_key: Option<String>) -> Result<Sse, ConfigError> {
    match value.parse::<Sse>() {
        Ok(Sse::Kms { .. }) => Ok(Sse::Kms { key_id: kms_key }),
        Ok(sse) => Ok(sse),
        Err(problem) => Err(ConfigError::Value {
            key: key.to_string(),
            value: value.to_string(),
            problem,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_staging_limit_is_a_number_or_a_size() {
        for (text, bytes) in [
            ("stagingLimit: 2Gi", 2u64 << 30),
            ("stagingLimit: 1000", 1000),
        ] {
            let yaml = format!("kubeResourcesAutosave:\n  {text}\n");
            let config = FileConfig::parse(Path::new("c.yaml"), &yaml).unwrap();
            let written = config.staging_limit.unwrap();
            assert_eq!(parse_size("stagingLimit", &written).unwrap(), bytes);
        }
    }

    #[test]
    fn the_log_format_is_text_or_json() {
        let parse = |value: &str| {
            let yaml = format!("kubeResourcesAutosave:\n  logFormat: {value}\n");
            FileConfig::parse(Path::new("c.yaml"), &yaml).map(|c| c.log_format)
        };
        assert_eq!(parse("json").unwrap(), Some(LogFormat::Json));
        assert_eq!(parse("text").unwrap(), Some(LogFormat::Text));
        let error = parse("yaml").unwrap_err().to_string();
        assert!(
            error.contains("c.yaml") && error.contains("yaml"),
            "{error}"
        );
    }

    #[test]
    fn the_export_concurrency_is_bounded() {
        let parse = |value: &str| {
            let yaml = format!("kubeResourcesAutosave:\n  exportConcurrency: {value}\n");
            FileConfig::parse(Path::new("c.yaml"), &yaml).map(|c| c.export_concurrency)
        };
        assert_eq!(parse("128").unwrap(), Some(128));
        for bad in ["0", "5000"] {
            let error = parse(bad).unwrap_err().to_string();
            assert!(error.contains("exportConcurrency"), "{error}");
        }
    }

    #[test]
    fn the_original_switch_parses() {
        let text = "\
clusterName: ignored-by-us
kubeResourcesAutosave:
  enabled: true
  s3URI: s3://my-bucket-name
  clusterName: my-cluster-name
  interval: 24h
  pushInterval: 1m
";
        let config = FileConfig::parse(Path::new("cluster.yaml"), text).unwrap();
        assert_eq!(config.enabled, Some(true));
        assert_eq!(config.s3_uri.as_deref(), Some("s3://my-bucket-name"));
        assert_eq!(config.cluster_name.as_deref(), Some("my-cluster-name"));
        assert_eq!(
            parse_duration("interval", config.interval.as_deref().unwrap()).unwrap(),
            Duration::from_secs(86_400)
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = FileConfig::parse(
            Path::new("cluster.yaml"),
            "kubeResourcesAutosave:\n  enabled: true\n  s3Uri: s3://x\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("s3Uri"), "{err}");
        assert!(err.contains("cluster.yaml"), "{err}");
        let err = parse_duration("kubeResourcesAutosave.interval", "24x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("kubeResourcesAutosave.interval"), "{err}");
        assert!(err.contains("\"24x\""), "{err}");
        assert_eq!(
            parse_duration("i", "90m").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(parse_duration("i", "30s").unwrap(), Duration::from_secs(30));
        assert!(parse_duration("i", "0s").is_err());
        let every = |v: &str| parse_interval_or_off("kubeResourcesAutosave.checkpointInterval", v);
        assert_eq!(every("5m").unwrap(), Some(Duration::from_secs(300)));
        assert_eq!(every("0").unwrap(), None);
        assert_eq!(every("0s").unwrap(), None);
        for bad in ["5 minutes please", "500ms", "-1m"] {
            let err = every(bad).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!(
                    "kubeResourcesAutosave.checkpointInterval: {bad:?} is"
                )),
                "{err}"
            );
        }
        let text = "kubeResourcesAutosave:\n  checkpointInterval: 0\n";
        let config = FileConfig::parse(Path::new("c.yaml"), text).unwrap();
        assert_eq!(config.checkpoint_interval.as_deref(), Some("0"));
        let err = parse_destination("s3URI", "s3://").unwrap_err().to_string();
        assert!(err.contains("s3URI") && err.contains("no bucket"), "{err}");
    }

    #[test]
    fn sizes_are_byte_counts_or_kubernetes_quantities() {
        for (text, bytes) in [
            ("0", 0),
            ("1073741824", 1 << 30),
            ("512Mi", 512 << 20),
            ("1Gi", 1 << 30),
            ("1GiB", 1 << 30),
            (" 64 Ki ", 64 << 10),
            ("2Ti", 2 << 40),
            ("500M", 500_000_000),
            ("3k", 3_000),
            ("10B", 10),
        ] {
            assert_eq!(parse_size("s", text).unwrap(), bytes, "{text}");
        }
        for bad in [
            "",
            "Gi",
            "1.5Gi",
            "-1",
            "1Gb",
            "1 Gigabyte",
            "99999999999Ti",
        ] {
            let err = parse_size("kubeResourcesAutosave.packCacheSize", bad).unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with("kubeResourcesAutosave.packCacheSize: "),
                "{text}"
            );
            assert!(text.contains(&format!("{bad:?}")), "{text}");
        }
        // In the file, as a number or as a quantity.
        for (yaml, expected) in [("1048576", "1048576"), ("512Mi", "512Mi")] {
            let config = FileConfig::parse(
                Path::new("c.yaml"),
                &format!("kubeResourcesAutosave:\n  packCacheSize: {yaml}\n"),
            )
            .unwrap();
            assert_eq!(config.pack_cache_size.as_deref(), Some(expected));
        }
    }

    #[test]
    fn rules_are_configurable() {
        let text = "kubeResourcesAutosave:\n  rules:\n    excludeNamespaces: [scratch]\n    keepControllerOwned: true\n";
        let config = FileConfig::parse(Path::new("c.yaml"), text).unwrap();
        let rules = config.rules.unwrap();
        assert_eq!(rules.exclude_namespaces, vec!["scratch".to_string()]);
        assert!(rules.keep_controller_owned);
        assert!(rules.strip_status, "unset rules keep their defaults");
        let err = FileConfig::parse(
            Path::new("c.yaml"),
            "kubeResourcesAutosave:\n  rules:\n    keepOwned: true\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("keepOwned"), "{err}");
    }

    #[test]
    fn label_selectors_and_strip_fields_are_checked_when_loaded() {
        let load = |rules: &str| {
            FileConfig::parse(
                Path::new("c.yaml"),
                &format!("kubeResourcesAutosave:\n  rules:\n{rules}"),
            )
        };
        for good in [
            "    labelSelector: app=web,tier!=cache\n",
            "    labelSelector: 'app.kubernetes.io/name==web, env in (prod, staging), !legacy, team'\n",
            "    labelSelector: env notin (dev)\n",
            "    stripFields: [/metadata/annotations/example.com~1note, /spec/x~0y]\n",
        ] {
            assert!(load(good).is_ok(), "{good}: {:?}", load(good));
        }
        for (bad, key, value) in [
            (
                "    labelSelector: 'env in (prod'\n",
                "labelSelector",
                "env in (prod",
            ),
            ("    labelSelector: 'app:web'\n", "labelSelector", "app:web"),
            ("    labelSelector: 'app web'\n", "labelSelector", "app web"),
            ("    labelSelector: ''\n", "labelSelector", ""),
            (
                "    stripFields: [/spec/x, spec/y]\n",
                "stripFields",
                "spec/y",
            ),
            ("    stripFields: ['/a~2b']\n", "stripFields", "/a~2b"),
        ] {
            let err = load(bad).unwrap_err();
            assert!(matches!(err, ConfigError::Value { .. }), "{bad}: {err:?}");
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("kubeResourcesAutosave.rules.{key}: ")),
                "{text}"
            );
            assert!(text.contains(&format!("{value:?}")), "{text}");
        }
    }

    #[test]
    fn retention_is_configurable() {
        let text = "\
kubeResourcesAutosave:
  retention:
    keepDaily: 7
    keepWeekly: 4
    keepMonthly: 12
    keepWithin: 30d
    keepLayout: 7
";
        let config = FileConfig::parse(Path::new("c.yaml"), text).unwrap();
        assert_eq!(
            config.retention,
            Some(Policy {
                keep_daily: Some(7),
                keep_weekly: Some(4),
                keep_monthly: Some(12),
                keep_within: Some(Duration::from_secs(30 * 86_400)),
                keep_layout: Some(7),
                ..Policy::default()
            })
        );
        for (yaml, policy) in [
            ("", None),
            ("  retention:\n", None),
            ("  retention: {}\n", Some(Policy::default())),
            (
                "  retention:\n    keepLayout: 0\n",
                Some(Policy {
                    keep_layout: Some(0),
                    ..Policy::default()
                }),
            ),
            (
                "  retention:\n    keepLast: 0\n    keepWithin: 2w\n",
                Some(Policy {
                    keep_last: Some(0),
                    keep_within: Some(Duration::from_secs(14 * 86_400)),
                    ..Policy::default()
                }),
            ),
            (
                "  retention:\n    keepCheckpoints: 0\n",
                Some(Policy {
                    keep_checkpoints: Some(Duration::ZERO),
                    ..Policy::default()
                }),
            ),
            (
                "  retention:\n    keepLast: 3\n    keepCheckpoints: 36h\n",
                Some(Policy {
                    keep_last: Some(3),
                    keep_checkpoints: Some(Duration::from_secs(36 * 3600)),
                    ..Policy::default()
                }),
            ),
            (
                "  retention:\n    keepHourly: 24\n    keepYearly: 3\n    keepWithin: 1y\n",
                Some(Policy {
                    keep_hourly: Some(24),
                    keep_yearly: Some(3),
                    keep_within: Some(Duration::from_secs(31_557_600)),
                    ..Policy::default()
                }),
            ),
        ] {
            let text = format!("kubeResourcesAutosave:\n  enabled: true\n{yaml}");
            let config = FileConfig::parse(Path::new("c.yaml"), &text);
            assert_eq!(config.unwrap().retention, policy, "{yaml}");
        }
    }

    #[test]
    fn bad_retention_is_named() {
        let load = |retention: &str| {
            FileConfig::parse(
                Path::new("cluster.yaml"),
                &format!("kubeResourcesAutosave:\n  retention:\n{retention}"),
            )
        };
        // Unknown keys, in the deserializer's words, with the file.
        for (bad, named) in [
            ("    keepDayly: 7\n", "keepDayly"),
            ("    keepLayouts: 1\n", "keepLayouts"),
        ] {
            let err = load(bad).unwrap_err();
            assert!(matches!(err, ConfigError::Parse { .. }), "{bad}: {err:?}");
            let text = err.to_string();
            assert!(text.contains("cluster.yaml"), "{text}");
            assert!(text.contains(named), "{bad}: {text}");
        }
        // Bad values, with their key and value.
        for (bad, key, value, problem) in [
            (
                "    keepWithin: 30x\n",
                "keepWithin",
                "30x",
                "is not a duration",
            ),
            (
                "    keepWithin: 30 dayz\n",
                "keepWithin",
                "30 dayz",
                "is not a duration",
            ),
            (
                "    keepWithin: ''\n",
                "keepWithin",
                "",
                "is not a duration",
            ),
            (
                "    keepWithin: 30\n",
                "keepWithin",
                "30",
                "is not a duration",
            ),
            (
                "    keepWithin: [30d]\n",
                "keepWithin",
                "- 30d",
                "is not a duration",
            ),
            ("    keepDaily: -1\n", "keepDaily", "-1", "is not a count"),
            (
                "    keepDaily: seven\n",
                "keepDaily",
                "seven",
                "is not a count",
            ),
            ("    keepLast: '3'\n", "keepLast", "3", "is not a count"),
            (
                "    keepLayout: 1.5\n",
                "keepLayout",
                "1.5",
                "is not a count",
            ),
            (
                "    keepYearly: 4294967296\n",
                "keepYearly",
                "4294967296",
                "is too large",
            ),
            (
                "    keepCheckpoints: 7\n",
                "keepCheckpoints",
                "7",
                "is not a duration",
            ),
            (
                "    keepCheckpoints: a week\n",
                "keepCheckpoints",
                "a week",
                "is not a duration",
            ),
        ] {
            let err = load(bad).unwrap_err();
            assert!(matches!(err, ConfigError::Value { .. }), "{bad}: {err:?}");
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("kubeResourcesAutosave.retention.{key}: ")),
                "{text}"
            );
            assert!(text.contains(&format!("{value:?} {problem}")), "{text}");
        }
        // Rules that are all 0 would forget every snapshot.
        let err = load("    keepLast: 0\n    keepDaily: 0\n    keepLayout: 2\n").unwrap_err();
        assert!(matches!(err, ConfigError::Value { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with(
                "kubeResourcesAutosave.retention: \"keepLast 0, keepDaily 0, keepLayout 2\" \
                 keeps no snapshot"
            ),
            "{text}"
        );
    }
}
