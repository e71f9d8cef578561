//! TLS for [`Client`]: how the server is checked and which certificate the
//! client shows ([`TlsClientOptions`]), the handshake within the timeout,
//! and the stream that carries messages and close_notify.
//!
//! rustls with ring as its crypto provider, TLS 1.2 and 1.3 only.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{self, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, InconsistentKeys, RootCertStore,
    SignatureScheme, StreamOwned,
};

use super::{ByteStream, Client, Transport, open_tcp, open_unix};
use crate::errors::reason;
use crate::tls::fingerprint;

/// How a TLS [`Client`] checks the server, and the certificate it shows if
/// the server asks for one. Every file is PEM and is read when connecting.
///
/// There is no system trust store: without [`ca`](Self::ca), only
/// [`insecure`](Self::insecure) lets a connection go ahead.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use echo_server::{Client, TlsClientOptions};
///
/// let mut tls = TlsClientOptions::default();
/// tls.ca = Some("ca.pem".into());
/// let mut client = Client::connect_tls(
///     "localhost:8000",
///     "localhost",
///     &tls,
///     Duration::from_secs(5),
/// )?;
/// assert_eq!(client.send(b"Hello, server")?, b"Hello, server");
/// client.close()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TlsClientOptions {
    /// Trust only the certificate authorities in this file: the server's
    /// certificate must chain to one of them and name the server. Without
    /// it (and without [`insecure`](Self::insecure)), the system's trust
    /// store, as OpenSSL finds it (`SSL_CERT_FILE` and `SSL_CERT_DIR`
    /// included).
    pub ca: Option<PathBuf>,
    /// Check nothing about the server's certificate: any certificate for
    /// any name, expired or self-signed, is accepted. The handshake's
    /// signatures are still checked, so the server holds the key of the
    /// certificate it presents. Excludes [`ca`](Self::ca).
    pub insecure: bool,
    /// The client certificate chain, the client's own certificate first,
    /// shown to a server that asks for one; with [`key`](Self::key).
    pub cert: Option<PathBuf>,
    /// The private key of [`cert`](Self::cert): RSA, ECDSA or Ed25519, in
    /// PKCS#8, PKCS#1 or SEC1 form.
    pub key: Option<PathBuf>,
}

impl Client {
    /// Connects over TCP to the first address of `addr` that answers, as
    /// [`Client::connect`] does, then completes a TLS handshake with the
    /// server `server_name` (a DNS name, sent as SNI, or an IP address)
    /// within `timeout`. Replies are waited for as long.
    ///
    /// # Errors
    ///
    /// Fails before connecting if the options are incomplete or
    /// contradictory, if neither [`ca`](TlsClientOptions::ca) nor the
    /// system's trust store gives a CA to trust (`no CA to verify the
    /// server with: …; give --ca PATH or --insecure`), if a file cannot be read, holds
    /// no PEM item of the kind wanted or a key that does not match its
    /// certificate (the error names the file), or if `server_name` is not a
    /// valid name; as [`Client::connect`] if no address accepts the
    /// connection; and if the handshake fails or does not finish within
    /// `timeout`, naming the address and the reason (`TLS handshake with
    /// 127.0.0.1:8000 failed: invalid peer certificate: UnknownIssuer`).
    pub fn connect_tls<A: ToSocketAddrs>(
        addr: A,
        server_name: &str,
        tls: &TlsClientOptions,
        timeout: Duration,
    ) -> io::Result<Client> {
        let session = Session::new(server_name, tls)?;
        let (socket, peer) = open_tcp(addr, timeout)?;
        session.client(socket, peer, timeout)
    }

    /// Connects to the Unix stream socket at `path` (`@NAME`: the Linux
    /// abstract socket `NAME`), as [`Client::connect_unix`] does, then
    /// completes a TLS handshake with the server `server_name` within
    /// `timeout`. Replies are waited for as long.
    ///
    /// # Errors
    ///
    /// As [`Client::connect_tls`], the connection failing as in
    /// [`Client::connect_unix`].
    pub fn connect_tls_unix(
        path: &str,
        server_name: &str,
        tls: &TlsClientOptions,
        timeout: Duration,
    ) -> io::Result<Client> {
        let session = Session::new(server_name, tls)?;
        let (socket, peer) = open_unix(path, timeout)?;
        session.client(socket, peer, timeout)
    }

