//! The system call the runner needs that std does not offer: signalling a
//! whole process group. The only `unsafe` in the runner is here.

use std::io;

/// The signals the runner sends.
#[derive(Clone, Copy, Debug)]
pub enum Signal {
    /// Asks a process to stop.
    Term,
    /// Stops it for certain.
    Kill,
}

/// Sends `signal` to every process in the process group `pgid`.
///
/// # Errors
///
/// `kill`'s: ESRCH when the group is empty.
pub fn signal_group(pgid: u32, signal: Signal) -> io::Result<()> {
    // A pid: positive, and never 1, so that -pgid never signals our own
    // group (0) or every process (-1).
    let pgid = libc::pid_t::try_from(pgid)
        .ok()
        .filter(|&pgid| pgid > 1)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a process group id"))?;
    let signal = match signal {
        Signal::Term => libc::SIGTERM,
        Signal::Kill => libc::SIGKILL,
    };
    // SAFETY: kill takes plain integers and touches no memory of ours; a
    // negative pid names a group.
    if unsafe { libc::kill(-pgid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
