//! `echo-bench`: a load generator for any echo server.
//!
//! The original tutorial's exercise, "spawn 100 client processes that
//! periodically send messages to a single server", as a tool: many
//! connections send random messages, every reply is checked byte for byte,
//! and the report gives throughput and latency.
//!
//! A few worker threads (one per CPU) each drive their share of the
//! connections with a `mio` event loop, so that ten thousand clients cost
//! the generator a few threads rather than ten thousand: a generator with a
//! thread per client would itself pay the scheduling cost it is trying to
//! measure.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use log::warn;

mod bench;
mod connection;
mod progress;
mod report;
mod stats;
mod target;
mod worker;

use bench::Plan;
use progress::Progress;
use report::Report;

/// Largest message accepted: every connection holds a little more than one
/// message, so the size bounds the generator's memory.
const MAX_SIZE: u32 = 64 * 1024 * 1024;

/// Opens many connections to an echo server, sends random messages on each,
/// checks every reply byte for byte, and reports throughput and latency.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Server host name or address
    #[arg(long, default_value = "localhost")]
    host: String,

    /// Server port
    #[arg(short, long, default_value_t = echo_server::DEFAULT_PORT)]
    port: u16,

    /// Concurrent clients
    #[arg(
        short,
        long,
        value_name = "N",
        default_value_t = 100,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    connections: u32,

    /// Message size in bytes
    #[arg(
        short,
        long,
        value_name = "BYTES",
        default_value_t = 512,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_SIZE))
    )]
    size: u32,

    /// How long to run, counted from when every connection is established
    #[arg(short, long, value_name = "DURATION", default_value = "10s", value_parser = run_time)]
    duration: Duration,

    /// Each client sends one message per interval (0s = the next one as soon
    /// as the echo is back)
    #[arg(short, long, value_name = "DURATION", default_value = "0s", value_parser = interval)]
    interval: Duration,

    /// Print one JSON object instead of the report
    #[arg(long)]
    json: bool,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Warnings read like the error line, `warn: ...`: this is a command
    // whose stderr a person reads once, not a log to be searched.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
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
    let addr = target::resolve(&cli.host, cli.port)?;
    let plan = Plan {
        addr,
        connections,
        size: cli.size as usize,
        duration: cli.duration,
        interval: (!cli.interval.is_zero()).then_some(cli.interval),
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
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < wanted => warn!(
            "open file limit is {limit}: not all of the {connections} connections can be opened"
        ),
        Ok(_) => {}
        Err(error) => warn!("cannot raise the open file limit: {error}"),
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

    #[test]
    fn run_time_is_more_than_zero_and_at_most_a_year() {
        assert!(run_time("0s").is_err());
        assert!(run_time("soon").is_err());
        assert!(run_time("2years").is_err());
        assert_eq!(run_time("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(interval("0s"), Ok(Duration::ZERO));
    }
}
