//! Attacks on a secured cluster (issue: security), each refused with the right status and
//! changing nothing: no certificate, another CA's, an expired one, plaintext; a user calling
//! admin RPCs, registering a rogue chunkserver, sending heartbeats, deleting chunks; forged
//! Raft messages (a user's, a master posing as another, terms openraft cannot survive). The
//! files written before are read back and checked byte for byte afterwards, and every master
//! is still up with its term unchanged.
mod common;

use common::*;
use shale_client::{Client, ClientError};
use shale_proto::metapb::*;
use shale_proto::pb::{ChunkRef, ChunkToken, DeleteChunksRequest, ReadChunkRequest};
use shale_security::certs::{self, IssueOptions};
use shale_security::{Principal, Role, Tls, TlsFiles, Transport};
use std::time::{Duration, SystemTime};
use tonic::Code;

/// The tests of this file start servers: one at a time (2 cores).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An admin certificate from another CA (its holder trusts the cluster's CA, so the servers
/// must be the ones refusing it).
fn foreign() -> (tempfile::TempDir, Transport) {
    let d = tempfile::tempdir().expect("tmp");
    let p = Principal::new(Role::Admin, "mallory").expect("principal");
    certs::provision(d.path(), std::slice::from_ref(&p), &[]).expect("foreign CA");
    ensure_cert(Role::Admin, "admin");
    let files = TlsFiles {
        ca: tls_dir().join(certs::CA_CERT),
        ..TlsFiles::of(d.path(), &p)
    };
    (d, Transport::tls(Tls::load(files).expect("load")))
}

/// An admin certificate of the right CA that expired yesterday.
fn expired() -> Transport {
    let p = Principal::new(Role::Admin, "expired").expect("principal");
    ensure_cert(Role::Admin, "admin");
    let day = Duration::from_secs(86_400);
    let now = SystemTime::now();
    let opts = IssueOptions {
        not_before: now - 2 * day,
        not_after: now - day,
        replace: true,
        ..IssueOptions::default()
    };
    certs::issue(tls_dir(), tls_dir(), &p, &opts).expect("issue");
    Transport::tls(Tls::load(TlsFiles::of(tls_dir(), &p)).expect("load"))
}

/// A TLS client with no certificate (it trusts the cluster CA).
fn anonymous() -> Transport {
    ensure_cert(Role::Admin, "admin");
    Transport::tls(
        Tls::load(TlsFiles {
            ca: tls_dir().join(certs::CA_CERT),
            cert: None,
            key: None,
        })
        .expect("load"),
    )
}

/// A status with its whole source chain (TLS alerts hide under "transport error").
fn chain(e: &tonic::Status) -> String {
    let mut out = format!("{:?} {}", e.code(), e.message());
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        out += &format!(": {s}");
        src = s.source();
    }
    out
}

/// A call refused at the TLS handshake: the server's alert names the reason (`alert`), or,
/// when the client was still writing as the server hung up, the connection just broke. (The
/// same calls with the admin's certificate succeed: the certificate is what is refused.)
fn refused_by_tls(e: &tonic::Status, alert: &str) {
    let c = chain(e);
    let broken = ["broken pipe", "reset", "closed"]
        .iter()
        .any(|w| c.contains(w));
    assert!(
        matches!(
            e.code(),
            Code::Unavailable | Code::Unknown | Code::Cancelled
        ) && (c.contains(alert) || broken),
        "expected a TLS refusal ({alert}): {c}"
    );
}

/// A registration of a rogue chunkserver claiming `uuid` and a huge capacity.
fn rogue_registration(uuid: &str) -> RegisterRequest {
    RegisterRequest {
        uuid: uuid.into(),
        address: "127.0.0.1:9".into(),
        host: "evil".into(),
        rack: String::new(),
        capacity_bytes: 1 << 50,
        request_id: None,
    }
}

/// A heartbeat for `node` reporting no chunks at all (it would erase its replica locations).
fn empty_full_report(node: u64) -> tonic::Request<HeartbeatRequest> {
    let mut hb = tonic::Request::new(HeartbeatRequest {
        node_id: node,
        free_bytes: 1 << 50,
        full_report: true,
        ..Default::default()
    });
    hb.metadata_mut()
        .insert("shale-node-id", node.to_string().parse().expect("meta"));
    hb
}

