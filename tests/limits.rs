//! Connection limits and idle timeouts: how many clients are served at once,
//! in all and per address, what happens to the others, and when a quiet
//! client is closed.

mod common;

use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::num::NonZeroUsize;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    ServerProcess, TestServer, assert_closed_without_echo, assert_echoes, assert_summary_has,
    closed_without_data, connect, connect_from, read_to_eof, wait_until,
};
use echo_server::Config;

/// How soon a client must be closed once the server has a reason to: it
/// closes at once, so this is slack for a loaded machine, and under
/// [`common::IO_TIMEOUT`] so that a client left hanging is told apart from
/// one closed late.
const PROMPTLY: Duration = Duration::from_secs(3);

/// The idle timeout of the in-process servers below: short, so the tests
/// are quick.
const IDLE: Duration = Duration::from_millis(500);

/// Asserts that the server closes `stream` promptly without echoing
/// anything, even though bytes were sent first.
fn assert_refused(stream: &mut TcpStream) {
    assert_closed_without_echo(stream, b"is anybody there?", PROMPTLY);
}

#[test]
fn serves_max_connections_closes_the_next_and_serves_again_once_one_leaves() {
    let server = TestServer::with_config(Config {
        max_connections: NonZeroUsize::new(3),
        ..Config::default()
    });
    let mut served: Vec<TcpStream> = (0..3).map(|_| connect(server.addr)).collect();
    for (i, stream) in served.iter_mut().enumerate() {
        assert_echoes(stream, format!("client {i}").as_bytes());
    }

    let mut fourth = connect(server.addr);
    assert_refused(&mut fourth);
    let stats = server.handle.stats();
    assert_eq!((stats.accepted, stats.rejected, stats.active), (3, 1, 3));

    // The clients being served are not disturbed by the refusal.
    for (i, stream) in served.iter_mut().enumerate() {
        assert_echoes(stream, format!("still client {i}").as_bytes());
    }

    let mut leaving = served.remove(0);
    leaving.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(read_to_eof(&mut leaving).is_empty());
    wait_until("the slot of the client that left to be free", || {
        server.handle.stats().active == 2
    });

    let mut newcomer = connect(server.addr);
    assert_echoes(&mut newcomer, b"a free slot at last");
    // A client is counted once its thread has started, which may be just
    // after it has been served.
    wait_until("the newcomer to be counted", || {
        server.handle.stats().accepted == 4
    });
    let stats = server.handle.stats();
    assert_eq!((stats.rejected, stats.peak), (1, 3));
}

#[test]
fn closes_a_client_over_the_per_ip_limit_but_serves_another_address() {
    let server = TestServer::with_config(Config {
        max_connections_per_ip: NonZeroUsize::new(3),
        ..Config::default()
    });
    let first_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    let other_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let mut served: Vec<TcpStream> = (0..3)
        .map(|_| connect_from(first_ip, server.addr))
        .collect();
    for (i, stream) in served.iter_mut().enumerate() {
        assert_echoes(stream, format!("client {i} from {first_ip}").as_bytes());
    }

    let mut fourth = connect_from(first_ip, server.addr);
    assert_refused(&mut fourth);
    assert_eq!(server.handle.stats().rejected, 1);

    let mut other = connect_from(other_ip, server.addr);
    assert_eq!(other.local_addr().unwrap().ip(), other_ip);
    assert_echoes(&mut other, b"another address, another quota");
    wait_until("the client from the other address to be counted", || {
        server.handle.stats().accepted == 4
    });
    let stats = server.handle.stats();
    assert_eq!((stats.rejected, stats.active), (1, 4));
}

