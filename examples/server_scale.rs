//! How the directory server scales: heap bytes per signed-in user (counted by
//! a counting allocator), lookups per second at 10,000 users and at the full
//! count (interleaved rounds, medians), and what one `handle_timeout` costs.
//!
//! ```text
//! cargo run --release --example server_scale              # 1,000,000 users
//! cargo run --release --example server_scale -- 200000    # fewer
//! cargo run --release --example server_scale -- --no-candidates
//! ```
//!
//! Each user registers host candidates as a `ChatClient` at home does
//! (`run::host_candidates`): one private IPv4 address (10.x.y.z or
//! 192.168.x.y) with its own port. `--no-candidates` signs the big
//! population in with none. Beside it, three populations of 10,000 users
//! are measured in the same run: no candidates, one private IPv4, and one
//! private IPv4 plus one global IPv6 (a dual-stack home).
//!
//! Everything runs in memory through `ServerState::handle_datagram` with real
//! sign-ins; no socket is opened. Each user sends a padded Hello, gets a
//! Retry with a cookie and the server's key, and makes a Noise IK handshake
//! (a ServerInit carrying the SignIn, answered by a ServerResp): the fill
//! rate is bounded by the server's half of one handshake a user. The users'
//! halves are made on a second thread while the server answers, and only the
//! first 1024 users (the askers) finish theirs.
//!
//! Batch `b` signs in at `b` seconds (virtual time), so the sessions'
//! deadlines come one batch a second an hour later: `handle_timeout` is
//! timed with nothing due and at a deadline with one batch due.
//!
//! A lookup is a LookupRequest sealed under an asker's session: the server
//! opens it, looks the name up, and seals the LookupReply. The requests are
//! sealed before each timed round (in order, a fresh counter each, as the
//! server's replay window wants), so the timed loop is the server's work
//! alone.

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use udpchat::codec::AddrList;
use udpchat::crypto::StaticKeypair;
use udpchat::{Packet, PublicKey, ServerConfig, ServerState};

// The counting allocator the memory tests use.
#[path = "../tests/common/heap.rs"]
mod heap;

#[path = "common/raw_session.rs"]
mod raw_session;

use raw_session::{Handshake, RawSession};

/// Users whose sessions are kept to send lookups from.
const ASKERS: u32 = 1024;

/// Users signed in per batch handed to the thread that makes their handshakes.
const BATCH: u32 = 1024;

/// Virtual time between two batches' sign-ins.
const STEP: Duration = Duration::from_secs(1);

/// Lookups in one timed round.
const ROUND: u32 = 50_000;

fn config() -> ServerConfig {
    let mut config = ServerConfig::new([7; 32], [8; 32]);
    config.rate_per_second = 1e12;
    config.rate_burst = 1e12;
    config.max_users = usize::MAX;
    config.session_timeout = Duration::from_secs(3600);
    config
}

fn client(i: u32) -> SocketAddr {
    let [a, b, c, d] = (i + 1).to_be_bytes();
    SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::new(10 + (a & 0x3f), b, c, d),
        40_000,
    ))
}

/// Which host candidates each user of a population registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hosts {
    /// None.
    None,
    /// One private IPv4 address with the user's own port.
    V4,
    /// That, and a global IPv6 address with the same port.
    V4V6,
}

impl Hosts {
    fn describe(self) -> &'static str {
        match self {
            Hosts::None => "no host candidates",
            Hosts::V4 => "one private IPv4 host candidate each",
            Hosts::V4V6 => "a private IPv4 and a global IPv6 host candidate each",
        }
    }

    /// User `i`'s host candidates.
    fn of(self, i: u32) -> Vec<SocketAddr> {
        let [_, b, c, d] = i.to_be_bytes();
        let port = 50_000 + (i % 15_000) as u16;
        let v4 = if i.is_multiple_of(2) {
            Ipv4Addr::new(192, 168, c, d)
        } else {
            Ipv4Addr::new(10, b, c, d)
        };
        let v6 = Ipv6Addr::new(0x2001, 0xdb8, u16::from(b), u16::from(c), 0, 0, 0, i as u16);
        match self {
            Hosts::None => Vec::new(),
            Hosts::V4 => vec![SocketAddr::new(v4.into(), port)],
            Hosts::V4V6 => vec![
                SocketAddr::new(v4.into(), port),
                SocketAddr::new(v6.into(), port),
            ],
        }
    }
}

fn name(i: u32) -> String {
    format!("user{i:07}")
}

