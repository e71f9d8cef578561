//! Serving behind a load balancer: PROXY protocol headers (good, bad and
//! late), the peers trusted to send them, the access lists, and the
//! `ECHO_SERVER_*` environment variables.

mod common;

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::num::NonZeroUsize;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    ServerProcess, TestServer, assert_echoes, closed_without_data, connect, connect_from,
    echo_server, random_bytes, read_to_eof, run_bounded, wait_until,
};
use echo_server::{Cidr, Config};

/// How soon a client must be closed once the server has a reason to: it
/// closes at once, so this is slack for a loaded machine, and well under
/// [`common::IO_TIMEOUT`] and the 3 s PROXY header timeout, so that a
/// client closed at once is told apart from one closed by a timeout.
const PROMPTLY: Duration = Duration::from_millis(1500);

/// The 12 bytes every PROXY v2 header starts with.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// A client address from the documentation range, as a balancer would
/// report it.
const CLIENT: &str = "192.0.2.7:5555";

/// The address the balancer says the client connected to.
const FRONTEND: &str = "203.0.113.1:443";

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("a valid socket address")
}

fn cidr(text: &str) -> Cidr {
    text.parse().expect("a valid CIDR range")
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("a valid IP address")
}

/// A PROXY v1 line for a TCP connection from `source` to `destination`.
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

/// A PROXY v2 header: signature, version and command byte, family byte,
/// length, then `block`.
fn v2(version_command: u8, family: u8, block: &[u8]) -> Vec<u8> {
    let length = u16::try_from(block.len()).expect("test blocks fit the length field");
    let mut header = V2_SIGNATURE.to_vec();
    header.extend_from_slice(&[version_command, family]);
    header.extend_from_slice(&length.to_be_bytes());
    header.extend_from_slice(block);
    header
}

/// A PROXY v2 PROXY command over TCP from `source` to `destination`, with
/// `tlvs` (already encoded) after the addresses.
fn v2_proxy(source: SocketAddr, destination: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
    let mut block = Vec::new();
    for address in [source, destination] {
        match address.ip() {
            IpAddr::V4(ip) => block.extend_from_slice(&ip.octets()),
            IpAddr::V6(ip) => block.extend_from_slice(&ip.octets()),
        }
    }
    block.extend_from_slice(&source.port().to_be_bytes());
    block.extend_from_slice(&destination.port().to_be_bytes());
    block.extend_from_slice(tlvs);
    let family = if source.is_ipv4() { 0x11 } else { 0x21 };
    v2(0x21, family, &block)
}

/// A PROXY v2 LOCAL command: a balancer's own connection, a health check.
fn v2_local() -> Vec<u8> {
    v2(0x20, 0x00, &[])
}

/// One encoded PROXY v2 TLV.
fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
    let length = u16::try_from(value.len()).expect("test values fit the length field");
    let mut tlv = vec![kind];
    tlv.extend_from_slice(&length.to_be_bytes());
    tlv.extend_from_slice(value);
    tlv
}

/// `first` followed by `second`, for a header and its payload sent in one
/// write.
fn concat(first: &[u8], second: &[u8]) -> Vec<u8> {
    [first, second].concat()
}

/// Sends `header` and `payload` in one write and asserts that exactly
/// `payload` comes back, then EOF once the client has finished sending.
fn assert_echoes_after(stream: &mut TcpStream, header: &[u8], payload: &[u8]) {
    stream
        .write_all(&concat(header, payload))
        .expect("send a header and its payload");
    let mut reply = vec![0; payload.len()];
    stream
        .read_exact(&mut reply)
        .unwrap_or_else(|error| panic!("echo of the payload after {header:?}: {error}"));
    assert!(
        reply == payload,
        "after header {:?}: sent {} bytes, got different ones back",
        String::from_utf8_lossy(header),
        payload.len()
    );
    stream.shutdown(Shutdown::Write).unwrap();
    let extra = read_to_eof(stream);
    assert!(
        extra.is_empty(),
        "after header {:?}: {} bytes beyond the payload came back: {:?}",
        String::from_utf8_lossy(header),
        extra.len(),
        String::from_utf8_lossy(&extra)
    );
}

