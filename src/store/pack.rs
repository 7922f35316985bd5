//! Packs and index files, the two immutable file formats of the store.
//!
//! A pack is a sequence of zstd frames named by the hash of its bytes. Each frame holds a
//! chunk of consecutive objects (about 128 KiB before compression): Kubernetes objects are
//! small and alike, so compressing them together is several times better than one by one,
//! while reading one object still decompresses only its chunk. An index file says, for a set of packs, which object sits at which offset; it is
//! zstd-compressed JSON, also named by its hash. Packs are written before the index files
//! that point into them, so an index entry never points at a pack that is not stored.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::error::{StoreError, StoreResult};
use super::id::{IndexId, ObjectId, PackId};

/// Where one object lives: the frame of a pack that holds it (byte range `offset`,
/// `length`), and its place in the frame once decompressed (`raw_offset`, `raw_length`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub pack: PackId,
    pub offset: u64,
    pub length: u32,
    pub raw_offset: u32,
    pub raw_length: u32,
}

impl Location {
    pub const ENCODED_LEN: usize = 32 + 8 + 4 + 4 + 4;

    /// The fixed 52-byte form kept in the local index.
    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[..32].copy_from_slice(self.pack.as_bytes());
        out[32..40].copy_from_slice(&self.offset.to_le_bytes());
        out[40..44].copy_from_slice(&self.length.to_le_bytes());
        out[44..48].copy_from_slice(&self.raw_length.to_le_bytes());
        out[48..52].copy_from_slice(&self.raw_offset.to_le_bytes());
        out
    }

    /// The byte range of the frame in its pack.
    pub fn frame(&self) -> std::ops::Range<u64> {
        self.offset..self.offset + u64::from(self.length)
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::ENCODED_LEN {
            return None;
        }
        Some(Self {
            pack: PackId::from_slice(&bytes[..32])?,
            offset: u64::from_le_bytes(bytes[32..40].try_into().ok()?),
            length: u32::from_le_bytes(bytes[40..44].try_into().ok()?),
            raw_length: u32::from_le_bytes(bytes[44..48].try_into().ok()?),
            raw_offset: u32::from_le_bytes(bytes[48..52].try_into().ok()?),
        })
    }
}

/// One object's entry in an index file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedBlob {
    pub id: ObjectId,
    /// The frame's place in the pack.
    pub offset: u64,
    pub length: u32,
    /// The object's place in the decompressed frame.
    #[serde(default)]
    pub raw_offset: u32,
    pub raw_length: u32,
}

/// The entries of one pack in an index file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedPack {
    pub id: PackId,
    pub size: u64,
    pub blobs: Vec<IndexedBlob>,
}

impl IndexedPack {
    pub fn locations(&self) -> impl Iterator<Item = (ObjectId, Location)> + '_ {
        self.blobs.iter().map(|b| {
            (
                b.id,
                Location {
                    pack: self.id,
                    offset: b.offset,
                    length: b.length,
                    raw_offset: b.raw_offset,
                    raw_length: b.raw_length,
                },
            )
        })
    }
}

/// An index file: the entries of the packs one writer stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexFile {
    pub version: u32,
    pub packs: Vec<IndexedPack>,
}

const INDEX_VERSION: u32 = 1;

impl IndexFile {
    pub fn new(packs: Vec<IndexedPack>) -> Self {
        Self {
            version: INDEX_VERSION,
            packs,
        }
    }

    /// The stored form and its id.
    pub fn encode(&self) -> StoreResult<(IndexId, Bytes)> {
        let json = serde_json::to_vec(self).map_err(|e| StoreError::Malformed {
            key: "index file".to_string(),
            what: "index file",
            reason: e.to_string(),
        })?;
        let compressed = zstd::bulk::compress(&json, 3).map_err(|e| StoreError::Malformed {
            key: "index file".to_string(),
            what: "index file",
            reason: e.to_string(),
        })?;
        Ok((IndexId::of(&compressed), Bytes::from(compressed)))
    }

    /// Reads an index file stored under `key`, checking it against its id.
    pub fn decode(key: &str, id: &IndexId, bytes: &[u8]) -> StoreResult<Self> {
        let malformed = |reason: String| StoreError::Malformed {
            key: key.to_string(),
            what: "index file",
            reason,
        };
        if IndexId::of(bytes) != *id {
            return Err(malformed("its content does not match its name".to_string()));
        }
        let json = zstd::stream::decode_all(bytes).map_err(|e| malformed(e.to_string()))?;
        let index: IndexFile =
            serde_json::from_slice(&json).map_err(|e| malformed(e.to_string()))?;
        if index.version != INDEX_VERSION {
            return Err(malformed(format!(
                "version {} is not supported (this build reads version {INDEX_VERSION})",
                index.version
            )));
        }
        Ok(index)
    }
}

