//! A load generator for the directory server, and the bare UDP echo loop it
//! is compared with, measured in the same run.
//!
//! ```text
//! cargo build --release --bins --examples
//! target/release/examples/loadgen                      # starts target/release/ChatServer
//! target/release/examples/loadgen --server 127.0.0.1:9090 --clients 4000 --in-flight 64
//! target/release/examples/loadgen --server-bin /elsewhere/ChatServer --rounds 5
//! ```
//!
//! `--clients` simulated clients each sign in for real from a socket of their
//! own on 127.0.0.1: a padded Hello earns a Retry with a cookie and the
//! server's key, then a Noise IK handshake (a ServerInit carrying the SignIn,
//! answered by a ServerResp) makes a session with the server. Then, for
//! `--seconds` a round, they keep `--in-flight` lookups of random signed-in
//! names outstanding, each new one sent the moment a reply comes. Rounds
//! alternate between the server and a bare `recv_from` → `send_to` echo loop
//! in a process of its own, as the server is (`--rounds` of each, each side
//! first in every other round); the report gives requests a second and
//! p50/p99 latency per round,
//! the medians, and the server's rate as a fraction of the echo loop's. The
//! echo loop's socket is bound as the server's is (`udpchat::run::bind`, so
//! the same receive buffer, whose size is printed). On Linux, where a
//! server started here is measured, each round also gives the CPU time the
//! answering side (the server process, the echo process) spent per request:
//! on a machine shared with other work, the figure that moves least.
//!
//! The clients do the same work in both rounds: each request is a
//! LookupRequest sealed under the client's session with a fresh counter, and
//! each reply is opened under it. The server's LookupReply opens, and counts
//! when it answers the request outstanding; the echo loop's reply is the
//! request itself, which does not open with the client's receive key (the
//! AEAD pass is the same, only the tag check fails), and counts when it
//! carries the counter sent: a client's work a request is the same in both
//! rounds. A session the server has not
//! heard from for 15 s is gone, and the clients are silent to it during an
//! echo round: hence `--seconds` is at most 10.
//!
//! A server started here keeps its key and bindings in a temporary directory
//! of its own (removed at the end), not in the user's state directory.
//! Traffic stays on the loopback interface; every loop is bounded in time.

use std::io::{self, BufRead, BufReader, ErrorKind};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use mio::net::UdpSocket as MioSocket;
use mio::{Events, Interest, Poll, Token};
use udpchat::Packet;
use udpchat::crypto::StaticKeypair;

#[path = "common/raw_session.rs"]
mod raw_session;

use raw_session::RawSession;

/// The longest round: a session silent for the server's 15 s timeout is
/// forgotten, and an echo round is that long a silence.
const MAX_SECONDS: f64 = 10.0;

/// Lookup targets each client cycles through.
const TARGETS: usize = 64;

struct Args {
    server: Option<SocketAddr>,
    server_bin: Option<PathBuf>,
    clients: usize,
    in_flight: usize,
    seconds: f64,
    rounds: usize,
}

fn args() -> Args {
    if std::env::args().nth(1).as_deref() == Some("--echo-serve") {
        let code = match echo_serve() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("loadgen --echo-serve: {e}");
                1
            }
        };
        std::process::exit(code);
    }
    let mut a = Args {
        server: None,
        server_bin: None,
        clients: 4000,
        in_flight: 64,
        seconds: 2.0,
        rounds: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--server" => a.server = Some(parse(&flag, &value)),
            "--server-bin" => a.server_bin = Some(PathBuf::from(value)),
            "--clients" => a.clients = parse(&flag, &value),
            "--in-flight" => a.in_flight = parse(&flag, &value),
            "--seconds" => a.seconds = parse(&flag, &value),
            "--rounds" => a.rounds = parse(&flag, &value),
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    if a.clients == 0
        || a.in_flight == 0
        || a.rounds == 0
        || !a.seconds.is_finite()
        || a.seconds <= 0.0
    {
        usage("clients, in-flight, rounds and seconds must be positive");
    }
    if a.seconds > MAX_SECONDS {
        usage(&format!(
            "--seconds is at most {MAX_SECONDS} (the server forgets a session silent for 15 s)"
        ));
    }
    a
}

