//! The retention policy: which snapshots a destination keeps, and which of the kept ones keep
//! their plain layout `backup/<ts>/` as well as their manifest.
//!
//! The rules are restic's `forget` rules (`keepLast`, `keepHourly` ... `keepYearly`,
//! `keepWithin`), applied to snapshot times. [`apply`] only decides: it is handed the
//! snapshots' times and whether each one's export is complete, and returns a decision with
//! its reasons for each. It never deletes anything and never reads the destination; whoever
//! prunes lists the snapshots, calls it, and acts on (or prints) what it returns. It reads no
//! clock either: `keepWithin` is measured from the newest complete snapshot, as restic does,
//! so the same snapshots and policy always give the same decisions.
//!
//! Checkpoints (manifests between snapshots) are kept for a time, not by count:
//! [`checkpoints_to_forget`] names those older than `keepCheckpoints` before the newest
//! point, snapshot or checkpoint.
//!
//! Two differences from restic: there are no groups (a destination folder holds one
//! cluster's snapshots), and the oldest snapshot is not kept "additionally" when a rule has
//! counts left (restic 0.16 and later do that); a rule keeps exactly what its buckets give.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::store::SnapshotTime;

/// Which snapshots to keep (restic's `forget` semantics, applied to snapshot times) and how
/// many of the kept ones keep their plain layout.
///
/// A rule that is not set takes no part; a rule set to 0 keeps nothing by itself (which lets
/// a flag switch off a rule of the configuration file). A policy whose rules are all 0 would
/// forget every snapshot and is refused ([`Policy::check`]); a policy without any rule keeps
/// everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    /// The n newest complete snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// The newest complete snapshot of each of the n newest hours (UTC) that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    /// The newest complete snapshot of each of the n newest days (UTC) that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    /// The newest complete snapshot of each of the n newest ISO weeks (Monday to Sunday, UTC)
    /// that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    /// The newest complete snapshot of each of the n newest months (UTC) that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    /// The newest complete snapshot of each of the n newest years (UTC) that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    /// Every complete snapshot taken less than this before the newest complete one: "30d",
    /// "2w", "1y" in YAML (humantime's units, where a year is 365.25 days and a month 30.44).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_text::keep_within"
    )]
    pub keep_within: Option<Duration>,
    /// How many of the newest kept complete snapshots keep their plain layout `backup/<ts>/`;
    /// the older kept ones keep their manifest only (restorable from the store). None = all
    /// of them. 0 is allowed: then no layout is kept, and every export uploads every file,
    /// since an unchanged file is copied from the previous snapshot's layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_layout: Option<u32>,
    /// How long checkpoints are kept, measured back from the newest point (snapshot or
    /// checkpoint): "7d", "36h". None = [`DEFAULT_KEEP_CHECKPOINTS`]; 0 keeps none but a
    /// checkpoint that is the newest point.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_text::keep_checkpoints"
    )]
    pub keep_checkpoints: Option<Duration>,
}

/// Checkpoints are kept a week unless `keepCheckpoints` says otherwise: long enough to go
/// back to any five minutes of the last days, short enough that their roots (one per
/// interval with changes) do not pile up.
pub const DEFAULT_KEEP_CHECKPOINTS: Duration = Duration::from_secs(7 * 24 * 3600);

/// A policy that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Rules are set and all of them are 0: every snapshot would be forgotten.
    #[error(
        "the retention policy ({0}) keeps no snapshot, as every keep rule in it is 0; set one \
         above 0 (e.g. keepLast 1), or set none to keep every snapshot"
    )]
    KeepsNothing(Policy),
}

impl Policy {
    /// No keep rule set: everything is kept (today's behaviour). `keep_layout` alone is not a
    /// keep rule but still applies.
    pub fn keeps_everything(&self) -> bool {
        self.counts().iter().all(|(_, n)| n.is_none()) && self.keep_within.is_none()
    }

    /// Whether applying the policy can change anything: a keep rule is set, `keepLayout`, or
    /// `keepCheckpoints`.
    pub fn does_something(&self) -> bool {
        !self.keeps_everything() || self.keep_layout.is_some() || self.keep_checkpoints.is_some()
    }

    /// How long checkpoints are kept: `keepCheckpoints`, else the default.
    pub fn checkpoints_kept_for(&self) -> Duration {
        self.keep_checkpoints.unwrap_or(DEFAULT_KEEP_CHECKPOINTS)
    }

    /// `over`'s fields where set, else self's (flags over the file).
    pub fn overridden_by(self, over: Policy) -> Policy {
        Policy {
            keep_last: over.keep_last.or(self.keep_last),
            keep_hourly: over.keep_hourly.or(self.keep_hourly),
            keep_daily: over.keep_daily.or(self.keep_daily),
            keep_weekly: over.keep_weekly.or(self.keep_weekly),
            keep_monthly: over.keep_monthly.or(self.keep_monthly),
            keep_yearly: over.keep_yearly.or(self.keep_yearly),
            keep_within: over.keep_within.or(self.keep_within),
            keep_layout: over.keep_layout.or(self.keep_layout),
            keep_checkpoints: over.keep_checkpoints.or(self.keep_checkpoints),
        }
    }

