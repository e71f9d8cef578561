//! TLS: `--tls` with a throwaway certificate or one made by the test,
//! client certificates, failed handshakes, rotation on SIGHUP, HAProxy
//! passing TLS through, through rustls clients written here and through
//! `openssl s_client` and socat.
//!
//! Tests that need openssl, socat or HAProxy skip when they are missing,
//! unless `ECHO_SERVER_REQUIRE_TOOLS` is set (as in CI).
#![cfg(feature = "tls")]

mod common;

use std::fs;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::process::{self, Command};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{
    ServerProcess, TempDir, TestServer, closed_without_data, echo_server, random_bytes,
    run_bounded, summary_line, tool,
};
use echo_server::{Config, TlsClientOptions, TlsConfig};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A test CA, able to sign server and client certificates.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pem: String,
}

/// A certificate and its key, in DER and PEM.
struct Pair {
    der: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    cert_pem: String,
    key_pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            der: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `names` (DNS names or IP addresses) with the
    /// common name `cn`, signed by this CA.
    fn sign(&self, cn: &str, names: &[&str]) -> Pair {
        let mut params = CertificateParams::new(
            names
                .iter()
                .map(|&name| name.to_owned())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pair {
            der: cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Pair {
    /// Writes the certificate and key into `dir` as `NAME.crt` and
    /// `NAME.key`.
    fn write(&self, dir: &TempDir, name: &str) {
        fs::write(dir.path(&format!("{name}.crt")), &self.cert_pem).unwrap();
        fs::write(dir.path(&format!("{name}.key")), &self.key_pem).unwrap();
    }
}

/// The SHA-256 fingerprint of a certificate, as the server prints it.
fn fingerprint(cert: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert);
    let hex: Vec<String> = digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect();
    hex.join(":")
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration trusting `ca` (or anything, with `None`), with
/// an optional client certificate.
fn client_config(ca: Option<&Ca>, client: Option<&Pair>) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca.der.clone()).unwrap();
            builder.with_root_certificates(roots)
        }
        None => {
            // The library's own --insecure: any certificate, handshake
            // signatures still checked.
            let mut insecure = TlsClientOptions::default();
            insecure.insecure = true;
            return Arc::new(insecure.client_config().expect("insecure needs no file"));
        }
    };
    Arc::new(match client {
        Some(pair) => builder
            .with_client_auth_cert(vec![pair.der.clone()], pair.key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    })
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A TLS connection to `addr` as `localhost`, handshake done.
fn try_connect_tls(addr: SocketAddr, config: Arc<ClientConfig>) -> io::Result<Tls> {
    let tcp = common::connect(addr);
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

fn connect_tls(addr: SocketAddr, config: Arc<ClientConfig>) -> Tls {
    try_connect_tls(addr, config).expect("a TLS handshake")
}

/// The fingerprint of the certificate the server showed `tls`.
fn seen_fingerprint(tls: &Tls) -> String {
    fingerprint(&tls.conn.peer_certificates().expect("a server certificate")[0])
}

fn assert_echoes(tls: &mut Tls, message: &[u8]) {
    tls.write_all(message).unwrap();
    let mut reply = vec![0; message.len()];
    tls.read_exact(&mut reply).unwrap();
    assert!(reply == message, "echo of {} bytes", message.len());
}

/// The fingerprint line of a server started with `--tls`.
fn announced_fingerprint(server: &ServerProcess) -> String {
    server
        .announced
        .iter()
        .find_map(|line| line.strip_prefix("TLS certificate SHA-256 fingerprint: "))
        .unwrap_or_else(|| panic!("no fingerprint line in {:?}", server.announced))
        .to_owned()
}

#[test]
fn the_throwaway_certificate_is_the_one_announced_and_the_one_openssl_sees() {
    let server = ServerProcess::start(&["--bind", "127.0.0.1", "--tls"]);
    let announced = announced_fingerprint(&server);
    let mut tls = connect_tls(server.addr(), client_config(None, None));
    assert_eq!(seen_fingerprint(&tls), announced);
    assert_echoes(&mut tls, b"Hello, server");

    // The library's own client, as echo-client uses it.
    let mut insecure = TlsClientOptions::default();
    insecure.insecure = true;
    let mut client =
        echo_server::Client::connect_tls(server.addr(), "localhost", &insecure, common::IO_TIMEOUT)
            .expect("connect with the library's client");
    assert_eq!(
        client.peer_certificate_fingerprint(),
        Some(announced.clone())
    );
    assert_eq!(
        client.send(b"from the library").unwrap(),
        b"from the library"
    );
    client.close().expect("a clean close");

    if let Some(openssl) = tool("openssl") {
        let shown = run_bounded(
            Command::new(&openssl).args([
                "s_client",
                "-connect",
                &server.addr().to_string(),
                "-servername",
                "localhost",
            ]),
            b"",
        );
        let pem_start = shown
            .stdout
            .find("-----BEGIN CERTIFICATE-----")
            .expect("a certificate");
        let pem_end = shown
            .stdout
            .find("-----END CERTIFICATE-----")
            .expect("its end")
            + 25;
        let x509 = run_bounded(
            Command::new(&openssl).args(["x509", "-noout", "-fingerprint", "-sha256"]),
            &shown.stdout.as_bytes()[pem_start..pem_end],
        );
        assert_eq!(
            x509.stdout.trim().split('=').nth(1),
            Some(announced.as_str()),
            "{x509}"
        );
    }
}

#[test]
fn socat_gets_its_bytes_back_over_tls() {
    let Some(socat) = tool("socat") else {
        return;
    };
    let server = ServerProcess::start(&["--bind", "127.0.0.1", "--tls"]);
    let input = b"line one\nline two\n";
    let finished = run_bounded(
        Command::new(socat).args(["-", &format!("OPENSSL:{},verify=0", server.addr())]),
        input,
    );
    assert_eq!(finished.code, Some(0), "{finished}");
    assert_eq!(finished.stdout.as_bytes(), input);
}

/// A CA, a server pair for localhost and 127.0.0.1 written into `dir` as
/// `server.crt`/`server.key`, and the server's arguments for it.
fn server_pki(dir: &TempDir) -> (Ca, Pair, Vec<String>) {
    let ca = Ca::new("echo test CA");
    let pair = ca.sign("echo server", &["localhost", "127.0.0.1"]);
    pair.write(dir, "server");
    let args = vec![
        "--bind".to_owned(),
        "127.0.0.1".to_owned(),
        "--tls-cert".to_owned(),
        dir.arg("server.crt"),
        "--tls-key".to_owned(),
        dir.arg("server.key"),
    ];
    (ca, pair, args)
}

#[test]
fn a_certificate_made_by_the_test_is_served_and_verified() {
    let dir = TempDir::new("tls");
    let (ca, pair, args) = server_pki(&dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerProcess::start(&args);
    assert_eq!(announced_fingerprint(&server), fingerprint(&pair.der));
    let mut tls = connect_tls(server.addr(), client_config(Some(&ca), None));
    assert_echoes(&mut tls, b"verified");
}

#[test]
fn half_close_over_tls_returns_sixteen_mebibytes_then_close_notify() {
    let dir = TempDir::new("tls");
    let (ca, _, args) = server_pki(&dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerProcess::start(&args);
    let tls = connect_tls(server.addr(), client_config(Some(&ca), None));
    let (conn, tcp) = tls.into_parts();
    let message = random_bytes(16 * 1024 * 1024);
    // One thread writes the TLS records, the other reads: the session is
    // shared, so each side moves records with its own clone of the socket.
    let conn = Arc::new(std::sync::Mutex::new(conn));
    let received = {
        let writer_conn = Arc::clone(&conn);
        let mut writer_tcp = tcp.try_clone().unwrap();
        let to_send = message.clone();
        // Records are made under the lock and sent outside it, so that a
        // full socket never keeps the reader from the session.
        let seal = move |plain: Option<&[u8]>| -> Vec<u8> {
            let mut conn = writer_conn.lock().unwrap();
            match plain {
                Some(plain) => conn.writer().write_all(plain).unwrap(),
                None => conn.send_close_notify(),
            }
            let mut records = Vec::new();
            while conn.wants_write() {
                conn.write_tls(&mut records).unwrap();
            }
            records
        };
        let writer = thread::spawn(move || {
            for chunk in to_send.chunks(16 * 1024) {
                writer_tcp.write_all(&seal(Some(chunk))).unwrap();
            }
            writer_tcp.write_all(&seal(None)).unwrap();
            writer_tcp.shutdown(Shutdown::Write).unwrap();
        });
        let mut received = Vec::with_capacity(message.len());
        let mut reader_tcp = tcp;
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let read = reader_tcp
                .read(&mut buffer)
                .expect("read within the timeout");
            if read == 0 {
                break;
            }
            let mut conn = conn.lock().unwrap();
            let mut records = &buffer[..read];
            // rustls takes what its buffers hold: feed, decrypt and drain
            // until every byte read is in.
            while !records.is_empty() {
                conn.read_tls(&mut records).unwrap();
                conn.process_new_packets().expect("valid TLS records");
                let mut plain = [0; 16 * 1024];
                loop {
                    match conn.reader().read(&mut plain) {
                        Ok(0) => break,
                        Ok(n) => received.extend_from_slice(&plain[..n]),
                        Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                        Err(error) => panic!("plaintext: {error}"),
                    }
                }
            }
        }
        writer.join().unwrap();
        // The server said it had finished with close_notify, not just
        // by closing the connection.
        let mut rest = [0; 1];
        assert_eq!(conn.lock().unwrap().reader().read(&mut rest).ok(), Some(0));
        received
    };
    assert!(
        received == message,
        "{} of {} bytes back",
        received.len(),
        message.len()
    );
    let log = server.stop();
    assert!(
        log.contains("disconnected: client closed, 16777216 bytes echoed"),
        "{log}"
    );
    drop(conn);
}

#[test]
fn failed_handshakes_are_closed_counted_and_the_next_client_served() {
    let dir = TempDir::new("tls");
    let (ca, _, args) = server_pki(&dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerProcess::start(&args);
    let addr = server.addr();

    // Plaintext to a TLS port.
    let mut plain = common::connect(addr);
    plain.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = Vec::new();
    let _ = plain.read_to_end(&mut reply);
    assert!(
        !reply.windows(3).any(|window| window == b"GET"),
        "nothing echoed"
    );

    // A client trusting another CA gives up on the handshake.
    let stranger = Ca::new("another CA");
    assert!(try_connect_tls(addr, client_config(Some(&stranger), None)).is_err());

    // An old protocol version.
    if let Some(openssl) = tool("openssl") {
        let old = run_bounded(
            Command::new(openssl).args(["s_client", "-connect", &addr.to_string(), "-tls1_1"]),
            b"",
        );
        assert_ne!(old.code, Some(0), "{old}");
    }

    let mut good = connect_tls(addr, client_config(Some(&ca), None));
    assert_echoes(&mut good, b"still served");
    drop(good);
    let log = server.stop();
    let summary = summary_line(&log);
    let failed = summary
        .split([',', ';'])
        .find_map(|part| part.trim().strip_suffix(" failed TLS handshakes"))
        .and_then(|count| count.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no TLS count in {summary}"));
    // Plaintext, the stranger, and the old version when openssl ran.
    assert!(failed >= 2, "{summary}");
    assert!(log.contains("TLS handshake failed"), "{log}");
}

#[test]
fn a_stalled_handshake_is_closed_at_the_deadline_and_counted() {
    let config = Config {
        tls: Some(TlsConfig {
            handshake_timeout: Duration::from_millis(300),
            ..TlsConfig::self_signed()
        }),
        ..Config::default()
    };
    let server = TestServer::with_config(config);
    let mut stalled = common::connect(server.addr);
    // The server closes it by itself; the read timeout (10 s) bounds the
    // wait if it does not.
    assert!(closed_without_data(&mut stalled));
    let mut tls = connect_tls(server.addr, client_config(None, None));
    assert_echoes(&mut tls, b"next");
    drop(tls);
    let stats = server.stop();
    assert_eq!(stats.tls_errors, 1);
}

#[test]
fn client_certificates_are_required_checked_and_logged() {
    let dir = TempDir::new("tls");
    let (ca, _, mut args) = server_pki(&dir);
    fs::write(dir.path("clients.crt"), &ca.pem).unwrap();
    args.extend(["--tls-client-ca".to_owned(), dir.arg("clients.crt")]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerProcess::start(&args);
    let addr = server.addr();

    let stranger = Ca::new("not trusted").sign("intruder", &[]);
    for client in [None, Some(&stranger)] {
        // TLS 1.3 clients learn of the refusal on their first read.
        match try_connect_tls(addr, client_config(Some(&ca), client)) {
            Err(_) => {}
            Ok(mut tls) => {
                let _ = tls.write_all(b"let me in");
                let mut byte = [0; 1];
                assert!(tls.read(&mut byte).map_or(true, |read| read == 0));
            }
        }
    }
    let known = ca.sign("trusted client", &[]);
    let mut tls = connect_tls(addr, client_config(Some(&ca), Some(&known)));
    assert_echoes(&mut tls, b"welcome");
    server.wait_for_log("TLS client certificate CN=trusted client");
    drop(tls);
    let log = server.stop();
    assert!(
        summary_line(&log).contains(", 2 failed TLS handshakes"),
        "{log}"
    );
}

#[test]
fn sighup_rotates_the_certificate_for_new_clients_only_and_keeps_it_when_broken() {
    let dir = TempDir::new("tls");
    let (ca, first, args) = server_pki(&dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerProcess::start(&args);
    let addr = server.addr();
    let mut before = connect_tls(addr, client_config(Some(&ca), None));
    assert_eq!(seen_fingerprint(&before), fingerprint(&first.der));

    let second = ca.sign("echo server, renewed", &["localhost", "127.0.0.1"]);
    second.write(&dir, "server");
    server.signal("HUP");
    server.wait_for_log(&format!(
        "TLS certificate reloaded, SHA-256 fingerprint {}",
        fingerprint(&second.der)
    ));
    let after = connect_tls(addr, client_config(Some(&ca), None));
    assert_eq!(seen_fingerprint(&after), fingerprint(&second.der));
    assert_echoes(&mut before, b"kept my session");

    fs::write(dir.path("server.key"), "not a key").unwrap();
    server.signal("HUP");
    server.wait_for_log("cannot reload the TLS certificate, keeping the one in use");
    let still = connect_tls(addr, client_config(Some(&ca), None));
    assert_eq!(seen_fingerprint(&still), fingerprint(&second.der));
}

#[test]
fn a_broken_pair_at_startup_is_an_error_naming_the_file() {
    let dir = TempDir::new("tls");
    let ca = Ca::new("echo test CA");
    ca.sign("one", &["localhost"]).write(&dir, "one");
    ca.sign("two", &["localhost"]).write(&dir, "two");
    for (cert, key, says) in [
        (
            dir.arg("missing.crt"),
            dir.arg("one.key"),
            "missing.crt: no such file or directory",
        ),
        (
            dir.arg("one.crt"),
            dir.arg("two.key"),
            "does not fit the certificate",
        ),
    ] {
        let finished = run_bounded(
            echo_server().args(["--port", "0", "--tls-cert", &cert, "--tls-key", &key]),
            b"",
        );
        assert_eq!(finished.code, Some(1), "{finished}");
        assert!(finished.stderr.starts_with("error: "), "{finished}");
        assert!(finished.stderr.contains(says), "{finished}");
    }
    let finished = run_bounded(
        echo_server().args(["--port", "0", "--tls-cert", &dir.arg("one.crt")]),
        b"",
    );
    assert_eq!(
        finished.code,
        Some(2),
        "--tls-cert without --tls-key: {finished}"
    );
}

#[test]
fn haproxy_passes_tls_through_with_a_proxy_header_and_the_server_logs_the_client() {
    let Some(haproxy) = tool("haproxy") else {
        return;
    };
    let dir = TempDir::new("tls");
    let (ca, _, mut args) = server_pki(&dir);
    args.push("--proxy-protocol".to_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerProcess::start(&args);
    let frontend = common::closed_port();
    let config = format!(
        "defaults
    mode tcp
    timeout connect 1s
    timeout client 10s
    timeout server 10s

frontend tls_in
    bind {frontend}
    default_backend echo

backend echo
    server s {} send-proxy-v2
",
        server.addr()
    );
    fs::write(dir.path("haproxy.cfg"), config).unwrap();
    let mut balancer = Command::new(haproxy)
        .args(["-db", "-f", &dir.arg("haproxy.cfg")])
        .stdout(process::Stdio::null())
        .stderr(process::Stdio::null())
        .spawn()
        .expect("start haproxy");
    common::wait_until("HAProxy to listen", || TcpStream::connect(frontend).is_ok());

    let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let tcp = common::connect_from(source, frontend);
    let port = tcp.local_addr().unwrap().port();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(client_config(Some(&ca), None), name).unwrap();
    let mut tls = StreamOwned::new(conn, tcp);
    assert_echoes(&mut tls, b"through HAProxy");
    server.wait_for_log(&format!("127.0.0.2:{port} via 127.0.0.1:"));
    let _ = balancer.kill();
    let _ = balancer.wait();
}

#[test]
fn tls_is_served_on_unix_sockets_too() {
    let dir = TempDir::new("tls");
    let socket = dir.arg("tls.sock");
    let server = ServerProcess::spawn(echo_server().args(["--unix", &socket, "--tls"]));
    let announced = announced_fingerprint(&server);
    let stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    stream.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(common::IO_TIMEOUT)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(client_config(None, None), name).unwrap();
    let mut tls = StreamOwned::new(conn, stream);
    tls.write_all(b"over a Unix socket").unwrap();
    let mut reply = [0; 18];
    tls.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"over a Unix socket");
    let seen = fingerprint(&tls.conn.peer_certificates().expect("a certificate")[0]);
    assert_eq!(seen, announced);
}

/// Sends a line through `openssl s_client ARGS` and returns the line that
/// comes back, within the test timeouts.
fn line_through_s_client(openssl: &std::path::Path, args: &[&str], line: &str) -> String {
    use std::io::BufRead;
    let mut child = Command::new(openssl)
        .arg("s_client")
        .args(args)
        // -quiet: no session details, and stay connected at the end of the
        // input; the test ends the process once its line is back.
        .arg("-quiet")
        .stdin(process::Stdio::piped())
        .stdout(process::Stdio::piped())
        .stderr(process::Stdio::null())
        .spawn()
        .expect("start openssl s_client");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (sender, receiver) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut reply = String::new();
        let _ = io::BufReader::new(stdout).read_line(&mut reply);
        let _ = sender.send(reply);
    });
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(line.as_bytes())
        .expect("write to s_client");
    let reply = receiver.recv_timeout(common::IO_TIMEOUT);
    let _ = child.kill();
    let _ = child.wait();
    reply.expect("a line back through s_client within the timeout")
}

#[test]
fn openssl_s_client_gets_its_line_back_with_either_certificate() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let throwaway = ServerProcess::start(&["--bind", "127.0.0.1", "--tls"]);
    let addr = throwaway.addr().to_string();
    let line = "Hello through s_client\n";
    assert_eq!(
        line_through_s_client(&openssl, &["-connect", &addr], line),
        line
    );

    let dir = TempDir::new("tls");
    let (ca, _, args) = server_pki(&dir);
    fs::write(dir.path("ca.crt"), &ca.pem).unwrap();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let own = ServerProcess::start(&args);
    let verified = [
        "-connect",
        &own.addr().to_string(),
        "-servername",
        "localhost",
        "-CAfile",
        &dir.arg("ca.crt"),
        "-verify_return_error",
    ];
    assert_eq!(line_through_s_client(&openssl, &verified, line), line);
}

#[test]
fn environment_sets_tls_and_its_files() {
    let throwaway = ServerProcess::spawn(
        echo_server()
            .env("ECHO_SERVER_PORT", "0")
            .env("ECHO_SERVER_BIND", "127.0.0.1")
            .env("ECHO_SERVER_TLS", "on"),
    );
    let mut tls = connect_tls(throwaway.addr(), client_config(None, None));
    assert_eq!(seen_fingerprint(&tls), announced_fingerprint(&throwaway));
    assert_echoes(&mut tls, b"TLS from the environment");

    let dir = TempDir::new("tls");
    let (ca, pair, _) = server_pki(&dir);
    let own = ServerProcess::spawn(
        echo_server()
            .env("ECHO_SERVER_PORT", "0")
            .env("ECHO_SERVER_BIND", "127.0.0.1")
            .env("ECHO_SERVER_TLS_CERT", dir.path("server.crt"))
            .env("ECHO_SERVER_TLS_KEY", dir.path("server.key")),
    );
    assert_eq!(announced_fingerprint(&own), fingerprint(&pair.der));
    let mut tls = connect_tls(own.addr(), client_config(Some(&ca), None));
    assert_echoes(&mut tls, b"and its files");
}
