//! The bridge from `object_store`'s async API to the synchronous [`ObjectStore`](crate::ObjectStore)
//! trait. The S3 store owns a small multi-thread tokio runtime; every async operation is spawned
//! onto it and the calling thread waits for the result with [`wait`], a parking loop that needs
//! no runtime of its own.
//!
//! Spawning instead of `block_on` is deliberate: `Runtime::block_on` and `Handle::block_on`
//! panic when the calling thread is inside another runtime's async context, and the vault is
//! called from tokio's blocking threads of the HTTP server. Waiting with `wait` works from any
//! thread: a plain thread, a blocking-pool thread, even (though it would stall that worker) an
//! async task of another runtime.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;

use crate::ObjectError;

/// A runtime owned by one store and shared with the readers it hands out, so a download keeps
/// working after the store itself is dropped.
#[derive(Debug)]
pub(crate) struct Bridge {
    handle: Handle,
    // `Option` only so that `Drop` can take it: see there.
    runtime: Option<Runtime>,
}

impl Bridge {
    /// A runtime with `threads` workers (at least one), I/O and timers enabled.
    pub(crate) fn new(threads: usize) -> Result<Arc<Self>, ObjectError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("custodia-objects")
            .enable_all()
            .build()
            .map_err(|err| ObjectError::Backend {
                detail: format!("starting the object store's runtime failed: {err}"),
            })?;
        Ok(Arc::new(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        }))
    }

    /// Starts `future` on the store's runtime.
    pub(crate) fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }

    /// Runs `future` on the store's runtime and waits for its output on this thread.
    pub(crate) fn run<F>(&self, future: F) -> Result<F::Output, ObjectError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        join(self.spawn(future))
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its workers stop, and panics when that happens inside
        // an async context (a server dropping its last handle on the store at shutdown).
        // Nothing is left to wait for: every reader holds this bridge alive.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Waits for a spawned task; a task that panicked or was cancelled becomes an error.
pub(crate) fn join<T>(task: JoinHandle<T>) -> Result<T, ObjectError> {
    wait(task).map_err(|err| ObjectError::Backend {
        detail: format!("an object storage task failed: {err}"),
    })
}

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `future` to completion on this thread, parking between polls. Only for futures that
/// are driven elsewhere (join handles, channel receives): it runs no I/O or timers itself.
pub(crate) fn wait<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => return output,
            // A spurious unpark just means one more poll.
            Poll::Pending => thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_from_a_plain_thread_and_from_inside_another_runtime() {
        let bridge = Bridge::new(1).unwrap();
        assert_eq!(bridge.run(async { 41 + 1 }).unwrap(), 42);

        let outer = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let inner = Arc::clone(&bridge);
        let from_blocking = outer
            .block_on(outer.spawn_blocking(move || inner.run(async { "blocking" }).unwrap()))
            .unwrap();
        assert_eq!(from_blocking, "blocking");

        let inner = Arc::clone(&bridge);
        let from_async = outer
            .block_on(outer.spawn(async move { inner.run(async { "async" }).unwrap() }))
            .unwrap();
        assert_eq!(from_async, "async");
    }

    #[test]
    fn dropping_the_last_handle_inside_an_async_context_does_not_panic() {
        let bridge = Bridge::new(1).unwrap();
        let outer = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        outer.block_on(async move { drop(bridge) });
    }

    #[test]
    fn a_panicking_task_is_an_error() {
        async fn boom() -> u8 {
            panic!("a bug in a storage task")
        }
        let bridge = Bridge::new(1).unwrap();
        let err = bridge.run(boom()).unwrap_err();
        assert_eq!(err.code(), "objects.backend");
    }
}
