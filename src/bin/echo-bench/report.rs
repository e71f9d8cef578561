//! The report of a run: a few aligned lines for a person, or one JSON object
//! for a program.

use std::io::{self, Write};

use hdrhistogram::Histogram;
use log::warn;
use serde_json::json;

use crate::plan::{Mode, Plan};
use crate::stats::Tally;
use crate::worker::LOSS_TIMEOUT;

/// Bytes in a MiB.
const MIB: f64 = 1024.0 * 1024.0;

/// What a run did, against what it was asked to do.
#[derive(Debug)]
pub struct Report {
    /// What was asked.
    plan: Plan,
    /// What was counted.
    tally: Tally,
}

/// Percentiles of round-trip, connect or handshake times, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Latency {
    /// Median.
    p50: f64,
    /// 90th percentile.
    p90: f64,
    /// 99th percentile.
    p99: f64,
    /// 99.9th percentile.
    p999: f64,
    /// Slowest.
    max: f64,
}

impl Latency {
    /// The percentiles of `histogram`, in nanoseconds; all 0 when it is
    /// empty.
    fn of(histogram: &Histogram<u64>) -> Latency {
        let micros = |nanos: u64| nanos as f64 / 1000.0;
        Latency {
            p50: micros(histogram.value_at_quantile(0.50)),
            p90: micros(histogram.value_at_quantile(0.90)),
            p99: micros(histogram.value_at_quantile(0.99)),
            p999: micros(histogram.value_at_quantile(0.999)),
            max: micros(histogram.max()),
        }
    }

    /// The object the contract names: `p50`, `p90`, `p99`, `p999`, `max`.
    fn json(&self) -> serde_json::Value {
        json!({
            "p50": self.p50,
            "p90": self.p90,
            "p99": self.p99,
            "p999": self.p999,
            "max": self.max,
        })
    }

    /// As a line of the text report puts them.
    fn text(&self) -> String {
        format!(
            "p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs",
            self.p50, self.p90, self.p99, self.p999, self.max
        )
    }
}

impl Report {
    /// The report of `tally`, a run of `plan`.
    pub fn new(plan: Plan, tally: Tally) -> Report {
        Report { plan, tally }
    }

    /// Whether every connection opened and every message came back intact
    /// and in time.
    pub fn is_clean(&self) -> bool {
        let tally = &self.tally;
        tally.connect_errors == 0 && tally.errors == 0 && tally.mismatches == 0 && tally.lost == 0
    }

    /// An error when not a single connection could be opened: the run then
    /// says nothing about the server.
    ///
    /// # Errors
    ///
    /// `cannot connect to ADDR: REASON` when no connection opened.
    pub fn check_connected(&self) -> io::Result<()> {
        if self.tally.opened > 0 {
            return Ok(());
        }
        let reason = self
            .tally
            .first_connect_error
            .as_deref()
            .unwrap_or("unknown");
        Err(io::Error::new(
            io::ErrorKind::NotConnected,
            format!("cannot connect to {}: {reason}", self.plan.target),
        ))
    }

    /// Logs why connections failed, the first reason of each kind, since
    /// the counts alone do not say.
    pub fn warn_about_failures(&self) {
        let tally = &self.tally;
        // With none opened, the error that ends the run says why.
        if let (Some(reason), true) = (&tally.first_connect_error, tally.opened > 0) {
            warn!(
                "{} of {} connections failed to open, the first with: {reason}",
                tally.connect_errors, self.plan.connections
            );
        }
        if let Some(reason) = &tally.first_error {
            warn!(
                "{} connections ended in an error, the first with: {reason}",
                tally.errors
            );
        }
        if tally.mismatches > 0 {
            warn!("{} replies differed from what was sent", tally.mismatches);
        }
        if tally.lost > 0 {
            warn!(
                "{} datagrams were lost: no echo within {LOSS_TIMEOUT:?}",
                tally.lost
            );
        }
    }