    /// Refuses a policy that would forget every snapshot: rules set, all of them 0. Any rule
    /// above 0 keeps at least the newest complete snapshot.
    pub fn check(&self) -> Result<(), PolicyError> {
        if self.keeps_everything() {
            return Ok(());
        }
        let some_count = self.counts().iter().any(|(_, n)| n.is_some_and(|n| n > 0));
        let some_within = self.keep_within.is_some_and(|d| !d.is_zero());
        if some_count || some_within {
            Ok(())
        } else {
            Err(PolicyError::KeepsNothing(self.clone()))
        }
    }

    /// The counted rules with their names in the configuration file.
    fn counts(&self) -> [(&'static str, Option<u32>); 6] {
        [
            ("keepLast", self.keep_last),
            ("keepHourly", self.keep_hourly),
            ("keepDaily", self.keep_daily),
            ("keepWeekly", self.keep_weekly),
            ("keepMonthly", self.keep_monthly),
            ("keepYearly", self.keep_yearly),
        ]
    }
}

impl fmt::Display for Policy {
    /// One line a person reads: "keepDaily 7, keepWeekly 4, keepLayout 3", or "keep
    /// everything" (followed by the keepLayout, if set) when no rule is set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if self.keeps_everything() {
            parts.push("keep everything".to_string());
        }
        for (name, n) in self.counts() {
            if let Some(n) = n {
                parts.push(format!("{name} {n}"));
            }
        }
        if let Some(within) = self.keep_within {
            parts.push(format!("keepWithin {}", format_duration(within)));
        }
        if let Some(n) = self.keep_layout {
            parts.push(format!("keepLayout {n}"));
        }
        if let Some(kept) = self.keep_checkpoints {
            parts.push(format!("keepCheckpoints {}", format_duration(kept)));
        }
        f.write_str(&parts.join(", "))
    }
}

/// A snapshot as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotState {
    pub time: SnapshotTime,
    /// Its export record exists (its plain layout is complete).
    pub complete: bool,
}

/// What the policy decided for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub time: SnapshotTime,
    pub complete: bool,
    pub keep: bool,
    /// Whether a kept snapshot keeps its plain layout (false for forgotten ones).
    pub layout: bool,
    /// Why: the rules that keep it ("last 3", "hourly", "daily", "weekly", "monthly",
    /// "yearly", "within 30d", "no policy", "not exported yet"), or why it goes ("no rule
    /// keeps it", "incomplete; a newer snapshot is complete").
    pub reasons: Vec<String>,
}

const NO_POLICY: &str = "no policy";
const NOT_EXPORTED_YET: &str = "not exported yet";
const NO_RULE: &str = "no rule keeps it";
const SUPERSEDED: &str = "incomplete; a newer snapshot is complete";

/// The calendar rules: a snapshot is kept when its bucket differs from that of the last
/// snapshot the rule kept, until the rule has kept its count.
#[derive(Debug, Clone, Copy)]
enum Calendar {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Calendar {
    const ALL: [Calendar; 5] = [
        Calendar::Hourly,
        Calendar::Daily,
        Calendar::Weekly,
        Calendar::Monthly,
        Calendar::Yearly,
    ];

    fn count(self, policy: &Policy) -> Option<u32> {
        match self {
            Calendar::Hourly => policy.keep_hourly,
            Calendar::Daily => policy.keep_daily,
            Calendar::Weekly => policy.keep_weekly,
            Calendar::Monthly => policy.keep_monthly,
            Calendar::Yearly => policy.keep_yearly,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Calendar::Hourly => "hourly",
            Calendar::Daily => "daily",
            Calendar::Weekly => "weekly",
            Calendar::Monthly => "monthly",
            Calendar::Yearly => "yearly",
        }
    }

