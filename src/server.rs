//! The server: its configuration, binding, the run loop and the handle that
//! stops it.
//!
//! [`Server::bind`] opens every listening socket before anything is served,
//! so [`Server::local_addrs`] is known at once (port 0 works). [`Server::run`]
//! runs one accept loop per listener and the spawner (see `listener`), and
//! one thread per client (see `handler`), until a [`ShutdownHandle`] asks it
//! to stop or a listener dies; then, after a drain if one was asked for, it
//! closes every client and returns once their threads have finished.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use log::{debug, warn};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::Cidr;
use crate::limits::Limits;
use crate::listener::{self, AcceptError, Throttle};

/// The port served when none is given, as in the original tutorial.
pub const DEFAULT_PORT: u16 = 8000;
/// The address served when none is given: loopback only, so that a server
/// started for a test is not exposed to the network by accident.
pub const DEFAULT_BIND: &str = "localhost";
/// Most clients served at once unless configured: well under the ~16,000
/// threads that Linux's default `vm.max_map_count` allows a process.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// How long a client may neither send nor read before it is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Pending connections the kernel may queue per listener. Linux caps it at
/// `net.core.somaxconn` (4096 by default since 5.4), so asking for more
/// follows that setting; 1,000 clients connecting at once fit.
const LISTEN_BACKLOG: i32 = 65_535;

/// What a [`Server`] listens on and how it treats clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Addresses or host names to listen on. A name binds every address it
    /// resolves to that the machine has (`localhost`: 127.0.0.1 and ::1 when
    /// IPv6 is there); an IP address must bind.
    pub bind: Vec<String>,
    /// Port to listen on; 0 lets the system choose one, the same for every
    /// address.
    pub port: u16,
    /// Most clients served at once; 0 for no limit.
    pub max_connections: usize,
    /// Most clients served at once from one IP address; 0 for no limit.
    pub max_connections_per_ip: usize,
    /// Closes a client that neither sends nor reads for this long; `None`
    /// never does.
    pub idle_timeout: Option<Duration>,
    /// Sets `SO_REUSEPORT` on the listeners, so that a new instance can bind
    /// the same address while this one drains.
    pub reuse_port: bool,
    /// Every connection starts with a PROXY protocol header (version 1 or 2):
    /// the client address it carries is the one logged, limited per IP and
    /// checked against the access lists.
    pub proxy_protocol: bool,
    /// Peers allowed to send PROXY headers; empty allows any.
    pub proxy_from: Vec<Cidr>,
    /// Client addresses served; empty serves all (but `deny`).
    pub allow: Vec<Cidr>,
    /// Client addresses never served, even if `allow` has them.
    pub deny: Vec<Cidr>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            bind: vec![DEFAULT_BIND.to_owned()],
            port: DEFAULT_PORT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: 0,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            reuse_port: false,
            proxy_protocol: false,
            proxy_from: Vec::new(),
            allow: Vec::new(),
            deny: Vec::new(),
        }
    }
}

impl Config {
    /// Whether the access lists let a client from `ip` be served.
    pub(crate) fn admits(&self, ip: IpAddr) -> bool {
        let listed = |list: &[Cidr]| list.iter().any(|range| range.contains(ip));
        !listed(&self.deny) && (self.allow.is_empty() || listed(&self.allow))
    }

    /// Whether `ip` may send a PROXY header.
    pub(crate) fn trusts_proxy(&self, ip: IpAddr) -> bool {
        self.proxy_from.is_empty() || self.proxy_from.iter().any(|range| range.contains(ip))
    }
}

/// What a server has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Clients accepted and served.
    pub accepted: u64,
    /// Clients accepted and closed at once: over a limit, or no thread.
    pub rejected: u64,
    /// Clients closed at once because the access lists do not admit them
    /// (or, behind a proxy, because the proxy is not trusted).
    pub denied: u64,
    /// Connections closed because their PROXY header was missing,
    /// malformed or late.
    pub proxy_errors: u64,
    /// Clients served right now.
    pub active: usize,
    /// The most clients served at once.
    pub peak: usize,
    /// Bytes echoed back to clients that have left.
    pub bytes_echoed: u64,
    /// Clients that left on their own after the server stopped accepting
    /// (during a drain).
    pub drained: usize,
    /// Clients still connected when the server closed them at shutdown.
    pub cut: usize,
    /// How long the server has been running.
    pub uptime: Duration,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} accepted, {} rejected, {} denied, {} bad PROXY headers, {} at most at once, \
             {} bytes echoed in {:.1?}; at shutdown {} left on their own, {} closed",
            self.accepted,
            self.rejected,
            self.denied,
            self.proxy_errors,
            self.peak,
            self.bytes_echoed,
            self.uptime,
            self.drained,
            self.cut
        )
    }
}

