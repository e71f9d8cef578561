//! Connection permits: how many clients are served at once, in all and per
//! source IP address, and the registry of their sockets that shutdown and
//! the idle watchdog use.
//!
//! A [`Permit`] is taken in the accept loop before a client's thread is
//! started and moved into that thread; its `Drop` gives the slot back, so a
//! handler that returns early, fails or even panics always frees it.

use std::collections::HashMap;
use std::net::{IpAddr, Shutdown};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::stream::Socket;

/// Why a client was not given a permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `--max-connections` clients are already served.
    Full,
    /// `--max-connections-per-ip` clients from this address are already served.
    PerIpFull,
}

impl Refusal {
    /// Why, in the words of the rejection log.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::Full => "max connections reached",
            Refusal::PerIpFull => "max connections per IP reached",
        }
    }
}

/// A client's socket, with what the threads that may close it need: its
/// activity, for the idle watchdog, and whether the watchdog closed it.
#[derive(Debug)]
pub(crate) struct Tracked<S: ?Sized> {
    /// Bytes echoed so far: the client's thread stores it after every
    /// write, a plain store to a line no other thread writes, and the
    /// watchdog reads it to see whether anything happened.
    activity: AtomicU64,
    /// Set by the watchdog before it shuts the socket down, so that the
    /// client's thread tells why it ended.
    timed_out: AtomicBool,
    /// The socket.
    socket: S,
}

impl<S> Tracked<S> {
    /// `socket`, with no activity yet.
    pub(crate) fn new(socket: S) -> Tracked<S> {
        Tracked {
            activity: AtomicU64::new(0),
            timed_out: AtomicBool::new(false),
            socket,
        }
    }
}

impl<S: ?Sized> Tracked<S> {
    /// The socket.
    pub(crate) fn socket(&self) -> &S {
        &self.socket
    }

    /// Records that `echoed` bytes have been echoed so far.
    pub(crate) fn mark(&self, echoed: u64) {
        self.activity.store(echoed, Ordering::Relaxed);
    }

    /// Bytes echoed so far, as last recorded.
    #[cfg(test)]
    pub(crate) fn activity(&self) -> u64 {
        self.activity.load(Ordering::Relaxed)
    }

    /// Whether the idle watchdog closed the socket.
    pub(crate) fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Acquire)
    }
}

/// The connection slots of one server.
#[derive(Debug)]
pub(crate) struct Limits {
    /// Most permits held at once; `None` for no limit.
    max_total: Option<NonZeroUsize>,
    /// Most permits held at once by one IP address; `None` for no limit.
    max_per_ip: Option<NonZeroUsize>,
    /// Everything that changes, under one lock taken twice per connection
    /// (acquire, release) and once per watchdog round: never on the
    /// per-message path. Last in the lock order (see `server`).
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The most permits ever held at once.
    peak: usize,
    /// Permits held per address; only filled when a per-IP limit is set.
    per_ip: HashMap<IpAddr, usize>,
    /// The socket of every permit holder, by permit id; its length is the
    /// number of permits held.
    sockets: HashMap<u64, Entry>,
    /// The id the next permit gets.
    next_id: u64,
}

/// A permit holder's socket, as the watchdog last saw it.
#[derive(Debug)]
struct Entry {
    /// The socket.
    tracked: Arc<Tracked<dyn Socket>>,
    /// Its activity when the watchdog last saw it change.
    seen: u64,
    /// When the watchdog last saw its activity change.
    since: Instant,
}

/// One client's slot, given back on drop.
#[derive(Debug)]
pub(crate) struct Permit {
    /// The slots this permit belongs to.
    limits: Arc<Limits>,
    /// The client's address, once known, for the per-IP count.
    ip: Option<IpAddr>,
    /// This permit's key in the socket registry.
    id: u64,
}

impl Limits {
    /// Slots for at most `max_total` clients, at most `max_per_ip` of them
    /// from one address; `None` for no limit.
    pub(crate) fn new(max_total: Option<NonZeroUsize>, max_per_ip: Option<NonZeroUsize>) -> Limits {
        Limits {
            max_total,
            max_per_ip,
            state: Mutex::new(State::default()),
        }
    }

