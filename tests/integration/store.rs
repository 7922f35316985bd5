//! The content-addressed store: the backend conformance suite (S3 on loopback, a local
//! directory, memory) and the store's promises — each object uploaded once, also after a
//! restart or a lost local index; concurrent writers; corruption detected on read; errors a
//! user can act on; a store that stays whole when packs vanish from the bucket or local
//! copies are damaged, with local copies kept under their cap.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use kube_autosave::job::{JobReport, JobSettings};
use kube_autosave::store::wrappers::{CountingBackend, RequestCounts};
use kube_autosave::store::{
    Backend, BackendExt, DynBackend, Folder, IndexFile, LocalBackend, MemoryBackend, ObjectId,
    PackId, PrefixBackend, PutOutcome, RemoteFile, S3Backend, S3Options, Store, StoreConfig,
    StoreError,
};

use crate::support::cluster::Cluster;
use crate::support::{self, S3Server, objects, s3_server};

// ---------------------------------------------------------------------------------------------
// Conformance: every backend behaves the same.

async fn conformance(backend: DynBackend) {
    let b = backend.as_ref();
    let name = b.describe();

    // put / get / overwrite
    b.put("a/one", Bytes::from_static(b"first")).await.unwrap();
    assert_eq!(&b.get("a/one").await.unwrap()[..], b"first", "{name}");
    b.put("a/one", Bytes::from_static(b"second")).await.unwrap();
    assert_eq!(&b.get("a/one").await.unwrap()[..], b"second", "{name}");

    // missing keys
    assert!(
        b.get("a/missing").await.unwrap_err().is_not_found(),
        "{name}"
    );
    assert_eq!(b.head("a/missing").await.unwrap(), None, "{name}");
    assert_eq!(b.get_opt("a/missing").await.unwrap(), None, "{name}");

    // put-if-absent never replaces
    assert_eq!(
        b.put_if_absent("a/cas", Bytes::from_static(b"v1"))
            .await
            .unwrap(),
        PutOutcome::Created,
        "{name}"
    );
    assert_eq!(
        b.put_if_absent("a/cas", Bytes::from_static(b"v2"))
            .await
            .unwrap(),
        PutOutcome::AlreadyExists,
        "{name}"
    );
    assert_eq!(&b.get("a/cas").await.unwrap()[..], b"v1", "{name}");

    // head and ranges
    let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    b.put("b/range", Bytes::from(data.clone())).await.unwrap();
    let meta = b.head("b/range").await.unwrap().unwrap();
    assert_eq!(
        (meta.key.as_str(), meta.size),
        ("b/range", 10_000),
        "{name}"
    );
    assert_eq!(
        &b.get_range("b/range", 100..356).await.unwrap()[..],
        &data[100..356],
        "{name}"
    );
    assert_eq!(
        &b.get_range("b/range", 9_990..10_000).await.unwrap()[..],
        &data[9_990..],
        "{name}"
    );

    // server-side copy
    b.copy("b/range", "c/copied").await.unwrap();
    assert_eq!(&b.get("c/copied").await.unwrap()[..], &data[..], "{name}");
    b.copy("a/one", "c/copied").await.unwrap();
    assert_eq!(
        &b.get("c/copied").await.unwrap()[..],
        b"second",
        "{name}: copy replaces"
    );
    assert!(
        b.copy("a/missing", "c/x").await.unwrap_err().is_not_found(),
        "{name}"
    );

    // listing by prefix, across S3's 1000-key pages
    let many: Vec<String> = (0..1100)
        .map(|i| format!("list/{:02}/k{i:05}", i % 7))
        .collect();
    futures::stream::iter(many.iter())
        .for_each_concurrent(16, |k| async move {
            b.put(k, Bytes::from(k.clone().into_bytes())).await.unwrap();
        })
        .await;
    let listed = b.list_all("list/").await.unwrap();
    let mut expected = many.clone();
    expected.sort();
    assert_eq!(
        listed.iter().map(|m| m.key.clone()).collect::<Vec<_>>(),
        expected,
        "{name}"
    );
    let partial = b.list_all("list/03/k0").await.unwrap();
    assert_eq!(
        partial.len(),
        many.iter().filter(|k| k.starts_with("list/03/k0")).count(),
        "{name}"
    );
    assert!(b.list_all("nothing/").await.unwrap().is_empty(), "{name}");
    let top = b.list_all("a/").await.unwrap();
    assert_eq!(
        top.iter()
            .map(|m| (m.key.as_str(), m.size))
            .collect::<Vec<_>>(),
        vec![("a/cas", 2), ("a/one", 6)],
        "{name}"
    );

    // delete, also of a missing key
    b.delete("a/one").await.unwrap();
    b.delete("a/one").await.unwrap();
    assert_eq!(b.head("a/one").await.unwrap(), None, "{name}");
}

