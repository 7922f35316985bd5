//! The one place that decides where things live under a cluster's base folder:
//!
//! ```text
//! backup/<ts>/...             plain layout, one JSON List file per resource and namespace
//! store/packs/<2 hex>/<id>    immutable packs of zstd-compressed objects
//! store/index/<id>            index files: which object ids are in which pack, at what offset
//! store/snapshots/<ts>        snapshot manifests
//! store/checkpoints/<ts>      checkpoint manifests: what changed since the point before, no
//!                             plain layout
//! store/exports/<ts>          export records: the snapshot's plain layout is complete
//! store/layout-dropped/<ts>   the snapshot's plain layout was dropped by the retention policy
//! store/locks/prune           the lock of the one prune (or forget) at work
//! store/locks/writer-<token>  the lease of a snapshot or push at work
//! store/cluster.json          which cluster the folder's snapshots are of
//! ```
//!
//! Nothing else in the code base formats a key.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::id::{IndexId, PackId};

/// A snapshot's name: its UTC start time with a two-digit year, `yy-mm-dd_HH-MM-SS`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapshotTime(DateTime<Utc>);

const TIME_FORMAT: &str = "%y-%m-%d_%H-%M-%S";

impl SnapshotTime {
    /// Now, truncated to the second (the resolution of the name).
    pub fn now() -> Self {
        Self::from_datetime(Utc::now())
    }

    pub fn from_datetime(t: DateTime<Utc>) -> Self {
        let secs = t.timestamp();
        Self(Utc.timestamp_opt(secs, 0).single().unwrap_or(t))
    }

    pub fn datetime(&self) -> DateTime<Utc> {
        self.0
    }

    /// The next second: used when a name is already taken.
    pub fn next_second(&self) -> Self {
        Self(self.0 + chrono::Duration::seconds(1))
    }
}

impl fmt::Display for SnapshotTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format(TIME_FORMAT))
    }
}

impl fmt::Debug for SnapshotTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SnapshotTime({self})")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a snapshot time (expected yy-mm-dd_HH-MM-SS, e.g. 17-05-04_13-48-33)")]
pub struct ParseTimeError(pub String);

impl FromStr for SnapshotTime {
    type Err = ParseTimeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // chrono's %y reads two digits as 1969..2068, which covers every snapshot we can take.
        if s.len() != 17 {
            return Err(ParseTimeError(s.to_string()));
        }
        NaiveDateTime::parse_from_str(s, TIME_FORMAT)
            .map(|t| Self(t.and_utc()))
            .map_err(|_| ParseTimeError(s.to_string()))
    }
}

