//! The listening sockets (TCP, Unix, and UDP beside TCP): created with the
//! options every listener gets, or inherited; then, when the server stops
//! accepting, shut down (or, if shared with another process, woken) so that
//! their accept loops return.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket,
};
use std::os::fd::OwnedFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use log::{debug, warn};
use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

use crate::config::Config;
use crate::limits::Tracked;
use crate::stream::{PeerAddr, UnixPeer};
use crate::sys;

/// Pending connections the kernel may queue per listener. Linux caps it at
/// `net.core.somaxconn` (4096 by default since 5.4), so asking for more
/// follows that setting; 1,000 clients connecting at once fit.
const LISTEN_BACKLOG: i32 = 65_535;

/// How long a wake-up connection may take: on loopback it is immediate
/// unless the backlog is full.
const WAKE_TIMEOUT: Duration = Duration::from_millis(500);

/// What an accept loop does after `accept()` fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AcceptError {
    /// The error belongs to one connection (it was aborted or reset before it
    /// was accepted) or to the call (a signal): accept the next one.
    Connection,
    /// The process or the system is out of descriptors, buffers or memory:
    /// warn, pause, try again. Pending clients wait in the backlog.
    Resources,
    /// The listening socket itself is unusable: the loop ends.
    Listener,
}

/// Sorts an `accept()` error into what the loop should do about it.
pub(crate) fn classify(error: &io::Error) -> AcceptError {
    match error.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => AcceptError::Resources,
        Some(libc::EBADF | libc::EINVAL | libc::ENOTSOCK | libc::EFAULT) => AcceptError::Listener,
        // Linux passes network errors pending on the new connection to
        // accept() (accept(2): ENETDOWN, EPROTO, ENOPROTOOPT, EHOSTDOWN,
        // ENONET, EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH): they, like
        // ECONNABORTED, EINTR, EPERM (a firewall) and EAGAIN, are about one
        // connection.
        Some(_) => AcceptError::Connection,
        None => AcceptError::Resources,
    }
}

/// A listening socket a server serves, bound by it or handed to it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Listener {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A Unix stream socket listener.
    Unix(UnixListener),
}

impl From<TcpListener> for Listener {
    fn from(listener: TcpListener) -> Listener {
        Listener::Tcp(listener)
    }
}

impl From<UnixListener> for Listener {
    fn from(listener: UnixListener) -> Listener {
        Listener::Unix(listener)
    }
}

/// Where a server listens, as its `Listening on` lines name it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Endpoint {
    /// A TCP address: `127.0.0.1:8000`.
    Tcp(SocketAddr),
    /// A UDP address: `udp:127.0.0.1:8000`.
    Udp(SocketAddr),
    /// A Unix socket: a path, or `@NAME` for a Linux abstract name
    /// (`unix:/run/echo.sock`, `unix:@echo`).
    Unix(String),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "{addr}"),
            Endpoint::Udp(addr) => write!(f, "udp:{addr}"),
            Endpoint::Unix(name) => write!(f, "unix:{name}"),
        }
    }
}

/// A connection taken from a listen queue.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// From a TCP listener.
    Tcp(TcpStream),
    /// From a Unix socket listener.
    Unix(UnixStream),
}

impl Incoming {
    /// The connection, as the registry of live clients keeps it.
    pub(crate) fn into_tracked(self) -> Arc<Tracked<Socket>> {
        let socket = match self {
            Incoming::Tcp(stream) => Socket::from(stream),
            Incoming::Unix(stream) => Socket::from(stream),
        };
        Arc::new(Tracked::new(socket))
    }
}

/// A client accepted from a listen queue, and who it is.
pub(crate) type Accepted = (Incoming, PeerAddr);

