//! The handler: one client's thread, from its socket's options and, behind
//! a load balancer, the PROXY header, through the echo loop to a one-line
//! summary.
//!
//! It serves any [`Socket`] through the [`Stream`] seam, so that every kind
//! of client is served by the same echo loop and ends the same way.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info};

use crate::config::Config;
use crate::limits::{Permit, Tracked};
use crate::preview::Preview;
use crate::proxy_protocol::{self, Header};
use crate::stats::{Counters, Rejection};
use crate::stop::{Phase, Stop};
use crate::stream::{Deadline, PeerAddr, Plain, Socket, Stream};
#[cfg(feature = "tls")]
use crate::tls::{Session, Tls};

/// Without TLS built in, no session ever exists.
#[cfg(not(feature = "tls"))]
enum Session {}

#[cfg(not(feature = "tls"))]
impl Session {
    /// Never called: there is no session.
    fn over<'a, S: Socket + ?Sized>(&'a mut self, _: &'a S) -> Plain<'a, S> {
        match *self {}
    }
}

/// Size of the first read buffer, on the thread's stack: a typical message
/// fits, and it shares the stack pages the thread touches anyway, so an
/// idle client costs no page of its own.
const BUFFER_SMALL: usize = 2 * 1024;
/// Size of the heap buffer a client gets once a read fills the small one: a
/// streaming client gets large reads and writes. It bounds a client's
/// memory, since nothing is read before the previous read has been written
/// back. One stream through loopback echoed 1 GiB at 1.2× the speed it did
/// with 64 KiB (more per read, fewer system calls); 256 KiB gave no more.
const BUFFER_LARGE: usize = 128 * 1024;

/// Longest wait for a PROXY header: a balancer sends it at once, so a
/// connection without one is not from a balancer.
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(3);

/// A client admitted by an accept loop, with what its thread needs.
#[derive(Debug)]
pub(crate) struct Client<S: ?Sized> {
    /// The connection, shared with the registry that shutdown and the idle
    /// watchdog use.
    pub(crate) socket: Arc<Tracked<S>>,
    /// Where it comes from.
    pub(crate) peer: PeerAddr,
    /// Its connection slot.
    pub(crate) permit: Permit,
}

/// What every client thread of a server shares, behind one `Arc`.
#[derive(Debug)]
pub(crate) struct Handler {
    /// Whether a PROXY header comes first, and who may be served.
    config: Arc<Config>,
    /// The TLS state, when clients speak TLS.
    #[cfg(feature = "tls")]
    tls: Option<Arc<Tls>>,
    /// Where bytes echoed and rejections are counted.
    counters: Arc<Counters>,
    /// Whether the server is closing its clients, to say why one ended.
    stop: Arc<Stop>,
}

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
#[derive(Debug, Clone)]
struct Peer {
    /// The client: the connection's source, or what a PROXY header said.
    client: PeerAddr,
    /// The load balancer that relayed the connection, if any.
    proxy: Option<PeerAddr>,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.proxy {
            Some(proxy) => write!(f, "{} via {proxy}", self.client),
            None => write!(f, "{}", self.client),
        }
    }
}

impl Handler {
    /// A handler for the clients of a server with `config`.
    pub(crate) fn new(config: Arc<Config>, counters: Arc<Counters>, stop: Arc<Stop>) -> Handler {
        Handler {
            config,
            #[cfg(feature = "tls")]
            tls: None,
            counters,
            stop,
        }
    }

    /// The same handler, serving TLS with `tls`.
    #[cfg(feature = "tls")]
    pub(crate) fn with_tls(self, tls: Option<Arc<Tls>>) -> Handler {
        Handler { tls, ..self }
    }

    /// Whether clients speak TLS.
    fn serves_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// Whether clients are logged once their PROXY header is read rather
    /// than when their thread starts.
    pub(crate) fn logs_connects(&self) -> bool {
        self.config.proxy_protocol
    }

