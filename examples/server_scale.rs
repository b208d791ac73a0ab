//! How the directory server scales: heap bytes per signed-in user (counted by
//! a counting allocator), lookups per second at 10,000 users and at the full
//! count (interleaved rounds, medians), and what one `handle_timeout` costs.
//!
//! ```text
//! cargo run --release --example server_scale              # 1,000,000 users
//! cargo run --release --example server_scale -- 200000    # fewer
//! ```
//!
//! Everything runs in memory through `ServerState::handle_datagram` with real
//! sign-ins (a Retry, then the sign-in with its cookie); no socket is opened.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use bytes::Bytes;
use udpchat::{Packet, ServerConfig, ServerState};

// The counting allocator the memory tests use.
#[path = "../tests/common/heap.rs"]
mod heap;

fn config() -> ServerConfig {
    let mut config = ServerConfig::with_secret([7; 16]);
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

fn name(i: u32) -> String {
    format!("user{i:07}")
}

fn encode(packet: &Packet<'_>) -> Bytes {
    packet.to_bytes().expect("a valid packet")
}

fn one_reply(server: &mut ServerState, now: Instant, from: SocketAddr, datagram: &[u8]) -> Bytes {
    server.handle_datagram(now, from, datagram);
    let reply = server.poll_transmit().expect("one reply");
    assert!(server.poll_transmit().is_none(), "more than one reply");
    reply.payload
}

/// A server with `n` users; the heap it holds; the first 1024 users' tokens.
fn populated(n: u32, start: Instant) -> (ServerState, isize, Vec<Vec<u8>>) {
    let before = heap::in_use();
    let mut server = ServerState::new(config(), start);
    let mut tokens = Vec::new();
    for i in 0..n {
        let (from, name) = (client(i), name(i));
        let first = encode(&Packet::SignIn {
            request: 1,
            name: &name,
            cookie: b"",
        });
        let retry = one_reply(&mut server, start, from, &first);
        let Ok(Packet::Retry { cookie, .. }) = Packet::decode(&retry) else {
            panic!("expected a Retry");
        };
        let second = encode(&Packet::SignIn {
            request: 2,
            name: &name,
            cookie,
        });
        let accepted = one_reply(&mut server, start, from, &second);
        // A run loop drains events as they come; so does this one.
        while server.poll_event().is_some() {}
        if i < 1024 {
            let Ok(Packet::SignInAccepted { token, .. }) = Packet::decode(&accepted) else {
                panic!("expected SignInAccepted");
            };
            tokens.push(token.to_vec());
        }
    }
    let held = heap::in_use() - before;
    let tokens_heap: isize = tokens.iter().map(|t| t.capacity() as isize).sum::<isize>()
        + (tokens.capacity() * std::mem::size_of::<Vec<u8>>()) as isize;
    (server, held - tokens_heap, tokens)
}

/// Nanoseconds per lookup over `rounds` lookups of random names.
fn lookups(server: &mut ServerState, n: u32, tokens: &[Vec<u8>], now: Instant, rounds: u32) -> f64 {
    let requests: Vec<(SocketAddr, Bytes)> = (0..4096u32)
        .map(|i| {
            let asker = i % 1024;
            let target = name(i.wrapping_mul(2_654_435_761) % n);
            let packet = Packet::LookupRequest {
                request: i,
                token: &tokens[asker as usize],
                name: &target,
            };
            (client(asker), encode(&packet))
        })
        .collect();
    let t = Instant::now();
    for i in 0..rounds {
        let (from, datagram) = &requests[(i % 4096) as usize];
        server.handle_datagram(now, *from, black_box(datagram));
        black_box(server.poll_transmit());
    }
    t.elapsed().as_nanos() as f64 / f64::from(rounds)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let users: u32 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("a number of users"))
        .unwrap_or(1_000_000);
    let start = Instant::now();

    let t = Instant::now();
    let (mut big, held, big_tokens) = populated(users, start);
    let fill = t.elapsed();
    let per_user = held as f64 / f64::from(users);
    let (mut small, small_held, small_tokens) = populated(10_000, start);

    println!("server heap at {users} users: {held} bytes, {per_user:.0} bytes per user");
    println!(
        "server heap at 10000 users: {small_held} bytes, {:.0} bytes per user",
        small_held as f64 / 10_000.0
    );
    println!(
        "filled in {:.2} s ({:.0} sign-ins/s, two datagrams each)",
        fill.as_secs_f64(),
        f64::from(users) / fill.as_secs_f64()
    );

    let now = start + Duration::from_secs(1);
    let (mut at_small, mut at_big) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        at_small.push(lookups(&mut small, 10_000, &small_tokens, now, 200_000));
        at_big.push(lookups(&mut big, users, &big_tokens, now, 200_000));
    }
    let (s, b) = (median(at_small), median(at_big));
    println!(
        "lookup at 10000 users: {s:.0} ns ({:.2} M/s); at {users} users: {b:.0} ns ({:.2} M/s); ratio {:.2}",
        1e3 / s,
        1e3 / b,
        s / b
    );

    // handle_timeout when nothing is due, and the next deadline's work.
    let idle = now + Duration::from_millis(1500);
    let t = Instant::now();
    for _ in 0..100_000 {
        big.handle_timeout(black_box(idle));
    }
    let idle_ns = t.elapsed().as_nanos() as f64 / 100_000.0;
    let next = big.poll_timeout().expect("a deadline");
    let t = Instant::now();
    big.handle_timeout(next);
    let due = t.elapsed();
    println!(
        "handle_timeout with nothing due: {idle_ns:.0} ns; at the next deadline ({:.0} s on): {:.1} us",
        next.saturating_duration_since(start).as_secs_f64(),
        due.as_secs_f64() * 1e6
    );
    assert_eq!(big.user_count(), users as usize);
}