#[tokio::test]
async fn conformance_memory() {
    conformance(Arc::new(MemoryBackend::new())).await;
}

#[tokio::test]
async fn conformance_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    conformance(Arc::new(LocalBackend::new(dir.path()).unwrap())).await;
    // Nothing half-written is left behind.
    let leftovers: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".tmp-")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn conformance_local_directory_under_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalBackend::new(dir.path()).unwrap();
    conformance(Arc::new(PrefixBackend::new(local, "team/cluster"))).await;
    assert!(dir.path().join("team/cluster/a/cas").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_s3_on_loopback() {
    let server = S3Server::start();
    conformance(support::s3_backend(&server, "prefix/cluster").await).await;
    // The keys are where a plain S3 client would look for them.
    assert!(server.bucket_dir().join("prefix/cluster/a/cas").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_over_64_mib_go_up_in_parts_and_read_back_whole() {
    let server = S3Server::start();
    let backend = support::s3_backend(&server, "big").await;
    // 80 MiB that no two parts share: five 16 MiB parts, the last one short.
    let mut data = Vec::with_capacity(80 * 1024 * 1024 + 5);
    let mut rng = objects::Rng::new(7);
    while data.len() < 80 * 1024 * 1024 + 5 {
        data.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    let data = Bytes::from(data);
    backend.put("backup/huge.json", data.clone()).await.unwrap();
    assert_eq!(
        std::fs::metadata(server.bucket_dir().join("big/backup/huge.json"))
            .unwrap()
            .len(),
        data.len() as u64
    );
    assert_eq!(backend.get("backup/huge.json").await.unwrap(), data);
    let tail = backend
        .get_range(
            "backup/huge.json",
            64 * 1024 * 1024 - 3..64 * 1024 * 1024 + 5,
        )
        .await
        .unwrap();
    assert_eq!(tail, data.slice(64 * 1024 * 1024 - 3..64 * 1024 * 1024 + 5));
    // put_if_absent goes the same way, and a second one finds it there.
    for expected in [PutOutcome::Created, PutOutcome::AlreadyExists] {
        assert_eq!(
            backend
                .put_if_absent("store/packs/aa/big", data.clone())
                .await
                .unwrap(),
            expected
        );
    }
    assert_eq!(backend.get("store/packs/aa/big").await.unwrap(), data);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The store on top of a backend.

fn fixture(count: u64) -> Vec<Bytes> {
    (0..count)
        .map(|n| Bytes::from(objects::object(7, n)))
        .collect()
}

async fn counted_s3(server: &S3Server, prefix: &str) -> (DynBackend, Arc<RequestCounts>) {
    let s3 = S3Backend::connect(support::s3_server::BUCKET, &server.options())
        .await
        .unwrap();
    let counting = CountingBackend::new(PrefixBackend::new(s3, prefix));
    let counts = counting.counts();
    (Arc::new(counting), counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_object_is_uploaded_once_across_restarts_and_a_lost_local_index() {
    support::init_logging();
    let server = S3Server::start();
    let cache = tempfile::tempdir().unwrap();
    let objects = fixture(10_000);
    let config = StoreConfig {
        pack_size: 1024 * 1024,
        ..StoreConfig::default()
    };

    // First run: everything is new.
    let (backend, counts) = counted_s3(&server, "c1").await;
    let store = Store::open(backend.clone(), cache.path(), config.clone())
        .await
        .unwrap();
    let (ids, stats) = store
        .put(futures::stream::iter(objects.clone()))
        .await
        .unwrap();
    assert_eq!(stats.objects, 10_000);
    assert_eq!(stats.new_objects, 10_000);
    assert!(stats.packs_written > 1, "{stats:?}");
    assert_eq!(stats.index_files_written, 1);
    assert!(stats.compressed_bytes < stats.raw_bytes / 2, "{stats:?}");
    let first = counts.snapshot();
    assert_eq!(first.puts, stats.packs_written + stats.index_files_written);
    assert_eq!(
        ids,
        objects.iter().map(|o| ObjectId::of(o)).collect::<Vec<_>>()
    );

    // Same objects again, same process: no PUT at all.
    let (_, again) = store
        .put(futures::stream::iter(objects.clone()))
        .await
        .unwrap();
    assert_eq!((again.new_objects, again.packs_written), (0, 0));
    assert_eq!(counts.snapshot().puts, first.puts);
    drop(store);

    // After a restart (the local index reopened from disk): still no PUT.
    let store = Store::open(backend.clone(), cache.path(), config.clone())
        .await
        .unwrap();
    let before = counts.snapshot();
    let (_, again) = store
        .put(futures::stream::iter(objects.clone()))
        .await
        .unwrap();
    assert_eq!(again.new_objects, 0);
    assert_eq!(counts.snapshot().since(&before).puts, 0);
    drop(store);

    // After the local index was deleted: rebuilt from the index files, still no PUT.
    std::fs::remove_dir_all(cache.path()).unwrap();
    let before = counts.snapshot();
    let store = Store::open(backend.clone(), cache.path(), config.clone())
        .await
        .unwrap();
    let rebuilt = counts.snapshot().since(&before);
    assert_eq!(rebuilt.gets, 1, "one index file read back: {rebuilt:?}");
    let (_, again) = store
        .put(futures::stream::iter(objects.clone()))
        .await
        .unwrap();
    assert_eq!(again.new_objects, 0);
    assert_eq!(counts.snapshot().since(&before).puts, 0);

    // And every object reads back as it went in.
    for (id, object) in ids.iter().zip(&objects).step_by(97) {
        assert_eq!(&store.get(id).await.unwrap(), object);
    }
    let some: Vec<ObjectId> = ids.iter().copied().step_by(13).collect();
    let read: Vec<_> = store.get_many(some.clone()).collect::<Vec<_>>().await;
    assert_eq!(read.len(), some.len());
    for item in read {
        let (id, bytes) = item.unwrap();
        assert_eq!(ObjectId::of(&bytes), id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_with_overlapping_objects_both_succeed() {
    let server = S3Server::start();
    let backend = support::s3_backend(&server, "shared").await;
    let (cache_a, cache_b, cache_c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let config = StoreConfig {
        pack_size: 256 * 1024,
        ..StoreConfig::default()
    };
    let all = fixture(3_000);
    let (first, second) = (all[..2_000].to_vec(), all[1_000..].to_vec());
    let store_a = Store::open(backend.clone(), cache_a.path(), config.clone())
        .await
        .unwrap();
    let store_b = Store::open(backend.clone(), cache_b.path(), config.clone())
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        tokio::spawn(async move { store_a.put(futures::stream::iter(first)).await }),
        tokio::spawn(async move { store_b.put(futures::stream::iter(second)).await }),
    );
    let (_, stats_a) = a.unwrap().unwrap();
    let (_, stats_b) = b.unwrap().unwrap();
    assert_eq!((stats_a.new_objects, stats_b.new_objects), (2_000, 2_000));

    // A third reader sees both index files and every object intact.
    let reader = Store::open(backend.clone(), cache_c.path(), config)
        .await
        .unwrap();
    assert_eq!(reader.cache().object_count(), 3_000);
    let ids: Vec<ObjectId> = all.iter().map(|o| ObjectId::of(o)).collect();
    let read: std::collections::HashMap<ObjectId, Bytes> = reader
        .get_many(ids.clone())
        .map(|r| r.unwrap())
        .collect()
        .await;
    for (id, object) in ids.iter().zip(&all) {
        assert_eq!(&read[id], object);
    }
    for (id, object) in ids.iter().zip(&all).step_by(101) {
        assert_eq!(&reader.get(id).await.unwrap(), object);
    }
}

#[tokio::test]
async fn a_flipped_byte_in_a_pack_is_detected_and_names_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let local = LocalBackend::new(dir.path()).unwrap();
    let store = Store::open(Arc::new(local), cache.path(), StoreConfig::default())
        .await
        .unwrap();
    let objects = fixture(50);
    let (ids, _) = store.put(futures::stream::iter(objects)).await.unwrap();

    let victim = ids[17];
    let location = store.location(&victim).await.unwrap();
    let pack_path = dir.path().join(RemoteFile::Pack(&location.pack).key());
    let mut pack = std::fs::read(&pack_path).unwrap();
    pack[(location.offset + u64::from(location.length) / 2) as usize] ^= 0x01;
    // Packs are immutable and hard-linkable: replace the file rather than edit it in place.
    std::fs::remove_file(&pack_path).unwrap();
    std::fs::write(&pack_path, pack).unwrap();

    let err = store.get(&victim).await.unwrap_err();
    match &err {
        StoreError::Corrupt { object, pack, .. } => {
            assert_eq!((object, pack), (&victim, &location.pack));
        }
        other => panic!("expected a corruption error, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains(&victim.to_string()), "{message}");
    assert!(message.contains(&location.pack.to_hex()), "{message}");
    // Objects compressed in other frames of the same pack are still fine.
    let elsewhere = ids
        .iter()
        .find(|id| {
            let other = futures::executor::block_on(store.location(id)).unwrap();
            other.pack == location.pack && other.offset != location.offset
        })
        .expect("a 50-object pack has more than one frame");
    assert!(store.get(elsewhere).await.is_ok());
}

#[tokio::test]
async fn packs_are_written_before_the_index_that_points_at_them() {
    // Record the order of writes with a wrapper over the in-memory backend.
    #[derive(Debug, Default)]
    struct Recording {
        inner: MemoryBackend,
        writes: std::sync::Mutex<Vec<String>>,
    }
    #[async_trait::async_trait]
    impl Backend for Recording {
        fn describe(&self) -> String {
            "recording".into()
        }
        async fn put(&self, key: &str, data: Bytes) -> kube_autosave::store::StoreResult<()> {
            self.writes.lock().unwrap().push(key.to_string());
            self.inner.put(key, data).await
        }
        async fn put_if_absent(
            &self,
            key: &str,
            data: Bytes,
        ) -> kube_autosave::store::StoreResult<PutOutcome> {
            self.writes.lock().unwrap().push(key.to_string());
            self.inner.put_if_absent(key, data).await
        }
        async fn create(
            &self,
            key: &str,
            data: Bytes,
        ) -> kube_autosave::store::StoreResult<PutOutcome> {
            self.writes.lock().unwrap().push(key.to_string());
            self.inner.create(key, data).await
        }
        async fn get(&self, key: &str) -> kube_autosave::store::StoreResult<Bytes> {
            self.inner.get(key).await
        }
        async fn get_range(
            &self,
            key: &str,
            range: std::ops::Range<u64>,
        ) -> kube_autosave::store::StoreResult<Bytes> {
            self.inner.get_range(key, range).await
        }
        async fn head(
            &self,
            key: &str,
        ) -> kube_autosave::store::StoreResult<Option<kube_autosave::store::ObjectMeta>> {
            self.inner.head(key).await
        }
        async fn copy(&self, from: &str, to: &str) -> kube_autosave::store::StoreResult<()> {
            self.inner.copy(from, to).await
        }
        fn list(
            &self,
            prefix: &str,
        ) -> futures::stream::BoxStream<
            '_,
            kube_autosave::store::StoreResult<kube_autosave::store::ObjectMeta>,
        > {
            self.inner.list(prefix)
        }
        async fn delete(&self, key: &str) -> kube_autosave::store::StoreResult<()> {
            self.inner.delete(key).await
        }
    }

    let recording = Arc::new(Recording::default());
    let cache = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        pack_size: 64 * 1024,
        index_every_packs: 3,
        ..StoreConfig::default()
    };
    let store = Store::open(recording.clone(), cache.path(), config)
        .await
        .unwrap();
    let (_, stats) = store
        .put(futures::stream::iter(fixture(400)))
        .await
        .unwrap();
    assert!(stats.index_files_written >= 2, "{stats:?}");

    let writes = recording.writes.lock().unwrap().clone();
    let position = |key: &str| writes.iter().position(|w| w == key).unwrap();
    for (i, key) in writes.iter().enumerate() {
        let Some(name) = Folder::Index.name_in(key) else {
            continue;
        };
        let id = name.parse().unwrap();
        let index = IndexFile::decode(key, &id, &recording.inner.get(key).await.unwrap()).unwrap();
        for pack in &index.packs {
            assert!(
                position(&RemoteFile::Pack(&pack.id).key()) < i,
                "index {key} was written before pack {}",
                pack.id
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The local index is a cache.

#[tokio::test]
async fn a_corrupt_local_index_is_rebuilt_and_a_locked_one_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let backend: DynBackend = Arc::new(LocalBackend::new(dir.path()).unwrap());
    let store = Store::open(backend.clone(), cache.path(), StoreConfig::default())
        .await
        .unwrap();
    let objects = fixture(100);
    store
        .put(futures::stream::iter(objects.clone()))
        .await
        .unwrap();

    // Held by another opener (sled allows one process at a time): a clear error.
    let err = Store::open(backend.clone(), cache.path(), StoreConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::IndexLocked { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("in use by another kube-autosave process")
    );
    drop(store);

    // Garbage in every file of the sled directory: rebuilt, and nothing is uploaded again.
    for path in walk(cache.path()) {
        std::fs::write(&path, b"this is not a sled database").unwrap();
    }
    let counting = Arc::new(CountingBackend::new(backend.clone()));
    let counts = counting.counts();
    let store = Store::open(counting, cache.path(), StoreConfig::default())
        .await
        .unwrap();
    assert_eq!(store.cache().object_count(), 100);
    let (_, stats) = store.put(futures::stream::iter(objects)).await.unwrap();
    assert_eq!(stats.new_objects, 0);
    assert_eq!(counts.snapshot().puts, 0);
}

// ---------------------------------------------------------------------------------------------
// Errors a user can act on.

#[tokio::test]
async fn an_unreachable_endpoint_says_so_and_names_it() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = S3Options {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        path_style: true,
        static_credentials: Some(("a".into(), "b".into())),
        ..S3Options::default()
    };
    let s3 = S3Backend::connect("backups", &options).await.unwrap();
    let err = s3.put("k", Bytes::from_static(b"x")).await.unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("could not connect to the endpoint URL"),
        "{message}"
    );
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(err.is_outage());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_and_a_missing_bucket_are_named() {
    let server = S3Server::start();
    let mut options = server.options();
    options.static_credentials = Some((support::s3_server::ACCESS_KEY.into(), "wrong".into()));
    let s3 = S3Backend::connect(support::s3_server::BUCKET, &options)
        .await
        .unwrap();
    let err = s3.put("k", Bytes::from_static(b"x")).await.unwrap_err();
    assert!(matches!(err, StoreError::AccessDenied { .. }), "{err:?}");
    assert!(
        err.to_string().contains("check the AWS credentials"),
        "{err}"
    );
    assert!(
        !err.to_string().contains("wrong"),
        "the secret must not be echoed: {err}"
    );

    // Opening a store lists its index files first: that is where a missing bucket shows.
    let s3 = S3Backend::connect("no-such-bucket", &server.options())
        .await
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let err = Store::open(Arc::new(s3), cache.path(), StoreConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NoSuchBucket { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-bucket"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_outage_fails_writes_with_a_transient_error_and_they_work_again_after() {
    let server = S3Server::start();
    let backend = support::s3_backend(&server, "outage").await;
    backend
        .put("before", Bytes::from_static(b"1"))
        .await
        .unwrap();
    server.stop();
    let err = backend
        .put("during", Bytes::from_static(b"2"))
        .await
        .unwrap_err();
    assert!(err.is_outage(), "{err:?}");
    assert!(err.to_string().contains(&server.endpoint()), "{err}");
    server.restart();
    backend
        .put("after", Bytes::from_static(b"3"))
        .await
        .unwrap();
    assert_eq!(&backend.get("before").await.unwrap()[..], b"1");
    assert_eq!(backend.head("during").await.unwrap(), None);
}

/// Names chosen by writers (manifests, export records, the folder's cluster identity) are
/// created once, also on an S3-compatible store that takes `If-None-Match: *` and overwrites
/// anyway: the backend finds that out with a probe and reserves the name with a lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_created_once_also_on_a_store_that_ignores_conditional_writes() {
    let s3 = S3Server::start();
    for ignores in [false, true] {
        s3.ignore_conditional_writes(ignores);
        let prefix = format!("ignores-{ignores}");
        // Two machines, each with its own client, race for one name with different bytes.
        let one = crate::support::s3_backend(&s3, &prefix).await;
        let two = crate::support::s3_backend(&s3, &prefix).await;
        let key = "store/snapshots/26-12-02_10-00-00";
        let (a, b) = tokio::join!(
            one.create(key, Bytes::from_static(b"one")),
            two.create(key, Bytes::from_static(b"two"))
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let winner: &[u8] = match (a, b) {
            (PutOutcome::Created, PutOutcome::AlreadyExists) => b"one",
            (PutOutcome::AlreadyExists, PutOutcome::Created) => b"two",
            other => panic!("ignores {ignores}: {other:?}"),
        };
        assert_eq!(&one.get(key).await.unwrap()[..], winner);
        // Later creates find it; content-addressed writes still work.
        assert_eq!(
            two.create(key, Bytes::from_static(b"late")).await.unwrap(),
            PutOutcome::AlreadyExists
        );
        assert_eq!(&one.get(key).await.unwrap()[..], winner);
        // Nothing but the name is left: no probe, no lease.
        assert_eq!(
            one.list_keys("").await.unwrap(),
            vec![key.to_string()],
            "ignores {ignores}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The store stays whole in a shared, imperfect bucket: the local index is checked against the
// packs at the destination, and local pack copies are disposable.

/// Snapshot jobs of a simulated cluster into `s3://backups/team`, cluster `prod`.
struct Jobs {
    s3: S3Server,
    cluster: Cluster,
    settings: JobSettings,
    dir: tempfile::TempDir,
}

impl Jobs {
    async fn new(objects: usize, seed: u64, store: StoreConfig) -> Jobs {
        let s3 = S3Server::start();
        let cluster = Cluster::start(objects, seed).await;
        let dir = tempfile::tempdir().unwrap();
        let settings = JobSettings {
            store,
            ..support::job_settings(&s3, &cluster, &dir.path().join("job"))
        };
        Jobs {
            s3,
            cluster,
            settings,
            dir,
        }
    }

    async fn snapshot(&self) -> JobReport {
        support::snapshot_job(&self.settings).await
    }

    /// The job's local pack copies.
    fn packs_dir(&self) -> std::path::PathBuf {
        std::fs::read_dir(&self.settings.cache_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "packs"))
            .expect("a folder of local pack copies")
    }

    /// The binary on this destination, with the local state in `cache` under the test's
    /// folder.
    fn run(&self, cache: &str, args: &[&str]) -> std::process::Output {
        let dir = self.dir.path();
        let mut command = support::binary(dir);
        support::with_s3(&mut command, &self.s3)
            .args(["--to", "s3://backups/team", "--cluster-name", "prod"])
            .args(["--cache-dir", &dir.join(cache).display().to_string()])
            .args(args);
        command.output().unwrap()
    }

    async fn delete(&self, key: &str) {
        s3_server::delete(&self.s3, &format!("team/prod/{key}")).await;
    }
}

fn output_text(output: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The local pack copies in `dir`: name and size.
fn local_copies(dir: &std::path::Path) -> Vec<(PackId, u64)> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let pack = e.file_name().to_string_lossy().parse().ok()?;
            Some((pack, e.metadata().unwrap().len()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_deleted_at_the_destination_is_uploaded_again_by_the_next_snapshot() {
    support::init_logging();
    let jobs = Jobs::new(
        1_000,
        61,
        StoreConfig {
            pack_size: 64 * 1024,
            ..StoreConfig::default()
        },
    )
    .await;
    let first = jobs.snapshot().await.manifest;

    // A lifecycle rule takes one pack of the cluster's objects.
    let reader =
        support::reader_store(&jobs.s3, "team/prod", &jobs.dir.path().join("reader")).await;
    let pack = reader.location(&first.objects[0].id).await.unwrap().pack;
    let mut lost = BTreeSet::new();
    for object in &first.objects {
        if reader.location(&object.id).await.unwrap().pack == pack {
            lost.insert(object.id);
        }
    }
    drop(reader);
    jobs.delete(&RemoteFile::Pack(&pack).key()).await;

    // The next snapshot, with the job's local index that still lists the pack: its objects
    // are uploaded again rather than referred to.
    let second = jobs.snapshot().await;
    let stats = second.manifest.stats.store;
    assert!(
        stats.new_objects as usize >= lost.len() && !lost.is_empty(),
        "{} objects were lost with the pack, {} uploaded again: {stats:?}",
        lost.len(),
        stats.new_objects
    );

    // From a machine that has never seen the store, the new snapshot verifies clean; and as
    // the objects were uploaded again, so does the first one.
    let output = jobs.run("fresh", &["verify", "latest"]);
    assert_eq!(output.status.code(), Some(0), "{}", output_text(&output));
    let output = jobs.run("fresh-too", &["verify", "--all"]);
    assert_eq!(output.status.code(), Some(0), "{}", output_text(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_local_pack_copy_is_replaced_from_the_destination() {
    support::init_logging();
    let jobs = Jobs::new(
        1_000,
        62,
        StoreConfig {
            pack_size: 64 * 1024,
            ..StoreConfig::default()
        },
    )
    .await;
    jobs.snapshot().await;

    // Every local copy overwritten with zeros of the same length (a disk that lost them).
    let packs_dir = jobs.packs_dir();
    let zeroed: BTreeSet<PackId> = local_copies(&packs_dir)
        .into_iter()
        .map(|(pack, size)| {
            std::fs::write(packs_dir.join(pack.to_hex()), vec![0u8; size as usize]).unwrap();
            pack
        })
        .collect();
    assert!(zeroed.len() > 2, "{zeroed:?}");

    // Changed objects make the export render files again, from their unchanged objects too,
    // which sit in the damaged copies.
    jobs.cluster.sim.churn(0.05, 7);
    let second = jobs.snapshot().await;
    assert!(second.export.files_uploaded > 0, "{:?}", second.export);

    // The damaged copies the export read were fetched again and are whole; the others wait
    // for their next read, which checks them the same way.
    let repaired = local_copies(&packs_dir)
        .into_iter()
        .filter(|(pack, _)| zeroed.contains(pack))
        .filter(|(pack, _)| {
            PackId::of(&std::fs::read(packs_dir.join(pack.to_hex())).unwrap()) == *pack
        })
        .count();
    assert!(repaired > 0, "the export read none of the damaged copies");
    let output = jobs.run("fresh", &["verify", "latest"]);
    assert_eq!(output.status.code(), Some(0), "{}", output_text(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_pack_copies_stay_under_their_cap() {
    support::init_logging();
    let cap = 160 * 1024;
    let jobs = Jobs::new(
        1_000,
        63,
        StoreConfig {
            pack_size: 48 * 1024,
            local_pack_cache_bytes: cap,
            ..StoreConfig::default()
        },
    )
    .await;
    let mut written = 0;
    for round in 0..4 {
        if round > 0 {
            jobs.cluster.sim.churn(0.05, round);
        }
        // Each export after the first reads packs whose copies were evicted.
        let report = jobs.snapshot().await;
        written += report.manifest.stats.store.compressed_bytes;
        let held: u64 = local_copies(&jobs.packs_dir()).iter().map(|(_, s)| s).sum();
        assert!(held <= cap, "round {round}: {held} bytes of local copies");
    }
    assert!(
        written > cap,
        "the cap was never reached: {written} bytes written"
    );
    let output = jobs.run("job", &["verify", "--all", "--pack-cache-size", "64Ki"]);
    assert_eq!(output.status.code(), Some(0), "{}", output_text(&output));

    // A malformed cap is a configuration error that names where it came from.
    let output = jobs.run("other", &["list", "--pack-cache-size", "12x"]);
    assert_eq!(output.status.code(), Some(2), "{}", output_text(&output));
    assert!(output_text(&output).contains("--pack-cache-size: \"12x\""));
    let mut command = support::binary(jobs.dir.path());
    let output = command
        .args(["list", "--to", "backups"])
        .env("KUBE_AUTOSAVE_PACK_CACHE_SIZE", "1 Gigabyte")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", output_text(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test: prints what checking 10,000 packs costs"]
async fn measure_the_pack_check_on_10_000_packs() {
    let objects = fixture(10_000);
    let config = StoreConfig {
        // One pack per object.
        pack_size: 1,
        uploads_in_flight: 16,
        index_every_packs: 10_000,
        ..StoreConfig::default()
    };
    let server = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let backends: Vec<(&str, DynBackend)> = vec![
        (
            "local directory",
            Arc::new(LocalBackend::new(dir.path()).unwrap()),
        ),
        ("S3 on loopback", support::s3_backend(&server, "many").await),
    ];
    for (name, backend) in backends {
        let cache = tempfile::tempdir().unwrap();
        let store = Store::open(backend.clone(), cache.path(), config.clone())
            .await
            .unwrap();
        let (_, stats) = store
            .put(futures::stream::iter(objects.clone()))
            .await
            .unwrap();
        assert_eq!(stats.packs_written, 10_000);
        drop(store);
        let started = std::time::Instant::now();
        let store = Store::open(backend.clone(), cache.path(), config.clone())
            .await
            .unwrap();
        let open = started.elapsed();
        let mut checks = Vec::new();
        for _ in 0..5 {
            let started = std::time::Instant::now();
            let check = store.check_packs().await.unwrap();
            checks.push(started.elapsed());
            assert_eq!((check.packs_listed, check.packs_gone), (10_000, 0));
        }
        let started = std::time::Instant::now();
        let listed = backend.list_all("store/packs/").await.unwrap().len();
        let list = started.elapsed();
        checks.sort();
        println!(
            "{name}: {listed} packs; open with a warm local index {open:?}; check_packs median \
             {:?} (min {:?}, max {:?}); the LIST requests alone {list:?}",
            checks[2], checks[0], checks[4]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test: prints the local disk use over 20 snapshots"]
async fn measure_local_disk_use_over_20_snapshots() {
    let cap = 256 * 1024;
    let jobs = Jobs::new(
        2_000,
        64,
        StoreConfig {
            pack_size: 64 * 1024,
            local_pack_cache_bytes: cap,
            ..StoreConfig::default()
        },
    )
    .await;
    let (mut written, mut most) = (0, 0);
    for round in 0..20 {
        if round > 0 {
            jobs.cluster.sim.churn(0.02, round);
        }
        let report = jobs.snapshot().await;
        written += report.manifest.stats.store.compressed_bytes;
        let held: u64 = local_copies(&jobs.packs_dir()).iter().map(|(_, s)| s).sum();
        most = most.max(held);
        println!(
            "snapshot {:2}: {:6} new objects, object packs written so far {written:8} bytes, local \
             copies {held:7} bytes",
            round + 1,
            report.manifest.stats.store.new_objects
        );
        assert!(held <= cap);
    }
    println!(
        "cap {cap} bytes: at most {most} bytes of local copies; {written} bytes of object packs \
         written"
    );
}
