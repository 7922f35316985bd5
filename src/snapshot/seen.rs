//! What the previous snapshot saw, so that the next one does not clean, serialize and hash
//! again the objects that did not change.
//!
//! The API server gives every write of an object a new `resourceVersion`, so an object
//! listed with the same uid and resourceVersion as last time has the same content: its
//! cleaned form, id and size (or its exclusion) are taken from here. Everything else goes
//! the full way. The file lives next to the local index and is a cache like it: a missing,
//! unreadable or outdated file only means a full read.
//!
//! It is outdated when the rules or this program changed, and after [`MAX_AGE`]: once a
//! week every object is read in full, so that what the server serves for an unchanged
//! object (new defaults after an upgrade) reaches the snapshots too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::rules::Rules;
use crate::kube::ResourceType;
use crate::store::ObjectId;

/// A full read at least this often.
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Bumped whenever cleaning, canonical serialization or the layout of this file changes.
const FORMAT: &str = "kube-autosave seen v4";

/// What became of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Kept { id: ObjectId, size: u32 },
    Excluded,
}

/// One object as last seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub outcome: Outcome,
}

/// The objects of one resource type, by [`object_key`].
pub type ResourceSeen = HashMap<String, Seen>;

/// `namespace/name`, or `name` for a cluster-scoped object.
pub fn object_key(namespace: Option<&str>, name: &str) -> String {
    crate::object_name::ObjectName::new(namespace, name).to_string()
}

/// The header: the file's first frame.
#[derive(Serialize, Deserialize)]
struct Header {
    fingerprint: String,
    /// Seconds since the epoch of the full read this file descends from.
    since: u64,
    /// The local index's [`holdings`](crate::store::cache::Cache::holdings) token when the
    /// snapshot that wrote the file began: while it is the same, every id here is still held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    holdings: Option<String>,
}

/// Where each resource type's frame is: `(offset, length)` by [`resource_key`].
type FrameIndex = HashMap<String, (u64, u64)>;

/// The file is a run of independent zstd frames, so that each resource type's objects are
/// read on their own when its lister asks, and written as soon as it is done: neither the
/// previous snapshot's objects nor this one's are ever all in memory. The header frame, one
/// frame per resource type (`["group/version/resource", [...]]`), the index frame
/// ([`FrameIndex`]), then 16 bytes: the header frame's length and the index frame's offset,
/// little-endian. A file cut short has no trailer, and is not read at all.
const TRAILER: u64 = 16;

/// The previous snapshot's file, open, and where its resource types are.
struct Previous {
    file: std::fs::File,
    index: Mutex<FrameIndex>,
}

/// This snapshot's file, written to `<path>.tmp` until [`SeenCache::save`] renames it.
#[derive(Default)]
struct Writer {
    out: Option<std::io::BufWriter<std::fs::File>>,
    offset: u64,
    header_len: u64,
    index: FrameIndex,
    /// A write failed: the file is not saved (the next snapshot reads in full).
    failed: bool,
}

/// The previous snapshot's objects (taken resource by resource by the listers), and what
/// this snapshot sees (handed back by them, and written out at once).
pub struct SeenCache {
    path: PathBuf,
    fingerprint: String,
    since: u64,
    previous: Option<Previous>,
    /// The previous file's holdings token, and this snapshot's.
    previous_holdings: Option<String>,
    holdings: Option<String>,
    current: Mutex<Writer>,
}

