//! Waiting for spawned work as if it had run in the waiting task: a panic in a spawned or
//! blocking task is resumed in the task that waits for it.

use tokio::task::JoinError;

/// Runs `f` on the blocking pool and returns what it returns.
pub(crate) async fn blocking<T, F>(f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    joined(tokio::task::spawn_blocking(f).await)
}

/// The value of a joined task, or its panic, resumed.
pub(crate) fn joined<T>(result: Result<T, JoinError>) -> T {
    result.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}
