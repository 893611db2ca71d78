//! The `Batch` RPC on a real cluster: many namespace operations in one call with per-item
//! results (one failing does not stop the others), each checked as its own RPC would be; a
//! retried batch (same request ids) answers as the first time and applies nothing twice; a
//! batch over the limit or with an empty item is refused and changes nothing; `shale put` of
//! a tree (creates and completes batched) stores every file byte for byte and reports the
//! ones it could not write; `shale rm` of several paths removes what it can and says what not.
mod common;

use common::*;
use shale_client::{Client, ClientError, NamespaceOp};
use shale_proto::metapb::batch_item::Op;
use shale_proto::metapb::*;
use std::process::Output;

fn sh(m: &[String], args: &[&str]) -> Output {
    shale_cmd()
        .args(["--masters", &m.join(",")])
        .args(args)
        .output()
        .expect("run shale")
}

fn mkdir(path: &str, seq: u64) -> BatchItem {
    BatchItem {
        op: Some(Op::Mkdir(MkdirRequest {
            path: path.into(),
            parents: false,
            mode: None,
            request_id: Some(RequestId { client_id: 77, seq }),
        })),
    }
}

fn create(path: &str, seq: u64) -> BatchItem {
    BatchItem {
        op: Some(Op::Create(CreateRequest {
            path: path.into(),
            client_id: 5,
            lease_ms: 60_000,
            request_id: Some(RequestId { client_id: 77, seq }),
            ..CreateRequest::default()
        })),
    }
}

fn complete(file: u64, seq: u64) -> BatchItem {
    BatchItem {
        op: Some(Op::Complete(CompleteRequest {
            file,
            client_id: 5,
            length: 0,
            request_id: Some(RequestId { client_id: 77, seq }),
            ..CompleteRequest::default()
        })),
    }
}

