//! Log hygiene: openraft 0.9 logs routine network events at ERROR — every AppendEntries that
//! outlives its timeout (which it sets to the heartbeat interval) and is then retried,
//! routine on a busy machine or under a burst of writes; every vote request to a member that
//! is not up (at every start of a group, and while one member is down) — and hundreds of such
//! lines drown real errors. This layer drops those events before they are written (counting
//! the replication timeouts: `shale_master_raft_replication_timeouts_total`) and writes them
//! as WARN lines only when the log filter shows warnings. Every other event passes untouched.
use std::fmt::Write as _;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

pub struct DemoteReplicationTimeouts {
    /// Whether the log filter shows WARN lines (then a demoted event is written as one).
    pub show: bool,
    /// The server's log prefix (e.g. `master 2: `).
    pub prefix: std::sync::Arc<str>,
}

/// An event's fields as `name=value` text (the message bare).
#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }
}

/// A routine openraft ERROR event, by its target and text.
#[derive(Debug, PartialEq, Eq)]
pub enum Routine {
    ReplicationTimeout,
    VoteUnreachable,
}

pub fn routine(target: &str, text: &str) -> Option<Routine> {
    let timeout = text.contains("timeout after") || text.contains("Timeout expired");
    if target.starts_with("openraft::replication") && timeout {
        return Some(Routine::ReplicationTimeout);
    }
    if target.starts_with("openraft::core")
        && text.contains("while requesting vote")
        && (text.contains("Unreachable") || timeout)
    {
        return Some(Routine::VoteUnreachable);
    }
    None
}

impl<S: Subscriber> Layer<S> for DemoteReplicationTimeouts {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        let m = event.metadata();
        if *m.level() != Level::ERROR || !m.target().starts_with("openraft::") {
            return true;
        }
        let mut text = Text::default();
        event.record(&mut text);
        match routine(m.target(), &text.0) {
            None => return true,
            Some(Routine::ReplicationTimeout) => {
                metrics::counter!(shale_meta::server::metrics::REPLICATION_TIMEOUTS).increment(1)
            }
            Some(Routine::VoteUnreachable) => {}
        }
        if self.show {
            let mut now = String::new();
            let mut w = tracing_subscriber::fmt::format::Writer::new(&mut now);
            let _ = tracing_subscriber::fmt::time::FormatTime::format_time(
                &tracing_subscriber::fmt::time::SystemTime,
                &mut w,
            );
            eprintln!("{}{now}  WARN {}: {}", self.prefix, m.target(), text.0);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_routine_network_events_are_demoted() {
        let r = "openraft::replication";
        assert_eq!(
            routine(r, "RPCError err=timeout after 50ms when AppendEntries 3->2"),
            Some(Routine::ReplicationTimeout)
        );
        assert_eq!(
            routine(
                r,
                "RPCError err=NetworkError: WireErr: code: 'The operation was cancelled', \
                 message: \"Timeout expired\""
            ),
            Some(Routine::ReplicationTimeout)
        );
        assert_eq!(
            routine(
                "openraft::core::raft_core",
                "while requesting vote error=Unreachable node: WireErr: unavailable"
            ),
            Some(Routine::VoteUnreachable)
        );
        assert_eq!(
            routine(r, "RPCError err=Unreachable: connection refused"),
            None
        );
        assert_eq!(
            routine("openraft::storage", "storage error: disk full"),
            None
        );
        assert_eq!(
            routine(
                "openraft::core::raft_core",
                "Can not initialize: not allowed"
            ),
            None
        );
    }
}