/// Raw bytes of objects compressed together in one frame.
pub const CHUNK_SIZE: usize = 128 * 1024;

/// Builds one pack in memory: objects are collected into chunks, each chunk compressed into
/// one frame, frames appended.
pub struct PackBuilder {
    compressor: zstd::bulk::Compressor<'static>,
    data: Vec<u8>,
    blobs: Vec<IndexedBlob>,
    chunk: Vec<u8>,
    /// Objects of the open chunk: (id, offset in the chunk, length).
    chunk_blobs: Vec<(ObjectId, u32, u32)>,
}

/// A finished pack, ready to upload.
pub struct SealedPack {
    pub id: PackId,
    pub data: Bytes,
    pub blobs: Vec<IndexedBlob>,
}

impl SealedPack {
    pub fn indexed(&self) -> IndexedPack {
        IndexedPack {
            id: self.id,
            size: self.data.len() as u64,
            blobs: self.blobs.clone(),
        }
    }
}

fn too_big(id: &ObjectId) -> StoreError {
    StoreError::Malformed {
        key: id.to_hex(),
        what: "object",
        reason: "larger than 4 GiB".to_string(),
    }
}

impl PackBuilder {
    pub fn new(level: i32) -> StoreResult<Self> {
        let compressor = zstd::bulk::Compressor::new(level).map_err(|e| StoreError::Malformed {
            key: "compressor".to_string(),
            what: "compression level",
            reason: e.to_string(),
        })?;
        Ok(Self {
            compressor,
            data: Vec::new(),
            blobs: Vec::new(),
            chunk: Vec::with_capacity(CHUNK_SIZE),
            chunk_blobs: Vec::new(),
        })
    }

    /// Compressed bytes so far, plus the open chunk's raw bytes (an upper bound for it).
    pub fn len(&self) -> usize {
        self.data.len() + self.chunk.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty() && self.chunk_blobs.is_empty()
    }

    /// Appends one object; it is compressed with the rest of its chunk.
    pub fn add(&mut self, id: ObjectId, raw: &[u8]) -> StoreResult<()> {
        if !self.chunk.is_empty() && self.chunk.len() + raw.len() > CHUNK_SIZE {
            self.close_chunk()?;
        }
        let offset = u32::try_from(self.chunk.len()).map_err(|_| too_big(&id))?;
        let length = u32::try_from(raw.len()).map_err(|_| too_big(&id))?;
        self.chunk.extend_from_slice(raw);
        self.chunk_blobs.push((id, offset, length));
        Ok(())
    }

    fn close_chunk(&mut self) -> StoreResult<()> {
        if self.chunk_blobs.is_empty() {
            return Ok(());
        }
        let frame = self
            .compressor
            .compress(&self.chunk)
            .map_err(|e| StoreError::Malformed {
                key: self.chunk_blobs[0].0.to_hex(),
                what: "object",
                reason: format!("compression failed: {e}"),
            })?;
        let offset = self.data.len() as u64;
        let length = u32::try_from(frame.len()).map_err(|_| too_big(&self.chunk_blobs[0].0))?;
        for (id, raw_offset, raw_length) in self.chunk_blobs.drain(..) {
            self.blobs.push(IndexedBlob {
                id,
                offset,
                length,
                raw_offset,
                raw_length,
            });
        }
        self.data.extend_from_slice(&frame);
        self.chunk.clear();
        Ok(())
    }

    /// Finishes the pack and starts a new, empty one.
    pub fn seal(&mut self) -> StoreResult<SealedPack> {
        self.close_chunk()?;
        let data = Bytes::from(std::mem::take(&mut self.data));
        Ok(SealedPack {
            id: PackId::of(&data),
            data,
            blobs: std::mem::take(&mut self.blobs),
        })
    }
}

/// Decompresses one frame read from `location` (`stored` is the frame's bytes); errors name
/// `id`, the object that was asked for.
pub fn open_frame(id: &ObjectId, location: &Location, stored: &[u8]) -> StoreResult<Vec<u8>> {
    if stored.len() != location.length as usize {
        return Err(StoreError::Corrupt {
            object: *id,
            pack: location.pack,
            reason: format!(
                "expected {} stored bytes, read {}",
                location.length,
                stored.len()
            ),
        });
    }
    decompress(stored).map_err(|e| StoreError::Corrupt {
        object: *id,
        pack: location.pack,
        reason: format!("cannot decompress: {e}"),
    })
}

/// Frames larger than this (by their header) are decompressed as a stream.
const MAX_BULK_FRAME: u64 = 64 * 1024 * 1024;

