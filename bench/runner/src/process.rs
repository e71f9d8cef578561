//! Processes that do not outlive the runner. Each starts in a process group
//! of its own and is stopped as a group (SIGTERM, then SIGKILL after a
//! bounded wait), so that a server's forked children go with it: when the
//! runner is done with it, when its guard is dropped on an error path, and
//! when the runner is interrupted.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::procfs;
use crate::sys::{self, Signal};

/// How often a wait for a process looks again.
const POLL: Duration = Duration::from_millis(10);

/// How long a group has after SIGTERM before it gets SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// How long a group has to be gone after SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(3);

/// Process groups started and not yet reaped. A group's leader is
/// unregistered before it is reaped, so that its id, which a reaped leader
/// frees for reuse, is never signalled afterwards.
static LIVE_GROUPS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn live_groups() -> MutexGuard<'static, Vec<u32>> {
    // A panic elsewhere leaves the list itself intact.
    LIVE_GROUPS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A child process leading a process group of its own. Dropping it stops
/// the group and reaps the leader.
pub struct Group {
    /// The leader; its pid is the group's id.
    child: Child,
    /// Set once the leader is reaped.
    status: Option<ExitStatus>,
}

impl Group {
    /// Starts `command` as the leader of a new process group.
    ///
    /// # Errors
    ///
    /// `Command::spawn`'s.
    pub fn spawn(command: &mut Command) -> io::Result<Group> {
        command.process_group(0);
        // Held across the spawn, so that an interrupt either sees the new
        // group or comes before it exists.
        let mut live = live_groups();
        let child = command.spawn()?;
        live.push(child.id());
        Ok(Group {
            child,
            status: None,
        })
    }

    /// The leader's pid, which is also the group's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The leader's piped standard output, once.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// The leader's piped standard error, once.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// Whether the leader has exited (without reaping it).
    pub fn has_exited(&self) -> bool {
        procfs::has_exited(self.pid())
    }

    /// Waits until the leader exits or `deadline` passes, and says whether
    /// it exited.
    pub fn wait_exit(&self, deadline: Instant) -> bool {
        loop {
            if self.has_exited() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(POLL);
        }
    }

    /// Stops the whole group (a leader that has exited already is only
    /// reaped, after any process it left in the group is stopped) and
    /// returns the leader's exit status.
    ///
    /// # Errors
    ///
    /// `Child::wait`'s.
    pub fn stop(mut self) -> io::Result<ExitStatus> {
        self.stop_and_reap()
    }

    fn stop_and_reap(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let pgid = self.pid();
        stop_groups(&[pgid]);
        live_groups().retain(|&live| live != pgid);
        let status = self.child.wait()?;
        self.status = Some(status);
        Ok(status)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Err(e) = self.stop_and_reap() {
            eprintln!("warning: cannot reap process {}: {e}", self.pid());
        }
    }
}

/// Stops process groups: SIGTERM to all, a bounded wait, SIGKILL to those
/// still there, and another bounded wait.
fn stop_groups(pgids: &[u32]) {
    for &pgid in pgids {
        // An empty group (ESRCH) is already where it should be.
        let _ = sys::signal_group(pgid, Signal::Term);
    }
    if wait_gone(pgids, TERM_GRACE) {
        return;
    }
    for &pgid in pgids {
        let _ = sys::signal_group(pgid, Signal::Kill);
    }
    if !wait_gone(pgids, KILL_GRACE) {
        eprintln!("warning: process groups {pgids:?} survived SIGKILL for {KILL_GRACE:?}");
    }
}

/// Waits until no live process is left in any of `pgids`, for at most
/// `grace`, and says whether they all went.
fn wait_gone(pgids: &[u32], grace: Duration) -> bool {
    let deadline = Instant::now() + grace;
    loop {
        // The leader first: while it lives, no /proc scan is needed.
        let gone = pgids
            .iter()
            .all(|&pgid| procfs::has_exited(pgid) && procfs::group_members(pgid).is_empty());
        if gone {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL);
    }
}

/// On SIGINT, SIGTERM or SIGHUP: stops every group still running and exits
/// with status 130, as a shell reports an interrupted command.
///
/// # Errors
///
/// When a handler is set already or cannot be set.
pub fn stop_all_on_interrupt() -> Result<(), ctrlc::Error> {
    ctrlc::set_handler(|| {
        eprintln!("\ninterrupted: stopping every process the runner started");
        // Kept locked until exit, so that no new group starts meanwhile.
        let live = live_groups();
        stop_groups(&live);
        std::process::exit(130);
    })
}
