//! The socket under a connection: a TCP or Unix stream, or a UDP socket
//! connected to the server, behind one face (`Read`, `Write`, `mio`'s
//! `Source`), so that one connection type drives them all.

use std::io::{self, Read, Write};

use mio::net::{TcpStream, UdpSocket, UnixStream};
use mio::{Interest, Registry, Token, event::Source};

use crate::target::{self, Target};

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
}

impl Socket {
    /// Starts connecting to `target`; the caller registers the socket and
    /// calls [`Socket::finish_connect`] when it is writable. A TCP connect
    /// goes on in the background; a Unix connect is queued at once on the
    /// server's listener, and a UDP socket only records the server's address.
    ///
    /// # Errors
    ///
    /// Fails if no socket can be created (out of descriptors) or the connect
    /// fails at once: no route or local port, no Unix socket at the path or
    /// nothing listening on it, or `WouldBlock` when the server's Unix
    /// accept queue is full.
    pub fn connect(target: &Target) -> io::Result<Socket> {
        match target {
            Target::Tcp(addr) => TcpStream::connect(*addr).map(Socket::Tcp),
            Target::Unix(addr) => UnixStream::connect_addr(addr).map(Socket::Unix),
            Target::Udp(addr) => {
                let socket = UdpSocket::bind(target::any_port(addr))?;
                socket.connect(*addr)?;
                Ok(Socket::Udp(socket))
            }
        }
    }

    /// Whether the socket exchanges datagrams rather than a byte stream.
    pub fn is_datagram(&self) -> bool {
        matches!(self, Socket::Udp(_))
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

    /// The socket as the event loop sees it.
    fn source(&mut self) -> &mut dyn Source {
        match self {
            Socket::Tcp(stream) => stream,
            Socket::Unix(stream) => stream,
            Socket::Udp(socket) => socket,
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(stream) => stream.read(buffer),
            Socket::Unix(stream) => stream.read(buffer),
            Socket::Udp(socket) => socket.recv(buffer),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(stream) => stream.write(buffer),
            Socket::Unix(stream) => stream.write(buffer),
            Socket::Udp(socket) => socket.send(buffer),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        // Nothing is buffered in user space: every write is a system call.
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
        let error = Socket::connect(&Target::Unix(addr)).expect_err("nothing is there");
        assert_eq!(error.kind(), io::ErrorKind::NotFound, "{error}");
    }
}
