//! Which address of the server to load.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use log::debug;

/// How long the probe waits for each address to accept a connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The address every connection goes to: the only one `host` resolves to,
/// or else the first that accepts a connection. `localhost` may name both
/// `::1` and `127.0.0.1` while a server listens on only one of them; one
/// probe connection, as wrk does, finds the one that answers instead of
/// failing thousands of connections against the other. When none answers,
/// the first address is used and the run counts its connect errors.
///
/// # Errors
///
/// Fails if `host` cannot be resolved or resolves to no address.
pub fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|error| io::Error::new(error.kind(), format!("cannot resolve {host}: {error}")))?
        .collect();
    let Some(&first) = addrs.first() else {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("cannot resolve {host}: no address"),
        ));
    };
    if addrs.len() == 1 {
        return Ok(first);
    }
    let answering =
        addrs.iter().copied().find(
            |addr| match TcpStream::connect_timeout(addr, PROBE_TIMEOUT) {
                Ok(_) => true,
                Err(error) => {
                    debug!("{addr} does not accept connections: {error}");
                    false
                }
            },
        );
    Ok(answering.unwrap_or(first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_used_as_given() {
        let addr = resolve("127.0.0.1", 9).expect("an IP address resolves");
        assert_eq!(addr, SocketAddr::from(([127, 0, 0, 1], 9)));
    }

    #[test]
    fn an_unknown_host_is_an_error_naming_it() {
        let error = resolve("no-such-host.invalid", 9).expect_err("the name does not resolve");
        assert!(
            error.to_string().contains("no-such-host.invalid"),
            "{error}"
        );
    }
}
