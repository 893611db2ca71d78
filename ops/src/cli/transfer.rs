//! Moving bytes: `put`, `get`, `cat`, `tail`, `touchz`.
//!
//! * `put SRC... DST`: SRC `-` is standard input; several sources (or a directory with `-r`)
//!   go into the directory DST; an existing remote file is replaced only with `-f`. Local
//!   sources are checked before the cluster is contacted ([`check_put`]).
//! * `get SRC... DST`: DST `-` is standard output; a directory with `-r`; each file lands whole
//!   or not at all (a unique temp file renamed into place; symbolic links written through,
//!   devices written in place).
//! * One progress bar covers everything a command moves. Trees are walked iteratively.
use super::output::{self, say};
use super::paths;
use crate::human;
use indicatif::{ProgressBar, ProgressStyle};
use shale_client::{Client, ClientError, CreateOptions, NamespaceOp};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn bar(total: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (b, template) = match total {
        Some(t) => (
            ProgressBar::new(t),
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{spinner} {bytes} {bytes_per_sec} {msg}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        b.set_style(style);
    }
    b
}

/// A local source of `put`, checked.
#[derive(Debug)]
pub enum Source {
    Stdin,
    File(PathBuf),
    Dir(PathBuf),
}

/// Checks `put`'s local sources before anything is sent: each exists and is readable, `-`
/// stands alone, directories need `-r`.
pub fn check_put(sources: &[String], recursive: bool) -> Res<Vec<Source>> {
    if sources.iter().any(|s| s == "-") && sources.len() > 1 {
        return Err("`-` (standard input) must be the only source".into());
    }
    let mut out = Vec::new();
    for s in sources {
        if s == "-" {
            out.push(Source::Stdin);
            continue;
        }
        let p = PathBuf::from(s);
        let m = std::fs::metadata(&p).map_err(|e| format!("{s}: {e}"))?;
        if m.is_dir() {
            if !recursive {
                return Err(format!("{s}: is a directory (use -r to store a tree)").into());
            }
            std::fs::read_dir(&p).map_err(|e| format!("{s}: {e}"))?;
            out.push(Source::Dir(p));
        } else {
            std::fs::File::open(&p).map_err(|e| format!("{s}: {e}"))?;
            out.push(Source::File(p));
        }
    }
    Ok(out)
}

/// What `put` will do: directories to make, then (local file or stdin, remote path) pairs.
struct PutPlan {
    dirs: Vec<String>,
    files: Vec<(Option<PathBuf>, String, u64)>,
}

/// Walks a local tree (iteratively; symbolic links to directories are not followed, so a
/// loop cannot trap the walk; sockets, pipes and devices are skipped with a warning).
fn plan_tree(root: &Path, remote: &str, plan: &mut PutPlan) -> Res {
    let mut stack = vec![(root.to_path_buf(), remote.to_string())];
    while let Some((dir, rdir)) = stack.pop() {
        plan.dirs.push(rdir.clone());
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries.into_iter().rev() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let r = paths::join(&rdir, &name);
            let ft = e
                .file_type()
                .map_err(|x| format!("{}: {x}", path.display()))?;
            if ft.is_dir() {
                stack.push((path, r));
                continue;
            }
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => plan.files.push((Some(path), r, m.len())),
                Ok(m) if m.is_dir() => {
                    eprintln!(
                        "warning: {}: a link to a directory; not followed",
                        path.display()
                    )
                }
                Ok(_) => eprintln!("warning: {}: not a regular file; skipped", path.display()),
                Err(x) => return Err(format!("{}: {x}", path.display()).into()),
            }
        }
    }
    Ok(())
}

/// Whether a file just written has fewer live replicas than its replication (acknowledged with
/// at least the minimum; healing adds the rest): what to tell the user.
async fn under_replicated(c: &Client, path: &str) -> Option<String> {
    let st = c.stat(path).await.ok()?;
    let locs = c.chunk_locations(path).await.ok()?;
    let least = locs
        .chunks
        .iter()
        .map(|ch| ch.replicas.iter().filter(|r| r.alive).count())
        .min()?;
    (least < st.replication as usize).then(|| {
        format!(
            "stored with {least} of {} replicas (too few chunkservers are up); the cluster adds \
             the others when it can — `shale fsck` shows it",
            st.replication
        )
    })
}

