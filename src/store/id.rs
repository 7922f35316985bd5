//! Typed content ids: every object, pack and index file in the store is named by the BLAKE3
//! hash of its bytes. Nothing outside this module handles a raw hash string; keys are built
//! from these types by `layout`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 32-byte BLAKE3 digest that failed to parse from its hex form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a 64-digit hex id: {0:?}")]
pub struct ParseIdError(pub String);

macro_rules! define_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 32]);

        impl $name {
            /// The id of `data`: its BLAKE3 hash.
            pub fn of(data: &[u8]) -> Self {
                Self(*blake3::hash(data).as_bytes())
            }

            pub fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// The full 64-digit lower-case hex form, as used in keys and manifests.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Reads an id from a byte slice of exactly 32 bytes (e.g. a sled key).
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                <[u8; 32]>::try_from(bytes).ok().map(Self)
            }
        }

        impl fmt::Display for $name {
            /// The short form (first 8 hex digits) for logs and messages; `{:#}` gives the full id.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if f.alternate() {
                    f.write_str(&self.to_hex())
                } else {
                    f.write_str(&hex::encode(&self.0[..4]))
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let mut bytes = [0u8; 32];
                hex::decode_to_slice(s, &mut bytes).map_err(|_| ParseIdError(s.to_string()))?;
                Ok(Self(bytes))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

define_id!(
    /// The id of one stored object: the hash of its canonical (uncompressed) JSON bytes.
    ObjectId
);
define_id!(
    /// The id of a pack file: the hash of the pack's bytes as stored.
    PackId
);
define_id!(
    /// The id of an index file: the hash of the index file's bytes as stored.
    IndexId
);
define_id!(
    /// The hash of one rendered plain-layout file, used to decide copy-or-upload.
    FileHash
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_short_display() {
        let id = ObjectId::of(b"hello");
        let hex = id.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(hex.parse::<ObjectId>().unwrap(), id);
        assert_eq!(id.to_string(), &hex[..8]);
        assert_eq!(format!("{id:#}"), hex);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{hex}\""));
        assert_eq!(serde_json::from_str::<ObjectId>(&json).unwrap(), id);
    }

    #[test]
    fn bad_hex_is_rejected() {
        assert!("abc".parse::<PackId>().is_err());
        assert!("zz".repeat(32).parse::<PackId>().is_err());
    }
}
