//! What an operator sees of the snapshots: `list`, `diff` after the cluster changed, and
//! `verify` finding a deleted pack, a flipped byte and edited plain-layout files — through
//! the library and through the binary (exit codes, JSON output), against a real S3 server.
//! Scripts read `list`, `show` and `verify` as one JSON document each, which never holds a
//! Secret's value.

use std::collections::BTreeSet;
use std::process::Output;

use kube_autosave::inspect::{self, redact};
use kube_autosave::job::JobSettings;
use kube_autosave::repo::Manifest;
use kube_autosave::store::{RemoteFile, Store, StoreConfig};
use serde_json::Value;

use crate::support::cluster::Cluster;
use crate::support::s3_server::{self, S3Server};

/// (qualified resource, namespace, name)
type Key = (String, Option<String>, String);

const PREFIX: &str = "team/prod/";

struct Setup {
    s3: S3Server,
    cluster: Cluster,
    settings: JobSettings,
    cache: tempfile::TempDir,
}

impl Setup {
    async fn new(objects: usize, seed: u64) -> Setup {
        let s3 = S3Server::start();
        let cluster = Cluster::start(objects, seed).await;
        let cache = tempfile::tempdir().unwrap();
        let settings = JobSettings {
            // Small packs, so that damage to one pack leaves others intact.
            store: StoreConfig {
                pack_size: 64 * 1024,
                ..StoreConfig::default()
            },
            ..crate::support::job_settings(&s3, &cluster, &cache.path().join("job"))
        };
        Setup {
            s3,
            cluster,
            settings,
            cache,
        }
    }

    async fn snapshot(&self) -> Manifest {
        crate::support::snapshot_job(&self.settings).await.manifest
    }

    /// A reader's store, with its own local index (as `verify` on another machine).
    async fn store(&self, name: &str) -> Store {
        crate::support::reader_store(&self.s3, "team/prod/", &self.cache.path().join(name)).await
    }