    /// The UTC hour, day, ISO week, month or year of `t`, as one comparable number
    /// (restic's YYYYMMDDHH, YYYYMMDD, YYYYWW, YYYYMM, YYYY). A week belongs to its ISO year,
    /// so the last days of December can be in week 1 of the next year.
    fn bucket(self, t: DateTime<Utc>) -> i64 {
        let year = i64::from(t.year());
        let month = i64::from(t.month());
        let day = i64::from(t.day());
        match self {
            Calendar::Hourly => ((year * 100 + month) * 100 + day) * 100 + i64::from(t.hour()),
            Calendar::Daily => (year * 100 + month) * 100 + day,
            Calendar::Weekly => {
                let week = t.iso_week();
                i64::from(week.year()) * 100 + i64::from(week.week())
            }
            Calendar::Monthly => year * 100 + month,
            Calendar::Yearly => year,
        }
    }
}

/// One calendar rule's progress while the snapshots are walked newest first.
struct Counter {
    rule: Calendar,
    left: u32,
    last: Option<i64>,
}

/// Applies `policy` to `snapshots` (any order; duplicates impossible). Returns one decision
/// per snapshot, newest first. Refuses a policy that keeps nothing ([`Policy::check`]), so
/// that a caller cannot forget every snapshot by mistake.
///
/// Only complete snapshots count toward the rules. An incomplete one newer than the newest
/// complete one is kept with its layout, as its export may be in progress; an older one is
/// forgotten, since a newer export finished after it. With no complete snapshot at all,
/// every snapshot is kept.
pub fn apply(policy: &Policy, snapshots: &[SnapshotState]) -> Result<Vec<Decision>, PolicyError> {
    policy.check()?;
    let mut sorted = snapshots.to_vec();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.time));

    let newest_complete = sorted.iter().find(|s| s.complete).map(|s| s.time);
    // At or before this is outside keepWithin. None with a duration that reaches past the
    // calendar chrono can represent: then every complete snapshot is within.
    let within_since = match (policy.keep_within, newest_complete) {
        (Some(within), Some(newest)) => chrono::Duration::from_std(within)
            .ok()
            .and_then(|d| newest.datetime().checked_sub_signed(d)),
        _ => None,
    };
    let mut last_left = policy.keep_last.unwrap_or(0);
    let mut counters: Vec<Counter> = Calendar::ALL
        .into_iter()
        .filter_map(|rule| {
            rule.count(policy).map(|left| Counter {
                rule,
                left,
                last: None,
            })
        })
        .collect();

    let mut decisions: Vec<Decision> = Vec::with_capacity(sorted.len());
    for snapshot in sorted {
        let mut reasons: Vec<String> = Vec::new();
        if policy.keeps_everything() {
            reasons.push(NO_POLICY.to_string());
        } else if !snapshot.complete {
            if newest_complete.is_none_or(|newest| snapshot.time > newest) {
                reasons.push(NOT_EXPORTED_YET.to_string());
            }
        } else {
            let t = snapshot.time.datetime();
            if last_left > 0 {
                last_left -= 1;
                reasons.push(format!("last {}", policy.keep_last.unwrap_or(0)));
            }
            for counter in &mut counters {
                let bucket = counter.rule.bucket(t);
                if counter.left > 0 && counter.last != Some(bucket) {
                    counter.left -= 1;
                    counter.last = Some(bucket);
                    reasons.push(counter.rule.reason().to_string());
                }
            }
            if let Some(within) = policy.keep_within {
                // Strictly after, as restic: a snapshot exactly `within` older goes.
                let inside = match within_since {
                    Some(since) => t > since,
                    None => !within.is_zero(),
                };
                if inside {
                    reasons.push(format!("within {}", format_duration(within)));
                }
            }
        }
        let keep = !reasons.is_empty();
        if !keep {
            let why = if snapshot.complete {
                NO_RULE
            } else {
                SUPERSEDED
            };
            reasons.push(why.to_string());
        }
        decisions.push(Decision {
            time: snapshot.time,
            complete: snapshot.complete,
            keep,
            layout: keep,
            reasons,
        });
    }

    // keepLayout counts kept complete snapshots only. An incomplete one that is kept is left
    // alone, layout and all: its export may still be writing it (or, with no rule, nothing
    // is forgotten).
    if let Some(keep_layout) = policy.keep_layout {
        let kept_complete = decisions.iter_mut().filter(|d| d.keep && d.complete);
        for (rank, decision) in kept_complete.enumerate() {
            decision.layout = u32::try_from(rank).is_ok_and(|rank| rank < keep_layout);
        }
    }
    Ok(decisions)
}

/// The checkpoints (any order) that `policy` does not keep, oldest first: those taken more
/// than `keepCheckpoints` before `newest`, the newest point of the folder (snapshot or
/// checkpoint). Reads no clock, as [`apply`] does not.
pub fn checkpoints_to_forget(
    policy: &Policy,
    checkpoints: &[SnapshotTime],
    newest: Option<SnapshotTime>,
) -> Vec<SnapshotTime> {
    let Some(newest) = newest else {
        return Vec::new();
    };
    let Some(since) = chrono::Duration::from_std(policy.checkpoints_kept_for())
        .ok()
        .and_then(|kept| newest.datetime().checked_sub_signed(kept))
    else {
        // Longer than the calendar: every checkpoint is within.
        return Vec::new();
    };
    let mut old: Vec<SnapshotTime> = checkpoints
        .iter()
        .filter(|time| time.datetime() < since)
        .copied()
        .collect();
    old.sort();
    old
}

/// Parses a `keepWithin` duration ("30d", "2w", "1y", "36h"); the error is the problem,
/// for the caller to name the setting and the value.
pub fn parse_within(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("is not a duration ({e}); write e.g. 30d, 2w, 6months or 1y"))
}

