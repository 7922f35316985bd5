//! The local sled index: which objects the store already holds and where, plus small tables
//! for the exporter (rendered file hashes) and the pusher (pending work).
//!
//! It is a cache and nothing more. Everything in the `objects` tree can be rebuilt from the
//! remote index files, so a missing or corrupt directory is rebuilt, never fatal. It must
//! never hold an object that no remote index file lists: entries are inserted only after the
//! index file that lists them is stored.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::error::{StoreError, StoreResult};
use super::id::{IndexId, ObjectId};
use super::pack::{IndexFile, Location};

/// Bumped when the layout of the trees changes; an older cache is rebuilt.
const CACHE_FORMAT: &[u8] = b"2";
/// Entries per sled batch when an index file is recorded.
const INSERT_BATCH: usize = 1024;
/// How long a locked index is waited for before it is reported as in use.
const LOCK_WAIT: Duration = Duration::from_secs(3);
const LOCK_RETRY: Duration = Duration::from_millis(50);

pub struct Cache {
    path: PathBuf,
    db: sled::Db,
    objects: sled::Tree,
    index_files: sled::Tree,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn sled_error(path: &Path, e: sled::Error) -> StoreError {
    StoreError::Index {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

impl Cache {
    /// Opens the cache at `path`. A directory held by another process is an error; one that
    /// cannot be read (corrupt, or written by an incompatible version) is wiped and started
    /// afresh, and the caller rebuilds it from the remote index files.
    ///
    /// A lock is waited for up to [`LOCK_WAIT`]: sled finishes its last background writes
    /// after its handle is dropped, and the file stays locked until they are done.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let started = Instant::now();
        let opened = loop {
            match Self::try_open(path) {
                Err(e) if is_lock_error(&e) && started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(LOCK_RETRY);
                }
                opened => break opened,
            }
        };
        match opened {
            Ok(cache) => Ok(cache),
            Err(e) if is_lock_error(&e) => Err(StoreError::IndexLocked {
                path: path.to_path_buf(),
            }),
            Err(e) => {
                tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "the local index cannot be read; rebuilding it from the store"
                );
                std::fs::remove_dir_all(path).map_err(|e| StoreError::io(path, e))?;
                Self::try_open(path).map_err(|e| sled_error(path, e))
            }
        }
    }

    fn try_open(path: &Path) -> Result<Self, sled::Error> {
        // sled panics on some kinds of damage instead of returning an error.
        let opened = std::panic::catch_unwind(|| {
            sled::Config::new()
                .path(path)
                .cache_capacity(64 * 1024 * 1024)
                .open()
        })
        .unwrap_or_else(|_| Err(sled::Error::Corruption { at: None, bt: () }))?;
        match opened.get(b"format")? {
            Some(format) if &format[..] == CACHE_FORMAT => {}
            Some(_) => {
                return Err(sled::Error::Unsupported(
                    "local index format changed".to_string(),
                ));
            }
            None => {
                opened.insert(b"format", CACHE_FORMAT)?;
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            objects: opened.open_tree("objects")?,
            index_files: opened.open_tree("index_files")?,
            db: opened,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn location(&self, id: &ObjectId) -> StoreResult<Option<Location>> {
        let found = self
            .objects
            .get(id.as_bytes())
            .map_err(|e| sled_error(&self.path, e))?;
        Ok(found.and_then(|v| Location::decode(&v)))
    }

    pub fn contains(&self, id: &ObjectId) -> StoreResult<bool> {
        self.objects
            .contains_key(id.as_bytes())
            .map_err(|e| sled_error(&self.path, e))
    }

    pub fn object_count(&self) -> usize {
        self.objects.len()
    }

    pub fn knows_index_file(&self, id: &IndexId) -> StoreResult<bool> {
        self.index_files
            .contains_key(id.as_bytes())
            .map_err(|e| sled_error(&self.path, e))
    }

    pub fn index_files(&self) -> StoreResult<Vec<IndexId>> {
        self.index_files
            .iter()
            .keys()
            .map(|k| {
                k.map_err(|e| sled_error(&self.path, e))
                    .map(|k| IndexId::from_slice(&k))
            })
            .filter_map(|r| r.transpose())
            .collect()
    }

    /// Records every entry of a stored index file, then the index file itself, so that an
    /// interrupted insert is redone at the next sync.
    pub fn insert_index_file(&self, id: &IndexId, index: &IndexFile) -> StoreResult<()> {
        let mut entries: Vec<(ObjectId, [u8; Location::ENCODED_LEN])> = index
            .packs
            .iter()
            .flat_map(|pack| pack.locations())
            .map(|(object, location)| (object, location.encode()))
            .collect();
        // In key order and in small batches: sled copies a leaf on every insert and frees the
        // old copies only between batches, so one batch of a whole index file (tens of
        // thousands of random keys) costs hundreds of MiB at its peak.
        entries.sort_unstable_by_key(|(object, _)| *object);
        for chunk in entries.chunks(INSERT_BATCH) {
            let mut batch = sled::Batch::default();
            for (object, location) in chunk {
                batch.insert(object.as_bytes(), &location[..]);
            }
            self.objects
                .apply_batch(batch)
                .map_err(|e| sled_error(&self.path, e))?;
        }
        self.index_files
            .insert(id.as_bytes(), &[])
            .map_err(|e| sled_error(&self.path, e))?;
        Ok(())
    }

    /// Forgets everything the store told us (before a full rebuild).
    pub fn clear_store_entries(&self) -> StoreResult<()> {
        self.index_files
            .clear()
            .map_err(|e| sled_error(&self.path, e))?;
        self.objects
            .clear()
            .map_err(|e| sled_error(&self.path, e))?;
        Ok(())
    }

    /// A named table for other parts of the program (the exporter's file hashes, the
    /// pusher's pending work). What goes in there must be rebuildable or re-doable too.
    pub fn tree(&self, name: &str) -> StoreResult<sled::Tree> {
        self.db
            .open_tree(name)
            .map_err(|e| sled_error(&self.path, e))
    }

    pub async fn flush(&self) -> StoreResult<()> {
        self.db
            .flush_async()
            .await
            .map(drop)
            .map_err(|e| sled_error(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_released_while_waiting_for_it_is_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let held = Cache::open(&path).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        let started = Instant::now();
        let reopened = Cache::open(&path);
        release.join().unwrap();
        assert!(reopened.is_ok(), "{reopened:?}");
        assert!(started.elapsed() >= Duration::from_millis(250));
    }
}
