//! The snapshot manifest: what a snapshot holds (every object with its resource, namespace,
//! name, id and size), what it could not read and why, and its figures. It is stored under
//! `store/snapshots/<ts>` after the packs and index files it points at; the exporter adds
//! the plain-layout files it wrote once they are all in place.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::discovery::ResourceType;
use crate::store::{
    BackendExt, FileHash, Folder, ObjectId, PutStats, RemoteFile, SnapshotTime, Store, StoreError,
    StoreResult,
};

pub const MANIFEST_VERSION: u32 = 1;

/// Something a snapshot could not read, and why. Nothing is skipped silently.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Skipped {
    pub group: String,
    pub version: Option<String>,
    /// `None` when the whole group was skipped.
    pub resource: Option<String>,
    pub namespace: Option<String>,
    /// The HTTP status, when the server answered.
    pub code: Option<u16>,
    pub reason: String,
}

impl Skipped {
    /// `deployments.apps`, `configmaps`, or `metrics.k8s.io/v1beta1` for a whole group.
    pub fn what(&self) -> String {
        match (&self.resource, self.group.as_str()) {
            (Some(r), "") => r.clone(),
            (Some(r), g) => format!("{r}.{g}"),
            (None, g) => match &self.version {
                Some(v) if g.is_empty() => v.clone(),
                Some(v) => format!("{g}/{v}"),
                None => g.to_string(),
            },
        }
    }
}

/// One object of the snapshot. `resource` indexes [`Manifest::resources`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestObject {
    pub resource: u32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub namespace: Option<String>,
    pub name: String,
    pub id: ObjectId,
    pub size: u32,
}

/// A resource type that was read, with the number of objects kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestResource {
    #[serde(flatten)]
    pub resource: ResourceType,
    pub count: u64,
}

/// The figures of one snapshot.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotStats {
    pub objects: u64,
    /// Canonical JSON bytes of the kept objects.
    pub bytes: u64,
    /// Objects the server returned that the rules left out.
    pub excluded: u64,
    pub duration_ms: u64,
    /// List requests sent to the API server (pages).
    pub list_requests: u64,
    /// Lists restarted after an expired continue token.
    pub list_restarts: u64,
    pub store: PutStats,
}

/// One plain-layout file the exporter wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedFile {
    /// The key under the cluster's base, `backup/<ts>/...`.
    pub key: String,
    pub size: u64,
    pub hash: FileHash,
    /// The hash of the ordered object ids the file renders (what decides copy-or-upload).
    pub recipe: FileHash,
    pub objects: u64,
    /// `copied` (server-side, from an identical earlier file) or `uploaded`.
    pub how: Transfer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transfer {
    Copied,
    Uploaded,
}

/// What the exporter did; absent until the plain layout is complete.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRecord {
    pub files: Vec<ExportedFile>,
    pub bytes_uploaded: u64,
    pub bytes_copied: u64,
    pub files_uploaded: u64,
    pub files_copied: u64,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub time: SnapshotTime,
    pub cluster: String,
    pub resources: Vec<ManifestResource>,
    pub objects: Vec<ManifestObject>,
    pub skipped: Vec<Skipped>,
    pub stats: SnapshotStats,
    /// Filled in once the plain layout is complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<ExportRecord>,
}

impl Manifest {
    pub fn resource_of(&self, object: &ManifestObject) -> &ResourceType {
        &self.resources[object.resource as usize].resource
    }

    /// Counts of objects per namespace (`None` for cluster-scoped objects).
    pub fn namespaces(&self) -> BTreeMap<Option<&str>, u64> {
        let mut counts = BTreeMap::new();
        for object in &self.objects {
            *counts.entry(object.namespace.as_deref()).or_default() += 1;
        }
        counts
    }

    pub fn is_exported(&self) -> bool {
        self.export.is_some()
    }

    pub fn encode(&self) -> StoreResult<bytes::Bytes> {
        let json = serde_json::to_vec(self).map_err(|e| StoreError::Malformed {
            key: RemoteFile::Snapshot(&self.time).key(),
            what: "manifest",
            reason: e.to_string(),
        })?;
        let compressed = zstd::bulk::compress(&json, 3).map_err(|e| StoreError::Malformed {
            key: RemoteFile::Snapshot(&self.time).key(),
            what: "manifest",
            reason: e.to_string(),
        })?;
        Ok(bytes::Bytes::from(compressed))
    }

    pub fn decode(key: &str, bytes: &[u8]) -> StoreResult<Self> {
        let malformed = |reason: String| StoreError::Malformed {
            key: key.to_string(),
            what: "manifest",
            reason,
        };
        let json = zstd::stream::decode_all(bytes).map_err(|e| malformed(e.to_string()))?;
        let manifest: Manifest =
            serde_json::from_slice(&json).map_err(|e| malformed(e.to_string()))?;
        if manifest.version != MANIFEST_VERSION {
            return Err(malformed(format!(
                "version {} is not supported (this build reads version {MANIFEST_VERSION})",
                manifest.version
            )));
        }
        Ok(manifest)
    }

    /// Writes (or rewrites, after the export) the manifest. Callers have finished the store
    /// writer first: every id in it is in a stored pack listed by a stored index file.
    pub async fn save(&self, store: &Store) -> StoreResult<u64> {
        let bytes = self.encode()?;
        let size = bytes.len() as u64;
        store
            .backend()
            .put(&RemoteFile::Snapshot(&self.time).key(), bytes)
            .await?;
        Ok(size)
    }

    pub async fn load(store: &Store, time: &SnapshotTime) -> StoreResult<Self> {
        let key = RemoteFile::Snapshot(time).key();
        let bytes = store.backend().get(&key).await?;
        Self::decode(&key, &bytes)
    }

    /// The snapshots at the store, oldest first.
    pub async fn list(store: &Store) -> StoreResult<Vec<SnapshotTime>> {
        let folder = Folder::Snapshots;
        let mut times: Vec<SnapshotTime> = store
            .backend()
            .list_all(&folder.prefix())
            .await?
            .iter()
            .filter_map(|m| folder.name_in(&m.key))
            .filter_map(|name| name.parse().ok())
            .collect();
        times.sort();
        Ok(times)
    }
}
