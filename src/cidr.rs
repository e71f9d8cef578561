//! Ranges of IP addresses in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`),
//! as the access lists and the list of trusted proxies are written.

use std::error::Error;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A range of IP addresses: a network address and the number of leading bits
/// (the prefix) every address in the range shares with it.
///
/// Parsed from `ADDRESS/PREFIX` or from a bare address, which is a range of
/// that one address (`/32` or `/128`). As with iptables, host bits set in the
/// address are cleared rather than refused: `10.1.2.3/8` is `10.0.0.0/8`, and
/// that is how it displays.
///
/// An IPv4 client is an IPv4 client however the socket spells it: the
/// IPv4-mapped IPv6 address `::ffff:10.1.2.3`, which a dual-stack listener
/// reports, matches IPv4 ranges such as `10.0.0.0/8`. Likewise a range
/// written inside the mapped space (`::ffff:10.0.0.0/104`) is the IPv4 range
/// it spells (`10.0.0.0/8`). IPv6 ranges match only IPv6 clients, so `::/0`
/// does not match IPv4 clients.
///
/// ```
/// use echo_server::Cidr;
///
/// let lan: Cidr = "192.168.0.0/16".parse()?;
/// assert!(lan.contains("192.168.7.1".parse()?));
/// assert!(lan.contains("::ffff:192.168.7.1".parse()?));
/// assert!(!lan.contains("10.0.0.1".parse()?));
/// assert_eq!("10.1.2.3/8".parse::<Cidr>()?.to_string(), "10.0.0.0/8");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The first address of the range: its host bits are zero, and it is
    /// never an IPv4-mapped IPv6 address with a prefix of 96 or more.
    network: IpAddr,
    /// How many leading bits of `network` the addresses of the range share:
    /// at most 32 for IPv4, 128 for IPv6.
    prefix: u8,
}

/// Why a string is not a [`Cidr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CidrError {
    /// The part before the `/` is not an IPv4 or IPv6 address.
    Address,
    /// The part after the `/` is not a decimal number.
    Prefix,
    /// The prefix has more bits than the address.
    PrefixTooLong {
        /// The longest prefix of the address's family: 32 or 128.
        max: u8,
    },
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrError::Address => f.write_str("invalid IP address"),
            CidrError::Prefix => f.write_str("invalid prefix length"),
            CidrError::PrefixTooLong { max } => {
                write!(f, "prefix length longer than {max} bits")
            }
        }
    }
}

impl Error for CidrError {}

impl Cidr {
    /// The range of the addresses that share their first `prefix` bits with
    /// `address`; host bits set in `address` are ignored.
    ///
    /// # Errors
    ///
    /// [`CidrError::PrefixTooLong`] when `prefix` is over 32 for an IPv4
    /// address or over 128 for an IPv6 one.
    pub fn new(address: IpAddr, prefix: u8) -> Result<Cidr, CidrError> {
        let max = max_prefix(address);
        if prefix > max {
            return Err(CidrError::PrefixTooLong { max });
        }
        let (address, prefix) = match address {
            // The mapped space is ::ffff:0:0/96: a prefix reaching into it
            // selects IPv4 addresses.
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (address, prefix),
            },
            _ => (address, prefix),
        };
        Ok(Cidr {
            network: mask(address, prefix),
            prefix,
        })
    }

    /// The first address of the range.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// How many leading bits the addresses of the range share.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in the range; an IPv4-mapped IPv6 address counts as
    /// the IPv4 address it maps.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// Parses `ADDRESS/PREFIX`, or a bare `ADDRESS` for a range of one.
    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().map_err(|_| CidrError::Address)?;
        let max = max_prefix(address);
        let prefix = match prefix {
            Some(prefix) => parse_prefix(prefix, max)?,
            None => max,
        };
        Cidr::new(address, prefix)
    }
}

impl fmt::Display for Cidr {
    /// Always with the prefix, even for a range of one address, so that what
    /// is printed is what is matched.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The number of bits in an address of `address`'s family.
fn max_prefix(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// A prefix length: decimal digits only, since `u8::from_str` would also
/// take a sign, at most `max`.
fn parse_prefix(text: &str, max: u8) -> Result<u8, CidrError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CidrError::Prefix);
    }
    // Only digits: a failure can only be a number too large for a u8.
    match text.parse::<u8>() {
        Ok(prefix) if prefix <= max => Ok(prefix),
        _ => Err(CidrError::PrefixTooLong { max }),
    }
}

