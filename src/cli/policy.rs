//! The retention flags: `--keep-*` and `KUBE_AUTOSAVE_KEEP_*` over the `retention:` of the
//! `kubeResourcesAutosave:` section, rule by rule, for the commands that forget snapshots.
//! A flag set to 0 switches the file's rule of that name off.

use std::time::Duration;

use clap::Args;

use crate::config::{self, ConfigError, SECTION};
use crate::repo::retention::{Policy, parse_within};

#[derive(Debug, Args, Clone, Default, PartialEq, Eq)]
pub struct PolicyArgs {
    /// Keep the N newest snapshots [default: the config's retention.keepLast].
    #[arg(long, value_name = "N", env = "KUBE_AUTOSAVE_KEEP_LAST")]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N newest hours (UTC) that have one
    /// [default: the config's retention.keepHourly].
    #[arg(long, value_name = "N", env = "KUBE_AUTOSAVE_KEEP_HOURLY")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest days (UTC) that have one
    /// [default: the config's retention.keepDaily].
    #[arg(long, value_name = "N", env = "KUBE_AUTOSAVE_KEEP_DAILY")]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the N newest weeks (ISO, Monday to Sunday, UTC)
    /// that have one [default: the config's retention.keepWeekly].
    #[arg(long, value_name = "N", env = "KUBE_AUTOSAVE_KEEP_WEEKLY")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest months (UTC) that have one
    /// [default: the config's retention.keepMonthly].
    #[arg(long, value_name = "N", env = "KUBE_AUTOSAVE_KEEP_MONTHLY")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest years (UTC) that have one
    /// [default: the config's retention.keepYearly].
    #[arg(long, value_name = "N", env = "KUBE_AUTOSAVE_KEEP_YEARLY")]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot taken less than this before the newest one, e.g. 30d, 2w, 1y
    /// [default: the config's retention.keepWithin].
    #[arg(
        long,
        value_name = "DURATION",
        env = "KUBE_AUTOSAVE_KEEP_WITHIN",
        value_parser = parse_within
    )]
    pub keep_within: Option<Duration>,
    /// How many of the newest kept snapshots keep their plain layout `backup/<ts>/` too (the
    /// others stay restorable from the store); with 0, every export uploads every file
    /// [default: the config's retention.keepLayout, else all].
    #[arg(long, value_name = "N", env = "KUBE_AUTOSAVE_KEEP_LAYOUT")]
    pub keep_layout: Option<u32>,
    /// Keep checkpoints taken less than this before the newest snapshot or checkpoint, e.g.
    /// 7d, 36h; 0s for none [default: the config's retention.keepCheckpoints, else 7d].
    #[arg(
        long,
        value_name = "DURATION",
        env = "KUBE_AUTOSAVE_KEEP_CHECKPOINTS",
        value_parser = parse_within
    )]
    pub keep_checkpoints: Option<Duration>,
}

impl PolicyArgs {
    /// The rules the flags set, and only those.
    pub fn policy(&self) -> Policy {
        Policy {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            keep_within: self.keep_within,
            keep_layout: self.keep_layout,
            keep_checkpoints: self.keep_checkpoints,
        }
    }
}