/// Sends `bytes` and asserts that the server closes the connection
/// within [`PROMPTLY`], without sending anything back.
fn assert_closed_without_echo(stream: &mut TcpStream, bytes: &[u8]) {
    common::assert_closed_without_echo(stream, bytes, PROMPTLY);
}

fn proxy_config() -> Config {
    Config {
        proxy_protocol: true,
        ..Config::default()
    }
}

#[test]
fn echoes_only_the_bytes_after_each_kind_of_header() {
    let server = TestServer::with_config(proxy_config());
    let (client, frontend) = (addr(CLIENT), addr(FRONTEND));
    let client6 = addr("[2001:db8::7]:5555");
    let frontend6 = addr("[2001:db8::1]:443");
    let tlvs = [
        tlv(0x01, b"h2"),          // ALPN
        tlv(0x02, b"example.com"), // authority
        tlv(0x04, &[0; 5]),        // NOOP, padding
        tlv(0xE0, b"custom"),      // a custom type
    ]
    .concat();
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("v1 TCP4", v1(client, frontend), b"Hello, server".to_vec()),
        ("v1 TCP6", v1(client6, frontend6), b"over IPv6".to_vec()),
        (
            "v1 UNKNOWN",
            b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n".to_vec(),
            b"unknown".to_vec(),
        ),
        (
            "v1 with a payload that looks like a header",
            v1(client, frontend),
            v1(addr("198.51.100.1:1"), frontend),
        ),
        (
            "v1 with a payload longer than the first read",
            v1(client, frontend),
            random_bytes(20_000),
        ),
        ("v2 TCP4", v2_proxy(client, frontend, &[]), b"v2".to_vec()),
        (
            "v2 TCP6",
            v2_proxy(client6, frontend6, &[]),
            b"v2 over IPv6".to_vec(),
        ),
        ("v2 LOCAL", v2_local(), b"health check".to_vec()),
        (
            "v2 UNSPEC",
            v2(0x21, 0x00, &[]),
            b"no addresses at all".to_vec(),
        ),
        (
            "v2 with TLVs",
            v2_proxy(client, frontend, &tlvs),
            b"after the TLVs".to_vec(),
        ),
        (
            "v2 with a payload that looks like a v2 header",
            v2_proxy(client, frontend, &tlvs),
            v2_local(),
        ),
        (
            "v2 with a payload longer than the first read",
            v2_proxy(client6, frontend6, &tlvs),
            random_bytes(20_000),
        ),
    ];
    for (name, header, payload) in &cases {
        let mut stream = connect(server.addr);
        eprintln!("{name}");
        assert_echoes_after(&mut stream, header, payload);
    }

    // A header on its own, the payload in later writes: nothing of the
    // header is left over for the echo loop.
    let mut stream = connect(server.addr);
    stream
        .write_all(&v2_proxy(client, frontend, &tlvs))
        .unwrap();
    stream.flush().unwrap();
    assert_echoes(&mut stream, b"first");
    assert_echoes_after(&mut stream, b"", b"second");

    let served = cases.len() as u64 + 1;
    wait_until("every client to be counted", || {
        server.handle.stats().accepted == served
    });
    let stats = server.stop();
    assert_eq!((stats.proxy_errors, stats.denied), (0, 0), "{stats}");
}

