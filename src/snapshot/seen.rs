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
const FORMAT: &str = "kube-autosave seen v3";

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

/// The first line of the file. Each further line is one resource type's objects:
/// `["group/version/resource", [...]]`.
#[derive(Serialize, Deserialize)]
struct Header {
    fingerprint: String,
    /// Seconds since the epoch of the full read this file descends from.
    since: u64,
}

/// The previous snapshot's objects (taken resource by resource by the listers), and what
/// this snapshot sees (handed back by them).
pub struct SeenCache {
    path: PathBuf,
    fingerprint: String,
    since: u64,
    previous: Mutex<HashMap<String, ResourceSeen>>,
    current: Mutex<Vec<(String, Vec<Seen>)>>,
}

fn resource_key(rt: &ResourceType) -> String {
    format!("{}/{}/{}", rt.group, rt.version, rt.resource)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl SeenCache {
    /// Opens the file at `path`; an absent, unreadable or outdated one gives an empty cache.
    pub fn open(path: &Path, rules: &Rules) -> SeenCache {
        let fingerprint = fingerprint(rules);
        let mut cache = SeenCache {
            path: path.to_path_buf(),
            fingerprint,
            since: now(),
            previous: Mutex::new(HashMap::new()),
            current: Mutex::new(Vec::new()),
        };
        let mut previous = HashMap::new();
        let up_to_date = |header: &Header| {
            let age = Duration::from_secs(cache.since.saturating_sub(header.since));
            let up_to_date = header.fingerprint == cache.fingerprint && age < MAX_AGE;
            if !up_to_date {
                tracing::info!("reading every object in full (rules, program or week changed)");
            }
            up_to_date
        };
        let read = read(path, up_to_date, |resource, objects| {
            let by_name = objects
                .into_iter()
                .map(|s| (object_key(s.namespace.as_deref(), &s.name), s))
                .collect();
            previous.insert(resource, by_name);
        });
        if let Some(header) = read {
            cache.since = header.since;
            cache.previous = Mutex::new(previous);
        }
        cache
    }

    /// The previous snapshot's objects of `rt` (each resource is taken once).
    pub fn take(&self, rt: &ResourceType) -> ResourceSeen {
        self.previous
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&resource_key(rt))
            .unwrap_or_default()
    }

    /// What this snapshot saw of `rt`.
    pub fn record(&self, rt: &ResourceType, objects: Vec<Seen>) {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((resource_key(rt), objects));
    }

    /// Writes what this snapshot saw, for the next one. Failing to write costs the next
    /// snapshot a full read, nothing else, so it is logged, not returned.
    pub fn save(self) {
        let mut resources = self.current.into_inner().unwrap_or_else(|e| e.into_inner());
        resources.sort_by(|a, b| a.0.cmp(&b.0));
        let header = Header {
            fingerprint: self.fingerprint,
            since: self.since,
        };
        if let Err(e) = write(&self.path, &header, &resources) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the seen-objects cache");
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn fingerprint(rules: &Rules) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(FORMAT.as_bytes());
    hasher.update(env!("CARGO_PKG_VERSION").as_bytes());
    hasher.update(&serde_json::to_vec(rules).unwrap_or_default());
    hasher.finalize().to_hex().to_string()
}

/// Reads the file a line at a time through the decompressor: with a million objects its
/// JSON is a few hundred MiB, of which one resource type's line is in memory at once. Hands
/// each resource type's objects to `each` if `wanted` takes the header; returns the header
/// of a file read to its end, `None` for one that is absent, unwanted or unreadable.
fn read(
    path: &Path,
    wanted: impl FnOnce(&Header) -> bool,
    each: impl FnMut(String, Vec<Seen>),
) -> Option<Header> {
    let file = std::fs::File::open(path).ok()?;
    match read_lines(file, wanted, each) {
        Ok(header) => header,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable seen-objects cache");
            None
        }
    }
}

fn read_lines(
    file: std::fs::File,
    wanted: impl FnOnce(&Header) -> bool,
    mut each: impl FnMut(String, Vec<Seen>),
) -> Result<Option<Header>, Box<dyn std::error::Error>> {
    use std::io::BufRead;
    let mut lines = std::io::BufReader::with_capacity(1 << 16, zstd::stream::Decoder::new(file)?);
    let mut line = Vec::new();
    lines.read_until(b'\n', &mut line)?;
    let header: Header = serde_json::from_slice(&line)?;
    if !wanted(&header) {
        return Ok(None);
    }
    loop {
        line.clear();
        if lines.read_until(b'\n', &mut line)? == 0 {
            return Ok(Some(header));
        }
        let (resource, objects) = serde_json::from_slice(&line)?;
        each(resource, objects);
    }
}

fn write(path: &Path, header: &Header, resources: &[(String, Vec<Seen>)]) -> std::io::Result<()> {
    use std::io::Write;
    let temp = path.with_extension("tmp");
    let encoder = zstd::stream::Encoder::new(std::fs::File::create(&temp)?, 1)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, encoder);
    serde_json::to_writer(&mut out, header)?;
    for resource in resources {
        out.write_all(b"\n")?;
        serde_json::to_writer(&mut out, resource)?;
    }
    let encoder = out.into_inner().map_err(|e| e.into_error())?;
    encoder.finish()?;
    std::fs::rename(&temp, path)
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
    fn contents(path: &Path) -> (Header, Vec<(String, Vec<Seen>)>) {
        let mut resources = Vec::new();
        let header = read(path, |_| true, |r, o| resources.push((r, o))).unwrap();
        (header, resources)
    }

    #[test]
    fn each_resource_type_is_a_line_of_its_own() {
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
        let text = zstd::decode_all(std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(
            text.split(|b| *b == b'\n').count(),
            3,
            "a header and two lines"
        );

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
        write(&path, &header, &resources).unwrap();
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

        // Cut short in the middle of a resource type's line: nothing of it is trusted.
        let path = saved(dir.path(), &Rules::default());
        let (header, _) = contents(&path);
        let mut lines = serde_json::to_vec(&header).unwrap();
        lines.extend_from_slice(b"\n[\"apps/v1/deployments\",[{\"name\":\"web\"");
        std::fs::write(&path, zstd::encode_all(&lines[..], 1).unwrap()).unwrap();
        assert!(
            SeenCache::open(&path, &Rules::default())
                .take(&deployments("v1"))
                .is_empty()
        );
    }

    #[test]
    fn the_week_is_counted_from_the_last_full_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = saved(dir.path(), &Rules::default());
        let (mut header, resources) = contents(&path);
        header.since -= 3600;
        let since = header.since;
        write(&path, &header, &resources).unwrap();
        let cache = SeenCache::open(&path, &Rules::default());
        cache.record(&deployments("v1"), vec![web()]);
        cache.save();
        assert_eq!(contents(&path).0.since, since);
    }
}
