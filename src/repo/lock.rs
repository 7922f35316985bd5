//! Who is at work in a cluster's folder, so that a prune never deletes what a writer is about
//! to refer to.
//!
//! - A prune (or a forget) holds the one exclusive lock, `store/locks/prune`, created with a
//!   conditional write: a second prune finds it taken and waits or stops with a message that
//!   names the holder.
//! - A writer (a snapshot job, a daemon's push) holds a lease, `store/locks/writer-<token>`,
//!   from before it asks the local index which objects the store has (deduplication refers
//!   to objects in packs of any age) until its manifest root is stored.
//! - A writer writes its lease, then looks for the prune lock: when a live one is there, it
//!   takes its lease back and waits for the lock to go. A prune writes its lock, then waits
//!   until no live lease is left before it reads what the snapshots refer to. S3 reads and
//!   lists see every write that finished before them, so of a writer and a prune that start
//!   together at least one sees the other: a prune never plans while a writer may refer to an
//!   object it is about to delete.
//!
//! Locks and leases say when they expire and are renewed by their holder at a third of their
//! lifetime, so a crashed holder blocks nobody for long: an expired lease is ignored and an
//! expired lock is taken over. A holder that could not renew in time has lost its lock and
//! must not go on ([`Held::check`]). Expiry times are compared with the reader's clock; the
//! lifetime (minutes) covers ordinary clock skew.
//!
//! This module writes and deletes only locks and leases: its own, and expired ones it takes
//! over.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::store::{
    BackendExt, DynBackend, Folder, PutOutcome, RemoteFile, StoreError, StoreResult,
};

/// The name of the prune lock under `store/locks/`.
const PRUNE: &str = "prune";
/// The start of a writer's lease name under `store/locks/`.
const WRITER: &str = "writer-";

/// What a lock or lease says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Unique to this holding; a renewal checks that the lock is still this one.
    pub token: String,
    /// Who holds it, for people: the command and the host.
    pub holder: String,
    pub started: DateTime<Utc>,
    pub expires: DateTime<Utc>,
}

impl LockInfo {
    fn is_live(&self) -> bool {
        self.expires > Utc::now()
    }
}

/// How long locks live and how waiting goes.
#[derive(Debug, Clone)]
pub struct LockTimes {
    /// A lock or lease not renewed for this long is a crashed holder's.
    pub lifetime: Duration,
    /// How often a waiter looks again.
    pub poll: Duration,
    /// How long a prune waits for another prune or for writers, and a writer for a prune.
    pub wait: Duration,
}

impl Default for LockTimes {
    fn default() -> Self {
        Self {
            lifetime: Duration::from_secs(300),
            poll: Duration::from_secs(5),
            wait: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another prune is at work in this folder: {} holds {key} since {} (it expires at {} unless renewed); \
         run again when it is done, or give --wait a longer time",
        .held.holder, .held.started.format("%F %T UTC"), .held.expires.format("%F %T UTC")
    )]
    Held { key: String, held: LockInfo },
    #[error(
        "snapshots are being written ({}); the prune waited {} for them and changed nothing; run it again later",
        .holders.join(", "), humantime::format_duration(*.waited)
    )]
    WritersAtWork {
        holders: Vec<String>,
        waited: Duration,
    },
    #[error(
        "a prune ({holder}) has held the folder's lock for longer than {}; this writer stopped waiting",
        humantime::format_duration(*.waited)
    )]
    PruneAtWork { holder: String, waited: Duration },
    #[error("the lock {key} was lost ({why}); stopping before anything more is written or deleted")]
    Lost { key: String, why: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl LockError {
    /// Whether the destination was away (a later try may succeed as it is).
    pub fn is_outage(&self) -> bool {
        matches!(self, LockError::Store(e) if e.is_outage())
    }
}

/// A lock or lease this process holds, renewed in the background until released.
#[derive(Debug)]
pub struct Held {
    backend: DynBackend,
    key: String,
    token: String,
    lost: Arc<Mutex<Option<String>>>,
    renewer: tokio::task::JoinHandle<()>,
}

impl Held {
    /// `Err` once the lock could not be renewed before it expired, or another holder took it.
    pub fn check(&self) -> Result<(), LockError> {
        match self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            None => Ok(()),
            Some(why) => Err(LockError::Lost {
                key: self.key.clone(),
                why,
            }),
        }
    }

    /// Stops renewing and deletes the lock, if it is still this holder's.
    pub async fn release(self) -> StoreResult<()> {
        self.renewer.abort();
        if let Some(info) = read(&self.backend, &self.key).await?
            && info.token != self.token
        {
            return Ok(());
        }
        self.backend.delete(&self.key).await
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Not released (an error path): it expires by itself.
        self.renewer.abort();
    }
}

/// Who this process is, for the `holder` of its locks.
fn holder(what: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "an unnamed host".to_string());
    format!("{what} on {host} (pid {})", std::process::id())
}

fn new_info(what: &str, times: &LockTimes) -> LockInfo {
    let now = Utc::now();
    LockInfo {
        token: crate::store::exclusive::token(),
        holder: holder(what),
        started: now,
        expires: now + lifetime(times),
    }
}

