//! The idle watchdog: one thread that closes clients that have neither
//! sent nor read for the idle timeout.
//!
//! The timeout could be socket options (`SO_RCVTIMEO`, `SO_SNDTIMEO`), but
//! those arm and cancel a kernel timer around every blocking read and
//! write: measured here, serving 100 clients with them cost 10–30 % of the
//! messages a second that the same server served without. Instead each
//! client thread stores how many bytes it has echoed after every write (a
//! plain store to a cache line no other thread writes), and this thread
//! looks at every client a few times per timeout, shutting down the socket
//! of any whose count has not moved for the timeout: its thread, blocked in
//! `read` or `write`, returns at once.

use std::time::{Duration, Instant};

use log::debug;

use crate::limits::Limits;
use crate::stop::Stop;

/// How many times per timeout the watchdog looks: a client is closed
/// between the timeout and a quarter more.
const LOOKS_PER_TIMEOUT: u32 = 4;
/// The longest time between two looks, so that a long timeout is still
/// kept to within a second.
const MAX_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest time between two looks.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// Closes clients idle for `timeout` until the server stops admitting
/// clients (it closes them all then).
pub(crate) fn watch(limits: &Limits, stop: &Stop, timeout: Duration) {
    let interval = (timeout / LOOKS_PER_TIMEOUT).clamp(MIN_INTERVAL, MAX_INTERVAL);
    while stop.pause_while_admitting(interval) {
        let closed = limits.close_idle(timeout, Instant::now());
        if closed > 0 {
            debug!("closed {closed} idle client(s)");
        }
    }
}
