//! Permissions on a running secured cluster (issue: security, item 3): users identified by
//! their certificates keep to their own files — another user's 0600 file cannot be read,
//! replaced, moved, removed or re-moded, every refusal is PERMISSION_DENIED and changes
//! nothing (checked by checksum afterwards) — through the client library and the CLI (`chmod`,
//! `chown`, `ls -l`, `whoami`, `admin group`), and the attributes survive a restart of every
//! master.
mod common;

use common::*;
use shale_client::{Client, ClientConfig, ClientError, CreateOptions};
use shale_security::Role;
use std::process::Output;

fn as_user(name: &str) -> ClientConfig {
    ClientConfig {
        transport: transport_as(Role::User, name),
        ..Default::default()
    }
}

/// `shale --masters M ARGS` as `user` (a user certificate) or the admin.
fn cli(masters: &[String], user: Option<&str>, args: &[&str]) -> Output {
    let mut c = shale_cmd();
    if let Some(u) = user {
        ensure_cert(Role::User, u);
        c.env("SHALE_USER", u);
    }
    c.args(["--masters", &masters.join(",")])
        .args(args)
        .output()
        .expect("run shale")
}

fn cli_ok(masters: &[String], user: Option<&str>, args: &[&str]) -> String {
    let o = cli(masters, user, args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "shale {args:?} as {user:?}: {err}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn cli_denied(masters: &[String], user: Option<&str>, args: &[&str], want: &str) {
    let o = cli(masters, user, args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "shale {args:?} as {user:?} should fail"
    );
    assert!(err.contains(want), "shale {args:?} as {user:?}: {err}");
}

fn denied<T: std::fmt::Debug>(r: Result<T, ClientError>, what: &str) {
    match r {
        Err(ClientError::PermissionDenied(m)) => {
            assert!(m.contains("may not") || m.contains("user="), "{what}: {m}")
        }
        other => panic!("{what}: expected PERMISSION_DENIED, got {other:?}"),
    }
}

async fn read(c: &Client, p: &str) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    c.get(p, &mut out, &|_| {}).await.map(|_| out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_keep_to_their_own_files() {
    let mut cluster = Cluster::start(1, 1).await;
    let m = cluster.master_addrs();
    let admin = Client::connect(&m, client_config()).await.expect("admin");
    let alice = Client::connect(&m, as_user("alice")).await.expect("alice");
    let bob = Client::connect(&m, as_user("bob")).await.expect("bob");
    let one = CreateOptions::default().replication(1);

    // The admin (a superuser) makes the homes and gives them away.
    admin.mkdir("/home", false).await.expect("mkdir /home");
    for u in ["alice", "bob"] {
        let home = format!("/home/{u}");
        admin.mkdir(&home, false).await.expect("mkdir home");
        admin.chown(&home, Some(u), Some(u)).await.expect("chown");
    }
    // Users cannot make top-level entries in root's 0755 /.
    denied(bob.mkdir("/mine", false).await, "bob mkdir /mine");

    // Alice writes a private file; she reads it back.
    let data: Vec<u8> = (0..(3u32 << 19)).map(|i| (i * 7 % 253) as u8).collect();
    alice
        .put_with(
            "/home/alice/secret",
            &data[..],
            &one.clone().mode(0o600),
            &|_| {},
        )
        .await
        .expect("alice put");
    assert_eq!(
        read(&alice, "/home/alice/secret")
            .await
            .expect("alice reads"),
        data
    );
    let st = bob.stat("/home/alice/secret").await.expect("bob may stat");
    assert_eq!((st.owner.as_str(), st.mode), ("alice", 0o600));

    // Bob: every way in is refused, and nothing changes.
    denied(read(&bob, "/home/alice/secret").await, "bob get");
    denied(
        bob.chunk_locations("/home/alice/secret").await,
        "bob locations",
    );
    denied(bob.delete("/home/alice/secret", false).await, "bob rm");
    denied(bob.delete("/home/alice", true).await, "bob rm -r");
    denied(
        bob.rename("/home/alice/secret", "/home/bob/stolen").await,
        "bob mv",
    );
    denied(bob.chmod("/home/alice/secret", 0o644).await, "bob chmod");
    denied(
        bob.chown("/home/alice/secret", Some("bob"), None).await,
        "bob chown",
    );
    denied(
        bob.put_with(
            "/home/alice/secret",
            &b"forged"[..],
            &one.clone().overwrite(true),
            &|_| {},
        )
        .await,
        "bob overwrite",
    );
    denied(
        bob.put_with("/home/alice/planted", &b"x"[..], &one, &|_| {})
            .await,
        "bob put into alice's home",
    );
    // Alice may not give her file away either.
    denied(
        alice.chown("/home/alice/secret", Some("bob"), None).await,
        "alice chown to bob",
    );
    // A chunkserver certificate has no business in the namespace.
    let cs = Client::connect(
        &m,
        ClientConfig {
            transport: transport_as(Role::Chunkserver, "cs-intruder"),
            ..Default::default()
        },
    )
    .await
    .expect("cs client");
    denied(
        read(&cs, "/home/alice/secret").await,
        "chunkserver certificate get",
    );

    // The CLI: ls -l shows owners and modes; chmod and chown by their rules; groups.
    let ls = cli_ok(&m, None, &["ls", "-l", "/home/alice"]);
    assert!(
        ls.contains("-rw-------") && ls.contains("alice") && ls.contains("secret"),
        "{ls}"
    );
    let who = cli_ok(&m, Some("alice"), &["whoami"]);
    assert!(who.starts_with("alice (user)"), "{who}");
    let who = cli_ok(&m, None, &["whoami"]);
    assert!(who.contains("superuser"), "{who}");
    cli_denied(
        &m,
        Some("bob"),
        &["chmod", "644", "/home/alice/secret"],
        "may not chmod",
    );
    cli_denied(
        &m,
        Some("alice"),
        &["chown", ":staff", "/home/alice/secret"],
        "group they are in",
    );
    cli_denied(
        &m,
        Some("alice"),
        &["admin", "group", "add", "staff", "alice"],
        "admin",
    );
    cli_ok(
        &m,
        None,
        &["admin", "group", "add", "staff", "alice", "bob"],
    );
    let groups = cli_ok(&m, None, &["admin", "group", "ls"]);
    assert_eq!(groups.trim(), "staff: alice bob");
    cli_ok(
        &m,
        Some("alice"),
        &["chown", ":staff", "/home/alice/secret"],
    );
    cli_ok(&m, Some("alice"), &["chmod", "640", "/home/alice/secret"]);
    // Now bob reads through the group bits, and still cannot write.
    assert_eq!(
        read(&bob, "/home/alice/secret").await.expect("bob reads"),
        data
    );
    denied(
        bob.delete("/home/alice/secret", false).await,
        "bob rm again",
    );
    cli_ok(&m, Some("alice"), &["chmod", "600", "/home/alice/secret"]);
    denied(
        read(&bob, "/home/alice/secret").await,
        "bob get after chmod 600",
    );

    // The attributes are in the replicated state: they survive every master restarting.
    for master in &mut cluster.masters {
        master.restart();
    }
    leader(&m).await;
    let alice = Client::connect(&m, as_user("alice")).await.expect("alice");
    let bob = Client::connect(&m, as_user("bob")).await.expect("bob");
    denied(
        read(&bob, "/home/alice/secret").await,
        "bob get after restart",
    );
    let st = alice.stat("/home/alice/secret").await.expect("stat");
    assert_eq!(
        (st.owner.as_str(), st.group.as_str(), st.mode),
        ("alice", "staff", 0o600)
    );
    // (Reads wait for the chunkserver's report to the new leader.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match read(&alice, "/home/alice/secret").await {
            Ok(back) => {
                assert!(back == data, "the file changed");
                break;
            }
            Err(ClientError::ChunkRead { .. }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            Err(e) => panic!("alice reads after the restart: {e}"),
        }
    }
}
