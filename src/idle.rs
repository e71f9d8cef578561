//! The idle watchdog: one thread that closes clients that have neither
//! sent nor read for the idle timeout.
//!
//! The timeout could be socket options (`SO_RCVTIMEO`, `SO_SNDTIMEO`), but
//! those arm and cancel a kernel timer around every blocking read and
//! write, on the path of every message. Instead each client thread sets a
//! flag after every write (a plain store to a cache line that only this
//! thread reads, once per look), and this thread looks at every client
//! several times per timeout, clearing the flags it finds set and shutting
//! down the socket of any client whose flag has stayed clear for the
//! timeout: its thread, blocked in `read` or `write`, returns at once.

use std::time::Duration;

use log::debug;

use crate::limits::{Limits, MAX_IDLE_LOOKS};
use crate::stop::Stop;

/// How many times per timeout the watchdog looks: a client is closed
/// between the timeout and a quarter more.
const LOOKS_PER_TIMEOUT: u32 = 8;
/// The longest time between two looks, so that a long timeout is still
/// kept to within a second.
const MAX_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest time between two looks.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// Closes clients idle for `timeout` until the server stops admitting
/// clients (it closes them all then).
pub(crate) fn watch(limits: &Limits, stop: &Stop, timeout: Duration) {
    let (interval, looks) = schedule(timeout);
    while stop.pause_while_admitting(interval) {
        let closed = limits.close_idle(looks);
        if closed > 0 {
            debug!("closed {closed} idle client(s)");
        }
    }
}

/// How long between two looks, and how many looks without activity make
/// `timeout`: a client is closed after between `timeout` and `timeout`
/// and two looks.
fn schedule(timeout: Duration) -> (Duration, u16) {
    let max_looks = u32::from(MAX_IDLE_LOOKS);
    let interval = (timeout / LOOKS_PER_TIMEOUT)
        .clamp(MIN_INTERVAL, MAX_INTERVAL)
        // A timeout of days is looked at less often than once a second.
        .max(timeout / max_looks);
    let looks = timeout.as_nanos().div_ceil(interval.as_nanos().max(1));
    let looks = u16::try_from(looks).map_or(MAX_IDLE_LOOKS, |looks| looks.clamp(1, MAX_IDLE_LOOKS));
    (interval, looks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_are_frequent_for_short_timeouts_and_once_a_second_for_long_ones() {
        assert_eq!(
            schedule(Duration::from_millis(800)),
            (Duration::from_millis(100), 8)
        );
        assert_eq!(
            schedule(Duration::from_secs(300)),
            (Duration::from_secs(1), 300)
        );
        assert_eq!(schedule(Duration::from_millis(20)), (MIN_INTERVAL, 2));
    }

    #[test]
    fn the_looks_always_add_up_to_at_least_the_timeout() {
        for timeout in [1, 7, 33, 999, 86_400_000, 3_000_000_000_u64] {
            let timeout = Duration::from_millis(timeout);
            let (interval, looks) = schedule(timeout);
            assert!(
                interval * u32::from(looks) >= timeout.min(interval * u32::from(MAX_IDLE_LOOKS)),
                "{timeout:?}"
            );
            assert!((1..=MAX_IDLE_LOOKS).contains(&looks), "{timeout:?}");
        }
    }
}