#[test]
fn logs_the_client_from_the_header_and_the_proxy_it_came_through() {
    let server = ServerProcess::start(&["--bind", "127.0.0.1", "--proxy-protocol"]);

    let mut v1_client = connect(server.addr());
    let v1_port = v1_client.local_addr().unwrap().port();
    assert_echoes_after(&mut v1_client, &v1(addr(CLIENT), addr(FRONTEND)), b"one");
    server.wait_for_log(&format!("192.0.2.7:5555 via 127.0.0.1:{v1_port} connected"));
    server.wait_for_log(&format!(
        "192.0.2.7:5555 via 127.0.0.1:{v1_port} disconnected: client closed, 3 bytes echoed"
    ));

    let mut v2_client = connect(server.addr());
    let v2_port = v2_client.local_addr().unwrap().port();
    let header = v2_proxy(addr("[2001:db8::7]:6666"), addr("[2001:db8::1]:443"), &[]);
    assert_echoes_after(&mut v2_client, &header, b"two");
    server.wait_for_log(&format!(
        "[2001:db8::7]:6666 via 127.0.0.1:{v2_port} connected"
    ));

    // A LOCAL header names no client: the connection's own address is the
    // one logged, with no proxy.
    let mut check = connect(server.addr());
    let check_port = check.local_addr().unwrap().port();
    assert_echoes_after(&mut check, &v2_local(), b"three");
    let needle = format!("127.0.0.1:{check_port} connected");
    server.wait_for_log(&needle);
    let log = server.log_text();
    let line = log
        .lines()
        .find(|line| line.contains(&needle))
        .expect("the line waited for");
    assert!(!line.contains(" via "), "a LOCAL connection: {line}");
}

#[test]
fn per_ip_limit_counts_the_address_in_the_header_not_the_proxy() {
    let server = TestServer::with_config(Config {
        max_connections_per_ip: NonZeroUsize::new(1),
        ..proxy_config()
    });
    let frontend = addr(FRONTEND);
    let header_7 = v1(addr("192.0.2.7:1000"), frontend);

    let mut first = connect(server.addr);
    first.write_all(&header_7).unwrap();
    assert_echoes(&mut first, b"first");

    // The same client again, through the same proxy: over its limit.
    let mut again = connect(server.addr);
    assert_closed_without_echo(
        &mut again,
        &concat(&v1(addr("192.0.2.7:1001"), frontend), b"x"),
    );
    assert_eq!(server.handle.stats().rejected, 1);

    // Another client through the same proxy, whose own address is then
    // connected twice: served, as the limit is the client's.
    let mut other = connect(server.addr);
    other
        .write_all(&v1(addr("192.0.2.8:1000"), frontend))
        .unwrap();
    assert_echoes(&mut other, b"other");

    // Once the first client has left, its address may connect again.
    first.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_eof(&mut first).is_empty());
    wait_until("the first client's slot to be free", || {
        server.handle.stats().active == 1
    });
    let mut back = connect(server.addr);
    assert_echoes_after(&mut back, &v1(addr("192.0.2.7:1002"), frontend), b"back");

    let stats = server.stop();
    assert_eq!(
        (stats.rejected, stats.denied, stats.proxy_errors),
        (1, 0, 0),
        "{stats}"
    );
}

