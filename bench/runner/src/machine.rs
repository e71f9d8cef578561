//! The facts about the machine and the build printed under the table, so a
//! figure can be told apart from one made elsewhere.

use std::fs;
use std::path::Path;
use std::process::Command;

/// CPUs, CPU model, kernel, compiler and commit, one fact a line.
pub fn describe(repo: &Path) -> Vec<String> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|line| line.starts_with("model name"))?;
            Some(line.split_once(':')?.1.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let kernel = output("uname", &["-r"]).unwrap_or_else(|| "unknown".to_owned());
    let rustc = output("rustc", &["--version"]).unwrap_or_else(|| "unknown".to_owned());
    vec![
        format!("Machine: {cpus} CPUs (nproc), {model}, Linux {kernel}"),
        format!("Compiler: {rustc}"),
        format!("Commit: {}", commit(repo)),
    ]
}

/// The checked-out commit, and whether the work tree differs from it.
fn commit(repo: &Path) -> String {
    let repo = repo.display().to_string();
    let Some(head) = output("git", &["-C", &repo, "rev-parse", "--short", "HEAD"]) else {
        return "unknown (not a git checkout)".to_owned();
    };
    match output(
        "git",
        &["-C", &repo, "status", "--porcelain", "--untracked-files=no"],
    ) {
        Some(changes) if !changes.is_empty() => format!("{head} with uncommitted changes"),
        _ => head,
    }
}

/// What `program args` prints, trimmed, if it succeeds.
fn output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
