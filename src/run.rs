//! The run loop: the only place where the library meets sockets and the clock.
//!
//! [`ServerState`] and [`ClientState`] are sans-IO state machines (see the
//! crate docs). Both binaries drive theirs with the same [`Driver`], one
//! [`Driver::step`] at a time:
//!
//! 1. **Flush**: every [`Machine::poll_transmit`] goes out with `send_to`. A
//!    failed send (`ECONNREFUSED` from an earlier ICMP error, no route, a full
//!    buffer ...) is counted in [`DriverStats::send_errors`], reported to the
//!    [trace hook](Driver::set_trace) and otherwise ignored: UDP may lose any
//!    datagram, and the machines retransmit what matters.
//! 2. **Wait**: the socket's read timeout is set from
//!    [`Machine::poll_timeout`], at least [`MIN_WAIT`] and at most the
//!    driver's maximum wait ([`DEFAULT_MAX_WAIT`] unless
//!    [set](Driver::set_max_wait)), so a caller polling other inputs hears of
//!    them within that bound even if nothing wakes it.
//! 3. **Receive**: one `recv_from` into a reused [`RECV_BUFFER`]-byte buffer.
//!    A datagram longer than [`MAX_DATAGRAM`](crate::codec::MAX_DATAGRAM) is
//!    still handed in (the codec refuses it, and the machine counts it);
//!    one longer than the buffer arrives truncated, which the codec refuses
//!    just the same.
//! 4. **Feed**: the datagram goes to [`Machine::handle_datagram`] with
//!    `Instant::now()`; whenever the deadline from step 2 has passed,
//!    [`Machine::handle_timeout`] runs too (after the datagram), so timers
//!    fire even under a flood. Then the transmits are flushed again.
//!
//! `step` then returns, and the caller drains the machine's events
//! (`poll_event`) and acts on its other inputs (terminal lines, a stop flag)
//! before calling `step` again; whatever those inputs made the machine want to
//! send goes out at the start of the next step.
//!
//! # Waking the loop
//!
//! A thread that hands the loop work (the client's terminal reader, a Ctrl-C
//! handler) calls [`Waker::wake`] after queueing it. The waker is a second UDP
//! socket on the loopback interface, connected to the driver's socket; its
//! one-byte datagram ends the driver's wait at once. The driver knows the
//! waker's exact source address, returns [`Step::Woken`] for such a datagram
//! and never shows it to the machine. (A forged datagram with that source
//! address can only cause a spurious wake-up, which is harmless.) At most
//! one wake datagram is in flight between two steps.
//!
//! # Addresses
//!
//! A dual-stack IPv6 socket ([`bind`] of `[::]`) sees IPv4 peers as
//! IPv4-mapped addresses (`::ffff:a.b.c.d`). The driver hands the machines
//! plain IPv4 addresses instead, and maps IPv4 destinations back when sending
//! on an IPv6 socket, so a machine sees one address per peer whichever socket
//! family the process happens to use.

#[cfg(unix)]
pub mod keystore;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::Transmit;
use crate::client::ClientState;
use crate::server::{ServerConfig, ServerState};

/// The shortest read timeout the driver sets.
pub const MIN_WAIT: Duration = Duration::from_millis(1);

/// The longest the driver waits for a datagram by default when the machine
/// has no earlier deadline.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_millis(500);

/// Size of the receive buffer; larger than any valid datagram, so that an
/// oversized one is seen (and refused by the codec) rather than silently cut
/// to a valid length.
pub const RECV_BUFFER: usize = 2048;

/// A sans-IO state machine the driver can run: the four calls shared by
/// [`ServerState`] and [`ClientState`] (their `poll_event`s differ, and are the
/// caller's business).
pub trait Machine {
    /// A datagram arrived from `from` at `now`.
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]);
    /// The time from [`Machine::poll_timeout`] has come; spurious calls are
    /// no-ops.
    fn handle_timeout(&mut self, now: Instant);
    /// The next datagram to send, if any.
    fn poll_transmit(&mut self) -> Option<Transmit>;
    /// When to call [`Machine::handle_timeout`] next; `None` means never.
    fn poll_timeout(&self) -> Option<Instant>;
}

impl Machine for ServerState {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        ServerState::handle_datagram(self, now, from, datagram);
    }
    fn handle_timeout(&mut self, now: Instant) {
        ServerState::handle_timeout(self, now);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        ServerState::poll_transmit(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        ServerState::poll_timeout(self)
    }
}

