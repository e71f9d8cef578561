//! What a server counts: the counters its roles add to, the [`Stats`] read
//! from them, and the clients closed without being served.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use log::{debug, warn};

use crate::limits::Refusal;
use crate::throttle::Throttle;

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
    /// Whether the server has stopped accepting.
    pub stopping: bool,
    /// Clients that left on their own after the server stopped accepting
    /// (during a drain).
    pub drained: usize,
    /// Clients still connected when the server closed them at shutdown.
    pub cut: usize,
    /// Whether the server serves UDP.
    pub udp: bool,
    /// UDP datagrams echoed.
    pub datagrams_echoed: u64,
    /// UDP datagrams dropped: from a port that answers by itself, over
    /// the rate, or refused by the access lists.
    pub datagrams_dropped: u64,
    /// Whether the server serves TLS.
    pub tls: bool,
    /// Connections closed because their TLS handshake failed or did not
    /// finish in time.
    pub tls_errors: u64,
    /// How long the server has been running.
    pub uptime: Duration,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} accepted, {} rejected, {} denied, {} bad PROXY headers, {} at most at once, \
             {} bytes echoed in {:.1?}",
            self.accepted,
            self.rejected,
            self.denied,
            self.proxy_errors,
            self.peak,
            self.bytes_echoed,
            self.uptime,
        )?;
        if self.tls {
            write!(f, ", {} failed TLS handshakes", self.tls_errors)?;
        }
        if self.udp {
            write!(
                f,
                ", {} datagrams echoed, {} dropped",
                self.datagrams_echoed, self.datagrams_dropped
            )?;
        }
        if self.stopping {
            write!(
                f,
                "; at shutdown {} left on their own, {} closed",
                self.drained, self.cut
            )?;
        }
        Ok(())
    }
}

/// The counters behind [`Stats`] that the accept loops and the client
/// threads add to; the live and peak counts are the connection limits',
/// the shutdown counts the stop state's.
#[derive(Debug)]
pub(crate) struct Counters {
    /// Clients accepted and served.
    accepted: AtomicU64,
    /// Clients accepted and closed at once.
    rejected: AtomicU64,
    /// Clients the access lists refused.
    denied: AtomicU64,
    /// Connections with a bad PROXY header.
    proxy_errors: AtomicU64,
    /// Bytes echoed to clients that have left; added once per connection so
    /// that the echo loop touches no shared cache line.
    bytes_echoed: AtomicU64,
    /// Rate limit of the warning about rejected clients, shared by every
    /// accept loop and client thread.
    rejections: Throttle,
    /// Whether the server serves UDP.
    udp: bool,
    /// UDP datagrams echoed.
    datagrams_echoed: AtomicU64,
    /// UDP datagrams dropped.
    datagrams_dropped: AtomicU64,
    /// Rate limit of the warning about dropped datagrams.
    drops: Throttle,
    /// Whether the server serves TLS.
    tls: bool,
    /// Connections whose TLS handshake failed.
    tls_errors: AtomicU64,
    /// When the server was created, for the uptime.
    started: Instant,
}

impl Counters {
    /// Zero counts, from now, for a server that serves UDP if `udp` and
    /// TLS if `tls`.
    pub(crate) fn new(udp: bool, tls: bool) -> Counters {
        Counters {
            tls,
            tls_errors: AtomicU64::new(0),
            udp,
            datagrams_echoed: AtomicU64::new(0),
            datagrams_dropped: AtomicU64::new(0),
            drops: Throttle::default(),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            proxy_errors: AtomicU64::new(0),
            bytes_echoed: AtomicU64::new(0),
            rejections: Throttle::default(),
            started: Instant::now(),
        }
    }

