//! File names of the on-disk layout. One flat directory per store:
//!
//! * `<id>.chunk`: sealed chunk data (`<id>` = 16 lowercase hex digits);
//! * `<id>.crc`: its sidecar ([`crate::format`]);
//! * `<id>.chunk.tmp`, `<id>.crc.tmp`: a chunk being written or sealed; never served, removed at
//!   open;
//! * `<id>.chunk.new`: synced data of a chunk being sealed, waiting for its sidecar to be
//!   committed; at open it is rolled forward if it fully matches the sidecar, else removed;
//! * `quarantine/<id>.<what>.<n>`: replicas that failed verification, kept for inspection.
use shale_proto::ChunkId;

pub const DATA_EXT: &str = ".chunk";
pub const SIDECAR_EXT: &str = ".crc";
pub const TMP_EXT: &str = ".tmp";
pub const NEW_EXT: &str = ".new";

pub fn data(id: ChunkId) -> String {
    format!("{}{DATA_EXT}", id.file_stem())
}
pub fn data_new(id: ChunkId) -> String {
    format!("{}{DATA_EXT}{NEW_EXT}", id.file_stem())
}
pub fn sidecar(id: ChunkId) -> String {
    format!("{}{SIDECAR_EXT}", id.file_stem())
}
pub fn data_tmp(id: ChunkId) -> String {
    format!("{}{DATA_EXT}{TMP_EXT}", id.file_stem())
}
pub fn sidecar_tmp(id: ChunkId) -> String {
    format!("{}{SIDECAR_EXT}{TMP_EXT}", id.file_stem())
}
pub fn quarantined(name: &str, n: u64) -> String {
    format!("quarantine/{name}.{n}")
}

/// What a file in the store directory is.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    Data(ChunkId),
    DataNew(ChunkId),
    Sidecar(ChunkId),
    Temp,
    Unknown,
}

pub fn classify(name: &str) -> Kind {
    if name.ends_with(TMP_EXT) {
        return Kind::Temp;
    }
    if let Some(stem) = name
        .strip_suffix(NEW_EXT)
        .and_then(|n| n.strip_suffix(DATA_EXT))
    {
        return ChunkId::from_file_stem(stem).map_or(Kind::Unknown, Kind::DataNew);
    }
    if let Some(stem) = name.strip_suffix(DATA_EXT) {
        return ChunkId::from_file_stem(stem).map_or(Kind::Unknown, Kind::Data);
    }
    if let Some(stem) = name.strip_suffix(SIDECAR_EXT) {
        return ChunkId::from_file_stem(stem).map_or(Kind::Unknown, Kind::Sidecar);
    }
    Kind::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_classify_back() {
        let id = ChunkId(0x1f);
        assert_eq!(classify(&data(id)), Kind::Data(id));
        assert_eq!(classify(&sidecar(id)), Kind::Sidecar(id));
        assert_eq!(classify(&data_new(id)), Kind::DataNew(id));
        assert_eq!(classify(&data_tmp(id)), Kind::Temp);
        assert_eq!(classify(&sidecar_tmp(id)), Kind::Temp);
        assert_eq!(classify("notes.txt"), Kind::Unknown);
        assert_eq!(classify("xyz.chunk"), Kind::Unknown);
    }
}
