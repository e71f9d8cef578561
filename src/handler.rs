//! The handler: one client's thread, looping read → write until the client
//! goes, then logging a one-line summary.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use log::{debug, info};

use crate::limits::Permit;
use crate::listener::{self, Rejection};
use crate::preview::Preview;
use crate::proxy_protocol::{self, Header};
use crate::server::Shared;

/// Size of the first read buffer, on the thread's stack: a typical message
/// fits, and it shares the stack pages the thread touches anyway, so an
/// idle client costs no page of its own.
const BUFFER_SMALL: usize = 2 * 1024;
/// Size of the heap buffer a client gets once a read fills the small one: a
/// streaming client gets large reads and writes. It bounds a client's
/// memory, since nothing is read before the previous read has been written
/// back.
const BUFFER_LARGE: usize = 64 * 1024;

/// Why a connection ended.
#[derive(Debug)]
enum End {
    /// The client closed its side and got every byte back.
    Eof,
    /// The client reset the connection or stopped reading for good.
    Reset,
    /// The client neither sent nor read for the idle timeout.
    IdleTimeout,
    /// The server was shutting down.
    Shutdown,
    /// Any other I/O error.
    Error(io::Error),
}

impl From<io::Error> for End {
    fn from(error: io::Error) -> End {
        match error.kind() {
            // SO_RCVTIMEO / SO_SNDTIMEO expiry reads as EAGAIN on Unix.
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => End::IdleTimeout,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => End::Reset,
            _ => End::Error(error),
        }
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Eof => f.write_str("client closed"),
            End::Reset => f.write_str("connection reset"),
            End::IdleTimeout => f.write_str("idle timeout"),
            End::Shutdown => f.write_str("server shutting down"),
            End::Error(error) => write!(f, "error: {error}"),
        }
    }
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone, Copy)]
struct Peer {
    /// The client: the connection's source, or what a PROXY header said.
    client: SocketAddr,
    /// The load balancer that relayed the connection, if any.
    proxy: Option<SocketAddr>,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.proxy {
            Some(proxy) => write!(f, "{} via {proxy}", self.client),
            None => write!(f, "{}", self.client),
        }
    }
}

/// Longest wait for a PROXY header: a balancer sends it at once, so a
/// connection without one is not from a balancer.
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(3);

/// Serves one client until it goes; `permit` is its slot, given back when
/// this returns (or unwinds).
pub(crate) fn serve(shared: &Shared, stream: &TcpStream, peer: SocketAddr, mut permit: Permit) {
    let started = Instant::now();
    if let Err(error) = configure(stream, shared) {
        debug!("{peer} dropped before it was served: {error}");
        return;
    }
    let (peer, pending) = if shared.config.proxy_protocol {
        match proxy_handshake(shared, stream, peer, &mut permit) {
            Ok((peer, pending)) => {
                info!("{peer} connected");
                (peer, pending)
            }
            Err(rejection) => return listener::reject(shared, peer, &rejection),
        }
    } else {
        // The spawner has logged the connection: formatting a log line
        // here would leave this thread a log buffer and deeper stack pages
        // for as long as the client stays.
        (
            Peer {
                client: peer,
                proxy: None,
            },
            Vec::new(),
        )
    };
    let mut echoed = 0;
    let end = echo(stream, peer, &pending, &mut echoed);
    let end = if shared.is_closing() {
        End::Shutdown
    } else {
        end
    };
    shared
        .counters
        .bytes_echoed
        .fetch_add(echoed, Ordering::Relaxed);
    info!(
        "{peer} disconnected: {end}, {echoed} bytes echoed in {:.3?}",
        started.elapsed()
    );
}

/// Reads the PROXY header and admits the client it names, returning who it
/// is and the bytes that came after the header.
fn proxy_handshake(
    shared: &Shared,
    stream: &TcpStream,
    proxy: SocketAddr,
    permit: &mut Permit,
) -> Result<(Peer, Vec<u8>), Rejection> {
    let idle = shared.config.idle_timeout;
    let wait = idle.map_or(PROXY_HEADER_TIMEOUT, |idle| idle.min(PROXY_HEADER_TIMEOUT));
    let mut reader = Deadline {
        stream,
        until: Instant::now() + wait,
    };
    let header = proxy_protocol::read_header(&mut reader)
        .and_then(|header| stream.set_read_timeout(idle).map(|()| header));
    let (header, pending) = header.map_err(Rejection::BadHeader)?;
    let peer = match header {
        Header::Proxied { source, .. } => Peer {
            client: source,
            proxy: Some(proxy),
        },
        // A balancer's own connection (a health check): its address is the
        // client's.
        Header::Local => Peer {
            client: proxy,
            proxy: None,
        },
    };
    let ip = peer.client.ip();
    if !shared.config.admits(ip) {
        return Err(Rejection::Denied);
    }
    permit.claim_ip(ip).map_err(Rejection::Limit)?;
    Ok((peer, pending))
}

/// Reads from a socket until a deadline, however the bytes trickle in: each
/// read waits at most for the time left.
struct Deadline<'a> {
    /// The socket read from.
    stream: &'a TcpStream,
    /// When reading stops with [`io::ErrorKind::TimedOut`].
    until: Instant,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "timed out");
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut stream = self.stream;
        stream.read(buffer).map_err(|error| match error.kind() {
            // SO_RCVTIMEO expiry reads as EAGAIN on Unix.
            io::ErrorKind::WouldBlock => timed_out(),
            _ => error,
        })
    }
}

/// Socket options every client gets.
fn configure(stream: &TcpStream, shared: &Shared) -> io::Result<()> {
    // An echo is a reply: send it now rather than wait for more to coalesce.
    stream.set_nodelay(true)?;
    let timeout = shared.config.idle_timeout;
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout)
}

/// Writes back `pending` (read with a PROXY header), then every byte read
/// until EOF, then shuts down the write side. Counts the bytes echoed in
/// `echoed`, which the caller reads even when an error ends the loop.
fn echo(mut stream: &TcpStream, peer: Peer, pending: &[u8], echoed: &mut u64) -> End {
    if !pending.is_empty() {
        if let Err(error) = stream.write_all(pending) {
            return End::from(error);
        }
        *echoed += pending.len() as u64;
    }
    let mut small = [0; BUFFER_SMALL];
    let mut large = Vec::new();
    loop {
        let buffer: &mut [u8] = if large.is_empty() {
            &mut small
        } else {
            &mut large
        };
        let read = match stream.read(buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return End::from(error),
        };
        debug!("{peer}: got {read} bytes: {}", Preview(&buffer[..read]));
        if let Err(error) = stream.write_all(&buffer[..read]) {
            return End::from(error);
        }
        *echoed += read as u64;
        if read == buffer.len() && large.is_empty() {
            large = vec![0; BUFFER_LARGE];
        }
    }
    // Everything read has been written: tell the client there is no more.
    match stream.shutdown(Shutdown::Write) {
        Ok(()) => End::Eof,
        Err(error) if error.kind() == io::ErrorKind::NotConnected => End::Eof,
        Err(error) => End::from(error),
    }
}
