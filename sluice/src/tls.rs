//! TLS for every listener: a certificate from files (`--tls-cert`, `--tls-key`) or a
//! self-signed one generated once for local use (`--tls-self-signed`) and kept in the
//! data dir, so clients that pinned it keep working across restarts. Every listener (pg,
//! Flight SQL, HTTPS) presents the one [`Certificates`], which SIGHUP reloads from the
//! files: new handshakes get the new certificate, open connections keep theirs.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use pgwire::tokio::tokio_rustls::server::TlsStream;
use pgwire::tokio::tokio_rustls::TlsAcceptor;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::config::TlsSource;

/// Longest a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate and key in PEM, loaded or generated.
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Where the certificate is (generated first if it is self-signed and missing, or does not
/// name every address in `names`: the listeners' own addresses, so clients can verify it).
pub fn identity(source: &TlsSource, data_dir: &Path, names: &[String]) -> anyhow::Result<Identity> {
    match source {
        TlsSource::Files { cert, key } => Ok(Identity {
            cert: cert.clone(),
            key: key.clone(),
        }),
        TlsSource::SelfSigned => {
            let dir = data_dir.join("tls");
            let identity = Identity {
                cert: dir.join("self-signed.crt"),
                key: dir.join("self-signed.key"),
            };
            let mut wanted: Vec<String> =
                ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
            for name in names {
                if !wanted.contains(name) {
                    wanted.push(name.clone());
                }
            }
            let names_file = dir.join("self-signed.names");
            let covered = std::fs::read_to_string(&names_file).is_ok_and(|have| {
                let have: Vec<&str> = have.lines().collect();
                wanted.iter().all(|w| have.contains(&w.as_str()))
            });
            if !covered || !identity.cert.exists() || !identity.key.exists() {
                std::fs::create_dir_all(&dir)?;
                let generated = rcgen::generate_simple_self_signed(wanted.clone())
                    .map_err(|e| anyhow::anyhow!("cannot generate a certificate: {e}"))?;
                gateway::files::write_private(
                    &identity.key,
                    &generated.signing_key.serialize_pem(),
                )?;
                std::fs::write(&identity.cert, generated.cert.pem())?;
                std::fs::write(&names_file, wanted.join("\n"))?;
                tracing::info!(cert = %identity.cert.display(), names = ?wanted, "generated a self-signed TLS certificate");
            }
            Ok(identity)
        }
    }
}

/// The certificate and key every TLS listener presents; replaced whole on reload.
#[derive(Debug)]
pub struct Certificates {
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificates {
    pub fn load(identity: &Identity) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            current: RwLock::new(Arc::new(certified_key(identity)?)),
        }))
    }

    /// Read the files again; a certificate or key that does not load changes nothing.
    pub fn reload(&self, identity: &Identity) -> anyhow::Result<()> {
        let key = Arc::new(certified_key(identity)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = key;
        Ok(())
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn certified_key(identity: &Identity) -> anyhow::Result<CertifiedKey> {
    let certs = CertificateDer::pem_file_iter(&identity.cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("TLS certificate {}: {e}", identity.cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "TLS certificate {}: no certificate in it",
            identity.cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(&identity.key)
        .map_err(|e| anyhow::anyhow!("TLS key {}: {e}", identity.key.display()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(certs, key, &provider)
        .map_err(|e| anyhow::anyhow!("TLS certificate and key do not go together: {e}"))
}

/// A rustls server configuration presenting `certificates` and offering `alpn` (e.g.
/// "postgresql", "http/1.1", "h2").
pub fn server_config(certificates: &Arc<Certificates>, alpn: &[&[u8]]) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(certificates.clone());
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A listener that hands out TLS streams; handshakes run concurrently, so a slow client
/// does not hold up the others.
pub struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, accepted) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = tx.closed() => return,
                    accepted = listener.accept() => accepted,
                };
                let (socket, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = socket.set_nodelay(true);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { accepted, local })
    }
}

impl TlsListener {
    /// The accepted streams, for a server that takes a stream of connections (tonic).
    pub fn into_stream(
        self,
    ) -> impl futures::Stream<Item = Result<TlsStream<TcpStream>, std::io::Error>> {
        tokio_stream::wrappers::ReceiverStream::new(self.accepted).map(|(stream, _)| Ok(stream))
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accept loop ended: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