/// A bound echo server, ready to [`run`](Server::run).
#[derive(Debug)]
pub struct Server {
    /// State shared with the accept loops, the client threads and handles.
    shared: Arc<Shared>,
}

/// Stops a running [`Server`] from any thread; cheap to clone.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    /// The state of the server this handle stops.
    shared: Arc<Shared>,
}

/// State shared by everything that serves one server's clients.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The listening sockets, kept here so that shutdown can wake the
    /// accept loops blocked on them.
    pub(crate) listeners: Vec<TcpListener>,
    /// The addresses `listeners` are bound to, in the same order.
    local_addrs: Vec<SocketAddr>,
    /// Whether the listeners are this server's alone, or shared with
    /// another process and so never shut down.
    owned: bool,
    /// The addresses of the connections made to wake the accept loops on
    /// shared listeners, so that they are not taken for clients.
    wakers: Mutex<Vec<SocketAddr>>,
    /// Clients taken from the listen queues when a drain began, admitted
    /// once the accept loops have ended.
    queued: Mutex<Vec<(TcpStream, SocketAddr)>>,
    /// The configuration the server was bound with.
    pub(crate) config: Config,
    /// Connection slots and the live client sockets.
    pub(crate) limits: Arc<Limits>,
    /// Counters for [`Stats`].
    pub(crate) counters: Counters,
    /// Rate limit of the warning about rejected clients, shared by every
    /// accept loop.
    pub(crate) rejections: Throttle,
    /// When the server was created, for the uptime.
    started: Instant,
    /// Set once the server stops accepting; read by the accept loops after
    /// every wake-up.
    stopping: AtomicBool,
    /// Set once connected clients are being closed, so that their handlers
    /// say why they ended.
    closing: AtomicBool,
    /// What shutdown has decided, under the lock that `stop_signal` pairs
    /// with, so that a back-off pause ends at once when the server stops.
    stop: Mutex<Stop>,
    /// Notified when the server stops accepting.
    stop_signal: Condvar,
}

/// How a server is being stopped.
#[derive(Debug, Default)]
struct Stop {
    /// With a drain, until when clients may go on after accepting stops.
    drain_until: Option<Instant>,
    /// Clients connected when accepting stopped.
    active_at_stop: usize,
    /// Clients still connected when they were closed.
    cut: usize,
}

/// The counters behind [`Stats`]; the live and peak counts are in `Limits`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Clients accepted and served.
    pub(crate) accepted: AtomicU64,
    /// Clients accepted and closed at once.
    pub(crate) rejected: AtomicU64,
    /// Clients the access lists refused.
    pub(crate) denied: AtomicU64,
    /// Connections with a bad PROXY header.
    pub(crate) proxy_errors: AtomicU64,
    /// Bytes echoed to clients that have left; added once per connection so
    /// that the echo loop touches no shared cache line.
    pub(crate) bytes_echoed: AtomicU64,
}

impl Server {
    /// Binds every address of `config` and returns a server ready to run.
    ///
    /// # Errors
    ///
    /// Fails if a name cannot be resolved, if an address cannot be bound
    /// (`cannot listen on 127.0.0.1:8000: Address already in use`), or if a
    /// name yields no address the machine has.
    pub fn bind(config: &Config) -> io::Result<Server> {
        let listeners = bind_all(&config.bind, config.port, config.reuse_port)?;
        Server::new(listeners, config.clone(), true)
    }

    /// Serves listening sockets that the caller has already bound: an
    /// inherited socket, or one bound with options of its own.
    /// `config.bind` and `config.port` are not used.
    ///
    /// Such a socket may be shared with another process, such as the
    /// service manager that passed it: stopping leaves it listening, and
    /// clients still queued on it are left for the next instance.
    ///
    /// # Errors
    ///
    /// Fails if there is no listener, or one cannot report its address.
    pub fn from_listeners(listeners: Vec<TcpListener>, config: Config) -> io::Result<Server> {
        Server::new(listeners, config, false)
    }

