//! The servers compared, how each is started, and how the runner knows it
//! is ready.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::process::Group;

/// How long a server has to accept its first connection.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one readiness probe waits for its connect.
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// How often the readiness probe tries again.
const PROBE_INTERVAL: Duration = Duration::from_millis(10);

/// Start attempts, each on a new port: a free port found can be taken by
/// someone else before the server binds it (and echo-server binds ::1 too).
const START_ATTEMPTS: usize = 3;

/// The address every server listens on and every load comes to.
pub const HOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A server the benchmark compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// echo-server, with its defaults.
    Ours,
    /// bench/servers/thread-lean: the limit of thread per connection.
    ThreadLean,
    /// bench/servers/tokio-echo: the idiomatic async server.
    Tokio,
    /// socat, a process per connection.
    Socat,
    /// ncat, a process per connection running cat.
    Ncat,
}

impl Server {
    /// Every server, in the order of the table's columns.
    pub const ALL: [Server; 5] = [
        Server::Ours,
        Server::ThreadLean,
        Server::Tokio,
        Server::Socat,
        Server::Ncat,
    ];

    /// The name in the table, the raw results and `--servers`.
    pub fn name(self) -> &'static str {
        match self {
            Server::Ours => "ours",
            Server::ThreadLean => "thread-lean",
            Server::Tokio => "tokio",
            Server::Socat => "socat",
            Server::Ncat => "ncat",
        }
    }

    /// Whether it forks a process per connection.
    pub fn forks_per_connection(self) -> bool {
        matches!(self, Server::Socat | Server::Ncat)
    }

    /// The command that serves on `port` of [`HOST`].
    fn command(self, programs: &Programs, port: u16) -> Option<Command> {
        let port_arg = port.to_string();
        let command = match self {
            // Its default bind, localhost, is 127.0.0.1 and ::1.
            Server::Ours => with_args(&programs.echo_server, ["--port", &port_arg]),
            Server::ThreadLean => with_args(&programs.thread_lean, ["--port", &port_arg]),
            Server::Tokio => with_args(&programs.tokio_echo, ["--port", &port_arg]),
            Server::Socat => {
                let listen = format!("TCP-LISTEN:{port},bind={HOST},fork,reuseaddr,backlog=4096");
                with_args(programs.socat.as_ref()?, [listen.as_str(), "PIPE"])
            }
            // -m: ncat serves 100 clients at once by default.
            Server::Ncat => with_args(
                programs.ncat.as_ref()?,
                [
                    "-l",
                    &HOST.to_string(),
                    &port_arg,
                    "-k",
                    "-m",
                    "20000",
                    "-e",
                    "/bin/cat",
                ],
            ),
        };
        Some(command)
    }
}

fn with_args<const N: usize>(program: &Path, args: [&str; N]) -> Command {
    let mut command = Command::new(program);
    command.args(args);
    command
}

/// Where the programs are; a peer that is not installed is `None`.
#[derive(Debug)]
pub struct Programs {
    /// target/release/echo-server
    pub echo_server: PathBuf,
    /// target/release/echo-bench
    pub echo_bench: PathBuf,
    /// bench/target/release/thread-lean
    pub thread_lean: PathBuf,
    /// bench/target/release/tokio-echo
    pub tokio_echo: PathBuf,
    /// socat on PATH
    pub socat: Option<PathBuf>,
    /// ncat on PATH
    pub ncat: Option<PathBuf>,
}

impl Programs {
    /// Finds the programs built in `repo` and the peers on PATH.
    ///
    /// # Errors
    ///
    /// Names a program that should have been built and is not there.
    pub fn find(repo: &Path) -> Result<Programs, String> {
        let built = |dir: &str, name: &str| {
            let path = repo.join(dir).join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!(
                    "{} not found: build it first (bench/run.sh does)",
                    path.display()
                ))
            }
        };
        Ok(Programs {
            echo_server: built("target/release", "echo-server")?,
            echo_bench: built("target/release", "echo-bench")?,
            thread_lean: built("bench/target/release", "thread-lean")?,
            tokio_echo: built("bench/target/release", "tokio-echo")?,
            socat: on_path("socat"),
            ncat: on_path("ncat"),
        })
    }

    /// Whether `server` can run here.
    pub fn has(&self, server: Server) -> bool {
        match server {
            Server::Socat => self.socat.is_some(),
            Server::Ncat => self.ncat.is_some(),
            _ => true,
        }
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// A server started and accepting connections. Dropping it stops it.
pub struct Running {
    /// The server's process group.
    pub group: Group,
    /// The port it serves on [`HOST`].
    pub port: u16,
}

/// Starts `server` on a free port and waits until it accepts a connection.
/// Its standard output and error are appended to `log`.
///
/// # Errors
///
/// Says why it could not start, or that it did not answer in time.
pub fn start(server: Server, programs: &Programs, log: &Path) -> Result<Running, String> {
    let mut last_error = String::new();
    for _ in 0..START_ATTEMPTS {
        let port = free_port().map_err(|e| format!("cannot find a free port: {e}"))?;
        let mut command = server
            .command(programs, port)
            .ok_or_else(|| format!("{} is not installed", server.name()))?;
        let output = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
        let errors = output
            .try_clone()
            .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
        command.stdin(Stdio::null()).stdout(output).stderr(errors);
        let group = Group::spawn(&mut command)
            .map_err(|e| format!("cannot start {}: {e}", server.name()))?;
        match wait_ready(&group, port) {
            Ok(()) => return Ok(Running { group, port }),
            Err(e) => last_error = e,
        }
        // Dropping `group` stops what is left of it; a server that exited
        // at once most likely found its port taken: try another.
    }
    Err(format!(
        "{} did not start: {last_error} (its log: {})",
        server.name(),
        log.display()
    ))
}

/// A port that was free on [`HOST`] a moment ago.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((HOST, 0))?.local_addr()?.port())
}

/// Connects until the server accepts, it exits, or [`READY_TIMEOUT`] passes.
fn wait_ready(group: &Group, port: u16) -> Result<(), String> {
    let addr = SocketAddr::from((HOST, port));
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).is_ok() {
            return Ok(());
        }
        if group.has_exited() {
            return Err("it exited".to_owned());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no connection accepted on {addr} within {READY_TIMEOUT:?}"
            ));
        }
        thread::sleep(PROBE_INTERVAL);
    }
}