    /// Counts a client whose thread has started.
    pub(crate) fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the bytes echoed to a client that has left.
    pub(crate) fn echoed(&self, bytes: u64) {
        self.bytes_echoed.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts `count` datagrams echoed.
    pub(crate) fn datagrams_echoed(&self, count: u64) {
        self.datagrams_echoed.fetch_add(count, Ordering::Relaxed);
    }

    /// Counts a datagram dropped, and warns about drops at most once a
    /// second.
    pub(crate) fn datagram_dropped(&self, source: impl fmt::Display, why: impl fmt::Display) {
        self.datagrams_dropped.fetch_add(1, Ordering::Relaxed);
        debug!("udp:{source}: dropped: {why}");
        if let Some(count) = self.drops.event() {
            warn!(
                "dropped {count} datagram(s) since the last warning; latest from {source}: {why}"
            );
        }
    }

    /// Counts a client closed without being served, and warns about it at
    /// most once a second.
    pub(crate) fn reject(&self, peer: impl fmt::Display, why: &Rejection) {
        let counter = match why {
            Rejection::Denied | Rejection::UntrustedProxy => &self.denied,
            Rejection::BadHeader(_) => &self.proxy_errors,
            #[cfg(feature = "tls")]
            Rejection::Tls(_) => &self.tls_errors,
            Rejection::Limit(_) | Rejection::NoThread(_) | Rejection::NoDescriptor => {
                &self.rejected
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
        debug!("{peer} rejected: {why}");
        if let Some(count) = self.rejections.event() {
            warn!("rejected {count} client(s) since the last warning; latest {peer}: {why}");
        }
    }

    /// The statistics, given the counts kept elsewhere: clients served now
    /// and at most, whether accepting has stopped, clients connected then
    /// and closed by the server.
    pub(crate) fn stats(
        &self,
        (active, peak): (usize, usize),
        stopping: bool,
        (active_at_stop, cut): (usize, usize),
    ) -> Stats {
        Stats {
            accepted: self.accepted.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            denied: self.denied.load(Ordering::Relaxed),
            proxy_errors: self.proxy_errors.load(Ordering::Relaxed),
            active,
            peak,
            bytes_echoed: self.bytes_echoed.load(Ordering::Relaxed),
            stopping,
            drained: if stopping {
                active_at_stop.saturating_sub(active + cut)
            } else {
                0
            },
            cut,
            tls: self.tls,
            tls_errors: self.tls_errors.load(Ordering::Relaxed),
            udp: self.udp,
            datagrams_echoed: self.datagrams_echoed.load(Ordering::Relaxed),
            datagrams_dropped: self.datagrams_dropped.load(Ordering::Relaxed),
            uptime: self.started.elapsed(),
        }
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
    /// The TLS handshake failed or did not finish in time.
    #[cfg(feature = "tls")]
    Tls(io::Error),
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
            #[cfg(feature = "tls")]
            Rejection::Tls(error) => write!(f, "TLS handshake failed: {error}"),
            Rejection::NoThread(error) => write!(f, "cannot start a thread: {error}"),
            Rejection::NoDescriptor => f.write_str("out of file descriptors"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rejection_is_counted_under_its_own_name() {
        let counters = Counters::new(false, false);
        counters.reject("a", &Rejection::Denied);
        counters.reject("b", &Rejection::UntrustedProxy);
        counters.reject("c", &Rejection::BadHeader(io::Error::other("late")));
        counters.reject("d", &Rejection::Limit(Refusal::Full));
        counters.reject("e", &Rejection::NoDescriptor);
        counters.accepted();
        counters.echoed(7);
        let stats = counters.stats((0, 1), false, (0, 0));
        assert_eq!(
            (stats.denied, stats.proxy_errors, stats.rejected),
            (2, 1, 2)
        );
        assert_eq!((stats.accepted, stats.bytes_echoed), (1, 7));
    }

    #[test]
    fn the_shutdown_counts_show_once_stopping() {
        let counters = Counters::new(false, false);
        let running = counters.stats((2, 3), false, (0, 0)).to_string();
        assert!(!running.contains("at shutdown"), "{running}");
        let stopped = counters.stats((0, 3), true, (3, 1));
        assert_eq!((stopped.drained, stopped.cut), (2, 1));
        assert!(
            stopped
                .to_string()
                .ends_with("; at shutdown 2 left on their own, 1 closed"),
            "{stopped}"
        );
    }
}
