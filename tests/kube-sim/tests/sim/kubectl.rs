//! kubectl against the simulated server.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use kube_sim::{SimConfig, SimServer};
use serde_json::Value;

use crate::common::*;

struct Kubectl {
    dir: tempfile::TempDir,
}

impl Kubectl {
    /// kubectl sends the bearer token only over HTTPS, so these tests use TLS.
    fn new(server: &SimServer) -> Kubectl {
        let found = Command::new("kubectl")
            .arg("version")
            .arg("--client")
            .output();
        if found.is_err() {
            panic!(
                "kubectl is not installed: install the Debian package kubernetes-client (apt-get install -y kubernetes-client)"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        server.write_kubeconfig(&dir.path().join("config")).unwrap();
        Kubectl { dir }
    }

    fn run(&self, args: &[&str]) -> (String, String) {
        let (ok, stdout, stderr) = self.try_run(args);
        assert!(ok, "kubectl {args:?} failed:\n{stderr}\n{stdout}");
        (stdout, stderr)
    }

    /// kubectl with this cluster's kubeconfig, a cache and a home of its own, and `args`.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("kubectl");
        command
            .arg("--kubeconfig")
            .arg(self.dir.path().join("config"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .env("HOME", self.dir.path());
        command
    }

    /// Starts kubectl with its output piped, for a command that runs until it is stopped.
    fn spawn(&self, args: &[&str]) -> Running {
        let child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        Running(child)
    }

    /// Runs kubectl; returns whether it succeeded, its output and its errors.
    fn try_run(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.command(args).output().expect("kubectl runs");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        (out.status.success(), stdout, stderr)
    }
}

/// A kubectl that runs until stopped; stopped when dropped.
struct Running(Child);

impl Running {
    /// Lines of its output, as they come.
    fn lines(&mut self) -> mpsc::Receiver<String> {
        let (tx, rx) = mpsc::channel();
        let stdout = self.0.stdout.take().expect("piped output");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        rx
    }

    /// Stops it; returns its errors.
    fn stop(mut self) -> String {
        let _ = self.0.kill();
        let mut err = String::new();
        if let Some(mut e) = self.0.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let _ = self.0.wait();
        err
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits up to `within` for a line that contains `needle`; returns the lines read.
fn wait_for(lines: &mpsc::Receiver<String>, needle: &str, within: Duration) -> (bool, Vec<String>) {
    let deadline = std::time::Instant::now() + within;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return (true, seen);
                }
            }
            Err(_) => break,
        }
    }
    (false, seen)
}

async fn tls_server(objects: usize) -> SimServer {
    start(SimConfig {
        objects,
        tls: true,
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn api_resources() {
    let server = tls_server(300).await;
    let k = Kubectl::new(&server);
    let (out, err) = tokio::task::spawn_blocking(move || {
        (k.run(&["api-resources", "--no-headers", "-o", "wide"]), k)
    })
    .await
    .unwrap()
    .0;
    assert!(!err.contains("couldn't get"), "{err}");
    let c = client(&server).await;
    // Every resource of every group's preferred version is listed, with the right group.
    let apis = get_json(&c, "/apis").await;
    let mut expected = std::collections::BTreeSet::new();
    for r in get_json(&c, "/api/v1").await["resources"]
        .as_array()
        .unwrap()
    {
        let name = r["name"].as_str().unwrap();
        if !name.contains('/') {
            expected.insert((name.to_string(), "v1".to_string()));
        }
    }
    for g in apis["groups"].as_array().unwrap() {
        let gv = g["preferredVersion"]["groupVersion"].as_str().unwrap();
        for r in get_json(&c, &format!("/apis/{gv}")).await["resources"]
            .as_array()
            .unwrap()
        {
            let name = r["name"].as_str().unwrap();
            if !name.contains('/') {
                expected.insert((name.to_string(), gv.to_string()));
            }
        }
    }
    let got: std::collections::BTreeSet<(String, String)> = out
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            // NAME [SHORTNAMES] APIVERSION NAMESPACED KIND VERBS [CATEGORIES]
            let av = cols.iter().position(|c| *c == "true" || *c == "false")?;
            Some((cols[0].to_string(), cols[av - 1].to_string()))
        })
        .collect();
    for e in &expected {
        assert!(got.contains(e), "kubectl api-resources lacks {e:?}:\n{out}");
    }
    assert!(got.contains(&("widgets".to_string(), "example.com/v1".to_string())));
    assert!(got.contains(&("pods".to_string(), "metrics.k8s.io/v1beta1".to_string())));
}

#[tokio::test]
async fn get_deployments_all_namespaces_json() {
    let server = tls_server(2000).await;
    let k = Kubectl::new(&server);
    let (out, _) =
        tokio::task::spawn_blocking(move || k.run(&["get", "deployments", "-A", "-o", "json"]))
            .await
            .unwrap();
    let list: Value = serde_json::from_str(&out).unwrap();
    let got = names(list["items"].as_array().unwrap());
    assert_eq!(got, stored_names(&server, "apps", "deployments", None));
    assert!(got.len() > 20);
    // kubectl fills in the item types the server leaves out of lists.
    assert_eq!(list["items"][0]["kind"], "Deployment");
}

#[tokio::test]
async fn get_configmaps_in_chunks() {
    let server = tls_server(2000).await;
    // The namespace with the most config maps.
    let mut per_ns = std::collections::BTreeMap::<String, usize>::new();
    for k in server
        .objects()
        .into_iter()
        .filter(|k| k.resource == "configmaps")
    {
        *per_ns.entry(k.namespace.unwrap()).or_default() += 1;
    }
    let ns: &'static str = per_ns
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(ns, _)| ns)
        .unwrap()
        .leak();
    let expected = stored_names(&server, "", "configmaps", Some(ns));
    assert!(expected.len() > 6, "{expected:?}");
    let k = Kubectl::new(&server);
    let (out, err) = tokio::task::spawn_blocking(move || {
        k.run(&[
            "get",
            "cm",
            "-n",
            ns,
            "--chunk-size=3",
            "-o",
            "json",
            "-v=6",
        ])
    })
    .await
    .unwrap();
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(names(list["items"].as_array().unwrap()), expected);
    let requests = err
        .lines()
        .filter(|l| l.contains("/configmaps?") && l.contains("limit=3"))
        .count();
    assert_eq!(requests, expected.len().div_ceil(3), "{err}");
    assert!(err.contains("continue="));

    // Plain `get` asks for a server-side Table.
    let k = Kubectl::new(&server);
    let (out, _) =
        tokio::task::spawn_blocking(move || k.run(&["get", "cm", "-n", ns, "--chunk-size=3"]))
            .await
            .unwrap();
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, vec!["NAME", "AGE"]);
    let shown: Vec<String> = lines
        .map(|l| format!("{ns}/{}", l.split_whitespace().next().unwrap()))
        .collect();
    assert_eq!(shown, expected);
}