    /// The SHA-256 fingerprint of the certificate the server presented, as
    /// `openssl x509 -fingerprint -sha256` prints it (`AB:CD:…`, uppercase
    /// hex, colon separated); `None` without TLS.
    pub fn peer_certificate_fingerprint(&self) -> Option<String> {
        match &self.transport {
            Transport::Stream(stream) => stream.peer_certificate().map(fingerprint),
            Transport::Datagram(_) => None,
        }
    }
}

/// What a handshake needs, every file read: the rustls configuration and
/// the name the server must prove.
struct Session {
    /// How to check the server, which client certificate to show.
    config: Arc<ClientConfig>,
    /// The server's name, as SNI and as its certificate must give it.
    server_name: ServerName<'static>,
}

impl Session {
    /// Reads the files `tls` names and checks `server_name`.
    fn new(server_name: &str, tls: &TlsClientOptions) -> io::Result<Session> {
        let server_name = ServerName::try_from(server_name.to_owned()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid TLS server name {server_name:?}"),
            )
        })?;
        Ok(Session {
            config: Arc::new(tls.client_config()?),
            server_name,
        })
    }

    /// A client of `peer` over TLS on `socket`, once the handshake has
    /// finished; it must within `timeout`, whatever the server does.
    fn client<S: PlainStream>(
        self,
        mut socket: S,
        peer: String,
        timeout: Duration,
    ) -> io::Result<Client> {
        let failed = |error: io::Error| handshake_error(&peer, timeout, &error);
        let mut connection = ClientConnection::new(self.config, self.server_name)
            .map_err(|error| failed(io::Error::other(error)))?;
        let mut within = Deadline {
            socket: &mut socket,
            deadline: Instant::now() + timeout,
        };
        while connection.is_handshaking() {
            // complete_io returns once the handshake is over, or early when
            // a read times out after some progress; the deadline ends that.
            let (read, written) = connection.complete_io(&mut within).map_err(failed)?;
            if read == 0 && written == 0 {
                return Err(failed(io::ErrorKind::UnexpectedEof.into()));
            }
        }
        socket.set_timeouts(timeout)?;
        let stream = TlsStream(StreamOwned::new(connection, socket));
        Ok(Client::over_stream(stream, peer, timeout))
    }
}

/// The error of a failed handshake with `peer`, naming it; a socket
/// timeout (EAGAIN) or a deadline passed is [`io::ErrorKind::TimedOut`].
fn handshake_error(peer: &str, timeout: Duration, error: &io::Error) -> io::Error {
    let (kind, why) = match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            return io::Error::new(
                io::ErrorKind::TimedOut,
                format!("TLS handshake with {peer} did not finish within {timeout:?}"),
            );
        }
        io::ErrorKind::UnexpectedEof => (
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection".to_owned(),
        ),
        kind => (kind, reason(error)),
    };
    io::Error::new(kind, format!("TLS handshake with {peer} failed: {why}"))
}

impl TlsClientOptions {
    /// The rustls configuration these options ask for: TLS 1.2 and 1.3
    /// with ring, the server checked against the CA file or not at all,
    /// the client certificate if there is one. For clients of their own,
    /// such as a load generator's event loop.
    ///
    /// # Errors
    ///
    /// As [`Client::connect_tls`] before it connects: options incomplete
    /// or contradictory, a file unreadable, not PEM, or a key that does not
    /// match its certificate (the error names the file).
    pub fn client_config(&self) -> io::Result<ClientConfig> {
        client_config(self)
    }
}

/// The rustls configuration `tls` asks for.
fn client_config(tls: &TlsClientOptions) -> io::Result<ClientConfig> {
    let provider = Arc::new(crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring's provider has cipher suites for both TLS 1.2 and 1.3");
    let builder = match (&tls.ca, tls.insecure) {
        (Some(ca), false) => builder.with_root_certificates(read_roots(ca)?),
        (None, true) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate { algorithms })),
        (Some(_), true) => return Err(invalid_input("--ca and --insecure exclude each other")),
        (None, false) => builder.with_root_certificates(system_roots()?),
    };
    match (&tls.cert, &tls.key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = read_certificates(cert, "certificate")?;
            let private_key = PrivateKeyDer::from_pem_file(key)
                .map_err(|error| pem_error(key, "private key", error))?;
            builder
                .with_client_auth_cert(chain, private_key)
                .map_err(|error| unusable_key(cert, key, &error))
        }
        _ => Err(invalid_input("--cert and --key go together")),
    }
}

