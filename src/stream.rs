//! The transport seam: what the server needs of a client's connection,
//! whatever carries it.
//!
//! A [`Socket`] is the connected socket itself, shared between the client's
//! thread and the threads that may close it (shutdown, the idle watchdog).
//! A [`Stream`] is the byte stream the echo loop serves: the socket as it
//! is ([`Plain`]), or a TLS session layered over it. TCP and Unix clients
//! are both kept as a `socket2::Socket`, the one `Socket` the server
//! accepts; the handler's unit tests plug in a socket in memory.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

/// A client's connected socket.
pub(crate) trait Socket: fmt::Debug + Send + Sync + 'static {
    /// Sets the options every client socket of this kind gets.
    ///
    /// # Errors
    ///
    /// Fails if the socket is no longer connected.
    fn configure(&self) -> io::Result<()>;

    /// Reads what has arrived, blocking until something has, or EOF.
    ///
    /// # Errors
    ///
    /// Fails as the socket's `read(2)` does.
    fn read(&self, buffer: &mut [u8]) -> io::Result<usize>;

    /// Writes some of `bytes`, blocking until something is written.
    ///
    /// # Errors
    ///
    /// Fails as the socket's `write(2)` does.
    fn write(&self, bytes: &[u8]) -> io::Result<usize>;

    /// Shuts down one or both directions; a thread blocked on the socket
    /// returns at once.
    ///
    /// # Errors
    ///
    /// Fails if the socket is not connected.
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;

    /// Bounds how long a read may block; `None` waits for ever.
    ///
    /// # Errors
    ///
    /// Fails if the socket refuses the option.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

/// Every accepted client's socket, TCP or Unix, as the server keeps it:
/// one type, so that the registry of live clients holds thin pointers.
impl Socket for socket2::Socket {
    fn configure(&self) -> io::Result<()> {
        // An echo is a reply: send it now rather than wait for more to
        // coalesce. A Unix socket has no such delay, and says so.
        match self.set_tcp_nodelay(true) {
            Err(error) if error.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(()),
            other => other,
        }
    }

    fn read(&self, buffer: &mut [u8]) -> io::Result<usize> {
        Read::read(&mut &*self, buffer)
    }

    fn write(&self, bytes: &[u8]) -> io::Result<usize> {
        Write::write(&mut &*self, bytes)
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        socket2::Socket::shutdown(self, how)
    }

    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        socket2::Socket::set_read_timeout(self, timeout)
    }
}

/// A socket read until a deadline, however the bytes trickle in: each read
/// waits at most for the time left, then fails with
/// [`io::ErrorKind::TimedOut`]. For what must come at once (a PROXY
/// header, a TLS handshake); the caller clears the socket's read timeout
/// afterwards. Writes go through as they are.
#[derive(Debug)]
pub(crate) struct Deadline<'a, S: ?Sized> {
    /// The socket.
    socket: &'a S,
    /// When reading stops.
    until: Instant,
}

impl<'a, S: Socket + ?Sized> Deadline<'a, S> {
    /// `socket`, read for at most `wait` from now.
    pub(crate) fn new(socket: &'a S, wait: Duration) -> Deadline<'a, S> {
        Deadline {
            socket,
            until: Instant::now() + wait,
        }
    }
}

impl<S: Socket + ?Sized> Read for Deadline<'_, S> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "timed out");
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        self.socket.set_read_timeout(Some(left))?;
        self.socket
            .read(buffer)
            .map_err(|error| match error.kind() {
                // SO_RCVTIMEO expiry reads as EAGAIN on Unix.
                io::ErrorKind::WouldBlock => timed_out(),
                _ => error,
            })
    }
}

impl<S: Socket + ?Sized> Write for Deadline<'_, S> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.socket.write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Who is on the other end of a connection, as the socket tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PeerAddr {
    /// A TCP peer, or the client a PROXY header names.
    Ip(SocketAddr),
    /// A process connected to a Unix socket; boxed, so that a TCP peer,
    /// the common case, costs no more than its address.
    Unix(Box<UnixPeer>),
}

/// A process connected to a Unix socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnixPeer {
    /// The socket it connected to, as listed (`unix:/run/echo.sock`).
    pub(crate) socket: String,
    /// Its process id and user id, when the kernel tells them.
    pub(crate) credentials: Option<(i32, u32)>,
}

impl PeerAddr {
    /// The IP address, for the access lists and the per-IP limit.
    pub(crate) fn ip(&self) -> Option<std::net::IpAddr> {
        match self {
            PeerAddr::Ip(addr) => Some(addr.ip()),
            PeerAddr::Unix(_) => None,
        }
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Ip(addr) => write!(f, "{addr}"),
            PeerAddr::Unix(peer) => match peer.credentials {
                Some((pid, uid)) => write!(f, "{} pid {pid} uid {uid}", peer.socket),
                None => write!(f, "{}", peer.socket),
            },
        }
    }
}

/// The byte stream the echo loop serves.
pub(crate) trait Stream: Read + Write {
    /// Tells the client nothing more will come, once everything written
    /// has been sent.
    ///
    /// # Errors
    ///
    /// Fails if the connection is broken.
    fn shutdown_write(&mut self) -> io::Result<()>;
}

/// A socket served as it is: its bytes are the client's.
#[derive(Debug)]
pub(crate) struct Plain<'a, S: ?Sized>(pub(crate) &'a S);

impl<S: Socket + ?Sized> Read for Plain<'_, S> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        self.0.read(buffer)
    }
}

impl<S: Socket + ?Sized> Write for Plain<'_, S> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<S: Socket + ?Sized> Stream for Plain<'_, S> {
    fn shutdown_write(&mut self) -> io::Result<()> {
        match self.0.shutdown(Shutdown::Write) {
            // The client has gone already: it has all there was.
            Err(error) if error.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_costs_no_more_than_a_socket_address() {
        // Every client's thread keeps its peer for as long as it runs.
        assert_eq!(size_of::<PeerAddr>(), size_of::<SocketAddr>());
    }
}
