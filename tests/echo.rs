//! The echo itself: every byte back, in order, exactly once, for one client
//! or many, small writes or large streams; half-close; shutdown.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use common::{EVENT_TIMEOUT, ServerProcess, TestServer};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};

/// Where `received` first differs from `expected`, for failure messages
/// that do not print megabytes.
fn first_difference(expected: &[u8], received: &[u8]) -> Option<usize> {
    expected
        .iter()
        .zip(received)
        .position(|(a, b)| a != b)
        .or((expected.len() != received.len()).then(|| expected.len().min(received.len())))
}

/// Sends everything in `writes`, each slice with a write of its own, then
/// half-closes, and returns every byte that came back before EOF.
fn echo_stream(server: &TestServer, writes: &[&[u8]]) -> Vec<u8> {
    let mut stream = common::connect(server.addr);
    let total: usize = writes.iter().map(|write| write.len()).sum();
    // Small enough to sit in the socket buffers, so one thread can write all
    // before reading.
    assert!(total <= 64 * 1024, "use a writer thread for {total} bytes");
    for write in writes {
        stream.write_all(write).expect("write within the timeout");
    }
    stream.shutdown(Shutdown::Write).expect("half-close");
    common::read_to_eof(&mut stream)
}

#[test]
fn echoes_text_unchanged() {
    let server = TestServer::start();
    let mut stream = common::connect(server.addr);
    for message in [
        "Hello, server",
        "a",
        "line one\nline two\n",
        "héllo wörld ✓",
    ] {
        common::assert_echoes(&mut stream, message.as_bytes());
    }
}

#[test]
fn echoes_every_byte_value() {
    let server = TestServer::start();
    let all: Vec<u8> = (0..=255).collect();
    let mut stream = common::connect(server.addr);
    common::assert_echoes(&mut stream, &all);
    let reversed: Vec<u8> = all.iter().rev().copied().collect();
    common::assert_echoes(&mut stream, &reversed);
}

#[test]
fn echoes_thousands_of_tiny_writes_as_one_stream() {
    let server = TestServer::start();
    let mut rng = fastrand::Rng::new();
    let seed = rng.get_seed();
    let writes: Vec<Vec<u8>> = (0..5000)
        .map(|_| {
            let mut write = vec![0; rng.usize(1..=3)];
            rng.fill(&mut write);
            write
        })
        .collect();
    let slices: Vec<&[u8]> = writes.iter().map(Vec::as_slice).collect();
    let sent = writes.concat();

    let received = echo_stream(&server, &slices);

    assert!(
        received == sent,
        "{} bytes sent, {} received, first difference at {:?} (seed {seed})",
        sent.len(),
        received.len(),
        first_difference(&sent, &received)
    );
}

#[test]
fn echoes_any_bytes_however_the_writes_split_them() {
    let server = TestServer::start();
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let writes = proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..2048), 0..12);
    runner
        .run(&writes, |writes| {
            let slices: Vec<&[u8]> = writes.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(echo_stream(&server, &slices), writes.concat());
            Ok(())
        })
        .unwrap();
}

#[test]
fn echoes_remaining_bytes_after_client_half_close() {
    const LEN: usize = 1 << 20;
    let server = TestServer::start();
    let sent = Arc::new(common::random_bytes(LEN));
    let mut stream = common::connect(server.addr);
    let mut writer_stream = stream.try_clone().expect("clone the socket");

    // The echo comes back while the rest is still being sent: writing
    // everything before reading would fill both socket buffers and stall.
    let writer = {
        let sent = Arc::clone(&sent);
        thread::spawn(move || {
            writer_stream.write_all(&sent).expect("write 1 MiB");
            writer_stream.shutdown(Shutdown::Write).expect("half-close");
        })
    };
    let received = common::read_to_eof(&mut stream);
    writer.join().expect("the writer does not fail");

    assert_eq!(received.len(), LEN, "bytes echoed before EOF");
    assert!(
        received == *sent,
        "first difference at {:?}",
        first_difference(&sent, &received)
    );
}

#[test]
fn echoes_64_mib_of_random_bytes_while_writing_and_reading_at_once() {
    const CHUNK: usize = 1 << 20;
    const CHUNKS: u64 = 64;
    // Chunk `index` of the stream, generated again by the reader instead of
    // being kept: the test holds a few MiB, not the stream.
    fn chunk(seed: u64, index: u64, buffer: &mut [u8]) {
        fastrand::Rng::with_seed(seed.wrapping_add(index)).fill(buffer);
    }

    let server = TestServer::start();
    let seed = fastrand::u64(..);
    let mut stream = common::connect(server.addr);
    let mut writer_stream = stream.try_clone().expect("clone the socket");
    let writer = thread::spawn(move || {
        let mut buffer = vec![0; CHUNK];
        for index in 0..CHUNKS {
            chunk(seed, index, &mut buffer);
            writer_stream.write_all(&buffer).expect("write a chunk");
        }
        writer_stream.shutdown(Shutdown::Write).expect("half-close");
    });

    let mut expected = vec![0; CHUNK];
    let mut received = vec![0; CHUNK];
    for index in 0..CHUNKS {
        chunk(seed, index, &mut expected);
        stream
            .read_exact(&mut received)
            .unwrap_or_else(|error| panic!("read chunk {index}: {error}"));
        assert!(
            received == expected,
            "chunk {index} differs at byte {:?} (seed {seed})",
            first_difference(&expected, &received)
        );
    }
    assert_eq!(
        common::read_to_eof(&mut stream),
        b"",
        "bytes after the stream"
    );
    writer.join().expect("the writer does not fail");
}

