//! Test servers on 127.0.0.1 for the unit tests: one that echoes, and ones
//! that misbehave in the ways the generator must notice.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// How long a test socket waits for its peer: a bug then fails the test
/// instead of hanging it.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Serves at most `clients` connections on a free loopback port, each on a
/// thread of its own with `serve`, and returns the address. Nothing joins
/// the threads: the tests look at what the client sees, and every socket's
/// timeout ends a thread whose client has gone quiet.
pub fn serve<F>(clients: usize, serve: F) -> SocketAddr
where
    F: Fn(&TcpStream) -> io::Result<()> + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("loopback has a free port");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    // On Linux the read timeout bounds accept() too.
    socket2::SockRef::from(&listener)
        .set_read_timeout(Some(TIMEOUT))
        .expect("a listener takes a timeout");
    let serve = Arc::new(serve);
    thread::spawn(move || {
        for stream in listener.incoming().take(clients) {
            let Ok(stream) = stream else { return };
            let serve = Arc::clone(&serve);
            thread::spawn(move || -> io::Result<()> {
                stream.set_read_timeout(Some(TIMEOUT))?;
                stream.set_write_timeout(Some(TIMEOUT))?;
                serve(&stream)
            });
        }
    });
    addr
}

/// An address on which nothing listens: a port that was free a moment ago.
pub fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("loopback has a free port");
    listener
        .local_addr()
        .expect("a bound listener has an address")
}

/// Echoes everything until the client closes.
pub fn echo(stream: &TcpStream) -> io::Result<()> {
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
fn relay(
    mut stream: &TcpStream,
    mut reply: impl FnMut(&TcpStream, &mut [u8]) -> io::Result<()>,
) -> io::Result<()> {
    let mut buffer = [0; 4096];
    loop {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            return Ok(());
        }
        reply(stream, &mut buffer[..read])?;
    }
}
