//! The one owner of "are we stopping?": the server's phase, and the count
//! of client threads that shutdown waits for, under one lock with one
//! condition variable.
//!
//! ```text
//! Running ──drain──▶ Draining { until } ──┐
//!    │                                    ├──close──▶ Closing ──run ends──▶ Stopped
//!    └────────────────shutdown────────────┘
//! ```
//!
//! Accepting stops when the phase leaves `Running`. While `Draining`,
//! clients already connected (and those already in the listen queue) are
//! served until they leave or the deadline passes; `Closing` shuts every
//! client's socket down; `Stopped` is set once every client thread has
//! finished.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Where a server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Accepting and serving clients.
    Running,
    /// No longer accepting; clients connected may go on until they leave
    /// or `until` passes.
    Draining {
        /// When the clients still connected are closed.
        until: Instant,
    },
    /// Closing every client.
    Closing,
    /// Every client thread has finished.
    Stopped,
}

impl Phase {
    /// Whether clients accepted now are still to be served.
    pub(crate) fn admits(self) -> bool {
        matches!(self, Phase::Running | Phase::Draining { .. })
    }
}

/// The phase, the client threads, and the counts shutdown records.
#[derive(Debug)]
pub(crate) struct Stop {
    /// Everything below, under one lock. In the lock order, after the
    /// listeners' queue of clients taken at a drain and before the
    /// connection limits (see `server`).
    state: Mutex<State>,
    /// Notified on every change of phase and when the last client thread
    /// finishes.
    changed: Condvar,
}

#[derive(Debug)]
struct State {
    /// Where the server is.
    phase: Phase,
    /// Client threads started and not finished.
    threads: usize,
    /// Clients connected when accepting stopped.
    active_at_stop: usize,
    /// Clients still connected when they were closed.
    cut: usize,
}

/// A client thread, counted from its start until this guard is dropped,
/// the last thing the thread does.
#[derive(Debug)]
pub(crate) struct ClientThread {
    /// The state the thread is counted in.
    stop: Arc<Stop>,
}

impl Stop {
    /// A running server's stop state.
    pub(crate) fn new() -> Stop {
        Stop {
            state: Mutex::new(State {
                phase: Phase::Running,
                threads: 0,
                active_at_stop: 0,
                cut: 0,
            }),
            changed: Condvar::new(),
        }
    }

    /// The phase now.
    pub(crate) fn phase(&self) -> Phase {
        self.lock().phase
    }

    /// Runs `admit` if clients are still admitted, under the lock, so that
    /// [`close`](Self::close) cannot run between the check and `admit`:
    /// whatever `admit` registers is closed with the rest.
    pub(crate) fn if_admitting<T>(&self, admit: impl FnOnce() -> T) -> Option<T> {
        let state = self.lock();
        state.phase.admits().then(admit)
    }

    /// Stops accepting, letting clients go on until `until`; `active` is
    /// how many are connected. Returns whether this call stopped accepting
    /// (only the first does).
    pub(crate) fn drain(&self, until: Instant, active: usize) -> bool {
        self.leave_running(Phase::Draining { until }, active)
    }

    /// Moves to `Closing` and runs `close_all`, which closes every client
    /// and returns how many there were, under the lock. Returns the phase
    /// it left; `close_all` runs only when that was not `Closing` or
    /// `Stopped` already.
    pub(crate) fn close(&self, active: usize, close_all: impl FnOnce() -> usize) -> Phase {
        let mut state = self.lock();
        let before = state.phase;
        match before {
            Phase::Closing | Phase::Stopped => return before,
            Phase::Running => state.active_at_stop = active,
            Phase::Draining { .. } => {}
        }
        state.phase = Phase::Closing;
        state.cut = close_all();
        self.changed.notify_all();
        before
    }

    /// Moves from `Running` to `phase`; whether it did.
    fn leave_running(&self, phase: Phase, active: usize) -> bool {
        let mut state = self.lock();
        if state.phase != Phase::Running {
            return false;
        }
        state.phase = phase;
        state.active_at_stop = active;
        self.changed.notify_all();
        true
    }

