//! One cluster per folder: the destination records which cluster its snapshots are of (the
//! uid of the cluster's `kube-system` namespace, which lives as long as the cluster; see
//! [`crate::kube::kube_system_uid`]) at its first snapshot, and a snapshot of another cluster
//! into the same folder is refused.
//!
//! Two clusters left on the same `clusterName` would otherwise interleave their snapshots in
//! one history, and a restore of "latest" would rebuild the wrong cluster. The record is
//! created with a conditional write, so of two clusters that start at the same moment
//! exactly one claims the folder. This module never talks to the cluster.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::store::{BackendExt, PutOutcome, RemoteFile, Store, StoreError, StoreResult};

/// Which cluster a destination folder belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterIdentity {
    /// The uid of the cluster's `kube-system` namespace.
    pub kube_system_uid: String,
    /// The `clusterName` the folder was first written under (for messages only).
    pub cluster_name: String,
    /// When the folder was claimed.
    pub claimed_at: DateTime<Utc>,
}

impl std::fmt::Display for ClusterIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the cluster whose kube-system namespace has uid {} (snapshotted here as {:?} since {})",
            self.kube_system_uid,
            self.cluster_name,
            self.claimed_at.format("%Y-%m-%d %H:%M UTC")
        )
    }
}

/// The folder belongs to another cluster.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{destination} holds the snapshots of {recorded}, not of this cluster (kube-system uid {this}); \
     give this cluster a folder of its own: set clusterName in cluster.yaml, or \
     --cluster-name / KUBE_AUTOSAVE_CLUSTER_NAME, to a name no other cluster uses"
)]
pub struct OtherCluster {
    pub destination: String,
    pub recorded: ClusterIdentity,
    /// The kube-system uid of the cluster being snapshotted.
    pub this: String,
}

/// What checking the folder's owner found.
#[derive(Debug)]
pub enum Claim {
    /// The folder is this cluster's (it was already, or it is now).
    Ours,
    Theirs(OtherCluster),
}

/// Claims the folder of `store` for the cluster with kube-system uid `uid`, or finds it is
/// claimed by that cluster already; a folder claimed by another cluster is
/// [`Claim::Theirs`].
pub async fn claim(store: &Store, uid: &str, cluster_name: &str) -> StoreResult<Claim> {
    let key = RemoteFile::ClusterIdentity.key();
    let ours = ClusterIdentity {
        kube_system_uid: uid.to_string(),
        cluster_name: cluster_name.to_string(),
        claimed_at: Utc::now(),
    };
    let backend = store.backend();
    // Read first: once the folder is claimed, that is the one request a snapshot spends.
    let recorded = match backend.get_opt(&key).await? {
        Some(bytes) => bytes,
        None => {
            let bytes = serde_json::to_vec_pretty(&ours).map_err(|e| malformed(&key, e))?;
            if backend.create(&key, bytes.into()).await? == PutOutcome::Created {
                tracing::info!(
                    kube_system_uid = uid,
                    "the destination folder is now this cluster's"
                );
                return Ok(Claim::Ours);
            }
            // Another writer claimed it a moment ago.
            match backend.get_opt(&key).await? {
                Some(bytes) => bytes,
                None => return Ok(Claim::Ours),
            }
        }
    };
    let recorded: ClusterIdentity =
        serde_json::from_slice(&recorded).map_err(|e| malformed(&key, e))?;
    if recorded.kube_system_uid == uid {
        Ok(Claim::Ours)
    } else {
        Ok(Claim::Theirs(OtherCluster {
            destination: backend.describe(),
            recorded,
            this: uid.to_string(),
        }))
    }
}

fn malformed(key: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Malformed {
        key: key.to_string(),
        what: "cluster identity",
        reason: reason.to_string(),
    }
}