async fn status_as(t: &Transport, addr: &str) -> Result<StatusReply, tonic::Status> {
    client_as(t, addr)
        .status(Empty {})
        .await
        .map(|r| r.into_inner())
}

fn chunk_at(
    t: &Transport,
    addr: &str,
) -> shale_proto::pb::chunk_service_client::ChunkServiceClient<tonic::transport::Channel> {
    let ch = t
        .channel(addr, |e| e.timeout(Duration::from_secs(10)))
        .expect("uri");
    shale_proto::pb::chunk_service_client::ChunkServiceClient::new(ch)
}

/// Writes `data` as chunk `id`@`version` straight to the chunkserver `node` at `addr`.
async fn write_direct(
    t: &Transport,
    addr: &str,
    node: u64,
    (id, version): (u64, u64),
    token: Option<ChunkToken>,
    data: &'static [u8],
) -> Result<(), tonic::Status> {
    use shale_proto::pb::write_chunk_request::Kind;
    use shale_proto::pb::{WriteChunkRequest, WriteHeader};
    let msgs = vec![
        WriteChunkRequest {
            kind: Some(Kind::Header(WriteHeader {
                chunk: Some(ChunkRef {
                    chunk_id: id,
                    version,
                }),
                downstream: vec![],
                length: data.len() as u64,
                node_id: node,
                token,
            })),
        },
        WriteChunkRequest {
            kind: Some(Kind::Data(data.to_vec().into())),
        },
    ];
    chunk_at(t, addr)
        .write_chunk(tokio_stream::iter(msgs))
        .await
        .map(|_| ())
}

/// Asserts a chunk token was refused, for `why`.
fn token_refused(r: Result<impl std::fmt::Debug, tonic::Status>, why: &str) {
    let e = r.expect_err(why);
    assert_eq!(e.code(), Code::PermissionDenied, "{why}: {e:?}");
    assert!(e.message().contains(why), "{why}: {e:?}");
}

/// A forged Raft message of `kind` (postcard-encoded, as masters send them).
fn raft_request(kind: RaftKind, payload: Vec<u8>) -> RaftRequest {
    RaftRequest {
        kind: kind as i32,
        payload: payload.into(),
    }
}

async fn raft_as(t: &Transport, addr: &str, req: RaftRequest) -> tonic::Status {
    let ch = t
        .channel(addr, |e| e.timeout(Duration::from_secs(5)))
        .expect("uri");
    match raft_service_client::RaftServiceClient::new(ch)
        .raft(req)
        .await
    {
        Ok(_) => panic!("a forged raft message was accepted"),
        Err(s) => s,
    }
}

fn vote(term: u64, candidate: u64) -> Vec<u8> {
    let v = openraft::raft::VoteRequest::<u64> {
        vote: openraft::Vote::new(term, candidate),
        last_log_id: None,
    };
    postcard::to_allocvec(&v).expect("encode")
}

