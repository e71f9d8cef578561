//! The client side: the library's `Client`, and the `echo-client` binary
//! against a real server and against servers that misbehave, over TCP, Unix
//! stream sockets and UDP.

mod common;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, UdpSocket};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{self as unix, UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::TestServer;
use echo_server::Client;
use socket2::{Domain, SockAddr, Socket, Type};

/// How long the client tests let a client wait for a reply that will not
/// come: short, so that a test of a timeout takes a fraction of a second.
const SHORT_TIMEOUT: Duration = Duration::from_millis(300);

/// Runs `echo-client ARGS` with `input` on its standard input.
fn run_client(args: &[&str], input: &[u8]) -> common::Finished {
    common::run_bounded(common::echo_client().args(args), input)
}

/// Runs `echo-client --host IP --port PORT ARGS` for the server at `addr`,
/// with `input` on its standard input.
fn run_client_to(addr: SocketAddr, args: &[&str], input: &[u8]) -> common::Finished {
    let (host, port) = (addr.ip().to_string(), addr.port().to_string());
    let mut command = common::echo_client();
    command.args(["--host", &host, "--port", &port]).args(args);
    common::run_bounded(&mut command, input)
}

/// Asserts that `finished` printed `reply` as the server's reply `times`
/// times, nothing on standard error, and exited 0.
fn assert_replied(finished: &common::Finished, reply: &str, times: usize) {
    assert_eq!(finished.code, Some(0), "{finished}");
    let line = format!("Got reply from server: {reply}\n");
    assert_eq!(finished.stdout, line.repeat(times), "{finished}");
    assert_eq!(finished.stderr, "", "{finished}");
}

/// A path for one test's Unix socket in the temporary directory, unique to
/// the test and this process; the file is removed on drop.
struct SocketFile(PathBuf);

impl SocketFile {
    /// The path for the test `name`; nothing is created yet.
    fn new(name: &str) -> SocketFile {
        let file = format!("echo-client-{}-{name}.sock", std::process::id());
        SocketFile(std::env::temp_dir().join(file))
    }

    /// The path as `Client::connect_unix` and `--unix` take it.
    fn as_str(&self) -> &str {
        self.0
            .to_str()
            .expect("the temporary directory has a UTF-8 path")
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A Linux abstract socket name (`@…`) for the test `name`, unique to the
/// test and this process.
fn abstract_name(name: &str) -> String {
    format!("@echo-client-{}-{name}", std::process::id())
}

/// Echoes every client of `listener` on a thread of its own: every byte
/// back, then EOF after the client's. The accept thread is left behind when
/// the test ends; a client's thread ends when its client closes or its
/// socket times out.
fn serve_unix_echo(listener: UnixListener) {
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            thread::spawn(move || echo_unix(&stream));
        }
    });
}

/// Echoes `stream` until its EOF, then closes the write side.
fn echo_unix(stream: &UnixStream) -> io::Result<()> {
    stream.set_read_timeout(Some(common::IO_TIMEOUT))?;
    stream.set_write_timeout(Some(common::IO_TIMEOUT))?;
    io::copy(&mut &*stream, &mut &*stream)?;
    stream.shutdown(Shutdown::Write)
}

/// A UDP socket on a free port of 127.0.0.1 with read and write timeouts.
/// Kept and never read, it is a server that does not answer.
fn udp_socket() -> UdpSocket {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a UDP socket");
    socket.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    socket.set_write_timeout(Some(common::IO_TIMEOUT)).unwrap();
    socket
}

/// A UDP echo server on 127.0.0.1: each datagram goes back whole to its
/// source, after it has been passed to the returned channel. Its thread
/// ends after `IO_TIMEOUT` without a datagram.
fn udp_echo_server() -> (SocketAddr, mpsc::Receiver<Vec<u8>>) {
    let socket = udp_socket();
    let addr = socket.local_addr().expect("a bound socket has an address");
    let (sender, received) = mpsc::channel();
    thread::spawn(move || {
        let mut buffer = vec![0; 64 * 1024];
        while let Ok((length, source)) = socket.recv_from(&mut buffer) {
            let _ = sender.send(buffer[..length].to_vec());
            if socket.send_to(&buffer[..length], source).is_err() {
                break;
            }
        }
    });
    (addr, received)
}