    /// The binary with this setup's destination.
    fn run(&self, args: &[&str]) -> Output {
        let dir = self.cache.path();
        let mut command = crate::support::binary(dir);
        crate::support::with_s3(&mut command, &self.s3)
            .args(["--to", "s3://backups/team", "--cluster-name", "prod"])
            .args(["--cache-dir", &dir.join("cli").display().to_string()])
            .args(args);
        command.output().unwrap()
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The one JSON document a command printed on stdout.
fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", text(output)))
}

fn sim_key(k: &kube_sim::ObjectKey) -> Key {
    (k.qualified_resource(), k.namespace.clone(), k.name.clone())
}

fn manifest_keys(m: &Manifest) -> BTreeSet<Key> {
    m.objects
        .iter()
        .map(|o| {
            (
                m.resource_of(o).qualified_name(),
                o.namespace.clone(),
                o.name.clone(),
            )
        })
        .collect()
}

fn diff_key(o: &inspect::diff::ObjectRef) -> Key {
    (o.resource.clone(), o.namespace.clone(), o.name.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_after_churn_lists_exactly_the_churned_objects() {
    let setup = Setup::new(1_500, 91).await;
    let first = setup.snapshot().await;
    let churn = setup.cluster.sim.churn(0.08, 6);
    let second = setup.snapshot().await;
    let store = setup.store("reader").await;
    let diff = inspect::diff::diff(
        &store,
        &first,
        &second,
        &kube_autosave::seal::Keyring::default(),
    )
    .await
    .unwrap();

    let (before, after) = (manifest_keys(&first), manifest_keys(&second));
    // What the snapshots can see of the churn (events and controller-owned pods are left
    // out of every snapshot).
    let added: BTreeSet<Key> = churn
        .added
        .iter()
        .map(sim_key)
        .filter(|k| after.contains(k))
        .collect();
    let removed: BTreeSet<Key> = churn
        .deleted
        .iter()
        .map(sim_key)
        .filter(|k| before.contains(k))
        .collect();
    let modified: BTreeSet<Key> = churn
        .modified
        .iter()
        .map(sim_key)
        .filter(|k| before.contains(k) && after.contains(k))
        .collect();
    assert!(!added.is_empty() && !removed.is_empty() && modified.len() > 10);
    assert_eq!(
        diff.added.iter().map(diff_key).collect::<BTreeSet<_>>(),
        added
    );
    assert_eq!(
        diff.removed.iter().map(diff_key).collect::<BTreeSet<_>>(),
        removed
    );
    assert_eq!(
        diff.changed
            .iter()
            .map(|c| diff_key(&c.object))
            .collect::<BTreeSet<_>>(),
        modified
    );
    for changed in &diff.changed {
        assert!(
            !changed.ops.is_empty(),
            "{:?} changed without operations",
            changed.object
        );
        assert_ne!(changed.from_id, changed.to_id);
    }

    // The binary: list newest first, diff as JSON with the same content.
    let output = tokio::task::spawn_blocking({
        let setup_args = ["list", "--output", "json"];
        let out = setup.run(&setup_args);
        move || out
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let list: Value = serde_json::from_slice(&output.stdout).unwrap();
    let times: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["time"].as_str().unwrap())
        .collect();
    assert_eq!(times, [second.time.to_string(), first.time.to_string()]);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|s| s["complete"] == true)
    );
    assert_eq!(list[0]["objects"], second.stats.objects);

    let output = setup.run(&[
        "diff",
        &first.time.to_string(),
        "latest",
        "--output",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["added"].as_array().unwrap().len(), added.len());
    assert_eq!(json["removed"].as_array().unwrap().len(), removed.len());
    assert_eq!(json["changed"].as_array().unwrap().len(), modified.len());
    assert!(json["changed"][0]["ops"][0]["op"].is_string());

    // Secret values never show, not even the ones that changed.
    let secret_values: Vec<String> = churn
        .modified
        .iter()
        .filter(|k| k.resource == "secrets" && modified.contains(&sim_key(k)))
        .filter_map(|k| setup.cluster.sim.object(k))
        .flat_map(|o| {
            o["data"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(_, v)| v.as_str().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .filter(|v| v.len() >= 8)
        .collect();
    assert!(!secret_values.is_empty(), "the churn changed no secret");
    let json_text = String::from_utf8_lossy(&output.stdout);
    assert!(json_text.contains("<secret value: "));

    let output = setup.run(&["diff", &first.time.to_string(), "latest"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.lines().filter(|l| l.starts_with("~ ")).count() == modified.len(),
        "{stdout}"
    );
    for value in &secret_values {
        assert!(
            !json_text.contains(value.as_str()),
            "a secret value in the diff"
        );
        assert!(
            !stdout.contains(value.as_str()),
            "a secret value in the diff"
        );
    }
    assert!(
        stdout.lines().any(|l| l.starts_with("+ ")) && stdout.lines().any(|l| l.starts_with("- "))
    );

    let output = setup.run(&["diff", "not-a-time", "latest"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let output = setup.run(&[
        "show",
        "latest",
        "--resource",
        "configmaps",
        "--output",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let objects = json_of(&output);
    let expected = second
        .objects
        .iter()
        .filter(|o| second.resource_of(o).resource == "configmaps")
        .count();
    assert_eq!(objects["time"], second.time.to_string());
    assert_eq!(objects["items"].as_array().unwrap().len(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_a_deleted_pack_a_flipped_byte_and_an_edited_layout_file() {
    let setup = Setup::new(1_000, 92).await;
    let manifest = setup.snapshot().await;
    let store = setup.store("reader").await;
    let report = inspect::verify::verify(
        &store,
        &[manifest.time],
        &kube_autosave::seal::Keyring::default(),
    )
    .await
    .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(
        report.objects_checked as usize,
        manifest
            .objects
            .iter()
            .map(|o| o.id)
            .collect::<BTreeSet<_>>()
            .len()
    );
    assert!(report.packs_checked > 2);
    let output = setup.run(&["verify", "--all"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));

    // Damage: one pack deleted, one byte flipped inside an object of another pack, one
    // plain-layout file edited.
    let client = s3_server::plain_client(&setup.s3).await;
    let mut packs = Vec::new();
    for o in &manifest.objects {
        let location = store.location(&o.id).await.unwrap();
        if !packs.iter().any(|(p, _, _)| *p == location.pack) {
            packs.push((location.pack, o.id, location));
        }
    }
    let (gone, _, _) = &packs[0];
    let gone_key = RemoteFile::Pack(gone).key();
    client
        .delete_object()
        .bucket(s3_server::BUCKET)
        .key(format!("{PREFIX}{gone_key}"))
        .send()
        .await
        .unwrap();
    let (flipped, _, location) = &packs[1];
    let flipped_key = RemoteFile::Pack(flipped).key();
    let full = format!("{PREFIX}{flipped_key}");
    let mut data = s3_server::read_all(&client, &full)
        .await
        .remove(&full)
        .unwrap()
        .to_vec();
    let at = (location.offset + u64::from(location.length) / 2) as usize;
    data[at] ^= 0x01;
    client
        .put_object()
        .bucket(s3_server::BUCKET)
        .key(&full)
        .body(data.into())
        .send()
        .await
        .unwrap();
    let planned = kube_autosave::export::plan(&manifest);
    let file = &planned[0];
    let full = format!("{PREFIX}{}", file.key);
    let mut data = s3_server::read_all(&client, &full)
        .await
        .remove(&full)
        .unwrap()
        .to_vec();
    let brace = data.iter().rposition(|b| *b == b'}').unwrap();
    data.insert(brace, b' ');
    client
        .put_object()
        .bucket(s3_server::BUCKET)
        .key(&full)
        .body(data.into())
        .send()
        .await
        .unwrap();

    // And one edited without changing its size, in a file whose objects are intact.
    let damaged = [*gone, *flipped];
    let mut same_size = None;
    for f in &planned[1..] {
        let mut intact = true;
        for id in &f.ids {
            intact &= !damaged.contains(&store.location(id).await.unwrap().pack);
        }
        if intact {
            same_size = Some(f);
            break;
        }
    }
    let same_size = same_size.expect("a file of intact objects");
    let full = format!("{PREFIX}{}", same_size.key);
    let mut data = s3_server::read_all(&client, &full)
        .await
        .remove(&full)
        .unwrap()
        .to_vec();
    let at = data.windows(8).position(|w| w == b"\"name\":\"").unwrap() + 8;
    data[at] = if data[at] == b'a' { b'b' } else { b'a' };
    client
        .put_object()
        .bucket(s3_server::BUCKET)
        .key(&full)
        .body(data.into())
        .send()
        .await
        .unwrap();

    let report = inspect::verify::verify(
        &store,
        &[manifest.time],
        &kube_autosave::seal::Keyring::default(),
    )
    .await
    .unwrap();
    let messages: Vec<&str> = report.problems.iter().map(|p| p.message.as_str()).collect();
    // Objects are compressed together in chunks: a flipped byte damages every object of its
    // chunk, and each of them is reported.
    let corrupt = messages
        .iter()
        .filter(|m| m.contains(" is corrupt"))
        .count();
    assert!(corrupt >= 1, "{messages:#?}");
    assert_eq!(report.problems.len(), corrupt + 3, "{messages:#?}");
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with(&format!("pack {gone_key} is missing (objects: "))),
        "{messages:#?}"
    );
    assert!(
        messages.iter().any(|m| m.starts_with("object ")
            && m.contains(&format!(" in pack {flipped_key} is corrupt"))),
        "{messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains(&file.key) && m.contains("was changed")),
        "{messages:#?}"
    );
    let keys: BTreeSet<&str> = report.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            gone_key.as_str(),
            flipped_key.as_str(),
            file.key.as_str(),
            same_size.key.as_str()
        ])
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains(&same_size.key) && m.contains("not what its objects render to")),
        "{messages:#?}"
    );

    let output = setup.run(&["verify", "latest"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("pack {gone_key} is missing")),
        "{stdout}"
    );
    assert!(stdout.contains("4 problem(s)"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reads_listings_from_the_destination_not_from_local_copies() {
    let setup = Setup::new(500, 94).await;
    let manifest = setup.snapshot().await;
    // The job's own local state, which holds a copy of every pack it wrote.
    let store = setup.store("job").await;

    // The pack of one of the manifest's pages goes, at the destination only.
    let root = store
        .backend()
        .get(&RemoteFile::Snapshot(&manifest.time).key())
        .await
        .unwrap();
    let root: Value = serde_json::from_slice(&zstd::decode_all(&root[..]).unwrap()).unwrap();
    let page: kube_autosave::store::ObjectId =
        root["pages"][0]["id"].as_str().unwrap().parse().unwrap();
    let pack = store.location(&page).await.unwrap().pack;
    let key = RemoteFile::Pack(&pack).key();
    let local_copy = store.local_packs().path(&pack);
    assert!(local_copy.is_file(), "the job kept a local copy of {key}");
    s3_server::delete(&setup.s3, &format!("{PREFIX}{key}")).await;

    // The local index still lists the pack and the local copy is intact, yet verify reports
    // the snapshot as unreadable: elsewhere, nobody could restore it.
    let report = inspect::verify::verify(
        &store,
        &[manifest.time],
        &kube_autosave::seal::Keyring::default(),
    )
    .await
    .unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.key == key && p.message.contains(&manifest.time.to_string())),
        "{:#?}",
        report.problems
    );
    drop(store);

    let output = setup.run(&["verify", "latest"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(&key),
        "{}",
        text(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_dry_run_prints_the_plan_and_changes_nothing_and_a_real_run_reports() {
    let setup = Setup::new(1_000, 93).await;
    let manifest = setup.snapshot().await;
    let target = Cluster::start_with(kube_sim::SimConfig {
        empty: true,
        ..kube_sim::SimConfig::default()
    })
    .await;
    let kubeconfig = target.kubeconfig.display().to_string();
    let before = target.sim.objects();
    let output = setup.run(&[
        "restore",
        "latest",
        "--dry-run",
        "--kubeconfig",
        &kubeconfig,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(target.sim.objects(), before);
    assert!(target.sim.create_log().is_empty());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("1 ") && l.contains("CustomResourceDefinition")),
        "{stdout}"
    );
    assert!(stdout.contains("nothing was changed"), "{stdout}");
    let planned = stdout.lines().filter(|l| l.contains(" create ")).count();
    assert!(planned > 100 && planned < manifest.objects.len());

    // The real thing, from the plain layout at the destination.
    let output = setup.run(&[
        "restore",
        "--from-layout",
        "latest",
        "--kubeconfig",
        &kubeconfig,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    // kube-public and kube-node-lease exist in a fresh cluster.
    let created = planned - 2;
    assert!(
        stdout.contains(&format!("{created} created, 0 updated, 2 skipped")),
        "{stdout}"
    );
    assert_eq!(target.sim.create_log().len(), created);

    // Again: everything exists now, nothing fails, all reported as skipped.
    let output = setup.run(&["restore", "latest", "--kubeconfig", &kubeconfig]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("0 created, 0 updated, {planned} skipped")),
        "{stdout}"
    );

    // Only config maps into a fresh cluster: the namespaces that hold them come along.
    // A snapshot that does not exist or a bad selector is bad input (exit 2).
    let fresh = Cluster::start_with(kube_sim::SimConfig {
        empty: true,
        ..kube_sim::SimConfig::default()
    })
    .await;
    let fresh_config = fresh.kubeconfig.display().to_string();
    let output = setup.run(&[
        "restore",
        "latest",
        "--resource",
        "configmaps",
        "--exclude-namespace",
        "kube-public",
        "--kubeconfig",
        &fresh_config,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let output = setup.run(&[
        "restore",
        "17-01-01_00-00-00",
        "--kubeconfig",
        &fresh_config,
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let output = setup.run(&[
        "restore",
        "latest",
        "--selector",
        "a in (b",
        "--kubeconfig",
        &fresh_config,
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
}

/// A snapshot as the JSON output names it: `time` is the name the commands take, and
/// `started_at` the same instant in RFC 3339.
fn assert_stamp(json: &Value, manifest: &Manifest) {
    assert_eq!(json["time"], manifest.time.to_string(), "{json}");
    let started_at = json["started_at"].as_str().unwrap_or_default();
    let parsed = chrono::DateTime::parse_from_rfc3339(started_at)
        .unwrap_or_else(|e| panic!("started_at {started_at:?} is not RFC 3339: {e}"));
    assert_eq!(parsed, manifest.time.datetime());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_show_and_verify_print_one_json_document_with_the_exit_code_of_text() {
    let setup = Setup::new(800, 95).await;
    let first = setup.snapshot().await;
    setup.cluster.sim.churn(0.05, 7);
    let second = setup.snapshot().await;

    // list: newest first, with the figures the snapshots recorded.
    let output = setup.run(&["list", "--output", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let list = json_of(&output);
    let list = list.as_array().expect("list prints an array of snapshots");
    assert_eq!(list.len(), 2, "{list:#?}");
    for (json, manifest) in list.iter().zip([&second, &first]) {
        assert_stamp(json, manifest);
        assert_eq!(json["objects"], manifest.stats.objects);
        assert_eq!(json["new_objects"], manifest.stats.store.new_objects);
        assert_eq!(json["resources_skipped"], manifest.skipped.len());
        assert!(json["bytes_uploaded"].as_u64().unwrap() > 0, "{json}");
        assert_eq!(json["complete"], true);
        assert_eq!(json["layout"], "complete");
        assert!(json.get("error").is_none(), "{json}");
    }
    assert!(list[1]["new_objects"].as_u64() > list[0]["new_objects"].as_u64());

    // show: the counts of the snapshot named, and its objects with a filter.
    let output = setup.run(&["show", &first.time.to_string(), "-o", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let show = json_of(&output);
    assert_stamp(&show, &first);
    assert_eq!(show["cluster"], first.cluster);
    assert_eq!(show["objects"], first.stats.objects);
    assert_eq!(show["complete"], true);
    let counted: u64 = show["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["objects"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, first.objects.len() as u64);
    let in_namespaces: u64 = show["namespaces"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(
        in_namespaces + show["cluster_scoped"].as_u64().unwrap(),
        first.objects.len() as u64
    );
    let output = setup.run(&["show", "latest", "-n", "kube-system", "-o", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let objects = json_of(&output);
    assert_stamp(&objects, &second);
    let items = objects["items"].as_array().unwrap();
    let expected = second
        .objects
        .iter()
        .filter(|o| o.namespace.as_deref() == Some("kube-system"))
        .count();
    assert_eq!(items.len(), expected);
    assert!(items.iter().all(|o| o["namespace"] == "kube-system"
        && o["size"].is_u64()
        && o["id"].is_string()
        && o.get("object").is_none()));

    // verify, intact: ok, and every snapshot named.
    let output = setup.run(&["verify", "--all", "--output", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let verify = json_of(&output);
    assert_eq!(verify["ok"], true, "{verify:#}");
    assert_eq!(verify["problems"], Value::Array(Vec::new()));
    assert_stamp(&verify["snapshots"][0], &first);
    assert_stamp(&verify["snapshots"][1], &second);
    let ids: BTreeSet<_> = [&first, &second]
        .iter()
        .flat_map(|m| m.objects.iter().map(|o| o.id))
        .collect();
    assert_eq!(verify["objects_checked"], ids.len());
    assert!(verify["files_checked"].as_u64().unwrap() > 0);

    // A pack of the latest snapshot deleted: not ok, the pack named, the exit code of text.
    let store = setup.store("reader").await;
    let pack = store.location(&second.objects[0].id).await.unwrap().pack;
    drop(store);
    let gone = RemoteFile::Pack(&pack).key();
    s3_server::delete(&setup.s3, &format!("{PREFIX}{gone}")).await;
    let text_output = setup.run(&["verify", "latest"]);
    let output = setup.run(&["verify", "latest", "--output", "json"]);
    assert_eq!(text_output.status.code(), Some(1), "{}", text(&text_output));
    assert_eq!(output.status.code(), text_output.status.code());
    let verify = json_of(&output);
    assert_eq!(verify["ok"], false, "{verify:#}");
    assert_stamp(&verify["snapshots"][0], &second);
    let problems = verify["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(|p| p["key"] == gone.as_str()
            && p["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("pack {gone} is missing"))),
        "{problems:#?}"
    );
    // The text names the same problems, one line each.
    let stdout = String::from_utf8_lossy(&text_output.stdout);
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("PROBLEM ")).count(),
        problems.len(),
        "{stdout}"
    );

    // Bad input is bad input in either format, with nothing on stdout.
    let output = setup.run(&["show", "not-a-time", "-o", "json"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(output.stdout.is_empty(), "{}", text(&output));
}

/// `show --name` prints the objects themselves; a Secret's values, in `data` and again in
/// the last-applied annotation `kubectl apply` left on it, show as their size and a digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_prints_an_object_whole_but_never_the_values_of_a_secret() {
    let setup = Setup::new(600, 96).await;
    let sim = &setup.cluster.sim;
    let key = sim
        .objects()
        .into_iter()
        .find(|k| k.resource == "secrets" && k.name.ends_with("-api-keys"))
        .expect("the generated cluster has a Secret applied with kubectl");
    let secret = sim.object(&key).unwrap();
    let applied = secret["metadata"]["annotations"][redact::LAST_APPLIED]
        .as_str()
        .expect("the Secret has a last-applied annotation")
        .to_string();
    let values: Vec<String> = secret["data"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(!values.is_empty() && values.iter().all(|v| applied.contains(v.as_str())));
    let manifest = setup.snapshot().await;
    let namespace = key.namespace.clone().unwrap();
    let args = [
        "show",
        "latest",
        "--namespace",
        &namespace,
        "--resource",
        "secrets",
        "--name",
        &key.name,
    ];

    let output = setup.run(&[&args[..], &["--output", "json"]].concat());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let shown = json_of(&output);
    assert_stamp(&shown, &manifest);
    let items = shown["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{shown:#}");
    let object = &items[0]["object"];
    assert_eq!(object["metadata"]["name"], key.name.as_str());
    assert_eq!(object["kind"], "Secret");
    let data = object["data"].as_object().unwrap();
    assert_eq!(data.len(), values.len());
    for (field, value) in data {
        assert!(
            value.as_str().unwrap().starts_with("<secret value: "),
            "data.{field} is not hidden: {value}"
        );
    }
    let hidden = object["metadata"]["annotations"][redact::LAST_APPLIED]
        .as_str()
        .unwrap();
    assert!(
        hidden.starts_with(&format!("<secret value: {} bytes, ", applied.len())),
        "{hidden}"
    );
    let text_output = setup.run(&args);
    assert_eq!(text_output.status.code(), Some(0), "{}", text(&text_output));
    let printed = [text(&output), text(&text_output)];
    assert!(printed[1].contains("<secret value: "), "{}", printed[1]);
    for printed in &printed {
        for value in &values {
            assert!(
                !printed.contains(value.as_str()),
                "a Secret value:\n{printed}"
            );
        }
        assert!(
            !printed.contains(&applied),
            "the last-applied annotation:\n{printed}"
        );
    }

    // Other kinds show as they are.
    let output = setup.run(&["show", "latest", "--name", "kube-root-ca.crt", "-o", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let shown = json_of(&output);
    let items = shown["items"].as_array().unwrap();
    assert!(!items.is_empty(), "{shown:#}");
    for item in items {
        let stored = manifest
            .objects
            .iter()
            .find(|o| {
                o.namespace.as_deref() == item["namespace"].as_str() && o.name == "kube-root-ca.crt"
            })
            .unwrap();
        assert_eq!(item["id"], format!("{:#}", stored.id));
        assert!(
            item["object"]["data"]["ca.crt"]
                .as_str()
                .unwrap()
                .contains("BEGIN CERTIFICATE"),
            "{item:#}"
        );
    }
}
