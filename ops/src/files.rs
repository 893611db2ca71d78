//! The file commands: put, get, cat, ls, stat, mkdir, mv, rm, status.
use crate::human;
use indicatif::{ProgressBar, ProgressStyle};
use shale_client::{Client, ClientConfig, FileStat};
use std::io::IsTerminal;
use std::path::Path;

type Res = Result<(), Box<dyn std::error::Error>>;

fn bar(total: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let b = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::new_spinner(),
    };
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
    {
        b.set_style(style);
    }
    b
}

pub async fn connect(masters: &[String]) -> Result<Client, Box<dyn std::error::Error>> {
    let config = ClientConfig {
        host: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        ..ClientConfig::default()
    };
    Client::connect(masters, config).await.map_err(|e| {
        format!(
            "cannot reach the masters at {}: {e} (start a cluster with `shale up`, or set --masters / SHALE_MASTERS)",
            masters.join(",")
        )
        .into()
    })
}

pub async fn put(c: &Client, local: &Path, remote: &str, no_overwrite: bool) -> Res {
    let f = tokio::fs::File::open(local)
        .await
        .map_err(|e| format!("{}: {e}", local.display()))?;
    let len = f.metadata().await?.len();
    let pb = bar(Some(len));
    let n = c
        .put(
            remote,
            tokio::io::BufReader::new(f),
            !no_overwrite,
            &|done| pb.set_position(done),
        )
        .await?;
    pb.finish_and_clear();
    println!("{remote}: {} written", human::size(n));
    Ok(())
}

/// Where `get` writes `local`: through symlinks to the file they name; a regular file (or a new
/// path) is replaced atomically, anything else (a device, a pipe, a terminal) written in place.
#[derive(Debug, PartialEq)]
enum Dest {
    /// Write to a unique temp file beside this path, then rename it over the path.
    Replace(std::path::PathBuf),
    /// Write straight into this existing non-regular file.
    Direct(std::path::PathBuf),
}

fn destination(local: &Path) -> Result<Dest, String> {
    let shown = local.display();
    let target = match std::fs::symlink_metadata(local) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Dest::Replace(local.to_path_buf()))
        }
        Err(e) => return Err(format!("{shown}: {e}")),
        // Never rename over a link: write to what it names (the link stays as it was).
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(local).map_err(|e| {
            format!("{shown}: a symbolic link whose target cannot be used ({e}); not replacing it")
        })?,
        Ok(_) => local.to_path_buf(),
    };
    let m = std::fs::metadata(&target).map_err(|e| format!("{}: {e}", target.display()))?;
    if m.is_dir() {
        Err(format!("{shown}: is a directory"))
    } else if m.is_file() {
        Ok(Dest::Replace(target))
    } else {
        Ok(Dest::Direct(target))
    }
}

pub async fn get(c: &Client, remote: &str, local: &Path) -> Res {
    let st = c.stat(remote).await?;
    if st.is_dir {
        return Err(format!("{remote}: is a directory").into());
    }
    let pb = bar(Some(st.length));
    match destination(local)? {
        Dest::Direct(path) => {
            let mut f = tokio::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let n = c.get(remote, &mut f, &|done| pb.set_position(done)).await;
            pb.finish_and_clear();
            let n = n?;
            println!("{}: {} read", local.display(), human::size(n));
        }
        Dest::Replace(path) => {
            // A temp file of its own in the destination's directory (never shared with another
            // get), synced, then renamed into place: a failed get leaves nothing behind, and the
            // file appears whole or not at all. Created with mode 0666 less the umask, like any
            // new file; an existing file keeps its mode.
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => std::path::PathBuf::from("."),
            };
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mode = std::fs::metadata(&path).ok().map(|m| m.permissions());
            let tmp = tempfile::Builder::new()
                .prefix(&format!(".{name}."))
                .suffix(".shale-partial")
                .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
                .tempfile_in(&dir)
                .map_err(|e| format!("{}: cannot create a temp file: {e}", dir.display()))?;
            let (file, tmp_path) = tmp.into_parts();
            let mut f = tokio::fs::File::from_std(file);
            let n = c.get(remote, &mut f, &|done| pb.set_position(done)).await;
            pb.finish_and_clear();
            // On any error `tmp_path` is dropped, which removes the temp file.
            let n = n?;
            f.sync_all().await?;
            if let Some(p) = mode {
                f.set_permissions(p).await?;
            }
            drop(f);
            tmp_path
                .persist(&path)
                .map_err(|e| format!("{}: {}", path.display(), e.error))?;
            // The rename itself durable too (best effort: the data is already synced).
            let _ = shale_proto::durable::fsync_dir(&dir);
            println!("{}: {} read", local.display(), human::size(n));
        }
    }
    Ok(())
}

pub async fn cat(c: &Client, remote: &str) -> Res {
    let mut out = tokio::io::stdout();
    c.get(remote, &mut out, &|_| {}).await?;
    Ok(())
}