#[test]
fn serves_100_concurrent_clients_byte_exact_then_returns_to_idle_thread_count() {
    const CLIENTS: usize = 100;
    const MESSAGES: usize = 200;
    let server = ServerProcess::start(&["--bind", "127.0.0.1", "--quiet"]);
    let addr = server.addr();

    let idle = server.idle_threads();

    // Clients hold their connections open after their first echo until the
    // thread count has been read; the write lock is released even if this
    // thread panics, so no client is left waiting.
    let gate = Arc::new(RwLock::new(()));
    let hold = gate.write().unwrap();
    let (ready, all_ready) = mpsc::channel();
    let seed = fastrand::u64(..);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|index| {
            let gate = Arc::clone(&gate);
            let ready = ready.clone();
            thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(index as u64));
                let mut stream = common::connect(addr);
                for number in 0..MESSAGES {
                    let mut message = vec![0; rng.usize(1..=8192)];
                    rng.fill(&mut message);
                    let reply = common::round_trip(&mut stream, &message);
                    assert!(
                        reply == message,
                        "client {index}, message {number} of {} bytes: first difference at \
                         {:?} (seed {seed})",
                        message.len(),
                        first_difference(&message, &reply)
                    );
                    if number == 0 {
                        ready.send(()).expect("the test is waiting");
                        drop(gate.read());
                    }
                }
                stream.shutdown(Shutdown::Write).expect("half-close");
                assert_eq!(common::read_to_eof(&mut stream), b"", "client {index}");
            })
        })
        .collect();
    for _ in 0..CLIENTS {
        all_ready
            .recv_timeout(EVENT_TIMEOUT)
            .expect("every client connected and got its first echo");
    }
    let busy = server.threads();
    drop(hold);

    for (index, client) in clients.into_iter().enumerate() {
        client
            .join()
            .unwrap_or_else(|_| panic!("client {index} failed"));
    }
    assert_eq!(busy, idle + CLIENTS as u64, "one thread per client");
    common::wait_until("the server to go back to its idle thread count", || {
        server.threads() == idle
    });
}

#[test]
fn serves_1000_clients_that_connect_at_once() {
    const CLIENTS: usize = 1000;
    echo_server::raise_open_file_limit(2 * CLIENTS as u64 + 64)
        .expect("raise the descriptor limit");
    let server = ServerProcess::start(&["--bind", "127.0.0.1", "--quiet"]);

    // With the server frozen, every connection waits in the listen backlog:
    // all 1,000 are pending at once, which a short backlog would drop.
    server.freeze();
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap_or_default();
    let mut streams: Vec<TcpStream> = (0..CLIENTS)
        .map(|index| {
            common::try_connect(server.addr()).unwrap_or_else(|error| {
                panic!(
                    "client {index} not queued: {error} (net.core.somaxconn = {})",
                    somaxconn.trim()
                )
            })
        })
        .collect();
    server.thaw();

    for (index, stream) in streams.iter_mut().enumerate() {
        stream
            .write_all(format!("client {index:04}").as_bytes())
            .unwrap_or_else(|error| panic!("client {index}: {error}"));
    }
    for (index, stream) in streams.iter_mut().enumerate() {
        let mut reply = [0; 11];
        stream
            .read_exact(&mut reply)
            .unwrap_or_else(|error| panic!("client {index} got no echo: {error}"));
        assert_eq!(reply, format!("client {index:04}").as_bytes());
    }
}

#[test]
fn shutdown_closes_idle_and_busy_clients_and_run_returns_promptly() {
    // Five times the second the README promises for a stop, so that a
    // loaded machine cannot make it fail; a shutdown that waited for its
    // clients instead would wait out the default idle timeout of five
    // minutes.
    const PROMPTLY: Duration = Duration::from_secs(5);
    let server = TestServer::start();

    let mut idle = common::connect(server.addr);
    common::assert_echoes(&mut idle, b"idle");

    let (streaming, first_echo) = mpsc::channel();
    let mut busy = common::connect(server.addr);
    let streamer = thread::spawn(move || {
        let block = vec![0x5a; 16 * 1024];
        let mut echo = vec![0; block.len()];
        let mut rounds = 0_u64;
        loop {
            let result = busy
                .write_all(&block)
                .and_then(|()| busy.read_exact(&mut echo));
            if let Err(error) = result {
                return (rounds, error);
            }
            assert_eq!(echo, block);
            rounds += 1;
            if rounds == 1 {
                streaming.send(()).expect("the test is waiting");
            }
        }
    });
    first_echo
        .recv_timeout(EVENT_TIMEOUT)
        .expect("the busy client got its first echo");

    let started = Instant::now();
    let stats =
        common::within(PROMPTLY, move || server.stop()).expect("run() returned within the bound");
    assert_eq!(stats.accepted, 2);
    assert_eq!(stats.active, 0);
    assert_eq!(stats.cut, 2, "both clients were closed by the shutdown");

    assert!(
        common::closed_without_data(&mut idle),
        "the idle client sees EOF or a reset"
    );
    let (rounds, error) = common::within(PROMPTLY, move || streamer.join())
        .expect("the streaming client ended")
        .expect("the streaming client does not panic");
    assert!(
        matches!(
            error.kind(),
            std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
        ),
        "the streaming client ended by EOF or reset after {rounds} echoes, not {error:?}"
    );
    assert!(started.elapsed() < PROMPTLY, "{:?}", started.elapsed());
}
