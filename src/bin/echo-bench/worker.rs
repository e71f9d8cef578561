//! One worker thread: a `mio` event loop over its share of the connections,
//! first connecting them, then running round trips, streams or a quiet hold
//! until the deadline. Over UDP each "connection" is a socket of its own
//! that keeps one datagram in flight: one not answered within
//! [`LOSS_TIMEOUT`] is counted lost, and the next one goes out.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use log::debug;
use mio::{Events, Interest, Poll, Token};

use crate::connection::{Connection, Echo, Flow};
use crate::plan::{Mode, Plan};
use crate::start::Ticket;
use crate::stats::{Counters, Tally};

/// Most connects under way at once, shared among the workers. Ten thousand
/// SYNs at once would overflow the server's accept queue (4096 on a default
/// Linux) and stall connects for a SYN retransmission, a second or more.
const CONNECT_WINDOW: usize = 2048;

/// How long a connect may take before it counts as failed, and how long
/// connects may keep finding the server's Unix accept queue full.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long to wait before trying again a Unix connect that found the
/// server's accept queue full. A Unix connect is queued at once or refused
/// (where a TCP SYN would wait to be retransmitted), so a generator that
/// connects faster than the server accepts must pause.
const FULL_QUEUE_PAUSE: Duration = Duration::from_millis(10);

/// How long an echo may take before it counts as an error and its
/// connection is closed, unless the run is shorter: a stalled server then
/// shows as errors rather than as a quiet run with nothing done.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a datagram may go unanswered before it counts as lost; checked
/// on every [`TICK`], so a loss is seen within a tick after.
pub const LOSS_TIMEOUT: Duration = Duration::from_secs(1);

/// Longer than any round trip of a hold's first message can take, each one
/// failing after [`REPLY_TIMEOUT`]: its deadline, to count them all.
const VERIFY_DEADLINE: Duration = Duration::from_secs(24 * 60 * 60);

/// How often timeouts are checked and progress is published. Checking on a
/// tick rather than keeping a timer per message costs one pass over the
/// connections per tick, whatever the message rate.
const TICK: Duration = Duration::from_millis(100);

/// Readiness events taken from the kernel per poll.
const EVENTS: usize = 1024;

/// The most of a reply read at once; over UDP, what every datagram is
/// received into: more than the largest message a datagram carries, so
/// that a longer reply is seen whole.
const SCRATCH: usize = 64 * 1024;

/// One worker: the connections it owns and what it has counted.
#[derive(Debug)]
pub struct Worker {
    /// This worker's number, from 0.
    index: usize,
    /// How many workers share the connections.
    workers: usize,
    /// What to run.
    plan: Arc<Plan>,
    /// Where progress is published for the progress bar.
    counters: Arc<Counters>,
    /// The event loop.
    poll: Poll,
    /// This worker's connections, indexed by their token; `None` once
    /// failed or closed. Slot `k` is connection `index + k * workers` of
    /// the run, which staggers periodic senders across the workers.
    connections: Vec<Option<Connection>>,
    /// Where messages are cut from, and when consecutive ones start.
    rng: fastrand::Rng,
    /// Where replies are read into before being compared.
    scratch: Vec<u8>,
    /// Idle connections by the time their next message is due, in periodic
    /// mode.
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Connects under way.
    connecting: usize,
    /// Connections established and not closed.
    live: usize,
    /// Messages sent whose echo is not back.
    in_flight: usize,
    /// Messages verified since progress was last published.
    unpublished: u64,
    /// Since when connects have found the server's Unix accept queue full;
    /// `None` while it takes them.
    queue_full_since: Option<Instant>,
    /// What this worker has counted.
    tally: Tally,
}

impl Worker {
    /// Worker `index` of `workers`, with an event loop of its own.
    ///
    /// # Errors
    ///
    /// Fails if the event loop cannot be created (out of descriptors).
    pub fn new(
        index: usize,
        workers: usize,
        plan: Arc<Plan>,
        counters: Arc<Counters>,
    ) -> io::Result<Worker> {
        let scratch = if plan.target.is_datagram() {
            vec![0; SCRATCH]
        } else {
            vec![0; plan.size.min(SCRATCH)]
        };
        let share = share(plan.connections, workers, index);
        Ok(Worker {
            index,
            workers,
            counters,
            poll: Poll::new()?,
            connections: std::iter::repeat_with(|| None).take(share).collect(),
            rng: fastrand::Rng::new(),
            scratch,
            timers: BinaryHeap::new(),
            connecting: 0,
            live: 0,
            in_flight: 0,
            unpublished: 0,
            queue_full_since: None,
            tally: Tally::new(),
            plan,
        })
    }

