//! The `kube-autosave` binary: everything lives in the library; see `cli`.

#[tokio::main]
async fn main() {
    let code = kube_autosave::cli::main().await;
    std::process::exit(code);
}
