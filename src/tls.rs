//! TLS on the stream listeners: the server's certificate (from PEM files,
//! or a throwaway one made at startup), client certificates, reloading on
//! SIGHUP, and a TLS session as one more [`Stream`] for the echo loop.
//!
//! The thread per client stays blocking: a rustls server connection over
//! the client's socket, handshake first (with a deadline), then read →
//! write through the session.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};

use crate::stream::{Deadline, Plain, Socket, Stream};

/// How long a client has to finish its handshake unless configured.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a server's TLS certificate comes from, and whether clients must
/// show one of theirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The certificate chain, PEM, leaf first; `None` makes a throwaway
    /// self-signed certificate for `localhost`, the loopback addresses and
    /// every bind name.
    pub cert: Option<PathBuf>,
    /// The private key of `cert`, PEM (PKCS#8, PKCS#1 or SEC1: RSA, ECDSA
    /// or Ed25519).
    pub key: Option<PathBuf>,
    /// Clients must show a certificate signed by one of these CAs, PEM.
    pub client_ca: Option<PathBuf>,
    /// How long a client has to finish its handshake before it is closed.
    pub handshake_timeout: Duration,
}

impl Default for TlsConfig {
    fn default() -> TlsConfig {
        TlsConfig {
            cert: None,
            key: None,
            client_ca: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

impl TlsConfig {
    /// TLS with the certificate in `cert` and its key in `key`.
    pub fn from_files(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsConfig {
        TlsConfig {
            cert: Some(cert.into()),
            key: Some(key.into()),
            ..TlsConfig::default()
        }
    }

    /// TLS with a throwaway self-signed certificate.
    pub fn self_signed() -> TlsConfig {
        TlsConfig::default()
    }

    /// The same, requiring client certificates signed by the CAs in `ca`.
    #[must_use]
    pub fn with_client_ca(self, ca: impl Into<PathBuf>) -> TlsConfig {
        TlsConfig {
            client_ca: Some(ca.into()),
            ..self
        }
    }
}

/// A server's TLS state: the configuration new connections get, which
/// SIGHUP can replace.
#[derive(Debug)]
pub(crate) struct Tls {
    /// Where the certificate and the client CAs come from.
    settings: TlsConfig,
    /// What new connections get, and the fingerprint of its certificate.
    /// A leaf lock: held only to clone or replace the pointer.
    current: RwLock<(Arc<ServerConfig>, String)>,
}

impl Tls {
    /// The TLS state `settings` ask for; a throwaway certificate names
    /// `names` (the bind names) besides `localhost` and the loopback
    /// addresses.
    ///
    /// # Errors
    ///
    /// Fails if a file is missing, unreadable or not PEM, or if the key
    /// does not match the certificate, naming the file.
    pub(crate) fn new(settings: &TlsConfig, names: &[String]) -> io::Result<Tls> {
        let (chain, key) = match (&settings.cert, &settings.key) {
            (Some(cert), Some(key)) => (read_chain(cert)?, read_key(key)?),
            (None, None) => throwaway(names)?,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a TLS certificate needs its key, and a key its certificate",
                ));
            }
        };
        let current = server_config(settings, chain, key)?;
        Ok(Tls {
            settings: settings.clone(),
            current: RwLock::new(current),
        })
    }

    /// The SHA-256 fingerprint of the certificate new connections get.
    pub(crate) fn fingerprint(&self) -> String {
        self.read().1.clone()
    }

    /// Rereads the certificate and key files: new connections get the new
    /// pair, connected clients keep theirs. Returns the new fingerprint, or
    /// `None` with a throwaway certificate (there is nothing to reread).
    ///
    /// # Errors
    ///
    /// Fails, keeping the pair in use, if the files cannot be read or do
    /// not match.
    pub(crate) fn reload(&self) -> io::Result<Option<String>> {
        let (Some(cert), Some(key)) = (&self.settings.cert, &self.settings.key) else {
            return Ok(None);
        };
        let current = server_config(&self.settings, read_chain(cert)?, read_key(key)?)?;
        let fingerprint = current.1.clone();
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = current;
        Ok(Some(fingerprint))
    }

    /// Completes the server side of a handshake on `socket`, `pending`
    /// being bytes of it already read, within the handshake timeout.
    ///
    /// # Errors
    ///
    /// Fails if the client does not speak TLS 1.2 or 1.3, presents no
    /// acceptable certificate when one is required, stalls, or goes.
    pub(crate) fn handshake<S: Socket + ?Sized>(
        &self,
        socket: &S,
        pending: &[u8],
    ) -> io::Result<Session> {
        let config = Arc::clone(&self.read().0);
        let mut conn = ServerConnection::new(config).map_err(io::Error::other)?;
        let mut io = Prefixed {
            pending,
            socket: Deadline::new(socket, self.settings.handshake_timeout),
        };
        while conn.is_handshaking() {
            if conn.complete_io(&mut io)? == (0, 0) && conn.is_handshaking() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        // The idle watchdog, not a socket timeout, bounds what follows.
        socket.set_read_timeout(None)?;
        let subject = conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| subject(leaf));
        Ok(Session { conn, subject })
    }

    /// The configuration in use; a poisoned lock still holds a whole one.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, (Arc<ServerConfig>, String)> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A socket whose first bytes were read already: they come first.
struct Prefixed<'a, S: ?Sized> {
    /// The bytes read already.
    pending: &'a [u8],
    /// The socket the rest comes from.
    socket: Deadline<'a, S>,
}

impl<S: Socket + ?Sized> Read for Prefixed<'_, S> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if self.pending.is_empty() {
            return self.socket.read(buffer);
        }
        self.pending.read(buffer)
    }
}