    /// Connects (in hold mode, with one round trip on each connection),
    /// waits at the start line for the other workers, runs the plan for its
    /// duration and returns what was counted.
    ///
    /// # Errors
    ///
    /// Fails if the event loop fails.
    pub fn run(mut self, ticket: Ticket) -> io::Result<Tally> {
        let mut events = Events::with_capacity(EVENTS);
        let began = Instant::now();
        self.connect_all(&mut events)?;
        self.tally.connecting = began.elapsed();
        if self.plan.mode == Mode::Hold {
            self.verify_all(&mut events)?;
        }
        let start = ticket.wait();
        self.measure(&mut events, start)?;
        Ok(self.tally)
    }

    /// Opens every connection of this worker, its share of
    /// [`CONNECT_WINDOW`] at a time, and waits until each is established or
    /// has failed; pauses the opening while the server's Unix accept queue
    /// is full.
    fn connect_all(&mut self, events: &mut Events) -> io::Result<()> {
        let window = (CONNECT_WINDOW / self.workers).max(1);
        let mut next = 0;
        let mut next_tick = Instant::now() + TICK;
        while next < self.connections.len() || self.connecting > 0 {
            while next < self.connections.len() && self.connecting < window && self.open(next) {
                next += 1;
            }
            let queue_full = next < self.connections.len() && self.connecting < window;
            if self.connecting == 0 && !queue_full {
                continue;
            }
            let wake = if queue_full {
                next_tick.min(Instant::now() + FULL_QUEUE_PAUSE)
            } else {
                next_tick
            };
            self.wait(events, wake)?;
            for event in events.iter() {
                self.finish_connect(event.token().0);
            }
            let now = Instant::now();
            if now >= next_tick {
                self.expire_connects(now);
                next_tick = now + TICK;
            }
        }
        Ok(())
    }

