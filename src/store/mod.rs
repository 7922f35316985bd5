//! The content-addressed store: every distinct object is kept once, zstd-compressed in packs,
//! addressed by its BLAKE3 hash, in S3 or a local directory.
//!
//! Write order is an invariant: packs, then the index files that point into them (then, one
//! level up, manifests, then the plain layout). The local sled index is only a cache of the
//! remote index files: it may be deleted at any time and is rebuilt on open. An object the
//! cache knows is never uploaded again, so the cache is checked against the destination when
//! the store opens (and whenever [`Store::check_packs`] is called): the objects of packs that
//! are gone are forgotten and uploaded again by the next snapshot. Local copies of packs are
//! disposable: a damaged or missing one means a read from the destination. This module must
//! never delete anything at the destination outside a prune plan, and never record an object
//! locally before the index file that lists it is stored.

pub mod backend;
pub mod cache;
pub mod error;
pub mod exclusive;
pub mod id;
pub mod layout;
pub mod local;
pub mod local_packs;
pub mod memory;
pub mod pacer;
pub mod pack;
pub mod s3;
pub mod sealed;
pub mod uri;
pub mod wrappers;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

pub use backend::{Backend, BackendExt, DynBackend, ObjectMeta, PrefixBackend, PutOutcome};
pub use cache::Cache;
pub use error::{StoreError, StoreResult};
pub use id::{FileHash, IndexId, ObjectId, PackId};
pub use layout::{Folder, RemoteFile, SnapshotTime};
pub use local::LocalBackend;
pub use local_packs::LocalPacks;
pub use memory::MemoryBackend;
pub use pack::{IndexFile, IndexedPack, Location};
pub use s3::{S3Backend, S3Options, Sse};
pub use uri::Destination;

/// Tunables of the store's write path.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// A pack is sealed and uploaded once it holds this many compressed bytes.
    pub pack_size: usize,
    /// zstd level for objects (3 is zstd's default: fast, and most of the gain).
    pub compression_level: i32,
    /// Pack uploads running at once.
    pub uploads_in_flight: usize,
    /// An index file is written after this many packs (and at the end of every writer), so an
    /// interrupted long run keeps most of what it uploaded.
    pub index_every_packs: usize,
    /// The most bytes of local pack copies kept on disk; the least recently used go first.
    pub local_pack_cache_bytes: u64,
}

/// The default cap of the local pack copies: 1 GiB.
pub const DEFAULT_LOCAL_PACK_CACHE_BYTES: u64 = 1 << 30;

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            pack_size: 4 * 1024 * 1024,
            compression_level: 3,
            uploads_in_flight: 4,
            index_every_packs: 64,
            local_pack_cache_bytes: DEFAULT_LOCAL_PACK_CACHE_BYTES,
        }
    }
}

/// What a writer did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutStats {
    /// Objects handed to the writer.
    pub objects: u64,
    /// Objects the store did not hold before (each stored once).
    pub new_objects: u64,
    /// Uncompressed bytes of all objects handed in.
    pub raw_bytes: u64,
    /// Uncompressed bytes of the new objects.
    pub new_raw_bytes: u64,
    /// Compressed bytes of the new objects, as stored in packs.
    pub compressed_bytes: u64,
    pub packs_written: u64,
    pub index_files_written: u64,
    /// Requests sent to the backend.
    pub requests: u64,
    /// Bytes sent to the backend (packs and index files).
    pub uploaded_bytes: u64,
}

impl PutStats {
    pub fn add(&mut self, other: &PutStats) {
        self.objects += other.objects;
        self.new_objects += other.new_objects;
        self.raw_bytes += other.raw_bytes;
        self.new_raw_bytes += other.new_raw_bytes;
        self.compressed_bytes += other.compressed_bytes;
        self.packs_written += other.packs_written;
        self.index_files_written += other.index_files_written;
        self.requests += other.requests;
        self.uploaded_bytes += other.uploaded_bytes;
    }
}

/// What a sync of the local index with the remote index files did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncStats {
    pub index_files_loaded: usize,
    pub rebuilt: bool,
}

