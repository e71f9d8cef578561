//! The client of the original tutorial: connect, send a message and wait for
//! its echo, close.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// A connection to an echo server.
///
/// TCP has no message boundaries: [`send`](Client::send) writes the whole
/// message, then reads until exactly as many bytes have come back, however
/// the network split them.
#[derive(Debug)]
pub struct Client {
    /// The connection.
    stream: TcpStream,
    /// The server's address, for error messages.
    peer: SocketAddr,
    /// How long to wait for a reply or for the connection to close.
    timeout: Duration,
}

impl Client {
    /// Connects to the first address of `addr` that answers, trying each one
    /// it resolves to for at most `timeout`; replies are waited for as long.
    ///
    /// # Errors
    ///
    /// Fails if `addr` cannot be resolved or no address accepts the
    /// connection; the error names the address and the reason
    /// (`cannot connect to 127.0.0.1:8000: connection refused`).
    pub fn connect<A: ToSocketAddrs>(addr: A, timeout: Duration) -> io::Result<Client> {
        let mut last_error = None;
        for peer in addr.to_socket_addrs()? {
            match connect_one(peer, timeout) {
                Ok(stream) => {
                    return Ok(Client {
                        stream,
                        peer,
                        timeout,
                    });
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to")
        }))
    }

    /// The server's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Sends `message` and returns the reply: exactly as many bytes as were
    /// sent. An echo server returns them unchanged; comparing is the
    /// caller's choice.
    ///
    /// # Errors
    ///
    /// Fails with [`io::ErrorKind::TimedOut`] if the whole reply does not
    /// come within the timeout, [`io::ErrorKind::UnexpectedEof`] if the
    /// server closes first, or with the error of the connection.
    pub fn send(&mut self, message: &[u8]) -> io::Result<Vec<u8>> {
        self.stream
            .write_all(message)
            .map_err(|error| self.describe(error))?;
        let mut reply = vec![0; message.len()];
        self.stream
            .read_exact(&mut reply)
            .map_err(|error| self.describe(error))?;
        Ok(reply)
    }

    /// Closes the connection cleanly: tells the server there is no more to
    /// send and waits for it to close its side.
    ///
    /// # Errors
    ///
    /// Fails if the server sends bytes nobody asked for, or does not close
    /// within the timeout.
    pub fn close(mut self) -> io::Result<()> {
        self.stream
            .shutdown(Shutdown::Write)
            .map_err(|error| self.describe(error))?;
        let mut extra = [0; 1];
        match self.stream.read(&mut extra) {
            Ok(0) => Ok(()),
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} sent bytes that were not asked for", self.peer),
            )),
            Err(error) => Err(self.describe(error)),
        }
    }

    /// The error, saying which server and what happened; a read timeout
    /// (EAGAIN on Unix) becomes [`io::ErrorKind::TimedOut`].
    fn describe(&self, error: io::Error) -> io::Error {
        match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no reply from {} within {:?}", self.peer, self.timeout),
            ),
            io::ErrorKind::UnexpectedEof => io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} closed the connection before replying in full",
                    self.peer
                ),
            ),
            kind => io::Error::new(kind, format!("{}: {}", self.peer, reason(&error))),
        }
    }
}

/// A connected, configured stream to `peer`.
fn connect_one(peer: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let configured = TcpStream::connect_timeout(&peer, timeout).and_then(|stream| {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(stream)
    });
    configured.map_err(|error| {
        io::Error::new(
            error.kind(),
            format!("cannot connect to {peer}: {}", reason(&error)),
        )
    })
}

/// The OS's message for `error`, lowercased as error messages are
/// ("connection refused").
fn reason(error: &io::Error) -> String {
    let message = crate::os_message(error);
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => message,
    }
}
