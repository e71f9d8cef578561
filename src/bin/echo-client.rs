//! `echo-client`: the original tutorial's client and test script as a tool.
//!
//! With messages, sends each one `--count` times and checks every reply;
//! without, sends each line of standard input and prints its reply. Over
//! TCP, a Unix stream socket (`--unix`) or UDP (`--udp`); with `--tls`, over
//! TLS on TCP or a Unix stream socket.

use std::io::{self, BufRead, Write};
#[cfg(feature = "tls")]
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use echo_server::Client;
#[cfg(feature = "tls")]
use echo_server::TlsClientOptions;

/// Sends messages to an echo server and checks that each comes back
/// unchanged.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Messages to send, each exactly as given (no newline added); without
    /// any, each line of standard input is sent with its newline
    #[arg(value_name = "MESSAGE")]
    messages: Vec<String>,

    /// Server host name or address
    #[arg(long, default_value = "localhost")]
    host: String,

    /// Server port
    #[arg(short, long, default_value_t = echo_server::DEFAULT_PORT)]
    port: u16,

    /// Connect to this Unix stream socket instead of --host and --port
    /// (@NAME: a Linux abstract socket name)
    #[arg(long, value_name = "PATH", conflicts_with_all = ["host", "port", "udp"])]
    unix: Option<String>,

    /// Send each message as one UDP datagram, and expect one back
    #[arg(long)]
    udp: bool,

    /// Send each message N times
    #[arg(short = 'n', long, value_name = "N", default_value_t = 1)]
    count: u64,

    /// Pause between sends
    #[arg(short, long, value_name = "DURATION", default_value = "0s", value_parser = humantime::parse_duration)]
    interval: Duration,

    /// Give up waiting to connect, for the TLS handshake or for a reply
    /// after this long
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,

    #[cfg(feature = "tls")]
    #[command(flatten)]
    tls: TlsArgs,
}

/// The TLS flags: whether to use TLS, how to check the server, which
/// certificate to show it.
#[cfg(feature = "tls")]
#[derive(Debug, clap::Args)]
struct TlsArgs {
    /// Connect over TLS (1.2 or 1.3), on TCP or --unix
    #[arg(long, conflicts_with = "udp")]
    tls: bool,

    /// Trust only the certificate authorities in this PEM file (there is no
    /// system trust store: --tls needs --ca or --insecure)
    #[arg(
        long,
        value_name = "PATH",
        requires = "tls",
        conflicts_with = "insecure"
    )]
    ca: Option<PathBuf>,

    /// Do not check the server's certificate at all (the handshake's
    /// signatures still are)
    #[arg(long, requires = "tls")]
    insecure: bool,

    /// Client certificate chain to show a server that asks for one, PEM
    #[arg(long, value_name = "PATH", requires_all = ["tls", "key"])]
    cert: Option<PathBuf>,

    /// Private key of --cert, PEM (RSA, ECDSA or Ed25519)
    #[arg(long, value_name = "PATH", requires_all = ["tls", "cert"])]
    key: Option<PathBuf>,

    /// Name the server's certificate must be for, sent as SNI [default: the
    /// --host value]
    #[arg(long, value_name = "NAME", requires = "tls")]
    server_name: Option<String>,
}

