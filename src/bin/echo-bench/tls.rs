//! TLS over the stream connections: the flags that ask for it, the rustls
//! client configuration they make, and a client session driven over a
//! non-blocking socket by the worker's event loop.
//!
//! Every connection makes a full handshake: session resumption is off, so
//! that the handshake time measured is the same for the first connection
//! and the ten-thousandth.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

/// The TLS flags.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// Speak TLS over each TCP or Unix connection; a connection counts as
    /// established once its handshake is done, and the handshake time is
    /// reported apart
    #[arg(long, conflicts_with = "udp")]
    pub tls: bool,

    /// Verify the server's certificate against these CA certificates only
    /// (PEM)
    #[arg(
        long,
        value_name = "PATH",
        requires = "tls",
        conflicts_with = "insecure"
    )]
    pub ca: Option<PathBuf>,

    /// Accept any server certificate, unverified (the handshake's
    /// signatures are still checked)
    #[arg(long, requires = "tls")]
    pub insecure: bool,

    /// Client certificate chain to present (PEM)
    #[arg(long, value_name = "PATH", requires_all = ["tls", "key"])]
    pub cert: Option<PathBuf>,

    /// Private key of --cert (PEM)
    #[arg(long, value_name = "PATH", requires_all = ["tls", "cert"])]
    pub key: Option<PathBuf>,

    /// Name the server's certificate must be valid for [default: --host]
    #[arg(long, value_name = "NAME", requires = "tls", value_parser = server_name)]
    pub server_name: Option<ServerName<'static>>,
}

impl TlsArgs {
    /// The TLS configuration the flags ask for, `None` without `--tls`;
    /// the server name is `--server-name`, or else `host`.
    ///
    /// # Errors
    ///
    /// Fails if a PEM file cannot be read or holds nothing of what it
    /// should, if the client key does not match its certificate, or if
    /// `host` is not a name a certificate can carry.
    pub fn client(&self, host: &str) -> io::Result<Option<Tls>> {
        if !self.tls {
            return Ok(None);
        }
        let server_name = match &self.server_name {
            Some(name) => name.clone(),
            None => server_name(host)
                .map_err(|error| invalid(format!("--host {host}: {error}; give --server-name")))?,
        };
        let mut options = echo_server::TlsClientOptions::default();
        options.ca.clone_from(&self.ca);
        options.insecure = self.insecure;
        options.cert.clone_from(&self.cert);
        options.key.clone_from(&self.key);
        let mut config = options.client_config()?;
        config.resumption = Resumption::disabled();
        Ok(Some(Tls {
            config: Arc::new(config),
            server_name,
            verified: self.ca.is_some(),
        }))
    }
}

/// A server name as `--server-name` takes it: a DNS name or an IP address.
fn server_name(text: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(text.to_owned()).map_err(|error| error.to_string())
}

/// An error in what the flags name.
fn invalid(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, error)
}

/// How every connection of a run speaks TLS.
#[derive(Debug, Clone)]
pub struct Tls {
    /// The rustls configuration, shared by every session.
    config: Arc<ClientConfig>,
    /// The name the server's certificate is checked against, and sent in
    /// the handshake (SNI) when it is a DNS name.
    server_name: ServerName<'static>,
    /// Whether the server's certificate is verified (`--ca`), or taken as
    /// it comes (`--insecure`).
    verified: bool,
}

/// `TLS (server name localhost)`, and whether the certificate goes
/// unverified.
impl fmt::Display for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS (server name {}", self.server_name.to_str())?;
        if !self.verified {
            f.write_str(", certificate not verified")?;
        }
        f.write_str(")")
    }
}

/// A TLS client session over a non-blocking stream socket. Reads and
/// writes carry plaintext and fail with `WouldBlock` as the socket does;
/// the records the socket did not take at once go with the next write or
/// [`Write::flush`].
#[derive(Debug)]
pub struct Stream<S> {
    /// The socket, connected.
    socket: S,
    /// The rustls session: what is to be sent and what has been received.
    session: ClientConnection,
}

impl<S: Read + Write> Stream<S> {
    /// A session over `socket`, connected or still connecting, with its
    /// first handshake message ready to go.
    ///
    /// # Errors
    ///
    /// Fails if rustls cannot start a session with `tls`.
    pub fn new(socket: S, tls: &Tls) -> io::Result<Stream<S>> {
        let session = ClientConnection::new(Arc::clone(&tls.config), tls.server_name.clone())
            .map_err(io::Error::other)?;
        Ok(Stream { socket, session })
    }

    /// The socket under the session.
    pub fn socket(&self) -> &S {
        &self.socket
    }