fn parse<T: std::str::FromStr>(flag: &str, value: &str) -> T {
    value
        .parse()
        .unwrap_or_else(|_| usage(&format!("bad value for {flag}: {value}")))
}

fn usage(why: &str) -> ! {
    eprintln!("loadgen: {why}");
    eprintln!(
        "usage: loadgen [--server ADDR | --server-bin PATH] [--clients N] [--in-flight N] [--seconds S] [--rounds N]"
    );
    std::process::exit(2);
}

/// A process started here that answers requests (`ChatServer`, or the echo
/// loop): killed, and its directory (if any) removed, when dropped.
struct Server {
    child: Child,
    dir: Option<PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Starts `ChatServer -sp 0 -q` (`bin`, or the one beside this example),
/// its key and bindings in a fresh temporary directory, and returns it with
/// the address it listens on.
fn start_server(bin: Option<PathBuf>) -> io::Result<(Server, SocketAddr)> {
    let exe = std::env::current_exe()?;
    let bin = match bin {
        Some(bin) => bin,
        None => exe
            .parent()
            .and_then(|examples| examples.parent())
            .map(|dir| dir.join("ChatServer"))
            .ok_or_else(|| io::Error::other("no directory for ChatServer"))?,
    };
    let dir = std::env::temp_dir().join(format!("udpchat-loadgen-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut cmd = Command::new(&bin);
    cmd.args(["-sp", "0", "-q", "--bind", "127.0.0.1"])
        .env("XDG_STATE_HOME", &dir)
        .env("XDG_CONFIG_HOME", &dir);
    spawn_answering(&mut cmd, Some(dir)).map_err(|e| {
        io::Error::other(format!(
            "{}: {e} (cargo build --release --bins)",
            bin.display()
        ))
    })
}

/// Spawns `cmd` (its `dir`, if any, removed when it ends) and returns it
/// with the first address it prints; the rest of its output is read and
/// dropped, so it never blocks on a pipe.
fn spawn_answering(cmd: &mut Command, dir: Option<PathBuf>) -> io::Result<(Server, SocketAddr)> {
    let child = cmd.stdout(Stdio::piped()).spawn();
    let mut server = match child {
        Ok(child) => Server { child, dir },
        Err(e) => {
            if let Some(dir) = &dir {
                let _ = std::fs::remove_dir_all(dir);
            }
            return Err(e);
        }
    };
    let stdout = server
        .child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .ok_or_else(|| io::Error::other("it ended before it listened"))??;
        if let Some(addr) = line
            .split_whitespace()
            .find_map(|w| w.parse::<SocketAddr>().ok())
        {
            break addr;
        }
    };
    thread::spawn(move || lines.for_each(drop));
    Ok((server, addr))
}

/// What this run's clients are: a tag in their names and the randomness
/// their identities and handshakes are drawn from, both new each run, so a
/// run right after another (against a server of one's own) never meets the
/// previous run's names, still signed in until their sessions time out.
struct Run {
    tag: String,
    entropy: [u8; 32],
}

impl Run {
    fn new() -> io::Result<Run> {
        let entropy = udpchat::run::os_seed()?;
        let tag = entropy[..3].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Run { tag, entropy })
    }

    /// Client `i`'s name.
    fn name(&self, i: usize) -> String {
        format!("load{}-{i:06}", self.tag)
    }

    /// 32 bytes for client `i`, different for each `purpose`.
    fn bytes32(&self, i: usize, purpose: u8) -> [u8; 32] {
        let mut out = self.entropy;
        out[0] ^= purpose;
        for (o, b) in out[24..]
            .iter_mut()
            .zip(u64::try_from(i).unwrap_or(u64::MAX).to_be_bytes())
        {
            *o ^= b;
        }
        out
    }
}

/// Waits for one datagram from `server` on `socket` (which has a read
/// timeout): `None` on a timeout. Datagrams from elsewhere are skipped.
fn recv<'b>(
    socket: &UdpSocket,
    server: SocketAddr,
    buf: &'b mut [u8],
) -> io::Result<Option<&'b [u8]>> {
    loop {
        match socket.recv_from(buf) {
            Ok((len, from)) if from == server => return Ok(buf.get(..len)),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Signs client `i` in to `server` on `socket` (which has a read timeout);
/// returns its session. Each attempt asks for a cookie if it has none, then
/// makes a fresh handshake; an attempt that goes unanswered (lost) is simply
/// made again.
fn sign_in(run: &Run, socket: &UdpSocket, server: SocketAddr, i: usize) -> io::Result<RawSession> {
    let name = run.name(i);
    let identity = StaticKeypair::from_secret(run.bytes32(i, 0x1d));
    let mut buf = [0u8; 2048];
    let mut cookie = None;
    let fail = |e: raw_session::RawError| io::Error::other(format!("{name}: {e}"));
    for attempt in 0..30u32 {
        let Some((cookie, key)) = &cookie else {
            socket.send_to(&raw_session::hello(attempt).map_err(fail)?, server)?;
            if let Some(reply) = recv(socket, server, &mut buf)? {
                cookie = raw_session::read_retry(reply, attempt).ok();
            }
            continue;
        };
        let mut seed = run.bytes32(i, 0xe9);
        seed[8..12].copy_from_slice(&attempt.to_be_bytes());
        let index = attempt + 1;
        let (handshake, init) =
            raw_session::server_init(&identity, key, cookie, index, seed, attempt, &name)
                .map_err(fail)?;
        socket.send_to(&init, server)?;
        let deadline = Instant::now() + Duration::from_millis(250);
        while Instant::now() < deadline {
            match recv(socket, server, &mut buf)? {
                Some(reply) if handshake.answers(reply) => {
                    return handshake.finish(reply).map_err(fail);
                }
                Some(_) => {} // A late answer to an earlier attempt.
                None => break,
            }
        }
    }
    Err(io::Error::other(format!("{name}: no answer")))
}

/// One simulated client.
struct Client {
    socket: MioSocket,
    session: RawSession,
    /// Names to look up, in turn.
    targets: Vec<String>,
    next_target: usize,
    next_request: u32,
    /// The request outstanding: its id, its counter, when it was sent.
    outstanding: Option<(u32, u64, Instant)>,
}

/// Where a round's requests go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Server,
    Echo,
}

/// One round's result.
#[derive(Debug, Clone, Copy)]
struct Round {
    rate: f64,
    p50: Duration,
    p99: Duration,
    /// Lookups the server answered with nobody (every name looked up is
    /// signed in, so this should stay 0).
    nobody: usize,
    /// Seconds of CPU the answering side (server process, echo process)
    /// spent per request answered, where known.
    cpu_per_request: Option<f64>,
    /// The same for the load generator (this thread).
    generator_cpu_per_request: Option<f64>,
}

/// Sends client `c`'s next lookup to `to`, if it has none outstanding;
/// returns whether it sent one.
fn send_one(client: &mut Client, to: SocketAddr, datagram: &mut Vec<u8>) -> io::Result<bool> {
    if client.outstanding.is_some() {
        return Ok(false);
    }
    let target = &client.targets[client.next_target % client.targets.len()];
    client.next_target += 1;
    let request = client.next_request;
    client.next_request = request.wrapping_add(1);
    let lookup = Packet::LookupRequest {
        request,
        name: target,
        introduce: false,
    };
    let counter = client
        .session
        .seal(&lookup, datagram)
        .map_err(|e| io::Error::other(e.to_string()))?;
    if client.socket.send_to(datagram, to).is_ok() {
        client.outstanding = Some((request, counter, Instant::now()));
        Ok(true)
    } else {
        Ok(false)
    }
}

/// What a reply says of the request outstanding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Not an answer to it.
    No,
    /// Answered: the echo, or the server's reply with the name's address.
    Yes,
    /// The server answered that nobody of that name is signed in.
    Nobody,
}

