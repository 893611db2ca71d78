//! `shale up`: a whole local cluster — 3 masters and 3 chunkservers on 127.0.0.1, data in one
//! folder — as child processes of this one. Ctrl-C (or SIGTERM) stops them all cleanly; a rerun
//! reuses the data.
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Folder for all the cluster's data.
    #[arg(long, default_value = "./shale-data")]
    pub data: PathBuf,
    /// Masters listen on this port and the next two.
    #[arg(long, default_value_t = 7101)]
    pub master_port: u16,
    /// Chunkservers listen on this port and the next two.
    #[arg(long, default_value_t = 7201)]
    pub chunkserver_port: u16,
    /// Default chunk size of new files, MiB.
    #[arg(long, default_value_t = 64)]
    pub chunk_size_mib: u64,
}

/// The masters a plain `shale up` starts: what every command talks to by default.
pub const DEFAULT_MASTERS: &str = "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103";

struct Kids(Vec<(String, Child)>);

impl Drop for Kids {
    fn drop(&mut self) {
        for (_, c) in &self.0 {
            // SAFETY: signalling our own children.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for (name, c) in &mut self.0 {
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        eprintln!("{name} did not stop in time; killing it");
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                }
            }
        }
    }
}

/// The file in the data folder that records the masters' first port: their addresses are in
/// the group's Raft membership, so a rerun must use the same ones.
const PORTS_FILE: &str = "master-port";

/// Records the master port on first start; refuses, with what to do, a rerun on other ports.
fn check_master_port(data: &std::path::Path, port: u16) -> Result<(), String> {
    let file = data.join(PORTS_FILE);
    match std::fs::read_to_string(&file) {
        Ok(s) => match s.trim().parse::<u16>() {
            Ok(recorded) if recorded == port => Ok(()),
            Ok(recorded) => Err(format!(
                "{} holds a cluster whose masters listen on 127.0.0.1:{recorded}-{}; their \
                 addresses are part of the group's membership, so its masters cannot move all at \
                 once. Rerun with --master-port {recorded}, or use another --data folder. (To move \
                 the masters of a running group one at a time: `shale admin \
                 set-master-address`.)",
                data.display(),
                recorded + 2
            )),
            Err(_) => Err(format!(
                "{} is damaged (expected a port number); delete it if the masters of this folder \
                 listen on {port}",
                file.display()
            )),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            shale_proto::durable::write_file(data, PORTS_FILE, format!("{port}\n").as_bytes())
                .map_err(|e| format!("{}: {e}", file.display()))
        }
        Err(e) => Err(format!("{}: {e}", file.display())),
    }
}

pub async fn run(a: Args) -> Result<(), Box<dyn std::error::Error>> {
    let exe = std::env::current_exe()?;
    std::fs::create_dir_all(&a.data)?;
    check_master_port(&a.data, a.master_port)?;
    let masters: Vec<String> = (0..3)
        .map(|i| format!("127.0.0.1:{}", a.master_port + i))
        .collect();
    let peers: String = masters
        .iter()
        .enumerate()
        .map(|(i, m)| format!("{}={m}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut kids = Kids(Vec::new());
    for (i, addr) in masters.iter().enumerate() {
        let id = i + 1;
        let child = Command::new(&exe)
            .args([
                "master",
                "--id",
                &id.to_string(),
                "--listen",
                addr,
                "--peers",
                &peers,
            ])
            .args([
                "--http",
                &format!("127.0.0.1:{}", a.master_port + 10 + i as u16),
            ])
            .args(["--chunk-size-mib", &a.chunk_size_mib.to_string(), "--data"])
            .arg(a.data.join(format!("m{id}")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()?;
        kids.0.push((format!("master {id}"), child));
    }
    let mut chunkservers = Vec::new();
    for i in 0..3u16 {
        let addr = format!("127.0.0.1:{}", a.chunkserver_port + i);
        let child = Command::new(&exe)
            .args([
                "--masters",
                &masters.join(","),
                "chunkserver",
                "--listen",
                &addr,
            ])
            .args(["--host", &format!("cs{}", i + 1)])
            .args([
                "--http",
                &format!("127.0.0.1:{}", a.chunkserver_port + 10 + i),
            ])
            .arg("--data")
            .arg(a.data.join(format!("cs{}", i + 1)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()?;
        kids.0.push((format!("chunkserver {}", i + 1), child));
        chunkservers.push(addr);
    }
    println!("shale cluster up (data in {})", a.data.display());
    println!("  masters:      {}", masters.join(" "));
    println!("  chunkservers: {}", chunkservers.join(" "));
    println!(
        "  status pages: http://127.0.0.1:{}/ (masters: ports {}-{}, chunkservers: {}-{}; /metrics on each)",
        a.master_port + 10,
        a.master_port + 10,
        a.master_port + 12,
        a.chunkserver_port + 10,
        a.chunkserver_port + 12
    );
    println!("try: shale status; shale put ./somefile /somefile; shale ls -l /");
    println!("Ctrl-C stops the cluster.");
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = crate::master::shutdown_signal() => break,
            _ = tick.tick() => {
                for (name, c) in &mut kids.0 {
                    if let Ok(Some(status)) = c.try_wait() {
                        return Err(format!("{name} exited ({status}); stopping the cluster").into());
                    }
                }
            }
        }
    }
    println!("stopping the cluster…");
    drop(kids);
    println!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_master_port;

    #[test]
    fn a_rerun_on_other_master_ports_is_refused() {
        let d = tempfile::tempdir().expect("tmp");
        assert_eq!(check_master_port(d.path(), 7101), Ok(()));
        assert_eq!(check_master_port(d.path(), 7101), Ok(()));
        let e = check_master_port(d.path(), 7301).expect_err("moved");
        assert!(e.contains("--master-port 7101"), "{e}");
        std::fs::write(d.path().join(super::PORTS_FILE), "junk").expect("write");
        assert!(check_master_port(d.path(), 7101).is_err());
    }
}
