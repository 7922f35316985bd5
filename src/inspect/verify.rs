//! `verify`: every object a manifest references is stored and matches its id, and every
//! plain-layout file of an exported snapshot exists with exactly the content its objects
//! render to. Each problem names the key it concerns. Manifests, their listings and packs
//! are read from the destination, never from local copies: a copy on this machine proves
//! nothing about what can be restored elsewhere.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::{InspectError, SnapshotStamp};
use crate::export::{PlannedFile, is_rendering_of, plan};
use crate::repo::{Manifest, Point};
use crate::seal::{Keyring, SealError};
use crate::store::{BackendExt, ObjectId, PackId, RemoteFile, SnapshotTime, Store, StoreError};

/// Something wrong at the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The key (under the cluster's base folder) the problem is about.
    pub key: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    #[serde(serialize_with = "stamps")]
    pub snapshots: Vec<SnapshotTime>,
    /// The checkpoints verified (their manifests and objects; they have no plain layout).
    #[serde(serialize_with = "stamps", skip_serializing_if = "Vec::is_empty")]
    pub checkpoints: Vec<SnapshotTime>,
    pub objects_checked: u64,
    pub packs_checked: u64,
    pub files_checked: u64,
    pub problems: Vec<Problem>,
    /// Not wrong, but worth knowing (a snapshot whose plain layout is not complete yet).
    pub notes: Vec<String>,
    /// For each snapshot with encrypted objects, how many the given identities read.
    pub sealed: Vec<SealedCheck>,
}

/// What the identities given could read of one snapshot's encrypted objects. Every sealed
/// object's frame is checked without a key; its content (decrypted, against its keyed id)
/// only with an identity of its recipients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SealedCheck {
    pub snapshot: SnapshotTime,
    pub objects: u64,
    /// Decrypted and found to match their ids.
    pub readable: u64,
    /// How many identities were given.
    pub identities: usize,
}

impl std::fmt::Display for SealedCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (time, n) = (&self.snapshot, self.objects);
        if self.identities == 0 {
            return write!(
                f,
                "snapshot {time}: {n} encrypted objects, contents not checked (no --identity)"
            );
        }
        match self.readable {
            r if r == n => write!(
                f,
                "snapshot {time}: the given identities read all {n} encrypted objects"
            ),
            0 => write!(
                f,
                "snapshot {time}: the given identities read none of its {n} encrypted objects \
                 (encrypted to other recipients)"
            ),
            r => write!(
                f,
                "snapshot {time}: the given identities read {r} of its {n} encrypted objects"
            ),
        }
    }
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The report as `verify --output json` prints it: whether all is well first, then the
    /// report itself.
    pub fn verdict(&self) -> Verdict<'_> {
        Verdict {
            ok: self.is_ok(),
            report: self,
        }
    }
}

/// A [`VerifyReport`] with its outcome, `ok`, which scripts read instead of counting problems.
#[derive(Debug, Serialize)]
pub struct Verdict<'a> {
    pub ok: bool,
    #[serde(flatten)]
    pub report: &'a VerifyReport,
}

fn stamps<S: serde::Serializer>(times: &[SnapshotTime], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(times.iter().map(|t| SnapshotStamp::from(*t)))
}

/// How many object ids a "pack is missing" message names before it abbreviates.
const NAMED_OBJECTS: usize = 10;

/// Files checked at the same time.
const FILES_IN_FLIGHT: usize = 8;

/// Verifies the given snapshots. Objects shared by several snapshots are checked once;
/// encrypted ones are also opened with `keyring` when it holds identities.
pub async fn verify(
    store: &Store,
    times: &[SnapshotTime],
    keyring: &Keyring,
) -> Result<VerifyReport, InspectError> {
    let points: Vec<Point> = times.iter().copied().map(Point::Snapshot).collect();
    verify_points(store, &points, keyring).await
}

