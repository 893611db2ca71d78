//! The file and cluster commands of the `shale` CLI (everything but the servers and `debug`).
//!
//! Every command checks what it can locally before contacting the cluster (a missing local
//! file fails without a connection attempt), then connects (failing in ≈ 1.5 s, naming the
//! addresses tried, when no master answers) and runs under a Ctrl-C watch: an interrupt drops
//! the running command — a `put` abandons its file at once (the path is released, its chunks
//! become garbage), a `get` removes its partial file — waits briefly for those clean-ups to
//! reach the masters, and exits 130.
use clap::{ArgGroup, Subcommand};
use shale_client::{Client, ClientConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

pub(crate) mod admin;
mod append;
mod listing;
pub mod output;
mod paths;
mod perms;
mod snapshot;
mod space;
mod transfer;

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// How long an interrupted command waits for its clean-ups to reach the masters.
const SETTLE: Duration = Duration::from_secs(3);

#[derive(Subcommand)]
pub enum FileCmd {
    /// Store local files (SRC `-`: standard input). Several sources, or a directory with -r,
    /// go into the directory DST. An existing file is replaced only with -f.
    Put {
        #[arg(required = true, num_args = 1.., value_name = "SRC")]
        sources: Vec<String>,
        #[arg(value_name = "DST")]
        dest: String,
        /// Replace existing files (atomically, when the new one is complete).
        #[arg(short = 'f', long)]
        force: bool,
        /// Store directory trees.
        #[arg(short = 'r', long)]
        recursive: bool,
        /// Replicas per chunk (default: the cluster's).
        #[arg(long, default_value_t = 0)]
        replication: u32,
        /// Mode bits of the new files, octal (default 644).
        #[arg(short = 'm', long, value_parser = perms::parse_mode)]
        mode: Option<u32>,
    },
    /// Fetch files (DST `-`: standard output). Several sources, or a directory with -r, go
    /// into the local directory DST. Each file appears whole or not at all.
    Get {
        #[arg(required = true, num_args = 1.., value_name = "SRC")]
        sources: Vec<String>,
        #[arg(value_name = "DST")]
        dest: String,
        /// Fetch directory trees.
        #[arg(short = 'r', long)]
        recursive: bool,
    },
    /// Print files to standard output, one after the other.
    Cat {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Print the end of a file (1 KiB unless -c).
    Tail {
        path: String,
        /// How many bytes.
        #[arg(short = 'c', long, default_value_t = 1024)]
        bytes: u64,
    },
    /// Create empty files (an existing empty file is left as it is).
    Touchz {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
    },
    /// List directories (globs such as /logs/*.gz are expanded).
    #[command(disable_help_flag = true)]
    Ls {
        #[arg(default_value = "/", value_name = "PATH")]
        paths: Vec<String>,
        /// Long format: permissions, replication, owner, group, size in bytes, modification
        /// time (UTC), name.
        #[arg(short = 'l')]
        long: bool,
        /// Sizes in binary units (KiB, MiB, …).
        #[arg(short = 'h')]
        human: bool,
        /// List directories themselves, not their entries.
        #[arg(short = 'd')]
        directory: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Print help.
        #[arg(long, action = clap::ArgAction::Help)]
        help: Option<bool>,
    },
    /// Show a file's or directory's attributes.
    Stat {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Space used under each entry of a directory (-s: one total per argument): bytes, and
    /// bytes stored counting every replica.
    #[command(disable_help_flag = true)]
    Du {
        #[arg(default_value = "/", value_name = "PATH")]
        paths: Vec<String>,
        /// One total per argument.
        #[arg(short = 's')]
        summary: bool,
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
    /// The cluster's capacity, use and free space (live chunkservers).
    #[command(disable_help_flag = true)]
    Df {
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
    /// Directories, files and bytes under each path.
    #[command(disable_help_flag = true)]
    Count {
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
    /// Exit 0 if the test holds, 1 if not: -e exists, -d is a directory, -f is a file, -z is
    /// an empty file, -s is a non-empty file.
    #[command(group(ArgGroup::new("what").required(true).args(["exists", "dir", "file", "empty", "nonempty"])))]
    Test {
        path: String,
        #[arg(short = 'e')]
        exists: bool,
        #[arg(short = 'd')]
        dir: bool,
        #[arg(short = 'f')]
        file: bool,
        #[arg(short = 'z')]
        empty: bool,
        #[arg(short = 's')]
        nonempty: bool,
    },
    /// Make directories.
    Mkdir {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
        /// Make parents as needed; no error if it exists.
        #[arg(short = 'p')]
        parents: bool,
        /// Mode bits, octal (default 755).
        #[arg(short = 'm', long, value_parser = perms::parse_mode)]
        mode: Option<u32>,
    },
    /// Set mode bits (octal, e.g. 640 or 1777 for a sticky directory): the owner or a
    /// superuser only.
    Chmod {
        #[arg(value_parser = perms::parse_mode)]
        mode: u32,
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
        /// Also everything under directories.
        #[arg(short = 'R')]
        recursive: bool,
    },
    /// Set the owner and/or group: OWNER, OWNER:GROUP or :GROUP. Owners change only by a
    /// superuser; the owner may set a group they are in.
    Chown {
        #[arg(value_name = "OWNER[:GROUP]", value_parser = perms::parse_owner)]
        owner: (Option<String>, Option<String>),
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
        /// Also everything under directories.
        #[arg(short = 'R')]
        recursive: bool,
    },
    /// Who the cluster takes you for: user, role, groups.
    Whoami {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rename (move) files or directories atomically. Into DST if it is a directory; an
    /// existing file is replaced only with -f.
    Mv {
        #[arg(required = true, num_args = 1.., value_name = "SRC")]
        sources: Vec<String>,
        #[arg(value_name = "DST")]
        dest: String,
        /// Replace an existing file.
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Copy files inside the cluster (chunkservers copy the chunks; no data passes through this
    /// machine). Into DST if it is a directory; an existing file is replaced only with -f.
    Cp {
        #[arg(required = true, num_args = 1.., value_name = "SRC")]
        sources: Vec<String>,
        #[arg(value_name = "DST")]
        dest: String,
        /// Replace existing files.
        #[arg(short = 'f', long)]
        force: bool,
        /// Copy directory trees.
        #[arg(short = 'r', long)]
        recursive: bool,
    },
    /// Read every replica of every chunk and check it against the digests the writer committed
    /// (trusting no single server); names bad replicas, reports them to be healed, and exits
    /// non-zero unless all match.
    Verify {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete files (with -r, directories and everything in them). Globs are expanded. They
    /// go to your trash (`shale trash`) until it expires, unless --skip-trash; paths in the
    /// trash are deleted for good.
    Rm {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
        #[arg(short = 'r')]
        recursive: bool,
        /// No error for paths that do not exist.
        #[arg(short = 'f')]
        force: bool,
        /// Delete for good now (space is reclaimed in the background).
        #[arg(long)]
        skip_trash: bool,
    },
    /// Append records to an append file, exactly once each (created on the first append;
    /// many clients may append at once). Records are the input's lines, or with --whole the
    /// whole input (at most 1 MiB each). Readers see whole records only, in commit order.
    Append {
        path: String,
        /// The records (`-`: standard input).
        #[arg(default_value = "-", value_name = "FILE")]
        source: String,
        /// The whole input is one record.
        #[arg(long)]
        whole: bool,
        /// Print each record's offset and length.
        #[arg(long)]
        offsets: bool,
        /// Name the records CLIENT:SEQ, CLIENT:SEQ+1, ...: the same command run again with
        /// the same id appends nothing twice (and prints the original offsets).
        #[arg(long, value_parser = append::parse_id, value_name = "CLIENT:SEQ")]
        id: Option<shale_client::RecordId>,
        /// Replicas per chunk of a new file (default: the cluster's).
        #[arg(long, default_value_t = 0)]
        replication: u32,
        /// Mode bits of a new file, octal (default 644).
        #[arg(short = 'm', long, value_parser = perms::parse_mode)]
        mode: Option<u32>,
    },
    /// Seal an append file: it takes no more records.
    Seal { path: String },
    /// Deleted files waiting in your trash: list, restore, empty.
    #[command(subcommand)]
    Trash(space::TrashCmd),
    /// Directory quotas: limits on bytes and on files and directories below a directory.
    #[command(subcommand)]
    Quota(space::QuotaCmd),
    /// Directory snapshots: instant, read-only copies of a tree at DIR/.snapshot/NAME.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCmd),
    /// Set the replication of files (of every file under a directory, and the directory's
    /// default for new files below it); healing adds or trims copies. With -w, wait until
    /// every chunk has that many.
    Setrep {
        replication: u32,
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
        #[arg(short = 'w')]
        wait: bool,
    },
    /// Masters with roles; chunkservers with state, space and chunk counts; healing progress.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Administration.
    #[command(subcommand)]
    Admin(AdminCmd),
    /// Check files for missing or under-replicated chunks (non-zero exit when data is at risk).
    Fsck {
        #[arg(default_value = "/")]
        path: String,
    },
}

#[derive(Subcommand)]
pub enum AdminCmd {
    /// Move every replica off a chunkserver (by node id, see `shale status`); then it can be
    /// removed with nothing lost.
    Drain {
        node: u64,
        /// Put the server back in service instead.
        #[arg(long)]
        undo: bool,
        /// Wait until the server holds no replicas (explaining why, if it cannot finish).
        #[arg(long)]
        wait: bool,
    },
    /// Forget a dead chunkserver (by node id). Refused while it is alive or may hold the only
    /// replica of a chunk; its disk is untouched (it registers again if started).
    RemoveChunkserver { node: u64 },
    /// Add a master to the group (start it first with an empty --data and no --peers).
    AddMaster { id: u64, address: String },
    /// Remove a master from the group.
    RemoveMaster { id: u64 },
    /// Tell the group that master ID now listens at ADDRESS (restart it there first; a majority
    /// of the group must be up).
    SetMasterAddress { id: u64, address: String },
    /// Make a cluster CA (local: needs no cluster). Every server and client gets its `ca.pem`;
    /// keep `ca.key` safe.
    InitCa {
        /// Where to write `ca.pem` and `ca.key`.
        #[arg(long, default_value = "./shale-data/tls")]
        dir: PathBuf,
    },
    /// Issue a certificate from the cluster CA (local: needs no cluster): `ROLE NAME`, where ROLE
    /// is user, admin, master (NAME = its id) or chunkserver. Writes NAME.pem and NAME.key
    /// (master-ID / chunkserver-NAME for servers). Reissuing with --replace rotates it: running
    /// servers pick up new files within seconds (or at once on SIGHUP).
    Issue {
        role: shale_security::Role,
        name: String,
        /// A DNS name or IP address the server is reached at (repeat; servers only).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// The folder with the CA (`ca.pem`, `ca.key`).
        #[arg(long, default_value = "./shale-data/tls")]
        ca_dir: PathBuf,
        /// Where to write the certificate (default: the CA folder).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u64,
        /// Overwrite an existing certificate and key (rotation).
        #[arg(long)]
        replace: bool,
    },
    /// Supplementary groups (every user is also in the group of its own name).
    #[command(subcommand)]
    Group(GroupCmd),
    /// User tokens, for clients that cannot hold a certificate (`shale --token`).
    #[command(subcommand)]
    Token(TokenCmd),
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Have the masters sign a token naming USER; prints it (keep it secret: it is the
    /// user's password until it expires or all tokens are revoked).
    Issue {
        /// The user the token names (`name`, not `user`: that id is the global --user flag).
        #[arg(value_name = "USER")]
        name: String,
        /// Name an admin (superuser) instead of a user.
        #[arg(long)]
        admin: bool,
        /// Validity in days (at most 90).
        #[arg(long, default_value_t = 7)]
        days: u64,
    },
    /// Revoke every user token issued so far (the masters change their token key).
    Revoke,
}

#[derive(Subcommand)]
pub enum GroupCmd {
    /// Add users to a group.
    Add {
        group: String,
        #[arg(required = true)]
        users: Vec<String>,
    },
    /// Remove users from a group.
    Remove {
        group: String,
        #[arg(required = true)]
        users: Vec<String>,
    },
    /// Every group with its members.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A client as the CLI uses it: this machine's host name as its host label.
pub(crate) async fn connect(masters: &[String], tls: &crate::tls::TlsArgs) -> Res<Client> {
    let transport = tls.client()?;
    let how = match (transport.principal(), transport.bearer()) {
        (Some(p), _) => format!(" (as {p}, over TLS)"),
        (None, Some(_)) => " (with a user token, over TLS)".to_string(),
        (None, None) => " (plaintext)".to_string(),
    };
    let config = ClientConfig {
        transport,
        host: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        ..ClientConfig::default()
    };
    Client::connect(masters, config).await.map_err(|e| {
        if matches!(e, shale_client::ClientError::Unauthenticated(_)) {
            return format!("the cluster refused this client{how}: {e}").into();
        }
        format!(
            "cannot reach the cluster{how}: {e}. Start one with `shale up`, or point the CLI \
             at yours with --masters host:port,… or SHALE_MASTERS"
        )
        .into()
    })
}

/// What can be checked without the cluster.
enum Checked {
    Put(Vec<transfer::Source>),
    Append(Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    Nothing,
}

fn check(cmd: &FileCmd) -> Res<Checked> {
    Ok(match cmd {
        FileCmd::Put {
            sources, recursive, ..
        } => Checked::Put(transfer::check_put(sources, *recursive)?),
        FileCmd::Append { source, .. } => Checked::Append(append::open_source(source)?),
        FileCmd::Get {
            sources,
            dest,
            recursive,
        } => {
            transfer::check_get(sources, dest, *recursive)?;
            Checked::Nothing
        }
        _ => Checked::Nothing,
    })
}

/// Runs a file or cluster command.
pub async fn run(masters: &[String], tls: &crate::tls::TlsArgs, cmd: FileCmd) -> Res<ExitCode> {
    // Certificate work is local: no cluster needed.
    match cmd {
        FileCmd::Admin(AdminCmd::InitCa { dir }) => {
            crate::tls::init_ca(&dir)?;
            return Ok(ExitCode::SUCCESS);
        }
        FileCmd::Admin(AdminCmd::Issue {
            role,
            name,
            hosts,
            ca_dir,
            out,
            days,
            replace,
        }) => {
            crate::tls::issue(&ca_dir, out.as_deref(), role, &name, hosts, days, replace)?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let checked = check(&cmd)?;
    let c = connect(masters, tls).await?;
    let work = execute(&c, cmd, checked);
    tokio::select! {
        r = work => {
            if r.is_err() {
                // A failed put abandons its file in the background: let that reach the masters
                // so the path (and its quota) is free when this command exits.
                c.settle(SETTLE).await;
            }
            r
        }
        _ = tokio::signal::ctrl_c() => {
            // `work` is dropped here: its clean-ups (abandoning a file being written, removing a
            // partial download) have run or been started; let them reach the masters.
            let settled = c.settle(SETTLE).await;
            eprintln!(
                "interrupted{}",
                if settled { "" } else { " (clean-up still pending: leases expire on their own)" }
            );
            Ok(ExitCode::from(130))
        }
    }
}

async fn execute(c: &Client, cmd: FileCmd, checked: Checked) -> Res<ExitCode> {
    match cmd {
        FileCmd::Put {
            dest,
            force,
            replication,
            mode,
            ..
        } => {
            let Checked::Put(sources) = checked else {
                return Err("internal: put was not checked".into());
            };
            let o = transfer::PutOpts {
                force,
                replication,
                mode,
            };
            transfer::put(c, sources, &dest, &o).await?;
        }
        FileCmd::Get {
            sources,
            dest,
            recursive,
        } => transfer::get(c, &sources, &dest, recursive).await?,
        FileCmd::Cat { paths } => transfer::cat(c, &paths).await?,
        FileCmd::Tail { path, bytes } => transfer::tail(c, &path, bytes).await?,
        FileCmd::Touchz { paths } => transfer::touchz(c, &paths).await?,
        FileCmd::Ls {
            paths,
            long,
            human,
            directory,
            json,
            ..
        } => {
            let o = listing::LsOpts {
                long,
                human,
                dirs_themselves: directory,
                json,
            };
            listing::ls(c, &paths, &o).await?
        }
        FileCmd::Stat { paths, json } => listing::stat(c, &paths, json).await?,
        FileCmd::Verify { paths, json } => {
            if !listing::verify(c, &paths, json).await? {
                // Let the reports of bad replicas reach the masters.
                c.settle(SETTLE).await;
                return Err("replicas do not match their digests (see above)".into());
            }
        }
        FileCmd::Du {
            paths,
            summary,
            human,
            json,
            ..
        } => {
            let o = listing::DuOpts {
                summary,
                human,
                json,
            };
            listing::du(c, &paths, &o).await?
        }
        FileCmd::Df { human, json, .. } => listing::df(c, human, json).await?,
        FileCmd::Count {
            paths, human, json, ..
        } => listing::count(c, &paths, human, json).await?,
        FileCmd::Test {
            path,
            exists,
            dir,
            file,
            empty,
            nonempty: _,
        } => {
            let t = if exists {
                listing::Test::Exists
            } else if dir {
                listing::Test::Dir
            } else if file {
                listing::Test::File
            } else if empty {
                listing::Test::Empty
            } else {
                listing::Test::NonEmpty
            };
            if !listing::test(c, &path, t).await? {
                return Ok(ExitCode::from(1));
            }
        }
        FileCmd::Mkdir {
            paths,
            parents,
            mode,
        } => {
            for p in paths {
                c.mkdir_mode(&p, parents, mode)
                    .await
                    .map_err(|e| format!("{p}: {e}"))?;
            }
        }
        FileCmd::Chmod {
            mode,
            paths,
            recursive,
        } => perms::change(c, &paths, &perms::Change::Mode(mode), recursive).await?,
        FileCmd::Chown {
            owner: (o, g),
            paths,
            recursive,
        } => perms::change(c, &paths, &perms::Change::Owner(o, g), recursive).await?,
        FileCmd::Whoami { json } => perms::whoami(c, json).await?,
        FileCmd::Mv {
            sources,
            dest,
            force,
        } => mv(c, &sources, &dest, force).await?,
        FileCmd::Cp {
            sources,
            dest,
            force,
            recursive,
        } => transfer::cp(c, &sources, &dest, force, recursive).await?,
        FileCmd::Rm {
            paths: patterns,
            recursive,
            force,
            skip_trash,
        } => space::rm(c, &patterns, recursive, force, skip_trash).await?,
        FileCmd::Append {
            path,
            source,
            whole,
            offsets,
            id,
            replication,
            mode,
        } => {
            let Checked::Append(src) = checked else {
                return Err("append: no source".into());
            };
            let opts = shale_client::AppendOptions {
                replication,
                mode: mode.unwrap_or(0),
                ..Default::default()
            };
            let args = append::Args {
                path,
                source,
                whole,
                offsets,
                id,
                opts,
            };
            append::run(c, args, src).await?
        }
        FileCmd::Seal { path } => {
            c.seal_append(&path)
                .await
                .map_err(|e| format!("{path}: {e}"))?;
            eprintln!("{path} sealed");
        }
        FileCmd::Trash(t) => space::trash(c, t).await?,
        FileCmd::Quota(q) => space::quota(c, q).await?,
        FileCmd::Snapshot(s) => snapshot::run(c, s).await?,
        FileCmd::Setrep {
            replication,
            paths,
            wait,
        } => admin::setrep(c, replication, &paths, wait).await?,
        FileCmd::Status { json } => admin::status(c, json).await?,
        FileCmd::Admin(a) => admin_cmd(c, a).await?,
        FileCmd::Fsck { path } => {
            if !crate::fsck::run(c, &path).await? {
                return Err("data at risk (see above)".into());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `mv SRC... DST`: into DST when it is a directory (or several sources); never replaces an
/// existing file without `force`.
async fn mv(c: &Client, sources: &[String], dest: &str, force: bool) -> Res {
    let sources = paths::expand_all(c, sources).await?;
    let shown = dest;
    let (dest, slash) = paths::dest(dest);
    let into_dir = match c.stat(dest).await {
        Ok(s) => s.is_dir,
        Err(shale_client::ClientError::NotFound(_)) => false,
        Err(e) => return Err(e.into()),
    };
    if (sources.len() > 1 || slash) && !into_dir {
        return Err(format!("{shown}: not an existing directory").into());
    }
    for s in &sources {
        let target = if into_dir {
            paths::join(dest, paths::base(s))
        } else {
            dest.to_string()
        };
        let r = if force {
            c.rename(s, &target).await
        } else {
            c.rename_no_replace(s, &target).await
        };
        match r {
            Ok(()) => {}
            Err(shale_client::ClientError::AlreadyExists(_)) if !force => {
                return Err(format!("{target}: exists (use -f to replace a file)").into())
            }
            Err(e) => return Err(format!("{s} → {target}: {e}").into()),
        }
    }
    Ok(())
}

async fn admin_cmd(c: &Client, a: AdminCmd) -> Res {
    match a {
        AdminCmd::Drain { node, undo, wait } => admin::drain(c, node, !undo, wait).await,
        AdminCmd::AddMaster { id, address } | AdminCmd::SetMasterAddress { id, address } => {
            let s = c.admin().add_master(id, &address).await?;
            admin::print_masters(&s);
            Ok(())
        }
        AdminCmd::RemoveMaster { id } => {
            let s = c.admin().remove_master(id).await?;
            admin::print_masters(&s);
            Ok(())
        }
        AdminCmd::RemoveChunkserver { node } => {
            c.admin().remove_chunkserver(node).await?;
            output::say!("chunkserver {node} removed");
            Ok(())
        }
        AdminCmd::Group(GroupCmd::Ls { json }) => perms::groups(c, json).await,
        AdminCmd::Token(TokenCmd::Issue {
            name: user,
            admin,
            days,
        }) => {
            let t = c.issue_user_token(&user, admin, days * 86_400_000).await?;
            output::say!("{}", t.token);
            eprintln!(
                "token for {} {user}, valid until {}: use it with `shale --token TOKEN …` or \
                 SHALE_TOKEN",
                if admin { "admin" } else { "user" },
                output::iso8601(t.expires_ms)
            );
            Ok(())
        }
        AdminCmd::Token(TokenCmd::Revoke) => {
            c.revoke_user_tokens().await?;
            output::say!("every user token issued so far is revoked");
            Ok(())
        }
        AdminCmd::Group(GroupCmd::Add { group, users }) => {
            for u in users {
                c.set_group_member(&group, &u, true).await?;
            }
            Ok(())
        }
        AdminCmd::Group(GroupCmd::Remove { group, users }) => {
            for u in users {
                c.set_group_member(&group, &u, false).await?;
            }
            Ok(())
        }
        AdminCmd::InitCa { .. } | AdminCmd::Issue { .. } => {
            Err("internal: certificate commands run without a cluster".into())
        }
    }
}
