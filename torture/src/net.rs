//! Hosts for the servers. Each server runs in its own network namespace with its own address on
//! a bridge the harness creates (root is needed); the harness and its clients are the bridge's
//! own address. Faults are nftables rules inside a host's namespace: dropped traffic to or from
//! chosen addresses (a partition, one-way or both), or random loss (`numgen random`); and a slow
//! link (a `tbf` token bucket on both ends of the host's link: this kernel has no `netem`, so
//! delay comes from queueing behind a rate limit).
//!
//! When namespaces cannot be made (no root, no `ip`), every server runs on 127.0.0.1 and network
//! faults are unavailable: [`Net::partitions`] says so, and the run reports it.
//!
//! Everything made is removed when the `Net` is dropped (also on a panic); names carry a random
//! tag so that runs never collide.
use std::process::{Command, Stdio};

/// Where one server runs.
#[derive(Clone, Debug)]
pub struct Host {
    /// The namespace (none on loopback).
    pub ns: Option<String>,
    /// Its address.
    pub ip: String,
    /// The bridge side of its link (none on loopback).
    pub veth: Option<String>,
}

/// The harness's hosts.
#[derive(Debug)]
pub struct Net {
    pub hosts: Vec<Host>,
    /// The harness's (clients') own address.
    pub client_ip: String,
    bridge: Option<String>,
    /// Why namespaces are not used, if they are not.
    pub fallback: Option<String>,
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `nft -f -` with `script` in namespace `ns`.
fn nft(ns: &str, script: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("nft in {ns}: {e}"))?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(script.as_bytes())
            .map_err(|e| format!("nft in {ns}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("nft in {ns}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft in {ns}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Net {
    /// `n` hosts in namespaces, or on loopback if namespaces cannot be made.
    pub fn new(n: usize, seed: u64) -> Net {
        // Each network of this process gets its own draw (the kernel removes a deleted
        // namespace's interfaces asynchronously: the previous network's may still be there).
        static NETS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nth = NETS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut rng = fastrand::Rng::with_seed(
            seed ^ u64::from(std::process::id()) ^ nth.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        // A tag no interface or namespace uses yet: one left behind by a killed run (process
        // ids repeat, and so would the tag) must not make this run fail with "File exists".
        let taken = |tag: &str| {
            let exists = |p: String| std::path::Path::new(&p).exists();
            exists(format!("/sys/class/net/st{tag}br"))
                || (0..n).any(|i| {
                    exists(format!("/sys/class/net/st{tag}v{i}"))
                        || exists(format!("/run/netns/st{tag}-h{i}"))
                })
        };
        let mut tag = format!("{:04x}", rng.u16(..));
        for _ in 0..64 {
            if !taken(&tag) {
                break;
            }
            tag = format!("{:04x}", rng.u16(..));
        }
        let (a, b) = (rng.u8(200..250), rng.u8(1..255));
        match Net::namespaces(n, &tag, a, b) {
            Ok(net) => net,
            Err(why) => Net {
                hosts: (0..n)
                    .map(|_| Host {
                        ns: None,
                        ip: "127.0.0.1".into(),
                        veth: None,
                    })
                    .collect(),
                client_ip: "127.0.0.1".into(),
                bridge: None,
                fallback: Some(why),
            },
        }
    }

    fn namespaces(n: usize, tag: &str, a: u8, b: u8) -> Result<Net, String> {
        let bridge = format!("st{tag}br");
        let mut net = Net {
            hosts: Vec::new(),
            client_ip: format!("10.{a}.{b}.1"),
            bridge: None,
            fallback: None,
        };
        run(&["ip", "link", "add", &bridge, "type", "bridge"])?;
        net.bridge = Some(bridge.clone());
        run(&[
            "ip",
            "addr",
            "add",
            &format!("10.{a}.{b}.1/24"),
            "dev",
            &bridge,
        ])?;
        run(&["ip", "link", "set", &bridge, "up"])?;
        for i in 0..n {
            let ns = format!("st{tag}-h{i}");
            let veth = format!("st{tag}v{i}");
            let ip = format!("10.{a}.{b}.{}", 10 + i);
            run(&["ip", "netns", "add", &ns])?;
            net.hosts.push(Host {
                ns: Some(ns.clone()),
                ip: ip.clone(),
                veth: Some(veth.clone()),
            });
            run(&[
                "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            run(&["ip", "link", "set", &veth, "master", &bridge, "up"])?;
            run(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ])?;
            run(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        }
        // Network faults need nftables in the namespaces.
        if let Some(ns) = net.hosts.first().and_then(|h| h.ns.clone()) {
            nft(&ns, "table inet probe {}\ndelete table inet probe\n")
                .map_err(|e| format!("nftables unusable ({e})"))?;
        }
        Ok(net)
    }

    /// Whether network faults can be injected.
    pub fn partitions(&self) -> bool {
        self.fallback.is_none()
    }

    /// A command that runs `program` on host `h`.
    pub fn command(&self, h: usize, program: &std::path::Path) -> Command {
        match &self.hosts[h].ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// On host `h`, drops packets from (and, unless `one_way`, to) the addresses in `peers`,
    /// and `loss_pct` % of all other packets from off the host. Replaces earlier rules there.
    pub fn impair(
        &self,
        h: usize,
        peers: &[String],
        one_way: bool,
        loss_pct: u8,
    ) -> Result<(), String> {
        let Some(ns) = &self.hosts[h].ns else {
            return Err("no network faults on loopback".into());
        };
        let set = peers.join(", ");
        let mut input = String::new();
        let mut output = String::new();
        if !peers.is_empty() {
            input.push_str(&format!("    ip saddr {{ {set} }} drop\n"));
            if !one_way {
                output.push_str(&format!("    ip daddr {{ {set} }} drop\n"));
            }
        }
        if loss_pct > 0 {
            input.push_str(&format!(
                "    iifname \"eth0\" numgen random mod 100 < {loss_pct} drop\n"
            ));
        }
        let script = format!(
            "table inet torture {{}}\ndelete table inet torture\ntable inet torture {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n{input}  }}\n  chain output {{\n    type filter hook output priority 0; policy accept;\n{output}  }}\n}}\n"
        );
        nft(ns, &script)
    }

    /// Makes host `h`'s link slow both ways: a token bucket of `kbit` kbit/s holding up to
    /// `latency_ms` of queue (no `netem` on this kernel: delay comes from queueing behind the
    /// rate limit, as on a congested link).
    pub fn slow(&self, h: usize, kbit: u32, latency_ms: u32) -> Result<(), String> {
        let (Some(ns), Some(veth)) = (&self.hosts[h].ns, &self.hosts[h].veth) else {
            return Err("no network faults on loopback".into());
        };
        let (rate, lat) = (format!("{kbit}kbit"), format!("{latency_ms}ms"));
        let tbf = [
            "root", "tbf", "rate", &rate, "burst", "16kb", "latency", &lat,
        ];
        let mut inside = vec![
            "ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", "eth0",
        ];
        inside.extend(tbf);
        run(&inside)?;
        let mut outside = vec!["tc", "qdisc", "replace", "dev", veth];
        outside.extend(tbf);
        run(&outside)
    }

    /// Removes every fault on host `h`.
    pub fn heal(&self, h: usize) -> Result<(), String> {
        let Some(ns) = &self.hosts[h].ns else {
            return Ok(());
        };
        let _ = run(&[
            "ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", "eth0", "root",
        ]);
        if let Some(v) = &self.hosts[h].veth {
            let _ = run(&["tc", "qdisc", "del", "dev", v, "root"]);
        }
        nft(ns, "table inet torture {}\ndelete table inet torture\n")
    }

    /// Removes every fault on every host.
    pub fn heal_all(&self) -> Result<(), String> {
        (0..self.hosts.len()).try_for_each(|h| self.heal(h))
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for h in &self.hosts {
            if let Some(ns) = &h.ns {
                let _ = run(&["ip", "netns", "del", ns]);
            }
        }
        if let Some(b) = &self.bridge {
            let _ = run(&["ip", "link", "del", b]);
        }
    }
}
