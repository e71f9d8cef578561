//! What the process asks of the OS that std has no API for: the scheduling
//! policy of the server's threads, client threads that allocate nothing,
//! the open file limit, and who is on the other end of a Unix socket. The
//! one place that calls the OS directly.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_void};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};
use std::panic::{self, AssertUnwindSafe};
use std::ptr;

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

/// What a thread started by [`spawn`] runs, handed over as one pointer.
struct Start<F> {
    /// The thread's name.
    name: &'static CStr,
    /// What it runs; taken when it starts.
    main: Option<F>,
}

/// Starts a detached thread named `name` (at most 15 bytes, as Linux
/// keeps; a longer name leaves the thread unnamed), with `stack_size`
/// bytes of stack, that runs `main`.
///
/// A bare POSIX thread, not a `std::thread` one, so that a thread blocked
/// in `read` costs its stack pages and nothing on the heap: a std thread
/// allocates at its start (a copy of its name, a thread-local destructor,
/// its stack's bounds), and its first allocation gives it glibc's
/// per-thread cache, over half a KiB, for its whole life. What it loses
/// against a std thread: a panic message names it `<unnamed>` (with its
/// thread id), and a stack overflow ends the process without saying so.
///
/// Nothing joins the thread: whoever waits for it counts it with a guard
/// that `main` drops. A panic in `main` ends the thread, dropping what
/// `main` owns.
///
/// # Errors
///
/// Fails as `pthread_create` does (`EAGAIN` when out of threads or
/// memory); `main` is then dropped without running.
pub(crate) fn spawn<F>(name: &'static CStr, stack_size: usize, main: F) -> io::Result<()>
where
    F: FnOnce() + Send + 'static,
{
    let start = Box::into_raw(Box::new(Start {
        name,
        main: Some(main),
    }));
    // SAFETY: `run::<F>` takes `start` as the `Start<F>` it is.
    let created = unsafe { create_detached(stack_size, run::<F>, start.cast()) };
    if created.is_err() {
        // SAFETY: no thread was created to take `start`: it is still ours.
        drop(unsafe { Box::from_raw(start) });
    }
    created
}

/// Creates a detached thread with `stack_size` bytes of stack that runs
/// `run(argument)`.
///
/// # Safety
///
/// `run` must be sound to call with `argument` on another thread.
unsafe fn create_detached(
    stack_size: usize,
    run: extern "C" fn(*mut c_void) -> *mut c_void,
    argument: *mut c_void,
) -> io::Result<()> {
    let mut attr = MaybeUninit::<libc::pthread_attr_t>::uninit();
    // SAFETY: pthread_attr_init initialises `attr`, which the calls after
    // it use only then, and which is destroyed last; `thread` outlives the
    // call that writes it.
    unsafe {
        os_result(libc::pthread_attr_init(attr.as_mut_ptr()))?;
        let mut thread = 0;
        let created = os_result(libc::pthread_attr_setstacksize(
            attr.as_mut_ptr(),
            stack_size,
        ))
        .and_then(|()| {
            os_result(libc::pthread_attr_setdetachstate(
                attr.as_mut_ptr(),
                libc::PTHREAD_CREATE_DETACHED,
            ))
        })
        .and_then(|()| {
            os_result(libc::pthread_create(
                &mut thread,
                attr.as_ptr(),
                run,
                argument,
            ))
        });
        libc::pthread_attr_destroy(attr.as_mut_ptr());
        created
    }
}

/// The body of a thread started by [`spawn`].
extern "C" fn run<F: FnOnce()>(start: *mut c_void) -> *mut c_void {
    // SAFETY: `start` comes from Box::into_raw in `spawn`, which gave it
    // up to this thread alone.
    let mut start = unsafe { Box::from_raw(start.cast::<Start<F>>()) };
    // SAFETY: the name is a NUL-terminated string that outlives the call.
    unsafe { libc::pthread_setname_np(libc::pthread_self(), start.name.as_ptr()) };
    if let Some(main) = start.main.take() {
        // Unwinding must stop here, before C code: the panic has been
        // reported, and what `main` owned has been dropped.
        let _ = panic::catch_unwind(AssertUnwindSafe(main));
    }
    // Freed only now: a free is an allocator call too, and the thread's
    // first one would give it glibc's per-thread cache for the rest of
    // its life.
    drop(start);
    ptr::null_mut()
}

/// `Ok` for a pthread function's result of zero, the error it returned
/// otherwise.
fn os_result(code: libc::c_int) -> io::Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(code))
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

/// An allocator for the library's tests that counts, thread by thread,
/// the calls made to it, so that a test can check that a client's thread
/// makes none: a thread's first allocator call, a free included, gives it
/// glibc's per-thread cache for its whole life.
#[cfg(test)]
pub(crate) mod allocator_calls {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        /// Calls made by this thread; constant-initialised and without a
        /// destructor, so that counting allocates nothing itself.
        static CALLS: Cell<usize> = const { Cell::new(0) };
    }

    /// The calls made to the allocator by the calling thread so far.
    pub(crate) fn on_this_thread() -> usize {
        CALLS.get()
    }

    /// The system allocator, counted.
    struct Counted;

    #[global_allocator]
    static COUNTED: Counted = Counted;

    // SAFETY: every call is passed on unchanged to the system allocator;
    // counting only touches a thread-local integer.
    unsafe impl GlobalAlloc for Counted {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            CALLS.set(CALLS.get() + 1);
            // SAFETY: the caller's guarantees, passed on.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            CALLS.set(CALLS.get() + 1);
            // SAFETY: the caller's guarantees, passed on.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            CALLS.set(CALLS.get() + 1);
            // SAFETY: the caller's guarantees, passed on.
            unsafe { System.realloc(ptr, layout, new_size) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            CALLS.set(CALLS.get() + 1);
            // SAFETY: the caller's guarantees, passed on.
            unsafe { System.dealloc(ptr, layout) }
        }
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
    fn a_spawned_thread_is_named_and_drops_what_it_owns_when_it_panics() {
        let (names, received) = std::sync::mpsc::channel();
        spawn(c"echo-test", 64 * 1024, move || {
            let name = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
            names.send(name).unwrap();
            panic!("handler failure");
        })
        .expect("a thread can be started");
        let wait = std::time::Duration::from_secs(10);
        assert_eq!(received.recv_timeout(wait).unwrap(), "echo-test\n");
        // The sender goes with the panic: nothing more comes, and the
        // channel closes.
        assert_eq!(
            received.recv_timeout(wait),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn a_thread_that_cannot_start_drops_what_it_was_given() {
        let (sender, received) = std::sync::mpsc::channel::<()>();
        let error =
            spawn(c"echo-test", 1, move || drop(sender)).expect_err("a one-byte stack is refused");
        assert_eq!(error.raw_os_error(), Some(libc::EINVAL));
        assert_eq!(
            received.try_recv(),
            Err(std::sync::mpsc::TryRecvError::Disconnected)
        );
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
