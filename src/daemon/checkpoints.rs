//! The daemon's checkpoints between snapshots: after each snapshot it watches every resource
//! the snapshot read (metadata only, `kube::watch`), and every checkpoint interval in which
//! something changed it writes a checkpoint of the changed objects
//! (`snapshot::checkpoint`).
//!
//! No change between the snapshot and the checkpoints is lost: each watch starts with a
//! metadata-only list compared with what the snapshot saw of the resource (the seen-objects
//! cache it just wrote, uid and resourceVersion of every object), so what changed between
//! the snapshot's list and the watch's start is in the first checkpoint. A change taken
//! from the watches stays theirs until a checkpoint holding it is saved: a checkpoint that
//! fails gives its changes back for the next one.
//!
//! Left to the next snapshot, and said so in the logs: resource types that appear after the
//! snapshot, resources the server will not let us watch, and sealed resources when their
//! objects cannot be encrypted (the recipients' key file cannot be stored).

use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;

use crate::job::JobSettings;
use crate::kube::watch::{Known, ObjectRef, ResourceState, ResourceWatch, WatchObserver};
use crate::kube::{Api, ConnectError, connect};
use crate::repo::Manifest;
use crate::seal::Sealer;
use crate::snapshot::SnapshotError;
use crate::snapshot::checkpoint::{Dirty, take_checkpoint};
use crate::snapshot::seen::{ResourceSeen, SeenCache};
use crate::store::Store;

/// One watched resource.
struct Watched {
    /// Its index in the resources of the manifests of this run of watches.
    index: u32,
    state: Arc<Mutex<ResourceState>>,
    task: JoinHandle<()>,
}

/// The watches started after one snapshot, and the newest point written since.
pub(crate) struct Checkpoints {
    api: Api,
    watches: Vec<Watched>,
    /// The snapshot the watches started after, or the last checkpoint since.
    last: Manifest,
    /// Encrypts sealed resources' changes: one run key for all the checkpoints after a
    /// snapshot, so that they add one key file, not one each; made for the first sealed
    /// change (most days' checkpoints have none, and add no key file).
    sealer: Option<Sealer>,
}

impl Drop for Checkpoints {
    fn drop(&mut self) {
        for watched in &self.watches {
            watched.task.abort();
        }
    }
}