/// What a check of the local index against the packs at the destination found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackCheck {
    /// Packs at the destination.
    pub packs_listed: u64,
    /// Packs the local index knew that are not at the destination any more.
    pub packs_gone: u64,
    /// Objects of those packs the local index forgot: the next snapshot uploads them again.
    pub objects_forgotten: u64,
}

struct Inner {
    backend: DynBackend,
    cache: Cache,
    /// Local copies of packs this machine wrote or read, so that exporting a snapshot reads
    /// objects from disk instead of downloading packs again. Content-addressed, so never
    /// stale; checked on every read, so never trusted when damaged.
    local_packs: LocalPacks,
    /// The objects of the packs found gone, by pack, once asked for (an error path): cleared
    /// by every check.
    gone_objects: Mutex<Option<Arc<HashMap<ObjectId, PackId>>>>,
    /// Frames of local pack copies decompressed lately.
    frames: FrameCache,
    config: StoreConfig,
}

/// The last few frames decompressed from local pack copies. A frame holds about 128 KiB of
/// objects, and an exported file a few KiB: without it, the files that share a frame (read
/// one after another, in the manifest's order) would each decompress it again. Only reads
/// that may use local copies use it; every object taken from it is still checked against
/// its id.
struct FrameCache {
    /// The most recently used last.
    frames: Mutex<VecDeque<CachedFrame>>,
}

/// A decompressed frame, by its pack and its offset in the pack.
type CachedFrame = ((PackId, u64), Arc<Vec<u8>>);

impl FrameCache {
    /// 4 MiB of frames of [`pack::CHUNK_SIZE`].
    const FRAMES: usize = 32;

    fn new() -> Self {
        Self {
            frames: Mutex::new(VecDeque::with_capacity(Self::FRAMES)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<CachedFrame>> {
        self.frames.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, pack: &PackId, offset: u64) -> Option<Arc<Vec<u8>>> {
        let mut frames = self.lock();
        let at = frames
            .iter()
            .rposition(|((p, o), _)| *o == offset && p == pack)?;
        let entry = frames.remove(at)?;
        let frame = entry.1.clone();
        frames.push_back(entry);
        Some(frame)
    }

    fn insert(&self, pack: PackId, offset: u64, frame: Arc<Vec<u8>>) {
        let mut frames = self.lock();
        if frames.len() >= Self::FRAMES {
            frames.pop_front();
        }
        frames.push_back(((pack, offset), frame));
    }

    /// Drops the frames of `pack` (its local copy turned out damaged).
    fn forget(&self, pack: &PackId) {
        self.lock().retain(|((p, _), _)| p != pack);
    }
}

/// A handle on the store of one destination; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.inner.backend.describe())
            .field("cache", &self.inner.cache.path())
            .finish()
    }
}

/// The local index directory for a destination: one per destination under `cache_dir`, so two
/// destinations never share what they believe is stored.
pub fn cache_path(cache_dir: &Path, backend: &dyn Backend) -> PathBuf {
    let hash = blake3::hash(backend.describe().as_bytes());
    cache_dir.join(format!("index-{}", &hash.to_hex()[..16]))
}

impl Store {
    /// Opens the store at `backend`, with its local index under `cache_dir`, brings the
    /// local index up to date with the remote index files and checks it against the packs
    /// at the destination ([`Store::check_packs`]).
    pub async fn open(
        backend: DynBackend,
        cache_dir: &Path,
        config: StoreConfig,
    ) -> StoreResult<Self> {
        Self::open_with(backend, cache_dir, config, false).await
    }

    /// Like [`Store::open`], but an unreachable destination is not an error: the store works
    /// from its local index until the destination is back.
    pub async fn open_tolerating_outage(
        backend: DynBackend,
        cache_dir: &Path,
        config: StoreConfig,
    ) -> StoreResult<Self> {
        Self::open_with(backend, cache_dir, config, true).await
    }

