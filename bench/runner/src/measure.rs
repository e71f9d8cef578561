//! One measurement: echo-bench against a running server, with the server's
//! memory read while the `hold` scenario holds its connections.

use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::plan::{Plan, Scenario};
use crate::process::Group;
use crate::procfs::{self, Memory};
use crate::servers::{self, HOST, Programs, Running, Server};

/// Time echo-bench gets beyond its duration (to set up its connections and
/// to finish the echoes under way) before it is stopped and reported as
/// timed out.
const BENCH_SLACK: Duration = Duration::from_secs(120);

/// How long a server's memory may take to settle after the readiness
/// probe (its thread or process for that connection going away).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(1);

/// Lines of echo-bench's standard error kept with a measurement.
const STDERR_LINES_KEPT: usize = 20;

/// How an echo-bench run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It exited with this code: 0 when every connection opened and every
    /// echo came back intact.
    Exited(i32),
    /// A signal ended it.
    Signalled,
    /// It ran past its duration and [`BENCH_SLACK`], and was stopped.
    TimedOut,
    /// It never ran: the server did not start, or echo-bench could not be.
    NotRun(String),
}

/// The server's memory around the held connections.
#[derive(Clone, Copy, Debug)]
pub struct HoldMemory {
    /// After the server started, before echo-bench connected.
    pub before: Memory,
    /// While echo-bench held its connections.
    pub held: Memory,
    /// The connections echo-bench said it held.
    pub connections: u64,
    /// Whether the figure is Pss rather than VmRSS: for a server that forks
    /// a process per connection, VmRSS summed over the processes would
    /// count the pages they share once per process.
    pub proportional: bool,
}

impl HoldMemory {
    /// The server's memory growth per held connection, KiB: VmRSS, or Pss
    /// for a server that forks per connection.
    pub fn kib_per_client(&self) -> Option<f64> {
        let kib = |memory: Memory| {
            let kib = if self.proportional {
                memory.pss_kib
            } else {
                memory.rss_kib
            };
            kib as f64
        };
        (self.connections > 0)
            .then(|| (kib(self.held) - kib(self.before)) / self.connections as f64)
    }
}

/// One echo-bench run against one server.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// Counted from 1.
    pub round: usize,
    /// The load.
    pub scenario: Scenario,
    /// The server under it.
    pub server: Server,
    /// A warm-up run, left out of the table.
    pub warmup: bool,
    /// echo-bench's command line.
    pub command: Vec<String>,
    /// How echo-bench ended.
    pub outcome: Outcome,
    /// echo-bench's JSON, when it printed one.
    pub result: Option<Value>,
    /// The server's memory, in the `hold` scenario.
    pub memory: Option<HoldMemory>,
    /// The last lines echo-bench wrote to standard error.
    pub stderr: Vec<String>,
    /// Anything else worth knowing: the server died during the run, the
    /// hold line never came.
    pub notes: Vec<String>,
}