impl<S: Socket + ?Sized> Write for Prefixed<'_, S> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.socket.write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A client's TLS session, handshake done.
#[derive(Debug)]
pub(crate) struct Session {
    /// The rustls connection.
    conn: ServerConnection,
    /// The subject of the client's certificate, if it showed one.
    subject: Option<String>,
}

impl Session {
    /// The subject of the client's certificate (`CN=client`), if it
    /// showed one.
    pub(crate) fn client_subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// The session as the byte stream the echo loop serves, over `socket`.
    pub(crate) fn over<'a, S: Socket + ?Sized>(&'a mut self, socket: &'a S) -> TlsStream<'a, S> {
        TlsStream {
            conn: &mut self.conn,
            socket: Plain(socket),
        }
    }
}

/// A TLS session over a client's socket: the client's bytes are the
/// session's plaintext.
#[derive(Debug)]
pub(crate) struct TlsStream<'a, S: ?Sized> {
    /// The rustls connection.
    conn: &'a mut ServerConnection,
    /// The socket it runs over.
    socket: Plain<'a, S>,
}

impl<S: Socket + ?Sized> Read for TlsStream<'_, S> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match rustls::Stream::new(self.conn, &mut self.socket).read(buffer) {
            // The client closed without close_notify: for an echo server,
            // that is the end of its data like any other.
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            other => other,
        }
    }
}

impl<S: Socket + ?Sized> Write for TlsStream<'_, S> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        rustls::Stream::new(self.conn, &mut self.socket).write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        rustls::Stream::new(self.conn, &mut self.socket).flush()
    }
}

impl<S: Socket + ?Sized> Stream for TlsStream<'_, S> {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.socket)?;
        }
        match self.socket.0.shutdown(Shutdown::Write) {
            // The client has gone already: it has all there was.
            Err(error) if error.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        }
    }
}

/// The server configuration for `chain` and `key` under `settings`, with
/// the fingerprint of the chain's leaf.
fn server_config(
    settings: &TlsConfig,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> io::Result<(Arc<ServerConfig>, String)> {
    let fingerprint = chain
        .first()
        .map(|leaf| fingerprint(leaf))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no certificate in the chain"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(invalid)?;
    let builder = match &settings.client_ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for ca in read_chain(path)? {
                roots.add(ca).map_err(|error| named(path, invalid(error)))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|error| named(path, invalid(error)))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(chain, key).map_err(|error| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the TLS key does not fit the certificate: {error}"),
        )
    })?;
    Ok((Arc::new(config), fingerprint))
}