fn append(term: u64, leader: u64) -> Vec<u8> {
    let a = openraft::raft::AppendEntriesRequest::<shale_meta::raft::TypeConfig> {
        vote: openraft::Vote::new_committed(term, leader),
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    };
    postcard::to_allocvec(&a).expect("encode")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_on_a_secured_cluster_are_refused() {
    let _serial = SERIAL.lock().await;
    // Short-lived chunk tokens, so that one can be seen to expire.
    let cluster = Cluster::start_with(3, 1, &["--test-token-lifetime-ms", "4000"], &[]).await;
    let addrs = cluster.master_addrs();
    let admin_client = Client::connect(&addrs, client_config())
        .await
        .expect("connect");
    // Something worth protecting: a file of 2.5 chunks.
    let data: Vec<u8> = (0..(5u32 << 19)).map(|i| (i * 31 % 251) as u8).collect();
    admin_client
        .put("/precious", &data[..], Default::default(), &|_| {})
        .await
        .expect("put");
    let locs = admin_client
        .chunk_locations("/precious")
        .await
        .expect("locations");
    let first = &locs.chunks[0];
    let replica = first.replicas[0].address.clone();
    let leader = leader(&addrs).await;
    let before = status(&leader).await;

    // --- Who you are: every port refuses strangers. ---
    let anon = anonymous();
    let e = status_as(&anon, &leader)
        .await
        .expect_err("anonymous status");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("client certificate"), "{e:?}");
    let (_foreign_dir, mallory) = foreign();
    let e = status_as(&mallory, &leader).await.expect_err("foreign CA");
    refused_by_tls(&e, "fatal alert");
    let old = expired();
    let e = status_as(&old, &leader)
        .await
        .expect_err("expired certificate");
    refused_by_tls(&e, "CertificateExpired");
    let plain = Transport::plaintext();
    let e = status_as(&plain, &leader).await.expect_err("plaintext");
    assert!(
        matches!(
            e.code(),
            Code::Unavailable | Code::Internal | Code::Unknown | Code::Cancelled
        ),
        "{e:?}"
    );
    // The same at a chunkserver: no bytes for strangers.
    let read = ReadChunkRequest {
        chunk: Some(ChunkRef {
            chunk_id: first.chunk_id,
            version: first.version,
        }),
        offset: 0,
        length: 4096,
        to_end: false,
        token: None,
    };
    for (who, t) in [
        ("anonymous", &anon),
        ("foreign", &mallory),
        ("expired", &old),
    ] {
        let ch = t
            .channel(&replica, |e| e.timeout(Duration::from_secs(5)))
            .expect("uri");
        let r = shale_proto::pb::chunk_service_client::ChunkServiceClient::new(ch)
            .read_chunk(read.clone())
            .await;
        let e = r.err().unwrap_or_else(|| panic!("{who} read a chunk"));
        match who {
            "anonymous" => assert_eq!(e.code(), Code::Unauthenticated, "{e:?}"),
            "foreign" => refused_by_tls(&e, "fatal alert"),
            _ => refused_by_tls(&e, "CertificateExpired"),
        }
    }
    // The same calls with a good certificate work.
    status_as(&admin(), &leader).await.expect("admin status");
    let with_token = ReadChunkRequest {
        token: first.token.clone(),
        ..read.clone()
    };
    chunk_at(&admin(), &replica)
        .read_chunk(with_token.clone())
        .await
        .expect("admin read");
    // The library says what is wrong.
    let cfg = shale_client::ClientConfig {
        transport: anon.clone(),
        ..Default::default()
    };
    match Client::connect(&addrs, cfg).await {
        Err(ClientError::Unauthenticated(m)) => assert!(m.contains("certificate"), "{m}"),
        r => panic!("anonymous library client: {r:?}"),
    }

    // --- What a user may not do. ---
    let alice = transport_as(Role::User, "alice");
    let denied = |what: &str, r: Result<tonic::Response<StatusReply>, tonic::Status>| {
        let e = r.expect_err(what);
        assert_eq!(e.code(), Code::PermissionDenied, "{what}: {e:?}");
        assert!(e.message().contains("user alice may not"), "{what}: {e:?}");
    };
    let mut c = client_as(&alice, &leader);
    denied(
        "add master",
        c.add_master(MasterRequest {
            id: 9,
            address: "127.0.0.1:1".into(),
        })
        .await,
    );
    denied(
        "remove master",
        c.remove_master(MasterRequest {
            id: 1,
            address: String::new(),
        })
        .await,
    );
    denied(
        "bootstrap",
        c.bootstrap(BootstrapRequest {
            masters: vec![MasterInfo {
                id: 1,
                address: "127.0.0.1:1".into(),
                voter: true,
                ..Default::default()
            }],
        })
        .await,
    );
    for s in &before.chunkservers {
        denied(
            "drain",
            c.drain(DrainRequest {
                node_id: s.node_id,
                draining: true,
                request_id: None,
            })
            .await,
        );
        denied(
            "remove chunkserver",
            c.remove_chunkserver(RemoveChunkserverRequest {
                node_id: s.node_id,
                request_id: None,
            })
            .await,
        );
    }
    let e = c
        .set_replication(SetReplicationRequest {
            path: "/precious".into(),
            replication: 1,
            request_id: None,
        })
        .await
        .expect_err("setrep");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // A rogue chunkserver: a user cannot register one or send heartbeats.
    let e = c
        .register_chunkserver(rogue_registration("rogue"))
        .await
        .expect_err("register");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = c
        .heartbeat(empty_full_report(before.chunkservers[0].node_id))
        .await
        .expect_err("heartbeat");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // Chunkservers are bound to the node id they registered: cs2 cannot speak for cs1's node
    // (an empty full report would erase its replica locations), and a rogue chunkserver
    // certificate cannot take over cs1's registration with its uuid.
    let cs1_node = before
        .chunkservers
        .iter()
        .find(|s| s.host == "cs1")
        .expect("cs1")
        .node_id;
    let cs2 = transport_as(Role::Chunkserver, "cs2");
    let e = client_as(&cs2, &leader)
        .heartbeat(empty_full_report(cs1_node))
        .await
        .expect_err("heartbeat as another node");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let uuid = std::fs::read_to_string(cluster.chunkservers[0].data.join("uuid")).expect("uuid");
    let rogue = transport_as(Role::Chunkserver, "rogue");
    let e = on_leader_as(&rogue, &addrs, |mut c| {
        let req = rogue_registration(uuid.trim());
        async move { c.register_chunkserver(req).await }
    })
    .await
    .expect_err("take over a registration");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // Users and chunkservers cannot delete chunks; only masters decide what is garbage.
    let del = DeleteChunksRequest {
        chunks: locs
            .chunks
            .iter()
            .map(|c| ChunkRef {
                chunk_id: c.chunk_id,
                version: u64::MAX,
            })
            .collect(),
    };
    for t in [&alice, &admin(), &transport_as(Role::Chunkserver, "cs1")] {
        for r in &first.replicas {
            let ch = t.channel(&r.address, |e| e).expect("uri");
            let e = shale_proto::pb::chunk_service_client::ChunkServiceClient::new(ch)
                .delete_chunks(del.clone())
                .await
                .expect_err("delete chunks");
            assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        }
    }

    // --- Chunk access tokens: no bytes in or out without one the masters signed. ---
    let second = &locs.chunks[1];
    let node = first.replicas[0].node_id;
    let adm = admin();
    token_refused(
        chunk_at(&adm, &replica).read_chunk(read.clone()).await,
        "needs a chunk access token",
    );
    let mut forged = first.token.clone().expect("a read token");
    let last = forged.mac.len() - 1;
    let mut mac = forged.mac.to_vec();
    mac[last] ^= 1;
    forged.mac = mac.into();
    token_refused(
        chunk_at(&adm, &replica)
            .read_chunk(ReadChunkRequest {
                token: Some(forged),
                ..read.clone()
            })
            .await,
        "signature does not match",
    );
    // A token altered to grant more (write, another chunk) no longer verifies.
    let mut more = first.token.clone().expect("token");
    more.modes = 3;
    token_refused(
        write_direct(
            &adm,
            &replica,
            node,
            (first.chunk_id, first.version + 1),
            Some(more),
            b"x",
        )
        .await,
        "signature does not match",
    );
    // A genuine token replayed for another chunk, or for a write.
    token_refused(
        chunk_at(&adm, &replica)
            .read_chunk(ReadChunkRequest {
                token: second.token.clone(),
                ..read.clone()
            })
            .await,
        "is for chunk",
    );
    token_refused(
        write_direct(
            &adm,
            &replica,
            node,
            (first.chunk_id, first.version),
            first.token.clone(),
            b"x",
        )
        .await,
        "does not grant write",
    );
    // Direct writes without a token, as a user or as another chunkserver.
    for t in [&alice, &adm, &transport_as(Role::Chunkserver, "cs2")] {
        token_refused(
            write_direct(t, &replica, node, (1 << 40, 1), None, b"planted").await,
            "needs a chunk access token",
        );
    }
    // A server-side copy with a read token naming another source is refused.
    let copy = shale_proto::pb::ReplicateChunkRequest {
        chunk: Some(ChunkRef {
            chunk_id: 1 << 41,
            version: 1,
        }),
        source: Some(shale_proto::pb::PipelineTarget {
            node_id: 4242,
            address: "127.0.0.1:22".into(),
            data_address: String::new(),
        }),
        from: Some(ChunkRef {
            chunk_id: first.chunk_id,
            version: first.version,
        }),
        token: None,
        from_token: first.token.clone(),
        source_data_address: String::new(),
    };
    token_refused(
        chunk_at(&adm, &replica).replicate_chunk(copy).await,
        "needs a chunk access token",
    );
    // An expired token (this cluster's live 4 s, plus the clock allowance).
    let t0 = std::time::Instant::now();
    let fresh = admin_client
        .chunk_locations("/precious")
        .await
        .expect("locations");
    let token = fresh.chunks[0].token.clone();
    chunk_at(&adm, &replica)
        .read_chunk(ReadChunkRequest {
            token: token.clone(),
            ..read.clone()
        })
        .await
        .expect("a fresh token reads");
    tokio::time::sleep(Duration::from_secs(4 + 5 + 1).saturating_sub(t0.elapsed())).await;
    token_refused(
        chunk_at(&adm, &replica)
            .read_chunk(ReadChunkRequest {
                token,
                ..read.clone()
            })
            .await,
        "expired",
    );

    // --- Raft: only masters, only as themselves, only with sane terms. ---
    for m in &addrs {
        let e = raft_as(
            &alice,
            m,
            raft_request(RaftKind::AppendEntries, append(u64::MAX, 9)),
        )
        .await;
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        let e = raft_as(&alice, m, raft_request(RaftKind::Vote, vote(u64::MAX, 9))).await;
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        // Master 3's certificate posing as master 1.
        let m3 = transport_as(Role::Master, "3");
        let e = raft_as(&m3, m, raft_request(RaftKind::AppendEntries, append(5, 1))).await;
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        // A member's own identity with a term openraft cannot survive.
        let e = raft_as(
            &m3,
            m,
            raft_request(RaftKind::AppendEntries, append(u64::MAX, 3)),
        )
        .await;
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        let e = raft_as(&m3, m, raft_request(RaftKind::Vote, vote(u64::MAX - 1, 3))).await;
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    }

    // --- Nothing changed. ---
    // (The openraft panic came ≈ 10 s after the forged term; give it time to show.)
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = status(&common::leader(&addrs).await).await;
    assert_eq!(after.term, before.term, "the term moved");
    assert_eq!(after.masters.len(), 3);
    assert_eq!(after.chunkservers.len(), before.chunkservers.len());
    assert!(
        after
            .chunkservers
            .iter()
            .all(|s| s.state == "alive" && !s.draining),
        "{after:?}"
    );
    for m in &cluster.masters {
        let s = status(&m.addr).await;
        assert_eq!(s.term, before.term, "master {} moved its term", m.id);
    }
    let st = admin_client.stat("/precious").await.expect("stat");
    assert_eq!(st.replication, 3);
    let mut back = Vec::new();
    admin_client
        .get("/precious", &mut back, &|_| {})
        .await
        .expect("get");
    assert!(back == data, "the file changed");
}

