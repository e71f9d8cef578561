//! The table: a row per scenario (two for `hold`: memory and connect time),
//! a column per server with the median over rounds, and ours divided by
//! thread-lean and by tokio. Runs that failed are not in the medians: the
//! cell says how many failed, and a note below says how.

use std::fmt::Write as _;

use crate::measure::Measurement;
use crate::plan::{Plan, Scenario};
use crate::servers::Server;

/// The peers ours is divided by, in the ratio columns.
const RATIO_PEERS: [Server; 2] = [Server::ThreadLean, Server::Tokio];

/// A figure a row shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Figure {
    /// Ping-pong round trips a second, with latency beside it.
    MsgsPerSec,
    /// Stream throughput.
    MibPerSec,
    /// The server's memory growth per held connection.
    KibPerClient,
    /// Seconds to establish every held connection.
    ConnectSeconds,
}

impl Figure {
    fn unit(self) -> &'static str {
        match self {
            Figure::MsgsPerSec => "msgs/s (p50 / p99 µs)",
            Figure::MibPerSec => "MiB/s",
            Figure::KibPerClient => "KiB per client",
            Figure::ConnectSeconds => "s to connect all",
        }
    }

    fn value(self, run: &Measurement) -> Option<f64> {
        match self {
            Figure::MsgsPerSec => run.figure(&["msgs_per_sec"]),
            Figure::MibPerSec => run.figure(&["mib_per_sec"]),
            Figure::KibPerClient => run.memory?.kib_per_client(),
            Figure::ConnectSeconds => run.figure(&["connect_s"]),
        }
    }

    fn format(self, value: f64) -> String {
        match self {
            Figure::MsgsPerSec => thousands(value),
            Figure::MibPerSec if value >= 100.0 => format!("{value:.0}"),
            Figure::MibPerSec | Figure::KibPerClient => format!("{value:.1}"),
            Figure::ConnectSeconds => format!("{value:.3}"),
        }
    }
}

/// The rows a scenario gets.
fn figures(scenario: Scenario) -> &'static [Figure] {
    match scenario {
        Scenario::PingPong(_) => &[Figure::MsgsPerSec],
        Scenario::Stream => &[Figure::MibPerSec],
        Scenario::Hold => &[Figure::KibPerClient, Figure::ConnectSeconds],
    }
}

/// The table in markdown, then a note for each cell with failed runs.
pub fn render(
    runs: &[Measurement],
    servers: &[Server],
    scenarios: &[Scenario],
    plan: &Plan,
) -> String {
    let mut out = String::new();
    let mut header = vec!["scenario".to_owned(), "figure".to_owned()];
    header.extend(servers.iter().map(|server| server.name().to_owned()));
    header.extend(
        RATIO_PEERS
            .iter()
            .map(|peer| format!("ours / {}", peer.name())),
    );
    push_row(&mut out, &header);
    push_row(&mut out, &vec!["---".to_owned(); header.len()]);

    let mut notes = Vec::new();
    for &scenario in scenarios {
        let label = match scenario {
            Scenario::Hold => format!("hold-{}", plan.hold_connections),
            _ => scenario.to_string(),
        };
        for &figure in figures(scenario) {
            let mut row = vec![label.clone(), figure.unit().to_owned()];
            for &server in servers {
                let cell_runs: Vec<&Measurement> = runs
                    .iter()
                    .filter(|run| !run.warmup && run.scenario == scenario && run.server == server)
                    .collect();
                row.push(cell(&cell_runs, figure, &mut notes));
            }
            let ours = median_figure(runs, scenario, Server::Ours, figure);
            for peer in RATIO_PEERS {
                let ratio = ours.zip(median_figure(runs, scenario, peer, figure));
                row.push(match ratio {
                    Some((ours, peer)) if peer > 0.0 => format!("{:.2}", ours / peer),
                    _ => "–".to_owned(),
                });
            }
            push_row(&mut out, &row);
        }
    }
    if !notes.is_empty() {
        out.push_str("\nFailed runs (left out of the medians):\n\n");
        for (number, note) in notes.iter().enumerate() {
            let _ = writeln!(out, "{}. {note}", number + 1);
        }
    }
    out
}