/// A self-signed certificate for `localhost`, the loopback addresses and
/// `names`, and its key.
fn throwaway(
    names: &[String],
) -> io::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let mut subject_names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    for name in names {
        let name = name.trim_matches(['[', ']']);
        let unspecified = name.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified());
        if !unspecified && !subject_names.iter().any(|known| known == name) {
            subject_names.push(name.to_owned());
        }
    }
    let params = rcgen::CertificateParams::new(subject_names).map_err(invalid)?;
    let key = rcgen::KeyPair::generate().map_err(io::Error::other)?;
    let cert = params.self_signed(&key).map_err(io::Error::other)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((vec![cert.der().clone()], key))
}

/// The certificates in the PEM file at `path`.
fn read_chain(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|error| named(path, pem_error(error)))?;
    if chain.is_empty() {
        return Err(named(
            path,
            io::Error::new(io::ErrorKind::InvalidData, "no certificate in it"),
        ));
    }
    Ok(chain)
}

/// The private key in the PEM file at `path`.
fn read_key(path: &Path) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| named(path, pem_error(error)))
}

/// A PEM reading error as an I/O error, keeping the OS's when there is one.
fn pem_error(error: rustls::pki_types::pem::Error) -> io::Error {
    match error {
        rustls::pki_types::pem::Error::Io(error) => error,
        rustls::pki_types::pem::Error::NoItemsFound => io::Error::new(
            io::ErrorKind::InvalidData,
            "no PEM item of the kind wanted in it",
        ),
        other => io::Error::new(io::ErrorKind::InvalidData, format!("not PEM: {other:?}")),
    }
}

/// `error`, naming the file it is about.
fn named(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(
        error.kind(),
        format!("{}: {}", path.display(), crate::errors::reason(&error)),
    )
}

/// Any error, as invalid data.
fn invalid(error: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

/// The SHA-256 fingerprint of a certificate as `openssl x509 -fingerprint
/// -sha256` prints it: uppercase hex bytes joined by colons.
pub(crate) fn fingerprint(cert: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert);
    digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The subject of a DER certificate (`CN=client`), or a placeholder if it
/// does not parse (rustls has verified it already).
fn subject(cert: &[u8]) -> String {
    match x509_parser::parse_x509_certificate(cert) {
        Ok((_, parsed)) => parsed.subject().to_string(),
        Err(_) => "(unparsable subject)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_read_as_openssl_prints_them() {
        // SHA-256 of the empty input.
        assert_eq!(
            fingerprint(b""),
            "E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:55"
        );
    }

    #[test]
    fn a_throwaway_certificate_names_loopback_and_the_bind_names() {
        let (chain, _) = throwaway(&["echo.example".to_owned(), "0.0.0.0".to_owned()]).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
        let names = parsed
            .subject_alternative_name()
            .unwrap()
            .expect("a SAN extension")
            .value
            .general_names
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        // x509-parser shows addresses as hex bytes.
        for name in [
            "DNSName(localhost)",
            "DNSName(echo.example)",
            "IPAddress(7f:00:00:01)",
        ] {
            assert!(names.contains(name), "{name} in {names}");
        }
        assert!(!names.contains("IPAddress(00:00:00:00)"), "{names}");
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let settings = TlsConfig::from_files("/nonexistent/cert.pem", "/nonexistent/key.pem");
        let error = Tls::new(&settings, &[]).unwrap_err();
        assert!(
            error.to_string().starts_with("/nonexistent/cert.pem: "),
            "{error}"
        );
    }

    #[test]
    fn a_throwaway_certificate_has_nothing_to_reload() {
        let tls = Tls::new(&TlsConfig::self_signed(), &[]).unwrap();
        assert_eq!(tls.reload().unwrap(), None);
        assert_eq!(tls.fingerprint().len(), 32 * 3 - 1);
    }
}
