//! PROXY protocol headers: how a load balancer tells the server whose
//! connection it is relaying.
//!
//! HAProxy's specification
//! (<https://www.haproxy.org/download/1.8/doc/proxy-protocol.txt>) defines a
//! text header (version 1) and a binary one (version 2); both come first on
//! the connection, before any client byte, and are told apart by their first
//! bytes. [`parse`] looks at the bytes received so far and says whether they
//! hold a complete header, need more, or can never be one; it does no I/O, so
//! every case is tested without a socket. [`read_header`] drives it over a
//! blocking stream.
//!
//! The parser is strict, as the specification asks ("any sequence which does
//! not exactly match the protocol must be discarded"), and rejects a header
//! as soon as its bytes stop matching, so that a client speaking something
//! else is closed without waiting for a timeout.

use std::error::Error;
use std::fmt;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// How every version 1 header starts.
const V1_PREFIX: &[u8] = b"PROXY ";

/// The longest version 1 header, CRLF included: `PROXY UNKNOWN` followed by
/// two full IPv6 addresses and two ports.
pub(crate) const V1_MAX_LEN: usize = 107;

/// The 12 bytes every version 2 header starts with, chosen by the
/// specification so that servers of other protocols reject them.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The fixed part of a version 2 header: the signature, the version and
/// command byte, the family and protocol byte, and the 16-bit length of what
/// follows.
const V2_FIXED_LEN: usize = 16;

/// The longest version 2 header: the fixed part and the most its length field
/// can announce.
pub(crate) const V2_MAX_LEN: usize = V2_FIXED_LEN + u16::MAX as usize;

/// The longest header of either version: the most [`read_header`] ever has to
/// hold before [`parse`] gives an answer.
pub(crate) const MAX_HEADER_LEN: usize = V2_MAX_LEN;

/// How many bytes [`read_header`] asks the stream for at a time: over twice
/// the longest version 1 header, so a typical header arrives in one read, yet
/// little enough that the client bytes read past it stay a small copy.
const READ_CHUNK: usize = 256;

/// What a complete header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Header {
    /// The connection is relayed for a client: these are its real addresses.
    Proxied {
        /// The client's address and port.
        source: SocketAddr,
        /// The address and port the client connected to.
        destination: SocketAddr,
    },
    /// The connection's own addresses are the ones to use: a version 1
    /// `UNKNOWN`, a version 2 `LOCAL` (the balancer's health checks), or a
    /// version 2 family this server does not take addresses from (UNSPEC,
    /// UDP, UNIX sockets).
    Local,
}

/// What [`parse`] made of the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parse {
    /// A whole header.
    Complete {
        /// What it says.
        header: Header,
        /// How many bytes it takes: the client's own bytes start after them.
        length: usize,
    },
    /// The bytes so far are the beginning of a header: read more.
    Incomplete,
}

/// Why some bytes are not a PROXY protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyError {
    /// The first bytes match neither version's signature.
    NotProxy,
    /// A version 1 line that breaks the grammar: unknown protocol, wrong
    /// number of fields, a separator other than one space, a lone CR or LF.
    V1Syntax,
    /// A version 1 line with no CRLF in its first 107 bytes.
    V1TooLong,
    /// A version 1 address that is not an address of the announced family.
    V1Address,
    /// A version 1 port that is not a decimal number from 0 to 65535 without
    /// leading zeroes.
    V1Port,
    /// A version 2 header of another version than 2.
    V2Version,
    /// A version 2 command other than LOCAL and PROXY.
    V2Command,
    /// A version 2 family and protocol byte outside the specification's list.
    V2Family,
    /// A version 2 address block shorter than its family's addresses.
    V2Length,
    /// A version 2 TLV that runs past the end of the header.
    V2Tlv,
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyError::NotProxy => "not a PROXY protocol header",
            ProxyError::V1Syntax => "malformed PROXY v1 header",
            ProxyError::V1TooLong => "no CRLF in the first 107 bytes of a PROXY v1 header",
            ProxyError::V1Address => "bad PROXY v1 address",
            ProxyError::V1Port => "bad PROXY v1 port",
            ProxyError::V2Version => "unsupported PROXY protocol version",
            ProxyError::V2Command => "unsupported PROXY v2 command",
            ProxyError::V2Family => "unsupported PROXY v2 address family",
            ProxyError::V2Length => "truncated PROXY v2 address block",
            ProxyError::V2Tlv => "malformed PROXY v2 TLV",
        })
    }
}

impl Error for ProxyError {}

/// Reads what `input`, the first bytes of a connection, says: a complete
/// header and its length, or that more bytes are needed.
///
/// [`Parse::Incomplete`] is only returned while `input` is shorter than the
/// header it begins (at most [`MAX_HEADER_LEN`] bytes), so a reader that
/// stops at the first answer never buffers more than that and one read.
///
/// # Errors
///
/// A [`ProxyError`] as soon as `input` cannot be the beginning of a valid
/// header of either version.
pub(crate) fn parse(input: &[u8]) -> Result<Parse, ProxyError> {
    if agrees_with(input, V1_PREFIX) {
        parse_v1(input)
    } else if agrees_with(input, &V2_SIGNATURE) {
        parse_v2(input)
    } else {
        Err(ProxyError::NotProxy)
    }
}