    /// The socket under the session, to register with the event loop.
    pub fn socket_mut(&mut self) -> &mut S {
        &mut self.socket
    }

    /// Moves the handshake on as far as the socket allows, once its
    /// connect is complete: `Ok(true)` once the handshake is done.
    ///
    /// # Errors
    ///
    /// Fails with the reason the handshake failed (`invalid peer
    /// certificate: UnknownIssuer`), or if the server closes first.
    pub fn handshake(&mut self) -> io::Result<bool> {
        loop {
            self.push()?;
            if !self.session.is_handshaking() {
                return Ok(true);
            }
            match self.receive()? {
                Received::Nothing => return Ok(false),
                Received::Records => {}
                Received::End if self.session.is_handshaking() => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection during the TLS handshake",
                    ));
                }
                Received::End => {}
            }
        }
    }

    /// Writes the records waiting to go until none is left or the socket
    /// takes no more: `Ok(true)` if none is left.
    fn push(&mut self) -> io::Result<bool> {
        while self.session.wants_write() {
            match self.session.write_tls(&mut self.socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(true)
    }

    /// Reads what the socket has, once, and processes the records it
    /// completes.
    fn receive(&mut self) -> io::Result<Received> {
        let read = loop {
            match self.session.read_tls(&mut self.socket) {
                Ok(read) => break read,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Received::Nothing);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        };
        if let Err(error) = self.session.process_new_packets() {
            // The alert that tells the server why, as far as the socket
            // takes it: the connection is closed after this anyway.
            let _ = self.push();
            return Err(io::Error::new(io::ErrorKind::InvalidData, error));
        }
        Ok(if read == 0 {
            Received::End
        } else {
            Received::Records
        })
    }
}

/// What one read from the socket brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Received {
    /// Nothing yet: the read would block.
    Nothing,
    /// Bytes of records, processed.
    Records,
    /// The end of the stream, or of the session (close_notify).
    End,
}

impl<S: Read + Write> Read for Stream<S> {
    /// Reads plaintext: what the session holds, or else what the socket
    /// brings; `WouldBlock` once the socket has nothing more.
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.session.reader().read(buffer) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                // Some plaintext, or the end: a clean one (close_notify)
                // reads as 0, an unclean one as `UnexpectedEof`.
                other => return other,
            }
            if self.receive()? == Received::Nothing {
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
    }
}

