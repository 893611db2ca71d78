//! `shale s3`: the S3-compatible gateway (`shale-access`), and `shale s3 keys create USER`.
use shale_access::s3::{self, Gateway};
use std::time::Duration;

/// Where `shale up` writes its admin user's key pair, in its data folder.
pub const CREDENTIALS_FILE: &str = "s3-credentials";

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Option<S3Cmd>,
    /// Address to serve the S3 API on (plain HTTP: put a TLS proxy in front for other hosts).
    #[arg(long, default_value = "127.0.0.1:7300")]
    listen: String,
}

#[derive(clap::Subcommand)]
enum S3Cmd {
    /// Access keys (kept in the cluster; superusers only).
    #[command(subcommand)]
    Keys(KeysCmd),
}

#[derive(clap::Subcommand)]
enum KeysCmd {
    /// Make a key pair for USER; prints `KEY SECRET` (the secret is shown only now).
    Create {
        #[arg(value_name = "USER")]
        owner: String,
    },
}

pub async fn run(
    a: Args,
    masters: &[String],
    tls: &crate::tls::TlsArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    let client = crate::cli::connect(masters, tls).await?;
    if let Some(S3Cmd::Keys(KeysCmd::Create { owner })) = a.cmd {
        let (key, secret) = s3::create_key(&client, &owner).await?;
        println!("{key} {secret}");
        return Ok(());
    }
    let gateway = Gateway::new(client, masters.to_vec()).await?;
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", a.listen))?;
    let cred = std::path::Path::new("./shale-data").join(CREDENTIALS_FILE);
    let hint = if cred.exists() {
        format!("; keys of `shale up`'s admin in {}", cred.display())
    } else {
        String::new()
    };
    println!(
        "s3 gateway listening on http://{} (as {}){hint}",
        listener.local_addr()?,
        gateway.user()
    );
    s3::serve(listener, gateway, async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    })
    .await;
    Ok(())
}

/// `shale up`: makes a key pair for the admin user once and writes it to
/// `DATA/s3-credentials` (`KEY SECRET`, mode 0600). Retries while the cluster comes up.
pub async fn provision_up_credentials(
    data: std::path::PathBuf,
    masters: Vec<String>,
    transport: shale_client::Transport,
) {
    let file = data.join(CREDENTIALS_FILE);
    if file.exists() {
        return;
    }
    let config = shale_client::ClientConfig {
        transport,
        ..Default::default()
    };
    for _ in 0..30 {
        let made = async {
            let c = shale_client::Client::connect(&masters, config.clone()).await?;
            let me = c.who_am_i().await?.user;
            s3::create_key(&c, &me).await
        }
        .await;
        match made {
            Ok((key, secret)) => {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let w = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&file)
                    .and_then(|mut f| f.write_all(format!("{key} {secret}\n").as_bytes()));
                if let Err(e) = w {
                    eprintln!("cannot write {}: {e}", file.display());
                }
                return;
            }
            Err(e) => tracing::info!("S3 key for the admin not made yet: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!("could not make the S3 key pair for {}", file.display());
}
