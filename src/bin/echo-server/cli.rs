//! The command line: every flag, its help text, its environment variable,
//! and the library configuration it makes.

use std::num::{NonZeroU32, NonZeroUsize};
#[cfg(feature = "tls")]
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use echo_server::{Cidr, Config};

/// A thread-per-connection TCP echo server: every byte a client sends comes
/// back, in order, exactly once.
#[derive(Debug, Parser)]
#[command(version)]
pub struct Cli {
    /// Port to listen on (0 = any free port)
    #[arg(short, long, default_value_t = echo_server::DEFAULT_PORT, env = "ECHO_SERVER_PORT")]
    port: u16,

    /// Address or host name to listen on; repeatable
    #[arg(
        short,
        long = "bind",
        value_name = "ADDR",
        default_value = echo_server::DEFAULT_BIND,
        env = "ECHO_SERVER_BIND",
        value_delimiter = ','
    )]
    bind: Vec<String>,

    /// Most clients served at once (0 = no limit)
    #[arg(long, value_name = "N", default_value_t = echo_server::DEFAULT_MAX_CONNECTIONS.get(), env = "ECHO_SERVER_MAX_CONNECTIONS")]
    max_connections: usize,

    /// Most clients at once from one IP address (0 = no limit)
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        env = "ECHO_SERVER_MAX_CONNECTIONS_PER_IP"
    )]
    max_connections_per_ip: usize,

    /// Close a client that neither sends nor reads for this long (0 = never)
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "5m",
        value_parser = humantime::parse_duration,
        env = "ECHO_SERVER_IDLE_TIMEOUT"
    )]
    idle_timeout: Duration,

    /// Set SO_REUSEPORT, so a new instance can bind while an old one drains
    #[arg(long, env = "ECHO_SERVER_REUSE_PORT", value_parser = BoolishValueParser::new())]
    reuse_port: bool,

    /// On SIGTERM, let clients finish for this long before closing them
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "0s",
        value_parser = humantime::parse_duration,
        env = "ECHO_SERVER_DRAIN_TIMEOUT"
    )]
    pub drain_timeout: Duration,

    /// Every connection starts with a PROXY header (v1 or v2, auto-detected)
    #[arg(long, env = "ECHO_SERVER_PROXY_PROTOCOL", value_parser = BoolishValueParser::new())]
    proxy_protocol: bool,

    /// Peers allowed to send PROXY headers; repeatable [default: any]
    #[arg(
        long,
        value_name = "CIDR",
        env = "ECHO_SERVER_PROXY_FROM",
        value_delimiter = ','
    )]
    proxy_from: Vec<Cidr>,

    /// Serve only these client addresses; repeatable [default: all]
    #[arg(
        long,
        value_name = "CIDR",
        env = "ECHO_SERVER_ALLOW",
        value_delimiter = ','
    )]
    allow: Vec<Cidr>,

    /// Never serve these client addresses; repeatable
    #[arg(
        long,
        value_name = "CIDR",
        env = "ECHO_SERVER_DENY",
        value_delimiter = ','
    )]
    deny: Vec<Cidr>,

    /// Listen on a Unix stream socket (@NAME: Linux abstract name); repeatable.
    /// Alone, without --port or --bind, only Unix sockets are served
    #[arg(
        long,
        value_name = "PATH",
        env = "ECHO_SERVER_UNIX",
        value_delimiter = ',',
        value_parser = unix_path
    )]
    unix: Vec<String>,

    /// Permissions of the Unix socket files, in octal [default: from the umask]
    #[arg(long, value_name = "OCTAL", env = "ECHO_SERVER_UNIX_MODE", value_parser = octal_mode)]
    unix_mode: Option<u32>,

    /// Also serve UDP echo on every TCP listening address and port
    #[arg(long, env = "ECHO_SERVER_UDP", value_parser = BoolishValueParser::new())]
    udp: bool,

    /// Most datagrams a second echoed to one source IP (0 = no limit)
    #[arg(
        long,
        value_name = "N",
        default_value_t = echo_server::DEFAULT_UDP_RATE.get(),
        env = "ECHO_SERVER_UDP_RATE"
    )]
    udp_rate: u32,

    /// Sources the UDP rate does not apply to; repeatable; replaces the default
    #[arg(
        long,
        value_name = "CIDR",
        default_value = echo_server::DEFAULT_UDP_RATE_EXEMPT,
        env = "ECHO_SERVER_UDP_RATE_EXEMPT",
        value_delimiter = ','
    )]
    udp_rate_exempt: Vec<Cidr>,

    /// Serve TLS on every stream listener (TCP and Unix), with a throwaway
    /// self-signed certificate unless --tls-cert is given
    #[cfg(feature = "tls")]
    #[arg(long, env = "ECHO_SERVER_TLS", value_parser = BoolishValueParser::new())]
    tls: bool,

    /// Certificate chain, PEM; implies --tls
    #[cfg(feature = "tls")]
    #[arg(
        long,
        value_name = "PATH",
        env = "ECHO_SERVER_TLS_CERT",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,

    /// Private key of --tls-cert, PEM
    #[cfg(feature = "tls")]
    #[arg(
        long,
        value_name = "PATH",
        env = "ECHO_SERVER_TLS_KEY",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,

    /// Require client certificates signed by these CAs, PEM; implies --tls
    #[cfg(feature = "tls")]
    #[arg(long, value_name = "PATH", env = "ECHO_SERVER_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,

    /// Whether --port or --bind was given, on the command line or in the
    /// environment: with --unix, TCP is served only then.
    #[arg(skip)]
    tcp_asked: bool,

    /// More logging: -v debug (every read), -vv trace
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,

    /// Less logging: warnings and errors only
    #[arg(short, long)]
    quiet: bool,
}