/// The listening sockets of one server.
#[derive(Debug)]
pub(crate) struct Listeners {
    /// The stream sockets, each served by an accept loop of its own.
    sockets: Vec<Listener>,
    /// Where `sockets` listen, in the same order.
    endpoints: Vec<Endpoint>,
    /// The TCP addresses among them.
    tcp_addrs: Vec<SocketAddr>,
    /// The UDP sockets, one beside each TCP listener with `--udp`.
    udp: Vec<UdpSocket>,
    /// The socket files this server created, removed when it stops (or
    /// when dropped, if it never ran). A leaf lock.
    files: Mutex<Vec<SocketFile>>,
    /// Whether the sockets are this server's alone, or shared with another
    /// process and so never shut down.
    owned: bool,
    /// The addresses of the connections made to wake the accept loops on
    /// shared TCP sockets, so that they are not taken for clients. A leaf
    /// lock.
    wakers: Mutex<Vec<SocketAddr>>,
    /// Clients taken from the listen queues when a drain began, admitted
    /// once the accept loops have ended. First in the lock order (see
    /// `server`): held while the server stops accepting.
    queued: Mutex<Vec<Accepted>>,
}

impl Listeners {
    /// Binds what `config` names: every address of `config.bind` on
    /// `config.port` (and UDP beside each with `config.udp`), then every
    /// Unix socket of `config.unix`. The sockets are this server's own.
    ///
    /// # Errors
    ///
    /// Fails if a name cannot be resolved, if an address or a path cannot
    /// be bound (`cannot listen on 127.0.0.1:8000: Address already in
    /// use`), or if a name yields no address the machine has.
    pub(crate) fn bind(config: &Config) -> io::Result<Listeners> {
        let mut sockets: Vec<Listener> = bind_all(&config.bind, config.port, config.reuse_port)?
            .into_iter()
            .map(Listener::Tcp)
            .collect();
        let mut files = Vec::new();
        for name in &config.unix {
            let (listener, file) = bind_unix(name, config.unix_mode)?;
            sockets.push(Listener::Unix(listener));
            files.extend(file);
        }
        let mut listeners = Listeners::new(sockets, true)?;
        listeners.files = Mutex::new(files);
        if config.udp {
            listeners.bind_udp()?;
        }
        Ok(listeners)
    }

    /// Serves `sockets` bound by someone else, which may be shared with
    /// another process: stopping leaves them listening. With `udp`, binds
    /// a UDP socket beside each TCP one.
    ///
    /// # Errors
    ///
    /// Fails if there is no socket, if one cannot report its address, or
    /// if a UDP socket cannot be bound.
    pub(crate) fn inherit(sockets: Vec<Listener>, udp: bool) -> io::Result<Listeners> {
        let mut listeners = Listeners::new(sockets, false)?;
        if udp {
            listeners.bind_udp()?;
        }
        Ok(listeners)
    }

