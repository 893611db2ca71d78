//! Configuration files, end to end: `shale config example` prints templates that parse; a
//! master starts from its file alone; precedence is flag > environment > file > default; a bad
//! key stops a server at once naming the file and the key; the CLI reads its client file.
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn shale() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shale"));
    c.env("RUST_LOG", "error")
        .env_remove("SHALE_CONFIG")
        .env_remove("SHALE_MASTERS");
    c
}

fn example(what: &str) -> String {
    let o = shale()
        .args(["config", "example", what])
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).expect("utf-8")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts `shale master --config FILE ARGS` with `env`; its first stdout line.
fn master_line(file: &std::path::Path, args: &[&str], env: &[(&str, String)]) -> String {
    let mut c = shale();
    c.args(["master", "--config"]).arg(file).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    let out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut l = String::new();
        let _ = BufReader::new(out).read_line(&mut l);
        l
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !reader.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if reader.is_finished() {
        line = reader.join().unwrap_or_default();
    }
    let _ = child.kill();
    let _ = child.wait();
    line
}

#[test]
fn servers_start_from_files_with_flags_and_environment_on_top() {
    let dir = tempfile::tempdir().expect("tmp");
    // Every template is valid TOML.
    for what in ["master", "chunkserver", "client"] {
        let t = example(what);
        t.parse::<toml::Table>()
            .unwrap_or_else(|e| panic!("{what} template is not TOML: {e}\n{t}"));
        assert!(t.contains("# Environment: SHALE_"), "{t}");
    }
    // The master template, filled in: the server starts from the file alone.
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let data = dir.path().join("m1");
    let file = dir.path().join("m1.toml");
    let t = example("master")
        .replace(
            "data = \"/var/lib/shale/master\"",
            &format!("data = {:?}", data.to_string_lossy()),
        )
        .replace("tls_dir = \"/etc/shale/tls\"", "insecure = true")
        .replace(
            "# http = \"127.0.0.1:0\"",
            &format!("http = \"127.0.0.1:{p1}\""),
        );
    std::fs::write(&file, t).expect("write");
    let line = master_line(&file, &[], &[]);
    assert!(
        line.contains("listening on") && line.contains(&format!(":{p1}")),
        "{line}"
    );
    // Environment over file, flag over environment.
    let env = [("SHALE_MASTER_HTTP", format!("127.0.0.1:{p2}"))];
    let line = master_line(&file, &[], &env);
    assert!(line.contains(&format!(":{p2}")), "{line}");
    let flag = format!("127.0.0.1:{p3}");
    let line = master_line(&file, &["--http", &flag], &env);
    assert!(line.contains(&format!(":{p3}")), "{line}");
    // A bad key or value stops the server at once, naming the file and the key.
    let bad = dir.path().join("bad.toml");
    for (text, want) in [
        ("id = 1\nchunk_size = 64\n", "unknown key `chunk_size`"),
        ("id = 1\nreplication = \"three\"\n", "key `replication`"),
    ] {
        std::fs::write(&bad, text).expect("write");
        let o = shale()
            .args(["master", "--config"])
            .arg(&bad)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(want) && err.contains("bad.toml"),
            "{err}"
        );
    }
}

#[test]
fn the_cli_reads_its_client_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let dead = format!("127.0.0.1:{}", free_port());
    let file = dir.path().join("client.toml");
    std::fs::write(&file, format!("masters = \"{dead}\"\ninsecure = true\n")).expect("write");
    let o = shale()
        .env("SHALE_CONFIG", &file)
        .args(["ls", "/"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains(&dead), "{err}");
    // A flag still wins.
    let other = format!("127.0.0.1:{}", free_port());
    let o = shale()
        .env("SHALE_CONFIG", &file)
        .args(["--masters", &other, "ls", "/"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&other) && !err.contains(&dead), "{err}");
}

/// The deployment kit in `deploy/` uses only what the binary accepts: its configuration files
/// parse with every key known, the systemd units start the servers from those files, and the
/// Kubernetes manifests pass only real flags and probe the real health endpoints.
#[test]
fn the_deploy_kit_matches_the_binary() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    for (kind, file) in [
        ("master", "config/master.toml"),
        ("chunkserver", "config/chunkserver.toml"),
    ] {
        let o = shale()
            .args([kind, "--config"])
            .arg(root.join(file))
            .arg("--help")
            .output()
            .expect("run");
        assert!(
            o.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let unit = std::fs::read_to_string(root.join(format!("systemd/shale-{kind}.service")))
            .expect("unit");
        assert!(
            unit.contains(&format!(
                "ExecStart=/usr/local/bin/shale {kind} --config /etc/shale/{kind}.toml"
            )),
            "{unit}"
        );
    }
    let client = std::fs::read_to_string(root.join("config/client.toml")).expect("client");
    client.parse::<toml::Table>().expect("client.toml is TOML");
    for (kind, file) in [
        ("master", "k8s/masters.yaml"),
        ("chunkserver", "k8s/chunkservers.yaml"),
    ] {
        let yaml = std::fs::read_to_string(root.join(file)).expect("manifest");
        let help = shale().args([kind, "--help"]).output().expect("help");
        let help = String::from_utf8_lossy(&help.stdout);
        let start = yaml.find(&format!("exec shale {kind}")).expect("exec line");
        let flags: Vec<&str> = yaml[start..]
            .split_whitespace()
            .take_while(|w| !w.ends_with(':'))
            .filter(|w| w.starts_with("--"))
            .collect();
        assert!(flags.len() >= 5, "{file}: {flags:?}");
        for f in flags {
            assert!(
                help.contains(&format!("{f} ")),
                "{file}: `shale {kind}` has no {f}"
            );
        }
        assert!(
            yaml.contains("path: /readyz") && yaml.contains("path: /healthz"),
            "{file}"
        );
    }
}

/// The Grafana dashboard (`deploy/grafana/shale.json`) is valid JSON and queries only metric
/// families the servers define (a renamed metric would leave a panel silently empty).
#[test]
fn the_grafana_dashboard_queries_real_metrics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("deploy/grafana/shale.json")).expect("dashboard");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let sources: String = [
        "meta/src/server/metrics.rs",
        "chunk/src/metrics.rs",
        "chunk/src/server/scrub.rs",
        "raftlog/src/metrics.rs",
        "ops/src/http.rs",
    ]
    .iter()
    .map(|p| std::fs::read_to_string(root.join(p)).expect("source"))
    .collect();
    let mut checked = 0;
    for panel in dash["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().expect("expr");
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if !(word.starts_with("shale_") || word.starts_with("process_")) {
                    continue;
                }
                let family = word
                    .strip_suffix("_bucket")
                    .or_else(|| word.strip_suffix("_count"))
                    .or_else(|| word.strip_suffix("_sum"))
                    .unwrap_or(word);
                assert!(
                    sources.contains(&format!("\"{family}\"")),
                    "panel {:?} queries {family}, which no server defines",
                    panel["title"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 20, "{checked}");
}
