//! The socket under a connection: a TCP or Unix stream, a TLS session over
//! one, or a UDP socket connected to the server, behind one face (`Read`,
//! `Write`, `mio`'s `Source`), so that one connection type drives them all.

use std::io::{self, Read, Write};

use mio::net::{TcpStream, UdpSocket, UnixStream};
use mio::{Interest, Registry, Token, event::Source};

use crate::target::{self, Target};
#[cfg(feature = "tls")]
use crate::tls;
use crate::tls::Tls;

/// A non-blocking socket to the server. On a UDP socket, which is
/// connected, a read receives one datagram and a write sends one.
#[derive(Debug)]
pub enum Socket {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A Unix stream connection.
    Unix(UnixStream),
    /// A UDP socket that sends to and receives from the server only.
    Udp(UdpSocket),
    /// A TLS session over a TCP or Unix stream connection: reads and
    /// writes carry plaintext.
    #[cfg(feature = "tls")]
    Tls(Box<tls::Stream<Socket>>),
}

impl Socket {
    /// Starts connecting to `target`, to speak `tls` over the connection
    /// if given; the caller registers the socket and calls
    /// [`Socket::finish_connect`] when it is writable, then
    /// [`Socket::handshake`]. A TCP connect goes on in the background; a
    /// Unix connect is queued at once on the server's listener, and a UDP
    /// socket only records the server's address.
    ///
    /// # Errors
    ///
    /// Fails if no socket can be created (out of descriptors) or the connect
    /// fails at once: no route or local port, no Unix socket at the path or
    /// nothing listening on it, or `WouldBlock` when the server's Unix
    /// accept queue is full.
    pub fn connect(target: &Target, tls: Option<&Tls>) -> io::Result<Socket> {
        let socket = match target {
            Target::Tcp(addr) => Socket::Tcp(TcpStream::connect(*addr)?),
            Target::Unix(addr) => Socket::Unix(UnixStream::connect_addr(addr)?),
            Target::Udp(addr) => {
                let socket = UdpSocket::bind(target::any_port(addr))?;
                socket.connect(*addr)?;
                Socket::Udp(socket)
            }
        };
        match tls {
            None => Ok(socket),
            #[cfg(feature = "tls")]
            Some(tls) => Ok(Socket::Tls(Box::new(tls::Stream::new(socket, tls)?))),
            #[cfg(not(feature = "tls"))]
            Some(never) => match *never {},
        }
    }

    /// Whether the socket exchanges datagrams rather than a byte stream.
    pub fn is_datagram(&self) -> bool {
        matches!(self, Socket::Udp(_))
    }

    /// Whether the socket speaks TLS.
    pub fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Socket::Tls(_) = self {
            return true;
        }
        false
    }

    /// Checks a connecting socket after a readiness event: `Ok(true)` once
    /// connected, `Ok(false)` if the event came before the connect finished.
    ///
    /// # Errors
    ///
    /// Fails with the reason the connect failed (refused, unreachable).
    pub fn finish_connect(&self) -> io::Result<bool> {
        let (error, peer) = match self {
            Socket::Tcp(stream) => (stream.take_error()?, stream.peer_addr().map(drop)),
            Socket::Unix(stream) => (stream.take_error()?, stream.peer_addr().map(drop)),
            Socket::Udp(socket) => (socket.take_error()?, socket.peer_addr().map(drop)),
            #[cfg(feature = "tls")]
            Socket::Tls(stream) => return stream.socket().finish_connect(),
        };
        if let Some(error) = error {
            return Err(error);
        }
        match peer {
            Ok(()) => {
                if let Socket::Tcp(stream) = self {
                    // Each message waits for its echo: Nagle's
                    // algorithm would only add delay to the latency measured.
                    stream.set_nodelay(true)?;
                }
                Ok(true)
            }
            Err(error)
                if error.kind() == io::ErrorKind::NotConnected
                    || error.raw_os_error() == Some(libc::EINPROGRESS) =>
            {
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Moves a TLS handshake on after a readiness event, once the connect
    /// is complete: `Ok(true)` once it is done, at once without TLS.
    ///
    /// # Errors
    ///
    /// Fails with the reason the handshake failed.
    pub fn handshake(&mut self) -> io::Result<bool> {
        #[cfg(feature = "tls")]
        if let Socket::Tls(stream) = self {
            return stream.handshake();
        }
        Ok(true)
    }

    /// The socket as the event loop sees it.
    fn source(&mut self) -> &mut dyn Source {
        match self {
            Socket::Tcp(stream) => stream,
            Socket::Unix(stream) => stream,
            Socket::Udp(socket) => socket,
            #[cfg(feature = "tls")]
            Socket::Tls(stream) => stream.socket_mut().source(),
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(stream) => stream.read(buffer),
            Socket::Unix(stream) => stream.read(buffer),
            Socket::Udp(socket) => socket.recv(buffer),
            #[cfg(feature = "tls")]
            Socket::Tls(stream) => stream.read(buffer),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(stream) => stream.write(buffer),
            Socket::Unix(stream) => stream.write(buffer),
            Socket::Udp(socket) => socket.send(buffer),
            #[cfg(feature = "tls")]
            Socket::Tls(stream) => stream.write(buffer),
        }
    }

    /// Sends what a TLS session holds of what was written; `WouldBlock`
    /// if the socket does not take it all. Elsewhere nothing is buffered in
    /// user space: every write is a system call.
    fn flush(&mut self) -> io::Result<()> {
        #[cfg(feature = "tls")]
        if let Socket::Tls(stream) = self {
            return stream.flush();
        }
        Ok(())
    }
}

impl Source for Socket {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.source().register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.source().reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.source().deregister(registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unix_path_with_nothing_there_fails_to_connect_at_once() {
        let path = std::env::temp_dir().join(format!("echo-bench-none-{}", std::process::id()));
        let addr = target::unix_address(path.to_str().expect("a UTF-8 path")).expect("a path");
        let error = Socket::connect(&Target::Unix(addr), None).expect_err("nothing is there");
        assert_eq!(error.kind(), io::ErrorKind::NotFound, "{error}");
    }
}
