//! The cluster as a whole: `status`, `setrep`, `admin drain|remove-chunkserver|add-master|
//! remove-master|set-master-address`.
use super::output::{self, say};
use super::paths;
use crate::human;
use serde_json::{json, Value};
use shale_client::{Client, StatusReply};
use std::time::Duration;

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// The master group as `s` reports it.
pub fn print_masters(s: &StatusReply) {
    say!(
        "masters (asked master {}: {}, term {}, applied {}):",
        s.id,
        s.role,
        s.term,
        s.applied_index
    );
    for m in &s.masters {
        let role = if m.id == s.leader {
            "leader"
        } else if m.voter {
            "follower"
        } else {
            "learner"
        };
        say!(
            "  master {:<3} {:<22} {role}{}",
            m.id,
            m.address,
            liveness(s, m)
        );
    }
}

/// A member as the leader sees it: its log, and whether it answers (a paused or cut-off
/// follower is not a healthy one). Empty when not asked of the leader.
fn liveness(s: &StatusReply, m: &shale_proto::metapb::MasterInfo) -> String {
    if s.role != "leader" || m.id == s.id {
        return String::new();
    }
    let log = m
        .matched_index
        .map(|i| format!("log at {i}, "))
        .unwrap_or_default();
    match m.heard_ms_ago {
        Some(ms) if ms < MEMBER_SILENT_MS => format!("  ({log}answered {ms} ms ago)"),
        Some(ms) => format!(
            "  NOT ANSWERING ({log}last answered {:.1} s ago)",
            ms as f64 / 1000.0
        ),
        None => format!(
            "  NOT ANSWERING ({log}no answer since master {} started)",
            s.id
        ),
    }
}

/// A member silent longer than this (the leader hears from each at every heartbeat, tens of
/// ms apart) is shown as not answering.
const MEMBER_SILENT_MS: u64 = 2_000;

/// The chunkservers of a status, as `status --json` and the dashboard give them.
pub(crate) fn chunkservers_json(s: &StatusReply) -> Value {
    s.chunkservers
        .iter()
        .map(|cs| {
            json!({
                "node": cs.node_id, "address": cs.address, "host": cs.host, "rack": cs.rack,
                "state": cs.state, "free_bytes": cs.free_bytes,
                "capacity_bytes": cs.capacity_bytes, "chunks": cs.chunks,
                "draining": cs.draining, "reported": cs.reported, "load": cs.load,
                "heard_ms_ago": cs.heard_ms_ago, "bytes_written": cs.bytes_written,
                "bytes_read": cs.bytes_read,
            })
        })
        .collect()
}

/// The files at risk of a (leader's) status.
pub(crate) fn at_risk_json(s: &StatusReply) -> Value {
    s.at_risk
        .iter()
        .map(|a| {
            json!({
                "path": a.path, "inode": a.inode, "chunk_index": a.chunk_index,
                "live_replicas": a.live_replicas, "target": a.target,
            })
        })
        .collect()
}

pub(crate) fn status_json(s: &StatusReply) -> Value {
    json!({
        "asked": s.id,
        "role": s.role,
        "leader": s.leader,
        "leader_address": s.leader_address,
        "term": s.term,
        "applied_index": s.applied_index,
        "masters": s.masters.iter().map(|m| json!({
            "id": m.id, "address": m.address, "voter": m.voter, "leader": m.id == s.leader,
            "heard_ms_ago": m.heard_ms_ago, "matched_index": m.matched_index,
        })).collect::<Vec<_>>(),
        "chunkservers": chunkservers_json(s),
        "files": s.files,
        "directories": s.dirs,
        "chunks": s.chunks,
        "under_replicated": s.under_replicated,
        "copying": s.copying,
        "safe_mode": s.safe_mode,
        "unreported": s.unreported,
        "missing": s.missing,
        "bad_replicas": s.bad_replicas,
        "at_risk": at_risk_json(s),
        "last_log_index": s.last_log_index,
        "committed_index": s.committed_index,
        "snapshot_index": s.snapshot_index,
        "client_requests": s.client_requests,
    })
}

/// The status as the leader gives it (healing figures are the leader's): the master the client
/// reached answers with its own view, which for a follower lacks them.
pub(crate) async fn leader_status(c: &Client) -> Result<StatusReply, shale_client::ClientError> {
    let s = c.status().await?;
    if s.role == "leader" || s.leader_address.is_empty() {
        return Ok(s);
    }
    let leader = Client::connect(std::slice::from_ref(&s.leader_address), c.config().clone()).await;
    match leader {
        Ok(l) => match l.status().await {
            Ok(ls) if ls.role == "leader" => Ok(ls),
            _ => Ok(s),
        },
        Err(_) => Ok(s),
    }
}

pub async fn status(c: &Client, as_json: bool) -> Res {
    let s = leader_status(c).await?;
    if as_json {
        output::json(&status_json(&s));
        return Ok(());
    }
    print_masters(&s);
    say!("chunkservers:");
    for cs in &s.chunkservers {
        say!(
            "  node {:<3} {:<22} host {:<12} {:<6} {:>10} free of {:>10}  {} chunks{}",
            cs.node_id,
            cs.address,
            output::escape_name(&cs.host),
            cs.state,
            human::size(cs.free_bytes),
            human::size(cs.capacity_bytes),
            cs.chunks,
            if cs.draining { " (draining)" } else { "" }
        );
    }
    if s.unreported > 0 {
        say!(
            "  ({} chunkservers have not reported to master {} since it started: the replicas \
             they hold are not known there yet)",
            s.unreported,
            s.id
        );
    }
    say!(
        "namespace: {} files, {} directories, {} chunks",
        s.files,
        s.dirs,
        s.chunks
    );
    if s.role == "leader" {
        say!(
            "healing: {} chunks under-replicated, {} copies running{}",
            s.under_replicated,
            s.copying,
            if s.safe_mode {
                " (safe mode: no deletions yet)"
            } else {
                ""
            }
        );
    } else {
        say!("healing: unknown (the leader did not answer)");
    }
    Ok(())
}

