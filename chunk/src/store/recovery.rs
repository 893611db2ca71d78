//! The recovery scan at open: rebuilds the inventory from the directory.
//!
//! * temp files (a write or seal that never finished) are removed;
//! * a `<id>.chunk.new` (a seal cut short after its data was synced) is rolled forward over
//!   `<id>.chunk` if it fully matches the sidecar in place (the seal had committed), else removed;
//! * a chunk is served only if its data and sidecar are both present, the sidecar decodes (magic,
//!   version, self-crc), names this chunk, agrees with the data's length, and the blocks checked
//!   (last block, or all with [`VerifyAtOpen::Full`]) match;
//! * anything else about a chunk is quarantined, not served, and reported;
//! * files the store does not know are left alone and reported.
use super::engine::{Sealed, Store};
use super::{RecoveryReport, StoreConfig, VerifyAtOpen};
use crate::backend::Backend;
use crate::error::{ChunkError, Result};
use crate::format::Sidecar;
use crate::names::{self, Kind};
use shale_proto::ChunkId;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Verification reads at most this much at once.
const VERIFY_WINDOW_BYTES: u64 = 8 << 20;

#[derive(Default)]
struct Found {
    data_len: Option<u64>,
    data_new_len: Option<u64>,
    sidecar: bool,
}

impl<B: Backend> Store<B> {
    /// Opens a store on `backend`, scanning what is on disk.
    pub async fn open(backend: B, config: StoreConfig) -> Result<(Self, RecoveryReport)> {
        let store = Store::new(backend, config);
        let report = store.recover().await?;
        tracing::info!(backend = store.backend.kind(), "chunk store open: {report}");
        Ok((store, report))
    }

    async fn recover(&self) -> Result<RecoveryReport> {
        let mut report = RecoveryReport::default();
        let files = self
            .backend
            .list()
            .await
            .map_err(|e| ChunkError::io("list", "store directory", e))?;
        let mut chunks: BTreeMap<ChunkId, Found> = BTreeMap::new();
        for (name, len) in files {
            match names::classify(&name) {
                Kind::Temp => {
                    self.backend
                        .remove(&name)
                        .await
                        .map_err(|e| ChunkError::io("remove", name.clone(), e))?;
                    report.temp_removed.push(name);
                }
                Kind::Data(id) => chunks.entry(id).or_default().data_len = Some(len),
                Kind::DataNew(id) => chunks.entry(id).or_default().data_new_len = Some(len),
                Kind::Sidecar(id) => chunks.entry(id).or_default().sidecar = true,
                Kind::Unknown => report.unknown_files.push(name),
            }
        }
        for (id, mut found) in chunks {
            if let Some(new_len) = found.data_new_len {
                if self.roll_forward(id, new_len, found.sidecar).await? {
                    found.data_len = Some(new_len);
                } else {
                    report.temp_removed.push(names::data_new(id));
                    if found.data_len.is_none() && !found.sidecar {
                        continue;
                    }
                }
            }
            match self.check(id, &found).await {
                Ok(sidecar) => {
                    report.sealed_chunks += 1;
                    report.sealed_bytes += sidecar.length;
                    let mut st = self.lock();
                    st.sealed_bytes += sidecar.length + sidecar.encoded_len() as u64;
                    st.sealed.insert(
                        id,
                        Sealed {
                            version: sidecar.version,
                            sidecar: Arc::new(sidecar),
                        },
                    );
                }
                Err((version, reason)) => {
                    self.quarantine(id, version, reason, None).await;
                }
            }
        }
        report.quarantined = self.lock().reports.clone();
        if !report.temp_removed.is_empty() || !report.quarantined.is_empty() {
            self.backend
                .sync_dir()
                .await
                .map_err(|e| ChunkError::io("sync dir", "store directory", e))?;
        }
        Ok(report)
    }

    /// Checks one chunk's files; on failure says why (and the version, when known).
    async fn check(
        &self,
        id: ChunkId,
        found: &Found,
    ) -> Result<Sidecar, (Option<shale_proto::ChunkVersion>, String)> {
        let Some(data_len) = found.data_len else {
            return Err((None, "data file missing".into()));
        };
        if !found.sidecar {
            return Err((None, "sidecar missing".into()));
        }
        let raw = self
            .backend
            .read_all(&names::sidecar(id))
            .await
            .map_err(|e| (None, format!("sidecar unreadable: {e}")))?;
        let sc = Sidecar::decode(&raw).map_err(|e| (None, format!("sidecar: {e}")))?;
        let v = Some(sc.version);
        if sc.chunk != id {
            return Err((v, format!("sidecar names {} instead", sc.chunk)));
        }
        // Longer data is an append that did not commit (the sidecar is the commit point of a
        // record append, see `append.rs`): its bytes past the sidecar's length are never served
        // and the next append overwrites them.
        if data_len < sc.length {
            let why = format!("data is {data_len} bytes, sidecar says {}", sc.length);
            return Err((v, why));
        }
        let from = match self.config.verify_at_open {
            VerifyAtOpen::Full => 0,
            VerifyAtOpen::Tail => {
                let bs = u64::from(sc.block_size);
                sc.length.saturating_sub(1) / bs * bs
            }
        };
        self.verify_file(&names::data(id), &sc, from)
            .await
            .map_err(|why| (v, why))?;
        Ok(sc)
    }

    /// Verifies blocks of a data file from `from` (block-aligned) to the end.
    async fn verify_file(&self, name: &str, sc: &Sidecar, from: u64) -> Result<(), String> {
        let mut at = from;
        while at < sc.length {
            let len = VERIFY_WINDOW_BYTES.min(sc.length - at);
            let bytes = self
                .backend
                .map(name, at, len)
                .await
                .map_err(|e| format!("data unreadable: {e}"))?;
            if let Err(block) = sc.verify_blocks(at, &bytes) {
                crate::metrics::checksum_failure(self.backend.kind());
                return Err(format!("checksum mismatch in block {block} at open"));
            }
            at += len;
        }
        Ok(())
    }

    /// Finishes or undoes a seal that a crash cut short (see `Store::commit_seal`). Returns
    /// whether `<id>.chunk.new` became `<id>.chunk`.
    async fn roll_forward(&self, id: ChunkId, new_len: u64, has_sidecar: bool) -> Result<bool> {
        let new = names::data_new(id);
        let committed = has_sidecar
            && match self.backend.read_all(&names::sidecar(id)).await {
                Ok(raw) => match Sidecar::decode(&raw) {
                    Ok(sc) => {
                        sc.chunk == id
                            && sc.length == new_len
                            && self.verify_file(&new, &sc, 0).await.is_ok()
                    }
                    Err(_) => false,
                },
                Err(_) => false,
            };
        let res = if committed {
            self.backend.rename(&new, &names::data(id)).await
        } else {
            self.backend.remove(&new).await
        };
        res.map_err(|e| ChunkError::io("recover", new.clone(), e))?;
        if committed {
            tracing::info!(chunk = %id, "rolled an interrupted seal forward");
        }
        Ok(committed)
    }
}
