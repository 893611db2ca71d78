//! Configuration files and environment variables for every flag.
//!
//! * A server takes one TOML file: `shale master --config m1.toml` (or `SHALE_MASTER_CONFIG`),
//!   `shale chunkserver --config cs1.toml` (`SHALE_CHUNKSERVER_CONFIG`). Its keys are the
//!   command's flags with `_` or `-` (`chunk_size_mib = 64`), plus the global ones it uses
//!   (`masters`, `tls_dir`, `insecure`).
//! * Every flag of `master` and `chunkserver` also reads an environment variable:
//!   `SHALE_MASTER_<FLAG>` / `SHALE_CHUNKSERVER_<FLAG>` (`SHALE_MASTER_CHUNK_SIZE_MIB=128`);
//!   the global ones keep theirs (`SHALE_MASTERS`, `SHALE_TLS_DIR`, `SHALE_USER`).
//! * The other commands read the client file: `SHALE_CONFIG`, else
//!   `~/.config/shale/client.toml` if it exists, with the keys `masters`, `tls_dir`, `user`,
//!   `token` and `insecure`.
//! * Precedence: flag > environment > file > built-in default (file values become the flags'
//!   defaults before parsing). A key that is not a flag of the command, or a value its flag
//!   refuses, stops the command with an error naming the file and the key.
//! * `shale config example master|chunkserver|client` prints a commented template generated
//!   from the flags themselves (so it lists every key, with its help, default and variable).
use clap::{Arg, ArgAction, Command};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The commands that take a server configuration file.
pub const SERVERS: [&str; 2] = ["master", "chunkserver"];
/// Global flags that a file may set.
const GLOBAL_KEYS: [&str; 5] = ["masters", "tls_dir", "user", "token", "insecure"];
/// Flags never read from a file or the environment.
const SKIP: [&str; 3] = ["help", "version", "config"];

/// The environment variable of flag `id` of server `cmd`.
pub fn env_name(cmd: &str, id: &str) -> String {
    format!(
        "SHALE_{}_{}",
        cmd.to_uppercase(),
        id.to_uppercase().replace('-', "_")
    )
}

/// The subcommand named in `argv` (skipping global flags and their values).
fn subcommand(argv: &[OsString]) -> Option<String> {
    let takes_value = ["--masters", "--tls-dir", "--user", "--token"];
    let mut skip = false;
    for a in argv.iter().skip(1) {
        if skip {
            skip = false;
            continue;
        }
        let s = a.to_string_lossy();
        if takes_value.contains(&s.as_ref()) {
            skip = true;
        } else if !s.starts_with('-') {
            return Some(s.into_owned());
        }
    }
    None
}

/// The value of `--config` after the subcommand in `argv`.
fn config_flag(argv: &[OsString], sub: &str) -> Option<PathBuf> {
    let start = argv.iter().position(|a| a == sub)?;
    let mut it = argv[start + 1..].iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = s.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    None
}

/// A TOML value as the command line would give it (several for arrays).
fn values(v: &toml::Value) -> Result<Vec<String>, String> {
    Ok(match v {
        toml::Value::String(s) => vec![s.clone()],
        toml::Value::Integer(i) => vec![i.to_string()],
        toml::Value::Float(f) => vec![f.to_string()],
        toml::Value::Boolean(b) => vec![b.to_string()],
        toml::Value::Array(a) => {
            let mut out = Vec::new();
            for x in a {
                out.extend(values(x)?);
            }
            out
        }
        other => return Err(format!("a {} is not a flag value", other.type_str())),
    })
}

fn load(path: &Path) -> Result<toml::Table, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("configuration file {}: {e}", path.display()))?;
    text.parse::<toml::Table>()
        .map_err(|e| format!("configuration file {}: {e}", path.display()))
}

/// Makes `arg` default to the file's value, checked first by the flag's own parser (a trial
/// parse of a command holding just that flag).
fn set_default(arg: &Arg, vals: Vec<String>, where_: &str) -> Result<Arg, String> {
    let id = arg.get_id().to_string();
    if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        if let Some(v) = vals.iter().find(|v| *v != "true" && *v != "false") {
            return Err(format!(
                "{where_}: key `{id}` must be true or false, not {v:?}"
            ));
        }
    } else if let Some(long) = arg.get_long() {
        let trial = Command::new("config")
            .no_binary_name(true)
            .arg(arg.clone().required(false).global(false).env(None::<&str>));
        let mut argv: Vec<String> = Vec::new();
        for v in &vals {
            argv.push(format!("--{long}={v}"));
        }
        trial.try_get_matches_from(argv).map_err(|e| {
            let msg = e.to_string();
            let first = msg
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ");
            format!("{where_}: key `{id}`: {first}")
        })?;
    }
    // A required flag the file gives is no longer required on the command line.
    let a = arg.clone().required(false);
    Ok(if vals.len() == 1 {
        a.default_value(vals[0].clone())
    } else {
        a.default_values(vals)
    })
}

