//! Directory server throughput: sign-ins, lookups and list pages through
//! `ServerState::handle_datagram`, draining `poll_transmit` after each.
//!
//! ```text
//! cargo bench --bench server -- --warm-up-time 1 --measurement-time 2
//! ```
//!
//! Everything runs in memory, in virtual time: no socket is opened and the
//! addresses are only map keys. The per-source rate limit is raised out of
//! reach (its bookkeeping still runs) so that one client can send as fast as
//! the benchmark loop goes.
//!
//! * `server/sign-in`: a Hello answered by a Retry (stateless), and the Noise
//!   IK handshake that creates a session (a ServerInit carrying the SignIn,
//!   answered by a ServerResp), `n` of them into an empty directory per
//!   batch. The clients' halves of the handshakes are made beforehand.
//! * `server`: lookups and list pages against a directory of 10,000 users
//!   signed in through real handshakes during setup. Every request is sealed
//!   under an asker's session, outside the timing (criterion's batched
//!   setup), with a fresh counter each, in order, as the server's replay
//!   window wants; the timed work is the server's: open, serve, seal the reply.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use udpchat::crypto::StaticKeypair;
use udpchat::{Packet, PublicKey, ServerConfig, ServerState};

#[path = "../examples/common/raw_session.rs"]
mod raw_session;

use raw_session::{Handshake, RawSession};

/// The server's static secret and its entropy: every server here is the same
/// server, so a cookie and a message 1 made for one are good for another.
const IDENTITY: [u8; 32] = [7; 32];
const ENTROPY: [u8; 32] = [8; 32];

/// Users whose sessions are kept to send requests from.
const ASKERS: u32 = 1024;

fn config() -> ServerConfig {
    let mut config = ServerConfig::new(IDENTITY, ENTROPY);
    config.rate_per_second = 1e12;
    config.rate_burst = 1e12;
    config
}

/// The `i`th client's address, on loopback (a map key only).
fn client(i: u32) -> SocketAddr {
    let [_, b, c, d] = (i + 1).to_be_bytes();
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, b, c, d), 40_000))
}

fn name(i: u32) -> String {
    format!("user{i:05}")
}

/// 32 bytes for client `i`, different for each `purpose`.
fn bytes32(i: u32, purpose: u8) -> [u8; 32] {
    let mut out = [purpose; 32];
    out[..4].copy_from_slice(&i.to_be_bytes());
    out
}

/// Feeds one datagram and drains every reply; returns how many bytes went out.
fn exchange(server: &mut ServerState, now: Instant, from: SocketAddr, datagram: &[u8]) -> usize {
    server.handle_datagram(now, from, datagram);
    std::iter::from_fn(|| server.poll_transmit())
        .map(|t| t.payload.len())
        .sum()
}

/// Reply to a single datagram, which must be exactly one.
fn reply(server: &mut ServerState, now: Instant, from: SocketAddr, datagram: &[u8]) -> Vec<u8> {
    server.handle_datagram(now, from, datagram);
    let replies: Vec<_> = std::iter::from_fn(|| server.poll_transmit()).collect();
    match <[_; 1]>::try_from(replies) {
        Ok([t]) => t.payload.to_vec(),
        Err(replies) => panic!("expected one reply, got {replies:?}"),
    }
}

/// The ServerInit of each of `n` clients (with the cookie the server's Retry
/// gave), for a server started at `start` and asked at `now`; the handshakes
/// of the first [`ASKERS`], to finish.
fn server_inits(
    n: u32,
    start: Instant,
    now: Instant,
) -> (Vec<(SocketAddr, Vec<u8>)>, Vec<Handshake>) {
    let mut server = ServerState::new(config(), start);
    let key: PublicKey = server.public_key();
    let mut handshakes = Vec::new();
    let inits = (0..n)
        .map(|i| {
            let (from, name) = (client(i), name(i));
            let hello = raw_session::hello(1).expect("a Hello");
            let retry = reply(&mut server, now, from, &hello);
            let (cookie, _) = raw_session::read_retry(&retry, 1).expect("a Retry");
            let identity = StaticKeypair::from_secret(bytes32(i, 0x1d));
            let (handshake, init) = raw_session::server_init(
                &identity,
                &key,
                &cookie,
                i + 1,
                bytes32(i, 0xe9),
                2,
                &name,
            )
            .expect("a ServerInit");
            if i < ASKERS {
                handshakes.push(handshake);
            }
            (from, init)
        })
        .collect();
    (inits, handshakes)
}

