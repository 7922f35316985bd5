//! Looking at what a destination holds: `list` the snapshots (and checkpoints), `show` one,
//! `diff` two, follow one object through all of them (`history`), `verify` that what the
//! manifests reference is stored intact. Everything here only reads from the destination; it
//! must never write to it (nor to a cluster).

pub mod diff;
pub mod history;
pub mod list;
pub mod redact;
pub mod show;
pub mod verify;

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::repo::point::parse_instant;
use crate::repo::{Manifest, Point};
use crate::seal::{Keyring, SealError};
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
        "{0:?} is neither `latest`, a snapshot or checkpoint name (yy-mm-dd_HH-MM-SS, e.g. \
         17-05-04_13-48-33) nor a time in RFC 3339 (2017-05-04T13:48:33Z)"
    )]
    BadSnapshotName(String),
    #[error(
        "there is no snapshot or checkpoint {time} at {at}; `kube-autosave list --checkpoints` \
         shows them (for the newest one at or before that time, write it in RFC 3339: {rfc})"
    )]
    NoSuchPoint {
        time: SnapshotTime,
        at: String,
        rfc: String,
    },
    #[error(
        "no snapshot or checkpoint at {at} is as old as {time}{}; `kube-autosave list \
         --checkpoints` shows them",
        match oldest { Some(p) => format!(" (the oldest is {} {p})", p.kind()), None => String::new() }
    )]
    NothingAtOrBefore {
        time: DateTime<Utc>,
        at: String,
        oldest: Option<Point>,
    },
    #[error(
        "{what} is in no snapshot or checkpoint at {at}; check the kind (as `kubectl get` \
         takes it: deployment, deployments, deploy, deployments.apps), the namespace and the \
         name (`kube-autosave show latest --resource <resource> -n <namespace>` lists them)"
    )]
    UnknownObject { what: String, at: String },
    #[error(
        "{name:?} names more than one resource ({}); name one as <plural>.<group>",
        candidates.join(", ")
    )]
    AmbiguousResource {
        name: String,
        candidates: Vec<String>,
    },
    #[error("checkpoint {0} has no plain layout (checkpoints are restored from the store)")]
    CheckpointLayout(SnapshotTime),
    #[error("object {id:#} ({what}) is not a JSON object: {reason}; run `kube-autosave verify`")]
    BadObject {
        id: ObjectId,
        what: String,
        reason: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A snapshot or checkpoint named on the command line: `latest` (the newest snapshot by
/// name), a name (the snapshot of that name, else the checkpoint), or a time in RFC 3339
/// (the newest snapshot or checkpoint at or before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotRef {
    Latest,
    At(SnapshotTime),
    AtOrBefore(DateTime<Utc>),
}

impl FromStr for SnapshotRef {
    type Err = InspectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "latest" {
            return Ok(SnapshotRef::Latest);
        }
        if let Ok(time) = s.parse() {
            return Ok(SnapshotRef::At(time));
        }
        // A name is exact; a time in RFC 3339 picks what was there at that time.
        if (s.contains('T') || s.contains('t'))
            && let Ok(time) = parse_instant(s)
        {
            return Ok(SnapshotRef::AtOrBefore(time));
        }
        Err(InspectError::BadSnapshotName(s.to_string()))
    }
}

impl fmt::Display for SnapshotRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotRef::Latest => f.write_str("latest"),
            SnapshotRef::At(time) => write!(f, "{time}"),
            SnapshotRef::AtOrBefore(time) => write!(f, "{}", time.to_rfc3339()),
        }
    }
}

/// A snapshot or checkpoint as JSON output names it: its [`SnapshotStamp`] and `point`,
/// `snapshot` or `checkpoint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PointStamp {
    #[serde(flatten)]
    pub stamp: SnapshotStamp,
    pub point: &'static str,
}