    async fn open_with(
        backend: DynBackend,
        cache_dir: &Path,
        config: StoreConfig,
        tolerate_outage: bool,
    ) -> StoreResult<Self> {
        let path = cache_path(cache_dir, backend.as_ref());
        let packs_dir = path.with_extension("packs");
        let cap = config.local_pack_cache_bytes;
        // The local index first: its lock says this process owns the pack copies too.
        let cache = crate::task::blocking(move || Cache::open(&path)).await?;
        let local_packs = crate::task::blocking(move || LocalPacks::open(&packs_dir, cap)).await?;
        let store = Self {
            inner: Arc::new(Inner {
                backend,
                cache,
                local_packs,
                gone_objects: Mutex::new(None),
                frames: FrameCache::new(),
                config,
            }),
        };
        match store.check_packs().await {
            Ok(_) => Ok(store),
            // The daemon stages snapshots while the destination is away; its local index is
            // then the best knowledge there is, and it syncs at the next open.
            Err(e) if tolerate_outage && e.is_outage() => {
                tracing::warn!(error = %e, "cannot check the local index against the destination; using it as it is");
                Ok(store)
            }
            Err(e) => Err(e),
        }
    }

    pub fn backend(&self) -> &DynBackend {
        &self.inner.backend
    }

    pub fn cache(&self) -> &Cache {
        &self.inner.cache
    }

    /// A file of this destination's local state, next to its local index
    /// (`index-<hash>.<extension>`).
    pub fn local_file(&self, extension: &str) -> PathBuf {
        self.inner.cache.path().with_extension(extension)
    }

    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// The local pack copies.
    pub fn local_packs(&self) -> &LocalPacks {
        &self.inner.local_packs
    }

    /// Checks the local index against the destination: loads the index files it does not
    /// know yet, lists the packs (one LIST request per 1,000 packs) and forgets the objects
    /// of every pack that is gone, so that the next snapshot uploads them again instead of
    /// referring to objects nobody can restore. The daemon calls this before every snapshot;
    /// opening a store does it too.
    pub async fn check_packs(&self) -> StoreResult<PackCheck> {
        let (_, check) = self.sync(true).await?;
        Ok(check.unwrap_or_default())
    }

    /// Loads the remote index files the local index does not know yet. When one it knows has
    /// gone (pruned, or the destination was wiped), the local index is rebuilt from scratch.
    /// Whenever index files are loaded, the packs are checked too.
    pub async fn sync_index(&self) -> StoreResult<SyncStats> {
        Ok(self.sync(false).await?.0)
    }

    /// Forgets the local index and rebuilds it from the remote index files.
    pub async fn rebuild_index(&self) -> StoreResult<SyncStats> {
        self.inner.cache.clear_store_entries()?;
        let (mut stats, _) = self.sync(true).await?;
        stats.rebuilt = true;
        Ok(stats)
    }

    async fn sync(&self, check: bool) -> StoreResult<(SyncStats, Option<PackCheck>)> {
        // Index files first, then packs: a writer stores packs before the index file that
        // lists them, so every pack of a listed index file is in the pack listing unless it
        // is gone.
        let remote = self.remote_index_files().await?;
        let known = self.inner.cache.index_files()?;
        let remote_set: HashSet<IndexId> = remote.iter().copied().collect();
        let mut stats = SyncStats::default();
        if known.iter().any(|id| !remote_set.contains(id)) {
            tracing::info!("index files were removed from the store; rebuilding the local index");
            self.inner.cache.clear_store_entries()?;
            stats.rebuilt = true;
        }
        let mut new = Vec::new();
        for id in remote {
            if !self.inner.cache.knows_index_file(&id)? {
                new.push(id);
            }
        }
        if !check && new.is_empty() {
            return Ok((stats, None));
        }
        let listed = self.remote_packs().await?;
        for id in new {
            self.load_index_file(&id, &listed).await?;
            stats.index_files_loaded += 1;
        }
        let check = self.forget_gone_packs(listed).await?;
        Ok((stats, Some(check)))
    }

    async fn remote_index_files(&self) -> StoreResult<Vec<IndexId>> {
        let folder = Folder::Index;
        let listed = self.inner.backend.list_all(&folder.prefix()).await?;
        Ok(listed
            .iter()
            .filter_map(|m| folder.name_in(&m.key))
            .filter_map(|name| name.parse().ok())
            .collect())
    }