    /// A server on `listeners`; `owned` says whether they are this
    /// server's alone, to shut down when it stops.
    fn new(listeners: Vec<TcpListener>, config: Config, owned: bool) -> io::Result<Server> {
        if listeners.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no address to listen on",
            ));
        }
        let local_addrs = listeners
            .iter()
            .map(TcpListener::local_addr)
            .collect::<io::Result<Vec<_>>>()?;
        let limits = Limits::new(config.max_connections, config.max_connections_per_ip);
        Ok(Server {
            shared: Arc::new(Shared {
                listeners,
                local_addrs,
                owned,
                wakers: Mutex::new(Vec::new()),
                queued: Mutex::new(Vec::new()),
                config,
                limits: Arc::new(limits),
                counters: Counters::default(),
                rejections: Throttle::new(),
                started: Instant::now(),
                stopping: AtomicBool::new(false),
                closing: AtomicBool::new(false),
                stop: Mutex::new(Stop::default()),
                stop_signal: Condvar::new(),
            }),
        })
    }

    /// The addresses the server listens on, with the ports actually bound.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.shared.local_addrs
    }

    /// A handle that stops this server and reads its statistics.
    pub fn handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Serves clients until a [`ShutdownHandle`] stops the server, then
    /// closes every client (after the drain, if one was asked for), waits
    /// for their threads to finish, and returns the final statistics.
    ///
    /// # Errors
    ///
    /// Fails if a listening socket stops working (not for a client's error,
    /// nor for a lack of descriptors or memory, which are waited out). The
    /// server is stopped and its clients closed before the error is returned.
    pub fn run(self) -> io::Result<Stats> {
        let shared = &self.shared;
        let result = thread::scope(|scope| accept_all(scope, shared));
        let drain_until = shared.lock_stop().drain_until;
        if let Some(deadline) = drain_until {
            shared.limits.wait_empty_until(deadline);
        }
        shared.close_clients();
        shared.limits.wait_empty();
        result.map(|()| shared.stats())
    }
}

/// Runs the spawner and one accept loop per listener until every loop has
/// ended, then hands the spawner the clients a drain took from the listen
/// queues, and waits for it to start their threads.
fn accept_all<'scope>(
    scope: &'scope thread::Scope<'scope, '_>,
    shared: &'scope Arc<Shared>,
) -> io::Result<()> {
    let (to_spawner, admitted) = mpsc::channel();
    let spawner = thread::Builder::new()
        .name("echo-spawner".to_owned())
        .spawn_scoped(scope, move || listener::spawn_loop(shared, &admitted))?;
    let loops = (0..shared.listeners.len())
        .map(|index| {
            let to_spawner = to_spawner.clone();
            thread::Builder::new()
                .name(format!("echo-accept-{index}"))
                .spawn_scoped(scope, move || {
                    let result = listener::accept_loop(shared, index, &to_spawner);
                    // A dead listener ends the whole server, as a
                    // half-served address would surprise its users.
                    shared.stop_accepting(None);
                    result
                })
        })
        .collect::<io::Result<Vec<_>>>()
        .inspect_err(|_| shared.stop_accepting(None))?;
    let result = loops.into_iter().try_for_each(|accept| {
        accept
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("accept loop panicked")))
    });
    for (stream, peer) in shared.take_queued_clients() {
        listener::stop_admitting(shared, stream, peer, &to_spawner);
    }
    // The spawner ends once every sender is gone.
    drop(to_spawner);
    spawner
        .join()
        .map_err(|_| io::Error::other("spawner panicked"))?;
    result
}

impl ShutdownHandle {
    /// Stops the server: no client is accepted after this, every connected
    /// client is closed, and [`Server::run`] returns once their threads have
    /// finished. Returns at once; calling it again does nothing.
    pub fn shutdown(&self) {
        self.shared.stop_accepting(None);
        self.shared.close_clients();
    }

    /// Stops accepting at once but lets connected clients go on until they
    /// leave or `timeout` has passed; then closes the rest, and
    /// [`Server::run`] returns. A later [`shutdown`](Self::shutdown) closes
    /// them at once.
    pub fn drain(&self, timeout: Duration) {
        self.shared.stop_accepting(Some(Instant::now() + timeout));
    }

