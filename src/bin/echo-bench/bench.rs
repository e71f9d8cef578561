//! The run: workers started, connected, released together, measured,
//! joined, their tallies merged.

use std::io;
use std::num::NonZero;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use crate::plan::{Mode, Plan};
use crate::progress::Progress;
use crate::start::{StartLine, Ticket};
use crate::stats::{Counters, Tally};
use crate::worker::Worker;

/// How often the main thread refreshes the progress bar.
const REFRESH: Duration = Duration::from_millis(100);

/// Stack of a worker thread: its connections live on the heap, so the
/// default 2 MiB is plenty.
const WORKER_STACK: usize = 256 * 1024;

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

/// Shows the progress of the run until every worker has ended. A hold says
/// on standard error when every connection is held, for whoever wants to
/// look at the server then.
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
    if plan.mode == Mode::Hold {
        let held = counters.open.load(Ordering::Relaxed);
        let duration = humantime::format_duration(plan.duration);
        progress.say(&format!("holding {held} connections for {duration}"));
    }
    progress.measuring(plan.duration);
    while let Err(mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(REFRESH) {
        progress.measured(start.elapsed(), counters.messages.load(Ordering::Relaxed));
    }
}
