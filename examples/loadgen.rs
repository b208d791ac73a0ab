//! A load generator for the directory server, and the bare UDP echo loop it
//! is compared with, measured in the same run.
//!
//! ```text
//! cargo build --release --bins --examples
//! target/release/examples/loadgen                      # starts target/release/ChatServer
//! target/release/examples/loadgen --server 127.0.0.1:9090 --clients 4000 --in-flight 64
//! ```
//!
//! `--clients` simulated clients each sign in for real (SignIn, Retry, SignIn
//! with the cookie) from a socket of their own on 127.0.0.1; then, for
//! `--seconds` a round, they keep `--in-flight` lookups of random signed-in
//! names outstanding, each new one sent the moment a reply comes. Rounds
//! alternate between the server and a bare `recv_from` → `send_to` echo loop
//! on another thread fed the very same datagrams (`--rounds` of each); the
//! report gives requests a second and p50/p99 latency per round, the medians,
//! and the server's rate as a fraction of the echo loop's.
//!
//! Traffic stays on the loopback interface; every loop is bounded in time.

use std::io::{self, BufRead, BufReader, ErrorKind};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::UdpSocket as MioSocket;
use mio::{Events, Interest, Poll, Token};
use udpchat::Packet;

struct Args {
    server: Option<SocketAddr>,
    clients: usize,
    in_flight: usize,
    seconds: f64,
    rounds: usize,
}

fn args() -> Args {
    let mut a = Args {
        server: None,
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
        "usage: loadgen [--server ADDR] [--clients N] [--in-flight N] [--seconds S] [--rounds N]"
    );
    std::process::exit(2);
}

/// Starts `ChatServer -sp 0 -q` from beside this example and returns it with
/// the address it listens on.
fn start_server() -> io::Result<(Child, SocketAddr)> {
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("ChatServer"))
        .ok_or_else(|| io::Error::other("no directory for ChatServer"))?;
    let mut child = Command::new(&bin)
        .args(["-sp", "0", "-q", "--bind", "127.0.0.1"])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| {
            io::Error::other(format!(
                "{}: {e} (cargo build --release --bins)",
                bin.display()
            ))
        })?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .ok_or_else(|| io::Error::other("ChatServer ended before it listened"))??;
        if let Some(addr) = line
            .split_whitespace()
            .find_map(|w| w.parse::<SocketAddr>().ok())
        {
            break addr;
        }
    };
    // Keep reading (and dropping) its output so it never blocks on a pipe.
    thread::spawn(move || lines.for_each(drop));
    Ok((child, addr))
}

fn encode(packet: &Packet<'_>) -> Bytes {
    packet.to_bytes().expect("a valid packet")
}

fn name(i: usize) -> String {
    format!("load{i:06}")
}

/// Signs client `i` in on `socket`; returns its session token.
fn sign_in(socket: &UdpSocket, server: SocketAddr, i: usize) -> io::Result<Vec<u8>> {
    let name = name(i);
    let mut buf = [0u8; 2048];
    let mut cookie = Vec::new();
    for attempt in 0..20u32 {
        socket.send_to(
            &encode(&Packet::SignIn {
                request: attempt,
                name: &name,
                cookie: &cookie,
            }),
            server,
        )?;
        let len = match socket.recv(&mut buf) {
            Ok(len) => len,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) => return Err(e),
        };
        match Packet::decode(&buf[..len]) {
            Ok(Packet::Retry { cookie: c, .. }) => cookie = c.to_vec(),
            Ok(Packet::SignInAccepted { token, .. }) => return Ok(token.to_vec()),
            other => return Err(io::Error::other(format!("{name}: {other:?}"))),
        }
    }
    Err(io::Error::other(format!("{name}: no answer")))
}

/// One round's result.
#[derive(Debug, Clone, Copy)]
struct Round {
    rate: f64,
    p50: Duration,
    p99: Duration,
}

