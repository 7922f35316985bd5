//! The shared test support, and what only this test binary can give: the path of the
//! `kube-autosave` binary cargo built for it.

use std::path::Path;
use std::process::Command;

pub use test_support::*;

/// The `kube-autosave` binary, run in `dir` with a clean environment.
pub fn binary(dir: &Path) -> Command {
    clean_command(env!("CARGO_BIN_EXE_kube-autosave"), dir)
}

/// The kubectl binaries to try: `KUBE_AUTOSAVE_TEST_KUBECTL` (`:`-separated; `scripts/test`
/// adds Debian's 1.20 to the one on the PATH), else the one on the PATH.
pub fn kubectls() -> Vec<String> {
    let listed = std::env::var("KUBE_AUTOSAVE_TEST_KUBECTL").unwrap_or_default();
    let mut found: Vec<String> = listed
        .split(':')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if found.is_empty() {
        eprintln!(
            "KUBE_AUTOSAVE_TEST_KUBECTL is not set: only the kubectl on the PATH is tried \
             (scripts/test adds Debian's 1.20)"
        );
        found.push("kubectl".to_string());
    }
    found
}

/// `kube-autosave snapshot` of `cluster` into `s3://backups/team`, cluster name `prod`, with
/// the local state in `state` (each "machine" has its own).
pub fn snapshot_command(
    s3: &test_support::S3Server,
    cluster: &test_support::cluster::Cluster,
    dir: &std::path::Path,
    state: &str,
) -> std::process::Command {
    let mut command = binary(dir);
    with_s3(&mut command, s3).args([
        "snapshot",
        "--to",
        "s3://backups/team",
        "--cluster-name",
        "prod",
        "--cache-dir",
        state,
        "--kubeconfig",
        &cluster.kubeconfig.display().to_string(),
    ]);
    command
}
