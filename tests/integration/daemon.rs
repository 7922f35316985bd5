//! The daemon as it runs in its pod, as a real process: snapshots at start and every
//! interval, staged through S3 outages and pushed once S3 is back, clean stops on SIGTERM,
//! no loss or duplication after kill -9, and its configuration switch and errors.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube_autosave::repo::Manifest;
use kube_autosave::seal::Keyring;
use serde_json::Value;

use crate::support::cluster::Cluster;
use crate::support::s3_server::{self, S3Server};

const BASE: &str = "team/prod/";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn write_config(dir: &Path, s3: &S3Server, extra: &str) -> PathBuf {
    let path = dir.join("cluster.yaml");
    std::fs::write(
        &path,
        format!(
            "clusterName: other-tools-read-this\nkubeResourcesAutosave:\n  enabled: true\n  s3URI: s3://backups/team\n  \
             clusterName: prod\n  s3Endpoint: {}\n  pathStyle: true\n{extra}",
            s3.endpoint()
        ),
    )
    .unwrap();
    path
}

pub(crate) struct Daemon {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Daemon {
    pub(crate) fn start(dir: &Path, config: &Path, cluster: &Cluster, args: &[&str]) -> Daemon {
        let kubeconfig = cluster.kubeconfig.display().to_string();
        let mut all = vec!["--kubeconfig", &kubeconfig];
        all.extend_from_slice(args);
        Self::spawn(dir, config, &all)
    }

    fn spawn(dir: &Path, config: &Path, args: &[&str]) -> Daemon {
        Self::spawn_with(
            crate::support::s3_credentials(&mut crate::support::binary(dir)),
            dir,
            config,
            args,
        )
    }

    /// A daemon with no S3 credentials anywhere: the AWS chain's credentials file is
    /// `dir/no-aws-credentials`, which does not exist until the test writes it.
    fn start_without_credentials(
        dir: &Path,
        config: &Path,
        cluster: &Cluster,
        args: &[&str],
    ) -> Daemon {
        let kubeconfig = cluster.kubeconfig.display().to_string();
        let mut all = vec!["--kubeconfig", &kubeconfig];
        all.extend_from_slice(args);
        Self::spawn_with(
            crate::support::binary(dir).env("AWS_REGION", "us-east-1"),
            dir,
            config,
            &all,
        )
    }