/// Item 5: connections that never finish their TLS handshake cost a server a bounded number
/// of tasks for a bounded time: a host that opens hundreds and says nothing neither locks
/// other clients out nor keeps its connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_do_not_lock_clients_out() {
    use tokio::io::AsyncReadExt;
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tmp");
    let m = MasterProc::start(1, "127.0.0.1:0", &dir.path().join("m1"), &[]);
    status_as(&admin(), &m.addr).await.expect("status");
    let target: std::net::SocketAddr = m.addr.parse().expect("addr");
    // A host (127.0.0.2, also loopback) opens 300 connections and sends nothing.
    let mut held = Vec::new();
    for _ in 0..300 {
        let s = tokio::net::TcpSocket::new_v4().expect("socket");
        s.bind("127.0.0.2:0".parse().expect("bind addr"))
            .expect("bind");
        if let Ok(c) = s.connect(target).await {
            held.push(c);
        }
    }
    assert!(held.len() >= 250, "only {} connections", held.len());
    // Everyone else is still served at once.
    let t0 = std::time::Instant::now();
    status_as(&admin(), &m.addr)
        .await
        .expect("status during the flood");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    // The server closes every silent connection within its handshake timeout (5 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut open = held.len();
    while open > 0 {
        open = 0;
        for c in &mut held {
            let mut b = [0u8; 16];
            match tokio::time::timeout(Duration::from_millis(5), c.read(&mut b)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {}
                _ => open += 1,
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{open} silent connections still open"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
