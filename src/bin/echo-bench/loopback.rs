//! Test servers on 127.0.0.1 and at Unix abstract names for the unit tests:
//! ones that echo, and ones that misbehave in the ways the generator must
//! notice.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use crate::target::{self, Target};

/// How long a test socket waits for its peer: a bug then fails the test
/// instead of hanging it.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Serves at most `clients` connections on a free loopback port, each on a
/// thread of its own with `serve`, and returns the address.
pub fn serve<F>(clients: usize, serve: F) -> SocketAddr
where
    F: Fn(&TcpStream) -> io::Result<()> + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("loopback has a free port");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    accept_each(listener, clients, serve);
    addr
}

/// Like [`serve`], on a Unix socket at a fresh abstract name, which
/// vanishes when the last client is accepted or the accept times out.
pub fn serve_unix<F>(clients: usize, serve: F) -> Target
where
    F: Fn(&UnixStream) -> io::Result<()> + Send + Sync + 'static,
{
    let (listener, target) = unix_listener();
    accept_each(listener, clients, serve);
    target
}

/// A Unix listener at a fresh abstract name, and its target.
pub fn unix_listener() -> (UnixListener, Target) {
    static NAMES: AtomicUsize = AtomicUsize::new(0);
    let number = NAMES.fetch_add(1, Ordering::Relaxed);
    let name = format!("@echo-bench-test-{}-{number}", std::process::id());
    let addr = target::unix_address(&name).expect("the name is valid");
    let listener = UnixListener::bind_addr(&addr).expect("a fresh abstract name is free");
    (listener, Target::Unix(addr))
}

/// A listener [`accept_each`] takes clients from.
trait Listener: AsFd + Send + 'static {
    /// A client's socket.
    type Stream: AsFd + Send + 'static;

    /// The next client.
    fn next(&self) -> io::Result<Self::Stream>;
}

impl Listener for TcpListener {
    type Stream = TcpStream;

    fn next(&self) -> io::Result<TcpStream> {
        self.accept().map(|(stream, _)| stream)
    }
}

impl Listener for UnixListener {
    type Stream = UnixStream;

    fn next(&self) -> io::Result<UnixStream> {
        self.accept().map(|(stream, _)| stream)
    }
}

/// Takes at most `clients` clients from `listener`, each served on a thread
/// of its own with `serve`. Nothing joins the threads: the tests look at
/// what the client sees, and every socket's timeout ends a thread whose
/// client has gone quiet.
fn accept_each<L, F>(listener: L, clients: usize, serve: F)
where
    L: Listener,
    F: Fn(&L::Stream) -> io::Result<()> + Send + Sync + 'static,
{
    set_timeouts(&listener).expect("a listener takes a timeout");
    let serve = Arc::new(serve);
    thread::spawn(move || {
        for _ in 0..clients {
            let Ok(stream) = listener.next() else { return };
            let serve = Arc::clone(&serve);
            thread::spawn(move || -> io::Result<()> {
                set_timeouts(&stream)?;
                serve(&stream)
            });
        }
    });
}

/// Sets [`TIMEOUT`] on the reads and writes of `socket`; on Linux the read
/// timeout bounds accept() too.
fn set_timeouts(socket: &impl AsFd) -> io::Result<()> {
    let socket = socket2::SockRef::from(socket);
    socket.set_read_timeout(Some(TIMEOUT))?;
    socket.set_write_timeout(Some(TIMEOUT))
}

/// A UDP socket on a free loopback port that hands every datagram it
/// receives, and its source, to `answer`, until none has come for
/// [`TIMEOUT`]; returns its address.
pub fn serve_udp<F>(mut answer: F) -> SocketAddr
where
    F: FnMut(&UdpSocket, &[u8], SocketAddr) -> io::Result<()> + Send + 'static,
{
    let socket = UdpSocket::bind("127.0.0.1:0").expect("loopback has a free port");
    socket
        .set_read_timeout(Some(TIMEOUT))
        .expect("a socket takes a timeout");
    let addr = socket.local_addr().expect("a bound socket has an address");
    thread::spawn(move || -> io::Result<()> {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let (read, from) = socket.recv_from(&mut buffer)?;
            answer(&socket, &buffer[..read], from)?;
        }
    });
    addr
}

/// Sends `datagram` back to `from`.
pub fn echo_datagram(socket: &UdpSocket, datagram: &[u8], from: SocketAddr) -> io::Result<()> {
    socket.send_to(datagram, from).map(drop)
}

/// An address on which nothing listens: a port that was free a moment ago.
pub fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("loopback has a free port");
    listener
        .local_addr()
        .expect("a bound listener has an address")
}

/// Echoes everything until the client closes.
pub fn echo<S>(stream: &S) -> io::Result<()>
where
    for<'a> &'a S: Read + Write,
{
    relay(stream, |mut stream, piece| stream.write_all(piece))
}

/// Echoes everything with the first byte of every piece read flipped.
pub fn corrupt(stream: &TcpStream) -> io::Result<()> {
    relay(stream, |mut stream, piece| {
        piece[0] ^= 0xff;
        stream.write_all(piece)
    })
}

/// Echoes everything one byte per write, each sent at once.
pub fn in_pieces(stream: &TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    relay(stream, |mut stream, piece| {
        piece.chunks(1).try_for_each(|byte| stream.write_all(byte))
    })
}

/// Reads everything and echoes nothing.
pub fn silent(stream: &TcpStream) -> io::Result<()> {
    relay(stream, |_, _| Ok(()))
}