impl From<Point> for PointStamp {
    fn from(point: Point) -> Self {
        Self {
            stamp: point.time().into(),
            point: point.kind(),
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

/// The snapshot a reference names, checked to exist at the store; a reference to a
/// checkpoint, or to a time, is refused as naming no snapshot.
pub async fn resolve(store: &Store, which: SnapshotRef) -> Result<SnapshotTime, InspectError> {
    match resolve_point(store, which).await? {
        Point::Snapshot(time) => Ok(time),
        Point::Checkpoint(time) => Err(InspectError::NoSuchSnapshot {
            time,
            at: store.backend().describe(),
        }),
    }
}

/// The snapshot or checkpoint a reference names, checked to exist at the store.
pub async fn resolve_point(store: &Store, which: SnapshotRef) -> Result<Point, InspectError> {
    let at = || store.backend().describe();
    match which {
        SnapshotRef::Latest => Manifest::list(store)
            .await?
            .last()
            .map(|time| Point::Snapshot(*time))
            .ok_or_else(|| InspectError::NoSnapshots(at())),
        SnapshotRef::At(time) => {
            let points = Manifest::list_points(store).await?;
            // A snapshot, when a checkpoint has its name too.
            points
                .iter()
                .rev()
                .find(|p| p.time() == time)
                .copied()
                .ok_or_else(|| InspectError::NoSuchPoint {
                    time,
                    at: at(),
                    rfc: time
                        .datetime()
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                })
        }
        SnapshotRef::AtOrBefore(time) => at_or_before(store, time).await,
    }
}

/// The newest snapshot or checkpoint at or before `time`.
pub async fn at_or_before(store: &Store, time: DateTime<Utc>) -> Result<Point, InspectError> {
    let points = Manifest::list_points(store).await?;
    if points.is_empty() {
        return Err(InspectError::NoSnapshots(store.backend().describe()));
    }
    crate::repo::point::newest_at_or_before(&points, time).ok_or_else(|| {
        InspectError::NothingAtOrBefore {
            time,
            at: store.backend().describe(),
            oldest: points.first().copied(),
        }
    })
}

/// Loads the manifest a reference names (a snapshot's or a checkpoint's).
pub async fn load(store: &Store, which: SnapshotRef) -> Result<Manifest, InspectError> {
    let point = resolve_point(store, which).await?;
    Ok(Manifest::load_point(store, &point).await?)
}

/// One stored object's content, opened where it is sealed: `None` when it is sealed and no
/// identity given opens it. An object that cannot be opened is a [`InspectError::BadObject`]
/// named `what`.
pub(crate) async fn open_object(
    store: &Store,
    keyring: &Keyring,
    what: &str,
    id: ObjectId,
    blob: Bytes,
) -> Result<Option<Bytes>, InspectError> {
    match keyring.open_object(store, what, &id, blob).await {
        Ok(content) => Ok(Some(content)),
        Err(e) if e.is_locked() => Ok(None),
        Err(SealError::Store(e)) => Err(e.into()),
        Err(e) => Err(InspectError::BadObject {
            id,
            what: what.to_string(),
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_is_latest_a_name_or_a_time() {
        let name: SnapshotTime = "26-12-03_10-05-00".parse().unwrap();
        assert_eq!(
            "latest".parse::<SnapshotRef>().unwrap(),
            SnapshotRef::Latest
        );
        assert_eq!(
            "26-12-03_10-05-00".parse::<SnapshotRef>().unwrap(),
            SnapshotRef::At(name)
        );
        assert_eq!(
            "2026-12-03T11:05:00+01:00".parse::<SnapshotRef>().unwrap(),
            SnapshotRef::AtOrBefore(name.datetime())
        );
        let err = "yesterday".parse::<SnapshotRef>().unwrap_err().to_string();
        assert!(err.contains("RFC 3339"), "{err}");
    }

    #[test]
    fn a_stamp_is_the_name_and_the_time_in_rfc_3339() {
        let time: SnapshotTime = "25-06-01_10-00-07".parse().unwrap();
        assert_eq!(
            serde_json::to_value(SnapshotStamp::from(time)).unwrap(),
            serde_json::json!({"time": "25-06-01_10-00-07", "started_at": "2025-06-01T10:00:07Z"})
        );
    }
}
