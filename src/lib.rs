//! A thread-per-connection, blocking TCP echo server, and the client that goes
//! with it.
//!
//! The design follows the classic Erlang/Elixir echo server: an accept loop
//! per listening socket hands every client to a process of its own, which
//! loops `recv` → `send` until the client goes. Here that process is an OS
//! thread with a small stack, the I/O is blocking `std::net`, and the
//! defences a real deployment needs (connection limits, idle timeouts,
//! back-off on accept errors, a clean shutdown) are built in.
//!
//! # Example
//!
//! Embed a server on a free port, talk to it with [`Client`], stop it with its
//! [`ShutdownHandle`]:
//!
//! ```
//! use std::time::Duration;
//! use echo_server::{Client, Config, Server};
//!
//! let config = Config { port: 0, ..Config::default() };
//! let server = Server::bind(&config)?;
//! let addr = server.local_addrs()[0];
//! let handle = server.handle();
//! let running = std::thread::spawn(move || server.run());
//!
//! let mut client = Client::connect(addr, Duration::from_secs(5))?;
//! assert_eq!(client.send(b"Hello, server")?, b"Hello, server");
//! client.close()?;
//!
//! handle.shutdown();
//! let stats = running.join().expect("the server thread does not panic")?;
//! assert_eq!(stats.accepted, 1);
//! # Ok::<(), std::io::Error>(())
//! ```

mod accept;
mod cidr;
mod client;
mod config;
mod errors;
mod handler;
mod idle;
mod limits;
mod listeners;
mod preview;
mod proxy_protocol;
mod resolve;
mod server;
mod stats;
mod stop;
mod stream;
mod sys;
mod throttle;
#[cfg(feature = "tls")]
mod tls;
mod udp;

pub use cidr::{Cidr, CidrError};
pub use client::Client;
#[cfg(feature = "tls")]
pub use client::TlsClientOptions;
pub use config::{
    Config, DEFAULT_BIND, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_PORT,
    DEFAULT_UDP_RATE, DEFAULT_UDP_RATE_EXEMPT,
};
pub use errors::{os_message, reason};
pub use listeners::{Endpoint, Listener};
pub use resolve::resolve;
pub use server::{Server, ShutdownHandle};
pub use stats::Stats;
pub use sys::raise_open_file_limit;
#[cfg(feature = "tls")]
pub use tls::{DEFAULT_HANDSHAKE_TIMEOUT, TlsConfig};