/// A duration short and in units `parse_within` reads back: whole years, months or weeks
/// when it is one ("1y", "6months", "2w"), else days, hours, minutes, seconds ("30d",
/// "1d12h").
pub fn format_duration(d: Duration) -> String {
    const MINUTE: u64 = 60;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    // humantime's year and month: 365.25 and 30.44 days.
    const YEAR: u64 = 31_557_600;
    const MONTH: u64 = 2_630_016;
    const WEEK: u64 = 7 * DAY;
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    if secs == 0 && nanos == 0 {
        return "0s".to_string();
    }
    if nanos == 0 {
        for (unit, name) in [(YEAR, "y"), (MONTH, "months"), (WEEK, "w")] {
            if secs.is_multiple_of(unit) {
                return format!("{}{name}", secs / unit);
            }
        }
    }
    let mut text = String::new();
    let mut rest = secs;
    for (unit, name) in [(DAY, "d"), (HOUR, "h"), (MINUTE, "m"), (1, "s")] {
        if rest >= unit {
            text.push_str(&format!("{}{name}", rest / unit));
            rest %= unit;
        }
    }
    let mut rest = nanos;
    for (unit, name) in [(1_000_000, "ms"), (1_000, "us"), (1, "ns")] {
        if rest >= unit {
            text.push_str(&format!("{}{name}", rest / unit));
            rest %= unit;
        }
    }
    text
}

