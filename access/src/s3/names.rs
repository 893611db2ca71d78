//! Pure rules of the S3 mapping: buckets are top-level directories, object keys are paths below
//! them, and what S3 calls an ETag comes from the file's content digest.
//!
//! Invariants: a key maps to a path only if every `/`-separated part is a valid file name (not
//! empty, not `.` or `..`, no NUL, at most 255 bytes): S3 allows keys no file system can hold
//! (`a//b`, `../x`), and those are refused as `InvalidArgument`, never normalised into another
//! key. Names beginning with `.` are not buckets (the gateway keeps its own state under
//! `/.shale`).
/// The longest file name in a path (as POSIX `NAME_MAX`).
const NAME_MAX: usize = 255;

/// Where the gateway keeps access keys (one file per key, readable by superusers only).
pub const KEYS_DIR: &str = "/.shale/s3/keys";
/// Where multipart uploads are staged (world-writable with the sticky bit, like `/tmp`).
pub const UPLOADS_DIR: &str = "/.shale/s3/uploads";
/// The ETag of an empty object (the MD5 of nothing, as S3 gives it).
pub const EMPTY_ETAG: &str = "d41d8cd98f00b204e9800998ecf8427e";
/// Parts of a multipart upload, but the last, must be at least this long (as in S3).
pub const MIN_PART: u64 = 5 << 20;

/// Whether `name` is a bucket name this gateway serves (S3's rules: 3 to 63 of `a-z0-9.-`,
/// starting and ending with a letter or digit).
pub fn is_bucket(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
}

/// The directory of bucket `bucket`.
pub fn bucket_path(bucket: &str) -> String {
    format!("/{bucket}")
}

/// The path of `key` in `bucket`, or why a key cannot be a path. A key ending in `/` is a
/// directory (`dir` true).
pub fn object_path(bucket: &str, key: &str) -> Result<(String, bool), String> {
    let (body, dir) = match key.strip_suffix('/') {
        Some(b) => (b, true),
        None => (key, false),
    };
    if body.is_empty() {
        return Err("an empty key".into());
    }
    for part in body.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(format!(
                "key {key:?}: empty, `.` or `..` parts cannot be stored"
            ));
        }
        if part.len() > NAME_MAX || part.contains('\0') {
            return Err(format!("key {key:?}: a part is too long or holds NUL"));
        }
    }
    Ok((format!("/{bucket}/{body}"), dir))
}

/// The parent directories of `key`'s path below the bucket, shallowest first.
pub fn parents(bucket: &str, key: &str) -> Vec<String> {
    let body = key.trim_end_matches('/');
    let parts: Vec<&str> = body.split('/').collect();
    (1..parts.len())
        .map(|n| format!("/{bucket}/{}", parts[..n].join("/")))
        .collect()
}

/// The ETag of a file with content digest `root` (BLAKE3, 32 bytes; empty if the writer left
/// none) and `length`: hex of the digest's first 16 bytes, like an MD5 in shape.
pub fn etag(root: &[u8], length: u64, inode: u64, mtime_ms: u64) -> String {
    if length == 0 {
        return EMPTY_ETAG.to_string();
    }
    if root.len() >= 16 {
        return hex(&root[..16]);
    }
    // No digest recorded: a tag that still changes whenever the file does.
    format!("{inode:016x}{:08x}{:08x}", length as u32, mtime_ms as u32)
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether `id` has the shape of an upload id this gateway makes (32 lowercase hex digits).
pub fn is_upload_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// The staging directory of upload `id`.
pub fn upload_dir(id: &str) -> String {
    format!("{UPLOADS_DIR}/{id}")
}

/// The staged file of part `n` of upload `id`.
pub fn part_path(id: &str, n: i32) -> String {
    format!("{UPLOADS_DIR}/{id}/part-{n:05}")
}

/// Whether an access key id has the shape this gateway makes (16 to 32 of `A-Z0-9`).
pub fn is_access_key(k: &str) -> bool {
    (16..=32).contains(&k.len())
        && k.bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// `n` random bytes from the kernel.
pub fn random(n: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b)
}

/// A new access key id and secret: `SHL` + 17 of `A-Z2-7`, and 40 of base64url.
pub fn new_key_pair() -> std::io::Result<(String, String)> {
    const B32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let r = random(17 + 40)?;
    let id: String = std::iter::once("SHL".to_string())
        .chain(
            r[..17]
                .iter()
                .map(|b| (B32[(*b % 32) as usize] as char).to_string()),
        )
        .collect();
    let secret: String = r[17..]
        .iter()
        .map(|b| B64[(*b % 64) as usize] as char)
        .collect();
    Ok((id, secret))
}

/// The text of a key file: `USER SECRET\n`.
pub fn key_file(user: &str, secret: &str) -> String {
    format!("{user} {secret}\n")
}

/// (user, secret) from a key file's text.
pub fn parse_key_file(text: &str) -> Option<(String, String)> {
    let mut f = text.split_whitespace();
    let (user, secret) = (f.next()?, f.next()?);
    f.next()
        .is_none()
        .then(|| (user.to_string(), secret.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3() {
        for ok in ["abc", "my-bucket.1", "a1b"] {
            assert!(is_bucket(ok), "{ok}");
        }
        for bad in [
            "ab",
            ".shale",
            "Abc",
            "a_b",
            "-ab",
            "ab-",
            "a..b",
            &"a".repeat(64),
        ] {
            assert!(!is_bucket(bad), "{bad}");
        }
    }

    #[test]
    fn keys_become_paths_or_are_refused() {
        assert_eq!(object_path("b", "k").unwrap(), ("/b/k".into(), false));
        assert_eq!(
            object_path("b", "a/b/c.txt").unwrap(),
            ("/b/a/b/c.txt".into(), false)
        );
        assert_eq!(object_path("b", "dir/").unwrap(), ("/b/dir".into(), true));
        for bad in ["", "/", "a//b", "../x", "a/./b", "/abs"] {
            assert!(object_path("b", bad).is_err(), "{bad:?}");
        }
        assert!(object_path("b", &"x".repeat(256)).is_err());
        assert_eq!(parents("b", "x/y/z"), vec!["/b/x", "/b/x/y"]);
        assert!(parents("b", "z").is_empty());
    }

    #[test]
    fn etags_and_ids() {
        assert_eq!(etag(&[], 0, 1, 2), EMPTY_ETAG);
        assert_eq!(etag(&[0xab; 32], 5, 1, 2), "ab".repeat(16));
        assert_ne!(etag(&[], 5, 1, 2), etag(&[], 6, 1, 2));
        let (k, s) = new_key_pair().unwrap();
        assert!(is_access_key(&k), "{k}");
        assert_eq!(s.len(), 40);
        assert_eq!(
            parse_key_file(&key_file("alice", &s)),
            Some(("alice".into(), s))
        );
        assert_eq!(parse_key_file("alice"), None);
        assert!(is_upload_id(&hex(&random(16).unwrap())));
        assert!(!is_upload_id("../../etc"));
        assert_eq!(
            part_path(&"a".repeat(32), 7),
            format!("{UPLOADS_DIR}/{}/part-00007", "a".repeat(32))
        );
    }
}