    /// Serves `client` until it goes.
    ///
    /// Its slot is given back as soon as it is no longer served; the thread
    /// then logs the summary and closes the socket, the last reference to
    /// it, as it returns.
    pub(crate) fn serve<S: Socket + ?Sized>(&self, client: Client<S>) {
        let started = Instant::now();
        let Client {
            socket,
            peer,
            mut permit,
        } = client;
        if let Err(error) = socket.socket().configure() {
            debug!("{peer} dropped before it was served: {error}");
            return;
        }
        let Some((peer, pending)) = self.identify(socket.socket(), peer, &mut permit) else {
            return;
        };
        let mut echoed = 0;
        // Without TLS the handshake's function is not even called: its
        // frame, however briefly used, would leave every client's thread a
        // stack page more.
        let session = if self.serves_tls() {
            self.tls_handshake(socket.socket(), &peer, &pending)
        } else {
            Ok(None)
        };
        let end = match session {
            Ok(Some(session)) => echo_tls(session, &socket, &peer, &mut echoed),
            Ok(None) => echo(
                &mut Plain(socket.socket()),
                &socket,
                &peer,
                &pending,
                &mut echoed,
            ),
            Err(rejection) => return self.counters.reject(peer, &rejection),
        };
        let end = if socket.timed_out() {
            End::IdleTimeout
        } else if matches!(self.stop.phase(), Phase::Closing | Phase::Stopped) {
            End::Shutdown
        } else {
            end
        };
        self.counters.echoed(echoed);
        drop(permit);
        info!(
            "{peer} disconnected: {end}, {echoed} bytes echoed in {:.3?}",
            started.elapsed()
        );
    }

    /// Who the client is: the connection's peer, or, behind a balancer,
    /// the client its PROXY header names (logged then, as it is only known
    /// now), with the bytes that came after the header; `None` for a
    /// client rejected on its header, counted here.
    ///
    /// `peer` is moved, not cloned: a Unix peer is on the heap, and a copy
    /// made on this thread would be its first allocation, which glibc
    /// answers with a per-thread cache kept for the thread's life.
    fn identify<S: Socket + ?Sized>(
        &self,
        socket: &S,
        peer: PeerAddr,
        permit: &mut Permit,
    ) -> Option<(Peer, Vec<u8>)> {
        if !self.config.proxy_protocol {
            // The spawner has logged the connection: formatting a log line
            // here would leave this thread a log buffer and deeper stack
            // pages for as long as the client stays.
            let peer = Peer {
                client: peer,
                proxy: None,
            };
            return Some((peer, Vec::new()));
        }
        match self.proxy_handshake(socket, &peer, permit) {
            Ok((peer, pending)) => {
                info!("{peer} connected");
                Some((peer, pending))
            }
            Err(rejection) => {
                self.counters.reject(peer, &rejection);
                None
            }
        }
    }

    /// With TLS, completes the handshake (`pending` being its first bytes)
    /// and logs the client certificate's subject, if any; without, `None`.
    ///
    /// Never inlined: the handshake's locals are kilobytes, which in the
    /// frame of `serve` would stay on the stack for the client's life.
    #[cfg(feature = "tls")]
    #[inline(never)]
    fn tls_handshake<S: Socket + ?Sized>(
        &self,
        socket: &S,
        peer: &Peer,
        pending: &[u8],
    ) -> Result<Option<Box<Session>>, Rejection> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        let session = tls.handshake(socket, pending).map_err(Rejection::Tls)?;
        if let Some(subject) = session.client_subject() {
            info!("{peer}: TLS client certificate {subject}");
        }
        // On the heap: a session is kilobytes, which on the stack of
        // `serve` would cost every client a page, TLS or not.
        Ok(Some(Box::new(session)))
    }

    /// Without TLS built in, there is no handshake.
    #[cfg(not(feature = "tls"))]
    fn tls_handshake<S: Socket + ?Sized>(
        &self,
        _: &S,
        _: &Peer,
        _: &[u8],
    ) -> Result<Option<Box<Session>>, Rejection> {
        Ok(None)
    }

    /// Reads the PROXY header and admits the client it names, returning who
    /// it is and the bytes that came after the header.
    #[inline(never)]
    fn proxy_handshake<S: Socket + ?Sized>(
        &self,
        socket: &S,
        proxy: &PeerAddr,
        permit: &mut Permit,
    ) -> Result<(Peer, Vec<u8>), Rejection> {
        let wait = self
            .config
            .idle_timeout
            .map_or(PROXY_HEADER_TIMEOUT, |idle| idle.min(PROXY_HEADER_TIMEOUT));
        let mut reader = Deadline::new(socket, wait);
        // The idle watchdog, not a socket timeout, bounds what follows.
        let header = proxy_protocol::read_header(&mut reader)
            .and_then(|header| socket.set_read_timeout(None).map(|()| header));
        let (header, pending) = header.map_err(Rejection::BadHeader)?;
        let peer = match header {
            Header::Proxied { source, .. } => Peer {
                client: PeerAddr::Ip(source),
                proxy: Some(proxy.clone()),
            },
            // A balancer's own connection (a health check): its address is
            // the client's.
            Header::Local => Peer {
                client: proxy.clone(),
                proxy: None,
            },
        };
        // A health check over a Unix socket has no address to check.
        if let Some(ip) = peer.client.ip() {
            if !self.config.admits(ip) {
                return Err(Rejection::Denied);
            }
            permit.claim_ip(ip).map_err(Rejection::Limit)?;
        }
        Ok((peer, pending))
    }
}