    /// Prints the report on standard output, as JSON if `json`. A reader
    /// that has gone away is not an error of the run.
    ///
    /// # Errors
    ///
    /// Fails if standard output cannot be written.
    pub fn print(&self, json: bool) -> io::Result<()> {
        let mut stdout = io::stdout().lock();
        let written = if json {
            writeln!(stdout, "{}", self.json())
        } else {
            self.write_text(&mut stdout)
        };
        match written.and_then(|()| stdout.flush()) {
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    }

    /// The report as one JSON object, with the keys the contract names;
    /// `tls_handshake_us` only over TLS.
    fn json(&self) -> serde_json::Value {
        let tally = &self.tally;
        let mut json = json!({
            "connections": tally.opened,
            "connect_errors": tally.connect_errors,
            "refused": tally.refused,
            "timed_out": tally.timed_out,
            "connect_s": tally.connecting.as_secs_f64(),
            "connect_us": Latency::of(&tally.connects).json(),
            "messages": tally.messages,
            "bytes": tally.bytes,
            "duration_s": tally.measured.as_secs_f64(),
            "msgs_per_sec": self.per_second(tally.messages as f64),
            "mib_per_sec": self.per_second(tally.bytes as f64 / MIB),
            "latency_us": Latency::of(&tally.latency).json(),
            "errors": tally.errors,
            "mismatches": tally.mismatches,
            "lost": tally.lost,
        });
        if self.plan.tls.is_some() {
            json["tls_handshake_us"] = Latency::of(&tally.handshakes).json();
        }
        json
    }

    /// The report for a person; the `Lost:` line only over UDP, where
    /// datagrams can be, the `TLS handshake:` line only over TLS.
    fn write_text(&self, out: &mut impl Write) -> io::Result<()> {
        let plan = &self.plan;
        let tally = &self.tally;
        let load = match (plan.mode, plan.interval) {
            (Mode::Stream, _) => format!(
                "{} connections, each streaming {}-byte writes and reading the echo at once",
                plan.connections, plan.size
            ),
            (Mode::Hold, _) => format!(
                "{} connections, each held quiet after one {}-byte round trip",
                plan.connections, plan.size
            ),
            (Mode::RoundTrips, Some(interval)) => format!(
                "{} connections, {}-byte messages, one per connection every {}",
                plan.connections,
                plan.size,
                humantime::format_duration(interval)
            ),
            (Mode::RoundTrips, None) => format!(
                "{} connections, {}-byte messages, each sent as soon as the previous echo is back",
                plan.connections, plan.size
            ),
        };
        match &plan.tls {
            Some(tls) => writeln!(out, "Target:       {} over {tls}", plan.target)?,
            None => writeln!(out, "Target:       {}", plan.target)?,
        }
        writeln!(out, "Load:         {load}")?;
        writeln!(
            out,
            "Connections:  {} opened, {} failed ({} refused, {} timed out), all settled in {:.3} s",
            tally.opened,
            tally.connect_errors,
            tally.refused,
            tally.timed_out,
            tally.connecting.as_secs_f64()
        )?;
        writeln!(out, "Connect:      {}", Latency::of(&tally.connects).text())?;
        writeln!(
            out,
            "Duration:     {:.2} s, measured from when every connection was set up",
            tally.measured.as_secs_f64()
        )?;
        writeln!(
            out,
            "Messages:     {} echoed and verified, {:.1} msgs/s",
            tally.messages,
            self.per_second(tally.messages as f64)
        )?;
        writeln!(
            out,
            "Bytes:        {} echoed and verified, {:.2} MiB/s",
            tally.bytes,
            self.per_second(tally.bytes as f64 / MIB)
        )?;
        writeln!(out, "Latency:      {}", Latency::of(&tally.latency).text())?;
        if plan.tls.is_some() {
            // One column further than the other figures: the label is
            // longer than their column, which stays where it was.
            let handshakes = Latency::of(&tally.handshakes);
            writeln!(out, "TLS handshake: {}", handshakes.text())?;
        }
        writeln!(out, "Errors:       {}", tally.errors)?;
        if plan.target.is_datagram() {
            writeln!(out, "Lost:         {}", tally.lost)?;
        }
        writeln!(out, "Mismatches:   {}", tally.mismatches)
    }

    /// `count` over the measured time; 0 when nothing was measured.
    fn per_second(&self, count: f64) -> f64 {
        let seconds = self.tally.measured.as_secs_f64();
        if seconds > 0.0 { count / seconds } else { 0.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Target;
    use std::time::Duration;

    /// A report of 1,000 round trips of 100 bytes in 2 seconds.
    fn report() -> Report {
        let plan = Plan {
            target: Target::Tcp("127.0.0.1:8000".parse().expect("a valid address")),
            tls: None,
            connections: 10,
            size: 100,
            duration: Duration::from_secs(2),
            interval: None,
            mode: Mode::RoundTrips,
        };
        let mut tally = Tally::new();
        for micros in 1..=1000 {
            tally.record(plan.size, Duration::from_micros(micros));
        }
        tally.opened = 10;
        tally.measured = Duration::from_secs(2);
        Report::new(plan, tally)
    }

    #[test]
    fn json_figures_come_from_the_tally() {
        // The key set is checked on the binary's real output, in tests/bench.rs.
        let json = report().json();
        assert_eq!(json["msgs_per_sec"], 500.0);
        assert_eq!(json["bytes"], 100_000);
        let p50 = json["latency_us"]["p50"].as_f64().expect("p50 is a number");
        assert!((499.0..=501.0).contains(&p50), "p50 {p50}");
    }

    /// The text report of `report`.
    fn text(report: &Report) -> String {
        let mut text = Vec::new();
        report
            .write_text(&mut text)
            .expect("writing to memory works");
        String::from_utf8(text).expect("the report is UTF-8")
    }

    #[test]
    fn text_names_every_figure() {
        let text = text(&report());
        for label in [
            "Connections:",
            "msgs/s",
            "MiB/s",
            "p99.9",
            "Errors:",
            "Mismatches:",
        ] {
            assert!(text.contains(label), "no {label:?} in:\n{text}");
        }
    }

    #[test]
    fn only_a_udp_run_has_a_lost_line_and_every_json_report_a_lost_key() {
        let mut report = report();
        assert!(!text(&report).contains("Lost:"));
        assert_eq!(report.json()["lost"], 0);
        report.plan.target = Target::Udp("127.0.0.1:8000".parse().expect("a valid address"));
        report.tally.lost = 2;
        let text = text(&report);
        assert!(text.contains("Lost:         2\n"), "{text}");
        assert!(text.contains("udp:127.0.0.1:8000"), "{text}");
        assert_eq!(report.json()["lost"], 2);
    }

    #[test]
    fn a_run_with_any_failure_is_not_clean() {
        let mut report = report();
        assert!(report.is_clean());
        report.tally.mismatches = 1;
        assert!(!report.is_clean());
        report.tally.mismatches = 0;
        report.tally.lost = 1;
        assert!(!report.is_clean());
    }

    #[test]
    fn nothing_measured_gives_zero_rates() {
        let mut report = report();
        report.tally.measured = Duration::ZERO;
        assert_eq!(report.per_second(10.0), 0.0);
    }

    #[cfg(feature = "tls")]
    #[test]
    fn only_a_tls_run_names_tls_and_has_a_handshake_line_and_key() {
        let mut report = report();
        assert!(!text(&report).contains("TLS"));
        assert!(report.json().get("tls_handshake_us").is_none());
        let insecure = crate::tls::TlsArgs {
            tls: true,
            insecure: true,
            ..Default::default()
        };
        report.plan.tls = insecure.client("localhost").expect("the flags are valid");
        for micros in [300, 300, 900] {
            report.tally.handshake(Duration::from_micros(micros));
        }
        let text = text(&report);
        let target = "Target:       127.0.0.1:8000 over TLS (server name localhost, \
                      certificate not verified)\n";
        assert!(text.contains(target), "{text}");
        let line = text
            .lines()
            .find(|line| line.starts_with("TLS handshake: p50 300."))
            .unwrap_or_else(|| panic!("no handshake line in:\n{text}"));
        assert!(
            line.contains(", p99.9 ") && line.contains(", max 900."),
            "{line}"
        );
        let json = report.json();
        let handshakes = &json["tls_handshake_us"];
        for key in ["p50", "p90", "p99", "p999", "max"] {
            assert!(handshakes[key].is_f64(), "no {key} in {handshakes}");
        }
        let p50 = handshakes["p50"].as_f64().expect("a number");
        assert!((299.0..=301.0).contains(&p50), "p50 {p50}");
    }
}
