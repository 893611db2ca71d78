//! Test harnesses: one per backend, so one suite runs against all of them.
#![allow(dead_code)]
use shale_chunk::backend::mem::MemBackend;
use shale_chunk::backend::std_fs::StdBackend;
use shale_chunk::backend::uring::UringBackend;
use shale_chunk::backend::Backend;
use shale_chunk::{RecoveryReport, Store, StoreConfig};
use shale_proto::{ChunkId, ChunkRef, ChunkVersion};
use std::path::PathBuf;

/// Deterministic content of chunk `id` version `v`, `len` bytes.
pub fn content(id: u64, v: u64, len: usize) -> Vec<u8> {
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ v.wrapping_mul(0xD6E8_FEB8_6659_FD93) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn cref(id: u64, v: u64) -> ChunkRef {
    ChunkRef {
        id: ChunkId(id),
        version: ChunkVersion(v),
    }
}

/// A store directory that can be reopened, corrupted and inspected.
#[allow(async_fn_in_trait)]
pub trait Harness {
    type B: Backend;
    fn backend(&self) -> Self::B;
    /// Flips one bit of a stored file.
    fn flip_bit(&self, name: &str, offset: usize);
    /// Replaces a file's bytes (durably).
    fn put(&self, name: &str, data: &[u8]);
    fn read_raw(&self, name: &str) -> Option<Vec<u8>>;
    /// Deletes a file behind the store's back.
    fn delete(&self, name: &str);
    /// Every file name, including `quarantine/...`.
    fn names(&self) -> Vec<String>;
    /// Whether the store's directory takes O_DIRECT writes (a disk file system, not tmpfs).
    fn supports_direct(&self) -> bool;

    async fn open(&self, config: StoreConfig) -> (Store<Self::B>, RecoveryReport) {
        Store::open(self.backend(), config)
            .await
            .expect("store opens")
    }
}

pub struct Disk<B> {
    pub dir: tempfile::TempDir,
    make: fn(&std::path::Path) -> B,
}

pub fn std_disk() -> Disk<StdBackend> {
    Disk {
        dir: tempfile::tempdir().expect("tempdir"),
        make: |p| StdBackend::new(p).expect("std backend"),
    }
}

pub fn uring_disk() -> Disk<UringBackend> {
    Disk {
        dir: tempfile::tempdir().expect("tempdir"),
        make: |p| UringBackend::new(p, 2).expect("io_uring starts"),
    }
}

impl<B> Disk<B> {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl<B: Backend> Harness for Disk<B> {
    type B = B;
    fn backend(&self) -> B {
        (self.make)(self.dir.path())
    }
    fn flip_bit(&self, name: &str, offset: usize) {
        let mut b = std::fs::read(self.path(name)).expect("read");
        b[offset] ^= 1;
        std::fs::write(self.path(name), b).expect("write");
    }
    fn put(&self, name: &str, data: &[u8]) {
        std::fs::write(self.path(name), data).expect("write");
    }
    fn read_raw(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(name)).ok()
    }
    fn delete(&self, name: &str) {
        std::fs::remove_file(self.path(name)).expect("remove");
    }
    fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["", "quarantine/"] {
            for e in std::fs::read_dir(self.dir.path().join(sub)).expect("readdir") {
                let e = e.expect("entry");
                if e.file_type().expect("type").is_file() {
                    out.push(format!("{sub}{}", e.file_name().to_string_lossy()));
                }
            }
        }
        out.sort();
        out
    }
    fn supports_direct(&self) -> bool {
        use std::os::unix::fs::OpenOptionsExt;
        let p = self.path("direct-probe");
        let ok = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(&p)
            .is_ok();
        let _ = std::fs::remove_file(p);
        ok
    }
}

pub struct Mem(pub MemBackend);

impl Mem {
    pub fn new() -> Self {
        Mem(MemBackend::new(1 << 40))
    }
}

impl Harness for Mem {
    type B = MemBackend;
    fn backend(&self) -> MemBackend {
        self.0.clone()
    }
    fn flip_bit(&self, name: &str, offset: usize) {
        self.0.flip_bit(name, offset).expect("flip");
    }
    fn put(&self, name: &str, data: &[u8]) {
        self.0.put_file(name, data);
    }
    fn read_raw(&self, name: &str) -> Option<Vec<u8>> {
        self.0.file(name)
    }
    fn delete(&self, name: &str) {
        self.0.delete_file(name);
    }
    fn names(&self) -> Vec<String> {
        self.0.names()
    }
    fn supports_direct(&self) -> bool {
        false
    }
}
