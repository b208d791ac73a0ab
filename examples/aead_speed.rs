//! What sealing and opening a packet costs with our `TransportKeys` (ring's
//! ChaCha20-Poly1305) against the RustCrypto `chacha20poly1305` 0.10 it
//! replaced (the one snow still uses for handshakes), in one run:
//! interleaved rounds, each side first in every other round, medians.
//!
//! ```text
//! cargo run --release --example aead_speed
//! cargo run --release --example aead_speed -- 41    # rounds (default 21)
//! ```
//!
//! Both seal a 64-byte packet and the largest a Sealed datagram carries
//! under a real Sealed header as associated data, as `benches/crypto.rs`
//! does; an open first copies the sealed bytes back into place (the same
//! copy for both). Before timing, both must give the same bytes and tags:
//! the wire format did not change.
//!
//! In a default x86-64 build (no `-C target-cpu`) RustCrypto's AVX2 code
//! calls its intrinsics as functions; ring picks its AVX2, SSSE3 or
//! portable code at run time, like RustCrypto, but without that cost.

use std::hint::black_box;
use std::time::Instant;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use udpchat::codec::{MAX_SEALED_PLAINTEXT, PacketType, SEALED_HEADER_LEN};
use udpchat::crypto::{TAG_LEN, TransportKeys};

/// Operations timed together; one round times each this many times.
const BATCH: u32 = 2_000;

/// A Sealed datagram's header for `size` bytes sealed (as the bench's).
fn header(size: usize) -> [u8; SEALED_HEADER_LEN] {
    let mut h = [0u8; SEALED_HEADER_LEN];
    h[0] = PacketType::Sealed as u8;
    h[1..5].copy_from_slice(&0x100u32.to_be_bytes());
    h[5..13].copy_from_slice(&42u64.to_be_bytes());
    let len = u16::try_from(size + TAG_LEN).unwrap_or(u16::MAX);
    h[13..15].copy_from_slice(&len.to_be_bytes());
    h
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::from(n)
}

/// Nanoseconds an operation, `f` run `BATCH` times.
fn time(mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..BATCH {
        f();
    }
    start.elapsed().as_secs_f64() * 1e9 / f64::from(BATCH)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = match std::env::args().nth(1) {
        None => 21,
        Some(arg) => arg.parse().expect("rounds: a number"),
    };
    let (a, b) = ([1u8; 32], [2u8; 32]);
    let ours = TransportKeys::from_raw(&a, &b);
    let ours_peer = TransportKeys::from_raw(&b, &a);
    let theirs = ChaCha20Poly1305::new(Key::from_slice(&a));
    println!("{rounds} rounds of {BATCH} operations each; medians, ns an operation");
    for size in [64usize, MAX_SEALED_PLAINTEXT] {
        let header = header(size);
        let plain = vec![0x55u8; size];

        // Same bytes on the wire from both.
        let mut sealed = Vec::new();
        ours.seal_into(9, &header, &plain, &mut sealed);
        let mut check = plain.clone();
        let tag = theirs
            .encrypt_in_place_detached(&nonce(9), &header, &mut check)
            .expect("a datagram is far below the length limit");
        check.extend_from_slice(&tag);
        assert_eq!(sealed, check, "ring and RustCrypto seal alike");
        let tag = Tag::clone_from_slice(&sealed[size..]);

        let mut buf = plain.clone();
        let mut scratch = sealed.clone();
        let mut counter = 0u64;
        let [mut seal_ring, mut seal_rc, mut open_ring, mut open_rc] =
            [0; 4].map(|_| Vec::with_capacity(rounds));
        for round in 0..rounds {
            // Ours first in even rounds, theirs first in odd ones.
            let order = if round % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for ours_now in order {
                if ours_now {
                    seal_ring.push(time(|| {
                        counter += 1;
                        black_box(ours.seal(counter, black_box(&header), &mut buf));
                    }));
                } else {
                    seal_rc.push(time(|| {
                        counter += 1;
                        let tag = theirs
                            .encrypt_in_place_detached(
                                &nonce(counter),
                                black_box(&header),
                                &mut buf,
                            )
                            .expect("a datagram is far below the length limit");
                        black_box(tag);
                    }));
                }
            }
            for ours_now in order {
                if ours_now {
                    open_ring.push(time(|| {
                        scratch.copy_from_slice(&sealed);
                        let opened = ours_peer.open_in_place(9, black_box(&header), &mut scratch);
                        assert!(opened.is_ok());
                    }));
                } else {
                    open_rc.push(time(|| {
                        scratch.copy_from_slice(&sealed);
                        let opened = theirs.decrypt_in_place_detached(
                            &nonce(9),
                            black_box(&header),
                            &mut scratch[..size],
                            &tag,
                        );
                        assert!(opened.is_ok());
                    }));
                }
            }
        }
        for (what, ring, rc) in [
            ("seal", &mut seal_ring, &mut seal_rc),
            ("open", &mut open_ring, &mut open_rc),
        ] {
            let (ring, rc) = (median(ring), median(rc));
            println!(
                "{what} {size:>5} B: TransportKeys (ring) {ring:>7.0} ns, \
                 chacha20poly1305 0.10 {rc:>7.0} ns: {:.1}x faster",
                rc / ring
            );
        }
    }
}