    fn spawn_with(command: &mut Command, dir: &Path, config: &Path, args: &[&str]) -> Daemon {
        let port = free_port();
        let log = dir.join(format!("daemon-{port}.log"));
        let child = command
            .arg("run")
            .arg("--config")
            .arg(config)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--cache-dir",
                "state",
            ])
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon { child, port, log }
    }

    pub(crate) fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let status = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_string();
        Some((status, body))
    }

    fn metrics(&self) -> BTreeMap<String, f64> {
        let Some((200, body)) = self.get("/metrics") else {
            return BTreeMap::new();
        };
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(' '))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect()
    }

    pub(crate) fn metric(&self, name: &str) -> f64 {
        self.metrics()
            .get(&format!("kube_autosave_{name}"))
            .copied()
            .unwrap_or(-1.0)
    }

    pub(crate) fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Daemon) -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if pred(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("timed out waiting for {what}; log:\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the daemon did not stop; log:\n{}", self.log());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Manifests in S3 (read by a store of its own), by snapshot name.
async fn manifests(s3: &S3Server) -> BTreeMap<String, Manifest> {
    let cache = tempfile::tempdir().unwrap();
    let store = crate::support::reader_store(s3, BASE, cache.path()).await;
    let mut out = BTreeMap::new();
    for time in Manifest::list(&store).await.unwrap() {
        out.insert(
            time.to_string(),
            Manifest::load(&store, &time).await.unwrap(),
        );
    }
    out
}

/// (kind, namespace, name) of every object in a snapshot's plain layout, read with a plain
/// S3 client; each object must appear once.
async fn layout_objects(s3: &S3Server, time: &str) -> BTreeSet<(String, Option<String>, String)> {
    layout_objects_opened(s3, time, &Keyring::default()).await
}

/// [`layout_objects`], with encrypted (`.age`) files opened with `keyring`.
async fn layout_objects_opened(
    s3: &S3Server,
    time: &str,
    keyring: &Keyring,
) -> BTreeSet<(String, Option<String>, String)> {
    let client = s3_server::plain_client(s3).await;
    let files = s3_server::read_all(&client, &format!("{BASE}backup/{time}/")).await;
    let mut out = BTreeSet::new();
    for (key, body) in &files {
        let opened;
        let body = if key.ends_with(".age") {
            opened = keyring.open_file(key, body).unwrap();
            &opened[..]
        } else {
            &body[..]
        };
        let list: Value = serde_json::from_slice(body).unwrap();
        for item in list["items"].as_array().unwrap() {
            let key = (
                format!(
                    "{}/{}",
                    item["apiVersion"].as_str().unwrap(),
                    item["kind"].as_str().unwrap()
                ),
                item["metadata"]["namespace"].as_str().map(str::to_string),
                item["metadata"]["name"].as_str().unwrap().to_string(),
            );
            assert!(out.insert(key.clone()), "{key:?} twice in {time}");
        }
    }
    out
}

/// What a snapshot of the simulated cluster holds now, by (apiVersion/kind, namespace, name),
/// with the default rules; from the server's objects, independently of the snapshot code.
fn cluster_objects(cluster: &Cluster) -> BTreeSet<(String, Option<String>, String)> {
    let sim = &cluster.sim;
    sim.objects()
        .into_iter()
        .filter(|k| {
            !matches!(
                (k.group.as_str(), k.resource.as_str()),
                ("", "events")
                    | ("", "endpoints")
                    | ("discovery.k8s.io", "endpointslices")
                    | ("coordination.k8s.io", "leases")
                    | ("", "componentstatuses")
            )
        })
        .filter(|k| {
            let o = sim.object(k).unwrap();
            let owned = o["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["controller"] == true));
            !owned && o["type"] != "kubernetes.io/service-account-token"
        })
        .map(|k| {
            (
                format!("{}/{}", k.api_version(), k.kind),
                k.namespace.clone(),
                k.name.clone(),
            )
        })
        .collect()
}

fn without_metrics(
    objects: BTreeSet<(String, Option<String>, String)>,
) -> BTreeSet<(String, Option<String>, String)> {
    objects
        .into_iter()
        .filter(|(t, _, _)| !t.starts_with("metrics.k8s.io/"))
        .collect()
}

async fn assert_complete(s3: &S3Server) -> BTreeMap<String, Manifest> {
    let all = manifests(s3).await;
    for (name, manifest) in &all {
        let export = manifest
            .export
            .as_ref()
            .unwrap_or_else(|| panic!("{name} is not exported"));
        let client = s3_server::plain_client(s3).await;
        let files = s3_server::read_all(&client, &format!("{BASE}backup/{name}/")).await;
        assert_eq!(
            files.len() as u64,
            export.files,
            "{name}: layout incomplete"
        );
        assert_eq!(
            layout_objects(s3, name).await.len(),
            manifest.objects.len(),
            "{name}: layout and manifest disagree"
        );
    }
    all
}

fn staging_is_empty(dir: &Path) -> bool {
    let state = dir.join("state");
    let Ok(entries) = std::fs::read_dir(&state) else {
        return true;
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".staging"))
        .all(|e| {
            let left = walk_files(&e.path());
            assert!(left.is_empty(), "left in staging: {left:?}");
            true
        })
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk_files(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// `/metrics` is what Prometheus accepts (read by a strict OpenMetrics parser): every family
/// with HELP and TYPE, counters as counters, histograms of snapshot and push durations,
/// skips by resource and reason, the age of the last complete snapshot. The logs of the
/// same run are JSON lines with the documented field names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_openmetrics_and_logs_are_json_lines() {
    let s3 = S3Server::start();
    let cluster = Cluster::start(300, 43).await;
    cluster.sim.faults().forbid("configmaps", true);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &s3, "  interval: 2s\n  pushInterval: 1s\n");
    let daemon = Daemon::start(dir.path(), &config, &cluster, &["--log-format", "json"]);
    daemon.wait_for("two complete snapshots", Duration::from_secs(60), |d| {
        d.metric("snapshots_total") >= 2.0
            && d.metric("snapshots_pending") == 0.0
            && d.metric("last_complete_snapshot_timestamp_seconds") > 0.0
    });
    let (status, text) = daemon.get("/metrics").unwrap();
    assert_eq!(status, 200);
    let scrape = crate::support::prometheus::parse(&text)
        .unwrap_or_else(|e| panic!("/metrics is not valid OpenMetrics text: {e}\n{text}"));

    for family in &scrape.families {
        let name = &family.name;
        assert!(name.starts_with("kube_autosave_"), "{name}");
        assert!(
            family.help.as_deref().is_some_and(|h| !h.is_empty()),
            "{name} has no HELP"
        );
        assert!(
            ["counter", "gauge", "histogram"].contains(&family.kind.as_str()),
            "{name} has no TYPE"
        );
        if let Some(unit) = &family.unit {
            assert!(name.ends_with(&format!("_{unit}")), "{name}: unit {unit}");
        }
        // Prometheus conventions: times in seconds, sizes in bytes.
        assert!(!name.contains("_ms") && !name.ends_with("_kib"), "{name}");
    }
    let kind = |name: &str| scrape.family(name).map(|f| f.kind.as_str());
    for counter in [
        "kube_autosave_snapshots",
        "kube_autosave_pushes",
        "kube_autosave_push_failures",
        "kube_autosave_uploaded_bytes",
        "kube_autosave_failures",
        "kube_autosave_resources_skipped",
    ] {
        assert_eq!(kind(counter), Some("counter"), "{counter}");
    }
    for histogram in [
        "kube_autosave_snapshot_duration_seconds",
        "kube_autosave_push_duration_seconds",
    ] {
        assert_eq!(kind(histogram), Some("histogram"), "{histogram}");
    }
    let value = |name: &str, labels: &[(&str, &str)]| {
        scrape
            .value(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in\n{text}"))
    };
    let snapshots = value("kube_autosave_snapshots_total", &[]);
    assert!(snapshots >= 2.0);
    assert_eq!(
        value("kube_autosave_snapshot_duration_seconds_count", &[]),
        snapshots,
        "one duration per snapshot"
    );
    assert!(value("kube_autosave_snapshot_duration_seconds_sum", &[]) > 0.0);
    assert!(value("kube_autosave_push_duration_seconds_count", &[]) >= 1.0);
    assert_eq!(
        value(
            "kube_autosave_resources_skipped_total",
            &[("resource", "configmaps"), ("reason", "forbidden")]
        ),
        snapshots,
        "every snapshot skipped the forbidden resource"
    );
    assert_eq!(
        value("kube_autosave_last_snapshot_resources_skipped", &[]),
        1.0
    );
    assert_eq!(value("kube_autosave_snapshot_interval_seconds", &[]), 2.0);
    let age = value("kube_autosave_last_complete_snapshot_age_seconds", &[]);
    assert!((0.0..30.0).contains(&age), "age {age}");
    let complete = value(
        "kube_autosave_last_complete_snapshot_timestamp_seconds",
        &[],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - complete - age).abs() <= 2.0,
        "{now} {complete} {age}"
    );
    assert_eq!(value("kube_autosave_enabled", &[]), 1.0);

    // The same run's log: one JSON object per line, fields at the top level.
    let mut daemon = daemon;
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(30)), Some(0));
    let log = daemon.log();
    let events: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let staged = events
        .iter()
        .find(|e| e["message"] == "snapshot staged")
        .unwrap_or_else(|| panic!("no staged event in\n{log}"));
    assert!(staged["snapshot"].is_string(), "{staged}");
    assert!(staged["duration_ms"].is_u64(), "{staged}");
    assert!(staged["objects"].is_u64(), "{staged}");
    assert!(staged["level"] == "INFO" && staged["timestamp"].is_string());
    let skipped = events
        .iter()
        .find(|e| e["message"] == "skipped")
        .unwrap_or_else(|| panic!("no skip event in\n{log}"));
    assert_eq!(skipped["resource"], "configmaps", "{skipped}");
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "snapshot pushed and exported" && e["snapshot"].is_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_at_start_and_another_after_the_interval() {
    let s3 = S3Server::start();
    let cluster = Cluster::start(800, 41).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &s3, "  interval: 2s\n  pushInterval: 1s\n");
    let daemon = Daemon::start(dir.path(), &config, &cluster, &[]);
    daemon.wait_for("two pushed snapshots", Duration::from_secs(60), |d| {
        d.metric("snapshots_total") >= 2.0 && d.metric("snapshots_pending") == 0.0
    });
    assert_eq!(daemon.get("/healthz").map(|r| r.0), Some(200));
    assert_eq!(daemon.get("/readyz").map(|r| r.0), Some(200));
    let metrics = daemon.metrics();
    assert!(metrics["kube_autosave_last_snapshot_objects"] > 0.0);
    assert!(metrics["kube_autosave_uploaded_bytes_total"] > 0.0);
    assert!(
        metrics["kube_autosave_copied_bytes_total"] > 0.0,
        "{metrics:?}"
    );
    assert!(metrics["kube_autosave_last_push_timestamp_seconds"] > 0.0);

    let all = assert_complete(&s3).await;
    assert!(all.len() >= 2, "{:?}", all.keys());
    let expected = cluster_objects(&cluster);
    for name in all.keys() {
        assert_eq!(
            without_metrics(layout_objects(&s3, name).await),
            expected,
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_outage_stages_the_snapshot_and_it_lands_when_s3_is_back() {
    let s3 = S3Server::start();
    s3.stop();
    let cluster = Cluster::start(800, 42).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &s3, "  interval: 24h\n  pushInterval: 1s\n");
    let daemon = Daemon::start(dir.path(), &config, &cluster, &[]);

    daemon.wait_for(
        "a staged snapshot and a failed push",
        Duration::from_secs(60),
        |d| d.metric("ready") == 1.0 && d.metric("push_failures_total") >= 1.0,
    );
    let at_snapshot_time = cluster_objects(&cluster);
    assert_eq!(daemon.metric("snapshots_pending"), 1.0);
    let log = daemon.log();
    assert!(log.contains("push failed"), "{log}");
    assert!(
        log.contains(&s3.endpoint()),
        "the log names the endpoint:\n{log}"
    );

    // The cluster moves on while S3 is away; the staged snapshot keeps what it saw.
    cluster.sim.churn(0.05, 3);
    assert_ne!(cluster_objects(&cluster), at_snapshot_time);
    s3.restart();
    daemon.wait_for("the push", Duration::from_secs(60), |d| {
        d.metric("snapshots_pending") == 0.0
    });

    let all = assert_complete(&s3).await;
    assert_eq!(all.len(), 1, "{:?}", all.keys());
    let name = all.keys().next().unwrap();
    assert_eq!(
        without_metrics(layout_objects(&s3, name).await),
        at_snapshot_time
    );
    assert!(staging_is_empty(dir.path()));
}

/// With encryption, a snapshot staged while S3 is away carries its sealing key and its
/// encrypted files: once pushed, its Secrets are in `.age` files only and open with the
/// identity, and the key file is at the destination.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_snapshot_staged_in_an_outage_lands_with_its_key() {
    let s3 = S3Server::start();
    s3.stop();
    let cluster = Cluster::start(800, 43).await;
    let dir = tempfile::tempdir().unwrap();
    let identity = age::x25519::Identity::generate();
    let identity_file = dir.path().join("key.txt");
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(&identity_file, identity.to_string().expose_secret()).unwrap();
    }
    let config = write_config(
        dir.path(),
        &s3,
        &format!(
            "  interval: 24h\n  pushInterval: 1s\n  encryption:\n    recipients: [{}]\n",
            identity.to_public()
        ),
    );
    let daemon = Daemon::start(dir.path(), &config, &cluster, &[]);
    daemon.wait_for(
        "a staged snapshot and a failed push",
        Duration::from_secs(60),
        |d| d.metric("ready") == 1.0 && d.metric("push_failures_total") >= 1.0,
    );
    let at_snapshot_time = cluster_objects(&cluster);
    s3.restart();
    daemon.wait_for("the push", Duration::from_secs(60), |d| {
        d.metric("snapshots_pending") == 0.0
    });
    assert!(staging_is_empty(dir.path()));

    let all = manifests(&s3).await;
    assert_eq!(all.len(), 1, "{:?}", all.keys());
    let (name, manifest) = all.iter().next().unwrap();
    assert!(manifest.export.is_some(), "{name} is not exported");
    let client = s3_server::plain_client(&s3).await;
    let keys = s3_server::read_all(&client, &format!("{BASE}store/keys/")).await;
    assert_eq!(keys.len(), 1, "{:?}", keys.keys());
    let files = s3_server::read_all(&client, &format!("{BASE}backup/{name}/")).await;
    let sealed: Vec<&String> = files
        .keys()
        .filter(|k| k.ends_with("/secrets.json.age"))
        .collect();
    assert!(!sealed.is_empty(), "{:?}", files.keys());
    assert!(
        !files.keys().any(|k| k.ends_with("/secrets.json")),
        "Secrets in the clear: {:?}",
        files.keys()
    );
    let keyring = Keyring::load(&[identity_file]).unwrap();
    assert_eq!(
        without_metrics(layout_objects_opened(&s3, name, &keyring).await),
        at_snapshot_time
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_snapshot_and_kill_during_a_push_lose_and_duplicate_nothing() {
    let s3 = S3Server::start();
    let cluster = Cluster::start(1_500, 43).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &s3, "  interval: 24h\n  pushInterval: 1s\n");

    // SIGTERM while the snapshot is reading a slow API server: a clean stop, nothing in S3.
    cluster.sim.faults().latency(Duration::from_millis(20));
    let mut daemon = Daemon::start(dir.path(), &config, &cluster, &["--page-size", "20"]);
    let requests = cluster.sim.request_count();
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.sim.request_count() < requests + 30 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        daemon.metric("ready"),
        0.0,
        "the snapshot finished before the signal"
    );
    daemon.signal("TERM");
    assert_eq!(
        daemon.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        daemon.log()
    );
    assert!(
        manifests(&s3).await.is_empty(),
        "a half-taken snapshot became visible"
    );
    cluster.sim.faults().latency(Duration::ZERO);

    // kill -9 while a push is under way (a slow S3).
    s3.set_latency(Duration::from_millis(40));
    let mut daemon = Daemon::start(dir.path(), &config, &cluster, &[]);
    daemon.wait_for("a push under way", Duration::from_secs(60), |d| {
        d.metric("pushing") == 1.0
    });
    std::thread::sleep(Duration::from_millis(300));
    daemon.signal("KILL");
    daemon.wait_exit(Duration::from_secs(10));
    let staged_at_kill = manifests(&s3).await;
    s3.set_latency(Duration::ZERO);

    // After a restart every staged snapshot lands once, complete.
    let daemon = Daemon::start(dir.path(), &config, &cluster, &[]);
    daemon.wait_for("everything pushed", Duration::from_secs(60), |d| {
        d.metric("snapshots_total") >= 1.0 && d.metric("snapshots_pending") == 0.0
    });
    let all = assert_complete(&s3).await;
    assert_eq!(
        all.len(),
        2,
        "the killed run's snapshot and the restart's: {:?}",
        all.keys()
    );
    for name in staged_at_kill.keys() {
        assert!(all.contains_key(name));
    }
    let expected = cluster_objects(&cluster);
    for name in all.keys() {
        assert_eq!(
            without_metrics(layout_objects(&s3, name).await),
            expected,
            "{name}"
        );
    }
    assert!(staging_is_empty(dir.path()));
}