/// [`verify`] of snapshots and checkpoints: a checkpoint's manifest and objects are checked
/// as a snapshot's are; it has no plain layout to check.
pub async fn verify_points(
    store: &Store,
    points: &[Point],
    keyring: &Keyring,
) -> Result<VerifyReport, InspectError> {
    let mut report = VerifyReport::default();
    for point in points {
        match point {
            Point::Snapshot(time) => report.snapshots.push(*time),
            Point::Checkpoint(time) => report.checkpoints.push(*time),
        }
    }
    let mut ids = BTreeSet::new();
    let mut files: Vec<PlannedFile> = Vec::new();
    let mut sealed: Vec<(SnapshotTime, Vec<ObjectId>)> = Vec::new();
    let dropped: BTreeSet<SnapshotTime> = Manifest::list_dropped_layouts(store)
        .await?
        .into_iter()
        .collect();
    for point in points {
        let time = &point.time();
        let key = point.root_key();
        let manifest = match Manifest::load_point_from_destination(store, point).await {
            Ok(manifest) => manifest,
            Err(e) if e.is_outage() => return Err(e.into()),
            Err(StoreError::Corrupt {
                object,
                pack,
                reason,
            }) => {
                report.problems.push(Problem {
                    key: RemoteFile::Pack(&pack).key(),
                    message: format!(
                        "{} {time} cannot be read: its manifest's page or listing {object:#} in pack \
                         {pack:#} is damaged: {reason}",
                        point.kind()
                    ),
                });
                continue;
            }
            Err(e) => {
                report.problems.push(Problem {
                    key,
                    message: format!("manifest cannot be read: {e}"),
                });
                continue;
            }
        };
        ids.extend(manifest.objects.iter().map(|o| o.id));
        ids.extend(manifest.sealed_files.values().map(|f| f.id));
        let sealed_ids: Vec<ObjectId> = manifest
            .groups()
            .filter(|g| {
                let key = (g[0].resource, g[0].namespace.clone());
                manifest.sealed_files.contains_key(&key)
            })
            .flatten()
            .map(|o| o.id)
            .collect();
        if !sealed_ids.is_empty() {
            sealed.push((*time, sealed_ids));
        }
        match manifest.export {
            // A checkpoint has no plain layout.
            _ if point.is_checkpoint() => {}
            // The retention policy dropped it: the store alone holds the snapshot.
            Some(_) if dropped.contains(time) => {}
            Some(_) => files.extend(plan(&manifest)),
            None => report.notes.push(format!(
                "snapshot {time} has no complete plain layout yet; the next snapshot run \
                 finishes its export"
            )),
        }
    }
    check_objects(store, ids, &mut report).await?;
    check_files(store, files, &mut report).await?;
    check_sealed(store, sealed, keyring, &mut report).await?;
    Ok(report)
}

/// Opens the encrypted objects of each snapshot with the identities given (each object
/// once), and says per snapshot how many they read.
async fn check_sealed(
    store: &Store,
    snapshots: Vec<(SnapshotTime, Vec<ObjectId>)>,
    keyring: &Keyring,
    report: &mut VerifyReport,
) -> Result<(), InspectError> {
    let mut readable: std::collections::HashMap<ObjectId, bool> = Default::default();
    if !keyring.is_empty() {
        let all: BTreeSet<ObjectId> = snapshots.iter().flat_map(|(_, ids)| ids).copied().collect();
        let mut blobs = std::pin::pin!(store.get_many_remote(all.into_iter().collect()));
        while let Some(next) = blobs.next().await {
            let (id, blob) = match next {
                Ok(read) => read,
                // Reported by the object check.
                Err(StoreError::Corrupt { .. } | StoreError::MissingObject(_)) => break,
                Err(e) => return Err(e.into()),
            };
            let what = format!("object {id:#}");
            let opened = match keyring.open_object(store, &what, &id, blob).await {
                Ok(_) => true,
                Err(e) if e.is_locked() => false,
                Err(SealError::Store(e)) if e.is_outage() => return Err(e.into()),
                Err(e) => {
                    report.problems.push(Problem {
                        key: what,
                        message: e.to_string(),
                    });
                    false
                }
            };
            readable.insert(id, opened);
        }
    }
    for (snapshot, ids) in snapshots {
        report.sealed.push(SealedCheck {
            snapshot,
            objects: ids.len() as u64,
            readable: ids
                .iter()
                .filter(|id| readable.get(id) == Some(&true))
                .count() as u64,
            identities: keyring.len(),
        });
    }
    Ok(())
}

