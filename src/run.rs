//! The run loop: the only place where the library meets sockets and the clock.
//!
//! [`ServerState`] and [`ClientState`] are sans-IO state machines (see the
//! crate docs). Both binaries drive theirs with the same [`Driver`], one
//! [`Driver::step`] at a time:
//!
//! 1. **Flush**: every [`Machine::poll_transmit`] goes out, up to [`BATCH`]
//!    datagrams a system call (`sendmmsg` on Linux and Android, `send_to`
//!    one at a time elsewhere), in the order the machine gave them. A
//!    failed send (`ECONNREFUSED` from an earlier ICMP error, no route ...)
//!    is counted in [`DriverStats::send_errors`], reported to the
//!    [trace hook](Driver::set_trace) and otherwise ignored: UDP may lose
//!    any datagram, and the machines retransmit what matters. A full send
//!    buffer makes the driver wait for room, so a burst is slowed down, not
//!    dropped.
//! 2. **Drain**: the socket is non-blocking; it is read until it reports
//!    `WouldBlock`, but at most [`MAX_DRAIN`] datagrams a step, so timers
//!    and the caller's other inputs still get their turn under a flood.
//!    Reads take up to [`BATCH`] datagrams a system call (`recvmmsg` on
//!    Linux and Android, `recv_from` elsewhere); each datagram goes to
//!    [`Machine::handle_datagram`] with the time its read returned, from a
//!    [`RECV_BUFFER`]-byte slot of its own: a datagram longer than
//!    [`MAX_DATAGRAM`](crate::codec::MAX_DATAGRAM) is still handed in (the
//!    codec refuses it, and the machine counts it); one longer than the
//!    slot arrives truncated, which the codec refuses just the same. What
//!    the machine wants to send after one read's datagrams goes out before
//!    the next read, so an answer waits for one batch's work, not a whole
//!    drain's.
//! 3. **Wait**: only when the socket was drained empty, the driver blocks
//!    in [`mio::Poll`] until the socket is readable, a [`LoopHandle`] wakes
//!    it, or the machine's deadline ([`Machine::poll_timeout`]) comes, at
//!    most the driver's maximum wait ([`DEFAULT_MAX_WAIT`] unless
//!    [set](Driver::set_max_wait)). Then it drains again. A step that read
//!    something does not wait, nor ask the poller: a wake is seen all the
//!    same ([`Step::woken`]).
//! 4. **Timers**: whenever the deadline has passed,
//!    [`Machine::handle_timeout`] runs (after the datagrams), so timers fire
//!    even under a flood. Then the transmits are flushed again.
//!
//! `step` then returns, and the caller drains the machine's events
//! (`poll_event`) and acts on its other inputs (terminal lines, a stop flag)
//! before calling `step` again; whatever those inputs made the machine want to
//! send goes out at the start of the next step. A program's whole loop:
//!
//! ```no_run
//! # use std::time::Instant;
//! # use udpchat::run::{self, Driver};
//! # use udpchat::server::{ServerConfig, ServerState};
//! # fn main() -> std::io::Result<()> {
//! let mut driver = Driver::new(run::bind_all(9090)?)?;
//! let identity = run::os_seed()?; // a real server keeps its identity in a file
//! let config = ServerConfig::from_os_entropy(identity)?;
//! let mut server = ServerState::new(config, Instant::now());
//! loop {
//!     driver.step(&mut server)?; // send, receive, wait, timers
//!     while let Some(event) = server.poll_event() {
//!         println!("{event:?}");
//!     }
//!     // Act on other inputs here: threads queue them and wake the loop
//!     // with a `LoopHandle` from `driver.handle()`.
//! }
//! # }
//! ```
//!
//! # Waking the loop
//!
//! A thread that hands the loop work (the client's terminal reader, a Ctrl-C
//! handler) queues it (a channel, a flag) and calls [`LoopHandle::wake`],
//! which ends the driver's current (or next) wait at once. That is the
//! operating system's mechanism made for it ([`mio::Waker`]: an eventfd on
//! Linux), never the data socket, so a wake neither queues behind datagrams
//! nor is lost when the socket's buffer is full.
//!
//! # Host candidates
//!
//! [`host_candidates`] lists where a client can be reached without a NAT in
//! between: its interface addresses (from the operating system) with the
//! port its socket is bound to. Set them in
//! [`ClientConfig::host_candidates`](crate::client::ClientConfig::host_candidates)
//! before creating the [`ClientState`]; the directory hands them to peers,
//! and a peer behind the same router then reaches the client on the LAN.
//!
//! # Addresses
//!
//! A dual-stack IPv6 socket ([`bind`] of `[::]`) sees IPv4 peers as
//! IPv4-mapped addresses (`::ffff:a.b.c.d`). The driver hands the machines
//! plain IPv4 addresses instead, and maps IPv4 destinations back when sending
//! on an IPv6 socket, so a machine sees one address per peer whichever socket
//! family the process happens to use.

mod batch;
#[cfg(unix)]
pub mod keystore;

pub use batch::BATCH;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use crate::Transmit;
use crate::client::ClientState;
use crate::codec::MAX_CANDIDATES;
use crate::server::{ServerConfig, ServerState};

/// The most datagrams one [`Driver::step`] reads before it runs timers and
/// returns to the caller.
pub const MAX_DRAIN: usize = 256;

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
    /// The defaults ([`ServerConfig::new`]) for the static secret `identity`,
    /// with the rest of the randomness fresh from the operating system:
    /// what a real server should use.
    pub fn from_os_entropy(identity: [u8; 32]) -> io::Result<ServerConfig> {
        Ok(ServerConfig::new(identity, os_seed()?))
    }
}