#[test]
fn the_switch_and_bad_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let run = |yaml: &str| {
        std::fs::write(dir.path().join("cluster.yaml"), yaml).unwrap();
        let output = crate::support::binary(dir.path())
            .args(["run", "--config", "cluster.yaml"])
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        )
    };
    let (code, text) =
        run("kubeResourcesAutosave:\n  enabled: true\n  s3URI: s3://b-1\n  intervall: 1h\n");
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("intervall"), "{text}");
    let (code, text) = run(
        "kubeResourcesAutosave:\n  enabled: true\n  s3URI: s3://b-1\n  interval: 24 hours please\n",
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("kubeResourcesAutosave.interval") && text.contains("24 hours please"),
        "{text}"
    );
    let (code, text) = run("kubeResourcesAutosave:\n  enabled: true\n  s3URI: ftp://x\n");
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("s3URI") && text.contains("ftp"), "{text}");
    // A label selector the API server would refuse on every list.
    let (code, text) = run(
        "kubeResourcesAutosave:\n  enabled: true\n  s3URI: s3://b-1\n  rules:\n    labelSelector: 'app: web'\n",
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("kubeResourcesAutosave.rules.labelSelector") && text.contains("\"app: web\""),
        "{text}"
    );
    // Checked when switched off as well: switching on brings no surprise.
    let (code, text) = run(
        "kubeResourcesAutosave:\n  enabled: false\n  s3URI: s3://b-1\n  rules:\n    stripFields: [spec/x]\n",
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("kubeResourcesAutosave.rules.stripFields") && text.contains("\"spec/x\""),
        "{text}"
    );
    // Nothing was touched.
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["cluster.yaml".to_string()]);
}

