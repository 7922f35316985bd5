//! The `kube-autosave` binary: everything lives in the library; see `cli`.

fn main() {
    limit_malloc_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime");
    let code = runtime.block_on(kube_autosave::cli::main());
    std::process::exit(code);
}

/// glibc gives each thread that allocates its own arena (up to 8 per core); with the
/// runtime's worker and blocking threads that fragments the heap and inflates the resident
/// size for nothing. Two arenas serve this program as fast. `MALLOC_ARENA_MAX` in the
/// environment still wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only adjusts the allocator's parameters; called before any thread.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