/// Applies the environment variables and the configuration file `argv` selects to `root`
/// (see the module doc).
pub fn prepare(mut root: Command, argv: &[OsString]) -> Result<Command, String> {
    // Not built: a built command's argument index does not follow `mut_arg`.
    for name in SERVERS {
        if root.find_subcommand(name).is_none() {
            continue;
        }
        root = root.mut_subcommand(name, |mut sub| {
            let ids: Vec<String> = sub
                .get_arguments()
                .filter(|a| !a.is_global_set() && !SKIP.contains(&a.get_id().as_str()))
                .filter(|a| a.get_env().is_none() && !a.is_positional())
                .map(|a| a.get_id().to_string())
                .collect();
            for id in ids {
                let env = env_name(name, &id);
                sub = sub.mut_arg(id, |a| a.env(env));
            }
            sub
        });
    }
    let sub = subcommand(argv);
    let (file, server) = match sub.as_deref() {
        Some(s) if SERVERS.contains(&s) => {
            let f = config_flag(argv, s)
                .or_else(|| std::env::var_os(env_name(s, "config")).map(PathBuf::from));
            (f, Some(s.to_string()))
        }
        Some("config") => (None, None),
        _ => (client_file(), None),
    };
    let Some(path) = file else {
        return Ok(root);
    };
    let table = load(&path)?;
    let where_ = path.display().to_string();
    for (key, v) in &table {
        let id = key.replace('-', "_");
        let vals = values(v).map_err(|e| format!("{where_}: key `{key}`: {e}"))?;
        let in_sub = server.as_deref().and_then(|s| {
            root.find_subcommand(s).and_then(|c| {
                c.get_arguments()
                    .find(|a| a.get_id() == id.as_str() && !SKIP.contains(&id.as_str()))
                    .cloned()
            })
        });
        if let Some(arg) = in_sub {
            let s = server.clone().unwrap_or_default();
            let new = set_default(&arg, vals, &where_)?;
            root = root.mut_subcommand(s, |c| c.mut_arg(id.clone(), |_| new));
            continue;
        }
        let global = root
            .get_arguments()
            .find(|a| a.get_id() == id.as_str() && GLOBAL_KEYS.contains(&id.as_str()))
            .cloned();
        let Some(arg) = global else {
            let mut known: Vec<String> = GLOBAL_KEYS.iter().map(|k| k.to_string()).collect();
            if let Some(c) = server.as_deref().and_then(|s| root.find_subcommand(s)) {
                known.extend(
                    c.get_arguments()
                        .filter(|a| !a.is_global_set() && !a.is_hide_set())
                        .map(|a| a.get_id().to_string())
                        .filter(|k| !SKIP.contains(&k.as_str())),
                );
            }
            return Err(format!(
                "{where_}: unknown key `{key}` (keys: {})",
                known.join(", ")
            ));
        };
        let new = set_default(&arg, vals, &where_)?;
        root = root.mut_arg(id, |_| new);
    }
    Ok(root)
}

/// The client configuration file, if there is one.
fn client_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SHALE_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let p = PathBuf::from(std::env::var_os("HOME")?).join(".config/shale/client.toml");
    p.exists().then_some(p)
}

/// Example values for keys that have no default.
fn example(cmd: &str, id: &str) -> Option<&'static str> {
    Some(match (cmd, id) {
        ("master", "id") => "1",
        ("master", "data") => "\"/var/lib/shale/master\"",
        ("chunkserver", "data") => "\"/var/lib/shale/chunks\"",
        ("chunkserver", "host") => "\"host-a\"",
        (_, "masters") => "\"10.0.0.1:7101,10.0.0.2:7101,10.0.0.3:7101\"",
        (_, "tls_dir") => "\"/etc/shale/tls\"",
        _ => return None,
    })
}

fn toml_value(arg: &Arg, v: &str) -> String {
    let numeric = v.parse::<f64>().is_ok();
    let flag = matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse);
    if numeric || flag {
        v.to_string()
    } else {
        format!("{v:?}")
    }
}