impl<S: Read + Write> Write for Stream<S> {
    /// Takes as much plaintext as the session's buffer holds and sends what
    /// the socket takes of it; `WouldBlock` only when the buffer is full
    /// and the socket takes nothing.
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        self.push()?;
        let taken = self.session.writer().write(buffer)?;
        self.push()?;
        if taken == 0 && !buffer.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    /// Sends the records waiting to go; `WouldBlock` if the socket does
    /// not take them all.
    fn flush(&mut self) -> io::Result<()> {
        if self.push()? {
            Ok(())
        } else {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loopback::{self, tls::Identity, tls::TempFile};
    use std::net::{SocketAddr, TcpStream};

    /// A session to `addr` with the configuration `args` makes, over a
    /// blocking socket with the test timeouts: each step then goes to its
    /// end in one call.
    fn session(addr: SocketAddr, args: &TlsArgs) -> Stream<TcpStream> {
        let tls = args
            .client("localhost")
            .expect("the flags make a configuration")
            .expect("--tls is given");
        let socket = TcpStream::connect(addr).expect("loopback connects");
        socket
            .set_read_timeout(Some(loopback::TIMEOUT))
            .and_then(|()| socket.set_write_timeout(Some(loopback::TIMEOUT)))
            .expect("a socket takes timeouts");
        Stream::new(socket, &tls).expect("a session starts")
    }

    /// `--tls --ca PATH`.
    fn trusting(ca: &TempFile) -> TlsArgs {
        TlsArgs {
            tls: true,
            ca: Some(ca.path.clone()),
            ..TlsArgs::default()
        }
    }

    /// `--tls --insecure`.
    fn insecure() -> TlsArgs {
        TlsArgs {
            tls: true,
            insecure: true,
            ..TlsArgs::default()
        }
    }

    /// Sends `message` through `stream` and reads back as many bytes.
    fn round_trip(stream: &mut Stream<TcpStream>, message: &[u8]) -> io::Result<Vec<u8>> {
        stream.write_all(message)?;
        stream.flush()?;
        let mut reply = vec![0; message.len()];
        stream.read_exact(&mut reply)?;
        Ok(reply)
    }

    #[test]
    fn trusting_the_server_certificate_the_handshake_completes_and_plaintext_comes_back() {
        let server = Identity::new("echo-bench test server");
        let addr = loopback::serve(1, loopback::tls::echo(server.server_config()));
        let mut stream = session(addr, &trusting(&server.pem));
        assert!(stream.handshake().expect("the handshake succeeds"));
        let reply = round_trip(&mut stream, b"hello").expect("the echo comes back");
        assert_eq!(reply, b"hello");
    }

    #[test]
    fn a_certificate_no_trusted_ca_signed_fails_the_handshake_as_unknown_issuer() {
        let server = Identity::new("echo-bench test server");
        let other = Identity::new("echo-bench other CA");
        let addr = loopback::serve(1, loopback::tls::echo(server.server_config()));
        let error = session(addr, &trusting(&other.pem))
            .handshake()
            .expect_err("the issuer is unknown");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(error.to_string(), "invalid peer certificate: UnknownIssuer");
    }

    #[test]
    fn insecure_takes_an_unknown_certificate_but_not_a_handshake_signed_by_another_key() {
        let server = Identity::new("echo-bench test server");
        let addr = loopback::serve(1, loopback::tls::echo(server.server_config()));
        let mut stream = session(addr, &insecure());
        assert!(stream.handshake().expect("any certificate goes"));
        assert_eq!(round_trip(&mut stream, b"hi").expect("echoes"), b"hi");

        let other = Identity::new("echo-bench other key");
        let impostor = server.impostor_config(&other);
        let addr = loopback::serve(1, loopback::tls::echo(impostor));
        let error = session(addr, &insecure())
            .handshake()
            .expect_err("the signature is not by the certificate's key");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
    }

    #[test]
    fn a_client_certificate_goes_to_a_server_that_requires_one() {
        let server = Identity::new("echo-bench test server");
        let client = Identity::new("echo-bench test client");
        let config = server.server_config_requiring(&client);
        let addr = loopback::serve(2, loopback::tls::echo(config));
        let with_certificate = TlsArgs {
            cert: Some(client.pem.path.clone()),
            key: Some(client.key_pem.path.clone()),
            ..trusting(&server.pem)
        };
        let mut stream = session(addr, &with_certificate);
        assert!(stream.handshake().expect("the handshake succeeds"));
        assert_eq!(round_trip(&mut stream, b"hi").expect("echoes"), b"hi");
        // Over TLS 1.3 the client's part of the handshake ends before the
        // server has judged its certificate: the refusal comes after.
        let mut stream = session(addr, &trusting(&server.pem));
        let refused = stream
            .handshake()
            .and_then(|_| round_trip(&mut stream, b"hi"));
        let error = refused.expect_err("no certificate, no echo");
        assert!(error.to_string().contains("alert"), "{error}");
    }

    #[test]
    fn a_key_not_of_the_client_certificate_is_an_error() {
        let client = Identity::new("echo-bench test client");
        let other = Identity::new("echo-bench other client");
        let mismatched = TlsArgs {
            cert: Some(client.pem.path.clone()),
            key: Some(other.key_pem.path.clone()),
            ..insecure()
        };
        let error = mismatched.client("localhost").expect_err("mismatched");
        assert!(
            error
                .to_string()
                .contains("does not match the certificate in"),
            "{error}"
        );
    }

    #[test]
    fn a_ca_file_missing_or_without_a_certificate_is_an_error_naming_it() {
        let empty = TempFile::with("");
        let error = trusting(&empty).client("localhost").expect_err("empty");
        let path = empty.path.display();
        assert_eq!(
            error.to_string(),
            format!("no PEM CA certificate in {path}")
        );
        let missing = TlsArgs {
            ca: Some(PathBuf::from("/nonexistent/echo-bench-ca.pem")),
            ..trusting(&empty)
        };
        let error = missing.client("localhost").expect_err("no such file");
        assert_eq!(
            error.to_string(),
            "cannot read /nonexistent/echo-bench-ca.pem: no such file or directory"
        );
    }

    #[test]
    fn the_server_name_is_the_host_unless_given() {
        let tls = insecure()
            .client("127.0.0.1")
            .expect("valid")
            .expect("--tls");
        assert_eq!(
            tls.to_string(),
            "TLS (server name 127.0.0.1, certificate not verified)"
        );
        let named = TlsArgs {
            server_name: Some(server_name("echo.example").expect("a DNS name")),
            ..insecure()
        };
        let tls = named.client("127.0.0.1").expect("valid").expect("--tls");
        assert!(
            tls.to_string().contains("server name echo.example"),
            "{tls}"
        );
        assert!(insecure().client("not a name").is_err());
        let none = TlsArgs::default().client("localhost").expect("valid");
        assert!(none.is_none());
    }
}
