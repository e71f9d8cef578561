//! The server in a real deployment: behind HAProxy, restarted one instance
//! at a time under load, started by a socket activator, and drained by
//! SIGTERM.
//!
//! Tests that need HAProxy or `systemd-socket-activate` print a `skipped:`
//! line and pass when the tool is missing, unless `ECHO_SERVER_REQUIRE_TOOLS`
//! is set (as in CI), when they fail.

mod common;

use std::collections::HashMap;
use std::env;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{self, Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{
    EVENT_TIMEOUT, IO_TIMEOUT, ServerProcess, TestServer, assert_echoes, closed_port,
    closed_without_data, connect, connect_from, echo_bench, echo_server, poll_within, read_to_eof,
    run_bounded, summary_line, tool, try_connect, wait_until, within,
};
use echo_server::{Config, Server};

/// An `echo-server` on 127.0.0.1 at `port` exactly, with `args`.
fn server_on_port(port: u16, args: &[&str]) -> ServerProcess {
    ServerProcess::spawn(
        echo_server()
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(args),
    )
}

/// Sends SIGTERM to `server`, waits for it to exit by itself, asserts that
/// it exited 0 and that no connection brought a bad PROXY header, and
/// returns its log.
fn stop_cleanly(server: ServerProcess) -> String {
    let log = server.stop();
    let summary = summary_line(&log);
    assert!(
        summary.contains(" 0 bad PROXY headers"),
        "bad PROXY headers: {summary}"
    );
    log
}

/// Asserts that the summary line of `log` ends with `ending`.
fn assert_summary_ends_with(log: &str, ending: &str) {
    let summary = summary_line(log);
    assert!(summary.ends_with(ending), "{summary}");
}

/// One HAProxy backend server's line of `show stat`, by column name.
type ServerStat = HashMap<String, String>;

/// Tells apart the directories of HAProxy instances of one test process.
static HAPROXY_INSTANCES: AtomicUsize = AtomicUsize::new(0);

/// HAProxy in TCP mode, in the foreground, balancing a frontend on a free
/// loopback port over echo servers that take PROXY v2 headers; killed,
/// reaped and its directory removed on drop.
struct Haproxy {
    child: Child,
    /// The directory of its configuration, stats socket and log.
    dir: PathBuf,
    /// Where clients connect.
    frontend: SocketAddr,
}

impl Haproxy {
    /// The configuration for a frontend on `frontend` and the backend
    /// servers `servers`, with the stats socket and log in `dir`.
    fn config(dir: &Path, frontend: SocketAddr, servers: &[(&str, String)]) -> String {
        let mut config = format!(
            "global
    log stderr format raw daemon
    stats socket {stats} mode 600 level admin

defaults
    mode tcp
    log global
    option tcplog
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    # A connection refused by a stopped instance is tried again, on
    # another server.
    retries 3
    option redispatch

frontend echo
    bind {frontend}
    default_backend echo_servers

backend echo_servers
    balance roundrobin
    # Health checks every 100 ms, one failure marks a server down and one
    # success up again. check-send-proxy makes them send a PROXY header too
    # (LOCAL), which a server with --proxy-protocol requires.
    default-server send-proxy-v2 check check-send-proxy inter 100ms fall 1 rise 1
",
            stats = dir.join("stats.sock").display(),
        );
        for (name, addr) in servers {
            config.push_str(&format!("    server {name} {addr}\n"));
        }
        config
    }

    /// Starts `program` in front of `servers` and waits until its health
    /// checks have found every one of them up.
    fn start(program: &Path, servers: &[(&str, String)]) -> Haproxy {
        let instance = HAPROXY_INSTANCES.fetch_add(1, Ordering::Relaxed);
        let dir = env::temp_dir().join(format!("echo-server-haproxy-{}-{instance}", process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the HAProxy directory");
        let frontend = closed_port();
        let config = dir.join("haproxy.cfg");
        fs::write(&config, Haproxy::config(&dir, frontend, servers))
            .expect("write the HAProxy configuration");
        let log = File::create(dir.join("haproxy.log")).expect("create the HAProxy log");
        let child = Command::new(program)
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("duplicate the log descriptor"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("start {}: {error}", program.display()));
        let mut haproxy = Haproxy {
            child,
            dir,
            frontend,
        };
        let names: Vec<&str> = servers.iter().map(|(name, _)| *name).collect();
        haproxy.wait_up(&names);
        haproxy
    }

    /// Waits until HAProxy's last health check of each of `names` passed.
    fn wait_up(&mut self, names: &[&str]) {
        self.wait_for_servers(names, "up", |stat| {
            stat["status"] == "UP" && stat["check_status"] == "L4OK"
        });
    }

    /// Waits until HAProxy's health checks have marked `name` down.
    fn wait_down(&mut self, name: &str) {
        self.wait_for_servers(&[name], "down", |stat| stat["status"].starts_with("DOWN"));
    }

    /// Waits until `condition` holds for the `show stat` line of each of
    /// `names`, failing if HAProxy exits or the wait exceeds
    /// [`EVENT_TIMEOUT`].
    fn wait_for_servers(
        &mut self,
        names: &[&str],
        what: &str,
        condition: impl Fn(&ServerStat) -> bool,
    ) {
        let seen = poll_within(EVENT_TIMEOUT, || {
            if let Some(status) = self.child.try_wait().expect("poll haproxy") {
                panic!("haproxy exited ({status}); log:\n{}", self.log());
            }
            let stats = self.server_stats()?;
            names
                .iter()
                .all(|name| stats.get(*name).is_some_and(&condition))
                .then_some(())
        });
        assert!(
            seen.is_some(),
            "timed out waiting for HAProxy to see {names:?} {what}: {:?}\nlog:\n{}",
            self.server_stats(),
            self.log()
        );
    }

    /// Every backend server's `show stat` line, by server name; `None`
    /// while the stats socket does not answer.
    fn server_stats(&self) -> Option<HashMap<String, ServerStat>> {
        let mut socket = UnixStream::connect(self.dir.join("stats.sock")).ok()?;
        socket.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
        socket.set_write_timeout(Some(IO_TIMEOUT)).ok()?;
        socket.write_all(b"show stat\n").ok()?;
        let mut text = String::new();
        socket.read_to_string(&mut text).ok()?;
        let mut lines = text.lines();
        let columns: Vec<&str> = lines.next()?.strip_prefix("# ")?.split(',').collect();
        let servers = lines
            .map(|line| -> ServerStat {
                columns
                    .iter()
                    .zip(line.split(','))
                    .map(|(column, value)| ((*column).to_owned(), value.to_owned()))
                    .collect()
            })
            .filter(|stat| {
                stat.get("pxname")
                    .is_some_and(|name| name == "echo_servers")
                    && stat.get("svname").is_some_and(|name| name != "BACKEND")
            })
            .map(|stat| (stat["svname"].clone(), stat))
            .collect();
        Some(servers)
    }

    /// What HAProxy has logged so far.
    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("haproxy.log")).unwrap_or_default()
    }

    /// The sessions of the `option tcplog` log that did not end normally
    /// (a termination state other than `--`), and how many were
    /// redispatched to another server after a failed connection.
    fn abnormal_sessions(&self) -> (Vec<String>, usize) {
        let log = self.log();
        let mut abnormal = Vec::new();
        let mut redispatched = 0;
        for line in log.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // client [date] frontend backend/server timers bytes state
            // actconn/feconn/beconn/srv_conn/retries queues
            if fields.len() < 9 || !fields[3].contains('/') {
                continue;
            }
            if fields[7].contains("/+") {
                redispatched += 1;
            }
            if fields[6] != "--" {
                abnormal.push(line.to_owned());
            }
        }
        (abnormal, redispatched)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- last lines of the HAProxy log, newest first ---");
            for line in tail {
                eprintln!("{line}");
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn haproxy_spreads_bench_load_over_two_servers_that_log_the_real_client() {
    let Some(program) = tool("haproxy") else {
        return;
    };
    let args = ["--bind", "127.0.0.1", "--proxy-protocol"];
    let a = ServerProcess::start(&args);
    let b = ServerProcess::start(&args);
    let haproxy = Haproxy::start(
        &program,
        &[("a", a.addr().to_string()), ("b", b.addr().to_string())],
    );

    let port = haproxy.frontend.port().to_string();
    let bench = run_bounded(
        echo_bench().args([
            "--json",
            "-c",
            "20",
            "-d",
            "1s",
            "-p",
            &port,
            "--host",
            "127.0.0.1",
        ]),
        b"",
    );
    assert_eq!(bench.code, Some(0), "{bench}");
    let report: serde_json::Value =
        serde_json::from_str(bench.stdout.trim()).unwrap_or_else(|error| {
            panic!("echo-bench --json printed no JSON object: {error}\n{bench}")
        });
    for (key, expected) in [
        ("connections", 20),
        ("connect_errors", 0),
        ("errors", 0),
        ("mismatches", 0),
    ] {
        assert_eq!(report[key], expected, "{key} in {report}");
    }
    assert!(report["messages"].as_u64() > Some(0), "{report}");
    assert!(report["bytes"].as_u64() > Some(0), "{report}");
    // Round robin: each server got its share of the connections.
    a.wait_for_log(" via 127.0.0.1:");
    b.wait_for_log(" via 127.0.0.1:");

    // A client from another address: the servers see it, not HAProxy.
    let mut client = connect_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), haproxy.frontend);
    let client_port = client.local_addr().unwrap().port();
    assert_echoes(&mut client, b"who am I?");
    let needle = format!("127.0.0.2:{client_port} via 127.0.0.1:");
    wait_until(&format!("{needle:?} in a server log"), || {
        a.log_text().contains(&needle) || b.log_text().contains(&needle)
    });
    client.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_eof(&mut client).is_empty());

    let stats = haproxy
        .server_stats()
        .expect("HAProxy answers on its stats socket");
    for name in ["a", "b"] {
        let stat = &stats[name];
        assert_eq!(
            (stat["status"].as_str(), stat["econ"].as_str()),
            ("UP", "0"),
            "server {name}: {stat:?}"
        );
    }
    // Health checks carry a LOCAL header (check-send-proxy): none was
    // counted as a bad header, nor denied.
    for server in [a, b] {
        let log = stop_cleanly(server);
        let summary = summary_line(&log);
        assert!(summary.contains(" 0 denied, "), "{summary}");
    }
}