fn resource_key(rt: &ResourceType) -> String {
    format!("{}/{}/{}", rt.group, rt.version, rt.resource)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

type ReadResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

impl SeenCache {
    /// Opens the file at `path`; an absent, unreadable or outdated one gives an empty cache.
    /// Only its header and index are read here.
    pub fn open(path: &Path, rules: &Rules) -> SeenCache {
        let mut cache = SeenCache {
            path: path.to_path_buf(),
            fingerprint: fingerprint(rules),
            since: now(),
            previous: None,
            previous_holdings: None,
            holdings: None,
            current: Mutex::new(Writer::default()),
        };
        let Ok(file) = std::fs::File::open(path) else {
            return cache;
        };
        match open_previous(&file) {
            Ok((header, index)) => {
                let age = Duration::from_secs(cache.since.saturating_sub(header.since));
                if header.fingerprint == cache.fingerprint && age < MAX_AGE {
                    cache.since = header.since;
                    cache.previous_holdings = header.holdings;
                    cache.previous = Some(Previous {
                        file,
                        index: Mutex::new(index),
                    });
                } else {
                    tracing::info!("reading every object in full (rules, program or week changed)");
                }
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable seen-objects cache");
            }
        }
        cache
    }

    /// Says which [`holdings`](crate::store::cache::Cache::holdings) token the local index
    /// has now; it is written into the new file.
    pub fn holding(mut self, token: String) -> Self {
        self.holdings = Some(token);
        self
    }

    /// Whether every id of the previous file is certainly still in the local index (its
    /// token is the index's): then no id needs looking up before it is reused.
    pub fn ids_still_held(&self) -> bool {
        self.holdings.is_some() && self.holdings == self.previous_holdings
    }

    /// Whether a previous snapshot's objects are at hand (a usable file was found): without
    /// them, every object is read in full and none can be told changed or new.
    pub fn has_previous(&self) -> bool {
        self.previous.is_some()
    }

    /// The previous snapshot's objects of `rt` (each resource is taken once), read from the
    /// file now. A damaged frame gives nothing: those objects are read in full.
    pub fn take(&self, rt: &ResourceType) -> ResourceSeen {
        let Some(previous) = &self.previous else {
            return ResourceSeen::default();
        };
        let key = resource_key(rt);
        let Some((offset, len)) = previous
            .index
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key)
        else {
            return ResourceSeen::default();
        };
        let read = read_frame(&previous.file, offset, len).and_then(|json| {
            let (resource, objects): (String, Vec<Seen>) = serde_json::from_slice(&json)?;
            if resource != key {
                return Err(format!("the frame of {key} holds {resource}").into());
            }
            Ok(objects)
        });
        match read {
            Ok(objects) => objects
                .into_iter()
                .map(|s| (object_key(s.namespace.as_deref(), &s.name), s))
                .collect(),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), resource = %key, error = %e, "ignoring a damaged part of the seen-objects cache");
                ResourceSeen::default()
            }
        }
    }

    /// Writes what this snapshot saw of `rt` to the new file, and lets it go.
    pub fn record(&self, rt: &ResourceType, objects: Vec<Seen>) {
        let mut writer = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if writer.failed {
            return;
        }
        let key = resource_key(rt);
        let written = (|| -> std::io::Result<()> {
            if writer.out.is_none() {
                let header = Header {
                    fingerprint: self.fingerprint.clone(),
                    since: self.since,
                    holdings: self.holdings.clone(),
                };
                let file = std::fs::File::create(self.path.with_extension("tmp"))?;
                writer.out = Some(std::io::BufWriter::with_capacity(1 << 16, file));
                writer.header_len = writer.frame(&serde_json::to_vec(&header)?)?.1;
            }
            let frame = writer.frame(&serde_json::to_vec(&(&key, &objects))?)?;
            writer.index.insert(key.clone(), frame);
            Ok(())
        })();
        if let Err(e) = written {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the seen-objects cache");
            writer.failed = true;
        }
    }

    /// Finishes the new file and puts it in place of the previous one.
    pub fn save(self) {
        let writer = self.current.into_inner().unwrap_or_else(|e| e.into_inner());
        let temp = self.path.with_extension("tmp");
        if let Err(e) = writer.finish(&temp, &self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the seen-objects cache");
            let _ = std::fs::remove_file(&self.path);
            let _ = std::fs::remove_file(&temp);
        }
    }
}

impl Writer {
    /// Appends `json` as one compressed frame; returns where it is.
    fn frame(&mut self, json: &[u8]) -> std::io::Result<(u64, u64)> {
        use std::io::Write;
        // With a checksum: a flipped bit must not turn into another object's id.
        let mut compressor = zstd::bulk::Compressor::new(1)?;
        compressor.include_checksum(true)?;
        let compressed = compressor.compress(json)?;
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no file"))?;
        out.write_all(&compressed)?;
        let at = (self.offset, compressed.len() as u64);
        self.offset += compressed.len() as u64;
        Ok(at)
    }

    fn finish(mut self, temp: &Path, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        if self.failed {
            return Err(std::io::Error::other("an earlier write failed"));
        }
        if self.out.is_none() {
            // Nothing was recorded: no resource was listed.
            return Err(std::io::Error::other("nothing recorded"));
        }
        let index = std::mem::take(&mut self.index);
        let (index_offset, _) = self.frame(&serde_json::to_vec(&index)?)?;
        let mut out = self.out.take().expect("checked above");
        out.write_all(&self.header_len.to_le_bytes())?;
        out.write_all(&index_offset.to_le_bytes())?;
        out.into_inner().map_err(|e| e.into_error())?;
        std::fs::rename(temp, path)
    }
}