/// Forbids (or allows again) every resource the simulated cluster serves, as RBAC does for a
/// service account without permissions.
pub(crate) async fn forbid_everything(cluster: &Cluster, on: bool) {
    let found = kube_autosave::kube::discover(&cluster.api().await)
        .await
        .unwrap();
    assert!(found.resources.len() > 20);
    for rt in found.resources {
        cluster.sim.faults().forbid(&rt.resource, on);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switched_off_it_stays_up_idle_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cluster.yaml");
    std::fs::write(
        &config,
        "kubeResourcesAutosave:\n  enabled: false\n  s3URI: s3://b-1\n",
    )
    .unwrap();
    let mut daemon = Daemon::spawn(dir.path(), &config, &[]);
    daemon.wait_for("the health endpoint", Duration::from_secs(20), |d| {
        d.get("/healthz").map(|r| r.0) == Some(200)
    });
    assert_eq!(daemon.get("/readyz").map(|r| r.0), Some(200));
    assert_eq!(daemon.metric("enabled"), 0.0);
    assert_eq!(daemon.metric("snapshots_total"), 0.0);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "it exited; log:\n{}",
        daemon.log()
    );
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(10)), Some(0));
    let log = daemon.log();
    let why = format!(
        "kubeResourcesAutosave.enabled is false in {}; nothing to do",
        config.display()
    );
    assert_eq!(log.matches(&why).count(), 1, "{log}");
    // Nothing was touched.
    assert!(!dir.path().join("state").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_can_list_nothing_is_a_failure_retried_until_it_can() {
    let s3 = S3Server::start();
    let cluster = Cluster::start(300, 44).await;
    forbid_everything(&cluster, true).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &s3, "  interval: 24h\n  pushInterval: 1s\n");
    let daemon = Daemon::start(dir.path(), &config, &cluster, &[]);
    daemon.wait_for("two failed snapshots", Duration::from_secs(60), |d| {
        d.metric("snapshot_failures_total") >= 2.0
    });
    assert_eq!(daemon.metric("snapshots_total"), 0.0);
    assert_eq!(daemon.metric("snapshots_pending"), 0.0);
    assert_eq!(daemon.metric("ready"), 0.0);
    assert_eq!(daemon.get("/readyz").map(|r| r.0), Some(503));
    let log = daemon.log();
    assert!(
        log.contains("no resource could be listed") && log.contains("RBAC"),
        "{log}"
    );
    assert!(manifests(&s3).await.is_empty());

    // Once it may list again, the next try is a snapshot.
    forbid_everything(&cluster, false).await;
    daemon.wait_for("a pushed snapshot", Duration::from_secs(60), |d| {
        d.metric("snapshots_total") >= 1.0 && d.metric("snapshots_pending") == 0.0
    });
    let all = assert_complete(&s3).await;
    assert_eq!(all.len(), 1, "{:?}", all.keys());
}

