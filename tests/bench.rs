//! `echo-bench` against the in-process server and against test servers that
//! misbehave: corrupting replies, echoing in pieces, stalling, or absent.

mod common;

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::TestServer;
use serde_json::Value;

/// How long a bench run may take before the test fails: its duration, the
/// connect and reply timeouts, and a slow start on a busy machine.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// A finished `echo-bench` run.
struct Run {
    /// The arguments it was given.
    args: Vec<String>,
    /// How it ended.
    status: ExitStatus,
    /// Everything it wrote to standard output.
    stdout: String,
    /// Everything it wrote to standard error.
    stderr: String,
}

impl Run {
    /// The exit code; a run killed by a signal fails the test.
    fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("echo-bench ended by a signal\n{self}"))
    }

    /// Standard output parsed as exactly one JSON object.
    fn json(&self) -> Value {
        let json: Value = serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("stdout is not one JSON value: {error}\n{self}"));
        assert!(json.is_object(), "stdout is not a JSON object\n{self}");
        json
    }

    /// Asserts that nothing panicked.
    fn assert_no_panic(&self) {
        assert!(
            !self.stderr.contains("panicked"),
            "echo-bench panicked\n{self}"
        );
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: echo-bench {}", self.args.join(" "))?;
        writeln!(f, "status: {}", self.status)?;
        writeln!(f, "stdout:\n{}", self.stdout)?;
        write!(f, "stderr:\n{}", self.stderr)
    }
}

/// Runs `echo-bench ARGS` to the end, failing the test if it takes longer
/// than [`RUN_TIMEOUT`].
fn bench(args: &[&str]) -> Run {
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    let child = Command::new(env!("CARGO_BIN_EXE_echo-bench"))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG")
        .spawn()
        .expect("start echo-bench");
    let id = child.id();
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    let output = match receiver.recv_timeout(RUN_TIMEOUT) {
        Ok(output) => output.expect("collect echo-bench's output"),
        Err(_) => {
            // The child is owned by the waiting thread; kill it by its id so
            // that it does not outlive the failed test.
            let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
            panic!(
                "echo-bench {} did not finish within {RUN_TIMEOUT:?}",
                args.join(" ")
            );
        }
    };
    Run {
        args,
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `--host` and `--port` of `addr`, followed by `args`.
fn bench_at(addr: SocketAddr, args: &[&str]) -> Run {
    let host = addr.ip().to_string();
    let port = addr.port().to_string();
    let mut all = vec!["--host", host.as_str(), "--port", port.as_str()];
    all.extend_from_slice(args);
    bench(&all)
}

/// A field of the JSON report as a count.
fn count(json: &Value, key: &str) -> u64 {
    json[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a count in {json}"))
}

/// Starts a test server on a free loopback port that serves each client on
/// a thread of its own with `serve`. The accept thread is left behind when
/// the test ends; each client thread ends when its client closes or its
/// socket times out.
fn test_server(serve: fn(TcpStream) -> io::Result<()>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a test server");
    let addr = listener
        .local_addr()
        .expect("the test server has an address");
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            common::set_timeouts(&stream);
            thread::spawn(move || serve(stream));
        }
    });
    addr
}

/// Echoes everything with the first byte of every read flipped, so that
/// every reply differs from what was sent.
fn corrupting(mut stream: TcpStream) -> io::Result<()> {
    let mut buffer = [0; 4096];
    loop {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            return Ok(());
        }
        buffer[0] ^= 0xff;
        stream.write_all(&buffer[..read])?;
    }
}

/// Echoes everything faithfully, 7 bytes per write, each sent at once.
fn piecewise(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buffer = [0; 4096];
    loop {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            return Ok(());
        }
        for piece in buffer[..read].chunks(7) {
            stream.write_all(piece)?;
            stream.flush()?;
        }
    }
}

/// Reads everything and echoes nothing.
fn stalling(mut stream: TcpStream) -> io::Result<()> {
    io::copy(&mut stream, &mut io::sink()).map(|_| ())
}

