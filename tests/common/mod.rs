//! Helpers shared by the integration tests: sockets with timeouts, an
//! in-process server on port 0, a guard around the `echo-server` binary, and
//! bounded runs of the binaries.
#![allow(dead_code)] // each test crate uses its own subset

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
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

/// Writes `message`, reads back as many bytes and returns them.
pub fn round_trip(stream: &mut TcpStream, message: &[u8]) -> Vec<u8> {
    stream.write_all(message).expect("write within the timeout");
    let mut reply = vec![0; message.len()];
    stream
        .read_exact(&mut reply)
        .expect("read the whole echo within the timeout");
    reply
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

/// A loopback address where nothing listens: a port the system handed out
/// and that was closed again at once.
pub fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    listener
        .local_addr()
        .expect("a bound listener has an address")
}

/// A server on 127.0.0.1 that accepts one client and hands its socket, with
/// timeouts set, to `serve` on a thread of its own.
pub fn serve_one(serve: impl FnOnce(TcpStream) + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            set_timeouts(&stream);
            serve(stream);
        }
    });
    addr
}

/// A server that accepts one client and reads what it sends without ever
/// replying, until the client goes or the read timeout passes.
pub fn silent_server() -> SocketAddr {
    serve_one(|mut stream| {
        let mut sink = [0; 4096];
        while matches!(stream.read(&mut sink), Ok(read) if read > 0) {}
    })
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
        let mut command = echo_server();
        command
            .arg("--port")
            .arg("0")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        customize(&mut command);
        let mut child = command.spawn().expect("start echo-server");
        let log = Arc::new(Mutex::new(String::new()));
        let log_thread = collect(child.stderr.take().expect("stderr is piped"), &log);
        let stdout = child.stdout.take().expect("stdout is piped");
        let addrs = read_listening_lines(stdout);
        if addrs.is_empty() {
            // Killing closes stderr, so the log is complete once collected.
            let _ = child.kill();
            let status = child.wait().expect("reap echo-server");
            let _ = log_thread.join();
            panic!(
                "echo-server printed no Listening line ({status}); log:\n{}",
                log.lock().unwrap()
            );
        }
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
        let deadline = Instant::now() + EVENT_TIMEOUT;
        while !self.log.lock().unwrap().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {needle:?} in the server log:\n{}",
                self.log_text()
            );
            thread::sleep(Duration::from_millis(5));
        }
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

    /// The one-letter state (`R` running, `S` sleeping, `T` stopped by a
    /// signal…) of every thread of the server, from `/proc/PID/task/*/stat`.
    pub fn thread_states(&self) -> Vec<char> {
        let tasks =
            std::fs::read_dir(format!("/proc/{}/task", self.pid())).expect("read /proc/PID/task");
        tasks
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("stat")).ok())
            .map(|stat| {
                // The thread name, in parentheses, may itself contain spaces.
                stat.rsplit_once(") ")
                    .and_then(|(_, rest)| rest.chars().next())
                    .expect("a state in /proc/PID/task/TID/stat")
            })
            .collect()
    }

    /// Sends `signal` (a name such as `STOP`, `CONT`, `TERM`) to the server.
    pub fn signal(&self, signal: &str) {
        let finished = run_bounded(
            Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(self.pid().to_string()),
            b"",
        );
        assert_eq!(finished.code, Some(0), "{finished}");
    }

    /// Freezes the server with SIGSTOP and waits until it is stopped: the
    /// kernel still completes handshakes into the backlog, nothing accepts.
    pub fn freeze(&self) {
        self.signal("STOP");
        wait_until("every thread of echo-server to stop", || {
            self.thread_states().iter().all(|&state| state == 'T')
        });
    }

    /// Lets a frozen server run again.
    pub fn thaw(&self) {
        self.signal("CONT");
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

/// Copies `stderr` into `log` until EOF. Bytes that are not UTF-8 are
/// replaced rather than ending the copy, which would leave the server
/// blocked on a full pipe.
fn collect(stderr: ChildStderr, log: &Arc<Mutex<String>>) -> JoinHandle<()> {
    let log = Arc::clone(log);
    thread::spawn(move || {
        let mut stderr = BufReader::new(stderr);
        let mut line = Vec::new();
        while matches!(stderr.read_until(b'\n', &mut line), Ok(read) if read > 0) {
            log.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&line));
            line.clear();
        }
    })
}

/// A command for the `echo-server` binary, with the test's `RUST_LOG`
/// removed so that the log level is the one the arguments ask for.
pub fn echo_server() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_echo-server"));
    command.env_remove("RUST_LOG");
    command
}

/// A command for the `echo-client` binary.
pub fn echo_client() -> Command {
    Command::new(env!("CARGO_BIN_EXE_echo-client"))
}

/// What a command run to completion did; displays everything, for failure
/// messages.
#[derive(Debug)]
pub struct Finished {
    /// The command line, as `Command`'s `Debug` shows it.
    pub command: String,
    /// The exit code; `None` if a signal ended it.
    pub code: Option<i32>,
    /// Everything written to standard output.
    pub stdout: String,
    /// Everything written to standard error.
    pub stderr: String,
}

impl fmt::Display for Finished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: {}", self.command)?;
        writeln!(f, "exit code: {:?}", self.code)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout)?;
        write!(f, "--- stderr ---\n{}", self.stderr)
    }
}

/// Runs `command` with `input` on its standard input until it exits; kills
/// it and fails the test if it runs longer than [`EVENT_TIMEOUT`].
pub fn run_bounded(command: &mut Command, input: &[u8]) -> Finished {
    let description = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("start {description}: {error}"));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_vec();
    // A child that exits without reading its input makes this write fail,
    // which is no concern of the test's: its exit code tells.
    let writer = thread::spawn(move || drop(stdin.write_all(&input)));
    let stdout = read_all(child.stdout.take().expect("stdout is piped"));
    let stderr = read_all(child.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + EVENT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(5));
    };
    let _ = writer.join();
    let finished = Finished {
        command: description,
        code: status.and_then(|status| status.code()),
        stdout: stdout.join().expect("stdout reader does not panic"),
        stderr: stderr.join().expect("stderr reader does not panic"),
    };
    assert!(
        status.is_some(),
        "still running after {EVENT_TIMEOUT:?}, killed\n{finished}"
    );
    finished
}

/// Reads `pipe` to EOF on a thread of its own.
fn read_all(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

impl ServerProcess {
    /// Starts `command` exactly as given, without the `--port 0` that
    /// [`ServerProcess::start`] adds: an `echo-server` on a port the test
    /// chose, or a program that runs one in its place (a socket activator).
    /// Waits for its first `Listening on` line, like `start`.
    pub fn spawn(command: &mut Command) -> ServerProcess {
        let description = format!("{command:?}");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("start {description}: {error}"));
        let log = Arc::new(Mutex::new(String::new()));
        let log_thread = collect(child.stderr.take().expect("stderr is piped"), &log);
        let addrs = read_listening_lines(child.stdout.take().expect("stdout is piped"));
        if addrs.is_empty() {
            let _ = child.kill();
            let status = child.wait().expect("reap the server");
            let _ = log_thread.join();
            panic!(
                "{description} printed no Listening line ({status}); log:\n{}",
                log.lock().unwrap()
            );
        }
        ServerProcess {
            child,
            addrs,
            log,
            log_thread: Some(log_thread),
        }
    }
}