/// A pod rescheduled onto another node starts with a fresh cache: it still finishes every
/// snapshot at the destination whose export never did (not only the newest, not only what
/// its own pending table knew), and one that cannot be exported (a truncated manifest) is
/// counted and retried without holding up the others or the new snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_cache_daemon_finishes_every_interrupted_export() {
    let s3 = S3Server::start();
    let cluster = Cluster::start(600, 44).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &s3, "  interval: 24h\n  pushInterval: 1s\n");

    // Two snapshots whose manifests landed and whose exports never ran (the machine that
    // took them is gone with its cache), and a manifest cut short by a failed upload.
    let other_machine = tempfile::tempdir().unwrap();
    let settings = crate::support::job_settings(&s3, &cluster, other_machine.path());
    let store = kube_autosave::store::Store::open(
        crate::support::s3_backend(&s3, BASE).await,
        other_machine.path(),
        settings.store.clone(),
    )
    .await
    .unwrap();
    let api = cluster.api().await;
    let mut interrupted = Vec::new();
    for round in 0..2 {
        if round > 0 {
            cluster.sim.churn(0.05, round);
            tokio::time::sleep(Duration::from_millis(1050)).await;
        }
        let manifest = kube_autosave::snapshot::take_snapshot(
            &api,
            &store,
            &settings.snapshot,
            std::sync::Arc::new(|_| {}),
        )
        .await
        .unwrap();
        interrupted.push(manifest.time.to_string());
    }
    drop(store);
    let truncated = "20-01-01_00-00-00";
    let truncated_path = s3
        .bucket_dir()
        .join(format!("{BASE}store/snapshots/{truncated}"));
    let whole = std::fs::read(
        s3.bucket_dir()
            .join(format!("{BASE}store/snapshots/{}", interrupted[0])),
    )
    .unwrap();
    std::fs::write(&truncated_path, &whole[..whole.len() / 2]).unwrap();

    let daemon = Daemon::start(dir.path(), &config, &cluster, &[]);
    daemon.wait_for(
        "the earlier exports finished",
        Duration::from_secs(60),
        |d| {
            d.metric("snapshots_total") >= 1.0
                && d.metric("export_failures_total") >= 1.0
                && d.metric("snapshots_pending") == 1.0
        },
    );
    let metrics = daemon.metrics();
    assert!(
        metrics
            .get("kube_autosave_failures_total{step=\"export\",reason=\"malformed\"}")
            .is_some_and(|n| *n >= 1.0),
        "{metrics:?}"
    );
    // Every snapshot but the truncated one is complete, its plain layout whole.
    let cache = tempfile::tempdir().unwrap();
    let reader = crate::support::reader_store(&s3, BASE, cache.path()).await;
    let all = Manifest::list(&reader).await.unwrap();
    assert_eq!(all.len(), 4, "{all:?}");
    for time in &all {
        let name = time.to_string();
        if name == truncated {
            assert!(
                Manifest::export_record(&reader, time)
                    .await
                    .unwrap()
                    .is_none()
            );
            continue;
        }
        let manifest = Manifest::load(&reader, time).await.unwrap();
        let export = manifest
            .export
            .as_ref()
            .unwrap_or_else(|| panic!("{name} is not exported; log:\n{}", daemon.log()));
        let files = s3_server::read_all(
            &s3_server::plain_client(&s3).await,
            &format!("{BASE}backup/{name}/"),
        )
        .await;
        assert_eq!(files.len() as u64, export.files, "{name}");
        assert_eq!(
            layout_objects(&s3, &name).await.len(),
            manifest.objects.len(),
            "{name}"
        );
    }
    for name in &interrupted {
        assert!(all.iter().any(|t| &t.to_string() == name));
    }
    assert!(daemon.log().contains(truncated), "{}", daemon.log());
}

