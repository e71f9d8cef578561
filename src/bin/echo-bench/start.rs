//! The start line that releases the workers together, and the ticket each
//! worker holds to it.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Where the workers wait for each other once their connections are set
/// up, so that every worker measures from the same instant and the duration
/// counts from when all connections are established.
#[derive(Debug)]
pub struct StartLine {
    /// Workers yet to arrive, and the start once none is left.
    state: Mutex<(usize, Option<Instant>)>,
    /// Notified when the last worker arrives.
    started: Condvar,
}

impl StartLine {
    /// A start line for `workers` workers.
    pub fn new(workers: usize) -> StartLine {
        StartLine {
            state: Mutex::new((workers, None)),
            started: Condvar::new(),
        }
    }

    /// Counts one worker in; the last one sets the start.
    fn arrive(&self) {
        let mut state = self.lock();
        state.0 -= 1;
        if state.0 == 0 {
            state.1 = Some(Instant::now());
            self.started.notify_all();
        }
    }

    /// The start, once every worker has arrived.
    fn wait(&self) -> Instant {
        let state = self
            .started
            .wait_while(self.lock(), |state| state.1.is_none())
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.1.expect("the wait ends only once the start is set")
    }

    /// The start, once every worker has arrived, waiting up to `timeout`.
    pub fn wait_for_start(&self, timeout: Duration) -> Option<Instant> {
        let state = self.lock();
        let (state, _) = self
            .started
            .wait_timeout_while(state, timeout, |state| state.1.is_none())
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.1
    }

    /// The state; a poisoned lock still holds a valid count.
    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, Option<Instant>)> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A worker's place at the [`StartLine`]. Dropping it unused counts the
/// worker in, so that a worker that fails or panics before the start, or
/// never starts, cannot keep the others waiting for ever.
#[derive(Debug)]
pub struct Ticket {
    /// The start line, until the worker arrives.
    start_line: Option<Arc<StartLine>>,
}

impl Ticket {
    /// A place at `start_line`.
    pub fn new(start_line: Arc<StartLine>) -> Ticket {
        Ticket {
            start_line: Some(start_line),
        }
    }

    /// Arrives at the start line and waits for the others; returns the
    /// common start.
    pub fn wait(mut self) -> Instant {
        let start_line = self
            .start_line
            .take()
            .expect("a ticket arrives only once, when consumed");
        start_line.arrive();
        start_line.wait()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(start_line) = self.start_line.take() {
            start_line.arrive();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn the_start_comes_when_every_worker_has_arrived_or_given_up() {
        let start_line = Arc::new(StartLine::new(2));
        let waiting = Ticket::new(Arc::clone(&start_line));
        let given_up = Ticket::new(Arc::clone(&start_line));
        assert_eq!(start_line.wait_for_start(Duration::ZERO), None);
        let waiter = thread::spawn(move || waiting.wait());
        drop(given_up);
        let start = waiter.join().expect("the waiting worker does not panic");
        assert_eq!(start_line.wait_for_start(Duration::ZERO), Some(start));
    }
}