#[tokio::test]
async fn create_from_file_and_get_crd() {
    let server = tls_server(300).await;
    let k = Kubectl::new(&server);
    let file = k.dir.path().join("objects.json");
    std::fs::write(
        &file,
        serde_json::to_vec(&serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "restored"}},
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "restored"}, "data": {"a": "1"}},
            ],
        }))
        .unwrap(),
    )
    .unwrap();
    let single = k.dir.path().join("secret.json");
    std::fs::write(
        &single,
        serde_json::to_vec(&serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token", "namespace": "restored"}, "type": "Opaque", "data": {"t": "dA=="}})).unwrap(),
    )
    .unwrap();
    let f = file.to_string_lossy().to_string();
    let f2 = single.to_string_lossy().to_string();
    let (out, crd) = tokio::task::spawn_blocking(move || {
        let created = k.run(&["create", "-f", &f, "-f", &f2]).0;
        let crd = k.run(&["get", "crd"]).0;
        (created, crd)
    })
    .await
    .unwrap();
    assert!(out.contains("namespace/restored created"), "{out}");
    assert!(out.contains("configmap/settings created"), "{out}");
    assert!(crd.contains("widgets.example.com"), "{crd}");
    let log: Vec<String> = server
        .create_log()
        .iter()
        .map(|k| format!("{}/{}", k.resource, k.name))
        .collect();
    assert!(out.contains("secret/token created"), "{out}");
    assert_eq!(
        log,
        vec![
            "namespaces/restored",
            "configmaps/settings",
            "secrets/token"
        ]
    );
}

#[tokio::test]
async fn create_of_a_job_with_an_old_selector_fails_until_stripped() {
    let server = start(SimConfig {
        tls: true,
        empty: true,
        ..Default::default()
    })
    .await;
    let k = Kubectl::new(&server);
    let list = |job: Value| serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [job]});
    let mut job = crate::admission::job_from_backup("nightly");
    let old = k.dir.path().join("old.json");
    std::fs::write(&old, serde_json::to_vec(&list(job.clone())).unwrap()).unwrap();
    crate::admission::strip_job(&mut job);
    let stripped = k.dir.path().join("stripped.json");
    std::fs::write(&stripped, serde_json::to_vec(&list(job)).unwrap()).unwrap();
    let (old, stripped) = (
        old.to_string_lossy().to_string(),
        stripped.to_string_lossy().to_string(),
    );
    let (rejected, created) = tokio::task::spawn_blocking(move || {
        (
            k.try_run(&["create", "-f", &old]),
            k.try_run(&["create", "-f", &stripped]),
        )
    })
    .await
    .unwrap();
    let (ok, _, err) = rejected;
    assert!(!ok, "{err}");
    assert!(err.contains("\"nightly\" is invalid"), "{err}");
    assert!(err.contains("`selector` not auto-generated"), "{err}");
    let (ok, out, err) = created;
    assert!(ok, "{err}");
    assert!(out.contains("job.batch/nightly created"), "{out}");
}

