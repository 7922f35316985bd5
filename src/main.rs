//! The `kube-autosave` binary: everything lives in the library; see `cli`.

/// jemalloc: a snapshot makes and frees millions of small objects across the runtime's
/// threads, and glibc's malloc spent about a sixth of its CPU on that (a quarter less CPU
/// with jemalloc; see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Two arenas (one per core of the small nodes this runs on, not four per core) and freed
/// pages returned within a second: the resident size stays near what is in use.
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8] = b"narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime");
    let code = runtime.block_on(kube_autosave::cli::main());
    std::process::exit(code);
}