/// The system's trust store (`/etc/ssl/certs` on Debian, or what
/// `SSL_CERT_FILE` and `SSL_CERT_DIR` name), as OpenSSL reads it.
///
/// # Errors
///
/// Fails if it holds no certificate rustls can use.
fn system_roots() -> io::Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(|| "it is empty".to_owned(), ToString::to_string);
        return Err(invalid_input(&format!(
            "no CA to verify the server with: cannot use the system's trust store ({why}); \
             give --ca PATH or --insecure"
        )));
    }
    Ok(roots)
}

/// The error of options that do not go together.
fn invalid_input(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// The trust anchors in the PEM file `path`: every certificate in it.
fn read_roots(path: &Path) -> io::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(path, "CA certificate")? {
        roots.add(certificate).map_err(|error| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("cannot trust a certificate in {}: {error}", path.display()),
            )
        })?;
    }
    Ok(roots)
}

/// Every certificate in the PEM file `path`, at least one; `what` names
/// them in errors.
fn read_certificates(path: &Path, what: &str) -> io::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|error| pem_error(path, what, error))?;
    if certificates.is_empty() {
        return Err(pem_error(path, what, pem::Error::NoItemsFound));
    }
    Ok(certificates)
}

/// The error of reading a `what` from the PEM file `path`, naming it.
fn pem_error(path: &Path, what: &str, error: pem::Error) -> io::Error {
    let path = path.display();
    match error {
        pem::Error::Io(error) => io::Error::new(
            error.kind(),
            format!("cannot read {path}: {}", reason(&error)),
        ),
        pem::Error::NoItemsFound => io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no PEM {what} in {path}"),
        ),
        error => io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path} is not valid PEM: {error}"),
        ),
    }
}

/// The error of a client key that rustls refuses, naming the files.
fn unusable_key(cert: &Path, key: &Path, error: &rustls::Error) -> io::Error {
    let (cert, key) = (cert.display(), key.display());
    let message = match error {
        rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => {
            format!("the private key in {key} does not match the certificate in {cert}")
        }
        error => format!("cannot use the private key in {key}: {error}"),
    };
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The server check of `--insecure`: any certificate is accepted, but the
/// handshake signatures are checked with ring's algorithms, as rustls'
/// own verifier checks them.
#[derive(Debug)]
struct AnyCertificate {
    /// The signature algorithms of the crypto provider.
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A socket TLS runs over: TCP or a Unix stream socket.
trait PlainStream: ByteStream + 'static {
    /// Sets both the read and the write timeout to `timeout`, not zero.
    fn set_timeouts(&self, timeout: Duration) -> io::Result<()>;
}

impl PlainStream for TcpStream {
    fn set_timeouts(&self, timeout: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(timeout))?;
        self.set_write_timeout(Some(timeout))
    }
}

impl PlainStream for UnixStream {
    fn set_timeouts(&self, timeout: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(timeout))?;
        self.set_write_timeout(Some(timeout))
    }
}

/// A socket each read and write of which waits at most until a deadline:
/// a server that trickles its handshake out cannot stretch it.
struct Deadline<'a, S> {
    /// The socket.
    socket: &'a mut S,
    /// When every read and write must have returned.
    deadline: Instant,
}

impl<S: PlainStream> Deadline<'_, S> {
    /// Sets the socket's timeouts to the time left, or fails with
    /// [`io::ErrorKind::TimedOut`] if there is none.
    fn arm(&self) -> io::Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.socket.set_timeouts(left)
    }
}

impl<S: PlainStream> Read for Deadline<'_, S> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        self.arm()?;
        self.socket.read(buffer)
    }
}

impl<S: PlainStream> Write for Deadline<'_, S> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.arm()?;
        self.socket.write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.socket.flush()
    }
}

/// TLS over a connected socket, past its handshake.
#[derive(Debug)]
struct TlsStream<S: PlainStream>(StreamOwned<ClientConnection, S>);

impl<S: PlainStream> Read for TlsStream<S> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        self.0.read(buffer)
    }
}