/// Reads a message of `size` bytes, echoes the first half of it and closes.
pub fn closes_mid_reply(size: usize) -> impl Fn(&TcpStream) -> io::Result<()> {
    move |mut stream| {
        let mut message = vec![0; size];
        stream.read_exact(&mut message)?;
        stream.write_all(&message[..size / 2])
    }
}

/// Reads until the client closes, handing each piece read to `reply`.
fn relay<S>(
    mut stream: &S,
    mut reply: impl FnMut(&S, &mut [u8]) -> io::Result<()>,
) -> io::Result<()>
where
    for<'a> &'a S: Read + Write,
{
    let mut buffer = [0; 4096];
    loop {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            return Ok(());
        }
        reply(stream, &mut buffer[..read])?;
    }
}

/// Test servers and credentials for TLS.
#[cfg(feature = "tls")]
pub mod tls {
    use std::io::{self, Read, Write};
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::server::{ClientHello, ResolvesServerCert, WantsServerCert, WebPkiClientVerifier};
    use rustls::sign::CertifiedKey;
    use rustls::{
        ConfigBuilder, RootCertStore, ServerConfig, ServerConnection, StreamOwned, WantsVerifier,
    };

    /// A self-signed certificate for `localhost` and 127.0.0.1, and its
    /// key.
    pub struct Identity {
        /// The certificate.
        certificate: CertificateDer<'static>,
        /// The certificate as PEM, where `--ca` or `--cert` reads it.
        pub pem: TempFile,
        /// The private key as PEM, where `--key` reads it.
        pub key_pem: TempFile,
        /// The private key.
        key: PrivatePkcs8KeyDer<'static>,
    }

    impl Identity {
        /// A fresh one whose subject is `name`: certificates of other
        /// names do not sign it.
        pub fn new(name: &str) -> Identity {
            let mut params =
                rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                    .expect("the names are valid");
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            let key = rcgen::KeyPair::generate().expect("a key can be made");
            let certificate = params.self_signed(&key).expect("the parameters are valid");
            Identity {
                certificate: certificate.der().clone(),
                pem: TempFile::with(&certificate.pem()),
                key_pem: TempFile::with(&key.serialize_pem()),
                key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            }
        }

        /// A server configuration that presents this certificate.
        pub fn server_config(&self) -> Arc<ServerConfig> {
            self.serve_with(server_builder().with_no_client_auth())
        }

        /// A server configuration that presents this certificate and
        /// requires a client certificate signed by `client`.
        pub fn server_config_requiring(&self, client: &Identity) -> Arc<ServerConfig> {
            let mut roots = RootCertStore::empty();
            roots
                .add(client.certificate.clone())
                .expect("a certificate is a trust anchor");
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::new(rustls::crypto::ring::default_provider()),
            )
            .build()
            .expect("the verifier has a root");
            self.serve_with(server_builder().with_client_cert_verifier(verifier))
        }

        /// A server configuration that presents this certificate but signs
        /// the handshake with `other`'s key: an impostor with the
        /// certificate and not its key.
        pub fn impostor_config(&self, other: &Identity) -> Arc<ServerConfig> {
            let key = rustls::crypto::ring::default_provider()
                .key_provider
                .load_private_key(PrivateKeyDer::Pkcs8(other.key.clone_key()))
                .expect("the key is a valid PKCS#8 key");
            let presented = CertifiedKey::new(vec![self.certificate.clone()], key);
            let config = server_builder()
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(Always(Arc::new(presented))));
            Arc::new(config)
        }

        /// `builder`'s configuration, presenting this certificate.
        fn serve_with(
            &self,
            builder: ConfigBuilder<ServerConfig, WantsServerCert>,
        ) -> Arc<ServerConfig> {
            let config = builder
                .with_single_cert(
                    vec![self.certificate.clone()],
                    PrivateKeyDer::Pkcs8(self.key.clone_key()),
                )
                .expect("the key is the certificate's");
            Arc::new(config)
        }
    }

    /// A server configuration with the ring provider and safe versions,
    /// to be given its certificates.
    fn server_builder() -> ConfigBuilder<ServerConfig, WantsVerifier> {
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("the ring provider has safe versions")
    }

    /// Presents the same certificate and key to every client.
    #[derive(Debug)]
    struct Always(Arc<CertifiedKey>);

    impl ResolvesServerCert for Always {
        fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            Some(Arc::clone(&self.0))
        }
    }

    /// Serves a client with `config`: a TLS handshake, then echoes
    /// everything until the client closes.
    pub fn echo<S>(config: Arc<ServerConfig>) -> impl Fn(&S) -> io::Result<()>
    where
        for<'a> &'a S: Read + Write,
    {
        move |stream: &S| {
            let session = ServerConnection::new(Arc::clone(&config)).map_err(io::Error::other)?;
            let mut tls = StreamOwned::new(session, stream);
            let mut buffer = [0; 4096];
            loop {
                let read = tls.read(&mut buffer)?;
                if read == 0 {
                    return Ok(());
                }
                tls.write_all(&buffer[..read])?;
                tls.flush()?;
            }
        }
    }

    /// A file in the temporary directory, removed on drop.
    pub struct TempFile {
        /// Where it is.
        pub path: PathBuf,
    }

    impl TempFile {
        /// A fresh file holding `text`.
        pub fn with(text: &str) -> TempFile {
            static FILES: AtomicUsize = AtomicUsize::new(0);
            let number = FILES.fetch_add(1, Ordering::Relaxed);
            let name = format!("echo-bench-test-{}-{number}.pem", std::process::id());
            let path = std::env::temp_dir().join(name);
            std::fs::write(&path, text).expect("the temporary directory is writable");
            TempFile { path }
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
