//! What a run is asked to do, as the command line put it.

use std::time::Duration;

use crate::target::Target;
use crate::tls::Tls;

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The server, and how to reach it.
    pub target: Target,
    /// How to speak TLS over each connection; `None` for none.
    pub tls: Option<Tls>,
    /// Concurrent clients.
    pub connections: usize,
    /// Message size in bytes.
    pub size: usize,
    /// How long to count messages, from when every connection is set up.
    pub duration: Duration,
    /// One message per client per interval; `None` sends the next message
    /// as soon as the echo of the previous one is back.
    pub interval: Option<Duration>,
    /// What each connection does once established.
    pub mode: Mode,
}

/// What each connection does once established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Round trips of one message each: closed-loop, or one per interval.
    RoundTrips,
    /// Writes a stream of random bytes and reads its echo at the same time,
    /// every byte checked: the throughput of one long transfer, as iperf
    /// measures it, through the echo.
    Stream,
    /// One round trip, to know the server serves it, then nothing for the
    /// duration: what holding many clients costs the server.
    Hold,
}