#[test]
fn haproxy_sends_proxy_v2_to_a_unix_backend_and_the_server_logs_the_real_client() {
    let Some(program) = tool("haproxy") else {
        return;
    };
    let path = env::temp_dir().join(format!("echo-server-haproxy-{}.sock", process::id()));
    let _ = fs::remove_file(&path);
    let server = ServerProcess::spawn(echo_server().args([
        "--unix",
        path.to_str().expect("a UTF-8 temporary path"),
        "--proxy-protocol",
    ]));
    let haproxy = Haproxy::start(&program, &[("u", format!("unix@{}", path.display()))]);

    let mut client = connect_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), haproxy.frontend);
    let client_port = client.local_addr().unwrap().port();
    assert_echoes(&mut client, b"through a Unix backend");
    server.wait_for_log(&format!(
        "127.0.0.2:{client_port} via unix:{} pid ",
        path.display()
    ));
    client.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_eof(&mut client).is_empty());
    drop(haproxy);
    let log = stop_cleanly(server);
    assert!(
        summary_line(&log).contains(" 0 bad PROXY headers, "),
        "{log}"
    );
    assert!(!path.exists(), "the server removes its socket file");
}

/// Short connections through HAProxy, from several threads, until stopped:
/// connect, send a random message of random size, read back exactly as
/// many bytes, compare, close.
struct Load {
    stop: Arc<AtomicBool>,
    /// Connections that have finished an exchange, right or wrong.
    done: Arc<AtomicU64>,
    workers: Vec<JoinHandle<Tally>>,
}