/// Reads a header from the start of `stream`, and returns it with the client
/// bytes that arrived in the same reads after it, which the caller must
/// handle as if it had read them itself.
///
/// Reads in chunks rather than byte by byte, so it may read past the header;
/// it stops at the first read that completes or rules out a header, so it
/// holds at most [`MAX_HEADER_LEN`] bytes and one chunk. A read timeout set on
/// the socket bounds how long a slow sender is waited for.
///
/// # Errors
///
/// [`io::ErrorKind::InvalidData`] carrying the [`ProxyError`] when the bytes
/// are not a valid header, [`io::ErrorKind::UnexpectedEof`] when the stream
/// ends first, and any error of the stream's own except `Interrupted`, which
/// is retried.
pub(crate) fn read_header(stream: &mut impl Read) -> io::Result<(Header, Vec<u8>)> {
    let mut buffer = Vec::with_capacity(READ_CHUNK);
    let mut chunk = [0; READ_CHUNK];
    loop {
        let read = match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the end of its PROXY header",
                ));
            }
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        buffer.extend_from_slice(&chunk[..read]);
        match parse(&buffer) {
            Ok(Parse::Complete { header, length }) => {
                let payload = buffer.split_off(length);
                return Ok((header, payload));
            }
            Ok(Parse::Incomplete) => {
                debug_assert!(buffer.len() < MAX_HEADER_LEN, "parse bounds the header");
            }
            Err(error) => return Err(io::Error::new(io::ErrorKind::InvalidData, error)),
        }
    }
}

/// Whether `input` and `expected` agree over the length of the shorter: the
/// bytes so far start, or can still grow into, `expected`.
fn agrees_with(input: &[u8], expected: &[u8]) -> bool {
    let common = input.len().min(expected.len());
    input[..common] == expected[..common]
}

/// Parses a version 1 header; `input` agrees with [`V1_PREFIX`].
fn parse_v1(input: &[u8]) -> Result<Parse, ProxyError> {
    // The CRLF must be within the first 107 bytes: never look further.
    let window = &input[..input.len().min(V1_MAX_LEN)];
    match find_crlf(window)? {
        Some(end) => Ok(Parse::Complete {
            // `end` is past the prefix, which holds no CR: `get` never fails.
            header: v1_line(window.get(V1_PREFIX.len()..end).unwrap_or_default())?,
            length: end + 2,
        }),
        None if window.len() == V1_MAX_LEN => Err(ProxyError::V1TooLong),
        None => {
            check_partial_v1(window)?;
            Ok(Parse::Incomplete)
        }
    }
}

/// Where the CRLF ending a version 1 line starts, if it has arrived.
///
/// # Errors
///
/// [`ProxyError::V1Syntax`] on a CR or LF that is not part of a CRLF, which
/// the specification forbids as a line end; this parser forbids it anywhere,
/// even in the part of an `UNKNOWN` line a receiver ignores.
fn find_crlf(window: &[u8]) -> Result<Option<usize>, ProxyError> {
    let Some(at) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        return Ok(None);
    };
    match (window[at], window.get(at + 1)) {
        (b'\r', Some(b'\n')) => Ok(Some(at)),
        // A CR as the last byte so far: its LF may be on its way.
        (b'\r', None) => Ok(None),
        _ => Err(ProxyError::V1Syntax),
    }
}

/// What a complete version 1 line says; `line` is what lies between
/// `"PROXY "` and the CRLF.
fn v1_line(line: &[u8]) -> Result<Header, ProxyError> {
    let mut fields = line.split(|&b| b == b' ');
    let v6 = match fields.next() {
        // The specification says to ignore the rest of an UNKNOWN line.
        Some(b"UNKNOWN") => return Ok(Header::Local),
        Some(b"TCP4") => false,
        Some(b"TCP6") => true,
        _ => return Err(ProxyError::V1Syntax),
    };
    // Splitting on single spaces turns a doubled, leading or trailing space
    // into an empty field: the field count or the field check catches it.
    let fields: Vec<&[u8]> = fields.collect();
    let &[source, destination, source_port, destination_port] = fields.as_slice() else {
        return Err(ProxyError::V1Syntax);
    };
    if fields.iter().any(|field| field.is_empty()) {
        return Err(ProxyError::V1Syntax);
    }
    Ok(Header::Proxied {
        source: SocketAddr::new(v1_address(source, v6)?, v1_port(source_port)?),
        destination: SocketAddr::new(v1_address(destination, v6)?, v1_port(destination_port)?),
    })
}

/// A version 1 address of the announced family.
///
/// std's parsers implement the specification's rules: an IPv4 address is
/// four decimal numbers up to 255 without leading zeroes, an IPv6 address
/// has 128 bits with at most one `::`.
fn v1_address(field: &[u8], v6: bool) -> Result<IpAddr, ProxyError> {
    let text = std::str::from_utf8(field).map_err(|_| ProxyError::V1Address)?;
    let address = if v6 {
        text.parse::<Ipv6Addr>().map(IpAddr::V6)
    } else {
        text.parse::<Ipv4Addr>().map(IpAddr::V4)
    };
    address.map_err(|_| ProxyError::V1Address)
}

/// A version 1 port: decimal digits only (`u16::from_str` would take a `+`),
/// no leading zero, at most 65535.
fn v1_port(field: &[u8]) -> Result<u16, ProxyError> {
    let digits_only = !field.is_empty() && field.iter().all(u8::is_ascii_digit);
    let leading_zero = field.len() > 1 && field[0] == b'0';
    if !digits_only || leading_zero {
        return Err(ProxyError::V1Port);
    }
    std::str::from_utf8(field)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or(ProxyError::V1Port)
}

/// Rejects a version 1 line still without its CRLF as soon as it cannot
/// become a valid one: an unknown protocol, or a byte that cannot appear in
/// the addresses and ports of a TCP4 or TCP6 line.
fn check_partial_v1(window: &[u8]) -> Result<(), ProxyError> {
    let Some(rest) = window.get(V1_PREFIX.len()..) else {
        return Ok(());
    };
    // Each protocol with the byte after it: the space before the addresses,
    // or for UNKNOWN also the CR of the CRLF.
    const PROTOCOLS: [&[u8]; 4] = [b"TCP4 ", b"TCP6 ", b"UNKNOWN ", b"UNKNOWN\r"];
    let Some(protocol) = PROTOCOLS
        .iter()
        .find(|protocol| agrees_with(rest, protocol))
    else {
        return Err(ProxyError::V1Syntax);
    };
    let fields = rest.get(protocol.len()..).unwrap_or_default();
    // The trailing CR, if any, was let through by `find_crlf`.
    let fields = fields.strip_suffix(b"\r").unwrap_or(fields);
    if fields.iter().all(|&byte| v1_field_byte(protocol, byte)) {
        Ok(())
    } else {
        Err(ProxyError::V1Syntax)
    }
}

