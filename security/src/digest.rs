//! End-to-end digests (issue: security, item 7), computed in one place so that writers,
//! masters and readers agree: a chunk's digest is BLAKE3 of its bytes; a file's root is BLAKE3
//! over a domain tag and its chunk digests in order.
//!
//! Part of a chunk is checked through BLAKE3's own tree: a chunk longer than [`BLOCK_BYTES`]
//! is a tree whose subtrees are its aligned 64 KiB blocks, so the chaining values of the
//! blocks ([`block_cvs`], 32 bytes each, anyone can compute them from the bytes) merge into
//! the chunk's digest ([`root_of_cvs`]). A reader gets the chaining values from any replica,
//! checks that they merge into the digest the masters hold, then checks each block it reads
//! against its chaining value ([`block_cv`]) — so no server has to be trusted for a partial
//! read either, and a read costs at most one block more on each side.

/// A chunk's or a file's digest.
pub type Digest = [u8; 32];

/// BLAKE3 fed in pieces (a chunk arrives as frames).
#[derive(Default)]
pub struct ChunkHasher(blake3::Hasher);

impl ChunkHasher {
    /// Adds the next bytes of the chunk.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The chunk's digest.
    pub fn finish(&self) -> Digest {
        *self.0.finalize().as_bytes()
    }
}

/// The digest of a chunk given as frames.
pub fn chunk_digest<B: AsRef<[u8]>>(frames: &[B]) -> Digest {
    let mut h = ChunkHasher::default();
    for f in frames {
        h.update(f.as_ref());
    }
    h.finish()
}

/// The root of a file over its chunk digests, in order.
pub fn file_root<'a>(digests: impl IntoIterator<Item = &'a [u8]>) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(b"shale file root v1\0");
    for d in digests {
        h.update(d);
    }
    *h.finalize().as_bytes()
}

/// The blocks part of a chunk is checked in.
pub const BLOCK_BYTES: u64 = 64 << 10;

/// A block's chaining value (an interior node of the chunk's BLAKE3 tree).
pub type Cv = [u8; 32];

/// Blocks in a chunk of `len` bytes.
pub fn blocks(len: u64) -> u64 {
    len.div_ceil(BLOCK_BYTES).max(1)
}

/// The chaining value of block `index` of a chunk longer than [`BLOCK_BYTES`] (its bytes:
/// `BLOCK_BYTES` long, or shorter for the last block).
pub fn block_cv(block: &[u8], index: u64) -> Cv {
    use blake3::hazmat::HasherExt;
    let mut h = blake3::Hasher::new();
    h.set_input_offset(index * BLOCK_BYTES);
    h.update(block);
    h.finalize_non_root()
}

/// The chaining values of every block of `chunk` (which must be longer than [`BLOCK_BYTES`];
/// a chunk of one block is checked whole).
pub fn block_cvs(chunk: &[u8]) -> Vec<Cv> {
    chunk
        .chunks(BLOCK_BYTES as usize)
        .enumerate()
        .map(|(i, b)| block_cv(b, i as u64))
        .collect()
}

/// Merges the chaining values of blocks `[lo, hi)` (bytes `[lo·B, end)`), as BLAKE3 splits a
/// tree: the left subtree holds the largest power of two of 1 KiB chunks below the whole.
/// Recursion depth ≤ log₂(blocks) (14 for a 1 GiB chunk).
fn merge(cvs: &[Cv], lo: usize, hi: usize, end: u64, root: bool) -> Result<Cv, String> {
    use blake3::hazmat::{left_subtree_len, merge_subtrees_non_root, merge_subtrees_root, Mode};
    if hi - lo == 1 {
        return if root {
            Err("a one-block chunk has no tree to merge".into())
        } else {
            Ok(cvs[lo])
        };
    }
    let start = lo as u64 * BLOCK_BYTES;
    let left = left_subtree_len(end - start);
    let mid = lo + (left / BLOCK_BYTES) as usize;
    if !left.is_multiple_of(BLOCK_BYTES) || mid <= lo || mid >= hi {
        return Err("block boundaries do not follow the tree".into());
    }
    let l = merge(cvs, lo, mid, start + left, false)?;
    let r = merge(cvs, mid, hi, end, false)?;
    Ok(if root {
        *merge_subtrees_root(&l, &r, Mode::Hash).as_bytes()
    } else {
        merge_subtrees_non_root(&l, &r, Mode::Hash)
    })
}

/// The digest of a chunk of `len` bytes (> [`BLOCK_BYTES`]) whose blocks have `cvs`, or why
/// `cvs` cannot be its chaining values.
pub fn root_of_cvs(cvs: &[Cv], len: u64) -> Result<Digest, String> {
    if len <= BLOCK_BYTES {
        return Err(format!("a chunk of {len} bytes is checked whole"));
    }
    if cvs.len() as u64 != blocks(len) {
        return Err(format!(
            "{} chaining values for {} blocks",
            cvs.len(),
            blocks(len)
        ));
    }
    merge(cvs, 0, cvs.len(), len, true)
}

/// Chaining values from their wire form (32 bytes each).
pub fn cvs_from_bytes(b: &[u8]) -> Result<Vec<Cv>, String> {
    if !b.len().is_multiple_of(32) {
        return Err(format!("{} bytes are not whole chaining values", b.len()));
    }
    Ok(b.chunks(32)
        .map(|c| {
            let mut x = [0u8; 32];
            x.copy_from_slice(c);
            x
        })
        .collect())
}

/// Lowercase hex, as digests are shown.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_hash_like_the_whole() {
        let whole: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let frames: Vec<&[u8]> = whole.chunks(4096).collect();
        assert_eq!(chunk_digest(&frames), chunk_digest(&[&whole[..]]));
        let d = chunk_digest(&[&whole[..]]);
        assert_ne!(file_root([&d[..]]), file_root([&d[..], &d[..]]));
        assert_eq!(hex(&[0, 0xab]), "00ab");
    }

    #[test]
    fn block_chaining_values_merge_into_the_chunk_digest() {
        let b = BLOCK_BYTES as usize;
        // Lengths around every shape of tree: one block and a byte, powers of two, odd counts.
        for len in [
            b + 1,
            2 * b,
            2 * b + 7,
            3 * b,
            5 * b - 1,
            8 * b,
            13 * b + 100,
            64 * b,
        ] {
            let data: Vec<u8> = (0..len as u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect();
            let cvs = block_cvs(&data);
            let want = *blake3::hash(&data).as_bytes();
            assert_eq!(root_of_cvs(&cvs, len as u64), Ok(want), "len {len}");
            // One changed block changes its chaining value, and a forged value the root.
            let mut bad = data.clone();
            bad[len - 1] ^= 1;
            let last = cvs.len() - 1;
            assert_ne!(block_cv(&bad[last * b..], last as u64), cvs[last]);
            let mut forged = cvs.clone();
            forged[0][0] ^= 1;
            assert_ne!(root_of_cvs(&forged, len as u64), Ok(want));
            // The wrong number of values, or a length they do not fit, is refused.
            assert!(root_of_cvs(&cvs[1..], len as u64).is_err());
            assert!(root_of_cvs(&cvs, len as u64 + BLOCK_BYTES).is_err());
            let wire: Vec<u8> = cvs.iter().flatten().copied().collect();
            assert_eq!(cvs_from_bytes(&wire), Ok(cvs));
        }
        assert!(root_of_cvs(&[[0; 32]], BLOCK_BYTES).is_err());
        assert!(cvs_from_bytes(&[0; 33]).is_err());
    }
}
