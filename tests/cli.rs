//! The `echo-server` command line: the `Listening on` lines, bind defaults,
//! exit codes, and what the log says about each client.

mod common;

use std::io::Write;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener};

use common::ServerProcess;

/// Connects to `addr`, checks one echo, closes.
fn assert_serves(addr: SocketAddr) {
    let mut stream = common::connect(addr);
    assert_eq!(
        common::round_trip(&mut stream, b"Hello, server"),
        b"Hello, server",
        "echo from {addr}"
    );
}

/// Runs `echo-server ARGS` to completion.
fn run_server(args: &[&str]) -> common::Finished {
    common::run_bounded(common::echo_server().args(args), b"")
}

#[test]
fn prints_listening_line_with_the_chosen_port_for_port_0() {
    let server = ServerProcess::start(&["--bind", "127.0.0.1"]);
    assert_eq!(server.addrs.len(), 1, "{:?}", server.addrs);
    let addr = server.addr();
    assert_eq!(addr.ip(), Ipv4Addr::LOCALHOST);
    assert_ne!(addr.port(), 0, "the port actually bound, not 0");
    assert_serves(addr);
}

#[test]
fn binds_loopback_addresses_only_by_default() {
    let server = ServerProcess::start(&[]);
    for addr in &server.addrs {
        assert!(addr.ip().is_loopback(), "listening on {addr}");
        assert_eq!(addr.port(), server.addr().port(), "one port for all");
    }
    assert_serves(server.addr());
}

#[test]
fn binds_every_interface_when_asked_and_serves_loopback() {
    let server = ServerProcess::start(&["--bind", "0.0.0.0"]);
    assert_eq!(server.addrs.len(), 1, "{:?}", server.addrs);
    let addr = server.addr();
    assert_eq!(addr.ip(), Ipv4Addr::UNSPECIFIED);
    assert_ne!(addr.port(), 0);
    assert_serves(SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port())));
}

#[test]
fn help_exits_0_and_describes_the_options() {
    for flag in ["--help", "-h"] {
        let finished = run_server(&[flag]);
        assert_eq!(finished.code, Some(0), "{finished}");
        for option in ["--port", "--bind", "--idle-timeout", "--max-connections"] {
            assert!(finished.stdout.contains(option), "{option}\n{finished}");
        }
    }
}

#[test]
fn version_exits_0_and_prints_the_version() {
    for flag in ["--version", "-V"] {
        let finished = run_server(&[flag]);
        assert_eq!(finished.code, Some(0), "{finished}");
        assert_eq!(
            finished.stdout.trim(),
            format!("echo-server {}", env!("CARGO_PKG_VERSION")),
            "{finished}"
        );
    }
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    for args in [
        &["--frobnicate"][..],
        &["--port", "notanumber"],
        &["--port", "70000"],
        &["--idle-timeout", "bogus"],
    ] {
        let finished = run_server(args);
        assert_eq!(finished.code, Some(2), "{finished}");
        assert!(finished.stderr.starts_with("error: "), "{finished}");
        let culprit = args[args.len() - 1];
        assert!(
            finished.stderr.contains(culprit),
            "names {culprit}\n{finished}"
        );
        assert!(!finished.stdout.contains("Listening"), "{finished}");
    }
}

#[test]
fn port_in_use_exits_1_naming_the_address() {
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    let port = taken.local_addr().unwrap().port().to_string();

    let finished = run_server(&["--bind", "127.0.0.1", "--port", &port]);

    assert_eq!(finished.code, Some(1), "{finished}");
    let message = format!("error: cannot listen on 127.0.0.1:{port}: Address already in use");
    assert!(finished.stderr.contains(&message), "{message}\n{finished}");
    assert!(!finished.stderr.contains("panicked"), "{finished}");
    assert_eq!(finished.stdout, "", "{finished}");
}

#[test]
fn logs_the_peer_on_connect_and_a_summary_with_bytes_and_reason_on_close() {
    let server = ServerProcess::start_with(&["--bind", "127.0.0.1"], |command| {
        command.env("RUST_LOG_STYLE", "never");
    });
    let mut stream = common::connect(server.addr());
    let peer = stream.local_addr().unwrap();
    common::assert_echoes(&mut stream, b"12345");
    stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(common::read_to_eof(&mut stream), b"");

    server.wait_for_log(&format!("{peer} disconnected: "));
    let log = server.log_text();
    let line = |needle: &str| {
        log.lines()
            .find(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in the log:\n{log}"))
            .to_owned()
    };
    let connected = line(&format!("{peer} connected"));
    assert!(connected.contains(" INFO "), "{connected}");
    let summary = line(&format!("{peer} disconnected: "));
    assert!(summary.contains(" INFO "), "{summary}");
    assert!(
        summary.contains(&format!(
            "{peer} disconnected: client closed, 5 bytes echoed in "
        )),
        "{summary}"
    );
    assert!(
        !log.contains("got 5 bytes"),
        "no per-read line at info:\n{log}"
    );
}

#[test]
fn verbose_logs_each_read_with_control_bytes_escaped() {
    let server = ServerProcess::start_with(&["--bind", "127.0.0.1", "-v"], |command| {
        command.env("RUST_LOG_STYLE", "never");
    });
    let sent = b"hi\x1b[31m\n";
    let mut stream = common::connect(server.addr());
    let peer = stream.local_addr().unwrap();
    stream.write_all(sent).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(common::read_to_eof(&mut stream), sent);

    server.wait_for_log(&format!("{peer} disconnected: "));
    let log = server.log_text();
    let preview = format!(r#"{peer}: got 8 bytes: "hi\x1b[31m\n""#);
    let line = log
        .lines()
        .find(|line| line.contains(&preview))
        .unwrap_or_else(|| panic!("no {preview:?} in the log:\n{log}"));
    assert!(line.contains(" DEBUG "), "{line}");
    assert!(
        !log.contains('\x1b'),
        "a raw escape byte reached the log:\n{}",
        log.escape_debug()
    );
}