    /// Takes a slot for a client whose socket is `socket`, counted against
    /// `ip` when its address is known; a client behind a proxy gets its
    /// address later, with [`Permit::claim_ip`].
    pub(crate) fn acquire(
        self: &Arc<Self>,
        ip: Option<IpAddr>,
        socket: Arc<Tracked<dyn Socket>>,
    ) -> Result<Permit, Refusal> {
        let mut state = self.lock();
        if self
            .max_total
            .is_some_and(|max| state.sockets.len() >= max.get())
        {
            return Err(Refusal::Full);
        }
        if let Some(ip) = ip {
            self.count_ip(&mut state, ip)?;
        }
        let id = state.next_id;
        state.next_id += 1;
        state.sockets.insert(
            id,
            Entry {
                tracked: socket,
                seen: 0,
                since: Instant::now(),
            },
        );
        state.peak = state.peak.max(state.sockets.len());
        Ok(Permit {
            limits: Arc::clone(self),
            ip,
            id,
        })
    }

    /// Counts one more client from `ip`, unless that address is at its limit.
    fn count_ip(&self, state: &mut State, ip: IpAddr) -> Result<(), Refusal> {
        if let Some(max) = self.max_per_ip {
            let count = state.per_ip.entry(ip).or_insert(0);
            if *count >= max.get() {
                return Err(Refusal::PerIpFull);
            }
            *count += 1;
        }
        Ok(())
    }

    /// Shuts down the socket of every current client, so that their
    /// threads, blocked in `read` or `write`, return. Returns how many were
    /// connected.
    pub(crate) fn close_all(&self) -> usize {
        let state = self.lock();
        for entry in state.sockets.values() {
            // The client may be gone already: nothing left to unblock then.
            let _ = entry.tracked.socket.shutdown(Shutdown::Both);
        }
        state.sockets.len()
    }

    /// Shuts down the socket of every client whose activity has not
    /// changed for `timeout`, as of `now`; returns how many.
    pub(crate) fn close_idle(&self, timeout: Duration, now: Instant) -> usize {
        let mut state = self.lock();
        let mut closed = 0;
        for entry in state.sockets.values_mut() {
            let activity = entry.tracked.activity.load(Ordering::Relaxed);
            if activity != entry.seen {
                entry.seen = activity;
                entry.since = now;
            } else if now.saturating_duration_since(entry.since) >= timeout
                && !entry.tracked.timed_out.swap(true, Ordering::AcqRel)
            {
                let _ = entry.tracked.socket.shutdown(Shutdown::Both);
                closed += 1;
            }
        }
        closed
    }

