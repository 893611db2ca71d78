//! `rm` (to the trash unless told otherwise), `trash ls|restore|empty` and
//! `quota set|clear|get|ls`.
use super::output::{self, escape_name, say};
use super::paths;
use clap::Subcommand;
use serde_json::json;
use shale_client::{Client, ClientError, NamespaceOp, QuotaReply};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// Where the trash lives (see ARCHITECTURE.md, "Trash").
const TRASH_ROOT: &str = "/.Trash";

#[derive(Subcommand)]
pub enum TrashCmd {
    /// What is in your trash (another user's: admins), newest first: deletion time (UTC),
    /// size, original path, and where it is kept.
    Ls {
        /// Whose trash (default: yours). The field is not `user`: that id is the global --user
        /// flag.
        #[arg(value_name = "USER")]
        whose: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Put deleted paths back where they were (the most recent deletion of each). The
    /// directory they were in must exist; nothing there is replaced.
    Restore {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Delete everything in your trash for good.
    Empty,
}

#[derive(Subcommand)]
pub enum QuotaCmd {
    /// Limit the bytes and/or names (files and directories) below a directory (admins). A
    /// limit left out is unlimited; a limit below the current use refuses growth only.
    Set {
        path: String,
        /// Most bytes (file lengths, not counting replicas): a number with an optional unit,
        /// binary (10G = 10 GiB).
        #[arg(long, value_parser = crate::human::parse_size)]
        bytes: Option<u64>,
        /// Most files and directories.
        #[arg(long)]
        names: Option<u64>,
    },
    /// Remove a directory's quota (admins).
    Clear { path: String },
    /// Show directories' quotas and use.
    #[command(disable_help_flag = true)]
    Get {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
        /// Sizes in binary units.
        #[arg(short = 'h')]
        human: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Print help.
        #[arg(long, action = clap::ArgAction::Help)]
        help: Option<bool>,
    },
    /// Every quota in the cluster (admins).
    #[command(disable_help_flag = true)]
    Ls {
        /// Sizes in binary units.
        #[arg(short = 'h')]
        human: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Print help.
        #[arg(long, action = clap::ArgAction::Help)]
        help: Option<bool>,
    },
}

/// `rm`: each path (globs expanded) to the trash, or removed for good with `skip_trash` or
/// when it is in the trash already.
pub async fn rm(
    c: &Client,
    patterns: &[String],
    recursive: bool,
    force: bool,
    skip_trash: bool,
) -> Res {
    let mut targets = Vec::new();
    for p in patterns {
        match paths::expand(c, p).await {
            Ok(m) => targets.extend(m),
            Err(_) if force => continue,
            Err(e) => return Err(e),
        }
    }
    // Everything in one batch (one call, one Raft entry per 1,000 paths); each path gets its
    // own answer, and one failing does not stop the others (as rm(1) goes on).
    let ops: Vec<NamespaceOp> = targets
        .iter()
        .map(|m| {
            let in_trash = m == TRASH_ROOT || m.starts_with(&format!("{TRASH_ROOT}/"));
            let path = m.clone();
            if skip_trash || in_trash {
                NamespaceOp::Delete { path, recursive }
            } else {
                NamespaceOp::Trash { path, recursive }
            }
        })
        .collect();
    let results = c.batch(&ops).await?;
    let mut failed = 0;
    for ((m, op), r) in targets.iter().zip(&ops).zip(results) {
        match r {
            Ok(done) if matches!(op, NamespaceOp::Trash { .. }) => eprintln!(
                "{} moved to the trash: {} (`shale trash restore {}` undoes it)",
                escape_name(m),
                escape_name(&done.path),
                escape_name(m)
            ),
            Ok(_) => {}
            Err(ClientError::NotFound(_)) if force => {}
            Err(e) if targets.len() == 1 => return Err(format!("{m}: {e}").into()),
            Err(e) => {
                failed += 1;
                eprintln!("error: {m}: {e}");
            }
        }
    }
    match failed {
        0 => Ok(()),
        n => Err(format!("{n} of {} paths not removed", targets.len()).into()),
    }
}

pub async fn trash(c: &Client, cmd: TrashCmd) -> Res {
    match cmd {
        TrashCmd::Ls { whose, json } => {
            let items = c.trash_list(whose.as_deref()).await?;
            if json {
                let v: Vec<_> = items
                    .iter()
                    .map(|i| {
                        let st = i.stat.clone().unwrap_or_default();
                        json!({
                            "original": i.original,
                            "path": i.path,
                            "deleted_ms": i.deleted_ms,
                            "is_dir": st.is_dir,
                            "length": st.length,
                        })
                    })
                    .collect();
                output::json(&serde_json::Value::Array(v));
                return Ok(());
            }
            for i in &items {
                let st = i.stat.clone().unwrap_or_default();
                let what = if st.is_dir {
                    "dir".to_string()
                } else {
                    crate::human::size(st.length)
                };
                say!(
                    "{}  {:>10}  {}  ({})",
                    output::short_time(i.deleted_ms),
                    what,
                    escape_name(&i.original),
                    escape_name(&i.path)
                );
            }
            if items.is_empty() {
                eprintln!("the trash is empty");
            }
        }
        TrashCmd::Restore { paths } => {
            for p in paths {
                let from = c.restore(&p).await.map_err(|e| format!("{p}: {e}"))?;
                say!("{} restored (from {})", escape_name(&p), escape_name(&from));
            }
        }
        TrashCmd::Empty => {
            let me = c.who_am_i().await?.user;
            let mine = format!("{TRASH_ROOT}/{me}");
            let entries = match c.list(&mine).await {
                Ok(e) => e,
                Err(ClientError::NotFound(_)) => Vec::new(),
                Err(e) => return Err(format!("{mine}: {e}").into()),
            };
            for e in &entries {
                let p = paths::join(&mine, &e.name);
                c.delete(&p, true).await.map_err(|e| format!("{p}: {e}"))?;
            }
            let n = entries.len();
            say!(
                "{n} checkpoint{} removed from the trash for good",
                if n == 1 { "" } else { "s" }
            );
        }
    }
    Ok(())
}

fn limit(v: Option<u64>, human: bool, bytes: bool) -> String {
    match v {
        None => "none".into(),
        Some(n) if bytes => output::size(n, human),
        Some(n) => n.to_string(),
    }
}

fn quota_json(q: &QuotaReply) -> serde_json::Value {
    json!({
        "path": q.path,
        "has_quota": q.has_quota,
        "max_bytes": q.max_bytes,
        "max_names": q.max_names,
        "used_bytes": q.used_bytes,
        "used_names": q.used_names,
    })
}

fn print_quotas(qs: &[QuotaReply], human: bool, json: bool) {
    if json {
        output::json(&serde_json::Value::Array(
            qs.iter().map(quota_json).collect(),
        ));
        return;
    }
    say!(
        "{:>12} {:>12} {:>10} {:>10}  PATH",
        "BYTES_USED",
        "BYTES_MAX",
        "NAMES_USED",
        "NAMES_MAX"
    );
    for q in qs {
        if !q.has_quota {
            say!(
                "{:>12} {:>12} {:>10} {:>10}  {}",
                "-",
                "none",
                "-",
                "none",
                escape_name(&q.path)
            );
            continue;
        }
        say!(
            "{:>12} {:>12} {:>10} {:>10}  {}",
            output::size(q.used_bytes, human),
            limit(q.max_bytes, human, true),
            q.used_names,
            limit(q.max_names, human, false),
            escape_name(&q.path)
        );
    }
}

pub async fn quota(c: &Client, cmd: QuotaCmd) -> Res {
    match cmd {
        QuotaCmd::Set { path, bytes, names } => {
            if bytes.is_none() && names.is_none() {
                return Err(
                    "give --bytes and/or --names (`shale quota clear` removes a quota)".into(),
                );
            }
            let q = c
                .set_quota(&path, bytes, names)
                .await
                .map_err(|e| format!("{path}: {e}"))?;
            print_quotas(&[q], true, false);
        }
        QuotaCmd::Clear { path } => {
            c.set_quota(&path, None, None)
                .await
                .map_err(|e| format!("{path}: {e}"))?;
            say!("quota of {} removed", escape_name(&path));
        }
        QuotaCmd::Get {
            paths, human, json, ..
        } => {
            let mut qs = Vec::new();
            for p in paths::expand_all(c, &paths).await? {
                qs.push(c.quota(&p).await.map_err(|e| format!("{p}: {e}"))?);
            }
            print_quotas(&qs, human, json);
        }
        QuotaCmd::Ls { human, json, .. } => print_quotas(&c.quotas().await?, human, json),
    }
    Ok(())
}
