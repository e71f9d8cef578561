//! The command line: every flag, its help text and how its value is
//! checked.

use std::os::unix::net::SocketAddr as UnixAddr;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, error::ErrorKind};

use crate::plan::Mode;
use crate::target;
use crate::tls::TlsArgs;

/// Largest message accepted: every connection holds a little more than one
/// message, so the size bounds the generator's memory.
const MAX_SIZE: u32 = 64 * 1024 * 1024;

/// Largest message over UDP, which goes in one datagram: the most an IPv4
/// UDP datagram carries.
pub const MAX_DATAGRAM: u32 = 65_507;

/// Opens many connections to an echo server (TCP, a Unix socket or UDP,
/// TLS over TCP or a Unix socket), sends random messages on each, checks
/// every reply byte for byte, and reports throughput and latency.
///
/// The TLS flags are there when echo-bench is built with the feature `tls`
/// (a default one); without it, `--tls` is an unknown flag.
#[derive(Debug, Parser)]
#[command(version)]
pub struct Cli {
    /// Server host name or address
    #[arg(long, default_value = "localhost")]
    pub host: String,

    /// Server port
    #[arg(short, long, default_value_t = echo_server::DEFAULT_PORT)]
    pub port: u16,

    /// Connect to the Unix stream socket at PATH instead of --host and
    /// --port (@NAME: a Linux abstract name)
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with_all = ["host", "port", "udp"],
        value_parser = unix_address
    )]
    pub unix: Option<UnixAddr>,

    /// Send UDP datagrams to --host and --port instead of connecting over
    /// TCP: each connection is a socket with one datagram in flight, and a
    /// datagram not answered within 1s counts as lost
    #[arg(long)]
    pub udp: bool,

    /// Concurrent clients
    #[arg(
        short,
        long,
        value_name = "N",
        default_value_t = 100,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub connections: u32,

    /// Message size in bytes (at most 65507 with --udp: one datagram)
    #[arg(
        short,
        long,
        value_name = "BYTES",
        default_value_t = 512,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_SIZE))
    )]
    pub size: u32,

    /// How long to run, counted from when every connection is established
    #[arg(short, long, value_name = "DURATION", default_value = "10s", value_parser = run_time)]
    pub duration: Duration,

    /// Each client sends one message per interval (0s = the next one as soon
    /// as the echo is back)
    #[arg(short, long, value_name = "DURATION", default_value = "0s", value_parser = interval)]
    pub interval: Duration,

    /// Instead of round trips, each connection writes a stream of random
    /// bytes, --size at a time, and reads the echo at the same time; every
    /// byte is checked (throughput in MiB/s, as iperf gives it)
    #[arg(long, conflicts_with_all = ["udp", "interval", "hold"])]
    pub stream: bool,

    /// Open every connection, make one round trip on each, then hold them
    /// open and quiet for --duration; reports how long the connects took and
    /// how many were refused or timed out. "holding N connections" on stderr
    /// says when all are held
    #[arg(long, conflicts_with_all = ["udp", "interval"])]
    pub hold: bool,

    /// Print one JSON object instead of the report
    #[arg(long)]
    pub json: bool,

    /// The TLS flags.
    #[command(flatten)]
    pub tls: TlsArgs,
}

impl Cli {
    /// The command line of this process, checked: exits with clap's usage
    /// error (code 2) when it does not parse or its flags do not go together.
    pub fn parse_checked() -> Cli {
        // The command that parsed, which knows the name it was run by, words
        // the error as clap's own.
        let mut command = Cli::command();
        let matches = command.get_matches_mut();
        let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
        if let Err(message) = cli.check() {
            command.error(ErrorKind::ValueValidation, message).exit();
        }
        cli
    }

    /// What each connection does, as the flags say.
    pub fn mode(&self) -> Mode {
        if self.stream {
            Mode::Stream
        } else if self.hold {
            Mode::Hold
        } else {
            Mode::RoundTrips
        }
    }

    /// What clap cannot check flag by flag: a message over UDP fits in one
    /// datagram.
    fn check(&self) -> Result<(), String> {
        if self.udp && self.size > MAX_DATAGRAM {
            return Err(format!(
                "invalid value '{}' for '--size <BYTES>': with --udp, at most {MAX_DATAGRAM} \
                 (one datagram)",
                self.size
            ));
        }
        Ok(())
    }
}

/// A Unix socket address: a path, or `@NAME`.
fn unix_address(text: &str) -> Result<UnixAddr, String> {
    target::unix_address(text).map_err(|error| echo_server::reason(&error))
}

/// Longest duration or interval accepted: more is surely a typo, and the
/// clock arithmetic of the run stays far from overflowing.
const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// A run time such as `500ms` or `10s`: more than zero, since a run of no
/// time measures nothing.
fn run_time(text: &str) -> Result<Duration, String> {
    match interval(text)? {
        duration if duration.is_zero() => Err("must be more than 0".to_owned()),
        duration => Ok(duration),
    }
}

