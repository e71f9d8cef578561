//! Helpers shared by the integration tests: sockets with timeouts, test
//! servers that misbehave, an in-process server on port 0, a guard around
//! the `echo-server` binary, its closing summary, and bounded runs of the
//! binaries.
#![allow(dead_code)] // each test crate uses its own subset

use std::env;
use std::fmt;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use echo_server::{Config, Server, ShutdownHandle, Stats};
use socket2::{Domain, Protocol, Socket, Type};

/// How long any single socket operation in a test may block before the test
/// fails instead of hanging.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a test waits for an observable event before failing.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to `addr` with read and write timeouts set.
pub fn connect(addr: SocketAddr) -> TcpStream {
    try_connect(addr).unwrap_or_else(|error| panic!("connect to {addr}: {error}"))
}

/// Like [`connect`], but hands a failure to the test to judge: a listener
/// that is not there yet, or no longer.
pub fn try_connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    set_timeouts(&stream);
    Ok(stream)
}

/// A connection to `server` from the local IPv4 address `source` (any
/// port), such as 127.0.0.2, with read and write timeouts set.
pub fn connect_from(source: IpAddr, server: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    socket
        .bind(&SocketAddr::new(source, 0).into())
        .unwrap_or_else(|error| panic!("bind a client socket to {source}: {error}"));
    socket
        .connect_timeout(&server.into(), IO_TIMEOUT)
        .unwrap_or_else(|error| panic!("connect from {source} to {server}: {error}"));
    let stream = TcpStream::from(socket);
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

/// Sends `message` on `stream` and asserts that exactly it comes back.
pub fn assert_echoes(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).expect("send to the server");
    let mut reply = vec![0; message.len()];
    stream
        .read_exact(&mut reply)
        .unwrap_or_else(|error| panic!("echo of {:?}: {error}", String::from_utf8_lossy(message)));
    assert_eq!(
        reply,
        message,
        "echo of {:?}",
        String::from_utf8_lossy(message)
    );
}

/// Reads until EOF, failing on any error (a timeout included).
pub fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    stream
        .read_to_end(&mut received)
        .expect("read until EOF within the timeout");
    received
}

/// Whether `error` says the peer closed the connection: a reset, or a
/// write after it had gone.
pub fn is_closed(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

/// Whether the server closed `stream` without sending anything: EOF or a
/// reset, within the timeout.
pub fn closed_without_data(stream: &mut TcpStream) -> bool {
    let mut buffer = [0; 64];
    match stream.read(&mut buffer) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => is_closed(&error),
    }
}

/// Writes `bytes`; the server may have closed the connection already, in
/// which case the write fails, which is not what is being tested.
pub fn send_ignoring_close(stream: &mut TcpStream, bytes: &[u8]) {
    match stream.write_all(bytes) {
        Ok(()) => {}
        Err(error) if is_closed(&error) => {}
        Err(error) => panic!("send to the server: {error}"),
    }
}

/// Sends `bytes` and asserts that the server closes `stream` within
/// `limit`, without sending anything back.
pub fn assert_closed_without_echo(stream: &mut TcpStream, bytes: &[u8], limit: Duration) {
    send_ignoring_close(stream, bytes);
    stream.set_read_timeout(Some(limit)).unwrap();
    assert!(
        closed_without_data(stream),
        "after {:?}: the server must close the connection within {limit:?}, without an echo",
        String::from_utf8_lossy(bytes)
    );
}

/// How long the polls of [`poll_within`] pause between two attempts.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Calls `attempt` until it returns `Some`, pausing [`POLL_INTERVAL`]
/// between calls, and returns that; `None` if `limit` passes first. The
/// one polling loop of the tests, for events with no notification to block
/// on (a counter in another process, a thread count, a child's exit). It
/// does not fail the test itself, so that a caller can clean up first or
/// build a failure message worth reading (the log so far); [`wait_until`]
/// is the plain case.
pub fn poll_within<T>(limit: Duration, mut attempt: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = attempt() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Polls `condition` until it holds, failing the test after
/// [`EVENT_TIMEOUT`].
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let held = poll_within(EVENT_TIMEOUT, || condition().then_some(()));
    assert!(held.is_some(), "timed out waiting for {what}");
}

/// Runs `work` on a thread of its own and returns its result if it
/// finishes within `limit`; `None` if it does not, or panics.
pub fn within<T: Send + 'static>(
    limit: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let _ = sender.send(work());
    });
    receiver.recv_timeout(limit).ok()
}

/// Random bytes, for payloads long enough to need more than one read.
pub fn random_bytes(length: usize) -> Vec<u8> {
    let mut bytes = vec![0; length];
    fastrand::fill(&mut bytes);
    bytes
}

/// A loopback address where nothing listens: a port the system handed out
/// and that was closed again at once.
pub fn closed_port() -> SocketAddr {
    free_listener().1
}

