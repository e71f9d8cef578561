//! Faults: clients that misbehave (never read, reset mid-stream), a process
//! out of descriptors or of memory for a thread, and signals. The server
//! must go on serving, stay within bounded memory and CPU, and stop cleanly.

mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    ServerProcess, assert_echoes, assert_summary_has, closed_without_data, connect, is_closed,
    poll_within, task_dirs, wait_until,
};
use rlimit::Resource;
use socket2::SockRef;

/// How long a client write may make no progress before the test takes the
/// connection as stalled: the server has stopped reading it.
const STALL: Duration = Duration::from_millis(300);

/// Linux reports the CPU times in `/proc/PID/stat` in clock ticks of
/// `USER_HZ`, which is 100 on every architecture.
const CLOCK_TICKS_PER_SECOND: u64 = 100;

/// Writes to `stream` without reading until a write makes no progress for
/// [`STALL`], or `limit` bytes have gone; returns the bytes written.
fn write_until_stalled(stream: &mut TcpStream, limit: usize) -> usize {
    stream.set_write_timeout(Some(STALL)).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let mut written = 0;
    while written < limit {
        match stream.write(&chunk) {
            Ok(n) => written += n,
            Err(error) if is_timeout(&error) => break,
            Err(error) => panic!("write after {written} bytes: {error}"),
        }
    }
    written
}

/// Whether `error` is a socket timeout (EAGAIN on Unix).
fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Reads and discards until the server closes `stream` (EOF or reset),
/// failing on a read timeout.
fn drain_until_closed(stream: &mut TcpStream) {
    let mut buffer = vec![0; 64 * 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) if is_closed(&error) => return,
            Err(error) => panic!("waiting for the server to close: {error}"),
        }
    }
}

/// User plus system CPU time of process `pid` so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // The command name, in parentheses, may contain spaces: count fields
    // from after it. utime and stime are fields 14 and 15 of the line.
    let (_, rest) = stat
        .rsplit_once(')')
        .expect("a command name in parentheses");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |index: usize| -> u64 { fields[index - 3].parse().expect("a number of ticks") };
    field(14) + field(15)
}

/// Descriptors process `pid` has open.
fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("list /proc/PID/fd")
        .count()
}