/// A commented template for `what` (master, chunkserver or client), from the flags.
pub fn example_file(mut root: Command, what: &str) -> Result<String, String> {
    root.build();
    let (args, cmd): (Vec<Arg>, &str) = match what {
        "client" => (
            root.get_arguments()
                .filter(|a| GLOBAL_KEYS.contains(&a.get_id().as_str()))
                .cloned()
                .collect(),
            "client",
        ),
        s if SERVERS.contains(&s) => {
            let sub = root
                .find_subcommand(s)
                .ok_or_else(|| format!("no command {s}"))?;
            let mut v: Vec<Arg> = sub
                .get_arguments()
                .filter(|a| !a.is_hide_set() && !SKIP.contains(&a.get_id().as_str()))
                .filter(|a| {
                    !a.is_global_set()
                        || ["masters", "tls_dir", "insecure"].contains(&a.get_id().as_str())
                })
                .cloned()
                .collect();
            v.sort_by_key(|a| a.is_global_set());
            (v, s)
        }
        other => {
            return Err(format!(
                "no example for {other:?}: master, chunkserver or client"
            ))
        }
    };
    let mut out = match cmd {
        "client" => "# Shale client configuration: ~/.config/shale/client.toml, or the file named by\n# SHALE_CONFIG. Flags and environment variables override it.\n".to_string(),
        s => format!("# Shale {s} configuration: `shale {s} --config FILE` (or {}).\n# Precedence: flag > environment variable > this file > default.\n", env_name(s, "config")),
    };
    for a in args {
        let id = a.get_id().to_string();
        out.push('\n');
        if let Some(h) = a.get_long_help().or(a.get_help()) {
            for line in textwrap(&h.to_string(), 96) {
                out += &format!("# {line}\n");
            }
        }
        // Global flags keep their own variables (if any); server flags get SHALE_<CMD>_<FLAG>.
        let env = match a.get_env() {
            Some(e) => Some(e.to_string_lossy().into_owned()),
            None if !a.is_global_set() && cmd != "client" => Some(env_name(cmd, &id)),
            None => None,
        };
        if let Some(env) = env {
            out += &format!("# Environment: {env}\n");
        }
        let default: Vec<String> = a
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        // A chunkserver must name its masters (the default is `shale up`'s).
        let needed = cmd == "chunkserver" && id == "masters";
        match (example(cmd, &id), default.first()) {
            (Some(ex), _) if a.is_required_set() || default.is_empty() || needed => {
                out += &format!("{id} = {ex}\n")
            }
            (_, Some(d)) => out += &format!("# {id} = {}\n", toml_value(&a, d)),
            (_, None) => out += &format!("# {id} =\n"),
        }
    }
    Ok(out)
}

fn textwrap(s: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for w in s.split_whitespace() {
        if !cur.is_empty() && cur.len() + 1 + w.len() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(w);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Parser, Subcommand};

    #[derive(Parser, Debug)]
    struct Cli {
        #[arg(
            long,
            global = true,
            env = "SHALE_TEST_MASTERS_X",
            default_value = "d:1"
        )]
        masters: String,
        #[command(subcommand)]
        cmd: Sub,
    }

    #[derive(Subcommand, Debug)]
    enum Sub {
        Master {
            #[arg(long)]
            id: u64,
            #[arg(long, default_value_t = 64)]
            chunk_size_mib: u64,
            #[arg(long)]
            fast: bool,
            #[arg(long)]
            config: Option<PathBuf>,
        },
    }

    fn parse(file: &str, args: &[&str]) -> Result<(String, u64, u64, bool), String> {
        use clap::{CommandFactory, FromArgMatches};
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let p = dir.path().join("m.toml");
        std::fs::write(&p, file).map_err(|e| e.to_string())?;
        let mut argv: Vec<OsString> = vec!["shale".into(), "master".into()];
        argv.push("--config".into());
        argv.push(p.clone().into());
        argv.extend(args.iter().map(OsString::from));
        let cmd = prepare(Cli::command(), &argv)?;
        let m = cmd.try_get_matches_from(argv).map_err(|e| e.to_string())?;
        let cli = Cli::from_arg_matches(&m).map_err(|e| e.to_string())?;
        let Sub::Master {
            id,
            chunk_size_mib,
            fast,
            ..
        } = cli.cmd;
        Ok((cli.masters, id, chunk_size_mib, fast))
    }

    #[test]
    fn files_set_flags_with_flags_first() {
        let f = "id = 3\nchunk-size-mib = 128\nfast = true\nmasters = \"a:1,b:2\"\n";
        assert_eq!(parse(f, &[]), Ok(("a:1,b:2".into(), 3, 128, true)));
        // A flag wins over the file.
        assert_eq!(
            parse(f, &["--chunk-size-mib", "256", "--id", "4"]),
            Ok(("a:1,b:2".into(), 4, 256, true))
        );
        // Built-in defaults remain for keys the file leaves out.
        assert_eq!(parse("id = 1", &[]), Ok(("d:1".into(), 1, 64, false)));
    }

    #[test]
    fn bad_files_name_the_key() {
        let e = parse("id = 1\nchunk_size = 64\n", &[]).expect_err("unknown key");
        assert!(
            e.contains("unknown key `chunk_size`") && e.contains("chunk_size_mib"),
            "{e}"
        );
        let e = parse("id = \"one\"\n", &[]).expect_err("bad value");
        assert!(e.contains("key `id`") && e.contains("m.toml"), "{e}");
        let e = parse("id = 1\nfast = 3\n", &[]).expect_err("bad bool");
        assert!(e.contains("key `fast` must be true or false"), "{e}");
        let e = parse("id = [", &[]).expect_err("not TOML");
        assert!(e.contains("m.toml"), "{e}");
    }

    #[test]
    fn subcommands_are_found_past_global_flags() {
        let v = |s: &[&str]| s.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            subcommand(&v(&["shale", "--masters", "x", "master"])).as_deref(),
            Some("master")
        );
        assert_eq!(
            subcommand(&v(&["shale", "--insecure", "ls", "/"])).as_deref(),
            Some("ls")
        );
        assert_eq!(
            config_flag(&v(&["shale", "master", "--config=a.toml"]), "master"),
            Some(PathBuf::from("a.toml"))
        );
        assert_eq!(
            env_name("master", "chunk_size_mib"),
            "SHALE_MASTER_CHUNK_SIZE_MIB"
        );
    }
}