/// Whether `reply` answers `client`'s outstanding request from `target`.
/// Both kinds of reply are decoded, opened (the echoed request, sealed
/// under the client's other key, fails its tag check after the same AEAD
/// pass: ring's open decrypts and authenticates together) and the
/// plaintext decoded, so the client's work is the same in both kinds of
/// round.
fn answers(client: &Client, target: Target, reply: &[u8], scratch: &mut Vec<u8>) -> Answer {
    let Some((request, counter, _)) = client.outstanding else {
        return Answer::No;
    };
    match target {
        Target::Server => match client.session.open(reply, scratch) {
            Ok(Packet::LookupReply {
                request: r,
                address,
                ..
            }) if r == request => {
                if address.is_some() {
                    Answer::Yes
                } else {
                    Answer::Nobody
                }
            }
            _ => Answer::No,
        },
        Target::Echo => {
            let opened = client.session.open_any(reply, scratch);
            // As the server's reply is decoded after opening.
            std::hint::black_box(opened.map(|p| Packet::decode(p).is_ok()).is_ok());
            if raw_session::sealed_counter(reply) == Some(counter) {
                Answer::Yes
            } else {
                Answer::No
            }
        }
    }
}

/// How long a request may go unanswered before it is taken as lost and
/// replaced (a dropped datagram would otherwise hold a request in flight
/// for the rest of the round).
const LOST_AFTER: Duration = Duration::from_millis(500);

