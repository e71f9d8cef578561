//! What /proc tells about the servers: which processes a group holds,
//! whether one has exited, and how much memory a group uses.

use std::fs;

/// Memory and size of a process group, summed over its live processes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// Resident set size (VmRSS), KiB. Summed over processes, pages they
    /// share (the program, libc) count once per process.
    pub rss_kib: u64,
    /// Proportional set size (Pss, from /proc/PID/smaps_rollup), KiB: each
    /// page shared by k processes counts 1/k in each, so the sum over
    /// processes is the memory they hold together.
    pub pss_kib: u64,
    /// Threads, all processes together.
    pub threads: u64,
    /// Live processes.
    pub processes: u64,
}

/// The fields of /proc/PID/stat the runner reads.
struct Stat {
    /// R, S, D, Z (zombie: exited, not yet reaped), X (dead), ...
    state: char,
    /// Process group id.
    pgrp: u32,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces and parentheses:
    // the fields that follow start after the last ')'.
    let mut fields = text.get(text.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(Stat { state, pgrp })
}

fn is_live(state: char) -> bool {
    !matches!(state, 'Z' | 'X')
}

/// Whether process `pid` has exited. A child that has exited stays a
/// zombie until it is reaped, and this does not reap it: its pid, and so
/// its process group id, cannot be reused meanwhile.
pub fn has_exited(pid: u32) -> bool {
    stat(pid).is_none_or(|s| !is_live(s.state))
}

/// The live processes of process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat(pid).is_some_and(|s| s.pgrp == pgid && is_live(s.state)))
        .collect()
}

/// Memory of process group `pgid`: VmRSS, Pss and threads summed over its
/// live processes (one for a threaded server, one per client more for a
/// server that forks per connection). A process that exits while it is
/// read is left out.
pub fn group_memory(pgid: u32) -> Memory {
    let mut total = Memory::default();
    for pid in group_members(pgid) {
        let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        total.rss_kib += status_field(&status, "VmRSS:").unwrap_or(0);
        total.pss_kib += status_field(&rollup, "Pss:").unwrap_or(0);
        total.threads += status_field(&status, "Threads:").unwrap_or(0);
        total.processes += 1;
    }
    total
}

/// The number after `key` in /proc/PID/status or smaps_rollup
/// (`VmRSS:   1234 kB`).
fn status_field(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_fields() {
        let status = "Name:\tx\nThreads:\t3\nVmRSS:\t    2048 kB\n";
        assert_eq!(status_field(status, "VmRSS:"), Some(2048));
        assert_eq!(status_field(status, "Threads:"), Some(3));
        assert_eq!(status_field(status, "VmHWM:"), None);
    }

    #[test]
    fn finds_this_process_and_its_memory() {
        let me = std::process::id();
        assert!(!has_exited(me));
        let pgid = stat(me).expect("this process has a stat file").pgrp;
        assert!(group_members(pgid).contains(&me));
        let memory = group_memory(pgid);
        assert!(memory.rss_kib > 0 && memory.pss_kib > 0);
        assert!(memory.threads >= 1 && memory.processes >= 1);
    }
}
