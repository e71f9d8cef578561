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

use std::fs::File;
use std::io;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};
use std::time::Duration;

use log::{debug, info, warn};

use crate::config::Config;
use crate::handler::{Client, Handler};
use crate::limits::Limits;
use crate::listeners::{AcceptError, Accepted, Listeners, classify};
use crate::stats::{Counters, Rejection};
use crate::stop::{Phase, Stop};
use crate::sys;
use crate::throttle::Throttle;

/// Stack of a client's thread. The echo loop needs a few KiB of stack, its
/// 2 KiB buffer included; this leaves room for logging and for unoptimised
/// builds while costing only the pages actually touched.
const CLIENT_STACK_SIZE: usize = 128 * 1024;

/// First pause after an accept error that more tries would only repeat.
const BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest pause between accept tries.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A client on its way to its thread.
pub(crate) type Admitted = Client<socket2::Socket>;

/// What admitting a client takes: the rules, the slots, the stop state,
/// the counters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admission<'a> {
    /// Who may be served.
    pub(crate) config: &'a Config,
    /// Whether clients are still admitted.
    pub(crate) stop: &'a Stop,
    /// Connection slots.
    pub(crate) limits: &'a Arc<Limits>,
    /// Where rejections are counted.
    pub(crate) counters: &'a Counters,
    /// The listeners, to recognise their wake-up connections.
    pub(crate) listeners: &'a Listeners,
}

impl Admission<'_> {
    /// Accepts clients on listener `index` and hands them to the spawner
    /// through `spawner`, until the server stops accepting or the listener
    /// fails.
    pub(crate) fn accept_loop(self, index: usize, spawner: &Sender<Admitted>) -> io::Result<()> {
        let mut backoff = BACKOFF_MIN;
        let resource_warnings = Throttle::default();
        // A descriptor held back for when the process runs out: closing it
        // makes room to accept one pending client and close it at once, so
        // that clients are refused instead of left hanging in the backlog.
        let mut reserve = File::open("/dev/null").ok();
        loop {
            let accepted = self.listeners.accept(index);
            if self.stop.phase() != Phase::Running {
                if let Ok(client) = accepted {
                    self.after_stop(client, spawner);
                }
                return Ok(());
            }
            match accepted {
                Ok(client) => {
                    backoff = BACKOFF_MIN;
                    self.admit(client, spawner);
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
                            self.use_reserve(index, &mut reserve, spawner);
                        }
                        self.stop.pause(backoff);
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                },
            }
        }
    }

    /// Out of descriptors: closes the reserve descriptor to accept one
    /// waiting client, and takes the reserve back. The client is served if
    /// the reserve can be reopened, since descriptors are then free again
    /// (the accept may block until the next client if the backlog emptied
    /// meanwhile), and closed otherwise.
    fn use_reserve(self, index: usize, reserve: &mut Option<File>, spawner: &Sender<Admitted>) {
        if reserve.take().is_some() {
            if let Ok((stream, peer)) = self.listeners.accept(index) {
                *reserve = File::open("/dev/null").ok();
                if reserve.is_some() {
                    self.admit((stream, peer), spawner);
                } else {
                    drop(stream);
                    self.counters.reject(peer, &Rejection::NoDescriptor);
                }
            }
        }
        if reserve.is_none() {
            *reserve = File::open("/dev/null").ok();
        }
    }

    /// Handles a client accepted once the server stopped accepting: it is
    /// served during a drain, and closed otherwise; a wake-up connection
    /// is just closed.
    pub(crate) fn after_stop(self, client: Accepted, spawner: &Sender<Admitted>) {
        let draining = matches!(self.stop.phase(), Phase::Draining { .. });
        if draining && !self.listeners.is_waker(&client.1) {
            self.admit(client, spawner);
        }
    }

    /// Gives `stream` a permit and sends it to the spawner, or closes it at
    /// once.
    ///
    /// Behind a proxy, the client's address is known only once its thread
    /// has read the PROXY header: the access lists and the per-IP limit are
    /// applied there, and here only whether the proxy may connect at all.
    /// A Unix client has no address: neither applies to it.
    fn admit(self, (stream, peer): Accepted, spawner: &Sender<Admitted>) {
        let config = self.config;
        let peer_ip = peer.ip();
        let client_ip = peer_ip.filter(|_| !config.proxy_protocol);
        match (client_ip, peer_ip) {
            (Some(ip), _) if !config.admits(ip) => {
                return self.counters.reject(peer, &Rejection::Denied);
            }
            (None, Some(ip)) if !config.trusts_proxy(ip) => {
                return self.counters.reject(peer, &Rejection::UntrustedProxy);
            }
            _ => {}
        }
        let socket = stream.into_tracked();
        let acquired = self
            .stop
            .if_admitting(|| self.limits.acquire(client_ip, Arc::clone(&socket)));
        let permit = match acquired {
            Some(Ok(permit)) => permit,
            // The server is closing every client: this one goes too.
            None => return,
            Some(Err(refusal)) => {
                return self.counters.reject(peer, &Rejection::Limit(refusal));
            }
        };
        // The spawner outlives every accept loop: a send fails only while
        // the server is being torn down, and then dropping the client is
        // right.
        let _ = spawner.send(Client {
            socket,
            peer,
            permit,
        });
    }
}

/// Whether the process or the system has no descriptor left.
fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Starts a thread for each client `admitted`, in the order they came,
/// until every accept loop has ended.
pub(crate) fn spawn_loop(
    handler: &Arc<Handler>,
    stop: &Arc<Stop>,
    counters: &Counters,
    admitted: &Receiver<Admitted>,
) {
    // Threads inherit the policy of the thread that creates them.
    if let Err(error) = sys::use_batch_scheduling() {
        debug!("cannot use SCHED_BATCH, keeping the default policy: {error}");
    }
    for client in admitted {
        start(handler, stop, counters, client);
    }
}

/// Starts the thread that serves `client`, or closes it.
fn start(handler: &Arc<Handler>, stop: &Arc<Stop>, counters: &Counters, client: Admitted) {
    let peer = client.peer.clone();
    let thread = Stop::client_thread(stop);
    // One pointer, not the handler's own three: the closure stays
    // allocated for as long as the thread runs.
    let handler_of_thread = Arc::clone(handler);
    let spawned = sys::spawn(c"echo-conn", CLIENT_STACK_SIZE, move || {
        // Dropped last, once the socket is closed: the server waits for
        // it before it stops.
        let _thread = thread;
        handler_of_thread.serve(client);
    });
    match spawned {
        Ok(()) => {
            counters.accepted();
            // Behind a proxy, the client is known once its header is read.
            if !handler.logs_connects() {
                info!("{peer} connected");
            }
        }
        // The closure, with the client and its permit, is dropped here: the
        // client is closed and its slot given back.
        Err(error) => counters.reject(peer, &Rejection::NoThread(error)),
    }
}