/// Writes back `pending` (read with a PROXY header), then every byte read
/// until EOF, then shuts down the write side. Counts the bytes echoed in
/// `echoed`, which the caller reads even when an error ends the loop, and
/// marks them on `tracked` for the idle watchdog.
///
/// Never inlined: its read buffer then sits beside the PROXY handshake on
/// the stack, not above it, so that a client behind a balancer touches no
/// more stack pages than one without.
#[inline(never)]
fn echo<S: ?Sized>(
    stream: &mut impl Stream,
    tracked: &Tracked<S>,
    peer: &Peer,
    pending: &[u8],
    echoed: &mut u64,
) -> End {
    if let Err(error) = write_back(stream, pending, tracked, echoed) {
        return End::from(error);
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
        if let Err(error) = write_back(stream, &buffer[..read], tracked, echoed) {
            return End::from(error);
        }
        if read == buffer.len() && large.is_empty() {
            large = vec![0; BUFFER_LARGE];
        }
    }
    // Everything read has been written: tell the client there is no more.
    match stream.shutdown_write() {
        Ok(()) => End::Eof,
        Err(error) => End::from(error),
    }
}

/// [`echo`] through a TLS session.
// Without TLS built in, no session exists: nothing is boxed for nothing.
#[cfg_attr(not(feature = "tls"), allow(clippy::boxed_local))]
fn echo_tls<S: Socket + ?Sized>(
    mut session: Box<Session>,
    tracked: &Tracked<S>,
    peer: &Peer,
    echoed: &mut u64,
) -> End {
    echo(
        &mut session.over(tracked.socket()),
        tracked,
        peer,
        &[],
        echoed,
    )
}

