//! End-to-end digests (issue: security, item 7), computed in one place so that writers,
//! masters and readers agree: a chunk's digest is BLAKE3 of its bytes; a file's root is BLAKE3
//! over a domain tag and its chunk digests in order.

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
}