#[test]
fn closes_and_counts_every_kind_of_bad_header() {
    let server = TestServer::with_config(proxy_config());
    let frontend = addr(FRONTEND);
    let payload = b"must never come back";
    let overflowing_tlv = {
        let mut header = v2_proxy(addr(CLIENT), frontend, &[0x01, 0x00, 0x10, b'h']);
        header.extend_from_slice(payload);
        header
    };
    // (what, bytes, whether the client then closes its side)
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "binary garbage",
            b"\x16\x03\x01\x00\xa5\x01\x00".to_vec(),
            false,
        ),
        ("a line of text", b"hello, server\r\n".to_vec(), false),
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n".to_vec(),
            false,
        ),
        (
            "v1 with a bad address",
            concat(b"PROXY TCP4 999.0.2.7 203.0.113.1 5555 443\r\n", payload),
            false,
        ),
        (
            "v1 with an IPv4 address in TCP6",
            concat(b"PROXY TCP6 192.0.2.7 203.0.113.1 5555 443\r\n", payload),
            false,
        ),
        (
            "v1 with a port out of range",
            concat(b"PROXY TCP4 192.0.2.7 203.0.113.1 70000 443\r\n", payload),
            false,
        ),
        (
            "v1 ending in LF only",
            concat(b"PROXY TCP4 192.0.2.7 203.0.113.1 5555 443\n", payload),
            false,
        ),
        (
            "v1 longer than 107 bytes",
            concat(b"PROXY UNKNOWN ", &[b'x'; 200]),
            false,
        ),
        (
            "v1 truncated, then EOF",
            b"PROXY TCP4 192.0.2.7 203.".to_vec(),
            true,
        ),
        (
            "v2 truncated, then EOF",
            v2_proxy(addr(CLIENT), frontend, &[])[..20].to_vec(),
            true,
        ),
        (
            "v2 with version 1",
            concat(&v2(0x11, 0x11, &[0; 12]), payload),
            false,
        ),
        (
            "v2 with an unknown command",
            concat(&v2(0x22, 0x11, &[0; 12]), payload),
            false,
        ),
        (
            "v2 with an unknown family",
            concat(&v2(0x21, 0x41, &[0; 12]), payload),
            false,
        ),
        (
            "v2 with an address block too short",
            concat(&v2(0x21, 0x11, &[0; 8]), payload),
            false,
        ),
        ("v2 with a TLV past its end", overflowing_tlv, false),
        ("an empty connection", Vec::new(), true),
    ];
    for (counted, (what, bytes, then_eof)) in (1..).zip(&cases) {
        let mut stream = connect(server.addr);
        if *then_eof {
            stream.write_all(bytes).unwrap();
            stream.shutdown(Shutdown::Write).unwrap();
        }
        eprintln!("{what}");
        assert_closed_without_echo(&mut stream, if *then_eof { b"" } else { bytes });
        wait_until(&format!("{what} to be counted"), || {
            server.handle.stats().proxy_errors == counted
        });
    }

    // Nothing above harmed the server.
    let mut good = connect(server.addr);
    assert_echoes_after(&mut good, &v1(addr(CLIENT), frontend), b"still serving");
    let stats = server.stop();
    assert_eq!(stats.proxy_errors, cases.len() as u64, "{stats}");
    assert_eq!((stats.denied, stats.rejected), (0, 0), "{stats}");
}

#[test]
fn closes_a_connection_whose_header_never_comes_after_the_header_timeout() {
    // The header timeout is 3 s, or the idle timeout when that is shorter.
    let timeout = Duration::from_millis(300);
    let server = TestServer::with_config(Config {
        idle_timeout: Some(timeout),
        ..proxy_config()
    });
    let cases: [(&str, &[u8]); 2] = [
        ("nothing", b""),
        ("the start of a header", b"PROXY TCP4 192.0.2.7 "),
    ];
    for (counted, (what, bytes)) in (1..).zip(cases) {
        let started = Instant::now();
        let mut stream = connect(server.addr);
        stream.write_all(bytes).unwrap();
        assert!(
            closed_without_data(&mut stream),
            "after {what}: the server must close the connection"
        );
        let elapsed = started.elapsed();
        // The lower bound is measured from before the server's timer can
        // start, so load only lengthens it. The upper one gives the server
        // PROMPTLY to act once the timeout has passed, and stays under the
        // 3 s header timeout that a server ignoring the shorter idle
        // timeout would take; a server with no timeout at all leaves the
        // read above to time out.
        assert!(
            elapsed >= timeout * 9 / 10 && elapsed < timeout + PROMPTLY,
            "after {what}: closed after {elapsed:?}, the header timeout being {timeout:?}"
        );
        wait_until(&format!("the connection with {what} to be counted"), || {
            server.handle.stats().proxy_errors == counted
        });
    }
}

