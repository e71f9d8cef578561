//! Connection permits: how many clients are served at once, in all and per
//! source IP address, and the registry of their sockets that shutdown uses.
//!
//! A [`Permit`] is taken in the accept loop before a client's thread is
//! started and moved into that thread; its `Drop` gives the slot back, so a
//! handler that returns early, fails or even panics always frees it.

use std::collections::HashMap;
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Why a client was not given a permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `--max-connections` clients are already served.
    Full,
    /// `--max-connections-per-ip` clients from this address are already served.
    PerIpFull,
    /// The server is shutting down.
    Closed,
}

impl Refusal {
    /// Why, in the words of the rejection log.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::Full => "max connections reached",
            Refusal::PerIpFull => "max connections per IP reached",
            Refusal::Closed => "server shutting down",
        }
    }
}

/// The connection slots of one server.
#[derive(Debug)]
pub(crate) struct Limits {
    /// Most permits held at once; `usize::MAX` when unlimited.
    max_total: usize,
    /// Most permits held at once by one IP address; 0 for no limit.
    max_per_ip: usize,
    /// Everything that changes, under one lock taken twice per connection
    /// (acquire, release): never on the per-message path.
    state: Mutex<State>,
    /// Signalled when the last permit is released, for shutdown to wait on.
    empty: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Permits held now.
    total: usize,
    /// The most permits ever held at once.
    peak: usize,
    /// Permits held per address; only filled when a per-IP limit is set.
    per_ip: HashMap<IpAddr, usize>,
    /// The socket of every permit holder, so that shutdown can unblock the
    /// thread reading from it.
    sockets: HashMap<u64, Arc<TcpStream>>,
    /// The id the next permit gets.
    next_id: u64,
    /// Set by [`Limits::close_all`]: no permit is given after it.
    closed: bool,
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
    /// Slots for at most `max_total` clients (0 means none at all is
    /// refused for the total), at most `max_per_ip` of them (0 = no limit)
    /// from one address.
    pub(crate) fn new(max_total: usize, max_per_ip: usize) -> Limits {
        Limits {
            max_total: if max_total == 0 {
                usize::MAX
            } else {
                max_total
            },
            max_per_ip,
            state: Mutex::new(State::default()),
            empty: Condvar::new(),
        }
    }

    /// Takes a slot for a client whose socket is `socket`, counted against
    /// `ip` when its address is known; a client behind a proxy gets its
    /// address later, with [`Permit::claim_ip`].
    pub(crate) fn acquire(
        self: &Arc<Self>,
        ip: Option<IpAddr>,
        socket: &Arc<TcpStream>,
    ) -> Result<Permit, Refusal> {
        let mut state = self.lock();
        if state.closed {
            return Err(Refusal::Closed);
        }
        if state.total >= self.max_total {
            return Err(Refusal::Full);
        }
        if let Some(ip) = ip {
            self.count_ip(&mut state, ip)?;
        }
        state.total += 1;
        state.peak = state.peak.max(state.total);
        let id = state.next_id;
        state.next_id += 1;
        state.sockets.insert(id, Arc::clone(socket));
        Ok(Permit {
            limits: Arc::clone(self),
            ip,
            id,
        })
    }

    /// Counts one more client from `ip`, unless that address is at its limit.
    fn count_ip(&self, state: &mut State, ip: IpAddr) -> Result<(), Refusal> {
        if self.max_per_ip > 0 {
            let count = state.per_ip.entry(ip).or_insert(0);
            if *count >= self.max_per_ip {
                return Err(Refusal::PerIpFull);
            }
            *count += 1;
        }
        Ok(())
    }

    /// Refuses every later client and shuts down the socket of every current
    /// one, so that their threads, blocked in `read` or `write`, return.
    /// Returns how many were connected.
    pub(crate) fn close_all(&self) -> usize {
        let mut state = self.lock();
        state.closed = true;
        for socket in state.sockets.values() {
            // The client may be gone already: nothing left to unblock then.
            let _ = socket.shutdown(Shutdown::Both);
        }
        state.sockets.len()
    }

