//! The chunkservers' data port (issue: data path, item 2) against the gRPC `ChunkService` it
//! stands beside: clients read identical bytes either way (whole files and ranges), and the
//! same requests get the same answers on both — a missing or foreign token, a range past the
//! end, a stale version, a replica whose bytes no longer match their checksums — while a
//! request that is not one gets a clear error and the server keeps serving.
mod common;

use common::*;
use shale_client::{Client, ClientConfig};
use shale_proto::datapb::{data_request::Op, DataReply, DataRequest};
use shale_proto::dataport::{self, FRAME_ERROR};
use shale_proto::metapb::ChunkLocation;
use shale_proto::pb::chunk_service_client::ChunkServiceClient;
use shale_proto::pb::{ChunkRef, ReadChunkRequest};
use shale_security::Transport;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TLS client of the cluster CA without a certificate: it may read only with a token.
fn anonymous() -> Transport {
    Transport::tls(
        shale_security::Tls::load(shale_security::TlsFiles {
            ca: tls_dir().join("ca.pem"),
            cert: None,
            key: None,
        })
        .expect("ca"),
    )
}

type Answer = Result<Vec<u8>, (tonic::Code, String)>;

/// One read over gRPC `ReadChunk`.
async fn grpc_read(t: &Transport, addr: &str, req: ReadChunkRequest) -> Answer {
    let ch = t
        .channel(addr, |e| e.connect_timeout(Duration::from_secs(2)))
        .expect("channel");
    let mut c = ChunkServiceClient::new(ch).max_decoding_message_size(8 << 20);
    let fail = |s: tonic::Status| (s.code(), s.message().to_string());
    let mut s = c.read_chunk(req).await.map_err(fail)?.into_inner();
    let mut out = Vec::new();
    while let Some(f) = s.message().await.map_err(fail)? {
        assert_eq!(crc32c::crc32c(&f.data), f.crc32c);
        out.extend_from_slice(&f.data);
    }
    Ok(out)
}

/// One read over the data port, speaking the wire format by hand.
async fn port_read(t: &Transport, addr: &str, req: ReadChunkRequest) -> Answer {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let mut s = t
        .dial(host, port.parse().expect("port"), dataport::ALPN)
        .await
        .expect("dial the data port");
    let head = DataRequest {
        op: Some(Op::Read(req)),
    };
    dataport::write_head(&mut s, &head).await.expect("send");
    s.flush().await.expect("flush");
    let reply: DataReply = dataport::read_head(&mut s)
        .await
        .expect("answer")
        .expect("a head");
    let code = |c: u32| tonic::Code::from(c as i32);
    if reply.code != 0 {
        return Err((code(reply.code), reply.message));
    }
    let mut out = Vec::new();
    while (out.len() as u64) < reply.length {
        let (n, crc) = dataport::read_frame_head(&mut s).await.expect("frame");
        if n == FRAME_ERROR {
            let why: DataReply = dataport::read_head(&mut s)
                .await
                .expect("error")
                .expect("a head");
            return Err((code(why.code), why.message));
        }
        let mut p = vec![0u8; n as usize];
        s.read_exact(&mut p).await.expect("payload");
        assert_eq!(crc32c::crc32c(&p), crc, "a damaged frame");
        out.extend_from_slice(&p);
    }
    Ok(out)
}

fn req(c: &ChunkLocation, offset: u64, length: u64, with_token: bool) -> ReadChunkRequest {
    ReadChunkRequest {
        chunk: Some(ChunkRef {
            chunk_id: c.chunk_id,
            version: c.version,
        }),
        offset,
        length,
        to_end: false,
        token: if with_token { c.token.clone() } else { None },
    }
}

/// A client that reads and writes over gRPC only (no data port).
async fn grpc_client(masters: &[String]) -> Client {
    let config = ClientConfig {
        data_port: false,
        ..client_config()
    };
    Client::connect(masters, config).await.expect("connect")
}