/// 32 bytes from the operating system's random source: the seed for
/// [`ClientState::new`], a new identity ([`crate::crypto::StaticKeypair`]'s
/// secret), a server's entropy. What real programs use; tests pick theirs,
/// for replay.
pub fn os_seed() -> io::Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    os_random(&mut seed)?;
    Ok(seed)
}

/// The receive buffer [`bind`] asks for: room for a burst of 256 requests
/// in flight and more (the kernel charges each datagram at the size of its
/// buffer, a couple of KiB, not its length).
pub const RECV_BUFFER_BYTES: usize = 1 << 20;

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
    set_recv_buffer(&socket);
    socket.bind(&SockAddr::from(addr))?;
    Ok(socket.into())
}

/// Asks for a receive buffer of [`RECV_BUFFER_BYTES`]: first with
/// `SO_RCVBUFFORCE` (Linux; only a process with `CAP_NET_ADMIN` may, and it
/// may exceed `net.core.rmem_max`), then with `SO_RCVBUF`, which the kernel
/// caps at `rmem_max`. Best effort: a smaller buffer only means more loss
/// under bursts. [`Driver::recv_buffer_size`] tells what was granted.
fn set_recv_buffer(socket: &socket2::Socket) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::os::fd::AsRawFd;
        let size = libc::c_int::try_from(RECV_BUFFER_BYTES).unwrap_or(libc::c_int::MAX);
        let len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4);
        // SAFETY: `size` is a live `c_int` of `len` bytes, read by the call.
        let forced = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                std::ptr::from_ref(&size).cast(),
                len,
            )
        };
        if forced == 0 {
            return;
        }
    }
    let _ = socket.set_recv_buffer_size(RECV_BUFFER_BYTES);
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

/// The addresses a client whose socket is bound to `local` can be reached
/// at without a NAT in between: its host candidates, for
/// [`ClientConfig::host_candidates`](crate::client::ClientConfig::host_candidates)
/// (pass [`Driver::local_addr`]). Registered with the directory, they let a
/// peer on the same network (behind the same router) reach the client
/// directly.
///
/// The interfaces that are up are read from the operating system, then
/// chosen as [`select_host_candidates`] says: a socket bound to one address
/// gives just that; `0.0.0.0` gives the IPv4 interface addresses, `[::]`
/// (dual-stack, as [`bind`] makes it) IPv4 and IPv6. Where the system does
/// not list its interfaces (a failure, or a platform this does not know),
/// an unspecified address gives none: that loses only the LAN paths.
pub fn host_candidates(local: SocketAddr) -> Vec<SocketAddr> {
    if local.ip().is_unspecified() {
        select_host_candidates(local, &interface_addresses())
    } else {
        select_host_candidates(local, &[])
    }
}

/// The host candidates of a socket bound to `local`, on a host whose
/// interfaces have the addresses `interfaces` (in the system's order): the
/// choice [`host_candidates`] makes, for a program that lists its
/// interfaces itself.
///
/// * `local` with a port of 0 (not bound yet) gives none.
/// * `local` with a specified address gives that address alone (an
///   IPv4-mapped one as plain IPv4): the socket receives nowhere else.
/// * `0.0.0.0` takes the IPv4 addresses of `interfaces`; `[::]` (taken as
///   dual-stack) takes IPv6 ones too, and IPv4 ones as plain IPv4
///   addresses, which is how peers see them.
/// * Loopback and link-local addresses (`127.0.0.0/8`, `169.254.0.0/16`,
///   `::1`, `fe80::/10`) only when there is nothing else: they reach no
///   other host on the LAN, but on a host without a network they are all
///   there is. Unspecified, multicast and broadcast addresses never.
/// * Each address once, at most [`MAX_CANDIDATES`] (what a sign-in
///   carries): IPv4 addresses first (the LAN paths behind home routers),
///   then global IPv6 (`2000::/3`, reachable without a NAT), then other
///   IPv6 (unique local `fc00::/7`, ...), each in the system's order.
pub fn select_host_candidates(local: SocketAddr, interfaces: &[IpAddr]) -> Vec<SocketAddr> {
    let port = local.port();
    if port == 0 {
        return Vec::new();
    }
    let bound = canonical(local).ip();
    if !bound.is_unspecified() {
        return vec![SocketAddr::new(bound, port)];
    }
    let dual_stack = bound.is_ipv6();
    let mut ranked: Vec<(CandidateRank, IpAddr)> = interfaces
        .iter()
        .map(|ip| ip.to_canonical())
        .filter(|ip| ip.is_ipv4() || dual_stack)
        .filter_map(|ip| Some((candidate_rank(ip)?, ip)))
        .collect();
    if ranked
        .iter()
        .any(|(rank, _)| *rank < CandidateRank::LocalV4)
    {
        ranked.retain(|(rank, _)| *rank < CandidateRank::LocalV4);
    }
    // Stable: within a rank, the system's order.
    ranked.sort_by_key(|(rank, _)| *rank);
    let mut candidates: Vec<SocketAddr> = Vec::with_capacity(MAX_CANDIDATES);
    for (_, ip) in ranked {
        let candidate = SocketAddr::new(ip, port);
        if !candidates.contains(&candidate) {
            candidates.push(candidate);
            if candidates.len() == MAX_CANDIDATES {
                break;
            }
        }
    }
    candidates
}

