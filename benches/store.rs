//! Micro benches of the store's write path on realistic Kubernetes-like JSON objects
//! (0.5-20 KiB): BLAKE3 hashing, zstd compression, sled index inserts, and the three
//! together through a store writer (in-memory backend, so the network is not measured).
//!
//! `KUBE_AUTOSAVE_BENCH_OBJECTS` sets the number of objects (default 100,000).

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kube_autosave::store::pack::{IndexFile, IndexedBlob, IndexedPack, PackBuilder};
use kube_autosave::store::{Cache, IndexId, MemoryBackend, ObjectId, PackId, Store, StoreConfig};
use test_support::objects;

fn object_count() -> u64 {
    std::env::var("KUBE_AUTOSAVE_BENCH_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn fixture() -> Vec<Vec<u8>> {
    (0..object_count())
        .map(|n| objects::object(42, n))
        .collect()
}

fn bench_store(c: &mut Criterion) {
    let objects = fixture();
    let bytes: u64 = objects.iter().map(|o| o.len() as u64).sum();
    let n = objects.len();
    let mut group = c.benchmark_group("store");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes));

    group.bench_function(BenchmarkId::new("hash", n), |b| {
        b.iter(|| {
            for o in &objects {
                std::hint::black_box(ObjectId::of(o));
            }
        })
    });

    group.bench_function(BenchmarkId::new("compress", n), |b| {
        b.iter(|| {
            let mut builder = PackBuilder::new(3).unwrap();
            for o in &objects {
                builder.add(ObjectId::from_bytes([0; 32]), o).unwrap();
                if builder.len() > 4 << 20 {
                    std::hint::black_box(builder.seal().unwrap());
                }
            }
            std::hint::black_box(builder.seal().unwrap());
        })
    });

    let ids: Vec<ObjectId> = objects.iter().map(|o| ObjectId::of(o)).collect();
    let index = IndexFile::new(vec![IndexedPack {
        id: PackId::of(b"pack"),
        size: 0,
        blobs: ids
            .iter()
            .enumerate()
            .map(|(i, id)| IndexedBlob {
                id: *id,
                offset: i as u64 * 1000,
                length: 1000,
                raw_offset: 0,
                raw_length: 3000,
            })
            .collect(),
    }]);
    group.bench_function(BenchmarkId::new("index-insert", n), |b| {
        b.iter_with_setup(
            || {
                let dir = tempfile::tempdir().unwrap();
                let cache = Cache::open(&dir.path().join("index")).unwrap();
                (dir, cache)
            },
            |(dir, cache)| {
                cache
                    .insert_index_file(&IndexId::of(b"index"), &index)
                    .unwrap();
                drop(cache);
                drop(dir);
            },
        )
    });

    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&dir.path().join("lookup")).unwrap();
    cache
        .insert_index_file(&IndexId::of(b"index"), &index)
        .unwrap();
    group.bench_function(BenchmarkId::new("index-lookup", n), |b| {
        b.iter(|| {
            for id in &ids {
                std::hint::black_box(cache.contains(id).unwrap());
            }
        })
    });

    let runtime = tokio::runtime::Runtime::new().unwrap();
    group.bench_function(BenchmarkId::new("hash+compress+index", n), |b| {
        b.iter_with_setup(
            || tempfile::tempdir().unwrap(),
            |cache_dir| {
                runtime.block_on(async {
                    let store = Store::open(
                        Arc::new(MemoryBackend::new()),
                        cache_dir.path(),
                        StoreConfig::default(),
                    )
                    .await
                    .unwrap();
                    let mut writer = store.writer().unwrap();
                    for o in &objects {
                        writer.add(o).await.unwrap();
                    }
                    let stats = writer.finish().await.unwrap();
                    assert_eq!(stats.new_objects as usize, objects.len());
                    std::hint::black_box(stats)
                })
            },
        )
    });
    group.finish();

    // The compression ratio, for the record.
    let mut builder = PackBuilder::new(3).unwrap();
    let mut compressed = 0;
    for o in &objects {
        builder.add(ObjectId::from_bytes([0; 32]), o).unwrap();
        if builder.len() > 4 << 20 {
            compressed += builder.seal().unwrap().data.len();
        }
    }
    compressed += builder.seal().unwrap().data.len();
    println!(
        "compression: {n} objects, {bytes} raw bytes -> {compressed} compressed ({:.2}x)",
        bytes as f64 / compressed as f64
    );
}

criterion_group!(benches, bench_store);
criterion_main!(benches);