    /// Permits held now, and the most ever held at once.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let state = self.lock();
        (state.sockets.len(), state.peak)
    }

    /// The state, even if a thread panicked while holding the lock: every
    /// update leaves it consistent, so a poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Permit {
    /// Counts this permit against `ip`, the client's address as a proxy
    /// reported it, unless that address is at its limit.
    pub(crate) fn claim_ip(&mut self, ip: IpAddr) -> Result<(), Refusal> {
        assert!(self.ip.is_none(), "a permit's address is claimed only once");
        let mut state = self.limits.lock();
        self.limits.count_ip(&mut state, ip)?;
        self.ip = Some(ip);
        Ok(())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.limits.lock();
        state.sockets.remove(&self.id);
        if let (Some(_), Some(ip)) = (self.limits.max_per_ip, self.ip) {
            if let Some(count) = state.per_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    state.per_ip.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{Ipv4Addr, TcpListener, TcpStream};

    /// A connected pair: the server's side, tracked, and the client's.
    fn pair() -> (Arc<Tracked<TcpStream>>, TcpStream) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let (server, _) = listener.accept().unwrap();
        (Arc::new(Tracked::new(server)), client)
    }

    fn socket() -> Arc<Tracked<dyn Socket>> {
        pair().0
    }

    fn limit(n: usize) -> Option<NonZeroUsize> {
        NonZeroUsize::new(n)
    }

    /// Whether the server closed the client's connection: EOF at once.
    fn closed(client: &mut TcpStream) -> bool {
        matches!(client.read(&mut [0; 1]), Ok(0))
    }

    #[test]
    fn refuses_over_total_and_frees_on_drop() {
        let limits = Arc::new(Limits::new(limit(2), None));
        let ip = IpAddr::from(Ipv4Addr::LOCALHOST);
        let a = limits.acquire(Some(ip), socket()).unwrap();
        let _b = limits.acquire(Some(ip), socket()).unwrap();
        assert_eq!(
            limits.acquire(Some(ip), socket()).unwrap_err(),
            Refusal::Full
        );
        drop(a);
        assert!(limits.acquire(Some(ip), socket()).is_ok());
        assert_eq!(limits.counts(), (1, 2));
    }

    #[test]
    fn refuses_over_per_ip_limit_for_that_address_only() {
        let limits = Arc::new(Limits::new(None, limit(1)));
        let one = IpAddr::from(Ipv4Addr::new(127, 0, 0, 1));
        let two = IpAddr::from(Ipv4Addr::new(127, 0, 0, 2));
        let _a = limits.acquire(Some(one), socket()).unwrap();
        assert_eq!(
            limits.acquire(Some(one), socket()).unwrap_err(),
            Refusal::PerIpFull
        );
        let b = limits.acquire(Some(two), socket()).unwrap();
        drop(b);
        assert!(!limits.lock().per_ip.contains_key(&two));
    }

    #[test]
    fn claims_the_address_a_proxy_reports_against_the_per_ip_limit() {
        let limits = Arc::new(Limits::new(None, limit(1)));
        let client = IpAddr::from(Ipv4Addr::new(192, 0, 2, 7));
        let mut first = limits.acquire(None, socket()).unwrap();
        first.claim_ip(client).unwrap();
        let mut second = limits.acquire(None, socket()).unwrap();
        assert_eq!(second.claim_ip(client).unwrap_err(), Refusal::PerIpFull);
        drop(first);
        let mut third = limits.acquire(None, socket()).unwrap();
        assert!(third.claim_ip(client).is_ok());
    }

    #[test]
    fn close_all_shuts_down_every_holders_socket() {
        let limits = Arc::new(Limits::new(None, None));
        let (server, mut client) = pair();
        let _permit = limits.acquire(None, server).unwrap();
        assert_eq!(limits.close_all(), 1);
        assert!(closed(&mut client));
    }

    #[test]
    fn closes_only_sockets_without_activity_for_the_timeout() {
        let limits = Arc::new(Limits::new(None, None));
        let timeout = Duration::from_secs(60);
        let (idle, mut idle_client) = pair();
        let (busy, mut busy_client) = pair();
        let _idle = limits.acquire(None, Arc::clone(&idle) as _).unwrap();
        let _busy = limits.acquire(None, Arc::clone(&busy) as _).unwrap();
        let start = Instant::now();
        assert_eq!(limits.close_idle(timeout, start + timeout / 2), 0);
        busy.mark(10);
        assert_eq!(limits.close_idle(timeout, start + timeout), 1);
        assert!(idle.timed_out() && !busy.timed_out());
        assert!(closed(&mut idle_client));
        // The busy one's timeout counts from its last activity; each is
        // closed once only, however often the watchdog looks again.
        assert_eq!(limits.close_idle(timeout, start + timeout * 3 / 2), 0);
        assert_eq!(limits.close_idle(timeout, start + timeout * 2), 1);
        assert!(closed(&mut busy_client));
        assert_eq!(limits.close_idle(timeout, start + timeout * 3), 0);
    }

    #[test]
    fn releases_permit_when_holder_panics() {
        let limits = Arc::new(Limits::new(limit(1), None));
        let permit = limits
            .acquire(Some(IpAddr::from(Ipv4Addr::LOCALHOST)), socket())
            .unwrap();
        let result = std::thread::spawn(move || {
            let _permit = permit;
            panic!("handler failure");
        })
        .join();
        assert!(result.is_err());
        assert_eq!(limits.counts().0, 0);
    }
}
