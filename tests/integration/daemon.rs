//! The daemon as it runs in its pod, as a real process: snapshots at start and every
//! interval, staged through S3 outages and pushed once S3 is back, clean stops on SIGTERM,
//! no loss or duplication after kill -9, and its configuration switch and errors.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube_autosave::snapshot::Manifest;
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

fn write_config(dir: &Path, s3: &S3Server, extra: &str) -> PathBuf {
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

struct Daemon {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Daemon {
    fn start(dir: &Path, config: &Path, cluster: &Cluster, args: &[&str]) -> Daemon {
        let kubeconfig = cluster.kubeconfig.display().to_string();
        let mut all = vec!["--kubeconfig", &kubeconfig];
        all.extend_from_slice(args);
        Self::spawn(dir, config, &all)
    }

    fn spawn(dir: &Path, config: &Path, args: &[&str]) -> Daemon {
        let port = free_port();
        let log = dir.join(format!("daemon-{port}.log"));
        let child = crate::support::s3_credentials(&mut crate::support::binary(dir))
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

    fn get(&self, path: &str) -> Option<(u16, String)> {
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

    fn metric(&self, name: &str) -> f64 {
        self.metrics()
            .get(&format!("kube_autosave_{name}"))
            .copied()
            .unwrap_or(-1.0)
    }

    fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Daemon) -> bool) {
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
    let client = s3_server::plain_client(s3).await;
    let files = s3_server::read_all(&client, &format!("{BASE}backup/{time}/")).await;
    let mut out = BTreeSet::new();
    for body in files.values() {
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
    let found = kube_autosave::snapshot::discover(&cluster.api().await)
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
