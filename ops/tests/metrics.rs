//! Every `/metrics` endpoint passes `promtool check metrics` (Prometheus's own linter, from
//! Debian's `prometheus` package, which `.ci/run` installs): three masters and two
//! chunkservers, scraped after a write and a read so that histograms and counters have
//! samples. Without promtool the check is skipped with a message.
mod common;

use common::*;
use shale_client::Client;
use std::io::Write;
use std::process::{Command, Stdio};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metrics_endpoint_passes_promtool() {
    let Some(promtool) = ["/usr/bin/promtool", "/usr/local/bin/promtool"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        eprintln!("skipping: no promtool (apt-get install prometheus)");
        return;
    };
    let cluster = Cluster::start(2, 1).await;
    let c = Client::connect(&cluster.master_addrs(), client_config())
        .await
        .expect("connect");
    let data = vec![7u8; 3 << 20];
    c.put("/m", &data[..], Default::default(), &|_| {})
        .await
        .expect("put");
    let mut back = Vec::new();
    c.get("/m", &mut back, &|_| {}).await.expect("get");
    let ports: Vec<(String, &str)> = cluster
        .masters
        .iter()
        .map(|m| (m.http.clone(), "master"))
        .chain(
            cluster
                .chunkservers
                .iter()
                .map(|s| (s.http.clone(), "chunkserver")),
        )
        .collect();
    for (http, what) in ports {
        let (code, body) = https_get(&http, "/metrics")
            .await
            .unwrap_or_else(|| panic!("{what} {http}: no answer"));
        assert_eq!(code, 200, "{what} {http}: {body}");
        assert!(body.contains("# HELP"), "{what}: {body}");
        let mut child = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run promtool");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(body.as_bytes())
            .expect("feed promtool");
        let out = child.wait_with_output().expect("promtool");
        assert!(
            out.status.success(),
            "promtool finds problems in the {what}'s metrics at {http}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