/// `keepWithin` as text in YAML (and any other serde format), a `Duration` in code.
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_str(&super::format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    /// Text, or a bare 0 (none needs no unit; any other number does).
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Text(String),
        Number(u64),
    }

    /// Reads the setting `name`, which its errors name.
    fn read<'de, D: Deserializer<'de>>(d: D, name: &str) -> Result<Option<Duration>, D::Error> {
        match Option::<Written>::deserialize(d)? {
            Some(Written::Text(text)) => super::parse_within(&text)
                .map(Some)
                .map_err(|problem| serde::de::Error::custom(format!("{name}: {text:?} {problem}"))),
            Some(Written::Number(0)) => Ok(Some(Duration::ZERO)),
            Some(Written::Number(n)) => Err(serde::de::Error::custom(format!(
                "{name}: {n} is not a duration; write it with a unit, e.g. 30d, 2w, 6months or 1y"
            ))),
            None => Ok(None),
        }
    }

    pub mod keep_within {
        pub use super::serialize;
        pub fn deserialize<'de, D: super::Deserializer<'de>>(
            d: D,
        ) -> Result<Option<super::Duration>, D::Error> {
            super::read(d, "keepWithin")
        }
    }

    pub mod keep_checkpoints {
        pub use super::serialize;
        pub fn deserialize<'de, D: super::Deserializer<'de>>(
            d: D,
        ) -> Result<Option<super::Duration>, D::Error> {
            super::read(d, "keepCheckpoints")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SnapshotTime {
        text.parse().unwrap()
    }

    fn complete(text: &str) -> SnapshotState {
        SnapshotState {
            time: at(text),
            complete: true,
        }
    }

    fn incomplete(text: &str) -> SnapshotState {
        SnapshotState {
            time: at(text),
            complete: false,
        }
    }

    /// The kept snapshots' names, newest first.
    fn kept(decisions: &[Decision]) -> Vec<String> {
        decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| d.time.to_string())
            .collect()
    }

    fn decision<'a>(decisions: &'a [Decision], time: &str) -> &'a Decision {
        decisions
            .iter()
            .find(|d| d.time == at(time))
            .unwrap_or_else(|| panic!("no decision for {time}"))
    }

    #[test]
    fn thirty_daily_snapshots_keep_seven_days_four_weeks_and_three_layouts() {
        // One snapshot a day at 02:00 from Monday 2024-06-03 to Tuesday 2024-07-02, given
        // oldest first to show that the order does not matter. The ISO weeks (Monday to
        // Sunday) are:
        //   W23: 06-03 .. 06-09   W24: 06-10 .. 06-16   W25: 06-17 .. 06-23
        //   W26: 06-24 .. 06-30   W27: 07-01 .. 07-02 (the newest two)
        // keepDaily 7: the seven newest days, 06-26 .. 07-02.
        // keepWeekly 4: the newest snapshot of the four newest weeks: 07-02 (W27),
        //   06-30 (W26), 06-23 (W25), 06-16 (W24). W23 is the fifth week: 06-09 goes.
        // keepLayout 3: the three newest kept, 07-02, 07-01, 06-30.
        let start = at("24-06-03_02-00-00").datetime();
        let snapshots: Vec<SnapshotState> = (0..30)
            .map(|day| SnapshotState {
                time: SnapshotTime::from_datetime(start + chrono::Duration::days(day)),
                complete: true,
            })
            .collect();
        assert_eq!(snapshots[29].time, at("24-07-02_02-00-00"));
        let policy = Policy {
            keep_daily: Some(7),
            keep_weekly: Some(4),
            keep_layout: Some(3),
            ..Policy::default()
        };
        let decisions = apply(&policy, &snapshots).unwrap();
        assert_eq!(decisions.len(), 30);
        assert_eq!(
            kept(&decisions),
            [
                "24-07-02_02-00-00",
                "24-07-01_02-00-00",
                "24-06-30_02-00-00",
                "24-06-29_02-00-00",
                "24-06-28_02-00-00",
                "24-06-27_02-00-00",
                "24-06-26_02-00-00",
                "24-06-23_02-00-00",
                "24-06-16_02-00-00",
            ]
        );
        let with_layout: Vec<String> = decisions
            .iter()
            .filter(|d| d.layout)
            .map(|d| d.time.to_string())
            .collect();
        assert_eq!(
            with_layout,
            [
                "24-07-02_02-00-00",
                "24-07-01_02-00-00",
                "24-06-30_02-00-00"
            ]
        );
        assert_eq!(
            decision(&decisions, "24-07-02_02-00-00").reasons,
            ["daily", "weekly"]
        );
        assert_eq!(decision(&decisions, "24-07-01_02-00-00").reasons, ["daily"]);
        assert_eq!(
            decision(&decisions, "24-06-30_02-00-00").reasons,
            ["daily", "weekly"]
        );
        assert_eq!(
            decision(&decisions, "24-06-16_02-00-00").reasons,
            ["weekly"]
        );
        let gone = decision(&decisions, "24-06-09_02-00-00");
        assert!(!gone.keep && !gone.layout);
        assert_eq!(gone.reasons, [NO_RULE]);
    }

    #[test]
    fn output_is_newest_first_whatever_the_input_order() {
        let snapshots = [
            complete("24-01-02_00-00-00"),
            incomplete("24-01-05_00-00-00"),
            complete("24-01-01_00-00-00"),
            complete("24-01-04_00-00-00"),
            complete("24-01-03_00-00-00"),
        ];
        for policy in [
            Policy::default(),
            Policy {
                keep_last: Some(2),
                ..Policy::default()
            },
        ] {
            let times: Vec<String> = apply(&policy, &snapshots)
                .unwrap()
                .iter()
                .map(|d| d.time.to_string())
                .collect();
            assert_eq!(
                times,
                [
                    "24-01-05_00-00-00",
                    "24-01-04_00-00-00",
                    "24-01-03_00-00-00",
                    "24-01-02_00-00-00",
                    "24-01-01_00-00-00",
                ]
            );
        }
        assert!(apply(&Policy::default(), &[]).unwrap().is_empty());
    }

    #[test]
    fn keep_last_keeps_the_newest_complete_ones() {
        let snapshots = [
            complete("24-03-01_10-00-00"),
            complete("24-03-01_11-00-00"),
            complete("24-03-01_12-00-00"),
            complete("24-03-01_13-00-00"),
            complete("24-03-01_14-00-00"),
        ];
        let policy = Policy {
            keep_last: Some(3),
            ..Policy::default()
        };
        let decisions = apply(&policy, &snapshots).unwrap();
        assert_eq!(
            kept(&decisions),
            [
                "24-03-01_14-00-00",
                "24-03-01_13-00-00",
                "24-03-01_12-00-00"
            ]
        );
        assert!(decisions[..3].iter().all(|d| d.reasons == ["last 3"]));
        assert!(
            decisions[..3].iter().all(|d| d.layout),
            "no keepLayout: all"
        );
        // More than there are: all kept.
        let policy = Policy {
            keep_last: Some(10),
            ..Policy::default()
        };
        assert_eq!(kept(&apply(&policy, &snapshots).unwrap()).len(), 5);
    }

    #[test]
    fn keep_within_is_measured_from_the_newest_complete_snapshot() {
        // Years old, so that a clock, if one were read, would keep nothing.
        let snapshots = [
            complete("20-05-01_00-00-00"),
            complete("20-05-10_00-00-00"),
            // Exactly 10 days before the newest: outside, as restic.
            complete("20-05-21_12-00-00"),
            complete("20-05-21_12-00-01"),
            complete("20-05-31_12-00-00"),
            // Newer than the newest complete, but incomplete: not what within is measured
            // from.
            incomplete("20-07-01_00-00-00"),
        ];
        let policy = Policy {
            keep_within: Some(Duration::from_secs(10 * 86_400)),
            ..Policy::default()
        };
        let decisions = apply(&policy, &snapshots).unwrap();
        assert_eq!(
            kept(&decisions),
            [
                "20-07-01_00-00-00",
                "20-05-31_12-00-00",
                "20-05-21_12-00-01"
            ]
        );
        assert_eq!(
            decision(&decisions, "20-05-31_12-00-00").reasons,
            ["within 10d"]
        );
        assert_eq!(
            decision(&decisions, "20-07-01_00-00-00").reasons,
            [NOT_EXPORTED_YET]
        );
        // Longer than the calendar: everything is within.
        let policy = Policy {
            keep_within: Some(Duration::from_secs(u64::MAX / 4)),
            ..Policy::default()
        };
        assert_eq!(kept(&apply(&policy, &snapshots).unwrap()).len(), 6);
    }

    #[test]
    fn hourly_keeps_the_newest_of_each_hour() {
        let snapshots = [
            complete("24-02-10_08-05-00"),
            complete("24-02-10_08-35-00"),
            complete("24-02-10_09-00-00"),
            complete("24-02-10_09-20-00"),
            complete("24-02-10_09-59-59"),
            complete("24-02-10_10-15-00"),
            complete("24-02-10_10-45-00"),
        ];
        let policy = Policy {
            keep_hourly: Some(24),
            ..Policy::default()
        };
        let decisions = apply(&policy, &snapshots).unwrap();
        assert_eq!(
            kept(&decisions),
            [
                "24-02-10_10-45-00",
                "24-02-10_09-59-59",
                "24-02-10_08-35-00"
            ]
        );
        assert!(
            decisions
                .iter()
                .filter(|d| d.keep)
                .all(|d| d.reasons == ["hourly"])
        );
        // Two hours only: the two newest hours.
        let policy = Policy {
            keep_hourly: Some(2),
            ..Policy::default()
        };
        assert_eq!(
            kept(&apply(&policy, &snapshots).unwrap()),
            ["24-02-10_10-45-00", "24-02-10_09-59-59"]
        );
    }

    #[test]
    fn monthly_and_yearly_use_calendar_months_and_years() {
        let snapshots = [
            complete("22-11-15_00-00-00"),
            complete("22-12-31_23-59-59"),
            complete("23-01-01_00-00-00"),
            complete("23-01-31_06-00-00"),
            complete("23-02-01_06-00-00"),
            complete("23-02-28_06-00-00"),
            complete("23-12-01_00-00-00"),
            complete("24-01-20_00-00-00"),
        ];
        let policy = Policy {
            keep_monthly: Some(4),
            keep_yearly: Some(3),
            ..Policy::default()
        };
        let decisions = apply(&policy, &snapshots).unwrap();
        // Monthly: 2024-01, 2023-12, 2023-02 (its newest, the 28th), 2023-01 (the 31st).
        // Yearly: 2024 (01-20), 2023 (12-01), 2022 (12-31).
        assert_eq!(
            kept(&decisions),
            [
                "24-01-20_00-00-00",
                "23-12-01_00-00-00",
                "23-02-28_06-00-00",
                "23-01-31_06-00-00",
                "22-12-31_23-59-59",
            ]
        );
        assert_eq!(
            decision(&decisions, "24-01-20_00-00-00").reasons,
            ["monthly", "yearly"]
        );
        assert_eq!(
            decision(&decisions, "23-02-28_06-00-00").reasons,
            ["monthly"]
        );
        assert_eq!(
            decision(&decisions, "22-12-31_23-59-59").reasons,
            ["yearly"]
        );
    }

    #[test]
    fn weeks_are_iso_weeks_across_the_new_year() {
        // 2024-12-30 (Monday) .. 2025-01-05 (Sunday) is ISO week 2025-W01: one week, one
        // snapshot kept; 2024-12-29 (Sunday) ends 2024-W52.
        let snapshots = [
            complete("24-12-29_12-00-00"),
            complete("24-12-30_12-00-00"),
            complete("24-12-31_12-00-00"),
            complete("25-01-02_12-00-00"),
        ];
        let policy = Policy {
            keep_weekly: Some(5),
            ..Policy::default()
        };
        assert_eq!(
            kept(&apply(&policy, &snapshots).unwrap()),
            ["25-01-02_12-00-00", "24-12-29_12-00-00"]
        );
    }

    #[test]
    fn a_snapshot_kept_by_several_rules_lists_every_reason() {
        let snapshots = [complete("24-05-30_00-00-00"), complete("24-05-31_00-00-00")];
        let policy = Policy {
            keep_last: Some(1),
            keep_hourly: Some(1),
            keep_daily: Some(1),
            keep_weekly: Some(1),
            keep_monthly: Some(1),
            keep_yearly: Some(1),
            keep_within: Some(Duration::from_secs(3600)),
            keep_layout: None,
            keep_checkpoints: None,
        };
        let decisions = apply(&policy, &snapshots).unwrap();
        assert_eq!(
            decisions[0].reasons,
            [
                "last 1",
                "hourly",
                "daily",
                "weekly",
                "monthly",
                "yearly",
                "within 1h"
            ]
        );
        assert!(!decisions[1].keep);
        assert_eq!(decisions[1].reasons, [NO_RULE]);
    }

    #[test]
    fn incomplete_snapshots_never_count() {
        let policy = Policy {
            keep_last: Some(2),
            ..Policy::default()
        };
        let snapshots = [
            complete("24-04-01_00-00-00"),
            incomplete("24-04-02_00-00-00"),
            complete("24-04-03_00-00-00"),
            complete("24-04-04_00-00-00"),
            incomplete("24-04-05_00-00-00"),
            incomplete("24-04-06_00-00-00"),
        ];
        let decisions = apply(&policy, &snapshots).unwrap();
        // The two newer than the newest complete are kept, layout and all; the two newest
        // complete are kept by keepLast (the incomplete ones take none of its places); the
        // incomplete one older than a complete one goes.
        assert_eq!(
            kept(&decisions),
            [
                "24-04-06_00-00-00",
                "24-04-05_00-00-00",
                "24-04-04_00-00-00",
                "24-04-03_00-00-00",
            ]
        );
        for newer in ["24-04-06_00-00-00", "24-04-05_00-00-00"] {
            let d = decision(&decisions, newer);
            assert!(d.keep && d.layout && !d.complete);
            assert_eq!(d.reasons, [NOT_EXPORTED_YET]);
        }
        let older = decision(&decisions, "24-04-02_00-00-00");
        assert!(!older.keep && !older.layout);
        assert_eq!(older.reasons, [SUPERSEDED]);
        assert_eq!(decision(&decisions, "24-04-01_00-00-00").reasons, [NO_RULE]);

        // None complete: all kept.
        let snapshots = [
            incomplete("24-04-01_00-00-00"),
            incomplete("24-04-02_00-00-00"),
        ];
        let decisions = apply(&policy, &snapshots).unwrap();
        assert!(decisions.iter().all(|d| d.keep && d.layout));
        assert!(decisions.iter().all(|d| d.reasons == [NOT_EXPORTED_YET]));
    }

    #[test]
    fn no_rule_keeps_everything_and_keep_layout_still_applies() {
        let snapshots = [
            complete("24-01-01_00-00-00"),
            incomplete("24-01-02_00-00-00"),
            complete("24-01-03_00-00-00"),
            complete("24-01-04_00-00-00"),
            incomplete("24-01-05_00-00-00"),
        ];
        let decisions = apply(&Policy::default(), &snapshots).unwrap();
        assert!(
            decisions
                .iter()
                .all(|d| d.keep && d.layout && d.reasons == [NO_POLICY])
        );

        let policy = Policy {
            keep_layout: Some(1),
            ..Policy::default()
        };
        assert!(policy.keeps_everything());
        let decisions = apply(&policy, &snapshots).unwrap();
        assert!(decisions.iter().all(|d| d.keep));
        let with_layout: Vec<String> = decisions
            .iter()
            .filter(|d| d.layout)
            .map(|d| d.time.to_string())
            .collect();
        // Incomplete ones are left alone; of the complete ones, the newest keeps its layout.
        assert_eq!(
            with_layout,
            [
                "24-01-05_00-00-00",
                "24-01-04_00-00-00",
                "24-01-02_00-00-00"
            ]
        );
    }

    #[test]
    fn keep_layout_counts_kept_complete_snapshots_newest_first() {
        let snapshots = [
            complete("24-01-01_00-00-00"),
            complete("24-01-02_00-00-00"),
            complete("24-01-03_00-00-00"),
            complete("24-01-04_00-00-00"),
            incomplete("24-01-05_00-00-00"),
        ];
        let layouts = |keep_layout: Option<u32>| -> Vec<bool> {
            let policy = Policy {
                keep_last: Some(3),
                keep_layout,
                ..Policy::default()
            };
            apply(&policy, &snapshots)
                .unwrap()
                .iter()
                .map(|d| d.layout)
                .collect()
        };
        // Newest first: the incomplete one, three kept, one forgotten.
        assert_eq!(layouts(None), [true, true, true, true, false]);
        assert_eq!(layouts(Some(2)), [true, true, true, false, false]);
        assert_eq!(layouts(Some(0)), [true, false, false, false, false]);
        assert_eq!(layouts(Some(9)), [true, true, true, true, false]);
    }

    #[test]
    fn a_policy_that_keeps_nothing_is_refused() {
        let zeros = Policy {
            keep_last: Some(0),
            keep_daily: Some(0),
            keep_within: Some(Duration::ZERO),
            keep_layout: Some(3),
            ..Policy::default()
        };
        let err = zeros.check().unwrap_err();
        assert_eq!(err, PolicyError::KeepsNothing(zeros.clone()));
        let text = err.to_string();
        assert!(
            text.contains("keepLast 0, keepDaily 0, keepWithin 0s"),
            "{text}"
        );
        assert_eq!(apply(&zeros, &[complete("24-01-01_00-00-00")]), Err(err));
        // One rule above zero is enough, and keeps at least the newest complete snapshot.
        for policy in [
            Policy {
                keep_yearly: Some(1),
                ..zeros.clone()
            },
            Policy {
                keep_within: Some(Duration::from_nanos(1)),
                ..zeros.clone()
            },
        ] {
            let decisions = apply(
                &policy,
                &[complete("24-01-01_00-00-00"), complete("24-06-01_00-00-00")],
            )
            .unwrap();
            assert_eq!(kept(&decisions), ["24-06-01_00-00-00"], "{policy}");
        }
        assert!(Policy::default().check().is_ok());
    }

    #[test]
    fn flags_override_the_file_field_by_field() {
        let file = Policy {
            keep_daily: Some(7),
            keep_weekly: Some(4),
            keep_layout: Some(3),
            ..Policy::default()
        };
        let flags = Policy {
            keep_weekly: Some(0),
            keep_within: Some(Duration::from_secs(86_400)),
            ..Policy::default()
        };
        assert_eq!(
            file.clone().overridden_by(flags),
            Policy {
                keep_daily: Some(7),
                keep_weekly: Some(0),
                keep_within: Some(Duration::from_secs(86_400)),
                keep_layout: Some(3),
                ..Policy::default()
            }
        );
        assert_eq!(file.clone().overridden_by(Policy::default()), file);
    }

    #[test]
    fn display_is_one_line() {
        assert_eq!(Policy::default().to_string(), "keep everything");
        let layout_only = Policy {
            keep_layout: Some(2),
            ..Policy::default()
        };
        assert_eq!(layout_only.to_string(), "keep everything, keepLayout 2");
        let policy = Policy {
            keep_daily: Some(7),
            keep_weekly: Some(4),
            keep_within: Some(Duration::from_secs(30 * 86_400)),
            keep_layout: Some(3),
            ..Policy::default()
        };
        assert_eq!(
            policy.to_string(),
            "keepDaily 7, keepWeekly 4, keepWithin 30d, keepLayout 3"
        );
    }

    #[test]
    fn durations_read_back_as_written() {
        for (text, shown) in [
            ("30d", "30d"),
            ("2w", "2w"),
            ("14d", "2w"),
            ("1y", "1y"),
            ("6months", "6months"),
            ("36h", "1d12h"),
            ("1h30m", "1h30m"),
            ("90s", "1m30s"),
            ("1500ms", "1s500ms"),
            ("0s", "0s"),
        ] {
            let d = parse_within(text).unwrap();
            assert_eq!(format_duration(d), shown, "{text}");
            assert_eq!(parse_within(shown).unwrap(), d, "{shown}");
        }
        let problem = parse_within("30 dayz").unwrap_err();
        assert!(problem.starts_with("is not a duration"), "{problem}");
    }

    #[test]
    fn checkpoints_older_than_keep_checkpoints_before_the_newest_point_go() {
        let checkpoints = [
            at("26-11-20_10-00-00"),
            at("26-11-26_09-59-59"),
            at("26-11-26_10-00-00"),
            at("26-12-03_09-55-00"),
        ];
        let newest = Some(at("26-12-03_10-00-00"));
        let default = Policy::default();
        assert_eq!(default.checkpoints_kept_for(), DEFAULT_KEEP_CHECKPOINTS);
        assert_eq!(
            checkpoints_to_forget(&default, &checkpoints, newest),
            vec![at("26-11-20_10-00-00"), at("26-11-26_09-59-59")]
        );
        let none = Policy {
            keep_checkpoints: Some(Duration::ZERO),
            ..Policy::default()
        };
        assert_eq!(checkpoints_to_forget(&none, &checkpoints, newest).len(), 4);
        // The newest point is the newest checkpoint: it stays.
        let newest = Some(at("26-12-03_09-55-00"));
        assert_eq!(checkpoints_to_forget(&none, &checkpoints, newest).len(), 3);
        assert!(checkpoints_to_forget(&none, &checkpoints, None).is_empty());
        assert!(none.does_something() && !default.does_something());
        assert_eq!(none.to_string(), "keep everything, keepCheckpoints 0s");
    }

    #[test]
    fn serde_round_trip() {
        let policy = Policy {
            keep_daily: Some(7),
            keep_within: Some(Duration::from_secs(30 * 86_400)),
            ..Policy::default()
        };
        let yaml = serde_yaml_ng::to_string(&policy).unwrap();
        assert_eq!(yaml, "keepDaily: 7\nkeepWithin: 30d\n");
        assert_eq!(serde_yaml_ng::from_str::<Policy>(&yaml).unwrap(), policy);
        let err = serde_yaml_ng::from_str::<Policy>("keepWithin: 30x\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("keepWithin: \"30x\" is not a duration"),
            "{err}"
        );
        let policy = Policy {
            keep_checkpoints: Some(Duration::from_secs(36 * 3600)),
            ..Policy::default()
        };
        let yaml = serde_yaml_ng::to_string(&policy).unwrap();
        assert_eq!(yaml, "keepCheckpoints: 1d12h\n");
        assert_eq!(serde_yaml_ng::from_str::<Policy>(&yaml).unwrap(), policy);
    }
}
