//! Looking at what a destination holds: `list` the snapshots, `show` one, `diff` two, `verify`
//! that what the manifests reference is stored intact. Everything here only reads from the
//! destination; it must never write to it (nor to a cluster).

pub mod diff;
pub mod list;
pub mod redact;
pub mod show;
pub mod verify;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::repo::Manifest;
use crate::store::{ObjectId, SnapshotTime, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(
        "there is no snapshot at {0}; take one with `kube-autosave snapshot`, or check --to and \
         --cluster-name"
    )]
    NoSnapshots(String),
    #[error(
        "snapshot {time} does not exist at {at}; `kube-autosave list` shows the snapshots there"
    )]
    NoSuchSnapshot { time: SnapshotTime, at: String },
    #[error(
        "{0:?} is neither `latest` nor a snapshot time (yy-mm-dd_HH-MM-SS, e.g. 17-05-04_13-48-33)"
    )]
    BadSnapshotName(String),
    #[error("object {id:#} ({what}) is not a JSON object: {reason}; run `kube-autosave verify`")]
    BadObject {
        id: ObjectId,
        what: String,
        reason: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A snapshot named on the command line: a time, or `latest` (the newest snapshot by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotRef {
    Latest,
    At(SnapshotTime),
}

impl FromStr for SnapshotRef {
    type Err = InspectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "latest" {
            return Ok(SnapshotRef::Latest);
        }
        s.parse()
            .map(SnapshotRef::At)
            .map_err(|_| InspectError::BadSnapshotName(s.to_string()))
    }
}

impl fmt::Display for SnapshotRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotRef::Latest => f.write_str("latest"),
            SnapshotRef::At(time) => write!(f, "{time}"),
        }
    }
}

/// A snapshot as JSON output names it: `time`, the name the commands take
/// (`yy-mm-dd_HH-MM-SS`), and `started_at`, the same instant in RFC 3339 (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SnapshotStamp {
    pub time: SnapshotTime,
    pub started_at: DateTime<Utc>,
}

impl From<SnapshotTime> for SnapshotStamp {
    fn from(time: SnapshotTime) -> Self {
        Self {
            time,
            started_at: time.datetime(),
        }
    }
}

/// The time a reference names, checked to exist at the store.
pub async fn resolve(store: &Store, which: SnapshotRef) -> Result<SnapshotTime, InspectError> {
    let times = Manifest::list(store).await?;
    match which {
        SnapshotRef::Latest => times
            .last()
            .copied()
            .ok_or_else(|| InspectError::NoSnapshots(store.backend().describe())),
        SnapshotRef::At(time) if times.contains(&time) => Ok(time),
        SnapshotRef::At(time) => Err(InspectError::NoSuchSnapshot {
            time,
            at: store.backend().describe(),
        }),
    }
}

/// Loads the manifest a reference names.
pub async fn load(store: &Store, which: SnapshotRef) -> Result<Manifest, InspectError> {
    let time = resolve(store, which).await?;
    Ok(Manifest::load(store, &time).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_is_the_name_and_the_time_in_rfc_3339() {
        let time: SnapshotTime = "25-06-01_10-00-07".parse().unwrap();
        assert_eq!(
            serde_json::to_value(SnapshotStamp::from(time)).unwrap(),
            serde_json::json!({"time": "25-06-01_10-00-07", "started_at": "2025-06-01T10:00:07Z"})
        );
    }
}
