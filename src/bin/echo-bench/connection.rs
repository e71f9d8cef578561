//! One client connection: a non-blocking connect (and TLS handshake), then
//! round trips of one random message each, written and read back as the
//! socket allows, or one endless stream. Over TCP and Unix sockets, TLS or
//! not, a message is a run of bytes that may go and come back in pieces;
//! over UDP it is one datagram, numbered as [`datagram`] says, and the echo
//! is the datagram that answers it.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::time::{Duration, Instant};

use log::debug;

use crate::datagram::{self, Reply};
use crate::plan::Mode;
use crate::socket::Socket;
use crate::target::Target;
use crate::tls::Tls;

/// How many distinct starting points a connection's messages are cut from:
/// consecutive messages never start at the same one, so a server that
/// replays an earlier reply is caught.
const ROTATION: usize = 1024;

/// After how many bytes a stream repeats itself: a prime, so that a server
/// that drops or repeats part of a stream cannot do it in a whole number of
/// periods with any buffer size of its own, and the shift is caught.
const STREAM_PERIOD: usize = 65_521;

/// Most bytes a stream moves, written and read, before it lets the
/// worker's other connections have their turn: against a server that takes
/// everything as fast as it comes, the socket might never block.
const STREAM_TURN: usize = 1024 * 1024;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The non-blocking connect has not completed yet.
    Connecting,
    /// Connected, the TLS handshake under way; without TLS, a step passed
    /// at once.
    Handshaking,
    /// Connected, no message outstanding: the last one's echo is back, or
    /// its datagram was given up as lost.
    Idle,
    /// A message is being written and its echo read.
    InFlight,
}

/// A round trip that has come back whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Echo {
    /// From the first byte written to the last byte read.
    pub latency: Duration,
    /// When the last byte was read.
    pub at: Instant,
    /// Whether the reply was exactly what was sent.
    pub intact: bool,
}

/// Where a stream stands after [`Connection::pump_stream`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Still writing, or echo still to come back; the socket would block.
    Going,
    /// Still going, and the socket would not block yet: the stream has had
    /// its turn, and readiness events will not say that it can go on.
    Yielded,
    /// No longer writing, and every byte written has come back intact.
    Drained,
    /// The echo differs from what was written: the stream is out of step
    /// for good, and is to be closed.
    Differs,
}

/// A connection to the server and its current message.
#[derive(Debug)]
pub struct Connection {
    /// The socket, registered with the worker's event loop.
    socket: Socket,
    /// What the connection is doing.
    phase: Phase,
    /// Random bytes of this connection; each message is the `size` bytes
    /// from `offset`. Cutting messages from one buffer costs nothing per
    /// message, so the generator's CPU goes into I/O. A datagram's number
    /// is written over its first bytes when it is sent. A stream is the
    /// first [`STREAM_PERIOD`] bytes over and over, each write up to `size`
    /// of them from where the stream is.
    pattern: Vec<u8>,
    /// Message size.
    size: usize,
    /// Where the current message starts in `pattern`.
    offset: usize,
    /// Bytes of the current message written; of a stream, all written.
    written: usize,
    /// Bytes of its echo read; of a stream, all read.
    read: usize,
    /// Of a stream, each write whose echo is not all back: where it ends in
    /// the stream, its size, and when it was written. Its echo's latency is
    /// from then to when its last byte is read.
    pieces: VecDeque<(usize, usize, Instant)>,
    /// Whether the echo read so far differs from what was sent.
    differs: bool,
    /// Datagrams sent so far, the current one included: the next one's
    /// number. Unused over a stream.
    numbered: u64,
    /// When the connect began, then when the current message's first byte
    /// was written: what the timeouts count from.
    since: Instant,
    /// When the connect completed: where the TLS handshake time counts
    /// from, since the handshake's first message goes then.
    connected: Instant,
    /// How long the connect took, once it has completed.
    connect_time: Duration,
    /// How long the TLS handshake took, once done; `None` without TLS.
    handshake: Option<Duration>,
    /// When the next message is due, in periodic mode.
    pub due: Instant,
}

