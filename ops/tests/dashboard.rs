//! The operator's dashboard (issue: operations, item 4) on a cluster with one dead chunkserver
//! being healed: its JSON API (`/api/dashboard`) from a follower's status port agrees with
//! what happened (rates from the write and the reads, the dead server, healing progress to
//! 100 %), and headless Chromium renders the page — the DOM has every section and the
//! expected rows, and the screenshot has the bars and graph lines drawn (its pixels are
//! counted). The screenshot is kept at `target/tmp/dashboard.png` for a human to look at.
//! Without Chromium (`.ci/run` installs Debian's), the browser half is skipped with a message.
mod common;

use common::*;
use serde_json::Value;
use shale_client::Client;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

async fn dashboard(http: &str) -> Option<Value> {
    match https_get(http, "/api/dashboard").await? {
        (200, body) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// Waits (bounded) until the dashboard JSON at `http` satisfies `ok`; returns it.
async fn wait_dashboard(http: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = None;
    loop {
        if let Some(d) = dashboard(http).await {
            if ok(&d) {
                return d;
            }
            last = Some(d);
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard never showed {what}: {last:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_of_a_cluster_healing_a_dead_chunkserver() {
    // Slow healing (one copy per server, a round every 700 ms) so that it is seen running.
    let mut cluster = Cluster::start_with(
        4,
        1,
        &[
            "--heal-interval-ms",
            "700",
            "--copies-per-server",
            "1",
            "--safe-mode-ms",
            "500",
            "--stale-after-ms",
            "600",
            "--dead-after-ms",
            "1500",
        ],
        &[],
    )
    .await;
    let masters = cluster.master_addrs();
    let c = Client::connect(&masters, client_config())
        .await
        .expect("connect");
    let data: Vec<u8> = (0..(24u32 << 20)).map(|i| (i % 251) as u8).collect();
    c.put("/big", &data[..], Default::default(), &|_| {})
        .await
        .expect("put");
    let mut back = Vec::new();
    c.get("/big", &mut back, &|_| {}).await.expect("get");
    assert!(back == data);

    // A follower's dashboard: the leader's figures, every member's indexes, the rates.
    let lead = leader(&masters).await;
    let follower = cluster
        .masters
        .iter()
        .find(|m| m.addr != lead)
        .expect("a follower");
    let http = follower.http.clone();
    assert!(!http.is_empty(), "no status port");
    let d = wait_dashboard(&http, "the write and the read in its graphs", |d| {
        let h = d["history"].as_array().cloned().unwrap_or_default();
        h.iter().any(|s| num(&s["write_bytes_per_s"]) > 0.0)
            && h.iter().any(|s| num(&s["read_bytes_per_s"]) > 0.0)
            && h.iter().any(|s| num(&s["requests_per_s"]) > 0.0)
    })
    .await;
    assert_eq!(d["role"], "follower", "{d:#}");
    assert!(d["leader"].as_u64().is_some_and(|l| l > 0), "{d:#}");
    let members = d["masters"].as_array().expect("masters");
    assert_eq!(members.len(), 3, "{d:#}");
    for m in members {
        assert_eq!(m["answering"], true, "{m}");
        let (log, commit, applied) = (
            num(&m["last_log_index"]),
            num(&m["committed_index"]),
            num(&m["applied_index"]),
        );
        assert!(log >= commit && commit > 0.0 && applied > 0.0, "{m}");
    }
    // Bytes written: three replicas of 24 MiB, all in the kept window.
    let written: f64 = d["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|s| num(&s["write_bytes_per_s"]) * num(&s["span_ms"]))
        .sum::<f64>()
        / 1000.0;
    assert!(
        written >= 0.9 * 72.0 * (1 << 20) as f64,
        "only {written} bytes written in the graphs"
    );

    // A chunkserver dies; the dashboard shows it dead and the chunks being healed.
    let dead_node = {
        let s = status(&lead).await;
        let cs = &cluster.chunkservers[0];
        s.chunkservers
            .iter()
            .find(|x| x.address == cs.addr)
            .expect("listed")
            .node_id
    };
    cluster.chunkservers[0].kill9();
    let d = wait_dashboard(&http, "the dead server and healing in progress", |d| {
        let dead = d["chunkservers"].as_array().is_some_and(|a| {
            a.iter()
                .any(|c| c["node"] == dead_node && c["state"] == "dead")
        });
        let h = &d["health"]["healing"];
        dead && num(&d["health"]["under_replicated"]) > 0.0 && num(&h["peak"]) > 0.0
    })
    .await;
    let at_risk = d["at_risk"].as_array().expect("files at risk");
    assert!(
        at_risk.iter().any(|a| a["path"] == "/big"),
        "the file is not listed at risk: {d:#}"
    );

    browser_checks(&http, cluster.dir.path()).await;

    // Healing finishes, and the dashboard says so.
    let d = wait_dashboard(&http, "healing done", |d| {
        let h = &d["health"];
        h["under_replicated"] == 0
            && h["missing"] == 0
            && num(&h["healing"]["percent_done"]) >= 100.0
    })
    .await;
    assert!(
        num(&d["health"]["healing"]["peak"]) > 0.0
            || d["at_risk"].as_array().is_some_and(|a| a.is_empty()),
        "{d:#}"
    );
    back.clear();
    c.get("/big", &mut back, &|_| {}).await.expect("get");
    assert!(back == data);
}

/// Chromium, if installed: renders the page of `http`, dumps its DOM and takes a screenshot.
async fn browser_checks(http: &str, dir: &Path) {
    let Some(chromium) = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        eprintln!("skipping the browser checks: no Chromium (apt-get install chromium)");
        return;
    };
    let url = format!("https://{http}/");
    let profile = dir.join("chromium-profile");
    let shot = dir.join("dashboard.png");
    let run = |extra: &[String]| {
        let mut cmd = Command::new(chromium);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--ignore-certificate-errors",
            "--hide-scrollbars",
            "--window-size=1280,1800",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(&url);
        cmd
    };
    let out = tokio::task::spawn_blocking({
        let mut cmd = run(&["--dump-dom".to_string()]);
        move || cmd.output()
    })
    .await
    .expect("join")
    .expect("run chromium --dump-dom");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for id in [
        "summary",
        "masters",
        "health",
        "healing",
        "graphs",
        "chunkservers",
        "at-risk",
    ] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "no #{id} in {dom}");
    }
    assert_eq!(
        dom.matches("class=\"cap\"").count(),
        4,
        "capacity bars: {dom}"
    );
    assert!(dom.matches("<polyline").count() >= 3, "graphs: {dom}");
    assert!(dom.contains("dead") && dom.contains("/big"), "{dom}");
    assert!(dom.contains("follower") && dom.contains("leader"), "{dom}");

    let out = tokio::task::spawn_blocking({
        let mut cmd = run(&[format!("--screenshot={}", shot.display())]);
        move || cmd.output()
    })
    .await
    .expect("join")
    .expect("run chromium --screenshot");
    assert!(
        out.status.success() && shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::copy(&shot, &keep);
    let (w, h, pixels) = decode_rgb(&shot);
    assert_eq!((w, h), (1280, 1800), "screenshot size");
    let count = |rgb: [u8; 3]| pixels.chunks_exact(3).filter(|p| *p == rgb).count();
    // Five bars (four capacities, healing) of 120 x 12 pixels each: a light grey track,
    // filled in green as far as the bar goes; graph lines in blue, two pixels wide.
    let bars = count([0xe4, 0xe4, 0xe4]) + count([0x2a, 0x9d, 0x4b]);
    let line = count([0x1f, 0x5f, 0xbf]);
    let text = pixels
        .chunks_exact(3)
        .filter(|p| p.iter().all(|c| *c < 0x60))
        .count();
    assert!(
        bars >= 5 * 120 * 12 * 9 / 10,
        "bars not drawn: {bars} bar pixels ({keep:?})"
    );
    assert!(
        line >= 200,
        "graph lines not drawn: {line} pixels ({keep:?})"
    );
    assert!(
        text >= 5_000,
        "no text drawn: {text} dark pixels ({keep:?})"
    );
}

/// The screenshot's size and RGB pixels.
fn decode_rgb(path: &Path) -> (u32, u32, Vec<u8>) {
    let file = std::fs::File::open(path).expect("open screenshot");
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a frame");
    buf.truncate(info.buffer_size());
    let rgb = match info.color_type {
        png::ColorType::Rgb => buf,
        png::ColorType::Rgba => buf
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        other => panic!("unexpected colour type {other:?}"),
    };
    (info.width, info.height, rgb)
}
