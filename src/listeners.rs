//! The listening sockets: created with the options every listener gets,
//! or inherited; then, when the server stops accepting, shut down (or, if
//! shared with another process, woken) so that their accept loops return.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use log::{debug, warn};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

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

/// A client accepted from a listen queue, and where it comes from.
pub(crate) type Accepted = (TcpStream, SocketAddr);

/// The listening sockets of one server.
#[derive(Debug)]
pub(crate) struct Listeners {
    /// The sockets, each served by an accept loop of its own.
    sockets: Vec<TcpListener>,
    /// The addresses `sockets` are bound to, in the same order.
    addrs: Vec<SocketAddr>,
    /// Whether the sockets are this server's alone, or shared with another
    /// process and so never shut down.
    owned: bool,
    /// The addresses of the connections made to wake the accept loops on
    /// shared sockets, so that they are not taken for clients. A leaf lock.
    wakers: Mutex<Vec<SocketAddr>>,
    /// Clients taken from the listen queues when a drain began, admitted
    /// once the accept loops have ended. First in the lock order (see
    /// `server`): held while the server stops accepting.
    queued: Mutex<Vec<Accepted>>,
}

impl Listeners {
    /// Binds every address named in `names` on `port`; the sockets are
    /// this server's own.
    ///
    /// # Errors
    ///
    /// Fails if a name cannot be resolved, if an address cannot be bound
    /// (`cannot listen on 127.0.0.1:8000: Address already in use`), or if a
    /// name yields no address the machine has.
    pub(crate) fn bind(names: &[String], port: u16, reuse_port: bool) -> io::Result<Listeners> {
        Listeners::new(bind_all(names, port, reuse_port)?, true)
    }

    /// Serves `sockets` bound by someone else, which may be shared with
    /// another process: stopping leaves them listening.
    ///
    /// # Errors
    ///
    /// Fails if there is no socket, or one cannot report its address.
    pub(crate) fn inherit(sockets: Vec<TcpListener>) -> io::Result<Listeners> {
        Listeners::new(sockets, false)
    }

    /// The listeners `sockets`; `owned` says whether they are this
    /// server's alone.
    fn new(sockets: Vec<TcpListener>, owned: bool) -> io::Result<Listeners> {
        if sockets.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no address to listen on",
            ));
        }
        let addrs = sockets
            .iter()
            .map(TcpListener::local_addr)
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Listeners {
            sockets,
            addrs,
            owned,
            wakers: Mutex::new(Vec::new()),
            queued: Mutex::new(Vec::new()),
        })
    }

    /// The listening sockets.
    pub(crate) fn sockets(&self) -> &[TcpListener] {
        &self.sockets
    }

    /// The addresses listened on, with the ports actually bound.
    pub(crate) fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Stops accepting if `stop` says this call is the one that stops the
    /// server: wakes every accept loop, taking the clients already queued
    /// first when `drain` asks for them to be served.
    ///
    /// `stop` runs under the lock of the queued clients, so that the server
    /// does not collect them before all have been taken.
    pub(crate) fn stop_accepting(&self, drain: bool, stop: impl FnOnce() -> bool) {
        let mut queued = lock(&self.queued);
        if !stop() {
            return;
        }
        debug!("no longer accepting clients");
        for (listener, addr) in self.sockets.iter().zip(&self.addrs) {
            if self.owned {
                if drain {
                    // Clients queued when a drain begins have connected
                    // before it: they are served, not reset.
                    take_queued(listener, &mut queued);
                }
                // On Linux, shutting down a listening socket makes a blocked
                // accept() return EINVAL at once, even with a full backlog,
                // and takes the socket out of its SO_REUSEPORT group, so
                // that new clients go to the other instances. An error only
                // means the socket is unusable already.
                let _ = SockRef::from(listener).shutdown(Shutdown::Both);
            } else if let Err(error) = wake(*addr, |waker| lock(&self.wakers).push(waker)) {
                // A socket shared with another process must keep listening
                // (with its queued clients) for the next instance: the accept
                // loop is woken with a connection instead.
                warn!(
                    "cannot wake the accept loop on {addr}: {error}; it stops at its next client"
                );
            }
        }
    }

    /// Whether a connection from `peer` is one this server made to wake an
    /// accept loop.
    pub(crate) fn is_waker(&self, peer: SocketAddr) -> bool {
        lock(&self.wakers).contains(&peer)
    }

    /// The clients taken from the listen queues when a drain began.
    pub(crate) fn take_queued_clients(&self) -> Vec<Accepted> {
        std::mem::take(&mut *lock(&self.queued))
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
fn take_queued(listener: &TcpListener, queued: &mut Vec<Accepted>) {
    if let Err(error) = listener.set_nonblocking(true) {
        debug!("cannot take the queued clients: {error}");
        return;
    }
    loop {
        match listener.accept() {
            // Accepted sockets do not inherit O_NONBLOCK on Linux.
            Ok(client) => queued.push(client),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
            Err(error) if classify(&error) == AcceptError::Connection => {}
            Err(_) => break,
        }
    }
}

/// Connects to a listener's own address to wake its accept loop, telling
/// `record` the address the connection will come from before making it,
/// so that the accept loop knows it for what it is.
fn wake(listener: SocketAddr, record: impl FnOnce(SocketAddr)) -> io::Result<()> {
    let ip = match listener.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::from(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::from(Ipv6Addr::LOCALHOST),
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

    #[test]
    fn port_zero_gives_every_address_of_a_name_the_same_port() {
        let listeners = Listeners::bind(&["localhost".to_owned()], 0, false)
            .expect("localhost has a loopback address");
        let port = listeners.addrs()[0].port();
        assert_ne!(port, 0);
        assert!(listeners.addrs().iter().all(|addr| addr.port() == port));
        assert!(listeners.addrs().iter().all(|addr| addr.ip().is_loopback()));
    }

    #[test]
    fn a_busy_address_names_itself_in_the_error() {
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = taken.local_addr().unwrap().port();
        let error =
            Listeners::bind(&["127.0.0.1".to_owned()], port, false).expect_err("the port is taken");
        assert_eq!(
            error.to_string(),
            format!("cannot listen on 127.0.0.1:{port}: Address already in use")
        );
    }

    #[test]
    fn stopping_shuts_own_listeners_down_and_takes_queued_clients_on_a_drain() {
        let listeners = Listeners::bind(&["127.0.0.1".to_owned()], 0, false).unwrap();
        let addr = listeners.addrs()[0];
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
        let error = listeners.sockets()[0]
            .accept()
            .expect_err("a shut-down listener accepts nothing");
        assert_eq!(classify(&error), AcceptError::Listener);
    }

    #[test]
    fn stopping_wakes_a_shared_listener_with_a_recognised_connection() {
        let shared = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let listeners = Listeners::inherit(vec![shared]).unwrap();
        listeners.stop_accepting(false, || true);
        // Without a queued connection, the accept fails instead of blocking.
        listeners.sockets()[0].set_nonblocking(true).unwrap();
        let (_, peer) = listeners.sockets()[0]
            .accept()
            .expect("the wake-up connection is queued");
        assert!(listeners.is_waker(peer));
    }
}
