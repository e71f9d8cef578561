//! UDP echo with `--udp`: datagrams back whole, the reflection guard, the
//! counters, and real clients (std's `UdpSocket`, socat, `nc -u`,
//! echo-client, echo-bench).
//!
//! Tests that need socat or netcat skip when they are missing, unless
//! `ECHO_SERVER_REQUIRE_TOOLS` is set (as in CI).

mod common;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::{
    IO_TIMEOUT, ServerProcess, assert_summary_has, echo_bench, echo_client, run_bounded,
    run_bounded_by, tool,
};

/// How long a test waits for a datagram that should come back; one that
/// is dropped on purpose never does, so this also bounds those tests.
const REPLY_WAIT: Duration = Duration::from_millis(500);

/// A server on 127.0.0.1 with UDP beside TCP, and `args`.
fn server(args: &[&str]) -> ServerProcess {
    let mut all = vec!["--bind", "127.0.0.1", "--udp"];
    all.extend_from_slice(args);
    ServerProcess::start(&all)
}

/// A UDP socket on `ip`, any port, with timeouts.
fn socket_on(ip: IpAddr) -> UdpSocket {
    let socket = UdpSocket::bind((ip, 0)).expect("bind a client socket");
    socket.set_read_timeout(Some(REPLY_WAIT)).unwrap();
    socket.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    socket
}

fn localhost() -> IpAddr {
    IpAddr::from(Ipv4Addr::LOCALHOST)
}

/// Sends `datagram` to `server` and returns the reply, if one comes within
/// [`REPLY_WAIT`].
fn exchange(socket: &UdpSocket, server: SocketAddr, datagram: &[u8]) -> Option<Vec<u8>> {
    socket.send_to(datagram, server).expect("send a datagram");
    let mut buffer = vec![0; 65_536];
    match socket.recv_from(&mut buffer) {
        Ok((length, from)) => {
            assert_eq!(from, server, "a reply from the server");
            Some(buffer[..length].to_vec())
        }
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(error) => panic!("receive: {error}"),
    }
}

#[test]
fn one_byte_empty_and_largest_datagrams_come_back_whole() {
    let server = server(&[]);
    let udp = server.udp_addr();
    assert_eq!(udp, SocketAddr::new(localhost(), server.addr().port()));
    assert_eq!(server.endpoints[1], format!("udp:{udp}"));
    let socket = socket_on(localhost());
    let largest = common::random_bytes(65_507);
    for datagram in [&b"x"[..], &b""[..], &largest[..]] {
        let reply = exchange(&socket, udp, datagram).expect("an echo");
        assert!(
            reply == datagram,
            "{} bytes back for {}",
            reply.len(),
            datagram.len()
        );
    }
    let log = server.stop();
    assert_summary_has(&log, &["3 datagrams echoed", "0 dropped"]);
}

#[test]
fn a_listed_source_port_gets_no_answer_and_is_counted() {
    let server = server(&[]);
    let udp = server.udp_addr();
    // Ports of services that answer by themselves, above 1024 so that a
    // test may bind them; any one free will do.
    let blocked = [1900, 5353, 11211]
        .into_iter()
        .find_map(|port| UdpSocket::bind((localhost(), port)).ok())
        .expect("one of 1900, 5353, 11211 is free on 127.0.0.1");
    blocked.set_read_timeout(Some(REPLY_WAIT)).unwrap();
    assert_eq!(exchange(&blocked, udp, b"loop?"), None);
    let ordinary = socket_on(localhost());
    assert_eq!(
        exchange(&ordinary, udp, b"fine").as_deref(),
        Some(&b"fine"[..])
    );
    let log = server.stop();
    assert_summary_has(&log, &["1 datagrams echoed", "1 dropped"]);
}

/// Sends `count` datagrams from `socket` to `server` at once, then counts
/// the replies until none comes for [`REPLY_WAIT`].
fn burst(socket: &UdpSocket, server: SocketAddr, count: usize) -> usize {
    for n in 0..count {
        socket.send_to(&n.to_be_bytes(), server).expect("send");
    }
    let mut buffer = [0; 64];
    let mut answered = 0;
    while socket.recv_from(&mut buffer).is_ok() {
        answered += 1;
    }
    answered
}

#[test]
fn the_rate_limit_answers_about_the_rate_per_source_ip() {
    const RATE: usize = 20;
    // The exemption replaced, so that loopback is limited.
    let server = server(&["--udp-rate", "20", "--udp-rate-exempt", "192.0.2.0/24"]);
    let udp = server.udp_addr();
    let first = socket_on(localhost());
    let answered = burst(&first, udp, 100);
    // A burst of one second's worth, plus what refills while the burst is
    // sent and answered (20 a second): the bound allows two more seconds
    // of that on a slow machine.
    assert!(
        (RATE..=RATE * 3).contains(&answered),
        "{answered} of 100 answered at --udp-rate {RATE}"
    );
    let second = socket_on(IpAddr::from(Ipv4Addr::new(127, 0, 0, 2)));
    let answered_second = burst(&second, udp, RATE);
    assert_eq!(
        answered_second, RATE,
        "another source IP has a bucket of its own"
    );
    let log = server.stop();
    assert!(log.contains("dropped"), "{log}");
    assert!(log.contains("over the rate limit"), "{log}");
}

