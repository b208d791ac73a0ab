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

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use udpchat::{Packet, ServerConfig, ServerState};

const SECRET: [u8; 16] = [7; 16];

fn config() -> ServerConfig {
    let mut config = ServerConfig::with_secret(SECRET);
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

fn encode(packet: &Packet<'_>) -> Bytes {
    match packet.to_bytes() {
        Ok(bytes) => bytes,
        Err(e) => panic!("{packet:?}: {e}"),
    }
}

/// Feeds one datagram and drains every reply; returns how many bytes went out.
fn exchange(server: &mut ServerState, now: Instant, from: SocketAddr, datagram: &[u8]) -> usize {
    server.handle_datagram(now, from, datagram);
    std::iter::from_fn(|| server.poll_transmit())
        .map(|t| t.payload.len())
        .sum()
}

/// Reply to a single datagram, which must be exactly one.
fn reply(server: &mut ServerState, now: Instant, from: SocketAddr, datagram: &[u8]) -> Bytes {
    server.handle_datagram(now, from, datagram);
    let replies: Vec<_> = std::iter::from_fn(|| server.poll_transmit()).collect();
    match <[_; 1]>::try_from(replies) {
        Ok([t]) => t.payload,
        Err(replies) => panic!("expected one reply, got {replies:?}"),
    }
}

/// The second sign-in datagram of each of `n` clients (with the cookie the
/// server's Retry gave), for a server started at `start` and asked at `now`.
fn signed_sign_ins(n: u32, start: Instant, now: Instant) -> Vec<(SocketAddr, Bytes)> {
    let mut server = ServerState::new(config(), start);
    (0..n)
        .map(|i| {
            let (from, name) = (client(i), name(i));
            let first = encode(&Packet::SignIn {
                request: 1,
                name: &name,
                cookie: b"",
            });
            let retry = reply(&mut server, now, from, &first);
            let Ok(Packet::Retry { cookie, .. }) = Packet::decode(&retry) else {
                panic!("expected a Retry for {name}");
            };
            let second = encode(&Packet::SignIn {
                request: 2,
                name: &name,
                cookie,
            });
            (from, second)
        })
        .collect()
}

/// A server with `n` users signed in, and each user's session token.
fn populated(n: u32, start: Instant, now: Instant) -> (ServerState, Vec<Vec<u8>>) {
    let mut server = ServerState::new(config(), start);
    let tokens = signed_sign_ins(n, start, now)
        .into_iter()
        .map(|(from, second)| {
            let accepted = reply(&mut server, now, from, &second);
            match Packet::decode(&accepted) {
                Ok(Packet::SignInAccepted { token, .. }) => token.to_vec(),
                other => panic!("expected SignInAccepted, got {other:?}"),
            }
        })
        .collect();
    assert_eq!(
        server.user_count(),
        usize::try_from(n).unwrap_or(usize::MAX)
    );
    (server, tokens)
}

fn sign_in(c: &mut Criterion) {
    let start = Instant::now();
    let now = start + Duration::from_millis(1);
    let mut group = c.benchmark_group("server/sign-in");

    // The first, cookie-less sign-in: stateless, answered with a Retry.
    let first: Vec<(SocketAddr, Bytes)> = (0..1024)
        .map(|i| {
            let name = name(i);
            let packet = Packet::SignIn {
                request: 1,
                name: &name,
                cookie: b"",
            };
            (client(i), encode(&packet))
        })
        .collect();
    let mut server = ServerState::new(config(), start);
    let mut i = 0;
    group.throughput(Throughput::Elements(1));
    group.bench_function("retry", |b| {
        b.iter(|| {
            let (from, datagram) = &first[i % first.len()];
            i += 1;
            exchange(&mut server, now, *from, black_box(datagram))
        })
    });

    // The signed sign-in that creates a session, `n` of them into an empty
    // directory per batch.
    for n in [1_000u32, 10_000] {
        let second = signed_sign_ins(n, start, now);
        group.throughput(Throughput::Elements(u64::from(n)));
        group.bench_function(format!("accepted x{n}"), |b| {
            b.iter_batched_ref(
                || ServerState::new(config(), start),
                |server| {
                    for (from, datagram) in &second {
                        exchange(server, now, *from, black_box(datagram));
                    }
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

fn lookup_and_list(c: &mut Criterion) {
    let start = Instant::now();
    let now = start + Duration::from_millis(1);
    let users = 10_000;
    let (mut server, tokens) = populated(users, start, now);

    let mut group = c.benchmark_group("server");
    group.throughput(Throughput::Elements(1));

    // Lookups of many different names by many different clients.
    let lookups: Vec<(SocketAddr, Bytes)> = (0..1024)
        .map(|i| {
            let asker = (i * 7) % users;
            let target = name((i * 13 + 5) % users);
            let token = &tokens[usize::try_from(asker).unwrap_or(0)];
            let packet = Packet::LookupRequest {
                request: i,
                token,
                name: &target,
            };
            (client(asker), encode(&packet))
        })
        .collect();
    let mut i = 0;
    group.bench_function(format!("lookup of {users} users"), |b| {
        b.iter(|| {
            let (from, datagram) = &lookups[i % lookups.len()];
            i += 1;
            exchange(&mut server, now, *from, black_box(datagram))
        })
    });

    // A full page of names: the first, and one from the middle.
    for (label, cursor) in [("first", 0), ("middle", users / 2)] {
        let from = client(0);
        let packet = Packet::ListRequest {
            request: 9,
            token: &tokens[0],
            cursor,
        };
        let datagram = encode(&packet);
        let page = reply(&mut server, now, from, &datagram);
        let Ok(Packet::ListReply { names, more, .. }) = Packet::decode(&page) else {
            panic!("expected a ListReply");
        };
        assert!(more && names.len() > 50, "a full page is expected");
        group.bench_function(format!("list page ({label}) of {users} users"), |b| {
            b.iter(|| exchange(&mut server, now, from, black_box(&datagram)))
        });
    }
    group.finish();
}

criterion_group!(benches, sign_in, lookup_and_list);
criterion_main!(benches);