/// The header and the index of a file, or why they cannot be read.
fn open_previous(file: &std::fs::File) -> ReadResult<(Header, FrameIndex)> {
    let len = file.metadata()?.len();
    if len < TRAILER {
        return Err("too short".into());
    }
    let mut trailer = [0u8; TRAILER as usize];
    read_exact_at(file, &mut trailer, len - TRAILER)?;
    let header_len = u64::from_le_bytes(trailer[..8].try_into()?);
    let index_offset = u64::from_le_bytes(trailer[8..].try_into()?);
    if header_len > index_offset || index_offset > len - TRAILER {
        return Err("its trailer points outside the file".into());
    }
    let header: Header = serde_json::from_slice(&read_frame(file, 0, header_len)?)?;
    let index: FrameIndex = serde_json::from_slice(&read_frame(
        file,
        index_offset,
        len - TRAILER - index_offset,
    )?)?;
    if index
        .values()
        .any(|(offset, length)| offset.saturating_add(*length) > index_offset)
    {
        return Err("its index points outside the file".into());
    }
    Ok((header, index))
}

fn read_frame(file: &std::fs::File, offset: u64, len: u64) -> ReadResult<Vec<u8>> {
    let mut compressed = vec![0u8; usize::try_from(len)?];
    read_exact_at(file, &mut compressed, offset)?;
    Ok(zstd::stream::decode_all(&compressed[..])?)
}

fn read_exact_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

