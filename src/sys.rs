//! What the process asks of the OS that std has no API for: the scheduling
//! policy of the server's threads, the open file limit, and who is on the
//! other end of a Unix socket. The one place that calls the OS directly.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// Puts the calling thread, and every thread it starts from then on (Linux
/// threads inherit the policy), under `SCHED_BATCH`.
///
/// An echo thread wakes for every message. Under the default policy each
/// wake-up may preempt the thread that caused it (the client's, or another
/// echo thread), so a burst of messages costs a context switch apiece.
/// `SCHED_BATCH` keeps the same priority and fairness but does not preempt
/// on wake-up: woken echo threads wait for the running one to block, and run
/// one after another. Measured with 10 and 100 clients on two cores, that
/// roughly doubles the messages echoed per second and cuts tail latency.
pub(crate) fn use_batch_scheduling() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid, initialised sched_param that outlives the
    // call, and pid 0 names the calling thread; the call touches no other
    // memory.
    let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Raises the soft limit on open files (`RLIMIT_NOFILE`) to the hard
/// limit, so that `wanted` descriptors can be open at once.
///
/// # Errors
///
/// Fails if the limits cannot be read or set, or if even the hard limit is
/// below `wanted`: `open file limit is 1024`.
pub fn raise_open_file_limit(wanted: u64) -> io::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit that outlives the call, which only
    // writes into it.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit that outlives the call, which
        // only reads it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    if limit.rlim_cur < wanted {
        return Err(io::Error::other(format!(
            "open file limit is {}",
            limit.rlim_cur
        )));
    }
    Ok(())
}

/// The process id and user id of the peer of a connected Unix socket, as
/// they were when it connected (`SO_PEERCRED`).
///
/// # Errors
///
/// Fails if `socket` is not a connected Unix socket.
pub(crate) fn peer_credentials(socket: &impl AsFd) -> io::Result<(i32, u32)> {
    let mut credentials = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut length = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the descriptor is valid for the call (borrowed from `socket`),
    // and `credentials` is a ucred of `length` bytes that outlives the call,
    // which writes at most `length` bytes into it.
    let result = unsafe {
        libc::getsockopt(
            socket.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut credentials).cast(),
            &mut length,
        )
    };
    if result == 0 {
        Ok((credentials.pid, credentials.uid))
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_policy_is_set_and_inherited_by_new_threads() {
        std::thread::spawn(|| {
            use_batch_scheduling().expect("SCHED_BATCH needs no privilege");
            let child = std::thread::spawn(|| {
                // SAFETY: sched_getscheduler only reads the calling thread's policy.
                unsafe { libc::sched_getscheduler(0) }
            });
            assert_eq!(child.join().unwrap(), libc::SCHED_BATCH);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_limit() {
        raise_open_file_limit(0).expect("raising to the hard limit needs no privilege");
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as in raise_open_file_limit.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        assert_eq!(limit.rlim_cur, limit.rlim_max);
        let error = raise_open_file_limit(u64::MAX).expect_err("no limit is that high");
        assert!(
            error.to_string().starts_with("open file limit is "),
            "{error}"
        );
    }

    #[test]
    fn a_unix_peer_is_this_process() {
        let (ours, _theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let (pid, uid) = peer_credentials(&ours).expect("a socket pair has credentials");
        assert_eq!(pid, std::process::id() as i32);
        // SAFETY: getuid cannot fail and touches no memory.
        assert_eq!(uid, unsafe { libc::getuid() });
    }
}