/// Decompresses one frame, with a decompression context kept per thread: frames are small
/// and many, and a context costs more to set up than a frame to decompress.
fn decompress(stored: &[u8]) -> std::io::Result<Vec<u8>> {
    thread_local! {
        static CONTEXT: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    let size = match zstd::zstd_safe::get_frame_content_size(stored) {
        Ok(Some(size)) if size <= MAX_BULK_FRAME => size as usize,
        _ => return zstd::stream::decode_all(stored),
    };
    CONTEXT.with(|context| {
        let mut context = context.borrow_mut();
        let decompressor = match context.as_mut() {
            Some(d) => d,
            None => context.insert(zstd::bulk::Decompressor::new()?),
        };
        decompressor.decompress(stored, size)
    })
}

/// The object `id` out of its decompressed frame, checked against its id (a sealed object
/// against the check its frame carries).
pub fn blob_from_frame(id: &ObjectId, location: &Location, frame: &[u8]) -> StoreResult<Bytes> {
    let corrupt = |reason: String| StoreError::Corrupt {
        object: *id,
        pack: location.pack,
        reason,
    };
    let start = location.raw_offset as usize;
    let end = start + location.raw_length as usize;
    let raw = frame.get(start..end).ok_or_else(|| {
        corrupt(format!(
            "its chunk holds {} bytes, the object is at {start}..{end}",
            frame.len()
        ))
    })?;
    if !super::sealed::matches(id, raw) {
        return Err(corrupt("content does not match its id".to_string()));
    }
    Ok(Bytes::copy_from_slice(raw))
}

/// Decompresses and checks one object whose frame is `stored`.
pub fn open_blob(id: &ObjectId, location: &Location, stored: &[u8]) -> StoreResult<Bytes> {
    let frame = open_frame(id, location, stored)?;
    blob_from_frame(id, location, &frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trip_and_corruption() {
        let mut builder = PackBuilder::new(3).unwrap();
        let objects: Vec<Vec<u8>> = (0..10)
            .map(|i| format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(i * 100)).into_bytes())
            .collect();
        for o in &objects {
            builder.add(ObjectId::of(o), o).unwrap();
        }
        let pack = builder.seal().unwrap();
        assert!(builder.is_empty());
        let indexed = pack.indexed();
        for ((id, loc), raw) in indexed.locations().zip(&objects) {
            let range = loc.frame().start as usize..loc.frame().end as usize;
            assert_eq!(
                &open_blob(&id, &loc, &pack.data[range.clone()]).unwrap()[..],
                &raw[..]
            );
            let mut flipped = pack.data[range].to_vec();
            let last = flipped.len() - 1;
            flipped[last] ^= 0x40;
            let err = open_blob(&id, &loc, &flipped).unwrap_err().to_string();
            assert!(err.contains(&id.to_string()), "{err}");
        }
        assert_eq!(
            Location::decode(&indexed.locations().next().unwrap().1.encode()).unwrap(),
            indexed.locations().next().unwrap().1
        );
    }

    #[test]
    fn objects_share_frames_of_about_a_chunk() {
        let mut builder = PackBuilder::new(3).unwrap();
        let objects: Vec<Vec<u8>> = (0..300)
            .map(|i| format!("{{\"n\":{i},\"pad\":\"{}\"}}", "y".repeat(1000)).into_bytes())
            .collect();
        for o in &objects {
            builder.add(ObjectId::of(o), o).unwrap();
        }
        let pack = builder.seal().unwrap();
        let indexed = pack.indexed();
        let frames: std::collections::BTreeSet<u64> =
            indexed.blobs.iter().map(|b| b.offset).collect();
        assert!(
            frames.len() >= 2 && frames.len() <= 4,
            "{} frames",
            frames.len()
        );
        assert!(
            pack.data.len() < 300 * 1000 / 10,
            "similar objects compress together"
        );
        for ((id, loc), raw) in indexed.locations().zip(&objects) {
            let frame = &pack.data[loc.frame().start as usize..loc.frame().end as usize];
            assert_eq!(&open_blob(&id, &loc, frame).unwrap()[..], &raw[..]);
        }
    }

    #[test]
    fn index_file_round_trip_checks_its_id() {
        let index = IndexFile::new(vec![IndexedPack {
            id: PackId::of(b"p"),
            size: 10,
            blobs: vec![IndexedBlob {
                id: ObjectId::of(b"o"),
                offset: 0,
                length: 10,
                raw_offset: 0,
                raw_length: 1,
            }],
        }]);
        let (id, bytes) = index.encode().unwrap();
        assert_eq!(IndexFile::decode("k", &id, &bytes).unwrap(), index);
        assert!(IndexFile::decode("k", &IndexId::of(b"other"), &bytes).is_err());
    }
}