#[test]
fn closes_a_client_idle_for_the_idle_timeout() {
    let server = TestServer::with_config(Config {
        idle_timeout: Some(IDLE),
        ..Config::default()
    });
    let connected = Instant::now();
    let mut client = connect(server.addr);
    assert_echoes(&mut client, b"hello, then silence");

    // The upper bound: closing is a timer firing and a close, which takes
    // milliseconds even on a loaded machine, so PROMPTLY is six times the
    // timeout in slack; a server that does not enforce the timeout leaves
    // the client open, and the read times out instead.
    client.set_read_timeout(Some(IDLE + PROMPTLY)).unwrap();
    assert!(
        closed_without_data(&mut client),
        "an idle client must be closed within {:?}",
        IDLE + PROMPTLY
    );
    let elapsed = connected.elapsed();
    // Loose: timers are coarse, and only "not at once" is in question here.
    // A lower bound, measured from before the server's timer can start: a
    // loaded machine only makes it longer.
    assert!(
        elapsed >= IDLE * 9 / 10,
        "closed after {elapsed:?}, before the idle timeout of {IDLE:?}"
    );
    wait_until("the idle client's slot to be free", || {
        server.handle.stats().active == 0
    });
}

#[test]
fn keeps_a_client_that_sends_more_often_than_the_idle_timeout() {
    // Ten times the interval between messages, so that a client thread
    // slowed down by a loaded machine is not taken for an idle one.
    let idle = Duration::from_secs(1);
    let server = TestServer::with_config(Config {
        idle_timeout: Some(idle),
        ..Config::default()
    });
    let mut client = connect(server.addr);
    let started = Instant::now();
    let mut sent = 0;
    // The pauses are the workload (a client that talks every 100 ms for
    // two and a half idle timeouts), not synchronisation. The timing this
    // relies on is that a client thread woken from its pause gets the CPU
    // within the 900 ms left of the idle timeout, which two busy processes
    // on two cores do not deny it: the scheduler shares a core within
    // milliseconds.
    while started.elapsed() < idle * 5 / 2 {
        assert_echoes(&mut client, format!("message {sent}").as_bytes());
        sent += 1;
        thread::sleep(Duration::from_millis(100));
    }
    assert!(sent >= 3, "only {sent} messages in {:?}", started.elapsed());

    client.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(read_to_eof(&mut client).is_empty());
    let stats = server.stop();
    assert_eq!((stats.accepted, stats.rejected), (1, 0));
}

/// `--idle-timeout 0` cannot be shown to mean "never" in finite time. This
/// shows what can be: the flag parses, a client is not closed at once, and
/// it outlives a client of a server with a short timeout that was idle for
/// less time than it.
#[test]
fn idle_timeout_zero_keeps_a_client_that_a_short_timeout_closes() {
    let never = ServerProcess::start(&["--idle-timeout", "0"]);
    let short = ServerProcess::start(&["--idle-timeout", "500ms"]);
    let mut patient = connect(never.addr());
    assert_echoes(&mut patient, b"no hurry");
    let mut control = connect(short.addr());
    assert_echoes(&mut control, b"in a hurry");

    // `patient` has been idle since before `control` went quiet.
    assert!(
        closed_without_data(&mut control),
        "the short-timeout server must close its idle client"
    );
    short.wait_for_log("idle timeout");

    assert_echoes(&mut patient, b"still here");
    assert!(
        !never.log_text().contains("idle timeout"),
        "log:\n{}",
        never.log_text()
    );
}

#[test]
fn warns_about_a_burst_of_rejections_at_most_once_a_second() {
    const BURST: usize = 200;
    let server = ServerProcess::start(&["--max-connections", "1"]);
    let mut held = connect(server.addr());
    assert_echoes(&mut held, b"the only slot");

    let started = Instant::now();
    for _ in 0..BURST {
        assert_refused(&mut connect(server.addr()));
    }
    let elapsed = started.elapsed();

    // Stopping the server is what makes its log complete.
    server.signal("TERM");
    let (code, log) = server.wait_exit();
    assert_eq!(code, Some(0), "log:\n{log}");
    assert_summary_has(&log, &["1 accepted", &format!("{BURST} rejected")]);
    let warnings = log
        .lines()
        .filter(|line| line.contains("WARN") && line.contains("rejected"))
        .count();
    // One warning at once, then at most one per second of the burst. Every
    // rejection falls within `elapsed` (each refusal was seen before it
    // ended), give or take a warning logged just after its close, which the
    // extra one allows for; a slow machine only lengthens `elapsed` and
    // raises the bound with it.
    let most = 2 + elapsed.as_secs() as usize;
    assert!(
        (1..=most).contains(&warnings),
        "{warnings} rejection warnings for {BURST} rejections in {elapsed:?}; log:\n{log}"
    );
}