/// Names of the threads of process `pid`.
fn thread_names(pid: u32) -> Vec<String> {
    task_dirs(pid)
        .into_iter()
        .filter_map(|task| std::fs::read_to_string(task.join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .collect()
}

/// The system call that thread `name` of process `pid` is in, as
/// `/proc/PID/task/TID/syscall` gives it: a number while blocked, `running`
/// otherwise; `None` if there is no such thread.
fn syscall_of(pid: u32, name: &str) -> Option<String> {
    task_dirs(pid)
        .into_iter()
        .find(|task| {
            std::fs::read_to_string(task.join("comm")).is_ok_and(|comm| comm.trim_end() == name)
        })
        .and_then(|task| std::fs::read_to_string(task.join("syscall")).ok())
        .and_then(|line| line.split_whitespace().next().map(str::to_owned))
}

/// Lowers both descriptor limits of process `pid` to `limit`: the server
/// would raise a soft limit toward the hard one.
fn limit_descriptors(pid: u32, limit: u64) {
    rlimit::prlimit(pid as i32, Resource::NOFILE, Some((limit, limit)), None)
        .expect("lower the server's descriptor limit");
}

/// Closes `clients`, waits until the server has closed their descriptors
/// too, and asserts that it then serves a newcomer.
fn assert_serves_once_clients_leave(server: &ServerProcess, clients: Vec<TcpStream>) {
    let pid = server.pid();
    let at_limit = open_descriptors(pid);
    drop(clients);
    wait_until("the server to close the clients' descriptors", || {
        open_descriptors(pid) < at_limit / 2
    });
    let mut newcomer = connect(server.addr());
    assert_echoes(&mut newcomer, b"descriptors again");
}

#[test]
fn a_client_that_never_reads_cannot_grow_server_memory_and_is_closed_after_the_idle_timeout() {
    const LIMIT: usize = 64 * 1024 * 1024;
    const MOST_GROWTH_KIB: u64 = 4 * 1024;
    let server = ServerProcess::start(&["--idle-timeout", "1s"]);
    let before = server.status_field("VmRSS");

    let mut client = connect(server.addr());
    let written = write_until_stalled(&mut client, LIMIT);
    assert!(
        written < LIMIT,
        "the server took all {LIMIT} bytes from a client that reads nothing"
    );
    let stalled = server.status_field("VmRSS");
    let growth = stalled.saturating_sub(before);
    println!("slow reader: stalled after {written} bytes; VmRSS {before} -> {stalled} KiB");
    assert!(
        growth < MOST_GROWTH_KIB,
        "VmRSS grew by {growth} KiB while a client sent {written} bytes and read none"
    );

    // The server, blocked writing the echo nobody reads, must give up after
    // the idle timeout; the client learns it when a write fails.
    let chunk = vec![b'y'; 64 * 1024];
    wait_until(
        "the server to close a client that reads nothing",
        || match client.write(&chunk) {
            Ok(_) => false,
            Err(error) if is_timeout(&error) => false,
            Err(error) if is_closed(&error) => true,
            Err(error) => panic!("write to a stalled connection: {error}"),
        },
    );
    server.wait_for_log("disconnected: idle timeout");
}

#[test]
fn keeps_serving_after_a_hundred_clients_reset_mid_stream() {
    const CLIENTS: usize = 100;
    let server = ServerProcess::start(&[]);
    let idle = server.idle_threads();

    let half = vec![b'r'; 32 * 1024];
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let mut client = connect(server.addr());
        client.write_all(&half).unwrap();
        // One byte back proves the server is echoing this client; the
        // rest stays unread, so the reset lands mid-stream.
        let mut first = [0; 1];
        client.read_exact(&mut first).unwrap();
        client.write_all(&half).unwrap();
        clients.push(client);
    }
    for client in clients {
        SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        // Closing with a zero linger time sends a reset.
        drop(client);
    }

    wait_until("every reset client's thread to end", || {
        server.threads() == idle
    });
    let mut newcomer = connect(server.addr());
    assert_echoes(&mut newcomer, b"anyone left?");

    wait_until("a disconnection line for every reset client", || {
        server.log_text().matches("disconnected").count() > CLIENTS
    });
    let log = server.log_text();
    assert!(
        !log.lines().any(|line| line.contains("disconnected: error")),
        "a client reset is not an error; log:\n{log}"
    );
    assert!(!log.contains("panicked"), "log:\n{log}");
}

#[test]
fn out_of_descriptors_the_server_backs_off_without_spinning_and_recovers() {
    const LIMIT: u64 = 64;
    const CLIENTS: usize = 100;
    let server = ServerProcess::start(&[]);
    let pid = server.pid();
    let mut warm_up = connect(server.addr());
    assert_echoes(&mut warm_up, b"before the limit");
    drop(warm_up);
    limit_descriptors(pid, LIMIT);

    // More clients than descriptors: the server accepts what it can; the
    // kernel completes the other connections into the listen backlog.
    let clients: Vec<TcpStream> = (0..CLIENTS).map(|_| connect(server.addr())).collect();
    server.wait_for_log("accept failed");

    // A measurement window, not synchronisation: the CPU the server burns
    // while it cannot accept.
    let window = Duration::from_secs(2);
    let before = cpu_ticks(pid);
    thread::sleep(window);
    let used = cpu_ticks(pid) - before;
    let seconds = used as f64 / CLOCK_TICKS_PER_SECOND as f64;
    println!("out of descriptors: {seconds:.2} s of CPU in {window:?}");
    assert!(
        seconds < 0.5,
        "the server used {seconds:.2} s of CPU in {window:?} while out of descriptors"
    );

    // The reserve descriptor lets the server close a pending client rather
    // than leave it hanging.
    server.wait_for_log("out of file descriptors");

    assert_serves_once_clients_leave(&server, clients);
}

#[test]
fn serves_the_first_client_after_descriptors_are_freed_once_the_backlog_has_drained() {
    const LIMIT: u64 = 64;
    let server = ServerProcess::start(&["--bind", "127.0.0.1"]);
    let pid = server.pid();
    let mut warm_up = connect(server.addr());
    assert_echoes(&mut warm_up, b"before the limit");
    drop(warm_up);
    // What an idle accept loop blocks in (accept4 on Linux), learnt rather
    // than hard-coded, since system call numbers differ between
    // architectures.
    let mut in_accept = None;
    wait_until("the accept loop to block in accept", || {
        in_accept = syscall_of(pid, "echo-accept-0").filter(|call| call != "running");
        in_accept.is_some()
    });
    limit_descriptors(pid, LIMIT);

    // The server has stdio and its listener open, so some of these clients
    // find no descriptor; each is either served or closed.
    let mut clients: Vec<TcpStream> = (0..LIMIT).map(|_| connect(server.addr())).collect();
    let mut served = 0;
    for client in &mut clients {
        client.write_all(b"?").expect("send to the server");
        let mut reply = [0; 1];
        match client.read(&mut reply) {
            Ok(1) => served += 1,
            Ok(_) => {}
            Err(error) if is_closed(&error) => {}
            Err(error) => panic!("a client neither served nor closed: {error}"),
        }
    }
    assert!(
        (1..LIMIT as usize).contains(&served),
        "{served} of {LIMIT} clients served"
    );

    // Out of descriptors with an empty backlog, the server must not sit in
    // a blocking accept() that would refuse the next client whatever the
    // descriptors by then. A server that never blocks there is as good:
    // this only gives one that does the time to get there (twice the
    // longest back-off of 1 s), so that the test fails for it every time.
    // A wait and no assertion: a loaded machine can at worst let such a
    // server pass once, never fail a good one.
    let _ = poll_within(Duration::from_secs(2), || {
        (syscall_of(pid, "echo-accept-0") == in_accept).then_some(())
    });

    assert_serves_once_clients_leave(&server, clients);
}

#[test]
fn a_failed_thread_spawn_closes_that_client_and_the_server_goes_on() {
    let server = ServerProcess::start(&[]);
    let pid = server.pid();
    // No client before the failure: a thread that has ended leaves its
    // stack cached for the next one, which would then start without the
    // memory this test denies it.
    wait_until("every accept loop to start", || {
        let names = thread_names(pid);
        let loops = names
            .iter()
            .filter(|name| name.starts_with("echo-accept"))
            .count();
        loops == server.addrs.len() && names.iter().any(|name| name == "echo-signals")
    });
    // An address space limit at the current size leaves no room for a new
    // thread's stack, while the accept loop runs on memory it already has.
    let size = server.status_field("VmSize") * 1024;
    rlimit::prlimit(
        pid as i32,
        Resource::AS,
        Some((size, rlimit::INFINITY)),
        None,
    )
    .expect("lower the server's address space limit");

    let mut refused = connect(server.addr());
    assert!(
        closed_without_data(&mut refused),
        "a client without a thread must be closed"
    );
    server.wait_for_log("cannot start a thread");

    rlimit::prlimit(
        pid as i32,
        Resource::AS,
        Some((rlimit::INFINITY, rlimit::INFINITY)),
        None,
    )
    .expect("restore the server's address space limit");
    let mut served = connect(server.addr());
    assert_echoes(&mut served, b"threads again");
}

/// Sends `signal` to a server with an idle client and a client whose echo
/// is blocked mid-write, and checks that it closes both and exits cleanly.
fn stops_cleanly_on(signal: &str) {
    let server = ServerProcess::start(&[]);
    let mut idle = connect(server.addr());
    assert_echoes(&mut idle, b"then nothing");
    let mut busy = connect(server.addr());
    // The client reads nothing back: the server's thread ends up blocked
    // writing the echo.
    write_until_stalled(&mut busy, 64 * 1024 * 1024);

    let signalled = Instant::now();
    server.signal(signal);
    let (code, log) = server.wait_exit();
    let took = signalled.elapsed();
    assert_eq!(code, Some(0), "log:\n{log}");
    // The README says within a second; five times that is slack no load
    // of the machine uses up, since stopping takes milliseconds. A server
    // that waited for its clients instead would take the default idle
    // timeout of five minutes.
    assert!(
        took < Duration::from_secs(5),
        "exit took {took:?}; log:\n{log}"
    );

    // The server closed both clients itself before exiting, not the
    // kernel after it.
    assert_eq!(
        log.matches("disconnected: server shutting down").count(),
        2,
        "log:\n{log}"
    );
    assert_summary_has(
        &log,
        &["2 accepted", "0 rejected", "2 at most at once", "2 closed"],
    );
    assert!(closed_without_data(&mut idle));
    drain_until_closed(&mut busy);
}

#[test]
fn sigterm_closes_every_client_logs_a_summary_and_exits_zero() {
    stops_cleanly_on("TERM");
}

#[test]
fn sigint_closes_every_client_logs_a_summary_and_exits_zero() {
    stops_cleanly_on("INT");
}

#[test]
fn sigusr1_logs_the_live_statistics_and_the_server_goes_on() {
    let server = ServerProcess::start(&[]);
    let mut first = connect(server.addr());
    assert_echoes(&mut first, b"12345");
    first.shutdown(Shutdown::Write).unwrap();
    assert!(closed_without_data(&mut first));
    server.wait_for_log("disconnected: client closed");
    let mut second = connect(server.addr());
    assert_echoes(&mut second, b"still here");

    server.signal("USR1");
    server.wait_for_log("stats: ");
    let log = server.log_text();
    let line = log
        .lines()
        .find(|line| line.contains("stats: "))
        .expect("wait_for_log found it");
    assert!(
        line.contains("stats: 1 connected, 2 accepted, 0 rejected, 0 denied"),
        "{line}"
    );
    assert!(line.contains("5 bytes echoed"), "{line}");
    assert!(!line.contains("at shutdown"), "{line}");

    // SIGHUP has nothing to reload: it is logged, and stops nothing.
    server.signal("HUP");
    server.wait_for_log("SIGHUP: nothing to reload");
    assert_echoes(&mut second, b"and goes on");
    assert!(
        server
            .log_text()
            .lines()
            .all(|line| !line.contains("stopped: ")),
        "the server stopped:\n{}",
        server.log_text()
    );
}
