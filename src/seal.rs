//! Client-side encryption of chosen resources (Secrets by default) with age, so that the
//! bucket never holds their values.
//!
//! - **Writers hold public keys only.** Each run of a writer makes a random data key, stores
//!   it at `store/keys/<reference>` encrypted with age to the configured X25519 recipients,
//!   and encrypts each new object of a sealed resource with it (XChaCha20-Poly1305): one
//!   public-key operation per run, not per object. The key lives in memory for the run only,
//!   so the daemon in the cluster cannot read what earlier runs sealed. Each namespace's
//!   plain-layout file of such a resource is a whole age file (`secrets.json.age`), readable
//!   with the `age` command.
//! - **No plaintext hash at the destination.** A sealed object's id is a BLAKE3 hash keyed
//!   with a key derived from a random local key (kept beside the local index) and from the
//!   recipients: nobody can confirm a guessed value against the store, while an unchanged
//!   object keeps its id, so deduplication and server-side copies work as for plain
//!   objects. The key file of each run holds this id key too, so that a reader with an
//!   identity can check ids. A new local cache, or new recipients, make a new id key: the
//!   sealed objects are then stored once more, for the current recipients.
//! - **Readers hold identities.** [`Keyring`] opens a run's key file, then its sealed objects,
//!   and `.age` files; without a matching identity it says so, and callers leave those
//!   objects out by name.
//!
//! This module must never log, print or put in an error any plaintext, key or identity.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use age::x25519;
use bytes::Bytes;

use crate::kube::ResourceType;
use crate::store::sealed::{self, KEY_REFERENCE_LEN};
use crate::store::{BackendExt, ObjectId, RemoteFile, Store, StoreError};

/// The resources sealed when encryption is on and none are named.
pub const DEFAULT_SEALED_RESOURCES: &[&str] = &["secrets"];

/// The extension of a sealed plain-layout file.
pub const FILE_EXTENSION: &str = ".age";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("{origin}: {problem}")]
    Recipient { origin: String, problem: String },
    #[error("identity file {}: {problem}", path.display())]
    Identity { path: PathBuf, problem: String },
    #[error(
        "{what} is encrypted and no identity was given; pass --identity with a key of its \
         recipients (an age identity file)"
    )]
    NoIdentity { what: String },
    #[error(
        "{what} is encrypted to other recipients than the given identities ({identities} \
         key(s)); pass --identity with a key it was encrypted to"
    )]
    NoMatchingIdentity { what: String, identities: usize },
    #[error("{what} is damaged: {problem}")]
    Damaged { what: String, problem: String },
    #[error("the local sealing key {}: {problem}", path.display())]
    LocalKey { path: PathBuf, problem: String },
    #[error("encrypting: {0}")]
    Encrypt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SealError {
    /// Whether the object or file could not be read for want of a matching identity (as
    /// opposed to damage or a failure to reach the store).
    pub fn is_locked(&self) -> bool {
        matches!(
            self,
            SealError::NoIdentity { .. } | SealError::NoMatchingIdentity { .. }
        )
    }
}

/// The public keys sealed objects and files are encrypted to.
#[derive(Clone)]
pub struct Recipients {
    keys: Vec<x25519::Recipient>,
    /// BLAKE3 of the sorted keys: new recipients make new object ids.
    fingerprint: [u8; 32],
}

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Public keys: safe to show.
        f.debug_list()
            .entries(self.keys.iter().map(|k| k.to_string()))
            .finish()
    }
}

impl Recipients {
    /// Parses recipients (`age1...`), each with where it was written for errors. Blank
    /// entries and `#` comments are ignored; at least one recipient must remain.
    pub fn parse<'a>(
        entries: impl IntoIterator<Item = (String, &'a str)>,
    ) -> Result<Self, SealError> {
        let mut keys: Vec<x25519::Recipient> = Vec::new();
        let mut last_origin = String::from("recipients");
        for (origin, entry) in entries {
            let entry = entry.trim();
            last_origin = origin.clone();
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            let key = entry
                .parse::<x25519::Recipient>()
                .map_err(|e| SealError::Recipient {
                    origin,
                    problem: format!(
                        "{entry:?} is not an age X25519 recipient (age1...; `age-keygen` makes \
                         one): {e}"
                    ),
                })?;
            keys.push(key);
        }
        keys.sort_by_key(|k| k.to_string());
        keys.dedup_by_key(|k| k.to_string());
        if keys.is_empty() {
            return Err(SealError::Recipient {
                origin: last_origin,
                problem: "no recipient given".to_string(),
            });
        }
        let mut hasher = blake3::Hasher::new();
        for key in &keys {
            hasher.update(key.to_string().as_bytes());
            hasher.update(b"\n");
        }
        Ok(Self {
            keys,
            fingerprint: *hasher.finalize().as_bytes(),
        })
    }

