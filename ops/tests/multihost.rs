//! The operator's walkthrough on separate hosts (network namespaces with their own addresses on
//! a bridge, as the torture harness makes them; 127.0.0.1 with distinct ports when namespaces
//! cannot be made): 3 masters and 4 chunkservers, each started only from its configuration
//! file, over mutual TLS with certificates naming the hosts' addresses. Under a running put/get
//! load that must never fail: every server is restarted in turn (a rolling upgrade), master 4
//! is added and master 1 removed, and a chunkserver is drained, removed and replaced by a new
//! one.
mod common;

use common::spawn_server_line;
use shale_client::{Client, ClientConfig};
use shale_security::{Principal, Role};
use shale_torture::net::Net;
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_shale");

struct Server {
    child: Option<Child>,
    host: usize,
    args: Vec<String>,
    /// Its status port (`/readyz`).
    http: String,
}

impl Server {
    fn start(net: &Net, host: usize, args: Vec<String>) -> Server {
        let mut cmd = net.command(host, Path::new(BIN));
        cmd.args(&args).env(
            "RUST_LOG",
            std::env::var("MH_LOG").unwrap_or("error".into()),
        );
        let (child, _, line) = spawn_server_line(cmd);
        Server {
            child: Some(child),
            host,
            args,
            http: common::http_addr(&line).unwrap_or_default(),
        }
    }

    /// SIGTERM, then wait (bounded) for the exit.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: a signal to our own child.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self, net: &Net) {
        self.stop();
        *self = Server::start(net, self.host, self.args.clone());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Writes `name.toml` in `dir` and returns `--config PATH` for it.
fn config(dir: &Path, name: &str, text: String) -> Vec<String> {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).expect("write config");
    vec![
        kind(name).into(),
        "--config".into(),
        p.to_string_lossy().into_owned(),
    ]
}

fn kind(name: &str) -> &'static str {
    if name.starts_with('m') {
        "master"
    } else {
        "chunkserver"
    }
}

