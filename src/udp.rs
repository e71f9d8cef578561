//! UDP echo (RFC 862): one thread per socket, each datagram sent back whole
//! to its source, behind a guard against reflection.
//!
//! UDP has no connections, so there is nothing to give a thread of its own:
//! a thread per client would be a thread per datagram. One blocking thread
//! per socket does `recv_from` → `send_to`, which is all an echo needs.
//!
//! An echo server answers whoever a datagram says sent it, and the source
//! of a datagram is easily forged: the guard keeps it from being turned on
//! a third party. It never answers source port 0, nor the ports of UDP
//! services that answer by themselves (an echo aimed at chargen's port
//! would bounce for ever: CVE-1999-0103); it sends at most `--udp-rate`
//! datagrams a second to one address (a token bucket with a burst of one
//! second), except to the exempt ranges; and the access lists apply.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use log::debug;

use crate::config::Config;
use crate::stats::Counters;
use crate::stop::{Phase, Stop};

/// Source ports never answered: 0, which no real sender uses, and the UDP
/// services that answer whatever they receive (echo, daytime, quote,
/// chargen, time, DNS, portmap, NTP, NetBIOS, SNMP, CLDAP, SSDP, mDNS,
/// memcached).
pub(crate) const BLOCKED_SOURCE_PORTS: [u16; 16] = [
    0, 7, 13, 17, 19, 37, 53, 111, 123, 137, 138, 161, 389, 1900, 5353, 11211,
];

/// The largest datagram: 65,535 bytes less the UDP header. IPv4 allows 20
/// bytes less, so every datagram fits.
const MAX_DATAGRAM: usize = 65_535 - 8;

/// How many source addresses the rate limit remembers before it forgets
/// those whose bucket is full again: a flood from forged sources cannot
/// grow it without bound.
const MAX_TRACKED_SOURCES: usize = 65_536;

/// Why a datagram was not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// It came from port 0 or from a service that answers by itself.
    BlockedPort,
    /// Its source is over `--udp-rate`.
    Rate,
    /// The access lists do not admit its source.
    Denied,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dropped::BlockedPort => "source port of a service that answers by itself",
            Dropped::Rate => "over the rate limit",
            Dropped::Denied => "denied by the access lists",
        })
    }
}