    /// The listeners `sockets`; `owned` says whether they are this
    /// server's alone.
    fn new(sockets: Vec<Listener>, owned: bool) -> io::Result<Listeners> {
        if sockets.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no address to listen on",
            ));
        }
        let endpoints = sockets
            .iter()
            .map(Listener::endpoint)
            .collect::<io::Result<Vec<_>>>()?;
        let tcp_addrs = endpoints
            .iter()
            .filter_map(|endpoint| match endpoint {
                Endpoint::Tcp(addr) => Some(*addr),
                _ => None,
            })
            .collect();
        Ok(Listeners {
            sockets,
            endpoints,
            tcp_addrs,
            udp: Vec::new(),
            files: Mutex::new(Vec::new()),
            owned,
            wakers: Mutex::new(Vec::new()),
            queued: Mutex::new(Vec::new()),
        })
    }

    /// Binds a UDP socket on the address and port of every TCP listener.
    fn bind_udp(&mut self) -> io::Result<()> {
        for endpoint in &self.endpoints {
            if let Endpoint::Tcp(addr) = *endpoint {
                let socket = bind_udp(addr).map_err(|error| {
                    let endpoint = Endpoint::Udp(addr);
                    io::Error::new(
                        error.kind(),
                        format!("cannot listen on {endpoint}: {}", crate::os_message(&error)),
                    )
                })?;
                self.udp.push(socket);
            }
        }
        Ok(())
    }

    /// The stream listening sockets.
    pub(crate) fn sockets(&self) -> &[Listener] {
        &self.sockets
    }

    /// The UDP sockets.
    pub(crate) fn udp_sockets(&self) -> &[UdpSocket] {
        &self.udp
    }

    /// Where the server listens: the stream sockets, then the UDP ones.
    pub(crate) fn endpoints(&self) -> Vec<Endpoint> {
        let udp = self
            .udp
            .iter()
            .filter_map(|socket| socket.local_addr().ok().map(Endpoint::Udp));
        self.endpoints.iter().cloned().chain(udp).collect()
    }

    /// The TCP addresses listened on, with the ports actually bound.
    pub(crate) fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp_addrs
    }

    /// Accepts the next client on `self.sockets()[index]`.
    pub(crate) fn accept(&self, index: usize) -> io::Result<Accepted> {
        accept(&self.sockets[index], &self.endpoints[index])
    }

    /// Stops accepting if `stop` says this call is the one that stops the
    /// server: wakes every accept loop, taking the clients already queued
    /// first when `drain` asks for them to be served, and stops the UDP
    /// sockets.
    ///
    /// `stop` runs under the lock of the queued clients, so that the server
    /// does not collect them before all have been taken.
    pub(crate) fn stop_accepting(&self, drain: bool, stop: impl FnOnce() -> bool) {
        let mut queued = lock(&self.queued);
        if !stop() {
            return;
        }
        debug!("no longer accepting clients");
        for udp in &self.udp {
            // A datagram of its own makes the socket's blocked recv_from()
            // return, and its thread see that the server stops. (Shutting
            // the socket down would too, but then recv_from() returns a
            // datagram from no address, which std's recv_from() takes for
            // a broken invariant and panics on.)
            if let Err(error) = wake_udp(udp) {
                warn!("cannot wake a UDP socket's thread: {error}; it stops at its next datagram");
            }
        }
        for (listener, endpoint) in self.sockets.iter().zip(&self.endpoints) {
            if self.owned {
                if drain {
                    // Clients queued when a drain begins have connected
                    // before it: they are served, not reset.
                    take_queued(listener, endpoint, &mut queued);
                }
                // On Linux, shutting down a listening socket makes a blocked
                // accept() return EINVAL at once, even with a full backlog,
                // and takes the socket out of its SO_REUSEPORT group, so
                // that new clients go to the other instances. An error only
                // means the socket is unusable already.
                let _ = listener.sock_ref().shutdown(Shutdown::Both);
            } else if let Err(error) = self.wake(listener) {
                // A socket shared with another process must keep listening
                // (with its queued clients) for the next instance: the accept
                // loop is woken with a connection instead.
                warn!(
                    "cannot wake the accept loop on {endpoint}: {error}; it stops at its next client"
                );
            }
        }
    }

    /// Connects to a shared listener to wake its accept loop, in a way it
    /// recognises with [`is_waker`](Self::is_waker).
    fn wake(&self, listener: &Listener) -> io::Result<()> {
        match listener {
            Listener::Tcp(listener) => wake_tcp(listener.local_addr()?, |waker| {
                lock(&self.wakers).push(waker)
            }),
            // The connection comes from this process: that is how it is
            // recognised.
            Listener::Unix(listener) => UnixStream::connect_addr(&listener.local_addr()?).map(drop),
        }
    }

    /// Whether a connection from `peer` is one this server made to wake an
    /// accept loop.
    pub(crate) fn is_waker(&self, peer: &PeerAddr) -> bool {
        match peer {
            PeerAddr::Ip(addr) => lock(&self.wakers).contains(addr),
            PeerAddr::Unix(peer) => {
                matches!(peer.credentials, Some((pid, _)) if pid == std::process::id() as i32)
            }
        }
    }

    /// Removes the socket files this server created: it has stopped.
    pub(crate) fn remove_files(&self) {
        lock(&self.files).clear();
    }

    /// The clients taken from the listen queues when a drain began.
    pub(crate) fn take_queued_clients(&self) -> Vec<Accepted> {
        std::mem::take(&mut *lock(&self.queued))
    }
}

/// A socket file this server created, removed when dropped: when the
/// server is, or when a later socket fails to bind.
#[derive(Debug)]
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_file(&self.0) {
            debug!("cannot remove {}: {error}", self.0.display());
        }
    }
}

