//! `echo-server`: the command line in front of [`echo_server::Server`].

mod cli;
mod system;

use std::io::{self, Write};
use std::process::ExitCode;

use echo_server::Server;
use log::info;

use cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(cli.log_level()))
        .init();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Binds, announces the addresses, serves until a signal, logs the summary.
fn run(cli: &Cli) -> io::Result<()> {
    let config = cli.config();
    system::raise_descriptor_limit(config.max_connections);
    let server = match system::inherited_listeners()? {
        Some(listeners) => Server::from_listeners(listeners, &config)?,
        None => Server::bind(&config)?,
    };
    #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
    let mut lines: Vec<String> = server
        .endpoints()
        .iter()
        .map(|endpoint| format!("Listening on {endpoint}"))
        .collect();
    #[cfg(feature = "tls")]
    lines.extend(
        server
            .tls_fingerprint()
            .map(|fingerprint| format!("TLS certificate SHA-256 fingerprint: {fingerprint}")),
    );
    announce(&lines)?;
    system::handle_signals(server.handle(), cli.drain_timeout)?;
    let stats = server.run()?;
    info!("stopped: {stats}");
    Ok(())
}

/// Prints `lines` (one `Listening on ADDR` per listener, then the TLS
/// certificate's fingerprint) on stdout, flushed, so that scripts and
/// tests learn the addresses without probing.
fn announce(lines: &[String]) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    let written = lines
        .iter()
        .try_for_each(|line| writeln!(stdout, "{line}"))
        .and_then(|()| stdout.flush());
    match written {
        // Nobody reads stdout: the server is still worth running.
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
