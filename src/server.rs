//! The server: binding, the run, and the handle that stops it.
//!
//! [`Server::bind`] opens every listening socket before anything is served,
//! so [`Server::local_addrs`] is known at once (port 0 works).
//! [`Server::run`] runs one accept loop per listener, the spawner that
//! starts a thread per client (see `accept`), and the idle watchdog (see
//! `idle`), until a [`ShutdownHandle`] asks it to stop or a listener dies;
//! then, after a drain if one was asked for, it closes every client and
//! returns once each client thread has finished with its socket.
//!
//! # Locks
//!
//! Where one is held while another is taken, they are taken in this order:
//! the listeners' queue of clients taken at a drain, then the stop state,
//! then the connection limits. Every other lock (the listeners' wake-up
//! addresses, the warning throttles) is a leaf: nothing is taken while it
//! is held.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Instant;

use crate::accept::{self, Admission};
use crate::config::Config;
use crate::handler::Handler;
use crate::idle;
use crate::limits::Limits;
use crate::listeners::{Endpoint, Listener, Listeners};
use crate::stats::{Counters, Stats};
use crate::stop::{Phase, Stop};
#[cfg(feature = "tls")]
use crate::tls::Tls;
use crate::udp::{self, Guard};

/// A bound echo server, ready to [`run`](Server::run).
#[derive(Debug)]
pub struct Server {
    /// What the server's threads and handles share.
    inner: Arc<Inner>,
}

/// Stops a running [`Server`] from any thread, and reads its statistics;
/// cheap to clone.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    /// The server this handle stops.
    inner: Arc<Inner>,
}

/// One server's parts, each handed to the roles that need it.
#[derive(Debug)]
struct Inner {
    /// The listening sockets.
    listeners: Listeners,
    /// The configuration the server was made with.
    config: Arc<Config>,
    /// Connection slots and the registry of live client sockets.
    limits: Arc<Limits>,
    /// The phase and the client threads.
    stop: Arc<Stop>,
    /// What the accept loops and client threads count.
    counters: Arc<Counters>,
    /// The TLS state, when clients speak TLS.
    #[cfg(feature = "tls")]
    tls: Option<Arc<Tls>>,
}

impl Server {
    /// Binds every address of `config` and returns a server ready to run.
    ///
    /// # Errors
    ///
    /// Fails if a name cannot be resolved, if an address cannot be bound
    /// (`cannot listen on 127.0.0.1:8000: Address already in use`), or if a
    /// name yields no address the machine has.
    pub fn bind(config: &Config) -> io::Result<Server> {
        Server::new(Listeners::bind(config)?, config)
    }

    /// Serves listening sockets that the caller has already bound: an
    /// inherited socket, or one bound with options of its own; TCP or Unix
    /// ([`Listener`]). `config.bind`, `config.port`, `config.reuse_port`,
    /// `config.unix` and `config.unix_mode` are not used; with
    /// `config.udp`, a UDP socket is bound beside each TCP listener.
    ///
    /// Such a socket may be shared with another process, such as the
    /// service manager that passed it: stopping leaves it listening, and
    /// clients still queued on it are left for the next instance.
    ///
    /// # Errors
    ///
    /// Fails if there is no listener, if one cannot report its address,
    /// or if a UDP socket cannot be bound.
    pub fn from_listeners<L: Into<Listener>>(
        listeners: impl IntoIterator<Item = L>,
        config: &Config,
    ) -> io::Result<Server> {
        let listeners = listeners.into_iter().map(Into::into).collect();
        Server::new(Listeners::inherit(listeners, config.udp)?, config)
    }

    /// A server on `listeners`.
    fn new(listeners: Listeners, config: &Config) -> io::Result<Server> {
        let limits = Limits::new(config.max_connections, config.max_connections_per_ip);
        #[cfg(feature = "tls")]
        let tls = match &config.tls {
            Some(settings) => Some(Arc::new(Tls::new(settings, &config.bind)?)),
            None => None,
        };
        #[cfg(not(feature = "tls"))]
        let tls: Option<()> = None;
        Ok(Server {
            inner: Arc::new(Inner {
                listeners,
                config: Arc::new(config.clone()),
                limits: Arc::new(limits),
                stop: Arc::new(Stop::new()),
                counters: Arc::new(Counters::new(config.udp, tls.is_some())),
                #[cfg(feature = "tls")]
                tls,
            }),
        })
    }

    /// The SHA-256 fingerprint of the TLS certificate new clients get, as
    /// `openssl x509 -fingerprint -sha256` prints it; `None` without TLS.
    #[cfg(feature = "tls")]
    pub fn tls_fingerprint(&self) -> Option<String> {
        self.inner.tls.as_ref().map(|tls| tls.fingerprint())
    }