impl Cli {
    /// The arguments of this process, or the process ends with clap's
    /// message (exit 2, or 0 for --help and --version).
    pub fn parse_args() -> Cli {
        let matches = Cli::command().get_matches();
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
        cli.tcp_asked = ["port", "bind"].into_iter().any(|id| {
            matches!(
                matches.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        });
        cli
    }

    /// The library configuration these arguments ask for.
    pub fn config(&self) -> Config {
        let unix_only = !self.unix.is_empty() && !self.tcp_asked;
        Config {
            bind: if unix_only {
                Vec::new()
            } else {
                self.bind.clone()
            },
            port: self.port,
            max_connections: NonZeroUsize::new(self.max_connections),
            max_connections_per_ip: NonZeroUsize::new(self.max_connections_per_ip),
            idle_timeout: (!self.idle_timeout.is_zero()).then_some(self.idle_timeout),
            reuse_port: self.reuse_port,
            proxy_protocol: self.proxy_protocol,
            proxy_from: self.proxy_from.clone(),
            allow: self.allow.clone(),
            deny: self.deny.clone(),
            unix: self.unix.clone(),
            unix_mode: self.unix_mode,
            udp: self.udp,
            udp_rate: NonZeroU32::new(self.udp_rate),
            udp_rate_exempt: self.udp_rate_exempt.clone(),
            #[cfg(feature = "tls")]
            tls: self.tls_config(),
        }
    }

    /// The TLS configuration these arguments ask for: TLS is on with
    /// --tls, --tls-cert or --tls-client-ca.
    #[cfg(feature = "tls")]
    fn tls_config(&self) -> Option<echo_server::TlsConfig> {
        if !(self.tls || self.tls_cert.is_some() || self.tls_client_ca.is_some()) {
            return None;
        }
        let config = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => echo_server::TlsConfig::from_files(cert, key),
            _ => echo_server::TlsConfig::self_signed(),
        };
        Some(match &self.tls_client_ca {
            Some(ca) => config.with_client_ca(ca),
            None => config,
        })
    }

    /// The log level these arguments ask for, unless `RUST_LOG` says otherwise.
    pub fn log_level(&self) -> &'static str {
        match (self.quiet, self.verbose) {
            (true, _) => "warn",
            (false, 0) => "info",
            (false, 1) => "debug",
            (false, _) => "trace",
        }
    }
}

/// The longest Unix socket path Linux takes: `sun_path` holds 108 bytes,
/// the last a NUL (an abstract name has its NUL first instead).
const UNIX_PATH_MAX: usize = 107;

/// A `--unix` argument: a path or an `@NAME` that fits in `sun_path`.
fn unix_path(text: &str) -> Result<String, String> {
    match text.len() {
        0 => Err("an empty path".to_owned()),
        1 if text == "@" => Err("an empty abstract name".to_owned()),
        length if length > UNIX_PATH_MAX => Err(format!(
            "{length} bytes long; a Unix socket path holds at most {UNIX_PATH_MAX}"
        )),
        _ => Ok(text.to_owned()),
    }
}

/// A `--unix-mode` argument: permissions in octal, such as 660 or 0600.
fn octal_mode(text: &str) -> Result<u32, String> {
    match u32::from_str_radix(text, 8) {
        Ok(mode) if mode <= 0o7777 => Ok(mode),
        _ => Err("not an octal mode such as 660 or 0600".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn unix_paths_must_fit_in_sun_path() {
        assert!(unix_path("/run/echo.sock").is_ok());
        assert!(unix_path("@echo").is_ok());
        assert!(unix_path(&format!("/{}", "a".repeat(UNIX_PATH_MAX - 1))).is_ok());
        let error = unix_path(&format!("/{}", "a".repeat(UNIX_PATH_MAX))).unwrap_err();
        assert!(error.contains("at most 107"), "{error}");
        assert!(unix_path("").is_err());
        assert!(unix_path("@").is_err());
    }

    #[test]
    fn modes_are_octal() {
        assert_eq!(octal_mode("660"), Ok(0o660));
        assert_eq!(octal_mode("0600"), Ok(0o600));
        assert!(octal_mode("999").is_err());
        assert!(octal_mode("rw-").is_err());
        assert!(octal_mode("77777").is_err());
    }

    #[test]
    fn unix_alone_serves_no_tcp_and_with_port_both() {
        let parse = |args: &[&str]| {
            let matches = Cli::command().get_matches_from(args);
            let mut cli = Cli::from_arg_matches(&matches).unwrap();
            cli.tcp_asked = matches.value_source("port") == Some(ValueSource::CommandLine);
            cli.config()
        };
        let alone = parse(&["echo-server", "--unix", "/tmp/e.sock"]);
        assert!(alone.bind.is_empty());
        assert_eq!(alone.unix, ["/tmp/e.sock"]);
        let both = parse(&["echo-server", "--unix", "/tmp/e.sock", "--port", "0"]);
        assert_eq!(both.bind, [echo_server::DEFAULT_BIND]);
    }
}
