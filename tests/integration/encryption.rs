//! Secrets encrypted with age before they leave the cluster, as an operator sets it up: a
//! key pair made with `age-keygen`, the public key given to the writers (flag, environment,
//! recipients file or configuration), the identity file kept by whoever restores.
//!
//! - no Secret value, and no last-applied annotation that repeats one, is in any file of
//!   the bucket, compressed or not (and the same search finds them without encryption);
//! - `restore --identity` gives back every Secret as it was; without the identity the
//!   Secrets are named and left out, the rest is restored, and the exit code is 3; the same
//!   from the plain layout;
//! - a namespace's `secrets.json.age` is an ordinary age file: `age -d` and
//!   `kubectl create -f -` restore its Secrets without kube-autosave;
//! - an unchanged cluster uploads no Secret bytes again: no pack, the `.age` files copied;
//! - without recipients nothing changes: `secrets.json`, no `.age` file, no `store/keys/`;
//! - replaced recipients seal the next snapshot to the new key only, while older snapshots
//!   stay readable with their own; `verify` says which snapshots an identity reads.
//!
//! `age` and `age-keygen` come from Debian's `age` package (`scripts/test` installs it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use kube_sim::SimConfig;
use serde_json::{Value, json};

use crate::support::cluster::Cluster;
use crate::support::objects::base64;
use crate::support::s3_server::{self, S3Server};
use crate::support::{binary, clean_command, with_s3};

/// The test folder at the destination: `s3://backups/team`, cluster `prod`.
const BASE: &str = "team/prod/";
/// Generated objects besides the ones the tests add: every kind of Secret the generator
/// makes, in a cluster small enough that each test takes seconds.
const OBJECTS: usize = 300;
const NAMESPACE: &str = "billing";
const NAME: &str = "db-credentials";
/// The password before and after it changes; long and unusual enough to be found only
/// where it was put.
const VALUES: [&str; 2] = [
    "Vq3-hunter2-before-Kx7pQ2vN9zL4",
    "Wm5-hunter2-after-Rt9sD4bH1cY8",
];
/// A restore leaves `kube-system` and `default` out unless asked; the tests compare the
/// other namespaces.
const SYSTEM_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

/// An age key pair made with `age-keygen`: the identity file and its public key.
struct AgeKey {
    identity: PathBuf,
    recipient: String,
}

fn age_keygen(dir: &Path, name: &str) -> AgeKey {
    let identity = dir.join(name);
    let output = clean_command("age-keygen", dir)
        .arg("-o")
        .arg(&identity)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "age-keygen cannot be run ({e}): install Debian's age package (scripts/test does)"
            )
        });
    assert!(
        output.status.success(),
        "age-keygen: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&identity).unwrap();
    let recipient = text
        .lines()
        .find_map(|line| line.strip_prefix("# public key: "))
        .expect("age-keygen writes the public key into the identity file")
        .trim()
        .to_string();
    assert!(recipient.starts_with("age1"), "{recipient}");
    assert!(text.contains("AGE-SECRET-KEY-1"));
    AgeKey {
        identity,
        recipient,
    }
}

/// The Secret as `kubectl apply` leaves it: the password in `data`, and the applied
/// object, password included, in the last-applied annotation.
fn applied_secret(value: &str) -> Value {
    let data = json!({"password": base64(value.as_bytes()), "username": base64(b"billing-app")});
    let applied = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {"app": "billing"}},
        "type": "Opaque",
        "data": data,
    });
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": {"app": "billing"},
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": format!("{applied}\n"),
            },
        },
        "type": "Opaque",
        "data": data,
    })
}

