//! The client of the original tutorial: connect, send a message and wait for
//! its echo, close; over TCP, a Unix stream socket or UDP, and with the
//! `tls` feature over TLS on TCP or a Unix socket.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use socket2::{Domain, SockAddr, SockRef, Socket, Type};

use crate::errors::reason;

#[cfg(feature = "tls")]
mod tls;

#[cfg(feature = "tls")]
pub use tls::TlsClientOptions;

/// A connection to an echo server: TCP, a Unix stream socket, or UDP; with
/// the `tls` feature, TLS over TCP or a Unix stream socket as well.
///
/// TCP and Unix sockets have no message boundaries: [`send`](Client::send)
/// writes the whole message, then reads until exactly as many bytes have
/// come back, however the network split them. UDP has them: a message is
/// one datagram, its reply the one datagram that comes back.
#[derive(Debug)]
pub struct Client {
    /// The socket, and how messages travel on it.
    transport: Transport,
    /// The server as messages name it: `127.0.0.1:8000`,
    /// `unix:/run/echo.sock`, `udp:127.0.0.1:8000`.
    peer: String,
    /// How long to wait for a reply or for the connection to close.
    timeout: Duration,
}

impl Client {
    /// The largest message [`send`](Client::send) takes over UDP: what one
    /// IPv4 datagram carries (65,535 bytes less the IP and UDP headers).
    pub const MAX_DATAGRAM: usize = 65_507;

    /// Connects over TCP to the first address of `addr` that answers, trying
    /// each one it resolves to for at most `timeout`; replies are waited for
    /// as long.
    ///
    /// # Errors
    ///
    /// Fails if `addr` cannot be resolved or no address accepts the
    /// connection; the error names the address and the reason
    /// (`cannot connect to 127.0.0.1:8000: connection refused`).
    pub fn connect<A: ToSocketAddrs>(addr: A, timeout: Duration) -> io::Result<Client> {
        let (stream, peer) = open_tcp(addr, timeout)?;
        Ok(Client::over_stream(stream, peer, timeout))
    }

    /// Connects to the Unix stream socket at `path`, or, for `@NAME`, to the
    /// Linux abstract socket `NAME`. Connecting waits at most `timeout` (a
    /// server whose backlog is full makes it wait); replies as long.
    ///
    /// # Errors
    ///
    /// Fails if nothing listens at `path`; the error names the socket and
    /// the reason (`cannot connect to unix:/tmp/x.sock: no such file or
    /// directory`, `… connection refused`).
    pub fn connect_unix(path: &str, timeout: Duration) -> io::Result<Client> {
        let (stream, peer) = open_unix(path, timeout)?;
        Ok(Client::over_stream(stream, peer, timeout))
    }

    /// Sets up UDP to the first address of `addr` that a datagram can be
    /// sent to; replies are waited for at most `timeout`. UDP has no
    /// handshake: nothing is sent until [`send`](Client::send), so a server
    /// that is not there shows only then.
    ///
    /// # Errors
    ///
    /// Fails if `addr` cannot be resolved or no UDP socket can be set up for
    /// any of its addresses (no IPv6 here, say); the error names the last
    /// address tried and the reason (`cannot connect to udp:[::1]:8000: …`).
    pub fn connect_udp<A: ToSocketAddrs>(addr: A, timeout: Duration) -> io::Result<Client> {
        let (socket, peer) = connect_any(addr, |peer| connect_udp_socket(peer, timeout))?;
        Ok(Client {
            transport: Transport::Datagram(socket),
            peer: format!("udp:{peer}"),
            timeout,
        })
    }

    /// A client of the server `peer` over the connected `stream`.
    fn over_stream(stream: impl ByteStream + 'static, peer: String, timeout: Duration) -> Client {
        Client {
            transport: Transport::Stream(Box::new(stream)),
            peer,
            timeout,
        }
    }

    /// The server as messages name it: `127.0.0.1:8000` over TCP (with TLS
    /// or without), `unix:/run/echo.sock` or `unix:@NAME` over a Unix
    /// socket, `udp:127.0.0.1:8000` over UDP.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Sends `message` and returns the reply. An echo server returns it
    /// unchanged; comparing is the caller's choice.
    ///
    /// Over TCP and Unix sockets the reply is exactly as many bytes as were
    /// sent; a long message goes out in chunks, each read back before the
    /// next is written, so that neither side blocks on full socket buffers.
    /// Over UDP the message is one datagram and the reply is the datagram
    /// that comes back, whatever its length.
    ///
    /// # Errors
    ///
    /// Fails with [`io::ErrorKind::TimedOut`] if the message cannot be sent
    /// or its reply does not come within the timeout,
    /// [`io::ErrorKind::UnexpectedEof`] if a stream server closes first,
    /// [`io::ErrorKind::InvalidInput`] if a UDP message is longer than
    /// [`Client::MAX_DATAGRAM`], or with the error of the socket.
    pub fn send(&mut self, message: &[u8]) -> io::Result<Vec<u8>> {
        let exchanged = match &mut self.transport {
            Transport::Stream(stream) => exchange_bytes(stream.as_mut(), message),
            Transport::Datagram(socket) => exchange_datagram(socket, message),
        };
        exchanged.map_err(|(error, step)| self.describe(error, step))
    }