async fn wait(what: &str, secs: u64, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok().await {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether a server's `/readyz` answers 200 (its status port is HTTPS: the servers run TLS).
fn ready(http: &str) -> bool {
    let out = std::process::Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "2",
        ])
        .arg(format!("https://{http}/readyz"))
        .output();
    out.is_ok_and(|o| o.stdout == b"200")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_on_several_hosts_from_config_files() {
    let net = Net::new(9, 7);
    if let Some(why) = &net.fallback {
        println!("no namespaces ({why}): every host is 127.0.0.1");
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    // Hosts 0-2 masters 1-3, 3-6 chunkservers cs1-cs4, 7 master 4, 8 the replacement cs5.
    let port = |h: usize| 7100 + 10 * h as u16 + (std::process::id() % 50) as u16 * 100;
    let addr = |h: usize| format!("{}:{}", net.hosts[h].ip, port(h));
    let tls = dir.join("tls");
    let mut principals = vec![Principal::new(Role::Admin, "admin").expect("p")];
    for id in 1..=4 {
        principals.push(Principal::new(Role::Master, &id.to_string()).expect("p"));
    }
    for i in 1..=5 {
        principals.push(Principal::new(Role::Chunkserver, &format!("cs{i}")).expect("p"));
    }
    let mut names: Vec<String> = net.hosts.iter().map(|h| h.ip.clone()).collect();
    names.push("127.0.0.1".into());
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    shale_security::certs::provision(&tls, &principals, &names).expect("certificates");
    let tls_dir = tls.to_string_lossy().into_owned();
    let peers: Vec<String> = (0..3).map(|h| format!("{}={}", h + 1, addr(h))).collect();
    let masters: Vec<String> = (0..3).map(addr).collect();

    let master_cfg = |id: usize, h: usize, peers: &str| {
        format!(
            "id = {id}\nlisten = \"{}\"\ndata = {:?}\npeers = \"{peers}\"\nhttp = \"{}:0\"\n\
             election_timeout_ms = 300\nstale_after_ms = 2000\ndead_after_ms = 5000\n\
             tls_dir = {tls_dir:?}\n",
            addr(h),
            dir.join(format!("m{id}-data")).to_string_lossy(),
            net.hosts[h].ip
        )
    };
    let cs_cfg = |i: usize, h: usize, masters: &[String]| {
        format!(
            "listen = \"{}\"\ndata = {:?}\nhost = \"cs{i}\"\nhttp = \"{}:0\"\nmasters = \"{}\"\n\
             tls_dir = {tls_dir:?}\n",
            addr(h),
            dir.join(format!("cs{i}-data")).to_string_lossy(),
            net.hosts[h].ip,
            masters.join(",")
        )
    };
    let mut ms: Vec<Server> = (0..3)
        .map(|h| {
            let args = config(
                dir,
                &format!("m{}", h + 1),
                master_cfg(h + 1, h, &peers.join(",")),
            );
            Server::start(&net, h, args)
        })
        .collect();
    let mut css: Vec<Server> = (1..=4)
        .map(|i| {
            let h = 2 + i;
            Server::start(
                &net,
                h,
                config(dir, &format!("cs{i}"), cs_cfg(i, h, &masters)),
            )
        })
        .collect();

    let transport = shale_security::Transport::tls(
        shale_security::Tls::load(shale_security::TlsFiles::of(&tls, &principals[0]))
            .expect("admin tls"),
    );
    let cfg = ClientConfig {
        transport,
        ..ClientConfig::default()
    };
    let all_masters: Vec<String> = (0..3).chain([7]).map(addr).collect();
    let c = Client::connect(&all_masters, cfg.clone())
        .await
        .expect("client");
    wait("4 live chunkservers", 60, async || {
        c.status()
            .await
            .is_ok_and(|s| s.chunkservers.iter().filter(|x| x.state == "alive").count() == 4)
    })
    .await;

    c.mkdir("/load", true).await.expect("mkdir");
    // The load: put a file, read it back, forever; every operation must succeed.
    let stop = Arc::new(AtomicBool::new(false));
    let (ops, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (c, stop, ops, failures) = (c.clone(), stop.clone(), ops.clone(), failures.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let data: Vec<u8> = (0..200_000u32).map(|x| (x as u64 ^ i) as u8).collect();
                let p = format!("/load/f{}", i % 20);
                let r = async {
                    c.put(&p, &data[..], true, &|_| {}).await?;
                    let mut back = Vec::new();
                    c.get(&p, &mut back, &|_| {}).await?;
                    if back != data {
                        return Err(shale_client::ClientError::InvalidArgument(format!(
                            "{p}: read back other bytes"
                        )));
                    }
                    Ok::<_, shale_client::ClientError>(())
                }
                .await;
                match r {
                    Ok(()) => ops.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("PHASE failure at op {i}: {e}");
                        errors.push(format!("op {i}: {e}"));
                        failures.fetch_add(1, Ordering::Relaxed)
                    }
                };
                i += 1;
            }
            errors
        })
    };
    wait("the load runs", 60, async || {
        ops.load(Ordering::Relaxed) >= 3
    })
    .await;

    // Rolling upgrade: every server restarted in turn, each back in service before the next —
    // for a master: in the group, caught up, and with every chunkserver's report (as `shale
    // status` asked of it shows), so it could lead at once.
    let own_status = |a: String| {
        let t = cfg.transport.clone();
        async move {
            let ch = t.channel(&a, |e| e).ok()?;
            let mut m = shale_proto::metapb::master_service_client::MasterServiceClient::new(ch);
            m.status(shale_proto::metapb::Empty {})
                .await
                .ok()
                .map(|r| r.into_inner())
        }
    };
    for (h, m) in ms.iter_mut().enumerate() {
        eprintln!(
            "PHASE restart master {} at op {}",
            h + 1,
            ops.load(Ordering::Relaxed)
        );
        m.restart(&net);
        wait(
            "the restarted master caught up and reported to",
            60,
            async || {
                let Some(me) = own_status(addr(h)).await else {
                    return false;
                };
                let Ok(leader) = c.status().await else {
                    return false;
                };
                me.leader != 0
                    && me.unreported == 0
                    && me
                        .chunkservers
                        .iter()
                        .filter(|x| x.state == "alive")
                        .count()
                        == 4
                    && me.applied_index + 50 >= leader.applied_index
            },
        )
        .await;
        let before = ops.load(Ordering::Relaxed);
        wait("progress after a master restart", 60, async || {
            ops.load(Ordering::Relaxed) > before + 1
        })
        .await;
    }
    for cs in css.iter_mut() {
        eprintln!(
            "PHASE restart cs on host {} at op {}",
            cs.host,
            ops.load(Ordering::Relaxed)
        );
        cs.restart(&net);
        // Ready (registered, store open: `/readyz`), then heard by the leader long enough for
        // a server that were still down to have turned stale there.
        let http = cs.http.clone();
        wait("the chunkserver ready", 60, async || ready(&http)).await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        wait("the chunkserver back alive", 60, async || {
            c.status()
                .await
                .is_ok_and(|s| s.chunkservers.iter().filter(|x| x.state == "alive").count() == 4)
        })
        .await;
    }

    // Add master 4 (started from its file, no peers: it waits to be added), remove master 1.
    let m4 = Server::start(&net, 7, config(dir, "m4", master_cfg(4, 7, "")));
    c.admin()
        .add_master(4, &addr(7))
        .await
        .expect("add master 4");
    let s = c.admin().remove_master(1).await.expect("remove master 1");
    let ids: Vec<u64> = s.masters.iter().map(|m| m.id).collect();
    assert_eq!(ids, [2, 3, 4], "{s:?}");
    ms[0].stop();
    ms.push(m4);

    // Replace chunkserver cs4: drain it, stop it, forget it, start cs5 on a new host.
    let node = c
        .status()
        .await
        .expect("status")
        .chunkservers
        .iter()
        .find(|x| x.host == "cs4")
        .map(|x| x.node_id)
        .expect("cs4");
    c.admin().drain(node, true).await.expect("drain");
    wait("cs4 drained", 120, async || {
        c.status().await.is_ok_and(|s| {
            s.chunkservers
                .iter()
                .find(|x| x.node_id == node)
                .is_some_and(|x| x.chunks == 0)
        })
    })
    .await;
    let mut cs4 = css.pop().expect("cs4");
    cs4.stop();
    let live_masters: Vec<String> = [1, 2, 7].into_iter().map(addr).collect();
    css.push(Server::start(
        &net,
        8,
        config(dir, "cs5", cs_cfg(5, 8, &live_masters)),
    ));
    wait("cs4 dead enough to remove, cs5 alive", 90, async || {
        c.admin().remove_chunkserver(node).await.is_ok()
            && c.status().await.is_ok_and(|s| {
                s.chunkservers
                    .iter()
                    .any(|x| x.host == "cs5" && x.state == "alive")
            })
    })
    .await;
    let before = ops.load(Ordering::Relaxed);
    wait("the load goes on", 60, async || {
        ops.load(Ordering::Relaxed) > before + 2
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let errors = load.await.expect("load task");
    assert!(
        errors.is_empty(),
        "{} of {} client operations failed: {errors:?}",
        errors.len(),
        ops.load(Ordering::Relaxed) + errors.len() as u64
    );
    println!("{} put+get pairs, none failed", ops.load(Ordering::Relaxed));
    let fsck = std::process::Command::new(BIN)
        .args(["--tls-dir", &tls_dir, "--user", "admin", "--masters"])
        .arg(live_masters.join(","))
        .args(["fsck", "/"])
        .output()
        .expect("fsck");
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    drop(ms);
    drop(css);
}