/// What the clients of a [`Load`] saw.
#[derive(Debug, Default)]
struct Tally {
    /// Connections made.
    connections: u64,
    /// Bytes echoed back and verified.
    bytes: u64,
    /// Connections that failed: refused, reset, timed out, or closed
    /// before the whole echo came back.
    errors: u64,
    /// Echoes that came back whole but different.
    mismatches: u64,
    /// The first failures, with when they happened.
    failures: Vec<String>,
}

/// The largest message a [`Load`] client sends.
const LOAD_MAX_MESSAGE: usize = 16 * 1024;

/// How long a [`Load`] client waits on any socket operation.
const LOAD_TIMEOUT: Duration = Duration::from_secs(5);

impl Load {
    fn start(target: SocketAddr, clients: usize, started: Instant) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let workers = (0..clients)
            .map(|index| {
                let (stop, done) = (Arc::clone(&stop), Arc::clone(&done));
                thread::Builder::new()
                    .name(format!("load-{index}"))
                    .spawn(move || Load::client(target, &stop, &done, started))
                    .expect("start a load thread")
            })
            .collect();
        Load {
            stop,
            done,
            workers,
        }
    }

    fn client(target: SocketAddr, stop: &AtomicBool, done: &AtomicU64, started: Instant) -> Tally {
        let mut tally = Tally::default();
        let mut message = Vec::with_capacity(LOAD_MAX_MESSAGE);
        while !stop.load(Ordering::Relaxed) {
            message.resize(fastrand::usize(1..=LOAD_MAX_MESSAGE), 0);
            fastrand::fill(&mut message);
            match Load::exchange(target, &message, &mut tally) {
                Ok(true) => tally.bytes += message.len() as u64,
                Ok(false) => tally.mismatches += 1,
                Err((step, error)) => {
                    tally.errors += 1;
                    if tally.failures.len() < 10 {
                        tally.failures.push(format!(
                            "{:.3?}: {step} ({} bytes): {error}",
                            started.elapsed(),
                            message.len()
                        ));
                    }
                }
            }
            done.fetch_add(1, Ordering::Relaxed);
        }
        tally
    }

    /// One connection: whether the echo matched, or which step failed.
    fn exchange(
        target: SocketAddr,
        message: &[u8],
        tally: &mut Tally,
    ) -> Result<bool, (&'static str, io::Error)> {
        let stream =
            TcpStream::connect_timeout(&target, LOAD_TIMEOUT).map_err(|e| ("connect", e))?;
        tally.connections += 1;
        let mut stream = stream;
        stream
            .set_read_timeout(Some(LOAD_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(LOAD_TIMEOUT)))
            .map_err(|e| ("set timeouts", e))?;
        stream.write_all(message).map_err(|e| ("write", e))?;
        let mut reply = vec![0; message.len()];
        stream
            .read_exact(&mut reply)
            .map_err(|e| ("read the echo", e))?;
        Ok(reply == message)
    }

    /// Waits until `count` more connections have finished.
    fn wait_for(&self, count: u64) {
        let target = self.done.load(Ordering::Relaxed) + count;
        wait_until(&format!("{count} more connections through HAProxy"), || {
            self.done.load(Ordering::Relaxed) >= target
        });
    }

    /// Stops the clients and adds up what they saw.
    fn finish(mut self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Tally::default();
        for worker in std::mem::take(&mut self.workers) {
            let tally = worker.join().expect("a load thread does not panic");
            total.connections += tally.connections;
            total.bytes += tally.bytes;
            total.errors += tally.errors;
            total.mismatches += tally.mismatches;
            total.failures.extend(tally.failures);
        }
        total
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// Prints `what` with the time since `started`, so that failures can be
/// matched with the steps of a restart.
fn step(started: Instant, what: &str) {
    eprintln!("{:>9.3?}  {what}", started.elapsed());
}

#[test]
fn rolling_restart_behind_haproxy_loses_no_client() {
    let Some(program) = tool("haproxy") else {
        return;
    };
    let args = ["--proxy-protocol", "--reuse-port", "--drain-timeout", "5s"];
    let a = server_on_port(0, &args);
    let b = server_on_port(0, &args);
    let (port_a, port_b) = (a.addr().port(), b.addr().port());
    let mut haproxy = Haproxy::start(
        &program,
        &[("a", a.addr().to_string()), ("b", b.addr().to_string())],
    );

    let started = Instant::now();
    let load = Load::start(haproxy.frontend, 8, started);
    load.wait_for(1000);

    // A: stopped first, then replaced. Until HAProxy's health check sees A
    // down, the connections it cannot make to A are retried on B.
    step(started, "SIGTERM to A");
    a.signal("TERM");
    let (code, log) = a.wait_exit();
    step(started, "A exited");
    assert_eq!(code, Some(0), "A's exit code; log:\n{log}");
    let a_summary = summary_line(&log).to_owned();
    haproxy.wait_down("a");
    step(started, "HAProxy sees A down");
    load.wait_for(500);
    let a = server_on_port(port_a, &args);
    step(started, "new A listening");
    haproxy.wait_up(&["a"]);
    step(started, "HAProxy sees A up");
    a.wait_for_log(" via 127.0.0.1:");
    step(started, "new A serving");
    load.wait_for(1000);

    // B: replaced the other way round, as a deployment would: the new
    // instance binds the port beside the old one (SO_REUSEPORT), then the
    // old one drains. HAProxy never sees B down.
    let new_b = server_on_port(port_b, &args);
    step(started, "new B listening beside the old B");
    new_b.wait_for_log(" via 127.0.0.1:");
    step(started, "new B serving beside the old B");
    step(started, "SIGTERM to the old B");
    b.signal("TERM");
    let (code, log) = b.wait_exit();
    step(started, "old B exited");
    assert_eq!(code, Some(0), "B's exit code; log:\n{log}");
    let b_summary = summary_line(&log).to_owned();
    load.wait_for(1000);

    let tally = load.finish();
    step(started, "load stopped");
    let stats = haproxy
        .server_stats()
        .expect("HAProxy answers on its stats socket");
    let (abnormal, redispatched) = haproxy.abnormal_sessions();
    eprintln!(
        "rolling restart: {} connections, {} bytes echoed, {} errors, {} mismatches",
        tally.connections, tally.bytes, tally.errors, tally.mismatches
    );
    for name in ["a", "b"] {
        let stat = &stats[name];
        eprintln!(
            "HAProxy server {name}: {} sessions, {} connection errors, {} response errors, \
             {} retries, {} redispatches",
            stat["stot"], stat["econ"], stat["eresp"], stat["wretr"], stat["wredis"]
        );
    }
    eprintln!(
        "HAProxy: {redispatched} sessions redispatched, {} ended abnormally",
        abnormal.len()
    );
    eprintln!("old A: {a_summary}\nold B: {b_summary}");
    for failure in &tally.failures {
        eprintln!("client failure at {failure}");
    }
    for line in abnormal.iter().take(20) {
        eprintln!("HAProxy: {line}");
    }

    assert_eq!(
        (tally.errors, tally.mismatches),
        (0, 0),
        "failures: {:#?}",
        tally.failures
    );
    assert!(tally.connections >= 3500, "{tally:?}");
    for drained in [&a_summary, &b_summary] {
        assert!(
            drained.contains(" 0 bad PROXY headers") && drained.ends_with(" 0 closed"),
            "{drained}"
        );
    }
    stop_cleanly(a);
    stop_cleanly(new_b);
}

#[test]
fn reuse_port_lets_a_new_instance_bind_while_the_old_one_runs() {
    let old = server_on_port(0, &["--reuse-port"]);
    let port = old.addr().port();
    let new = server_on_port(port, &["--reuse-port"]);
    assert_eq!(new.addr(), old.addr());

    // Without the flag, the port is taken.
    let port_text = port.to_string();
    let taken = run_bounded(
        echo_server().args(["--bind", "127.0.0.1", "--port", &port_text]),
        b"",
    );
    assert_eq!(taken.code, Some(1), "{taken}");
    assert!(
        taken.stderr.contains(&format!(
            "error: cannot listen on 127.0.0.1:{port}: Address already in use"
        )),
        "{taken}"
    );

    // Once the old one is gone, the new one serves the port alone.
    stop_cleanly(old);
    let mut client = connect(new.addr());
    assert_echoes(&mut client, b"the new one");
}

#[test]
fn socket_activation_serves_the_inherited_listener() {
    let Some(activate) = tool("systemd-socket-activate") else {
        return;
    };
    let addr = closed_port();
    // systemd-socket-activate starts the server on the first connection,
    // so connect first, from another thread, as soon as it listens.
    let first = thread::spawn(move || {
        let mut stream = None;
        wait_until("systemd-socket-activate to listen", || {
            stream = try_connect(addr).ok();
            stream.is_some()
        });
        stream.expect("connected")
    });
    let server = ServerProcess::spawn(
        Command::new(&activate)
            .arg("--listen")
            .arg(addr.to_string())
            .arg(env!("CARGO_BIN_EXE_echo-server")),
    );
    assert_eq!(server.addrs, [addr]);
    server.wait_for_log("serving 1 inherited listening socket(s)");

    let mut first = first.join().expect("the connecting thread does not panic");
    assert_echoes(&mut first, b"woke it up");
    let mut second = connect(addr);
    assert_echoes(&mut second, b"and again");
    drop((first, second));
    stop_cleanly(server);
}

#[test]
fn socket_activation_passes_a_unix_listener() {
    let Some(activate) = tool("systemd-socket-activate") else {
        return;
    };
    let path = env::temp_dir().join(format!("echo-server-activated-{}.sock", process::id()));
    let _ = fs::remove_file(&path);
    let connect_path = path.clone();
    // systemd-socket-activate starts the server on the first connection,
    // so connect first, from another thread, as soon as it listens.
    let first = thread::spawn(move || {
        let mut stream = None;
        wait_until("systemd-socket-activate to listen", || {
            stream = UnixStream::connect(&connect_path).ok();
            stream.is_some()
        });
        stream.expect("connected")
    });
    let server = ServerProcess::spawn(
        Command::new(&activate)
            .arg("--listen")
            .arg(&path)
            .arg(env!("CARGO_BIN_EXE_echo-server")),
    );
    assert_eq!(server.endpoints, [format!("unix:{}", path.display())]);
    server.wait_for_log("serving 1 inherited listening socket(s)");
    let mut first = first.join().expect("the connecting thread does not panic");
    first.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    first.write_all(b"activated").unwrap();
    let mut reply = [0; 9];
    first.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"activated");
    drop(server);
    let _ = fs::remove_file(&path);
}

