//! The shared test support, and what only this test binary can give: the path of the
//! `kube-autosave` binary cargo built for it.

use std::path::Path;
use std::process::Command;

pub use test_support::*;

/// The `kube-autosave` binary, run in `dir` with a clean environment.
pub fn binary(dir: &Path) -> Command {
    clean_command(env!("CARGO_BIN_EXE_kube-autosave"), dir)
}