#[cfg(feature = "tls")]
impl TlsArgs {
    /// The library's options for these flags; `None` without --tls.
    fn options(&self) -> Option<TlsClientOptions> {
        let mut options = TlsClientOptions::default();
        options.ca.clone_from(&self.ca);
        options.insecure = self.insecure;
        options.cert.clone_from(&self.cert);
        options.key.clone_from(&self.key);
        self.tls.then_some(options)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = check_datagrams(&cli) {
        error.exit();
    }
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output has gone: nothing is wrong with the echo.
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// A usage error if `--udp` is to send a message that no datagram holds.
fn check_datagrams(cli: &Cli) -> Result<(), clap::Error> {
    let longest = cli.messages.iter().map(String::len).max();
    match longest {
        Some(length) if cli.udp && length > Client::MAX_DATAGRAM => Err(Cli::command().error(
            ErrorKind::ValueValidation,
            format!(
                "a message of {length} bytes does not fit in one UDP datagram ({} bytes at most)",
                Client::MAX_DATAGRAM
            ),
        )),
        _ => Ok(()),
    }
}

/// Connects, sends everything asked for, checks each reply, closes.
fn run(cli: &Cli) -> io::Result<()> {
    let mut client = connect(cli)?;
    if cli.messages.is_empty() {
        send_lines(&mut client, io::stdin().lock())?;
    } else {
        send_messages(&mut client, cli)?;
    }
    client.close()
}

/// A client over the transport `cli` asks for.
fn connect(cli: &Cli) -> io::Result<Client> {
    #[cfg(feature = "tls")]
    if let Some(tls) = cli.tls.options() {
        return connect_tls(cli, &tls);
    }
    if let Some(path) = &cli.unix {
        return Client::connect_unix(path, cli.timeout);
    }
    let addrs = echo_server::resolve(&cli.host, cli.port)?;
    if cli.udp {
        Client::connect_udp(&addrs[..], cli.timeout)
    } else {
        Client::connect(&addrs[..], cli.timeout)
    }
}

/// A TLS client on the stream socket `cli` asks for.
#[cfg(feature = "tls")]
fn connect_tls(cli: &Cli, tls: &TlsClientOptions) -> io::Result<Client> {
    if let Some(path) = &cli.unix {
        return Client::connect_tls_unix(path, server_name(cli), tls, cli.timeout);
    }
    let addrs = echo_server::resolve(&cli.host, cli.port)?;
    Client::connect_tls(&addrs[..], server_name(cli), tls, cli.timeout)
}

/// The name the server's certificate must be for: --server-name, or else
/// --host.
#[cfg(feature = "tls")]
fn server_name(cli: &Cli) -> &str {
    cli.tls.server_name.as_deref().unwrap_or(&cli.host)
}

/// The tutorial's test script: every message, `count` times, `interval`
/// apart.
fn send_messages(client: &mut Client, cli: &Cli) -> io::Result<()> {
    let mut first = true;
    for _ in 0..cli.count {
        for message in &cli.messages {
            if !first && !cli.interval.is_zero() {
                std::thread::sleep(cli.interval);
            }
            first = false;
            check_echo(client, message.as_bytes())?;
        }
    }
    Ok(())
}

/// An interactive `nc` that checks: each line of `input`, newline included.
fn send_lines(client: &mut Client, mut input: impl BufRead) -> io::Result<()> {
    let mut line = Vec::new();
    while input.read_until(b'\n', &mut line)? > 0 {
        check_echo(client, &line)?;
        line.clear();
    }
    Ok(())
}

/// Sends `message`, prints the reply, fails if it differs.
fn check_echo(client: &mut Client, message: &[u8]) -> io::Result<()> {
    let reply = client.send(message)?;
    let shown = String::from_utf8_lossy(reply.strip_suffix(b"\n").unwrap_or(&reply));
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "Got reply from server: {shown}")?;
    stdout.flush()?;
    if reply != message {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "reply from {} differs from what was sent: sent {:?}, got {:?}",
                client.peer(),
                message.escape_ascii().to_string(),
                reply.escape_ascii().to_string()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn unix_conflicts_with_host_port_and_udp() {
        for other in [["--host", "localhost"], ["--port", "8000"], ["--udp", "hi"]] {
            let args = ["echo-client", "--unix", "/tmp/echo.sock"]
                .into_iter()
                .chain(other);
            let error = Cli::try_parse_from(args).expect_err("a conflict");
            assert_eq!(error.kind(), ErrorKind::ArgumentConflict, "{other:?}");
        }
    }

    #[test]
    fn a_udp_message_longer_than_a_datagram_is_a_usage_error() {
        let fits = "x".repeat(Client::MAX_DATAGRAM);
        let too_long = "x".repeat(Client::MAX_DATAGRAM + 1);
        let check = |args: &[&str]| check_datagrams(&Cli::parse_from(args));

        assert!(check(&["echo-client", "--udp", &fits]).is_ok());
        assert!(
            check(&["echo-client", &too_long]).is_ok(),
            "TCP has no limit"
        );
        let error = check(&["echo-client", "--udp", "hi", &too_long]).expect_err("too long");
        assert_eq!(error.kind(), ErrorKind::ValueValidation);
        assert!(error.to_string().contains("65508 bytes"), "{error}");
    }

    /// The kind of error clap makes of `args` after `echo-client`.
    #[cfg(feature = "tls")]
    fn parse_error(args: &[&str]) -> ErrorKind {
        let args = std::iter::once("echo-client").chain(args.iter().copied());
        Cli::try_parse_from(args).expect_err("a usage error").kind()
    }

    #[cfg(feature = "tls")]
    #[test]
    fn tls_flags_need_tls_and_exclude_udp_and_each_other() {
        let cases: [(&[&str], ErrorKind); 7] = [
            (&["--tls", "--udp"], ErrorKind::ArgumentConflict),
            (
                &["--tls", "--ca", "ca.pem", "--insecure"],
                ErrorKind::ArgumentConflict,
            ),
            (
                &["--tls", "--cert", "c.pem"],
                ErrorKind::MissingRequiredArgument,
            ),
            (
                &["--tls", "--key", "k.pem"],
                ErrorKind::MissingRequiredArgument,
            ),
            (&["--ca", "ca.pem"], ErrorKind::MissingRequiredArgument),
            (&["--insecure"], ErrorKind::MissingRequiredArgument),
            (&["--server-name", "x"], ErrorKind::MissingRequiredArgument),
        ];
        for (args, kind) in cases {
            assert_eq!(parse_error(args), kind, "{args:?}");
        }
    }

    #[cfg(feature = "tls")]
    #[test]
    fn tls_options_follow_the_flags_and_the_server_name_defaults_to_the_host() {
        let plain = Cli::parse_from(["echo-client", "--host", "example.com"]);
        assert!(plain.tls.options().is_none());

        let cli = Cli::parse_from([
            "echo-client",
            "--host",
            "example.com",
            "--tls",
            "--ca",
            "ca.pem",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
        ]);
        let options = cli.tls.options().expect("--tls");
        assert_eq!(options.ca, Some(PathBuf::from("ca.pem")));
        assert!(!options.insecure);
        assert_eq!(options.cert, Some(PathBuf::from("c.pem")));
        assert_eq!(options.key, Some(PathBuf::from("k.pem")));
        assert_eq!(server_name(&cli), "example.com");

        let named = Cli::parse_from([
            "echo-client",
            "--tls",
            "--insecure",
            "--server-name",
            "echo",
        ]);
        assert!(named.tls.options().expect("--tls").insecure);
        assert_eq!(server_name(&named), "echo");
    }
}