    /// Whether shutdown or a drain has been asked for.
    pub fn is_shutdown(&self) -> bool {
        self.shared.is_stopping()
    }

    /// The server's statistics now.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }
}

impl Shared {
    /// Whether shutdown has been asked for.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Whether connected clients are being closed by the server.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Stops accepting, wakes the accept loops, and sets how long clients
    /// may stay (`None`: no drain); idempotent, the first call decides.
    fn stop_accepting(&self, drain_until: Option<Instant>) {
        // Held until the listen queues are emptied: the accept loops end as
        // soon as they see the flag, and run() must not collect the queued
        // clients before all of them have been taken.
        let mut queued = self.lock_queued();
        {
            let mut stop = self.lock_stop();
            if self.stopping.swap(true, Ordering::AcqRel) {
                return;
            }
            stop.drain_until = drain_until;
            stop.active_at_stop = self.limits.counts().0;
            self.stop_signal.notify_all();
        }
        debug!("no longer accepting clients");
        for (listener, addr) in self.listeners.iter().zip(&self.local_addrs) {
            if self.owned {
                if drain_until.is_some() {
                    // Clients queued when a drain begins have connected
                    // before it: they are served, not reset.
                    take_queued(listener, &mut queued);
                }
                // On Linux, shutting down a listening socket makes a blocked
                // accept() return EINVAL at once, even with a full backlog,
                // and takes the socket out of its SO_REUSEPORT group, so
                // that new clients go to the other instances.
                shut_down(listener);
            } else if let Err(error) = wake(*addr, |waker| self.lock_wakers().push(waker)) {
                // A socket shared with another process must keep listening
                // (with its queued clients) for the next instance: the accept
                // loop is woken with a connection instead.
                warn!(
                    "cannot wake the accept loop on {addr}: {error}; it stops at its next client"
                );
            }
        }
    }

    /// The clients taken from the listen queues when a drain began.
    pub(crate) fn take_queued_clients(&self) -> Vec<(TcpStream, SocketAddr)> {
        std::mem::take(&mut *self.lock_queued())
    }

    /// The clients taken from the listen queues, usable even if a thread
    /// panicked holding them.
    fn lock_queued(&self) -> MutexGuard<'_, Vec<(TcpStream, SocketAddr)>> {
        self.queued
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether clients accepted now are still to be served: the server
    /// drains, and has not started closing them.
    pub(crate) fn is_draining(&self) -> bool {
        !self.is_closing() && self.lock_stop().drain_until.is_some()
    }

    /// Whether a connection from `peer` is one this server made to wake an
    /// accept loop.
    pub(crate) fn is_waker(&self, peer: SocketAddr) -> bool {
        self.lock_wakers().contains(&peer)
    }

    /// The wakers' addresses, usable even if a thread panicked holding them.
    fn lock_wakers(&self) -> MutexGuard<'_, Vec<SocketAddr>> {
        self.wakers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Closes every connected client and refuses new ones; idempotent.
    fn close_clients(&self) {
        // Under the lock, so that a concurrent caller returns only once the
        // count of clients cut is recorded.
        let mut stop = self.lock_stop();
        if self.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        stop.cut = self.limits.close_all();
        if stop.cut > 0 {
            debug!("closed {} client(s)", stop.cut);
        }
    }

    /// The shutdown state, usable even if a thread panicked holding it.
    fn lock_stop(&self) -> MutexGuard<'_, Stop> {
        self.stop
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for `timeout`, or less if shutdown is asked for meanwhile.
    pub(crate) fn pause(&self, timeout: Duration) {
        let stop = self.lock_stop();
        let _ = self
            .stop_signal
            .wait_timeout_while(stop, timeout, |_| !self.is_stopping());
    }

    /// The statistics now.
    fn stats(&self) -> Stats {
        let (active, peak) = self.limits.counts();
        let stop = self.lock_stop();
        let cut = stop.cut;
        let drained = if self.is_stopping() {
            stop.active_at_stop.saturating_sub(active + cut)
        } else {
            0
        };
        Stats {
            accepted: self.counters.accepted.load(Ordering::Relaxed),
            rejected: self.counters.rejected.load(Ordering::Relaxed),
            denied: self.counters.denied.load(Ordering::Relaxed),
            proxy_errors: self.counters.proxy_errors.load(Ordering::Relaxed),
            active,
            peak,
            bytes_echoed: self.counters.bytes_echoed.load(Ordering::Relaxed),
            uptime: self.started.elapsed(),
            drained,
            cut,
        }
    }
}

