//! Which address of the server to load.

use std::io;
use std::net::{SocketAddr, TcpStream};
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
    let addrs = echo_server::resolve(host, port)?;
    let first = addrs[0];
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
