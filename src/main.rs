//! The `kube-autosave` binary: everything lives in the library; see `cli`.

// A snapshot parses and rebuilds hundreds of thousands of small JSON trees; mimalloc handles
// that allocation pattern markedly faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let code = kube_autosave::cli::main().await;
    std::process::exit(code);
}