fn fingerprint(rules: &Rules) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(FORMAT.as_bytes());
    hasher.update(env!("CARGO_PKG_VERSION").as_bytes());
    hasher.update(&serde_json::to_vec(rules).unwrap_or_default());
    hasher.finalize().to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployments(version: &str) -> ResourceType {
        ResourceType {
            group: "apps".into(),
            version: version.into(),
            kind: "Deployment".into(),
            resource: "deployments".into(),
            namespaced: true,
        }
    }

    fn web() -> Seen {
        Seen {
            namespace: Some("prod".into()),
            name: "web".into(),
            uid: "d9b2".into(),
            resource_version: "42".into(),
            outcome: Outcome::Kept {
                id: ObjectId::of(b"web"),
                size: 3,
            },
        }
    }

    fn saved(dir: &Path, rules: &Rules) -> PathBuf {
        let path = dir.join("index.seen");
        let cache = SeenCache::open(&path, rules);
        cache.record(&deployments("v1"), vec![web()]);
        cache.save();
        path
    }

    /// The file's header and resource types, as written.
    /// The header and every resource type's objects, sorted by resource.
    fn contents(path: &Path) -> (Header, Vec<(String, Vec<Seen>)>) {
        let file = std::fs::File::open(path).unwrap();
        let (header, index) = open_previous(&file).unwrap();
        let mut resources: Vec<(String, Vec<Seen>)> = index
            .values()
            .map(|(offset, len)| {
                serde_json::from_slice(&read_frame(&file, *offset, *len).unwrap()).unwrap()
            })
            .collect();
        resources.sort_by(|a, b| a.0.cmp(&b.0));
        (header, resources)
    }

    /// A file with this header and these objects.
    fn write(path: &Path, header: &Header, resources: &[(String, Vec<Seen>)]) {
        let temp = path.with_extension("tmp");
        let mut writer = Writer {
            out: Some(std::io::BufWriter::new(
                std::fs::File::create(&temp).unwrap(),
            )),
            ..Writer::default()
        };
        writer.header_len = writer
            .frame(&serde_json::to_vec(header).unwrap())
            .unwrap()
            .1;
        for (key, objects) in resources {
            let frame = writer
                .frame(&serde_json::to_vec(&(key, objects)).unwrap())
                .unwrap();
            writer.index.insert(key.clone(), frame);
        }
        writer.finish(&temp, path).unwrap();
    }

    #[test]
    fn ids_are_known_held_only_under_the_same_holdings_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.seen");
        let cache = SeenCache::open(&path, &Rules::default()).holding("a".into());
        cache.record(&deployments("v1"), vec![web()]);
        cache.save();
        let open = |token: Option<&str>| {
            let cache = SeenCache::open(&path, &Rules::default());
            match token {
                Some(token) => cache.holding(token.into()),
                None => cache,
            }
        };
        assert!(open(Some("a")).ids_still_held());
        assert!(
            !open(Some("b")).ids_still_held(),
            "the index forgot something"
        );
        assert!(
            !open(None).ids_still_held(),
            "the index's token is not known"
        );
        // A file written without a token (an earlier build) is looked up id by id.
        let (mut header, resources) = contents(&path);
        header.holdings = None;
        write(&path, &header, &resources);
        assert!(!open(Some("a")).ids_still_held());
        assert!(open(Some("a")).has_previous());
    }

    #[test]
    fn each_resource_type_is_a_frame_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.seen");
        let cache = SeenCache::open(&path, &Rules::default());
        let api = Seen {
            name: "api".into(),
            ..web()
        };
        cache.record(&deployments("v1"), vec![web(), api.clone()]);
        cache.record(&deployments("v1beta1"), vec![]);
        cache.save();
        let (_, resources) = contents(&path);
        assert_eq!(resources.len(), 2, "a frame for each resource type");
        let cache = SeenCache::open(&path, &Rules::default());
        let seen = cache.take(&deployments("v1"));
        assert_eq!(seen.len(), 2);
        assert_eq!(seen.get(&object_key(Some("prod"), "api")), Some(&api));
    }

    #[test]
    fn what_one_snapshot_saw_the_next_one_finds_by_resource_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = saved(dir.path(), &Rules::default());
        let cache = SeenCache::open(&path, &Rules::default());
        // Another served version is another resource.
        assert!(cache.take(&deployments("v1beta1")).is_empty());
        let seen = cache.take(&deployments("v1"));
        assert_eq!(seen.get(&object_key(Some("prod"), "web")), Some(&web()));
        assert!(cache.take(&deployments("v1")).is_empty(), "taken once");
    }

    #[test]
    fn other_rules_an_old_file_or_a_damaged_one_mean_a_full_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = saved(dir.path(), &Rules::default());
        let other = Rules {
            keep_controller_owned: true,
            ..Rules::default()
        };
        assert!(
            SeenCache::open(&path, &other)
                .take(&deployments("v1"))
                .is_empty()
        );
        // Every rule counts, the cleaning ones too.
        let other = Rules {
            strip_generated_identity: false,
            ..Rules::default()
        };
        assert!(
            SeenCache::open(&path, &other)
                .take(&deployments("v1"))
                .is_empty()
        );

        let (mut header, resources) = contents(&path);
        header.since -= MAX_AGE.as_secs() + 1;
        write(&path, &header, &resources);
        assert!(
            SeenCache::open(&path, &Rules::default())
                .take(&deployments("v1"))
                .is_empty()
        );

        std::fs::write(&path, b"\x28\xb5\x2f\xfd garbage").unwrap();
        assert!(
            SeenCache::open(&path, &Rules::default())
                .take(&deployments("v1"))
                .is_empty()
        );

        // Cut short: without its trailer, nothing of it is trusted.
        let path = saved(dir.path(), &Rules::default());
        let whole = std::fs::read(&path).unwrap();
        std::fs::write(&path, &whole[..whole.len() - 3]).unwrap();
        assert!(
            SeenCache::open(&path, &Rules::default())
                .take(&deployments("v1"))
                .is_empty()
        );

        // One resource type's frame damaged: that one is read in full, the others not.
        let path = saved(dir.path(), &Rules::default());
        let (header, mut resources) = contents(&path);
        resources.push(("apps/v1beta1/deployments".into(), vec![web()]));
        write(&path, &header, &resources);
        let file = std::fs::File::open(&path).unwrap();
        let (_, index) = open_previous(&file).unwrap();
        let (offset, _) = index["apps/v1/deployments"];
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[offset as usize + 6] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let cache = SeenCache::open(&path, &Rules::default());
        assert!(cache.take(&deployments("v1")).is_empty());
        assert_eq!(cache.take(&deployments("v1beta1")).len(), 1);
    }

    #[test]
    fn the_week_is_counted_from_the_last_full_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = saved(dir.path(), &Rules::default());
        let (mut header, resources) = contents(&path);
        header.since -= 3600;
        let since = header.since;
        write(&path, &header, &resources);
        let cache = SeenCache::open(&path, &Rules::default());
        cache.record(&deployments("v1"), vec![web()]);
        cache.save();
        assert_eq!(contents(&path).0.since, since);
    }
}
