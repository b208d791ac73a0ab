//! What sessions cost: sealing and opening a packet (the two chat messages
//! of the codec bench's comparison, 16 and 1100 bytes of text, a small
//! packet and the largest a Sealed datagram carries, under a real Sealed
//! header as associated data), a whole Noise IK handshake as a sign-in makes it (the
//! server prologue, a SignIn as message 1's payload), and a replay-window
//! check.
//!
//! ```text
//! cargo bench --bench crypto -- --warm-up-time 1 --measurement-time 2
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use udpchat::Packet;
use udpchat::codec::{MAX_FRAGMENT_BODY, MAX_SEALED_PLAINTEXT, PacketType, SEALED_HEADER_LEN};
use udpchat::crypto::{Initiator, ReplayWindow, Responder, StaticKeypair, TAG_LEN, TransportKeys};
use udpchat::server::SERVER_PROLOGUE;

/// A Sealed datagram's header: type, receiver 0x100, counter 42, and the
/// length of `size` bytes sealed.
fn header(size: usize) -> [u8; SEALED_HEADER_LEN] {
    let mut h = [0u8; SEALED_HEADER_LEN];
    h[0] = PacketType::Sealed as u8;
    h[1..5].copy_from_slice(&0x100u32.to_be_bytes());
    h[5..13].copy_from_slice(&42u64.to_be_bytes());
    let len = u16::try_from(size + TAG_LEN).unwrap_or(u16::MAX);
    h[13..15].copy_from_slice(&len.to_be_bytes());
    h
}

fn seal_open(c: &mut Criterion) {
    let (a, b) = ([1u8; 32], [2u8; 32]);
    let alice = TransportKeys::from_raw(&a, &b);
    let bob = TransportKeys::from_raw(&b, &a);
    let mut group = c.benchmark_group("crypto");
    // A Message's header, then its text.
    let message = |text: usize| MAX_SEALED_PLAINTEXT - MAX_FRAGMENT_BODY + text;
    for size in [message(16), 64, message(1100), MAX_SEALED_PLAINTEXT] {
        let header = header(size);
        group.throughput(Throughput::Bytes(u64::try_from(size).unwrap_or(u64::MAX)));
        let mut buf = vec![0x55u8; size];
        let mut counter = 0u64;
        group.bench_function(BenchmarkId::new("seal", size), |bench| {
            bench.iter(|| {
                counter += 1;
                alice.seal(counter, black_box(&header), &mut buf)
            })
        });
        let plain = vec![0x55u8; size];
        let mut sealed = Vec::new();
        alice.seal_into(9, &header, &plain, &mut sealed);
        let mut scratch = sealed.clone();
        group.bench_function(BenchmarkId::new("open", size), |bench| {
            bench.iter(|| {
                scratch.copy_from_slice(&sealed);
                bob.open_in_place(9, black_box(&header), &mut scratch)
                    .map(|p| p.len())
            })
        });
    }
    group.finish();
}

fn handshake(c: &mut Criterion) {
    let alice = StaticKeypair::generate([1; 32]);
    let bob = StaticKeypair::generate([2; 32]);
    let mut group = c.benchmark_group("crypto");
    group.sample_size(30);
    let sign_in = Packet::SignIn {
        request: 1,
        name: "Alice",
        replaces: 0,
        candidates: udpchat::AddrList::EMPTY,
    }
    .to_bytes()
    .expect("a SignIn");
    let accepted = Packet::SignInAccepted {
        request: 1,
        address: Some(([127, 0, 0, 1], 5000).into()),
    }
    .to_bytes()
    .expect("a SignInAccepted");
    let mut seed = 0u8;
    group.bench_function("IK handshake, both sides", |bench| {
        bench.iter(|| {
            seed = seed.wrapping_add(1);
            let (init, m1) =
                Initiator::start(&alice, &bob.public(), SERVER_PROLOGUE, [seed; 32], &sign_in)
                    .expect("message 1");
            let (resp, _) =
                Responder::accept(&bob, SERVER_PROLOGUE, [!seed; 32], &m1).expect("read 1");
            let (m2, _) = resp.finish(&accepted).expect("message 2");
            init.finish(&m2).expect("read 2")
        })
    });
    let mut window = ReplayWindow::<32>::new();
    let mut counter = 0u64;
    group.bench_function("replay window accept", |bench| {
        bench.iter(|| {
            counter += 1;
            // Mostly in order, now and then a late one.
            let c = if counter.is_multiple_of(8) {
                counter - 5
            } else {
                counter
            };
            window.accept(black_box(c))
        })
    });
    group.finish();
}

/// Short measurements, fewer bootstrap resamples and no plots, so that the
/// whole file runs in well under a minute;
/// the command line still overrides them.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .nresamples(10_000)
        .without_plots()
}

criterion_group! {
    name = benches;
    config = config();
    targets = seal_open, handshake
}
criterion_main!(benches);
