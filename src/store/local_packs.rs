//! Local copies of packs (`index-<hash>.packs/<pack id>`), so that exporting a snapshot reads
//! objects from disk instead of downloading packs again.
//!
//! The copies are disposable: the destination is the truth, a copy is used only while every
//! object read from it matches its id, and a missing, damaged or evicted copy only means the
//! pack is read from the destination again. The folder is kept under a size cap by evicting
//! the least recently used copies. This module must never be the only place a pack exists: it
//! saves copies of packs that are (or are about to be) at the destination, nothing else, and
//! never evicts a copy while it is being read.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::error::{StoreError, StoreResult};
use super::id::PackId;

/// One local copy.
#[derive(Debug, Clone, Copy)]
struct Entry {
    size: u64,
    /// Higher is more recent.
    last_used: u64,
    /// Reads under way; a copy being read is not evicted.
    readers: u32,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<PackId, Entry>,
    total: u64,
    clock: u64,
}

impl State {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }
}

/// The local pack copies of one destination, with their size cap.
#[derive(Debug)]
pub struct LocalPacks {
    dir: PathBuf,
    cap: u64,
    state: Arc<Mutex<State>>,
}

/// A local copy opened for reading; it is not evicted until this is dropped.
#[derive(Debug)]
pub struct OpenCopy {
    pub file: File,
    pub path: PathBuf,
    pack: PackId,
    state: Arc<Mutex<State>>,
}

impl Drop for OpenCopy {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        if let Some(entry) = state.entries.get_mut(&self.pack) {
            entry.readers = entry.readers.saturating_sub(1);
        }
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl LocalPacks {
    /// Opens the folder (creating it), learns the copies in it with their last use (file
    /// modification times) and evicts down to `cap` bytes. Half-written files of an
    /// interrupted save are removed.
    pub fn open(dir: &Path, cap: u64) -> StoreResult<Self> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let mut found: Vec<(SystemTime, PackId, u64)> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
            let entry = entry.map_err(|e| StoreError::io(dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            match name.parse::<PackId>() {
                Ok(pack) => {
                    let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    found.push((used, pack, meta.len()));
                }
                // Only this process writes here (the local index's lock is held), so a
                // temporary file is a leftover.
                Err(_) if name.starts_with(".tmp") => {
                    let _ = std::fs::remove_file(entry.path());
                }
                Err(_) => {}
            }
        }
        found.sort();
        let mut state = State::default();
        for (_, pack, size) in found {
            let last_used = state.tick();
            state.total += size;
            state.entries.insert(
                pack,
                Entry {
                    size,
                    last_used,
                    readers: 0,
                },
            );
        }
        let packs = Self {
            dir: dir.to_path_buf(),
            cap,
            state: Arc::new(Mutex::new(state)),
        };
        packs.evict(None);
        Ok(packs)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The most bytes of copies kept.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Bytes of copies held now.
    pub fn total_bytes(&self) -> u64 {
        lock(&self.state).total
    }

    pub fn path(&self, pack: &PackId) -> PathBuf {
        self.dir.join(pack.to_hex())
    }

    /// Opens the copy of `pack` for reading and marks it used; `None` when there is none
    /// (never saved, evicted, or deleted behind our back).
    pub fn open_copy(&self, pack: &PackId) -> Option<OpenCopy> {
        let path = self.path(pack);
        {
            let mut state = lock(&self.state);
            let tick = state.tick();
            let entry = state.entries.get_mut(pack)?;
            entry.last_used = tick;
            entry.readers += 1;
        }
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(_) => {
                // Deleted behind our back: forget it, the pack is read from the destination.
                let mut state = lock(&self.state);
                if let Some(entry) = state.entries.remove(pack) {
                    state.total -= entry.size;
                }
                return None;
            }
        };
        let copy = OpenCopy {
            file,
            path,
            pack: *pack,
            state: self.state.clone(),
        };
        // The order of use survives a restart; a failure costs only a worse eviction order.
        let _ = copy.file.set_modified(SystemTime::now());
        Some(copy)
    }

    /// Saves a copy of `pack` (already checked against its id). The file is synced to disk
    /// before it takes its name, so a crash never leaves a named copy with missing bytes.
    /// A pack larger than the cap is not kept.
    pub fn save(&self, pack: &PackId, data: &[u8]) -> StoreResult<()> {
        let size = data.len() as u64;
        if size > self.cap {
            return Ok(());
        }
        let path = self.path(pack);
        let mut temp =
            tempfile::NamedTempFile::new_in(&self.dir).map_err(|e| StoreError::io(&self.dir, e))?;
        std::io::Write::write_all(&mut temp, data).map_err(|e| StoreError::io(&path, e))?;
        temp.as_file()
            .sync_all()
            .map_err(|e| StoreError::io(&path, e))?;
        temp.persist(&path)
            .map_err(|e| StoreError::io(&path, e.error))?;
        {
            let mut state = lock(&self.state);
            let last_used = state.tick();
            let previous = state.entries.insert(
                *pack,
                Entry {
                    size,
                    last_used,
                    readers: 0,
                },
            );
            state.total += size;
            if let Some(previous) = previous {
                state.total -= previous.size;
                // Readers of the replaced file keep their handle on it.
                if let Some(entry) = state.entries.get_mut(pack) {
                    entry.readers = previous.readers;
                }
            }
        }
        self.evict(Some(pack));
        Ok(())
    }

    /// Deletes the copy of `pack` (damaged, or its pack is gone from the destination).
    pub fn remove(&self, pack: &PackId) {
        let mut state = lock(&self.state);
        if let Some(entry) = state.entries.remove(pack) {
            state.total -= entry.size;
        }
        // Deleting under the lock: a save of the same pack cannot slip in between.
        let _ = std::fs::remove_file(self.path(pack));
    }

    /// Deletes least recently used copies until the total is under the cap; copies being
    /// read and `keep` stay.
    fn evict(&self, keep: Option<&PackId>) {
        let mut state = lock(&self.state);
        if state.total <= self.cap {
            return;
        }
        let mut candidates: Vec<(u64, PackId, u64)> = state
            .entries
            .iter()
            .filter(|(pack, entry)| entry.readers == 0 && Some(*pack) != keep)
            .map(|(pack, entry)| (entry.last_used, *pack, entry.size))
            .collect();
        candidates.sort_unstable();
        for (_, pack, size) in candidates {
            if state.total <= self.cap {
                break;
            }
            let path = self.path(&pack);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot evict a local pack copy");
                    continue;
                }
            }
            state.entries.remove(&pack);
            state.total -= size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(n: u8) -> (PackId, Vec<u8>) {
        let data = vec![n; 100];
        (PackId::of(&data), data)
    }

    fn on_disk(dir: &Path) -> Vec<PackId> {
        let mut found: Vec<PackId> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().to_string_lossy().parse().ok())
            .collect();
        found.sort();
        found
    }