/// A server with `n` users signed in, and the first [`ASKERS`] users' sessions.
fn populated(n: u32, start: Instant, now: Instant) -> (ServerState, Vec<RawSession>) {
    let mut server = ServerState::new(config(), start);
    let (inits, handshakes) = server_inits(n, start, now);
    let mut handshakes = handshakes.into_iter();
    let mut sessions = Vec::new();
    for (from, init) in &inits {
        let resp = reply(&mut server, now, *from, init);
        if let Some(handshake) = handshakes.next() {
            sessions.push(handshake.finish(&resp).expect("signed in"));
        }
        while server.poll_event().is_some() {}
    }
    assert_eq!(
        server.user_count(),
        usize::try_from(n).unwrap_or(usize::MAX)
    );
    (server, sessions)
}

fn sign_in(c: &mut Criterion) {
    let start = Instant::now();
    let now = start + Duration::from_millis(1);
    let mut group = c.benchmark_group("server/sign-in");

    // The Hello: stateless, answered with a Retry.
    let hellos: Vec<(SocketAddr, Vec<u8>)> = (0..1024)
        .map(|i| (client(i), raw_session::hello(i).expect("a Hello")))
        .collect();
    let mut server = ServerState::new(config(), start);
    let mut i = 0;
    group.throughput(Throughput::Elements(1));
    group.bench_function("retry", |b| {
        b.iter(|| {
            let (from, datagram) = &hellos[i % hellos.len()];
            i += 1;
            exchange(&mut server, now, *from, black_box(datagram))
        })
    });

    // The handshake that creates a session, `n` of them into an empty
    // directory per batch. Each costs the server a Noise IK responder's
    // four Diffie-Hellman operations: few samples.
    group.sample_size(10);
    for n in [100u32, 1_000] {
        let (inits, _) = server_inits(n, start, now);
        group.throughput(Throughput::Elements(u64::from(n)));
        group.bench_function(format!("accepted x{n}"), |b| {
            b.iter_batched_ref(
                || ServerState::new(config(), start),
                |server| {
                    for (from, datagram) in &inits {
                        exchange(server, now, *from, black_box(datagram));
                    }
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// Seals `packet` under the next asker's session (round robin over them):
/// where it comes from and the datagram.
fn sealed_by_next(
    sessions: &mut [RawSession],
    next: &mut usize,
    packet: &Packet<'_>,
) -> (SocketAddr, Vec<u8>) {
    let asker = *next % sessions.len();
    *next += 1;
    let mut datagram = Vec::new();
    sessions[asker]
        .seal(packet, &mut datagram)
        .expect("a sealed request");
    let index = u32::try_from(asker).expect("at most ASKERS askers");
    (client(index), datagram)
}

fn lookup_and_list(c: &mut Criterion) {
    let start = Instant::now();
    let now = start + Duration::from_millis(1);
    let users = 10_000;
    let (mut server, mut sessions) = populated(users, start, now);

    let mut group = c.benchmark_group("server");
    group.throughput(Throughput::Elements(1));

    // Lookups of many different names by many different clients.
    let targets: Vec<String> = (0..1024).map(|i| name((i * 13 + 5) % users)).collect();
    let (mut next_asker, mut next_target, mut request) = (0usize, 0usize, 0u32);
    group.bench_function(format!("lookup of {users} users"), |b| {
        b.iter_batched(
            || {
                let target = &targets[next_target % targets.len()];
                next_target += 1;
                request = request.wrapping_add(1);
                let lookup = Packet::LookupRequest {
                    request,
                    name: target,
                    introduce: false,
                };
                sealed_by_next(&mut sessions, &mut next_asker, &lookup)
            },
            |(from, datagram)| exchange(&mut server, now, from, black_box(&datagram)),
            BatchSize::SmallInput,
        )
    });

    // A full page of names: the first, and one from the middle.
    for (label, cursor) in [("first", 0), ("middle", users / 2)] {
        let list = Packet::ListRequest { request: 9, cursor };
        let (from, datagram) = sealed_by_next(&mut sessions, &mut next_asker, &list);
        let page = reply(&mut server, now, from, &datagram);
        let asker = next_asker.wrapping_sub(1) % sessions.len();
        let mut scratch = Vec::new();
        let Ok(Packet::ListReply { names, more, .. }) = sessions[asker].open(&page, &mut scratch)
        else {
            panic!("expected a ListReply");
        };
        assert!(more && names.len() > 50, "a full page is expected");
        group.bench_function(format!("list page ({label}) of {users} users"), |b| {
            b.iter_batched(
                || sealed_by_next(&mut sessions, &mut next_asker, &list),
                |(from, datagram)| exchange(&mut server, now, from, black_box(&datagram)),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, sign_in, lookup_and_list);
criterion_main!(benches);