/// Every datagram `server` has passed on so far.
fn datagrams(server: &mpsc::Receiver<Vec<u8>>) -> Vec<Vec<u8>> {
    server.try_iter().collect()
}

#[test]
fn client_send_returns_exactly_the_bytes_sent_for_a_message_larger_than_one_read() {
    let server = TestServer::start();
    let message = common::random_bytes(256 * 1024);
    let mut client = Client::connect(server.addr, common::IO_TIMEOUT).expect("connect");
    assert_eq!(client.peer(), server.addr.to_string());

    let reply = client.send(&message).expect("send");

    assert_eq!(reply.len(), message.len());
    assert!(reply == message, "the reply differs from the message");
    assert_eq!(client.send(b"and then").expect("send again"), b"and then");
}

#[test]
fn client_send_returns_a_message_larger_than_the_socket_buffers_without_deadlock() {
    // Loopback buffers a few MiB in flight; writing 32 MiB before reading
    // any of it back would block both ends until the timeout.
    let server = TestServer::start();
    let message = common::random_bytes(32 * 1024 * 1024);
    let mut client = Client::connect(server.addr, Duration::from_secs(5)).expect("connect");

    let reply = client.send(&message).expect("send 32 MiB");

    assert!(reply == message, "the reply differs from the message");
}

#[test]
fn client_close_succeeds_after_the_server_closes_its_side() {
    let server = TestServer::start();
    let mut client = Client::connect(server.addr, common::IO_TIMEOUT).expect("connect");
    assert_eq!(client.send(b"Hello, server").unwrap(), b"Hello, server");
    client.close().expect("close");
    common::wait_until("the server to count the client gone", || {
        server.handle.stats().active == 0
    });
    assert_eq!(server.handle.stats().bytes_echoed, 13);
}

#[test]
fn client_close_fails_when_the_server_sends_unasked_bytes() {
    let addr = common::serve_one(|mut stream| {
        let _ = stream.write_all(b"surprise");
        let mut sink = [0; 64];
        while matches!(stream.read(&mut sink), Ok(1..)) {}
    });
    let client = Client::connect(addr, common::IO_TIMEOUT).expect("connect");
    let error = client.close().expect_err("unasked bytes");
    assert_eq!(error.kind(), ErrorKind::InvalidData, "{error}");
}

#[test]
fn client_connect_to_a_closed_port_is_connection_refused() {
    let addr = common::closed_port();
    let error = Client::connect(addr, common::IO_TIMEOUT).expect_err("nothing listens");
    assert_eq!(error.kind(), ErrorKind::ConnectionRefused, "{error}");
    assert_eq!(
        error.to_string(),
        format!("cannot connect to {addr}: connection refused")
    );
}

#[test]
fn client_send_to_a_silent_server_times_out() {
    let addr = common::silent_server();
    let mut client = Client::connect(addr, SHORT_TIMEOUT).expect("connect");
    let started = Instant::now();
    let error = client.send(b"anyone there?").expect_err("no reply");
    let elapsed = started.elapsed();
    assert_eq!(error.kind(), ErrorKind::TimedOut, "{error}");
    assert!(error.to_string().contains(&addr.to_string()), "{error}");
    // Half the timeout: enough to tell a wait from an immediate failure,
    // whatever rounding the kernel's timer does. A lower bound: a loaded
    // machine only makes the wait longer.
    assert!(elapsed >= SHORT_TIMEOUT / 2, "{elapsed:?}");
    // Over thirty times the timeout, so no load makes it fail; a client
    // without the timeout waits until the silent server's own read timeout
    // of IO_TIMEOUT closes the connection, and fails the TimedOut check.
    assert!(elapsed < common::IO_TIMEOUT, "{elapsed:?}");
}

