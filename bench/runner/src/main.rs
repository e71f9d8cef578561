//! runner: measures echo-server against its peers under echo-bench and
//! prints one markdown table.
//!
//! Each (scenario, server) measurement gets a fresh server process on a
//! free loopback port; rounds repeat every measurement, with the servers'
//! order rotated so that none always goes first, and the table shows
//! medians over rounds. Every echo-bench JSON goes to `raw.jsonl` in the
//! results directory, tagged with its server, scenario and round, and the
//! table to `table.md` beside it. bench/run.sh builds everything and runs
//! this; `runner --help` shows how to run part of it by hand.

mod cli;
mod machine;
mod measure;
mod plan;
mod process;
mod procfs;
mod servers;
mod sys;
mod table;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

use cli::Options;
use measure::Measurement;
use plan::{Plan, Scenario};
use servers::{Programs, Server};

/// Open files each process needs beyond one per connection (listeners,
/// standard streams, logs).
const SPARE_FILES: u64 = 64;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|arg| arg == "-h" || arg == "--help") {
        return match print(&format!("{}\n", cli::USAGE)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    let options = match cli::parse(args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("error: {message}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: &Options) -> Result<(), String> {
    let started = Instant::now();
    process::stop_all_on_interrupt().map_err(|e| format!("cannot handle interrupts: {e}"))?;
    let programs = Programs::find(&options.repo)?;
    let mut notes = Vec::new();
    let servers = available_servers(options, &programs, &mut notes);
    let scenarios = supported_scenarios(options, &programs, &mut notes)?;
    if servers.is_empty() || scenarios.is_empty() {
        return Err(format!("nothing to measure: {}", notes.join("; ")));
    }
    // Inherited by every server and echo-bench started from here on.
    let wanted = u64::from(options.plan.hold_connections) + SPARE_FILES;
    let open_files = echo_server::raise_open_file_limit(wanted);
    notes.extend(memory_notes(
        &options.plan,
        &servers,
        &scenarios,
        open_files,
    ));

    let raw_path = options.out.join("raw.jsonl");
    let runs = measure_all(options, &programs, &servers, &scenarios, &raw_path)?;

    let mut report = table::render(&runs, &servers, &scenarios, &options.plan);
    report.push('\n');
    let facts = [
        format!("Mode: {}", options.plan.describe()),
        format!("Command: {}", options.command),
        format!("Raw results: {}", shown(options, &raw_path)),
        format!("Measuring took {:.0} s.", started.elapsed().as_secs_f64()),
    ];
    for line in notes
        .into_iter()
        .chain(machine::describe(&options.repo))
        .chain(facts)
    {
        report.push_str(&format!("- {line}\n"));
    }
    let table_path = options.out.join("table.md");
    fs::write(&table_path, &report)
        .map_err(|e| format!("cannot write {}: {e}", table_path.display()))?;
    print(&report).map_err(|e| format!("cannot print the table: {e}"))
}

/// Every measurement of the plan, in rounds; each is written to `raw_path`
/// as it ends, and the measured ones (not warm-ups) are returned.
fn measure_all(
    options: &Options,
    programs: &Programs,
    servers: &[Server],
    scenarios: &[Scenario],
    raw_path: &Path,
) -> Result<Vec<Measurement>, String> {
    let logs = options.out.join("logs");
    fs::create_dir_all(&logs).map_err(|e| format!("cannot create {}: {e}", logs.display()))?;
    let mut raw =
        File::create(raw_path).map_err(|e| format!("cannot create {}: {e}", raw_path.display()))?;
    let plan = &options.plan;
    let total = plan.rounds * scenarios.len() * servers.len();
    let mut runs = Vec::new();
    for round in 1..=plan.rounds {
        for (index, &scenario) in scenarios.iter().enumerate() {
            // Rotate the order, so that no server always goes first.
            let shift = ((round - 1) * scenarios.len() + index) % servers.len();
            for &server in servers.iter().cycle().skip(shift).take(servers.len()) {
                let log = logs.join(format!("round{round}-{scenario}-{}.log", server.name()));
                for run in measure::measure(programs, plan, round, scenario, server, &log) {
                    writeln!(raw, "{}", run.to_json())
                        .map_err(|e| format!("cannot write {}: {e}", raw_path.display()))?;
                    if !run.warmup {
                        eprintln!("[{:>3}/{total}] {}", runs.len() + 1, summary(&run));
                        runs.push(run);
                    }
                }
            }
        }
    }
    Ok(runs)
}

/// What to know about the `hold` figures: how forking servers are counted,
/// and whether the open-files limit covers the held connections.
fn memory_notes(
    plan: &Plan,
    servers: &[Server],
    scenarios: &[Scenario],
    open_files: io::Result<()>,
) -> Vec<String> {
    let mut notes = Vec::new();
    let forking: Vec<&str> = servers
        .iter()
        .filter(|server| server.forks_per_connection())
        .map(|server| server.name())
        .collect();
    if scenarios.contains(&Scenario::Hold) && !forking.is_empty() {
        notes.push(format!(
            "{}: memory per client is Pss summed over the server's processes (one per \
             client); VmRSS summed would count their shared pages once per process.",
            forking.join(", ")
        ));
    }
    if let Err(error) = open_files {
        notes.push(format!(
            "Too few open files for {} held connections: {error}.",
            plan.hold_connections
        ));
    }
    notes
}

/// The selected servers that are installed; a note for each that is not.
fn available_servers(
    options: &Options,
    programs: &Programs,
    notes: &mut Vec<String>,
) -> Vec<Server> {
    let (available, missing): (Vec<Server>, Vec<Server>) = options
        .servers
        .iter()
        .partition(|&&server| programs.has(server));
    for server in missing {
        notes.push(format!("{}: not installed, skipped.", server.name()));
    }
    available
}

/// The selected scenarios this echo-bench can run; a note for each other.
fn supported_scenarios(
    options: &Options,
    programs: &Programs,
    notes: &mut Vec<String>,
) -> Result<Vec<Scenario>, String> {
    let help = Command::new(&programs.echo_bench)
        .arg("--help")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", programs.echo_bench.display()))?;
    let help = String::from_utf8_lossy(&help.stdout);
    let mut supported = Vec::new();
    for &scenario in &options.scenarios {
        match scenario.bench_flag() {
            Some(flag) if !help.contains(flag) => {
                notes.push(format!(
                    "{scenario}: skipped, this echo-bench has no {flag}."
                ));
            }
            _ => supported.push(scenario),
        }
    }
    Ok(supported)
}

/// One progress line for a finished measurement.
fn summary(run: &Measurement) -> String {
    let what = format!(
        "round {}, {}, {}",
        run.round,
        run.scenario,
        run.server.name()
    );
    if let Some(failure) = run.failure() {
        let complaint = run
            .complaint()
            .map(|line| format!(" ({line})"))
            .unwrap_or_default();
        return format!("{what}: FAILED: {failure}{complaint}");
    }
    let figure = match run.scenario {
        Scenario::PingPong(_) => format!(
            "{:.0} msgs/s, p50 {:.1} µs, p99 {:.1} µs",
            run.figure(&["msgs_per_sec"]).unwrap_or(f64::NAN),
            run.figure(&["latency_us", "p50"]).unwrap_or(f64::NAN),
            run.figure(&["latency_us", "p99"]).unwrap_or(f64::NAN),
        ),
        Scenario::Stream => format!(
            "{:.1} MiB/s",
            run.figure(&["mib_per_sec"]).unwrap_or(f64::NAN)
        ),
        Scenario::Hold => match run.memory {
            Some(memory) => format!(
                "{} held, {:.1} KiB per client ({} threads, {} processes), connected in {:.3} s",
                memory.connections,
                memory.kib_per_client().unwrap_or(f64::NAN),
                memory.held.threads,
                memory.held.processes,
                run.figure(&["connect_s"]).unwrap_or(f64::NAN),
            ),
            None => "memory not read".to_owned(),
        },
    };
    format!("{what}: {figure}")
}

/// `path` relative to the repository when it is inside it.
fn shown(options: &Options, path: &Path) -> String {
    path.strip_prefix(&options.repo)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Writes the report to standard output; a reader that has gone (a closed
/// pipe) is no error.
fn print(report: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(report.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
}