/// A Secret whose data is plain text, not base64, is refused by the server with the real
/// message; the same Secret with `stringData` is created, its values base64 in `data`.
#[tokio::test]
async fn create_of_a_secret_with_plain_text_data_fails_and_string_data_works() {
    let server = start(SimConfig {
        tls: true,
        empty: true,
        ..Default::default()
    })
    .await;
    let k = Kubectl::new(&server);
    let plain = k.dir.path().join("plain.json");
    let secret = |field: &str| serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "default"}, field: {"password": "wombat"}});
    std::fs::write(&plain, serde_json::to_vec(&secret("data")).unwrap()).unwrap();
    let strings = k.dir.path().join("strings.json");
    std::fs::write(&strings, serde_json::to_vec(&secret("stringData")).unwrap()).unwrap();
    let (plain, strings) = (
        plain.to_string_lossy().to_string(),
        strings.to_string_lossy().to_string(),
    );
    let (rejected, created, stored) = tokio::task::spawn_blocking(move || {
        let rejected = k.try_run(&["create", "-f", &plain]);
        let created = k.try_run(&["create", "-f", &strings]);
        let stored = k
            .run(&["get", "secret", "db", "-n", "default", "-o", "json"])
            .0;
        (rejected, created, stored)
    })
    .await
    .unwrap();
    let (ok, _, err) = rejected;
    assert!(!ok, "{err}");
    assert!(
        err.contains(
            r#"Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte 4"#
        ),
        "{err}"
    );
    let (ok, out, err) = created;
    assert!(ok, "{err}");
    assert!(out.contains("secret/db created"), "{out}");
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["data"]["password"], "d29tYmF0");
    assert_eq!(stored["type"], "Opaque");
}

/// A resource its group serves only at a version other than the preferred one is found
/// and listed by kubectl.
#[tokio::test]
async fn get_resource_only_at_a_non_preferred_version() {
    let server = tls_server(1000).await;
    let k = Kubectl::new(&server);
    let resource = format!("alertmanagerconfigs.{}", kube_sim::MONITORING_GROUP);
    let (json, table) = tokio::task::spawn_blocking(move || {
        let json = k.run(&["get", &resource, "-A", "-o", "json"]).0;
        let table = k.run(&["get", &resource, "-A"]).0;
        (json, table)
    })
    .await
    .unwrap();
    let expected = stored_names(
        &server,
        kube_sim::MONITORING_GROUP,
        "alertmanagerconfigs",
        None,
    );
    assert!(!expected.is_empty());
    let list: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(names(list["items"].as_array().unwrap()), expected);
    assert_eq!(
        list["items"][0]["apiVersion"],
        format!("{}/v1alpha1", kube_sim::MONITORING_GROUP)
    );
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, vec!["NAMESPACE", "NAME", "AGE"]);
    let shown: Vec<String> = lines
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            format!("{}/{}", cols[0], cols[1])
        })
        .collect();
    assert_eq!(shown, expected);
}

/// `kubectl get configmaps -w` prints the current config maps, then one created while it
/// watches (it lists, then watches from the list's resource version with server-side
/// Tables).
#[tokio::test]
async fn get_watch_prints_a_change() {
    let server = tls_server(300).await;
    let k = Kubectl::new(&server);
    let mut watching = k.spawn(&[
        "get",
        "configmaps",
        "-n",
        "default",
        "-w",
        "--request-timeout=30s",
    ]);
    let lines = watching.lines();
    let (listed, seen) = tokio::task::spawn_blocking(move || {
        let found = wait_for(&lines, "kube-root-ca.crt", Duration::from_secs(20));
        (found, lines)
    })
    .await
    .map(|((found, seen), lines)| ((found, lines), seen))
    .unwrap();
    let (found, lines) = listed;
    assert!(found, "kubectl listed nothing: {seen:?}");
    let c = client(&server).await;
    let r = send(
        &c,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        &[("Content-Type", "application/json")],
        Some(serde_json::json!({"metadata": {"name": "made-while-watching"}, "data": {"a": "1"}})),
    )
    .await;
    assert_eq!(r.status, 201);
    let (found, seen) = tokio::task::spawn_blocking(move || {
        wait_for(&lines, "made-while-watching", Duration::from_secs(20))
    })
    .await
    .unwrap();
    let err = watching.stop();
    assert!(
        found,
        "kubectl get -w did not print the change: {seen:?}\n{err}"
    );
    let row: Vec<&str> = seen.last().unwrap().split_whitespace().collect();
    assert_eq!(row.first(), Some(&"made-while-watching"), "{seen:?}");
}