/// Keeps `in_flight` requests outstanding for `seconds`: each client in turn
/// sends its next request from `requests[i]` to `target`; a reply is matched
/// by client and request id.
fn run_round(
    sockets: &mut [MioSocket],
    poll: &mut Poll,
    requests: &[Vec<Bytes>],
    target: SocketAddr,
    in_flight: usize,
    seconds: f64,
) -> io::Result<Round> {
    let mut events = Events::with_capacity(1024);
    // Round robin over more clients than requests in flight: a client has at
    // most one request outstanding, so its slot holds that request's id and
    // send time.
    let mut outstanding: Vec<Option<(u32, Instant)>> = vec![None; sockets.len()];
    let mut count = 0usize;
    let mut latencies = Vec::new();
    let mut next_client = 0usize;
    let mut next_request = vec![0usize; sockets.len()];
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut send_one = |sockets: &mut [MioSocket],
                        outstanding: &mut [Option<(u32, Instant)>],
                        count: &mut usize| {
        let c = next_client;
        next_client = (next_client + 1) % sockets.len();
        if outstanding[c].is_some() {
            return;
        }
        let datagram = &requests[c][next_request[c] % requests[c].len()];
        next_request[c] += 1;
        let id = u32::from_be_bytes([datagram[1], datagram[2], datagram[3], datagram[4]]);
        if sockets[c].send_to(datagram, target).is_ok() {
            outstanding[c] = Some((id, Instant::now()));
            *count += 1;
        }
    };
    while count < in_flight {
        send_one(sockets, &mut outstanding, &mut count);
    }
    while Instant::now() < end {
        poll.poll(&mut events, Some(Duration::from_millis(50)))?;
        if events.is_empty() {
            // Lost on the way (a full buffer): send replacements.
            for slot in outstanding.iter_mut() {
                if slot.is_some_and(|(_, sent)| sent.elapsed() >= Duration::from_millis(500)) {
                    *slot = None;
                    count -= 1;
                }
            }
        }
        for event in &events {
            let c = event.token().0;
            loop {
                let len = match sockets[c].recv_from(&mut buf) {
                    Ok((len, _)) => len,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                };
                if len < 5 {
                    continue;
                }
                let id = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
                if let Some((expected, sent)) = outstanding[c]
                    && expected == id
                {
                    outstanding[c] = None;
                    count -= 1;
                    latencies.push(sent.elapsed());
                }
            }
        }
        while count < in_flight {
            send_one(sockets, &mut outstanding, &mut count);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Drain what is still on its way so the next round starts clean.
    let drain_until = Instant::now() + Duration::from_millis(200);
    while Instant::now() < drain_until {
        poll.poll(&mut events, Some(Duration::from_millis(20)))?;
        for event in &events {
            while sockets[event.token().0].recv_from(&mut buf).is_ok() {}
        }
    }
    latencies.sort_unstable();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or_default()
    };
    Ok(Round {
        rate: latencies.len() as f64 / elapsed,
        p50: pick(0.50),
        p99: pick(0.99),
    })
}

/// A bare echo loop: every datagram straight back to its sender.
fn start_echo() -> io::Result<SocketAddr> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let addr = socket.local_addr()?;
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((len, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..len], from);
        }
    });
    Ok(addr)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> io::Result<()> {
    let args = args();
    let (child, server) = match args.server {
        Some(addr) => (None, addr),
        None => {
            let (child, addr) = start_server()?;
            (Some(child), addr)
        }
    };
    let echo = start_echo()?;

    // Sign everyone in, one socket each.
    let t = Instant::now();
    let mut sockets = Vec::with_capacity(args.clients);
    let mut tokens = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        tokens.push(sign_in(&socket, server, i)?);
        socket.set_nonblocking(true)?;
        sockets.push(MioSocket::from_std(socket));
    }
    println!(
        "{} clients signed in to {server} in {:.2} s",
        args.clients,
        t.elapsed().as_secs_f64()
    );

    // Each client's lookups of random signed-in names, ids counting up.
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let requests: Vec<Vec<Bytes>> = (0..args.clients)
        .map(|c| {
            (0..64u32)
                .map(|k| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let target = name((seed % args.clients as u64) as usize);
                    encode(&Packet::LookupRequest {
                        request: k,
                        token: &tokens[c],
                        name: &target,
                    })
                })
                .collect()
        })
        .collect();

    let mut poll = Poll::new()?;
    for (i, socket) in sockets.iter_mut().enumerate() {
        poll.registry()
            .register(socket, Token(i), Interest::READABLE)?;
    }

    let (mut ours, mut bare) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        for (label, target, results) in [("echo", echo, &mut bare), ("server", server, &mut ours)] {
            let r = run_round(
                &mut sockets,
                &mut poll,
                &requests,
                target,
                args.in_flight,
                args.seconds,
            )?;
            println!(
                "round {} {label:>6}: {:>9.0} req/s  p50 {:>6.1} us  p99 {:>6.1} us",
                round + 1,
                r.rate,
                r.p50.as_secs_f64() * 1e6,
                r.p99.as_secs_f64() * 1e6
            );
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
    if let Some(mut child) = child {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok(())
}