    /// Waits for `timeout`, or less if the server stops running meanwhile.
    pub(crate) fn pause(&self, timeout: Duration) {
        let state = self.lock();
        let _ = self
            .changed
            .wait_timeout_while(state, timeout, |state| state.phase == Phase::Running);
    }

    /// Waits for `timeout`, or less if the server starts closing its
    /// clients meanwhile; returns whether clients are still admitted.
    pub(crate) fn pause_while_admitting(&self, timeout: Duration) -> bool {
        let state = self.lock();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, timeout, |state| state.phase.admits())
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.phase.admits()
    }

    /// Counts a client thread in until the guard is dropped.
    pub(crate) fn client_thread(self: &Arc<Self>) -> ClientThread {
        self.lock().threads += 1;
        ClientThread {
            stop: Arc::clone(self),
        }
    }

    /// While draining, waits until every client thread has finished, the
    /// drain's deadline passes, or closing begins.
    pub(crate) fn wait_drained(&self) {
        let mut state = self.lock();
        while let Phase::Draining { until } = state.phase {
            let left = until.saturating_duration_since(Instant::now());
            if state.threads == 0 || left.is_zero() {
                break;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// Waits until every client thread has finished, then moves to
    /// `Stopped`.
    pub(crate) fn wait_stopped(&self) {
        let state = self.lock();
        let mut state = self
            .changed
            .wait_while(state, |state| state.threads > 0)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.phase = Phase::Stopped;
        self.changed.notify_all();
    }

    /// Clients connected when accepting stopped, and clients closed by
    /// the server; zeros while running.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let state = self.lock();
        (state.active_at_stop, state.cut)
    }

    /// The state, usable even if a thread panicked holding it: every update
    /// leaves it consistent.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for ClientThread {
    fn drop(&mut self) {
        let mut state = self.stop.lock();
        state.threads -= 1;
        if state.threads == 0 {
            self.stop.changed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn only_the_first_stop_decides_and_closing_ends_a_drain() {
        let stop = Stop::new();
        let until = Instant::now() + Duration::from_secs(60);
        assert!(stop.drain(until, 3));
        assert!(!stop.drain(Instant::now(), 5));
        assert_eq!(stop.phase(), Phase::Draining { until });
        assert_eq!(stop.close(1, || 2), Phase::Draining { until });
        assert_eq!(
            stop.close(0, || unreachable!("closes once")),
            Phase::Closing
        );
        assert_eq!(stop.counts(), (3, 2));
    }

    #[test]
    fn nothing_is_admitted_once_closing() {
        let stop = Stop::new();
        assert_eq!(stop.if_admitting(|| 1), Some(1));
        stop.drain(Instant::now() + Duration::from_secs(60), 0);
        assert_eq!(stop.if_admitting(|| 2), Some(2));
        stop.close(0, || 0);
        assert_eq!(stop.if_admitting(|| 3), None);
    }

    #[test]
    fn stopped_comes_only_after_the_last_client_thread() {
        let stop = Arc::new(Stop::new());
        let (entered, wait_entered) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let client = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let _thread = stop.client_thread();
                entered.send(()).unwrap();
                released.recv().unwrap();
            })
        };
        wait_entered.recv().unwrap();
        stop.close(1, || 1);
        let waiter = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || stop.wait_stopped())
        };
        assert_eq!(stop.phase(), Phase::Closing);
        release.send(()).unwrap();
        waiter.join().unwrap();
        client.join().unwrap();
        assert_eq!(stop.phase(), Phase::Stopped);
    }

    #[test]
    fn a_drain_ends_at_its_deadline_with_clients_left() {
        let stop = Arc::new(Stop::new());
        let _client = stop.client_thread();
        stop.drain(Instant::now() + Duration::from_millis(20), 1);
        stop.wait_drained();
        assert!(matches!(stop.phase(), Phase::Draining { until } if until <= Instant::now()));
    }

    #[test]
    fn a_pause_ends_when_the_server_stops_running() {
        let stop = Arc::new(Stop::new());
        let (paused, wait_paused) = std::sync::mpsc::channel();
        {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                stop.pause(Duration::from_secs(600));
                let _ = paused.send(());
            });
        }
        stop.close(0, || 0);
        wait_paused
            .recv_timeout(Duration::from_secs(10))
            .expect("the ten-minute pause ends when the server closes");
    }
}
