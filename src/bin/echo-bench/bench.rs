//! The run: workers started, connected, released together, measured,
//! joined, their tallies merged.

use std::io;
use std::net::SocketAddr;
use std::num::NonZero;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::progress::Progress;
use crate::stats::Tally;
use crate::worker::Worker;

/// How often the main thread refreshes the progress bar.
const REFRESH: Duration = Duration::from_millis(100);

/// Stack of a worker thread: its connections live on the heap, so the
/// default 2 MiB is plenty.
const WORKER_STACK: usize = 256 * 1024;

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The server's address.
    pub addr: SocketAddr,
    /// Concurrent clients.
    pub connections: usize,
    /// Message size in bytes.
    pub size: usize,
    /// How long to count messages, from when every connection is set up.
    pub duration: Duration,
    /// One message per client per interval; `None` sends the next message
    /// as soon as the echo of the previous one is back.
    pub interval: Option<Duration>,
}

/// Counters the workers publish for the progress bar.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections whose connect has completed or failed.
    pub settled: AtomicU64,
    /// Messages verified so far.
    pub messages: AtomicU64,
}

/// Runs `plan` on one worker per CPU and returns the merged tally.
///
/// # Errors
///
/// Fails if a worker thread cannot be started, fails, or panics.
pub fn run(plan: &Plan, progress: &Progress) -> io::Result<Tally> {
    let workers = thread::available_parallelism()
        .map_or(1, NonZero::get)
        .min(plan.connections);
    let plan = Arc::new(plan.clone());
    let counters = Arc::new(Counters::default());
    let start_line = Arc::new(StartLine::new(workers));
    // Each worker holds a sender that it never uses: when every worker has
    // ended, normally or not, the channel disconnects, which wakes the main
    // thread without it polling the threads.
    let (running, finished) = mpsc::channel::<()>();
    let mut threads = Vec::with_capacity(workers);
    // An error below leaves the workers already started waiting at the start
    // line for ever; the process ends with the error, and they with it.
    for index in 0..workers {
        let worker = Worker::new(index, workers, Arc::clone(&plan), Arc::clone(&counters))?;
        let ticket = Ticket::new(Arc::clone(&start_line));
        let running = running.clone();
        let thread = thread::Builder::new()
            .name(format!("echo-bench-{index}"))
            .stack_size(WORKER_STACK)
            .spawn(move || {
                let _running = running;
                worker.run(ticket)
            })?;
        threads.push(thread);
    }
    drop(running);
    follow(&start_line, &counters, &finished, &plan, progress);
    let mut total = Tally::new();
    for thread in threads {
        let tally = thread
            .join()
            .map_err(|_| io::Error::other("a worker thread panicked"))??;
        total.merge(&tally);
    }
    Ok(total)
}

/// Shows the progress of the run until every worker has ended.
fn follow(
    start_line: &StartLine,
    counters: &Counters,
    finished: &mpsc::Receiver<()>,
    plan: &Plan,
    progress: &Progress,
) {
    let start = loop {
        if let Some(start) = start_line.wait_for_start(REFRESH) {
            break start;
        }
        progress.connecting(counters.settled.load(Ordering::Relaxed), plan.connections);
    };
    progress.measuring(plan.duration);
    while let Err(mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(REFRESH) {
        progress.measured(start.elapsed(), counters.messages.load(Ordering::Relaxed));
    }
}

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
    fn new(workers: usize) -> StartLine {
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
    fn wait_for_start(&self, timeout: Duration) -> Option<Instant> {
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
    fn new(start_line: Arc<StartLine>) -> Ticket {
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
