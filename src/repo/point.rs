//! A point of a folder's history: a snapshot (a full read, with a plain layout) or a
//! checkpoint (what changed since the point before, written between snapshots, never
//! exported), each named by its time. Both are manifests of the same shape; only the folder
//! of their root differs, which is why a point is a kind and a time, never a key spelled out
//! here (`store::layout` spells keys).
//!
//! Also the one reading of a time a person gives for "the state at": RFC 3339, or a
//! snapshot's name. This module reads nothing from the destination.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::store::{Folder, RemoteFile, SnapshotTime};

/// A snapshot or a checkpoint, by its time. Ordered by time; at the same second a snapshot
/// comes after a checkpoint, so that it is the one "at or before" a time picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Point {
    Snapshot(SnapshotTime),
    Checkpoint(SnapshotTime),
}

impl Point {
    pub fn time(&self) -> SnapshotTime {
        match self {
            Point::Snapshot(time) | Point::Checkpoint(time) => *time,
        }
    }

    pub fn is_checkpoint(&self) -> bool {
        matches!(self, Point::Checkpoint(_))
    }

    /// The same kind of point at another time (a root renamed to the next free second).
    pub fn at(&self, time: SnapshotTime) -> Point {
        match self {
            Point::Snapshot(_) => Point::Snapshot(time),
            Point::Checkpoint(_) => Point::Checkpoint(time),
        }
    }

    /// "snapshot" or "checkpoint", as `list` and the JSON output say.
    pub fn kind(&self) -> &'static str {
        match self {
            Point::Snapshot(_) => "snapshot",
            Point::Checkpoint(_) => "checkpoint",
        }
    }

    /// The key of the point's manifest root.
    pub fn root_key(&self) -> String {
        self.remote_file().key()
    }

    pub fn remote_file(&self) -> RemoteFile<'_> {
        match self {
            Point::Snapshot(time) => RemoteFile::Snapshot(time),
            Point::Checkpoint(time) => RemoteFile::Checkpoint(time),
        }
    }

    /// The folder of the point's kind of roots.
    pub fn folder(&self) -> Folder<'static> {
        match self {
            Point::Snapshot(_) => Folder::Snapshots,
            Point::Checkpoint(_) => Folder::Checkpoints,
        }
    }

    /// The point whose manifest root `key` is (`None` for any other key): what a push of a
    /// staged root needs to rename it within its own folder.
    pub fn of_root_key(key: &str) -> Option<Point> {
        let time = |folder: Folder<'_>| folder.name_in(key)?.parse::<SnapshotTime>().ok();
        if let Some(time) = time(Folder::Snapshots) {
            Some(Point::Snapshot(time))
        } else {
            time(Folder::Checkpoints).map(Point::Checkpoint)
        }
    }

    fn rank(&self) -> (SnapshotTime, bool) {
        (self.time(), !self.is_checkpoint())
    }
}

impl PartialOrd for Point {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Point {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl fmt::Display for Point {
    /// The time, the name commands take; `list` says the kind beside it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.time().fmt(f)
    }
}

/// The newest of `points` at or before `at` (a snapshot wins over a checkpoint of the same
/// second). `points` may be in any order.
pub fn newest_at_or_before(points: &[Point], at: DateTime<Utc>) -> Option<Point> {
    points
        .iter()
        .filter(|p| p.time().datetime() <= at)
        .max()
        .copied()
}

/// A time a person gave that is neither RFC 3339 nor a snapshot's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a time: give RFC 3339 (2026-12-03T10:15:00Z, or with an offset: \
     2026-12-03T11:15:00+01:00) or a snapshot's name (26-12-03_10-15-00, UTC)"
)]
pub struct InstantError(pub String);

/// Reads a time given as RFC 3339 or as a snapshot's name (`yy-mm-dd_HH-MM-SS`, UTC).
pub fn parse_instant(text: &str) -> Result<DateTime<Utc>, InstantError> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    text.parse::<SnapshotTime>()
        .map(|t| t.datetime())
        .map_err(|_| InstantError(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(s: &str) -> SnapshotTime {
        s.parse().unwrap()
    }

    #[test]
    fn the_newest_point_at_or_before_a_time_prefers_a_snapshot_at_the_same_second() {
        let points = [
            Point::Snapshot(time("26-12-03_00-00-00")),
            Point::Checkpoint(time("26-12-03_10-05-00")),
            Point::Checkpoint(time("26-12-03_10-10-00")),
            Point::Snapshot(time("26-12-03_10-10-00")),
        ];
        let at = |s: &str| newest_at_or_before(&points, parse_instant(s).unwrap());
        assert_eq!(at("2026-12-02T23:59:59Z"), None);
        assert_eq!(
            at("2026-12-03T10:09:59.9Z"),
            Some(Point::Checkpoint(time("26-12-03_10-05-00")))
        );
        assert_eq!(
            at("26-12-03_10-10-00"),
            Some(Point::Snapshot(time("26-12-03_10-10-00")))
        );
        assert_eq!(
            at("2026-12-03T11:07:00+01:00"),
            Some(Point::Checkpoint(time("26-12-03_10-05-00")))
        );
        let err = parse_instant("yesterday").unwrap_err().to_string();
        assert!(
            err.contains("RFC 3339") && err.contains("yesterday"),
            "{err}"
        );
    }

    #[test]
    fn a_root_key_names_its_point() {
        let t = time("26-12-03_10-05-00");
        for point in [Point::Snapshot(t), Point::Checkpoint(t)] {
            assert_eq!(Point::of_root_key(&point.root_key()), Some(point));
            assert_eq!(point.at(t.next_second()).kind(), point.kind());
        }
        assert_eq!(Point::of_root_key("store/exports/26-12-03_10-05-00"), None);
    }
}
