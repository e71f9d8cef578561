//! `echo-client`: the original tutorial's client and test script as a tool.
//!
//! With messages, sends each one `--count` times and checks every reply;
//! without, sends each line of standard input and prints its reply. Over
//! TCP, a Unix stream socket (`--unix`) or UDP (`--udp`).

use std::io::{self, BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use echo_server::Client;

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

    /// Give up waiting to connect or for a reply after this long
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
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
}