    /// Closes the connection cleanly: tells a stream server there is no more
    /// to send and waits for it to close its side. Over TLS, the client
    /// sends close_notify before it shuts down the socket's write side, and
    /// the server's close_notify or the end of the connection both close
    /// it. Over UDP there is no connection, and nothing to do.
    ///
    /// # Errors
    ///
    /// Fails if the server sends bytes nobody asked for, or does not close
    /// within the timeout.
    pub fn close(mut self) -> io::Result<()> {
        let Transport::Stream(stream) = &mut self.transport else {
            return Ok(());
        };
        let extra = stream
            .shutdown_write()
            .and_then(|()| stream.read(&mut [0; 1]));
        match extra {
            Ok(0) => Ok(()),
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} sent bytes that were not asked for", self.peer),
            )),
            // Over TLS, the end of the connection without the server's
            // close_notify: nothing is cut short, every reply has been read.
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Ok(()),
            Err(error) => Err(self.describe(error, Step::Close)),
        }
    }

    /// The error of `step`, naming the server; a socket timeout (EAGAIN on
    /// Unix) becomes [`io::ErrorKind::TimedOut`].
    fn describe(&self, error: io::Error, step: Step) -> io::Error {
        let (peer, timeout) = (&self.peer, self.timeout);
        match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                let message = match step {
                    Step::Send => format!("cannot send to {peer} within {timeout:?}"),
                    Step::Reply => format!("no reply from {peer} within {timeout:?}"),
                    Step::Close => format!("{peer} did not close within {timeout:?}"),
                };
                io::Error::new(io::ErrorKind::TimedOut, message)
            }
            io::ErrorKind::UnexpectedEof => io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{peer} closed the connection before replying in full"),
            ),
            kind => io::Error::new(kind, format!("{peer}: {}", reason(&error))),
        }
    }
}

/// The socket under a [`Client`], by how messages travel on it.
#[derive(Debug)]
enum Transport {
    /// TCP or a Unix stream socket: bytes with no message boundaries.
    Stream(Box<dyn ByteStream>),
    /// UDP, connected to the server: one datagram each way.
    Datagram(UdpSocket),
}

/// What a client needs of a connected stream: a socket, or TLS over one.
trait ByteStream: Read + Write + fmt::Debug + Send + Sync {
    /// Tells the server there is no more to send.
    fn shutdown_write(&mut self) -> io::Result<()>;

    /// The certificate the server presented, DER; `None` without TLS.
    #[cfg(feature = "tls")]
    fn peer_certificate(&self) -> Option<&[u8]> {
        None
    }
}

impl ByteStream for TcpStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl ByteStream for UnixStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// What the client was doing when an error came.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Writing a message.
    Send,
    /// Reading its echo.
    Reply,
    /// Closing.
    Close,
}

/// How much of a message is written before its echo is read back: well
/// under what loopback and most networks buffer in flight.
const SEND_CHUNK: usize = 64 * 1024;

/// Room for any UDP datagram, over IPv4 or IPv6, so that none is cut short.
const RECEIVE_BUFFER: usize = 64 * 1024;

/// Writes `message` to `stream` a chunk at a time, reading each chunk's
/// echo back before writing the next; the error says which step failed.
fn exchange_bytes(
    stream: &mut dyn ByteStream,
    message: &[u8],
) -> Result<Vec<u8>, (io::Error, Step)> {
    let mut reply = vec![0; message.len()];
    for (chunk, echo) in message.chunks(SEND_CHUNK).zip(reply.chunks_mut(SEND_CHUNK)) {
        stream
            .write_all(chunk)
            .map_err(|error| (error, Step::Send))?;
        stream
            .read_exact(echo)
            .map_err(|error| (error, Step::Reply))?;
    }
    Ok(reply)
}

/// Sends `message` as one datagram and returns the next datagram that
/// comes back; the error says which step failed.
fn exchange_datagram(socket: &UdpSocket, message: &[u8]) -> Result<Vec<u8>, (io::Error, Step)> {
    if message.len() > Client::MAX_DATAGRAM {
        let error = io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a message of {} bytes does not fit in one UDP datagram ({} bytes at most)",
                message.len(),
                Client::MAX_DATAGRAM
            ),
        );
        return Err((error, Step::Send));
    }
    socket.send(message).map_err(|error| (error, Step::Send))?;
    let mut reply = vec![0; RECEIVE_BUFFER];
    let received = socket
        .recv(&mut reply)
        .map_err(|error| (error, Step::Reply))?;
    reply.truncate(received);
    Ok(reply)
}

