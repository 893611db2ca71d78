//! A thread of its own (`SCHED_BATCH`: a CPU-bound thread that does not preempt others when it
//! wakes) for heavy work that must not queue up on the async runtime: taking in large chunk
//! reports. On the runtime (two worker threads here), a thousand chunkservers' full reports —
//! 30 M replicas — queued the Raft tasks behind them until followers called elections; here
//! the kernel shares the cores between this thread and the runtime's. Jobs run one at a time,
//! in order, each taking the state's and the soft state's locks briefly. Not niced: at nice 10
//! it was preempted while holding those locks, and `apply` and heartbeat handlers waited for it
//! (priority inversion; 3–5 elections per `sim-cluster` run).
//!
//! Invariant: a job that panics is caught and dropped (its caller gets `None`); the thread
//! lives as long as its [`Background`] handle.
use std::sync::mpsc::Sender;
use std::sync::Mutex;

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
                // On Linux the scheduling policy is per thread, and pid 0 is the calling thread.
                // SAFETY: a plain system call on this thread; failure leaves the policy as is.
                unsafe {
                    let param = libc::sched_param { sched_priority: 0 };
                    libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
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
        // SAFETY: a plain system call on the thread.
        let policy = b.run(|| unsafe { libc::sched_getscheduler(0) }).await;
        assert_eq!(policy, Some(libc::SCHED_BATCH));
        assert_eq!(b.run(|| "still here").await, Some("still here"));
    }
}