    /// Blocks until every permit has been given back.
    pub(crate) fn wait_empty(&self) {
        let state = self.lock();
        let _state = self
            .empty
            .wait_while(state, |state| state.total > 0)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }

    /// Blocks until every permit has been given back or `deadline` passes.
    pub(crate) fn wait_empty_until(&self, deadline: Instant) {
        let state = self.lock();
        let timeout = deadline.saturating_duration_since(Instant::now());
        let _state = self
            .empty
            .wait_timeout_while(state, timeout, |state| state.total > 0)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }

    /// Permits held now, and the most ever held at once.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let state = self.lock();
        (state.total, state.peak)
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
        if let (true, Some(ip)) = (self.limits.max_per_ip > 0, self.ip) {
            if let Some(count) = state.per_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    state.per_ip.remove(&ip);
                }
            }
        }
        state.total -= 1;
        if state.total == 0 {
            self.limits.empty.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener};

    fn socket() -> Arc<TcpStream> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        Arc::new(TcpStream::connect(listener.local_addr().unwrap()).unwrap())
    }

    #[test]
    fn refuses_over_total_and_frees_on_drop() {
        let limits = Arc::new(Limits::new(2, 0));
        let ip = IpAddr::from(Ipv4Addr::LOCALHOST);
        let s = socket();
        let a = limits.acquire(Some(ip), &s).unwrap();
        let _b = limits.acquire(Some(ip), &s).unwrap();
        assert_eq!(limits.acquire(Some(ip), &s).unwrap_err(), Refusal::Full);
        drop(a);
        assert!(limits.acquire(Some(ip), &s).is_ok());
        assert_eq!(limits.counts(), (1, 2));
    }

    #[test]
    fn refuses_over_per_ip_limit_for_that_address_only() {
        let limits = Arc::new(Limits::new(0, 1));
        let one = IpAddr::from(Ipv4Addr::new(127, 0, 0, 1));
        let two = IpAddr::from(Ipv4Addr::new(127, 0, 0, 2));
        let s = socket();
        let _a = limits.acquire(Some(one), &s).unwrap();
        assert_eq!(
            limits.acquire(Some(one), &s).unwrap_err(),
            Refusal::PerIpFull
        );
        let b = limits.acquire(Some(two), &s).unwrap();
        drop(b);
        assert!(!limits.lock().per_ip.contains_key(&two));
    }

    #[test]
    fn claims_the_address_a_proxy_reports_against_the_per_ip_limit() {
        let limits = Arc::new(Limits::new(0, 1));
        let client = IpAddr::from(Ipv4Addr::new(192, 0, 2, 7));
        let s = socket();
        let mut first = limits.acquire(None, &s).unwrap();
        first.claim_ip(client).unwrap();
        let mut second = limits.acquire(None, &s).unwrap();
        assert_eq!(second.claim_ip(client).unwrap_err(), Refusal::PerIpFull);
        drop(first);
        let mut third = limits.acquire(None, &s).unwrap();
        assert!(third.claim_ip(client).is_ok());
    }

    #[test]
    fn refuses_everyone_after_close_all() {
        let limits = Arc::new(Limits::new(0, 0));
        let ip = IpAddr::from(Ipv4Addr::LOCALHOST);
        let s = socket();
        limits.close_all();
        assert_eq!(limits.acquire(Some(ip), &s).unwrap_err(), Refusal::Closed);
    }

    #[test]
    fn releases_permit_when_holder_panics() {
        let limits = Arc::new(Limits::new(1, 0));
        let permit = limits
            .acquire(Some(IpAddr::from(Ipv4Addr::LOCALHOST)), &socket())
            .unwrap();
        let result = std::thread::spawn(move || {
            let _permit = permit;
            panic!("handler failure");
        })
        .join();
        assert!(result.is_err());
        limits.wait_empty();
        assert_eq!(limits.counts().0, 0);
    }
}