/// Shuts down a listening socket this server owns: a blocked accept()
/// returns, and the socket leaves any `SO_REUSEPORT` group, so that new
/// clients go to the other instances.
fn shut_down(listener: &TcpListener) {
    // An error only means the socket is unusable already.
    let _ = SockRef::from(listener).shutdown(std::net::Shutdown::Both);
}

/// Accepts every client queued on `listener` without waiting, into
/// `queued`.
fn take_queued(listener: &TcpListener, queued: &mut Vec<(TcpStream, SocketAddr)>) {
    if let Err(error) = listener.set_nonblocking(true) {
        debug!("cannot take the queued clients: {error}");
        return;
    }
    loop {
        match listener.accept() {
            // Accepted sockets do not inherit O_NONBLOCK on Linux.
            Ok(client) => queued.push(client),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
            Err(error) if listener::classify(&error) == AcceptError::Connection => {}
            Err(_) => break,
        }
    }
}

/// Connects to a listener's own address to wake its accept loop, telling
/// `record` the address the connection will come from before making it,
/// so that the accept loop knows it for what it is.
fn wake(listener: SocketAddr, record: impl FnOnce(SocketAddr)) -> io::Result<()> {
    let ip = match listener.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::from(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let target = SocketAddr::new(ip, listener.port());
    let waker = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    waker.bind(&SocketAddr::new(ip, 0).into())?;
    let source = waker.local_addr()?.as_socket().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, "a TCP socket has an IP address")
    })?;
    record(source);
    // Dropping the connection at once is fine: the accept loop still finds
    // it queued.
    waker.connect_timeout(&target.into(), WAKE_TIMEOUT)
}

/// How long a wake-up connection may take: on loopback it is immediate
/// unless the backlog is full.
const WAKE_TIMEOUT: Duration = Duration::from_millis(500);

/// Binds every address named in `names` on `port`.
fn bind_all(names: &[String], mut port: u16, reuse_port: bool) -> io::Result<Vec<TcpListener>> {
    let mut listeners = Vec::new();
    for name in names {
        let explicit = name.trim_matches(['[', ']']).parse::<IpAddr>().ok();
        let addrs = match explicit {
            Some(ip) => vec![SocketAddr::new(ip, port)],
            None => crate::resolve(name, port)?,
        };
        let before = listeners.len();
        for addr in addrs {
            // With port 0, every address shares the port the first one got,
            // so `localhost:PORT` means the same server on 127.0.0.1 and ::1.
            let addr = SocketAddr::new(addr.ip(), port);
            match listen(addr, reuse_port) {
                Ok(listener) => {
                    port = listener.local_addr()?.port();
                    listeners.push(listener);
                }
                Err(error) if explicit.is_none() && is_missing_address(&error) => {
                    debug!("skipping {addr}, which this machine does not have: {error}");
                }
                Err(error) => return Err(cannot_listen(addr, &error)),
            }
        }
        if listeners.len() == before {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("cannot listen on {name}: no address of this machine"),
            ));
        }
    }
    Ok(listeners)
}

/// A listening socket on `addr`, with the options every listener gets.
pub(crate) fn listen(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Lets a restarted server bind while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        // `::` then means IPv6 only, as in nginx, so that `0.0.0.0` and `::`
        // can both be bound.
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    let listener = TcpListener::from(socket);
    debug!("listening on {}", listener.local_addr()?);
    Ok(listener)
}

/// Whether binding failed because the machine lacks that address or its
/// family (IPv6 disabled, say), rather than for a reason to report.
fn is_missing_address(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::AddrNotAvailable || error.raw_os_error() == Some(EAFNOSUPPORT)
}

/// Linux's "address family not supported", which std maps to no error kind
/// of its own: what creating an IPv6 socket gives where IPv6 is disabled.
const EAFNOSUPPORT: i32 = 97;

/// The error for an address that cannot be bound, naming it.
fn cannot_listen(addr: SocketAddr, error: &io::Error) -> io::Error {
    io::Error::new(
        error.kind(),
        format!("cannot listen on {addr}: {}", crate::os_message(error)),
    )
}