#[test]
fn client_send_fails_when_the_server_closes_before_replying_in_full() {
    let addr = common::serve_one(|mut stream| {
        let mut buffer = [0; 64];
        let _ = stream.read(&mut buffer);
        let _ = stream.write_all(b"half");
    });
    let mut client = Client::connect(addr, common::IO_TIMEOUT).expect("connect");
    let error = client.send(b"a whole message").expect_err("short reply");
    assert_eq!(error.kind(), ErrorKind::UnexpectedEof, "{error}");
}

#[test]
fn echo_client_prints_each_reply_and_exits_0() {
    let server = TestServer::start();
    let port = server.addr.port().to_string();

    let finished = run_client(
        &[
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "-n",
            "3",
            "Hello, server",
        ],
        b"",
    );

    assert_replied(&finished, "Hello, server", 3);
    let stats = server.stop();
    assert_eq!((stats.accepted, stats.bytes_echoed), (1, 3 * 13));
}

#[test]
fn echo_client_sends_each_line_of_stdin_and_prints_its_reply() {
    let server = TestServer::start();
    let port = server.addr.port().to_string();

    let finished = run_client(
        &["--host", "127.0.0.1", "--port", &port],
        b"first line\nsecond line\n",
    );

    assert_eq!(finished.code, Some(0), "{finished}");
    assert_eq!(
        finished.stdout, "Got reply from server: first line\nGot reply from server: second line\n",
        "{finished}"
    );
    // The newline of each line is sent too.
    assert_eq!(server.stop().bytes_echoed, 23);
}

#[test]
fn echo_client_exits_1_when_a_reply_differs() {
    let addr = common::corrupting_server();
    let port = addr.port().to_string();

    let finished = run_client(&["--host", "127.0.0.1", "--port", &port, "hello"], b"");

    assert_eq!(finished.code, Some(1), "{finished}");
    assert!(finished.stderr.starts_with("error: "), "{finished}");
    assert!(finished.stderr.contains("differs"), "{finished}");
    assert!(finished.stderr.contains(&addr.to_string()), "{finished}");
}

#[test]
fn echo_client_exits_1_naming_the_address_when_the_connection_is_refused() {
    let addr = common::closed_port();
    let port = addr.port().to_string();

    let finished = run_client(&["--host", "127.0.0.1", "--port", &port, "hello"], b"");

    assert_eq!(finished.code, Some(1), "{finished}");
    assert!(finished.stderr.contains(&addr.to_string()), "{finished}");
    assert!(finished.stderr.contains("connection refused"), "{finished}");
    assert_eq!(finished.stdout, "", "{finished}");
}

#[test]
fn echo_client_exits_1_naming_a_host_that_does_not_resolve() {
    // Names under `.invalid` never resolve (RFC 6761).
    let finished = run_client(&["--host", "no-such-host.invalid", "hello"], b"");

    assert_eq!(finished.code, Some(1), "{finished}");
    assert!(
        finished
            .stderr
            .starts_with("error: cannot resolve no-such-host.invalid: "),
        "{finished}"
    );
}

#[test]
fn echo_client_exits_1_when_no_reply_comes_within_the_timeout() {
    let addr = common::silent_server();
    let port = addr.port().to_string();

    let finished = run_client(
        &[
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--timeout",
            "300ms",
            "hello",
        ],
        b"",
    );

    assert_eq!(finished.code, Some(1), "{finished}");
    assert!(finished.stderr.contains("no reply"), "{finished}");
    assert!(finished.stderr.contains(&addr.to_string()), "{finished}");
    assert_eq!(finished.stdout, "", "{finished}");
}

