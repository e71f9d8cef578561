//! Where the load goes: a TCP or UDP address of the server, found among
//! those its host name resolves to, or a Unix socket.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::SocketAddr as UnixAddr;
use std::time::Duration;

use log::debug;

/// How long the probe waits for each address to accept a connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the UDP probe waits for each address to echo its datagram: the
/// time after which the run itself counts a datagram as lost.
const UDP_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the probe datagram carries; any echo of it will do.
const UDP_PROBE: &[u8] = b"echo-bench probe";

/// The server, and how to reach it.
#[derive(Debug, Clone)]
pub enum Target {
    /// TCP connections to this address.
    Tcp(SocketAddr),
    /// Unix stream connections to this socket, a path or an abstract name.
    Unix(UnixAddr),
    /// UDP datagrams to this address.
    Udp(SocketAddr),
}

impl Target {
    /// Whether each client exchanges datagrams rather than a byte stream.
    pub fn is_datagram(&self) -> bool {
        matches!(self, Target::Udp(_))
    }
}

/// As the server's `Listening on` lines name its sockets, except that TCP,
/// the default, goes without a prefix: `127.0.0.1:8000`, `unix:/run/echo`,
/// `unix:@echo`, `udp:127.0.0.1:8000`.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(addr) => write!(f, "{addr}"),
            Target::Udp(addr) => write!(f, "udp:{addr}"),
            Target::Unix(addr) => match (addr.as_pathname(), addr.as_abstract_name()) {
                (Some(path), _) => write!(f, "unix:{}", path.display()),
                (None, Some(name)) => write!(f, "unix:@{}", String::from_utf8_lossy(name)),
                (None, None) => f.write_str("unix:(unnamed)"),
            },
        }
    }
}

/// The Unix socket address that `text` names: a path, or with a leading
/// `@` a Linux abstract name.
///
/// # Errors
///
/// Fails if `text` is empty, names no abstract name after the `@`, or is
/// too long for a Unix socket address.
pub fn unix_address(text: &str) -> io::Result<UnixAddr> {
    let invalid = |message: &str| io::Error::new(io::ErrorKind::InvalidInput, message);
    match text.strip_prefix('@') {
        Some("") => Err(invalid("an abstract name follows the @")),
        Some(name) => UnixAddr::from_abstract_name(name),
        None if text.is_empty() => Err(invalid("a path cannot be empty")),
        None => UnixAddr::from_pathname(text),
    }
}

/// The TCP address every connection goes to: see [`find`].
///
/// # Errors
///
/// Fails if `host` cannot be resolved or resolves to no address.
pub fn resolve_tcp(host: &str, port: u16) -> io::Result<SocketAddr> {
    find(host, port, |addr| {
        TcpStream::connect_timeout(addr, PROBE_TIMEOUT).map(drop)
    })
}

/// The UDP address every socket sends to: see [`find`]. The probe is one
/// datagram, which an echo server answers.
///
/// # Errors
///
/// Fails if `host` cannot be resolved or resolves to no address.
pub fn resolve_udp(host: &str, port: u16) -> io::Result<SocketAddr> {
    find(host, port, echoes_datagram)
}

/// The address `host` names: the only one it resolves to, or else the
/// first that `probe` finds answering. `localhost` may name both `::1` and
/// `127.0.0.1` while a server listens on only one of them; one probe, as
/// wrk does, finds the one that answers instead of failing thousands of
/// connections against the other. When none answers, the first address is
/// used and the run counts its errors.
fn find(
    host: &str,
    port: u16,
    probe: impl Fn(&SocketAddr) -> io::Result<()>,
) -> io::Result<SocketAddr> {
    let addrs = echo_server::resolve(host, port)?;
    let first = addrs[0];
    if addrs.len() == 1 {
        return Ok(first);
    }
    let answering = addrs.iter().copied().find(|addr| match probe(addr) {
        Ok(()) => true,
        Err(error) => {
            debug!("{addr} does not answer: {error}");
            false
        }
    });
    Ok(answering.unwrap_or(first))
}

/// Sends one datagram to `addr` and waits for any datagram back.
fn echoes_datagram(addr: &SocketAddr) -> io::Result<()> {
    let socket = UdpSocket::bind(any_port(addr))?;
    socket.set_read_timeout(Some(UDP_PROBE_TIMEOUT))?;
    socket.connect(addr)?;
    socket.send(UDP_PROBE)?;
    socket.recv(&mut [0; 64]).map(drop)
}

/// Any port of the unspecified address of `addr`'s family: where a UDP
/// socket that sends to `addr` is bound.
pub fn any_port(addr: &SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_unix_address_is_a_path_or_an_abstract_name_after_an_at() {
        let path = unix_address("/run/echo.sock").expect("a path is an address");
        assert_eq!(path.as_pathname(), Some(Path::new("/run/echo.sock")));
        let name = unix_address("@echo").expect("a name is an address");
        assert_eq!(name.as_abstract_name(), Some(&b"echo"[..]));
        for invalid in ["", "@", &"x".repeat(200)] {
            assert!(unix_address(invalid).is_err(), "{invalid:?}");
        }
    }

    #[test]
    fn targets_read_as_the_server_names_its_sockets() {
        let addr: SocketAddr = "127.0.0.1:8000".parse().expect("a valid address");
        let path = unix_address("/run/echo.sock").expect("a valid path");
        let name = unix_address("@echo").expect("a valid name");
        assert_eq!(Target::Tcp(addr).to_string(), "127.0.0.1:8000");
        assert_eq!(Target::Udp(addr).to_string(), "udp:127.0.0.1:8000");
        assert_eq!(Target::Unix(path).to_string(), "unix:/run/echo.sock");
        assert_eq!(Target::Unix(name).to_string(), "unix:@echo");
    }

    #[test]
    fn the_udp_probe_tells_an_echoing_socket_from_a_closed_port() {
        let server = UdpSocket::bind("127.0.0.1:0").expect("loopback has a free port");
        server
            // A bug fails the test instead of hanging it.
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("a socket takes a timeout");
        let addr = server.local_addr().expect("a bound socket has an address");
        let echo = std::thread::spawn(move || {
            let mut buffer = [0; 64];
            let (read, from) = server.recv_from(&mut buffer)?;
            server.send_to(&buffer[..read], from)
        });
        echoes_datagram(&addr).expect("the echo comes back");
        echo.join()
            .expect("the echo thread does not panic")
            .expect("echoes");
        let closed = UdpSocket::bind("127.0.0.1:0")
            .and_then(|socket| socket.local_addr())
            .expect("loopback has a free port");
        assert!(echoes_datagram(&closed).is_err());
    }
}
