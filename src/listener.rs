//! The accept loop, one per listening socket, and the spawner.
//!
//! An accept loop admits each client (the access lists, then a permit) and
//! survives every error but a dead listener. The spawner starts a thread
//! for each admitted client. Creating a thread costs far more than
//! accepting a connection (about a hundred microseconds on a busy machine,
//! mostly in the kernel), so the two run apart: when thousands of clients
//! connect at once, they wait for their threads in memory (each already
//! holding its permit, so the wait is bounded by the connection limit)
//! instead of overflowing the kernel's listen queue, where a dropped
//! handshake costs the client a second before its SYN is sent again.

use std::fmt;
use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use crate::handler;
use crate::limits::{Permit, Refusal};
use crate::server::Shared;
use crate::sys;

/// Stack of a client's thread. The echo loop needs a few KiB of stack, its
/// 2 KiB buffer included; this leaves room for logging and for unoptimised
/// builds while costing only the pages actually touched.
const CLIENT_STACK_SIZE: usize = 128 * 1024;

/// First pause after an accept error that more tries would only repeat.
const BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest pause between accept tries.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

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

/// Logs a warning at most once per interval, with how many events it stands
/// for, so that a flood of events cannot flood the log.
#[derive(Debug)]
pub(crate) struct Throttle {
    /// When the last warning was logged, and the events since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    /// A throttle that has not logged yet.
    pub(crate) fn new() -> Throttle {
        Throttle {
            state: Mutex::new((None, 0)),
        }
    }

    /// Counts one event; returns how many events to report if a warning is
    /// due now.
    pub(crate) fn event(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.1 += 1;
        let now = Instant::now();
        match state.0 {
            Some(last) if now.duration_since(last) < Duration::from_secs(1) => None,
            _ => {
                let count = state.1;
                *state = (Some(now), 0);
                Some(count)
            }
        }
    }
}

/// A client admitted by an accept loop, waiting for its thread.
#[derive(Debug)]
pub(crate) struct Admitted {
    /// The connection, shared with the registry that shutdown uses.
    stream: Arc<TcpStream>,
    /// Where it comes from.
    peer: SocketAddr,
    /// Its connection slot.
    permit: Permit,
}

