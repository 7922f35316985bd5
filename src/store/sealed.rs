//! The frame of a sealed object: how the store tells an encrypted object from a plain one
//! and checks it without being able to read it.
//!
//! A plain object is canonical JSON and is checked against its id (the BLAKE3 hash of its
//! bytes). A sealed object's id is a keyed hash of its plaintext (see `crate::seal`), which
//! nobody without the key can check, so the frame carries its own check: a hash of the id
//! and of the ciphertext, which says nothing about the plaintext. A damaged or swapped
//! sealed object is then caught on every read, like a plain one, also by readers without an
//! identity (prune, verify, local pack copies).
//!
//! Layout: `MAGIC | key reference (16) | check (16) | ciphertext`. The magic starts with a
//! zero byte, which no JSON object starts with. This module knows nothing of keys or ciphers.

use super::id::ObjectId;

/// The first bytes of every sealed object.
pub const MAGIC: &[u8; 5] = b"\0kas1";
/// Bytes of the reference of the key an object's id is keyed with.
pub const KEY_REFERENCE_LEN: usize = 16;
const CHECK_LEN: usize = 16;
const HEADER_LEN: usize = MAGIC.len() + KEY_REFERENCE_LEN + CHECK_LEN;

/// The parts of a sealed object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealed<'a> {
    /// Which key the object is encrypted with (a file under `store/keys/`).
    pub key_reference: [u8; KEY_REFERENCE_LEN],
    /// The encrypted (zstd-compressed) object.
    pub ciphertext: &'a [u8],
}

/// Whether a stored blob is a sealed object (it may still be damaged).
pub fn is_sealed(blob: &[u8]) -> bool {
    blob.starts_with(MAGIC)
}

fn check(id: &ObjectId, key_reference: &[u8], ciphertext: &[u8]) -> [u8; CHECK_LEN] {
    let mut hasher = blake3::Hasher::new_derive_key("kube-autosave sealed object check v1");
    hasher.update(id.as_bytes());
    hasher.update(key_reference);
    hasher.update(ciphertext);
    let mut out = [0u8; CHECK_LEN];
    out.copy_from_slice(&hasher.finalize().as_bytes()[..CHECK_LEN]);
    out
}

/// Frames a sealed object stored under `id`.
pub fn frame(id: &ObjectId, key_reference: &[u8; KEY_REFERENCE_LEN], ciphertext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + ciphertext.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(key_reference);
    out.extend_from_slice(&check(id, key_reference, ciphertext));
    out.extend_from_slice(ciphertext);
    out
}

/// The parts of the sealed object `id`, when `blob` is one and is intact.
pub fn parse<'a>(id: &ObjectId, blob: &'a [u8]) -> Option<Sealed<'a>> {
    let rest = blob.strip_prefix(MAGIC)?;
    if rest.len() < KEY_REFERENCE_LEN + CHECK_LEN {
        return None;
    }
    let (key_reference, rest) = rest.split_at(KEY_REFERENCE_LEN);
    let (stored_check, ciphertext) = rest.split_at(CHECK_LEN);
    if check(id, key_reference, ciphertext) != stored_check {
        return None;
    }
    Some(Sealed {
        key_reference: key_reference.try_into().ok()?,
        ciphertext,
    })
}

/// Whether `blob` is what the store holds for `id`: a plain object whose hash is `id`, or an
/// intact sealed object framed for `id`.
pub fn matches(id: &ObjectId, blob: &[u8]) -> bool {
    if is_sealed(blob) {
        parse(id, blob).is_some()
    } else {
        ObjectId::of(blob) == *id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_object_is_checked_without_its_key() {
        let id = ObjectId::of(b"keyed elsewhere");
        let reference = [7u8; KEY_REFERENCE_LEN];
        let blob = frame(&id, &reference, b"ciphertext");
        assert!(is_sealed(&blob));
        assert!(matches(&id, &blob));
        let parsed = parse(&id, &blob).unwrap();
        assert_eq!(parsed.key_reference, reference);
        assert_eq!(parsed.ciphertext, b"ciphertext");
        // Another id, a flipped byte anywhere, or a cut: not the object.
        assert!(!matches(&ObjectId::of(b"other"), &blob));
        for at in [MAGIC.len(), MAGIC.len() + KEY_REFERENCE_LEN, blob.len() - 1] {
            let mut bad = blob.clone();
            bad[at] ^= 1;
            assert!(!matches(&id, &bad), "byte {at}");
        }
        assert!(!matches(&id, &blob[..HEADER_LEN - 1]));
        // Plain objects are checked by their hash, as always.
        assert!(matches(&ObjectId::of(b"{}"), b"{}"));
        assert!(!is_sealed(b"{}"));
    }
}
