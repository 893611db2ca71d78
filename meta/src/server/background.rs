//! A low-priority thread (nice [`NICE`]) for heavy work that must not compete with the Raft
//! core: taking in large chunk reports. On the async runtime (two worker threads here), a
//! thousand chunkservers' full reports — 30 M replicas — queued the Raft tasks behind them
//! until followers called elections. On this thread the kernel runs the runtime's threads
//! first; jobs run one at a time, in order, each free to take the state's and the soft state's
//! locks briefly (never across an await: there is none).
//!
//! Invariant: a job that panics is caught and dropped (its caller gets `None`); the thread
//! lives as long as its [`Background`] handle.
use std::sync::mpsc::Sender;
use std::sync::Mutex;

/// The thread's nice value (the runtime's threads keep 0).
pub const NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

pub struct Background {
    tx: Mutex<Sender<Job>>,
}

impl Background {
    pub fn start(name: &str) -> std::io::Result<Background> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                // On Linux the nice value is per thread, and `who == 0` is the calling thread.
                // SAFETY: a plain system call on this thread; failure leaves the priority as is.
                unsafe {
                    libc::setpriority(libc::PRIO_PROCESS, 0, NICE);
                }
                for job in rx {
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                        tracing::error!("a background job panicked; dropped");
                    }
                }
            })?;
        Ok(Background { tx: Mutex::new(tx) })
    }

    /// Runs `f` on the thread, after the jobs queued before it; its result, or `None` if it
    /// panicked (or the thread is gone).
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.tx.lock().ok()?.send(job).ok()?;
        rx.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_in_order_and_survives_panics() {
        let b = Background::start("test-bg").expect("start");
        assert_eq!(b.run(|| 1 + 1).await, Some(2));
        let panicked: Option<()> = b.run(|| panic!("boom")).await;
        assert!(panicked.is_none());
        let nice = b
            .run(|| unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) })
            .await;
        assert_eq!(nice, Some(NICE));
        assert_eq!(b.run(|| "still here").await, Some("still here"));
    }
}