fn lifetime(times: &LockTimes) -> chrono::Duration {
    chrono::Duration::from_std(times.lifetime).unwrap_or(chrono::Duration::MAX)
}

fn encode(key: &str, info: &LockInfo) -> StoreResult<Bytes> {
    serde_json::to_vec_pretty(info)
        .map(Bytes::from)
        .map_err(|e| malformed(key, e))
}

/// The lock at `key`, `None` when there is none. One that cannot be read as a lock is
/// treated as expired: it was not written by this protocol's holders.
async fn read(backend: &DynBackend, key: &str) -> StoreResult<Option<LockInfo>> {
    Ok(backend.get_opt(key).await?.map(|bytes| {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| LockInfo {
            token: String::new(),
            holder: format!("an unreadable lock at {key}"),
            started: DateTime::<Utc>::MIN_UTC,
            expires: DateTime::<Utc>::MIN_UTC,
        })
    }))
}

/// Takes the folder's prune lock, waiting up to `times.wait` for another prune to finish.
/// An expired lock (its holder crashed) is taken over.
pub async fn lock_prune(
    backend: &DynBackend,
    what: &str,
    times: &LockTimes,
) -> Result<Held, LockError> {
    let key = RemoteFile::Lock(PRUNE).key();
    let started = tokio::time::Instant::now();
    let mut announced = false;
    loop {
        let info = new_info(what, times);
        if backend.create(&key, encode(&key, &info)?).await? == PutOutcome::Created {
            return Ok(hold(backend, key, info, times, true));
        }
        match read(backend, &key).await? {
            // Released meanwhile: try again at once.
            None => continue,
            Some(held) if !held.is_live() => {
                tracing::warn!(key = %key, holder = %held.holder, expired = %held.expires, "taking over an expired prune lock (its holder stopped without releasing it)");
                // Another prune may take it over at the same time; the create above lets
                // only one of them have it.
                backend.delete(&key).await?;
            }
            Some(held) => {
                if started.elapsed() >= times.wait {
                    return Err(LockError::Held { key, held });
                }
                if !announced {
                    tracing::info!(holder = %held.holder, "another prune is at work; waiting for it");
                    announced = true;
                }
                tokio::time::sleep(times.poll).await;
            }
        }
    }
}

/// Waits until no writer holds a live lease: what a prune does, holding its lock, before it
/// reads what the snapshots refer to.
pub async fn wait_for_writers(backend: &DynBackend, times: &LockTimes) -> Result<(), LockError> {
    let started = tokio::time::Instant::now();
    let mut announced = false;
    loop {
        let writers = live_writers(backend).await?;
        if writers.is_empty() {
            return Ok(());
        }
        let holders: Vec<String> = writers.into_iter().map(|w| w.holder).collect();
        if started.elapsed() >= times.wait {
            return Err(LockError::WritersAtWork {
                holders,
                waited: times.wait,
            });
        }
        if !announced {
            tracing::info!(writers = %holders.join(", "), "snapshots are being written; the prune waits for them");
            announced = true;
        }
        tokio::time::sleep(times.poll).await;
    }
}

/// The writers' leases that have not expired.
pub async fn live_writers(backend: &DynBackend) -> StoreResult<Vec<LockInfo>> {
    let folder = Folder::Locks;
    let mut live = Vec::new();
    for meta in backend.list_all(&folder.prefix()).await? {
        let Some(name) = folder.name_in(&meta.key) else {
            continue;
        };
        if !name.starts_with(WRITER) {
            continue;
        }
        if let Some(info) = read(backend, &meta.key).await?
            && info.is_live()
        {
            live.push(info);
        }
    }
    Ok(live)
}

/// The prune lock, when one is held and live.
pub async fn live_prune(backend: &DynBackend) -> StoreResult<Option<LockInfo>> {
    Ok(read(backend, &RemoteFile::Lock(PRUNE).key())
        .await?
        .filter(LockInfo::is_live))
}

/// Takes a writer's lease, waiting up to `times.wait` while a prune holds the folder's lock.
pub async fn lease_writer(
    backend: &DynBackend,
    what: &str,
    times: &LockTimes,
) -> Result<Held, LockError> {
    let started = tokio::time::Instant::now();
    let mut announced = false;
    loop {
        let info = new_info(what, times);
        let key = RemoteFile::Lock(&format!("{WRITER}{}", info.token)).key();
        backend.put(&key, encode(&key, &info)?).await?;
        let Some(prune) = live_prune(backend).await? else {
            return Ok(hold(backend, key, info, times, false));
        };
        // Step aside, so that the prune, which may be waiting for writers, can go on.
        backend.delete(&key).await?;
        if started.elapsed() >= times.wait {
            return Err(LockError::PruneAtWork {
                holder: prune.holder,
                waited: times.wait,
            });
        }
        if !announced {
            tracing::info!(holder = %prune.holder, "a prune is at work in this folder; waiting for it before writing");
            announced = true;
        }
        tokio::time::sleep(times.poll).await;
    }
}