    /// The TCP addresses the server listens on, with the ports actually
    /// bound.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        self.inner.listeners.tcp_addrs()
    }

    /// Everything the server listens on: its TCP listeners, its Unix
    /// sockets, then its UDP sockets.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.inner.listeners.endpoints()
    }

    /// A handle that stops this server and reads its statistics.
    pub fn handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Serves clients until a [`ShutdownHandle`] stops the server, then
    /// closes every client (after the drain, if one was asked for), waits
    /// until every client thread has finished with its socket, and returns
    /// the final statistics.
    ///
    /// # Errors
    ///
    /// Fails if a listening socket stops working (not for a client's error,
    /// nor for a lack of descriptors or memory, which are waited out). The
    /// server is stopped and its clients closed before the error is returned.
    pub fn run(self) -> io::Result<Stats> {
        let inner = &self.inner;
        let result = thread::scope(|scope| {
            if let Some(timeout) = inner.config.idle_timeout {
                thread::Builder::new()
                    .name("echo-idle".to_owned())
                    .spawn_scoped(scope, move || {
                        idle::watch(&inner.limits, &inner.stop, timeout)
                    })?;
            }
            for (index, socket) in inner.listeners.udp_sockets().iter().enumerate() {
                let guard = Guard::new(Arc::clone(&inner.config));
                thread::Builder::new()
                    .name(format!("echo-udp-{index}"))
                    .spawn_scoped(scope, move || {
                        udp::serve(socket, guard, &inner.stop, &inner.counters);
                    })
                    .inspect_err(|_| inner.close())?;
            }
            let result = inner.accept_all(scope);
            inner.stop.wait_drained();
            // Ends the watchdog too, which the scope waits for.
            inner.close();
            result
        });
        inner.close();
        inner.stop.wait_stopped();
        inner.listeners.remove_files();
        result.map(|()| inner.stats())
    }
}

impl Inner {
    /// Runs the spawner and one accept loop per listener until every loop
    /// has ended, then hands the spawner the clients a drain took from the
    /// listen queues, and waits for it to start their threads.
    fn accept_all<'scope>(
        &'scope self,
        scope: &'scope thread::Scope<'scope, '_>,
    ) -> io::Result<()> {
        let (to_spawner, admitted) = mpsc::channel();
        let handler = Handler::new(
            Arc::clone(&self.config),
            Arc::clone(&self.counters),
            Arc::clone(&self.stop),
        );
        #[cfg(feature = "tls")]
        let handler = handler.with_tls(self.tls.clone());
        let handler = Arc::new(handler);
        let spawner = thread::Builder::new()
            .name("echo-spawner".to_owned())
            .spawn_scoped(scope, move || {
                accept::spawn_loop(&handler, &self.stop, &self.counters, &admitted);
            })?;
        let admission = Admission {
            config: &self.config,
            stop: &self.stop,
            limits: &self.limits,
            counters: &self.counters,
            listeners: &self.listeners,
        };
        let loops = self
            .listeners
            .sockets()
            .iter()
            .enumerate()
            .map(|(index, _)| {
                let to_spawner = to_spawner.clone();
                thread::Builder::new()
                    .name(format!("echo-accept-{index}"))
                    .spawn_scoped(scope, move || {
                        let result = admission.accept_loop(index, &to_spawner);
                        if result.is_err() {
                            // A dead listener ends the whole server, as a
                            // half-served address would surprise its users.
                            self.close();
                        }
                        result
                    })
            })
            .collect::<io::Result<Vec<_>>>()
            .inspect_err(|_| self.close())?;
        let result = loops.into_iter().try_for_each(|accept| {
            accept
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("accept loop panicked")))
        });
        for client in self.listeners.take_queued_clients() {
            admission.after_stop(client, &to_spawner);
        }
        // The spawner ends once every sender is gone.
        drop(to_spawner);
        spawner
            .join()
            .map_err(|_| io::Error::other("spawner panicked"))?;
        result
    }

    /// Stops accepting, letting clients go on until `until`; only the first
    /// stop decides.
    fn drain(&self, until: Instant) {
        self.listeners
            .stop_accepting(true, || self.stop.drain(until, self.limits.counts().0));
    }

    /// Stops accepting if the server still was, and closes every client.
    fn close(&self) {
        self.listeners.stop_accepting(false, || {
            let active = self.limits.counts().0;
            self.stop.close(active, || self.limits.close_all()) == Phase::Running
        });
    }

    /// The statistics now.
    fn stats(&self) -> Stats {
        self.counters.stats(
            self.limits.counts(),
            self.stop.phase() != Phase::Running,
            self.stop.counts(),
        )
    }
}

impl ShutdownHandle {
    /// Stops the server: no client is accepted after this, every connected
    /// client is closed, and [`Server::run`] returns once their threads have
    /// finished. Returns at once; calling it again does nothing.
    pub fn shutdown(&self) {
        self.inner.close();
    }

    /// Stops accepting at once but lets connected clients go on until they
    /// leave or `timeout` has passed; then closes the rest, and
    /// [`Server::run`] returns. A later [`shutdown`](Self::shutdown) closes
    /// them at once.
    pub fn drain(&self, timeout: std::time::Duration) {
        self.inner.drain(Instant::now() + timeout);
    }