    async fn remote_packs(&self) -> StoreResult<HashSet<PackId>> {
        let folder = Folder::Packs;
        let mut listed = HashSet::new();
        let mut stream = self.inner.backend.list(&folder.prefix());
        while let Some(meta) = stream.try_next().await? {
            if let Some(pack) = folder.name_in(&meta.key).and_then(|n| n.parse().ok()) {
                listed.insert(pack);
            }
        }
        Ok(listed)
    }

    async fn forget_gone_packs(&self, listed: HashSet<PackId>) -> StoreResult<PackCheck> {
        let packs_listed = listed.len() as u64;
        let this = self.clone();
        let (gone, forgotten) =
            crate::task::blocking(move || this.inner.cache.forget_gone_packs(&listed)).await?;
        *self
            .inner
            .gone_objects
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        for pack in &gone {
            // Nothing refers to the copy any more; the space is better used.
            self.inner.local_packs.remove(pack);
        }
        if !gone.is_empty() {
            tracing::info!(
                packs = forgotten.packs,
                objects = forgotten.objects,
                "packs the local index knew are gone from the destination; their objects will \
                 be uploaded again"
            );
            self.inner.cache.flush().await?;
        }
        Ok(PackCheck {
            packs_listed,
            packs_gone: forgotten.packs,
            objects_forgotten: forgotten.objects,
        })
    }

    async fn load_index_file(&self, id: &IndexId, listed: &HashSet<PackId>) -> StoreResult<()> {
        let key = RemoteFile::Index(id).key();
        let bytes = self.inner.backend.get(&key).await?;
        let index = IndexFile::decode(&key, id, &bytes)?;
        self.inner
            .cache
            .insert_listed_index_file(id, &index, listed)
    }

    /// A writer that stores objects new to the store. Call [`StoreWriter::finish`] at the
    /// end: until then, what it wrote is not recorded as stored.
    pub fn writer(&self) -> StoreResult<StoreWriter> {
        StoreWriter::new(self.clone())
    }

    /// Stores a stream of objects; returns each object's id, in order, and what was done.
    pub async fn put<S>(&self, objects: S) -> StoreResult<(Vec<ObjectId>, PutStats)>
    where
        S: Stream<Item = Bytes>,
    {
        let mut writer = self.writer()?;
        let mut ids = Vec::new();
        let mut objects = std::pin::pin!(objects);
        while let Some(object) = objects.next().await {
            ids.push(writer.add(&object).await?);
        }
        Ok((ids, writer.finish().await?))
    }

    /// Whether the store holds `id` (according to the local index).
    pub fn contains(&self, id: &ObjectId) -> StoreResult<bool> {
        self.inner.cache.contains(id)
    }

    pub async fn location(&self, id: &ObjectId) -> StoreResult<Location> {
        if let Some(location) = self.inner.cache.location(id)? {
            return Ok(location);
        }
        // Another writer may have stored it since we opened.
        self.sync_index().await?;
        if let Some(location) = self.inner.cache.location(id)? {
            return Ok(location);
        }
        // Say so when it was lost with a pack, rather than never stored.
        match self.gone_objects().await?.get(id) {
            Some(pack) => Err(StoreError::Corrupt {
                object: *id,
                pack: *pack,
                reason: format!("pack {} is missing", RemoteFile::Pack(pack).key()),
            }),
            None => Err(StoreError::MissingObject(*id)),
        }
    }

    async fn gone_objects(&self) -> StoreResult<Arc<HashMap<ObjectId, PackId>>> {
        if let Some(known) = self
            .inner
            .gone_objects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Ok(known);
        }
        let this = self.clone();
        let found = Arc::new(crate::task::blocking(move || this.inner.cache.gone_objects()).await?);
        *self
            .inner
            .gone_objects
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(found.clone());
        Ok(found)
    }

