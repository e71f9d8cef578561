//! tokio-echo: the idiomatic tokio echo server, as the benchmark's
//! event-driven peer.
//!
//! What the tokio tutorial and most tokio code would write: the
//! multi-thread runtime with its default worker count (one per core), an
//! accept loop, and one spawned task per connection that reads into an
//! 8 KiB heap buffer and writes it all back until EOF or an error.
//! TCP_NODELAY is set as echo-server sets it, so that small echoes are not
//! held back by Nagle's algorithm in one server and not the other.
//!
//! Usage: `tokio-echo --port N [--bind ADDR]` (default bind 127.0.0.1).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The buffer `tokio::io::copy` uses, so the idiomatic choice.
const BUFFER_SIZE: usize = 8 * 1024;

/// How long the accept loop pauses after a failed accept (out of
/// descriptors, say), so that it does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

const USAGE: &str = "usage: tokio-echo --port N [--bind ADDR]";

fn main() -> ExitCode {
    let addr = match parse_args(std::env::args().skip(1)) {
        Ok(addr) => addr,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(addr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot listen on {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads `--port N [--bind ADDR]`.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<SocketAddr, String> {
    let mut ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut port = None;
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => port = Some(value.parse().map_err(|_| format!("bad port: {value}"))?),
            "--bind" => ip = value.parse().map_err(|_| format!("bad address: {value}"))?,
            _ => return Err(format!("unknown argument: {flag}")),
        }
    }
    let port: u16 = port.ok_or("--port is required")?;
    Ok(SocketAddr::new(ip, port))
}

#[tokio::main]
async fn run(addr: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    eprintln!("tokio-echo listening on {}", listener.local_addr()?);
    loop {
        match listener.accept().await {
            Ok((socket, _peer)) => {
                tokio::spawn(echo(socket));
            }
            Err(e) => {
                eprintln!("tokio-echo: accept failed: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Echoes one connection until EOF or an error; either way it just ends.
async fn echo(mut socket: TcpStream) {
    if socket.set_nodelay(true).is_err() {
        return;
    }
    let mut buffer = vec![0u8; BUFFER_SIZE];
    loop {
        match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if socket.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