/// The pod starts before its S3 credentials exist (a Secret mounted later, a rotated key):
/// the daemon stages the snapshot, counts the pushes that fail for it, never exits, and the
/// snapshot lands once the credentials are there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_without_credentials_waits_for_them_and_then_pushes() {
    let s3 = S3Server::start();
    let cluster = Cluster::start(300, 45).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &s3, "  interval: 24h\n  pushInterval: 1s\n");

    let mut daemon = Daemon::start_without_credentials(dir.path(), &config, &cluster, &[]);
    daemon.wait_for(
        "pushes refused for want of credentials",
        Duration::from_secs(60),
        |d| {
            d.metric("snapshots_total") >= 1.0
                && d.metrics()
                    .get("kube_autosave_failures_total{step=\"push\",reason=\"access_denied\"}")
                    .is_some_and(|n| *n >= 2.0)
        },
    );
    assert_eq!(daemon.child.try_wait().unwrap(), None, "{}", daemon.log());
    assert!(manifests(&s3).await.is_empty());
    assert_eq!(daemon.get("/readyz").map(|r| r.0), Some(200));
    assert!(
        !daemon.log().contains(s3_server::SECRET_KEY),
        "a credential in the log"
    );

    std::fs::write(
        dir.path().join("no-aws-credentials"),
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            s3_server::ACCESS_KEY,
            s3_server::SECRET_KEY
        ),
    )
    .unwrap();
    daemon.wait_for("the staged snapshot pushed", Duration::from_secs(60), |d| {
        d.metric("snapshots_pending") == 0.0
    });
    let all = assert_complete(&s3).await;
    assert_eq!(all.len(), 1);
    assert_eq!(daemon.child.try_wait().unwrap(), None);
    assert!(!daemon.log().contains(s3_server::SECRET_KEY));
}