/// `address` with all but its first `prefix` bits cleared; `prefix` is at
/// most the address's length.
fn mask(address: IpAddr, prefix: u8) -> IpAddr {
    // A shift by the whole width (prefix 0) overflows: it keeps no bits.
    match address {
        IpAddr::V4(v4) => {
            let keep = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & keep).into())
        }
        IpAddr::V6(v6) => {
            let keep = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & keep).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn cidr(text: &str) -> Cidr {
        text.parse()
            .unwrap_or_else(|error| panic!("{text:?}: {error}"))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn parses_ipv4_and_ipv6_ranges() {
        let private = cidr("10.0.0.0/8");
        assert_eq!(private.network(), ip("10.0.0.0"));
        assert_eq!(private.prefix(), 8);
        let documentation = cidr("2001:db8::/32");
        assert_eq!(documentation.network(), ip("2001:db8::"));
        assert_eq!(documentation.prefix(), 32);
        assert_eq!(cidr("::1/128").network(), ip("::1"));
        assert_eq!(cidr("::/0").prefix(), 0);
        assert_eq!(cidr("0.0.0.0/0").prefix(), 0);
    }

    #[test]
    fn takes_a_bare_address_as_a_range_of_one() {
        assert_eq!(cidr("192.168.1.7"), cidr("192.168.1.7/32"));
        assert_eq!(cidr("2001:db8::7"), cidr("2001:db8::7/128"));
        assert_eq!(cidr("192.168.1.7").to_string(), "192.168.1.7/32");
    }

    #[test]
    fn clears_host_bits_like_iptables() {
        assert_eq!(cidr("10.1.2.3/8"), cidr("10.0.0.0/8"));
        assert_eq!(cidr("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("192.168.1.255/23").to_string(), "192.168.0.0/23");
        assert_eq!(
            cidr("2001:db8:ffff::1/33").to_string(),
            "2001:db8:8000::/33"
        );
        assert_eq!(cidr("255.255.255.255/0").to_string(), "0.0.0.0/0");
        assert_eq!(cidr("ffff::1/0").to_string(), "::/0");
    }

    #[test]
    fn rejects_prefixes_longer_than_the_address() {
        let v4 = Err(CidrError::PrefixTooLong { max: 32 });
        let v6 = Err(CidrError::PrefixTooLong { max: 128 });
        assert_eq!("10.0.0.0/33".parse::<Cidr>(), v4);
        assert_eq!("10.0.0.0/255".parse::<Cidr>(), v4);
        assert_eq!("10.0.0.0/256".parse::<Cidr>(), v4);
        assert_eq!("10.0.0.0/99999999999999999999".parse::<Cidr>(), v4);
        assert_eq!("::/129".parse::<Cidr>(), v6);
        assert_eq!("::ffff:10.0.0.0/129".parse::<Cidr>(), v6);
        assert_eq!(Cidr::new(ip("1.2.3.4"), 33), v4);
        assert_eq!(Cidr::new(ip("::"), 200), v6);
    }

    #[test]
    fn rejects_junk() {
        for (text, error) in [
            ("", CidrError::Address),
            ("/8", CidrError::Address),
            ("10.0.0/8", CidrError::Address),
            ("10.0.0.256/8", CidrError::Address),
            ("010.0.0.0/8", CidrError::Address),
            (" 10.0.0.0/8", CidrError::Address),
            ("localhost/8", CidrError::Address),
            ("fe80::1%eth0/64", CidrError::Address),
            ("[::1]/128", CidrError::Address),
            ("10.0.0.0/", CidrError::Prefix),
            ("10.0.0.0/+8", CidrError::Prefix),
            ("10.0.0.0/-1", CidrError::Prefix),
            ("10.0.0.0/ 8", CidrError::Prefix),
            ("10.0.0.0/8 ", CidrError::Prefix),
            ("10.0.0.0/0x8", CidrError::Prefix),
            ("10.0.0.0/8/8", CidrError::Prefix),
            ("10.0.0.0/255.0.0.0", CidrError::Prefix),
        ] {
            assert_eq!(text.parse::<Cidr>(), Err(error), "{text:?}");
        }
    }

    #[test]
    fn contains_exactly_the_addresses_of_its_range() {
        let lan = cidr("192.168.0.0/16");
        assert!(lan.contains(ip("192.168.0.0")));
        assert!(lan.contains(ip("192.168.255.255")));
        assert!(!lan.contains(ip("192.167.255.255")));
        assert!(!lan.contains(ip("192.169.0.0")));
        let one = cidr("10.0.0.1");
        assert!(one.contains(ip("10.0.0.1")));
        assert!(!one.contains(ip("10.0.0.2")));
        let subnet = cidr("2001:db8:1::/48");
        assert!(subnet.contains(ip("2001:db8:1:ffff::1")));
        assert!(!subnet.contains(ip("2001:db8:2::1")));
        assert!(cidr("::1/128").contains(ip("::1")));
        assert!(!cidr("::1/128").contains(ip("::2")));
    }

    #[test]
    fn zero_prefix_contains_its_whole_family_only() {
        let all_v4 = cidr("0.0.0.0/0");
        assert!(all_v4.contains(ip("0.0.0.0")));
        assert!(all_v4.contains(ip("255.255.255.255")));
        assert!(!all_v4.contains(ip("::1")));
        let all_v6 = cidr("::/0");
        assert!(all_v6.contains(ip("::")));
        assert!(all_v6.contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(!all_v6.contains(ip("1.2.3.4")));
        assert!(!all_v6.contains(ip("::ffff:1.2.3.4")));
    }

    #[test]
    fn matches_ipv4_mapped_clients_against_ipv4_ranges() {
        let private = cidr("10.0.0.0/8");
        assert!(private.contains(ip("::ffff:10.1.2.3")));
        assert!(!private.contains(ip("::ffff:11.1.2.3")));
        // Only the mapped form is IPv4: the deprecated compatible form and
        // NAT64 addresses are IPv6 addresses of their own.
        assert!(!cidr("0.0.0.0/0").contains(ip("::10.1.2.3")));
        assert!(!cidr("0.0.0.0/0").contains(ip("64:ff9b::10.1.2.3")));
    }

    #[test]
    fn takes_a_range_in_the_mapped_space_as_the_ipv4_range() {
        let mapped = cidr("::ffff:10.0.0.0/104");
        assert_eq!(mapped, cidr("10.0.0.0/8"));
        assert_eq!(mapped.to_string(), "10.0.0.0/8");
        assert!(mapped.contains(ip("10.1.2.3")));
        assert!(mapped.contains(ip("::ffff:10.1.2.3")));
        assert_eq!(cidr("::ffff:1.2.3.4"), cidr("1.2.3.4/32"));
        assert_eq!(cidr("::ffff:0:0/96"), cidr("0.0.0.0/0"));
        // A wider range is more than the mapped space: it stays IPv6.
        assert_eq!(cidr("::ffff:0:0/95").to_string(), "::fffe:0:0/95");
    }

    #[test]
    fn displays_what_parses_back_to_itself() {
        for text in [
            "10.0.0.0/8",
            "1.2.3.4/32",
            "::/0",
            "2001:db8::/32",
            "::1/128",
        ] {
            assert_eq!(cidr(text).to_string(), text);
            assert_eq!(cidr(&cidr(text).to_string()), cidr(text));
        }
    }

    #[test]
    fn error_is_a_lowercase_sendable_error() {
        fn assert_error<E: Error + Send + Sync + 'static>(_: &E) {}
        for (error, message) in [
            (CidrError::Address, "invalid IP address"),
            (CidrError::Prefix, "invalid prefix length"),
            (
                CidrError::PrefixTooLong { max: 32 },
                "prefix length longer than 32 bits",
            ),
        ] {
            assert_error(&error);
            assert_eq!(error.to_string(), message);
        }
    }

    /// Whether the first `prefix` bits of `a` and `b`, both `width` bits
    /// wide, are equal, compared bit by bit.
    fn same_leading_bits(a: u128, b: u128, width: u32, prefix: u8) -> bool {
        (0..u32::from(prefix)).all(|bit| {
            let shift = width - 1 - bit;
            (a >> shift) & 1 == (b >> shift) & 1
        })
    }

    proptest! {
        #[test]
        fn ipv4_contains_agrees_with_a_bitwise_comparison(
            network in any::<Ipv4Addr>(),
            prefix in 0u8..=32,
            candidate in any::<Ipv4Addr>(),
        ) {
            let range = Cidr::new(network.into(), prefix).unwrap();
            let expected = same_leading_bits(
                u32::from(network).into(),
                u32::from(candidate).into(),
                32,
                prefix,
            );
            prop_assert_eq!(range.contains(candidate.into()), expected);
            prop_assert_eq!(range.contains(candidate.to_ipv6_mapped().into()), expected);
            prop_assert!(range.contains(network.into()));
        }

        #[test]
        fn ipv6_contains_agrees_with_a_bitwise_comparison(
            network in any::<Ipv6Addr>(),
            prefix in 0u8..=128,
            candidate in any::<Ipv6Addr>(),
            ipv4_client in any::<Ipv4Addr>(),
        ) {
            // A range inside the mapped space is an IPv4 range, and only
            // mapped candidates (IPv4 clients) can be in it; any other range
            // only holds candidates outside the mapped space.
            let ipv4_range = prefix >= 96 && network.to_ipv4_mapped().is_some();
            let range = Cidr::new(network.into(), prefix).unwrap();
            prop_assert_eq!(range.network().is_ipv4(), ipv4_range);
            for candidate in [candidate, ipv4_client.to_ipv6_mapped()] {
                let mapped = candidate.to_ipv4_mapped().is_some();
                let expected = mapped == ipv4_range
                    && same_leading_bits(network.into(), candidate.into(), 128, prefix);
                prop_assert_eq!(range.contains(candidate.into()), expected);
                if let Some(ipv4) = candidate.to_ipv4_mapped() {
                    prop_assert_eq!(range.contains(ipv4.into()), expected);
                }
            }
        }

        #[test]
        fn displays_what_parses_back_to_itself_for_any_range(
            address in any::<IpAddr>(),
            prefix in 0u8..=128,
        ) {
            let prefix = prefix.min(max_prefix(address));
            let range = Cidr::new(address, prefix).unwrap();
            prop_assert_eq!(range.to_string().parse::<Cidr>(), Ok(range));
            // A mapped address under a range wider than the mapped space is
            // the one case where a range does not contain its own address.
            if range.network().is_ipv4() == address.to_canonical().is_ipv4() {
                prop_assert!(range.contains(address));
            }
        }
    }
}