/// Which host candidates [`select_host_candidates`] prefers, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum CandidateRank {
    /// A private or public IPv4 address.
    V4,
    /// A global unicast IPv6 address (2000::/3).
    GlobalV6,
    /// Any other unicast IPv6 address (unique local, ...).
    OtherV6,
    /// IPv4 loopback or link-local: only when nothing above exists.
    LocalV4,
    /// IPv6 loopback or link-local: only when nothing above exists.
    LocalV6,
}

/// `ip`'s rank as a host candidate; `None` for an address nobody can send
/// to (unspecified, multicast, broadcast).
fn candidate_rank(ip: IpAddr) -> Option<CandidateRank> {
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast() {
                None
            } else if v4.is_loopback() || v4.is_link_local() {
                Some(CandidateRank::LocalV4)
            } else {
                Some(CandidateRank::V4)
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_unspecified() || v6.is_multicast() {
                None
            } else if v6.is_loopback() || v6.is_unicast_link_local() {
                Some(CandidateRank::LocalV6)
            } else if (v6.segments()[0] & 0xe000) == 0x2000 {
                Some(CandidateRank::GlobalV6)
            } else {
                Some(CandidateRank::OtherV6)
            }
        }
    }
}

/// The addresses of this host's interfaces that are up and running, in the
/// system's order, from `getifaddrs(3)`; none if it fails.
///
/// Why `libc` and a little `unsafe` here rather than a safe wrapper: this
/// module is the library's I/O and is built without the `cli` feature, so
/// `nix` (a CLI-only dependency, checked by CI) is not available, and
/// `libc` is in every Unix build already (through `mio`, `socket2` and
/// `getrandom`). The unsafe part is only walking the list the C library
/// hands out and reading the two address families we know.
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "openbsd"
))]
fn interface_addresses() -> Vec<IpAddr> {
    /// The list `getifaddrs` allocated, freed when dropped.
    struct IfAddrs(*mut libc::ifaddrs);
    impl Drop for IfAddrs {
        fn drop(&mut self) {
            // SAFETY: the pointer came from a successful `getifaddrs` and is
            // freed once, here; nothing borrowed from it outlives `self`.
            unsafe { libc::freeifaddrs(self.0) }
        }
    }

    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `getifaddrs` only writes `head`; on success (0) it points to a
    // list we own until `freeifaddrs`.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Vec::new();
    }
    let list = IfAddrs(head);
    let wanted = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_uint;
    let mut found = Vec::new();
    let mut node = list.0.cast_const();
    // SAFETY: every node, and the address each points to, is valid (or
    // null) until `list` is dropped at the end of this function.
    while let Some(ifa) = unsafe { node.as_ref() } {
        node = ifa.ifa_next;
        if ifa.ifa_flags & wanted != wanted {
            continue;
        }
        // SAFETY: as above; `ifa_addr` is null or a socket address of the
        // family it names, in storage of that family's size.
        if let Some(ip) = unsafe { sockaddr_ip(ifa.ifa_addr) } {
            found.push(ip);
        }
    }
    found
}