/// Writes all of `bytes`, counting each part written in `echoed` and
/// marking it on `tracked`, so that a slow reader that keeps reading is
/// not taken for an idle one.
fn write_back<S: ?Sized>(
    stream: &mut impl Stream,
    mut bytes: &[u8],
    tracked: &Tracked<S>,
    echoed: &mut u64,
) -> io::Result<()> {
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => {
                bytes = &bytes[written..];
                *echoed += written as u64;
                tracked.mark();
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use std::collections::VecDeque;
    use std::net::{Shutdown, SocketAddr};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A socket in memory: reads come from `input`, one chunk per read,
    /// then EOF; writes go to `output`, at most `max_write` bytes a call,
    /// and fail with `write_error`'s kind once its count of bytes is out.
    #[derive(Debug, Default)]
    struct Fake {
        input: Mutex<VecDeque<Vec<u8>>>,
        output: Mutex<Vec<u8>>,
        max_write: usize,
        write_error: Option<(usize, io::ErrorKind)>,
        shut_down: Mutex<Vec<Shutdown>>,
    }

    impl Fake {
        fn sending(chunks: &[&[u8]]) -> Fake {
            Fake {
                input: Mutex::new(chunks.iter().map(|chunk| chunk.to_vec()).collect()),
                max_write: usize::MAX,
                ..Fake::default()
            }
        }
    }

    impl Socket for Fake {
        fn configure(&self) -> io::Result<()> {
            Ok(())
        }

        fn read(&self, buffer: &mut [u8]) -> io::Result<usize> {
            let mut input = self.input.lock().unwrap();
            let Some(mut chunk) = input.pop_front() else {
                return Ok(0);
            };
            let read = chunk.len().min(buffer.len());
            buffer[..read].copy_from_slice(&chunk[..read]);
            if read < chunk.len() {
                input.push_front(chunk.split_off(read));
            }
            Ok(read)
        }

        fn write(&self, bytes: &[u8]) -> io::Result<usize> {
            let mut output = self.output.lock().unwrap();
            match self.write_error {
                Some((after, kind)) if output.len() >= after => return Err(kind.into()),
                _ => {}
            }
            let written = bytes.len().min(self.max_write);
            output.extend_from_slice(&bytes[..written]);
            Ok(written)
        }

        fn shutdown(&self, how: Shutdown) -> io::Result<()> {
            self.shut_down.lock().unwrap().push(how);
            Ok(())
        }

        fn set_read_timeout(&self, _: Option<Duration>) -> io::Result<()> {
            Ok(())
        }
    }

    fn peer() -> Peer {
        Peer {
            client: PeerAddr::Ip(SocketAddr::from(([192, 0, 2, 1], 4000))),
            proxy: None,
        }
    }

    fn run_echo(fake: &Fake, pending: &[u8]) -> (End, u64, Tracked<()>) {
        let tracked = Tracked::new(());
        let mut echoed = 0;
        let end = echo(&mut Plain(fake), &tracked, &peer(), pending, &mut echoed);
        (end, echoed, tracked)
    }

    /// The handler of a server with `config`, and its counters.
    fn handler(config: Config) -> (Handler, Arc<Counters>) {
        let counters = Arc::new(Counters::new(false, false));
        let handler = Handler::new(
            Arc::new(config),
            Arc::clone(&counters),
            Arc::new(Stop::new()),
        );
        (handler, counters)
    }

    /// `socket` as a client of `limits`, which holds a stand-in socket in
    /// its registry.
    fn client<S>(limits: &Arc<Limits>, socket: S) -> (Client<S>, Arc<Tracked<S>>) {
        let socket = Arc::new(Tracked::new(socket));
        let (stand_in, _) = std::os::unix::net::UnixStream::pair().unwrap();
        let stand_in = Arc::new(Tracked::new(socket2::Socket::from(stand_in)));
        let permit = limits.acquire(None, stand_in).unwrap();
        let client = Client {
            socket: Arc::clone(&socket),
            peer: peer().client,
            permit,
        };
        (client, socket)
    }

    #[test]
    fn echoes_pending_bytes_then_every_read_then_shuts_the_write_side() {
        let fake = Fake::sending(&[b"hello ", b"world"]);
        let (end, echoed, _) = run_echo(&fake, b"early ");
        assert!(matches!(end, End::Eof), "{end}");
        assert_eq!(*fake.output.lock().unwrap(), b"early hello world");
        assert_eq!(echoed, 17);
        assert_eq!(*fake.shut_down.lock().unwrap(), [Shutdown::Write]);
    }

    #[test]
    fn a_read_larger_than_the_small_buffer_comes_back_whole() {
        let big = vec![7; BUFFER_SMALL + BUFFER_LARGE / 2];
        let fake = Fake::sending(&[&big]);
        let (_, echoed, _) = run_echo(&fake, b"");
        assert_eq!(*fake.output.lock().unwrap(), big);
        assert_eq!(echoed, big.len() as u64);
    }

    #[test]
    fn every_partial_write_counts_as_activity() {
        let fake = Fake {
            max_write: 3,
            write_error: Some((6, io::ErrorKind::BrokenPipe)),
            ..Fake::sending(&[b"0123456789"])
        };
        let (end, echoed, tracked) = run_echo(&fake, b"");
        assert!(matches!(end, End::Reset), "{end}");
        assert_eq!(echoed, 6);
        assert!(tracked.is_active(), "the partial writes were marked");
    }

    #[test]
    fn a_client_gone_while_written_to_is_a_reset_with_nothing_counted() {
        let fake = Fake {
            write_error: Some((0, io::ErrorKind::BrokenPipe)),
            ..Fake::sending(&[b"lost"])
        };
        let (end, echoed, _) = run_echo(&fake, b"");
        assert!(matches!(end, End::Reset), "{end}");
        assert_eq!(echoed, 0);
    }

    /// A real socket that notes, each time a thread waits on it for the
    /// client's bytes, how many allocator calls that thread has made.
    #[derive(Debug)]
    struct Noting {
        socket: socket2::Socket,
        calls_before_reads: AtomicUsize,
    }

    impl Socket for Noting {
        fn configure(&self) -> io::Result<()> {
            self.socket.configure()
        }

        fn read(&self, buffer: &mut [u8]) -> io::Result<usize> {
            let calls = crate::sys::allocator_calls::on_this_thread();
            self.calls_before_reads.fetch_max(calls, Ordering::Relaxed);
            Socket::read(&self.socket, buffer)
        }

        fn write(&self, bytes: &[u8]) -> io::Result<usize> {
            Socket::write(&self.socket, bytes)
        }

        fn shutdown(&self, how: Shutdown) -> io::Result<()> {
            Socket::shutdown(&self.socket, how)
        }

        fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
            Socket::set_read_timeout(&self.socket, timeout)
        }
    }

    /// Serves `socket` on a thread started as the spawner starts one,
    /// runs `client` against it, and returns the most allocator calls the
    /// thread had made when it waited for the client's bytes.
    fn allocator_calls_while_waiting(
        socket: socket2::Socket,
        peer: PeerAddr,
        client: impl FnOnce(),
    ) -> usize {
        let (handler, _) = handler(Config::default());
        let limits = Arc::new(Limits::new(None, None));
        let (mut served, noting) = self::client(
            &limits,
            Noting {
                socket,
                calls_before_reads: 0.into(),
            },
        );
        served.peer = peer;
        let (done, finished) = std::sync::mpsc::channel();
        crate::sys::spawn(c"echo-test", 128 * 1024, move || {
            handler.serve(served);
            let _ = done.send(());
        })
        .unwrap();
        client();
        finished.recv_timeout(Duration::from_secs(10)).unwrap();
        noting.socket().calls_before_reads.load(Ordering::Relaxed)
    }

    /// Sends a message on `stream`, reads its echo, closes its side with
    /// `close` and reads to EOF.
    fn ping(mut stream: impl io::Read + io::Write, close: impl FnOnce()) {
        stream.write_all(b"ping").unwrap();
        let mut echo = [0; 4];
        stream.read_exact(&mut echo).unwrap();
        assert_eq!(&echo, b"ping");
        close();
        assert_eq!(stream.read(&mut echo).unwrap(), 0);
    }

    #[test]
    fn a_waiting_clients_thread_has_made_no_allocator_call() {
        use std::net::{TcpListener, TcpStream};
        use std::os::unix::net::UnixStream;
        let timeout = Some(Duration::from_secs(10));

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        tcp.set_read_timeout(timeout).unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        let calls = allocator_calls_while_waiting(accepted.into(), PeerAddr::Ip(peer), || {
            ping(&tcp, || tcp.shutdown(Shutdown::Write).unwrap());
        });
        assert_eq!(calls, 0, "a TCP client's thread");

        let (ours, theirs) = UnixStream::pair().unwrap();
        theirs.set_read_timeout(timeout).unwrap();
        let peer = PeerAddr::Unix(Box::new(crate::stream::UnixPeer {
            socket: "unix:/run/echo.sock".to_owned(),
            credentials: Some((1, 0)),
        }));
        let calls = allocator_calls_while_waiting(ours.into(), peer, || {
            ping(&theirs, || theirs.shutdown(Shutdown::Write).unwrap());
        });
        assert_eq!(calls, 0, "a Unix client's thread");
    }

    #[test]
    fn serving_counts_the_bytes_and_gives_the_slot_back() {
        let (handler, counters) = handler(Config::default());
        let limits = Arc::new(Limits::new(None, None));
        let (client, socket) = client(&limits, Fake::sending(&[b"abc"]));
        handler.serve(client);
        assert_eq!(*socket.socket().output.lock().unwrap(), b"abc");
        assert_eq!(
            counters.stats(limits.counts(), false, (0, 0)).bytes_echoed,
            3
        );
        assert_eq!(limits.counts(), (0, 1));
    }

    #[test]
    fn a_bad_proxy_header_is_counted_and_nothing_is_echoed() {
        let config = Config {
            proxy_protocol: true,
            ..Config::default()
        };
        let (handler, counters) = handler(config);
        let limits = Arc::new(Limits::new(None, None));
        let (client, socket) = client(&limits, Fake::sending(&[b"GET / HTTP/1.0\r\n\r\n"]));
        handler.serve(client);
        assert!(socket.socket().output.lock().unwrap().is_empty());
        let stats = counters.stats(limits.counts(), false, (0, 0));
        assert_eq!((stats.proxy_errors, stats.bytes_echoed), (1, 0));
        assert_eq!(limits.counts().0, 0);
    }

    #[test]
    fn a_proxied_client_outside_the_access_lists_is_denied() {
        let config = Config {
            proxy_protocol: true,
            deny: vec!["203.0.113.0/24".parse().unwrap()],
            ..Config::default()
        };
        let (handler, counters) = handler(config);
        let limits = Arc::new(Limits::new(None, None));
        let header = b"PROXY TCP4 203.0.113.5 192.0.2.9 5000 8000\r\nhi";
        let (client, socket) = client(&limits, Fake::sending(&[header]));
        handler.serve(client);
        assert!(socket.socket().output.lock().unwrap().is_empty());
        assert_eq!(counters.stats(limits.counts(), false, (0, 0)).denied, 1);
    }

    #[test]
    fn bytes_after_a_proxy_header_are_echoed_without_it() {
        let config = Config {
            proxy_protocol: true,
            ..Config::default()
        };
        let (handler, _) = handler(config);
        let limits = Arc::new(Limits::new(None, None));
        let header = b"PROXY TCP4 203.0.113.5 192.0.2.9 5000 8000\r\nhi";
        let (client, socket) = client(&limits, Fake::sending(&[header, b" there"]));
        handler.serve(client);
        assert_eq!(*socket.socket().output.lock().unwrap(), b"hi there");
    }
}