/// Staging has a cap: while S3 is away and staging holds it, the daemon takes no new
/// snapshot, says so in its log, its metrics and `/readyz`, and deletes nothing; once S3 is
/// back, the staged snapshots land and snapshots resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_staging_pauses_snapshots_and_deletes_nothing() {
    let s3 = S3Server::start();
    let cluster = Cluster::start(300, 46).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &s3,
        "  interval: 2s\n  pushInterval: 1s\n  stagingLimit: 1Ki\n",
    );
    s3.stop();
    let daemon = Daemon::start(dir.path(), &config, &cluster, &[]);
    daemon.wait_for("staging full", Duration::from_secs(60), |d| {
        d.metric("staging_full") == 1.0
    });
    // Well past the interval: still the one snapshot, still staged.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(daemon.metric("snapshots_total"), 1.0, "{}", daemon.log());
    assert_eq!(daemon.metric("snapshots_pending"), 1.0);
    assert!(daemon.metric("staging_bytes") >= 1024.0);
    let (status, body) = daemon.get("/readyz").unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("staging is full"), "{body}");
    assert!(daemon.log().contains("staging is full"));

    s3.restart();
    daemon.wait_for("snapshots resumed", Duration::from_secs(60), |d| {
        d.metric("snapshots_total") >= 2.0 && d.metric("snapshots_pending") == 0.0
    });
    assert_eq!(daemon.metric("staging_full"), 0.0);
    let all = assert_complete(&s3).await;
    assert!(all.len() >= 2, "{:?}", all.keys());
}

/// A folder that belongs to another cluster is a configuration to fix, not an outage: the
/// daemon exits with code 2 and says what to change, and writes nothing there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_of_another_cluster_stops_the_daemon_with_exit_code_two() {
    let s3 = S3Server::start();
    let cluster = Cluster::start(200, 47).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &s3, "  interval: 24h\n  pushInterval: 1s\n");
    let identity = s3.bucket_dir().join(format!("{BASE}store/cluster.json"));
    std::fs::create_dir_all(identity.parent().unwrap()).unwrap();
    std::fs::write(
        &identity,
        r#"{"kubeSystemUid": "0a0a0a0a-other-cluster", "clusterName": "prod", "claimedAt": "2026-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    let mut daemon = Daemon::start(dir.path(), &config, &cluster, &[]);
    assert_eq!(
        daemon.wait_exit(Duration::from_secs(30)),
        Some(2),
        "{}",
        daemon.log()
    );
    let log = daemon.log();
    assert!(
        log.contains("0a0a0a0a-other-cluster") && log.contains("clusterName"),
        "{log}"
    );
    assert!(manifests(&s3).await.is_empty());
}