    /// The lines of a recipients file (one `age1...` per line, `#` comments), each with its
    /// origin, for [`Recipients::parse`].
    pub fn read_file(path: &Path) -> Result<Vec<(String, String)>, SealError> {
        let text = std::fs::read_to_string(path).map_err(|e| SealError::Recipient {
            origin: path.display().to_string(),
            problem: format!("cannot read the recipients file: {e}"),
        })?;
        Ok(text
            .lines()
            .enumerate()
            .map(|(i, line)| {
                (
                    format!("{} line {}", path.display(), i + 1),
                    line.to_string(),
                )
            })
            .collect())
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Encrypts `plaintext` to every recipient: a binary age file.
    fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let encryptor =
            age::Encryptor::with_recipients(self.keys.iter().map(|k| k as &dyn age::Recipient))
                .map_err(|e| SealError::Encrypt(e.to_string()))?;
        let mut out = Vec::with_capacity(plaintext.len() + 256);
        let mut writer = encryptor
            .wrap_output(&mut out)
            .map_err(|e| SealError::Encrypt(e.to_string()))?;
        writer
            .write_all(plaintext)
            .and_then(|()| writer.finish().map(|_| ()))
            .map_err(|e| SealError::Encrypt(e.to_string()))?;
        Ok(out)
    }
}

/// What to seal and to whom.
#[derive(Debug, Clone)]
pub struct Encryption {
    pub recipients: Recipients,
    /// Resource patterns as in `includeResources` (`secrets`, `sealedsecrets.bitnami.com`).
    pub resources: Vec<String>,
}

impl Encryption {
    pub fn seals(&self, rt: &ResourceType) -> bool {
        self.resources.iter().any(|pattern| rt.is_named_by(pattern))
    }
}

/// A writer's means to seal, for one run: the recipients, the key of this cache's sealed
/// ids, and a data key made for the run.
pub struct Sealer {
    encryption: Encryption,
    id_key: [u8; 32],
    id_reference: [u8; KEY_REFERENCE_LEN],
    /// Encrypts this run's sealed objects; kept in memory only, and at the destination
    /// encrypted to the recipients, so the writer cannot read what earlier runs sealed.
    data_key: chacha20poly1305::Key,
    data_reference: [u8; KEY_REFERENCE_LEN],
    /// Nonces: a random prefix for the run and a counter, never one twice under a key.
    nonce_prefix: [u8; 16],
    nonces: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("encryption", &self.encryption)
            .field("data_reference", &hex::encode(self.data_reference))
            .finish_non_exhaustive()
    }
}

/// Random bytes from the kernel.
fn random<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut out = [0u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut out)?;
    Ok(out)
}

/// Bytes of a sealed object's nonce (XChaCha20-Poly1305).
const NONCE_LEN: usize = 24;

/// Compresses one object before it is encrypted (nothing compresses it after), with a
/// context kept per thread: objects are small and many, and a context costs more to set up
/// than an object to compress.
fn compress(plaintext: &[u8]) -> std::io::Result<Vec<u8>> {
    thread_local! {
        static CONTEXT: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    CONTEXT.with(|context| {
        let mut context = context.borrow_mut();
        let compressor = match context.as_mut() {
            Some(c) => c,
            None => context.insert(zstd::bulk::Compressor::new(3)?),
        };
        compressor.compress(plaintext)
    })
}

/// The local random key sealed ids are derived from: created on first use, readable by the
/// owner only.
fn local_base_key(path: &Path) -> Result<[u8; 32], SealError> {
    let fail = |problem: String| SealError::LocalKey {
        path: path.to_path_buf(),
        problem,
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| fail("not hex".to_string()))?;
            let mut key = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut key)
                .map_err(|_| fail("not 64 hex digits; delete it to start a new key".to_string()))?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] =
                random().map_err(|e| fail(format!("cannot read random bytes: {e}")))?;
            write_private(path, format!("{}\n", hex::encode(key)).as_bytes())
                .map_err(|e| fail(format!("cannot write: {e}")))?;
            Ok(key)
        }
        Err(e) => Err(fail(format!("cannot read: {e}"))),
    }
}

