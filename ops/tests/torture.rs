//! A short seeded torture run (issue: proof under faults): 3 masters and 4 chunkservers, each
//! in its own network namespace (loopback when namespaces cannot be made), 4 clients, a nemesis
//! of kills, pauses, partitions, packet loss and disk damage; then the history must be
//! linearizable, every file whole on every replica within the healing bound, and no server may
//! have crashed on its own. The long run is `cargo run --release -p shale-bench -- torture`.
use shale_torture::{run, Config};
use std::time::Duration;

/// Multi-process tests run one at a time (2 cores).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_seeded_torture_run_finds_nothing() {
    let _serial = SERIAL.lock().await;
    let seed = std::env::var("SHALE_TORTURE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_129);
    let secs = std::env::var("SHALE_TORTURE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(45);
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = Config {
        shale: env!("CARGO_BIN_EXE_shale").into(),
        dir: dir.path().to_path_buf(),
        duration: Duration::from_secs(secs),
        seed,
        clients: 4,
        keys: 6,
        chunkservers: 4,
        heal_within: Duration::from_secs(90),
        master_extra: Vec::new(),
    };
    let r = run(&cfg).await.expect("the cluster could not be set up");
    println!("{}", r.json(seed, 1));
    for a in &r.anomalies {
        println!("ANOMALY: {a}");
    }
    assert!(
        r.anomalies.is_empty(),
        "{} anomalies with seed {seed} (rerun: SHALE_TORTURE_SEED={seed} cargo test -p shale --test torture -- --nocapture); logs in {}",
        r.anomalies.len(),
        dir.keep().display()
    );
    assert!(r.ok_ops > 50, "too little got done: {}", r.json(seed, 1));
    assert!(
        r.appended > 20,
        "too few records appended: {}",
        r.json(seed, 1)
    );
}

/// The checker catches a planted bug: masters that serve reads without confirming they still
/// lead. One scenario, twice: the leader is cut off from the other masters (clients still reach
/// it); client A overwrites a file (it moves to the new leader); then client B, which last
/// talked to the old leader, reads it. With the bug B reads the old bytes — not linearizable;
/// without it the old leader refuses and B finds the new one.
async fn deposed_leader_scenario(unsafe_reads: bool) -> shale_torture::linear::Verdict {
    use shale_torture::cluster::Cluster;
    use shale_torture::model::Input;
    use shale_torture::workload::{perform, History, DIR};
    let dir = tempfile::tempdir().expect("tmp");
    let extra: Vec<String> = if unsafe_reads {
        vec!["--test-unsafe-reads".into()]
    } else {
        vec![]
    };
    let c = Cluster::start(
        env!("CARGO_BIN_EXE_shale").as_ref(),
        dir.path(),
        3,
        7,
        &extra,
    )
    .expect("cluster");
    assert!(
        c.net.partitions(),
        "network namespaces are needed: {:?}",
        c.net.fallback
    );
    let masters = c.masters();
    let cfg = shale_client::ClientConfig {
        transport: c.transport().expect("tls"),
        ..Default::default()
    };
    let connect = || async {
        let t0 = std::time::Instant::now();
        loop {
            match shale_client::Client::connect(&masters, cfg.clone()).await {
                Ok(cl)
                    if cl.status().await.is_ok_and(|s| {
                        s.chunkservers.iter().filter(|c| c.state == "alive").count() == 3
                    }) =>
                {
                    return cl
                }
                _ => {
                    assert!(t0.elapsed() < Duration::from_secs(60), "no cluster");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    };
    let (a, b) = (connect().await, connect().await);
    a.mkdir(DIR, true).await.expect("mkdir");
    let h = History::new();
    let limit = Duration::from_secs(30);
    let put = |value| Input::Put {
        key: 0,
        value,
        overwrite: true,
    };
    perform(&a, &h, 0, 1, put(1), limit).await;
    perform(&b, &h, 1, 1, Input::Get { key: 0 }, limit).await;
    // The leader, once a master names one (an election may be under way: bounded wait).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let l = loop {
        let old = b.status().await.expect("status").leader_address;
        if let Some(l) = c.servers.iter().position(|s| s.addr == old) {
            break l;
        }
        assert!(std::time::Instant::now() < deadline, "no leader named");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let others = c.other_masters(l);
    c.net
        .impair(c.servers[l].host, &others, false, 0)
        .expect("partition");
    perform(&a, &h, 0, 1, put(2), limit).await;
    perform(&b, &h, 1, 1, Input::Get { key: 0 }, limit).await;
    c.net.heal_all().expect("heal");
    for o in h.ops() {
        println!("unsafe_reads {unsafe_reads}: {o:?}");
    }
    shale_torture::linear::check(&h.ops(), 1, 1_000_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_planted_stale_read_is_caught() {
    let _serial = SERIAL.lock().await;
    use shale_torture::linear::Verdict;
    // B reads the deposed leader's stale bytes only if its call there is answered within the
    // client's 300 ms patience; on a loaded machine it may ask the others who leads first and
    // read from the new leader (correct, but then the bug was not exercised): up to 3 tries
    // for the planted bug to show (seen once in CI after the long torture run).
    let mut missed = Vec::new();
    for _ in 0..3 {
        let planted = deposed_leader_scenario(true).await;
        if matches!(planted, Verdict::Violation { .. }) {
            break;
        }
        missed.push(planted);
    }
    assert!(
        missed.len() < 3,
        "the checker missed reads served by a deposed leader: {missed:?}"
    );
    let control = deposed_leader_scenario(false).await;
    assert_eq!(control, Verdict::Linearizable);
}

/// A leader cut off from the other masters stops claiming the role once no majority has
/// acknowledged it for the lease, and fails writes at once naming every member: a client that
/// was given only that master finds the new leader in seconds (it waited its whole 30 s budget
/// and failed before).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_off_leader_sends_clients_elsewhere() {
    let _serial = SERIAL.lock().await;
    use shale_proto::metapb::master_service_client::MasterServiceClient;
    use shale_proto::metapb::Empty;
    use shale_torture::cluster::Cluster;
    let dir = tempfile::tempdir().expect("tmp");
    let c = Cluster::start(env!("CARGO_BIN_EXE_shale").as_ref(), dir.path(), 1, 3, &[])
        .expect("cluster");
    assert!(
        c.net.partitions(),
        "network namespaces are needed: {:?}",
        c.net.fallback
    );
    let masters = c.masters();
    let cfg = shale_client::ClientConfig {
        transport: c.transport().expect("tls"),
        ..Default::default()
    };
    let t0 = std::time::Instant::now();
    let old = loop {
        if let Ok(cl) = shale_client::Client::connect(&masters, cfg.clone()).await {
            if let Ok(s) = cl.status().await {
                if !s.leader_address.is_empty() {
                    break s.leader_address;
                }
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no leader");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let only = shale_client::Client::connect(std::slice::from_ref(&old), cfg.clone())
        .await
        .expect("connect to the leader alone");
    only.mkdir("/before", false).await.expect("mkdir");
    let l = c
        .servers
        .iter()
        .position(|s| s.addr == old)
        .expect("leader");
    let others = c.other_masters(l);
    c.net
        .impair(c.servers[l].host, &others, false, 0)
        .expect("partition");
    let t0 = std::time::Instant::now();
    let r = only.mkdir("/after", false).await;
    let took = t0.elapsed();
    let mut raw = MasterServiceClient::new(
        cfg.transport
            .channel(&old, |e| e)
            .expect("dial the old leader"),
    );
    // Within a few leases of the cut, the old leader stops claiming the role.
    let mut role = String::new();
    while t0.elapsed() < Duration::from_secs(5) {
        role = raw
            .status(Empty {})
            .await
            .expect("status")
            .into_inner()
            .role;
        if role != "leader" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.net.heal_all().expect("heal");
    r.expect("mkdir after the leader was cut off");
    println!("the call took {took:?} across the partition; the old leader says {role:?}");
    assert!(took < Duration::from_secs(6), "{took:?}");
    assert_ne!(role, "leader", "a cut-off leader still claims the role");
}