#[test]
fn sigterm_drains_a_connected_client_and_exits_0_once_it_leaves() {
    // A drain timeout well beyond the EVENT_TIMEOUT that wait_exit allows,
    // so that a server that waits it out fails there.
    let server = server_on_port(0, &["--drain-timeout", "30s", "-v"]);
    let mut client = connect(server.addr());
    assert_echoes(&mut client, b"before");

    server.signal("TERM");
    server.wait_for_log("no longer accepting clients");
    // A new client is refused, or closed without a byte if it got in just
    // as the listener closed.
    match try_connect(server.addr()) {
        Err(error) => assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused, "{error}"),
        Ok(mut late) => {
            let _ = late.write_all(b"too late");
            assert!(
                closed_without_data(&mut late),
                "a client connecting during the drain must not be served"
            );
        }
    }
    assert_echoes(&mut client, b"during the drain");

    client.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_eof(&mut client).is_empty());
    // Exiting takes milliseconds once the last client has left; wait_exit
    // gives it EVENT_TIMEOUT, a third of the drain timeout.
    let (code, log) = server.wait_exit();
    assert_eq!(code, Some(0), "log:\n{log}");
    assert_summary_ends_with(&log, "at shutdown 1 left on their own, 0 closed");
}

#[test]
fn sigterm_closes_a_client_still_there_at_the_drain_timeout() {
    let drain = Duration::from_millis(500);
    let server = server_on_port(0, &["--drain-timeout", "500ms"]);
    let mut client = connect(server.addr());
    assert_echoes(&mut client, b"never leaving");

    let signalled = Instant::now();
    server.signal("TERM");
    assert!(
        closed_without_data(&mut client),
        "the client must be closed at the end of the drain"
    );
    let elapsed = signalled.elapsed();
    // The lower bound is measured from before the signal, so load only
    // lengthens it. The upper one leaves 3 s, six times the drain, for the
    // server to act once it ends: closing a socket takes milliseconds even
    // on a loaded machine. A server that never closes the client leaves
    // the read above to time out.
    assert!(
        elapsed >= drain * 9 / 10 && elapsed < drain + Duration::from_secs(3),
        "closed {elapsed:?} after SIGTERM, the drain timeout being {drain:?}"
    );
    let (code, log) = server.wait_exit();
    assert_eq!(code, Some(0), "log:\n{log}");
    assert_summary_ends_with(&log, "at shutdown 0 left on their own, 1 closed");
}

