//! Unix stream sockets: `--unix PATH` and `--unix @NAME`, served like TCP
//! clients, through std's `UnixStream` and through socat and `nc -U`.
//!
//! Tests that need socat or netcat skip when they are missing, unless
//! `ECHO_SERVER_REQUIRE_TOOLS` is set (as in CI).

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener, UnixStream};
use std::path::Path;
use std::process::{self, Command};
use std::thread;

use common::{
    IO_TIMEOUT, ServerProcess, TempDir, echo_server, random_bytes, run_bounded, summary_line, tool,
};

/// `echo-server ARGS`, waited for until it listens.
fn server(args: &[&str]) -> ServerProcess {
    ServerProcess::spawn(echo_server().args(args))
}

/// A connection to the socket at `path`, with timeouts.
fn connect(path: &Path) -> UnixStream {
    let stream = UnixStream::connect(path)
        .unwrap_or_else(|error| panic!("connect to {}: {error}", path.display()));
    with_timeouts(stream)
}

fn with_timeouts(stream: UnixStream) -> UnixStream {
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

fn assert_echoes(stream: &mut UnixStream, message: &[u8]) {
    stream.write_all(message).expect("send to the server");
    let mut reply = vec![0; message.len()];
    stream.read_exact(&mut reply).expect("read the echo");
    assert_eq!(reply, message);
}

/// Whether the server closed `stream` without sending anything.
fn closed_without_data(stream: &mut UnixStream) -> bool {
    matches!(stream.read(&mut [0; 64]), Ok(0))
}

/// Sends `message` from a thread of its own, then shuts the write side;
/// returns everything read until EOF.
fn send_all_then_read_to_eof(stream: UnixStream, message: Vec<u8>) -> Vec<u8> {
    let mut writer = stream.try_clone().expect("clone the stream");
    let sending = thread::spawn(move || {
        writer.write_all(&message).expect("send everything");
        writer.shutdown(Shutdown::Write).expect("half-close");
    });
    let mut received = Vec::new();
    let mut reader = stream;
    reader.read_to_end(&mut received).expect("read until EOF");
    sending.join().expect("the writer does not panic");
    received
}

#[test]
fn echoes_a_mebibyte_exactly_and_half_closes_after_it() {
    let dir = TempDir::new("unix");
    let path = dir.path("echo.sock");
    let server = server(&["--unix", path.to_str().unwrap()]);
    let message = random_bytes(1024 * 1024);
    let received = send_all_then_read_to_eof(connect(&path), message.clone());
    assert!(received == message, "{} bytes back", received.len());
    drop(server);
}

#[test]
fn unix_alone_serves_only_the_socket_and_with_a_port_both() {
    let dir = TempDir::new("unix");
    let path = dir.path("alone.sock");
    let alone = server(&["--unix", path.to_str().unwrap()]);
    assert_eq!(alone.endpoints, [format!("unix:{}", path.display())]);
    drop(alone);

    let both = server(&[
        "--unix",
        path.to_str().unwrap(),
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
    ]);
    assert_eq!(both.endpoints.len(), 2, "{:?}", both.endpoints);
    assert_eq!(both.endpoints[1], format!("unix:{}", path.display()));
    let mut tcp = common::connect(both.addr());
    common::assert_echoes(&mut tcp, b"over TCP");
    assert_echoes(&mut connect(&path), b"over Unix");
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let dir = TempDir::new("unix");
    let path = dir.path("stale.sock");
    // A listener dropped without removing its file: nothing answers there.
    drop(UnixListener::bind(&path).unwrap());
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_socket());
    let _server = server(&["--unix", path.to_str().unwrap()]);
    assert_echoes(&mut connect(&path), b"served");
}

#[test]
fn a_live_socket_is_in_use_and_is_not_touched() {
    let dir = TempDir::new("unix");
    let path = dir.path("live.sock");
    let live = UnixListener::bind(&path).unwrap();
    let finished = run_bounded(echo_server().args(["--unix", path.to_str().unwrap()]), b"");
    assert_eq!(finished.code, Some(1), "{finished}");
    assert_eq!(
        finished.stderr.trim(),
        format!(
            "error: cannot listen on unix:{}: Address already in use",
            path.display()
        )
    );
    // The other server still has its socket.
    let _client = UnixStream::connect(&path).expect("the live socket still answers");
    drop(live);
}

#[test]
fn a_file_that_is_not_a_socket_is_refused_and_left_alone() {
    let dir = TempDir::new("unix");
    let path = dir.path("precious.txt");
    fs::write(&path, b"keep me").unwrap();
    let finished = run_bounded(echo_server().args(["--unix", path.to_str().unwrap()]), b"");
    assert_eq!(finished.code, Some(1), "{finished}");
    assert!(
        finished.stderr.starts_with("error: cannot listen on unix:"),
        "{finished}"
    );
    assert!(finished.stderr.contains("not a socket"), "{finished}");
    assert_eq!(fs::read(&path).unwrap(), b"keep me");
}

#[test]
fn the_socket_file_is_removed_after_sigterm() {
    let dir = TempDir::new("unix");
    let path = dir.path("gone.sock");
    let server = server(&["--unix", path.to_str().unwrap()]);
    assert!(path.exists());
    server.signal("TERM");
    let (code, log) = server.wait_exit();
    assert_eq!(code, Some(0), "{log}");
    assert!(!path.exists(), "the socket file is still there");
}

