//! Linearizable reads with one leader round shared by every read waiting at once.
//!
//! A read registers that it needs a round that *starts* after it arrived, then waits. One
//! driver runs rounds back to back (`ensure_linearizable`: a heartbeat round to a quorum) while
//! reads are waiting; each round covers every read that registered before it started.
use super::MasterRaft;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

#[derive(Default)]
struct State {
    /// The latest round any read needs.
    wanted: u64,
    /// The round being run (or last run).
    started: u64,
    driving: bool,
}

#[derive(Clone)]
pub struct ReadBarrier {
    state: Arc<Mutex<State>>,
    /// (completed round, its outcome).
    done_tx: Arc<watch::Sender<(u64, Result<(), String>)>>,
}

impl Default for ReadBarrier {
    fn default() -> Self {
        let (tx, _) = watch::channel((0, Ok(())));
        ReadBarrier {
            state: Arc::new(Mutex::new(State::default())),
            done_tx: Arc::new(tx),
        }
    }
}

impl ReadBarrier {
    /// Returns once this master has proven (in a round that started after the call) that it is
    /// the leader and has applied everything committed before the call.
    pub async fn wait(&self, raft: &MasterRaft) -> Result<(), String> {
        let mut rx = self.done_tx.subscribe();
        let (my, drive) = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.wanted = st.started + 1;
            let drive = !st.driving;
            st.driving = true;
            (st.wanted, drive)
        };
        if drive {
            let (me, raft) = (self.clone(), raft.clone());
            tokio::spawn(async move { me.drive(raft).await });
        }
        loop {
            {
                let v = rx.borrow_and_update();
                if v.0 >= my {
                    return v.1.clone();
                }
            }
            if rx.changed().await.is_err() {
                return Err("read barrier stopped".into());
            }
        }
    }

    async fn drive(self, raft: MasterRaft) {
        loop {
            let round = {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if st.wanted <= st.started {
                    st.driving = false;
                    return;
                }
                st.started = st.wanted;
                st.started
            };
            let r = raft
                .ensure_linearizable()
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
            let _ = self.done_tx.send_replace((round, r));
        }
    }
}
