//! Golden files of the on-disk format (sidecar v1, and a whole store directory). A change to
//! the byte format fails here; bump `format::FORMAT_VERSION`, keep reading the old version, and
//! only then re-bless with `SHALE_BLESS=1 cargo test -p shale-chunk --test golden`.
use shale_chunk::backend::std_fs::StdBackend;
use shale_chunk::format::{CrcAccumulator, Sidecar, BLOCK_SIZE_BYTES};
use shale_chunk::{ChunkStore, Store, StoreConfig};
use shale_proto::{ChunkId, ChunkRef, ChunkVersion};
use std::path::PathBuf;

const ID: u64 = 0x0102_0304_0506_0708;
const LEN: usize = 150_000;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/store_v1")
}

fn data() -> Vec<u8> {
    (0..LEN).map(|i| (i.wrapping_mul(31) + 7) as u8).collect()
}

fn sidecar() -> Sidecar {
    let mut acc = CrcAccumulator::new(BLOCK_SIZE_BYTES);
    acc.update(&data());
    Sidecar {
        block_size: BLOCK_SIZE_BYTES,
        chunk: ChunkId(ID),
        version: ChunkVersion(3),
        length: LEN as u64,
        block_crcs: acc.finish(),
    }
}

fn bless() -> bool {
    std::env::var_os("SHALE_BLESS").is_some()
}

#[test]
fn sidecar_v1_bytes_are_stable() {
    let path = golden_dir().join("0102030405060708.crc");
    let encoded = sidecar().encode();
    if bless() {
        std::fs::write(&path, &encoded).expect("bless sidecar");
        std::fs::write(golden_dir().join("0102030405060708.chunk"), data()).expect("bless data");
    }
    let golden = std::fs::read(&path).expect("golden sidecar present");
    assert_eq!(encoded, golden, "sidecar encoding changed");
    assert_eq!(Sidecar::decode(&golden), Ok(sidecar()));
    // Spot-check the documented layout.
    assert_eq!(&golden[0..8], b"SHALECRC");
    assert_eq!(u16::from_le_bytes([golden[8], golden[9]]), 1);
    assert_eq!(golden.len(), 44 + 4 * 3 + 4);
}

#[tokio::test]
async fn a_v1_store_directory_opens_and_reads() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for name in ["0102030405060708.chunk", "0102030405060708.crc"] {
        std::fs::copy(golden_dir().join(name), tmp.path().join(name)).expect("copy golden");
    }
    let backend = StdBackend::new(tmp.path()).expect("backend");
    let (s, report) = Store::open(backend, StoreConfig::default())
        .await
        .expect("open");
    assert_eq!(report.sealed_chunks, 1, "{report}");
    let c = ChunkRef {
        id: ChunkId(ID),
        version: ChunkVersion(3),
    };
    let got = s.read(c, 0, LEN as u64).await.expect("read");
    assert_eq!(&got[..], &data()[..]);
}