/// The policy to apply: the flags' rules over the file's, rule by rule. A result that would
/// forget every snapshot is refused, naming where its rules came from.
pub fn effective_policy(file: Option<&Policy>, flags: &PolicyArgs) -> Result<Policy, ConfigError> {
    let over = flags.policy();
    let from_file = file.is_some_and(|file| *file != Policy::default());
    let from_flags = over != Policy::default();
    let key = match (from_flags, from_file) {
        (true, true) => format!("--keep-* over {SECTION}.retention"),
        (true, false) => "--keep-*".to_string(),
        (false, _) => format!("{SECTION}.retention"),
    };
    let policy = file.cloned().unwrap_or_default().overridden_by(over);
    config::check_retention(&key, &policy)?;
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        policy: PolicyArgs,
    }

    fn flags(args: &[&str]) -> Result<PolicyArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("kube-autosave").chain(args.iter().copied()))
            .map(|cli| cli.policy)
    }

    #[test]
    fn flags_parse_into_a_policy() {
        let parsed = flags(&[
            "--keep-last",
            "3",
            "--keep-hourly",
            "24",
            "--keep-daily",
            "7",
            "--keep-weekly",
            "4",
            "--keep-monthly",
            "12",
            "--keep-yearly",
            "0",
            "--keep-within",
            "30d",
            "--keep-layout",
            "2",
            "--keep-checkpoints",
            "2d",
        ])
        .unwrap();
        assert_eq!(
            parsed.policy(),
            Policy {
                keep_last: Some(3),
                keep_hourly: Some(24),
                keep_daily: Some(7),
                keep_weekly: Some(4),
                keep_monthly: Some(12),
                keep_yearly: Some(0),
                keep_within: Some(Duration::from_secs(30 * 86_400)),
                keep_layout: Some(2),
                keep_checkpoints: Some(Duration::from_secs(2 * 86_400)),
            }
        );
        assert_eq!(flags(&[]).unwrap().policy(), Policy::default());
        for (bad, flag, value) in [
            ("--keep-within=30x", "--keep-within", "30x"),
            ("--keep-daily=-1", "--keep-daily", "-1"),
            ("--keep-last=three", "--keep-last", "three"),
            ("--keep-layout=1.5", "--keep-layout", "1.5"),
        ] {
            let err = flags(&[bad]).unwrap_err().to_string();
            assert!(err.contains(flag) && err.contains(value), "{err}");
        }
        let err = flags(&["--keep-within", "30x"]).unwrap_err().to_string();
        assert!(err.contains("is not a duration"), "{err}");
    }

    #[test]
    fn every_flag_has_its_environment_variable() {
        let command = Cli::command();
        let envs: Vec<(String, String)> = command
            .get_arguments()
            .filter_map(|arg| {
                let long = arg.get_long()?.to_string();
                let env = arg.get_env()?.to_str()?.to_string();
                Some((long, env))
            })
            .collect();
        assert_eq!(envs.len(), 9, "{envs:?}");
        for (long, env) in envs {
            let expected = format!("KUBE_AUTOSAVE_{}", long.replace('-', "_").to_uppercase());
            assert_eq!(env, expected);
        }
    }

    #[test]
    fn flags_override_the_file() {
        let file = Policy {
            keep_daily: Some(7),
            keep_weekly: Some(4),
            keep_layout: Some(3),
            ..Policy::default()
        };
        let flags_set = flags(&["--keep-weekly", "0", "--keep-last", "2"]).unwrap();
        assert_eq!(
            effective_policy(Some(&file), &flags_set).unwrap(),
            Policy {
                keep_last: Some(2),
                keep_daily: Some(7),
                keep_weekly: Some(0),
                keep_layout: Some(3),
                ..Policy::default()
            }
        );
        let none = PolicyArgs::default();
        assert_eq!(effective_policy(Some(&file), &none).unwrap(), file);
        assert_eq!(effective_policy(None, &none).unwrap(), Policy::default());
        assert!(effective_policy(None, &none).unwrap().keeps_everything());
    }

    #[test]
    fn a_policy_that_keeps_nothing_is_refused_naming_its_source() {
        let file = Policy {
            keep_daily: Some(7),
            ..Policy::default()
        };
        let zero = flags(&["--keep-daily", "0"]).unwrap();
        let err = effective_policy(Some(&file), &zero)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--keep-* over kubeResourcesAutosave.retention: \"keepDaily 0\""),
            "{err}"
        );
        assert!(err.contains("keeps no snapshot"), "{err}");
        let err = effective_policy(None, &zero).unwrap_err().to_string();
        assert!(err.starts_with("--keep-*: "), "{err}");
        let zero_file = Policy {
            keep_last: Some(0),
            ..Policy::default()
        };
        let err = effective_policy(Some(&zero_file), &PolicyArgs::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("kubeResourcesAutosave.retention: "),
            "{err}"
        );
    }
}
