//! `list`: the snapshots at a destination, newest first, with their figures.

use serde::Serialize;

use super::{InspectError, SnapshotStamp};
use crate::repo::Manifest;
use crate::repo::manifest::ManifestHead;
use crate::repo::prune::{LayoutState, Snapshots};
use crate::store::Store;

/// One line of `kube-autosave list`, one element of its JSON array.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotSummary {
    #[serde(flatten)]
    pub snapshot: SnapshotStamp,
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
    /// Why the manifest could not be read, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SnapshotSummary {
    pub fn of(manifest: &ManifestHead) -> Self {
        let export_bytes = manifest.export.as_ref().map_or(0, |e| e.bytes_uploaded);
        Self {
            snapshot: manifest.time.into(),
            objects: manifest.stats.objects,
            resources_skipped: manifest.skipped.len(),
            new_objects: manifest.stats.store.new_objects,
            bytes_uploaded: manifest.stats.store.uploaded_bytes + export_bytes,
            complete: manifest.export.is_some(),
            layout: if manifest.export.is_some() {
                LayoutState::Complete
            } else {
                LayoutState::Incomplete
            },
            error: None,
        }
    }
}

/// Every snapshot at the store, newest first. A manifest that cannot be read is listed with
/// the reason, not skipped.
pub async fn list(store: &Store) -> Result<Vec<SnapshotSummary>, InspectError> {
    let snapshots = Snapshots::read(store.backend()).await?;
    let mut times = snapshots.times.clone();
    times.reverse();
    let mut out = Vec::with_capacity(times.len());
    for time in times {
        match Manifest::head(store, &time).await {
            Ok(manifest) => out.push(SnapshotSummary {
                layout: snapshots.layout(&time),
                ..SnapshotSummary::of(&manifest)
            }),
            Err(e) if e.is_outage() => return Err(e.into()),
            Err(e) => out.push(SnapshotSummary {
                snapshot: time.into(),
                objects: 0,
                resources_skipped: 0,
                new_objects: 0,
                bytes_uploaded: 0,
                complete: false,
                layout: snapshots.layout(&time),
                error: Some(e.to_string()),
            }),
        }
    }
    Ok(out)
}
