//! `list`: the snapshots at a destination, newest first, with their figures; with
//! checkpoints, those too, among them.

use serde::Serialize;

use super::{InspectError, SnapshotStamp};
use crate::repo::manifest::ManifestHead;
use crate::repo::prune::{LayoutState, Snapshots};
use crate::repo::{Manifest, Point};
use crate::store::Store;

/// One line of `kube-autosave list`, one element of its JSON array.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotSummary {
    #[serde(flatten)]
    pub snapshot: SnapshotStamp,
    /// `snapshot`, or `checkpoint` (never exported: its layout is `none`).
    pub point: &'static str,
    pub objects: u64,
    /// Resources (or whole API groups) the snapshot could not read.
    pub resources_skipped: usize,
    /// Objects the store did not hold before this snapshot.
    pub new_objects: u64,
    /// Bytes sent to the destination: new packs and index files, and uploaded layout files.
    pub bytes_uploaded: u64,
    /// The manifest is stored and its plain layout was completed.
    pub complete: bool,
    /// Where its plain layout stands: complete, incomplete, or dropped by the retention
    /// policy (the snapshot stays restorable from the store).
    pub layout: LayoutState,
    /// How many objects the point names as new or changed since the point before (none
    /// named by a first snapshot).
    pub changes: u64,
    /// Why the manifest could not be read, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SnapshotSummary {
    pub fn of(manifest: &ManifestHead) -> Self {
        let export_bytes = manifest.export.as_ref().map_or(0, |e| e.bytes_uploaded);
        Self {
            snapshot: manifest.time.into(),
            point: manifest.point().kind(),
            objects: manifest.stats.objects,
            resources_skipped: manifest.skipped.len(),
            new_objects: manifest.stats.store.new_objects,
            bytes_uploaded: manifest.stats.store.uploaded_bytes + export_bytes,
            // A checkpoint is complete once its manifest is: it has no plain layout to wait for.
            complete: manifest.export.is_some() || manifest.checkpoint,
            layout: if manifest.checkpoint {
                LayoutState::None
            } else if manifest.export.is_some() {
                LayoutState::Complete
            } else {
                LayoutState::Incomplete
            },
            changes: manifest.changes,
            error: None,
        }
    }
}

/// Every snapshot at the store, and with `checkpoints` every checkpoint too, newest first
/// (a snapshot before a checkpoint of the same second). A manifest that cannot be read is
/// listed with the reason, not skipped.
pub async fn list(store: &Store, checkpoints: bool) -> Result<Vec<SnapshotSummary>, InspectError> {
    let snapshots = Snapshots::read(store.backend()).await?;
    let mut points: Vec<Point> = if checkpoints {
        snapshots.points()
    } else {
        snapshots
            .times
            .iter()
            .copied()
            .map(Point::Snapshot)
            .collect()
    };
    points.reverse();
    let mut out = Vec::with_capacity(points.len());
    for point in points {
        let time = point.time();
        let layout = match point {
            Point::Snapshot(time) => snapshots.layout(&time),
            Point::Checkpoint(_) => LayoutState::None,
        };
        match Manifest::head_point(store, &point).await {
            Ok(manifest) => out.push(SnapshotSummary {
                layout,
                ..SnapshotSummary::of(&manifest)
            }),
            Err(e) if e.is_outage() => return Err(e.into()),
            Err(e) => out.push(SnapshotSummary {
                snapshot: time.into(),
                point: point.kind(),
                objects: 0,
                resources_skipped: 0,
                new_objects: 0,
                bytes_uploaded: 0,
                complete: false,
                layout,
                changes: 0,
                error: Some(e.to_string()),
            }),
        }
    }
    Ok(out)
}
