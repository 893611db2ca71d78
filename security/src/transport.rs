//! Connections for tonic, both ways: [`Transport::incoming`] accepts (TLS handshakes run
//! concurrently, each bounded in time), [`Transport::channel`] dials. With TLS off
//! (`Transport::plaintext`, an explicit development opt-out) the same code carries plain TCP.
//!
//! Invariants: a connection's [`Peer`] (address and identity) is fixed at accept time and
//! reaches every request on it as a request extension; a handshake that fails or stalls
//! costs the server one bounded task, never the accept loop; at most [`HANDSHAKES_MAX`]
//! handshakes run at once, at most [`HANDSHAKES_PER_IP_MAX`] from one address, and at most
//! [`crate::limits::CONNECTIONS_MAX`] connections are held.
use crate::identity::{Identity, Peer};
use crate::principal::Principal;
use crate::tls::Tls;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What TLS runs on: the socket with a read buffer. rustls asks for at most 4 KiB per read;
/// without the buffer a 1 MiB frame cost 256 `recv` calls.
type Buffered = tokio::io::BufReader<TcpStream>;

/// The read buffer under TLS.
const TLS_READ_BUFFER_BYTES: usize = 64 << 10;

fn buffered(tcp: TcpStream) -> Buffered {
    tokio::io::BufReader::with_capacity(TLS_READ_BUFFER_BYTES, tcp)
}

/// A handshake not finished in this long is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Handshakes in progress at once, at most (more connections wait in the listen backlog).
pub const HANDSHAKES_MAX: usize = 1024;
/// Handshakes in progress from one IP address, at most: more from it are closed at once, so
/// one host that opens connections and says nothing cannot use up [`HANDSHAKES_MAX`].
pub const HANDSHAKES_PER_IP_MAX: usize = 64;
/// The pause after a failed accept (out of file descriptors: do not spin).
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How a party connects: mutual TLS with its certificate, or plaintext; a client without a
/// certificate connects over TLS and shows a user token ([`crate::bearer`]) instead.
#[derive(Clone, Debug, Default)]
pub struct Transport {
    tls: Option<Arc<Tls>>,
    bearer: Option<Arc<str>>,
}

impl Transport {
    /// Plain TCP: nobody is authenticated, everyone may do everything (development only).
    pub fn plaintext() -> Transport {
        Transport::default()
    }

    /// Mutual TLS with `tls`.
    pub fn tls(tls: Arc<Tls>) -> Transport {
        Transport {
            tls: Some(tls),
            bearer: None,
        }
    }

    /// TLS without a client certificate (`tls` trusts the cluster CA), showing the user token
    /// `token` to the masters with every request.
    pub fn tls_with_token(tls: Arc<Tls>, token: &str) -> Transport {
        Transport {
            tls: Some(tls),
            bearer: Some(token.into()),
        }
    }

    /// The user token shown to the masters, if any.
    pub fn bearer(&self) -> Option<&str> {
        self.bearer.as_deref()
    }

    /// The TLS in use, if any.
    pub fn tls_config(&self) -> Option<&Arc<Tls>> {
        self.tls.as_ref()
    }

    /// Whether connections are encrypted and authenticated.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// This party's principal (`None` in plaintext or for an anonymous client).
    pub fn principal(&self) -> Option<Principal> {
        self.tls.as_ref().and_then(|t| t.principal())
    }

