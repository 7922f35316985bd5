//! Size: a large cluster listed page by page, with throughput figures.

use std::time::Instant;

use std::time::Duration;

use kube_sim::SimConfig;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::common::*;

#[derive(Deserialize)]
struct PageMeta {
    #[serde(rename = "continue")]
    cont: Option<String>,
}

/// A page, parsed only as far as needed: the client's JSON parsing would otherwise dominate
/// the measurement.
#[derive(Deserialize)]
struct Page {
    metadata: PageMeta,
    items: Vec<IgnoredAny>,
}

/// Lists every listable resource cluster-wide with `limit`, through kube, each at the first
/// version of its group that serves it; returns (objects, bytes, slowest page).
async fn list_everything(c: &kube::Client, limit: usize) -> (usize, usize, Duration) {
    let mut paths = Vec::new();
    let core = get_json(c, "/api/v1").await;
    for r in core["resources"].as_array().unwrap() {
        if r["verbs"].as_array().unwrap().iter().any(|v| v == "list")
            && !r["name"].as_str().unwrap().contains('/')
        {
            paths.push(format!("/api/v1/{}", r["name"].as_str().unwrap()));
        }
    }
    let apis = get_json(c, "/apis").await;
    for g in apis["groups"].as_array().unwrap() {
        let name = g["name"].as_str().unwrap();
        if name == "metrics.k8s.io" || name == "events.k8s.io" {
            continue; // not stored objects / the same events again
        }
        let mut listed = std::collections::BTreeSet::new();
        for v in g["versions"].as_array().unwrap() {
            let gv = v["groupVersion"].as_str().unwrap();
            for r in get_json(c, &format!("/apis/{gv}")).await["resources"]
                .as_array()
                .unwrap()
            {
                let name = r["name"].as_str().unwrap();
                if r["verbs"].as_array().unwrap().iter().any(|v| v == "list")
                    && !name.contains('/')
                    && listed.insert(name.to_string())
                {
                    paths.push(format!("/apis/{gv}/{name}"));
                }
            }
        }
    }
    let mut objects = 0;
    let mut bytes = 0;
    let mut slowest = Duration::ZERO;
    for p in paths {
        let mut cont: Option<String> = None;
        loop {
            let url = match &cont {
                Some(t) => format!("{p}?limit={limit}&continue={}", urlencode(t)),
                None => format!("{p}?limit={limit}"),
            };
            let t = Instant::now();
            let r = get(c, &url).await;
            slowest = slowest.max(t.elapsed());
            assert_eq!(r.status, 200, "{url}");
            bytes += r.body.len();
            let page: Page = serde_json::from_slice(&r.body).unwrap();
            objects += page.items.len();
            cont = page.metadata.cont;
            if cont.is_none() {
                break;
            }
        }
    }
    (objects, bytes, slowest)
}

async fn run(n: usize, concurrency: usize) {
    let t = Instant::now();
    let server = start(SimConfig {
        objects: n,
        ..Default::default()
    })
    .await;
    let generated = t.elapsed();
    let total = server.objects().len();
    assert_eq!(total, n);
    let c = client(&server).await;
    let t = Instant::now();
    let (objects, bytes, slowest) = list_everything(&c, 500).await;
    let single = t.elapsed();
    assert_eq!(objects, total);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let c = c.clone();
        tasks.push(tokio::spawn(async move { list_everything(&c, 500).await }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().0, total);
    }
    let parallel = t.elapsed();
    let mb = bytes as f64 / 1e6;
    println!(
        "{n} objects ({mb:.0} MB of JSON, {:.1} KiB/object): generated in {generated:.1?}; one paged list of everything (limit 500) {single:.2?} = {:.0} objects/s, {:.0} MB/s, slowest page {slowest:.1?}; {concurrency} concurrent lists {parallel:.2?} = {:.0} objects/s, {:.0} MB/s",
        bytes as f64 / objects as f64 / 1024.0,
        objects as f64 / single.as_secs_f64(),
        mb / single.as_secs_f64(),
        (objects * concurrency) as f64 / parallel.as_secs_f64(),
        mb * concurrency as f64 / parallel.as_secs_f64(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_objects() {
    run(20_000, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "large: run with --ignored, preferably with --release"]
async fn hundred_thousand_objects() {
    run(100_000, 4).await;
}
