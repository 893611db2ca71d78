//! Remote paths on the command line: joining, last components, trailing slashes, and glob
//! expansion (`/logs/*.gz`, `/data/2026-*/part-?`) done by the CLI against the namespace.
//!
//! Expansion is iterative, one path component at a time, and bounded: at most
//! [`MATCHES_MAX`] paths at any step, so a pattern over a huge tree fails clearly instead of
//! exhausting memory.
use shale_client::{Client, ClientError};

/// The most paths a pattern may expand to (at any step).
pub const MATCHES_MAX: usize = 100_000;

/// `dir/name` (no double slash at the root).
pub fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The last component of a remote or local path (`""` for the root).
pub fn base(path: &str) -> &str {
    path.trim_end_matches('/').rsplit('/').next().unwrap_or("")
}

/// A destination as given: the path without trailing slashes (`/` stays `/`), and whether it
/// had one (then it must be an existing directory).
pub fn dest(path: &str) -> (&str, bool) {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return (if path.is_empty() { path } else { "/" }, false);
    }
    (trimmed, trimmed.len() != path.len())
}

/// Whether a path component holds glob characters.
pub fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The paths `pattern` names: itself when it has no glob characters, else every existing path
/// it matches, in name order. A pattern matching nothing is an error (as in `hdfs dfs`).
pub async fn expand(c: &Client, pattern: &str) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    if !is_glob(pattern) {
        return Ok(vec![pattern.to_string()]);
    }
    if !pattern.starts_with('/') {
        return Err(format!("{pattern}: remote paths are absolute (start with /)").into());
    }
    let mut frontier = vec!["/".to_string()];
    for comp in pattern.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        if !is_glob(comp) {
            next = frontier.iter().map(|d| join(d, comp)).collect();
        } else {
            let pat = glob::Pattern::new(comp).map_err(|e| format!("{pattern}: {e}"))?;
            let opts = glob::MatchOptions {
                require_literal_leading_dot: true,
                ..Default::default()
            };
            for dir in &frontier {
                let entries = match c.list(dir).await {
                    Ok(e) => e,
                    // A non-directory or a vanished path along the way matches nothing.
                    Err(ClientError::NotFound(_)) | Err(ClientError::FailedPrecondition(_)) => {
                        continue
                    }
                    Err(e) => return Err(e.into()),
                };
                for e in entries {
                    if pat.matches_with(&e.name, opts) {
                        next.push(join(dir, &e.name));
                    }
                }
                if next.len() > MATCHES_MAX {
                    return Err(format!(
                        "{pattern}: matches more than {MATCHES_MAX} paths; narrow it"
                    )
                    .into());
                }
            }
        }
        frontier = next;
        if frontier.is_empty() {
            break;
        }
    }
    if frontier.is_empty() {
        return Err(format!("{pattern}: no match").into());
    }
    Ok(frontier)
}

/// Every path the arguments name, globs expanded, in order.
pub async fn expand_all(
    c: &Client,
    patterns: &[String],
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    for p in patterns {
        out.extend(expand(c, p).await?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_and_bases() {
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/d", "a"), "/d/a");
        assert_eq!(join("/d/", "a"), "/d/a");
        assert_eq!(base("/d/a"), "a");
        assert_eq!(base("/d/a/"), "a");
        assert_eq!(base("a"), "a");
        assert_eq!(base("/"), "");
        assert_eq!(dest("/d/"), ("/d", true));
        assert_eq!(dest("/d"), ("/d", false));
        assert_eq!(dest("/"), ("/", false));
        assert!(is_glob("*.gz") && is_glob("a?") && is_glob("[ab]") && !is_glob("plain"));
    }
}