/// An interval such as `1s` or `0s`, at most [`MAX_DURATION`].
fn interval(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|error| error.to_string())?;
    if duration > MAX_DURATION {
        return Err(format!(
            "must be at most {}",
            humantime::format_duration(MAX_DURATION)
        ));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_time_is_more_than_zero_and_at_most_a_year() {
        assert!(run_time("0s").is_err());
        assert!(run_time("soon").is_err());
        assert!(run_time("2years").is_err());
        assert_eq!(run_time("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(interval("0s"), Ok(Duration::ZERO));
    }

    /// `echo-bench ARGS`, parsed.
    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("echo-bench").chain(args.iter().copied()))
    }

    #[test]
    fn a_udp_message_fits_in_one_datagram() {
        let at_most = MAX_DATAGRAM.to_string();
        let over = (MAX_DATAGRAM + 1).to_string();
        let fits = parse(&["--udp", "--size", &at_most]).expect("parses");
        assert!(fits.check().is_ok());
        let error = parse(&["--udp", "--size", &over])
            .expect("parses")
            .check()
            .expect_err("too large for a datagram");
        assert!(error.contains("at most 65507"), "{error}");
        let stream = parse(&["--size", &over]).expect("parses");
        assert!(
            stream.check().is_ok(),
            "over TCP any size up to the maximum"
        );
    }

    #[test]
    fn unix_goes_instead_of_host_port_and_udp() {
        let unix = parse(&["--unix", "@echo"]).expect("parses");
        assert!(unix.unix.is_some());
        for args in [
            &["--unix", "/run/echo.sock", "--host", "localhost"][..],
            &["--unix", "/run/echo.sock", "--port", "8000"],
            &["--unix", "/run/echo.sock", "--udp"],
        ] {
            let error = parse(args).expect_err("conflicts");
            assert_eq!(error.kind(), ErrorKind::ArgumentConflict, "{args:?}");
        }
        let error = parse(&["--unix", ""]).expect_err("an empty path");
        assert_eq!(error.kind(), ErrorKind::ValueValidation);
    }

    #[test]
    fn stream_and_hold_are_modes_of_a_stream_connection_each_alone() {
        assert_eq!(parse(&[]).expect("parses").mode(), Mode::RoundTrips);
        assert_eq!(parse(&["--stream"]).expect("parses").mode(), Mode::Stream);
        assert_eq!(parse(&["--hold"]).expect("parses").mode(), Mode::Hold);
        let unix = parse(&["--hold", "--unix", "@echo"]).expect("parses");
        assert_eq!(unix.mode(), Mode::Hold);
        for args in [
            &["--stream", "--hold"][..],
            &["--stream", "--udp"],
            &["--hold", "--udp"],
            &["--stream", "--interval", "1s"],
            &["--hold", "--interval", "1s"],
        ] {
            let error = parse(args).expect_err("conflicts");
            assert_eq!(error.kind(), ErrorKind::ArgumentConflict, "{args:?}");
        }
    }

    #[cfg(feature = "tls")]
    #[test]
    fn tls_goes_over_a_stream_with_a_way_to_verify_the_server_and_its_flags_need_it() {
        for args in [
            &["--tls", "--insecure"][..],
            &["--tls", "--ca", "ca.pem", "--unix", "@echo"],
            // The system's trust store.
            &["--tls"],
        ] {
            let cli = parse(args).expect("parses");
            assert!(cli.check().is_ok(), "{args:?}");
        }
        for (args, kind) in [
            (
                &["--tls", "--insecure", "--udp"][..],
                ErrorKind::ArgumentConflict,
            ),
            (
                &["--tls", "--ca", "ca.pem", "--insecure"],
                ErrorKind::ArgumentConflict,
            ),
            (&["--ca", "ca.pem"], ErrorKind::MissingRequiredArgument),
            (&["--insecure"], ErrorKind::MissingRequiredArgument),
            (
                &["--tls", "--insecure", "--cert", "c.pem"],
                ErrorKind::MissingRequiredArgument,
            ),
            (
                &["--tls", "--insecure", "--key", "k.pem"],
                ErrorKind::MissingRequiredArgument,
            ),
            (
                &["--tls", "--insecure", "--server-name", "not a name"],
                ErrorKind::ValueValidation,
            ),
        ] {
            let error = parse(args).expect_err("refused");
            assert_eq!(error.kind(), kind, "{args:?}");
        }
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn without_the_feature_tls_there_is_no_tls_flag() {
        let error = parse(&["--tls"]).expect_err("no such flag");
        assert_eq!(error.kind(), ErrorKind::UnknownArgument);
    }
}