/// Adds the `billing` namespace to `cluster`: the applied Secret with `VALUES[0]`, Secrets
/// of other types, a ConfigMap and a Deployment.
async fn add_billing(cluster: &Cluster) {
    let api = cluster.api().await;
    let namespace =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    api.post("/api/v1/namespaces", namespace.to_string().into())
        .await
        .expect("the namespace is created");
    let objects = [
        ("/api/v1", "secrets", applied_secret(VALUES[0])),
        (
            "/api/v1",
            "secrets",
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "registry", "labels": {"app": "billing"}},
                "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": base64(br#"{"auths":{"registry.example.com":{"auth":"YmlsbGluZzpzM2NyM3Q="}}}"#)}}),
        ),
        (
            "/api/v1",
            "secrets",
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api-tls"},
                "type": "kubernetes.io/tls",
                "data": {"tls.crt": base64(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
                         "tls.key": base64(b"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n")}}),
        ),
        (
            "/api/v1",
            "configmaps",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-settings"},
                "data": {"currency": "EUR"}}),
        ),
        (
            "/apis/apps/v1",
            "deployments",
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"},
                "spec": {"selector": {"matchLabels": {"app": "billing"}},
                    "template": {"metadata": {"labels": {"app": "billing"}},
                        "spec": {"containers": [{"name": "api", "image": "registry.example.com/billing:2.4",
                            "envFrom": [{"secretRef": {"name": NAME}}]}]}}}}),
        ),
    ];
    for (prefix, resource, object) in objects {
        api.post(
            &format!("{prefix}/namespaces/{NAMESPACE}/{resource}"),
            object.to_string().into(),
        )
        .await
        .unwrap_or_else(|e| panic!("{resource} {}: {e}", object["metadata"]["name"]));
    }
}

/// The password changes: `data` and the last-applied annotation.
async fn change_password(cluster: &Cluster) {
    let api = cluster.api().await;
    let path = format!("/api/v1/namespaces/{NAMESPACE}/secrets/{NAME}");
    let mut current: Value =
        serde_json::from_slice(&api.get_opt(&path).await.unwrap().unwrap()).unwrap();
    let changed = applied_secret(VALUES[1]);
    current["data"] = changed["data"].clone();
    current["metadata"]["annotations"] = changed["metadata"]["annotations"].clone();
    api.put(&path, current.to_string().into()).await.unwrap();
}

/// An S3 server, a generated cluster with the `billing` namespace, an age key pair, and a
/// folder for caches, keys and downloads.
struct World {
    s3: S3Server,
    source: Cluster,
    key: AgeKey,
    dir: tempfile::TempDir,
}

impl World {
    async fn new(seed: u64) -> World {
        let source = Cluster::start(OBJECTS, seed).await;
        add_billing(&source).await;
        let dir = tempfile::tempdir().unwrap();
        let key = age_keygen(dir.path(), "key.txt");
        World {
            s3: S3Server::start(),
            source,
            key,
            dir,
        }
    }

    /// The binary on this world's bucket as cluster `prod`, with the local cache `cache`
    /// (the writer's, or a reader's on another machine).
    fn command(&self, cache: &str, args: &[&str]) -> Command {
        let mut command = binary(self.dir.path());
        with_s3(&mut command, &self.s3)
            .args(["--to", "s3://backups/team", "--cluster-name", "prod"])
            .args([
                "--cache-dir",
                &self.dir.path().join(cache).display().to_string(),
            ])
            .args(args);
        command
    }

    /// A snapshot of the source by the writer, a second after the last one (snapshot names
    /// have a resolution of one second); `extra` gives the recipients.
    async fn snapshot(&self, extra: &[&str]) -> Output {
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let kubeconfig = self.source.kubeconfig.display().to_string();
        let mut args = vec!["snapshot", "--kubeconfig", kubeconfig.as_str()];
        args.extend_from_slice(extra);
        let output = run(self.command("writer", &args)).await;
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
        output
    }

