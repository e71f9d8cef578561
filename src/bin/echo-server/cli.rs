//! The command line: every flag, its help text, its environment variable,
//! and the library configuration it makes.

use std::num::NonZeroUsize;
use std::time::Duration;

use clap::Parser;
use clap::builder::BoolishValueParser;
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

    /// More logging: -v debug (every read), -vv trace
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,

    /// Less logging: warnings and errors only
    #[arg(short, long)]
    quiet: bool,
}

impl Cli {
    /// The library configuration these arguments ask for.
    pub fn config(&self) -> Config {
        Config {
            bind: self.bind.clone(),
            port: self.port,
            max_connections: NonZeroUsize::new(self.max_connections),
            max_connections_per_ip: NonZeroUsize::new(self.max_connections_per_ip),
            idle_timeout: (!self.idle_timeout.is_zero()).then_some(self.idle_timeout),
            reuse_port: self.reuse_port,
            proxy_protocol: self.proxy_protocol,
            proxy_from: self.proxy_from.clone(),
            allow: self.allow.clone(),
            deny: self.deny.clone(),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }
}
