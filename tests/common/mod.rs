//! Helpers shared by the integration tests: sockets with timeouts, an
//! in-process server on port 0, and a guard around the `echo-server` binary.
#![allow(dead_code)] // each test crate uses its own subset

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use echo_server::{Config, Server, ShutdownHandle, Stats};

/// How long any single socket operation in a test may block before the test
/// fails instead of hanging.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a test waits for an observable event before failing.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to `addr` with read and write timeouts set.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|error| panic!("connect to {addr}: {error}"));
    set_timeouts(&stream);
    stream
}

/// Sets the test read and write timeouts on `stream`.
pub fn set_timeouts(stream: &TcpStream) {
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
}

/// Reads until EOF, failing on any error (a timeout included).
pub fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    stream
        .read_to_end(&mut received)
        .expect("read until EOF within the timeout");
    received
}

/// Whether the server closed `stream` without sending anything: EOF or a
/// reset, within the timeout.
pub fn closed_without_data(stream: &mut TcpStream) -> bool {
    let mut buffer = [0; 64];
    match stream.read(&mut buffer) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => matches!(
            error.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
        ),
    }
}

/// Polls `condition` until it holds, failing the test after
/// [`EVENT_TIMEOUT`]. For events with no notification to block on (a
/// counter in another process, a thread count).
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// A server running in this process on a free loopback port; stopped and
/// joined on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: ShutdownHandle,
    thread: Option<JoinHandle<std::io::Result<Stats>>>,
}

impl TestServer {
    /// A server with the default configuration on 127.0.0.1, port 0.
    pub fn start() -> TestServer {
        TestServer::with_config(Config::default())
    }

    /// A server with `config`, bound to 127.0.0.1 on port 0.
    pub fn with_config(config: Config) -> TestServer {
        let config = Config {
            bind: vec!["127.0.0.1".to_owned()],
            port: 0,
            ..config
        };
        let server = Server::bind(&config).expect("bind a test server");
        let addr = server.local_addrs()[0];
        let handle = server.handle();
        let thread = thread::spawn(move || server.run());
        TestServer {
            addr,
            handle,
            thread: Some(thread),
        }
    }

    /// Stops the server and returns its final statistics.
    pub fn stop(mut self) -> Stats {
        self.handle.shutdown();
        self.thread
            .take()
            .expect("the server is joined only once")
            .join()
            .expect("the server thread does not panic")
            .expect("the server ends without error")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The `echo-server` binary running as a child process; killed and reaped
/// on drop. Its stderr (the log) is collected in the background.
pub struct ServerProcess {
    pub child: Child,
    /// Every address from the `Listening on` lines.
    pub addrs: Vec<SocketAddr>,
    /// What the server has logged so far.
    pub log: Arc<Mutex<String>>,
    log_thread: Option<JoinHandle<()>>,
}

impl ServerProcess {
    /// Starts `echo-server --port 0 ARGS` and waits for its first
    /// `Listening on` line.
    pub fn start(args: &[&str]) -> ServerProcess {
        ServerProcess::start_with(args, |_| {})
    }

    /// Like [`ServerProcess::start`], with `customize` applied to the
    /// command first (environment, resource limits).
    pub fn start_with(args: &[&str], customize: impl FnOnce(&mut Command)) -> ServerProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_echo-server"));
        command
            .arg("--port")
            .arg("0")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG");
        customize(&mut command);
        let mut child = command.spawn().expect("start echo-server");
        let log = Arc::new(Mutex::new(String::new()));
        let log_thread = collect(child.stderr.take().expect("stderr is piped"), &log);
        let stdout = child.stdout.take().expect("stdout is piped");
        let addrs = read_listening_lines(stdout);
        assert!(
            !addrs.is_empty(),
            "echo-server printed no Listening line; log:\n{}",
            log.lock().unwrap()
        );
        ServerProcess {
            child,
            addrs,
            log,
            log_thread: Some(log_thread),
        }
    }

    /// The first address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A copy of the log so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str) {
        wait_until(&format!("{needle:?} in the server log"), || {
            self.log.lock().unwrap().contains(needle)
        });
    }

    /// A field of `/proc/PID/status` (`Threads`, `VmRSS`), as a number.
    pub fn status_field(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{field}:")))
            .and_then(|value| value.split_whitespace().next())
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"))
    }

    /// The server's thread count.
    pub fn threads(&self) -> u64 {
        self.status_field("Threads")
    }

    /// Waits for the process to exit by itself and returns its exit code
    /// and full log.
    pub fn wait_exit(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                break status;
            }
            assert!(Instant::now() < deadline, "echo-server did not exit");
            thread::sleep(Duration::from_millis(5));
        };
        if let Some(thread) = self.log_thread.take() {
            thread.join().expect("log collector does not panic");
        }
        (status.code(), self.log_text())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `Listening on ADDR` lines until the first line that is not one (or
/// EOF), in a thread so that a silent server fails the test, not hangs it.
fn read_listening_lines(stdout: std::process::ChildStdout) -> Vec<SocketAddr> {
    let (sender, receiver) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Some(addr) = line.strip_prefix("Listening on ") else {
                break;
            };
            if sender.send(addr.parse::<SocketAddr>().ok()).is_err() {
                break;
            }
        }
    });
    let mut addrs = Vec::new();
    // The first line may take a while (a cold start); the others follow
    // at once, so a short wait for them is enough.
    let mut wait = EVENT_TIMEOUT;
    while let Ok(Some(addr)) = receiver.recv_timeout(wait) {
        addrs.push(addr);
        wait = Duration::from_millis(200);
    }
    addrs
}

/// Copies `stderr` into `log` until EOF.
fn collect(stderr: ChildStderr, log: &Arc<Mutex<String>>) -> JoinHandle<()> {
    let log = Arc::clone(log);
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let mut log = log.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    })
}