async fn batch(addrs: &[String], items: Vec<BatchItem>) -> Result<BatchReply, tonic::Status> {
    on_leader(addrs, |mut c| {
        let items = items.clone();
        async move { c.batch(BatchRequest { items }).await }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_apply_each_item_once_with_its_own_result() {
    let cluster = Cluster::start(3, 1).await;
    let addrs = cluster.master_addrs();
    // Mixed items: two good mkdirs, one under a missing parent, one bad path, two creates (one
    // into a missing directory), then completes in a second batch.
    let items = vec![
        mkdir("/b", 1),
        mkdir("/b/x", 2),
        mkdir("/nope/y", 3),
        mkdir("relative", 4),
        create("/b/f", 5),
        create("/missing/f", 6),
    ];
    let first = batch(&addrs, items.clone()).await.expect("batch");
    let codes: Vec<u32> = first.results.iter().map(|r| r.code).collect();
    let nf = tonic::Code::NotFound as u32;
    let inv = tonic::Code::InvalidArgument as u32;
    assert_eq!(codes, vec![0, 0, nf, inv, 0, nf], "{first:?}");
    assert!(first.results[2].message.contains("nope"), "{first:?}");
    let file = first.results[4].inode;
    assert!(file > 0 && first.results[4].lease_expires_ms > 0);
    // The same batch again (a retry: same request ids) answers the same and applies nothing
    // twice: the mkdirs do not turn into ALREADY_EXISTS, the create keeps its inode.
    let again = batch(&addrs, items).await.expect("retry");
    assert_eq!(again, first);
    // Completes: the file becomes visible; a second complete of an unknown file fails alone.
    let done = batch(&addrs, vec![complete(file, 7), complete(999_999, 8)])
        .await
        .expect("complete");
    assert_eq!(done.results[0].code, 0, "{done:?}");
    assert_eq!(done.results[0].inode, file);
    assert_ne!(done.results[1].code, 0, "{done:?}");
    let st = on_leader(&addrs, |mut c| async move {
        c.stat(PathRequest {
            path: "/b/f".into(),
            follower_read: false,
        })
        .await
    })
    .await
    .expect("stat");
    assert_eq!(st.inode, file);
    // Refused whole, changing nothing: too many items, or an item without an operation.
    let many: Vec<BatchItem> = (0..1001)
        .map(|i| mkdir(&format!("/many{i}"), 100 + i))
        .collect();
    let e = batch(&addrs, many).await.expect_err("over the limit");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let r = batch(
        &addrs,
        vec![BatchItem { op: None }, mkdir("/after-empty", 2000)],
    )
    .await
    .expect("batch");
    assert_eq!(r.results[0].code, inv);
    assert_eq!(r.results[1].code, 0);
    let c = Client::connect(&addrs, client_config())
        .await
        .expect("client");
    assert!(matches!(
        c.stat("/many0").await,
        Err(ClientError::NotFound(_))
    ));

    // The client API: renames, trash and deletes in one batch, with per-item outcomes.
    let ops = vec![
        NamespaceOp::Rename {
            src: "/b/x".into(),
            dst: "/b/x2".into(),
            no_replace: false,
        },
        NamespaceOp::Trash {
            path: "/b/f".into(),
            recursive: false,
        },
        NamespaceOp::Delete {
            path: "/b/absent".into(),
            recursive: false,
        },
        NamespaceOp::Delete {
            path: "/after-empty".into(),
            recursive: false,
        },
    ];
    let r = c.batch(&ops).await.expect("batch");
    assert!(r[0].is_ok(), "{r:?}");
    let trashed = r[1].as_ref().expect("trashed").path.clone();
    assert!(trashed.starts_with("/.Trash/"), "{trashed}");
    assert!(matches!(r[2], Err(ClientError::NotFound(_))), "{r:?}");
    assert!(r[3].is_ok(), "{r:?}");
    assert!(c.exists("/b/x2").await.expect("stat"));
    assert!(c.exists(&trashed).await.expect("stat"));
    assert!(!c.exists("/after-empty").await.expect("stat"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_and_rm_of_many_paths_go_in_batches() {
    let cluster = Cluster::start(3, 1).await;
    let addrs = cluster.master_addrs();
    let local = tempfile::tempdir().expect("tmp");
    let tree = local.path().join("tree");
    // 300 files (more than one create batch of the client), in nested directories, some
    // empty, one bigger than a chunk (1 MiB chunks).
    let mut want = Vec::new();
    for i in 0..300usize {
        let rel = format!("d{}/s{}/f{i}", i % 3, i % 7);
        let len = match i {
            0 => 0,
            1 => (1 << 20) + 12_345,
            _ => i * 37 % 5000,
        };
        let bytes: Vec<u8> = (0..len).map(|j| (j * 31 + i) as u8).collect();
        let p = tree.join(&rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, &bytes).expect("write");
        want.push((rel, bytes));
    }
    let o = sh(&addrs, &["put", "-r", &tree.to_string_lossy(), "/"]);
    assert!(
        o.status.success(),
        "put: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let c = Client::connect(&addrs, client_config())
        .await
        .expect("client");
    for (rel, bytes) in &want {
        let mut got = Vec::new();
        c.get(&format!("/tree/{rel}"), &mut got, &|_| {})
            .await
            .expect("get");
        assert!(got == *bytes, "/tree/{rel} differs");
    }
    // Again without -f: every file exists, each is reported, nothing is replaced.
    let o = sh(&addrs, &["put", "-r", &tree.to_string_lossy(), "/"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("300 of 300 files not written"), "{err}");
    assert!(err.contains("exists (use -f to replace it)"), "{err}");
    // rm of several paths: what exists goes (to the trash), the missing one is reported.
    let o = sh(
        &addrs,
        &[
            "rm",
            "-r",
            "/tree/d0",
            "/tree/d1",
            "/tree/none",
            "/tree/d2/s2",
        ],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("/tree/none"), "{err}");
    assert!(err.contains("1 of 4 paths not removed"), "{err}");
    for gone in ["/tree/d0", "/tree/d1", "/tree/d2/s2"] {
        assert!(!c.exists(gone).await.expect("stat"), "{gone}");
    }
    assert!(c.exists("/tree/d2/s5").await.expect("stat"));
}