#[test]
fn loopback_is_exempt_from_the_rate_by_default() {
    let server = server(&["--udp-rate", "5"]);
    let socket = socket_on(localhost());
    assert_eq!(burst(&socket, server.udp_addr(), 50), 50);
}

#[test]
fn deny_applies_to_datagrams() {
    let server = server(&["--deny", "127.0.0.2/32"]);
    let udp = server.udp_addr();
    let denied = socket_on(IpAddr::from(Ipv4Addr::new(127, 0, 0, 2)));
    assert_eq!(exchange(&denied, udp, b"no"), None);
    let served = socket_on(localhost());
    assert_eq!(exchange(&served, udp, b"yes").as_deref(), Some(&b"yes"[..]));
    let log = server.stop();
    assert_summary_has(&log, &["1 datagrams echoed", "1 dropped"]);
}

#[test]
fn a_thousand_source_ports_at_once_are_all_answered() {
    let server = server(&[]);
    let udp = server.udp_addr();
    let sockets: Vec<UdpSocket> = (0..1000).map(|_| socket_on(localhost())).collect();
    let mut answered = 0;
    // In bursts of fifty: loopback drops nothing while the server's
    // receive buffer holds a burst, and fifty small datagrams fit in the
    // default one several times over.
    for burst in sockets.chunks(50) {
        for socket in burst {
            socket.send_to(b"burst", udp).expect("send");
        }
        answered += burst
            .iter()
            .filter(|socket| socket.recv_from(&mut [0; 16]).is_ok())
            .count();
    }
    assert_eq!(answered, 1000);
    let log = server.stop();
    assert_summary_has(&log, &["1000 datagrams echoed", "0 dropped"]);
}

#[test]
fn sigusr1_counts_datagrams() {
    let server = server(&[]);
    let socket = socket_on(localhost());
    assert!(exchange(&socket, server.udp_addr(), b"count me").is_some());
    server.signal("USR1");
    server.wait_for_log("1 datagrams echoed, 0 dropped");
}

#[test]
fn socat_and_netcat_get_their_datagram_back() {
    let server = server(&[]);
    let udp = server.udp_addr();
    if let Some(socat) = tool("socat") {
        // -t: how long socat waits for the echo after its input ends.
        let finished = run_bounded(
            Command::new(socat).args(["-t", "2", "-", &format!("UDP:{udp}")]),
            b"hello socat\n",
        );
        assert_eq!(finished.code, Some(0), "{finished}");
        assert_eq!(finished.stdout, "hello socat\n");
    }
    if let Some(nc) = tool("nc") {
        // -w: how long nc waits before it quits once its input ends.
        let finished = run_bounded(
            Command::new(nc).args([
                "-u",
                "-w",
                "2",
                &udp.ip().to_string(),
                &udp.port().to_string(),
            ]),
            b"hello nc\n",
        );
        assert_eq!(finished.stdout, "hello nc\n", "{finished}");
    }
}

#[test]
fn echo_client_and_echo_bench_over_udp() {
    let server = server(&[]);
    let port = server.udp_addr().port().to_string();
    let client = run_bounded(
        echo_client().args([
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--udp",
            "-n",
            "3",
            "ping",
        ]),
        b"",
    );
    assert_eq!(client.code, Some(0), "{client}");
    assert_eq!(
        client.stdout.matches("Got reply from server: ping").count(),
        3
    );

    let bench = run_bounded_by(
        echo_bench().args([
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--udp",
            "-c",
            "4",
            "-d",
            "1s",
            "--json",
        ]),
        b"",
        IO_TIMEOUT * 2,
    );
    assert_eq!(bench.code, Some(0), "{bench}");
    let report: serde_json::Value = serde_json::from_str(&bench.stdout).expect("JSON");
    assert_eq!(report["lost"], 0, "{bench}");
    assert!(report["messages"].as_u64().unwrap() > 0, "{bench}");
}

#[test]
fn echo_bench_over_udp_counts_losses_and_exits_1() {
    // Loopback limited to 5 datagrams a second: most of a fast run is
    // dropped, and echo-bench must see it as lost.
    let server = server(&["--udp-rate", "5", "--udp-rate-exempt", "192.0.2.0/24"]);
    let port = server.udp_addr().port().to_string();
    let bench = run_bounded_by(
        echo_bench().args([
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--udp",
            "-c",
            "2",
            "-d",
            "2s",
            "--json",
        ]),
        b"",
        IO_TIMEOUT * 2,
    );
    assert_eq!(bench.code, Some(1), "{bench}");
    let report: serde_json::Value = serde_json::from_str(&bench.stdout).expect("JSON");
    assert!(report["lost"].as_u64().unwrap() > 0, "{bench}");
}