/// The header timeout bounds the whole header, not each read of it: a
/// client that sends its header a byte at a time, each byte within the
/// timeout of the one before, must not hold a connection (and a thread) for
/// longer than that.
#[test]
fn closes_a_connection_whose_header_trickles_in_past_the_header_timeout() {
    let timeout = Duration::from_millis(300);
    let server = TestServer::with_config(Config {
        idle_timeout: Some(timeout),
        ..proxy_config()
    });
    let header = v1(addr(CLIENT), addr(FRONTEND));
    let mut stream = connect(server.addr);
    stream
        .set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    let started = Instant::now();
    let mut closed_after = None;
    // The pauses are the workload, a slow sender: one byte every 100 ms,
    // a third of the timeout, so the whole header takes 4 s.
    for &byte in &header {
        if stream.write_all(&[byte]).is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut buffer = [0; 1];
        match stream.read(&mut buffer) {
            Ok(0) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Ok(_) => panic!("the server sent something back before the header ended"),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => {
                closed_after = Some(started.elapsed());
                break;
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    let stats = server.handle.stats();
    // The bound is PROMPTLY past the timeout, as in the test above: slack
    // for a loaded machine, under the 3 s that a server using the default
    // header timeout would take.
    match closed_after {
        Some(elapsed) => assert!(
            elapsed < timeout + PROMPTLY,
            "closed only after {elapsed:?}, the header timeout being {timeout:?}"
        ),
        None => panic!(
            "a header sent over {:?} was still accepted, the header timeout being {timeout:?} \
             ({stats})",
            started.elapsed()
        ),
    }
    wait_until("the late header to be counted", || {
        server.handle.stats().proxy_errors == 1
    });
}

#[test]
fn proxy_from_closes_untrusted_peers_at_once_and_counts_them_as_denied() {
    let server = TestServer::with_config(Config {
        proxy_from: vec![cidr("127.0.0.2/32")],
        ..proxy_config()
    });
    let header = v1(addr(CLIENT), addr(FRONTEND));

    // Closed before a single byte is read: without waiting for a header,
    // which would take the 3 s header timeout.
    let started = Instant::now();
    let mut untrusted = connect_from(ip("127.0.0.1"), server.addr);
    assert!(closed_without_data(&mut untrusted));
    let elapsed = started.elapsed();
    assert!(elapsed < PROMPTLY, "closed after {elapsed:?}");
    assert_eq!(server.handle.stats().denied, 1);

    let mut untrusted = connect_from(ip("127.0.0.1"), server.addr);
    assert_closed_without_echo(&mut untrusted, &concat(&header, b"let me in"));
    assert_eq!(server.handle.stats().denied, 2);

    let mut trusted = connect_from(ip("127.0.0.2"), server.addr);
    assert_echoes_after(&mut trusted, &header, b"from the balancer");
    let stats = server.stop();
    assert_eq!((stats.denied, stats.proxy_errors), (2, 0), "{stats}");
}

#[test]
fn proxy_from_flag_logs_why_a_peer_was_closed() {
    let server = ServerProcess::start(&[
        "--bind",
        "127.0.0.1",
        "--proxy-protocol",
        "--proxy-from",
        "10.0.0.0/8",
        "--proxy-from",
        "192.168.0.0/16",
    ]);
    let mut stream = connect(server.addr());
    let port = stream.local_addr().unwrap().port();
    assert_closed_without_echo(
        &mut stream,
        &concat(&v1(addr(CLIENT), addr(FRONTEND)), b"hi"),
    );
    server.wait_for_log(&format!(
        "latest 127.0.0.1:{port}: not allowed to send PROXY headers"
    ));
}

#[test]
fn allow_list_serves_only_the_listed_addresses() {
    let server = TestServer::with_config(Config {
        allow: vec![cidr("127.0.0.2/32")],
        ..Config::default()
    });
    let mut outside = connect_from(ip("127.0.0.1"), server.addr);
    assert_closed_without_echo(&mut outside, b"not on the list");
    assert_eq!(server.handle.stats().denied, 1);

    let mut listed = connect_from(ip("127.0.0.2"), server.addr);
    assert_echoes_after(&mut listed, b"", b"on the list");
    let stats = server.stop();
    assert_eq!((stats.denied, stats.accepted), (1, 1), "{stats}");
}

#[test]
fn deny_list_closes_the_listed_addresses_and_wins_over_allow() {
    let server = TestServer::with_config(Config {
        deny: vec![cidr("127.0.0.2/32")],
        ..Config::default()
    });
    let mut listed = connect_from(ip("127.0.0.2"), server.addr);
    assert_closed_without_echo(&mut listed, b"on the list");
    assert_eq!(server.handle.stats().denied, 1);
    let mut outside = connect_from(ip("127.0.0.1"), server.addr);
    assert_echoes_after(&mut outside, b"", b"not on the list");
    let stats = server.stop();
    assert_eq!((stats.denied, stats.accepted), (1, 1), "{stats}");

    let server = TestServer::with_config(Config {
        allow: vec![cidr("127.0.0.0/8")],
        deny: vec![cidr("127.0.0.2/32")],
        ..Config::default()
    });
    let mut both = connect_from(ip("127.0.0.2"), server.addr);
    assert_closed_without_echo(&mut both, b"allowed and denied");
    let mut allowed = connect_from(ip("127.0.0.3"), server.addr);
    assert_echoes_after(&mut allowed, b"", b"allowed only");
    let stats = server.stop();
    assert_eq!((stats.denied, stats.accepted), (1, 1), "{stats}");
}

#[test]
fn access_lists_check_the_address_in_the_proxy_header() {
    let server = TestServer::with_config(Config {
        // The proxy itself, 127.0.0.1, is on neither list.
        allow: vec![cidr("192.0.2.0/24")],
        deny: vec![cidr("192.0.2.66/32")],
        ..proxy_config()
    });
    let frontend = addr(FRONTEND);

    let mut allowed = connect(server.addr);
    assert_echoes_after(&mut allowed, &v1(addr(CLIENT), frontend), b"allowed");

    let mut outside = connect(server.addr);
    let header = v2_proxy(addr("198.51.100.1:1234"), frontend, &[]);
    assert_closed_without_echo(&mut outside, &concat(&header, b"not allowed"));
    assert_eq!(server.handle.stats().denied, 1);

    let mut denied = connect(server.addr);
    let header = v1(addr("192.0.2.66:1234"), frontend);
    assert_closed_without_echo(&mut denied, &concat(&header, b"denied"));
    assert_eq!(server.handle.stats().denied, 2);

    let stats = server.stop();
    assert_eq!((stats.denied, stats.proxy_errors), (2, 0), "{stats}");
}

#[test]
fn allow_and_deny_flags_close_a_denied_client_and_log_why() {
    let server = ServerProcess::start(&[
        "--bind",
        "127.0.0.1",
        "--allow",
        "127.0.0.0/8",
        "--deny",
        "127.0.0.2",
    ]);
    let mut denied = connect_from(ip("127.0.0.2"), server.addr());
    let port = denied.local_addr().unwrap().port();
    assert_closed_without_echo(&mut denied, b"denied");
    server.wait_for_log(&format!(
        "latest 127.0.0.2:{port}: denied by the access lists"
    ));

    let mut allowed = connect_from(ip("127.0.0.1"), server.addr());
    assert_echoes_after(&mut allowed, b"", b"allowed");
}

#[test]
fn environment_sets_max_connections_and_idle_timeout() {
    let idle = Duration::from_millis(400);
    let server = ServerProcess::start_with(&["--bind", "127.0.0.1"], |command| {
        command
            .env("ECHO_SERVER_MAX_CONNECTIONS", "1")
            .env("ECHO_SERVER_IDLE_TIMEOUT", "400ms");
    });
    let mut first = connect(server.addr());
    let last_sent = Instant::now();
    assert_echoes(&mut first, b"first");

    let mut second = connect(server.addr());
    assert_closed_without_echo(&mut second, b"second");
    server.wait_for_log("max connections reached");

    // The first client has been idle since its echo.
    assert!(
        closed_without_data(&mut first),
        "an idle client must be closed"
    );
    let elapsed = last_sent.elapsed();
    assert!(
        elapsed >= idle * 9 / 10,
        "closed after {elapsed:?}, the idle timeout being {idle:?}"
    );
    server.wait_for_log("disconnected: idle timeout");
}

#[test]
fn environment_sets_the_port_and_the_bind_address() {
    // A port free on 127.0.0.2 itself: one free on 127.0.0.1 may be a
    // client's there.
    let port = std::net::TcpListener::bind((Ipv4Addr::new(127, 0, 0, 2), 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.2")
        .port();
    let server = ServerProcess::spawn(
        echo_server()
            .env("ECHO_SERVER_PORT", port.to_string())
            .env("ECHO_SERVER_BIND", "127.0.0.2"),
    );
    let expected = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), port));
    assert_eq!(server.addrs, [expected]);
    let mut stream = connect(expected);
    assert_echoes_after(&mut stream, b"", b"configured from the environment");
}

#[test]
fn environment_sets_proxy_protocol_and_a_list_of_ranges() {
    let server = ServerProcess::start_with(&["--bind", "127.0.0.1"], |command| {
        command
            // A switch takes 1, yes and on as well as true.
            .env("ECHO_SERVER_PROXY_PROTOCOL", "1")
            .env("ECHO_SERVER_DENY", "198.51.100.0/24,192.0.2.66");
    });
    let frontend = addr(FRONTEND);
    let mut allowed = connect(server.addr());
    assert_echoes_after(
        &mut allowed,
        &v1(addr(CLIENT), frontend),
        b"header consumed",
    );
    for source in ["198.51.100.9:1", "192.0.2.66:1"] {
        let mut denied = connect(server.addr());
        assert_closed_without_echo(&mut denied, &concat(&v1(addr(source), frontend), b"no"));
    }

    // `no` leaves the flag off: a header is then just bytes to echo.
    let plain = ServerProcess::start_with(&["--bind", "127.0.0.1"], |command| {
        command.env("ECHO_SERVER_PROXY_PROTOCOL", "no");
    });
    let mut stream = connect(plain.addr());
    let header = v1(addr(CLIENT), frontend);
    assert_echoes_after(&mut stream, b"", &header);
}

#[test]
fn command_line_wins_over_the_environment() {
    let server = ServerProcess::start_with(
        &["--bind", "127.0.0.1", "--max-connections", "5"],
        |command| {
            command.env("ECHO_SERVER_MAX_CONNECTIONS", "1");
        },
    );
    let mut first = connect(server.addr());
    assert_echoes(&mut first, b"first");
    let mut second = connect(server.addr());
    assert_echoes_after(&mut second, b"", b"second");
}

#[test]
fn help_names_the_environment_variable_of_every_server_flag() {
    let finished = run_bounded(echo_server().arg("--help"), b"");
    assert_eq!(finished.code, Some(0), "{finished}");
    for flag in [
        "PORT",
        "BIND",
        "MAX_CONNECTIONS",
        "MAX_CONNECTIONS_PER_IP",
        "IDLE_TIMEOUT",
        "REUSE_PORT",
        "DRAIN_TIMEOUT",
        "PROXY_PROTOCOL",
        "PROXY_FROM",
        "ALLOW",
        "DENY",
    ] {
        let name = format!("[env: ECHO_SERVER_{flag}=");
        assert!(finished.stdout.contains(&name), "no {name} in\n{finished}");
    }
}

#[test]
fn bad_value_in_the_environment_exits_2_naming_the_flag_and_value() {
    for (variable, value, flag) in [
        ("ECHO_SERVER_IDLE_TIMEOUT", "soon", "--idle-timeout"),
        ("ECHO_SERVER_ALLOW", "10.0.0.0/33", "--allow"),
        ("ECHO_SERVER_PORT", "eighty", "--port"),
    ] {
        let finished = run_bounded(echo_server().env(variable, value), b"");
        assert_eq!(finished.code, Some(2), "{variable}={value}\n{finished}");
        assert!(
            finished.stderr.contains(value) && finished.stderr.contains(flag),
            "{variable}={value}\n{finished}"
        );
        assert!(!finished.stderr.contains("panicked"), "{finished}");
    }
}