/// Both paths' answers to the same request on one chunkserver: they must agree.
async fn both(t: &Transport, grpc: &str, port: &str, r: ReadChunkRequest) -> Answer {
    let a = grpc_read(t, grpc, r.clone()).await;
    let b = port_read(t, port, r).await;
    assert_eq!(
        a.as_ref().map_err(|e| e.0),
        b.as_ref().map_err(|e| e.0),
        "gRPC and the data port disagree"
    );
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_port_serves_the_same_bytes_with_the_same_checks() {
    let cluster = Cluster::start(3, 1).await;
    let masters = cluster.master_addrs();
    let c = Client::connect(&masters, client_config())
        .await
        .expect("connect");
    let data: Vec<u8> = (0..(5u32 << 20) + 12_345)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    c.put("/f", &data[..], Default::default(), &|_| {})
        .await
        .expect("put");
    // Every replica comes with its data port (from the chunkservers' heartbeats).
    let deadline = Instant::now() + WAIT;
    let locs = loop {
        let l = c.chunk_locations("/f").await.expect("locations");
        if l.chunks.iter().all(|ch| {
            ch.replicas.len() == 3 && ch.replicas.iter().all(|r| !r.data_address.is_empty())
        }) {
            break l;
        }
        assert!(Instant::now() < deadline, "no data ports listed: {l:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Clients read identical bytes over either path, whole and in ranges.
    let grpc_only = grpc_client(&masters).await;
    for reader in [&c, &grpc_only] {
        let mut back = Vec::new();
        reader.get("/f", &mut back, &|_| {}).await.expect("get");
        assert!(back == data, "a whole read differs");
        for (off, len) in [
            (0u64, 1u64),
            (1_048_570, 20),
            (3 << 20, 2 << 20),
            (5 << 20, 99_999),
        ] {
            let got = reader.read_range("/f", off, len).await.expect("range");
            let end = (off + len).min(data.len() as u64) as usize;
            assert!(
                got[..] == data[off as usize..end],
                "range {off}+{len} differs"
            );
        }
    }

    // The same checks, asked of one replica both ways as a client without a certificate.
    let anon = anonymous();
    let ch = &locs.chunks[1];
    let r = &ch.replicas[0];
    let (grpc, port) = (r.address.as_str(), r.data_address.as_str());
    let start = 1usize << 20;
    let ok = both(&anon, grpc, port, req(ch, 100, 5000, true)).await;
    assert_eq!(
        ok.expect("a read with the token")[..],
        data[start + 100..start + 5100]
    );
    let whole = both(&anon, grpc, port, req(ch, 0, 0, true)).await;
    assert!(whole.expect("to the end")[..] == data[start..start + (1 << 20)]);
    let no_token = both(&anon, grpc, port, req(ch, 0, 10, false)).await;
    assert!(no_token.is_err(), "read without a token");
    // Another chunk's token does not open this one.
    let mut foreign = req(ch, 0, 10, false);
    foreign.token = locs.chunks[0].token.clone();
    let e = both(&anon, grpc, port, foreign)
        .await
        .expect_err("foreign token");
    assert_eq!(e.0, tonic::Code::PermissionDenied, "{e:?}");
    let past = both(&anon, grpc, port, req(ch, (1 << 20) - 5, 10, true)).await;
    assert_eq!(past.expect_err("past the end").0, tonic::Code::OutOfRange);
    let mut stale = req(ch, 0, 10, true);
    stale.chunk = Some(ChunkRef {
        chunk_id: ch.chunk_id,
        version: ch.version + 1,
    });
    // (The token names the real version: refused either way, for the same reason.)
    assert!(both(&anon, grpc, port, stale).await.is_err());

    // A request that is not one: an error answer, and the server keeps serving.
    let (host, p) = port.rsplit_once(':').expect("host:port");
    let mut s = anon
        .dial(host, p.parse().expect("port"), dataport::ALPN)
        .await
        .expect("dial");
    s.write_all(&[3, 0, 0, 0, 0xff, 0xff, 0xff])
        .await
        .expect("garbage");
    s.flush().await.expect("flush");
    let reply: DataReply = dataport::read_head(&mut s)
        .await
        .expect("an answer")
        .expect("a head");
    assert_eq!(reply.code, tonic::Code::InvalidArgument as u32, "{reply:?}");
    let mut huge = anon
        .dial(host, p.parse().expect("port"), dataport::ALPN)
        .await
        .expect("dial");
    huge.write_all(&u32::MAX.to_le_bytes())
        .await
        .expect("oversize");
    huge.flush().await.expect("flush");
    let reply: Option<DataReply> = dataport::read_head(&mut huge).await.unwrap_or(None);
    assert!(reply.is_none_or(|r| r.code == tonic::Code::InvalidArgument as u32));
    assert!(port_read(&anon, port, req(ch, 0, 10, true)).await.is_ok());

    // Damaged bytes on disk: both paths refuse them (DATA_LOSS), each on its own chunk.
    let i = cluster
        .chunkservers
        .iter()
        .position(|s| s.addr == r.address)
        .expect("the replica's process");
    let dir = cluster.chunkservers[i].data.join("chunks");
    let damaged: Vec<&ChunkLocation> = locs
        .chunks
        .iter()
        .filter(|c| c.replicas.iter().any(|x| x.address == r.address))
        .take(2)
        .collect();
    assert_eq!(damaged.len(), 2, "every server holds every chunk of 3");
    for d in &damaged {
        let f = dir.join(shale_chunk::names::data(shale_proto::ChunkId(d.chunk_id)));
        let mut bytes = std::fs::read(&f).expect("replica");
        bytes[4096 + 7] ^= 0x40;
        std::fs::write(&f, &bytes).expect("damage");
    }
    let a = port_read(&anon, port, req(damaged[0], 4096, 100, true)).await;
    let b = grpc_read(&anon, grpc, req(damaged[1], 4096, 100, true)).await;
    assert_eq!(a.expect_err("data port").0, tonic::Code::DataLoss);
    assert_eq!(b.expect_err("gRPC").0, tonic::Code::DataLoss);
    // The client goes on to another replica: the file still reads whole.
    let mut back = Vec::new();
    c.get("/f", &mut back, &|_| {}).await.expect("get");
    assert!(back == data);

    // Data ports that cannot be reached (a firewall lets only gRPC through): a new client
    // reads over gRPC instead.
    let ports: Vec<u16> = locs.chunks[0]
        .replicas
        .iter()
        .filter_map(|r| r.data_address.rsplit_once(':')?.1.parse().ok())
        .collect();
    let _wall = Firewall::reject(&ports);
    let (h, p) = port.rsplit_once(':').expect("host:port");
    assert!(
        anon.dial(h, p.parse().expect("port"), dataport::ALPN)
            .await
            .is_err(),
        "the data port is still reachable"
    );
    let fresh = Client::connect(&masters, client_config())
        .await
        .expect("connect");
    let mut back = Vec::new();
    fresh
        .get("/f", &mut back, &|_| {})
        .await
        .expect("get over gRPC");
    assert!(back == data);
}

/// An nftables table rejecting TCP connections to some local ports, removed when dropped.
struct Firewall(String);

impl Firewall {
    fn reject(ports: &[u16]) -> Firewall {
        let name = format!("shale_dp_{}", std::process::id());
        let set = ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let rules = format!(
            "table inet {name} {{\n chain out {{\n  type filter hook output priority 0;\n  \
             tcp dport {{ {set} }} reject with tcp reset\n }}\n}}\n"
        );
        let mut child = std::process::Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("nft (nftables) is needed");
        std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), rules.as_bytes())
            .expect("rules");
        assert!(child.wait().expect("nft").success(), "nft refused {rules}");
        Firewall(name)
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        let _ = std::process::Command::new("nft")
            .args(["delete", "table", "inet", &self.0])
            .status();
    }
}

/// Files of chunk `id` (any version, any stage) in a chunkserver's store.
fn chunk_files(dir: &std::path::Path, id: u64) -> Vec<String> {
    let prefix = format!("{id:016x}");
    std::fs::read_dir(dir.join("chunks"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (bounded) until no chunkserver holds a file of chunk `id`.
async fn nothing_left(cluster: &Cluster, id: u64, what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left: Vec<String> = cluster
            .chunkservers
            .iter()
            .flat_map(|s| chunk_files(&s.data, id))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: left behind {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One write by hand over the data port at `addr`: the header, then `frames` as
/// (crc32c, payload), then the final answer (or the refusal of the header).
async fn port_write(
    t: &Transport,
    addr: &str,
    header: shale_proto::pb::WriteHeader,
    frames: Vec<(u32, Vec<u8>)>,
) -> DataReply {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let mut s = t
        .dial(host, port.parse().expect("port"), dataport::ALPN)
        .await
        .expect("dial the data port");
    let first = dataport::write_start(&mut s, header)
        .await
        .expect("an answer to the header");
    if first.code != 0 {
        return first;
    }
    let frames = futures_util::stream::iter(frames.into_iter().map(|(c, p)| (c, p.into())));
    let (answer, _) = dataport::write_frames(s, frames, WAIT, WAIT).await;
    answer.expect("a final answer")
}

/// The first answer of gRPC `WriteChunk` to `header` alone (its refusal, if it refuses it).
async fn grpc_refusal(t: &Transport, addr: &str, header: shale_proto::pb::WriteHeader) -> u32 {
    use shale_proto::pb::{write_chunk_request::Kind, WriteChunkRequest};
    let ch = t
        .channel(addr, |e| e.connect_timeout(Duration::from_secs(2)))
        .expect("channel");
    let msgs = vec![WriteChunkRequest {
        kind: Some(Kind::Header(header)),
    }];
    match ChunkServiceClient::new(ch)
        .write_chunk(futures_util::stream::iter(msgs))
        .await
    {
        Ok(_) => 0,
        Err(s) => s.code() as u32,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_over_the_data_port_store_the_same_bytes_and_refuse_what_grpc_refuses() {
    let cluster = Cluster::start(3, 1).await;
    let masters = cluster.master_addrs();
    let data: Vec<u8> = (0..(3u32 << 20) + 4_321)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8)
        .collect();
    let c = Client::connect(&masters, client_config())
        .await
        .expect("connect");
    let grpc_only = grpc_client(&masters).await;
    // The masters learn the data ports from heartbeats; allocations name them from then on.
    let deadline = Instant::now() + WAIT;
    loop {
        c.put("/probe", &b"x"[..], true, &|_| {})
            .await
            .expect("put");
        let l = c.chunk_locations("/probe").await.expect("locations");
        if l.chunks[0]
            .replicas
            .iter()
            .all(|r| !r.data_address.is_empty())
        {
            break;
        }
        assert!(Instant::now() < deadline, "no data ports listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The same bytes stored either way, read back either way.
    c.put("/port", &data[..], false, &|_| {})
        .await
        .expect("put over the data port");
    grpc_only
        .put("/grpc", &data[..], false, &|_| {})
        .await
        .expect("put over gRPC");
    for reader in [&c, &grpc_only] {
        for path in ["/port", "/grpc"] {
            let mut back = Vec::new();
            reader.get(path, &mut back, &|_| {}).await.expect("get");
            assert!(back == data, "{path} differs");
        }
    }

    // By hand: one chunk of a new file, its allocation (token, pipeline with data ports).
    let admin = common::admin();
    let created = common::on_leader(&masters, |mut m| async move {
        m.create(shale_proto::metapb::CreateRequest {
            path: "/hand".into(),
            overwrite: false,
            replication: 3,
            chunk_size: 0,
            client_id: 91,
            lease_ms: 60_000,
            mode: None,
            request_id: None,
        })
        .await
    })
    .await
    .expect("create");
    let allocate = || {
        common::on_leader(&masters, |mut m| async move {
            m.allocate_chunk(shale_proto::metapb::AllocateChunkRequest {
                file: created.file,
                client_id: 91,
                index: 0,
                exclude: vec![],
                client_host: String::new(),
                request_id: None,
            })
            .await
        })
    };
    let alloc = allocate().await.expect("allocate");
    let head = alloc.pipeline[0].clone();
    assert!(alloc.pipeline.iter().all(|r| !r.data_address.is_empty()));
    let payload: Vec<u8> = data[..100_000].to_vec();
    let header = |a: &shale_proto::metapb::AllocateChunkReply| {
        shale_proto::convert::pipeline_header(a, payload.len() as u64)
    };
    let good = |p: &[u8]| vec![(crc32c::crc32c(p), p.to_vec())];

    // Refusals of the header: the same codes as gRPC, and the connection stays usable.
    let anon = anonymous();
    let mut no_token = header(&alloc);
    no_token.token = None;
    let mut wrong_node = header(&alloc);
    wrong_node.node_id += 100;
    for (h, who) in [(no_token, &anon), (wrong_node, &admin)] {
        let port = port_write(who, &head.data_address, h.clone(), vec![]).await;
        assert_ne!(port.code, 0, "accepted {h:?}");
        assert_eq!(port.code, grpc_refusal(who, &head.address, h).await);
    }
    nothing_left(&cluster, alloc.chunk_id, "refused headers").await;

    // Damaged bytes on the wire: DATA_LOSS blamed on the receiver, nothing left anywhere.
    let mut bad = good(&payload);
    bad[0].1[5] ^= 1;
    let r = port_write(&admin, &alloc.pipeline[0].data_address, header(&alloc), bad).await;
    assert_eq!(r.code, tonic::Code::DataLoss as u32, "{r:?}");
    assert_eq!(r.failed_node, alloc.pipeline[0].node_id);
    nothing_left(&cluster, alloc.chunk_id, "a damaged frame").await;

    // A frame past the header's length, and a client gone mid-stream: nothing left.
    let alloc = allocate().await.expect("allocate again");
    // (A frame that runs past the length: the frames are counted against the header, so
    // bytes after the last one are the next request's, refused as such.)
    let longer = [&payload[..], b"extra"].concat();
    let over = good(&longer);
    let r = port_write(
        &admin,
        &alloc.pipeline[0].data_address,
        header(&alloc),
        over,
    )
    .await;
    assert_eq!(r.code, tonic::Code::InvalidArgument as u32, "{r:?}");
    nothing_left(&cluster, alloc.chunk_id, "too many bytes").await;
    let alloc = allocate().await.expect("allocate again");
    {
        let (h, p) = alloc.pipeline[0]
            .data_address
            .rsplit_once(':')
            .expect("host:port");
        let mut s = admin
            .dial(h, p.parse().expect("port"), dataport::ALPN)
            .await
            .expect("dial");
        let first = dataport::write_start(&mut s, header(&alloc))
            .await
            .expect("answer");
        assert_eq!(first.code, 0, "{first:?}");
        dataport::write_frame(&mut s, crc32c::crc32c(&payload[..5000]), &payload[..5000])
            .await
            .expect("half");
        s.flush().await.expect("flush");
    }
    nothing_left(&cluster, alloc.chunk_id, "a client gone mid-stream").await;

    // And a good write: durable on every replica of the pipeline, in order.
    let alloc = allocate().await.expect("allocate again");
    let r = port_write(
        &admin,
        &alloc.pipeline[0].data_address,
        header(&alloc),
        good(&payload),
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let nodes: Vec<u64> = alloc.pipeline.iter().map(|r| r.node_id).collect();
    assert_eq!(r.durable_on, nodes);
    for s in &cluster.chunkservers {
        let files = chunk_files(&s.data, alloc.chunk_id);
        assert!(files.iter().any(|f| f.ends_with(".chunk")), "{files:?}");
    }

    // Data ports that cannot be reached: a new client writes over gRPC instead.
    let ports: Vec<u16> = alloc
        .pipeline
        .iter()
        .filter_map(|r| r.data_address.rsplit_once(':')?.1.parse().ok())
        .collect();
    let _wall = Firewall::reject(&ports);
    let fresh = Client::connect(&masters, client_config())
        .await
        .expect("connect");
    fresh
        .put("/walled", &data[..], false, &|_| {})
        .await
        .expect("put over gRPC");
    let mut back = Vec::new();
    fresh.get("/walled", &mut back, &|_| {}).await.expect("get");
    assert!(back == data);
}