/// The first of the addresses `addr` resolves to that `connect_one`
/// connects to, with that address; else the last address's error.
fn connect_any<A: ToSocketAddrs, T>(
    addr: A,
    mut connect_one: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<(T, SocketAddr)> {
    let mut last_error = None;
    for peer in addr.to_socket_addrs()? {
        match connect_one(peer) {
            Ok(connected) => return Ok((connected, peer)),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to")))
}

/// A TCP stream to the first address of `addr` that answers (see
/// [`Client::connect`]), and that address as messages name it.
fn open_tcp<A: ToSocketAddrs>(addr: A, timeout: Duration) -> io::Result<(TcpStream, String)> {
    let (stream, peer) = connect_any(addr, |peer| connect_tcp(peer, timeout))?;
    Ok((stream, peer.to_string()))
}

/// A Unix stream socket connected to `path` (see [`Client::connect_unix`]),
/// and the socket as messages name it.
fn open_unix(path: &str, timeout: Duration) -> io::Result<(UnixStream, String)> {
    let peer = format!("unix:{path}");
    match connect_unix_stream(path, timeout) {
        Ok(stream) => Ok((stream, peer)),
        Err(error) => Err(cannot_connect(&peer, &error)),
    }
}

/// A connected, configured TCP stream to `peer`.
fn connect_tcp(peer: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let configured = TcpStream::connect_timeout(&peer, timeout).and_then(|stream| {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(stream)
    });
    configured.map_err(|error| cannot_connect(&peer.to_string(), &error))
}

/// A connected Unix stream socket to `path` (`@NAME`: the abstract name
/// `NAME`), with both timeouts set.
fn connect_unix_stream(path: &str, timeout: Duration) -> io::Result<UnixStream> {
    let address = unix_address(path)?;
    // Made by hand rather than by `UnixStream::connect`, so that the
    // timeouts are set before connecting: Linux bounds a connect that waits
    // on a full backlog by the send timeout. std's setters check them.
    let stream = UnixStream::from(Socket::new(Domain::UNIX, Type::STREAM, None)?);
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    SockRef::from(&stream).connect(&address)?;
    Ok(stream)
}

/// The address of the Unix socket `path`; `@NAME` is the abstract name
/// `NAME`.
fn unix_address(path: &str) -> io::Result<SockAddr> {
    match path.strip_prefix('@') {
        // An address whose path starts with a NUL byte is abstract (unix(7)).
        Some(name) => SockAddr::unix(format!("\0{name}")),
        None => SockAddr::unix(path),
    }
}

/// A UDP socket on an ephemeral port, connected to `peer` so that only its
/// datagrams are received, with both timeouts set.
fn connect_udp_socket(peer: SocketAddr, timeout: Duration) -> io::Result<UdpSocket> {
    let any = match peer {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let configured = UdpSocket::bind(any).and_then(|socket| {
        socket.connect(peer)?;
        socket.set_read_timeout(Some(timeout))?;
        socket.set_write_timeout(Some(timeout))?;
        Ok(socket)
    });
    configured.map_err(|error| cannot_connect(&format!("udp:{peer}"), &error))
}

/// The error of a failed connection to `peer`, naming it. A Unix connect
/// that waited out its send timeout fails with EAGAIN: that is a timeout.
fn cannot_connect(peer: &str, error: &io::Error) -> io::Error {
    let (kind, why) = match error.kind() {
        io::ErrorKind::WouldBlock => (io::ErrorKind::TimedOut, "connection timed out".to_owned()),
        kind => (kind, reason(error)),
    };
    io::Error::new(kind, format!("cannot connect to {peer}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn an_at_sign_makes_an_abstract_unix_address() {
        let named = unix_address("@echo").expect("a short name");
        assert_eq!(named.as_abstract_namespace(), Some(&b"echo"[..]));
        let path = unix_address("/run/echo.sock").expect("a short path");
        assert_eq!(path.as_abstract_namespace(), None);
        assert_eq!(path.as_pathname(), Some(Path::new("/run/echo.sock")));
    }

    #[test]
    fn a_connect_error_names_the_peer_and_a_unix_connect_waited_out_is_timed_out() {
        let cases = [
            (
                libc::EAGAIN,
                io::ErrorKind::TimedOut,
                "connection timed out",
            ),
            (
                libc::ENOENT,
                io::ErrorKind::NotFound,
                "no such file or directory",
            ),
        ];
        for (errno, kind, why) in cases {
            let error = cannot_connect("unix:/x", &io::Error::from_raw_os_error(errno));
            assert_eq!(error.kind(), kind, "{error}");
            assert_eq!(
                error.to_string(),
                format!("cannot connect to unix:/x: {why}")
            );
        }
    }
}