impl Serialize for SnapshotTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SnapshotTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One file of the remote layout.
#[derive(Debug, Clone, Copy)]
pub enum RemoteFile<'a> {
    Pack(&'a PackId),
    Index(&'a IndexId),
    Snapshot(&'a SnapshotTime),
    /// A checkpoint's manifest root: a manifest like a snapshot's, which is never exported.
    /// Its own folder keeps `list`, retention and the search for unexported snapshots from
    /// reading every checkpoint's root.
    Checkpoint(&'a SnapshotTime),
    /// The record of a snapshot's finished export.
    Export(&'a SnapshotTime),
    /// The record that a kept snapshot's plain layout was dropped (it stays restorable from
    /// the store).
    DroppedLayout(&'a SnapshotTime),
    /// A lock or lease (see `repo::lock`), by name.
    Lock(&'a str),
    /// Which cluster the folder's snapshots are of.
    ClusterIdentity,
    /// The keys of one writer run's sealed objects, encrypted to the run's recipients, by
    /// reference (see `crate::seal`).
    SealingKey(&'a str),
    /// A plain-layout file: `backup/<ts>/[<namespace>/]<name>`.
    Layout {
        time: &'a SnapshotTime,
        namespace: Option<&'a str>,
        name: &'a str,
    },
}

impl RemoteFile<'_> {
    pub fn key(&self) -> String {
        match self {
            RemoteFile::Pack(id) => {
                let hex = id.to_hex();
                format!("{}{}/{}", Folder::Packs.prefix(), &hex[..2], hex)
            }
            RemoteFile::Index(id) => format!("{}{}", Folder::Index.prefix(), id.to_hex()),
            RemoteFile::Snapshot(time) => format!("{}{}", Folder::Snapshots.prefix(), time),
            RemoteFile::Checkpoint(time) => format!("{}{}", Folder::Checkpoints.prefix(), time),
            RemoteFile::Export(time) => format!("{}{}", Folder::Exports.prefix(), time),
            RemoteFile::DroppedLayout(time) => {
                format!("{}{}", Folder::DroppedLayouts.prefix(), time)
            }
            RemoteFile::Lock(name) => format!("{}{}", Folder::Locks.prefix(), name),
            RemoteFile::ClusterIdentity => "store/cluster.json".to_string(),
            RemoteFile::SealingKey(reference) => format!("{}{}", Folder::Keys.prefix(), reference),
            RemoteFile::Layout {
                time,
                namespace,
                name,
            } => match namespace {
                Some(ns) => format!("{}{}/{}", Folder::Backup(time).prefix(), ns, name),
                None => format!("{}{}", Folder::Backup(time).prefix(), name),
            },
        }
    }
}

/// A folder of the remote layout, for listing.
#[derive(Debug, Clone, Copy)]
pub enum Folder<'a> {
    Packs,
    Index,
    Snapshots,
    Checkpoints,
    Exports,
    DroppedLayouts,
    Locks,
    /// `store/keys/`: the keys of sealed objects, each encrypted to its recipients.
    Keys,
    /// `backup/` itself
    BackupRoot,
    /// `backup/<ts>/`
    Backup(&'a SnapshotTime),
}

impl Folder<'_> {
    /// The key prefix, always ending in `/`.
    pub fn prefix(&self) -> String {
        match self {
            Folder::Packs => "store/packs/".to_string(),
            Folder::Index => "store/index/".to_string(),
            Folder::Snapshots => "store/snapshots/".to_string(),
            Folder::Checkpoints => "store/checkpoints/".to_string(),
            Folder::Exports => "store/exports/".to_string(),
            Folder::DroppedLayouts => "store/layout-dropped/".to_string(),
            Folder::Locks => "store/locks/".to_string(),
            Folder::Keys => "store/keys/".to_string(),
            Folder::BackupRoot => "backup/".to_string(),
            Folder::Backup(time) => format!("backup/{time}/"),
        }
    }

    /// The last part of a key listed in this folder, when the key is directly in it.
    pub fn name_in<'k>(&self, key: &'k str) -> Option<&'k str> {
        let prefix = self.prefix();
        key.strip_prefix(prefix.as_str())
            .map(|rest| rest.rsplit('/').next().unwrap_or(rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_time_round_trips_with_two_digit_year() {
        let t: SnapshotTime = "17-05-04_13-48-33".parse().unwrap();
        assert_eq!(t.to_string(), "17-05-04_13-48-33");
        assert_eq!(t.datetime().format("%Y").to_string(), "2017");
        assert!("2017-05-04_13-48-33".parse::<SnapshotTime>().is_err());
        assert!("17-13-04_13-48-33".parse::<SnapshotTime>().is_err());
    }

    #[test]
    fn keys_follow_the_design() {
        let pack = PackId::of(b"p");
        let hex = pack.to_hex();
        assert_eq!(
            RemoteFile::Pack(&pack).key(),
            format!("store/packs/{}/{}", &hex[..2], hex)
        );
        let t: SnapshotTime = "17-05-04_13-48-33".parse().unwrap();
        assert_eq!(
            RemoteFile::Snapshot(&t).key(),
            "store/snapshots/17-05-04_13-48-33"
        );
        assert_eq!(
            RemoteFile::Checkpoint(&t).key(),
            "store/checkpoints/17-05-04_13-48-33"
        );
        assert_eq!(
            Folder::Checkpoints.name_in("store/checkpoints/17-05-04_13-48-33"),
            Some("17-05-04_13-48-33")
        );
        let layout = RemoteFile::Layout {
            time: &t,
            namespace: Some("kube-system"),
            name: "deployments.json",
        };
        assert_eq!(
            layout.key(),
            "backup/17-05-04_13-48-33/kube-system/deployments.json"
        );
        let cluster = RemoteFile::Layout {
            time: &t,
            namespace: None,
            name: "persistentvolumes.json",
        };
        assert_eq!(
            cluster.key(),
            "backup/17-05-04_13-48-33/persistentvolumes.json"
        );
        assert_eq!(Folder::Index.name_in("store/index/abc"), Some("abc"));
    }
}