#[test]
fn json_report_against_the_server_is_one_object_with_sane_figures() {
    let server = TestServer::start();
    let run = bench_at(server.addr, &["-c", "4", "-s", "100", "-d", "1s", "--json"]);
    assert_eq!(run.code(), 0, "{run}");
    let json = run.json();
    let object = json.as_object().expect("checked to be an object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "bytes",
            "connect_errors",
            "connections",
            "duration_s",
            "errors",
            "latency_us",
            "messages",
            "mib_per_sec",
            "mismatches",
            "msgs_per_sec",
        ],
        "{run}"
    );
    assert_eq!(count(&json, "connections"), 4, "{run}");
    assert_eq!(count(&json, "connect_errors"), 0, "{run}");
    assert_eq!(count(&json, "errors"), 0, "{run}");
    assert_eq!(count(&json, "mismatches"), 0, "{run}");
    let messages = count(&json, "messages");
    assert!(messages > 0, "{run}");
    assert_eq!(count(&json, "bytes"), messages * 100, "{run}");
    let duration = json["duration_s"].as_f64().expect("duration_s is a number");
    assert!((0.9..=1.5).contains(&duration), "{run}");
    assert!(
        json["msgs_per_sec"].as_f64().is_some_and(|rate| rate > 0.0),
        "{run}"
    );
    assert!(
        json["mib_per_sec"].as_f64().is_some_and(|rate| rate > 0.0),
        "{run}"
    );
    let latency: Vec<f64> = ["p50", "p90", "p99", "p999", "max"]
        .iter()
        .map(|key| {
            json["latency_us"][key]
                .as_f64()
                .unwrap_or_else(|| panic!("latency_us.{key} is not a number\n{run}"))
        })
        .collect();
    assert!(latency[0] > 0.0, "{run}");
    assert!(latency.windows(2).all(|pair| pair[0] <= pair[1]), "{run}");
}

#[test]
fn text_report_names_the_target_and_every_figure() {
    let server = TestServer::start();
    let run = bench_at(server.addr, &["-c", "2", "-d", "1s"]);
    assert_eq!(run.code(), 0, "{run}");
    for label in [
        server.addr.to_string().as_str(),
        "2 opened, 0 failed",
        "msgs/s",
        "MiB/s",
        "p50",
        "p99.9",
        "Errors:       0",
        "Mismatches:   0",
    ] {
        assert!(
            run.stdout.contains(label),
            "no {label:?} in the report\n{run}"
        );
    }
}

#[test]
fn corrupted_replies_are_counted_as_mismatches_and_fail_the_run() {
    let addr = test_server(corrupting);
    let run = bench_at(addr, &["-c", "2", "-s", "64", "-d", "1s", "--json"]);
    assert_eq!(run.code(), 1, "{run}");
    let json = run.json();
    assert!(count(&json, "mismatches") > 0, "{run}");
    assert_eq!(count(&json, "messages"), 0, "{run}");
    assert_eq!(count(&json, "errors"), 0, "{run}");
}

#[test]
fn replies_echoed_in_small_pieces_are_reassembled_without_errors() {
    let addr = test_server(piecewise);
    let run = bench_at(addr, &["-c", "3", "-s", "1000", "-d", "1s", "--json"]);
    assert_eq!(run.code(), 0, "{run}");
    let json = run.json();
    assert!(count(&json, "messages") > 0, "{run}");
    assert_eq!(count(&json, "errors"), 0, "{run}");
    assert_eq!(count(&json, "mismatches"), 0, "{run}");
}

#[test]
fn a_closed_port_counts_connect_errors_and_fails_without_panicking() {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind to find a free port");
        listener.local_addr().expect("the listener has an address")
    };
    let run = bench_at(addr, &["-c", "3", "-d", "1s", "--json"]);
    assert_eq!(run.code(), 1, "{run}");
    run.assert_no_panic();
    let json = run.json();
    assert_eq!(count(&json, "connect_errors"), 3, "{run}");
    assert_eq!(count(&json, "connections"), 0, "{run}");
    assert!(run.stderr.contains("error: cannot connect to"), "{run}");
}

#[test]
fn a_stalled_server_gives_errors_and_the_run_still_ends() {
    let addr = test_server(stalling);
    let run = bench_at(addr, &["-c", "2", "-d", "1s", "--json"]);
    assert_eq!(run.code(), 1, "{run}");
    run.assert_no_panic();
    let json = run.json();
    assert_eq!(count(&json, "errors"), 2, "{run}");
    assert_eq!(count(&json, "messages"), 0, "{run}");
}

#[test]
fn periodic_mode_sends_about_one_message_per_client_per_interval() {
    let server = TestServer::start();
    let run = bench_at(
        server.addr,
        &["-c", "4", "-i", "100ms", "-d", "1s", "--json"],
    );
    assert_eq!(run.code(), 0, "{run}");
    let messages = count(&run.json(), "messages");
    // 4 clients, 10 intervals each: 40, with room for a busy machine.
    assert!((20..=60).contains(&messages), "{messages} messages\n{run}");
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        ["--connections", "0"],
        ["--size", "0"],
        ["--duration", "soon"],
        ["--duration", "0s"],
        ["--interval", "often"],
    ] {
        let run = bench(&args);
        assert_eq!(run.code(), 2, "{run}");
        assert!(run.stdout.is_empty(), "{run}");
    }
}

#[test]
fn an_unresolvable_host_is_an_error_naming_it() {
    let run = bench(&["--host", "no-such-host.invalid", "-d", "1s"]);
    assert_eq!(run.code(), 1, "{run}");
    run.assert_no_panic();
    assert!(
        run.stderr
            .contains("error: cannot resolve no-such-host.invalid"),
        "{run}"
    );
}