    /// The original bytes of `id`, checked against the id.
    pub async fn get(&self, id: &ObjectId) -> StoreResult<Bytes> {
        let location = self.location(id).await?;
        let key = RemoteFile::Pack(&location.pack).key();
        let stored = match self.inner.backend.get_range(&key, location.frame()).await {
            Ok(stored) => stored,
            Err(StoreError::NotFound { .. }) => {
                return Err(StoreError::Corrupt {
                    object: *id,
                    pack: location.pack,
                    reason: format!("pack {key} is missing"),
                });
            }
            Err(e) => return Err(e),
        };
        pack::open_blob(id, &location, &stored)
    }

    /// Reads many objects, fetching each pack at most once; yields `(id, bytes)` in pack
    /// order. Every object is checked against its id.
    pub fn get_many(
        &self,
        ids: Vec<ObjectId>,
    ) -> impl Stream<Item = StoreResult<(ObjectId, Bytes)>> + '_ {
        self.read_many(ids, PackSource::LocalCopyFirst)
    }

    /// Like [`Store::get_many`], but always reads the packs from the destination, never from
    /// the local copies: what `verify` needs to check what is really stored.
    pub fn get_many_remote(
        &self,
        ids: Vec<ObjectId>,
    ) -> impl Stream<Item = StoreResult<(ObjectId, Bytes)>> + '_ {
        self.read_many(ids, PackSource::Destination)
    }

    /// [`Store::get_many`] or [`Store::get_many_remote`], as `source` says.
    pub fn read_many(
        &self,
        ids: Vec<ObjectId>,
        source: PackSource,
    ) -> impl Stream<Item = StoreResult<(ObjectId, Bytes)>> + '_ {
        futures::stream::once(async move {
            let mut by_pack: std::collections::BTreeMap<PackId, Vec<(ObjectId, Location)>> =
                Default::default();
            for id in ids {
                let location = self.location(&id).await?;
                by_pack
                    .entry(location.pack)
                    .or_default()
                    .push((id, location));
            }
            Ok::<_, StoreError>(futures::stream::iter(by_pack).map(move |(pack, wanted)| {
                let this = self.clone();
                async move { this.read_from_pack(pack, wanted, source).await }
            }))
        })
        .map_ok(|packs| {
            packs
                .buffered(4)
                .map_ok(|objects| futures::stream::iter(objects.into_iter().map(Ok)))
                .try_flatten()
        })
        .try_flatten()
    }

    async fn read_from_pack(
        &self,
        pack: PackId,
        wanted: Vec<(ObjectId, Location)>,
        source: PackSource,
    ) -> StoreResult<Vec<(ObjectId, Bytes)>> {
        if source == PackSource::LocalCopyFirst {
            match self.read_local_copy(pack, wanted.clone()).await {
                Some(Ok(objects)) => return Ok(objects),
                Some(Err(e)) => {
                    // A local copy is disposable: a damaged one must never block a read.
                    tracing::warn!(
                        pack = %pack,
                        error = %e,
                        "the local copy of a pack is damaged; deleting it and reading the pack \
                         from the destination"
                    );
                    self.inner.frames.forget(&pack);
                    self.inner.local_packs.remove(&pack);
                }
                None => {}
            }
        }
        let key = RemoteFile::Pack(&pack).key();
        let data = match self.inner.backend.get(&key).await {
            Ok(data) => data,
            Err(StoreError::NotFound { .. }) => {
                return Err(StoreError::Corrupt {
                    object: wanted[0].0,
                    pack,
                    reason: format!("pack {key} is missing"),
                });
            }
            Err(e) => return Err(e),
        };
        // Keep no local copy of a damaged pack; `extract` reports the objects it damages.
        if source == PackSource::LocalCopyFirst && PackId::of(&data) == pack {
            self.save_local_copy(&pack, &data).await;
        }
        extract(&data, wanted)
    }

    /// The wanted objects from the local copy of `pack`, or from its frames decompressed
    /// lately; `None` when there is no copy.
    async fn read_local_copy(
        &self,
        pack: PackId,
        wanted: Vec<(ObjectId, Location)>,
    ) -> Option<StoreResult<Vec<(ObjectId, Bytes)>>> {
        // When every frame is at hand, nothing is read from disk: no file opened, no
        // blocking task. (A frame missing stops this at once, with an error ignored.)
        let frames = &self.inner.frames;
        let mut at_hand = true;
        let read = by_frame(wanted.clone(), |id, location| {
            let frame = frames.get(&pack, location.offset);
            at_hand &= frame.is_some();
            frame.ok_or(StoreError::MissingObject(*id))
        });
        if at_hand {
            return Some(read);
        }
        // Held open until read: eviction leaves it alone, and a copy deleted meanwhile stays
        // readable through the open file.
        let copy = self.inner.local_packs.open_copy(&pack)?;
        let this = self.clone();
        let read = crate::task::blocking(move || {
            use std::os::unix::fs::FileExt;
            let frames = &this.inner.frames;
            by_frame(wanted, |id, location| {
                if let Some(frame) = frames.get(&pack, location.offset) {
                    return Ok(frame);
                }
                let mut stored = vec![0u8; location.length as usize];
                copy.file
                    .read_exact_at(&mut stored, location.offset)
                    .map_err(|e| StoreError::io(&copy.path, e))?;
                let frame = Arc::new(pack::open_frame(id, location, &stored)?);
                frames.insert(pack, location.offset, frame.clone());
                Ok(frame)
            })
        })
        .await;
        Some(read)
    }

    /// Saves a local copy of a pack read from or written to the destination. A copy only
    /// saves a download later, so failing to save one is logged, not returned.
    async fn save_local_copy(&self, pack: &PackId, data: &Bytes) {
        let (this, pack, data) = (self.clone(), *pack, data.clone());
        let saved = crate::task::blocking(move || this.inner.local_packs.save(&pack, &data)).await;
        if let Err(e) = saved {
            tracing::warn!(pack = %pack, error = %e, "cannot save a local copy of a pack");
        }
    }
}