    /// The URI scheme to show for addresses (`https` or `http`).
    pub fn scheme(&self) -> &'static str {
        if self.is_tls() {
            "https"
        } else {
            "http"
        }
    }

    /// A lazily connecting channel to `addr` (`host:port`), `configure` applied to its
    /// endpoint (timeouts, windows, keep-alive).
    pub fn channel(
        &self,
        addr: &str,
        configure: impl FnOnce(tonic::transport::Endpoint) -> tonic::transport::Endpoint,
    ) -> Result<tonic::transport::Channel, String> {
        // The scheme is only a label here: the connector below decides what is spoken.
        let ep = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("bad address {addr}: {e}"))?;
        Ok(configure(ep).connect_with_connector_lazy(Connector(self.clone())))
    }

    /// Connects to `host:port` speaking `alpn` (`h2` for gRPC, `http/1.1` for the status
    /// ports): TLS verifying the server's certificate for `host`, or plain TCP.
    pub async fn dial(&self, host: &str, port: u16, alpn: &[u8]) -> io::Result<Stream> {
        let tcp = connect_tcp(host, port).await?;
        self.handshake(tcp, host, alpn).await
    }

    /// The client's side of a connection `tcp` already made to `host`: TLS speaking `alpn`
    /// and verifying the server's certificate for `host` (or nothing, in plaintext). Callers
    /// that bound the TCP connect and the handshake apart use this after [`connect_tcp`] (a
    /// server that took the connection but does not answer is stopped or hung, not absent).
    pub async fn handshake(&self, tcp: TcpStream, host: &str, alpn: &[u8]) -> io::Result<Stream> {
        let host = unbracket(host).to_string();
        let remote = tcp.peer_addr().ok();
        let Some(tls) = &self.tls else {
            return Ok(Stream::plain(tcp, remote, Identity::Plaintext));
        };
        let name = rustls::pki_types::ServerName::try_from(host)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut config = tls.client_config();
        if config.alpn_protocols.first().map(Vec::as_slice) != Some(alpn) {
            let mut c = (*config).clone();
            c.alpn_protocols = vec![alpn.to_vec()];
            config = Arc::new(c);
        }
        let s = tokio_rustls::TlsConnector::from(config)
            .connect(name, buffered(tcp))
            .await?;
        let identity = identity_of(s.get_ref().1.peer_certificates());
        Ok(Stream {
            inner: Inner::Tls(Box::new(tokio_rustls::TlsStream::Client(s))),
            peer: Peer { remote, identity },
            slot: None,
            held: None,
        })
    }

    /// The connections `listener` accepts, as tonic's `serve_with_incoming` takes them.
    pub fn incoming(
        &self,
        listener: tokio::net::TcpListener,
    ) -> impl futures_util::Stream<Item = Result<Stream, io::Error>> + Send + 'static {
        let (tx, rx) = tokio::sync::mpsc::channel::<Stream>(64);
        let transport = self.clone();
        tokio::spawn(accept_loop(listener, transport, tx));
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|s| (Ok(s), rx)) },
        )
    }

    /// Accepts one connection's handshake (used by the HTTP status ports, which run their
    /// own accept loops).
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<Stream> {
        self.accept_alpn(tcp, b"h2").await
    }

    /// [`Transport::accept`] for a protocol other than gRPC (`alpn`: e.g. `http/1.1`).
    pub async fn accept_alpn(&self, tcp: TcpStream, alpn: &[u8]) -> io::Result<Stream> {
        let remote = tcp.peer_addr().ok();
        let Some(tls) = &self.tls else {
            return Ok(Stream::plain(tcp, remote, Identity::Plaintext));
        };
        let Some(mut config) = tls.server_config() else {
            return Err(io::Error::other("no server certificate loaded"));
        };
        if config.alpn_protocols.first().map(Vec::as_slice) != Some(alpn) {
            let mut c = (*config).clone();
            c.alpn_protocols = vec![alpn.to_vec()];
            config = Arc::new(c);
        }
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let s = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(buffered(tcp)))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        let identity = identity_of(s.get_ref().1.peer_certificates());
        Ok(Stream {
            inner: Inner::Tls(Box::new(tokio_rustls::TlsStream::Server(s))),
            peer: Peer { remote, identity },
            slot: None,
            held: None,
        })
    }
}

