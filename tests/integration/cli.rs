//! The `kube-autosave` binary as scripts use it: flags, environment, config file, the
//! summary, and exit codes (0 done, 1 failed, 2 bad input, 3 done but resources skipped);
//! what it tells shells and `man`; and the same binary run by kubectl as `kubectl autosave`.

use std::process::Output;

use crate::support::cluster::Cluster;
use crate::support::s3_server::S3Server;
use crate::support::{binary as kube_autosave, with_s3};

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_to_s3_prints_a_summary_and_exits_zero_or_three_when_something_was_skipped() {
    let s3 = S3Server::start();
    let cluster = Cluster::start(1_000, 31).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = cluster.kubeconfig.display().to_string();

    let output = tokio::task::spawn_blocking({
        let mut command = kube_autosave(dir.path());
        with_s3(&mut command, &s3).args([
            "snapshot",
            "--to",
            "s3://backups/team",
            "--cluster-name",
            "prod",
            "--kubeconfig",
            &kubeconfig,
        ]);
        move || command.output().unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    for expected in [
        "objects",
        "new objects",
        "uploaded",
        "copied",
        "duration",
        "skipped       nothing",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("s3://backups/team/prod/backup/"),
        "{stdout}"
    );
    assert!(s3.bucket_dir().join("team/prod/store/snapshots").is_dir());

    // A resource the service account may not list: done, but exit code 3, and it says what.
    cluster.sim.faults().forbid("secrets", true);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let output = tokio::task::spawn_blocking({
        let mut command = kube_autosave(dir.path());
        with_s3(&mut command, &s3)
            .env("KUBE_AUTOSAVE_S3_URI", "s3://backups/team")
            .env("KUBE_AUTOSAVE_CLUSTER_NAME", "prod")
            .env("KUBECONFIG", &kubeconfig)
            .arg("snapshot");
        move || command.output().unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stdout.contains("secrets: 403"), "{stdout}");
    // The second snapshot copied what did not change.
    assert!(!stdout.contains("copied        0 B"), "{stdout}");
}

#[test]
fn bad_input_exits_two_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let output = kube_autosave(dir.path())
        .args(["snapshot", "--to", "gs://bucket/x"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("unknown scheme \"gs\""), "{stderr}");

    std::fs::write(
        dir.path().join("cluster.yaml"),
        "kubeResourcesAutosave:\n  enabled: true\n  s3Uri: s3://typo\n",
    )
    .unwrap();
    let output = kube_autosave(dir.path())
        .args(["snapshot", "--config", "cluster.yaml"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("s3Uri"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        vec!["cluster.yaml".to_string()],
        "bad input created files"
    );
}

#[test]
fn an_unreachable_cluster_fails_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\n\
         contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: t\n"
    );
    std::fs::write(dir.path().join("kubeconfig"), kubeconfig).unwrap();
    let output = kube_autosave(dir.path())
        .args(["snapshot", "--kubeconfig", "kubeconfig", "--to", "out"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("API server is reachable"), "{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")) || stderr.contains("/api"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_destination_snapshots_go_to_a_local_folder() {
    let cluster = Cluster::start(300, 32).await;
    let dir = tempfile::tempdir().unwrap();
    let output = tokio::task::spawn_blocking({
        let mut command = kube_autosave(dir.path());
        command.args([
            "snapshot",
            "--kubeconfig",
            &cluster.kubeconfig.display().to_string(),
        ]);
        move || command.output().unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let backups = dir.path().join("kube-autosave-backups/cluster/backup");
    let snapshots: Vec<_> = std::fs::read_dir(&backups).unwrap().collect();
    assert_eq!(snapshots.len(), 1);
    assert!(
        stdout.contains("kube-autosave-backups/cluster/backup/"),
        "{stdout}"
    );
}

/// A snapshot that could list nothing, or not the namespaces, is a failure (exit 1) that says
/// what to check, and leaves no snapshot behind; with the namespaces left out on purpose it
/// is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_lists_nothing_or_no_namespaces_fails_and_leaves_no_snapshot() {
    let cluster = Cluster::start(300, 33).await;
    let dir = tempfile::tempdir().unwrap();
    let snapshot = |config: Option<&str>| {
        let mut command = kube_autosave(dir.path());
        command.args([
            "snapshot",
            "--to",
            "out",
            "--kubeconfig",
            &cluster.kubeconfig.display().to_string(),
        ]);
        if let Some(config) = config {
            std::fs::write(dir.path().join("cluster.yaml"), config).unwrap();
            command.args(["--config", "cluster.yaml"]);
        }
        async move {
            let output = tokio::task::spawn_blocking(move || command.output().unwrap())
                .await
                .unwrap();
            let (stdout, stderr) = text(&output);
            (output.status.code(), stdout + &stderr)
        }
    };
    let snapshots = || {
        std::fs::read_dir(dir.path().join("out/cluster/store/snapshots"))
            .map(|entries| entries.count())
            .unwrap_or(0)
    };

    crate::daemon::forbid_everything(&cluster, true).await;
    let (code, text) = snapshot(None).await;
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no resource could be listed"), "{text}");
    assert!(text.contains("403"), "{text}");
    assert!(
        text.contains("RBAC") && text.contains("API server"),
        "{text}"
    );
    assert_eq!(snapshots(), 0);
    assert!(!dir.path().join("out/cluster/backup").exists());
    crate::daemon::forbid_everything(&cluster, false).await;

    cluster.sim.faults().forbid("namespaces", true);
    let (code, text) = snapshot(None).await;
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("the namespaces could not be listed (namespaces: 403"),
        "{text}"
    );
    assert_eq!(snapshots(), 0);
    // Left out on purpose: a snapshot.
    let (code, text) = snapshot(Some(
        "kubeResourcesAutosave:\n  rules:\n    excludeResources: [namespaces]\n",
    ))
    .await;
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(snapshots(), 1);
    cluster.sim.faults().forbid("namespaces", false);
}

#[test]
fn malformed_rules_exit_two_naming_the_key_and_the_value() {
    let dir = tempfile::tempdir().unwrap();
    for (rules, key, value) in [
        (
            "    labelSelector: 'env in (prod'\n",
            "kubeResourcesAutosave.rules.labelSelector",
            "\"env in (prod\"",
        ),
        (
            "    stripFields: ['/metadata/annotations/a~2b']\n",
            "kubeResourcesAutosave.rules.stripFields",
            "\"/metadata/annotations/a~2b\"",
        ),
    ] {
        std::fs::write(
            dir.path().join("cluster.yaml"),
            format!("kubeResourcesAutosave:\n  rules:\n{rules}"),
        )
        .unwrap();
        let output = kube_autosave(dir.path())
            .args(["snapshot", "--config", "cluster.yaml", "--to", "out"])
            .output()
            .unwrap();
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
        assert!(stderr.contains(key) && stderr.contains(value), "{stderr}");
        assert!(!dir.path().join("out").exists());
    }
}

/// The README's first command: `kube-autosave demo` snapshots the bundled simulated cluster
/// twice (before and after some changes) into a local folder and says where to look.
#[test]
fn the_demo_takes_two_snapshots_and_points_at_a_layout_that_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let output = kube_autosave(dir.path())
        .args(["demo", "--objects", "400", "--dir", "demo"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("first snapshot:") && stdout.contains("second snapshot:"));
    let snapshots = dir.path().join("demo/backups/demo-cluster/store/snapshots");
    let taken = std::fs::read_dir(&snapshots)
        .unwrap_or_else(|e| panic!("{}: {e}\n{stdout}", snapshots.display()))
        .count();
    assert_eq!(taken, 2, "{stdout}");
    // The folder it points at holds the second snapshot's plain layout.
    let pointed = stdout
        .split("`ls ")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .unwrap_or_else(|| panic!("no layout path in:\n{stdout}"));
    let layout = dir.path().join(pointed);
    assert!(
        layout.join("namespaces.json").is_file(),
        "{}",
        layout.display()
    );
    let namespaced = std::fs::read_dir(&layout)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .count();
    assert!(namespaced > 0, "{}", layout.display());
}

/// The commands every completion script and manual page must know.
const COMMANDS: [&str; 12] = [
    "snapshot",
    "run",
    "list",
    "show",
    "diff",
    "history",
    "verify",
    "restore",
    "forget",
    "prune",
    "completions",
    "man",
];

#[test]
fn completions_for_each_shell_know_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let output = kube_autosave(dir.path())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("complete -F") && stdout.contains("kube-autosave"));
    for command in COMMANDS {
        assert!(
            stdout.contains(&format!("kube__autosave,{command})")),
            "{command} missing from the bash completions"
        );
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let output = kube_autosave(dir.path())
            .args(["completions", shell])
            .output()
            .unwrap();
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(0), "{shell}: {stderr}");
        assert!(stdout.contains("verify"), "{shell}:\n{stdout}");
    }
    let output = kube_autosave(dir.path())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

/// The roff of a manual page after the lines every page begins with (they make apostrophes
/// print as apostrophes); its first line is the title, `.TH`.
fn page_body(page: &str) -> &str {
    let body = page
        .trim_start_matches(".ie \\n(.g .ds Aq \\(aq\n")
        .trim_start_matches(".el .ds Aq '\n");
    assert!(body.starts_with(".TH "), "not a manual page:\n{page}");
    body
}

#[test]
fn the_manual_page_is_roff_and_names_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let output = kube_autosave(dir.path()).arg("man").output().unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let body = page_body(&stdout);
    assert!(body.starts_with(".TH kube-autosave 1"), "{body}");
    for command in COMMANDS {
        assert!(
            body.contains(&format!("kube\\-autosave\\-{command}(1)")),
            "{command} missing from the manual page:\n{body}"
        );
    }

    // One page per command.
    let output = kube_autosave(dir.path())
        .args(["man", "--dir", "pages/man1"])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let pages = dir.path().join("pages/man1");
    for command in COMMANDS {
        let file = pages.join(format!("kube-autosave-{command}.1"));
        let page =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let body = page_body(&page);
        assert!(
            body.starts_with(&format!(".TH kube-autosave-{command} 1")),
            "{body}"
        );
    }
    assert!(pages.join("kube-autosave.1").is_file());
}

/// Installed as `kubectl-autosave` on the PATH, the binary is a kubectl plugin: kubectl
/// lists it and runs it as `kubectl autosave`, and its usage says so.
#[cfg(unix)]
#[test]
fn installed_as_kubectl_autosave_it_is_a_kubectl_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let plugin = bin.join("kubectl-autosave");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kube-autosave"), &plugin).unwrap();
    let mut path = std::ffi::OsString::from(&bin);
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    let kubectl = |args: &[&str]| {
        let output = crate::support::clean_command("kubectl", dir.path())
            .env("PATH", &path)
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("kubectl is not on the PATH ({e}); scripts/test installs it")
            });
        let (stdout, stderr) = text(&output);
        assert_eq!(
            output.status.code(),
            Some(0),
            "kubectl {}:\n{stdout}\n{stderr}",
            args.join(" ")
        );
        stdout
    };

    let listed = kubectl(&["plugin", "list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.trim() == plugin.display().to_string()),
        "{listed}"
    );
    let help = kubectl(&["autosave", "--help"]);
    assert!(
        help.contains("Usage: kubectl autosave [OPTIONS] <COMMAND>"),
        "{help}"
    );
    let help = kubectl(&["autosave", "list", "--help"]);
    assert!(
        help.contains("Usage: kubectl autosave list [OPTIONS]"),
        "{help}"
    );
    // And it runs: no snapshots yet in an empty folder.
    let list = kubectl(&["autosave", "list", "--to", "backups", "-o", "json"]);
    assert_eq!(list.trim(), "[]");
}