/// Accepts clients on `shared.listeners[index]` and hands them to the
/// spawner through `spawner`, until shutdown or until the listener fails.
pub(crate) fn accept_loop(
    shared: &Arc<Shared>,
    index: usize,
    spawner: &Sender<Admitted>,
) -> io::Result<()> {
    let listener = &shared.listeners[index];
    let mut backoff = BACKOFF_MIN;
    let resource_warnings = Throttle::new();
    // A descriptor held back for when the process runs out: closing it
    // makes room to accept one pending client and close it at once, so
    // that clients are refused instead of left hanging in the backlog.
    let mut reserve = File::open("/dev/null").ok();
    loop {
        let accepted = listener.accept();
        if shared.is_stopping() {
            if let Ok((stream, peer)) = accepted {
                stop_admitting(shared, stream, peer, spawner);
            }
            return Ok(());
        }
        match accepted {
            Ok((stream, peer)) => {
                backoff = BACKOFF_MIN;
                admit(shared, stream, peer, spawner);
            }
            Err(error) => match classify(&error) {
                AcceptError::Connection => debug!("accept: {error}"),
                AcceptError::Listener => return Err(error),
                AcceptError::Resources => {
                    if let Some(count) = resource_warnings.event() {
                        warn!(
                            "accept failed {count} time(s): {error}; retrying in up to {backoff:?}"
                        );
                    }
                    if is_out_of_descriptors(&error) {
                        use_reserve(shared, listener, &mut reserve, spawner);
                    }
                    shared.pause(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            },
        }
    }
}

/// Out of descriptors: closes the reserve descriptor to accept one waiting
/// client, and takes the reserve back. The client is served if the reserve
/// can be reopened, since descriptors are then free again (the accept may
/// block until the next client if the backlog emptied meanwhile), and
/// closed otherwise.
fn use_reserve(
    shared: &Shared,
    listener: &TcpListener,
    reserve: &mut Option<File>,
    spawner: &Sender<Admitted>,
) {
    if reserve.take().is_some() {
        if let Ok((stream, peer)) = listener.accept() {
            *reserve = File::open("/dev/null").ok();
            if reserve.is_some() {
                admit(shared, stream, peer, spawner);
            } else {
                drop(stream);
                reject(shared, peer, &Rejection::NoDescriptor);
            }
        }
    }
    if reserve.is_none() {
        *reserve = File::open("/dev/null").ok();
    }
}

/// Handles a client accepted once the server stopped accepting: the server
/// serves it if it drains, and closes it otherwise; a wake-up connection
/// is just closed.
pub(crate) fn stop_admitting(
    shared: &Shared,
    stream: TcpStream,
    peer: SocketAddr,
    spawner: &Sender<Admitted>,
) {
    if shared.is_draining() && !shared.is_waker(peer) {
        admit(shared, stream, peer, spawner);
    }
}

/// Whether the process or the system has no descriptor left.
fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Gives `stream` a permit and sends it to the spawner, or closes it at
/// once.
///
/// Behind a proxy, the client's address is known only once its thread has
/// read the PROXY header: the access lists and the per-IP limit are applied
/// there, and here only whether the proxy may connect at all.
fn admit(shared: &Shared, stream: TcpStream, peer: SocketAddr, spawner: &Sender<Admitted>) {
    let config = &shared.config;
    let client_ip = (!config.proxy_protocol).then_some(peer.ip());
    match client_ip {
        Some(ip) if !config.admits(ip) => return reject(shared, peer, &Rejection::Denied),
        None if !config.trusts_proxy(peer.ip()) => {
            return reject(shared, peer, &Rejection::UntrustedProxy);
        }
        _ => {}
    }
    let stream = Arc::new(stream);
    let permit = match shared.limits.acquire(client_ip, &stream) {
        Ok(permit) => permit,
        Err(Refusal::Closed) => return,
        Err(refusal) => return reject(shared, peer, &Rejection::Limit(refusal)),
    };
    // The spawner outlives every accept loop: a send fails only while the
    // server is being torn down, and then dropping the client is right.
    let _ = spawner.send(Admitted {
        stream,
        peer,
        permit,
    });
}

/// Starts a thread for each client `admitted`, in the order they came,
/// until every accept loop has ended.
pub(crate) fn spawn_loop(shared: &Arc<Shared>, admitted: &Receiver<Admitted>) {
    // Threads inherit the policy of the thread that creates them.
    if let Err(error) = sys::use_batch_scheduling() {
        debug!("cannot use SCHED_BATCH, keeping the default policy: {error}");
    }
    for client in admitted {
        start(shared, client);
    }
}

/// Starts the thread that serves `client`, or closes it.
fn start(shared: &Arc<Shared>, client: Admitted) {
    let Admitted {
        stream,
        peer,
        permit,
    } = client;
    let thread_shared = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name("echo-conn".to_owned())
        .stack_size(CLIENT_STACK_SIZE)
        .spawn(move || handler::serve(&thread_shared, &stream, peer, permit));
    match spawned {
        Ok(_) => {
            shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
            // Behind a proxy, the client is known once its header is read.
            if !shared.config.proxy_protocol {
                info!("{peer} connected");
            }
        }
        // The closure, with the stream and the permit, is dropped here: the
        // client is closed and its slot given back.
        Err(error) => reject(shared, peer, &Rejection::NoThread(error)),
    }
}

/// Why a client is closed without being served.
#[derive(Debug)]
pub(crate) enum Rejection {
    /// A connection limit is reached.
    Limit(Refusal),
    /// The access lists do not admit the client.
    Denied,
    /// The peer may not send PROXY headers.
    UntrustedProxy,
    /// The PROXY header was missing, malformed or late.
    BadHeader(io::Error),
    /// No thread could be started for the client.
    NoThread(io::Error),
    /// The process is out of descriptors: the client was accepted with the
    /// reserve descriptor only to be closed.
    NoDescriptor,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Limit(refusal) => f.write_str(refusal.reason()),
            Rejection::Denied => f.write_str("denied by the access lists"),
            Rejection::UntrustedProxy => f.write_str("not allowed to send PROXY headers"),
            Rejection::BadHeader(error) => write!(f, "bad PROXY header: {error}"),
            Rejection::NoThread(error) => write!(f, "cannot start a thread: {error}"),
            Rejection::NoDescriptor => f.write_str("out of file descriptors"),
        }
    }
}

/// Counts a client closed without being served, and warns about it at most
/// once a second.
pub(crate) fn reject(shared: &Shared, peer: impl fmt::Display, why: &Rejection) {
    let counters = &shared.counters;
    let counter = match why {
        Rejection::Denied | Rejection::UntrustedProxy => &counters.denied,
        Rejection::BadHeader(_) => &counters.proxy_errors,
        _ => &counters.rejected,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    debug!("{peer} rejected: {why}");
    if let Some(count) = shared.rejections.event() {
        warn!("rejected {count} client(s) since the last warning; latest {peer}: {why}");
    }
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
    fn throttle_reports_first_event_then_holds_for_a_second() {
        let throttle = Throttle::new();
        assert_eq!(throttle.event(), Some(1));
        assert_eq!(throttle.event(), None);
        assert_eq!(throttle.event(), None);
    }
}
