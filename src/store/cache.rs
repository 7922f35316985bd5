//! The local sled index: which objects the store already holds and where, plus small tables
//! for the exporter (rendered file hashes) and the pusher (pending work).
//!
//! It is a cache and nothing more. Everything in the `objects` tree can be rebuilt from the
//! remote index files, so a missing or corrupt directory is rebuilt, never fatal. It must
//! never hold an object that no remote index file lists: entries are inserted only after the
//! index file that lists them is stored. Nor may it hold an object of a pack that is gone
//! from the destination (a lifecycle rule, someone cleaning up): every object it holds is
//! one a snapshot will not upload again, so the store checks the packs it knows against a
//! listing of the destination and the cache forgets the objects of the missing ones. For
//! that it keeps, per pack, the ids of its objects.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::collections::{HashMap, HashSet};

use super::error::{StoreError, StoreResult};
use super::id::{IndexId, ObjectId, PackId};
use super::pack::{IndexFile, IndexedPack, Location};

/// Bumped when the layout of the trees changes; an older cache is rebuilt.
const CACHE_FORMAT: &[u8] = b"3";
/// The key of the [`Cache::holdings`] token.
const HOLDINGS: &[u8] = b"holdings";

/// A token unlike any before it: the time, the process and the token it replaces, hashed.
fn new_holdings(previous: Option<&str>) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut hasher = blake3::Hasher::new();
    hasher.update(&nanos.to_le_bytes());
    hasher.update(&std::process::id().to_le_bytes());
    hasher.update(previous.unwrap_or_default().as_bytes());
    hasher.finalize().to_hex()[..32].to_string()
}
/// Entries per sled batch when an index file is recorded.
const INSERT_BATCH: usize = 1024;
/// How long a locked index is waited for before it is reported as in use.
const LOCK_WAIT: Duration = Duration::from_secs(3);
const LOCK_RETRY: Duration = Duration::from_millis(50);

pub struct Cache {
    path: PathBuf,
    db: sled::Db,
    /// object id -> [`Location`]
    objects: sled::Tree,
    /// index id -> (): the index files recorded
    index_files: sled::Tree,
    /// pack id -> (): the packs whose objects are recorded, kept apart from `pack_objects`
    /// so that the pack check reads 32 bytes per pack, not the ids of its objects
    packs: sled::Tree,
    /// pack id -> the ids of its objects, 32 bytes each (of recorded and of gone packs)
    pack_objects: sled::Tree,
    /// pack id -> (): packs the last check found gone from the destination; an index file
    /// that lists them does not bring their objects back
    gone_packs: sled::Tree,
}

/// What [`Cache::forget_gone_packs`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Forgotten {
    pub packs: u64,
    pub objects: u64,
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

/// The ids of a pack's objects, 32 bytes each.
fn object_ids(pack: &IndexedPack) -> Vec<u8> {
    pack.blobs
        .iter()
        .flat_map(|blob| *blob.id.as_bytes())
        .collect()
}

fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// A table of the cache (see [`Cache::table`]). A value that no longer decodes (written by
/// another version) reads as absent: like everything here, it is a cache.
pub struct Table<V> {
    tree: sled::Tree,
    path: PathBuf,
    value: std::marker::PhantomData<fn() -> V>,
}

impl<V: serde::Serialize + serde::de::DeserializeOwned> Table<V> {
    pub fn get(&self, key: &[u8]) -> Option<V> {
        let value = self.tree.get(key).ok()??;
        serde_json::from_slice(&value).ok()
    }

    pub fn insert(&self, key: &[u8], value: &V) -> StoreResult<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Index {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        self.tree
            .insert(key, bytes)
            .map(drop)
            .map_err(|e| sled_error(&self.path, e))
    }