/// Keeps `in_flight` requests outstanding for `seconds`, round robin over
/// the clients (more of them than requests in flight: a client has at most
/// one outstanding). `cpu` is the answering side's CPU clock.
#[allow(clippy::too_many_arguments)]
fn run_round(
    clients: &mut [Client],
    poll: &mut Poll,
    to: SocketAddr,
    target: Target,
    in_flight: usize,
    seconds: f64,
    cpu: &Cpu,
) -> io::Result<Round> {
    let mut events = Events::with_capacity(1024);
    let mut count = 0usize;
    let mut nobody = 0usize;
    let mut latencies = Vec::new();
    let mut next_client = 0usize;
    let mut buf = [0u8; 2048];
    let mut datagram = Vec::with_capacity(2048);
    let mut scratch = Vec::with_capacity(2048);
    let generator = Cpu::this_thread();
    let (cpu_start, generator_start) = (cpu.seconds(), generator.seconds());
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut next_lost_check = start + LOST_AFTER;
    let mut fill = |clients: &mut [Client], count: &mut usize| -> io::Result<()> {
        // At most one pass over the clients: those still outstanding wait.
        for _ in 0..clients.len() {
            if *count >= in_flight {
                break;
            }
            let c = next_client;
            next_client = (next_client + 1) % clients.len();
            if send_one(&mut clients[c], to, &mut datagram)? {
                *count += 1;
            }
        }
        Ok(())
    };
    fill(clients, &mut count)?;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if now >= next_lost_check {
            // Lost on the way (a full buffer): send replacements.
            next_lost_check = now + LOST_AFTER / 5;
            for client in clients.iter_mut() {
                if client
                    .outstanding
                    .is_some_and(|(_, _, sent)| now.duration_since(sent) >= LOST_AFTER)
                {
                    client.outstanding = None;
                    count -= 1;
                }
            }
        }
        poll.poll(&mut events, Some(Duration::from_millis(50)))?;
        for event in &events {
            let client = &mut clients[event.token().0];
            // Until the answer to the request outstanding, not on to
            // `WouldBlock`: a client has one request in flight, so the
            // answer is nearly always the one datagram there, and the
            // next reply raises a new event (Linux raises one per
            // datagram); anything left is read then. Saves a system call a
            // request, for both rounds alike.
            while client.outstanding.is_some() {
                let len = match client.socket.recv_from(&mut buf) {
                    Ok((len, _)) => len,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                };
                let answer = answers(client, target, &buf[..len], &mut scratch);
                if answer != Answer::No
                    && let Some((_, _, sent)) = client.outstanding.take()
                {
                    count -= 1;
                    latencies.push(sent.elapsed());
                    nobody += usize::from(answer == Answer::Nobody);
                }
            }
        }
        fill(clients, &mut count)?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_used = cpu.seconds().zip(cpu_start).map(|(b, a)| b - a);
    let generator_used = generator.seconds().zip(generator_start).map(|(b, a)| b - a);
    // Drain what is still on its way so the next round starts clean.
    let drain_until = Instant::now() + Duration::from_millis(200);
    while Instant::now() < drain_until {
        poll.poll(&mut events, Some(Duration::from_millis(20)))?;
        for event in &events {
            while clients[event.token().0].socket.recv_from(&mut buf).is_ok() {}
        }
    }
    // And what an earlier event left behind.
    for client in clients.iter_mut() {
        while client.socket.recv_from(&mut buf).is_ok() {}
        client.outstanding = None;
    }
    latencies.sort_unstable();
    let pick = |q: f64| {
        let last = latencies.len().saturating_sub(1);
        // Rounded down to an index within the list.
        let at = (last as f64 * q) as usize;
        latencies.get(at.min(last)).copied().unwrap_or_default()
    };
    Ok(Round {
        rate: latencies.len() as f64 / elapsed,
        p50: pick(0.50),
        p99: pick(0.99),
        nobody,
        cpu_per_request: cpu_used
            .filter(|_| !latencies.is_empty())
            .map(|c| c / latencies.len() as f64),
        generator_cpu_per_request: generator_used
            .filter(|_| !latencies.is_empty())
            .map(|c| c / latencies.len() as f64),
    })
}