/// One server's cell: the median of the runs that succeeded (with latency
/// for ping-pong), and a reference to a note when some failed.
fn cell(runs: &[&Measurement], figure: Figure, notes: &mut Vec<String>) -> String {
    let succeeded: Vec<&Measurement> = runs.iter().copied().filter(|run| run.succeeded()).collect();
    let failed: Vec<&Measurement> = runs
        .iter()
        .copied()
        .filter(|run| !run.succeeded())
        .collect();
    let value = median(
        succeeded
            .iter()
            .filter_map(|run| figure.value(run))
            .collect(),
    );
    let mut text = match value {
        Some(value) => figure.format(value),
        None if succeeded.is_empty() && !failed.is_empty() => "failed".to_owned(),
        None => "n/a".to_owned(),
    };
    if figure == Figure::MsgsPerSec && value.is_some() {
        let latency = |percentile| {
            let values = succeeded
                .iter()
                .filter_map(|run| run.figure(&["latency_us", percentile]))
                .collect();
            median(values).map_or("?".to_owned(), micros)
        };
        let _ = write!(text, " ({} / {})", latency("p50"), latency("p99"));
    }
    // Ping-pong and stream have one row a scenario, hold two: note a
    // failure once, on its first row.
    if !failed.is_empty() && figure != Figure::ConnectSeconds {
        let details: Vec<String> = failed
            .iter()
            .map(|run| format!("round {}: {}", run.round, run.failure().unwrap_or_default()))
            .collect();
        let run = failed[0];
        let mut note = format!(
            "{} on {}: {}",
            run.scenario,
            run.server.name(),
            details.join("; ")
        );
        // Usually the same words each round: once is enough.
        if let Some(complaint) = failed.iter().find_map(|run| run.complaint()) {
            let _ = write!(note, " (echo-bench: {complaint})");
        }
        notes.push(note);
        if value.is_some() {
            let _ = write!(text, " ({} of {} failed)", failed.len(), runs.len());
        }
        let _ = write!(text, " [{}]", notes.len());
    }
    text
}

fn median_figure(
    runs: &[Measurement],
    scenario: Scenario,
    server: Server,
    figure: Figure,
) -> Option<f64> {
    let values = runs
        .iter()
        .filter(|run| {
            !run.warmup && run.scenario == scenario && run.server == server && run.succeeded()
        })
        .filter_map(|run| figure.value(run))
        .collect();
    median(values)
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 1 => Some(values[middle]),
        _ => Some((values[middle - 1] + values[middle]) / 2.0),
    }
}

fn push_row(out: &mut String, cells: &[String]) {
    let _ = writeln!(out, "| {} |", cells.join(" | "));
}

/// `1234567.8` as `1,234,568`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Microseconds, to three significant figures or so.
fn micros(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Outcome;
    use serde_json::json;

    fn run(server: Server, round: usize, msgs_per_sec: f64, exit_code: i32) -> Measurement {
        let mut run = Measurement {
            round,
            scenario: Scenario::PingPong(10),
            server,
            warmup: false,
            command: Vec::new(),
            outcome: Outcome::Exited(exit_code),
            result: Some(json!({
                "msgs_per_sec": msgs_per_sec,
                "latency_us": {"p50": 50.0, "p99": 150.0},
                "errors": 0,
            })),
            memory: None,
            stderr: Vec::new(),
            notes: Vec::new(),
        };
        if exit_code != 0 {
            run.result = Some(json!({"msgs_per_sec": msgs_per_sec, "errors": 3}));
            run.stderr = vec!["warn: 3 connections ended in an error".to_owned()];
        }
        run
    }

    #[test]
    fn medians_and_separators() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(Vec::new()), None);
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(999.0), "999");
    }

    #[test]
    fn failed_runs_stay_out_of_the_median_and_are_noted() {
        let runs = vec![
            run(Server::Ours, 1, 100.0, 0),
            run(Server::Ours, 2, 1_000_000.0, 1),
            run(Server::ThreadLean, 1, 200.0, 0),
            run(Server::Tokio, 1, 50.0, 1),
        ];
        let plan = Plan::new(crate::plan::Mode::Quick);
        let servers = [Server::Ours, Server::ThreadLean, Server::Tokio];
        let table = render(&runs, &servers, &[Scenario::PingPong(10)], &plan);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[2],
            "| pp-c10 | msgs/s (p50 / p99 µs) | 100 (50.0 / 150) (1 of 2 failed) [1] | 200 (50.0 / 150) | failed [2] | 0.50 | – |"
        );
        assert!(table.contains(
            "1. pp-c10 on ours: round 2: exit 1; 3 errors \
             (echo-bench: warn: 3 connections ended in an error)\n"
        ));
        assert!(table.contains("2. pp-c10 on tokio: round 1: exit 1; 3 errors ("));
    }
}