/// Writes a file only its owner can read, atomically.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let temp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)?;
    file.write_all(data)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)
}

/// The reference a key is stored or named under: a hash of it, which says nothing of it.
fn reference_of(key: &[u8]) -> [u8; KEY_REFERENCE_LEN] {
    let hash = blake3::Hasher::new_derive_key("kube-autosave sealing key reference v1")
        .update(key)
        .finalize();
    let mut out = [0u8; KEY_REFERENCE_LEN];
    out.copy_from_slice(&hash.as_bytes()[..KEY_REFERENCE_LEN]);
    out
}

/// What `store/keys/<reference of the data key>` holds once decrypted: the keys of one
/// writer's run.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredKeys {
    version: u32,
    /// Hex of the data key the run's sealed objects are encrypted with.
    data_key: String,
    /// Hex of the key their ids are keyed with.
    id_key: String,
}

/// The keys of a run, as a reader opened them.
#[derive(Clone, Copy)]
struct RunKeys {
    data_key: chacha20poly1305::Key,
    id_key: [u8; 32],
}

impl StoredKeys {
    fn parse(data: &[u8], reference: &[u8; KEY_REFERENCE_LEN]) -> Option<RunKeys> {
        let stored: StoredKeys = serde_json::from_slice(data).ok()?;
        let mut data_key = [0u8; 32];
        let mut id_key = [0u8; 32];
        hex::decode_to_slice(&stored.data_key, &mut data_key).ok()?;
        hex::decode_to_slice(&stored.id_key, &mut id_key).ok()?;
        (stored.version == 1 && reference_of(&data_key) == *reference).then_some(RunKeys {
            data_key: data_key.into(),
            id_key,
        })
    }
}

impl Sealer {
    /// The sealer of one run of a writer into `store`: derives this cache's id key for the
    /// recipients, makes a data key for the run and stores both at `store/keys/<reference>`,
    /// encrypted to the recipients, before any object sealed with them can be stored.
    pub async fn open(store: &Store, encryption: &Encryption) -> Result<Self, SealError> {
        let path = store.local_file("sealing-key");
        let base = crate::task::blocking(move || local_base_key(&path)).await?;
        let mut hasher = blake3::Hasher::new_derive_key("kube-autosave sealed object ids v1");
        hasher.update(&base);
        hasher.update(&encryption.recipients.fingerprint);
        let id_key = *hasher.finalize().as_bytes();
        let randomness = |e: std::io::Error| SealError::Encrypt(format!("random bytes: {e}"));
        let data_key: [u8; 32] = random().map_err(randomness)?;
        let sealer = Self {
            encryption: encryption.clone(),
            id_key,
            id_reference: reference_of(&id_key),
            data_key: data_key.into(),
            data_reference: reference_of(&data_key),
            nonce_prefix: random().map_err(randomness)?,
            nonces: std::sync::atomic::AtomicU64::new(0),
        };
        let stored = serde_json::to_vec(&StoredKeys {
            version: 1,
            data_key: hex::encode(data_key),
            id_key: hex::encode(id_key),
        })
        .map_err(|e| SealError::Encrypt(e.to_string()))?;
        let sealed = sealer.encryption.recipients.encrypt(&stored)?;
        let reference = hex::encode(sealer.data_reference);
        // A new random key: its name is free. The daemon stages it while the destination
        // is away, and pushes it before any manifest.
        store
            .backend()
            .create(
                &RemoteFile::SealingKey(&reference).key(),
                Bytes::from(sealed),
            )
            .await?;
        Ok(sealer)
    }