async fn check_objects(
    store: &Store,
    ids: BTreeSet<ObjectId>,
    report: &mut VerifyReport,
) -> Result<(), InspectError> {
    let mut by_pack: BTreeMap<PackId, Vec<ObjectId>> = BTreeMap::new();
    for id in ids {
        report.objects_checked += 1;
        match store.location(&id).await {
            Ok(location) => by_pack.entry(location.pack).or_default().push(id),
            // Lost with a pack that is gone: reported with its pack below.
            Err(StoreError::Corrupt { pack, .. }) => by_pack.entry(pack).or_default().push(id),
            Err(StoreError::MissingObject(_)) => report.problems.push(Problem {
                key: format!("object {id:#}"),
                message: format!(
                    "object {id:#} is referenced by a manifest but no index file lists it"
                ),
            }),
            Err(e) => return Err(e.into()),
        }
    }
    let packs = by_pack.len();
    for (n, (pack, wanted)) in by_pack.into_iter().enumerate() {
        check_pack(store, pack, wanted, report).await?;
        report.packs_checked += 1;
        if (n + 1) % 25 == 0 {
            tracing::info!("checked {} of {packs} packs", n + 1);
        }
    }
    Ok(())
}

async fn check_pack(
    store: &Store,
    pack: PackId,
    wanted: Vec<ObjectId>,
    report: &mut VerifyReport,
) -> Result<(), InspectError> {
    let key = RemoteFile::Pack(&pack).key();
    if store.backend().head(&key).await?.is_none() {
        let mut named: Vec<String> = wanted
            .iter()
            .take(NAMED_OBJECTS)
            .map(|id| id.to_string())
            .collect();
        if wanted.len() > NAMED_OBJECTS {
            named.push(format!("and {} more", wanted.len() - NAMED_OBJECTS));
        }
        report.problems.push(Problem {
            message: format!("pack {key} is missing (objects: {})", named.join(", ")),
            key,
        });
        return Ok(());
    }
    let whole: Result<Vec<_>, StoreError> =
        store.get_many_remote(wanted.clone()).try_collect().await;
    match whole {
        Ok(_) => return Ok(()),
        Err(StoreError::Corrupt { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    // The pack is damaged: find every object it damages, each with a ranged read.
    for id in wanted {
        match store.get(&id).await {
            Ok(_) => {}
            Err(StoreError::Corrupt { reason, .. }) => report.problems.push(Problem {
                key: key.clone(),
                message: format!("object {id:#} in pack {key} is corrupt: {reason}"),
            }),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn check_files(
    store: &Store,
    files: Vec<PlannedFile>,
    report: &mut VerifyReport,
) -> Result<(), InspectError> {
    // The same key is never in two snapshots (the key holds the time).
    let results: Vec<Option<Problem>> = futures::stream::iter(files)
        .map(|file| async move {
            let data = store.backend().get_opt(&file.key).await?;
            Ok::<_, StoreError>(check_file(&file, data.as_deref()))
        })
        .buffer_unordered(FILES_IN_FLIGHT)
        .try_collect()
        .await?;
    report.files_checked += results.len() as u64;
    let mut problems: Vec<Problem> = results.into_iter().flatten().collect();
    problems.sort_by(|a, b| a.key.cmp(&b.key));
    report.problems.extend(problems);
    Ok(())
}

/// Compares a plain-layout file with what its objects render to, by their ids: no object
/// is read again (the object check reads each of them once).
fn check_file(file: &PlannedFile, data: Option<&[u8]>) -> Option<Problem> {
    let message = match data {
        None => format!(
            "plain-layout file {} is missing; the snapshot holds {} objects for it",
            file.key,
            file.ids.len()
        ),
        Some(data) if data.len() as u64 != file.size => format!(
            "plain-layout file {} was changed: it has {} bytes, its objects render to {}",
            file.key,
            data.len(),
            file.size
        ),
        Some(data) if is_rendering_of(data, file) => return None,
        Some(_) => format!(
            "plain-layout file {} was changed: its content is not what its objects render to",
            file.key
        ),
    };
    Some(Problem {
        key: file.key.clone(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_json_says_whether_all_is_well_and_names_each_problem() {
        let time: SnapshotTime = "25-06-01_10-00-07".parse().unwrap();
        let mut report = VerifyReport {
            snapshots: vec![time],
            objects_checked: 3,
            ..VerifyReport::default()
        };
        let json = serde_json::to_value(report.verdict()).unwrap();
        assert_eq!(json["ok"], true);
        assert_eq!(
            json["snapshots"],
            json!([{"time": "25-06-01_10-00-07", "started_at": "2025-06-01T10:00:07Z"}])
        );
        assert_eq!(json["objects_checked"], 3);

        report.problems.push(Problem {
            key: "store/packs/ab/abcd".into(),
            message: "pack store/packs/ab/abcd is missing".into(),
        });
        let json = serde_json::to_value(report.verdict()).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(json["problems"][0]["key"], "store/packs/ab/abcd");
    }
}