/// Where reads of objects take their packs from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackSource {
    /// The local copy when there is a good one, else the destination (and a copy is kept).
    LocalCopyFirst,
    /// The destination only: what `verify` checks.
    Destination,
}

/// The wanted objects out of a whole pack's bytes, each checked against its id.
fn extract(data: &[u8], wanted: Vec<(ObjectId, Location)>) -> StoreResult<Vec<(ObjectId, Bytes)>> {
    by_frame(wanted, |id, location| {
        let start = location.offset as usize;
        let stored = data
            .get(start..start + location.length as usize)
            .unwrap_or_default();
        pack::open_frame(id, location, stored).map(Arc::new)
    })
}

/// Reads the wanted objects, decompressing each frame once however many of them it holds.
fn by_frame(
    mut wanted: Vec<(ObjectId, Location)>,
    mut open: impl FnMut(&ObjectId, &Location) -> StoreResult<Arc<Vec<u8>>>,
) -> StoreResult<Vec<(ObjectId, Bytes)>> {
    wanted.sort_by_key(|(_, location)| (location.offset, location.raw_offset));
    let mut out = Vec::with_capacity(wanted.len());
    let mut current: Option<(u64, Arc<Vec<u8>>)> = None;
    for (id, location) in wanted {
        let frame = match &current {
            Some((offset, frame)) if *offset == location.offset => frame,
            _ => {
                let frame = open(&id, &location)?;
                &current.insert((location.offset, frame)).1
            }
        };
        out.push((id, pack::blob_from_frame(&id, &location, frame)?));
    }
    Ok(out)
}

/// Stores objects new to the store: compresses them into packs, uploads sealed packs in the
/// background, and writes an index file for them before recording them in the local index.
pub struct StoreWriter {
    store: Store,
    builder: pack::PackBuilder,
    /// Objects added by this writer that the local index does not list yet.
    pending: HashSet<ObjectId>,
    uploads: JoinSet<StoreResult<(IndexedPack, u64)>>,
    /// Uploaded packs waiting for their index file.
    unindexed: Vec<IndexedPack>,
    stats: PutStats,
}

impl StoreWriter {
    fn new(store: Store) -> StoreResult<Self> {
        let builder = pack::PackBuilder::new(store.inner.config.compression_level)?;
        Ok(Self {
            store,
            builder,
            pending: HashSet::new(),
            uploads: JoinSet::new(),
            unindexed: Vec::new(),
            stats: PutStats::default(),
        })
    }