    /// Whether objects of `rt` are sealed.
    pub fn seals(&self, rt: &ResourceType) -> bool {
        self.encryption.seals(rt)
    }

    /// The id of a sealed object: its BLAKE3 hash keyed with this cache's key.
    pub fn id_of(&self, plaintext: &[u8]) -> ObjectId {
        ObjectId::from_bytes(*blake3::keyed_hash(&self.id_key, plaintext).as_bytes())
    }

    /// The reference of the key ids are made with: what a recipe of sealed files includes,
    /// so that new recipients make new files.
    pub fn key_reference(&self) -> &[u8; KEY_REFERENCE_LEN] {
        &self.id_reference
    }

    /// The stored form of a sealed object: compressed, encrypted with the run's data key
    /// (XChaCha20-Poly1305, the id as associated data), framed with the key's reference.
    pub fn seal_object(&self, id: &ObjectId, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        let compressed = compress(plaintext).map_err(|e| SealError::Encrypt(e.to_string()))?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..16].copy_from_slice(&self.nonce_prefix);
        let count = self
            .nonces
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        nonce[16..].copy_from_slice(&count.to_le_bytes());
        let cipher = chacha20poly1305::XChaCha20Poly1305::new(&self.data_key);
        let encrypted = cipher
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: &compressed,
                    aad: id.as_bytes(),
                },
            )
            .map_err(|e| SealError::Encrypt(e.to_string()))?;
        let mut ciphertext = Vec::with_capacity(NONCE_LEN + encrypted.len());
        ciphertext.extend_from_slice(&nonce);
        ciphertext.extend_from_slice(&encrypted);
        Ok(sealed::frame(id, &self.data_reference, &ciphertext))
    }

    /// A whole plain-layout file encrypted to the recipients: a binary age file.
    pub fn seal_file(&self, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        self.encryption.recipients.encrypt(plaintext)
    }
}

/// A reader's identities, and the run keys they opened.
pub struct Keyring {
    identities: Vec<x25519::Identity>,
    /// Run keys by reference, as read from `store/keys/`.
    run_keys: Mutex<HashMap<[u8; KEY_REFERENCE_LEN], Opened>>,
}

/// What became of a key file.
#[derive(Clone, Copy)]
enum Opened {
    Keys(RunKeys),
    /// Encrypted to other recipients.
    Locked,
    /// Missing or damaged.
    Unusable,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("Keyring")
            .field("identities", &self.identities.len())
            .finish_non_exhaustive()
    }
}

impl Default for Keyring {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl Keyring {
    fn new(identities: Vec<x25519::Identity>) -> Self {
        Self {
            identities,
            run_keys: Mutex::new(HashMap::new()),
        }
    }

    /// Reads age identity files (`AGE-SECRET-KEY-1...` lines, `#` comments), as `age-keygen`
    /// writes them. No files: a keyring that opens nothing sealed.
    pub fn load(paths: &[PathBuf]) -> Result<Self, SealError> {
        let mut identities = Vec::new();
        for path in paths {
            let fail = |problem: String| SealError::Identity {
                path: path.clone(),
                problem,
            };
            let text = std::fs::read_to_string(path).map_err(|e| fail(format!("{e}")))?;
            let before = identities.len();
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                // The line is a secret: never quoted back.
                let identity = line.parse::<x25519::Identity>().map_err(|_| {
                    fail(format!(
                        "line {} is not an age X25519 identity (AGE-SECRET-KEY-1...)",
                        i + 1
                    ))
                })?;
                identities.push(identity);
            }
            if identities.len() == before {
                return Err(fail("holds no identity".to_string()));
            }
        }
        Ok(Self::new(identities))
    }

    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    pub fn len(&self) -> usize {
        self.identities.len()
    }

