//! The plain layout in S3, as `aws s3 ls`/`aws s3 sync` users see it: checked with a plain
//! S3 client, never through the project's own reader. Unchanged files are server-side
//! copies; an interrupted export finishes without redoing what is done.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use kube_autosave::export::{ExportOptions, export};
use kube_autosave::job::{JobProgress, JobReport, JobSettings, open_backend, run_job};
use kube_autosave::repo::Manifest;
use kube_autosave::repo::manifest::{ExportedFile, Transfer};
use kube_autosave::snapshot::take_snapshot;
use kube_autosave::store::wrappers::{CountingBackend, FaultOps, FaultyBackend};
use kube_autosave::store::{DynBackend, SnapshotTime, Store, StoreConfig};
use serde_json::Value;

use crate::support::cluster::Cluster;
use crate::support::s3_server::{self, S3Server};

const PREFIX: &str = "team/prod/backup/";

struct Setup {
    s3: S3Server,
    cluster: Cluster,
    settings: JobSettings,
    _cache: tempfile::TempDir,
}

impl Setup {
    async fn new(objects: usize, seed: u64) -> Setup {
        let s3 = S3Server::start();
        let cluster = Cluster::start(objects, seed).await;
        let cache = tempfile::tempdir().unwrap();
        let settings = crate::support::job_settings(&s3, &cluster, cache.path());
        Setup {
            s3,
            cluster,
            settings,
            _cache: cache,
        }
    }

    async fn backend(&self) -> DynBackend {
        open_backend(
            &self.settings.destination,
            &self.settings.cluster_name,
            &self.settings.s3,
        )
        .await
        .unwrap()
    }

    async fn job(&self) -> JobReport {
        self.job_with_files().await.0
    }

    /// A job, and the plain-layout files its export reported.
    async fn job_with_files(&self) -> (JobReport, Vec<ExportedFile>) {
        // Snapshot names have a resolution of one second.
        tokio::time::sleep(std::time::Duration::from_millis(1050)).await;
        let files = Arc::new(Mutex::new(Vec::new()));
        let seen = files.clone();
        let progress = JobProgress {
            export: Some(Arc::new(move |file: &ExportedFile| {
                seen.lock().unwrap().push(file.clone())
            })),
            ..JobProgress::default()
        };
        let report = run_job(&self.settings, self.backend().await, progress)
            .await
            .expect("snapshot job");
        let files = std::mem::take(&mut *files.lock().unwrap());
        assert_eq!(files.len() as u64, report.export.files);
        (report, files)
    }
}

/// One parsed plain-layout file: (namespace, file name) -> items.
type Layout = BTreeMap<(Option<String>, String), Vec<Value>>;

/// Reads `backup/<ts>/` with a plain S3 client and checks the shape of every key and file.
async fn read_layout(s3: &S3Server, time: &SnapshotTime) -> Layout {
    let client = s3_server::plain_client(s3).await;
    let folder = format!("{PREFIX}{time}/");
    let files = s3_server::read_all(&client, &folder).await;
    assert!(!files.is_empty(), "nothing under {folder}");
    let mut layout = Layout::new();
    for (key, body) in files {
        let rest = key.strip_prefix(&folder).unwrap();
        let parts: Vec<&str> = rest.split('/').collect();
        let (namespace, name) = match parts.as_slice() {
            [name] => (None, name.to_string()),
            [ns, name] => (Some(ns.to_string()), name.to_string()),
            _ => panic!("unexpected key {key}"),
        };
        assert!(name.ends_with(".json"), "{key}");
        let list: Value = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(list["apiVersion"], "v1", "{key}");
        assert_eq!(list["kind"], "List", "{key}");
        let items = list["items"].as_array().unwrap().clone();
        assert!(!items.is_empty(), "{key}: a file with no objects");
        let names: Vec<&str> = items
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap())
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "{key}: items are not sorted by name");
        for item in &items {
            assert!(
                item["apiVersion"].is_string() && item["kind"].is_string(),
                "{key}"
            );
            assert_eq!(
                item["metadata"]["namespace"].as_str(),
                namespace.as_deref(),
                "{key}"
            );
            assert!(item.get("status").is_none(), "{key}");
            for field in [
                "uid",
                "resourceVersion",
                "managedFields",
                "creationTimestamp",
            ] {
                assert!(
                    item["metadata"].get(field).is_none(),
                    "{key}: metadata.{field}"
                );
            }
        }
        let kinds: BTreeSet<&str> = items.iter().map(|i| i["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds.len(), 1, "{key}: one kind per file, got {kinds:?}");
        layout.insert((namespace, name), items);
    }
    layout
}