/// The IP address in the IPv4 or IPv6 socket address at `addr`; `None` for
/// a null pointer and other families.
///
/// # Safety
///
/// `addr` is null, or points to a `sockaddr` whose storage is as large as
/// its family's (`sockaddr_in` for `AF_INET`, `sockaddr_in6` for
/// `AF_INET6`).
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "openbsd"
))]
unsafe fn sockaddr_ip(addr: *const libc::sockaddr) -> Option<IpAddr> {
    // SAFETY: null or valid, by the contract.
    let family = i32::from(unsafe { addr.as_ref() }?.sa_family);
    match family {
        libc::AF_INET => {
            // SAFETY: an AF_INET address is a `sockaddr_in`, by the contract.
            let v4 = unsafe { addr.cast::<libc::sockaddr_in>().read_unaligned() };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))))
        }
        libc::AF_INET6 => {
            // SAFETY: an AF_INET6 address is a `sockaddr_in6`, by the contract.
            let v6 = unsafe { addr.cast::<libc::sockaddr_in6>().read_unaligned() };
            Some(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

/// On other platforms the interfaces are not listed (yet): an unspecified
/// socket gets no host candidates, and only the LAN paths are lost.
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "openbsd"
)))]
fn interface_addresses() -> Vec<IpAddr> {
    Vec::new()
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Step {
    /// Datagrams handed to the machine.
    pub received: usize,
    /// A [`LoopHandle`] ended the wait: look at the other inputs.
    pub woken: bool,
    /// The machine's deadline had passed and `handle_timeout` ran.
    pub timeout: bool,
}

/// Something the driver did, for logging (see [`Driver::set_trace`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum Trace<'a> {
    /// A datagram arrived and is about to be handed to the machine.
    Received {
        /// Its (canonical) source address.
        from: SocketAddr,
        /// Its bytes (at most [`RECV_BUFFER`]). Every datagram handed to the
        /// machine is traced first, one by one, batched reads or not.
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
#[non_exhaustive]
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
    /// Waits ended by a [`LoopHandle`].
    pub wakes: u64,
}

/// The trace hook's type.
type TraceHook = Box<dyn FnMut(Trace<'_>) + Send>;

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);

/// Runs a [`Machine`] on a UDP socket. See the [module docs](self).
pub struct Driver {
    socket: mio::net::UdpSocket,
    socket_is_v6: bool,
    local: SocketAddr,
    poll: Poll,
    events: Events,
    waker: Arc<mio::Waker>,
    /// Set by [`LoopHandle::wake`] before it wakes the poller: a busy step
    /// (one that does not wait) sees a wake without a system call.
    wake_flag: Arc<AtomicBool>,
    recv: batch::RecvBatch,
    /// The transmits of one send batch, each with its destination as the
    /// socket takes it; reused.
    out: Vec<(socket2::SockAddr, Transmit)>,
    max_wait: Duration,
    /// The last drain stopped at `MAX_DRAIN`, not at `WouldBlock`: the
    /// socket may hold more, and (edge-triggered) no event would say so.
    more_queued: bool,
    stats: DriverStats,
    trace: Option<TraceHook>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("local", &self.local)
            .field("max_wait", &self.max_wait)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// A driver for a bound `socket` (see [`bind`]). The socket is made
    /// non-blocking and belongs to the driver from now on.
    pub fn new(socket: UdpSocket) -> io::Result<Driver> {
        let local = socket.local_addr()?;
        socket.set_nonblocking(true)?;
        let mut socket = mio::net::UdpSocket::from_std(socket);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut socket, SOCKET, Interest::READABLE)?;
        let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER)?);
        Ok(Driver {
            socket,
            socket_is_v6: local.is_ipv6(),
            local,
            poll,
            events: Events::with_capacity(8),
            waker,
            wake_flag: Arc::new(AtomicBool::new(false)),
            recv: batch::RecvBatch::new(),
            out: Vec::with_capacity(BATCH),
            max_wait: DEFAULT_MAX_WAIT,
            more_queued: false,
            stats: DriverStats::default(),
            trace: None,
        })
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The socket's receive buffer as the kernel reports it: what [`bind`]
    /// obtained. (Linux reports double the size set, the part it keeps for
    /// its own bookkeeping included; it charges each datagram queued at the
    /// size of its buffer, a couple of KiB for a small one on loopback.)
    pub fn recv_buffer_size(&self) -> io::Result<usize> {
        socket2::SockRef::from(&self.socket).recv_buffer_size()
    }

    /// The counters so far.
    pub fn stats(&self) -> DriverStats {
        self.stats
    }

    /// Caps the wait of one step at `max_wait`: the longest a caller goes
    /// without a look at its other inputs when nothing wakes it.
    pub fn set_max_wait(&mut self, max_wait: Duration) {
        self.max_wait = max_wait;
    }

    /// Calls `trace` for every datagram received and sent and every failed
    /// send (the server's `-v`).
    pub fn set_trace(&mut self, trace: impl FnMut(Trace<'_>) + Send + 'static) {
        self.trace = Some(Box::new(trace));
    }

    /// A handle other threads use to end the driver's wait: queue work for
    /// the loop, then call [`LoopHandle::wake`].
    pub fn handle(&self) -> LoopHandle {
        LoopHandle {
            waker: Arc::clone(&self.waker),
            flag: Arc::clone(&self.wake_flag),
        }
    }

    /// Sends everything the machine has to send, [`BATCH`] datagrams a
    /// system call where the platform allows.
    pub fn flush<M: Machine + ?Sized>(&mut self, machine: &mut M) {
        loop {
            self.out.clear();
            while self.out.len() < BATCH {
                let Some(transmit) = machine.poll_transmit() else {
                    break;
                };
                let to = for_socket(transmit.destination, self.socket_is_v6);
                self.out.push((to.into(), transmit));
            }
            let full = self.out.len() == BATCH;
            self.send_out();
            if !full {
                return;
            }
        }
    }

    /// Sends [`Driver::out`] in order: a datagram whose send fails is
    /// counted and skipped; a full send buffer makes this wait, one
    /// datagram at a time, rather than drop.
    fn send_out(&mut self) {
        let mut next = 0;
        while let Some(rest) = self.out.get(next..).filter(|rest| !rest.is_empty()) {
            let result = match batch::send(&self.socket, rest) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    send_blocking(&self.socket, &rest[0]).map(|_| 1)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => other,
            };
            match result {
                Ok(sent) => {
                    let sent = sent.clamp(1, rest.len());
                    self.stats.sent += u64::try_from(sent).unwrap_or(u64::MAX);
                    if let Some(trace) = &mut self.trace {
                        for (_, transmit) in &rest[..sent] {
                            trace(Trace::Sent {
                                to: transmit.destination,
                                datagram: &transmit.payload,
                            });
                        }
                    }
                    next += sent;
                }
                Err(error) => {
                    self.stats.send_errors += 1;
                    if let Some(trace) = &mut self.trace {
                        trace(Trace::SendFailed {
                            to: rest[0].1.destination,
                            error: &error,
                        });
                    }
                    next += 1;
                }
            }
        }
        self.out.clear();
    }

    /// Reads and hands in datagrams until the socket is empty or
    /// [`MAX_DRAIN`] were read; how many were handed in. Reads [`BATCH`] a
    /// system call where the platform allows; the datagrams of one call are
    /// handed in with the time it returned.
    fn drain<M: Machine + ?Sized>(&mut self, machine: &mut M) -> io::Result<usize> {
        let mut count = 0;
        self.more_queued = false;
        while count < MAX_DRAIN {
            let want = (MAX_DRAIN - count).min(BATCH);
            let got = match self.recv.recv(&self.socket, want) {
                Ok(got) => got,
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => return Ok(count),
                    io::ErrorKind::Interrupted
                    | io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::ConnectionReset => {
                        self.stats.receive_errors += 1;
                        continue;
                    }
                    _ => return Err(e),
                },
            };
            let now = Instant::now();
            for i in 0..got {
                let Some((Some(from), datagram)) = self.recv.get(i) else {
                    // No IPv4 or IPv6 source: nobody to answer.
                    self.stats.receive_errors += 1;
                    continue;
                };
                self.stats.received += 1;
                if let Some(trace) = &mut self.trace {
                    trace(Trace::Received { from, datagram });
                }
                machine.handle_datagram(now, from, datagram);
                count += 1;
            }
            // The answers to one read go out before the next read: a
            // client waits for one batch's work, not a whole drain's.
            self.flush(machine);
            if got < want && batch::SHORT_MEANS_EMPTY {
                return Ok(count);
            }
        }
        self.more_queued = true;
        Ok(count)
    }

    /// One turn of the loop: flush, drain the socket (bounded), wait only if
    /// nothing came and nothing is due (until a datagram, a wake, the
    /// machine's deadline or the maximum wait), drain again, handle the
    /// deadline if it has passed, flush again.
    ///
    /// Errors are only those that make the socket or the poller unusable;
    /// the ordinary failures of UDP are counted and survived.
    pub fn step<M: Machine + ?Sized>(&mut self, machine: &mut M) -> io::Result<Step> {
        self.flush(machine);
        let mut step = Step {
            received: self.drain(machine)?,
            ..Step::default()
        };
        let deadline = machine.poll_timeout();
        // Blocking while the socket may hold more would stall: with
        // edge-triggered readiness no new event comes for what is queued.
        // A busy step does not ask the poller at all: the next step reads
        // the socket anyway, and a wake is in the flag.
        if step.received == 0 && !self.more_queued {
            let wait = deadline
                .map_or(self.max_wait, |d| {
                    d.saturating_duration_since(Instant::now())
                })
                .min(self.max_wait);
            match self.poll.poll(&mut self.events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            // A wake is read from the flag below (a waker event whose
            // flag an earlier step took is stale).
            if self.events.iter().any(|event| event.token() == SOCKET) {
                step.received = self.drain(machine)?;
            }
        }
        step.woken = self.wake_flag.swap(false, Ordering::SeqCst);
        if step.woken {
            self.stats.wakes += 1;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            machine.handle_timeout(now);
            step.timeout = true;
        }
        self.flush(machine);
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

/// Sends one datagram after the socket's send buffer was found full: the
/// socket is non-blocking for the sake of the drain, so it is switched to
/// blocking for this one send, and a burst of transmits is slowed down,
/// not dropped.
fn send_blocking(
    socket: &mio::net::UdpSocket,
    (to, transmit): &(socket2::SockAddr, Transmit),
) -> io::Result<usize> {
    let sock = socket2::SockRef::from(socket);
    sock.set_nonblocking(false)?;
    let sent = sock.send_to(&transmit.payload, to);
    sock.set_nonblocking(true)?;
    sent
}

/// Wakes a [`Driver`] from another thread (see [`Driver::handle`]). Cheap to
/// clone; `Send` and `Sync`.
#[derive(Debug, Clone)]
pub struct LoopHandle {
    waker: Arc<mio::Waker>,
    flag: Arc<AtomicBool>,
}

impl LoopHandle {
    /// Makes the driver's current (or next) wait end at once. Queue the
    /// work first, then wake. Never blocks; wakes before the driver looks
    /// may coalesce into one.
    pub fn wake(&self) {
        // The flag first: the driver reads it after any wait ends.
        self.flag.store(true, Ordering::SeqCst);
        // Fails only if the poller is gone, and then nobody is waiting.
        let _ = self.waker.wake();
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
        let step = step_until(&mut driver, &mut m, |s| s.received > 0);
        assert_eq!(step.received, 1);
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
        let step = step_until(&mut driver, &mut m, |s| s.timeout);
        assert!(step.timeout);
        assert_eq!(m.timeouts.len(), 1);
        assert!(m.timeouts[0] >= deadline);
        assert!(m.timeouts[0] < start + Duration::from_secs(1));
    }

    #[test]
    fn a_past_deadline_fires_without_waiting() {
        let mut driver = loopback_driver();
        driver.set_max_wait(Duration::from_secs(10));
        let mut m = Probe {
            deadline: Some(Instant::now()),
            ..Probe::default()
        };
        let start = Instant::now();
        assert!(driver.step(&mut m).unwrap().timeout);
        assert!(start.elapsed() < Duration::from_secs(1));
        assert_eq!(m.timeouts.len(), 1);
    }

    #[test]
    fn a_wake_from_another_thread_ends_the_wait_at_once() {
        let mut driver = loopback_driver();
        driver.set_max_wait(Duration::from_secs(10));
        let handle = driver.handle();
        let mut m = Probe::default();
        let start = Instant::now();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            handle.wake();
            handle.wake(); // may coalesce
        });
        let step = driver.step(&mut m).unwrap();
        assert!(step.woken, "{step:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(m.datagrams.is_empty());
        thread.join().unwrap();
        // A wake before the driver waits ends the next wait just the same.
        driver.handle().wake();
        let start = Instant::now();
        step_until(&mut driver, &mut m, |s| s.woken);
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_bound_socket_holds_256_requests_in_flight() {
        let socket = bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let to = socket.local_addr().unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Lookup-sized requests, all sent before any is read.
        for i in 0..256u16 {
            let mut request = [0u8; 40];
            request[..2].copy_from_slice(&i.to_be_bytes());
            peer.send_to(&request, to).unwrap();
        }
        socket.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        let mut got = 0;
        while socket.recv_from(&mut buf).is_ok() {
            got += 1;
        }
        assert_eq!(got, 256, "the kernel dropped {} of them", 256 - got);
    }

    #[test]
    fn a_burst_is_drained_in_one_step_and_a_flood_in_bounded_steps() {
        let mut driver = loopback_driver();
        driver.set_max_wait(Duration::from_secs(10));
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..50u8 {
            peer.send_to(&[i], driver.local_addr()).unwrap();
        }
        let mut m = Probe::default();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(driver.step(&mut m).unwrap().received, 50);
        let got: Vec<u8> = m.datagrams.iter().map(|(_, d)| d[0]).collect();
        assert_eq!(got, (0..50).collect::<Vec<u8>>());
        // More than one step's worth: the first step stops at MAX_DRAIN,
        // the next one reads the rest without blocking. (A receive buffer
        // big enough that the kernel drops none of them.)
        socket2::SockRef::from(&driver.socket)
            .set_recv_buffer_size(1 << 20)
            .unwrap();
        for _ in 0..MAX_DRAIN + 10 {
            peer.send_to(b"x", driver.local_addr()).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
        m.datagrams.clear();
        assert_eq!(driver.step(&mut m).unwrap().received, MAX_DRAIN);
        let start = Instant::now();
        assert_eq!(driver.step(&mut m).unwrap().received, 10);
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn timers_fire_under_a_flood() {
        let mut driver = loopback_driver();
        let local = driver.local_addr();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flooder = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = peer.send_to(&[1; 100], local);
                }
            })
        };
        let mut m = Probe::default();
        let start = Instant::now();
        for i in 1..=5u32 {
            m.deadline = Some(start + Duration::from_millis(20) * i);
            step_until(&mut driver, &mut m, |s| s.timeout);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        flooder.join().unwrap();
        assert_eq!(m.timeouts.len(), 5);
        assert!(!m.datagrams.is_empty(), "the flood never arrived");
    }

    #[test]
    fn dual_stack_socket_shows_ipv4_peers_as_ipv4() {
        let Ok(socket) = bind("[::]:0".parse().unwrap()) else {
            return; // No IPv6 on this host.
        };
        let mut driver = Driver::new(socket).unwrap();
        let port = driver.local_addr().port();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let peer_addr = peer.local_addr().unwrap();
        peer.send_to(b"x", ("127.0.0.1", port)).unwrap();
        let mut m = Probe::default();
        step_until(&mut driver, &mut m, |s| s.received > 0);
        assert_eq!(m.datagrams, vec![(peer_addr, b"x".to_vec())]);
        // And a reply to the plain IPv4 address reaches it.
        m.out.push_back(Transmit {
            destination: peer_addr,
            payload: Bytes::from_static(b"y"),
        });
        driver.flush(&mut m);
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
        driver.set_max_wait(Duration::ZERO);
        driver.step(&mut m).unwrap();
        assert_eq!(driver.stats().send_errors, 1);
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    /// A laptop at home: loopback, Wi-Fi with IPv4, a global and a unique
    /// local IPv6 address and link-local ones, and a link-local IPv4 one.
    const HOME: [&str; 8] = [
        "127.0.0.1",
        "::1",
        "192.168.1.23",
        "fe80::1c2d:3e4f:5a6b:7c8d",
        "2001:db8:1:2::23",
        "fd12:3456:789a::23",
        "169.254.7.9",
        "::ffff:10.8.0.2",
    ];

    #[test]
    fn a_dual_stack_socket_gets_both_families_ipv4_first_and_plain() {
        let got = select_host_candidates("[::]:5000".parse().unwrap(), &ips(&HOME));
        assert_eq!(
            got,
            addrs(&[
                "192.168.1.23:5000",
                "10.8.0.2:5000",
                "[2001:db8:1:2::23]:5000",
                "[fd12:3456:789a::23]:5000",
            ])
        );
    }

    #[test]
    fn an_ipv4_socket_drops_ipv6_and_link_local() {
        let got = select_host_candidates("0.0.0.0:5000".parse().unwrap(), &ips(&HOME));
        assert_eq!(got, addrs(&["192.168.1.23:5000", "10.8.0.2:5000"]));
    }

    #[test]
    fn a_host_without_a_network_gives_loopback_and_link_local() {
        let local = ips(&["127.0.0.1", "::1", "fe80::1", "169.254.1.2"]);
        let got = select_host_candidates("[::]:5000".parse().unwrap(), &local);
        assert_eq!(
            got,
            addrs(&[
                "127.0.0.1:5000",
                "169.254.1.2:5000",
                "[::1]:5000",
                "[fe80::1]:5000",
            ])
        );
        let v4 = select_host_candidates("0.0.0.0:5000".parse().unwrap(), &local);
        assert_eq!(v4, addrs(&["127.0.0.1:5000", "169.254.1.2:5000"]));
        // Only IPv6 link-local beside a global IPv4 address: the IPv4 one.
        let got = select_host_candidates(
            "[::]:5000".parse().unwrap(),
            &ips(&["fe80::1", "::1", "203.0.113.5"]),
        );
        assert_eq!(got, addrs(&["203.0.113.5:5000"]));
    }

    #[test]
    fn a_socket_bound_to_one_address_gives_that_address_alone() {
        for (bound, want) in [
            ("192.168.1.23:5000", "192.168.1.23:5000"),
            ("127.0.0.1:5000", "127.0.0.1:5000"),
            ("[2001:db8::1]:5000", "[2001:db8::1]:5000"),
            ("[::ffff:192.168.1.23]:5000", "192.168.1.23:5000"),
        ] {
            let got = select_host_candidates(bound.parse().unwrap(), &ips(&HOME));
            assert_eq!(got, addrs(&[want]), "bound to {bound}");
            assert_eq!(host_candidates(bound.parse().unwrap()), addrs(&[want]));
        }
    }

    #[test]
    fn candidates_are_kept_once_and_capped_preferring_ipv4_then_global_ipv6() {
        let mut list: Vec<IpAddr> = Vec::new();
        for i in 0..6u16 {
            list.push(IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, i + 1)));
            list.push(IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0,
                0,
                0,
                0,
                0,
                i + 1,
            )));
        }
        for i in 0..5u8 {
            list.push(IpAddr::V4(Ipv4Addr::new(10, 0, i, 1)));
            list.push(IpAddr::V4(Ipv4Addr::new(10, 0, i, 1))); // twice
        }
        list.extend(ips(&[
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "ff02::1",
            "255.255.255.255",
        ]));
        let got = select_host_candidates("[::]:7".parse().unwrap(), &list);
        let want: Vec<SocketAddr> =
            (0..5u8)
                .map(|i| SocketAddr::from(([10, 0, i, 1], 7)))
                .chain((1..=3).map(|i| {
                    SocketAddr::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i).into(), 7)
                }))
                .collect();
        assert_eq!(got.len(), MAX_CANDIDATES);
        assert_eq!(got, want);
    }

    #[test]
    fn nothing_for_an_unbound_port_or_an_unusable_list() {
        assert!(select_host_candidates("[::]:0".parse().unwrap(), &ips(&HOME)).is_empty());
        assert!(select_host_candidates("192.168.1.23:0".parse().unwrap(), &[]).is_empty());
        let unusable = ips(&["0.0.0.0", "224.0.0.1", "ff02::1"]);
        assert!(select_host_candidates("[::]:5000".parse().unwrap(), &unusable).is_empty());
    }

    #[test]
    fn this_hosts_candidates_follow_the_rules() {
        // Whatever this machine's interfaces are, the result obeys the rules
        // for its socket's family and port.
        for local in ["0.0.0.0:4242", "[::]:4242"] {
            let local: SocketAddr = local.parse().unwrap();
            let got = host_candidates(local);
            assert!(got.len() <= MAX_CANDIDATES, "{got:?}");
            for c in &got {
                assert_eq!(c.port(), 4242, "{got:?}");
                assert_eq!(canonical(*c), *c, "{got:?}");
                assert!(local.is_ipv6() || c.is_ipv4(), "{got:?}");
                assert!(
                    !c.ip().is_unspecified() && !c.ip().is_multicast(),
                    "{got:?}"
                );
                assert_eq!(got.iter().filter(|d| *d == c).count(), 1, "{got:?}");
            }
        }
        // Where loopback carries datagrams, its interface is up and listed:
        // the list is read at all.
        let looped = UdpSocket::bind("127.0.0.1:0").and_then(|s| {
            s.set_read_timeout(Some(Duration::from_secs(1)))?;
            s.send_to(b"x", s.local_addr()?)?;
            s.recv_from(&mut [0; 1])
        });
        if cfg!(target_os = "linux") && looped.is_ok() {
            let listed = interface_addresses();
            assert!(
                listed.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
                "{listed:?}"
            );
        }
    }

    #[test]
    fn os_entropy_differs_between_calls() {
        assert_ne!(os_seed().unwrap(), os_seed().unwrap());
    }

    #[test]
    fn drives_a_real_server_state() {
        let mut driver = loopback_driver();
        let mut server = ServerState::new(ServerConfig::new([3; 32], [4; 32]), Instant::now());
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let sign_in = Packet::Hello { request: 1 }.to_bytes().unwrap();
        client.send_to(&sign_in, driver.local_addr()).unwrap();
        step_until(&mut driver, &mut server, |s| s.received > 0);
        let mut buf = [0; RECV_BUFFER];
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert!(matches!(
            Packet::decode(&buf[..n]),
            Ok(Packet::Retry { request: 1, .. })
        ));
    }

    /// `n` datagrams sent from `peer` to `to`, each starting with its
    /// sequence number (big-endian `u16`), then given time to arrive.
    fn send_numbered(peer: &UdpSocket, to: SocketAddr, n: u16, len: usize) {
        for i in 0..n {
            let mut datagram = vec![0xa5; len.max(2)];
            datagram[..2].copy_from_slice(&i.to_be_bytes());
            peer.send_to(&datagram, to).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    #[test]
    fn a_burst_of_several_batches_arrives_whole_and_in_order() {
        let mut driver = loopback_driver();
        driver.set_max_wait(Duration::ZERO);
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let other = UdpSocket::bind("127.0.0.1:0").unwrap();
        let n = u16::try_from(3 * BATCH + 5).unwrap();
        // Two sources, alternating, so each slot's address is checked too.
        for i in 0..n {
            let from = if i % 2 == 0 { &peer } else { &other };
            let mut datagram = vec![0; 10 + usize::from(i)];
            datagram[..2].copy_from_slice(&i.to_be_bytes());
            from.send_to(&datagram, driver.local_addr()).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
        let traced = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = Arc::clone(&traced);
        driver.set_trace(move |t| {
            if let Trace::Received { from, datagram } = t {
                log.lock().unwrap().push((from, datagram.len()));
            }
        });
        let mut m = Probe::default();
        assert_eq!(driver.step(&mut m).unwrap().received, usize::from(n));
        assert_eq!(m.datagrams.len(), usize::from(n));
        for (i, (from, datagram)) in (0..n).zip(&m.datagrams) {
            let sender = if i % 2 == 0 { &peer } else { &other };
            assert_eq!(*from, sender.local_addr().unwrap(), "datagram {i}");
            assert_eq!(datagram[..2], i.to_be_bytes(), "datagram {i}");
            assert_eq!(datagram.len(), 10 + usize::from(i), "datagram {i}");
        }
        // The trace hook saw every one, in the same order.
        let seen: Vec<(SocketAddr, usize)> =
            m.datagrams.iter().map(|(f, d)| (*f, d.len())).collect();
        assert_eq!(*traced.lock().unwrap(), seen);
        assert_eq!(driver.stats().received, u64::from(n));
    }

    #[test]
    fn oversized_datagrams_in_a_batch_are_handed_in_and_keep_their_neighbours() {
        let mut driver = loopback_driver();
        driver.set_max_wait(Duration::ZERO);
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = driver.local_addr();
        let sizes = [
            5,
            crate::codec::MAX_DATAGRAM + 1,
            7,
            RECV_BUFFER + 300, // arrives cut to the buffer
            RECV_BUFFER,
            3,
        ];
        for (i, size) in sizes.iter().enumerate() {
            peer.send_to(&vec![u8::try_from(i).unwrap(); *size], to)
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
        let mut m = Probe::default();
        assert_eq!(driver.step(&mut m).unwrap().received, sizes.len());
        for (i, ((_, datagram), size)) in m.datagrams.iter().zip(sizes).enumerate() {
            assert_eq!(datagram.len(), size.min(RECV_BUFFER), "datagram {i}");
            assert!(
                datagram.iter().all(|b| usize::from(*b) == i),
                "datagram {i}"
            );
        }
    }

    #[test]
    fn more_transmits_than_a_batch_go_out_in_order_and_failures_are_skipped() {
        let mut driver = loopback_driver();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let peer_addr = peer.local_addr().unwrap();
        let unreachable: SocketAddr = "[2001:db8::1]:9".parse().unwrap();
        let traced = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = Arc::clone(&traced);
        driver.set_trace(move |t| {
            let entry = match t {
                Trace::Sent { to, datagram } => (to, Some(datagram[0])),
                Trace::SendFailed { to, .. } => (to, None),
                Trace::Received { .. } => return,
            };
            log.lock().unwrap().push(entry);
        });
        let mut m = Probe::default();
        let total = 2 * BATCH + 3;
        let mut want = Vec::new();
        for i in 0..total {
            let byte = u8::try_from(i).unwrap();
            // Every seventh (the first of a batch among them) cannot be sent.
            let destination = if i % 7 == 0 { unreachable } else { peer_addr };
            want.push((destination, (destination == peer_addr).then_some(byte)));
            m.out.push_back(Transmit {
                destination,
                payload: Bytes::from(vec![byte; 3]),
            });
        }
        driver.flush(&mut m);
        let failed = want.iter().filter(|(_, b)| b.is_none()).count();
        assert_eq!(driver.stats().send_errors, u64::try_from(failed).unwrap());
        assert_eq!(driver.stats().sent, u64::try_from(total - failed).unwrap());
        assert_eq!(*traced.lock().unwrap(), want);
        let mut buf = [0; 8];
        for (_, byte) in want.iter().filter_map(|(to, b)| Some((to, (*b)?))) {
            let (n, _) = peer.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[byte; 3]);
        }
    }

    #[test]
    fn a_wake_is_seen_by_a_step_too_busy_to_wait() {
        let mut driver = loopback_driver();
        driver.set_max_wait(Duration::from_secs(10));
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        send_numbered(&peer, driver.local_addr(), 3, 4);
        driver.handle().wake();
        let mut m = Probe::default();
        let start = Instant::now();
        let step = driver.step(&mut m).unwrap();
        assert_eq!((step.received, step.woken), (3, true), "{step:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(driver.stats().wakes, 1);
        // Taken once: the next step waits (briefly) and is not woken.
        driver.set_max_wait(Duration::from_millis(10));
        assert!(!driver.step(&mut m).unwrap().woken);
    }

    #[test]
    fn an_ipv6_source_keeps_its_address() {
        let Ok(socket) = bind("[::1]:0".parse().unwrap()) else {
            return; // No IPv6 loopback on this host.
        };
        let mut driver = Driver::new(socket).unwrap();
        let Ok(peer) = UdpSocket::bind("[::1]:0") else {
            return;
        };
        send_numbered(&peer, driver.local_addr(), 2, 4);
        let mut m = Probe::default();
        step_until(&mut driver, &mut m, |s| s.received > 0);
        let from: Vec<SocketAddr> = m.datagrams.iter().map(|(f, _)| *f).collect();
        assert_eq!(from, vec![peer.local_addr().unwrap(); 2]);
    }

    #[test]
    fn the_receive_buffer_holds_256_lookups() {
        let driver = loopback_driver();
        // Room for 256 datagrams charged at a couple of KiB each (the
        // kernel's reported size, doubled on Linux, or not).
        assert!(
            driver.recv_buffer_size().unwrap() >= 256 * 1024,
            "{:?}",
            driver.recv_buffer_size()
        );
    }
}