/// Decides which datagrams are answered; one per UDP socket, so that no
/// lock is taken per datagram.
#[derive(Debug)]
pub(crate) struct Guard {
    /// The access lists, the rate and its exempt ranges.
    config: Arc<Config>,
    /// Each source's tokens, and when they were counted.
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl Guard {
    /// The guard `config` asks for.
    pub(crate) fn new(config: Arc<Config>) -> Guard {
        Guard {
            config,
            buckets: HashMap::new(),
        }
    }

    /// Whether a datagram from `source` at `now` is answered.
    pub(crate) fn check(&mut self, source: SocketAddr, now: Instant) -> Result<(), Dropped> {
        if BLOCKED_SOURCE_PORTS.contains(&source.port()) {
            return Err(Dropped::BlockedPort);
        }
        let ip = source.ip();
        if !self.config.admits(ip) {
            return Err(Dropped::Denied);
        }
        match self.config.udp_rate {
            Some(rate) if !self.config.udp_rate_exempts(ip) => self.take_token(ip, rate, now),
            _ => Ok(()),
        }
    }

    /// Takes a token from `ip`'s bucket, which holds one second's worth and
    /// refills at `rate` a second.
    fn take_token(&mut self, ip: IpAddr, rate: NonZeroU32, now: Instant) -> Result<(), Dropped> {
        let rate = f64::from(rate.get());
        if self.buckets.len() >= MAX_TRACKED_SOURCES && !self.buckets.contains_key(&ip) {
            // A bucket refilled for a second is the same as no bucket.
            self.buckets.retain(|_, (_, counted)| {
                now.saturating_duration_since(*counted).as_secs_f64() < 1.0
            });
        }
        let (tokens, counted) = self.buckets.entry(ip).or_insert((rate, now));
        let refill = now.saturating_duration_since(*counted).as_secs_f64() * rate;
        *tokens = (*tokens + refill).min(rate);
        *counted = now;
        if *tokens < 1.0 {
            return Err(Dropped::Rate);
        }
        *tokens -= 1.0;
        Ok(())
    }
}

/// Echoes the datagrams `socket` receives that `guard` lets through, until
/// the server stops accepting (which shuts the socket down).
pub(crate) fn serve(socket: &UdpSocket, mut guard: Guard, stop: &Stop, counters: &Counters) {
    let mut buffer = vec![0; MAX_DATAGRAM];
    loop {
        let received = socket.recv_from(&mut buffer);
        if stop.phase() != Phase::Running {
            return;
        }
        let (length, source) = match received {
            Ok(received) => received,
            // A datagram to a host that answered with an ICMP error, or a
            // signal: nothing about this socket.
            Err(error) => {
                debug!("udp: receive: {error}");
                continue;
            }
        };
        if let Err(why) = guard.check(source, Instant::now()) {
            counters.datagram_dropped(source, why);
            continue;
        }
        match socket.send_to(&buffer[..length], source) {
            Ok(_) => counters.datagrams_echoed(1),
            // The next datagram is served all the same.
            Err(error) => debug!("udp:{source}: cannot send the echo: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn guard(config: Config) -> Guard {
        Guard::new(Arc::new(config))
    }

    fn from(text: &str) -> SocketAddr {
        text.parse().expect("a test address parses")
    }

    #[test]
    fn never_answers_port_zero_or_a_service_that_answers_by_itself() {
        let mut guard = guard(Config::default());
        let now = Instant::now();
        for port in BLOCKED_SOURCE_PORTS {
            let source = SocketAddr::new(from("192.0.2.1:1").ip(), port);
            assert_eq!(
                guard.check(source, now),
                Err(Dropped::BlockedPort),
                "{port}"
            );
        }
        assert_eq!(guard.check(from("192.0.2.1:40000"), now), Ok(()));
    }

    #[test]
    fn the_rate_allows_a_seconds_burst_then_refills_with_time() {
        let mut guard = guard(Config {
            udp_rate: NonZeroU32::new(10),
            ..Config::default()
        });
        let source = from("192.0.2.1:40000");
        let start = Instant::now();
        let answered = (0..15)
            .filter(|_| guard.check(source, start).is_ok())
            .count();
        assert_eq!(answered, 10);
        assert_eq!(guard.check(source, start), Err(Dropped::Rate));
        // A tenth of a second later, one more token.
        let later = start + Duration::from_millis(100);
        assert_eq!(guard.check(source, later), Ok(()));
        assert_eq!(guard.check(source, later), Err(Dropped::Rate));
        // Another address has a bucket of its own.
        assert_eq!(guard.check(from("192.0.2.2:40000"), later), Ok(()));
    }

    #[test]
    fn exempt_ranges_and_no_rate_are_not_limited() {
        let mut exempt = guard(Config {
            udp_rate: NonZeroU32::new(1),
            ..Config::default()
        });
        let mut unlimited = guard(Config {
            udp_rate: None,
            ..Config::default()
        });
        let now = Instant::now();
        for _ in 0..100 {
            assert_eq!(exempt.check(from("127.0.0.1:40000"), now), Ok(()));
            assert_eq!(exempt.check(from("[::1]:40000"), now), Ok(()));
            assert_eq!(unlimited.check(from("192.0.2.1:40000"), now), Ok(()));
        }
        assert!(exempt.buckets.is_empty());
    }

    #[test]
    fn the_access_lists_apply() {
        let mut guard = guard(Config {
            deny: vec!["192.0.2.0/24".parse().unwrap()],
            ..Config::default()
        });
        let now = Instant::now();
        assert_eq!(
            guard.check(from("192.0.2.9:40000"), now),
            Err(Dropped::Denied)
        );
        assert_eq!(guard.check(from("198.51.100.9:40000"), now), Ok(()));
    }

    #[test]
    fn a_flood_of_sources_does_not_grow_the_buckets_without_bound() {
        let mut guard = guard(Config::default());
        let start = Instant::now();
        for n in 0..(MAX_TRACKED_SOURCES as u32 + 1000) {
            let ip = IpAddr::from((0x0a00_0000 + n).to_be_bytes());
            let now = start + Duration::from_secs(2 * u64::from(n / 50_000));
            let _ = guard.check(SocketAddr::new(ip, 40000), now);
        }
        assert!(
            guard.buckets.len() <= MAX_TRACKED_SOURCES,
            "{}",
            guard.buckets.len()
        );
    }
}