#[test]
fn second_sigterm_during_the_drain_closes_every_client_at_once() {
    let server = server_on_port(0, &["--drain-timeout", "30s"]);
    let mut client = connect(server.addr());
    assert_echoes(&mut client, b"staying");

    server.signal("TERM");
    server.wait_for_log("draining clients for up to");
    assert_echoes(&mut client, b"still here");

    server.signal("TERM");
    // "At once" against the 30 s drain: a server that ignored the second
    // SIGTERM would close the client only as the drain ends, long after
    // the client's read timeout (IO_TIMEOUT) has failed the check below.
    // That timeout, and the EVENT_TIMEOUT that wait_exit allows, are far
    // beyond the milliseconds closing and exiting take on a loaded machine.
    assert!(
        closed_without_data(&mut client),
        "a second SIGTERM must close the client at once; log:\n{}",
        server.log_text()
    );
    let (code, log) = server.wait_exit();
    assert_eq!(code, Some(0), "log:\n{log}");
    assert!(
        log.contains("SIGTERM again: closing every client now"),
        "{log}"
    );
    assert_summary_ends_with(&log, "at shutdown 0 left on their own, 1 closed");
}

/// A client whose connection the kernel completed before SIGTERM is, for
/// itself and for a balancer in front, connected: the balancer has sent it
/// its bytes and cannot retry it elsewhere. The drain must serve it, not
/// close it with the listener.
///
/// Whether the accept loop or the signal thread runs first once the frozen
/// server thaws is up to the scheduler; a server that closes the backlog
/// loses clients in most rounds, so a few rounds tell.
#[test]
fn sigterm_drain_serves_clients_already_waiting_in_the_backlog() {
    for round in 1..=5 {
        let lost = backlog_clients_lost_at_sigterm(200);
        assert!(
            lost.is_empty(),
            "round {round}: {} of 200 clients waiting in the backlog at SIGTERM were closed \
             unserved, the first: {:?}",
            lost.len(),
            &lost[..lost.len().min(3)]
        );
    }
}

