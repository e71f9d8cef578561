//! Host names to addresses, with errors that name the host.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

/// Every distinct address `host` resolves to, with `port`, in the
/// resolver's order. An IP address resolves to itself.
///
/// # Errors
///
/// Fails if `host` cannot be resolved or has no address:
/// `cannot resolve no-such-host.invalid: …`.
pub fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let cannot = |why: &dyn std::fmt::Display| format!("cannot resolve {host}: {why}");
    let resolved = (host, port)
        .to_socket_addrs()
        .map_err(|error| io::Error::new(error.kind(), cannot(&error)))?;
    let mut addrs = Vec::new();
    for addr in resolved {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            cannot(&"no address"),
        ));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_resolves_to_itself() {
        let addrs = resolve("127.0.0.1", 9).expect("an IP address resolves");
        assert_eq!(addrs, [SocketAddr::from(([127, 0, 0, 1], 9))]);
    }

    #[test]
    fn an_unknown_host_is_an_error_naming_it() {
        // RFC 6761 reserves .invalid: it never resolves.
        let error = resolve("no-such-host.invalid", 9).expect_err("the name does not resolve");
        assert!(
            error
                .to_string()
                .starts_with("cannot resolve no-such-host.invalid: "),
            "{error}"
        );
    }
}