/// The bare echo loop (`loadgen --echo-serve`): every datagram straight
/// back to its sender, one `recv_from` and one `send_to` each, nothing else.
/// Its socket is bound as the server's is ([`udpchat::run::bind`], hence the
/// same receive buffer). Prints `listening ADDR`, then echoes until killed.
fn echo_serve() -> io::Result<()> {
    let socket = udpchat::run::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    println!("listening {}", socket.local_addr()?);
    let mut buf = [0u8; 2048];
    while let Ok((len, from)) = socket.recv_from(&mut buf) {
        let _ = socket.send_to(&buf[..len], from);
    }
    Ok(())
}

/// Starts the echo loop as a process of its own (this program, with
/// `--echo-serve`), as the server is: both answer from another process, so
/// the generator's costs (scheduling, wake-ups across processes) are the
/// same in both kinds of round. Returns it (killed when dropped), its
/// address and its CPU clock (see [`Cpu`]).
fn start_echo() -> io::Result<(Server, SocketAddr, Cpu)> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("--echo-serve");
    let (echo, addr) = spawn_answering(&mut cmd, None)?;
    let cpu = Cpu::process(echo.child.id());
    Ok((echo, addr, cpu))
}

/// The CPU time (user and system) of a process or thread, read from
/// `/proc` (Linux); `None` elsewhere. The other engineers' work on a shared
/// machine slows both sides of a round; CPU time per request is what each
/// side itself spends.
#[derive(Debug, Clone)]
struct Cpu(Option<PathBuf>);

impl Cpu {
    /// The calling thread's clock.
    fn this_thread() -> Cpu {
        Cpu(std::fs::read_link("/proc/thread-self")
            .ok()
            .map(|p| PathBuf::from("/proc").join(p).join("stat")))
    }

    /// Process `pid`'s clock (all its threads).
    fn process(pid: u32) -> Cpu {
        Cpu(Some(PathBuf::from(format!("/proc/{pid}/stat"))))
    }