impl Measurement {
    fn new(round: usize, scenario: Scenario, server: Server, warmup: bool) -> Measurement {
        Measurement {
            round,
            scenario,
            server,
            warmup,
            command: Vec::new(),
            outcome: Outcome::NotRun(String::new()),
            result: None,
            memory: None,
            stderr: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Whether echo-bench exited 0 and printed its JSON.
    pub fn succeeded(&self) -> bool {
        self.outcome == Outcome::Exited(0) && self.result.is_some()
    }

    /// A number from echo-bench's JSON: `key`, or `key.inner`.
    pub fn figure(&self, path: &[&str]) -> Option<f64> {
        path.iter()
            .try_fold(self.result.as_ref()?, |value, key| value.get(key))?
            .as_f64()
    }

    /// Why the run does not count, in one line: the exit and echo-bench's
    /// non-zero failure counts (its words are in [`Measurement::complaint`]).
    pub fn failure(&self) -> Option<String> {
        if self.succeeded() {
            return None;
        }
        let mut parts = vec![match &self.outcome {
            Outcome::Exited(0) => "exit 0 without JSON".to_owned(),
            Outcome::Exited(code) => format!("exit {code}"),
            Outcome::Signalled => "killed by a signal".to_owned(),
            Outcome::TimedOut => "timed out".to_owned(),
            Outcome::NotRun(why) => format!("not run: {why}"),
        }];
        let counts = [
            ("connections", "connected"),
            ("connect_errors", "connect errors"),
            ("refused", "refused"),
            ("timed_out", "timed out"),
            ("errors", "errors"),
            ("mismatches", "mismatches"),
        ];
        for (key, label) in counts {
            if let Some(count) = self.figure(&[key]).filter(|&count| count > 0.0) {
                parts.push(format!("{count} {label}"));
            }
        }
        parts.extend(self.notes.iter().cloned());
        Some(parts.join("; "))
    }

    /// echo-bench's last error line, or else its last warning.
    pub fn complaint(&self) -> Option<&str> {
        let last_starting = |prefix| {
            self.stderr
                .iter()
                .rev()
                .find(|line| line.starts_with(prefix))
        };
        last_starting("error")
            .or_else(|| last_starting("warn"))
            .map(String::as_str)
    }

    /// The raw-results line.
    pub fn to_json(&self) -> Value {
        let (exit_code, outcome) = match &self.outcome {
            Outcome::Exited(code) => (Some(*code), "exited".to_owned()),
            Outcome::Signalled => (None, "signalled".to_owned()),
            Outcome::TimedOut => (None, "timed out".to_owned()),
            Outcome::NotRun(why) => (None, format!("not run: {why}")),
        };
        let memory = self.memory.map(|m| {
            json!({
                "rss_before_kib": m.before.rss_kib,
                "rss_held_kib": m.held.rss_kib,
                "pss_before_kib": m.before.pss_kib,
                "pss_held_kib": m.held.pss_kib,
                "per_client_from": if m.proportional { "Pss" } else { "VmRSS" },
                "threads_held": m.held.threads,
                "processes_held": m.held.processes,
                "connections_held": m.connections,
                "kib_per_client": m.kib_per_client(),
            })
        });
        json!({
            "round": self.round,
            "scenario": self.scenario.to_string(),
            "server": self.server.name(),
            "warmup": self.warmup,
            "command": self.command.join(" "),
            "outcome": outcome,
            "exit_code": exit_code,
            "result": self.result,
            "server_memory": memory,
            "stderr": self.stderr,
            "notes": self.notes,
        })
    }
}

/// Starts `server`, measures it under `scenario` (after a warm-up, when the
/// plan has one and the scenario is not `hold`), and stops it. Returns the
/// warm-up, if any, and the measurement. The server's output goes to
/// `log`.
pub fn measure(
    programs: &Programs,
    plan: &Plan,
    round: usize,
    scenario: Scenario,
    server: Server,
    log: &Path,
) -> Vec<Measurement> {
    let running = match servers::start(server, programs, log) {
        Ok(running) => running,
        Err(why) => {
            let mut failed = Measurement::new(round, scenario, server, false);
            failed.outcome = Outcome::NotRun(why);
            return vec![failed];
        }
    };
    let mut runs = Vec::new();
    if let Some(warmup) = plan.warmup.filter(|_| scenario != Scenario::Hold) {
        let mut run = Measurement::new(round, scenario, server, true);
        bench(programs, plan, &running, warmup, &mut run);
        runs.push(run);
    }
    let mut run = Measurement::new(round, scenario, server, false);
    bench(programs, plan, &running, scenario.duration(plan), &mut run);
    if running.group.has_exited() {
        run.notes
            .push("the server exited during the run".to_owned());
    }
    runs.push(run);
    if let Err(e) = running.group.stop() {
        eprintln!("warning: cannot reap {}: {e}", server.name());
    }
    runs
}

/// Runs echo-bench for `duration` against `running` and fills in `run`.
fn bench(
    programs: &Programs,
    plan: &Plan,
    running: &Running,
    duration: Duration,
    run: &mut Measurement,
) {
    let server_pgid = running.group.pid();
    let before = (run.scenario == Scenario::Hold).then(|| settled_memory(server_pgid));
    let mut args = vec![
        "--host".to_owned(),
        HOST.to_string(),
        "-p".to_owned(),
        running.port.to_string(),
    ];
    args.extend(run.scenario.bench_args(plan, duration));
    run.command = std::iter::once(programs.echo_bench.display().to_string())
        .chain(args.iter().cloned())
        .collect();

    let deadline = Instant::now() + duration + BENCH_SLACK;
    let bench = match Bench::start(&programs.echo_bench, &args) {
        Ok(bench) => bench,
        Err(e) => {
            run.outcome = Outcome::NotRun(format!("cannot start echo-bench: {e}"));
            return;
        }
    };
    let mut stderr = Vec::new();
    if let Some(before) = before {
        match wait_for_hold(&bench.stderr_lines, deadline, &mut stderr) {
            Some(connections) => {
                let held = procfs::group_memory(server_pgid);
                run.memory = Some(HoldMemory {
                    before,
                    held,
                    connections,
                    proportional: run.server.forks_per_connection(),
                });
            }
            None => run
                .notes
                .push("echo-bench never said it was holding its connections".to_owned()),
        }
    }
    let (outcome, stdout) = bench.finish(deadline, &mut stderr);
    run.outcome = outcome;
    run.result = serde_json::from_str(stdout.trim()).ok();
    let skip = stderr.len().saturating_sub(STDERR_LINES_KEPT);
    run.stderr = stderr.split_off(skip);
}

/// A running echo-bench, its output read as it comes.
struct Bench {
    /// The process.
    group: Group,
    /// Collects standard output: one JSON object, at the end.
    stdout: JoinHandle<String>,
    /// Forwards standard error, line by line, to `stderr_lines`.
    stderr: JoinHandle<()>,
    /// Standard error's lines, as echo-bench writes them.
    stderr_lines: Receiver<String>,
}

impl Bench {
    fn start(program: &Path, args: &[String]) -> io::Result<Bench> {
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut group = Group::spawn(&mut command)?;
        let stdout = group.take_stdout().expect("stdout is piped");
        let stdout = thread::spawn(move || {
            let mut text = String::new();
            // A read error leaves what was read, which then fails to parse.
            let _ = BufReader::new(stdout).read_to_string(&mut text);
            text
        });
        let stderr = group.take_stderr().expect("stderr is piped");
        let (sender, stderr_lines) = mpsc::channel();
        let stderr = thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Bench {
            group,
            stdout,
            stderr,
            stderr_lines,
        })
    }

    /// Waits for echo-bench to exit, until `deadline` at most, and returns
    /// how it ended and its standard output. The lines of standard error
    /// not read yet are added to `stderr`.
    fn finish(self, deadline: Instant, stderr: &mut Vec<String>) -> (Outcome, String) {
        let exited = self.group.wait_exit(deadline);
        let status = self.group.stop();
        // Both readers end at EOF, now that echo-bench is gone.
        let _ = self.stderr.join();
        stderr.extend(self.stderr_lines.try_iter());
        let stdout = self.stdout.join().unwrap_or_default();
        let outcome = match status {
            _ if !exited => Outcome::TimedOut,
            Ok(status) => status.code().map_or(Outcome::Signalled, Outcome::Exited),
            Err(e) => Outcome::NotRun(format!("cannot reap echo-bench: {e}")),
        };
        (outcome, stdout)
    }
}

/// Reads echo-bench's standard error until it says `holding N connections
/// for DURATION`, and returns N; `None` if it ends or `deadline` passes
/// first. Every line read is kept in `kept`.
fn wait_for_hold(
    lines: &Receiver<String>,
    deadline: Instant,
    kept: &mut Vec<String>,
) -> Option<u64> {
    loop {
        let timeout = deadline.saturating_duration_since(Instant::now());
        let line = match lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
        };
        let held = held_connections(&line);
        kept.push(line);
        if held.is_some() {
            return held;
        }
    }
}