    /// `restore <args> --kubeconfig <target>` by a reader on another machine.
    async fn restore(&self, target: &Cluster, args: &[&str]) -> Output {
        let kubeconfig = target.kubeconfig.display().to_string();
        let mut all = vec!["restore"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--kubeconfig", kubeconfig.as_str()]);
        run(self.command("reader", &all)).await
    }

    fn identity(&self) -> String {
        self.key.identity.display().to_string()
    }

    /// The snapshot times whose plain layout is in the bucket, oldest first.
    fn layout_times(&self) -> Vec<String> {
        let backup = self.s3.bucket_dir().join(BASE).join("backup");
        let mut times: Vec<String> = std::fs::read_dir(&backup)
            .unwrap_or_else(|e| panic!("{}: {e}", backup.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        times.sort();
        times
    }

    /// The folder of one snapshot's plain layout in the bucket.
    fn layout_root(&self, time: &str) -> PathBuf {
        self.s3.bucket_dir().join(BASE).join("backup").join(time)
    }

    /// The files of one snapshot's plain layout: `[<namespace>/]<file>`.
    fn layout_files(&self, time: &str) -> BTreeSet<String> {
        files_under(&self.layout_root(time)).into_keys().collect()
    }

    /// The keyring of this world's identity, as a reader loads it.
    fn keyring(&self) -> kube_autosave::seal::Keyring {
        kube_autosave::seal::Keyring::load(std::slice::from_ref(&self.key.identity)).unwrap()
    }
}

async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every file below `root` (at any depth) with its bytes, by its path relative to `root`.
fn files_under(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else {
                let relative = path.strip_prefix(root).unwrap().to_string_lossy();
                files.insert(relative.into_owned(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

async fn empty_cluster(tls: bool) -> Cluster {
    Cluster::start_with(SimConfig {
        empty: true,
        tls,
        ..SimConfig::default()
    })
    .await
}

/// `namespace/name` -> (type, data, labels) of the Secrets a restore creates: those outside
/// the system namespaces, other than service-account tokens (a snapshot leaves them to the
/// new cluster) and Secrets a controller owns.
async fn restorable_secrets(cluster: &Cluster) -> BTreeMap<String, Value> {
    let api = cluster.api().await;
    let list: Value =
        serde_json::from_slice(&api.get_opt("/api/v1/secrets").await.unwrap().unwrap()).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            let namespace = s["metadata"]["namespace"].as_str().unwrap();
            let controlled = s["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| refs.iter().any(|r| r["controller"] == true));
            !SYSTEM_NAMESPACES.contains(&namespace)
                && s["type"] != "kubernetes.io/service-account-token"
                && !controlled
        })
        .map(|s| {
            let meta = &s["metadata"];
            (
                format!(
                    "{}/{}",
                    meta["namespace"].as_str().unwrap(),
                    meta["name"].as_str().unwrap()
                ),
                json!({"type": s["type"], "data": s["data"], "labels": meta["labels"]}),
            )
        })
        .collect()
}

/// (kind, namespace/name) of every object `cluster` was asked to create.
fn created(cluster: &Cluster) -> BTreeSet<(String, String)> {
    cluster
        .sim
        .create_log()
        .into_iter()
        .map(|k| {
            let name = match &k.namespace {
                Some(ns) => format!("{ns}/{}", k.name),
                None => k.name.clone(),
            };
            (k.kind, name)
        })
        .collect()
}

/// What must not be at the destination: each value as it is, and its base64 at each of the
/// three alignments it can take inside a longer encoded text (only the groups that do not
/// depend on the bytes around it).
fn needles() -> Vec<(String, Vec<u8>)> {
    let mut needles = Vec::new();
    for value in VALUES {
        needles.push((format!("{value:?}"), value.as_bytes().to_vec()));
        for skip in 0..3 {
            let rest = &value.as_bytes()[skip..];
            let whole_groups = rest.len() / 3 * 3;
            let encoded = base64(&rest[..whole_groups]);
            needles.push((
                format!("base64 of {value:?} from byte {skip}"),
                encoded.into_bytes(),
            ));
        }
    }
    needles
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Where a password is found in the bucket, in the files as stored and, for those that are
/// zstd (packs: frames one after the other; index files, manifests), decompressed:
/// "<key>: <what>".
fn values_in_bucket(s3: &S3Server) -> Vec<String> {
    let needles = needles();
    let mut found = Vec::new();
    let files = files_under(&s3.bucket_dir());
    assert!(
        files
            .keys()
            .any(|k| k.starts_with(&format!("{BASE}store/packs/"))),
        "no packs in {:?}",
        files.keys().collect::<Vec<_>>()
    );
    for (key, bytes) in &files {
        let mut readings = vec![("as stored", bytes.clone())];
        if let Ok(plain) = zstd::stream::decode_all(bytes.as_slice()) {
            readings.push(("decompressed", plain));
        }
        for (how, content) in &readings {
            for (what, needle) in &needles {
                if contains(content, needle) {
                    found.push(format!("{key} ({how}): {what}"));
                }
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_value_or_last_applied_annotation_reaches_the_bucket() {
    let world = World::new(61).await;
    // The recipients in the configuration file, as the daemon's ConfigMap gives them.
    std::fs::write(
        world.dir.path().join("cluster.yaml"),
        format!(
            "kubeResourcesAutosave:\n  encryption:\n    recipients: [{}]\n    resources: [secrets]\n",
            world.key.recipient
        ),
    )
    .unwrap();
    let config = ["--config", "cluster.yaml"];
    world.snapshot(&config).await;
    change_password(&world.source).await;
    world.snapshot(&config).await;

    let times = world.layout_times();
    assert_eq!(times.len(), 2, "{times:?}");
    for time in &times {
        let files = world.layout_files(time);
        assert!(
            files.contains(&format!("{NAMESPACE}/secrets.json.age")),
            "{time}: {files:?}"
        );
        let plain: Vec<&String> = files
            .iter()
            .filter(|f| f.ends_with("/secrets.json"))
            .collect();
        assert!(plain.is_empty(), "{time}: Secrets in plain text: {plain:?}");
        assert!(
            files.contains(&format!("{NAMESPACE}/configmaps.json")),
            "{files:?}"
        );
    }
    let keys = files_under(&world.s3.bucket_dir().join(BASE).join("store/keys"));
    assert!(!keys.is_empty(), "no key file under store/keys/");

    let found = values_in_bucket(&world.s3);
    assert!(
        found.is_empty(),
        "Secret values at the destination:\n{}",
        found.join("\n")
    );

    // The same search finds them when the Secrets are not encrypted: in the plain layout
    // and in the packs.
    let plain = World::new(61).await;
    plain.snapshot(&[]).await;
    change_password(&plain.source).await;
    plain.snapshot(&[]).await;
    let found = values_in_bucket(&plain.s3);
    for (place, value) in [
        ("backup/", VALUES[0]),
        ("backup/", VALUES[1]),
        ("store/packs/", VALUES[0]),
        ("store/packs/", VALUES[1]),
    ] {
        assert!(
            found
                .iter()
                .any(|f| f.starts_with(&format!("{BASE}{place}"))
                    && f.contains(&format!("{value:?}"))),
            "{value} not found under {place} without encryption: {found:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_restore_with_the_identity_and_are_named_and_left_out_without_it() {
    let world = World::new(62).await;
    world.snapshot(&["--recipient", &world.key.recipient]).await;
    let expected = restorable_secrets(&world.source).await;
    assert!(
        expected.contains_key(&format!("{NAMESPACE}/{NAME}")),
        "{expected:?}"
    );
    let types: BTreeSet<&str> = expected
        .values()
        .map(|s| s["type"].as_str().unwrap())
        .collect();
    assert!(types.len() >= 3, "{types:?}");

    let output = run(world.command(
        "reader",
        &["verify", "--all", "--identity", &world.identity()],
    ))
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));

    // Without the identity: everything but the Secrets, each named, and exit code 3.
    let without = empty_cluster(false).await;
    let output = world.restore(&without, &["latest"]).await;
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(3), "{shown}");
    assert!(shown.contains("--identity"), "{shown}");
    let unnamed: Vec<&String> = expected
        .keys()
        .filter(|k| !shown.contains(k.as_str()))
        .collect();
    assert!(
        unnamed.is_empty(),
        "Secrets left out without being named: {unnamed:?}\n{shown}"
    );
    let restored_without = created(&without);
    let secrets: Vec<&(String, String)> = restored_without
        .iter()
        .filter(|(kind, _)| kind == "Secret")
        .collect();
    assert!(secrets.is_empty(), "{secrets:?}");
    for object in [
        ("ConfigMap", format!("{NAMESPACE}/app-settings")),
        ("Deployment", format!("{NAMESPACE}/api")),
    ] {
        assert!(
            restored_without.contains(&(object.0.to_string(), object.1.clone())),
            "{object:?} not restored"
        );
    }

    // Another key than the recipients': the same as none.
    let stranger = age_keygen(world.dir.path(), "other-key.txt");
    let wrong = empty_cluster(false).await;
    let output = world
        .restore(
            &wrong,
            &[
                "latest",
                "--identity",
                &stranger.identity.display().to_string(),
            ],
        )
        .await;
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(3), "{shown}");
    assert!(shown.contains(&format!("{NAMESPACE}/{NAME}")), "{shown}");
    assert_eq!(created(&wrong), restored_without);

    // With it: the same objects and the Secrets, identical to the source's.
    let with = empty_cluster(false).await;
    let output = world
        .restore(&with, &["latest", "--identity", &world.identity()])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(restorable_secrets(&with).await, expected);
    let only_with: BTreeSet<(String, String)> = created(&with)
        .difference(&restored_without)
        .cloned()
        .collect();
    let expected_secrets: BTreeSet<(String, String)> = expected
        .keys()
        .map(|k| ("Secret".to_string(), k.clone()))
        .collect();
    assert_eq!(only_with, expected_secrets);

    // The plain layout at the destination: the same, the identity given in the environment.
    let from_layout = empty_cluster(false).await;
    let mut command = world.command(
        "reader",
        &[
            "restore",
            "--from-layout",
            "latest",
            "--kubeconfig",
            &from_layout.kubeconfig.display().to_string(),
        ],
    );
    command.env("KUBE_AUTOSAVE_IDENTITY", world.identity());
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(restorable_secrets(&from_layout).await, expected);

    let layout_without = empty_cluster(false).await;
    let output = world
        .restore(&layout_without, &["--from-layout", "latest"])
        .await;
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(3), "{shown}");
    assert!(shown.contains("--identity"), "{shown}");
    // The names of the Secrets are inside the encrypted files: the files are named.
    let files: BTreeSet<String> = expected
        .keys()
        .map(|k| format!("{}/secrets.json.age", k.split('/').next().unwrap()))
        .collect();
    let unnamed: Vec<&String> = files
        .iter()
        .filter(|f| !shown.contains(f.as_str()))
        .collect();
    assert!(
        unnamed.is_empty(),
        "files left out without being named: {unnamed:?}\n{shown}"
    );
    assert!(restorable_secrets(&layout_without).await.is_empty());
    assert!(
        created(&layout_without).contains(&("Deployment".to_string(), format!("{NAMESPACE}/api")))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_age_command_decrypts_a_namespaces_secrets_for_kubectl_create() {
    let world = World::new(63).await;
    let mut command = world.command(
        "writer",
        &[
            "snapshot",
            "--kubeconfig",
            &world.source.kubeconfig.display().to_string(),
        ],
    );
    command.env("KUBE_AUTOSAVE_RECIPIENTS", &world.key.recipient);
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let time = world.layout_times().pop().expect("a snapshot");

    // Downloaded as `aws s3 cp` would.
    let key = format!("{BASE}backup/{time}/{NAMESPACE}/secrets.json.age");
    let client = s3_server::plain_client(&world.s3).await;
    let encrypted = client
        .get_object()
        .bucket(s3_server::BUCKET)
        .key(&key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{key}: {e:?}"))
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert!(
        encrypted.starts_with(b"age-encryption.org/v1\n"),
        "{key} is not a binary age file"
    );
    let file = world.dir.path().join("secrets.json.age");
    std::fs::write(&file, &encrypted).unwrap();

    let decrypted = clean_command("age", world.dir.path())
        .args(["-d", "-i"])
        .arg(&world.key.identity)
        .arg(&file)
        .output()
        .expect("age runs (scripts/test installs Debian's age package)");
    assert!(
        decrypted.status.success(),
        "age -d: {}",
        String::from_utf8_lossy(&decrypted.stderr)
    );
    let list: Value = serde_json::from_slice(&decrypted.stdout).expect("a JSON List");
    assert_eq!(list["kind"], "List");
    let items = list["items"].as_array().unwrap();
    assert!(items.iter().all(|i| i["kind"] == "Secret"));

    // kubectl creates them in an empty cluster, as they were.
    let target = empty_cluster(true).await;
    let (dir, kubeconfig) = (world.dir.path().to_path_buf(), target.kubeconfig.clone());
    let kubectl = move |args: &[&str], stdin: Option<&[u8]>| {
        let mut command = clean_command("kubectl", &dir);
        command
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--cache-dir")
            .arg(dir.join("kubectl-cache"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .expect("kubectl runs (Debian package kubernetes-client)");
        {
            use std::io::Write;
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(stdin.unwrap_or_default()).unwrap();
        }
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "kubectl {args:?}: {}",
            text(&output)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let decrypted = decrypted.stdout.clone();
    let created_text = tokio::task::spawn_blocking(move || {
        kubectl(&["create", "namespace", NAMESPACE], None);
        kubectl(&["create", "-f", "-"], Some(&decrypted))
    })
    .await
    .unwrap();
    assert!(
        created_text.contains(&format!("secret/{NAME} created")),
        "{created_text}"
    );
    let in_namespace = |secrets: BTreeMap<String, Value>| -> BTreeMap<String, Value> {
        secrets
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{NAMESPACE}/")))
            .collect()
    };
    let expected = in_namespace(restorable_secrets(&world.source).await);
    assert_eq!(expected.len(), 3, "{expected:?}");
    assert_eq!(in_namespace(restorable_secrets(&target).await), expected);
    assert_eq!(items.len(), expected.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_cluster_uploads_no_secret_bytes_again() {
    let world = World::new(64).await;
    let recipients = world.dir.path().join("recipients.txt");
    std::fs::write(
        &recipients,
        format!("# the restore team's key\n{}\n", world.key.recipient),
    )
    .unwrap();
    let recipients = recipients.display().to_string();
    world.snapshot(&["--recipients-file", &recipients]).await;
    let first_writes = world.s3.writes().len();
    world.snapshot(&["--recipients-file", &recipients]).await;
    let writes = world.s3.writes();
    let (first, second) = writes.split_at(first_writes);

    let times = world.layout_times();
    assert_eq!(times.len(), 2, "{times:?}");
    let age_files = |time: &str| -> BTreeSet<String> {
        world
            .layout_files(time)
            .into_iter()
            .filter(|f| f.ends_with(".age"))
            .map(|f| format!("{BASE}backup/{time}/{f}"))
            .collect()
    };
    let (first_age, second_age) = (age_files(&times[0]), age_files(&times[1]));
    assert!(second_age.len() > 1, "{second_age:?}");
    assert_eq!(first_age.len(), second_age.len());
    // The first snapshot uploaded them, the second copied them at the destination.
    for file in &first_age {
        assert!(
            first.contains(&("PUT", file.clone())),
            "{file} was not uploaded"
        );
    }
    for file in &second_age {
        assert!(
            second.contains(&("COPY", file.clone())),
            "{file} was not copied"
        );
        assert!(
            !second.contains(&("PUT", file.clone())),
            "{file} was uploaded again"
        );
    }
    // Nothing of the store's content was written, and no plain-layout file uploaded.
    let uploaded: Vec<&String> = second
        .iter()
        .filter(|(op, _)| *op == "PUT")
        .map(|(_, key)| key)
        .filter(|key| {
            ["store/packs/", "store/index/", "backup/"]
                .iter()
                .any(|folder| key.starts_with(&format!("{BASE}{folder}")))
        })
        .collect();
    assert!(uploaded.is_empty(), "uploaded again: {uploaded:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_recipients_nothing_changes() {
    let world = World::new(65).await;
    world.snapshot(&[]).await;
    let time = world.layout_times().pop().expect("a snapshot");
    let files = world.layout_files(&time);
    assert!(
        files.contains(&format!("{NAMESPACE}/secrets.json")),
        "{files:?}"
    );
    let sealed: Vec<&String> = files.iter().filter(|f| f.ends_with(".age")).collect();
    assert!(sealed.is_empty(), "{sealed:?}");
    let bucket = files_under(&world.s3.bucket_dir());
    let keys: Vec<&String> = bucket
        .keys()
        .filter(|k| k.starts_with(&format!("{BASE}store/keys/")) || k.ends_with(".age"))
        .collect();
    assert!(keys.is_empty(), "{keys:?}");
    let list: Value =
        serde_json::from_slice(&bucket[&format!("{BASE}backup/{time}/{NAMESPACE}/secrets.json")])
            .unwrap();
    let secret = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["metadata"]["name"] == NAME)
        .expect("the Secret in secrets.json");
    assert_eq!(secret["data"]["password"], base64(VALUES[0].as_bytes()));

    // And a restore needs no identity.
    let target = empty_cluster(false).await;
    let output = world.restore(&target, &["latest"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(
        restorable_secrets(&target).await,
        restorable_secrets(&world.source).await
    );
}

/// Recipients replaced, as when a key is rotated: the next snapshot seals every Secret again,
/// to the new key only (new keyed ids, a new key file); the older snapshot stays readable
/// with the old identity only; `verify` says per snapshot what a given identity reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_recipients_seal_new_snapshots_while_old_ones_keep_their_keys() {
    let world = World::new(65).await;
    let old = &world.key;
    let new = age_keygen(world.dir.path(), "new-key.txt");
    world.snapshot(&["--recipient", &old.recipient]).await;
    world.snapshot(&["--recipient", &new.recipient]).await;
    let times = world.layout_times();
    assert_eq!(times.len(), 2, "{times:?}");
    let keys = files_under(&world.s3.bucket_dir().join(BASE).join("store/keys"));
    assert_eq!(keys.len(), 2, "one key file per recipient set: {keys:?}");

    let verify = |identity: Option<&Path>| {
        let mut args = vec!["verify".to_string(), "--all".to_string()];
        if let Some(identity) = identity {
            args.extend(["--identity".to_string(), identity.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        world.command("reader", &args)
    };
    for (identity, readable, unreadable) in [
        (&old.identity, &times[0], &times[1]),
        (&new.identity, &times[1], &times[0]),
    ] {
        let output = run(verify(Some(identity))).await;
        let shown = text(&output);
        assert_eq!(output.status.code(), Some(0), "{shown}");
        assert!(
            shown.contains(&format!(
                "snapshot {readable}: the given identities read all"
            )),
            "{shown}"
        );
        assert!(
            shown.contains(&format!(
                "snapshot {unreadable}: the given identities read none"
            )),
            "{shown}"
        );
    }
    let output = run(verify(None)).await;
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("contents not checked (no --identity)"),
        "{shown}"
    );

    // The newer snapshot's Secrets: the new identity restores them, the old one cannot.
    let expected = restorable_secrets(&world.source).await;
    let restore = |time: &str, key: &AgeKey| {
        let (time, identity) = (time.to_string(), key.identity.display().to_string());
        let world = &world;
        async move {
            let target = empty_cluster(false).await;
            let output = world
                .restore(&target, &[&time, "--identity", &identity])
                .await;
            (target, output)
        }
    };
    let (_, output) = restore(&times[1], old).await;
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(3), "{shown}");
    assert!(shown.contains(&format!("{NAMESPACE}/{NAME}")), "{shown}");
    // The new identity reads the newer snapshot, the old one the older.
    for (time, key) in [(&times[1], &new), (&times[0], old)] {
        let (target, output) = restore(time, key).await;
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
        assert_eq!(restorable_secrets(&target).await, expected, "{time}");
    }
}

/// After churn (Secrets changed, added and deleted in some namespaces, others untouched),
/// the next snapshot reads only the namespaces where Secrets changed in full and keeps the
/// files of the others; its store and its `.age` files both hold every Secret as the
/// cluster has it then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_churn_the_next_snapshot_holds_every_secret_as_the_cluster_has_it() {
    let world = World::new(66).await;
    let recipient = ["--recipient", world.key.recipient.as_str()];
    world.snapshot(&recipient).await;
    world.source.sim.churn(0.2, 7);
    change_password(&world.source).await;
    world.snapshot(&recipient).await;
    let expected = restorable_secrets(&world.source).await;

    let target = empty_cluster(false).await;
    let output = world
        .restore(&target, &["latest", "--identity", &world.identity()])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(restorable_secrets(&target).await, expected);

    // The plain layout: each namespace's `.age` file holds its Secrets, no more, no less.
    let keyring = world.keyring();
    let root = world.layout_root(&world.layout_times()[1]);
    let mut in_layout = BTreeSet::new();
    for (relative, data) in files_under(&root) {
        let Some(namespace) = relative.strip_suffix("/secrets.json.age") else {
            continue;
        };
        let list: Value =
            serde_json::from_slice(&keyring.open_file(&relative, &data).unwrap()).unwrap();
        for item in list["items"].as_array().unwrap() {
            assert_eq!(item["metadata"]["namespace"], namespace, "{relative}");
            if !SYSTEM_NAMESPACES.contains(&namespace) {
                in_layout.insert(format!(
                    "{namespace}/{}",
                    item["metadata"]["name"].as_str().unwrap()
                ));
            }
        }
    }
    let expected_names: BTreeSet<String> = expected.keys().cloned().collect();
    assert_eq!(in_layout, expected_names);
}

/// One Secret changed: the next snapshot lists Secrets by their metadata and reads only its
/// namespace in full, and that namespace's `.age` file holds the new value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_changed_secret_costs_a_read_of_its_namespace_only() {
    let world = World::new(67).await;
    let recipient = ["--recipient", world.key.recipient.as_str()];
    world.snapshot(&recipient).await;
    change_password(&world.source).await;
    let in_namespace = restorable_secrets(&world.source)
        .await
        .keys()
        .filter(|k| k.starts_with(&format!("{NAMESPACE}/")))
        .count() as u64;
    let all_secrets = world
        .source
        .sim
        .objects()
        .iter()
        .filter(|k| k.group.is_empty() && k.resource == "secrets")
        .count() as u64;
    let before = world.source.sim.served();
    world.snapshot(&recipient).await;
    let served = world.source.sim.served() - before;
    assert!(
        served.full_list_items <= in_namespace + 2 && served.full_list_items < all_secrets,
        "{served:?}: {in_namespace} Secrets in {NAMESPACE}, {all_secrets} in all"
    );
    assert!(served.metadata_list_items >= all_secrets, "{served:?}");

    let keyring = world.keyring();
    let file = world
        .layout_root(&world.layout_times()[1])
        .join(NAMESPACE)
        .join("secrets.json.age");
    let list: Value = serde_json::from_slice(
        &keyring
            .open_file("secrets.json.age", &std::fs::read(&file).unwrap())
            .unwrap(),
    )
    .unwrap();
    let secret = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["metadata"]["name"] == NAME)
        .expect("the changed Secret is in its namespace's file");
    assert_eq!(
        secret["data"]["password"],
        base64(VALUES[1].as_bytes()),
        "the file holds the new value"
    );
}