    #[test]
    fn the_least_recently_used_copies_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let packs = LocalPacks::open(dir.path(), 300).unwrap();
        let (a, b, c, d) = (pack(1), pack(2), pack(3), pack(4));
        for (id, data) in [&a, &b, &c] {
            packs.save(id, data).unwrap();
        }
        assert_eq!(packs.total_bytes(), 300);
        // a is read, so b is now the least recently used.
        drop(packs.open_copy(&a.0).unwrap());
        packs.save(&d.0, &d.1).unwrap();
        let mut expected = vec![a.0, c.0, d.0];
        expected.sort();
        assert_eq!(on_disk(dir.path()), expected);
        assert_eq!(packs.total_bytes(), 300);
        assert!(packs.open_copy(&b.0).is_none());
    }

    #[test]
    fn a_copy_being_read_is_not_evicted() {
        let dir = tempfile::tempdir().unwrap();
        let packs = LocalPacks::open(dir.path(), 200).unwrap();
        let (a, b, c) = (pack(1), pack(2), pack(3));
        packs.save(&a.0, &a.1).unwrap();
        packs.save(&b.0, &b.1).unwrap();
        let reading = packs.open_copy(&a.0).unwrap();
        drop(packs.open_copy(&b.0).unwrap());
        // a is the least recently used, but it is being read: b goes instead.
        packs.save(&c.0, &c.1).unwrap();
        assert!(reading.path.is_file());
        assert!(packs.open_copy(&b.0).is_none());
        drop(reading);
        assert_eq!(packs.total_bytes(), 200);
    }

    #[test]
    fn the_order_of_use_and_the_cap_hold_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (pack(1), pack(2), pack(3));
        {
            let packs = LocalPacks::open(dir.path(), 1_000).unwrap();
            for (id, data) in [&a, &b, &c] {
                packs.save(id, data).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            drop(packs.open_copy(&a.0).unwrap());
        }
        std::fs::write(dir.path().join(".tmpXYZ"), b"half").unwrap();
        // Reopened with a lower cap: b, the least recently used, goes; the leftover too.
        let packs = LocalPacks::open(dir.path(), 200).unwrap();
        let mut expected = vec![a.0, c.0];
        expected.sort();
        assert_eq!(on_disk(dir.path()), expected);
        assert!(!dir.path().join(".tmpXYZ").exists());
        assert_eq!(packs.total_bytes(), 200);
        // A pack larger than the cap is not kept, and evicts nothing.
        packs.save(&PackId::of(&[0; 300]), &[0; 300]).unwrap();
        assert_eq!(on_disk(dir.path()), expected);
    }

    #[test]
    fn a_removed_or_vanished_copy_is_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        let packs = LocalPacks::open(dir.path(), 1_000).unwrap();
        let (a, b) = (pack(1), pack(2));
        packs.save(&a.0, &a.1).unwrap();
        packs.save(&b.0, &b.1).unwrap();
        packs.remove(&a.0);
        assert!(packs.open_copy(&a.0).is_none());
        std::fs::remove_file(packs.path(&b.0)).unwrap();
        assert!(packs.open_copy(&b.0).is_none());
        assert_eq!(packs.total_bytes(), 0);
    }
}
