//! What a run measures: the mode's rounds and windows, and the scenarios
//! with the echo-bench arguments of each.

use std::fmt;
use std::time::Duration;

/// How thorough a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One round of short windows: under two minutes.
    Quick,
    /// Three rounds of longer windows with warm-ups, 10,000 held
    /// connections: under fifteen minutes.
    Full,
}

impl Mode {
    /// The name given on the command line and printed with the table.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Quick => "quick",
            Mode::Full => "full",
        }
    }
}

/// The mode's numbers, which the command line may override.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The mode the numbers came from.
    pub mode: Mode,
    /// Each (scenario, server) pair is measured once a round; the table
    /// shows the median over rounds.
    pub rounds: usize,
    /// How long each ping-pong and stream measurement lasts.
    pub window: Duration,
    /// An unrecorded echo-bench run of this length, on the same server
    /// process, before each ping-pong and stream measurement: echo-bench
    /// has no warm-up of its own.
    pub warmup: Option<Duration>,
    /// Connections opened and held idle in the `hold` scenario.
    pub hold_connections: u32,
    /// How long they are held; the server's memory is read meanwhile.
    pub hold_for: Duration,
}

impl Plan {
    /// The numbers of `mode`.
    pub fn new(mode: Mode) -> Plan {
        match mode {
            Mode::Quick => Plan {
                mode,
                rounds: 1,
                window: Duration::from_secs(2),
                warmup: None,
                hold_connections: 1_000,
                hold_for: Duration::from_secs(2),
            },
            Mode::Full => Plan {
                mode,
                rounds: 3,
                window: Duration::from_secs(5),
                warmup: Some(Duration::from_secs(1)),
                hold_connections: 10_000,
                hold_for: Duration::from_secs(2),
            },
        }
    }

    /// The plan in one line, for the table's notes.
    pub fn describe(&self) -> String {
        let warmup = match self.warmup {
            Some(warmup) => format!("a {} warm-up before each", seconds(warmup)),
            None => "no warm-up".to_owned(),
        };
        let rounds = if self.rounds == 1 { "round" } else { "rounds" };
        format!(
            "{}: {} {rounds}, {} windows, {warmup}, {} connections held for {}",
            self.mode.name(),
            self.rounds,
            seconds(self.window),
            self.hold_connections,
            seconds(self.hold_for),
        )
    }
}

/// A load the servers are put under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Closed-loop ping-pong of 512-byte messages on this many
    /// connections: msgs/s and latency.
    PingPong(u32),
    /// One connection streaming 64 KiB writes while reading the echo: MiB/s.
    Stream,
    /// Many idle connections: the server's memory per client, and how long
    /// connecting them all takes.
    Hold,
}

impl Scenario {
    /// Every scenario, in the order of the table's rows.
    pub const ALL: [Scenario; 5] = [
        Scenario::PingPong(10),
        Scenario::PingPong(100),
        Scenario::PingPong(1000),
        Scenario::Stream,
        Scenario::Hold,
    ];

    /// The echo-bench flag the scenario needs beyond the ping-pong default.
    pub fn bench_flag(self) -> Option<&'static str> {
        match self {
            Scenario::PingPong(_) => None,
            Scenario::Stream => Some("--stream"),
            Scenario::Hold => Some("--hold"),
        }
    }

    /// echo-bench's arguments after `--host` and `--port`, for a run of
    /// `duration` (the window, a warm-up, or the hold).
    pub fn bench_args(self, plan: &Plan, duration: Duration) -> Vec<String> {
        let duration = seconds(duration);
        let args: Vec<String> = match self {
            Scenario::PingPong(connections) => {
                vec![
                    "-c".into(),
                    connections.to_string(),
                    "-s".into(),
                    "512".into(),
                ]
            }
            Scenario::Stream => {
                vec![
                    "--stream".into(),
                    "-c".into(),
                    "1".into(),
                    "-s".into(),
                    "65536".into(),
                ]
            }
            Scenario::Hold => vec![
                "--hold".into(),
                "-c".into(),
                plan.hold_connections.to_string(),
            ],
        };
        args.into_iter()
            .chain(["-d".into(), duration, "--json".into()])
            .collect()
    }

    /// How long echo-bench runs in this scenario.
    pub fn duration(self, plan: &Plan) -> Duration {
        match self {
            Scenario::Hold => plan.hold_for,
            _ => plan.window,
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scenario::PingPong(connections) => write!(f, "pp-c{connections}"),
            Scenario::Stream => f.write_str("stream"),
            Scenario::Hold => f.write_str("hold"),
        }
    }
}

/// A duration as echo-bench takes it (humantime): `2s`, or `1500ms`.
pub fn seconds(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_scenarios_as_the_table_does() {
        let names: Vec<String> = Scenario::ALL.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["pp-c10", "pp-c100", "pp-c1000", "stream", "hold"]);
    }

    #[test]
    fn builds_echo_bench_arguments() {
        let plan = Plan::new(Mode::Quick);
        assert_eq!(
            Scenario::PingPong(100)
                .bench_args(&plan, plan.window)
                .join(" "),
            "-c 100 -s 512 -d 2s --json"
        );
        assert_eq!(
            Scenario::Stream
                .bench_args(&plan, Duration::from_millis(1500))
                .join(" "),
            "--stream -c 1 -s 65536 -d 1500ms --json"
        );
        assert_eq!(
            Scenario::Hold.bench_args(&plan, plan.hold_for).join(" "),
            "--hold -c 1000 -d 2s --json"
        );
    }
}
