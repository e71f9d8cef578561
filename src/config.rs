//! What a server listens on and how it treats clients.

use std::net::IpAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use crate::Cidr;

/// The port served when none is given, as in the original tutorial.
pub const DEFAULT_PORT: u16 = 8000;
/// The address served when none is given: loopback only, so that a server
/// started for a test is not exposed to the network by accident.
pub const DEFAULT_BIND: &str = "localhost";
/// Most clients served at once unless configured: well under the ~16,000
/// threads that Linux's default `vm.max_map_count` allows a process.
pub const DEFAULT_MAX_CONNECTIONS: NonZeroUsize = NonZeroUsize::new(10_000).unwrap();
/// How long a client may neither send nor read before it is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Most UDP datagrams a second echoed to one source address unless
/// configured: plenty for testing, little for a reflection attack.
pub const DEFAULT_UDP_RATE: NonZeroU32 = NonZeroU32::new(1000).unwrap();
/// Sources the UDP rate does not apply to unless configured: this machine.
pub const DEFAULT_UDP_RATE_EXEMPT: &str = "127.0.0.0/8,::1/128";

/// [`DEFAULT_UDP_RATE_EXEMPT`], parsed.
fn default_udp_rate_exempt() -> Vec<Cidr> {
    DEFAULT_UDP_RATE_EXEMPT
        .split(',')
        .map(|range| range.parse().expect("the default ranges parse"))
        .collect()
}

/// What a [`Server`](crate::Server) listens on and how it treats clients.
///
/// "No limit" is `None` throughout: a command line's `0` is turned into it
/// where the command line is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Addresses or host names to listen on. A name binds every address it
    /// resolves to that the machine has (`localhost`: 127.0.0.1 and ::1 when
    /// IPv6 is there); an IP address must bind.
    pub bind: Vec<String>,
    /// Port to listen on; 0 lets the system choose one, the same for every
    /// address.
    pub port: u16,
    /// Most clients served at once; `None` for no limit.
    pub max_connections: Option<NonZeroUsize>,
    /// Most clients served at once from one IP address; `None` for no
    /// limit.
    pub max_connections_per_ip: Option<NonZeroUsize>,
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
    /// Unix stream sockets to listen on: paths, or `@NAME` for a Linux
    /// abstract name. With `bind` empty, only these are served.
    pub unix: Vec<String>,
    /// Permissions of the Unix socket files; `None` leaves the umask's.
    pub unix_mode: Option<u32>,
    /// Also serves UDP echo on the address and port of every TCP listener.
    pub udp: bool,
    /// Most datagrams a second echoed to one source IP address; `None` for
    /// no limit.
    pub udp_rate: Option<NonZeroU32>,
    /// Sources the UDP rate does not apply to.
    pub udp_rate_exempt: Vec<Cidr>,
    /// Serves TLS on every stream listener (TCP and Unix), after the PROXY
    /// header when there is one; `None` serves plain bytes.
    #[cfg(feature = "tls")]
    pub tls: Option<crate::TlsConfig>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            bind: vec![DEFAULT_BIND.to_owned()],
            port: DEFAULT_PORT,
            max_connections: Some(DEFAULT_MAX_CONNECTIONS),
            max_connections_per_ip: None,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            reuse_port: false,
            proxy_protocol: false,
            proxy_from: Vec::new(),
            allow: Vec::new(),
            deny: Vec::new(),
            unix: Vec::new(),
            unix_mode: None,
            udp: false,
            udp_rate: Some(DEFAULT_UDP_RATE),
            udp_rate_exempt: default_udp_rate_exempt(),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl Config {
    /// Whether the access lists let a client from `ip` be served.
    pub(crate) fn admits(&self, ip: IpAddr) -> bool {
        !listed(&self.deny, ip) && (self.allow.is_empty() || listed(&self.allow, ip))
    }

    /// Whether the UDP rate does not apply to `ip`.
    pub(crate) fn udp_rate_exempts(&self, ip: IpAddr) -> bool {
        listed(&self.udp_rate_exempt, ip)
    }

    /// Whether `ip` may send a PROXY header.
    pub(crate) fn trusts_proxy(&self, ip: IpAddr) -> bool {
        self.proxy_from.is_empty() || listed(&self.proxy_from, ip)
    }
}

/// Whether a range of `list` holds `ip`.
fn listed(list: &[Cidr], ip: IpAddr) -> bool {
    list.iter().any(|range| range.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("a test address parses")
    }

    fn ranges(texts: &[&str]) -> Vec<Cidr> {
        texts
            .iter()
            .map(|text| text.parse().expect("a test range parses"))
            .collect()
    }

    #[test]
    fn deny_wins_over_allow_and_an_empty_allow_list_admits_all() {
        let config = Config {
            allow: ranges(&["10.0.0.0/8"]),
            deny: ranges(&["10.1.0.0/16"]),
            ..Config::default()
        };
        assert!(config.admits(ip("10.2.3.4")));
        assert!(!config.admits(ip("10.1.3.4")));
        assert!(!config.admits(ip("192.0.2.1")));
        let open = Config {
            deny: ranges(&["192.0.2.0/24"]),
            ..Config::default()
        };
        assert!(open.admits(ip("198.51.100.1")));
        assert!(!open.admits(ip("192.0.2.1")));
    }

    #[test]
    fn any_peer_may_send_proxy_headers_unless_listed() {
        assert!(Config::default().trusts_proxy(ip("203.0.113.9")));
        let config = Config {
            proxy_from: ranges(&["127.0.0.0/8", "::1/128"]),
            ..Config::default()
        };
        assert!(config.trusts_proxy(ip("127.0.0.2")));
        assert!(config.trusts_proxy(ip("::1")));
        assert!(!config.trusts_proxy(ip("203.0.113.9")));
    }
}
