//! `echo-bench` against the in-process server and against test servers that
//! misbehave: corrupting replies, echoing in pieces, stalling, or absent;
//! over Unix sockets, UDP and TLS against small echo servers written here.

mod common;

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener, UnixStream};
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use common::{Finished, TestServer};
use serde_json::Value;

/// How long a bench run may take before the test fails: its duration, the
/// connect and reply timeouts, and a slow start on a busy machine.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `echo-bench ARGS` to the end, failing the test if it takes longer
/// than [`RUN_TIMEOUT`].
fn bench(args: &[&str]) -> Finished {
    common::run_bounded_by(common::echo_bench().args(args), b"", RUN_TIMEOUT)
}

/// `--host` and `--port` of `addr`, followed by `args`.
fn bench_at(addr: SocketAddr, args: &[&str]) -> Finished {
    let host = addr.ip().to_string();
    let port = addr.port().to_string();
    let mut all = vec!["--host", host.as_str(), "--port", port.as_str()];
    all.extend_from_slice(args);
    bench(&all)
}

/// The JSON report of `run`: its standard output, parsed as exactly one
/// JSON object.
fn report(run: &Finished) -> Value {
    let json: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|error| panic!("stdout is not one JSON value: {error}\n{run}"));
    assert!(json.is_object(), "stdout is not a JSON object\n{run}");
    json
}

/// Asserts that nothing panicked in `run`.
fn assert_no_panic(run: &Finished) {
    assert!(
        !run.stderr.contains("panicked"),
        "echo-bench panicked\n{run}"
    );
}