impl Connection {
    /// Starts a non-blocking connect to `target`, to speak `tls` over it if
    /// given; the caller registers the socket and calls
    /// [`Connection::finish_connect`] on every event until it is
    /// established.
    ///
    /// # Errors
    ///
    /// Fails as [`Socket::connect`] does.
    pub fn open(
        target: &Target,
        tls: Option<&Tls>,
        size: usize,
        mode: Mode,
        rng: &mut fastrand::Rng,
    ) -> io::Result<Connection> {
        let socket = Socket::connect(target, tls)?;
        let starts = match mode {
            Mode::Stream => STREAM_PERIOD,
            Mode::RoundTrips | Mode::Hold => ROTATION,
        };
        let mut pattern = vec![0; size + starts];
        rng.fill(&mut pattern[..starts]);
        match mode {
            // Whatever byte of the period a write starts at, it reads on as
            // the stream does: the period over again.
            Mode::Stream => {
                for at in starts..pattern.len() {
                    pattern[at] = pattern[at - starts];
                }
            }
            Mode::RoundTrips | Mode::Hold => rng.fill(&mut pattern[starts..]),
        }
        let now = Instant::now();
        Ok(Connection {
            socket,
            phase: Phase::Connecting,
            pattern,
            size,
            offset: 0,
            written: 0,
            read: 0,
            pieces: VecDeque::new(),
            differs: false,
            numbered: 0,
            since: now,
            connected: now,
            connect_time: Duration::ZERO,
            handshake: None,
            due: now,
        })
    }

    /// The socket, to register with or deregister from the event loop.
    pub fn socket(&mut self) -> &mut Socket {
        &mut self.socket
    }

    /// Whether the connection is not established yet: its connect, or its
    /// TLS handshake, is under way.
    pub fn is_connecting(&self) -> bool {
        matches!(self.phase, Phase::Connecting | Phase::Handshaking)
    }

    /// Whether the connect is complete and the TLS handshake under way.
    pub fn is_handshaking(&self) -> bool {
        self.phase == Phase::Handshaking
    }

    /// How long the TLS handshake took, from the connect's completion to
    /// the handshake's end; `None` without TLS or until it is done.
    pub fn handshake_time(&self) -> Option<Duration> {
        self.handshake
    }

    /// How long the connect took, from its start to its completion (the
    /// TLS handshake apart); zero until it has completed.
    pub fn connect_time(&self) -> Duration {
        self.connect_time
    }

    /// Whether a message is outstanding.
    pub fn is_in_flight(&self) -> bool {
        self.phase == Phase::InFlight
    }

    /// Whether the connect (with its TLS handshake) or the current round
    /// trip has been going on for `timeout` at `now`.
    pub fn is_overdue(&self, timeout: Duration, now: Instant) -> bool {
        self.phase != Phase::Idle && now.saturating_duration_since(self.since) >= timeout
    }

    /// Moves a connection that is not established yet on after a
    /// readiness event: checks its connect, then moves its TLS handshake on
    /// as far as the socket allows. `Ok(true)` once established (connected
    /// and, over TLS, the handshake done), `Ok(false)` until then.
    ///
    /// # Errors
    ///
    /// Fails with the reason the connect failed (refused, unreachable) or
    /// the handshake failed (`invalid peer certificate: UnknownIssuer`).
    pub fn finish_connect(&mut self) -> io::Result<bool> {
        if self.phase == Phase::Connecting {
            if !self.socket.finish_connect()? {
                return Ok(false);
            }
            self.connected = Instant::now();
            self.connect_time = self.connected.saturating_duration_since(self.since);
            self.phase = Phase::Handshaking;
        }
        if !self.socket.handshake()? {
            return Ok(false);
        }
        if self.socket.is_tls() {
            self.handshake = Some(self.connected.elapsed());
        }
        self.phase = Phase::Idle;
        Ok(true)
    }

    /// Starts the next message, cut from a new place in the pattern, and
    /// writes as much of it as the socket takes. The echo is left to
    /// [`Connection::pump`] when the event loop reports it: reading at once
    /// would nearly always find nothing, and a connection whose echo did
    /// come back at once would keep the worker to itself.
    ///
    /// # Errors
    ///
    /// Fails with the connection's error.
    pub fn send(&mut self, rng: &mut fastrand::Rng) -> io::Result<()> {
        debug_assert_eq!(self.phase, Phase::Idle, "one message at a time");
        self.offset = next_offset(self.offset, rng);
        if self.socket.is_datagram() {
            let message = &mut self.pattern[self.offset..self.offset + self.size];
            datagram::stamp(message, self.numbered);
            self.numbered += 1;
        }
        self.written = 0;
        self.read = 0;
        self.differs = false;
        self.phase = Phase::InFlight;
        self.since = Instant::now();
        while self.write_some()? > 0 {}
        Ok(())
    }

