//! Micro benches of the per-object work of a snapshot, on the objects the simulated API
//! server generates (every common kind, with the fields a real server adds): sanitizing with
//! the default rules (`Rules::apply`), canonical JSON (`canonical::to_vec`), and the whole
//! per-object path from list-item bytes to canonical bytes (parse, sanitize, serialize).
//!
//! `KUBE_AUTOSAVE_BENCH_OBJECTS` sets the size of the generated cluster (default 10,000).

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kube_autosave::kube::ResourceType;
use kube_autosave::snapshot::{Rules, canonical};
use serde_json::Value;

fn object_count() -> usize {
    std::env::var("KUBE_AUTOSAVE_BENCH_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// The simulated cluster's objects as list items (without `apiVersion`/`kind`, as built-in
/// kinds come in lists), each with its resource type.
fn fixture() -> Vec<(ResourceType, Value)> {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let sim = kube_sim::SimServer::start(kube_sim::SimConfig {
            objects: object_count(),
            ..kube_sim::SimConfig::default()
        })
        .await
        .expect("simulated API server");
        sim.objects()
            .into_iter()
            .filter_map(|key| {
                let mut value = sim.object(&key)?;
                let map = value.as_object_mut()?;
                map.remove("apiVersion");
                map.remove("kind");
                let rt = test_support::resource_type_of(&key);
                Some((rt, value))
            })
            .collect()
    })
}

fn bench_snapshot(c: &mut Criterion) {
    let objects = fixture();
    let rules = Rules::default();
    let items: Vec<(ResourceType, Vec<u8>)> = objects
        .iter()
        .map(|(rt, v)| (rt.clone(), serde_json::to_vec(v).expect("JSON")))
        .collect();
    let raw_bytes: u64 = items.iter().map(|(_, b)| b.len() as u64).sum();
    let sanitized: Vec<Value> = objects
        .iter()
        .filter_map(|(rt, v)| {
            let mut v = v.clone();
            rules.apply(rt, &mut v).ok().map(|_| v)
        })
        .collect();
    let sanitized_bytes: u64 = sanitized
        .iter()
        .map(|v| canonical::to_vec(v).len() as u64)
        .sum();
    let n = objects.len();

    let mut group = c.benchmark_group("snapshot");
    group.sample_size(10);

    group.throughput(Throughput::Bytes(raw_bytes));
    group.bench_function(BenchmarkId::new("sanitize", n), |b| {
        b.iter_batched(
            || objects.clone(),
            |mut objects| {
                for (rt, v) in &mut objects {
                    let _ = std::hint::black_box(rules.apply(rt, v));
                }
                objects
            },
            BatchSize::LargeInput,
        )
    });

    group.throughput(Throughput::Bytes(sanitized_bytes));
    group.bench_function(BenchmarkId::new("canonical_json", sanitized.len()), |b| {
        b.iter(|| {
            for v in &sanitized {
                std::hint::black_box(canonical::to_vec(v));
            }
        })
    });

    group.throughput(Throughput::Bytes(raw_bytes));
    group.bench_function(BenchmarkId::new("parse_sanitize_canonical", n), |b| {
        b.iter(|| {
            for (rt, bytes) in &items {
                let mut v: Value = serde_json::from_slice(bytes).expect("JSON");
                if rules.apply(rt, &mut v).is_ok() {
                    std::hint::black_box(canonical::to_vec(&v));
                }
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_snapshot);
criterion_main!(benches);