impl Machine for ClientState {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        ClientState::handle_datagram(self, now, from, datagram);
    }
    fn handle_timeout(&mut self, now: Instant) {
        ClientState::handle_timeout(self, now);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        ClientState::poll_transmit(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        ClientState::poll_timeout(self)
    }
}

/// Fills `buf` from the operating system's random source.
fn os_random(buf: &mut [u8]) -> io::Result<()> {
    getrandom::fill(buf)
        .map_err(|e| io::Error::other(format!("no randomness from the operating system: {e}")))
}

impl ServerConfig {
    /// The defaults ([`ServerConfig::with_secret`]) with a secret from the
    /// operating system's random source: what a real server should use.
    pub fn from_os_entropy() -> io::Result<ServerConfig> {
        let mut secret = [0u8; 16];
        os_random(&mut secret)?;
        Ok(ServerConfig::with_secret(secret))
    }
}

/// A seed for [`ClientState::new`] from the operating system's random source:
/// what a real client should use (tests pick theirs, for replay).
pub fn os_seed() -> io::Result<u64> {
    let mut seed = [0u8; 8];
    os_random(&mut seed)?;
    Ok(u64::from_le_bytes(seed))
}

/// 32 bytes from the operating system's random source: a seed for a key
/// pair ([`crate::crypto::StaticKeypair::generate`]) or a handshake.
pub fn os_seed32() -> io::Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    os_random(&mut seed)?;
    Ok(seed)
}

/// Binds a UDP socket to `addr`. For the IPv6 unspecified address (`[::]`)
/// the socket is made dual-stack (`IPV6_V6ONLY` off), so it serves IPv4 and
/// IPv6 on one port; any other address binds as given.
pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let domain = match addr {
        SocketAddr::V4(_) => Domain::IPV4,
        SocketAddr::V6(_) => Domain::IPV6,
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        socket.set_only_v6(false)?;
    }
    socket.bind(&SockAddr::from(addr))?;
    Ok(socket.into())
}

/// Binds every interface on `port`: a dual-stack `[::]` socket, or
/// `0.0.0.0` where the system has no IPv6. A port already in use is an error
/// (`io::ErrorKind::AddrInUse`), not a reason to fall back.
pub fn bind_all(port: u16) -> io::Result<UdpSocket> {
    match bind(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)) {
        Ok(socket) => Ok(socket),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(e),
        Err(_) => bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)),
    }
}

/// `addr` with an IPv4-mapped IPv6 address turned into plain IPv4.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// `addr` in the form a socket of the given family can send to: IPv4 mapped
/// into IPv6 for an IPv6 socket; unchanged otherwise (an IPv6 destination
/// on an IPv4 socket then fails to send, and is counted).
fn for_socket(addr: SocketAddr, socket_is_v6: bool) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) if socket_is_v6 => {
            SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
        }
        _ => addr,
    }
}

/// What one [`Driver::step`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A datagram of `len` bytes from `from` was handed to the machine (a
    /// timeout may have been handled too).
    Datagram {
        /// Its (canonical) source address.
        from: SocketAddr,
        /// Its length.
        len: usize,
    },
    /// A [`Waker`] ended the wait: look at the other inputs.
    Woken,
    /// The machine's deadline came and `handle_timeout` ran.
    Timeout,
    /// The wait ended with nothing to do (the maximum wait, a signal, an
    /// ignored receive error).
    Idle,
}

/// Something the driver did, for logging (see [`Driver::set_trace`]).
#[derive(Debug)]
pub enum Trace<'a> {
    /// A datagram arrived and is about to be handed to the machine.
    Received {
        /// Its (canonical) source address.
        from: SocketAddr,
        /// Its bytes (at most [`RECV_BUFFER`]).
        datagram: &'a [u8],
    },
    /// A datagram was sent.
    Sent {
        /// Its destination, as the machine gave it.
        to: SocketAddr,
        /// Its bytes.
        datagram: &'a [u8],
    },
    /// A send failed; the datagram is dropped.
    SendFailed {
        /// Its destination, as the machine gave it.
        to: SocketAddr,
        /// Why.
        error: &'a io::Error,
    },
}

/// Counters of the driver's socket work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Datagrams sent.
    pub sent: u64,
    /// Sends that failed (the datagrams were dropped).
    pub send_errors: u64,
    /// Datagrams received and handed to the machine.
    pub received: u64,
    /// Receive errors ignored (connection refused or reset by an earlier
    /// ICMP error, interrupted calls).
    pub receive_errors: u64,
    /// Wake-up datagrams received.
    pub wakes: u64,
}

