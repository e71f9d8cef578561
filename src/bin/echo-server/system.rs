//! What the process needs from the system: descriptors, inherited sockets,
//! signals.

use std::io;
use std::num::NonZeroUsize;
use std::time::Duration;

use echo_server::{Listener, ShutdownHandle};
use log::{info, warn};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};

/// Descriptors the server needs beyond one per client: listeners, logs,
/// the accept loops' reserve, the signal pipe.
const DESCRIPTOR_RESERVE: u64 = 64;

/// Raises the soft limit on open files to the hard limit, and warns when it
/// cannot cover `max_connections` clients.
pub fn raise_descriptor_limit(max_connections: Option<NonZeroUsize>) {
    let Some(max) = max_connections else {
        // No limit to cover: as many descriptors as the system allows.
        let _ = echo_server::raise_open_file_limit(0);
        return;
    };
    let wanted = max.get() as u64 + DESCRIPTOR_RESERVE;
    if let Err(error) = echo_server::raise_open_file_limit(wanted) {
        warn!("{error}: fewer than --max-connections {max} clients may be served at once");
    }
}

/// The listening sockets passed by a service manager (`LISTEN_FDS` and
/// `LISTEN_PID`, the systemd convention), if this process was given any.
///
/// # Errors
///
/// Fails if a passed descriptor is neither a TCP nor a Unix stream
/// listening socket.
pub fn inherited_listeners() -> io::Result<Option<Vec<Listener>>> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    let mut listeners = Vec::with_capacity(fds.len());
    for index in 0..fds.len() {
        // A descriptor of the other kind is left in place for the next try.
        let listener = match fds.take_tcp_listener(index) {
            Ok(Some(listener)) => Some(Listener::Tcp(listener)),
            Ok(None) => None,
            Err(_) => fds.take_unix_listener(index)?.map(Listener::Unix),
        };
        let listener = listener.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("inherited descriptor {} is not available", index + 3),
            )
        })?;
        // The accept loops block; a manager may have passed it non-blocking.
        match &listener {
            Listener::Tcp(socket) => socket.set_nonblocking(false)?,
            Listener::Unix(socket) => socket.set_nonblocking(false)?,
            _ => {}
        }
        listeners.push(listener);
    }
    info!("serving {} inherited listening socket(s)", listeners.len());
    Ok(Some(listeners))
}

/// Starts a thread that acts on the signals a server is sent.
///
/// SIGTERM drains for `drain_timeout` (closes at once when it is zero);
/// SIGINT, or any second stop signal, closes every client at once. SIGUSR1
/// logs the statistics and SIGHUP rereads the TLS certificate: the server
/// goes on.
pub fn handle_signals(handle: ShutdownHandle, drain_timeout: Duration) -> io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGUSR1, SIGHUP])?;
    std::thread::Builder::new()
        .name("echo-signals".to_owned())
        .spawn(move || {
            for signal in signals.forever() {
                match signal {
                    SIGUSR1 => {
                        let stats = handle.stats();
                        info!("stats: {} connected, {stats}", stats.active);
                    }
                    SIGHUP => reload(&handle),
                    _ => stop(&handle, signal, drain_timeout),
                }
            }
        })?;
    Ok(())
}

/// Rereads the TLS certificate and key, as SIGHUP asks; a broken pair is
/// logged and the one in use kept.
fn reload(handle: &ShutdownHandle) {
    #[cfg(feature = "tls")]
    match handle.reload_tls() {
        Ok(Some(fingerprint)) => {
            info!("SIGHUP: TLS certificate reloaded, SHA-256 fingerprint {fingerprint}");
        }
        Ok(None) => info!("SIGHUP: nothing to reload"),
        Err(error) => {
            log::error!(
                "SIGHUP: cannot reload the TLS certificate, keeping the one in use: {error}"
            );
        }
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = handle;
        info!("SIGHUP: nothing to reload");
    }
}

/// Stops the server as `signal` (SIGINT or SIGTERM) asks.
fn stop(handle: &ShutdownHandle, signal: i32, drain_timeout: Duration) {
    let name = if signal == SIGTERM {
        "SIGTERM"
    } else {
        "SIGINT"
    };
    if handle.is_shutdown() {
        info!("{name} again: closing every client now");
        handle.shutdown();
    } else if signal == SIGTERM && !drain_timeout.is_zero() {
        info!("{name}: no longer accepting; draining clients for up to {drain_timeout:?}");
        handle.drain(drain_timeout);
    } else {
        info!("{name}: shutting down");
        handle.shutdown();
    }
}
