//! What a run counts: the [`Counters`] the workers publish while it runs,
//! and one [`Tally`] per worker, merged at the end.

use std::io;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Longest time the histograms tell apart, in nanoseconds; longer ones
/// are recorded as this. Replies slower than the reply timeout, and
/// handshakes slower than the connect timeout, are errors anyway.
const LATENCY_MAX_NS: u64 = 60_000_000_000;

/// Significant decimal digits of every recorded latency: 0.1% precision.
const LATENCY_DIGITS: u8 = 3;

/// Counters the workers publish for the progress bar.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections whose connect has completed or failed.
    pub settled: AtomicU64,
    /// Connections established and not closed since.
    pub open: AtomicU64,
    /// Messages verified so far.
    pub messages: AtomicU64,
}

/// The counts of one worker, or of the whole run once merged.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Connections established.
    pub opened: u64,
    /// Connections that could not be established.
    pub connect_errors: u64,
    /// Of those, the ones the server refused.
    pub refused: u64,
    /// Of those, the ones that timed out.
    pub timed_out: u64,
    /// How long it took until every connect had completed or failed.
    pub connecting: Duration,
    /// Time of every connect completed, from its start to its completion,
    /// in nanoseconds.
    pub connects: Histogram<u64>,
    /// Round trips completed and verified within the measured time.
    pub messages: u64,
    /// Payload bytes echoed back and verified within the measured time.
    pub bytes: u64,
    /// I/O errors and timeouts after connecting; each closed its connection.
    pub errors: u64,
    /// Replies that came back whole but differed from what was sent.
    pub mismatches: u64,
    /// Datagrams not answered in time; always 0 over a stream, where a
    /// missing echo is an error.
    pub lost: u64,
    /// Latency of every verified round trip, first byte written to last
    /// byte read, in nanoseconds.
    pub latency: Histogram<u64>,
    /// Time of every TLS handshake completed, from the connect's
    /// completion to the handshake's end, in nanoseconds; empty without
    /// TLS.
    pub handshakes: Histogram<u64>,
    /// How long messages were counted for.
    pub measured: Duration,
    /// Why the first failed connection failed, to tell the user.
    pub first_connect_error: Option<String>,
    /// What the first error after connecting was, to tell the user.
    pub first_error: Option<String>,
}

impl Tally {
    /// Nothing counted yet.
    pub fn new() -> Tally {
        Tally {
            opened: 0,
            connect_errors: 0,
            refused: 0,
            timed_out: 0,
            connecting: Duration::ZERO,
            connects: histogram(),
            messages: 0,
            bytes: 0,
            errors: 0,
            mismatches: 0,
            lost: 0,
            latency: histogram(),
            handshakes: histogram(),
            measured: Duration::ZERO,
            first_connect_error: None,
            first_error: None,
        }
    }

    /// Counts a verified round trip of `size` bytes.
    pub fn record(&mut self, size: usize, latency: Duration) {
        self.messages += 1;
        self.bytes += size as u64;
        self.latency.saturating_record(nanos(latency));
    }

    /// Records the time a connect took.
    pub fn connect(&mut self, time: Duration) {
        self.connects.saturating_record(nanos(time));
    }

    /// Records the time a TLS handshake took.
    pub fn handshake(&mut self, time: Duration) {
        self.handshakes.saturating_record(nanos(time));
    }

    /// Counts a connection that could not be established.
    pub fn connect_error(&mut self, error: &io::Error) {
        self.connect_errors += 1;
        match error.kind() {
            io::ErrorKind::ConnectionRefused => self.refused += 1,
            io::ErrorKind::TimedOut => self.timed_out += 1,
            _ => {}
        }
        self.first_connect_error
            .get_or_insert_with(|| echo_server::reason(error));
    }

    /// Counts an error on an established connection.
    pub fn error(&mut self, error: &io::Error) {
        self.errors += 1;
        self.first_error
            .get_or_insert_with(|| echo_server::reason(error));
    }

    /// Adds another worker's counts to these. The measured time, and the
    /// time the connects took, are the longest, since the workers ran side
    /// by side.
    pub fn merge(&mut self, other: &Tally) {
        self.opened += other.opened;
        self.connect_errors += other.connect_errors;
        self.refused += other.refused;
        self.timed_out += other.timed_out;
        self.connecting = self.connecting.max(other.connecting);
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.errors += other.errors;
        self.mismatches += other.mismatches;
        self.lost += other.lost;
        for (mine, theirs) in [
            (&mut self.latency, &other.latency),
            (&mut self.handshakes, &other.handshakes),
            (&mut self.connects, &other.connects),
        ] {
            mine.add(theirs)
                .expect("every tally's histograms have the same bounds");
        }
        self.measured = self.measured.max(other.measured);
        if self.first_connect_error.is_none() {
            self.first_connect_error
                .clone_from(&other.first_connect_error);
        }
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }
}

/// An empty histogram of times in nanoseconds.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, LATENCY_DIGITS)
        .expect("the latency bounds are constants that hdrhistogram accepts")
}

/// `time` in nanoseconds, the histograms' unit; the longest times are cut
/// to what a `u64` holds.
fn nanos(time: Duration) -> u64 {
    u64::try_from(time.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_adds_counts_and_keeps_the_first_reasons() {
        let mut total = Tally::new();
        total.record(10, Duration::from_micros(50));
        total.error(&io::Error::other("first"));
        let mut other = Tally::new();
        other.record(10, Duration::from_micros(150));
        other.error(&io::Error::other("second"));
        other.connect_error(&io::Error::from(io::ErrorKind::ConnectionRefused));
        other.connect_error(&io::Error::from(io::ErrorKind::TimedOut));
        other.connect(Duration::from_micros(80));
        other.connecting = Duration::from_millis(30);
        other.measured = Duration::from_secs(2);
        other.lost = 3;
        other.handshake(Duration::from_micros(700));

        total.merge(&other);

        assert_eq!((total.messages, total.bytes, total.errors), (2, 20, 2));
        assert_eq!(total.lost, 3);
        assert_eq!(total.connect_errors, 2);
        assert_eq!((total.refused, total.timed_out), (1, 1));
        assert_eq!(total.connects.len(), 1);
        assert_eq!(total.connecting, Duration::from_millis(30));
        assert_eq!(total.latency.len(), 2);
        assert_eq!(total.handshakes.len(), 1);
        assert_eq!(total.measured, Duration::from_secs(2));
        assert_eq!(total.first_error.as_deref(), Some("first"));
        assert_eq!(
            total.first_connect_error.as_deref(),
            Some("connection refused")
        );
    }

    #[test]
    fn latencies_beyond_the_range_are_kept_at_its_top() {
        let mut tally = Tally::new();
        tally.record(1, Duration::from_secs(3600));
        assert!(tally.latency.max() >= LATENCY_MAX_NS);
    }
}