/// (file name without .json, namespace, name) for every object of a manifest.
fn manifest_objects(manifest: &Manifest) -> BTreeSet<(String, Option<String>, String)> {
    manifest
        .objects
        .iter()
        .map(|o| {
            let rt = manifest.resource_of(o);
            let file = if rt.group == "metrics.k8s.io" {
                format!("{}.{}", rt.resource, rt.group)
            } else {
                rt.resource.clone()
            };
            (file, o.namespace.clone(), o.name.clone())
        })
        .collect()
}

fn layout_objects(layout: &Layout) -> BTreeSet<(String, Option<String>, String)> {
    layout
        .iter()
        .flat_map(|((ns, file), items)| {
            let file = file.trim_end_matches(".json").to_string();
            items.iter().map(move |i| {
                (
                    file.clone(),
                    ns.clone(),
                    i["metadata"]["name"].as_str().unwrap().to_string(),
                )
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plain_layout_matches_the_design_and_the_manifest() {
    let setup = Setup::new(2_000, 21).await;
    let report = setup.job().await;
    let manifest = &report.manifest;
    let time = manifest.time.to_string();
    assert_eq!(time.len(), 17);
    assert_eq!(&time[2..3], "-");
    assert_eq!(&time[8..9], "_");

    let layout = read_layout(&setup.s3, &manifest.time).await;
    let files: BTreeSet<(Option<&str>, &str)> = layout
        .keys()
        .map(|(ns, f)| (ns.as_deref(), f.as_str()))
        .collect();
    // Cluster-scoped at the top, namespaced under the namespace, qualified names where a
    // plural is served by more than one group.
    for top in [
        "namespaces.json",
        "persistentvolumes.json",
        "clusterroles.json",
        "customresourcedefinitions.json",
    ] {
        assert!(files.contains(&(None, top)), "{top} missing: {files:?}");
    }
    assert!(
        files.contains(&(Some("kube-system"), "configmaps.json")),
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .any(|(ns, f)| ns.is_some() && *f == "deployments.json")
    );
    assert!(
        files
            .iter()
            .any(|(ns, f)| ns.is_some() && *f == "widgets.json")
    );
    // Nothing that a create would refuse: the metrics API is left out.
    assert!(
        !files
            .iter()
            .any(|(_, f)| f.ends_with(".metrics.k8s.io.json"))
    );
    assert!(
        !files
            .iter()
            .any(|(_, f)| *f == "events.json" || *f == "events.events.k8s.io.json")
    );

    // Every object of the manifest is in exactly one file, and nothing else is.
    let in_layout = layout_objects(&layout);
    let count: usize = layout.values().map(Vec::len).sum();
    assert_eq!(count, in_layout.len(), "an object appears in two files");
    assert_eq!(in_layout, manifest_objects(manifest));

    // The export is recorded in the repository, and every file was uploaded.
    let cache = tempfile::tempdir().unwrap();
    let reader = crate::support::reader_store(&setup.s3, "team/prod", cache.path()).await;
    let recorded = Manifest::export_record(&reader, &manifest.time)
        .await
        .unwrap()
        .expect("the export is recorded");
    assert_eq!(recorded, report.export);
    let export = &recorded;
    assert_eq!(export.files, layout.len() as u64);
    assert_eq!(export.files_uploaded, layout.len() as u64);
    assert_eq!(report.export.files_copied, 0);
    // And `kubectl apply -f` would take each file's items as they are (checked in the
    // restore tests); here: the server's objects are all there.
    let sim = &setup.cluster.sim;
    let deployment = sim
        .objects()
        .into_iter()
        .find(|k| k.resource == "deployments" && k.namespace.as_deref() != Some("kube-system"))
        .unwrap();
    let file = &layout[&(deployment.namespace.clone(), "deployments.json".to_string())];
    assert!(
        file.iter()
            .any(|i| i["metadata"]["name"] == deployment.name.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_files_are_server_side_copies_and_churn_uploads_only_changed_files() {
    let setup = Setup::new(2_000, 22).await;
    let first = setup.job().await;
    let files = first.export.files;

    // Nothing changed: every plain-layout file is a copy; the only PUTs are the writer's
    // lease, the manifest's root (its listings are all stored already) and the export's
    // record.
    let second = setup.job().await;
    assert_eq!(second.export.files_uploaded, 0);
    assert_eq!(second.export.bytes_uploaded, 0);
    assert_eq!(second.export.files_copied, files);
    assert_eq!(second.requests.copies, files);
    assert_eq!(second.requests.puts, 3, "{:?}", second.requests);
    assert_eq!(second.manifest.stats.store.new_objects, 0);
    let layout_one = read_layout(&setup.s3, &first.manifest.time).await;
    let layout_two = read_layout(&setup.s3, &second.manifest.time).await;
    assert_eq!(layout_one, layout_two);

    // 1 % churn: exactly the files that hold a changed, added or removed object are uploaded.
    let before: BTreeMap<_, _> = second
        .manifest
        .objects
        .iter()
        .map(|o| ((o.resource, o.namespace.clone(), o.name.clone()), o.id))
        .collect();
    setup.cluster.sim.churn(0.01, 5);
    let (third, third_files) = setup.job_with_files().await;
    let after: BTreeMap<_, _> = third
        .manifest
        .objects
        .iter()
        .map(|o| ((o.resource, o.namespace.clone(), o.name.clone()), o.id))
        .collect();
    // The same resources are listed in the same order, so indexes compare.
    assert_eq!(
        second
            .manifest
            .resources
            .iter()
            .map(|r| &r.resource)
            .collect::<Vec<_>>(),
        third
            .manifest
            .resources
            .iter()
            .map(|r| &r.resource)
            .collect::<Vec<_>>()
    );
    let touched: BTreeSet<(u32, Option<String>)> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|(r, ns, _)| (*r, ns.clone()))
        .collect();
    let names = |m: &Manifest, r: u32, ns: &Option<String>| {
        let rt = &m.resources[r as usize].resource;
        let file = if rt.group == "metrics.k8s.io" {
            format!("{}.{}.json", rt.resource, rt.group)
        } else {
            format!("{}.json", rt.resource)
        };
        match ns {
            Some(ns) => format!("{PREFIX}{}/{ns}/{file}", m.time),
            None => format!("{PREFIX}{}/{file}", m.time),
        }
    };
    let expected_uploads: BTreeSet<String> = touched
        .iter()
        .filter(|(r, ns)| after.keys().any(|(r2, ns2, _)| r2 == r && ns2 == ns))
        .map(|(r, ns)| names(&third.manifest, *r, ns))
        .collect();
    let uploaded: BTreeSet<String> = third_files
        .iter()
        .filter(|f| f.how == Transfer::Uploaded)
        .map(|f| format!("team/prod/{}", f.key))
        .collect();
    assert!(!uploaded.is_empty());
    assert_eq!(uploaded, expected_uploads);
    let layout_three = read_layout(&setup.s3, &third.manifest.time).await;
    assert_eq!(
        layout_objects(&layout_three),
        manifest_objects(&third.manifest)
    );
    assert!(third.export.bytes_uploaded < first.export.bytes_uploaded / 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_local_index_still_copies_unchanged_files() {
    let setup = Setup::new(500, 24).await;
    let first = setup.job().await;
    std::fs::remove_dir_all(&setup.settings.cache_dir).unwrap();
    let second = setup.job().await;
    // The store learns its objects from the index files, and the exporter where each file
    // was written from the newest exported snapshot's manifest.
    assert_eq!(second.manifest.stats.store.new_objects, 0);
    assert_eq!(second.export.files_uploaded, 0);
    assert_eq!(second.export.files_copied, first.export.files);
    assert_eq!(second.export.bytes_copied, first.export.bytes_uploaded);
    // The writer's lease, the root and the export's record.
    assert_eq!(second.requests.puts, 3, "{:?}", second.requests);
    assert_eq!(
        read_layout(&setup.s3, &first.manifest.time).await,
        read_layout(&setup.s3, &second.manifest.time).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_export_is_finished_without_redoing_work() {
    let setup = Setup::new(2_000, 23).await;
    let faulty = FaultyBackend::new(CountingBackend::new(setup.backend().await));
    let faults = faulty.state();
    let backend: DynBackend = Arc::new(faulty);
    let store = Store::open(
        backend.clone(),
        &setup.settings.cache_dir,
        StoreConfig::default(),
    )
    .await
    .unwrap();
    let api = setup.cluster.api().await;
    let manifest = take_snapshot(&api, &store, &setup.settings.snapshot, Arc::new(|_| {}))
        .await
        .unwrap();
    let planned = kube_autosave::export::plan(&manifest).len();

    // S3 goes away after 20 more files.
    faults.fail_after_writes(20, FaultOps::Writes);
    let err = export(&store, &manifest, &ExportOptions::default(), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("injected fault"), "{err}");
    let stored = Manifest::load(&store, &manifest.time).await.unwrap();
    assert!(
        !stored.is_exported(),
        "an incomplete export is not recorded as complete"
    );
    let partial = s3_server::read_all(
        &s3_server::plain_client(&setup.s3).await,
        &format!("{PREFIX}{}/", manifest.time),
    )
    .await;
    assert!(
        !partial.is_empty() && partial.len() < planned,
        "{} of {planned}",
        partial.len()
    );

    // Back again: the next job finishes the export first, uploading only what is missing.
    faults.heal();
    drop(store);
    let report = setup.job().await;
    assert_eq!(report.catch_up.finished, vec![manifest.time]);
    assert!(report.catch_up.failed.is_empty());
    let finished = Manifest::load(
        &Store::open(
            setup.backend().await,
            &setup.settings.cache_dir,
            StoreConfig::default(),
        )
        .await
        .unwrap(),
        &manifest.time,
    )
    .await
    .unwrap();
    let record = finished.export.as_ref().unwrap();
    assert_eq!(record.files as usize, planned);
    assert_eq!(
        record.files_uploaded as usize, planned,
        "every file of the first snapshot was uploaded exactly once"
    );
    let layout = read_layout(&setup.s3, &manifest.time).await;
    assert_eq!(layout.len(), planned);
    assert_eq!(layout_objects(&layout), manifest_objects(&finished));
    // The files the interrupted run wrote were not uploaded again: the rerun's PUTs are the
    // missing files and the export's record, then the new (unchanged) snapshot's writer's
    // lease, manifest root and export record.
    assert_eq!(
        report.requests.puts as usize,
        planned - partial.len() + 1 + 3,
        "{:?}",
        report.requests
    );
}

/// The write order, on the requests the S3 server completed: each index file after the
/// packs it lists, each manifest root after the index files of its snapshot, every
/// plain-layout file after its manifest root, and the export record after the last of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_order_holds_on_what_s3_sees() {
    let setup = Setup::new(1_500, 25).await;
    let first = setup.job().await;
    setup.cluster.sim.churn(0.05, 2);
    let second = setup.job().await;
    let writes = setup.s3.writes();
    let base = "team/prod/";
    let at = |key: &str| {
        writes
            .iter()
            .position(|(_, k)| k == key)
            .unwrap_or_else(|| panic!("{key} was never written"))
    };
    let client = s3_server::plain_client(&setup.s3).await;
    let mut index_positions = Vec::new();
    for (position, (_, key)) in writes.iter().enumerate() {
        let Some(name) = key.strip_prefix(&format!("{base}store/index/")) else {
            continue;
        };
        index_positions.push(position);
        let id: kube_autosave::store::IndexId = name.parse().unwrap();
        let bytes = client
            .get_object()
            .bucket(s3_server::BUCKET)
            .key(key)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        let index = kube_autosave::store::IndexFile::decode(key, &id, &bytes).unwrap();
        for pack in &index.packs {
            let pack_key = format!(
                "{base}{}",
                kube_autosave::store::RemoteFile::Pack(&pack.id).key()
            );
            assert!(at(&pack_key) < position, "{pack_key} after {key}");
        }
    }
    assert!(!index_positions.is_empty());
    let mut previous_record = 0;
    for report in [&first, &second] {
        let time = report.manifest.time;
        let root = at(&format!("{base}store/snapshots/{time}"));
        let record = at(&format!("{base}store/exports/{time}"));
        // The snapshot's own index files come before its root.
        let late: Vec<&String> = index_positions
            .iter()
            .filter(|p| (root..record).contains(*p))
            .map(|p| &writes[*p].1)
            .collect();
        assert!(
            late.is_empty(),
            "{time}: index files after its root: {late:?}"
        );
        assert!(
            index_positions
                .iter()
                .any(|p| (previous_record..root).contains(p)),
            "{time}: no index file before its root"
        );
        let layout: Vec<usize> = writes
            .iter()
            .enumerate()
            .filter(|(_, (_, k))| k.starts_with(&format!("{base}backup/{time}/")))
            .map(|(p, _)| p)
            .collect();
        assert_eq!(layout.len() as u64, report.export.files, "{time}");
        assert!(layout.iter().all(|p| root < *p && *p < record), "{time}");
        previous_record = record;
    }
    // The second snapshot copied what did not change, after its root like the rest.
    assert!(writes.iter().any(|(op, _)| *op == "COPY"));
}

/// S3 answers a share of the requests `503 SlowDown`, as it does when a prefix gets more
/// requests than it takes: the snapshot sends fewer at once, pauses and tries again, and
/// completes with every file of its plain layout. Throttling slows a snapshot down and
/// never fails it; the second snapshot's copies are throttled as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_slows_the_export_down_and_never_fails_it() {
    let setup = Setup::new(1_000, 29).await;
    setup.s3.set_throttle(0.1);
    let dir = tempfile::tempdir().unwrap();
    let mut logs = String::new();
    for _ in 0..2 {
        // Snapshot names have a resolution of one second.
        tokio::time::sleep(std::time::Duration::from_millis(1050)).await;
        let mut command =
            crate::support::snapshot_command(&setup.s3, &setup.cluster, dir.path(), "state");
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(0), "{stderr}");
        logs.push_str(&stderr);
    }
    let throttled = setup.s3.throttled();
    assert!(throttled > 20, "only {throttled} requests were throttled");
    assert!(
        logs.contains("the destination is throttling requests (SlowDown); sending fewer at once"),
        "the snapshots never lowered their concurrency:\n{logs}"
    );

    setup.s3.set_throttle(0.0);
    let cache = tempfile::tempdir().unwrap();
    let reader = crate::support::reader_store(&setup.s3, "team/prod", cache.path()).await;
    let times = Manifest::list(&reader).await.unwrap();
    assert_eq!(times.len(), 2);
    for time in times {
        let manifest = Manifest::load(&reader, &time).await.unwrap();
        let record = Manifest::export_record(&reader, &time)
            .await
            .unwrap()
            .expect("the export is recorded");
        let layout = read_layout(&setup.s3, &time).await;
        assert_eq!(record.files, layout.len() as u64);
        assert_eq!(layout_objects(&layout), manifest_objects(&manifest));
    }
}
