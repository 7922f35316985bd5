//! A backend on a local directory, with the same guarantees S3 gives: a reader never sees a
//! half-written file (write to a temporary file, then rename), put-if-absent is atomic (hard
//! link of the finished temporary file), and copies are hard links where the file system
//! allows them. Temporary files start with `.tmp-` and are never listed.

use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use super::backend::{Backend, ObjectMeta, PutOutcome, listed_at_once};
use super::error::{StoreError, StoreResult};

const TEMP_PREFIX: &str = ".tmp-";

#[derive(Debug, Clone)]
pub struct LocalBackend {
    root: PathBuf,
}

impl LocalBackend {
    /// A backend rooted at `root`, which is created if it does not exist.
    pub fn new(root: impl Into<PathBuf>) -> StoreResult<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| StoreError::io(&root, e))?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes temporary files that an interrupted process left behind. Only for a directory
    /// no other process writes to (the daemon's staging folder, under its index lock).
    pub fn remove_temp_files(&self) -> StoreResult<usize> {
        fn sweep(dir: &Path) -> StoreResult<usize> {
            let mut removed = 0;
            let entries = match std::fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(StoreError::io(dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| StoreError::io(dir, e))?;
                let path = entry.path();
                if path.is_dir() {
                    removed += sweep(&path)?;
                } else if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                    std::fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
                    removed += 1;
                }
            }
            Ok(removed)
        }
        sweep(&self.root)
    }

    fn path(&self, key: &str) -> StoreResult<PathBuf> {
        let bad = key.is_empty()
            || key.starts_with('/')
            || key
                .split('/')
                .any(|part| part.is_empty() || part == "." || part == "..");
        if bad {
            return Err(StoreError::Malformed {
                key: key.to_string(),
                what: "key",
                reason: "keys are relative, '/'-separated and have no empty, '.' or '..' parts"
                    .to_string(),
            });
        }
        Ok(self.root.join(key))
    }

    async fn blocking<T, F>(f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce() -> StoreResult<T> + Send + 'static,
    {
        crate::task::blocking(f).await
    }
}

/// Writes `data` into a new temporary file next to `path` and returns the temporary's path.
fn write_temp(path: &Path, data: &[u8]) -> StoreResult<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    let mut temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(|e| StoreError::io(dir, e))?;
    temp.write_all(data).map_err(|e| StoreError::io(path, e))?;
    temp.as_file()
        .sync_data()
        .map_err(|e| StoreError::io(path, e))?;
    let (_, temp_path) = temp.keep().map_err(|e| StoreError::io(path, e.error))?;
    Ok(temp_path)
}

fn not_found_or_io(key: &str, path: &Path, e: std::io::Error) -> StoreError {
    if e.kind() == std::io::ErrorKind::NotFound {
        StoreError::NotFound {
            key: key.to_string(),
        }
    } else {
        StoreError::io(path, e)
    }
}

fn walk(root: &Path, dir: &Path, prefix: &str, out: &mut Vec<ObjectMeta>) -> StoreResult<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(TEMP_PREFIX) {
            continue;
        }
        let path = entry.path();
        let file_type = entry.file_type().map_err(|e| StoreError::io(&path, e))?;
        let Ok(rel) = path.strip_prefix(root) else {
            continue;
        };
        let key: String = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        if file_type.is_dir() {
            // Descend only where keys with the prefix can be.
            let as_dir = format!("{key}/");
            if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                walk(root, &path, prefix, out)?;
            }
        } else if key.starts_with(prefix) {
            let size = entry
                .metadata()
                .map_err(|e| StoreError::io(&path, e))?
                .len();
            out.push(ObjectMeta { key, size });
        }
    }
    Ok(())
}

#[async_trait]
impl Backend for LocalBackend {
    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let path = self.path(key)?;
        Self::blocking(move || {
            let temp = write_temp(&path, &data)?;
            std::fs::rename(&temp, &path).map_err(|e| {
                let _ = std::fs::remove_file(&temp);
                StoreError::io(&path, e)
            })
        })
        .await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> StoreResult<PutOutcome> {
        let path = self.path(key)?;
        Self::blocking(move || {
            if path.exists() {
                return Ok(PutOutcome::AlreadyExists);
            }
            let temp = write_temp(&path, &data)?;
            let linked = std::fs::hard_link(&temp, &path);
            let _ = std::fs::remove_file(&temp);
            match linked {
                Ok(()) => Ok(PutOutcome::Created),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    Ok(PutOutcome::AlreadyExists)
                }
                Err(e) => Err(StoreError::io(&path, e)),
            }
        })
        .await
    }

    async fn create(&self, key: &str, data: Bytes) -> StoreResult<PutOutcome> {
        // The hard link fails when the name exists: already exclusive.
        self.put_if_absent(key, data).await
    }

    async fn get(&self, key: &str) -> StoreResult<Bytes> {
        let path = self.path(key)?;
        let key = key.to_string();
        Self::blocking(move || {
            std::fs::read(&path)
                .map(Bytes::from)
                .map_err(|e| not_found_or_io(&key, &path, e))
        })
        .await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        let path = self.path(key)?;
        let key = key.to_string();
        Self::blocking(move || {
            let mut file =
                std::fs::File::open(&path).map_err(|e| not_found_or_io(&key, &path, e))?;
            let len = range.end.saturating_sub(range.start) as usize;
            let mut buf = vec![0u8; len];
            file.seek(SeekFrom::Start(range.start))
                .and_then(|_| file.read_exact(&mut buf))
                .map_err(|e| StoreError::io(&path, e))?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        let path = self.path(key)?;
        let key = key.to_string();
        Self::blocking(move || match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(Some(ObjectMeta {
                key,
                size: meta.len(),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(&path, e)),
        })
        .await
    }

    async fn copy(&self, from: &str, to: &str) -> StoreResult<()> {
        let src = self.path(from)?;
        let dst = self.path(to)?;
        let from = from.to_string();
        Self::blocking(move || {
            if !src.is_file() {
                return Err(StoreError::NotFound { key: from });
            }
            let dir = dst.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
            // Link under a temporary name, then rename over the target: atomic, and no copy
            // of the bytes when the file system supports hard links.
            let temp = tempfile::Builder::new()
                .prefix(TEMP_PREFIX)
                .make_in(dir, |temp| {
                    std::fs::hard_link(&src, temp).or_else(|_| std::fs::copy(&src, temp).map(drop))
                })
                .map_err(|e| StoreError::io(dir, e))?;
            temp.into_temp_path()
                .persist(&dst)
                .map_err(|e| StoreError::io(&dst, e.error))
        })
        .await
    }

    fn list(&self, prefix: &str) -> BoxStream<'_, StoreResult<ObjectMeta>> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        listed_at_once(async move {
            Self::blocking(move || {
                let mut out = Vec::new();
                walk(&root, &root, &prefix, &mut out)?;
                Ok(out)
            })
            .await
        })
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let path = self.path(key)?;
        Self::blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(&path, e)),
        })
        .await
    }
}
