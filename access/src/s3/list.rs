//! ListObjectsV2 over a directory tree, in S3's order (keys sorted as bytes), in pages.
//!
//! Invariants: with delimiter `/` one directory is listed (its files are objects, its
//! subdirectories common prefixes); without a delimiter the tree under the prefix is walked
//! depth first with an explicit stack (no recursion) holding files and directories in the
//! order of their keys (a directory's key is its name plus `/`), so objects come out in
//! ascending key order and the walk stops as soon as the page is full. Subtrees wholly before
//! the continuation point or outside the prefix are never listed, and at most [`MAX_DIRS`]
//! directories are listed per page: one request costs a bounded number of cluster calls.
use shale_client::{ClientError, FileStat};
use std::future::Future;

/// The most directories one page may list.
pub const MAX_DIRS: usize = 10_000;

/// One page of a listing.
#[derive(Debug, Default)]
pub struct Page {
    /// (key, stat) of each object, ascending.
    pub objects: Vec<(String, FileStat)>,
    /// Common prefixes (with delimiter `/`), ascending.
    pub prefixes: Vec<String>,
    /// More keys follow; continue after `last`.
    pub truncated: bool,
    pub last: Option<String>,
}

enum Item {
    Object(String, FileStat),
    Dir(String),
}

/// Lists bucket directory `root` (e.g. `/photos`): keys starting with `prefix`, after `after`,
/// at most `max` of them (objects and common prefixes together). `list(path)` lists one
/// directory (an error NotFound counts as empty).
pub async fn list<F, Fut>(
    root: &str,
    prefix: &str,
    delimited: bool,
    after: &str,
    max: usize,
    mut list: F,
) -> Result<Page, ClientError>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<Vec<FileStat>, ClientError>>,
{
    let mut page = Page::default();
    let mut taken = 0usize;
    let mut dirs = 0usize;
    // The deepest directory every wanted key lies in.
    let base = prefix.rfind('/').map_or("", |i| &prefix[..=i]);
    let mut stack = vec![Item::Dir(base.to_string())];
    let mut first = true;
    while let Some(item) = stack.pop() {
        let dir = match item {
            Item::Object(key, st) => {
                if taken == max {
                    page.truncated = true;
                    break;
                }
                taken += 1;
                page.last = Some(key.clone());
                page.objects.push((key, st));
                continue;
            }
            Item::Dir(d) if delimited && !first => {
                if taken == max {
                    page.truncated = true;
                    break;
                }
                taken += 1;
                page.last = Some(d.clone());
                page.prefixes.push(d);
                continue;
            }
            Item::Dir(d) => d,
        };
        first = false;
        dirs += 1;
        if dirs > MAX_DIRS {
            return Err(ClientError::ResourceExhausted(format!(
                "listing visits more than {MAX_DIRS} directories in one page: use a longer \
                 prefix or a delimiter"
            )));
        }
        let path = format!("{root}/{}", dir.trim_end_matches('/'));
        let entries = match list(path.trim_end_matches('/').to_string()).await {
            Ok(e) => e,
            Err(ClientError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut children: Vec<Item> = Vec::with_capacity(entries.len());
        for st in entries {
            if st.is_dir {
                let key = format!("{dir}{}/", st.name);
                let wanted = if delimited {
                    key.starts_with(prefix) && key.as_str() > after
                } else {
                    // Some key below may match the prefix and come after `after`.
                    (key.starts_with(prefix) || prefix.starts_with(key.as_str()))
                        && (after < key.as_str() || after.starts_with(key.as_str()))
                };
                if wanted {
                    children.push(Item::Dir(key));
                }
            } else {
                let key = format!("{dir}{}", st.name);
                if key.starts_with(prefix) && key.as_str() > after {
                    children.push(Item::Object(key, st));
                }
            }
        }
        let key = |i: &Item| match i {
            Item::Object(k, _) | Item::Dir(k) => k.clone(),
        };
        children.sort_by_key(key);
        stack.extend(children.into_iter().rev());
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A tree from file paths (relative to the bucket).
    fn tree(files: &[&str]) -> BTreeMap<String, Vec<FileStat>> {
        let mut t: BTreeMap<String, Vec<FileStat>> = BTreeMap::new();
        for f in files {
            let parts: Vec<&str> = f.split('/').collect();
            for i in 0..parts.len() {
                let dir = format!("/b/{}", parts[..i].join("/"));
                let dir = dir.trim_end_matches('/').to_string();
                let st = FileStat {
                    name: parts[i].into(),
                    is_dir: i + 1 < parts.len(),
                    ..Default::default()
                };
                let e = t.entry(dir).or_default();
                if !e.iter().any(|x| x.name == st.name) {
                    e.push(st);
                }
            }
        }
        t
    }

    fn run(
        t: &BTreeMap<String, Vec<FileStat>>,
        prefix: &str,
        delim: bool,
        after: &str,
        max: usize,
    ) -> Page {
        let f = |p: String| {
            let r = t
                .get(&p)
                .cloned()
                .ok_or_else(|| ClientError::NotFound(p.clone()));
            async move { r }
        };
        futures_executor(list("/b", prefix, delim, after, max, f))
    }

    fn futures_executor<T>(f: impl Future<Output = Result<T, ClientError>>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
            .unwrap()
    }

    // `a-x` sorts before the directory `a/` and `a0` after it: files and directories interleave.
    const FILES: &[&str] = &["a0", "a-x", "a/b", "a/c/d", "a/c/e", "b/f", "c"];

    #[test]
    fn a_walk_yields_every_key_in_order_in_pages() {
        let t = tree(FILES);
        let all = run(&t, "", false, "", 100);
        let keys: Vec<&str> = all.objects.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a-x", "a/b", "a/c/d", "a/c/e", "a0", "b/f", "c"]);
        assert!(!all.truncated);
        // Pages of 2, continued after the last key, give the same keys.
        let (mut got, mut after) = (Vec::new(), String::new());
        loop {
            let p = run(&t, "", false, &after, 2);
            got.extend(p.objects.iter().map(|(k, _)| k.clone()));
            if !p.truncated {
                break;
            }
            after = p.last.unwrap();
        }
        assert_eq!(got, keys);
        let p = run(&t, "a/c", false, "", 10);
        let keys: Vec<&str> = p.objects.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a/c/d", "a/c/e"]);
    }

    #[test]
    fn a_delimiter_gives_one_level_with_common_prefixes() {
        let t = tree(FILES);
        let p = run(&t, "", true, "", 100);
        let keys: Vec<&str> = p.objects.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a-x", "a0", "c"]);
        assert_eq!(p.prefixes, ["a/", "b/"]);
        let p = run(&t, "a/", true, "", 100);
        assert_eq!(p.prefixes, ["a/c/"]);
        assert_eq!(p.objects.len(), 1);
        let p = run(&t, "", true, "", 2);
        assert!(p.truncated);
        assert_eq!(p.last.as_deref(), Some("a/"));
        let p = run(&t, "", true, "a/", 10);
        assert_eq!(p.prefixes, ["b/"]);
        let keys: Vec<&str> = p.objects.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a0", "c"]);
        let p = run(&t, "zzz", true, "", 10);
        assert!(p.objects.is_empty() && p.prefixes.is_empty());
    }
}
