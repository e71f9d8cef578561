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
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use socket2::Socket;

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

/// A client's socket, with what the idle watchdog needs: whether the
/// client's thread has written since the watchdog last looked, and for how
/// many looks it has not. Kept to eight bytes beside the socket's
/// descriptor, so that it costs an idle client no more memory than the
/// socket alone.
#[derive(Debug)]
pub(crate) struct Tracked<S: ?Sized> {
    /// Set by the client's thread after every write (a plain store to a
    /// line only the watchdog reads, once per look), cleared by the
    /// watchdog when it looks.
    active: AtomicBool,
    /// Looks in a row that found no activity; [`TIMED_OUT`] once the
    /// watchdog has closed the socket.
    idle_looks: AtomicU16,
    /// The socket.
    socket: S,
}

/// `idle_looks` of a socket the watchdog has closed.
const TIMED_OUT: u16 = u16::MAX;

/// The most looks the watchdog may be asked to wait for: below
/// [`TIMED_OUT`].
pub(crate) const MAX_IDLE_LOOKS: u16 = TIMED_OUT - 1;

impl<S> Tracked<S> {
    /// `socket`, with no activity yet.
    pub(crate) fn new(socket: S) -> Tracked<S> {
        Tracked {
            active: AtomicBool::new(false),
            idle_looks: AtomicU16::new(0),
            socket,
        }
    }
}

impl<S: ?Sized> Tracked<S> {
    /// The socket.
    pub(crate) fn socket(&self) -> &S {
        &self.socket
    }

    /// Records that the client's thread has written something.
    pub(crate) fn mark(&self) {
        self.active.store(true, Ordering::Relaxed);
    }

    /// Whether the client's thread has written since the last look.
    #[cfg(test)]
    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Whether the idle watchdog closed the socket.
    pub(crate) fn timed_out(&self) -> bool {
        self.idle_looks.load(Ordering::Acquire) == TIMED_OUT
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
    sockets: HashMap<u64, Arc<Tracked<Socket>>>,
    /// The id the next permit gets.
    next_id: u64,
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
        socket: Arc<Tracked<Socket>>,
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
        state.sockets.insert(id, socket);
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
        for tracked in state.sockets.values() {
            // The client may be gone already: nothing left to unblock then.
            let _ = tracked.socket.shutdown(Shutdown::Both);
        }
        state.sockets.len()
    }

    /// Looks at every client for the idle watchdog: shuts down the socket
    /// of each that has not written for `looks` looks in a row, this one
    /// included; returns how many.
    pub(crate) fn close_idle(&self, looks: u16) -> usize {
        let state = self.lock();
        let mut closed = 0;
        for tracked in state.sockets.values() {
            let idle_looks = &tracked.idle_looks;
            if tracked.active.swap(false, Ordering::Relaxed) {
                idle_looks.store(0, Ordering::Relaxed);
                continue;
            }
            let idle = idle_looks.load(Ordering::Relaxed);
            if idle == TIMED_OUT {
                continue;
            }
            if idle + 1 >= looks {
                idle_looks.store(TIMED_OUT, Ordering::Release);
                let _ = tracked.socket.shutdown(Shutdown::Both);
                closed += 1;
            } else {
                idle_looks.store(idle + 1, Ordering::Relaxed);
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
    use std::net::Ipv4Addr;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    /// A connected pair: the server's side, tracked, and the client's.
    fn pair() -> (Arc<Tracked<Socket>>, UnixStream) {
        let (server, client) = UnixStream::pair().unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        (Arc::new(Tracked::new(Socket::from(server))), client)
    }

    fn socket() -> Arc<Tracked<Socket>> {
        pair().0
    }

    fn limit(n: usize) -> Option<NonZeroUsize> {
        NonZeroUsize::new(n)
    }

    /// Whether the server closed the client's connection: EOF at once.
    fn closed(client: &mut UnixStream) -> bool {
        matches!(client.read(&mut [0; 1]), Ok(0))
    }

    #[test]
    fn a_tracked_socket_costs_an_idle_client_no_more_than_before() {
        // An Arc of 24 bytes is a 32-byte allocation in glibc's malloc, as
        // an Arc<TcpStream> alone was; 8 bytes more would make it 48.
        assert_eq!(size_of::<Tracked<Socket>>(), 8);
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
    fn closes_only_sockets_that_have_not_written_for_the_looks_asked() {
        let limits = Arc::new(Limits::new(None, None));
        let (idle, mut idle_client) = pair();
        let (busy, mut busy_client) = pair();
        let _idle = limits.acquire(None, Arc::clone(&idle)).unwrap();
        let _busy = limits.acquire(None, Arc::clone(&busy)).unwrap();
        assert_eq!(limits.close_idle(3), 0);
        busy.mark();
        assert_eq!(limits.close_idle(3), 0);
        assert!(!busy.is_active(), "a look clears the mark");
        assert_eq!(limits.close_idle(3), 1);
        assert!(idle.timed_out() && !busy.timed_out());
        assert!(closed(&mut idle_client));
        // The busy one's looks count from its last write; each is closed
        // once only, however often the watchdog looks again.
        assert_eq!(limits.close_idle(3), 0);
        assert_eq!(limits.close_idle(3), 1);
        assert!(closed(&mut busy_client));
        assert_eq!(limits.close_idle(3), 0);
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
