//! A Secret's values never reach a terminal, a log or a script: every command that reads a
//! snapshot, in text and in JSON, with debug logs on, is run over snapshots of a cluster whose
//! Secret holds a known value in `data` and again in the last-applied annotation that
//! `kubectl apply` leaves — and the value is looked for in everything they print.

use std::path::Path;
use std::process::{Command, Output};

use kube_sim::SimConfig;
use serde_json::{Value, json};

use crate::support::binary as kube_autosave;
use crate::support::cluster::Cluster;
use crate::support::objects::base64;

const NAMESPACE: &str = "payments";
const NAME: &str = "db-credentials";
/// The values the Secret holds, before and after it changes; long and unusual enough that
/// they cannot appear in output by chance.
const VALUES: [&str; 2] = ["hunter2-Zq8vLx3-before", "hunter2-Wm5pRt9-after"];

/// The Secret as `kubectl apply` leaves it: the values in `data`, and the applied object,
/// values included, in the last-applied annotation.
fn secret(value: &str) -> Value {
    let data = json!({"password": base64(value.as_bytes()), "username": base64(b"payments-app")});
    let applied = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "type": "Opaque",
        "data": data,
    });
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": applied.to_string(),
            },
        },
        "type": "Opaque",
        "data": data,
    })
}

/// What must never be printed: each value as it is, and as it is stored (base64).
fn forbidden() -> Vec<String> {
    VALUES
        .iter()
        .flat_map(|v| [v.to_string(), base64(v.as_bytes())])
        .collect()
}

fn assert_no_secret(what: &str, output: &Output) {
    let printed = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for value in forbidden() {
        assert!(
            !printed.contains(&value),
            "`{what}` printed a Secret value:\n{printed}"
        );
    }
}

async fn run(command: Command) -> Output {
    let mut command = command;
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn command(dir: &Path, destination: &Path, args: &[&str]) -> Command {
    let mut command = kube_autosave(dir);
    command
        .arg("-vv")
        .args(["--to", &destination.display().to_string()])
        .args(["--cluster-name", "prod"])
        .args(["--cache-dir", &dir.join("cache").display().to_string()])
        .args(args);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_command_prints_a_secret_value() {
    let cluster = Cluster::start(400, 91).await;
    let api = cluster.api().await;
    let dir = tempfile::tempdir().unwrap();
    let destination = dir.path().join("backups");
    let kubeconfig = cluster.kubeconfig.display().to_string();

    let namespace =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    // The namespace may exist in the generated cluster already.
    let _ = api
        .post("/api/v1/namespaces", namespace.to_string().into())
        .await;
    let secrets = format!("/api/v1/namespaces/{NAMESPACE}/secrets");
    api.post(&secrets, secret(VALUES[0]).to_string().into())
        .await
        .expect("the Secret is created");

    let mut outputs: Vec<(String, Output)> = Vec::new();
    let output = run(command(
        dir.path(),
        &destination,
        &["snapshot", "--kubeconfig", &kubeconfig],
    ))
    .await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    outputs.push(("snapshot".into(), output));

    // The Secret changes, and a second snapshot sees it (snapshot names are to the second).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let path = format!("{secrets}/{NAME}");
    let mut current: Value =
        serde_json::from_slice(&api.get_opt(&path).await.unwrap().unwrap()).unwrap();
    let changed = secret(VALUES[1]);
    current["data"] = changed["data"].clone();
    current["metadata"]["annotations"] = changed["metadata"]["annotations"].clone();
    api.put(&path, current.to_string().into()).await.unwrap();
    // This one logs for a log pipeline: every line is a JSON object.
    let output = run(command(
        dir.path(),
        &destination,
        &[
            "snapshot",
            "--kubeconfig",
            &kubeconfig,
            "--log-format",
            "json",
        ],
    ))
    .await;
    assert_eq!(output.status.code(), Some(0));
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.lines().count() > 3, "{log}");
    for line in log.lines() {
        let event: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            event["level"].is_string() && event["message"].is_string(),
            "{line}"
        );
    }
    outputs.push(("snapshot (second, JSON logs)".into(), output));

    let list = run(command(
        dir.path(),
        &destination,
        &["list", "--output", "json"],
    ))
    .await;
    let snapshots: Value = serde_json::from_slice(&list.stdout).expect("list --output json");
    let times: Vec<String> = snapshots
        .as_array()
        .expect("a list of snapshots")
        .iter()
        .filter_map(|s| s.get("time").and_then(Value::as_str).map(str::to_string))
        .collect();
    assert_eq!(times.len(), 2, "{snapshots}");
    let (newest, oldest) = (times[0].as_str(), times[1].as_str());
    outputs.push(("list --output json".into(), list));

    // The diff must show that the Secret changed, without showing how.
    let diff = run(command(
        dir.path(),
        &destination,
        &["diff", oldest, newest, "--output", "json"],
    ))
    .await;
    let shown = String::from_utf8_lossy(&diff.stdout).into_owned();
    assert!(
        shown.contains(NAME),
        "the diff names the changed Secret: {shown}"
    );
    assert!(shown.contains("<secret value: "), "{shown}");
    outputs.push(("diff --output json".into(), diff));

    let empty = Cluster::start_with(SimConfig {
        empty: true,
        ..SimConfig::default()
    })
    .await;
    let empty_kubeconfig = empty.kubeconfig.display().to_string();
    let layout = destination.join("prod/backup").join(newest);
    let layout = layout.display().to_string();
    let mut commands: Vec<Vec<&str>> = vec![
        vec!["list"],
        vec!["show", "latest"],
        vec!["show", "latest", "--output", "json"],
        vec!["show", "latest", "--resource", "secrets"],
        vec![
            "show",
            "latest",
            "--resource",
            "secrets",
            "--output",
            "json",
        ],
        vec![
            "show",
            "latest",
            "--namespace",
            NAMESPACE,
            "--output",
            "json",
        ],
        vec!["diff", oldest, newest],
        vec!["diff", oldest, "latest"],
        vec!["verify", "--all"],
        vec!["verify", "--all", "--output", "json"],
        vec![
            "restore",
            "latest",
            "--dry-run",
            "--kubeconfig",
            &empty_kubeconfig,
        ],
        vec![
            "restore",
            "--from-layout",
            &layout,
            "--dry-run",
            "--kubeconfig",
            &empty_kubeconfig,
        ],
        vec!["restore", "latest", "--kubeconfig", &empty_kubeconfig],
    ];
    // The second restore finds everything there already.
    commands.push(vec!["restore", "latest", "--kubeconfig", &empty_kubeconfig]);
    for args in commands {
        let output = run(command(dir.path(), &destination, &args)).await;
        assert!(
            matches!(output.status.code(), Some(0) | Some(3)),
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        outputs.push((args.join(" "), output));
    }
    for (what, output) in &outputs {
        assert_no_secret(what, output);
    }

    // The restored Secret holds the newest value: it was hidden, not lost.
    let restored: Value = serde_json::from_slice(
        &empty
            .api()
            .await
            .get_opt(&path)
            .await
            .unwrap()
            .expect("the Secret is restored"),
    )
    .unwrap();
    assert_eq!(restored["data"]["password"], base64(VALUES[1].as_bytes()));
}