/// A name made safe for a terminal: control characters and backslashes escaped (as `ls -b`),
/// so a name cannot move the cursor, recolour the screen or fake extra lines.
pub fn escape_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for ch in name.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn line(s: &FileStat, long: bool) -> String {
    let name = if s.is_dir {
        format!("{}/", escape_name(&s.name))
    } else {
        escape_name(&s.name)
    };
    if !long {
        return name;
    }
    if s.is_dir {
        format!("d {:>10} {:>3} {:>6} {name}", "-", "-", s.entries)
    } else {
        format!(
            "- {:>10} {:>3} {:>6} {name}",
            human::size(s.length),
            s.replication,
            s.chunks
        )
    }
}

pub async fn ls(c: &Client, path: &str, long: bool) -> Res {
    let st = c.stat(path).await?;
    if !st.is_dir {
        println!("{}", line(&st, long));
        return Ok(());
    }
    for e in c.list(path).await? {
        println!("{}", line(&e, long));
    }
    Ok(())
}

pub async fn stat(c: &Client, path: &str) -> Res {
    let s = c.stat(path).await?;
    println!("path:        {path}");
    println!("inode:       {}", s.inode);
    if s.is_dir {
        println!("type:        directory ({} entries)", s.entries);
    } else {
        println!("type:        file");
        println!(
            "length:      {} ({} bytes)",
            human::size(s.length),
            s.length
        );
        println!("replication: {}", s.replication);
        println!("chunk size:  {}", human::size(s.chunk_size));
        println!("chunks:      {}", s.chunks);
    }
    println!("modified:    {} ms since the epoch (log time)", s.mtime_ms);
    Ok(())
}

/// The master group as `s` reports it.
pub fn print_masters(s: &shale_client::StatusReply) {
    println!(
        "masters (asked master {}: {}, term {}, applied {}):",
        s.id, s.role, s.term, s.applied_index
    );
    for m in &s.masters {
        let role = if m.id == s.leader {
            "leader"
        } else if m.voter {
            "follower"
        } else {
            "learner"
        };
        println!("  master {:<3} {:<22} {role}", m.id, m.address);
    }
}

pub async fn status(c: &Client) -> Res {
    let s = c.status().await?;
    print_masters(&s);
    println!("chunkservers:");
    for cs in &s.chunkservers {
        println!(
            "  node {:<3} {:<22} host {:<12} {:<6} {:>10} free of {:>10}  {} chunks{}",
            cs.node_id,
            cs.address,
            cs.host,
            cs.state,
            human::size(cs.free_bytes),
            human::size(cs.capacity_bytes),
            cs.chunks,
            if cs.draining { " (draining)" } else { "" }
        );
    }
    println!(
        "namespace: {} files, {} directories, {} chunks",
        s.files, s.dirs, s.chunks
    );
    if s.role == "leader" {
        println!(
            "healing: {} chunks under-replicated, {} copies running{}",
            s.under_replicated,
            s.copying,
            if s.safe_mode {
                " (safe mode: no deletions yet)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

pub async fn drain(c: &Client, node: u64, draining: bool, wait: bool) -> Res {
    c.drain(node, draining).await?;
    if !draining {
        println!("chunkserver {node} is back in service");
        return Ok(());
    }
    println!("chunkserver {node} is draining");
    if !wait {
        return Ok(());
    }
    loop {
        let s = c.status().await?;
        let left = s
            .chunkservers
            .iter()
            .find(|cs| cs.node_id == node)
            .map_or(0, |cs| cs.chunks);
        if left == 0 {
            println!("chunkserver {node} holds no replicas: it can be removed");
            return Ok(());
        }
        println!("  {left} replicas left on chunkserver {node}");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::escape_name;
    use std::path::Path;

    #[test]
    fn get_never_renames_over_links_or_devices() {
        use super::{destination, Dest};
        let d = tempfile::tempdir().expect("tmp");
        let file = d.path().join("f");
        let link = d.path().join("link");
        assert_eq!(destination(&file), Ok(Dest::Replace(file.clone())));
        std::fs::write(&file, b"x").expect("write");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        let real = std::fs::canonicalize(&file).expect("canonical");
        assert_eq!(destination(&link), Ok(Dest::Replace(real)));
        assert!(destination(d.path()).is_err());
        let dangling = d.path().join("dangling");
        std::os::unix::fs::symlink(d.path().join("nowhere"), &dangling).expect("symlink");
        assert!(destination(&dangling).is_err());
        assert_eq!(
            destination(Path::new("/dev/null")),
            Ok(Dest::Direct("/dev/null".into()))
        );
    }

    #[test]
    fn names_with_control_characters_are_escaped() {
        assert_eq!(escape_name("plain.txt"), "plain.txt");
        assert_eq!(escape_name("a\nb"), "a\\nb");
        assert_eq!(escape_name("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(escape_name("back\\slash"), "back\\\\slash");
    }
}