    /// Starts connecting slot `slot`; `false` if the server's Unix accept
    /// queue is full, and the slot is to be tried again after a pause. Once
    /// the queue has stayed full for [`CONNECT_TIMEOUT`], every connect that
    /// finds it full fails, until one gets through.
    fn open(&mut self, slot: usize) -> bool {
        let registry = self.poll.registry();
        let plan = &self.plan;
        let opened = Connection::open(
            &plan.target,
            plan.tls.as_ref(),
            plan.size,
            plan.mode,
            &mut self.rng,
        )
        .and_then(|mut connection| {
            registry.register(
                connection.socket(),
                Token(slot),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(connection)
        });
        match opened {
            Ok(connection) => {
                self.queue_full_since = None;
                self.connections[slot] = Some(connection);
                self.connecting += 1;
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                let since = *self.queue_full_since.get_or_insert_with(Instant::now);
                if since.elapsed() < CONNECT_TIMEOUT {
                    return false;
                }
                let error = timed_out(format!(
                    "connect timed out after {CONNECT_TIMEOUT:?}: the accept queue stayed full"
                ));
                self.count_connect_error(&error);
            }
            Err(error) => self.count_connect_error(&error),
        }
        true
    }

    /// Moves slot `slot` on after an event during the connect phase; over
    /// TLS it is established, and counted opened, once its handshake is
    /// done.
    fn finish_connect(&mut self, slot: usize) {
        let Some(connection) = self.connections[slot].as_mut() else {
            return;
        };
        if !connection.is_connecting() {
            return;
        }
        match connection.finish_connect() {
            Ok(true) => {
                self.tally.connect(connection.connect_time());
                if let Some(time) = connection.handshake_time() {
                    self.tally.handshake(time);
                }
                self.connecting -= 1;
                self.live += 1;
                self.tally.opened += 1;
                self.counters.settled.fetch_add(1, Ordering::Relaxed);
                self.counters.open.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => {}
            Err(error) => {
                self.connections[slot] = None;
                self.connecting -= 1;
                self.count_connect_error(&error);
            }
        }
    }

    /// Counts a connection that could not be established.
    fn count_connect_error(&mut self, error: &io::Error) {
        debug!("cannot connect to {}: {error}", self.plan.target);
        self.tally.connect_error(error);
        self.counters.settled.fetch_add(1, Ordering::Relaxed);
    }

    /// Makes one round trip on every connection and waits until each echo
    /// is back or has failed, so that the hold starts with every
    /// connection known to be served; the round trips are counted.
    fn verify_all(&mut self, events: &mut Events) -> io::Result<()> {
        let deadline = Instant::now() + VERIFY_DEADLINE;
        for slot in 0..self.connections.len() {
            self.send(slot);
        }
        let mut next_tick = Instant::now() + TICK;
        while self.in_flight > 0 {
            self.wait(events, next_tick)?;
            for event in events.iter() {
                self.drive(event.token().0, deadline);
            }
            let now = Instant::now();
            if now >= next_tick {
                self.expire_replies(now, deadline);
                next_tick = now + TICK;
            }
        }
        Ok(())
    }

    /// Runs round trips from `start` until the plan's duration has passed,
    /// then waits for the echoes still under way (within the reply timeout)
    /// so that every message sent is either verified or counted as an error.
    /// Only round trips completed before the deadline are counted as
    /// messages. Streams likewise stop writing at the deadline and run
    /// until their echo is all back; a hold just waits for the deadline.
    fn measure(&mut self, events: &mut Events, start: Instant) -> io::Result<()> {
        let deadline = start + self.plan.duration;
        self.begin(start, deadline);
        let mut next_tick = start + TICK;
        let mut winding_down = false;
        let end = loop {
            let now = Instant::now();
            let counting = now < deadline;
            if !counting && !winding_down {
                winding_down = true;
                self.stop_streams(deadline);
            }
            if self.live == 0 || (!counting && self.in_flight == 0) {
                break now.min(deadline);
            }
            if now >= next_tick {
                self.expire_replies(now, deadline);
                self.publish();
                next_tick = now + TICK;
            }
            let mut wake = next_tick;
            if counting {
                self.send_due(now);
                wake = wake.min(deadline);
                if let Some(Reverse((due, _))) = self.timers.peek() {
                    wake = wake.min(*due);
                }
            }
            self.wait(events, wake)?;
            for event in events.iter() {
                self.drive(event.token().0, deadline);
            }
        };
        self.publish();
        self.tally.measured = end.saturating_duration_since(start);
        Ok(())
    }

    /// Sends every connection's first message: at once in closed-loop mode;
    /// in periodic mode spread over the first interval by the connection's
    /// number in the run, so that the clients do not all send together.
    /// Streams start at once; a hold sends nothing.
    fn begin(&mut self, start: Instant, deadline: Instant) {
        for slot in 0..self.connections.len() {
            let Some(connection) = self.connections[slot].as_mut() else {
                continue;
            };
            match (self.plan.mode, self.plan.interval) {
                (Mode::Hold, _) => {}
                (Mode::Stream, _) => {
                    connection.start_stream();
                    self.in_flight += 1;
                    self.drive(slot, deadline);
                }
                (Mode::RoundTrips, None) => self.send(slot),
                (Mode::RoundTrips, Some(interval)) => {
                    let number = self.index + slot * self.workers;
                    let share = number as f64 / self.plan.connections as f64;
                    connection.due = start + interval.mul_f64(share);
                    self.timers.push(Reverse((connection.due, slot)));
                }
            }
        }
    }

    /// Sends the messages of every connection due by `now`.
    fn send_due(&mut self, now: Instant) {
        while let Some(&Reverse((due, slot))) = self.timers.peek() {
            if due > now {
                break;
            }
            self.timers.pop();
            self.send(slot);
        }
    }

    /// Starts the next message of slot `slot`.
    fn send(&mut self, slot: usize) {
        let Some(connection) = self.connections[slot].as_mut() else {
            return;
        };
        self.in_flight += 1;
        if let Some(interval) = self.plan.interval {
            connection.due = next_due(connection.due, interval, Instant::now());
        }
        if let Err(error) = connection.send(&mut self.rng) {
            self.fail(slot, &error);
        }
    }

    /// Moves slot `slot` on after a readiness event: writes and reads what
    /// the socket allows and, once the echo is back before the deadline,
    /// starts the next message, at once in closed-loop mode, when it is due
    /// in periodic mode. A held connection is checked to be still quiet.
    fn drive(&mut self, slot: usize, deadline: Instant) {
        let Some(connection) = self.connections[slot].as_mut() else {
            return;
        };
        match self.plan.mode {
            Mode::Stream => return self.drive_stream(slot, deadline),
            Mode::Hold if !connection.is_in_flight() => return self.check_quiet(slot),
            Mode::Hold | Mode::RoundTrips => {}
        }
        let echo = match connection.pump(&mut self.scratch) {
            Ok(Some(echo)) => echo,
            Ok(None) => return,
            Err(error) => return self.fail(slot, &error),
        };
        self.in_flight -= 1;
        self.count(&echo, deadline);
        self.carry_on(slot, echo.at, deadline);
    }

    /// Moves slot `slot`'s stream on after a readiness event, writing only
    /// before the deadline; counts each write whose echo is back intact
    /// before it as a message. A stream whose echo differs is out of step
    /// for good: it is counted a mismatch and closed.
    fn drive_stream(&mut self, slot: usize, deadline: Instant) {
        let Some(connection) = self.connections[slot].as_mut() else {
            return;
        };
        if !connection.is_in_flight() {
            return;
        }
        let writing = Instant::now() < deadline;
        let (tally, unpublished) = (&mut self.tally, &mut self.unpublished);
        let flow = connection.pump_stream(&mut self.scratch, writing, |echo, size| {
            if echo.at < deadline {
                tally.record(size, echo.latency);
                *unpublished += 1;
            }
        });
        match flow {
            Ok(Flow::Going) => {}
            // Registering anew reports the socket's readiness as an event
            // of the next poll, after the other connections' events.
            Ok(Flow::Yielded) => {
                let interest = Interest::READABLE | Interest::WRITABLE;
                let registry = self.poll.registry();
                if let Err(error) = registry.reregister(connection.socket(), Token(slot), interest)
                {
                    self.fail(slot, &error);
                }
            }
            Ok(Flow::Drained) => self.in_flight -= 1,
            Ok(Flow::Differs) => {
                debug!("the echo from {} differs from the stream", self.plan.target);
                self.close(slot);
                self.tally.mismatches += 1;
            }
            Err(error) => self.fail(slot, &error),
        }
    }

    /// Stops every stream's writing once the deadline has passed: each
    /// then waits for the rest of its echo. A stream with nothing left to
    /// come back gets no event to say so, hence this pass.
    fn stop_streams(&mut self, deadline: Instant) {
        if self.plan.mode == Mode::Stream {
            for slot in 0..self.connections.len() {
                self.drive_stream(slot, deadline);
            }
        }
    }

    /// Closes held slot `slot` with an error if the server has closed it
    /// or sent anything since its one echo.
    fn check_quiet(&mut self, slot: usize) {
        let Some(connection) = self.connections[slot].as_mut() else {
            return;
        };
        if let Err(error) = connection.check_quiet(&mut self.scratch) {
            self.fail(slot, &error);
        }
    }

    /// Starts slot `slot`'s next message once its last one ended at `at`,
    /// echoed or lost, unless the deadline has passed: at once in
    /// closed-loop mode, when it is due in periodic mode. A held
    /// connection's one message has no next: what came after its echo, a
    /// close say, came with the same readiness event, and is checked now.
    fn carry_on(&mut self, slot: usize, at: Instant, deadline: Instant) {
        if self.plan.mode == Mode::Hold {
            return self.check_quiet(slot);
        }
        let Some(connection) = &self.connections[slot] else {
            return;
        };
        if at >= deadline {
            return;
        }
        if self.plan.interval.is_some() && connection.due > at {
            self.timers.push(Reverse((connection.due, slot)));
        } else {
            self.send(slot);
        }
    }

    /// Counts a round trip: a message if intact and back before the
    /// deadline, a mismatch if not intact whenever it came back.
    fn count(&mut self, echo: &Echo, deadline: Instant) {
        if !echo.intact {
            self.tally.mismatches += 1;
        } else if echo.at < deadline {
            self.tally.record(self.plan.size, echo.latency);
            self.unpublished += 1;
        }
    }

    /// Closes slot `slot` after an error on its established connection.
    fn fail(&mut self, slot: usize, error: &io::Error) {
        if self.close(slot) {
            debug!("connection to {} closed: {error}", self.plan.target);
            self.tally.error(error);
        }
    }

    /// Closes slot `slot`'s established connection; `false` if it was
    /// closed already.
    fn close(&mut self, slot: usize) -> bool {
        let Some(connection) = self.connections[slot].take() else {
            return false;
        };
        if connection.is_in_flight() {
            self.in_flight -= 1;
        }
        self.live -= 1;
        self.counters.open.fetch_sub(1, Ordering::Relaxed);
        true
    }

    /// Fails every connect, TLS handshake included, that has taken too
    /// long.
    fn expire_connects(&mut self, now: Instant) {
        for slot in 0..self.connections.len() {
            let Some(connection) = &self.connections[slot] else {
                continue;
            };
            if connection.is_connecting() && connection.is_overdue(CONNECT_TIMEOUT, now) {
                let error = timed_out(if connection.is_handshaking() {
                    format!(
                        "the TLS handshake timed out, {CONNECT_TIMEOUT:?} after the connect began"
                    )
                } else {
                    format!("connect timed out after {CONNECT_TIMEOUT:?}")
                });
                self.connections[slot] = None;
                self.connecting -= 1;
                self.count_connect_error(&error);
            }
        }
    }

    /// Fails every connection whose echo has taken too long; over UDP,
    /// counts every datagram unanswered for [`LOSS_TIMEOUT`] as lost and
    /// carries on with the next.
    fn expire_replies(&mut self, now: Instant, deadline: Instant) {
        let datagrams = self.plan.target.is_datagram();
        let timeout = if datagrams {
            LOSS_TIMEOUT
        } else {
            REPLY_TIMEOUT.min(self.plan.duration)
        };
        for slot in 0..self.connections.len() {
            let Some(connection) = self.connections[slot].as_mut() else {
                continue;
            };
            if !connection.is_in_flight() || !connection.is_overdue(timeout, now) {
                continue;
            }
            if datagrams {
                connection.give_up();
                self.in_flight -= 1;
                self.tally.lost += 1;
                self.carry_on(slot, now, deadline);
            } else {
                let error = timed_out(format!("no complete echo within {timeout:?}"));
                self.fail(slot, &error);
            }
        }
    }

    /// Adds the messages verified since last time to the progress counters.
    fn publish(&mut self) {
        self.counters
            .messages
            .fetch_add(self.unpublished, Ordering::Relaxed);
        self.unpublished = 0;
    }

    /// Waits for readiness events until `wake` at the latest.
    fn wait(&mut self, events: &mut Events, wake: Instant) -> io::Result<()> {
        let timeout = wake.saturating_duration_since(Instant::now());
        match self.poll.poll(events, Some(timeout)) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {
                events.clear();
                Ok(())
            }
            other => other,
        }
    }
}

/// How many of `connections` worker `index` of `workers` owns: an even
/// share, the first workers taking one more when they do not divide evenly.
fn share(connections: usize, workers: usize, index: usize) -> usize {
    (connections + workers - 1 - index) / workers
}

/// When the message after one due at `due` is due, sent at `now`, one
/// message per `interval`. Behind schedule, it goes as soon as this one's
/// echo is back, without a burst to catch up.
fn next_due(due: Instant, interval: Duration, now: Instant) -> Instant {
    (due + interval).max(now)
}

/// A timeout error saying what timed out.
fn timed_out(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loopback;
    use crate::start::StartLine;
    use crate::target::Target;
    use std::net::SocketAddr;

    /// Message size of the runs.
    const SIZE: usize = 64;

    /// A closed-loop run of `connections` TCP clients against `addr` for
    /// `duration`.
    fn plan(addr: SocketAddr, connections: usize, duration: Duration) -> Plan {
        plan_to(Target::Tcp(addr), connections, duration)
    }

    /// A closed-loop run of `connections` clients against `target` for
    /// `duration`.
    fn plan_to(target: Target, connections: usize, duration: Duration) -> Plan {
        Plan {
            target,
            tls: None,
            connections,
            size: SIZE,
            duration,
            interval: None,
            mode: Mode::RoundTrips,
        }
    }

    /// A worker alone with all of `plan`'s connections.
    fn worker(plan: Plan) -> Worker {
        let counters = Arc::new(Counters::default());
        Worker::new(0, 1, Arc::new(plan), counters).expect("an event loop can be made")
    }

    /// Runs `plan` on one worker; returns its tally and what it published.
    fn run(plan: Plan) -> (Tally, Arc<Counters>) {
        let worker = worker(plan);
        let counters = Arc::clone(&worker.counters);
        let ticket = Ticket::new(Arc::new(StartLine::new(1)));
        let tally = worker.run(ticket).expect("the event loop works");
        (tally, counters)
    }

    #[test]
    fn against_an_echo_server_every_connection_opens_and_messages_come_back_without_errors() {
        let addr = loopback::serve(4, loopback::echo);
        let (tally, counters) = run(plan(addr, 4, Duration::from_millis(300)));
        assert_eq!(tally.opened, 4);
        assert_eq!(
            (tally.connect_errors, tally.errors, tally.mismatches),
            (0, 0, 0),
            "{:?}",
            tally.first_error
        );
        assert!(tally.messages > 0);
        assert_eq!(tally.bytes, tally.messages * SIZE as u64);
        assert_eq!(counters.messages.load(Ordering::Relaxed), tally.messages);
        assert_eq!(counters.settled.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn against_a_corrupting_server_replies_are_mismatches_not_messages() {
        let addr = loopback::serve(2, loopback::corrupt);
        let (tally, _) = run(plan(addr, 2, Duration::from_millis(300)));
        assert_eq!(tally.opened, 2);
        assert!(tally.mismatches > 0);
        assert_eq!((tally.messages, tally.errors), (0, 0));
    }

    #[test]
    fn against_a_closed_port_every_connection_is_a_connect_error() {
        let (tally, counters) = run(plan(loopback::closed_port(), 3, Duration::from_secs(1)));
        assert_eq!((tally.opened, tally.connect_errors), (0, 3));
        assert_eq!(
            tally.first_connect_error.as_deref(),
            Some("connection refused")
        );
        assert_eq!(counters.settled.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_server_that_never_replies_costs_each_connection_a_reply_timeout() {
        let duration = Duration::from_millis(200);
        let addr = loopback::serve(2, loopback::silent);
        let (tally, _) = run(plan(addr, 2, duration));
        assert_eq!((tally.opened, tally.messages, tally.errors), (2, 0, 2));
        let reason = tally.first_error.as_deref().unwrap_or_default();
        // The reply timeout is cut to the run's duration.
        assert!(
            reason.contains(&format!("no complete echo within {duration:?}")),
            "{reason}"
        );
    }

    #[test]
    fn a_connect_that_takes_too_long_is_a_connect_error() {
        let addr = loopback::serve(1, loopback::echo);
        let mut worker = worker(plan(addr, 1, Duration::from_secs(1)));
        worker.open(0);
        assert_eq!(worker.connecting, 1);
        // Whether or not the kernel has finished it, the connect is under
        // way until an event says otherwise, and none is taken here.
        worker.expire_connects(Instant::now() + CONNECT_TIMEOUT);
        assert!(worker.connections[0].is_none());
        assert_eq!((worker.connecting, worker.tally.connect_errors), (0, 1));
        let reason = worker.tally.first_connect_error.as_deref();
        assert!(
            reason.is_some_and(|reason| reason.contains("connect timed out")),
            "{reason:?}"
        );
        assert_eq!(worker.counters.settled.load(Ordering::Relaxed), 1);
    }

    /// Asserts that `tally` has no connect error, error, mismatch or loss.
    fn assert_clean(tally: &Tally) {
        assert_eq!(
            (
                tally.connect_errors,
                tally.errors,
                tally.mismatches,
                tally.lost
            ),
            (0, 0, 0, 0),
            "{:?} {:?}",
            tally.first_connect_error,
            tally.first_error
        );
    }

    #[test]
    fn over_a_unix_socket_every_connection_opens_and_messages_come_back() {
        let target = loopback::serve_unix(3, loopback::echo);
        let (tally, _) = run(plan_to(target, 3, Duration::from_millis(300)));
        assert_eq!(tally.opened, 3);
        assert_clean(&tally);
        assert!(tally.messages > 0);
    }

    #[test]
    fn over_udp_every_socket_opens_and_datagrams_come_back_without_loss() {
        let addr = loopback::serve_udp(loopback::echo_datagram);
        let (tally, _) = run(plan_to(Target::Udp(addr), 2, Duration::from_millis(300)));
        assert_eq!(tally.opened, 2);
        assert_clean(&tally);
        assert!(tally.messages > 0);
        assert_eq!(tally.bytes, tally.messages * SIZE as u64);
    }

    #[test]
    fn a_udp_server_that_answers_every_other_datagram_loses_the_rest() {
        let mut received = 0_u64;
        let addr = loopback::serve_udp(move |socket, datagram, from| {
            received += 1;
            match received % 2 {
                0 => Ok(()),
                _ => loopback::echo_datagram(socket, datagram, from),
            }
        });
        let (tally, _) = run(plan_to(Target::Udp(addr), 1, Duration::from_millis(300)));
        // The first datagram is answered, the second lost after a second,
        // which ends the run.
        assert_eq!((tally.messages, tally.lost), (1, 1));
        assert_eq!((tally.errors, tally.mismatches), (0, 0));
    }

    #[test]
    fn a_datagram_unanswered_for_the_loss_timeout_is_lost_and_the_next_goes_out() {
        let addr = loopback::serve_udp(|_, _, _| Ok(()));
        let mut worker = worker(plan_to(Target::Udp(addr), 1, Duration::from_secs(10)));
        worker
            .connect_all(&mut Events::with_capacity(8))
            .expect("the event loop works");
        assert_eq!(worker.live, 1);
        let deadline = Instant::now() + Duration::from_secs(10);
        let before = Instant::now();
        worker.send(0);
        let after = Instant::now();
        worker.expire_replies(before + LOSS_TIMEOUT - Duration::from_millis(1), deadline);
        assert_eq!((worker.tally.lost, worker.in_flight), (0, 1));
        worker.expire_replies(after + LOSS_TIMEOUT, deadline);
        assert_eq!(
            (worker.tally.lost, worker.in_flight),
            (1, 1),
            "the next is sent"
        );
        // Past the deadline, a loss sends nothing more.
        worker.expire_replies(deadline + LOSS_TIMEOUT, deadline);
        assert_eq!((worker.tally.lost, worker.in_flight), (2, 0));
        assert_eq!((worker.live, worker.tally.errors), (1, 0));
    }

    #[test]
    fn a_full_unix_accept_queue_holds_a_connect_back_until_the_server_accepts() {
        let (listener, target) = loopback::unix_listener();
        // Linux counts the queue full only past the backlog: 0 holds one.
        socket2::SockRef::from(&listener)
            .listen(0)
            .expect("a listener's backlog can be changed");
        // On Linux the read timeout bounds accept() too.
        socket2::SockRef::from(&listener)
            .set_read_timeout(Some(loopback::TIMEOUT))
            .expect("a listener takes a timeout");
        let mut worker = worker(plan_to(target, 3, Duration::from_secs(1)));
        assert!(worker.open(0));
        assert!(!worker.open(1), "the queue holds one client");
        assert_eq!((worker.connecting, worker.tally.connect_errors), (1, 0));
        listener.accept().expect("the first client is queued");
        assert!(worker.open(1));
        assert_eq!(worker.connecting, 2);
        // Full for the connect timeout: the connect fails.
        worker.queue_full_since = Instant::now().checked_sub(CONNECT_TIMEOUT);
        assert!(worker.open(2));
        assert_eq!((worker.connecting, worker.tally.connect_errors), (2, 1));
        let reason = worker.tally.first_connect_error.as_deref();
        assert!(
            reason.is_some_and(|reason| reason.contains("accept queue stayed full")),
            "{reason:?}"
        );
    }

    #[test]
    fn periodic_clients_send_about_one_message_per_interval() {
        let connections = 2;
        let interval = Duration::from_millis(50);
        let duration = Duration::from_millis(500);
        let addr = loopback::serve(connections, loopback::echo);
        let (tally, _) = run(Plan {
            interval: Some(interval),
            ..plan(addr, connections, duration)
        });
        let per_connection = (duration.as_millis() / interval.as_millis()) as u64;
        let messages = tally.messages;
        // A client never sends twice within an interval, late or not, so one
        // more than the intervals in the run is a bound whatever the
        // machine's speed; as fast as the echo returns, loopback would give
        // thousands. Below, a quarter leaves room for a busy machine, each
        // late message delaying the ones after it.
        assert!(
            messages <= connections as u64 * (per_connection + 1),
            "{messages} messages"
        );
        assert!(
            messages >= connections as u64 * per_connection / 4,
            "{messages} messages"
        );
        assert_eq!(tally.errors, 0, "{:?}", tally.first_error);
    }

    #[test]
    fn the_connections_are_shared_out_whole_and_evenly() {
        for connections in 1..40 {
            for workers in 1..=connections.min(8) {
                let shares: Vec<usize> = (0..workers)
                    .map(|index| share(connections, workers, index))
                    .collect();
                let even = connections / workers;
                assert_eq!(shares.iter().sum::<usize>(), connections, "{shares:?}");
                assert!(
                    shares
                        .iter()
                        .all(|&share| share == even || share == even + 1),
                    "{shares:?}"
                );
            }
        }
    }

    #[test]
    fn behind_schedule_the_next_message_is_due_at_once_without_a_burst() {
        let interval = Duration::from_millis(100);
        let due = Instant::now();
        let on_time = due + Duration::from_millis(10);
        assert_eq!(next_due(due, interval, on_time), due + interval);
        let late = due + 3 * interval;
        assert_eq!(next_due(due, interval, late), late);
    }

    /// Runs over TLS against test servers.
    #[cfg(feature = "tls")]
    mod tls {
        use super::*;
        use crate::loopback::tls::Identity;
        use crate::tls::TlsArgs;

        /// `plan` over TLS, trusting `ca`'s certificate.
        fn over_tls(plan: Plan, ca: &Identity) -> Plan {
            let args = TlsArgs {
                tls: true,
                ca: Some(ca.pem.path.clone()),
                ..TlsArgs::default()
            };
            let tls = args.client("localhost").expect("the flags are valid");
            Plan { tls, ..plan }
        }

        /// Runs `connections` clients over TLS to `target`, which
        /// presents `server`'s certificate, trusting it; asserts that each
        /// opened once its handshake was done, with its handshake time
        /// recorded, and that messages came back.
        fn assert_runs_over_tls(target: Target, connections: usize, server: &Identity) {
            let plan = over_tls(
                plan_to(target, connections, Duration::from_millis(300)),
                server,
            );
            let (tally, counters) = run(plan);
            let connections = connections as u64;
            assert_eq!(tally.opened, connections);
            assert_clean(&tally);
            assert!(tally.messages > 0);
            assert_eq!(tally.bytes, tally.messages * SIZE as u64);
            assert_eq!(tally.handshakes.len(), connections, "one time a handshake");
            assert!(tally.handshakes.min() > 0);
            assert_eq!(counters.settled.load(Ordering::Relaxed), connections);
        }

        #[test]
        fn each_connection_opens_once_its_handshake_is_done_and_messages_come_back() {
            let server = Identity::new("echo-bench test server");
            let addr = loopback::serve(3, loopback::tls::echo(server.server_config()));
            assert_runs_over_tls(Target::Tcp(addr), 3, &server);
        }

        #[test]
        fn over_a_unix_socket_the_handshake_and_the_messages_go_through() {
            let server = Identity::new("echo-bench test server");
            let target = loopback::serve_unix(2, loopback::tls::echo(server.server_config()));
            assert_runs_over_tls(target, 2, &server);
        }

        #[test]
        fn a_failed_handshake_is_a_connect_error_with_its_reason() {
            let server = Identity::new("echo-bench test server");
            let other = Identity::new("echo-bench other CA");
            let addr = loopback::serve(2, loopback::tls::echo(server.server_config()));
            let plan = over_tls(plan(addr, 2, Duration::from_secs(1)), &other);
            let (tally, counters) = run(plan);
            assert_eq!((tally.opened, tally.connect_errors), (0, 2));
            assert_eq!(
                tally.first_connect_error.as_deref(),
                Some("invalid peer certificate: UnknownIssuer")
            );
            assert!(tally.handshakes.is_empty());
            assert_eq!(counters.settled.load(Ordering::Relaxed), 2);
        }

        #[test]
        fn a_handshake_the_server_never_answers_times_out_as_a_connect_error() {
            let server = Identity::new("echo-bench test server");
            let addr = loopback::serve(1, loopback::silent);
            let mut worker = worker(over_tls(plan(addr, 1, Duration::from_secs(1)), &server));
            let mut events = Events::with_capacity(8);
            worker.open(0);
            let deadline = Instant::now() + loopback::TIMEOUT;
            while !worker.connections[0]
                .as_ref()
                .is_some_and(Connection::is_handshaking)
            {
                assert!(Instant::now() < deadline, "the connect never completed");
                worker
                    .wait(&mut events, deadline)
                    .expect("the event loop works");
                for event in events.iter() {
                    worker.finish_connect(event.token().0);
                }
            }
            worker.expire_connects(Instant::now() + CONNECT_TIMEOUT);
            assert_eq!((worker.connecting, worker.tally.connect_errors), (0, 1));
            let reason = worker.tally.first_connect_error.as_deref();
            assert!(
                reason.is_some_and(|reason| reason.starts_with("the TLS handshake timed out")),
                "{reason:?}"
            );
        }
    }
}