/// Starts renewing `info` at `key` every third of its lifetime. An exclusive lock is read
/// first, so that one taken over by another holder is noticed instead of overwritten.
fn hold(
    backend: &DynBackend,
    key: String,
    info: LockInfo,
    times: &LockTimes,
    exclusive: bool,
) -> Held {
    let lost = Arc::new(Mutex::new(None));
    let renewer = {
        let backend = backend.clone();
        let key = key.clone();
        let lost = lost.clone();
        let mut info = info.clone();
        let every = times.lifetime / 3;
        let lifetime = lifetime(times);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let renewed = async {
                    if exclusive {
                        match read(&backend, &key).await? {
                            Some(current) if current.token == info.token => {}
                            Some(current) => {
                                return Ok(Some(format!("{} took it", current.holder)));
                            }
                            None => return Ok(Some("it was deleted".to_string())),
                        }
                    }
                    let mut next = info.clone();
                    next.expires = Utc::now() + lifetime;
                    backend.put(&key, encode(&key, &next)?).await?;
                    info = next;
                    Ok::<_, StoreError>(None)
                }
                .await;
                let why = match renewed {
                    Ok(None) => continue,
                    Ok(Some(why)) => why,
                    Err(e) if info.is_live() => {
                        tracing::warn!(key = %key, error = %e, "cannot renew the lock; trying again");
                        continue;
                    }
                    Err(e) => format!("not renewed before it expired: {e}"),
                };
                tracing::error!(key = %key, why = %why, "lock lost");
                *lost.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                return;
            }
        })
    };
    Held {
        backend: backend.clone(),
        key,
        token: info.token,
        lost,
        renewer,
    }
}

fn malformed(key: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Malformed {
        key: key.to_string(),
        what: "lock",
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryBackend;

    fn quick() -> LockTimes {
        LockTimes {
            lifetime: Duration::from_millis(600),
            poll: Duration::from_millis(20),
            wait: Duration::from_millis(200),
        }
    }

    #[tokio::test]
    async fn a_second_prune_is_told_who_holds_the_lock_until_it_is_released() {
        let backend: DynBackend = Arc::new(MemoryBackend::default());
        let first = lock_prune(&backend, "prune", &quick()).await.unwrap();
        let err = lock_prune(&backend, "prune", &quick()).await.unwrap_err();
        assert!(matches!(err, LockError::Held { .. }), "{err}");
        assert!(err.to_string().contains("pid"), "{err}");
        first.release().await.unwrap();
        let second = lock_prune(&backend, "prune", &quick()).await.unwrap();
        second.check().unwrap();
        second.release().await.unwrap();
        assert!(backend.list_all("").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_held_lock_is_renewed_past_its_lifetime_and_an_abandoned_one_is_taken_over() {
        let backend: DynBackend = Arc::new(MemoryBackend::default());
        let times = quick();
        let first = lock_prune(&backend, "prune", &times).await.unwrap();
        tokio::time::sleep(times.lifetime * 2).await;
        first.check().unwrap();
        assert!(lock_prune(&backend, "prune", &times).await.is_err());
        // A crash: never released, never renewed again.
        drop(first);
        tokio::time::sleep(times.lifetime + Duration::from_millis(100)).await;
        let second = lock_prune(&backend, "prune", &times).await.unwrap();
        second.release().await.unwrap();
    }

    #[tokio::test]
    async fn writers_and_a_prune_exclude_each_other() {
        let backend: DynBackend = Arc::new(MemoryBackend::default());
        let times = quick();
        let writer = lease_writer(&backend, "snapshot", &times).await.unwrap();
        let prune = lock_prune(&backend, "prune", &times).await.unwrap();
        let err = wait_for_writers(&backend, &times).await.unwrap_err();
        assert!(matches!(err, LockError::WritersAtWork { .. }), "{err}");
        // A new writer steps aside while the prune holds the lock, and leaves no lease.
        let err = lease_writer(&backend, "snapshot", &times)
            .await
            .unwrap_err();
        assert!(matches!(err, LockError::PruneAtWork { .. }), "{err}");
        assert_eq!(live_writers(&backend).await.unwrap().len(), 1);
        writer.release().await.unwrap();
        wait_for_writers(&backend, &times).await.unwrap();
        prune.release().await.unwrap();
        lease_writer(&backend, "snapshot", &times)
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_lock_taken_over_by_another_holder_is_lost_not_overwritten() {
        let backend: DynBackend = Arc::new(MemoryBackend::default());
        let times = quick();
        let first = lock_prune(&backend, "prune", &times).await.unwrap();
        let key = RemoteFile::Lock(PRUNE).key();
        let other = new_info("another prune", &times);
        backend
            .put(&key, encode(&key, &other).unwrap())
            .await
            .unwrap();
        tokio::time::sleep(times.lifetime).await;
        assert!(matches!(first.check(), Err(LockError::Lost { .. })));
        first.release().await.unwrap();
        // The other holder's lock is still there.
        assert_eq!(
            read(&backend, &key).await.unwrap().unwrap().token,
            other.token
        );
    }
}
