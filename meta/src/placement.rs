//! Choosing the chunkservers of a chunk. Pure: a function of the candidates the leader knows
//! (from heartbeats) and the request.
//!
//! Rules, in order: never two replicas on one host label; spread over racks while unused racks
//! remain; among the allowed, prefer the most free space per unit of load (free bytes divided by
//! one plus in-flight writes), ties broken by node id (deterministic). The pipeline head is a
//! chosen replica on the client's host if there is one, else the least busy.
use shale_proto::NodeId;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub node: NodeId,
    pub host: String,
    pub rack: Option<String>,
    pub free_bytes: u64,
    /// Writes in flight (from the last heartbeat).
    pub load: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("no chunkserver can take a replica ({0})")]
    NoCandidates(String),
}

fn score(c: &Candidate) -> f64 {
    c.free_bytes as f64 / (1.0 + f64::from(c.load))
}

/// Up to `n` chunkservers for a new chunk, in pipeline order (head first). Fewer than `n` when
/// fewer distinct hosts are usable: the chunk is then under-replicated and healing adds more.
pub fn place(
    candidates: &[Candidate],
    n: usize,
    exclude: &[NodeId],
    need_bytes: u64,
    client_host: Option<&str>,
) -> Result<Vec<NodeId>, PlacementError> {
    let mut pool: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| !exclude.contains(&c.node) && c.free_bytes >= need_bytes)
        .collect();
    if pool.is_empty() {
        return Err(PlacementError::NoCandidates(format!(
            "{} known, {} excluded, none with {need_bytes} bytes free",
            candidates.len(),
            exclude.len()
        )));
    }
    pool.sort_by(|a, b| score(b).total_cmp(&score(a)).then(a.node.cmp(&b.node)));
    let mut chosen: Vec<&Candidate> = Vec::with_capacity(n);
    // As HDFS: the first replica on the writer's own host when a chunkserver there can take it
    // (the best of them), the rest spread by the rules below.
    if let Some(local) = client_host.and_then(|h| pool.iter().find(|c| c.host == h)) {
        if n > 0 {
            chosen.push(local);
        }
    }
    while chosen.len() < n {
        let host_free = |c: &&Candidate| !chosen.iter().any(|x| x.host == c.host);
        let rack_free = |c: &&Candidate| {
            c.rack.is_none() || !chosen.iter().any(|x| x.rack.is_some() && x.rack == c.rack)
        };
        let pick = pool
            .iter()
            .find(|c| host_free(c) && rack_free(c))
            .or_else(|| pool.iter().find(|c| host_free(c)))
            .copied();
        match pick {
            Some(c) => chosen.push(c),
            None => break,
        }
    }
    let head = client_host
        .and_then(|h| chosen.iter().position(|c| c.host == h))
        .unwrap_or_else(|| {
            (0..chosen.len())
                .min_by_key(|&i| (chosen[i].load, i))
                .unwrap_or(0)
        });
    chosen.swap(0, head);
    Ok(chosen.iter().map(|c| c.node).collect())
}

/// A replica as a reader's ordering sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadReplica {
    pub node: NodeId,
    pub alive: bool,
    pub host: String,
    pub rack: Option<String>,
    /// Reads and writes in flight (from its last heartbeat).
    pub load: u32,
}