/// A listener on a free port of 127.0.0.1, and its address.
fn free_listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    (listener, addr)
}

/// A server on 127.0.0.1 that accepts one client and hands its socket, with
/// timeouts set, to `serve` on a thread of its own.
pub fn serve_one(serve: impl FnOnce(TcpStream) + Send + 'static) -> SocketAddr {
    let (listener, addr) = free_listener();
    thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            set_timeouts(&stream);
            serve(stream);
        }
    });
    addr
}

/// A server on 127.0.0.1 that hands every client's socket, with timeouts
/// set, to `serve` on a thread of its own. What `serve` returns is dropped:
/// a client that leaves early is no failure. The accept thread is left
/// behind when the test ends; each client thread ends when its client
/// closes or its socket times out.
pub fn serve_each(serve: fn(TcpStream) -> io::Result<()>) -> SocketAddr {
    let (listener, addr) = free_listener();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            set_timeouts(&stream);
            thread::spawn(move || serve(stream));
        }
    });
    addr
}

/// A server that reads what each client sends without ever replying, until
/// the client goes or the read timeout passes.
pub fn silent_server() -> SocketAddr {
    serve_each(|mut stream| io::copy(&mut stream, &mut io::sink()).map(drop))
}

/// A server that echoes each client with the first byte of every read
/// flipped, so that every reply differs from what was sent.
pub fn corrupting_server() -> SocketAddr {
    serve_each(|mut stream| {
        let mut buffer = [0; 4096];
        loop {
            let read = stream.read(&mut buffer)?;
            if read == 0 {
                return Ok(());
            }
            buffer[0] ^= 0xff;
            stream.write_all(&buffer[..read])?;
        }
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
    /// Every TCP address from the `Listening on` lines.
    pub addrs: Vec<SocketAddr>,
    /// Everything the `Listening on` lines name, as printed
    /// (`127.0.0.1:8000`, `udp:127.0.0.1:8000`, `unix:/run/echo.sock`).
    pub endpoints: Vec<String>,
    /// Every line the server printed on standard output as it started
    /// (the `Listening on` lines, then the TLS certificate's fingerprint).
    pub announced: Vec<String>,
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
        command.arg("--port").arg("0").args(args);
        customize(&mut command);
        ServerProcess::spawn(&mut command)
    }

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
        let announced = read_listening_lines(child.stdout.take().expect("stdout is piped"));
        let endpoints: Vec<String> = announced
            .iter()
            .filter_map(|line| Some(line.strip_prefix("Listening on ")?.to_owned()))
            .collect();
        if endpoints.is_empty() {
            // Killing closes stderr, so the log is complete once collected.
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
            addrs: endpoints
                .iter()
                .filter_map(|endpoint| endpoint.parse().ok())
                .collect(),
            endpoints,
            announced,
            log,
            log_thread: Some(log_thread),
        }
    }

    /// The first TCP address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The first UDP address the server listens on.
    pub fn udp_addr(&self) -> SocketAddr {
        self.endpoints
            .iter()
            .find_map(|endpoint| endpoint.strip_prefix("udp:")?.parse().ok())
            .unwrap_or_else(|| panic!("no UDP endpoint in {:?}", self.endpoints))
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
        let found = poll_within(EVENT_TIMEOUT, || {
            self.log.lock().unwrap().contains(needle).then_some(())
        });
        assert!(
            found.is_some(),
            "timed out waiting for {needle:?} in the server log:\n{}",
            self.log_text()
        );
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

    /// Echoes once on a fresh connection, closes it, and returns the
    /// server's thread count with no client: the count while that client
    /// was served, less its own thread, which is waited for to end.
    pub fn idle_threads(&self) -> u64 {
        let mut warm_up = connect(self.addr());
        assert_echoes(&mut warm_up, b"warm-up");
        // The echo proves that every thread of an idle server has started,
        // plus the client's own.
        let idle = self.threads() - 1;
        warm_up.shutdown(Shutdown::Write).unwrap();
        assert!(closed_without_data(&mut warm_up));
        wait_until("the warm-up client's thread to end", || {
            self.threads() == idle
        });
        idle
    }

    /// The one-letter state (`R` running, `S` sleeping, `T` stopped by a
    /// signal…) of every thread of the server, from `/proc/PID/task/*/stat`.
    pub fn thread_states(&self) -> Vec<char> {
        task_dirs(self.pid())
            .into_iter()
            .filter_map(|task| std::fs::read_to_string(task.join("stat")).ok())
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
        let status = poll_within(EVENT_TIMEOUT, || {
            self.child.try_wait().expect("poll the child")
        })
        .unwrap_or_else(|| {
            panic!(
                "echo-server did not exit within {EVENT_TIMEOUT:?}; log:\n{}",
                self.log_text()
            )
        });
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

/// The directory of every thread of process `pid`, `/proc/PID/task/TID`.
/// A thread that ends while they are listed may be missing.
pub fn task_dirs(pid: u32) -> Vec<PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("list /proc/PID/task")
        .filter_map(|task| Some(task.ok()?.path()))
        .collect()
}

/// Reads `Listening on ADDR` lines until the first line that is not one (or
/// EOF), in a thread so that a silent server fails the test, not hangs it.
fn read_listening_lines(stdout: std::process::ChildStdout) -> Vec<String> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    // The first line may take a while (a cold start); the others follow
    // at once, so a short wait for them is enough.
    let mut wait = EVENT_TIMEOUT;
    while let Ok(line) = receiver.recv_timeout(wait) {
        lines.push(line);
        wait = Duration::from_millis(200);
    }
    lines
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

impl ServerProcess {
    /// Stops the server with SIGTERM, checks that it exits 0, and returns
    /// its log.
    pub fn stop(self) -> String {
        self.signal("TERM");
        let (code, log) = self.wait_exit();
        assert_eq!(code, Some(0), "exit code after SIGTERM; log:\n{log}");
        log
    }
}

/// The `stopped: …` line a server logs as it exits, with its statistics
/// (`stopped: 2 accepted, 0 rejected, …; at shutdown 0 left on their own,
/// 2 closed`); fails the test if `log` has none.
pub fn summary_line(log: &str) -> &str {
    log.lines()
        .find(|line| line.contains("stopped: "))
        .unwrap_or_else(|| panic!("no summary in the log:\n{log}"))
}

/// Asserts that the summary in `log` includes every one of `parts`, each a
/// whole part of it between commas and semicolons (`2 accepted`,
/// `2 closed`).
pub fn assert_summary_has(log: &str, parts: &[&str]) {
    let (_, counts) = summary_line(log)
        .split_once("stopped: ")
        .expect("summary_line finds a line holding `stopped: `");
    let summary: Vec<&str> = counts
        .split([',', ';'])
        .map(|part| part.trim().trim_start_matches("at shutdown "))
        .collect();
    for part in parts {
        assert!(
            summary.contains(part),
            "{part:?} missing from the summary; log:\n{log}"
        );
    }
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

/// A command for the `echo-bench` binary, with the test's `RUST_LOG`
/// removed.
pub fn echo_bench() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_echo-bench"));
    command.env_remove("RUST_LOG");
    command
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
    run_bounded_by(command, input, EVENT_TIMEOUT)
}

/// Like [`run_bounded`], for a command that takes longer by design: kills
/// it and fails the test if it runs longer than `limit`.
pub fn run_bounded_by(command: &mut Command, input: &[u8], limit: Duration) -> Finished {
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
    let status = poll_within(limit, || child.try_wait().expect("poll the child"));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = writer.join();
    let finished = Finished {
        command: description,
        code: status.and_then(|status| status.code()),
        stdout: stdout.join().expect("stdout reader does not panic"),
        stderr: stderr.join().expect("stderr reader does not panic"),
    };
    assert!(
        status.is_some(),
        "still running after {limit:?}, killed\n{finished}"
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

/// Where to look for a tool beyond `PATH`: HAProxy lives in `/usr/sbin`,
/// which is not on every user's `PATH`.
const SBIN_DIRS: [&str; 3] = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

/// The path of the program `name`, from `PATH` or the `sbin` directories.
/// When it is missing, the test that asked is skipped (`None`, with a
/// `skipped:` line on stderr), or fails if `ECHO_SERVER_REQUIRE_TOOLS` is
/// set, so that CI cannot pass by skipping.
pub fn tool(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    let found = env::split_paths(&path)
        .chain(SBIN_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| {
            fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        });
    if found.is_none() {
        let required = env::var_os("ECHO_SERVER_REQUIRE_TOOLS")
            .is_some_and(|value| !value.is_empty() && value != "0");
        assert!(
            !required,
            "{name} is not installed, and ECHO_SERVER_REQUIRE_TOOLS is set"
        );
        eprintln!("skipped: {name} not installed");
    }
    found
}

/// A directory of a test's own under the system's temporary directory,
/// removed on drop.
pub struct TempDir(pub PathBuf);

/// Tells the directories of one test binary apart.
static TEMP_DIRS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl TempDir {
    /// A fresh, empty directory whose name starts with `echo-server-TAG-`.
    pub fn new(tag: &str) -> TempDir {
        let n = TEMP_DIRS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = env::temp_dir().join(format!("echo-server-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create a test directory");
        TempDir(dir)
    }

    /// The path of `name` in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The same, as a command-line argument.
    pub fn arg(&self, name: &str) -> String {
        self.path(name)
            .to_str()
            .expect("a UTF-8 temporary path")
            .to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