/// A field of the JSON report as a count.
fn count(json: &Value, key: &str) -> u64 {
    json[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a count in {json}"))
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

/// Echoes one Unix client until it closes.
fn echo_unix(stream: UnixStream) -> io::Result<()> {
    stream.set_read_timeout(Some(common::IO_TIMEOUT))?;
    stream.set_write_timeout(Some(common::IO_TIMEOUT))?;
    io::copy(&mut &stream, &mut &stream).map(drop)
}

/// Serves every client of `listener` with [`echo_unix`] on a thread of its
/// own, until no client has come for [`common::IO_TIMEOUT`].
fn serve_unix(listener: UnixListener) {
    // On Linux the read timeout bounds accept() too.
    socket2::SockRef::from(&listener)
        .set_read_timeout(Some(common::IO_TIMEOUT))
        .expect("a listener takes a timeout");
    thread::spawn(move || {
        while let Ok((stream, _)) = listener.accept() {
            thread::spawn(move || echo_unix(stream));
        }
    });
}

/// A Unix echo server at a socket file in the temporary directory, named
/// after this process and `name`; the file is removed on drop.
struct UnixEchoServer {
    /// Where the socket file is.
    path: PathBuf,
}

impl UnixEchoServer {
    /// Binds the socket file and starts serving.
    fn start(name: &str) -> UnixEchoServer {
        let path = std::env::temp_dir().join(format!("echo-bench-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .unwrap_or_else(|error| panic!("bind {}: {error}", path.display()));
        serve_unix(listener);
        UnixEchoServer { path }
    }

    /// The path, as `--unix` takes it.
    fn arg(&self) -> &str {
        self.path
            .to_str()
            .expect("the temporary directory is UTF-8")
    }
}

impl Drop for UnixEchoServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A UDP server on 127.0.0.1 that echoes each datagram whose number, from
/// 1 in the order received, `answers` accepts, and ignores the others,
/// until none has come for [`common::IO_TIMEOUT`].
fn udp_server(answers: fn(u64) -> bool) -> SocketAddr {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    socket
        .set_read_timeout(Some(common::IO_TIMEOUT))
        .expect("a socket takes a timeout");
    let addr = socket.local_addr().expect("a bound socket has an address");
    thread::spawn(move || -> io::Result<()> {
        let mut buffer = vec![0; 64 * 1024];
        for number in 1.. {
            let (read, from) = socket.recv_from(&mut buffer)?;
            if answers(number) {
                socket.send_to(&buffer[..read], from)?;
            }
        }
        Ok(())
    });
    addr
}

/// `--udp` with `--host` and `--port` of `addr`, followed by `args`.
fn bench_udp(addr: SocketAddr, args: &[&str]) -> Finished {
    let mut all = vec!["--udp"];
    all.extend_from_slice(args);
    bench_at(addr, &all)
}

/// Asserts that `run` exited 0 having verified messages, with no connect
/// error, error, mismatch or loss.
fn assert_clean_json(run: &Finished) {
    assert_eq!(run.code, Some(0), "{run}");
    let json = report(run);
    assert!(count(&json, "messages") > 0, "{run}");
    for key in ["connect_errors", "errors", "mismatches", "lost"] {
        assert_eq!(count(&json, key), 0, "{key}\n{run}");
    }
}

#[test]
fn json_report_against_the_server_is_one_object_with_sane_figures() {
    let server = TestServer::start();
    let run = bench_at(server.addr, &["-c", "4", "-s", "100", "-d", "1s", "--json"]);
    assert_eq!(run.code, Some(0), "{run}");
    let json = report(&run);
    let object = json.as_object().expect("checked to be an object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "bytes",
            "connect_errors",
            "connect_s",
            "connect_us",
            "connections",
            "duration_s",
            "errors",
            "latency_us",
            "lost",
            "messages",
            "mib_per_sec",
            "mismatches",
            "msgs_per_sec",
            "refused",
            "timed_out",
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
    assert_eq!(run.code, Some(0), "{run}");
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
    let addr = common::corrupting_server();
    let run = bench_at(addr, &["-c", "2", "-s", "64", "-d", "1s", "--json"]);
    assert_eq!(run.code, Some(1), "{run}");
    let json = report(&run);
    assert!(count(&json, "mismatches") > 0, "{run}");
    assert_eq!(count(&json, "messages"), 0, "{run}");
    assert_eq!(count(&json, "errors"), 0, "{run}");
}

#[test]
fn replies_echoed_in_small_pieces_are_reassembled_without_errors() {
    let addr = common::serve_each(piecewise);
    let run = bench_at(addr, &["-c", "3", "-s", "1000", "-d", "1s", "--json"]);
    assert_eq!(run.code, Some(0), "{run}");
    let json = report(&run);
    assert!(count(&json, "messages") > 0, "{run}");
    assert_eq!(count(&json, "errors"), 0, "{run}");
    assert_eq!(count(&json, "mismatches"), 0, "{run}");
}

#[test]
fn a_closed_port_counts_connect_errors_and_fails_without_panicking() {
    let addr = common::closed_port();
    let run = bench_at(addr, &["-c", "3", "-d", "1s", "--json"]);
    assert_eq!(run.code, Some(1), "{run}");
    assert_no_panic(&run);
    let json = report(&run);
    assert_eq!(count(&json, "connect_errors"), 3, "{run}");
    assert_eq!(count(&json, "refused"), 3, "{run}");
    assert_eq!(count(&json, "timed_out"), 0, "{run}");
    assert_eq!(count(&json, "connections"), 0, "{run}");
    assert!(run.stderr.contains("error: cannot connect to"), "{run}");
}

#[test]
fn a_stalled_server_gives_errors_and_the_run_still_ends() {
    let addr = common::silent_server();
    let run = bench_at(addr, &["-c", "2", "-d", "1s", "--json"]);
    assert_eq!(run.code, Some(1), "{run}");
    assert_no_panic(&run);
    let json = report(&run);
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
    assert_eq!(run.code, Some(0), "{run}");
    let messages = count(&report(&run), "messages");
    // 4 clients, 10 intervals each: 40, with room for a busy machine.
    assert!((20..=60).contains(&messages), "{messages} messages\n{run}");
}

#[test]
fn a_stream_through_the_server_comes_back_intact_past_its_period() {
    let server = TestServer::start();
    let run = bench_at(
        server.addr,
        &["--stream", "-c", "2", "-s", "100000", "-d", "1s", "--json"],
    );
    assert_clean_json(&run);
    let json = report(&run);
    assert_eq!(count(&json, "connections"), 2, "{run}");
    // Past the stream's period (65,521 bytes) twice over, every byte
    // checked: the stream wraps around its pattern through a real server.
    assert!(count(&json, "bytes") > 2 * 65_521, "{run}");
    assert!(
        json["mib_per_sec"].as_f64().is_some_and(|rate| rate > 0.0),
        "{run}"
    );
}

#[test]
fn a_stream_through_a_corrupting_server_is_a_mismatch_and_fails_the_run() {
    let addr = common::corrupting_server();
    let run = bench_at(addr, &["--stream", "-c", "2", "-d", "1s", "--json"]);
    assert_eq!(run.code, Some(1), "{run}");
    let json = report(&run);
    assert_eq!(count(&json, "mismatches"), 2, "{run}");
    assert_eq!(count(&json, "errors"), 0, "{run}");
}

#[test]
fn a_stream_the_server_stops_echoing_is_an_error_and_the_run_still_ends() {
    let addr = common::silent_server();
    let run = bench_at(addr, &["--stream", "-c", "1", "-d", "1s", "--json"]);
    assert_eq!(run.code, Some(1), "{run}");
    assert_no_panic(&run);
    let json = report(&run);
    assert_eq!(count(&json, "errors"), 1, "{run}");
    assert_eq!(count(&json, "bytes"), 0, "{run}");
}

#[test]
fn a_hold_says_when_every_connection_is_held_and_times_the_connects() {
    let server = TestServer::start();
    let run = bench_at(server.addr, &["--hold", "-c", "20", "-d", "1s", "--json"]);
    assert_clean_json(&run);
    assert!(
        run.stderr.contains("holding 20 connections for 1s\n"),
        "{run}"
    );
    let json = report(&run);
    assert_eq!(count(&json, "connections"), 20, "{run}");
    // One round trip each, to know that the server serves it.
    assert_eq!(count(&json, "messages"), 20, "{run}");
    assert!(
        json["connect_s"].as_f64().is_some_and(|time| time > 0.0),
        "{run}"
    );
    let slowest = json["connect_us"]["max"].as_f64().expect("a number");
    let all = json["connect_s"].as_f64().expect("a number") * 1e6;
    assert!(slowest > 0.0 && slowest <= all, "{run}");
}

#[test]
fn a_hold_counts_each_connection_the_server_closes_as_an_error() {
    // Echoes the first message, then closes.
    let addr = common::serve_each(|mut stream| {
        let mut message = [0; 512];
        stream.read_exact(&mut message)?;
        stream.write_all(&message)
    });
    let run = bench_at(addr, &["--hold", "-c", "3", "-d", "5s", "--json"]);
    assert_eq!(run.code, Some(1), "{run}");
    let json = report(&run);
    assert_eq!(count(&json, "messages"), 3, "{run}");
    assert_eq!(count(&json, "errors"), 3, "{run}");
    assert!(
        run.stderr
            .contains("the server closed a connection while it was held"),
        "{run}"
    );
    // Every connection gone, the run ends without waiting out the hold.
    let held = json["duration_s"].as_f64().expect("a number");
    assert!(held < 5.0, "{run}");
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        ["--connections", "0"],
        ["--size", "0"],
        ["--duration", "soon"],
        ["--duration", "0s"],
        ["--interval", "often"],
        ["--stream", "--hold"],
    ] {
        let run = bench(&args);
        assert_eq!(run.code, Some(2), "{run}");
        assert!(run.stdout.is_empty(), "{run}");
    }
}

#[test]
fn over_a_unix_socket_file_messages_come_back_without_errors() {
    let server = UnixEchoServer::start("file");
    let run = bench(&["--unix", server.arg(), "-c", "3", "-d", "1s", "--json"]);
    assert_clean_json(&run);
    assert_eq!(count(&report(&run), "connections"), 3, "{run}");
}

#[test]
fn over_a_unix_abstract_name_the_report_names_it_and_messages_come_back() {
    let name = format!("echo-bench-test-{}", std::process::id());
    let addr = UnixAddr::from_abstract_name(&name).expect("a valid abstract name");
    serve_unix(UnixListener::bind_addr(&addr).expect("the name is free"));
    let at_name = format!("@{name}");
    let run = bench(&["--unix", &at_name, "-c", "2", "-d", "1s"]);
    assert_eq!(run.code, Some(0), "{run}");
    for label in [
        format!("Target:       unix:@{name}\n"),
        "2 opened, 0 failed".to_owned(),
        "Errors:       0".to_owned(),
    ] {
        assert!(run.stdout.contains(&label), "no {label:?}\n{run}");
    }
    assert!(!run.stdout.contains("Lost:"), "{run}");
}

#[test]
fn a_unix_path_with_nothing_there_is_an_error_naming_it() {
    let path = std::env::temp_dir().join(format!("echo-bench-{}-none", std::process::id()));
    let path = path.to_str().expect("the temporary directory is UTF-8");
    let run = bench(&["--unix", path, "-c", "2", "-d", "1s"]);
    assert_eq!(run.code, Some(1), "{run}");
    assert_no_panic(&run);
    let expected = format!("error: cannot connect to unix:{path}: no such file or directory");
    assert!(run.stderr.contains(&expected), "{run}");
}

#[test]
fn over_udp_every_datagram_comes_back_and_none_is_lost() {
    let addr = udp_server(|_| true);
    let run = bench_udp(addr, &["-c", "2", "-s", "1000", "-d", "1s", "--json"]);
    assert_clean_json(&run);
    let json = report(&run);
    assert_eq!(count(&json, "connections"), 2, "{run}");
    assert_eq!(
        count(&json, "bytes"),
        count(&json, "messages") * 1000,
        "{run}"
    );
}

#[test]
fn the_udp_text_report_names_the_target_and_counts_no_loss() {
    let addr = udp_server(|_| true);
    let run = bench_udp(addr, &["-c", "1", "-d", "1s"]);
    assert_eq!(run.code, Some(0), "{run}");
    for label in [
        format!("Target:       udp:{addr}\n"),
        "Lost:         0\n".to_owned(),
    ] {
        assert!(run.stdout.contains(&label), "no {label:?}\n{run}");
    }
}

#[test]
fn a_udp_server_that_answers_every_other_datagram_gives_losses_and_fails_the_run() {
    let addr = udp_server(|number| number % 2 == 1);
    let run = bench_udp(addr, &["-c", "2", "-d", "1s", "--json"]);
    assert_eq!(run.code, Some(1), "{run}");
    assert_no_panic(&run);
    let json = report(&run);
    assert!(count(&json, "lost") > 0, "{run}");
    assert!(count(&json, "messages") > 0, "{run}");
    assert_eq!(count(&json, "errors"), 0, "{run}");
    assert_eq!(count(&json, "mismatches"), 0, "{run}");
    assert!(run.stderr.contains("datagrams were lost"), "{run}");
}

#[test]
fn a_udp_message_larger_than_a_datagram_is_a_usage_error() {
    let run = bench(&["--udp", "--size", "70000", "-d", "1s"]);
    assert_eq!(run.code, Some(2), "{run}");
    assert!(run.stdout.is_empty(), "{run}");
    assert!(run.stderr.contains("--size"), "{run}");
    let run = bench(&["--size", "70000", "--udp", "--unix", "@x"]);
    assert_eq!(run.code, Some(2), "--unix goes without --udp\n{run}");
}

#[test]
fn an_unresolvable_host_is_an_error_naming_it() {
    let run = bench(&["--host", "no-such-host.invalid", "-d", "1s"]);
    assert_eq!(run.code, Some(1), "{run}");
    assert_no_panic(&run);
    assert!(
        run.stderr
            .contains("error: cannot resolve no-such-host.invalid"),
        "{run}"
    );
}

/// Runs over TLS against a rustls echo server written here.
#[cfg(feature = "tls")]
mod tls {
    use super::*;
    use std::net::TcpListener;
    use std::sync::Arc;

    use rcgen::{CertificateParams, CertifiedKey, DnType, KeyPair};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::{ServerConfig, ServerConnection, StreamOwned};

    /// A directory of PEM files in the temporary directory, named after
    /// this process and a test; removed with its files on drop.
    struct PemDir {
        /// Where it is.
        dir: PathBuf,
    }

    impl PemDir {
        /// A fresh, empty directory for `test`.
        fn new(test: &str) -> PemDir {
            let name = format!("echo-bench-tls-{}-{test}", std::process::id());
            let dir = std::env::temp_dir().join(name);
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir(&dir)
                .unwrap_or_else(|error| panic!("create {}: {error}", dir.display()));
            PemDir { dir }
        }

        /// Writes `certificate`'s certificate to the file `name` and
        /// returns its path, as `--ca` takes it.
        fn certificate(&self, name: &str, certificate: &CertifiedKey<KeyPair>) -> String {
            let path = self.dir.join(name);
            std::fs::write(&path, certificate.cert.pem())
                .unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
            path.to_str()
                .expect("the temporary directory is UTF-8")
                .to_owned()
        }
    }

    impl Drop for PemDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// A self-signed certificate for localhost and 127.0.0.1 whose subject
    /// is `name`, and its key.
    fn certificate(name: &str) -> CertifiedKey<KeyPair> {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let mut params = CertificateParams::new(names).expect("valid names");
        params.distinguished_name.push(DnType::CommonName, name);
        let signing_key = KeyPair::generate().expect("a key can be made");
        let cert = params.self_signed(&signing_key).expect("valid parameters");
        CertifiedKey { cert, signing_key }
    }

    /// A TLS echo server on 127.0.0.1 that presents `identity`, a thread
    /// per client, until no client has come for [`common::IO_TIMEOUT`].
    fn tls_echo_server(identity: &CertifiedKey<KeyPair>) -> SocketAddr {
        let key = PrivatePkcs8KeyDer::from(identity.signing_key.serialize_der());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring has safe protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![identity.cert.der().clone()], PrivateKeyDer::Pkcs8(key))
            .expect("the key is the certificate's");
        let config = Arc::new(config);
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
        // On Linux the read timeout bounds accept() too.
        socket2::SockRef::from(&listener)
            .set_read_timeout(Some(common::IO_TIMEOUT))
            .expect("a listener takes a timeout");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        thread::spawn(move || {
            while let Ok((stream, _)) = listener.accept() {
                let config = Arc::clone(&config);
                thread::spawn(move || echo_tls(stream, config));
            }
        });
        addr
    }

    /// Makes the handshake with one client, then echoes what it sends
    /// until it closes.
    fn echo_tls(stream: TcpStream, config: Arc<ServerConfig>) -> io::Result<()> {
        common::set_timeouts(&stream);
        let session = ServerConnection::new(config).map_err(io::Error::other)?;
        let mut tls = StreamOwned::new(session, stream);
        let mut buffer = [0; 4096];
        loop {
            match tls.read(&mut buffer)? {
                0 => return Ok(()),
                read => tls.write_all(&buffer[..read])?,
            }
            tls.flush()?;
        }
    }

    #[test]
    fn trusting_the_server_certificate_messages_come_back_and_the_handshake_is_timed() {
        let pems = PemDir::new("trusted");
        let server = certificate("echo-bench test server");
        let ca = pems.certificate("ca.pem", &server);
        let addr = tls_echo_server(&server);
        let run = bench_at(
            addr,
            &["--tls", "--ca", &ca, "-c", "3", "-d", "1s", "--json"],
        );
        assert_clean_json(&run);
        let json = report(&run);
        assert_eq!(count(&json, "connections"), 3, "{run}");
        let handshakes = &json["tls_handshake_us"];
        for key in ["p90", "p99", "p999", "max"] {
            assert!(handshakes[key].is_f64(), "no tls_handshake_us.{key}\n{run}");
        }
        let p50 = handshakes["p50"].as_f64().unwrap_or_default();
        assert!(p50 > 0.0, "tls_handshake_us.p50 is not above 0\n{run}");
    }

    #[test]
    fn insecure_takes_the_certificate_unverified_and_the_report_says_so() {
        let addr = tls_echo_server(&certificate("echo-bench test server"));
        let run = bench_at(addr, &["--tls", "--insecure", "-c", "2", "-d", "1s"]);
        assert_eq!(run.code, Some(0), "{run}");
        for label in [
            format!(
                "Target:       {addr} over TLS (server name 127.0.0.1, certificate not verified)\n"
            ),
            "2 opened, 0 failed".to_owned(),
            "TLS handshake: p50 ".to_owned(),
            "Errors:       0".to_owned(),
        ] {
            assert!(run.stdout.contains(&label), "no {label:?}\n{run}");
        }
    }

    #[test]
    fn a_server_certificate_from_another_ca_gives_connect_errors_with_the_reason() {
        let pems = PemDir::new("other-ca");
        let other = pems.certificate("other.pem", &certificate("echo-bench other CA"));
        let addr = tls_echo_server(&certificate("echo-bench test server"));
        let run = bench_at(
            addr,
            &["--tls", "--ca", &other, "-c", "2", "-d", "1s", "--json"],
        );
        assert_eq!(run.code, Some(1), "{run}");
        assert_no_panic(&run);
        let json = report(&run);
        assert_eq!(count(&json, "connect_errors"), 2, "{run}");
        assert_eq!(count(&json, "connections"), 0, "{run}");
        let reason =
            format!("error: cannot connect to {addr}: invalid peer certificate: UnknownIssuer");
        assert!(run.stderr.contains(&reason), "{run}");
    }

    #[test]
    fn tls_without_a_stream_or_a_way_to_verify_the_server_is_a_usage_error() {
        for (args, says) in [
            (&["--tls", "--insecure", "--udp"][..], "--udp"),
            (&["--insecure"], "--tls"),
            (&["--tls", "--insecure", "--cert", "client.pem"], "--key"),
        ] {
            let run = bench(args);
            assert_eq!(run.code, Some(2), "{run}");
            assert!(run.stdout.is_empty(), "{run}");
            assert!(run.stderr.contains(says), "no {says:?}\n{run}");
        }
    }
}