/// 32 bytes for user `i`, different for each `purpose`.
fn bytes32(i: u32, purpose: u8) -> [u8; 32] {
    let mut out = [purpose; 32];
    out[..4].copy_from_slice(&i.to_be_bytes());
    out
}

fn one_reply(server: &mut ServerState, now: Instant, from: SocketAddr, datagram: &[u8]) -> Vec<u8> {
    server.handle_datagram(now, from, datagram);
    let reply = server.poll_transmit().expect("one reply");
    assert!(server.poll_transmit().is_none(), "more than one reply");
    reply.payload.to_vec()
}

/// User `i`'s ServerInit with `cookie`, registering `hosts`' candidates,
/// and for an asker the handshake to finish.
fn server_init(
    i: u32,
    cookie: &[u8],
    server_key: &PublicKey,
    hosts: Hosts,
) -> (Vec<u8>, Option<Handshake>) {
    let identity = StaticKeypair::from_secret(bytes32(i, 0x1d));
    let name = name(i);
    let candidates = hosts.of(i);
    let sign_in = Packet::SignIn {
        request: 2,
        name: &name,
        replaces: 0,
        candidates: AddrList::Addrs(&candidates),
    };
    let (handshake, init) = raw_session::server_init_with(
        &identity,
        server_key,
        cookie,
        i + 1,
        bytes32(i, 0xe9),
        &sign_in,
    )
    .expect("a ServerInit");
    (init, (i < ASKERS).then_some(handshake))
}

/// A server with `n` users registering `hosts`' candidates; the heap it
/// holds; the askers' sessions; the time of the last sign-in.
fn populated(
    n: u32,
    hosts: Hosts,
    start: Instant,
) -> (ServerState, isize, Vec<RawSession>, Instant) {
    let mut sessions = Vec::with_capacity(ASKERS as usize);
    let before = heap::in_use();
    let mut server = ServerState::new(config(), start);
    let key = server.public_key();
    let batches = n.div_ceil(BATCH);
    thread::scope(|scope| {
        let (to_maker, batches_in) = mpsc::channel::<(u32, Vec<Vec<u8>>)>();
        let (inits_out, from_maker) = mpsc::channel();
        scope.spawn(move || {
            for (first, cookies) in batches_in {
                let inits: Vec<_> = (first..)
                    .zip(&cookies)
                    .map(|(i, cookie)| server_init(i, cookie, &key, hosts))
                    .collect();
                if inits_out.send(inits).is_err() {
                    return;
                }
            }
        });
        let at = |b: u32| start + STEP * b;
        // The cookies of batch `b`, minted at `now`: a Hello and its Retry
        // for each user.
        let cookies = |server: &mut ServerState, b: u32, now: Instant| {
            let first = b * BATCH;
            let cookies = (first..n.min(first + BATCH))
                .map(|i| {
                    let hello = raw_session::hello(1).expect("a Hello");
                    let retry = one_reply(server, now, client(i), &hello);
                    raw_session::read_retry(&retry, 1).expect("a Retry").0
                })
                .collect();
            to_maker
                .send((first, cookies))
                .expect("the maker thread runs");
        };
        // Two batches ahead, so the maker is never idle.
        for b in 0..batches.min(2) {
            cookies(&mut server, b, at(0));
        }
        for b in 0..batches {
            let inits = from_maker.recv().expect("the maker thread runs");
            if b + 2 < batches {
                cookies(&mut server, b + 2, at(b));
            }
            for ((init, handshake), i) in inits.into_iter().zip(b * BATCH..) {
                let resp = one_reply(&mut server, at(b), client(i), &init);
                if let Some(handshake) = handshake {
                    sessions.push(handshake.finish(&resp).expect("signed in"));
                }
                // A run loop drains events as they come; so does this one.
                while server.poll_event().is_some() {}
            }
        }
    });
    let held = heap::in_use() - before;
    assert_eq!(server.user_count(), n as usize, "every sign-in accepted");
    let last = start + STEP * (batches - 1);
    (server, held, sessions, last)
}

