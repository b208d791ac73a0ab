//! Long messages: 64 KiB of text, multi-byte UTF-8 so that fragment
//! boundaries cut characters, crosses a network losing 20 % of datagrams and
//! arrives whole and identical; and what a receiver buffers for messages it
//! has not got whole stays within bounds, and expires.
//!
//! This binary counts heap bytes in use with a global allocator, so its tests
//! take a lock and run one at a time.

mod common;
#[path = "common/heap.rs"]
mod heap;

use std::sync::Mutex;

use common::{Link, Rng, Sim, for_seeds, secs};
use udpchat::codec::{MAX_DATAGRAM, Packet};

/// Tests in this binary run one at a time, so the heap count is theirs.
static SERIAL: Mutex<()> = Mutex::new(());

fn heap() -> isize {
    heap::in_use()
}

const LEN: usize = 64 * 1024;

/// Exactly `len` bytes of UTF-8 mixing 1-, 2-, 3- and 4-byte characters
/// (and a few escape-worthy ones), drawn from `rng`.
fn mixed_text(rng: &mut Rng, len: usize) -> String {
    const CHARS: [char; 10] = ['a', 'Z', ' ', 'é', 'ß', '€', '名', '前', '🎉', '🦀'];
    let mut s = String::with_capacity(len);
    while s.len() < len {
        let c = *rng.pick(&CHARS);
        if s.len() + c.len_utf8() > len {
            s.push('.');
        } else {
            s.push(c);
        }
    }
    s
}

#[test]
fn a_64_kib_message_at_20_percent_loss_arrives_whole() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for_seeds(50, |seed| {
        let link = Link::random_with_loss(&mut Rng::new(seed), 0.20);
        let mut sim = Sim::empty(seed, link);
        sim.start_server(|_| {});
        let alice = sim.add_client("Alice");
        let bob = sim.add_client("Bob");
        sim.wait_signed_in(&["Alice", "Bob"], secs(10));

        let text = mixed_text(&mut sim.rng, LEN);
        assert_eq!(text.len(), LEN);
        // The most text one Message from "Alice" can carry.
        let per = MAX_DATAGRAM - (1 + 8 + 4 + 2 + 2 + 1 + "Alice".len() + 2);
        let fragments = LEN.div_ceil(per);
        // Fragment boundaries do cut characters somewhere.
        assert!((1..fragments).any(|i| !text.is_char_boundary(i * per)));
        let id = sim.send("Alice", "Bob", &text);
        let after = sim.send("Alice", "Bob", "and a short one after it");
        sim.run_until("both messages settled", secs(60), |s| {
            s.settled("Alice", id) && s.settled("Alice", after)
        });
        sim.run_for(secs(5));
        assert!(
            sim.delivered("Alice", id),
            "seed {seed}: {:?}",
            sim.delivery_failure("Alice", id)
        );
        let got = sim.received("Bob");
        assert_eq!(
            got.len(),
            2,
            "seed {seed}: Bob shows {} messages",
            got.len()
        );
        assert_eq!(got[0].0, "Alice");
        assert_eq!(got[0].1, alice);
        assert!(
            got[0].2 == text,
            "seed {seed}: the long message arrived altered"
        );
        assert_eq!(got[1].2, "and a short one after it");
        // It really was split: more than one Message datagram per message.
        let flow = sim.flow(alice, bob);
        assert!(flow.fragments as usize > fragments, "seed {seed}: {flow:?}");
    });
}

#[test]
fn partial_messages_are_bounded_and_expire() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for_seeds(5, |seed| {
        let mut sim = Sim::clean(seed);
        let (streams, window, idle) = (8usize, 32u32, secs(30));
        let bob = sim.add_client_as("Bob", "Bob", |c| {
            c.max_receive_streams = streams;
            c.receive_window = window;
            c.stream_idle_timeout = idle;
        });
        sim.wait_signed_in(&["Bob"], secs(2));
        // Mallory is really signed in, and makes a real session with Bob,
        // so Bob takes her fragments.
        let mallory = sim.fresh_addr();
        sim.add_raw("Mallory", mallory);
        sim.sign_in_directly(mallory, "Mallory");
        sim.run_for(secs(1));
        let bob_key = sim.client("Bob").public_key();
        let secret = sim.identity_of("Mallory");
        let mut session = sim
            .raw_peer_session("Mallory", secret, bob, bob_key, "Mallory")
            .expect("Bob accepts Mallory's handshake: the directory vouches for her");
        // From now on nobody listens at her address: Bob's acks go nowhere.
        sim.remove("Mallory");
        let max_message_len =
            udpchat::client::ClientConfig::new("x", common::SERVER_ADDR, [0; 32]).max_message_len;
        let bound = streams * (window as usize * 1300 + max_message_len + 4096);

        let body = vec![b'm'; 1100];
        let before = heap();
        let mut injected = 0usize;
        // 10x the streams Bob keeps; in each, a message of 60 fragments
        // without its last one, then fragments far ahead of a gap.
        for stream in 0..(10 * streams) as u64 {
            for seq in (0..59).chain(100..100 + window) {
                let fragment = if seq < 59 { seq as u16 } else { 1 };
                let packet = Packet::Message {
                    stream,
                    seq,
                    base: 0,
                    fragment,
                    fragments: 60,
                    body: &body,
                };
                sim.inject(mallory, bob, session.seal_packet(&packet));
                injected += body.len();
            }
            sim.run_for(secs(1) / 10);
        }
        sim.run_for(secs(1));
        let grown = heap() - before;
        assert!(
            injected > 4 * bound,
            "the test must offer more than the bound"
        );
        assert!(
            grown <= bound as isize,
            "seed {seed}: Bob holds {grown} more heap bytes after {injected} bytes of \
             partial messages; bound {bound}"
        );
        assert_eq!(sim.received_count("Bob"), 0);
        eprintln!("seed {seed}: offered {injected} bytes, heap grew {grown} (bound {bound})");
        // Idle streams expire with what they hold, once their sender (who
        // gives up after its message timeout) can send nothing more of them.
        let stale = 6 * udpchat::client::ClientConfig::new("x", common::SERVER_ADDR, [0; 32])
            .message_timeout;
        sim.run_for(stale.max(idle) + secs(2));
        let left = heap() - before;
        eprintln!("seed {seed}: {left} bytes left after {idle:?} idle");
        assert!(
            left <= 64 * 1024,
            "seed {seed}: {left} heap bytes still held {idle:?} after the last fragment"
        );
    });
}