/// N from `holding N connections for DURATION`.
fn held_connections(line: &str) -> Option<u64> {
    let rest = &line[line.find("holding ")? + "holding ".len()..];
    let mut words = rest.split_whitespace();
    let count = words.next()?.parse().ok()?;
    (words.next()? == "connections").then_some(count)
}

/// The server's memory once its thread and process counts stop changing
/// (the readiness probe's connection may still be going away), or after
/// [`SETTLE_TIMEOUT`].
fn settled_memory(pgid: u32) -> Memory {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut last = procfs::group_memory(pgid);
    loop {
        thread::sleep(Duration::from_millis(50));
        let now = procfs::group_memory(pgid);
        let settled = now.threads == last.threads && now.processes == last.processes;
        if settled || Instant::now() >= deadline {
            return now;
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_hold_line() {
        assert_eq!(
            held_connections("holding 1000 connections for 2s"),
            Some(1000)
        );
        assert_eq!(
            held_connections("echo-bench: holding 7 connections for 1m 2s"),
            Some(7)
        );
        assert_eq!(held_connections("holding on"), None);
        assert_eq!(held_connections("warn: 3 connections failed"), None);
    }

    #[test]
    fn memory_per_client_is_the_growth_over_the_connections() {
        let memory = |rss_kib, pss_kib| Memory {
            rss_kib,
            pss_kib,
            threads: 1,
            processes: 1,
        };
        let hold = HoldMemory {
            before: memory(1000, 500),
            held: memory(21_000, 10_500),
            connections: 1000,
            proportional: false,
        };
        assert_eq!(hold.kib_per_client(), Some(20.0));
        let forked = HoldMemory {
            proportional: true,
            ..hold
        };
        assert_eq!(forked.kib_per_client(), Some(10.0));
        let nobody = HoldMemory {
            connections: 0,
            ..hold
        };
        assert_eq!(nobody.kib_per_client(), None);
    }

    #[test]
    fn a_failed_run_says_why() {
        let mut run = Measurement::new(1, Scenario::PingPong(10), Server::Ours, false);
        run.outcome = Outcome::Exited(1);
        run.result = Some(json!({"connections": 8, "connect_errors": 2, "errors": 0}));
        run.stderr = vec!["error: 2 connections failed".to_owned()];
        assert_eq!(
            run.failure().as_deref(),
            Some("exit 1; 8 connected; 2 connect errors")
        );
        assert_eq!(run.complaint(), Some("error: 2 connections failed"));
        run.outcome = Outcome::Exited(0);
        assert_eq!(run.failure(), None);
    }
}