/// Whether `byte` may appear after `protocol` in a version 1 line: in the
/// addresses, ports and spaces of TCP4 and TCP6, anywhere in an UNKNOWN line,
/// whose content is ignored.
fn v1_field_byte(protocol: &[u8], byte: u8) -> bool {
    match protocol {
        b"TCP4 " => byte == b' ' || byte == b'.' || byte.is_ascii_digit(),
        // IPv6 addresses may end in dotted IPv4 (`::ffff:1.2.3.4`).
        b"TCP6 " => byte == b' ' || byte == b'.' || byte == b':' || byte.is_ascii_hexdigit(),
        _ => true,
    }
}

/// What a version 2 address block holds, as far as this server cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    /// Nothing to use: a LOCAL command, or a family the server does not take
    /// addresses from. Skipped unread, TLVs included.
    Ignored,
    /// Two IPv4 addresses and two ports, then TLVs.
    Inet4,
    /// Two IPv6 addresses and two ports, then TLVs.
    Inet6,
}

impl Block {
    /// The bytes its addresses and ports take at the start of the block.
    fn address_len(self) -> usize {
        match self {
            Block::Ignored => 0,
            Block::Inet4 => 2 * 4 + 2 * 2,
            Block::Inet6 => 2 * 16 + 2 * 2,
        }
    }
}

/// Parses a version 2 header; `input` agrees with [`V2_SIGNATURE`]. Each of
/// the fixed bytes is checked as soon as it arrives.
fn parse_v2(input: &[u8]) -> Result<Parse, ProxyError> {
    let Some(&version_command) = input.get(V2_SIGNATURE.len()) else {
        return Ok(Parse::Incomplete);
    };
    if version_command >> 4 != 2 {
        return Err(ProxyError::V2Version);
    }
    let local = match version_command & 0x0f {
        0x0 => true,
        0x1 => false,
        _ => return Err(ProxyError::V2Command),
    };
    let Some(&family) = input.get(V2_SIGNATURE.len() + 1) else {
        return Ok(Parse::Incomplete);
    };
    // LOCAL: "discard the protocol block including the family which is
    // ignored", so even a family byte outside the list is accepted.
    let block = if local {
        Block::Ignored
    } else {
        v2_block(family)?
    };
    let Some(&[high, low]) = input.get(V2_FIXED_LEN - 2..V2_FIXED_LEN) else {
        return Ok(Parse::Incomplete);
    };
    let length = V2_FIXED_LEN + usize::from(u16::from_be_bytes([high, low]));
    if length - V2_FIXED_LEN < block.address_len() {
        return Err(ProxyError::V2Length);
    }
    let Some(mut rest) = input.get(V2_FIXED_LEN..length) else {
        return Ok(Parse::Incomplete);
    };
    let header = match block {
        Block::Ignored => Header::Local,
        Block::Inet4 => v2_addresses::<4>(&mut rest).ok_or(ProxyError::V2Length)?,
        Block::Inet6 => v2_addresses::<16>(&mut rest).ok_or(ProxyError::V2Length)?,
    };
    if block != Block::Ignored {
        check_tlvs(rest)?;
    }
    Ok(Parse::Complete { header, length })
}

/// How to read the address block announced by a PROXY command's family and
/// protocol byte.
///
/// Only TCP over IPv4 and IPv6 gives addresses this server uses. The other
/// combinations the specification lists (UNSPEC, UDP over IPv4 and IPv6, UNIX
/// stream and datagram) fall back to UNSPEC, as it requires of a receiver
/// that does not implement them: the connection is served with its own
/// addresses. Any other byte is invalid.
fn v2_block(family: u8) -> Result<Block, ProxyError> {
    match family {
        0x11 => Ok(Block::Inet4),
        0x21 => Ok(Block::Inet6),
        0x00 | 0x12 | 0x22 | 0x31 | 0x32 => Ok(Block::Ignored),
        _ => Err(ProxyError::V2Family),
    }
}

/// Takes source and destination addresses of `N` bytes, then their ports, off
/// the front of `block`; `None` if it is too short.
fn v2_addresses<const N: usize>(block: &mut &[u8]) -> Option<Header>
where
    IpAddr: From<[u8; N]>,
{
    let source = IpAddr::from(take::<N>(block)?);
    let destination = IpAddr::from(take::<N>(block)?);
    let source_port = u16::from_be_bytes(take(block)?);
    let destination_port = u16::from_be_bytes(take(block)?);
    Some(Header::Proxied {
        source: SocketAddr::new(source, source_port),
        destination: SocketAddr::new(destination, destination_port),
    })
}

/// Checks that the bytes after the addresses are whole TLVs (a type byte, a
/// 16-bit length, that many bytes of value), as HAProxy does, so that a
/// corrupt header is not taken for a valid one. Their values are not used.
fn check_tlvs(mut tlvs: &[u8]) -> Result<(), ProxyError> {
    while !tlvs.is_empty() {
        let [_type, high, low] = take(&mut tlvs).ok_or(ProxyError::V2Tlv)?;
        let value_len = usize::from(u16::from_be_bytes([high, low]));
        tlvs = tlvs.get(value_len..).ok_or(ProxyError::V2Tlv)?;
    }
    Ok(())
}

