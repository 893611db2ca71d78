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
    let grpc_only = Client::connect(
        &masters,
        ClientConfig {
            data_port: false,
            ..client_config()
        },
    )
    .await
    .expect("connect");
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