/// Nanoseconds per lookup over `ROUND` lookups of random names, each sealed
/// beforehand under one of the askers' sessions.
fn lookups(server: &mut ServerState, n: u32, sessions: &mut [RawSession], now: Instant) -> f64 {
    let askers = u32::try_from(sessions.len()).expect("at most 1024 askers");
    let requests: Vec<(SocketAddr, Vec<u8>)> = (0..ROUND)
        .map(|i| {
            let asker = i % askers;
            let target = name(i.wrapping_mul(2_654_435_761) % n);
            let request = Packet::LookupRequest {
                request: i,
                name: &target,
                introduce: false,
            };
            let mut datagram = Vec::new();
            sessions[asker as usize]
                .seal(&request, &mut datagram)
                .expect("sealed");
            (client(asker), datagram)
        })
        .collect();
    let before = server.stats();
    let t = Instant::now();
    for (from, datagram) in &requests {
        server.handle_datagram(now, *from, black_box(datagram));
        black_box(server.poll_transmit());
    }
    let ns = t.elapsed().as_nanos() as f64 / f64::from(ROUND);
    let after = server.stats();
    assert_eq!(after.forged, before.forged, "every request opened");
    assert_eq!(
        after.sent - before.sent,
        u64::from(ROUND),
        "every lookup answered"
    );
    ns
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut users: u32 = 1_000_000;
    let mut hosts = Hosts::V4;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--no-candidates" => hosts = Hosts::None,
            n => users = n.parse().expect("a number of users, or --no-candidates"),
        }
    }
    assert!(users >= 1, "at least one user");
    let start = Instant::now();

    let t = Instant::now();
    let (mut big, held, mut big_sessions, big_last) = populated(users, hosts, start);
    let fill = t.elapsed();
    let per_user = held as f64 / f64::from(users);
    println!(
        "server heap at {users} users with {}: {held} bytes, {per_user:.0} bytes per user",
        hosts.describe()
    );
    println!(
        "filled in {:.2} s ({:.0} sign-ins/s: a Hello and a Noise IK handshake each)",
        fill.as_secs_f64(),
        f64::from(users) / fill.as_secs_f64()
    );
    // The same small count with each kind of user, in this run: what the
    // candidates cost a user, all else equal.
    let mut small = None;
    for small_hosts in [Hosts::None, Hosts::V4, Hosts::V4V6] {
        let (server, small_held, sessions, last) = populated(10_000, small_hosts, start);
        println!(
            "server heap at 10000 users with {}: {small_held} bytes, {:.1} bytes per user",
            small_hosts.describe(),
            small_held as f64 / 10_000.0
        );
        if small_hosts == hosts {
            small = Some((server, sessions, last));
        }
    }
    let Some((mut small, mut small_sessions, small_last)) = small else {
        unreachable!("the big population's kind is among the small ones")
    };

    let now = big_last.max(small_last) + Duration::from_secs(1);
    let (mut at_small, mut at_big) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        at_small.push(lookups(&mut small, 10_000, &mut small_sessions, now));
        at_big.push(lookups(&mut big, users, &mut big_sessions, now));
    }
    let (s, b) = (median(at_small), median(at_big));
    println!(
        "sealed lookup at 10000 users: {s:.0} ns ({:.2} M/s); at {users} users: {b:.0} ns ({:.2} M/s); ratio {:.2}",
        1e3 / s,
        1e3 / b,
        s / b
    );

    // handle_timeout and poll_timeout when nothing is due, at both sizes.
    let idle = now + Duration::from_millis(500);
    let idle_ns = |server: &mut ServerState| {
        let mut rounds = Vec::new();
        for _ in 0..7 {
            let t = Instant::now();
            for _ in 0..100_000 {
                server.handle_timeout(black_box(idle));
                black_box(server.poll_timeout());
            }
            rounds.push(t.elapsed().as_nanos() as f64 / 100_000.0);
        }
        median(rounds)
    };
    let (idle_small, idle_big) = (idle_ns(&mut small), idle_ns(&mut big));
    println!(
        "handle_timeout + poll_timeout with nothing due: {idle_small:.0} ns at 10000 users, {idle_big:.0} ns at {users} users"
    );
    // The next deadlines: the first batch (the askers, heard from since:
    // each put back for later), then the second (signed out).
    for _ in 0..2 {
        let next = big.poll_timeout().expect("a deadline");
        let before = big.user_count();
        let t = Instant::now();
        big.handle_timeout(next);
        let took = t.elapsed();
        let gone = before - big.user_count();
        while big.poll_event().is_some() {}
        println!(
            "handle_timeout at the deadline {:.0} s on, {BATCH} due, {gone} timed out: {:.1} us ({:.0} ns a due entry)",
            next.saturating_duration_since(start).as_secs_f64(),
            took.as_secs_f64() * 1e6,
            took.as_nanos() as f64 / f64::from(BATCH)
        );
    }
}