/// The trace hook's type.
type TraceHook = Box<dyn FnMut(Trace<'_>) + Send>;

/// Runs a [`Machine`] on a UDP socket. See the [module docs](self).
pub struct Driver {
    socket: UdpSocket,
    socket_is_v6: bool,
    local: SocketAddr,
    buf: Vec<u8>,
    max_wait: Duration,
    waker: Option<Waker>,
    /// The waker socket's address, as datagrams from it arrive.
    waker_from: Option<SocketAddr>,
    stats: DriverStats,
    trace: Option<TraceHook>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("local", &self.local)
            .field("max_wait", &self.max_wait)
            .field("waker_from", &self.waker_from)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// A driver for a bound `socket` (see [`bind`]). The socket's read
    /// timeout is the driver's from now on.
    pub fn new(socket: UdpSocket) -> io::Result<Driver> {
        let local = socket.local_addr()?;
        Ok(Driver {
            socket,
            socket_is_v6: local.is_ipv6(),
            local,
            buf: vec![0; RECV_BUFFER],
            max_wait: DEFAULT_MAX_WAIT,
            waker: None,
            waker_from: None,
            stats: DriverStats::default(),
            trace: None,
        })
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The counters so far.
    pub fn stats(&self) -> DriverStats {
        self.stats
    }

    /// Caps the wait of one step at `max_wait` (at least [`MIN_WAIT`]): the
    /// longest a caller goes without a look at its other inputs when nothing
    /// wakes it.
    pub fn set_max_wait(&mut self, max_wait: Duration) {
        self.max_wait = max_wait.max(MIN_WAIT);
    }

    /// Calls `trace` for every datagram received and sent and every failed
    /// send (the server's `-v`).
    pub fn set_trace(&mut self, trace: impl FnMut(Trace<'_>) + Send + 'static) {
        self.trace = Some(Box::new(trace));
    }

    /// A [`Waker`] for this driver (made on first call, then shared): a
    /// loopback socket connected to the driver's socket.
    ///
    /// Fails if no loopback address can reach the driver's socket (it is
    /// bound to an address the host cannot send to itself).
    pub fn waker(&mut self) -> io::Result<Waker> {
        if let Some(waker) = &self.waker {
            return Ok(waker.clone());
        }
        let ip = self.local.ip();
        let targets: Vec<IpAddr> = if !ip.is_unspecified() {
            vec![ip]
        } else if ip.is_ipv6() {
            // A dual-stack socket is reachable through either loopback.
            vec![Ipv6Addr::LOCALHOST.into(), Ipv4Addr::LOCALHOST.into()]
        } else {
            vec![Ipv4Addr::LOCALHOST.into()]
        };
        let mut last_error = io::Error::new(io::ErrorKind::AddrNotAvailable, "no loopback");
        for target in targets {
            let unspecified: IpAddr = match target {
                IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
                IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
            };
            let attempt = UdpSocket::bind(SocketAddr::new(unspecified, 0)).and_then(|socket| {
                socket.connect(SocketAddr::new(target, self.local.port()))?;
                // After connect, the local address is the concrete source
                // the driver will see.
                let from = canonical(socket.local_addr()?);
                Ok((socket, from))
            });
            match attempt {
                Ok((socket, from)) => {
                    let waker = Waker {
                        socket: Arc::new(socket),
                        pending: Arc::new(AtomicBool::new(false)),
                    };
                    self.waker = Some(waker.clone());
                    self.waker_from = Some(from);
                    return Ok(waker);
                }
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    /// Sends everything the machine has to send.
    pub fn flush<M: Machine + ?Sized>(&mut self, machine: &mut M) {
        while let Some(transmit) = machine.poll_transmit() {
            let to = for_socket(transmit.destination, self.socket_is_v6);
            match self.socket.send_to(&transmit.payload, to) {
                Ok(_) => {
                    self.stats.sent += 1;
                    if let Some(trace) = &mut self.trace {
                        trace(Trace::Sent {
                            to: transmit.destination,
                            datagram: &transmit.payload,
                        });
                    }
                }
                Err(error) => {
                    self.stats.send_errors += 1;
                    if let Some(trace) = &mut self.trace {
                        trace(Trace::SendFailed {
                            to: transmit.destination,
                            error: &error,
                        });
                    }
                }
            }
        }
    }

    /// One turn of the loop: flush, wait for a datagram until the machine's
    /// deadline (bounded as the module docs say), hand in what came, handle
    /// the deadline if it has passed, flush again.
    ///
    /// Errors are only those that make the socket unusable; the ordinary
    /// failures of UDP are counted and survived.
    pub fn step<M: Machine + ?Sized>(&mut self, machine: &mut M) -> io::Result<Step> {
        self.flush(machine);
        let deadline = machine.poll_timeout();
        let wait = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => self.max_wait,
        }
        .clamp(MIN_WAIT, self.max_wait);
        self.socket.set_read_timeout(Some(wait))?;
        let received = match self.socket.recv_from(&mut self.buf) {
            Ok((len, from)) => Some((len, canonical(from))),
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => None,
                io::ErrorKind::Interrupted
                | io::ErrorKind::ConnectionRefused
                | io::ErrorKind::ConnectionReset => {
                    self.stats.receive_errors += 1;
                    None
                }
                _ => return Err(e),
            },
        };
        let now = Instant::now();
        let mut step = Step::Idle;
        if let Some((len, from)) = received {
            if Some(from) == self.waker_from {
                self.stats.wakes += 1;
                step = Step::Woken;
            } else {
                // `recv_from` never reports more than the buffer holds.
                let datagram = self.buf.get(..len).unwrap_or(&self.buf);
                self.stats.received += 1;
                if let Some(trace) = &mut self.trace {
                    trace(Trace::Received { from, datagram });
                }
                machine.handle_datagram(now, from, datagram);
                step = Step::Datagram { from, len };
            }
        }
        if deadline.is_some_and(|d| now >= d) {
            machine.handle_timeout(now);
            if step == Step::Idle {
                step = Step::Timeout;
            }
        }
        self.flush(machine);
        if let Some(waker) = &self.waker {
            // The caller looks at its inputs after every step, so any wake
            // requested before this point is served; later ones send anew.
            waker.pending.store(false, Ordering::Release);
        }
        Ok(step)
    }

    /// Steps until `after` breaks: after every step, `after` gets the
    /// machine (to drain its events and feed it other inputs) and what the
    /// step saw.
    pub fn run<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        mut after: impl FnMut(&mut M, Step) -> ControlFlow<()>,
    ) -> io::Result<()> {
        loop {
            let step = self.step(machine)?;
            if after(machine, step).is_break() {
                // Whatever the last inputs asked for still goes out.
                self.flush(machine);
                return Ok(());
            }
        }
    }
}

/// Ends a [`Driver`]'s wait from another thread. Cheap to clone; `Send` and
/// `Sync`.
#[derive(Debug, Clone)]
pub struct Waker {
    socket: Arc<UdpSocket>,
    /// A wake datagram was sent since the driver's last step ended.
    pending: Arc<AtomicBool>,
}

impl Waker {
    /// Makes the driver's current (or next) wait end promptly. Queue the
    /// work first, then wake. Never blocks; a failed send is ignored (the
    /// driver still looks at its inputs within its maximum wait).
    pub fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) && self.socket.send(&[0]).is_err() {
            self.pending.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Packet;
    use crate::server::ServerConfig;
    use bytes::Bytes;
    use std::collections::VecDeque;

    /// A machine that records what it is given and sends what it is told to.
    #[derive(Default)]
    struct Probe {
        datagrams: Vec<(SocketAddr, Vec<u8>)>,
        timeouts: Vec<Instant>,
        deadline: Option<Instant>,
        out: VecDeque<Transmit>,
    }

    impl Machine for Probe {
        fn handle_datagram(&mut self, _now: Instant, from: SocketAddr, datagram: &[u8]) {
            self.datagrams.push((from, datagram.to_vec()));
        }
        fn handle_timeout(&mut self, now: Instant) {
            self.timeouts.push(now);
            self.deadline = None;
        }
        fn poll_transmit(&mut self) -> Option<Transmit> {
            self.out.pop_front()
        }
        fn poll_timeout(&self) -> Option<Instant> {
            self.deadline
        }
    }

    fn loopback_driver() -> Driver {
        let socket = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        Driver::new(socket).unwrap()
    }

    /// Steps until `done` or two seconds pass.
    fn step_until(driver: &mut Driver, m: &mut impl Machine, done: impl Fn(Step) -> bool) -> Step {
        let give_up = Instant::now() + Duration::from_secs(2);
        loop {
            let step = driver.step(m).unwrap();
            if done(step) {
                return step;
            }
            assert!(
                Instant::now() < give_up,
                "gave up waiting; last step {step:?}"
            );
        }
    }

    #[test]
    fn hands_in_datagrams_even_oversized_and_sends_transmits() {
        let mut driver = loopback_driver();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let peer_addr = peer.local_addr().unwrap();
        let mut m = Probe::default();
        m.out.push_back(Transmit {
            destination: peer_addr,
            payload: Bytes::from_static(b"hello"),
        });
        peer.send_to(&[7; 1500], driver.local_addr()).unwrap();
        let step = step_until(&mut driver, &mut m, |s| matches!(s, Step::Datagram { .. }));
        assert_eq!(
            step,
            Step::Datagram {
                from: peer_addr,
                len: 1500
            }
        );
        assert_eq!(m.datagrams, vec![(peer_addr, vec![7; 1500])]);
        let mut buf = [0; 16];
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"hello"[..], driver.local_addr()));
        assert_eq!(driver.stats().sent, 1);
        assert_eq!(driver.stats().received, 1);
    }

    #[test]
    fn fires_the_deadline_and_not_before() {
        let mut driver = loopback_driver();
        let start = Instant::now();
        let deadline = start + Duration::from_millis(30);
        let mut m = Probe {
            deadline: Some(deadline),
            ..Probe::default()
        };
        let step = step_until(&mut driver, &mut m, |s| s == Step::Timeout);
        assert_eq!(step, Step::Timeout);
        assert_eq!(m.timeouts.len(), 1);
        assert!(m.timeouts[0] >= deadline);
        assert!(m.timeouts[0] < start + Duration::from_secs(1));
    }

    #[test]
    fn a_past_deadline_still_waits_at_least_min_wait_and_fires() {
        let mut driver = loopback_driver();
        let mut m = Probe {
            deadline: Some(Instant::now()),
            ..Probe::default()
        };
        assert_eq!(driver.step(&mut m).unwrap(), Step::Timeout);
        assert_eq!(m.timeouts.len(), 1);
    }

    #[test]
    fn waker_ends_the_wait_at_once_and_is_not_handed_in() {
        let mut driver = loopback_driver();
        driver.set_max_wait(Duration::from_secs(10));
        let waker = driver.waker().unwrap();
        let mut m = Probe::default();
        let start = Instant::now();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            waker.wake();
            waker.wake(); // coalesced: at most one in flight
        });
        assert_eq!(driver.step(&mut m).unwrap(), Step::Woken);
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(m.datagrams.is_empty());
        thread.join().unwrap();
        // Woken again later, without a second datagram queued.
        let waker = driver.waker().unwrap();
        waker.wake();
        assert_eq!(driver.step(&mut m).unwrap(), Step::Woken);
        assert_eq!(driver.stats().wakes, 2);
    }

    #[test]
    fn dual_stack_socket_shows_ipv4_peers_as_ipv4() {
        let Ok(socket) = bind("[::]:0".parse().unwrap()) else {
            return; // No IPv6 on this host.
        };
        let mut driver = Driver::new(socket).unwrap();
        let waker = driver.waker().unwrap();
        let port = driver.local_addr().port();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let peer_addr = peer.local_addr().unwrap();
        peer.send_to(b"x", ("127.0.0.1", port)).unwrap();
        let mut m = Probe::default();
        let step = step_until(&mut driver, &mut m, |s| matches!(s, Step::Datagram { .. }));
        assert_eq!(
            step,
            Step::Datagram {
                from: peer_addr,
                len: 1
            }
        );
        // And a reply to the plain IPv4 address reaches it.
        m.out.push_back(Transmit {
            destination: peer_addr,
            payload: Bytes::from_static(b"y"),
        });
        waker.wake();
        step_until(&mut driver, &mut m, |s| s == Step::Woken);
        let mut buf = [0; 4];
        assert_eq!(peer.recv_from(&mut buf).unwrap().0, 1);
    }

    #[test]
    fn send_errors_are_counted_not_fatal() {
        let mut driver = loopback_driver();
        let mut m = Probe::default();
        // An IPv6 destination cannot be reached from an IPv4 socket.
        m.out.push_back(Transmit {
            destination: "[2001:db8::1]:9".parse().unwrap(),
            payload: Bytes::from_static(b"z"),
        });
        driver.set_max_wait(MIN_WAIT);
        driver.step(&mut m).unwrap();
        assert_eq!(driver.stats().send_errors, 1);
    }

    #[test]
    fn drives_a_real_server_state() {
        let mut driver = loopback_driver();
        let mut server = ServerState::new(ServerConfig::with_secret([3; 16]), Instant::now());
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let sign_in = Packet::SignIn {
            request: 1,
            name: "Alice",
            cookie: &[],
        }
        .to_bytes()
        .unwrap();
        client.send_to(&sign_in, driver.local_addr()).unwrap();
        step_until(&mut driver, &mut server, |s| {
            matches!(s, Step::Datagram { .. })
        });
        let mut buf = [0; RECV_BUFFER];
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert!(matches!(
            Packet::decode(&buf[..n]),
            Ok(Packet::Retry { request: 1, .. })
        ));
    }
}