impl Listener {
    /// The socket, for socket options.
    fn sock_ref(&self) -> SockRef<'_> {
        match self {
            Listener::Tcp(listener) => SockRef::from(listener),
            Listener::Unix(listener) => SockRef::from(listener),
        }
    }

    /// Where it listens.
    fn endpoint(&self) -> io::Result<Endpoint> {
        match self {
            Listener::Tcp(listener) => listener.local_addr().map(Endpoint::Tcp),
            Listener::Unix(listener) => {
                let addr = listener.local_addr()?;
                let name = match (addr.as_pathname(), addr.as_abstract_name()) {
                    (Some(path), _) => path.display().to_string(),
                    (None, Some(name)) => format!("@{}", String::from_utf8_lossy(name)),
                    (None, None) => "(unnamed)".to_owned(),
                };
                Ok(Endpoint::Unix(name))
            }
        }
    }

    /// Sets whether accepting blocks.
    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match self {
            Listener::Tcp(listener) => listener.set_nonblocking(nonblocking),
            Listener::Unix(listener) => listener.set_nonblocking(nonblocking),
        }
    }
}

/// Accepts the next client on `listener`, which listens on `endpoint`.
fn accept(listener: &Listener, endpoint: &Endpoint) -> io::Result<Accepted> {
    match listener {
        Listener::Tcp(listener) => {
            let (stream, peer) = listener.accept()?;
            Ok((Incoming::Tcp(stream), PeerAddr::Ip(peer)))
        }
        Listener::Unix(listener) => {
            let (stream, _) = listener.accept()?;
            let credentials = sys::peer_credentials(&stream).ok();
            let peer = PeerAddr::Unix(Box::new(UnixPeer {
                socket: endpoint.to_string(),
                credentials,
            }));
            Ok((Incoming::Unix(stream), peer))
        }
    }
}

/// What `mutex` holds, even if a thread panicked holding it: every update
/// here leaves it consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Accepts every client queued on `listener` without waiting, into
/// `queued`.
fn take_queued(listener: &Listener, endpoint: &Endpoint, queued: &mut Vec<Accepted>) {
    if let Err(error) = listener.set_nonblocking(true) {
        debug!("cannot take the queued clients: {error}");
        return;
    }
    loop {
        match accept(listener, endpoint) {
            // Accepted sockets do not inherit O_NONBLOCK on Linux.
            Ok(client) => queued.push(client),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
            Err(error) if classify(&error) == AcceptError::Connection => {}
            Err(_) => break,
        }
    }
}

/// Sends an empty datagram to `socket` from loopback, to wake the thread
/// blocked on it.
fn wake_udp(socket: &UdpSocket) -> io::Result<()> {
    let target = loopback_if_unspecified(socket.local_addr()?);
    let waker = UdpSocket::bind(SocketAddr::new(target.ip(), 0))?;
    waker.send_to(&[], target).map(drop)
}