/// Takes the first `N` bytes off `bytes`; `None` if there are fewer.
fn take<const N: usize>(bytes: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = bytes.split_first_chunk::<N>()?;
    *bytes = rest;
    Some(*head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{SocketAddrV4, SocketAddrV6};

    /// `PROXY TCP4 …` or `PROXY TCP6 …` for these addresses, as a sender
    /// writes it.
    fn v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
        let protocol = if source.is_ipv4() { "TCP4" } else { "TCP6" };
        format!(
            "PROXY {protocol} {} {} {} {}\r\n",
            source.ip(),
            destination.ip(),
            source.port(),
            destination.port()
        )
        .into_bytes()
    }

    /// Asserts that each of `lines` is rejected with `error`.
    fn assert_rejected(lines: &[&str], error: ProxyError) {
        for line in lines {
            assert_eq!(parse(line.as_bytes()), Err(error), "{line:?}");
        }
    }

    /// A version 2 header with this version and command byte, family byte
    /// and block after the length.
    fn v2(version_command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let length = u16::try_from(block.len()).expect("test blocks fit the length field");
        let mut header = V2_SIGNATURE.to_vec();
        header.extend_from_slice(&[version_command, family]);
        header.extend_from_slice(&length.to_be_bytes());
        header.extend_from_slice(block);
        header
    }

    /// The address block of a version 2 PROXY command for these addresses.
    fn v2_address_block(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
        let mut block = Vec::new();
        for address in [source, destination] {
            match address.ip() {
                IpAddr::V4(ip) => block.extend_from_slice(&ip.octets()),
                IpAddr::V6(ip) => block.extend_from_slice(&ip.octets()),
            }
        }
        block.extend_from_slice(&source.port().to_be_bytes());
        block.extend_from_slice(&destination.port().to_be_bytes());
        block
    }

    /// A complete version 2 PROXY header for these addresses, with `tlvs`
    /// (already encoded) after them.
    fn v2_proxy(source: SocketAddr, destination: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
        let family = if source.is_ipv4() { 0x11 } else { 0x21 };
        let mut block = v2_address_block(source, destination);
        block.extend_from_slice(tlvs);
        v2(0x21, family, &block)
    }

    /// One encoded TLV.
    fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
        let length = u16::try_from(value.len()).expect("test values fit the length field");
        let mut tlv = vec![kind];
        tlv.extend_from_slice(&length.to_be_bytes());
        tlv.extend_from_slice(value);
        tlv
    }

    fn v4(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn proxied(source: &str, destination: &str) -> Header {
        Header::Proxied {
            source: source.parse().unwrap(),
            destination: destination.parse().unwrap(),
        }
    }

    fn complete(header: Header, length: usize) -> Result<Parse, ProxyError> {
        Ok(Parse::Complete { header, length })
    }

    /// Asserts that every strict prefix of `header` asks for more bytes.
    fn assert_prefixes_incomplete(header: &[u8]) {
        for end in 0..header.len() {
            assert_eq!(
                parse(&header[..end]),
                Ok(Parse::Incomplete),
                "prefix {:?}",
                header[..end].escape_ascii().to_string()
            );
        }
    }

    /// A reader that hands out one byte per read, as a slow network might.
    struct OneByteAtATime<'a>(&'a [u8]);

    impl Read for OneByteAtATime<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some((&first, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            buf[0] = first;
            self.0 = rest;
            Ok(1)
        }
    }

    /// A reader that counts the bytes it hands out.
    struct Counting<R> {
        inner: R,
        read: usize,
    }

    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let read = self.inner.read(buf)?;
            self.read += read;
            Ok(read)
        }
    }

    fn read_error(input: impl Read) -> io::Error {
        let mut input = input;
        read_header(&mut input).unwrap_err()
    }

    fn proxy_error(error: &io::Error) -> ProxyError {
        *error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<ProxyError>())
            .expect("an InvalidData error carries the ProxyError")
    }

    // Version 1.

    #[test]
    fn parses_v1_tcp4() {
        let header = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
        assert_eq!(
            parse(header),
            complete(
                proxied("192.168.0.1:56324", "192.168.0.11:443"),
                header.len()
            )
        );
    }

    #[test]
    fn parses_v1_tcp6() {
        let header = b"PROXY TCP6 2001:db8::1 2001:DB8:0:0:0:0:0:2 65535 0\r\n";
        assert_eq!(
            parse(header),
            complete(
                proxied("[2001:db8::1]:65535", "[2001:db8::2]:0"),
                header.len()
            )
        );
    }

    #[test]
    fn parses_longest_v1_tcp4_and_tcp6_lines() {
        let tcp4 = b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
        assert_eq!(tcp4.len(), 56);
        assert!(matches!(
            parse(tcp4),
            Ok(Parse::Complete { length: 56, .. })
        ));
        let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let tcp6 = format!("PROXY TCP6 {full} {full} 65535 65535\r\n");
        assert_eq!(tcp6.len(), 104);
        assert!(matches!(
            parse(tcp6.as_bytes()),
            Ok(Parse::Complete { length: 104, .. })
        ));
    }

    #[test]
    fn parses_v1_unknown_as_local_ignoring_the_rest_of_the_line() {
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), complete(Header::Local, 15));
        let line = b"PROXY UNKNOWN 1.2.3.4 whatever goes here\r\n";
        assert_eq!(parse(line), complete(Header::Local, line.len()));
    }

    #[test]
    fn accepts_v1_line_of_exactly_107_bytes_and_rejects_108() {
        let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let longest = format!("PROXY UNKNOWN {full} {full} 65535 65535\r\n");
        assert_eq!(longest.len(), V1_MAX_LEN);
        assert_eq!(parse(longest.as_bytes()), complete(Header::Local, 107));
        let too_long = format!("PROXY UNKNOWN {full} {full} 65535 655350\r\n");
        assert_eq!(parse(too_long.as_bytes()), Err(ProxyError::V1TooLong));
    }

    #[test]
    fn rejects_v1_line_without_crlf_in_107_bytes() {
        let mut line = b"PROXY UNKNOWN ".to_vec();
        line.resize(V1_MAX_LEN - 1, b'x');
        assert_eq!(parse(&line), Ok(Parse::Incomplete));
        line.push(b'x');
        assert_eq!(parse(&line), Err(ProxyError::V1TooLong));
        // A CR as byte 107 cannot be followed by its LF in time.
        line[V1_MAX_LEN - 1] = b'\r';
        assert_eq!(parse(&line), Err(ProxyError::V1TooLong));
        line.push(b'\n');
        assert_eq!(parse(&line), Err(ProxyError::V1TooLong));
    }

    #[test]
    fn leaves_bytes_after_v1_header_to_the_caller() {
        let input = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nPROXY TCP4 9.9.9.9 9.9.9.9 9 9\r\n";
        assert_eq!(
            parse(input),
            complete(proxied("1.2.3.4:1", "5.6.7.8:2"), 32)
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\nhello\r\n"),
            complete(Header::Local, 15)
        );
    }

    #[test]
    fn every_prefix_of_a_v1_header_is_incomplete() {
        assert_prefixes_incomplete(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
        assert_prefixes_incomplete(b"PROXY TCP6 ::ffff:1.2.3.4 fe80::a:B:c 1 65535\r\n");
        assert_prefixes_incomplete(b"PROXY UNKNOWN\r\n");
        assert_prefixes_incomplete(b"PROXY UNKNOWN ignored\r\n");
    }

    #[test]
    fn rejects_v1_separators_other_than_one_space() {
        for line in [
            "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
            "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
            "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
            "PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n",
            "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
            "PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n",
            "PROXY TCP4 1.2.3.4 5.6.7.8 1\t2\r\n",
            "PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        ] {
            assert!(parse(line.as_bytes()).is_err(), "{line:?}");
        }
    }

    #[test]
    fn rejects_v1_lines_with_missing_or_extra_fields() {
        assert_rejected(
            &[
                "PROXY \r\n",
                "PROXY TCP4\r\n",
                "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
                "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
                "PROXY TCP6 ::1 ::2 1\r\n",
            ],
            ProxyError::V1Syntax,
        );
    }

    #[test]
    fn rejects_unknown_v1_protocols() {
        assert_rejected(
            &[
                "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
                "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
                "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
                "PROXY UNKNOWNX\r\n",
                "PROXY UNKNOWN_ 1.2.3.4\r\n",
            ],
            ProxyError::V1Syntax,
        );
    }

    #[test]
    fn rejects_v1_addresses_of_the_wrong_family_or_malformed() {
        assert_rejected(
            &[
                "PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
                "PROXY TCP4 1.2.3.4 ::1 1 2\r\n",
                "PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
                "PROXY TCP6 ::1 1.2.3.4 1 2\r\n",
                "PROXY TCP4 256.1.1.1 5.6.7.8 1 2\r\n",
                "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
                "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n",
                "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
                "PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n",
                "PROXY TCP6 1::2::3 ::1 1 2\r\n",
                "PROXY TCP6 12345:: ::1 1 2\r\n",
                "PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n",
            ],
            ProxyError::V1Address,
        );
    }

    #[test]
    fn rejects_v1_ports_out_of_range_signed_or_with_leading_zeroes() {
        for port in [
            "65536", "99999", "100000", "+1", "-1", "01", "00", "1a", "0x10",
        ] {
            for line in [
                format!("PROXY TCP4 1.2.3.4 5.6.7.8 {port} 2\r\n"),
                format!("PROXY TCP6 ::1 ::2 1 {port}\r\n"),
            ] {
                assert_eq!(parse(line.as_bytes()), Err(ProxyError::V1Port), "{line:?}");
            }
        }
    }

    #[test]
    fn rejects_a_lone_cr_or_lf_in_a_v1_line() {
        assert_rejected(
            &[
                "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
                "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",
                "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
                "PROXY UNKNOWN\n",
                "PROXY UNKNOWN junk\rjunk\r\n",
                "PROXY UNKNOWN junk\njunk\r\n",
            ],
            ProxyError::V1Syntax,
        );
    }

    #[test]
    fn rejects_a_v1_line_as_soon_as_it_goes_wrong() {
        for partial in [
            "PROXY X",
            "PROXY TCP4X",
            "PROXY TCP4 1.2.3.4\t",
            "PROXY TCP4 1.2.3.4 ::",
            "PROXY TCP6 fe80::g",
            "PROXY TCP4 1.2.3.4 5.6.7.8 80 443\n",
            "PROXY UNKNOWNX",
            "PROXY TCP4 1\r ",
        ] {
            assert_eq!(
                parse(partial.as_bytes()),
                Err(ProxyError::V1Syntax),
                "{partial:?}"
            );
        }
    }

    #[test]
    fn rejects_anything_that_is_not_a_header() {
        for input in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"proxy TCP4",
            b"PROXZ",
            b"PROXY\r\n",
            b"PROXY\t",
            b"\r\n\r\n\0\r\nQUIZ",
            b"\r\n\r\n\x01",
            b"\0",
            b"hello",
        ] {
            assert_eq!(parse(input), Err(ProxyError::NotProxy), "{input:?}");
        }
    }

    #[test]
    fn first_bytes_of_either_signature_are_incomplete() {
        assert_eq!(parse(b""), Ok(Parse::Incomplete));
        assert_eq!(parse(b"PROX"), Ok(Parse::Incomplete));
        assert_eq!(parse(b"\r\n\r\n\0\r"), Ok(Parse::Incomplete));
        assert_eq!(parse(&V2_SIGNATURE), Ok(Parse::Incomplete));
    }

    // Version 2.

    #[test]
    fn parses_v2_tcp_over_ipv4() {
        let header = v2_proxy(v4("10.1.2.3:40000"), v4("192.0.2.1:7"), &[]);
        assert_eq!(header.len(), 28);
        assert_eq!(
            parse(&header),
            complete(proxied("10.1.2.3:40000", "192.0.2.1:7"), 28)
        );
    }

    #[test]
    fn parses_v2_tcp_over_ipv6() {
        let source = "[2001:db8::7]:65535".parse().unwrap();
        let destination = "[::1]:0".parse().unwrap();
        let header = v2_proxy(source, destination, &[]);
        assert_eq!(header.len(), 52);
        assert_eq!(
            parse(&header),
            complete(proxied("[2001:db8::7]:65535", "[::1]:0"), 52)
        );
    }

    #[test]
    fn reads_the_v2_length_as_big_endian() {
        let mut tlvs = tlv(0x04, &[0; 300 - 3]);
        assert_eq!(tlvs.len(), 300);
        let header = v2_proxy(v4("1.2.3.4:1"), v4("5.6.7.8:2"), &tlvs);
        assert_eq!(&header[14..16], &[0x01, 0x38]);
        assert_eq!(
            parse(&header),
            complete(proxied("1.2.3.4:1", "5.6.7.8:2"), 16 + 12 + 300)
        );
        tlvs.pop();
        let short = v2_proxy(v4("1.2.3.4:1"), v4("5.6.7.8:2"), &tlvs);
        assert_eq!(parse(&short), Err(ProxyError::V2Tlv));
    }

    #[test]
    fn parses_v2_local_as_local_whatever_follows() {
        assert_eq!(parse(&v2(0x20, 0x00, &[])), complete(Header::Local, 16));
        // The block and even the family are to be discarded unread.
        let block = v2_address_block(v4("1.2.3.4:1"), v4("5.6.7.8:2"));
        assert_eq!(parse(&v2(0x20, 0x11, &block)), complete(Header::Local, 28));
        assert_eq!(
            parse(&v2(0x20, 0xff, &[0xff; 5])),
            complete(Header::Local, 21)
        );
        assert_eq!(
            parse(&v2(0x20, 0x21, &[1, 2, 3])),
            complete(Header::Local, 19)
        );
    }

    #[test]
    fn parses_v2_families_without_usable_addresses_as_local() {
        let ipv4 = v2_address_block(v4("1.2.3.4:1"), v4("5.6.7.8:2"));
        let ipv6 = v2_address_block("[::1]:1".parse().unwrap(), "[::2]:2".parse().unwrap());
        let unix = [b'/'; 216];
        for (family, block) in [
            (0x00, &[][..]),
            (0x00, &ipv4[..]),
            (0x12, &ipv4[..]),
            (0x22, &ipv6[..]),
            (0x31, &unix[..]),
            (0x32, &unix[..]),
        ] {
            let header = v2(0x21, family, block);
            assert_eq!(
                parse(&header),
                complete(Header::Local, header.len()),
                "family {family:#04x}"
            );
        }
    }

    #[test]
    fn skips_v2_tlvs_after_the_addresses() {
        let mut tlvs = tlv(0x01, b"h2"); // ALPN
        tlvs.extend(tlv(0x04, &[])); // NOOP, empty
        tlvs.extend(tlv(0x05, &[7; 16])); // UNIQUE_ID
        tlvs.extend(tlv(0xe0, &[0; 1000])); // a custom type
        let header = v2_proxy(v4("10.0.0.1:1234"), v4("10.0.0.2:80"), &tlvs);
        assert_eq!(
            parse(&header),
            complete(proxied("10.0.0.1:1234", "10.0.0.2:80"), header.len())
        );
    }

    #[test]
    fn rejects_v2_tlvs_that_overflow_the_header() {
        let addresses = v2_address_block(v4("1.2.3.4:1"), v4("5.6.7.8:2"));
        for tlvs in [
            vec![0x04],
            vec![0x04, 0x00],
            vec![0x04, 0x00, 0x01],
            vec![0x04, 0x00, 0x05, 1, 2, 3, 4],
            vec![0x04, 0xff, 0xff],
            [tlv(0x01, b"h2"), vec![0x02, 0x00]].concat(),
        ] {
            let header = v2(0x21, 0x11, &[&addresses[..], &tlvs].concat());
            assert_eq!(parse(&header), Err(ProxyError::V2Tlv), "{tlvs:?}");
        }
    }

    #[test]
    fn leaves_bytes_after_v2_header_to_the_caller() {
        let mut input = v2_proxy(v4("1.2.3.4:1"), v4("5.6.7.8:2"), &tlv(0x04, b"xy"));
        let length = input.len();
        input.extend_from_slice(b"PROXY TCP4 and more client bytes");
        assert_eq!(
            parse(&input),
            complete(proxied("1.2.3.4:1", "5.6.7.8:2"), length)
        );
        let mut local = v2(0x20, 0x00, &[]);
        local.extend_from_slice(&V2_SIGNATURE);
        assert_eq!(parse(&local), complete(Header::Local, 16));
    }

    #[test]
    fn every_prefix_of_a_v2_header_is_incomplete() {
        let tlvs = [tlv(0x01, b"h2"), tlv(0x04, &[])].concat();
        assert_prefixes_incomplete(&v2_proxy(v4("1.2.3.4:1"), v4("5.6.7.8:2"), &tlvs));
        assert_prefixes_incomplete(&v2_proxy(
            "[2001:db8::1]:1".parse().unwrap(),
            "[2001:db8::2]:2".parse().unwrap(),
            &[],
        ));
        assert_prefixes_incomplete(&v2(0x20, 0x00, &[]));
        assert_prefixes_incomplete(&v2(0x21, 0x31, &[0; 216]));
    }

    #[test]
    fn rejects_v2_versions_other_than_2() {
        for version_command in [0x01, 0x11, 0x31, 0xf1, 0x10] {
            let header = v2(version_command, 0x11, &[0; 12]);
            assert_eq!(parse(&header[..13]), Err(ProxyError::V2Version));
            assert_eq!(parse(&header), Err(ProxyError::V2Version));
        }
    }

    #[test]
    fn rejects_v2_commands_other_than_local_and_proxy() {
        for command in 0x2..=0xf {
            let header = v2(0x20 | command, 0x11, &[0; 12]);
            assert_eq!(parse(&header[..13]), Err(ProxyError::V2Command));
            assert_eq!(parse(&header), Err(ProxyError::V2Command));
        }
    }

    #[test]
    fn rejects_v2_family_bytes_outside_the_specification() {
        let valid = [0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32];
        for family in (0..=0xff).filter(|family| !valid.contains(family)) {
            let header = v2(0x21, family, &[0; 216]);
            assert_eq!(
                parse(&header[..14]),
                Err(ProxyError::V2Family),
                "{family:#04x}"
            );
            assert_eq!(parse(&header), Err(ProxyError::V2Family), "{family:#04x}");
        }
    }

    #[test]
    fn rejects_v2_address_blocks_shorter_than_the_family() {
        for (family, short) in [(0x11, 11), (0x21, 35), (0x11, 0), (0x21, 12)] {
            let header = v2(0x21, family, &vec![0; short]);
            // Known from the length field alone, before the block arrives.
            assert_eq!(parse(&header[..16]), Err(ProxyError::V2Length));
            assert_eq!(parse(&header), Err(ProxyError::V2Length));
        }
    }

    #[test]
    fn accepts_the_longest_v2_header() {
        let header = v2(0x20, 0x00, &[0; u16::MAX as usize]);
        assert_eq!(header.len(), MAX_HEADER_LEN);
        assert_eq!(parse(&header), complete(Header::Local, MAX_HEADER_LEN));
        assert_eq!(parse(&header[..MAX_HEADER_LEN - 1]), Ok(Parse::Incomplete));
    }

    #[test]
    fn error_messages_are_lowercase_and_name_the_protocol() {
        for error in [
            ProxyError::NotProxy,
            ProxyError::V1Syntax,
            ProxyError::V1TooLong,
            ProxyError::V1Address,
            ProxyError::V1Port,
            ProxyError::V2Version,
            ProxyError::V2Command,
            ProxyError::V2Family,
            ProxyError::V2Length,
            ProxyError::V2Tlv,
        ] {
            let message = error.to_string();
            assert!(message.contains("PROXY"), "{message}");
            assert!(message.starts_with(|c: char| c.is_lowercase()), "{message}");
        }
    }

    // The blocking reader.

    #[test]
    fn reads_header_and_returns_the_bytes_after_it() {
        let mut input = &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nhello"[..];
        let (header, payload) = read_header(&mut input).unwrap();
        assert_eq!(header, proxied("1.2.3.4:1", "5.6.7.8:2"));
        assert_eq!(payload, b"hello");

        let mut v2_input = v2_proxy(v4("1.2.3.4:1"), v4("5.6.7.8:2"), &[]);
        v2_input.extend_from_slice(b"\r\n\r\n\0\r\nQUIT\n");
        let (header, payload) = read_header(&mut &v2_input[..]).unwrap();
        assert_eq!(header, proxied("1.2.3.4:1", "5.6.7.8:2"));
        assert_eq!(payload, V2_SIGNATURE);
    }

    #[test]
    fn reads_header_one_byte_at_a_time_without_reading_past_it() {
        let input = b"PROXY TCP6 ::1 ::2 3 4\r\npayload";
        let mut reader = OneByteAtATime(input);
        let (header, payload) = read_header(&mut reader).unwrap();
        assert_eq!(header, proxied("[::1]:3", "[::2]:4"));
        assert!(payload.is_empty());
        assert_eq!(reader.0, b"payload");

        let input = [v2(0x20, 0x00, &[9; 40]), b"payload".to_vec()].concat();
        let mut reader = OneByteAtATime(&input);
        assert_eq!(read_header(&mut reader).unwrap(), (Header::Local, vec![]));
        assert_eq!(reader.0, b"payload");
    }

    #[test]
    fn stops_reading_at_the_first_byte_that_rules_out_a_header() {
        let mut reader = Counting {
            inner: OneByteAtATime(b"GET / HTTP/1.1\r\n"),
            read: 0,
        };
        let error = read_header(&mut reader).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(proxy_error(&error), ProxyError::NotProxy);
        assert_eq!(reader.read, 1);
        assert_eq!(error.to_string(), "not a PROXY protocol header");
    }

    #[test]
    fn reports_a_malformed_header_as_invalid_data() {
        let error = read_error(&b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n"[..]);
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(proxy_error(&error), ProxyError::V1Port);
    }

    #[test]
    fn reports_end_of_stream_inside_a_header() {
        for input in [&b""[..], b"PROXY TCP4 1.2.3.4", &V2_SIGNATURE] {
            let error = read_error(input);
            assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{input:?}");
        }
        let error = read_error(OneByteAtATime(b"PROXY UNKNOWN\r"));
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn bounds_what_it_reads_from_an_endless_v1_line() {
        let mut reader = Counting {
            inner: b"PROXY UNKNOWN ".chain(io::repeat(b'x')),
            read: 0,
        };
        let error = read_header(&mut reader).unwrap_err();
        assert_eq!(proxy_error(&error), ProxyError::V1TooLong);
        assert!(reader.read < V1_MAX_LEN + READ_CHUNK, "{}", reader.read);
    }

    #[test]
    fn bounds_what_it_reads_for_the_longest_v2_header() {
        let mut reader = Counting {
            inner: io::Cursor::new(v2(0x20, 0x00, &[])).chain(io::repeat(0)),
            read: 0,
        };
        // The fixed part announces no block: the endless zeros are payload.
        let (header, payload) = read_header(&mut reader).unwrap();
        assert_eq!(header, Header::Local);
        assert_eq!(payload.len(), reader.read - 16);

        let mut announced = v2(0x20, 0x00, &[]);
        announced[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        let mut reader = Counting {
            inner: io::Cursor::new(announced).chain(io::repeat(0)),
            read: 0,
        };
        let (header, payload) = read_header(&mut reader).unwrap();
        assert_eq!(header, Header::Local);
        assert!(reader.read < MAX_HEADER_LEN + READ_CHUNK, "{}", reader.read);
        assert_eq!(payload.len(), reader.read - MAX_HEADER_LEN);
    }

    #[test]
    fn retries_interrupted_reads_and_passes_on_other_errors() {
        /// Fails once with `kind`, then reads from `rest`.
        struct FailOnce<'a> {
            kind: Option<io::ErrorKind>,
            rest: &'a [u8],
        }
        impl Read for FailOnce<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                match self.kind.take() {
                    Some(kind) => Err(kind.into()),
                    None => self.rest.read(buf),
                }
            }
        }
        let mut interrupted = FailOnce {
            kind: Some(io::ErrorKind::Interrupted),
            rest: b"PROXY UNKNOWN\r\n",
        };
        assert_eq!(
            read_header(&mut interrupted).unwrap(),
            (Header::Local, vec![])
        );
        let mut timed_out = FailOnce {
            kind: Some(io::ErrorKind::WouldBlock),
            rest: b"PROXY UNKNOWN\r\n",
        };
        let error = read_header(&mut timed_out).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
    }

    // Properties.

    /// First bytes that lead `parse` past the signatures, so that random
    /// bytes after them exercise the deeper checks.
    fn header_starts() -> impl Strategy<Value = Vec<u8>> {
        let signature = V2_SIGNATURE.to_vec();
        prop_oneof![
            Just(Vec::new()),
            Just(b"PROXY ".to_vec()),
            Just(b"PROXY TCP4 ".to_vec()),
            Just(b"PROXY TCP6 ".to_vec()),
            Just(b"PROXY UNKNOWN".to_vec()),
            Just([&signature[..], &[0x20]].concat()),
            Just([&signature[..], &[0x21, 0x11]].concat()),
            Just([&signature[..], &[0x21, 0x21]].concat()),
            Just([&signature[..], &[0x21, 0x11, 0x00]].concat()),
            Just(signature),
        ]
    }

    /// Bytes from the alphabet of version 1 lines, so that random lines
    /// often reach the field checks.
    fn v1_alphabet_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop::sample::select(b" 0123456789abcdefABCDEF:.\r\n+-".to_vec()),
            0..120,
        )
    }

    /// Random TLVs, encoded, at most a few hundred bytes in all.
    fn tlvs() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            (any::<u8>(), prop::collection::vec(any::<u8>(), 0..40)),
            0..4,
        )
        .prop_map(|tlvs| {
            tlvs.iter()
                .flat_map(|(kind, value)| tlv(*kind, value))
                .collect()
        })
    }

    /// A source and a destination of the same family.
    fn address_pair() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
        prop_oneof![
            (any::<SocketAddrV4>(), any::<SocketAddrV4>())
                .prop_map(|(s, d)| (SocketAddr::V4(s), SocketAddr::V4(d))),
            (any::<(Ipv6Addr, u16)>(), any::<(Ipv6Addr, u16)>()).prop_map(|(s, d)| (
                SocketAddr::V6(SocketAddrV6::new(s.0, s.1, 0, 0)),
                SocketAddr::V6(SocketAddrV6::new(d.0, d.1, 0, 0)),
            )),
        ]
    }

    /// Asserts what any answer of `parse` must satisfy.
    fn check_any_answer(input: &[u8]) -> Result<(), TestCaseError> {
        match parse(input) {
            Ok(Parse::Complete { length, .. }) => {
                prop_assert!(length <= input.len());
                prop_assert!(length <= MAX_HEADER_LEN);
            }
            Ok(Parse::Incomplete) => prop_assert!(input.len() < MAX_HEADER_LEN),
            Err(_) => {}
        }
        Ok(())
    }

    /// Checks that `header` followed by `payload` parses as `expected`,
    /// consuming the header only, and that every prefix of it is incomplete.
    fn parses_whole_and_no_prefix(
        header: &[u8],
        payload: &[u8],
        expected: Header,
    ) -> Result<(), TestCaseError> {
        let input = [header, payload].concat();
        prop_assert_eq!(
            parse(&input),
            Ok(Parse::Complete {
                header: expected,
                length: header.len(),
            })
        );
        for end in 0..header.len() {
            prop_assert_eq!(parse(&header[..end]), Ok(Parse::Incomplete));
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_stays_within_its_input(
            input in prop::collection::vec(any::<u8>(), 0..200),
        ) {
            check_any_answer(&input)?;
        }

        #[test]
        fn parse_never_panics_past_the_signatures(
            start in header_starts(),
            rest in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            check_any_answer(&[start, rest].concat())?;
        }

        #[test]
        fn parse_never_panics_on_near_v1_lines(
            protocol in prop::sample::select(vec!["TCP4 ", "TCP6 ", "UNKNOWN "]),
            line in v1_alphabet_bytes(),
        ) {
            check_any_answer(&[b"PROXY ", protocol.as_bytes(), &line].concat())?;
        }

        #[test]
        fn v1_headers_round_trip(
            (source, destination) in address_pair(),
            payload in prop::collection::vec(any::<u8>(), 0..20),
        ) {
            let header = v1(source, destination);
            prop_assert!(header.len() <= V1_MAX_LEN);
            parses_whole_and_no_prefix(&header, &payload, Header::Proxied { source, destination })?;
        }

        #[test]
        fn v2_headers_round_trip(
            (source, destination) in address_pair(),
            tlvs in tlvs(),
            payload in prop::collection::vec(any::<u8>(), 0..20),
        ) {
            let header = v2_proxy(source, destination, &tlvs);
            parses_whole_and_no_prefix(&header, &payload, Header::Proxied { source, destination })?;
            let input = [&header[..], &payload].concat();
            let (read, rest) = read_header(&mut OneByteAtATime(&input)).unwrap();
            prop_assert_eq!(read, Header::Proxied { source, destination });
            prop_assert!(rest.is_empty());
        }
    }
}