    /// Adds one object and returns its id. A known object costs a hash and a lookup.
    pub async fn add(&mut self, object: &[u8]) -> StoreResult<ObjectId> {
        let id = ObjectId::of(object);
        self.add_with_id(id, object).await?;
        Ok(id)
    }

    /// Whether the store holds `id` or this writer has it already: such an object is not
    /// added again, so a caller that must prepare an object (seal it) can skip the work.
    pub fn knows(&self, id: &ObjectId) -> StoreResult<bool> {
        Ok(self.pending.contains(id) || self.store.inner.cache.contains(id)?)
    }

    /// Adds an object whose id the caller already computed: `ObjectId::of(object)`, or for
    /// a sealed object the keyed id its frame is made for (`sealed::frame`).
    pub async fn add_with_id(&mut self, id: ObjectId, object: &[u8]) -> StoreResult<bool> {
        self.stats.objects += 1;
        self.stats.raw_bytes += object.len() as u64;
        if self.pending.contains(&id) || self.store.inner.cache.contains(&id)? {
            return Ok(false);
        }
        self.builder.add(id, object)?;
        self.pending.insert(id);
        self.stats.new_objects += 1;
        self.stats.new_raw_bytes += object.len() as u64;
        if self.builder.len() >= self.store.inner.config.pack_size {
            self.seal_and_upload().await?;
        }
        Ok(true)
    }

    pub fn stats(&self) -> PutStats {
        self.stats
    }

    async fn seal_and_upload(&mut self) -> StoreResult<()> {
        if self.builder.is_empty() {
            return Ok(());
        }
        while self.uploads.len() >= self.store.inner.config.uploads_in_flight.max(1) {
            self.join_one().await?;
        }
        let sealed = self.builder.seal()?;
        self.stats.compressed_bytes += sealed.data.len() as u64;
        let backend = self.store.inner.backend.clone();
        let store = self.store.clone();
        self.uploads.spawn(async move {
            store.save_local_copy(&sealed.id, &sealed.data).await;
            let key = RemoteFile::Pack(&sealed.id).key();
            let size = sealed.data.len() as u64;
            backend.put_if_absent(&key, sealed.data.clone()).await?;
            Ok((sealed.indexed(), size))
        });
        Ok(())
    }

    async fn join_one(&mut self) -> StoreResult<()> {
        let Some(joined) = self.uploads.join_next().await else {
            return Ok(());
        };
        let (indexed, size) = crate::task::joined(joined)?;
        self.stats.packs_written += 1;
        self.stats.requests += 1;
        self.stats.uploaded_bytes += size;
        self.unindexed.push(indexed);
        if self.unindexed.len() >= self.store.inner.config.index_every_packs {
            self.write_index().await?;
        }
        Ok(())
    }

    async fn write_index(&mut self) -> StoreResult<()> {
        if self.unindexed.is_empty() {
            return Ok(());
        }
        let index = IndexFile::new(std::mem::take(&mut self.unindexed));
        let (id, bytes) = index.encode()?;
        let size = bytes.len() as u64;
        self.store
            .inner
            .backend
            .put_if_absent(&RemoteFile::Index(&id).key(), bytes)
            .await?;
        self.stats.index_files_written += 1;
        self.stats.requests += 1;
        self.stats.uploaded_bytes += size;
        // Uploaded by this writer: whatever an earlier check found, these packs are there.
        self.store.inner.cache.insert_index_file(&id, &index)?;
        for pack in &index.packs {
            for blob in &pack.blobs {
                self.pending.remove(&blob.id);
            }
        }
        Ok(())
    }

    /// Uploads what is left, writes the last index file and records everything as stored.
    pub async fn finish(mut self) -> StoreResult<PutStats> {
        self.seal_and_upload().await?;
        while !self.uploads.is_empty() {
            self.join_one().await?;
        }
        self.write_index().await?;
        self.store.inner.cache.flush().await?;
        Ok(self.stats)
    }
}