fn lock(state: &Mutex<ResourceState>) -> std::sync::MutexGuard<'_, ResourceState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl Checkpoints {
    /// Starts a watch of every resource of `snapshot` (a snapshot just taken into `store`)
    /// that a checkpoint can hold.
    pub(crate) async fn start(
        settings: &JobSettings,
        store: &Store,
        snapshot: Manifest,
        observer: Arc<dyn WatchObserver>,
    ) -> Result<Self, ConnectError> {
        let client = connect(&settings.cluster).await?;
        let api = Api::new(client, settings.snapshot.retry.clone());
        let options = &settings.snapshot;
        let seen = newest_seen_cache(store, options);
        let lists = Arc::new(tokio::sync::Semaphore::new(options.concurrency.max(1)));
        let mut watches = Vec::new();
        for (index, resource) in snapshot.resources.iter().enumerate() {
            let rt = &resource.resource;
            let baseline = seen.as_ref().map(|s| s.take(rt)).unwrap_or_default();
            if baseline.is_empty() && resource.count > 0 {
                // Every object then reads as changed: the first checkpoint reads them all.
                tracing::warn!(resource = %rt.qualified_name(), "what the snapshot saw of it is not at hand; the first checkpoint reads every object of it");
            }
            let state = Arc::new(Mutex::new(ResourceState::seen(known_of(baseline))));
            let watch = ResourceWatch {
                api: api.clone(),
                rt: rt.clone(),
                label_selector: options.rules.label_selector.clone(),
                page_size: options.page_size,
                max_list_restarts: options.max_list_restarts,
                timeout: crate::kube::watch::WATCH_TIMEOUT,
                lists: lists.clone(),
                state: state.clone(),
                observer: observer.clone(),
            };
            let task = tokio::spawn(async move {
                let unwatchable = watch.run().await;
                tracing::warn!(error = %unwatchable, "not watched");
            });
            watches.push(Watched {
                index: index as u32,
                state,
                task,
            });
        }
        Ok(Self {
            api,
            watches,
            last: snapshot,
            sealer: None,
        })
    }

    /// Resources watched.
    pub(crate) fn watched(&self) -> usize {
        self.watches.len()
    }

    /// Whether every watch runs from a known resource version (none is listing again):
    /// then nothing dirty means nothing changed. A resource that cannot be watched at all
    /// (logged when its watch gave up) does not count: it waits for the next snapshot.
    pub(crate) fn all_watching(&self) -> bool {
        self.watches
            .iter()
            .all(|w| w.task.is_finished() || lock(&w.state).resume_point().is_some())
    }

    /// Whether any watch holds a change not yet in a checkpoint.
    pub(crate) fn has_changes(&self) -> bool {
        self.watches.iter().any(|w| lock(&w.state).has_dirty())
    }

    /// Writes a checkpoint of what changed since the last point into `store`; `None` when
    /// nothing changed in what a snapshot keeps. Changes it could not hold stay for the
    /// next one.
    pub(crate) async fn write(
        &mut self,
        store: &Store,
        settings: &JobSettings,
    ) -> Result<Option<Manifest>, SnapshotError> {
        let mut dirty = Dirty::new();
        for watched in &self.watches {
            let taken = lock(&watched.state).take_dirty();
            if !taken.is_empty() {
                dirty.insert(watched.index, taken);
            }
        }
        if dirty.is_empty() {
            return Ok(None);
        }
        self.make_sealer(store, settings, &dirty).await;
        let sealer = self.sealer.as_ref();
        match take_checkpoint(
            &self.api,
            store,
            &self.last,
            &dirty,
            &settings.snapshot,
            sealer,
        )
        .await
        {
            Ok(outcome) => {
                self.give_back(outcome.unread);
                if let Some(manifest) = &outcome.manifest {
                    self.last = manifest.clone();
                }
                Ok(outcome.manifest)
            }
            Err(e) => {
                self.give_back(dirty);
                Err(e)
            }
        }
    }

    /// Makes the sealer when `dirty` holds a sealed resource's change and there is none
    /// yet. When it cannot be made, sealed changes stay dirty, never stored in the clear.
    async fn make_sealer(&mut self, store: &Store, settings: &JobSettings, dirty: &Dirty) {
        let Some(encryption) = settings.snapshot.encryption.as_ref() else {
            return;
        };
        let sealed = dirty.keys().any(|index| {
            self.last
                .resources
                .get(*index as usize)
                .is_some_and(|r| encryption.seals(&r.resource))
        });
        if sealed && self.sealer.is_none() {
            match Sealer::open(store, encryption).await {
                Ok(sealer) => self.sealer = Some(sealer),
                Err(e) => {
                    tracing::error!(error = %e, "cannot encrypt; the changes of sealed resources wait for a checkpoint that can");
                }
            }
        }
    }

    fn give_back(&self, dirty: Dirty) {
        for (index, objects) in dirty {
            if let Some(watched) = self.watches.iter().find(|w| w.index == index) {
                lock(&watched.state).restore_dirty(objects);
            }
        }
    }
}

/// What the snapshot saw of a resource, as the watch keeps it.
fn known_of(seen: ResourceSeen) -> impl Iterator<Item = (ObjectRef, Known)> {
    seen.into_values()
        .filter(|s| !s.uid.is_empty() && !s.resource_version.is_empty())
        .map(|s| {
            (
                ObjectRef {
                    namespace: s.namespace,
                    name: s.name,
                },
                Known {
                    uid: s.uid,
                    resource_version: s.resource_version,
                },
            )
        })
}

/// The seen-objects cache the snapshot just wrote: the newest of the files beside the local
/// index (one per sealing id key, or the one without encryption). `None` when there is none.
fn newest_seen_cache(
    store: &Store,
    options: &crate::snapshot::SnapshotOptions,
) -> Option<SeenCache> {
    let plain = store.local_file("seen");
    let dir = plain.parent()?;
    let newest = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            (name == "seen" || name.starts_with("seen-sealed-")) && !name.ends_with(".tmp")
        })
        .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
        .max_by_key(|(modified, _)| *modified)?;
    Some(SeenCache::open(&newest.1, &options.rules))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::snapshot::seen::{Outcome, Seen};

    #[test]
    fn the_baseline_keeps_what_tells_a_change() {
        let seen = |name: &str, uid: &str| Seen {
            namespace: Some("ns".into()),
            name: name.into(),
            uid: uid.into(),
            resource_version: "4".into(),
            outcome: Outcome::Excluded,
        };
        let all: ResourceSeen = [
            ("ns/a".to_string(), seen("a", "u")),
            ("ns/b".to_string(), seen("b", "")),
        ]
        .into_iter()
        .collect();
        let kept: HashMap<ObjectRef, Known> = known_of(all).collect();
        assert_eq!(kept.len(), 1);
        assert_eq!(
            kept[&ObjectRef {
                namespace: Some("ns".into()),
                name: "a".into()
            }]
                .uid,
            "u"
        );
    }
}