/// Why a drain cannot finish, if the cluster's shape says so: each replica on the draining
/// server needs a live, non-draining server with space, on a host holding no other copy (copies
/// of a chunk are never on one host; `replication` is the usual copy count).
fn drain_blocker(s: &StatusReply, node: u64, replication: usize) -> Option<String> {
    let targets: Vec<_> = s
        .chunkservers
        .iter()
        .filter(|cs| cs.node_id != node && cs.state == "alive" && !cs.draining)
        .collect();
    if targets.is_empty() {
        return Some("there is no other live chunkserver that is not draining".into());
    }
    if targets.iter().all(|cs| cs.free_bytes == 0) {
        return Some("the other live chunkservers are full".into());
    }
    let hosts: std::collections::BTreeSet<_> = targets.iter().map(|cs| &cs.host).collect();
    if hosts.len() < replication {
        return Some(format!(
            "each chunk keeps {replication} copies on different hosts, and only {} host(s) have \
             a live chunkserver that is not draining (add a chunkserver on another host)",
            hosts.len()
        ));
    }
    None
}

pub async fn drain(c: &Client, node: u64, draining: bool, wait: bool) -> Res {
    c.admin().drain(node, draining).await?;
    if !draining {
        say!("chunkserver {node} is back in service");
        return Ok(());
    }
    say!("chunkserver {node} is draining");
    if !wait {
        return Ok(());
    }
    let (mut last, mut still) = (u64::MAX, 0u32);
    loop {
        let s = c.status().await?;
        let left = s
            .chunkservers
            .iter()
            .find(|cs| cs.node_id == node)
            .map_or(0, |cs| cs.chunks);
        if left == 0 {
            say!("chunkserver {node} holds no replicas: it can be removed");
            return Ok(());
        }
        still = if left < last { 0 } else { still + 1 };
        last = last.min(left);
        say!("  {left} replicas left on chunkserver {node}");
        if still == 10 {
            match drain_blocker(&s, node, 3) {
                Some(why) => say!("  no progress for 10 s: the drain cannot finish because {why}"),
                None => say!("  no progress for 10 s (copies are throttled; see `shale status`)"),
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `setrep [-w] N PATH...`: on a directory, every file under it.
pub async fn setrep(c: &Client, n: u32, patterns: &[String], wait: bool) -> Res {
    let mut files = Vec::new();
    for p in paths::expand_all(c, patterns).await? {
        let st = c.stat(&p).await.map_err(|e| format!("{p}: {e}"))?;
        if st.is_dir {
            // The default of new files below it (subdirectories with their own keep theirs).
            c.set_replication(&p, n)
                .await
                .map_err(|e| format!("{p}: {e}"))?;
            say!(
                "replication of new files in {} set to {n}",
                output::escape_name(&p)
            );
        }
        let mut stack = vec![(p, st)];
        while let Some((p, st)) = stack.pop() {
            if st.is_dir {
                for e in c.list(&p).await? {
                    stack.push((paths::join(&p, &e.name), e));
                }
            } else {
                files.push(p);
            }
        }
    }
    for f in &files {
        c.set_replication(f, n)
            .await
            .map_err(|e| format!("{f}: {e}"))?;
        say!("replication of {} set to {n}", output::escape_name(f));
    }
    if !wait {
        return Ok(());
    }
    for f in &files {
        loop {
            let locs = c.chunk_locations(f).await?;
            let done = locs
                .chunks
                .iter()
                .all(|ch| ch.replicas.iter().filter(|r| r.alive).count() == n as usize);
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    say!("all {} files have {n} replicas", files.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shale_proto::metapb::ChunkserverInfo;

    fn cs(node: u64, host: &str, draining: bool) -> ChunkserverInfo {
        ChunkserverInfo {
            node_id: node,
            host: host.into(),
            state: "alive".into(),
            free_bytes: 1 << 30,
            capacity_bytes: 1 << 30,
            draining,
            ..Default::default()
        }
    }

    #[test]
    fn a_drain_that_cannot_finish_is_explained() {
        let mut s = StatusReply {
            chunkservers: vec![cs(1, "a", true)],
            ..Default::default()
        };
        assert!(drain_blocker(&s, 1, 1).is_some_and(|w| w.contains("no other live")));
        s.chunkservers.push(cs(2, "b", false));
        assert_eq!(drain_blocker(&s, 1, 1), None);
        assert!(drain_blocker(&s, 1, 2).is_some_and(|w| w.contains("only 1 host")));
        s.chunkservers.push(cs(3, "b", false));
        assert!(drain_blocker(&s, 1, 2).is_some_and(|w| w.contains("only 1 host")));
        s.chunkservers.push(cs(4, "c", false));
        assert_eq!(drain_blocker(&s, 1, 2), None);
        for c in &mut s.chunkservers[1..] {
            c.free_bytes = 0;
        }
        assert!(drain_blocker(&s, 1, 2).is_some_and(|w| w.contains("full")));
    }
}
