//! The client of the original tutorial: connect, send a message and wait for
//! its echo, close.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::errors::reason;

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
    /// A long message goes out in chunks, each read back before the next is
    /// written, so that neither side blocks on full socket buffers.
    ///
    /// # Errors
    ///
    /// Fails with [`io::ErrorKind::TimedOut`] if a chunk cannot be sent or
    /// its reply does not come within the timeout,
    /// [`io::ErrorKind::UnexpectedEof`] if the server closes first, or with
    /// the error of the connection.
    pub fn send(&mut self, message: &[u8]) -> io::Result<Vec<u8>> {
        let mut reply = vec![0; message.len()];
        for (chunk, echo) in message.chunks(SEND_CHUNK).zip(reply.chunks_mut(SEND_CHUNK)) {
            self.stream
                .write_all(chunk)
                .map_err(|error| self.describe(error, Step::Send))?;
            self.stream
                .read_exact(echo)
                .map_err(|error| self.describe(error, Step::Reply))?;
        }
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
            .map_err(|error| self.describe(error, Step::Close))?;
        let mut extra = [0; 1];
        match self.stream.read(&mut extra) {
            Ok(0) => Ok(()),
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} sent bytes that were not asked for", self.peer),
            )),
            Err(error) => Err(self.describe(error, Step::Close)),
        }
    }

    /// The error of `step`, naming the server; a socket timeout (EAGAIN on
    /// Unix) becomes [`io::ErrorKind::TimedOut`].
    fn describe(&self, error: io::Error, step: Step) -> io::Error {
        let (peer, timeout) = (self.peer, self.timeout);
        match (error.kind(), step) {
            (io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut, _) => {
                let message = match step {
                    Step::Send => format!("cannot send to {peer} within {timeout:?}"),
                    Step::Reply => format!("no reply from {peer} within {timeout:?}"),
                    Step::Close => format!("{peer} did not close within {timeout:?}"),
                };
                io::Error::new(io::ErrorKind::TimedOut, message)
            }
            (io::ErrorKind::UnexpectedEof, _) => io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{peer} closed the connection before replying in full"),
            ),
            (kind, _) => io::Error::new(kind, format!("{peer}: {}", reason(&error))),
        }
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