/// `host` without the brackets a `[v6]` address comes in.
fn unbracket(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

/// A TCP connection to `host:port` (`[v6]` hosts bracketed or not), with Nagle off: the first
/// half of [`Transport::dial`].
pub async fn connect_tcp(host: &str, port: u16) -> io::Result<TcpStream> {
    let tcp = TcpStream::connect((unbracket(host), port)).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// Who the peer's certificate chain (from a finished handshake) names.
fn identity_of(chain: Option<&[rustls::pki_types::CertificateDer<'_>]>) -> Identity {
    match chain {
        None | Some([]) => Identity::Anonymous,
        Some([leaf, ..]) => match Principal::from_der(leaf) {
            Ok(p) => Identity::Principal(p),
            Err(e) => Identity::Unrecognized(e),
        },
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    transport: Transport,
    tx: tokio::sync::mpsc::Sender<Stream>,
) {
    let limit = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_MAX));
    let per_ip: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>> =
        Default::default();
    let connections = Arc::new(tokio::sync::Semaphore::new(crate::limits::CONNECTIONS_MAX));
    loop {
        // A connection slot first: at the cap, new connections wait in the backlog.
        let slot = tokio::select! {
            p = connections.clone().acquire_owned() => p,
            _ = tx.closed() => return,
        };
        let Ok(slot) = slot else { return };
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => p,
            _ = tx.closed() => return,
        };
        let Ok(permit) = permit else { return };
        let tcp = tokio::select! {
            r = listener.accept() => r,
            _ = tx.closed() => return,
        };
        let tcp = match tcp {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                tracing::warn!("accept: {e}; backing off");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let ip = tcp.peer_addr().map(|a| a.ip()).ok();
        if let Some(ip) = ip {
            let mut m = per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = m.entry(ip).or_default();
            if *n >= HANDSHAKES_PER_IP_MAX {
                drop(m);
                tracing::debug!(%ip, "too many handshakes in progress from this address");
                continue;
            }
            *n += 1;
        }
        let (transport, tx, per_ip) = (transport.clone(), tx.clone(), per_ip.clone());
        tokio::spawn(async move {
            let remote = tcp.peer_addr().ok();
            let accepted = transport.accept(tcp).await;
            if let Some(ip) = ip {
                let mut m = per_ip.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(n) = m.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        m.remove(&ip);
                    }
                }
            }
            match accepted {
                Ok(s) => {
                    let mut s = s.coalescing();
                    s.slot = Some(slot);
                    let _ = tx.send(s).await;
                }
                Err(e) => tracing::info!("TLS handshake with {remote:?} failed: {e}"),
            }
            drop(permit);
        });
    }
}

/// Dials for tonic's channels.
#[derive(Clone, Debug)]
struct Connector(Transport);

impl tower_service::Service<tonic::codegen::http::Uri> for Connector {
    type Response = hyper_util::rt::TokioIo<Stream>;
    type Error = io::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = io::Result<Self::Response>> + Send + 'static>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: tonic::codegen::http::Uri) -> Self::Future {
        let transport = self.0.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host"))?;
            let port = uri.port_u16().unwrap_or(80);
            let s = transport.dial(host, port, b"h2").await?;
            Ok(hyper_util::rt::TokioIo::new(s.coalescing()))
        })
    }
}

/// One connection, plain or TLS, with who is on the other end.
pub struct Stream {
    inner: Inner,
    peer: Peer,
    /// The server's connection slot, freed when the connection closes.
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Writes held until a flush (gRPC connections: [`Stream::coalescing`]); None: written
    /// as they come.
    held: Option<crate::coalesce::Held>,
}

enum Inner {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::TlsStream<Buffered>>),
}

impl Stream {
    fn plain(tcp: TcpStream, remote: Option<std::net::SocketAddr>, identity: Identity) -> Stream {
        Stream {
            inner: Inner::Plain(tcp),
            peer: Peer { remote, identity },
            slot: None,
            held: None,
        }
    }

    /// This connection with its writes held until a flush, and each flush put off once
    /// behind the tasks ready to run, so that the answers of concurrent calls share a system
    /// call (`coalesce.rs`). For HTTP/2 (gRPC), whose connection task flushes after every
    /// frame it is handed.
    pub fn coalescing(mut self) -> Stream {
        self.held = Some(crate::coalesce::Held::default());
        self
    }

    /// Who is on the other end.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The TCP connection itself when nothing sits between it and the bytes (plaintext): what
    /// is written to it directly (e.g. with `sendfile`) arrives as it is. `None` under TLS.
    pub fn plain_tcp(&self) -> Option<&TcpStream> {
        match &self.inner {
            Inner::Plain(tcp) => Some(tcp),
            Inner::Tls(_) => None,
        }
    }
}