    /// Whether shutdown or a drain has been asked for.
    pub fn is_shutdown(&self) -> bool {
        self.inner.stop.phase() != Phase::Running
    }

    /// The server's statistics now.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// Rereads the TLS certificate and key files: new clients get the new
    /// pair, connected clients keep theirs. Returns the new certificate's
    /// fingerprint, or `None` when there is nothing to reread (no TLS, or a
    /// throwaway certificate).
    ///
    /// # Errors
    ///
    /// Fails, keeping the pair in use, if the files cannot be read or do
    /// not match.
    #[cfg(feature = "tls")]
    pub fn reload_tls(&self) -> io::Result<Option<String>> {
        match &self.inner.tls {
            Some(tls) => tls.reload(),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpStream};
    use std::num::NonZeroUsize;
    use std::sync::mpsc::Receiver;
    use std::time::Duration;

    /// How long any test socket operation or wait may take.
    const TIMEOUT: Duration = Duration::from_secs(10);

    /// A server with `config` on 127.0.0.1, port 0, running on a thread of
    /// its own; its handle, address, and where run()'s result arrives.
    fn start(config: Config) -> (ShutdownHandle, SocketAddr, Receiver<io::Result<Stats>>) {
        let config = Config {
            bind: vec!["127.0.0.1".to_owned()],
            port: 0,
            ..config
        };
        let server = Server::bind(&config).unwrap();
        let (handle, addr) = (server.handle(), server.local_addrs()[0]);
        let (result, receiver) = mpsc::channel();
        thread::spawn(move || result.send(server.run()));
        (handle, addr, receiver)
    }

    fn connect(addr: SocketAddr) -> TcpStream {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        stream
    }

    fn assert_echoes(stream: &mut TcpStream, message: &[u8]) {
        stream.write_all(message).unwrap();
        let mut reply = vec![0; message.len()];
        stream.read_exact(&mut reply).unwrap();
        assert_eq!(reply, message);
    }

    /// Whether the server closed `stream`: EOF or a reset.
    fn closed(stream: &mut TcpStream) -> bool {
        match stream.read(&mut [0; 16]) {
            Ok(read) => read == 0,
            Err(error) => error.kind() == io::ErrorKind::ConnectionReset,
        }
    }

    fn stopped(result: &Receiver<io::Result<Stats>>) -> Stats {
        result.recv_timeout(TIMEOUT).unwrap().unwrap()
    }

    #[test]
    fn shutdown_closes_connected_clients_and_counts_them_cut() {
        let (handle, addr, result) = start(Config::default());
        let mut client = connect(addr);
        assert_echoes(&mut client, b"before");
        handle.shutdown();
        assert!(closed(&mut client));
        let stats = stopped(&result);
        assert_eq!((stats.accepted, stats.cut, stats.drained), (1, 1, 0));
        assert!(stats.stopping && handle.is_shutdown());
    }

    #[test]
    fn a_drain_serves_a_connected_client_until_it_leaves() {
        let (handle, addr, result) = start(Config::default());
        let mut client = connect(addr);
        assert_echoes(&mut client, b"before");
        handle.drain(TIMEOUT * 6);
        assert_echoes(&mut client, b"during the drain");
        client.shutdown(Shutdown::Write).unwrap();
        assert!(closed(&mut client));
        let stats = stopped(&result);
        assert_eq!((stats.drained, stats.cut), (1, 0));
        assert_eq!(stats.bytes_echoed, 22);
    }

    #[test]
    fn a_shutdown_during_a_drain_closes_the_clients_at_once() {
        let (handle, addr, result) = start(Config::default());
        let mut client = connect(addr);
        assert_echoes(&mut client, b"x");
        handle.drain(TIMEOUT * 6);
        handle.shutdown();
        assert!(closed(&mut client));
        assert_eq!(stopped(&result).cut, 1);
    }

    #[test]
    fn a_client_over_the_limit_is_closed_and_counted_rejected() {
        let config = Config {
            max_connections: NonZeroUsize::new(1),
            ..Config::default()
        };
        let (handle, addr, result) = start(config);
        let mut first = connect(addr);
        assert_echoes(&mut first, b"served");
        let mut second = connect(addr);
        assert!(closed(&mut second));
        assert_eq!(handle.stats().rejected, 1);
        assert_eq!(handle.stats().active, 1);
        handle.shutdown();
        assert_eq!(stopped(&result).peak, 1);
    }

    #[test]
    fn the_idle_watchdog_closes_a_client_that_does_nothing() {
        let config = Config {
            idle_timeout: Some(Duration::from_millis(100)),
            ..Config::default()
        };
        let (handle, addr, result) = start(config);
        let mut busy = connect(addr);
        let mut idle = connect(addr);
        assert_echoes(&mut busy, b"x");
        assert!(closed(&mut idle));
        handle.shutdown();
        assert_eq!(stopped(&result).accepted, 2);
    }
}
