//! The repository: what a snapshot is at the destination, above the content-addressed store
//! — the manifest (its root and listings), the export record, checkpoints (manifests between
//! snapshots) and the points they name, and which cluster the folder belongs to — and its lifecycle: the retention policy, the locks that keep a prune and the
//! writers apart, forget and prune. It never talks to the cluster; `snapshot` fills it,
//! `export`, `inspect` and `restore` read it.

pub mod identity;
pub mod list_file;
pub mod lock;
pub mod manifest;
pub mod point;
pub mod prune;
pub mod retention;

pub use manifest::{
    Change, ExportRecord, ExportedFile, Manifest, ManifestHead, ManifestObject, ManifestResource,
    SealedFile, SnapshotStats, Transfer,
};
pub use point::Point;
