//! The handler: one client's thread, looping read → write until the client
//! goes, then logging a one-line summary.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Instant;

use log::{debug, info, log_enabled};

use crate::limits::Permit;
use crate::preview::Preview;
use crate::server::Shared;

/// Size of the first read buffer: a typical message fits, and an idle client
/// costs one page.
const BUFFER_MIN: usize = 4 * 1024;
/// Size the buffer grows to when a read fills it: a streaming client gets
/// large reads and writes. It bounds a client's memory, since nothing is
/// read before the previous read has been written back.
const BUFFER_MAX: usize = 64 * 1024;

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

/// Serves one client until it goes; `permit` is its slot, given back when
/// this returns (or unwinds).
pub(crate) fn serve(shared: &Shared, stream: &TcpStream, peer: SocketAddr, permit: Permit) {
    let _permit = permit;
    let started = Instant::now();
    info!("{peer} connected");
    let mut echoed = 0;
    let end = match configure(stream, shared) {
        Ok(()) => echo(stream, peer, &mut echoed),
        Err(error) => End::from(error),
    };
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

/// Socket options every client gets.
fn configure(stream: &TcpStream, shared: &Shared) -> io::Result<()> {
    // An echo is a reply: send it now rather than wait for more to coalesce.
    stream.set_nodelay(true)?;
    let timeout = shared.config.idle_timeout;
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout)
}

/// Writes back every byte read until EOF, then shuts down the write side.
/// Counts the bytes echoed in `echoed`, which the caller reads even when an
/// error ends the loop.
fn echo(mut stream: &TcpStream, peer: SocketAddr, echoed: &mut u64) -> End {
    let mut buffer = vec![0; BUFFER_MIN];
    loop {
        let read = match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return End::from(error),
        };
        if log_enabled!(log::Level::Debug) {
            debug!("{peer}: got {read} bytes: {}", Preview(&buffer[..read]));
        }
        if let Err(error) = stream.write_all(&buffer[..read]) {
            return End::from(error);
        }
        *echoed += read as u64;
        if read == buffer.len() && buffer.len() < BUFFER_MAX {
            buffer.resize(BUFFER_MAX, 0);
        }
    }
    // Everything read has been written: tell the client there is no more.
    match stream.shutdown(Shutdown::Write) {
        Ok(()) => End::Eof,
        Err(error) if error.kind() == io::ErrorKind::NotConnected => End::Eof,
        Err(error) => End::from(error),
    }
}