/// Freezes a server with a drain timeout, connects `waiting` clients that
/// each send a message into its backlog, sends SIGTERM and thaws it;
/// returns the clients that did not get their echo.
fn backlog_clients_lost_at_sigterm(waiting: usize) -> Vec<String> {
    let server = server_on_port(0, &["--drain-timeout", "5s"]);
    // Frozen, the server accepts nothing: the kernel completes the
    // handshakes into the backlog.
    server.freeze();
    let mut clients: Vec<TcpStream> = (0..waiting).map(|_| connect(server.addr())).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client
            .write_all(format!("waiting {i:03}").as_bytes())
            .unwrap();
    }
    server.signal("TERM");
    server.thaw();

    let mut lost = Vec::new();
    for (i, client) in clients.iter_mut().enumerate() {
        let expected = format!("waiting {i:03}");
        let mut reply = vec![0; expected.len()];
        match client.read_exact(&mut reply) {
            Ok(()) => assert_eq!(reply, expected.as_bytes()),
            Err(error) => lost.push(format!("client {i}: {error}")),
        }
        let _ = client.shutdown(Shutdown::Write);
    }
    drop(clients);
    let (code, log) = server.wait_exit();
    assert_eq!(code, Some(0), "log:\n{log}");
    lost
}

#[test]
fn shutdown_during_a_drain_closes_every_client_at_once() {
    let server = TestServer::start();
    let mut client = connect(server.addr);
    assert_echoes(&mut client, b"before");

    server.handle.drain(Duration::from_secs(30));
    assert!(server.handle.is_shutdown());
    assert_echoes(&mut client, b"draining");

    // Neither reading the statistics nor shutting down waits for the
    // drain: each is tried from a thread, given far less than the drain
    // (EVENT_TIMEOUT), and far more than it needs on a loaded machine.
    let handle = server.handle.clone();
    let stats = within(EVENT_TIMEOUT, move || handle.stats())
        .expect("stats() during a drain must answer at once");
    assert_eq!(stats.active, 1, "{stats}");
    let handle = server.handle.clone();
    within(EVENT_TIMEOUT, move || handle.shutdown()).expect("shutdown() must return at once");
    // The client's read timeout, IO_TIMEOUT, is also far less than the
    // drain.
    assert!(
        closed_without_data(&mut client),
        "shutdown() during a drain must close the client at once"
    );
    let stats = server.stop();
    assert_eq!((stats.drained, stats.cut), (0, 1), "{stats}");
}

