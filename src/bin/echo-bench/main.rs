//! `echo-bench`: a load generator for any echo server.
//!
//! The original tutorial's exercise, "spawn 100 client processes that
//! periodically send messages to a single server", as a tool: many
//! connections send random messages, every reply is checked byte for byte,
//! and the report gives throughput and latency. The connections are TCP, or
//! Unix stream sockets (`--unix`), or UDP sockets that each keep one
//! datagram in flight (`--udp`); over TCP or Unix sockets they can speak
//! TLS (`--tls`), and the report then gives the handshake time apart.
//!
//! A few worker threads (one per CPU) each drive their share of the
//! connections with a `mio` event loop, so that ten thousand clients cost
//! the generator a few threads rather than ten thousand: a generator with a
//! thread per client would itself pay the scheduling cost it is trying to
//! measure.

use std::io::{self, Write};
use std::process::ExitCode;

use log::warn;

mod bench;
mod cli;
mod connection;
mod datagram;
#[cfg(test)]
mod loopback;
mod plan;
mod progress;
mod report;
mod socket;
mod start;
mod stats;
mod target;
// Without the feature, a stand-in with no flags and no configuration, so
// that the rest goes without `cfg` but where a TLS session is driven.
#[cfg_attr(not(feature = "tls"), path = "no_tls.rs")]
mod tls;
mod worker;

use cli::Cli;
use plan::Plan;
use progress::Progress;
use report::Report;
use target::Target;

fn main() -> ExitCode {
    let cli = Cli::parse_checked();
    // Warnings read like the error line, `warn: ...`: this is a command
    // whose stderr a person reads once, not a log to be searched. rustls
    // would warn of every alert of every connection; the report says why
    // connections failed.
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,rustls=error"),
    )
    .format(|out, record| {
        let level = record.level().as_str().to_ascii_lowercase();
        writeln!(out, "{level}: {}", record.args())
    })
    .init();
    match run(&cli) {
        Ok(report) if report.is_clean() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Finds the server, runs the load, prints the report.
fn run(cli: &Cli) -> io::Result<Report> {
    let connections = cli.connections as usize;
    raise_descriptor_limit(connections);
    // Before any connection: a CA file that cannot be read ends the run at
    // once, and without a probe of the server.
    let tls = cli.tls.client(&cli.host)?;
    let target = match &cli.unix {
        Some(addr) => Target::Unix(addr.clone()),
        None if cli.udp => Target::Udp(target::resolve_udp(&cli.host, cli.port)?),
        None => Target::Tcp(target::resolve_tcp(&cli.host, cli.port)?),
    };
    let plan = Plan {
        target,
        tls,
        connections,
        size: cli.size as usize,
        duration: cli.duration,
        interval: (!cli.interval.is_zero()).then_some(cli.interval),
        mode: cli.mode(),
    };
    let progress = Progress::new(progress::wanted(cli.json));
    let tally = bench::run(&plan, &progress);
    progress.finish();
    let tally = tally?;
    let report = Report::new(plan, tally);
    report.warn_about_failures();
    report.print(cli.json)?;
    report.check_connected()?;
    Ok(report)
}

/// Descriptors the generator needs beyond one per connection: standard
/// streams, the event loops, the progress bar.
const DESCRIPTOR_RESERVE: u64 = 32;

/// Raises the soft limit on open files to the hard limit, and warns when it
/// cannot cover `connections`; connections over the limit fail and are
/// counted.
fn raise_descriptor_limit(connections: usize) {
    let wanted = connections as u64 + DESCRIPTOR_RESERVE;
    if let Err(error) = echo_server::raise_open_file_limit(wanted) {
        warn!("{error}: not all of the {connections} connections can be opened");
    }
}
