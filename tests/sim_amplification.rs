//! No amplification: for datagrams claiming source addresses that never
//! prove they receive there (nobody listens at them), the server sends each
//! such address at most 3x the bytes it received from it, whatever is sent:
//! hellos, handshakes, sealed packets, sealed-only packets in the clear,
//! garbage, and a real client's datagrams (its handshake with a valid cookie,
//! its sealed requests) replayed from another address. Nor does it answer
//! them a handshake.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::{SERVER_ADDR, Sim, for_seeds, secs};
use udpchat::codec::{Packet, PacketType};

/// What an attacker sends from (claiming) `victim`, once per round.
fn forgeries(sim: &mut Sim, captured: &[Bytes]) -> Vec<Bytes> {
    let mut out: Vec<Bytes> = Vec::new();
    let cookie: Vec<u8> = (0..16).map(|_| sim.rng.next_u64() as u8).collect();
    let junk: Vec<u8> = (0..200).map(|_| sim.rng.next_u64() as u8).collect();
    let request = sim.rng.next_u64() as u32;
    let index = sim.rng.next_u64() as u32;
    let mut push = |p: Packet<'_>| out.push(p.to_bytes().expect("encodes"));
    push(Packet::Hello { request });
    for len in [0, 48, 96, 200] {
        push(Packet::ServerInit {
            cookie: &cookie,
            sender: index,
            handshake: &junk[..len],
        });
        push(Packet::Sealed {
            receiver: index,
            counter: 0,
            sealed: &junk[..len],
        });
        push(Packet::PeerInit {
            sender: index,
            handshake: &junk[..len],
        });
    }
    // Sealed-only packets in the clear: dropped.
    for name in ["", "a", "Alice", "Bob", "a_rather_long_name_of_32_chars__"] {
        push(Packet::SignIn {
            request,
            name,
            replaces: 0,
            candidates: udpchat::AddrList::EMPTY,
        });
        push(Packet::LookupRequest {
            request,
            name,
            introduce: false,
        });
    }
    push(Packet::ListRequest { request, cursor: 0 });
    push(Packet::KeepAlive { request });
    push(Packet::SignOut { request });
    push(Packet::Probe { request });
    push(Packet::Ack {
        stream: 1,
        first: 2,
        last: 2,
    });
    // Garbage, and the empty datagram.
    for len in [0usize, 1, 5, 40] {
        let bytes: Vec<u8> = (0..len).map(|_| sim.rng.next_u64() as u8).collect();
        out.push(bytes.into());
    }
    // Replays of a real client's datagrams: its Hello, its handshake (with
    // a cookie for its own address), its sealed requests.
    out.extend(captured.iter().cloned());
    out
}

#[test]
fn unvalidated_addresses_get_at_most_3x() {
    let mut worst = 0.0f64;
    for_seeds(50, |seed| {
        let mut sim = Sim::new(seed);
        sim.capture();
        let alice = sim.add_client("Alice");
        sim.add_client("Bob");
        sim.wait_signed_in(&["Alice", "Bob"], secs(10));
        let list = sim.list("Alice");
        sim.wait_list("Alice", list, secs(15));
        let id = sim.send("Alice", "Bob", "hello");
        sim.wait_delivered("Alice", id, secs(20));
        // Alice's real datagrams: Hello, ServerInit with her cookie, sealed
        // list, lookup and keep-alives.
        let captured: Vec<Bytes> = sim
            .captured()
            .iter()
            .filter(|c| c.from == alice && c.to == SERVER_ADDR)
            .map(|c| c.payload.clone())
            .collect();
        assert!(
            captured
                .iter()
                .any(|b| matches!(Packet::decode(b), Ok(Packet::ServerInit { .. })))
        );

        let victims: Vec<SocketAddr> = (0..16).map(|_| sim.fresh_addr()).collect();
        for _round in 0..5 {
            for &victim in &victims {
                for datagram in forgeries(&mut sim, &captured) {
                    sim.inject(victim, SERVER_ADDR, datagram);
                }
            }
            sim.run_for(secs(1));
        }
        sim.run_for(secs(2));

        for &victim in &victims {
            let asked = sim.pair(victim, SERVER_ADDR);
            let answered = sim.pair(SERVER_ADDR, victim);
            assert_eq!(
                asked.delivered.bytes, asked.sent.bytes,
                "injected datagrams all arrive"
            );
            assert!(
                answered.sent.bytes <= 3 * asked.delivered.bytes,
                "seed {seed}: the server sent {victim} {} bytes for {} received",
                answered.sent.bytes,
                asked.delivered.bytes
            );
            // Sealed answers may go there (a replayed packet of Alice's
            // that never arrived opens), held to 3x with the rest; a
            // handshake answer never does.
            for ty in [PacketType::ServerResp, PacketType::PeerResp] {
                assert_eq!(
                    answered.sent_of(ty).datagrams,
                    0,
                    "seed {seed}: the server sent an unvalidated {victim} a {ty:?}"
                );
            }
            let ratio = answered.sent.bytes as f64 / asked.delivered.bytes as f64;
            worst = worst.max(ratio);
        }
        // The real clients are undisturbed.
        assert_eq!(sim.server().lookup("Alice").map(|(a, _)| a), Some(alice));
    });
    println!("worst reply-to-request byte ratio for an unvalidated address: {worst:.3}");
}

/// Each single forged datagram on its own, from a fresh address: the reply
/// to it alone is at most 3x its size.
#[test]
fn no_single_datagram_is_amplified() {
    let mut worst = (0.0f64, String::new());
    for_seeds(50, |seed| {
        let mut sim = Sim::clean(seed);
        sim.capture();
        let alice = sim.add_client("Alice");
        sim.wait_signed_in(&["Alice"], secs(1));
        let captured: Vec<Bytes> = sim
            .captured()
            .iter()
            .filter(|c| c.from == alice && c.to == SERVER_ADDR)
            .map(|c| c.payload.clone())
            .collect();
        for datagram in forgeries(&mut sim, &captured) {
            let victim = sim.fresh_addr();
            let len = datagram.len() as u64;
            sim.inject(victim, SERVER_ADDR, datagram.clone());
            sim.run_for(secs(1) / 10);
            let answered = sim.pair(SERVER_ADDR, victim).sent.bytes;
            assert!(
                answered <= 3 * len,
                "seed {seed}: {answered} bytes for the {len}-byte {:?}",
                Packet::decode(&datagram)
            );
            let ratio = answered as f64 / len.max(1) as f64;
            if ratio > worst.0 {
                worst = (ratio, format!("{:?}", Packet::decode(&datagram)));
            }
        }
    });
    println!(
        "worst single-datagram ratio: {:.3}, for {}",
        worst.0, worst.1
    );
}
