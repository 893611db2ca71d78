//! Looking at the namespace: `ls`, `stat`, `du`, `count`, `df`, `test`. Every listing can be
//! printed as JSON (`--json`: one JSON value on one line); sizes are exact bytes unless `-h`;
//! times are UTC; names are escaped for terminals (JSON carries them as they are). Tree walks
//! are iterative.
use super::output::{self, escape_name, iso8601, say, short_time};
use super::paths;
use serde_json::{json, Value};
use shale_client::{Client, ClientError, FileStat};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// A file's or directory's attributes as JSON.
pub fn stat_json(path: &str, s: &FileStat) -> Value {
    let mut v = json!({
        "path": path,
        "name": s.name,
        "type": if s.is_dir { "directory" } else { "file" },
        "inode": s.inode,
        "modified": iso8601(s.mtime_ms),
        "modified_ms": s.mtime_ms,
        "owner": s.owner,
        "group": s.group,
        "mode": format!("{:04o}", s.mode),
        "permissions": permissions(s),
    });
    if s.is_dir {
        v["entries"] = json!(s.entries);
        // The replication new files below get (0: inherited from above).
        v["replication"] = json!(s.replication);
    } else {
        v["length"] = json!(s.length);
        v["replication"] = json!(s.replication);
        v["chunk_size"] = json!(s.chunk_size);
        v["chunks"] = json!(s.chunks);
        v["root"] = json!(shale_security::digest::hex(&s.root));
    }
    v
}

/// `drwxr-xr-x`-style permissions.
fn permissions(s: &FileStat) -> String {
    shale_meta::sm::perms::mode_string(s.is_dir, s.mode as u16)
}

/// One `ls` line.
fn line(name: &str, s: &FileStat, long: bool, human: bool) -> String {
    let name = if s.is_dir {
        format!("{}/", escape_name(name))
    } else {
        escape_name(name)
    };
    if !long {
        return name;
    }
    let when = short_time(s.mtime_ms);
    let (owner, group) = (escape_name(&s.owner), escape_name(&s.group));
    let perms = permissions(s);
    if s.is_dir {
        format!(
            "{perms} {:>3} {owner:<8} {group:<8} {:>12} {when} {name}",
            "-", "-"
        )
    } else {
        format!(
            "{perms} {:>3} {owner:<8} {group:<8} {:>12} {when} {name}",
            s.replication,
            output::size(s.length, human)
        )
    }
}

/// Options of `ls`.
pub struct LsOpts {
    pub long: bool,
    pub human: bool,
    pub dirs_themselves: bool,
    pub json: bool,
}

pub async fn ls(c: &Client, patterns: &[String], o: &LsOpts) -> Res {
    let targets = paths::expand_all(c, patterns).await?;
    let mut all = Vec::new();
    let several = targets.len() > 1;
    for (i, t) in targets.iter().enumerate() {
        let st = c.stat(t).await.map_err(|e| format!("{t}: {e}"))?;
        if !st.is_dir || o.dirs_themselves {
            if o.json {
                all.push(stat_json(t, &st));
            } else {
                say!("{}", line(t, &st, o.long, o.human));
            }
            continue;
        }
        if several && !o.json {
            if i > 0 {
                say!("");
            }
            say!("{}:", escape_name(t));
        }
        for e in c.list(t).await? {
            if o.json {
                all.push(stat_json(&paths::join(t, &e.name), &e));
            } else {
                say!("{}", line(&e.name, &e, o.long, o.human));
            }
        }
    }
    if o.json {
        output::json(&Value::Array(all));
    }
    Ok(())
}

pub async fn stat(c: &Client, patterns: &[String], as_json: bool) -> Res {
    for path in paths::expand_all(c, patterns).await? {
        let s = c.stat(&path).await.map_err(|e| format!("{path}: {e}"))?;
        if as_json {
            output::json(&stat_json(&path, &s));
            continue;
        }
        say!("path:        {}", escape_name(&path));
        say!("inode:       {}", s.inode);
        if s.is_dir {
            say!("type:        directory ({} entries)", s.entries);
            if s.replication == 0 {
                say!("replication: new files inherit it from above");
            } else {
                say!("replication: {} for new files below", s.replication);
            }
        } else {
            say!("type:        file");
            say!(
                "length:      {} bytes ({})",
                s.length,
                crate::human::size(s.length)
            );
            say!("replication: {}", s.replication);
            say!(
                "chunk size:  {} bytes ({})",
                s.chunk_size,
                crate::human::size(s.chunk_size)
            );
            say!("chunks:      {}", s.chunks);
            if s.root.is_empty() {
                say!("root:        (none: written without end-to-end digests)");
            } else {
                say!(
                    "root:        blake3:{}",
                    shale_security::digest::hex(&s.root)
                );
            }
        }
        say!(
            "access:      {:04o} ({}) owner {} group {}",
            s.mode,
            permissions(&s),
            escape_name(&s.owner),
            escape_name(&s.group)
        );
        say!("modified:    {}", iso8601(s.mtime_ms));
    }
    Ok(())
}