    /// Inserts many values in one write: sled's per-write overhead is paid once, which
    /// matters for callers that record thousands of small values.
    pub fn insert_many<'v, K: AsRef<[u8]>>(
        &self,
        entries: impl IntoIterator<Item = (K, &'v V)>,
    ) -> StoreResult<()>
    where
        V: 'v,
    {
        let mut batch = sled::Batch::default();
        for (key, value) in entries {
            let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Index {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
            batch.insert(key.as_ref(), bytes);
        }
        self.tree
            .apply_batch(batch)
            .map_err(|e| sled_error(&self.path, e))
    }

    pub fn remove(&self, key: &[u8]) -> StoreResult<()> {
        self.tree
            .remove(key)
            .map(drop)
            .map_err(|e| sled_error(&self.path, e))
    }

    /// The keys, in order.
    pub fn keys(&self) -> Vec<Vec<u8>> {
        self.tree
            .iter()
            .keys()
            .filter_map(Result::ok)
            .map(|k| k.to_vec())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Makes what was written so far survive a crash (sled otherwise flushes on a timer).
    pub fn flush(&self) -> StoreResult<()> {
        self.tree
            .flush()
            .map(drop)
            .map_err(|e| sled_error(&self.path, e))
    }
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
        if opened.get(HOLDINGS)?.is_none() {
            opened.insert(HOLDINGS, new_holdings(None).as_bytes())?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            objects: opened.open_tree("objects")?,
            index_files: opened.open_tree("index_files")?,
            packs: opened.open_tree("packs")?,
            pack_objects: opened.open_tree("pack_objects")?,
            gone_packs: opened.open_tree("gone_packs")?,
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

    /// A token of what the index holds, renewed whenever an object is forgotten (objects
    /// are otherwise only added, and a wiped index is a new one with a new token). So an id
    /// recorded while the token was T is still held while the token is T: what lets a
    /// snapshot take a hundred thousand unchanged ids from the seen-objects cache without
    /// looking each one up.
    pub fn holdings(&self) -> StoreResult<String> {
        let token = self
            .db
            .get(HOLDINGS)
            .map_err(|e| sled_error(&self.path, e))?
            .unwrap_or_default();
        Ok(String::from_utf8_lossy(&token).into_owned())
    }

    fn renew_holdings(&self) -> StoreResult<()> {
        let previous = self.holdings()?;
        self.db
            .insert(HOLDINGS, new_holdings(Some(&previous)).as_bytes())
            .map_err(|e| sled_error(&self.path, e))?;
        Ok(())
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

    /// Records every entry of a stored index file whose packs are all at the destination
    /// (this machine has just stored them), then the index file itself, so that an
    /// interrupted insert is redone at the next sync.
    pub fn insert_index_file(&self, id: &IndexId, index: &IndexFile) -> StoreResult<()> {
        self.record_index_file(id, index, |_| true)
    }

    /// Like [`Cache::insert_index_file`], for an index file read from the destination while
    /// `listed` are the packs there: the objects of its other packs are not recorded (their
    /// packs are recorded as gone). The packs must have been listed after the index file, so
    /// that every pack it points at was stored before the listing.
    pub fn insert_listed_index_file(
        &self,
        id: &IndexId,
        index: &IndexFile,
        listed: &HashSet<PackId>,
    ) -> StoreResult<()> {
        self.record_index_file(id, index, |pack| listed.contains(pack))
    }

    fn record_index_file(
        &self,
        id: &IndexId,
        index: &IndexFile,
        present: impl Fn(&PackId) -> bool,
    ) -> StoreResult<()> {
        let error = |e| sled_error(&self.path, e);
        let (present, gone): (Vec<&IndexedPack>, Vec<&IndexedPack>) =
            index.packs.iter().partition(|pack| present(&pack.id));
        let mut entries: Vec<(ObjectId, [u8; Location::ENCODED_LEN])> = present
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
            self.objects.apply_batch(batch).map_err(error)?;
        }
        for pack in &present {
            self.pack_objects
                .insert(pack.id.as_bytes(), object_ids(pack))
                .map_err(error)?;
            self.packs.insert(pack.id.as_bytes(), &[]).map_err(error)?;
            self.gone_packs.remove(pack.id.as_bytes()).map_err(error)?;
        }
        for pack in &gone {
            // Kept so that a read of one of its objects can say which pack it was lost with.
            self.pack_objects
                .insert(pack.id.as_bytes(), object_ids(pack))
                .map_err(error)?;
            self.gone_packs
                .insert(pack.id.as_bytes(), &[])
                .map_err(error)?;
        }
        self.index_files.insert(id.as_bytes(), &[]).map_err(error)?;
        Ok(())
    }

    /// Given every pack at the destination, forgets the objects of the recorded packs that
    /// are not there, so that the next snapshot uploads them again. Costs a read of the
    /// recorded pack ids, plus the objects of the gone packs. Returns the gone packs and what
    /// was forgotten.
    pub fn forget_gone_packs(
        &self,
        listed: &HashSet<PackId>,
    ) -> StoreResult<(Vec<PackId>, Forgotten)> {
        let mut gone = Vec::new();
        for key in self.packs.iter().keys() {
            let key = key.map_err(|e| sled_error(&self.path, e))?;
            if let Some(pack) = PackId::from_slice(&key)
                && !listed.contains(&pack)
            {
                gone.push(pack);
            }
        }
        // A pack found gone earlier that is back (stored again by someone) is gone no more;
        // the objects of its known index files stay forgotten, which costs an upload at most.
        for key in self.gone_packs.iter().keys() {
            let key = key.map_err(|e| sled_error(&self.path, e))?;
            if PackId::from_slice(&key).is_some_and(|pack| listed.contains(&pack)) {
                self.gone_packs
                    .remove(&key)
                    .map_err(|e| sled_error(&self.path, e))?;
            }
        }
        let mut forgotten = Forgotten::default();
        for pack in &gone {
            self.gone_packs
                .insert(pack.as_bytes(), &[])
                .map_err(|e| sled_error(&self.path, e))?;
            let ids = self
                .pack_objects
                .get(pack.as_bytes())
                .map_err(|e| sled_error(&self.path, e))?
                .unwrap_or_default();
            let mut batch = sled::Batch::default();
            for object in ids.chunks_exact(32) {
                // An object also stored in a pack that is still there keeps that location.
                let here = self
                    .objects
                    .get(object)
                    .map_err(|e| sled_error(&self.path, e))?
                    .and_then(|v| Location::decode(&v))
                    .is_some_and(|location| location.pack == *pack);
                if here {
                    batch.remove(object);
                    forgotten.objects += 1;
                }
            }
            self.objects
                .apply_batch(batch)
                .map_err(|e| sled_error(&self.path, e))?;
            self.packs
                .remove(pack.as_bytes())
                .map_err(|e| sled_error(&self.path, e))?;
            forgotten.packs += 1;
        }
        if forgotten.objects > 0 {
            self.renew_holdings()?;
        }
        Ok((gone, forgotten))
    }

    /// The objects of the packs found gone, by the pack they were in: what an object that
    /// is not in the index any more was lost with.
    pub fn gone_objects(&self) -> StoreResult<HashMap<ObjectId, PackId>> {
        let mut out = HashMap::new();
        for key in self.gone_packs.iter().keys() {
            let key = key.map_err(|e| sled_error(&self.path, e))?;
            let Some(pack) = PackId::from_slice(&key) else {
                continue;
            };
            let ids = self
                .pack_objects
                .get(&key)
                .map_err(|e| sled_error(&self.path, e))?
                .unwrap_or_default();
            for object in ids.chunks_exact(32) {
                if let Some(object) = ObjectId::from_slice(object) {
                    out.insert(object, pack);
                }
            }
        }
        Ok(out)
    }

    /// The number of packs whose objects are recorded.
    pub fn pack_count(&self) -> usize {
        self.packs.len()
    }

    /// Forgets everything the store told us (before a full rebuild, after which the store
    /// checks its packs again).
    pub fn clear_store_entries(&self) -> StoreResult<()> {
        for tree in [
            &self.index_files,
            &self.objects,
            &self.packs,
            &self.pack_objects,
            &self.gone_packs,
        ] {
            tree.clear().map_err(|e| sled_error(&self.path, e))?;
        }
        self.renew_holdings()
    }

    /// A named table for other parts of the program (the exporter's file hashes, the
    /// pusher's pending work). What goes in there must be rebuildable or re-doable too.
    /// A small table of its own beside the objects, holding `V`s as JSON under byte keys:
    /// what the exporter and the pusher remember. Callers never see sled.
    pub fn table<V: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> StoreResult<Table<V>> {
        let tree = self
            .db
            .open_tree(name)
            .map_err(|e| sled_error(&self.path, e))?;
        Ok(Table {
            tree,
            path: self.path.clone(),
            value: std::marker::PhantomData,
        })
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
    use crate::store::pack::IndexedBlob;

    fn indexed(pack: &[u8], objects: &[&[u8]]) -> IndexedPack {
        IndexedPack {
            id: PackId::of(pack),
            size: 100,
            blobs: objects
                .iter()
                .enumerate()
                .map(|(i, o)| IndexedBlob {
                    id: ObjectId::of(o),
                    offset: i as u64 * 10,
                    length: 10,
                    raw_offset: 0,
                    raw_length: 1,
                })
                .collect(),
        }
    }

    #[test]
    fn the_objects_of_a_gone_pack_are_forgotten_and_stay_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("index")).unwrap();
        let (kept, gone) = (
            indexed(b"kept", &[b"a"]),
            indexed(b"gone", &[b"b", b"c", b"d"]),
        );
        cache
            .insert_index_file(
                &IndexId::of(b"i"),
                &IndexFile::new(vec![gone.clone(), kept.clone()]),
            )
            .unwrap();
        // Another writer stored "b" again, in a pack that is still there.
        let again = indexed(b"kept-again", &[b"b"]);
        cache
            .insert_index_file(&IndexId::of(b"h"), &IndexFile::new(vec![again.clone()]))
            .unwrap();
        assert_eq!((cache.object_count(), cache.pack_count()), (4, 3));

        let listed: HashSet<PackId> = [kept.id, again.id].into();
        let holdings = cache.holdings().unwrap();
        assert_eq!(holdings.len(), 32);
        let (found, forgotten) = cache.forget_gone_packs(&listed).unwrap();
        assert_eq!(found, vec![gone.id]);
        // Objects were forgotten: ids recorded under the old token must be looked up again.
        let renewed = cache.holdings().unwrap();
        assert_ne!(renewed, holdings);
        assert_eq!(
            forgotten,
            Forgotten {
                packs: 1,
                objects: 2
            }
        );
        for (object, known) in [(b"a", true), (b"b", true), (b"c", false), (b"d", false)] {
            assert_eq!(cache.contains(&ObjectId::of(object)).unwrap(), known);
        }
        assert_eq!(cache.gone_objects().unwrap()[&ObjectId::of(b"c")], gone.id);
        // Checked again: nothing more to forget, and the token stays.
        let (found, _) = cache.forget_gone_packs(&listed).unwrap();
        assert!(found.is_empty());
        assert_eq!(cache.holdings().unwrap(), renewed);
        // Added objects keep it too; a cleared index gets a new one.
        cache
            .insert_index_file(
                &IndexId::of(b"l"),
                &IndexFile::new(vec![indexed(b"new", &[b"e"])]),
            )
            .unwrap();
        assert_eq!(cache.holdings().unwrap(), renewed);

        // Another index file read from the destination that lists the gone pack does not
        // bring its objects back ...
        let other = IndexFile::new(vec![gone.clone()]);
        cache
            .insert_listed_index_file(&IndexId::of(b"j"), &other, &listed)
            .unwrap();
        assert!(!cache.contains(&ObjectId::of(b"c")).unwrap());
        // ... nor does a first one, into a fresh cache ...
        let fresh = Cache::open(&dir.path().join("fresh")).unwrap();
        fresh
            .insert_listed_index_file(&IndexId::of(b"j"), &other, &listed)
            .unwrap();
        assert_eq!((fresh.object_count(), fresh.pack_count()), (0, 0));
        assert_eq!(fresh.gone_objects().unwrap()[&ObjectId::of(b"d")], gone.id);
        // ... unless this machine stored the pack again.
        cache.insert_index_file(&IndexId::of(b"k"), &other).unwrap();
        assert!(cache.contains(&ObjectId::of(b"c")).unwrap());
        assert!(cache.gone_objects().unwrap().is_empty());
        cache.clear_store_entries().unwrap();
        assert_ne!(cache.holdings().unwrap(), renewed);
    }

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