    /// Seconds of CPU used so far (at the kernel's clock tick, 10 ms).
    fn seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(self.0.as_ref()?).ok()?;
        // After the command name in parentheses: state is field 3, utime 14, stime 15.
        let mut fields = stat.get(stat.rfind(')')? + 2..)?.split_whitespace();
        let utime: f64 = fields.nth(11)?.parse().ok()?;
        let stime: f64 = fields.next()?.parse().ok()?;
        Some((utime + stime) / 100.0)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> io::Result<()> {
    let args = args();
    let (started, server) = match args.server {
        Some(addr) => (None, addr),
        None => {
            let (child, addr) = start_server(args.server_bin.clone())?;
            (Some(child), addr)
        }
    };
    let (_echo_process, echo, echo_cpu) = start_echo()?;
    let server_cpu = started
        .as_ref()
        .map_or(Cpu(None), |s| Cpu::process(s.child.id()));

    // Sign everyone in, one socket each; each client's lookups of random
    // signed-in names.
    let t = Instant::now();
    let run = Run::new()?;
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let clients_u64 = u64::try_from(args.clients).unwrap_or(u64::MAX);
    let mut clients = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        let session = sign_in(&run, &socket, server, i)?;
        socket.set_nonblocking(true)?;
        let targets = (0..TARGETS)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                run.name(usize::try_from(seed % clients_u64).unwrap_or(0))
            })
            .collect();
        clients.push(Client {
            socket: MioSocket::from_std(socket),
            session,
            targets,
            next_target: 0,
            next_request: 1,
            outstanding: None,
        });
    }
    if let Ok(size) =
        socket2::SockRef::from(&udpchat::run::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?)
            .recv_buffer_size()
    {
        println!(
            "receive buffer from udpchat::run::bind (the server's and the echo loop's): {size} bytes as the kernel reports it"
        );
    }
    println!(
        "{} clients signed in to {server} in {:.2} s",
        args.clients,
        t.elapsed().as_secs_f64()
    );

    let mut poll = Poll::new()?;
    for (i, client) in clients.iter_mut().enumerate() {
        poll.registry()
            .register(&mut client.socket, Token(i), Interest::READABLE)?;
    }

    let (mut ours, mut bare) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let mut sides = [
            ("echo", echo, Target::Echo, &echo_cpu, &mut bare),
            ("server", server, Target::Server, &server_cpu, &mut ours),
        ];
        // Each goes first in every other round: neither always meets the
        // machine just after the other.
        if round % 2 == 1 {
            sides.reverse();
        }
        for (label, to, target, cpu, results) in sides {
            let r = run_round(
                &mut clients,
                &mut poll,
                to,
                target,
                args.in_flight,
                args.seconds,
                cpu,
            )?;
            println!(
                "round {} {label:>6}: {:>9.0} req/s  p50 {:>6.1} us  p99 {:>6.1} us{}",
                round + 1,
                r.rate,
                r.p50.as_secs_f64() * 1e6,
                r.p99.as_secs_f64() * 1e6,
                r.cpu_per_request
                    .map(|c| format!("  cpu {:.2} us/req", c * 1e6))
                    .unwrap_or_default()
                    + &r.generator_cpu_per_request
                        .map(|c| format!(" (generator {:.2})", c * 1e6))
                        .unwrap_or_default()
            );
            if r.nobody > 0 {
                eprintln!(
                    "round {}: {} lookups found nobody (a session expired?)",
                    round + 1,
                    r.nobody
                );
            }
            results.push(r);
        }
    }
    let rate = |v: &[Round]| median(v.iter().map(|r| r.rate).collect());
    let p = |v: &[Round], f: fn(&Round) -> Duration| {
        median(v.iter().map(|r| f(r).as_secs_f64() * 1e6).collect())
    };
    println!(
        "median: server {:.0} req/s (p50 {:.1} us, p99 {:.1} us); echo loop {:.0} req/s (p50 {:.1} us, p99 {:.1} us); ratio {:.2}",
        rate(&ours),
        p(&ours, |r| r.p50),
        p(&ours, |r| r.p99),
        rate(&bare),
        p(&bare, |r| r.p50),
        p(&bare, |r| r.p99),
        rate(&ours) / rate(&bare)
    );
    let cpu = |v: &[Round]| -> Option<f64> {
        let each: Option<Vec<f64>> = v.iter().map(|r| r.cpu_per_request).collect();
        Some(median(each?) * 1e6)
    };
    if let (Some(ours), Some(bare)) = (cpu(&ours), cpu(&bare)) {
        println!(
            "median CPU per request: server {ours:.2} us, echo loop {bare:.2} us ({:.1}x)",
            ours / bare
        );
    }
    drop(started);
    Ok(())
}