/// `addr`, with the loopback address of its family if it is unspecified
/// (`0.0.0.0`, `::`): where a socket bound to every address can be
/// reached from this machine.
fn loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::from(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::from(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// Connects to a TCP listener's own address to wake its accept loop,
/// telling `record` the address the connection will come from before
/// making it, so that the accept loop knows it for what it is.
fn wake_tcp(listener: SocketAddr, record: impl FnOnce(SocketAddr)) -> io::Result<()> {
    let target = loopback_if_unspecified(listener);
    let ip = target.ip();
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
fn listen(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
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

/// A Unix stream socket listening on `name`: a path, or `@NAME` for a
/// Linux abstract name, with its file's permissions set to `mode`. Returns
/// the file it created, if any.
///
/// A socket file nothing answers on, left by a server that did not exit
/// cleanly, is replaced; one a server answers on is in use; anything else
/// at the path is left alone.
fn bind_unix(name: &str, mode: Option<u32>) -> io::Result<(UnixListener, Option<SocketFile>)> {
    let cannot = |error: io::Error| {
        io::Error::new(
            error.kind(),
            format!(
                "cannot listen on unix:{name}: {}",
                crate::os_message(&error)
            ),
        )
    };
    let (addr, file) = match name.strip_prefix('@') {
        // An abstract name is a path that starts with a NUL byte.
        Some(abstract_name) => {
            let bytes = [b"\0", abstract_name.as_bytes()].concat();
            (SockAddr::unix(OsStr::from_bytes(&bytes)), None)
        }
        None => {
            let path = PathBuf::from(name);
            clear_stale_socket(&path).map_err(cannot)?;
            (SockAddr::unix(&path), Some(path))
        }
    };
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(cannot)?;
    socket.bind(&addr.map_err(cannot)?).map_err(cannot)?;
    // From here on, the file is this server's to remove.
    let file = file.map(SocketFile);
    if let (Some(SocketFile(path)), Some(mode)) = (&file, mode) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(cannot)?;
    }
    socket.listen(LISTEN_BACKLOG).map_err(cannot)?;
    debug!("listening on unix:{name}");
    Ok((UnixListener::from(OwnedFd::from(socket)), file))
}

/// Removes a socket file at `path` that no server answers on; fails if
/// one does, or if something other than a socket is there.
fn clear_stale_socket(path: &Path) -> io::Result<()> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    if !metadata.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a file that is not a socket is there; it is left alone",
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(io::Error::from_raw_os_error(libc::EADDRINUSE)),
        Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
            debug!("replacing the stale socket {}", path.display());
            std::fs::remove_file(path)
        }
        Err(error) => Err(error),
    }
}

/// A UDP socket on `addr`.
fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    debug!("listening on udp:{addr}");
    Ok(UdpSocket::from(socket))
}

/// Whether binding failed because the machine lacks that address or its
/// family (IPv6 disabled, say), rather than for a reason to report.
fn is_missing_address(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::AddrNotAvailable
        || error.raw_os_error() == Some(libc::EAFNOSUPPORT)
}