/// The daemon's disk use over 20 snapshots of a churning cluster with a small pack cache:
/// run with `cargo test --test integration -- --ignored --nocapture measure_daemon_disk`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement for the benchmark notes, not a check"]
async fn measure_daemon_disk_use_over_20_snapshots() {
    let s3 = S3Server::start();
    let cluster = Cluster::start(5_000, 48).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &s3,
        "  interval: 1s\n  pushInterval: 1s\n  packCacheSize: 1Mi\n",
    );
    let daemon = Daemon::start(dir.path(), &config, &cluster, &[]);
    let du = |path: &Path| -> u64 {
        walk_files(path)
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum()
    };
    let state = dir.path().join("state");
    let mut peak = 0;
    for n in 1..=20u64 {
        daemon.wait_for("the next snapshot pushed", Duration::from_secs(120), |d| {
            d.metric("pushes_total") >= n as f64
        });
        let packs: u64 = std::fs::read_dir(&state)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".packs"))
            .map(|e| du(&e.path()))
            .sum();
        let all = du(&state);
        peak = peak.max(all);
        eprintln!("snapshot {n:2}: state {all:>10} bytes, of which pack copies {packs:>9}");
        cluster.sim.churn(0.02, n);
    }
    eprintln!("peak {peak} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_retention_policy_the_daemon_forgets_and_prunes_after_each_push() {
    let s3 = S3Server::start();
    let cluster = Cluster::start(300, 43).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &s3,
        "  interval: 1s\n  pushInterval: 1s\n  retention:\n    keepLast: 2\n    keepLayout: 1\n",
    );
    let daemon = Daemon::start(dir.path(), &config, &cluster, &[]);
    daemon.wait_for(
        "four snapshots and a prune that forgot two",
        Duration::from_secs(90),
        |d| d.metric("snapshots_total") >= 4.0 && d.metric("snapshots_forgotten_total") >= 2.0,
    );
    let metrics = daemon.metrics();
    assert!(metrics["kube_autosave_last_prune_timestamp_seconds"] > 0.0);
    assert!(
        metrics["kube_autosave_prune_reclaimed_bytes_total"] > 0.0,
        "{metrics:?}"
    );
    assert_eq!(
        metrics["kube_autosave_prune_failures_total"],
        0.0,
        "{}",
        daemon.log()
    );
    drop(daemon);

    // What is left: at most the policy's two (a third if a snapshot landed after the last
    // prune), the newest with its layout, and every one restorable.
    let cache = tempfile::tempdir().unwrap();
    let store = crate::support::reader_store(&s3, BASE, cache.path()).await;
    let times = Manifest::list(&store).await.unwrap();
    assert!((2..=3).contains(&times.len()), "{times:?}");
    let dropped = Manifest::list_dropped_layouts(&store).await.unwrap();
    assert!(!dropped.contains(times.last().unwrap()), "{dropped:?}");
    let client = s3_server::plain_client(&s3).await;
    let layouts: BTreeSet<String> = s3_server::read_all(&client, &format!("{BASE}backup/"))
        .await
        .keys()
        .filter_map(|k| {
            k.strip_prefix(&format!("{BASE}backup/"))?
                .split('/')
                .next()
                .map(str::to_string)
        })
        .collect();
    assert!(layouts.len() <= 2, "{layouts:?}");
    let report = kube_autosave::inspect::verify::verify(
        &store,
        &times,
        &kube_autosave::seal::Keyring::default(),
    )
    .await
    .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

/// While the daemon cannot reach S3, someone who can forgets and prunes the snapshot its
/// staged one deduplicates against: the push notices before it stores anything that refers
/// to deleted packs, drops the staged snapshot (counted), and the next snapshot stores the
/// objects again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_snapshot_a_prune_emptied_meanwhile_is_dropped_and_taken_again() {
    let s3 = S3Server::start();
    let cluster = Cluster::start(300, 47).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &s3, "  interval: 3s\n  pushInterval: 1s\n");
    let daemon = Daemon::start(dir.path(), &config, &cluster, &[]);
    daemon.wait_for("the first snapshot pushed", Duration::from_secs(60), |d| {
        d.metric("snapshots_total") >= 1.0 && d.metric("snapshots_pending") == 0.0
    });
    let first = manifests(&s3).await.into_keys().next().unwrap();
    s3.stop();
    daemon.wait_for("a second snapshot staged", Duration::from_secs(60), |d| {
        d.metric("snapshots_total") >= 2.0 && d.metric("push_failures_total") >= 1.0
    });

    // The cluster moves on too, so that the next snapshot does not store every object the
    // staged one refers to.
    cluster.sim.churn(0.2, 5);
    let other = s3.twin();
    let mut command = crate::support::binary(dir.path());
    let output = crate::support::with_s3(&mut command, &other)
        .args(["--to", "s3://backups/team", "--cluster-name", "prod"])
        .args(["--cache-dir", "elsewhere", "forget", "--prune", &first])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    drop(other);
    s3.restart();

    daemon.wait_for(
        "the emptied staged snapshot dropped, and a complete one pushed",
        Duration::from_secs(90),
        |d| {
            d.metrics()
                .get("kube_autosave_failures_total{step=\"push\",reason=\"pruned_meanwhile\"}")
                .is_some_and(|n| *n >= 1.0)
                && d.metric("snapshots_pending") == 0.0
                && !manifests_blocking(&s3).is_empty()
        },
    );
    drop(daemon);
    let all = assert_complete(&s3).await;
    assert!(!all.contains_key(&first));
    let cache = tempfile::tempdir().unwrap();
    let store = crate::support::reader_store(&s3, BASE, cache.path()).await;
    let times = Manifest::list(&store).await.unwrap();
    let report = kube_autosave::inspect::verify::verify(
        &store,
        &times,
        &kube_autosave::seal::Keyring::default(),
    )
    .await
    .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

/// The snapshot names at the destination, from a thread that may block.
fn manifests_blocking(s3: &S3Server) -> Vec<String> {
    std::fs::read_dir(s3.bucket_dir().join(BASE).join("store/snapshots"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|name| !name.contains('.'))
                .collect()
        })
        .unwrap_or_default()
}
