//! `snapshot create|ls|delete|restore`: directory snapshots from the command line.
//!
//! `restore` makes a directory (or a new one, with --to) hold what a snapshot holds: files the
//! snapshot shares with the directory (the same inode: unchanged since) are kept as they are;
//! missing or different ones are copied back inside the cluster (chunkservers copy the chunks);
//! whatever is in the way or not in the snapshot goes to the trash, so nothing is lost. The
//! walk is iterative.
use super::output::{self, escape_name, say};
use super::paths;
use clap::Subcommand;
use serde_json::json;
use shale_client::{Client, ClientError, CreateOptions, FileStat};
use std::collections::BTreeMap;

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

#[derive(Subcommand)]
pub enum SnapshotCmd {
    /// Take an instant, read-only snapshot of a directory (its owner or an admin), readable at
    /// PATH/.snapshot/NAME.
    Create { path: String, name: String },
    /// A directory's snapshots.
    Ls {
        path: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a snapshot (space only it holds is reclaimed).
    Delete { path: String, name: String },
    /// Make PATH (or, with --to, a new directory) hold what snapshot NAME holds: unchanged
    /// files are kept, others copied back; anything in the way goes to the trash.
    Restore {
        path: String,
        name: String,
        /// Restore into this new directory instead of PATH.
        #[arg(long)]
        to: Option<String>,
    },
}

pub async fn run(c: &Client, cmd: SnapshotCmd) -> Res {
    match cmd {
        SnapshotCmd::Create { path, name } => {
            let s = c.create_snapshot(&path, &name).await?;
            say!(
                "snapshot {} of {} taken: {}",
                escape_name(&s.name),
                escape_name(&path),
                escape_name(&format!(
                    "{}/.snapshot/{}",
                    path.trim_end_matches('/'),
                    s.name
                ))
            );
        }
        SnapshotCmd::Ls { path, json } => {
            let list = c.snapshots(&path).await?;
            if json {
                let v: Vec<_> = list
                    .iter()
                    .map(|s| {
                        json!({
                            "name": s.name,
                            "created_ms": s.created_ms,
                            "entries": s.stat.as_ref().map_or(0, |st| st.entries),
                        })
                    })
                    .collect();
                output::json(&serde_json::Value::Array(v));
                return Ok(());
            }
            for s in &list {
                say!(
                    "{}  {}",
                    output::short_time(s.created_ms),
                    escape_name(&s.name)
                );
            }
        }
        SnapshotCmd::Delete { path, name } => {
            c.delete_snapshot(&path, &name).await?;
            say!(
                "snapshot {} of {} deleted",
                escape_name(&name),
                escape_name(&path)
            );
        }
        SnapshotCmd::Restore { path, name, to } => {
            let src = format!("{}/.snapshot/{name}", path.trim_end_matches('/'));
            let dst = to.unwrap_or_else(|| path.clone());
            if dst != path {
                match c.stat(&dst).await {
                    Err(ClientError::NotFound(_)) => {}
                    Ok(_) => return Err(format!("{dst}: exists (--to needs a new path)").into()),
                    Err(e) => return Err(format!("{dst}: {e}").into()),
                }
            }
            let n = restore(c, &src, &dst).await?;
            say!(
                "{} restored from {}: {} copied, {} unchanged, {} moved to the trash",
                escape_name(&dst),
                escape_name(&src),
                output::files(n.copied),
                n.kept,
                n.trashed
            );
        }
    }
    Ok(())
}

#[derive(Default)]
struct Counts {
    copied: usize,
    kept: usize,
    trashed: usize,
}

async fn entries(c: &Client, dir: &str) -> Res<BTreeMap<String, FileStat>> {
    match c.list(dir).await {
        Ok(v) => Ok(v.into_iter().map(|e| (e.name.clone(), e)).collect()),
        Err(ClientError::NotFound(_)) => Ok(BTreeMap::new()),
        Err(e) => Err(format!("{dir}: {e}").into()),
    }
}

async fn to_trash(c: &Client, p: &str, n: &mut Counts) -> Res {
    c.trash(p, true).await.map_err(|e| format!("{p}: {e}"))?;
    n.trashed += 1;
    Ok(())
}

/// Makes `dst` hold what `src` (a snapshot view) holds; see the module doc.
async fn restore(c: &Client, src: &str, dst: &str) -> Res<Counts> {
    let mut n = Counts::default();
    let top = c.stat(src).await.map_err(|e| format!("{src}: {e}"))?;
    c.mkdir_mode(dst, true, Some(top.mode))
        .await
        .map_err(|e| format!("{dst}: {e}"))?;
    let mut stack = vec![(src.to_string(), dst.to_string())];
    while let Some((from, to)) = stack.pop() {
        let want = entries(c, &from).await?;
        let have = entries(c, &to).await?;
        for (name, h) in &have {
            let p = paths::join(&to, name);
            let same_kind = want.get(name).is_some_and(|w| w.is_dir == h.is_dir);
            if !same_kind {
                to_trash(c, &p, &mut n).await?;
            }
        }
        for (name, w) in &want {
            let (f, t) = (paths::join(&from, name), paths::join(&to, name));
            let h = have.get(name).filter(|h| h.is_dir == w.is_dir);
            if w.is_dir {
                if h.is_none() {
                    c.mkdir_mode(&t, false, Some(w.mode))
                        .await
                        .map_err(|e| format!("{t}: {e}"))?;
                }
                stack.push((f, t));
                continue;
            }
            match h {
                Some(h) if h.inode == w.inode => n.kept += 1,
                other => {
                    if other.is_some() {
                        to_trash(c, &t, &mut n).await?;
                    }
                    c.copy(&f, &t, &CreateOptions::default())
                        .await
                        .map_err(|e| format!("{f} → {t}: {e}"))?;
                    if w.mode != 0o644 {
                        c.chmod(&t, w.mode).await.map_err(|e| format!("{t}: {e}"))?;
                    }
                    n.copied += 1;
                }
            }
        }
    }
    Ok(n)
}
