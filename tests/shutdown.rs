//! `Server::run` returns only once every client thread has finished with
//! its socket, even a thread that was blocked in a write when the server
//! was shut down.
//!
//! This test installs a logger of its own, which holds a client thread at
//! its `disconnected` line: a file of its own, so that no other test shares
//! the process-wide logger.

mod common;

use std::fs;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::Duration;

use common::{EVENT_TIMEOUT, connect};
use echo_server::{Config, Server};

/// A logger that holds the thread logging a line containing its pattern
/// until the gate is opened, and tells when one does.
struct Gate {
    /// The pattern, whether a thread has reached it, whether the gate is
    /// open.
    state: Mutex<(Option<String>, bool, bool)>,
    /// Notified when a thread reaches the gate and when it opens.
    changed: Condvar,
}

static GATE: Gate = Gate {
    state: Mutex::new((None, false, false)),
    changed: Condvar::new(),
};

impl log::Log for Gate {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let line = record.args().to_string();
        let mut state = self.state.lock().unwrap();
        if !matches!(&state.0, Some(pattern) if line.contains(pattern.as_str())) {
            return;
        }
        state.1 = true;
        self.changed.notify_all();
        // Bounded, so that a broken test fails instead of hanging.
        let _ = self
            .changed
            .wait_timeout_while(state, EVENT_TIMEOUT, |state| !state.2)
            .unwrap();
    }

    fn flush(&self) {}
}

impl Gate {
    /// Holds the thread that logs a line containing `pattern`.
    fn hold(&self, pattern: String) {
        *self.state.lock().unwrap() = (Some(pattern), false, false);
    }

    /// Waits until a thread is held.
    fn wait_reached(&self) {
        let state = self.state.lock().unwrap();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, EVENT_TIMEOUT, |state| !state.1)
            .unwrap();
        assert!(state.1, "no client thread logged its disconnection");
    }

    /// Lets the held thread go on.
    fn open(&self) {
        self.state.lock().unwrap().2 = true;
        self.changed.notify_all();
    }
}

/// The inode of the server's end of the TCP connection from `client` to
/// `server`, from `/proc/net/tcp`.
fn server_socket_inode(server: SocketAddr, client: SocketAddr) -> String {
    let hex = |addr: SocketAddr| match addr {
        SocketAddr::V4(addr) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(addr.ip().octets()),
            addr.port()
        ),
        SocketAddr::V6(_) => unreachable!("the test server listens on 127.0.0.1"),
    };
    let (local, remote) = (hex(server), hex(client));
    let table = fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    table
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| {
            fields.get(1) == Some(&local.as_str()) && fields.get(2) == Some(&remote.as_str())
        })
        .map(|fields| fields[9].to_owned())
        .unwrap_or_else(|| panic!("no {local} {remote} in /proc/net/tcp:\n{table}"))
}

/// Whether this process holds a descriptor of socket `inode`.
fn holds_socket(inode: &str) -> bool {
    let target = format!("socket:[{inode}]");
    fs::read_dir("/proc/self/fd")
        .expect("list /proc/self/fd")
        .filter_map(|entry| fs::read_link(entry.ok()?.path()).ok())
        .any(|link| link.to_str() == Some(target.as_str()))
}

/// Writes to `client` without reading until the write times out: both
/// directions' buffers are full, so the server's thread, which reads only
/// what it has written back, is blocked in a write.
fn fill_until_blocked(client: &mut TcpStream) {
    client
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..1024 {
        match client.write(&chunk) {
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return;
            }
            Err(error) => panic!("write to the server: {error}"),
        }
    }
    panic!("64 MiB written without the server's echo blocking");
}

#[test]
fn run_returns_only_after_a_client_thread_blocked_in_a_write_has_closed_its_socket() {
    log::set_logger(&GATE).expect("no other logger in this test binary");
    log::set_max_level(log::LevelFilter::Info);
    let config = Config {
        bind: vec!["127.0.0.1".to_owned()],
        port: 0,
        ..Config::default()
    };
    let server = Server::bind(&config).expect("bind a test server");
    let addr = server.local_addrs()[0];
    let handle = server.handle();
    let (returned, run_result) = mpsc::channel();
    thread::spawn(move || returned.send(server.run()));

    let mut client = connect(addr);
    let client_addr = client.local_addr().unwrap();
    GATE.hold(format!("{client_addr} disconnected"));
    fill_until_blocked(&mut client);
    let inode = server_socket_inode(addr, client_addr);
    assert!(
        holds_socket(&inode),
        "the server holds its end of the connection"
    );

    handle.shutdown();
    GATE.wait_reached();
    // The client thread is held at its last log line, its socket still
    // open: run() must not return. A bounded wait for an event that must
    // not happen; were run() to return, it would within microseconds.
    let early = run_result.recv_timeout(Duration::from_secs(1));
    assert!(
        early.is_err(),
        "run() returned while a client thread still held its socket"
    );
    assert!(
        holds_socket(&inode),
        "the held client thread keeps its socket"
    );

    GATE.open();
    let stats = run_result
        .recv_timeout(EVENT_TIMEOUT)
        .expect("run() returns once the client thread has finished")
        .expect("the server ends without error");
    assert!(
        !holds_socket(&inode),
        "run() returned with the client's socket still open"
    );
    assert_eq!((stats.accepted, stats.cut), (1, 1));
}