#[test]
fn the_socket_file_gets_the_mode_asked_for() {
    let dir = TempDir::new("unix");
    let path = dir.path("mode.sock");
    let _server = server(&["--unix", path.to_str().unwrap(), "--unix-mode", "600"]);
    let mode = fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o600, "{mode:o}");
}

#[test]
fn serves_an_abstract_name() {
    let name = format!("echo-server-test-{}", process::id());
    let _server = server(&["--unix", &format!("@{name}")]);
    let addr = UnixAddr::from_abstract_name(name.as_bytes()).unwrap();
    let mut stream = with_timeouts(UnixStream::connect_addr(&addr).unwrap());
    assert_echoes(&mut stream, b"abstract");
}

#[test]
fn max_connections_holds_for_unix_clients() {
    let dir = TempDir::new("unix");
    let path = dir.path("full.sock");
    let _server = server(&["--unix", path.to_str().unwrap(), "--max-connections", "1"]);
    let mut first = connect(&path);
    assert_echoes(&mut first, b"first");
    let mut second = connect(&path);
    assert!(closed_without_data(&mut second));
    drop(first);
}

#[test]
fn the_log_names_the_socket_and_the_peers_pid_and_uid() {
    let dir = TempDir::new("unix");
    let path = dir.path("who.sock");
    let server = server(&["--unix", path.to_str().unwrap()]);
    let mut client = connect(&path);
    assert_echoes(&mut client, b"who am I");
    // This process made the directory: its owner is this process's uid.
    let uid = fs::metadata(&dir.0).unwrap().uid();
    server.wait_for_log(&format!(
        "unix:{} pid {} uid {uid} connected",
        path.display(),
        process::id()
    ));
}

#[test]
fn clients_that_connect_and_vanish_do_not_stop_the_others() {
    let dir = TempDir::new("unix");
    let path = dir.path("vanish.sock");
    let server = server(&["--unix", path.to_str().unwrap()]);
    for _ in 0..100 {
        drop(UnixStream::connect(&path).unwrap());
    }
    let mut stays = connect(&path);
    assert_echoes(&mut stays, b"still served");
    server.signal("TERM");
    let (code, log) = server.wait_exit();
    assert_eq!(code, Some(0), "{log}");
    assert!(summary_line(&log).contains("101 accepted"), "{log}");
}

#[test]
fn bad_unix_arguments_are_usage_errors_and_a_missing_directory_a_runtime_one() {
    let long = format!("/tmp/{}", "a".repeat(200));
    for args in [
        vec!["--unix", long.as_str()],
        vec!["--unix", "/tmp/x.sock", "--unix-mode", "rw-r--r--"],
        vec!["--unix", "/tmp/x.sock", "--unix-mode", "999"],
    ] {
        let finished = run_bounded(echo_server().args(&args), b"");
        assert_eq!(finished.code, Some(2), "{finished}");
        assert!(finished.stderr.contains("error:"), "{finished}");
    }
    let finished = run_bounded(
        echo_server().args(["--unix", "/nonexistent-dir-for-echo-server/s.sock"]),
        b"",
    );
    assert_eq!(finished.code, Some(1), "{finished}");
    assert_eq!(
        finished.stderr.trim(),
        "error: cannot listen on unix:/nonexistent-dir-for-echo-server/s.sock: No such file or directory"
    );
}

#[test]
fn socat_and_netcat_get_their_bytes_back() {
    let dir = TempDir::new("unix");
    let path = dir.path("tools.sock");
    let _server = server(&["--unix", path.to_str().unwrap()]);
    let input = b"line one\nline two\n";
    if let Some(socat) = tool("socat") {
        let finished = run_bounded(
            Command::new(socat)
                .arg("-")
                .arg(format!("UNIX-CONNECT:{}", path.display())),
            input,
        );
        assert_eq!(finished.code, Some(0), "{finished}");
        assert_eq!(finished.stdout.as_bytes(), input);
    }
    if let Some(nc) = tool("nc") {
        // -N: shut the write side down at the end of the input, so that
        // the server's EOF ends nc.
        let finished = run_bounded(Command::new(nc).arg("-N").arg("-U").arg(&path), input);
        assert_eq!(finished.code, Some(0), "{finished}");
        assert_eq!(finished.stdout.as_bytes(), input);
    }
}

#[test]
fn environment_sets_unix_sockets_their_mode_and_udp() {
    let dir = TempDir::new("unix");
    let path = dir.path("env.sock");
    let server = ServerProcess::spawn(
        echo_server()
            .env("ECHO_SERVER_UNIX", &path)
            .env("ECHO_SERVER_UNIX_MODE", "600")
            .env("ECHO_SERVER_PORT", "0")
            .env("ECHO_SERVER_BIND", "127.0.0.1")
            .env("ECHO_SERVER_UDP", "yes")
            .env("ECHO_SERVER_UDP_RATE", "0"),
    );
    let tcp = server.addr();
    assert_eq!(
        server.endpoints,
        [
            tcp.to_string(),
            format!("unix:{}", path.display()),
            format!("udp:{tcp}")
        ]
    );
    let mode = fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o600, "{mode:o}");
    assert_echoes(&mut connect(&path), b"from the environment");
}