/// Orders a chunk's replicas for a reader on `client_host` (its rack: that of a chunkserver on
/// the same host, if any): alive ones first; then on the reader's host, then in its rack; then
/// the least loaded; ties by node id (stable: readers spread parallel fetches themselves).
pub fn order_for_reader(
    replicas: &mut [ReadReplica],
    client_host: Option<&str>,
    client_rack: Option<&str>,
) {
    replicas.sort_by_key(|r| {
        let same_host = client_host.is_some_and(|h| h == r.host);
        let same_rack = client_rack.is_some_and(|k| r.rack.as_deref() == Some(k));
        (!r.alive, !same_host, !same_rack, r.load, r.node)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(node: u64, host: &str, rack: Option<&str>, free_gib: u64, load: u32) -> Candidate {
        Candidate {
            node: NodeId(node),
            host: host.into(),
            rack: rack.map(Into::into),
            free_bytes: free_gib << 30,
            load,
        }
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            cands: Vec<Candidate>,
            n: usize,
            exclude: Vec<u64>,
            client: Option<&'static str>,
            want: Result<Vec<u64>, ()>,
        }
        let cases = vec![
            Case {
                name: "most free space first, least busy is head",
                cands: vec![
                    c(1, "a", None, 10, 0),
                    c(2, "b", None, 30, 0),
                    c(3, "c", None, 20, 0),
                    c(4, "d", None, 5, 0),
                ],
                n: 3,
                exclude: vec![],
                client: None,
                want: Ok(vec![2, 3, 1]),
            },
            Case {
                name: "never two on one host",
                cands: vec![
                    c(1, "a", None, 50, 0),
                    c(2, "a", None, 40, 0),
                    c(3, "b", None, 10, 0),
                ],
                n: 3,
                exclude: vec![],
                client: None,
                want: Ok(vec![1, 3]),
            },
            Case {
                name: "spread over racks before filling one",
                cands: vec![
                    c(1, "a", Some("r1"), 50, 0),
                    c(2, "b", Some("r1"), 45, 0),
                    c(3, "c", Some("r2"), 10, 0),
                    c(4, "d", Some("r3"), 5, 0),
                ],
                n: 3,
                exclude: vec![],
                client: None,
                want: Ok(vec![1, 3, 4]),
            },
            Case {
                name: "racks reused once every rack has one",
                cands: vec![
                    c(1, "a", Some("r1"), 50, 0),
                    c(2, "b", Some("r1"), 45, 0),
                    c(3, "c", Some("r2"), 10, 0),
                ],
                n: 3,
                exclude: vec![],
                client: None,
                want: Ok(vec![1, 3, 2]),
            },
            Case {
                name: "load discounts free space; least busy chosen replica leads",
                cands: vec![
                    c(1, "a", None, 100, 9),
                    c(2, "b", None, 20, 0),
                    c(3, "c", None, 15, 1),
                ],
                n: 2,
                exclude: vec![],
                client: None,
                want: Ok(vec![2, 1]),
            },
            Case {
                name: "excluded servers are skipped",
                cands: vec![
                    c(1, "a", None, 100, 0),
                    c(2, "b", None, 20, 0),
                    c(3, "c", None, 15, 0),
                ],
                n: 2,
                exclude: vec![1],
                client: None,
                want: Ok(vec![2, 3]),
            },
            Case {
                name: "a replica on the client's host leads the pipeline",
                cands: vec![
                    c(1, "a", None, 100, 0),
                    c(2, "b", None, 20, 0),
                    c(3, "c", None, 15, 0),
                ],
                n: 3,
                exclude: vec![],
                client: Some("c"),
                want: Ok(vec![3, 1, 2]),
            },
            Case {
                name: "a single replica goes to the client's host (as HDFS's first replica)",
                cands: vec![
                    c(1, "a", None, 100, 0),
                    c(2, "b", None, 20, 0),
                    c(3, "c", None, 15, 0),
                ],
                n: 1,
                exclude: vec![],
                client: Some("c"),
                want: Ok(vec![3]),
            },
            Case {
                name: "nothing usable",
                cands: vec![c(1, "a", None, 0, 0)],
                n: 3,
                exclude: vec![],
                client: None,
                want: Err(()),
            },
        ];
        for case in cases {
            let exclude: Vec<NodeId> = case.exclude.iter().map(|n| NodeId(*n)).collect();
            let got = place(&case.cands, case.n, &exclude, 1 << 20, case.client)
                .map(|v| v.into_iter().map(|n| n.get()).collect::<Vec<_>>())
                .map_err(|_| ());
            assert_eq!(got, case.want, "{}", case.name);
        }
    }

    #[test]
    fn readers_get_the_nearest_then_least_loaded_replica() {
        let r = |n: u64, alive: bool, host: &str, rack: &str, load: u32| ReadReplica {
            node: NodeId(n),
            alive,
            host: host.into(),
            rack: Some(rack.into()),
            load,
        };
        let mut v = vec![
            r(1, true, "h1", "a", 0),
            r(2, true, "h2", "b", 5),
            r(3, false, "h3", "b", 0),
            r(4, true, "h4", "b", 1),
            r(5, true, "h5", "c", 0),
        ];
        order_for_reader(&mut v, Some("h2"), Some("b"));
        let order: Vec<u64> = v.iter().map(|x| x.node.get()).collect();
        assert_eq!(order, vec![2, 4, 1, 5, 3], "host, rack, load, dead last");
        order_for_reader(&mut v, None, None);
        let order: Vec<u64> = v.iter().map(|x| x.node.get()).collect();
        assert_eq!(order, vec![1, 5, 4, 2, 3], "least loaded first");
    }
}