#[test]
fn client_over_unix_returns_a_mebibyte_exactly_and_closes() {
    let file = SocketFile::new("mebibyte");
    serve_unix_echo(UnixListener::bind(&file.0).expect("bind a Unix socket"));
    let message = common::random_bytes(1024 * 1024);
    let mut client = Client::connect_unix(file.as_str(), common::IO_TIMEOUT).expect("connect");
    assert_eq!(client.peer(), format!("unix:{}", file.as_str()));

    let reply = client.send(&message).expect("send 1 MiB");

    assert!(reply == message, "the reply differs from the message");
    client.close().expect("close");
}

#[test]
fn client_over_an_abstract_unix_name_echoes_and_closes() {
    let name = abstract_name("abstract");
    let address = unix::SocketAddr::from_abstract_name(&name[1..]).expect("a short name");
    serve_unix_echo(UnixListener::bind_addr(&address).expect("bind an abstract socket"));
    let mut client = Client::connect_unix(&name, common::IO_TIMEOUT).expect("connect");
    assert_eq!(client.peer(), format!("unix:{name}"));

    assert_eq!(
        client.send(b"Hello, server").expect("send"),
        b"Hello, server"
    );
    client.close().expect("close");
}

#[test]
fn client_connect_unix_to_a_missing_path_fails_naming_it() {
    let file = SocketFile::new("missing");

    let error = Client::connect_unix(file.as_str(), common::IO_TIMEOUT).expect_err("no socket");

    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    assert_eq!(
        error.to_string(),
        format!(
            "cannot connect to unix:{}: no such file or directory",
            file.as_str()
        )
    );
}

#[test]
fn client_connect_unix_times_out_while_the_backlog_is_full() {
    // A backlog of 0 holds one connection nobody accepts; Linux makes the
    // next connect wait for room.
    let file = SocketFile::new("full-backlog");
    let listener = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
    listener
        .bind(&SockAddr::unix(&file.0).unwrap())
        .expect("bind a Unix socket");
    listener.listen(0).unwrap();
    let queued = UnixStream::connect(&file.0).expect("the one connection the backlog holds");
    queued.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    let path = file.as_str().to_owned();

    let connected = common::within(common::IO_TIMEOUT, move || {
        Client::connect_unix(&path, SHORT_TIMEOUT).map(drop)
    });

    let error = connected
        .expect("connect_unix returns within its timeout")
        .expect_err("no room in the backlog");
    assert_eq!(error.kind(), ErrorKind::TimedOut, "{error}");
    assert!(error.to_string().contains(file.as_str()), "{error}");
}

#[test]
fn client_over_udp_returns_one_byte_an_empty_datagram_and_the_largest_each_as_one_datagram() {
    let (addr, server) = udp_echo_server();
    let mut client = Client::connect_udp(addr, common::IO_TIMEOUT).expect("set up UDP");
    assert_eq!(client.peer(), format!("udp:{addr}"));
    let largest = common::random_bytes(Client::MAX_DATAGRAM);
    let messages = [b"x".to_vec(), Vec::new(), largest];

    for message in &messages {
        let reply = client.send(message).expect("send a datagram");
        assert!(
            reply == *message,
            "the echo of {} bytes differs",
            message.len()
        );
    }

    assert!(datagrams(&server) == messages, "not one datagram a message");
    client.close().expect("close does nothing over UDP");
}

#[test]
fn client_over_udp_refuses_a_message_longer_than_a_datagram() {
    let silent = udp_socket();
    let addr = silent.local_addr().unwrap();
    let mut client = Client::connect_udp(addr, common::IO_TIMEOUT).expect("set up UDP");

    let error = client
        .send(&vec![0; Client::MAX_DATAGRAM + 1])
        .expect_err("too long for a datagram");

    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
    assert!(error.to_string().contains("65508 bytes"), "{error}");
}