impl<S: PlainStream> Write for TlsStream<S> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<S: PlainStream> ByteStream for TlsStream<S> {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.0.conn.send_close_notify();
        self.0.flush()?;
        self.0.sock.shutdown_write()
    }

    fn peer_certificate(&self) -> Option<&[u8]> {
        let chain = self.0.conn.peer_certificates()?;
        chain.first().map(|certificate| certificate.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, SigningKey as _};
    // DigitallySignedStruct has no public constructor; tests decode one.
    use rustls::internal::msgs::codec::Codec as _;

    /// Options that trust the CA file `ca`.
    fn trusting(ca: &str) -> TlsClientOptions {
        TlsClientOptions {
            ca: Some(ca.into()),
            ..TlsClientOptions::default()
        }
    }

    /// The error `Session::new` makes of `tls`.
    fn refused(tls: &TlsClientOptions) -> io::Error {
        Session::new("localhost", tls)
            .err()
            .expect("the options are refused")
    }

    #[test]
    fn a_fingerprint_is_uppercase_hex_bytes_joined_by_colons() {
        // SHA-256("abc"), from FIPS 180-2, appendix B.1.
        assert_eq!(
            fingerprint(b"abc"),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:\
             B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }

    #[test]
    fn options_with_a_ca_and_insecure_or_half_a_client_certificate_are_refused() {
        let both = TlsClientOptions {
            insecure: true,
            ..trusting("/nonexistent/ca.pem")
        };
        assert_eq!(
            refused(&both).to_string(),
            "--ca and --insecure exclude each other"
        );
        let cert_only = TlsClientOptions {
            insecure: true,
            cert: Some("client.pem".into()),
            ..TlsClientOptions::default()
        };
        let key_only = TlsClientOptions {
            insecure: true,
            key: Some("client.key".into()),
            ..TlsClientOptions::default()
        };
        for half in [cert_only, key_only] {
            let error = refused(&half);
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{half:?}");
            assert_eq!(error.to_string(), "--cert and --key go together");
        }
    }

    #[test]
    fn a_missing_ca_file_is_not_found_naming_it() {
        let error = refused(&trusting("/nonexistent/ca.pem"));
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            error.to_string(),
            "cannot read /nonexistent/ca.pem: no such file or directory"
        );
    }

    #[test]
    fn a_server_name_that_is_neither_a_dns_name_nor_an_address_is_refused() {
        let tls = TlsClientOptions {
            insecure: true,
            ..TlsClientOptions::default()
        };
        let error = Session::new("not a name", &tls)
            .err()
            .expect("a space is in no DNS name");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(error.to_string(), "invalid TLS server name \"not a name\"");
    }

    /// The wire form of a TLS 1.3 ecdsa_secp256r1_sha256 (0x0403) signature.
    fn ecdsa_p256_signature(signature: &[u8]) -> DigitallySignedStruct {
        let length = u16::try_from(signature.len()).expect("a short signature");
        let mut wire = vec![0x04, 0x03];
        wire.extend(length.to_be_bytes());
        wire.extend(signature);
        DigitallySignedStruct::read_bytes(&wire).expect("a well-formed signature")
    }

    #[test]
    fn insecure_accepts_any_certificate_but_checks_handshake_signatures() {
        // rcgen's default key: ECDSA P-256 with SHA-256, as 0x0403 says.
        let key = KeyPair::generate().expect("an ECDSA key");
        let params = CertificateParams::new(vec!["elsewhere.invalid".to_owned()]);
        let certificate = params
            .and_then(|params| params.self_signed(&key))
            .expect("a self-signed certificate");
        let verifier = AnyCertificate {
            algorithms: crypto::ring::default_provider().signature_verification_algorithms,
        };
        let name = ServerName::try_from("localhost").expect("a DNS name");
        let checked =
            verifier.verify_server_cert(certificate.der(), &[], &name, &[], UnixTime::now());
        assert!(checked.is_ok(), "{checked:?}");

        let message = b"the handshake transcript";
        let signed = ecdsa_p256_signature(&key.sign(message).expect("a signature"));
        let other = ecdsa_p256_signature(&key.sign(b"another message").expect("a signature"));
        let cert = certificate.der();
        for (signature, valid) in [(&signed, true), (&other, false)] {
            let tls13 = verifier.verify_tls13_signature(message, cert, signature);
            let tls12 = verifier.verify_tls12_signature(message, cert, signature);
            assert_eq!((tls13.is_ok(), tls12.is_ok()), (valid, valid));
        }
    }
}
