//! What shells and `man` learn about the command line, all from the one clap definition the
//! binary parses with: completion scripts (clap_complete), manual pages (clap_mangen), and
//! the name usage shows when the binary is installed as a kubectl plugin. Nothing here reads
//! a destination or a cluster.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory, FromArgMatches};
use clap_complete::Shell;

use super::{Cli, ExitCode};

/// The name everything here is generated for.
const BINARY: &str = "kube-autosave";

/// The file name kubectl looks for on PATH to run `kubectl autosave`.
const PLUGIN_FILE: &str = "kubectl-autosave";

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write one page per command (kube-autosave.1, kube-autosave-list.1, ...) into this
    /// directory instead of printing the main page.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// How usage and errors name the program when it was run as `program` (argv[0]): as a
/// kubectl plugin, the way the user typed it; else clap's default, the file name.
fn shown_name(program: &OsStr) -> Option<&'static str> {
    let stem = Path::new(program).file_stem()?;
    (stem == PLUGIN_FILE).then_some("kubectl autosave")
}

/// The command line, parsed; usage says `kubectl autosave ...` when kubectl ran us.
pub fn parse() -> Cli {
    let mut command = Cli::command();
    if let Some(name) = std::env::args_os().next().as_deref().and_then(shown_name) {
        command = command.bin_name(name);
    }
    let mut matches = command.clone().get_matches();
    Cli::from_arg_matches_mut(&mut matches).unwrap_or_else(|e| e.format(&mut command).exit())
}

/// `kube-autosave completions <shell>`: the completion script, on stdout.
pub fn completions(args: &CompletionsArgs) -> ExitCode {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, BINARY, &mut script);
    write_stdout(&script)
}

/// `kube-autosave man`: the main page on stdout, or with `--dir` a page per command there.
pub fn man(args: &ManArgs) -> ExitCode {
    // Each command's page names the version, not only the main one.
    let command = Cli::command().propagate_version(true);
    let Some(dir) = &args.dir else {
        let mut page = Vec::new();
        return match clap_mangen::Man::new(command).render(&mut page) {
            Ok(()) => write_stdout(&page),
            Err(e) => fail(format!("cannot render the manual page: {e}")),
        };
    };
    let written =
        std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(command, dir));
    match written {
        Ok(()) => {
            tracing::info!("wrote the manual pages to {}", dir.display());
            ExitCode::Ok
        }
        Err(e) => fail(format!(
            "cannot write the manual pages to {}: {e}",
            dir.display()
        )),
    }
}

fn write_stdout(data: &[u8]) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(data).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::Ok,
        Err(e) => fail(format!("cannot write to stdout: {e}")),
    }
}

fn fail(message: String) -> ExitCode {
    tracing::error!("{message}");
    ExitCode::Failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_as_a_kubectl_plugin_usage_says_kubectl_autosave() {
        for program in [
            "kubectl-autosave",
            "/usr/local/bin/kubectl-autosave",
            "kubectl-autosave.exe",
        ] {
            assert_eq!(
                shown_name(OsStr::new(program)),
                Some("kubectl autosave"),
                "{program}"
            );
        }
        for program in ["kube-autosave", "/opt/kubectl-autosave/kube-autosave", ""] {
            assert_eq!(shown_name(OsStr::new(program)), None, "{program}");
        }
        let usage = Cli::command()
            .bin_name("kubectl autosave")
            .render_usage()
            .to_string();
        assert!(usage.contains("kubectl autosave"), "{usage}");
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
