//! The client side: the library's `Client`, and the `echo-client` binary
//! against a real server and against servers that misbehave, over TCP, Unix
//! stream sockets and UDP, and over TLS.

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

/// TLS: `Client::connect_tls`, `connect_tls_unix` and `echo-client --tls`
/// against a TLS echo server written here with rustls, with certificates
/// made by rcgen.
#[cfg(feature = "tls")]
mod tls {
    use super::*;

    use std::fs;
    use std::net::TcpListener;
    use std::sync::Arc;

    use echo_server::TlsClientOptions;
    use rcgen::{
        BasicConstraints, Certificate, CertificateParams, CertifiedIssuer, DnType,
        ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    };
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::server::WebPkiClientVerifier;
    use rustls::{
        DEFAULT_VERSIONS, RootCertStore, ServerConfig, ServerConnection, StreamOwned,
        SupportedProtocolVersion,
    };

    /// A certificate authority of the tests' own.
    struct Authority(CertifiedIssuer<'static, KeyPair>);

    impl Authority {
        /// A self-signed CA named `name`.
        fn new(name: &str) -> Authority {
            let mut params = CertificateParams::default();
            params.distinguished_name.push(DnType::CommonName, name);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
            let key = KeyPair::generate().expect("an ECDSA key");
            Authority(CertifiedIssuer::self_signed(params, key).expect("a CA certificate"))
        }

        /// A certificate for `names` and `purpose`, with `key`, signed by
        /// this CA.
        fn sign(&self, names: &[&str], purpose: ExtendedKeyUsagePurpose, key: KeyPair) -> Leaf {
            let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
            let mut params = CertificateParams::new(names).expect("valid names");
            params.extended_key_usages = vec![purpose];
            let certificate = params
                .signed_by(&key, &self.0)
                .expect("a signed certificate");
            Leaf { certificate, key }
        }

        /// The CA's certificate, PEM.
        fn pem(&self) -> String {
            self.0.pem()
        }
    }

    /// A certificate and its key.
    struct Leaf {
        certificate: Certificate,
        key: KeyPair,
    }

    impl Leaf {
        /// The certificate, DER, as the server presents it.
        fn der(&self) -> CertificateDer<'static> {
            self.certificate.der().clone()
        }

        /// The private key, PKCS#8 DER.
        fn private_key(&self) -> PrivateKeyDer<'static> {
            PrivatePkcs8KeyDer::from(self.key.serialize_der()).into()
        }
    }

    /// A directory for one test's PEM files in the temporary directory,
    /// unique to the test and this process; removed on drop.
    struct PemDir(PathBuf);

    impl PemDir {
        /// An empty directory for the test `name`.
        fn new(name: &str) -> PemDir {
            let dir =
                std::env::temp_dir().join(format!("echo-client-tls-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir(&dir).expect("create a directory for the PEM files");
            PemDir(dir)
        }

        /// Writes `contents` to the file `name` and returns its path, as
        /// `--ca` and the other flags take it.
        fn write(&self, name: &str, contents: &str) -> String {
            let path = self.0.join(name);
            fs::write(&path, contents).expect("write a PEM file");
            path.to_str()
                .expect("the temporary directory has a UTF-8 path")
                .to_owned()
        }
    }

    impl Drop for PemDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A test PKI: a CA, a server certificate it signed for `localhost` and
    /// 127.0.0.1, a client certificate it signed with an Ed25519 key, and
    /// the PEM files of what a client needs.
    struct Pki {
        ca: Authority,
        server: Leaf,
        /// The CA's certificate, for `--ca`.
        ca_file: String,
        /// The client certificate and its key, for `--cert` and `--key`.
        client_cert_file: String,
        client_key_file: String,
        /// Keeps the files until the test ends.
        dir: PemDir,
    }

    impl Pki {
        /// A fresh PKI, its files in a directory for the test `name`.
        fn new(name: &str) -> Pki {
            let ca = Authority::new("echo-client test CA");
            let server_key = KeyPair::generate().expect("an ECDSA key");
            let server = ca.sign(
                &["localhost", "127.0.0.1"],
                ExtendedKeyUsagePurpose::ServerAuth,
                server_key,
            );
            let client_key = KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("an Ed25519 key");
            let client = ca.sign(&["client"], ExtendedKeyUsagePurpose::ClientAuth, client_key);
            let dir = PemDir::new(name);
            Pki {
                ca_file: dir.write("ca.pem", &ca.pem()),
                client_cert_file: dir.write("client.pem", &client.certificate.pem()),
                client_key_file: dir.write("client.key", &client.key.serialize_pem()),
                ca,
                server,
                dir,
            }
        }

        /// The configuration of a server presenting the server certificate
        /// with `versions`; with `client_ca`, it requires a client
        /// certificate that CA signed.
        fn server_config(
            &self,
            versions: &[&'static SupportedProtocolVersion],
            client_ca: Option<&Authority>,
        ) -> ServerConfig {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
                .with_protocol_versions(versions)
                .expect("ring supports TLS 1.2 and 1.3");
            let builder = match client_ca {
                None => builder.with_no_client_auth(),
                Some(ca) => {
                    let mut roots = RootCertStore::empty();
                    roots.add(ca.0.der().clone()).expect("a CA certificate");
                    let verifier =
                        WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                            .build()
                            .expect("a client verifier");
                    builder.with_client_cert_verifier(verifier)
                }
            };
            builder
                .with_single_cert(vec![self.server.der()], self.server.private_key())
                .expect("the server key matches its certificate")
        }

        /// Client options that trust this PKI's CA.
        fn trusting(&self) -> TlsClientOptions {
            trusting(&self.ca_file)
        }
    }

    /// Client options that trust the CAs in `ca_file`.
    fn trusting(ca_file: &str) -> TlsClientOptions {
        let mut options = TlsClientOptions::default();
        options.ca = Some(ca_file.into());
        options
    }

    /// Client options that check nothing.
    fn insecure() -> TlsClientOptions {
        let mut options = TlsClientOptions::default();
        options.insecure = true;
        options
    }

    /// A TLS echo server: every client on a thread of its own, every byte
    /// back; after the client's close_notify, its own, then the end. What
    /// became of each client is reported on `outcomes`.
    struct TlsServer {
        addr: SocketAddr,
        /// Each client's outcome: the bytes echoed when the client closed
        /// with close_notify, or the error that ended it.
        outcomes: mpsc::Receiver<io::Result<usize>>,
    }

    impl TlsServer {
        /// A server with `config` on a free port of 127.0.0.1. The accept
        /// thread is left behind when the test ends.
        fn start(config: ServerConfig) -> TlsServer {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
            let addr = listener
                .local_addr()
                .expect("a bound listener has an address");
            let (sender, outcomes) = mpsc::channel();
            let config = Arc::new(config);
            thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    common::set_timeouts(&stream);
                    let (config, sender) = (Arc::clone(&config), sender.clone());
                    thread::spawn(move || sender.send(echo_tls(config, stream)));
                }
            });
            TlsServer { addr, outcomes }
        }

        /// What became of the next client to go.
        fn outcome(&self) -> io::Result<usize> {
            self.outcomes
                .recv_timeout(common::EVENT_TIMEOUT)
                .expect("a client's outcome within the timeout")
        }
    }

    /// Echoes a TLS client on `socket` until its close_notify, then sends
    /// close_notify and closes; returns how many bytes it echoed.
    fn echo_tls<S: Read + Write>(config: Arc<ServerConfig>, socket: S) -> io::Result<usize> {
        let connection = ServerConnection::new(config).map_err(io::Error::other)?;
        let mut stream = StreamOwned::new(connection, socket);
        let mut buffer = vec![0; 16 * 1024];
        let mut echoed = 0;
        loop {
            let read = match stream.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) => {
                    // Read on until the client goes, so that the alert
                    // already sent reaches it, not a reset.
                    let _ = io::copy(&mut stream.sock, &mut io::sink());
                    return Err(error);
                }
            };
            stream.write_all(&buffer[..read])?;
            echoed += read;
        }
        stream.conn.send_close_notify();
        stream.flush()?;
        Ok(echoed)
    }

    /// A server for `config` on the Unix socket `file`.
    fn serve_tls_unix(file: &SocketFile, config: ServerConfig) {
        let listener = UnixListener::bind(&file.0).expect("bind a Unix socket");
        let config = Arc::new(config);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let config = Arc::clone(&config);
                thread::spawn(move || {
                    stream.set_read_timeout(Some(common::IO_TIMEOUT))?;
                    stream.set_write_timeout(Some(common::IO_TIMEOUT))?;
                    echo_tls(config, stream)
                });
            }
        });
    }

    #[test]
    fn tls_client_trusting_the_ca_echoes_a_mebibyte_exactly_and_closes_with_close_notify() {
        let pki = Pki::new("mebibyte");
        let server = TlsServer::start(pki.server_config(DEFAULT_VERSIONS, None));
        let message = common::random_bytes(1024 * 1024);
        let mut client = Client::connect_tls(
            server.addr,
            "localhost",
            &pki.trusting(),
            common::IO_TIMEOUT,
        )
        .expect("connect over TLS");
        assert_eq!(client.peer(), server.addr.to_string());

        let reply = client.send(&message).expect("send 1 MiB");

        assert_eq!(reply.len(), message.len());
        assert!(reply == message, "the reply differs from the message");
        client.close().expect("close");
        let echoed = server.outcome().expect("the server sees close_notify");
        assert_eq!(echoed, message.len());
    }

    #[test]
    fn tls_client_checks_the_server_name_against_the_certificate() {
        let pki = Pki::new("names");
        let server = TlsServer::start(pki.server_config(DEFAULT_VERSIONS, None));

        for name in ["localhost", "127.0.0.1"] {
            let mut client =
                Client::connect_tls(server.addr, name, &pki.trusting(), common::IO_TIMEOUT)
                    .unwrap_or_else(|error| panic!("connect as {name}: {error}"));
            assert_eq!(client.send(b"hello").expect("send"), b"hello");
            client.close().expect("close");
        }
        let error = Client::connect_tls(
            server.addr,
            "elsewhere.test",
            &pki.trusting(),
            common::IO_TIMEOUT,
        )
        .expect_err("the certificate is not for elsewhere.test");
        assert_eq!(error.kind(), ErrorKind::InvalidData, "{error}");
        assert!(
            error.to_string().starts_with(&format!(
                "TLS handshake with {} failed: invalid peer certificate: certificate not valid for name \"elsewhere.test\"",
                server.addr
            )),
            "{error}"
        );
    }

    #[test]
    fn tls_client_with_insecure_accepts_a_certificate_for_another_name_from_an_unknown_ca() {
        let pki = Pki::new("insecure");
        let server = TlsServer::start(pki.server_config(DEFAULT_VERSIONS, None));
        let mut client = Client::connect_tls(
            server.addr,
            "elsewhere.test",
            &insecure(),
            common::IO_TIMEOUT,
        )
        .expect("connect without checking the certificate");

        assert_eq!(
            client.send(b"Hello, server").expect("send"),
            b"Hello, server"
        );
        client.close().expect("close");
        assert_eq!(server.outcome().expect("a clean close"), 13);
    }

    #[test]
    fn tls_client_speaks_tls_1_2_checked_or_insecure() {
        let pki = Pki::new("tls12");
        let server = TlsServer::start(pki.server_config(&[&rustls::version::TLS12], None));

        for (how, options) in [
            ("trusting the CA", pki.trusting()),
            ("insecure", insecure()),
        ] {
            let mut client =
                Client::connect_tls(server.addr, "localhost", &options, common::IO_TIMEOUT)
                    .unwrap_or_else(|error| panic!("connect over TLS 1.2 {how}: {error}"));
            assert_eq!(client.send(b"twelve").expect("send"), b"twelve");
            client.close().expect("close");
        }
    }

    #[test]
    fn tls_client_trusting_another_ca_fails_the_handshake_naming_the_unknown_issuer() {
        let pki = Pki::new("other-ca");
        let server = TlsServer::start(pki.server_config(DEFAULT_VERSIONS, None));
        let other = pki
            .dir
            .write("other-ca.pem", &Authority::new("another CA").pem());

        let error = Client::connect_tls(
            server.addr,
            "localhost",
            &trusting(&other),
            common::IO_TIMEOUT,
        )
        .expect_err("a certificate the trusted CA did not sign");

        assert_eq!(error.kind(), ErrorKind::InvalidData, "{error}");
        assert_eq!(
            error.to_string(),
            format!(
                "TLS handshake with {} failed: invalid peer certificate: UnknownIssuer",
                server.addr
            )
        );
    }

    #[test]
    fn tls_client_to_a_plain_echo_server_fails_the_handshake_naming_it() {
        // The server echoes the ClientHello: no reply a TLS server gives.
        let server = TestServer::start();

        let error = Client::connect_tls(server.addr, "localhost", &insecure(), common::IO_TIMEOUT)
            .expect_err("no TLS server");

        let prefix = format!("TLS handshake with {} failed: ", server.addr);
        assert!(error.to_string().starts_with(&prefix), "{error}");
    }

    #[test]
    fn tls_client_reports_the_sha256_fingerprint_of_the_server_certificate() {
        let pki = Pki::new("fingerprint");
        let server = TlsServer::start(pki.server_config(DEFAULT_VERSIONS, None));
        let client = Client::connect_tls(server.addr, "localhost", &insecure(), common::IO_TIMEOUT)
            .expect("connect over TLS");

        // As `openssl x509 -fingerprint -sha256` prints it: two uppercase
        // hex digits a byte, colons between.
        let fingerprint = client.peer_certificate_fingerprint().expect("a TLS peer");
        let bytes: Vec<u8> = fingerprint
            .split(':')
            .map(|hex| {
                assert!(hex.len() == 2 && hex == hex.to_uppercase(), "{fingerprint}");
                u8::from_str_radix(hex, 16).expect("hex digits")
            })
            .collect();
        let digest = ring::digest::digest(&ring::digest::SHA256, &pki.server.der());
        assert_eq!(bytes, digest.as_ref(), "{fingerprint}");
        client.close().expect("close");

        let plain = TestServer::start();
        let client = Client::connect(plain.addr, common::IO_TIMEOUT).expect("connect");
        assert_eq!(client.peer_certificate_fingerprint(), None);
    }

    #[test]
    fn tls_client_with_a_certificate_is_accepted_by_a_server_requiring_one_and_refused_without() {
        let pki = Pki::new("client-cert");
        let server = TlsServer::start(pki.server_config(DEFAULT_VERSIONS, Some(&pki.ca)));
        let mut with_cert = pki.trusting();
        with_cert.cert = Some(pki.client_cert_file.clone().into());
        with_cert.key = Some(pki.client_key_file.clone().into());

        let mut client =
            Client::connect_tls(server.addr, "localhost", &with_cert, common::IO_TIMEOUT)
                .expect("connect with a client certificate");
        assert_eq!(client.send(b"it's me").expect("send"), b"it's me");
        client.close().expect("close");
        assert_eq!(server.outcome().expect("a clean close"), 7);

        // Over TLS 1.3 the client's side of the handshake ends before the
        // server has checked its certificate: the refusal may come with the
        // first reply.
        let refused = Client::connect_tls(
            server.addr,
            "localhost",
            &pki.trusting(),
            common::IO_TIMEOUT,
        )
        .and_then(|mut client| client.send(b"it's me"));
        let error = refused.expect_err("no client certificate");
        assert!(error.to_string().contains("CertificateRequired"), "{error}");
        assert!(
            error.to_string().contains(&server.addr.to_string()),
            "{error}"
        );
        assert!(server.outcome().is_err(), "the server refuses the client");
    }

    #[test]
    fn tls_client_close_takes_the_end_of_the_connection_without_close_notify() {
        let pki = Pki::new("no-close-notify");
        let config = Arc::new(pki.server_config(DEFAULT_VERSIONS, None));
        let addr = common::serve_one(move |socket| {
            let connection = ServerConnection::new(config).expect("a server connection");
            let mut stream = StreamOwned::new(connection, socket);
            // The handshake, then the client's close_notify; then away,
            // without one of its own.
            let _ = stream.read(&mut [0; 64]);
        });
        let client = Client::connect_tls(addr, "localhost", &pki.trusting(), common::IO_TIMEOUT)
            .expect("connect over TLS");

        client
            .close()
            .expect("the end of the connection closes it too");
    }

    #[test]
    fn tls_client_over_unix_echoes_and_closes_with_close_notify() {
        let pki = Pki::new("unix");
        let file = SocketFile::new("tls");
        serve_tls_unix(&file, pki.server_config(DEFAULT_VERSIONS, None));
        let message = common::random_bytes(256 * 1024);

        let mut client = Client::connect_tls_unix(
            file.as_str(),
            "localhost",
            &pki.trusting(),
            common::IO_TIMEOUT,
        )
        .expect("connect over TLS on a Unix socket");

        assert_eq!(client.peer(), format!("unix:{}", file.as_str()));
        assert!(
            client.send(&message).expect("send") == message,
            "the reply differs"
        );
        client.close().expect("close");
    }

    #[test]
    fn tls_client_handshake_with_a_server_that_trickles_gives_up_at_the_timeout() {
        // A record header announcing 16 KiB, then a byte every 100 ms: each
        // read comes well within the socket timeout, the record never ends.
        let addr = common::serve_one(|mut stream| {
            let _ = stream.read(&mut [0; 4096]);
            let mut sent = stream.write_all(&[0x16, 0x03, 0x03, 0x40, 0x00]);
            while sent.is_ok() {
                thread::sleep(Duration::from_millis(100));
                sent = stream.write_all(&[0]);
            }
        });

        let connected = common::within(common::IO_TIMEOUT, move || {
            Client::connect_tls(addr, "localhost", &insecure(), SHORT_TIMEOUT).map(drop)
        });

        let error = connected
            .expect("connect_tls returns within its timeout")
            .expect_err("the handshake never ends");
        assert_eq!(error.kind(), ErrorKind::TimedOut, "{error}");
        assert_eq!(
            error.to_string(),
            format!("TLS handshake with {addr} did not finish within 300ms")
        );
    }

    #[test]
    fn tls_client_reads_its_files_before_connecting_and_names_the_bad_one() {
        let pki = Pki::new("bad-files");
        let not_pem = pki.dir.write("not-pem.txt", "not a certificate\n");
        let server_key = pki.dir.write("server.key", &pki.server.key.serialize_pem());
        let missing = pki.dir.0.join("missing.pem");
        let mut wrong_key = insecure();
        wrong_key.cert = Some(pki.client_cert_file.clone().into());
        wrong_key.key = Some(server_key.clone().into());
        let mut key_as_cert = insecure();
        key_as_cert.cert = Some(pki.client_key_file.clone().into());
        key_as_cert.key = Some(pki.client_key_file.clone().into());
        let cases = [
            (
                trusting(&not_pem),
                format!("no PEM CA certificate in {not_pem}"),
            ),
            (
                trusting(missing.to_str().expect("a UTF-8 path")),
                format!(
                    "cannot read {}: no such file or directory",
                    missing.display()
                ),
            ),
            (
                wrong_key,
                format!(
                    "the private key in {server_key} does not match the certificate in {}",
                    pki.client_cert_file
                ),
            ),
            (
                key_as_cert,
                format!("no PEM certificate in {}", pki.client_key_file),
            ),
        ];

        // Nothing listens there: a file error comes first.
        let closed = common::closed_port();
        for (options, message) in cases {
            let error = Client::connect_tls(closed, "localhost", &options, common::IO_TIMEOUT)
                .expect_err("a bad file");
            assert_eq!(error.to_string(), message);
        }
    }

    #[test]
    fn echo_client_with_tls_and_ca_prints_each_reply_and_exits_0() {
        let pki = Pki::new("binary-ca");
        let server = TlsServer::start(pki.server_config(DEFAULT_VERSIONS, None));

        // The server name is --host's, 127.0.0.1: the certificate has it.
        let finished = run_client_to(
            server.addr,
            &["--tls", "--ca", &pki.ca_file, "-n", "2", "hello"],
            b"",
        );

        assert_replied(&finished, "hello", 2);
        assert_eq!(server.outcome().expect("a clean close"), 10);
    }

    #[test]
    fn echo_client_with_tls_and_insecure_prints_each_reply_and_exits_0() {
        let pki = Pki::new("binary-insecure");
        let server = TlsServer::start(pki.server_config(DEFAULT_VERSIONS, None));

        let finished = run_client_to(
            server.addr,
            &["--tls", "--insecure"],
            b"first line\nsecond line\n",
        );

        assert_eq!(finished.code, Some(0), "{finished}");
        assert_eq!(
            finished.stdout,
            "Got reply from server: first line\nGot reply from server: second line\n",
            "{finished}"
        );
    }

    #[test]
    fn echo_client_with_a_client_certificate_is_accepted_by_a_server_requiring_one() {
        let pki = Pki::new("binary-client-cert");
        let server = TlsServer::start(pki.server_config(DEFAULT_VERSIONS, Some(&pki.ca)));
        let args = [
            "--tls",
            "--ca",
            &pki.ca_file,
            "--cert",
            &pki.client_cert_file,
            "--key",
            &pki.client_key_file,
            "--server-name",
            "localhost",
            "hello",
        ];

        let finished = run_client_to(server.addr, &args, b"");

        assert_replied(&finished, "hello", 1);
    }

    #[test]
    fn echo_client_over_unix_with_tls_prints_each_reply_and_exits_0() {
        let pki = Pki::new("binary-unix");
        let file = SocketFile::new("binary-tls");
        serve_tls_unix(&file, pki.server_config(DEFAULT_VERSIONS, None));

        let finished = run_client(
            &[
                "--unix",
                file.as_str(),
                "--tls",
                "--ca",
                &pki.ca_file,
                "hello",
            ],
            b"",
        );

        assert_replied(&finished, "hello", 1);
    }

    #[test]
    fn echo_client_with_tls_trusting_another_ca_exits_1_naming_the_unknown_issuer() {
        let pki = Pki::new("binary-other-ca");
        let server = TlsServer::start(pki.server_config(DEFAULT_VERSIONS, None));
        let other = pki
            .dir
            .write("other-ca.pem", &Authority::new("another CA").pem());

        let finished = run_client_to(server.addr, &["--tls", "--ca", &other, "hello"], b"");

        assert_eq!(finished.code, Some(1), "{finished}");
        assert_eq!(
            finished.stderr,
            format!(
                "error: TLS handshake with {} failed: invalid peer certificate: UnknownIssuer\n",
                server.addr
            ),
            "{finished}"
        );
        assert_eq!(finished.stdout, "", "{finished}");
    }

    #[test]
    fn echo_client_with_tls_alone_trusts_the_system_store_and_says_so_when_it_is_empty() {
        let pki = Pki::new("binary-system-store");
        let empty = pki.dir.write("empty.pem", "");
        let server = TlsServer::start(pki.server_config(DEFAULT_VERSIONS, None));
        // OpenSSL's variables name the system's trust store; rustls reads
        // them as OpenSSL does.
        let trusted = common::run_bounded(
            common::echo_client()
                .env("SSL_CERT_FILE", &pki.ca_file)
                .env("SSL_CERT_DIR", "/nonexistent")
                .args([
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &server.addr.port().to_string(),
                ])
                .args(["--tls", "--server-name", "localhost", "hello"]),
            b"",
        );
        assert_eq!(trusted.code, Some(0), "{trusted}");
        let none = common::run_bounded(
            common::echo_client()
                .env("SSL_CERT_FILE", &empty)
                .env("SSL_CERT_DIR", "/nonexistent")
                .args(["--port", "1", "--tls", "hello"]),
            b"",
        );
        assert_eq!(none.code, Some(1), "{none}");
        assert!(
            none.stderr.starts_with(
                "error: no CA to verify the server with: cannot use the system's trust store"
            ),
            "{none}"
        );
    }

    #[test]
    fn echo_client_with_a_key_that_does_not_match_its_certificate_exits_1_naming_both() {
        let pki = Pki::new("binary-wrong-key");
        let server_key = pki.dir.write("server.key", &pki.server.key.serialize_pem());
        let args = [
            "--tls",
            "--insecure",
            "--cert",
            &pki.client_cert_file,
            "--key",
            &server_key,
            "hi",
        ];

        let finished = run_client_to(common::closed_port(), &args, b"");

        assert_eq!(finished.code, Some(1), "{finished}");
        assert_eq!(
            finished.stderr,
            format!(
                "error: the private key in {server_key} does not match the certificate in {}\n",
                pki.client_cert_file
            ),
            "{finished}"
        );
    }

    #[test]
    fn echo_client_with_a_ca_file_that_is_not_there_exits_1_naming_it() {
        let pki = Pki::new("binary-missing-ca");
        let missing = pki.dir.0.join("missing.pem");
        let missing = missing.to_str().expect("a UTF-8 path");

        let finished = run_client_to(
            common::closed_port(),
            &["--tls", "--ca", missing, "hi"],
            b"",
        );

        assert_eq!(finished.code, Some(1), "{finished}");
        assert_eq!(
            finished.stderr,
            format!("error: cannot read {missing}: no such file or directory\n"),
            "{finished}"
        );
    }

    #[test]
    fn echo_client_with_cert_but_no_key_is_a_usage_error() {
        let finished = run_client(
            &["--tls", "--insecure", "--cert", "client.pem", "hello"],
            b"",
        );

        assert_eq!(finished.code, Some(2), "{finished}");
        assert!(finished.stderr.contains("--key"), "{finished}");
        assert_eq!(finished.stdout, "", "{finished}");
    }

    #[test]
    fn echo_client_with_tls_and_udp_is_a_usage_error() {
        let finished = run_client(&["--tls", "--insecure", "--udp", "hello"], b"");

        assert_eq!(finished.code, Some(2), "{finished}");
        assert!(
            finished.stderr.contains("cannot be used with"),
            "{finished}"
        );
        assert_eq!(finished.stdout, "", "{finished}");
    }
}
