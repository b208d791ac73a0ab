//! What sessions cost: sealing and opening a packet, a whole Noise IK
//! handshake, and a replay-window check.
//!
//! ```text
//! cargo bench --bench crypto -- --warm-up-time 1 --measurement-time 2
//! ```

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use udpchat::crypto::{Initiator, ReplayWindow, Responder, StaticKeypair, TAG_LEN, TransportKeys};

fn seal_open(c: &mut Criterion) {
    let (a, b) = ([1u8; 32], [2u8; 32]);
    let alice = TransportKeys::from_raw(&a, &b);
    let bob = TransportKeys::from_raw(&b, &a);
    let header = [0x12u8, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 42];
    let mut group = c.benchmark_group("crypto");
    for size in [64usize, 1200 - 13 - TAG_LEN] {
        group.throughput(Throughput::Bytes(size as u64));
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
    let mut seed = 0u8;
    group.bench_function("IK handshake, both sides", |bench| {
        bench.iter(|| {
            seed = seed.wrapping_add(1);
            let (init, m1) = Initiator::start(&alice, &bob.public(), b"", [seed; 32], b"Alice")
                .expect("message 1");
            let (resp, _) = Responder::accept(&bob, b"", [!seed; 32], &m1).expect("read 1");
            let (m2, _) = resp.finish(b"").expect("message 2");
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

criterion_group!(benches, seal_open, handshake);
criterion_main!(benches);