#[test]
fn client_over_udp_to_a_silent_socket_times_out() {
    let silent = udp_socket();
    let addr = silent.local_addr().unwrap();
    let mut client = Client::connect_udp(addr, SHORT_TIMEOUT).expect("set up UDP");

    // On a thread of its own: a client without the timeout waits for ever.
    let sent = common::within(common::IO_TIMEOUT, move || {
        let started = Instant::now();
        (client.send(b"anyone there?"), started.elapsed())
    });

    let (result, elapsed) = sent.expect("send returns within the timeout");
    let error = result.expect_err("no reply");
    assert_eq!(error.kind(), ErrorKind::TimedOut, "{error}");
    assert_eq!(
        error.to_string(),
        format!("no reply from udp:{addr} within 300ms")
    );
    // A lower bound only, as in client_send_to_a_silent_server_times_out.
    assert!(elapsed >= SHORT_TIMEOUT / 2, "{elapsed:?}");
}

#[test]
fn echo_client_over_unix_prints_each_reply_and_exits_0() {
    let file = SocketFile::new("binary");
    serve_unix_echo(UnixListener::bind(&file.0).expect("bind a Unix socket"));

    let finished = run_client(&["--unix", file.as_str(), "-n", "2", "Hello, server"], b"");

    assert_replied(&finished, "Hello, server", 2);
}

#[test]
fn echo_client_exits_1_naming_a_unix_socket_that_is_not_there() {
    let file = SocketFile::new("binary-missing");

    let finished = run_client(&["--unix", file.as_str(), "hello"], b"");

    assert_eq!(finished.code, Some(1), "{finished}");
    assert_eq!(
        finished.stderr,
        format!(
            "error: cannot connect to unix:{}: no such file or directory\n",
            file.as_str()
        ),
        "{finished}"
    );
}

#[test]
fn echo_client_with_unix_and_port_is_a_usage_error() {
    let file = SocketFile::new("binary-conflict");

    let finished = run_client(&["--unix", file.as_str(), "--port", "8000", "hello"], b"");

    assert_eq!(finished.code, Some(2), "{finished}");
    assert!(
        finished.stderr.contains("cannot be used with"),
        "{finished}"
    );
    assert_eq!(finished.stdout, "", "{finished}");
}

#[test]
fn echo_client_over_udp_prints_each_reply_and_exits_0() {
    let (addr, server) = udp_echo_server();

    let finished = run_client_to(addr, &["--udp", "-n", "2", "hello"], b"");

    assert_replied(&finished, "hello", 2);
    assert_eq!(datagrams(&server), [b"hello", b"hello"]);
}

#[test]
fn echo_client_over_udp_sends_each_line_of_stdin_as_one_datagram() {
    let (addr, server) = udp_echo_server();

    let finished = run_client_to(addr, &["--udp"], b"first line\nsecond line\n");

    assert_eq!(finished.code, Some(0), "{finished}");
    assert_eq!(
        finished.stdout, "Got reply from server: first line\nGot reply from server: second line\n",
        "{finished}"
    );
    assert_eq!(
        datagrams(&server),
        [b"first line\n".to_vec(), b"second line\n".to_vec()]
    );
}

#[test]
fn echo_client_over_udp_exits_1_when_no_reply_comes_within_the_timeout() {
    let silent = udp_socket();
    let addr = silent.local_addr().unwrap();

    let finished = run_client_to(addr, &["--udp", "--timeout", "300ms", "hello"], b"");

    assert_eq!(finished.code, Some(1), "{finished}");
    assert_eq!(
        finished.stderr,
        format!("error: no reply from udp:{addr} within 300ms\n"),
        "{finished}"
    );
    assert_eq!(finished.stdout, "", "{finished}");
}

#[test]
fn echo_client_over_udp_with_a_message_longer_than_a_datagram_is_a_usage_error() {
    let silent = udp_socket();
    let too_long = "x".repeat(Client::MAX_DATAGRAM + 1);

    let finished = run_client_to(silent.local_addr().unwrap(), &["--udp", &too_long], b"");

    assert_eq!(finished.code, Some(2), "{finished}");
    assert!(finished.stderr.contains("65508 bytes"), "{finished}");
    assert_eq!(finished.stdout, "", "{finished}");
}
