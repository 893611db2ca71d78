//! Permissions on a running secured cluster (issue: security, item 3): users identified by
//! their certificates keep to their own files — another user's 0600 file cannot be read,
//! replaced, moved, removed or re-moded, every refusal is PERMISSION_DENIED and changes
//! nothing (checked by checksum afterwards) — through the client library and the CLI (`chmod`,
//! `chown`, `ls -l`, `whoami`, `admin group`), and the attributes survive a restart of every
//! master. Clients without certificates act through user tokens.
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

/// A token with the same key id as `token` that names an admin, signed with a key the
/// attacker made up.
fn forged_of(token: &str) -> String {
    use shale_security::bearer::{self, UserClaims};
    let now = shale_security::token::now_ms();
    let claims = UserClaims {
        key_id: bearer::key_id(token).expect("key id"),
        issued_ms: now,
        expires_ms: now + 3_600_000,
        principal: shale_security::Principal::new(Role::Admin, "mallory").expect("principal"),
    };
    bearer::sign(&[7u8; 32], &claims).expect("sign")
}

/// A client that trusts the cluster CA, has no certificate, and shows `token`.
fn with_token(token: &str) -> ClientConfig {
    ensure_cert(Role::Admin, "admin");
    let tls = shale_security::Tls::load(shale_security::TlsFiles {
        ca: tls_dir().join(shale_security::certs::CA_CERT),
        cert: None,
        key: None,
    })
    .expect("load CA");
    ClientConfig {
        transport: shale_security::Transport::tls_with_token(tls, token),
        ..Default::default()
    }
}

fn unauthenticated<T: std::fmt::Debug>(r: Result<T, ClientError>, want: &str) {
    match r {
        Err(ClientError::Unauthenticated(m)) => assert!(m.contains(want), "{want}: {m}"),
        other => panic!("expected UNAUTHENTICATED ({want}), got {other:?}"),
    }
}

/// Item 2: a client that cannot hold a certificate acts as the user a master-signed token
/// names (masters check it; chunkservers check the chunk tokens the masters hand it), with
/// that user's rights only; forged, expired and revoked tokens are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_certificates_use_user_tokens() {
    let cluster = Cluster::start(1, 1).await;
    let m = cluster.master_addrs();
    let admin = Client::connect(&m, client_config()).await.expect("admin");
    let one = CreateOptions::default().replication(1);
    admin.mkdir("/home/carol", true).await.expect("mkdir");
    admin
        .chown("/home/carol", Some("carol"), Some("carol"))
        .await
        .expect("chown");
    admin
        .put_with(
            "/private",
            &b"admin only"[..],
            &one.clone().mode(0o600),
            &|_| {},
        )
        .await
        .expect("admin put");
    let token = admin
        .issue_user_token("carol", false, 0)
        .await
        .expect("issue")
        .token;

    // Carol, with only the CA certificate and her token: she is carol, a user.
    let carol = Client::connect(&m, with_token(&token))
        .await
        .expect("carol");
    let me = carol.who_am_i().await.expect("whoami");
    assert_eq!(
        (me.user.as_str(), me.role.as_str(), me.superuser),
        ("carol", "user", false)
    );
    // She writes and reads her own files through the chunkservers (chunk tokens) ...
    let data: Vec<u8> = (0..(3u32 << 18)).map(|i| (i % 239) as u8).collect();
    carol
        .put_with("/home/carol/f", &data[..], &one, &|_| {})
        .await
        .expect("carol put");
    assert!(read(&carol, "/home/carol/f").await.expect("carol get") == data);
    // ... but has no more rights than any user.
    denied(
        read(&carol, "/private").await,
        "carol reads admin's 0600 file",
    );
    denied(
        carol.issue_user_token("carol", true, 0).await,
        "carol issues herself an admin token",
    );
    // The CLI takes a token too.
    let o = cli(&m, None, &["--token", &token, "whoami"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("carol (user)"));
    // ... and issues them (the token is the one line on stdout).
    let printed = cli_ok(
        &m,
        None,
        &["admin", "token", "issue", "dave", "--days", "1"],
    );
    let o = cli(&m, None, &["--token", printed.trim(), "whoami"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("dave (user)"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Without a token, or with a forged one: UNAUTHENTICATED.
    for (t, why) in [
        ("", "not a Shale user token"),
        (forged_of(&token).as_str(), "signature"),
    ] {
        let r = match Client::connect(&m, with_token(t)).await {
            Ok(c) => c.stat("/").await.map(|_| ()),
            Err(e) => Err(e),
        };
        unauthenticated(r, why);
    }
    // A short-lived token stops working when it expires.
    let brief = admin
        .issue_user_token("carol", false, 1500)
        .await
        .expect("issue")
        .token;
    let short = Client::connect(&m, with_token(&brief))
        .await
        .expect("short");
    short.stat("/home/carol/f").await.expect("valid for now");
    tokio::time::sleep(std::time::Duration::from_millis(1700)).await;
    unauthenticated(short.stat("/home/carol/f").await, "expired");

    // Revoking every token shuts carol out; her file is untouched.
    let o = cli(&m, None, &["admin", "token", "revoke"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    unauthenticated(carol.stat("/home/carol/f").await, "revoked");
    assert!(read(&admin, "/home/carol/f").await.expect("admin get") == data);
}