    /// Decrypts an age file (a sealed plain-layout file, or the ciphertext of an object).
    pub fn open_file(&self, what: &str, data: &[u8]) -> Result<Vec<u8>, SealError> {
        if self.identities.is_empty() {
            return Err(SealError::NoIdentity {
                what: what.to_string(),
            });
        }
        let damaged = |problem: String| SealError::Damaged {
            what: what.to_string(),
            problem,
        };
        let decryptor = age::Decryptor::new_buffered(data).map_err(|e| damaged(format!("{e}")))?;
        let mut reader = decryptor
            .decrypt(self.identities.iter().map(|i| i as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => SealError::NoMatchingIdentity {
                    what: what.to_string(),
                    identities: self.identities.len(),
                },
                e => damaged(format!("{e}")),
            })?;
        let mut out = Vec::with_capacity(data.len());
        reader
            .read_to_end(&mut out)
            .map_err(|e| damaged(format!("{e}")))?;
        Ok(out)
    }

    /// The plaintext of a stored object: a plain one as it is, a sealed one decrypted with
    /// its run's data key (read from `store/keys/` with these identities) and checked
    /// against its keyed id. `what` names the object in errors.
    pub async fn open_object(
        &self,
        store: &Store,
        what: &str,
        id: &ObjectId,
        blob: Bytes,
    ) -> Result<Bytes, SealError> {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        if !sealed::is_sealed(&blob) {
            return Ok(blob);
        }
        let damaged = |problem: &str| SealError::Damaged {
            what: what.to_string(),
            problem: problem.to_string(),
        };
        if self.identities.is_empty() {
            return Err(SealError::NoIdentity {
                what: what.to_string(),
            });
        }
        let parts = sealed::parse(id, &blob).ok_or_else(|| damaged("its frame is damaged"))?;
        let keys = match self.run_keys(store, &parts.key_reference).await? {
            Opened::Keys(keys) => keys,
            Opened::Locked => {
                return Err(SealError::NoMatchingIdentity {
                    what: what.to_string(),
                    identities: self.identities.len(),
                });
            }
            Opened::Unusable => {
                return Err(damaged("the key it was sealed with is missing or damaged"));
            }
        };
        let (nonce, encrypted) = parts
            .ciphertext
            .split_at_checked(NONCE_LEN)
            .ok_or_else(|| damaged("it is cut short"))?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| damaged("no nonce"))?;
        let compressed = chacha20poly1305::XChaCha20Poly1305::new(&keys.data_key)
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: encrypted,
                    aad: id.as_bytes(),
                },
            )
            .map_err(|_| damaged("it does not decrypt with its key"))?;
        let plaintext = zstd::stream::decode_all(&compressed[..])
            .map_err(|_| damaged("cannot decompress it once decrypted"))?;
        if *blake3::keyed_hash(&keys.id_key, &plaintext).as_bytes() != *id.as_bytes() {
            return Err(damaged("its content does not match its id"));
        }
        Ok(Bytes::from(plaintext))
    }

    /// The run keys stored under `reference`, read and decrypted once.
    async fn run_keys(
        &self,
        store: &Store,
        reference: &[u8; KEY_REFERENCE_LEN],
    ) -> Result<Opened, SealError> {
        if let Some(known) = self
            .run_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(reference)
        {
            return Ok(*known);
        }
        let name = hex::encode(reference);
        let key = RemoteFile::SealingKey(&name).key();
        let found = match store.backend().get_opt(&key).await? {
            None => Opened::Unusable,
            Some(data) => match self.open_file(&key, &data) {
                Ok(opened) => {
                    StoredKeys::parse(&opened, reference).map_or(Opened::Unusable, Opened::Keys)
                }
                Err(e) if e.is_locked() => Opened::Locked,
                Err(_) => Opened::Unusable,
            },
        };
        self.run_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(*reference, found);
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (x25519::Identity, String) {
        let identity = x25519::Identity::generate();
        let recipient = identity.to_public().to_string();
        (identity, recipient)
    }

    #[test]
    fn recipients_are_parsed_sorted_and_named_when_bad() {
        let (_, a) = pair();
        let (_, b) = pair();
        let one =
            Recipients::parse([("x".to_string(), a.as_str()), ("y".into(), b.as_str())]).unwrap();
        let other = Recipients::parse([
            ("y".to_string(), b.as_str()),
            ("x".into(), a.as_str()),
            ("z".into(), "# a comment"),
            ("w".into(), a.as_str()),
        ])
        .unwrap();
        assert_eq!(one.len(), 2);
        assert_eq!(one.fingerprint, other.fingerprint);
        let err = Recipients::parse([("encryption.recipients[1]".to_string(), "age1nope")])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("encryption.recipients[1]: \"age1nope\""),
            "{err}"
        );
        assert!(Recipients::parse([("f".to_string(), "  ")]).is_err());
    }

    #[test]
    fn a_file_sealed_to_recipients_opens_with_one_of_their_identities_only() {
        let (identity, recipient) = pair();
        let (stranger, _) = pair();
        let recipients = Recipients::parse([("r".to_string(), recipient.as_str())]).unwrap();
        let file = recipients.encrypt(b"{\"kind\":\"List\"}").unwrap();
        let keyring = Keyring::new(vec![stranger.clone(), identity]);
        assert_eq!(
            keyring.open_file("f", &file).unwrap(),
            b"{\"kind\":\"List\"}"
        );
        let wrong = Keyring::new(vec![stranger]);
        let err = wrong.open_file("file a.json.age", &file).unwrap_err();
        assert!(err.is_locked(), "{err}");
        let none = Keyring::default()
            .open_file("file a.json.age", &file)
            .unwrap_err();
        assert!(none.to_string().contains("--identity"), "{none}");
        let mut bad = file.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            Keyring::new(vec![x25519::Identity::generate()]).open_file("f", &bad),
            Err(SealError::NoMatchingIdentity { .. })
        ));
    }

    #[test]
    fn identity_files_never_quote_a_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.txt");
        std::fs::write(
            &path,
            "# created: now\nAGE-SECRET-KEY-1NOTAKEYBUTSECRETLOOKING\n",
        )
        .unwrap();
        let err = Keyring::load(std::slice::from_ref(&path))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains("NOTAKEY"), "{err}");
        let (identity, _) = pair();
        use age::secrecy::ExposeSecret;
        std::fs::write(&path, format!("{}\n", identity.to_string().expose_secret())).unwrap();
        assert_eq!(Keyring::load(&[path]).unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_sealed_object_opens_with_an_identity_of_its_run_only() {
        use crate::store::{DynBackend, MemoryBackend, StoreConfig};
        let (identity, recipient) = pair();
        let (stranger, _) = pair();
        let cache = tempfile::tempdir().unwrap();
        let backend: DynBackend = std::sync::Arc::new(MemoryBackend::default());
        let store = Store::open(backend, cache.path(), StoreConfig::default())
            .await
            .unwrap();
        let encryption = Encryption {
            recipients: Recipients::parse([("r".to_string(), recipient.as_str())]).unwrap(),
            resources: vec!["secrets".to_string()],
        };
        let sealer = Sealer::open(&store, &encryption).await.unwrap();
        let plaintext = br#"{"kind":"Secret","data":{"p":"aHVudGVyMg=="}}"#;
        let id = sealer.id_of(plaintext);
        assert_ne!(id, ObjectId::of(plaintext), "a sealed id is keyed");
        let blob = Bytes::from(sealer.seal_object(&id, plaintext).unwrap());
        assert!(sealed::matches(&id, &blob));
        assert!(!blob.windows(8).any(|w| w == b"aHVudGVy"));

        let keyring = Keyring::new(vec![stranger.clone(), identity]);
        let opened = keyring.open_object(&store, "o", &id, blob.clone()).await;
        assert_eq!(&opened.unwrap()[..], plaintext);
        // The same cache and recipients give the same id in the next run, with a new key.
        let next = Sealer::open(&store, &encryption).await.unwrap();
        assert_eq!(next.id_of(plaintext), id);
        assert_ne!(next.data_reference, sealer.data_reference);

        let wrong = Keyring::new(vec![stranger]);
        let err = wrong.open_object(&store, "o", &id, blob.clone()).await;
        assert!(err.unwrap_err().is_locked());
        let none = Keyring::default()
            .open_object(&store, "o", &id, blob.clone())
            .await;
        assert!(matches!(none, Err(SealError::NoIdentity { .. })));
        // Plain objects pass through without a key.
        let plain = Bytes::from_static(b"{}");
        let opened = Keyring::default()
            .open_object(&store, "o", &ObjectId::of(b"{}"), plain.clone())
            .await;
        assert_eq!(opened.unwrap(), plain);
    }
}
