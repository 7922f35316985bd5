//! Packs and index files, the two immutable file formats of the store.
//!
//! A pack is the concatenation of zstd frames, one per object, named by the hash of its
//! bytes. An index file says, for a set of packs, which object sits at which offset; it is
//! zstd-compressed JSON, also named by its hash. Packs are written before the index files
//! that point into them, so an index entry never points at a pack that is not stored.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::error::{StoreError, StoreResult};
use super::id::{IndexId, ObjectId, PackId};

/// Where one object lives: a byte range of a pack, and its size once decompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub pack: PackId,
    pub offset: u64,
    pub length: u32,
    pub raw_length: u32,
}

impl Location {
    pub const ENCODED_LEN: usize = 32 + 8 + 4 + 4;

    /// The fixed 48-byte form kept in the local index.
    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[..32].copy_from_slice(self.pack.as_bytes());
        out[32..40].copy_from_slice(&self.offset.to_le_bytes());
        out[40..44].copy_from_slice(&self.length.to_le_bytes());
        out[44..48].copy_from_slice(&self.raw_length.to_le_bytes());
        out
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
        })
    }
}

/// One object's entry in an index file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedBlob {
    pub id: ObjectId,
    pub offset: u64,
    pub length: u32,
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

/// Builds one pack in memory: compress objects, append, seal.
pub struct PackBuilder {
    compressor: zstd::bulk::Compressor<'static>,
    data: Vec<u8>,
    blobs: Vec<IndexedBlob>,
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
        })
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Compresses and appends one object; returns its compressed size.
    pub fn add(&mut self, id: ObjectId, raw: &[u8]) -> StoreResult<usize> {
        let compressed = self
            .compressor
            .compress(raw)
            .map_err(|e| StoreError::Malformed {
                key: id.to_hex(),
                what: "object",
                reason: format!("compression failed: {e}"),
            })?;
        let too_big = |what: &str| StoreError::Malformed {
            key: id.to_hex(),
            what: "object",
            reason: format!("{what} is larger than 4 GiB"),
        };
        let blob = IndexedBlob {
            id,
            offset: self.data.len() as u64,
            length: u32::try_from(compressed.len()).map_err(|_| too_big("compressed size"))?,
            raw_length: u32::try_from(raw.len()).map_err(|_| too_big("size"))?,
        };
        self.data.extend_from_slice(&compressed);
        self.blobs.push(blob);
        Ok(compressed.len())
    }

    /// Finishes the pack and starts a new, empty one.
    pub fn seal(&mut self) -> SealedPack {
        let data = Bytes::from(std::mem::take(&mut self.data));
        SealedPack {
            id: PackId::of(&data),
            data,
            blobs: std::mem::take(&mut self.blobs),
        }
    }
}

/// Decompresses one object read from `location` and checks it against `id`.
pub fn open_blob(id: &ObjectId, location: &Location, stored: &[u8]) -> StoreResult<Bytes> {
    let corrupt = |reason: String| StoreError::Corrupt {
        object: *id,
        pack: location.pack,
        reason,
    };
    if stored.len() != location.length as usize {
        return Err(corrupt(format!(
            "expected {} stored bytes, read {}",
            location.length,
            stored.len()
        )));
    }
    let raw = zstd::bulk::decompress(stored, location.raw_length as usize)
        .map_err(|e| corrupt(format!("cannot decompress: {e}")))?;
    if raw.len() != location.raw_length as usize {
        return Err(corrupt(format!(
            "expected {} bytes once decompressed, got {}",
            location.raw_length,
            raw.len()
        )));
    }
    if ObjectId::of(&raw) != *id {
        return Err(corrupt("content does not match its id".to_string()));
    }
    Ok(Bytes::from(raw))
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
        let pack = builder.seal();
        assert!(builder.is_empty());
        let indexed = pack.indexed();
        for ((id, loc), raw) in indexed.locations().zip(&objects) {
            let range = loc.offset as usize..(loc.offset as usize + loc.length as usize);
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
    fn index_file_round_trip_checks_its_id() {
        let index = IndexFile::new(vec![IndexedPack {
            id: PackId::of(b"p"),
            size: 10,
            blobs: vec![IndexedBlob {
                id: ObjectId::of(b"o"),
                offset: 0,
                length: 10,
                raw_length: 1,
            }],
        }]);
        let (id, bytes) = index.encode().unwrap();
        assert_eq!(IndexFile::decode("k", &id, &bytes).unwrap(), index);
        assert!(IndexFile::decode("k", &IndexId::of(b"other"), &bytes).is_err());
    }
}