/// The error for an address that cannot be bound, naming it.
fn cannot_listen(addr: SocketAddr, error: &io::Error) -> io::Error {
    io::Error::new(
        error.kind(),
        format!("cannot listen on {addr}: {}", crate::os_message(error)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    #[test]
    fn classifies_per_connection_errors_as_go_on() {
        for code in [
            libc::ECONNABORTED,
            libc::EINTR,
            libc::EAGAIN,
            libc::EPROTO,
            libc::ENETDOWN,
            libc::EHOSTUNREACH,
            libc::EPERM,
        ] {
            assert_eq!(classify(&os(code)), AcceptError::Connection, "{code}");
        }
    }

    #[test]
    fn classifies_exhaustion_as_back_off() {
        for code in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert_eq!(classify(&os(code)), AcceptError::Resources, "{code}");
        }
    }

    #[test]
    fn classifies_dead_listener_as_fatal() {
        for code in [libc::EBADF, libc::EINVAL, libc::ENOTSOCK] {
            assert_eq!(classify(&os(code)), AcceptError::Listener, "{code}");
        }
    }

    /// A configuration binding `bind` on `port`.
    fn config(bind: &str, port: u16) -> Config {
        Config {
            bind: vec![bind.to_owned()],
            port,
            ..Config::default()
        }
    }

    #[test]
    fn port_zero_gives_every_address_of_a_name_the_same_port() {
        let listeners =
            Listeners::bind(&config("localhost", 0)).expect("localhost has a loopback address");
        let addrs = listeners.tcp_addrs();
        let port = addrs[0].port();
        assert_ne!(port, 0);
        assert!(addrs.iter().all(|addr| addr.port() == port));
        assert!(addrs.iter().all(|addr| addr.ip().is_loopback()));
    }

    #[test]
    fn a_busy_address_names_itself_in_the_error() {
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = taken.local_addr().unwrap().port();
        let error = Listeners::bind(&config("127.0.0.1", port)).expect_err("the port is taken");
        assert_eq!(
            error.to_string(),
            format!("cannot listen on 127.0.0.1:{port}: Address already in use")
        );
    }

    #[test]
    fn udp_binds_beside_each_tcp_listener_on_the_same_port() {
        let listeners = Listeners::bind(&Config {
            udp: true,
            ..config("127.0.0.1", 0)
        })
        .unwrap();
        let tcp = listeners.tcp_addrs()[0];
        assert_eq!(
            listeners.endpoints(),
            [Endpoint::Tcp(tcp), Endpoint::Udp(tcp)]
        );
        assert_eq!(Endpoint::Udp(tcp).to_string(), format!("udp:{tcp}"));
    }

    #[test]
    fn stopping_wakes_a_thread_blocked_on_a_udp_socket() {
        let listeners = Arc::new(
            Listeners::bind(&Config {
                udp: true,
                ..config("127.0.0.1", 0)
            })
            .unwrap(),
        );
        let (received, wait_received) = std::sync::mpsc::channel();
        let blocked = Arc::clone(&listeners);
        std::thread::spawn(move || {
            let mut buffer = [0; 16];
            let got = blocked.udp_sockets()[0].recv_from(&mut buffer);
            let _ = received.send(got.map(|(length, _)| length).ok());
        });
        listeners.stop_accepting(false, || true);
        // Whether or not the thread was blocked yet, the wake-up datagram
        // reaches it; a panic in it would drop the sender instead.
        let got = wait_received.recv_timeout(std::time::Duration::from_secs(10));
        assert_eq!(got, Ok(Some(0)));
    }

    #[test]
    fn stopping_shuts_own_listeners_down_and_takes_queued_clients_on_a_drain() {
        let listeners = Listeners::bind(&config("127.0.0.1", 0)).unwrap();
        let addr = listeners.tcp_addrs()[0];
        let _client = TcpStream::connect(addr).unwrap();
        let mut asked = 0;
        listeners.stop_accepting(true, || {
            asked += 1;
            true
        });
        listeners.stop_accepting(true, || {
            asked += 1;
            false
        });
        assert_eq!(asked, 2);
        assert_eq!(listeners.take_queued_clients().len(), 1);
        let error = listeners
            .accept(0)
            .expect_err("a shut-down listener accepts nothing");
        assert_eq!(classify(&error), AcceptError::Listener);
    }

    #[test]
    fn stopping_wakes_a_shared_listener_with_a_recognised_connection() {
        let shared = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let listeners = Listeners::inherit(vec![Listener::Tcp(shared)], false).unwrap();
        listeners.stop_accepting(false, || true);
        // Without a queued connection, the accept fails instead of blocking.
        listeners.sockets()[0].set_nonblocking(true).unwrap();
        let (_, peer) = listeners
            .accept(0)
            .expect("the wake-up connection is queued");
        assert!(listeners.is_waker(&peer));
    }

    #[test]
    fn stopping_wakes_a_shared_unix_listener_with_a_recognised_connection() {
        let name = format!("echo-server-wake-test-{}", std::process::id());
        let shared = UnixListener::bind_addr(
            &std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap(),
        )
        .unwrap();
        let listeners = Listeners::inherit(vec![Listener::Unix(shared)], false).unwrap();
        assert_eq!(listeners.endpoints(), [Endpoint::Unix(format!("@{name}"))]);
        listeners.stop_accepting(false, || true);
        listeners.sockets()[0].set_nonblocking(true).unwrap();
        let (_, peer) = listeners
            .accept(0)
            .expect("the wake-up connection is queued");
        assert!(listeners.is_waker(&peer));
        assert_eq!(
            peer.to_string().split(" pid ").next(),
            Some(format!("unix:@{name}").as_str())
        );
    }

    #[test]
    fn a_unix_socket_file_is_made_with_its_mode_and_removed_with_the_listeners() {
        let path =
            std::env::temp_dir().join(format!("echo-server-mode-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listeners = Listeners::bind(&Config {
            bind: Vec::new(),
            unix: vec![path.to_str().unwrap().to_owned()],
            unix_mode: Some(0o640),
            ..Config::default()
        })
        .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o640);
        drop(listeners);
        assert!(!path.exists());
    }
}
