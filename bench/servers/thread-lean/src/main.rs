//! thread-lean: the leanest thread-per-connection echo server, the
//! yardstick for echo-server. The server is C (`thread_lean.c`, which says
//! why); this reads the arguments and hands over to it.
//!
//! Usage: `thread-lean --port N [--bind IPV4]` (default bind 127.0.0.1).

use std::ffi::{CString, c_char, c_int};
use std::net::Ipv4Addr;
use std::process::ExitCode;

unsafe extern "C" {
    /// Serves forever; returns -1 with errno set when it cannot start.
    fn thread_lean_run(bind_ip: *const c_char, port: c_int) -> c_int;
}

const USAGE: &str = "usage: thread-lean --port N [--bind IPV4]";

fn main() -> ExitCode {
    let (ip, port) = match parse_args(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let bind_ip = CString::new(ip.to_string()).expect("an IPv4 address has no NUL byte");
    // SAFETY: `bind_ip` is a valid NUL-terminated string that outlives the
    // call, and the C side only reads it.
    unsafe { thread_lean_run(bind_ip.as_ptr(), c_int::from(port)) };
    eprintln!(
        "error: cannot listen on {ip}:{port}: {}",
        std::io::Error::last_os_error()
    );
    ExitCode::FAILURE
}

/// Reads `--port N [--bind IPV4]`.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<(Ipv4Addr, u16), String> {
    let mut ip = Ipv4Addr::LOCALHOST;
    let mut port = None;
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => port = Some(value.parse().map_err(|_| format!("bad port: {value}"))?),
            "--bind" => {
                ip = value
                    .parse()
                    .map_err(|_| format!("bad IPv4 address: {value}"))?
            }
            _ => return Err(format!("unknown argument: {flag}")),
        }
    }
    Ok((ip, port.ok_or("--port is required")?))
}