/// Whether `path` is an existing remote directory.
async fn remote_dir(c: &Client, path: &str) -> Res<bool> {
    match c.stat(path).await {
        Ok(s) => Ok(s.is_dir),
        Err(ClientError::NotFound(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Options of `put`.
pub struct PutOpts {
    pub force: bool,
    pub replication: u32,
    /// Mode bits of the new files (None: 0644).
    pub mode: Option<u32>,
}

pub async fn put(c: &Client, sources: Vec<Source>, dest: &str, o: &PutOpts) -> Res {
    let shown = dest;
    let (dest, slash) = paths::dest(dest);
    let into_dir = remote_dir(c, dest).await?;
    if slash && !into_dir {
        return Err(format!("{shown}: not an existing directory").into());
    }
    if sources.len() > 1 && !into_dir {
        return Err(
            format!("{dest}: not a directory (several sources go into a directory)").into(),
        );
    }
    let mut plan = PutPlan {
        dirs: Vec::new(),
        files: Vec::new(),
    };
    for s in &sources {
        match s {
            Source::Stdin if into_dir => {
                return Err(format!("{dest}: is a directory; give a file name for `-`").into())
            }
            Source::Stdin => plan.files.push((None, dest.to_string(), 0)),
            Source::File(p) | Source::Dir(p) => {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let target = if into_dir {
                    paths::join(dest, &name)
                } else {
                    dest.to_string()
                };
                if let Source::Dir(d) = s {
                    plan_tree(d, &target, &mut plan)?;
                } else {
                    let len = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
                    plan.files.push((Some(p.clone()), target, len));
                }
            }
        }
    }
    // The tree's directories, many per call.
    let mkdirs: Vec<NamespaceOp> = plan
        .dirs
        .iter()
        .map(|d| NamespaceOp::Mkdir {
            path: d.clone(),
            parents: true,
            mode: None,
        })
        .collect();
    for (d, r) in plan.dirs.iter().zip(c.batch(&mkdirs).await?) {
        r.map_err(|e| format!("{d}: {e}"))?;
    }
    let stdin = plan.files.iter().any(|f| f.0.is_none());
    let total: u64 = plan.files.iter().map(|f| f.2).sum();
    let pb = bar((!stdin).then_some(total));
    let opts = CreateOptions {
        mode: o.mode,
        ..CreateOptions::default()
            .overwrite(o.force)
            .replication(o.replication)
    };
    let (mut done, mut failed, mut written) = (0u64, 0usize, 0u64);
    let count = plan.files.len();
    if count > 1 && !stdin {
        return put_batched(c, &plan, &opts, pb, dest).await;
    }
    for (local, remote, _) in &plan.files {
        let base = done;
        let progress = |n: u64| pb.set_position(base + n);
        let r = match local {
            None => {
                c.put_with(remote, tokio::io::stdin(), &opts, &progress)
                    .await
            }
            Some(p) => match tokio::fs::File::open(p).await {
                Ok(f) => c.put_with(remote, f, &opts, &progress).await,
                Err(e) => Err(ClientError::Other(format!("{}: {e}", p.display()))),
            },
        };
        match r {
            Ok(n) => {
                done += n;
                written += n;
                if let Some(w) = under_replicated(c, remote).await {
                    pb.suspend(|| eprintln!("warning: {remote}: {w}"));
                }
                if count == 1 {
                    pb.finish_and_clear();
                    say!("{remote}: {} written", human::size(n));
                }
            }
            Err(e) => {
                failed += 1;
                pb.suspend(|| eprintln!("{}", put_error(remote, &e)));
            }
        }
    }
    pb.finish_and_clear();
    put_outcome(count, failed, written, dest)
}

/// What `put` says about a file it could not write.
fn put_error(remote: &str, e: &ClientError) -> String {
    match e {
        ClientError::AlreadyExists(_) => format!("error: {remote}: exists (use -f to replace it)"),
        e => format!("error: {remote}: {e}"),
    }
}

/// `put`'s last words: what went in (for several files), and its exit status.
fn put_outcome(count: usize, failed: usize, written: u64, dest: &str) -> Res {
    if count > 1 {
        say!(
            "{} ({}) written to {dest}",
            output::files(count - failed),
            human::size(written)
        );
    }
    match failed {
        0 => Ok(()),
        n if count == 1 && n == 1 => Err("nothing written".into()),
        n => Err(format!("{n} of {count} files not written").into()),
    }
}

/// `put` of several local files: creates and completes many per call (`Client::put_many`).
async fn put_batched(
    c: &Client,
    plan: &PutPlan,
    opts: &CreateOptions,
    pb: ProgressBar,
    dest: &str,
) -> Res {
    let files: Vec<(String, PathBuf)> = plan
        .files
        .iter()
        .filter_map(|(local, remote, _)| local.clone().map(|l| (remote.clone(), l)))
        .collect();
    let progress = |n: u64| pb.set_position(n);
    let results = c.put_many(&files, opts, &progress).await?;
    pb.finish_and_clear();
    let (mut failed, mut written, mut first) = (0usize, 0u64, None);
    for ((remote, _), r) in files.iter().zip(&results) {
        match r {
            Ok(n) => {
                written += n;
                if first.is_none() && *n > 0 {
                    first = Some(remote);
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("{}", put_error(remote, e));
            }
        }
    }
    // Files written together went to the same servers: one file shows whether too few were up.
    if let Some(remote) = first {
        if let Some(w) = under_replicated(c, remote).await {
            eprintln!("warning: {remote} and the files written with it: {w}");
        }
    }
    put_outcome(files.len(), failed, written, dest)
}

/// Where `get` writes a local path: through symlinks to the file they name; a regular file (or
/// a new path) is replaced atomically, anything else (a device, a pipe, a terminal) written in
/// place.
#[derive(Debug, PartialEq)]
enum Dest {
    /// Write to a unique temp file beside this path, then rename it over the path.
    Replace(PathBuf),
    /// Write straight into this existing non-regular file.
    Direct(PathBuf),
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

/// Checks `get`'s local side before the cluster is contacted: several sources need an
/// existing local directory (or `-`).
pub fn check_get(sources: &[String], dest: &str, recursive: bool) -> Res {
    if dest == "-" {
        if recursive {
            return Err("-r cannot write a tree to standard output".into());
        }
        return Ok(());
    }
    if sources.len() > 1 && !Path::new(dest).is_dir() {
        return Err(
            format!("{dest}: not a directory (several sources go into a directory)").into(),
        );
    }
    Ok(())
}

/// Fetches one remote file into `local`, whole or not at all.
async fn get_file(c: &Client, remote: &str, local: &Path, pb: &ProgressBar, base: u64) -> Res<u64> {
    let progress = |n: u64| pb.set_position(base + n);
    match destination(local)? {
        Dest::Direct(path) => {
            let mut f = tokio::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(c.get(remote, &mut f, &progress).await?)
        }
        Dest::Replace(path) => {
            // A temp file of its own in the destination's directory (never shared with another
            // get), synced, then renamed into place: a failed or interrupted get leaves nothing
            // behind (the temp file is removed when `tmp_path` is dropped), and the file appears
            // whole or not at all. Created with mode 0666 less the umask, like any new file; an
            // existing file keeps its mode.
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
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
            let n = c.get(remote, &mut f, &progress).await?;
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
            Ok(n)
        }
    }
}

/// Writes remote files to standard output, in order; a closed pipe ends quietly.
async fn to_stdout(c: &Client, files: &[String]) -> Res {
    let mut out = tokio::io::stdout();
    for f in files {
        match c.get(f, &mut out, &|_| {}).await {
            Ok(_) => {}
            Err(ClientError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(format!("{f}: {e}").into()),
        }
    }
    Ok(())
}

pub async fn cat(c: &Client, sources: &[String]) -> Res {
    let files = paths::expand_all(c, sources).await?;
    to_stdout(c, &files).await
}

pub async fn get(c: &Client, sources: &[String], dest: &str, recursive: bool) -> Res {
    let sources = paths::expand_all(c, sources).await?;
    if dest == "-" {
        return to_stdout(c, &sources).await;
    }
    let into_dir = Path::new(dest).is_dir();
    if sources.len() > 1 && !into_dir {
        return Err(
            format!("{dest}: not a directory (several sources go into a directory)").into(),
        );
    }
    // (remote, local, length) of every file; local directories made first.
    let mut files: Vec<(String, PathBuf, u64)> = Vec::new();
    for src in &sources {
        let st = c.stat(src).await.map_err(|e| format!("{src}: {e}"))?;
        let target = if into_dir {
            Path::new(dest).join(paths::base(src))
        } else {
            PathBuf::from(dest)
        };
        if !st.is_dir {
            files.push((src.clone(), target, st.length));
            continue;
        }
        if !recursive {
            return Err(format!("{src}: is a directory (use -r to fetch a tree)").into());
        }
        let mut stack = vec![(src.clone(), target)];
        while let Some((rdir, ldir)) = stack.pop() {
            std::fs::create_dir_all(&ldir).map_err(|e| format!("{}: {e}", ldir.display()))?;
            for e in c.list(&rdir).await? {
                let (r, l) = (paths::join(&rdir, &e.name), ldir.join(&e.name));
                if e.name.contains('/') || e.name == ".." || e.name == "." {
                    return Err(format!("{r}: a name that cannot be a local file name").into());
                }
                if e.is_dir {
                    stack.push((r, l));
                } else {
                    files.push((r, l, e.length));
                }
            }
        }
    }
    let total = files.iter().map(|f| f.2).sum();
    let pb = bar(Some(total));
    let mut done = 0;
    for (remote, local, _) in &files {
        let n = get_file(c, remote, local, &pb, done)
            .await
            .map_err(|e| format!("{remote}: {e}"))?;
        done += n;
        if files.len() == 1 {
            pb.finish_and_clear();
            say!("{}: {} read", local.display(), human::size(n));
        }
    }
    pb.finish_and_clear();
    if files.len() != 1 {
        say!(
            "{} files ({}) read into {dest}",
            files.len(),
            human::size(done)
        );
    }
    Ok(())
}

/// `cp SRC... DST`: server-side copies; into DST when it is a directory (or several sources);
/// trees with `recursive`; never over an existing file without `force`.
pub async fn cp(c: &Client, sources: &[String], dest: &str, force: bool, recursive: bool) -> Res {
    let sources = paths::expand_all(c, sources).await?;
    let shown = dest;
    let (dest, slash) = paths::dest(dest);
    let into_dir = remote_dir(c, dest).await?;
    if (sources.len() > 1 || slash) && !into_dir {
        return Err(format!("{shown}: not an existing directory").into());
    }
    let opts = CreateOptions::default().overwrite(force);
    let mut files = Vec::new();
    for s in &sources {
        let target = if into_dir {
            paths::join(dest, paths::base(s))
        } else {
            dest.to_string()
        };
        let st = c.stat(s).await.map_err(|e| format!("{s}: {e}"))?;
        if !st.is_dir {
            files.push((s.clone(), target));
            continue;
        }
        if !recursive {
            return Err(format!("{s}: is a directory (use -r to copy a tree)").into());
        }
        if target == *s || target.starts_with(&format!("{s}/")) {
            return Err(format!("{s}: cannot copy a directory into itself").into());
        }
        let mut stack = vec![(s.clone(), target)];
        while let Some((from, to)) = stack.pop() {
            c.mkdir(&to, true).await.map_err(|e| format!("{to}: {e}"))?;
            for e in c.list(&from).await? {
                let (f, t) = (paths::join(&from, &e.name), paths::join(&to, &e.name));
                if e.is_dir {
                    stack.push((f, t));
                } else {
                    files.push((f, t));
                }
            }
        }
    }
    let mut bytes = 0;
    for (from, to) in &files {
        bytes += match c.copy(from, to, &opts).await {
            Ok(n) => n,
            Err(ClientError::AlreadyExists(_)) => {
                return Err(format!("{to}: exists (use -f to replace it)").into())
            }
            Err(e) => return Err(format!("{from} → {to}: {e}").into()),
        };
    }
    say!(
        "{} ({}) copied",
        output::files(files.len()),
        human::size(bytes)
    );
    Ok(())
}

/// The last `bytes` of a file (1 KiB by default, as `hdfs dfs -tail`).
pub async fn tail(c: &Client, path: &str, bytes: u64) -> Res {
    let st = c.stat(path).await?;
    if st.is_dir {
        return Err(format!("{path}: is a directory").into());
    }
    let from = st.length.saturating_sub(bytes);
    let data = c.read_range(path, from, st.length - from).await?;
    use tokio::io::AsyncWriteExt;
    let mut out = tokio::io::stdout();
    match out.write_all(&data).await.and(out.flush().await) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// Creates empty files; an existing empty file is fine, a non-empty one is an error (as
/// `hdfs dfs -touchz`).
pub async fn touchz(c: &Client, paths_: &[String]) -> Res {
    for p in paths_ {
        match c.put(p, tokio::io::empty(), false, &|_| {}).await {
            Ok(_) => {}
            Err(ClientError::AlreadyExists(_)) => {
                let st = c.stat(p).await?;
                if st.is_dir || st.length != 0 {
                    return Err(format!("{p}: exists and is not an empty file").into());
                }
            }
            Err(e) => return Err(format!("{p}: {e}").into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_never_renames_over_links_or_devices() {
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
    fn put_checks_local_sources_first() {
        let d = tempfile::tempdir().expect("tmp");
        let f = d.path().join("f");
        std::fs::write(&f, b"x").expect("write");
        let s = |p: &Path| p.to_string_lossy().into_owned();
        assert!(check_put(&[s(&f)], false).is_ok());
        assert!(check_put(&[s(&d.path().join("missing"))], false).is_err());
        assert!(check_put(&[s(d.path())], false).is_err());
        assert!(check_put(&[s(d.path())], true).is_ok());
        assert!(check_put(&["-".into(), s(&f)], false).is_err());
        assert!(check_put(&["-".into()], false).is_ok());
    }
}