impl tonic::transport::server::Connected for Stream {
    type ConnectInfo = Peer;
    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Inner {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Inner::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Inner::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Inner::Plain(s) => s.is_write_vectored(),
            Inner::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Inner::Plain(s) => Pin::new(s).poll_flush(cx),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Inner::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let Stream { inner, held, .. } = self.get_mut();
        match held {
            Some(h) => h.poll_write(inner, cx, buf),
            None => Pin::new(inner).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let Stream { inner, held, .. } = self.get_mut();
        match held {
            Some(h) => h.poll_write_vectored(inner, cx, bufs),
            None => Pin::new(inner).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        // Held writes take a vectored write as cheaply as any.
        self.held.is_some() || self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Stream { inner, held, .. } = self.get_mut();
        match held {
            Some(h) => h.poll_flush(inner, cx),
            None => Pin::new(inner).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Stream { inner, held, .. } = self.get_mut();
        match held {
            Some(h) => h.poll_shutdown(inner, cx),
            None => Pin::new(inner).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{init_ca, issue, IssueOptions};
    use crate::principal::Role;
    use crate::TlsFiles;
    use std::path::Path;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn material(dir: &Path, role: Role, name: &str, opts: &IssueOptions) -> Arc<Tls> {
        let p = Principal::new(role, name).unwrap();
        issue(dir, dir, &p, opts).unwrap();
        Tls::load(TlsFiles::of(dir, &p)).unwrap()
    }

    /// Handshakes `client` against a server with `server`; the identity the server saw.
    async fn handshake(server: Arc<Tls>, client: Arc<Tls>) -> io::Result<Identity> {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = l.local_addr()?;
        let srv = tokio::spawn(async move {
            let (tcp, _) = l.accept().await?;
            let mut s = Transport::tls(server).accept(tcp).await?;
            let mut b = [0u8; 4];
            s.read_exact(&mut b).await?;
            s.write_all(b"pong").await?;
            s.flush().await?;
            Ok::<_, io::Error>(s.peer().identity.clone())
        });
        let tcp = TcpStream::connect(addr).await?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut c = tokio_rustls::TlsConnector::from(client.client_config())
            .connect(name, tcp)
            .await?;
        c.write_all(b"ping").await?;
        c.flush().await?;
        let mut b = [0u8; 4];
        let read = c.read_exact(&mut b).await;
        let seen = srv.await.unwrap()?;
        read?;
        assert_eq!(&b, b"pong");
        Ok(seen)
    }

    #[tokio::test]
    async fn handshakes_authenticate_and_refuse() {
        let d = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        init_ca(d.path()).unwrap();
        init_ca(other.path()).unwrap();
        let hosts = IssueOptions {
            hosts: vec!["127.0.0.1".into()],
            ..IssueOptions::default()
        };
        let server = material(d.path(), Role::Master, "1", &hosts);
        let alice = material(d.path(), Role::User, "alice", &IssueOptions::default());
        let seen = handshake(server.clone(), alice).await.unwrap();
        assert_eq!(
            seen,
            Identity::Principal(Principal::new(Role::User, "alice").unwrap())
        );
        // No certificate: in, but anonymous.
        let anon = Tls::load(TlsFiles {
            ca: d.path().join(crate::certs::CA_CERT),
            cert: None,
            key: None,
        })
        .unwrap();
        assert_eq!(
            handshake(server.clone(), anon).await.unwrap(),
            Identity::Anonymous
        );
        // Another CA's certificate, an expired one: refused in the handshake.
        let mallory = material(
            other.path(),
            Role::Admin,
            "mallory",
            &IssueOptions::default(),
        );
        assert!(handshake(server.clone(), mallory).await.is_err());
        let past = std::time::SystemTime::now() - Duration::from_secs(86_400);
        let expired = IssueOptions {
            not_before: past - Duration::from_secs(86_400),
            not_after: past,
            ..IssueOptions::default()
        };
        let old = material(d.path(), Role::Admin, "old", &expired);
        assert!(handshake(server.clone(), old).await.is_err());
        // A user certificate cannot serve: clients check the server usage.
        let bob = material(d.path(), Role::User, "bob", &hosts);
        let carol = material(d.path(), Role::User, "carol", &IssueOptions::default());
        assert!(handshake(bob, carol).await.is_err());
    }

    #[tokio::test]
    async fn rotation_reloads_changed_files() {
        let d = tempfile::tempdir().unwrap();
        init_ca(d.path()).unwrap();
        let p = Principal::new(Role::User, "alice").unwrap();
        issue(d.path(), d.path(), &p, &IssueOptions::default()).unwrap();
        let tls = Tls::load(TlsFiles::of(d.path(), &p)).unwrap();
        assert!(!tls.reload_if_changed().unwrap());
        let before = tls.client_config();
        let again = IssueOptions {
            replace: true,
            ..IssueOptions::default()
        };
        issue(d.path(), d.path(), &p, &again).unwrap();
        assert!(tls.reload_if_changed().unwrap());
        assert!(!Arc::ptr_eq(&before, &tls.client_config()));
        // A broken file: the reload fails and the old configuration stays.
        std::fs::write(d.path().join("alice.key"), b"garbage").unwrap();
        let kept = tls.client_config();
        assert!(tls.reload_if_changed().is_err());
        assert!(Arc::ptr_eq(&kept, &tls.client_config()));
    }
}