    /// Writes what remains of the message and reads what has come back,
    /// until the socket would block or the echo is complete, comparing each
    /// piece read with what was sent. Reading goes on while writing, since a
    /// message larger than the socket buffers would otherwise deadlock with
    /// a server blocked writing its echo. Returns the echo once all of it is
    /// back; does nothing unless a message is in flight.
    ///
    /// # Errors
    ///
    /// Fails with the connection's error, or `UnexpectedEof` if the server
    /// closes before the whole echo is back.
    pub fn pump(&mut self, scratch: &mut [u8]) -> io::Result<Option<Echo>> {
        if self.phase != Phase::InFlight {
            return Ok(None);
        }
        loop {
            let wrote = self.write_some()?;
            let got = if self.socket.is_datagram() {
                self.receive(scratch)?
            } else {
                self.read_some(scratch)?
            };
            if self.read == self.size {
                self.phase = Phase::Idle;
                let at = Instant::now();
                return Ok(Some(Echo {
                    latency: at.saturating_duration_since(self.since),
                    at,
                    intact: !self.differs,
                }));
            }
            // Stop once neither direction can go on: nothing came back, and
            // either the write would block or there is nothing left to write.
            if got == 0 && (wrote == 0 || self.written == self.size) {
                return Ok(None);
            }
        }
    }

    /// Starts the stream: from now on the connection writes as much as the
    /// socket takes and reads the echo, as [`Connection::pump_stream`] is
    /// called.
    pub fn start_stream(&mut self) {
        debug_assert_eq!(self.phase, Phase::Idle, "a stream starts once, established");
        self.phase = Phase::InFlight;
        self.since = Instant::now();
    }

    /// Moves the stream on as far as the socket allows, or for
    /// [`STREAM_TURN`] bytes: writes more of it while `writing`, reads and
    /// checks what has come back, and gives `echoed` each write whose echo
    /// is now all back, with its size. The time to a timeout counts from
    /// the last byte read.
    ///
    /// # Errors
    ///
    /// Fails with the connection's error, or `UnexpectedEof` if the server
    /// closes before the whole echo is back.
    pub fn pump_stream(
        &mut self,
        scratch: &mut [u8],
        writing: bool,
        mut echoed: impl FnMut(Echo, usize),
    ) -> io::Result<Flow> {
        debug_assert_eq!(self.phase, Phase::InFlight, "a stream under way");
        let mut moved = 0;
        loop {
            let wrote = if writing { self.write_stream()? } else { 0 };
            let got = self.read_stream(scratch)?;
            if self.differs {
                return Ok(Flow::Differs);
            }
            if got > 0 {
                let at = Instant::now();
                self.since = at;
                while let Some(&(end, size, written)) = self.pieces.front() {
                    if end > self.read {
                        break;
                    }
                    self.pieces.pop_front();
                    let latency = at.saturating_duration_since(written);
                    let echo = Echo {
                        latency,
                        at,
                        intact: true,
                    };
                    echoed(echo, size);
                }
            }
            if !writing && self.read == self.written {
                self.phase = Phase::Idle;
                return Ok(Flow::Drained);
            }
            if wrote == 0 && got == 0 {
                return Ok(Flow::Going);
            }
            moved += wrote + got;
            if moved >= STREAM_TURN {
                return Ok(Flow::Yielded);
            }
        }
    }

