//! The runner's command line. bench/run.sh passes the repository, the
//! results directory and the command it was given; the rest is for
//! running part of the benchmark by hand.

use std::path::PathBuf;
use std::time::Duration;

use crate::plan::{Mode, Plan, Scenario};
use crate::servers::Server;

/// The usage text, for `--help` and errors.
pub const USAGE: &str = "\
usage: runner --repo DIR --out DIR [--quick | --full] [options]

  --repo DIR           the echo-server checkout, built (bench/run.sh builds it)
  --out DIR            where raw.jsonl, table.md and the server logs go
  --quick | --full     1 round of 2s windows, 1000 held connections (default);
                       3 rounds of 5s windows with 1s warm-ups, 10000 held
  --command TEXT       the command to print with the table [default: the runner's own]
  --rounds N           override the mode's rounds
  --window SECONDS     override the mode's measurement window
  --hold N             override the mode's held connections
  --servers A,B        only these: ours, thread-lean, tokio, socat, ncat
  --scenarios A,B      only these: pp-c10, pp-c100, pp-c1000, stream, hold";

/// What the command line asks for.
#[derive(Debug)]
pub struct Options {
    /// The repository root.
    pub repo: PathBuf,
    /// The results directory for this run.
    pub out: PathBuf,
    /// The mode's numbers, with any overrides.
    pub plan: Plan,
    /// The command that started the run, as printed with the table.
    pub command: String,
    /// Servers to compare, in column order.
    pub servers: Vec<Server>,
    /// Scenarios to run, in row order.
    pub scenarios: Vec<Scenario>,
}

/// Parses the runner's arguments (without the program name).
///
/// # Errors
///
/// A message for the user, to print above [`USAGE`].
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let args: Vec<String> = args.into_iter().collect();
    let mut mode = Mode::Quick;
    let (mut repo, mut out, mut command) = (None, None, None);
    let (mut rounds, mut window, mut hold) = (None, None, None);
    let mut servers = Server::ALL.to_vec();
    let mut scenarios = Scenario::ALL.to_vec();
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let mut value = || rest.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--quick" => mode = Mode::Quick,
            "--full" => mode = Mode::Full,
            "--repo" => repo = Some(PathBuf::from(value()?)),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--command" => command = Some(value()?.clone()),
            "--rounds" => rounds = Some(number(flag, value()?)?),
            "--window" => window = Some(Duration::from_secs(number(flag, value()?)?)),
            "--hold" => hold = Some(number(flag, value()?)?),
            "--servers" => servers = pick(value()?, &Server::ALL, |s| s.name().to_owned())?,
            "--scenarios" => scenarios = pick(value()?, &Scenario::ALL, ToString::to_string)?,
            _ => return Err(format!("unknown argument: {flag}")),
        }
    }
    let mut plan = Plan::new(mode);
    plan.rounds = rounds.map_or(plan.rounds, |n: u64| n as usize);
    plan.window = window.unwrap_or(plan.window);
    plan.hold_connections = hold.map_or(plan.hold_connections, |n: u64| n as u32);
    if plan.rounds == 0 || plan.window.is_zero() || plan.hold_connections == 0 {
        return Err("--rounds, --window and --hold must be at least 1".to_owned());
    }
    Ok(Options {
        repo: repo.ok_or("--repo is required")?,
        out: out.ok_or("--out is required")?,
        plan,
        command: command.unwrap_or_else(|| format!("runner {}", args.join(" "))),
        servers,
        scenarios,
    })
}

fn number(flag: &str, value: &str) -> Result<u64, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: not a number: {value}"))
}

/// The items of `all` named in the comma-separated `list`, in `all`'s order.
fn pick<T: Copy>(list: &str, all: &[T], name: impl Fn(&T) -> String) -> Result<Vec<T>, String> {
    let wanted: Vec<&str> = list.split(',').map(str::trim).collect();
    if let Some(unknown) = wanted
        .iter()
        .find(|w| !all.iter().any(|item| name(item) == **w))
    {
        let known: Vec<String> = all.iter().map(&name).collect();
        return Err(format!(
            "unknown name: {unknown} (known: {})",
            known.join(", ")
        ));
    }
    Ok(all
        .iter()
        .copied()
        .filter(|item| wanted.contains(&name(item).as_str()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn full_mode_with_overrides() {
        let options = parse(args(
            "--repo r --out o --full --rounds 2 --servers tokio,ours",
        ))
        .unwrap();
        assert_eq!(options.plan.mode, Mode::Full);
        assert_eq!(options.plan.rounds, 2);
        assert_eq!(options.plan.hold_connections, 10_000);
        assert_eq!(options.servers, [Server::Ours, Server::Tokio]);
        assert_eq!(options.scenarios, Scenario::ALL);
    }

    #[test]
    fn rejects_unknown_names_and_missing_paths() {
        assert!(
            parse(args("--repo r --out o --scenarios pp-c7"))
                .unwrap_err()
                .contains("pp-c7")
        );
        assert_eq!(parse(args("--out o")).unwrap_err(), "--repo is required");
        assert_eq!(
            parse(args("--repo r --out o --rounds 0")).unwrap_err(),
            "--rounds, --window and --hold must be at least 1"
        );
    }
}