/// `shale verify PATH...`: every replica of every chunk read and checked against the writer's
/// digests; whether all matched.
pub async fn verify(
    c: &Client,
    patterns: &[String],
    as_json: bool,
) -> Result<bool, Box<dyn std::error::Error>> {
    let mut all_ok = true;
    for path in paths::expand_all(c, patterns).await? {
        let v = c.verify(&path).await.map_err(|e| format!("{path}: {e}"))?;
        all_ok &= v.is_ok();
        if as_json {
            output::json(&json!({
                "path": path,
                "ok": v.is_ok(),
                "root": v.root,
                "unchecked_chunks": v.unchecked_chunks,
                "replicas": v.replicas.iter().map(|r| json!({
                    "chunk": r.index,
                    "node": r.node_id,
                    "address": r.address,
                    "ok": r.problem.is_none(),
                    "problem": r.problem,
                })).collect::<Vec<_>>(),
            }));
            continue;
        }
        let bad: Vec<_> = v.replicas.iter().filter(|r| r.problem.is_some()).collect();
        for r in &bad {
            say!(
                "{}: chunk {} on chunkserver {} ({}): {}",
                escape_name(&path),
                r.index,
                r.node_id,
                r.address,
                r.problem.as_deref().unwrap_or("")
            );
        }
        if !v.unchecked_chunks.is_empty() {
            say!(
                "{}: chunks {:?} have no digest (written without one): not checkable",
                escape_name(&path),
                v.unchecked_chunks
            );
        }
        if v.is_ok() {
            say!(
                "{}: ok, {} replicas match root blake3:{}",
                escape_name(&path),
                v.replicas.len(),
                v.root
            );
        }
    }
    Ok(all_ok)
}

/// Totals of a tree.
#[derive(Default, Clone, Copy)]
struct Totals {
    bytes: u64,
    /// Bytes stored, counting every replica.
    disk: u64,
    files: u64,
    dirs: u64,
}

/// Walks the tree at `path` (iteratively).
async fn totals(c: &Client, path: &str, st: &FileStat) -> Res<Totals> {
    let mut t = Totals::default();
    let mut stack = vec![(path.to_string(), st.clone())];
    while let Some((p, s)) = stack.pop() {
        if s.is_dir {
            t.dirs += 1;
            for e in c.list(&p).await? {
                stack.push((paths::join(&p, &e.name), e));
            }
        } else {
            t.files += 1;
            t.bytes += s.length;
            t.disk += s.length * u64::from(s.replication);
        }
    }
    Ok(t)
}

/// Options of `du`.
pub struct DuOpts {
    pub summary: bool,
    pub human: bool,
    pub json: bool,
}

pub async fn du(c: &Client, patterns: &[String], o: &DuOpts) -> Res {
    let mut rows = Vec::new();
    for path in paths::expand_all(c, patterns).await? {
        let st = c.stat(&path).await.map_err(|e| format!("{path}: {e}"))?;
        if st.is_dir && !o.summary {
            for e in c.list(&path).await? {
                let p = paths::join(&path, &e.name);
                rows.push((totals(c, &p, &e).await?, p));
            }
        } else {
            rows.push((totals(c, &path, &st).await?, path));
        }
    }
    if o.json {
        let v: Vec<Value> = rows
            .iter()
            .map(|(t, p)| json!({"path": p, "bytes": t.bytes, "disk_bytes": t.disk, "files": t.files}))
            .collect();
        output::json(&Value::Array(v));
        return Ok(());
    }
    for (t, p) in &rows {
        say!(
            "{:>12}  {:>12}  {}",
            output::size(t.bytes, o.human),
            output::size(t.disk, o.human),
            escape_name(p)
        );
    }
    Ok(())
}

pub async fn count(c: &Client, patterns: &[String], human: bool, as_json: bool) -> Res {
    let mut v = Vec::new();
    for path in paths::expand_all(c, patterns).await? {
        let st = c.stat(&path).await.map_err(|e| format!("{path}: {e}"))?;
        let t = totals(c, &path, &st).await?;
        if as_json {
            v.push(
                json!({"path": path, "directories": t.dirs, "files": t.files, "bytes": t.bytes}),
            );
        } else {
            say!(
                "{:>12} {:>12} {:>16} {}",
                t.dirs,
                t.files,
                output::size(t.bytes, human),
                escape_name(&path)
            );
        }
    }
    if as_json {
        output::json(&Value::Array(v));
    }
    Ok(())
}

pub async fn df(c: &Client, human: bool, as_json: bool) -> Res {
    let s = c.status().await?;
    let live = s.chunkservers.iter().filter(|cs| cs.state == "alive");
    let (mut size, mut free, mut n) = (0u64, 0u64, 0usize);
    for cs in live {
        size += cs.capacity_bytes;
        free += cs.free_bytes;
        n += 1;
    }
    let used = size.saturating_sub(free);
    let pct = (used.saturating_mul(100)).checked_div(size).unwrap_or(0);
    if as_json {
        output::json(&json!({
            "size_bytes": size, "used_bytes": used, "free_bytes": free,
            "used_percent": pct, "chunkservers": n, "files": s.files, "directories": s.dirs,
        }));
        return Ok(());
    }
    say!(
        "{:<16} {:>14} {:>14} {:>14} {:>5}",
        "Filesystem",
        "Size",
        "Used",
        "Available",
        "Use%"
    );
    say!(
        "{:<16} {:>14} {:>14} {:>14} {:>4}%",
        "shale",
        output::size(size, human),
        output::size(used, human),
        output::size(free, human),
        pct
    );
    Ok(())
}

/// What `test` asks.
#[derive(Clone, Copy, Debug)]
pub enum Test {
    Exists,
    Dir,
    File,
    Empty,
    NonEmpty,
}

/// Whether `path` passes `t` (a missing path passes nothing).
pub async fn test(c: &Client, path: &str, t: Test) -> Res<bool> {
    let s = match c.stat(path).await {
        Ok(s) => s,
        Err(ClientError::NotFound(_)) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    Ok(match t {
        Test::Exists => true,
        Test::Dir => s.is_dir,
        Test::File => !s.is_dir,
        Test::Empty => !s.is_dir && s.length == 0,
        Test::NonEmpty => !s.is_dir && s.length > 0,
    })
}