    /// Checks a connection that is held quiet after a readiness event: the
    /// server has no reason to send or close anything.
    ///
    /// # Errors
    ///
    /// Fails with the connection's error, `UnexpectedEof` if the server
    /// closed it, `InvalidData` if it sent bytes unasked.
    pub fn check_quiet(&mut self, scratch: &mut [u8]) -> io::Result<()> {
        loop {
            return match self.socket.read(scratch) {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed a connection while it was held",
                )),
                Ok(count) => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the server sent {count} bytes unasked on a held connection"),
                )),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(()),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => Err(error),
            };
        }
    }

    /// Gives up on the datagram in flight, counted lost: its echo, should
    /// it come after all, is then stale and dropped.
    pub fn give_up(&mut self) {
        debug_assert!(self.socket.is_datagram(), "only datagrams are lost");
        debug_assert_eq!(self.phase, Phase::InFlight, "only a message sent is lost");
        self.phase = Phase::Idle;
    }

    /// The current message.
    fn message(&self) -> &[u8] {
        &self.pattern[self.offset..self.offset + self.size]
    }

    /// Writes what the socket takes of the rest of the message; 0 if it
    /// takes nothing or all was written. A datagram goes whole or not at
    /// all. Once all is written, a TLS session may still hold records of
    /// it that the socket did not take: they go as the socket takes them.
    fn write_some(&mut self) -> io::Result<usize> {
        if self.written < self.size {
            let start = self.offset + self.written;
            return self.write_pattern(start..self.offset + self.size);
        }
        self.flush().map(|()| 0)
    }

    /// Writes what the socket takes of `pattern[range]` and counts it
    /// written; 0 if it takes nothing.
    fn write_pattern(&mut self, range: Range<usize>) -> io::Result<usize> {
        let count = loop {
            match self.socket.write(&self.pattern[range.clone()]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(count) => break count,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break 0,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        };
        self.written += count;
        self.flush()?;
        Ok(count)
    }

    /// Sends what a TLS session holds as far as the socket takes it; does
    /// nothing on a plain socket.
    fn flush(&mut self) -> io::Result<()> {
        match self.socket.flush() {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(()),
            other => other,
        }
    }

    /// Reads what has come back of the echo, never past its end (anything
    /// beyond is the server's error, caught by the next message's check);
    /// 0 if nothing is there.
    fn read_some(&mut self, scratch: &mut [u8]) -> io::Result<usize> {
        let wanted = (self.size - self.read).min(scratch.len());
        self.read_echo(&mut scratch[..wanted], self.offset + self.read)
    }

    /// Reads into `scratch` what has come back, checks it against the
    /// pattern from `expected` on and counts it read; 0 if nothing is there.
    fn read_echo(&mut self, scratch: &mut [u8], expected: usize) -> io::Result<usize> {
        loop {
            match self.socket.read(scratch) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection before echoing everything",
                    ));
                }
                Ok(count) => {
                    let sent = &self.pattern[expected..expected + count];
                    self.differs |= scratch[..count] != *sent;
                    self.read += count;
                    return Ok(count);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// Writes the next piece of the stream, as much of `size` bytes from
    /// where it is as the socket takes; 0 if it takes nothing.
    fn write_stream(&mut self) -> io::Result<usize> {
        let start = self.written % STREAM_PERIOD;
        let count = self.write_pattern(start..start + self.size)?;
        if count > 0 {
            self.pieces.push_back((self.written, count, Instant::now()));
        }
        Ok(count)
    }

    /// Reads what has come back of the stream, never more than was written,
    /// and checks it; 0 if nothing is there.
    fn read_stream(&mut self, scratch: &mut [u8]) -> io::Result<usize> {
        let wanted = (self.written - self.read).min(scratch.len());
        if wanted == 0 {
            return Ok(0);
        }
        self.read_echo(&mut scratch[..wanted], self.read % STREAM_PERIOD)
    }

    /// Receives datagrams until the one that answers the datagram in
    /// flight, dropping late echoes of earlier ones; returns its size, or 0
    /// once none is waiting. `scratch` must hold the largest datagram, so
    /// that a reply longer than the message is seen whole.
    fn receive(&mut self, scratch: &mut [u8]) -> io::Result<usize> {
        let number = self.numbered - 1;
        loop {
            let count = match self.socket.read(scratch) {
                Ok(count) => count,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            match datagram::judge(&scratch[..count], self.message(), number) {
                Reply::Stale => debug!("dropped a late echo of an earlier datagram"),
                Reply::Echo { intact } => {
                    self.differs = !intact;
                    self.read = self.size;
                    return Ok(count);
                }
            }
        }
    }
}

/// Where the message after one starting at `offset` starts: anywhere in the
/// rotation but there.
fn next_offset(offset: usize, rng: &mut fastrand::Rng) -> usize {
    (offset + rng.usize(1..ROTATION)) % ROTATION
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loopback::{self, TIMEOUT};
    use mio::{Events, Interest, Poll, Token};
    use std::net::{SocketAddr, TcpStream};

    /// Message size: several pieces of a small scratch buffer, far less
    /// than a socket buffer.
    const SIZE: usize = 100;

    /// A connection with an event loop of its own. Its socket never blocks;
    /// every wait for it is bounded by [`TIMEOUT`] instead.
    struct Driven {
        /// The connection under test.
        connection: Connection,
        /// Its event loop.
        poll: Poll,
        /// Where readiness events are taken.
        events: Events,
        /// A fixed seed, so that every run cuts the same messages.
        rng: fastrand::Rng,
        /// Where replies are read into: its size is the most read at once.
        scratch: Vec<u8>,
    }

    impl Driven {
        /// A TCP connection to `addr`, established, that reads replies at
        /// most `piece` bytes at a time.
        fn connect(addr: SocketAddr, piece: usize) -> Driven {
            Driven::open(&Target::Tcp(addr), Mode::RoundTrips, piece)
        }

        /// A TCP connection to `addr`, established, to stream over; it
        /// reads the echo at most `piece` bytes at a time.
        fn stream(addr: SocketAddr, piece: usize) -> Driven {
            Driven::open(&Target::Tcp(addr), Mode::Stream, piece)
        }

        /// A UDP socket sending to `addr`, ready to send, that receives
        /// into a buffer large enough for any datagram.
        fn udp(addr: SocketAddr) -> Driven {
            Driven::open(&Target::Udp(addr), Mode::RoundTrips, 64 * 1024)
        }

        /// A connection to `target`, established, that reads replies at
        /// most `piece` bytes at a time.
        fn open(target: &Target, mode: Mode, piece: usize) -> Driven {
            let mut rng = fastrand::Rng::with_seed(7);
            let mut connection =
                Connection::open(target, None, SIZE, mode, &mut rng).expect("connect starts");
            let poll = Poll::new().expect("an event loop can be made");
            poll.registry()
                .register(
                    connection.socket(),
                    Token(0),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .expect("a new socket registers");
            let mut driven = Driven {
                connection,
                poll,
                events: Events::with_capacity(8),
                rng,
                scratch: vec![0; piece],
            };
            driven
                .until(|connection, _| Ok(connection.finish_connect()?.then_some(())))
                .expect("a loopback connect succeeds");
            driven
        }

        /// Sends one message and waits for its echo.
        fn round_trip(&mut self) -> io::Result<Echo> {
            self.connection.send(&mut self.rng)?;
            self.until(Connection::pump)
        }

        /// Calls `step` now and after every readiness event until it
        /// returns something or fails; panics after [`TIMEOUT`].
        fn until<T>(
            &mut self,
            mut step: impl FnMut(&mut Connection, &mut [u8]) -> io::Result<Option<T>>,
        ) -> io::Result<T> {
            let deadline = Instant::now() + TIMEOUT;
            loop {
                if let Some(done) = step(&mut self.connection, &mut self.scratch)? {
                    return Ok(done);
                }
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(!left.is_zero(), "still waiting after {TIMEOUT:?}");
                self.poll.poll(&mut self.events, Some(left))?;
            }
        }
    }

    #[test]
    fn round_trips_through_an_echo_server_come_back_intact() {
        let mut driven = Driven::connect(loopback::serve(1, loopback::echo), SIZE);
        for _ in 0..3 {
            let echo = driven.round_trip().expect("the echo server answers");
            assert!(echo.intact, "{echo:?}");
        }
    }

    #[test]
    fn a_reply_with_a_flipped_byte_is_a_mismatch() {
        let mut driven = Driven::connect(loopback::serve(1, loopback::corrupt), SIZE);
        let echo = driven.round_trip().expect("the server answers in full");
        assert!(!echo.intact, "{echo:?}");
    }

    #[test]
    fn a_reply_in_one_byte_pieces_read_a_few_bytes_at_a_time_is_reassembled() {
        let mut driven = Driven::connect(loopback::serve(1, loopback::in_pieces), 7);
        for _ in 0..3 {
            let echo = driven.round_trip().expect("the server answers in full");
            assert!(echo.intact, "{echo:?}");
        }
    }

    #[test]
    fn a_server_closing_mid_reply_is_an_error() {
        let addr = loopback::serve(1, loopback::closes_mid_reply(SIZE));
        let mut driven = Driven::connect(addr, SIZE);
        let error = driven
            .round_trip()
            .expect_err("half an echo is not a reply");
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
    }

    #[test]
    fn a_connect_under_way_is_overdue_once_its_timeout_has_passed() {
        let timeout = Duration::from_secs(5);
        let mut rng = fastrand::Rng::with_seed(7);
        // Whether or not the kernel has finished it, the connect counts as
        // under way until `finish_connect` says otherwise.
        let addr = loopback::serve(1, loopback::echo);
        let connection =
            Connection::open(&Target::Tcp(addr), None, SIZE, Mode::RoundTrips, &mut rng)
                .expect("connect starts");
        let since = connection.since;
        assert!(!connection.is_overdue(timeout, since + timeout - Duration::from_millis(1)));
        assert!(connection.is_overdue(timeout, since + timeout));
    }

    #[test]
    fn a_message_is_overdue_once_the_reply_timeout_has_passed_until_its_echo_is_back() {
        let timeout = Duration::from_secs(5);
        let mut driven = Driven::connect(loopback::serve(1, loopback::echo), SIZE);
        driven.connection.send(&mut driven.rng).expect("sends");
        let since = driven.connection.since;
        let connection = &driven.connection;
        assert!(!connection.is_overdue(timeout, since + timeout - Duration::from_millis(1)));
        assert!(connection.is_overdue(timeout, since + timeout));
        driven.until(Connection::pump).expect("the echo comes back");
        assert!(!driven.connection.is_overdue(timeout, since + 2 * timeout));
    }

    #[test]
    fn round_trips_over_a_unix_socket_come_back_intact() {
        let target = loopback::serve_unix(1, loopback::echo);
        let mut driven = Driven::open(&target, Mode::RoundTrips, 7);
        for _ in 0..3 {
            let echo = driven.round_trip().expect("the echo server answers");
            assert!(echo.intact, "{echo:?}");
        }
    }

    #[test]
    fn datagrams_through_a_udp_echo_come_back_intact_and_numbered() {
        let mut driven = Driven::udp(loopback::serve_udp(loopback::echo_datagram));
        for number in 0..3_u64 {
            let echo = driven.round_trip().expect("the echo server answers");
            assert!(echo.intact, "{echo:?}");
            let tag = &driven.connection.message()[..datagram::TAG];
            assert_eq!(tag, number.to_be_bytes(), "datagram {number}");
        }
    }

    #[test]
    fn a_udp_reply_with_a_flipped_byte_is_a_mismatch() {
        let addr = loopback::serve_udp(|socket, datagram, from| {
            let mut reply = datagram.to_vec();
            reply[SIZE - 1] ^= 0xff;
            socket.send_to(&reply, from).map(drop)
        });
        let echo = Driven::udp(addr).round_trip().expect("the server answers");
        assert!(!echo.intact, "{echo:?}");
    }

    #[test]
    fn a_late_echo_of_a_datagram_given_up_is_dropped_and_the_next_echo_counts() {
        // Holds the first datagram until the second comes, then echoes
        // both, the late one first.
        let mut held = None;
        let addr = loopback::serve_udp(move |socket, datagram, from| {
            match held.take() {
                None => held = Some(datagram.to_vec()),
                Some(first) => {
                    socket.send_to(&first, from)?;
                    socket.send_to(datagram, from)?;
                }
            }
            Ok(())
        });
        let mut driven = Driven::udp(addr);
        driven.connection.send(&mut driven.rng).expect("sends");
        driven.connection.give_up();
        assert!(!driven.connection.is_in_flight());
        let echo = driven.round_trip().expect("the second is echoed");
        assert!(
            echo.intact,
            "the late echo was taken for this one: {echo:?}"
        );
    }

    #[test]
    fn a_datagram_unanswered_is_overdue_until_given_up() {
        let timeout = Duration::from_secs(1);
        let mut driven = Driven::udp(loopback::serve_udp(|_, _, _| Ok(())));
        driven.connection.send(&mut driven.rng).expect("sends");
        let since = driven.connection.since;
        let connection = &mut driven.connection;
        assert!(!connection.is_overdue(timeout, since + timeout - Duration::from_millis(1)));
        assert!(connection.is_overdue(timeout, since + timeout));
        connection.give_up();
        assert!(!connection.is_overdue(timeout, since + 2 * timeout));
        let mut scratch = vec![0; 64 * 1024];
        assert_eq!(connection.pump(&mut scratch).expect("nothing to do"), None);
    }

    /// Streams over `driven` until at least `bytes` have come back, then
    /// stops writing and waits for the rest of the echo; returns how it
    /// ended and the sizes of the writes whose echo came back.
    fn stream(driven: &mut Driven, bytes: usize) -> (Flow, Vec<usize>) {
        driven.connection.start_stream();
        let mut echoed = Vec::new();
        for writing in [true, false] {
            let flow = driven
                .until(|connection, scratch| {
                    loop {
                        let flow = connection.pump_stream(scratch, writing, |echo, size| {
                            assert!(echo.intact);
                            echoed.push(size);
                        })?;
                        let ended = matches!(flow, Flow::Drained | Flow::Differs);
                        if ended || (writing && connection.read >= bytes) {
                            return Ok(Some(flow));
                        }
                        // A stream that has had its turn goes on at once:
                        // no event would say it can.
                        if flow == Flow::Going {
                            return Ok(None);
                        }
                    }
                })
                .expect("the stream goes on without an error");
            if matches!(flow, Flow::Drained | Flow::Differs) {
                return (flow, echoed);
            }
        }
        panic!("a stream no longer written ends, drained or differing");
    }

    #[test]
    fn a_stream_comes_back_intact_to_its_last_byte_and_every_write_is_counted() {
        let mut driven = Driven::stream(loopback::serve(1, loopback::echo), 7);
        // More than the period, so that the stream wraps around it.
        let (flow, echoed) = stream(&mut driven, 3 * STREAM_PERIOD);
        assert_eq!(flow, Flow::Drained);
        let connection = &driven.connection;
        assert!(connection.read >= 3 * STREAM_PERIOD);
        assert_eq!(connection.read, connection.written);
        assert_eq!(echoed.iter().sum::<usize>(), connection.written);
        assert!(echoed.iter().all(|&size| (1..=SIZE).contains(&size)));
        assert!(!connection.is_in_flight());
    }

    #[test]
    fn a_stream_echoed_one_byte_at_a_time_comes_back_intact() {
        let mut driven = Driven::stream(loopback::serve(1, loopback::in_pieces), SIZE);
        assert_eq!(stream(&mut driven, 10 * SIZE).0, Flow::Drained);
    }

    #[test]
    fn a_stream_with_a_flipped_byte_differs() {
        let mut driven = Driven::stream(loopback::serve(1, loopback::corrupt), SIZE);
        assert_eq!(stream(&mut driven, 10 * SIZE).0, Flow::Differs);
    }

    #[test]
    fn a_stream_missing_one_byte_differs() {
        let skips_one = |mut stream: &TcpStream| {
            let mut first = [0; 1];
            stream.read_exact(&mut first)?;
            loopback::echo(stream)
        };
        let mut driven = Driven::stream(loopback::serve(1, skips_one), SIZE);
        assert_eq!(stream(&mut driven, 10 * SIZE).0, Flow::Differs);
    }

    #[test]
    fn a_held_connection_is_quiet_until_the_server_closes_it() {
        let once_then_close = |mut stream: &TcpStream| {
            let mut message = [0; SIZE];
            stream.read_exact(&mut message)?;
            stream.write_all(&message)
        };
        let mut driven = Driven::connect(loopback::serve(1, once_then_close), SIZE);
        let echo = driven.round_trip().expect("the first message is echoed");
        assert!(echo.intact);
        let error = driven
            .until(|connection, scratch| connection.check_quiet(scratch).map(|()| None::<()>))
            .expect_err("the close is seen");
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
    }

    #[test]
    fn consecutive_messages_start_at_different_places() {
        let mut driven = Driven::connect(loopback::serve(1, loopback::echo), SIZE);
        let mut starts = Vec::new();
        for _ in 0..20 {
            let echo = driven.round_trip().expect("the echo server answers");
            assert!(echo.intact, "{echo:?}");
            starts.push(driven.connection.offset);
        }
        assert!(
            starts.windows(2).all(|pair| pair[0] != pair[1]),
            "{starts:?}"
        );
    }

    #[test]
    fn the_next_start_is_never_the_current_one_and_stays_in_the_rotation() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut offset = 0;
        for _ in 0..10_000 {
            let next = next_offset(offset, &mut rng);
            assert!(next != offset && next < ROTATION, "{offset} then {next}");
            offset = next;
        }
    }
}