/// Under socket activation the service manager keeps the listening socket
/// across restarts of the service: a server that stops must leave it
/// listening, so that clients wait in its backlog for the next instance
/// instead of being refused.
#[test]
fn stopping_leaves_an_inherited_listener_listening_for_the_next_instance() {
    // This process plays the service manager: it holds the socket, and
    // each instance gets a duplicate of it, as an exec'd service would.
    let manager = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    let addr = manager.local_addr().unwrap();
    let serve = || {
        let inherited = manager.try_clone().expect("duplicate the listening socket");
        let server = Server::from_listeners(vec![inherited], &Config::default())
            .expect("serve an inherited listener");
        let handle = server.handle();
        (handle, thread::spawn(move || server.run()))
    };

    let (handle, first) = serve();
    let mut client = connect(addr);
    assert_echoes(&mut client, b"first instance");
    handle.shutdown();
    first
        .join()
        .expect("the server thread does not panic")
        .expect("the first instance ends without error");

    // Between two instances: the socket still listens.
    let mut waiting = try_connect(addr).unwrap_or_else(|error| {
        panic!("the service manager's socket must still listen once the server stopped: {error}")
    });
    waiting.write_all(b"queued between instances").unwrap();

    let (handle, second) = serve();
    let mut reply = vec![0; b"queued between instances".len()];
    waiting
        .read_exact(&mut reply)
        .expect("the next instance serves the client that waited");
    assert_eq!(reply, b"queued between instances");
    handle.shutdown();
    second
        .join()
        .expect("the server thread does not panic")
        .expect("the second instance ends without error");
}
