//! Namespace paths: validation and splitting. Pure.
//!
//! A valid path is absolute (`/` alone is the root), has no empty, `.` or `..` components, no
//! NUL bytes, components of at most [`NAME_MAX_BYTES`] and at most [`PATH_MAX_BYTES`] in all.
use crate::error::MetaError;

pub const NAME_MAX_BYTES: usize = 255;
pub const PATH_MAX_BYTES: usize = 4096;

/// The components of a valid path (empty for the root).
pub fn components(path: &str) -> Result<Vec<&str>, MetaError> {
    let bad = |why: &str| MetaError::InvalidPath {
        path: path.chars().take(200).collect(),
        why: why.to_string(),
    };
    if path.len() > PATH_MAX_BYTES {
        return Err(bad("longer than 4096 bytes"));
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(bad("not absolute (must start with /)"));
    };
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for c in rest.split('/') {
        match c {
            "" => return Err(bad("empty component (// or trailing /)")),
            "." | ".." => return Err(bad("`.` and `..` are not allowed")),
            _ if c.len() > NAME_MAX_BYTES => return Err(bad("a component is over 255 bytes")),
            _ if c.contains('\0') => return Err(bad("NUL byte")),
            _ => out.push(c),
        }
    }
    Ok(out)
}

/// Splits a valid non-root path into (parent components, last name).
pub fn split(path: &str) -> Result<(Vec<&str>, &str), MetaError> {
    let mut c = components(path)?;
    match c.pop() {
        Some(name) => Ok((c, name)),
        None => Err(MetaError::InvalidPath {
            path: path.to_string(),
            why: "the root has no parent".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid_paths() {
        assert_eq!(components("/").expect("root"), Vec::<&str>::new());
        assert_eq!(components("/a/b").expect("ok"), vec!["a", "b"]);
        for bad in ["", "a/b", "/a//b", "/a/", "/a/./b", "/a/../b", "/a\0"] {
            let e = components(bad).expect_err(bad);
            assert!(e.to_string().contains("invalid path"), "{e}");
        }
        let long = format!("/{}", "x".repeat(256));
        assert!(components(&long).is_err());
        let very_long = "/abc".repeat(1100);
        assert!(components(&very_long).is_err());
        assert_eq!(split("/a/b").expect("split"), (vec!["a"], "b"));
        assert!(split("/").is_err());
    }
}
