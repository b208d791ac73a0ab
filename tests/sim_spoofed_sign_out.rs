//! A forged source address cannot sign someone out: SignOut datagrams that
//! claim Alice's address with no token, a made-up token, or another user's
//! real token leave her signed in, and the "unknown session" errors they
//! provoke (sent to Alice's address) do not disturb her client. Nor can a
//! forged sign-in from her address under another name replace her.

mod common;

use std::net::SocketAddr;

use common::{SERVER_ADDR, Sim, for_seeds, secs};
use udpchat::client::ClientEvent;
use udpchat::codec::{Packet, PacketType};
use udpchat::server::ServerEvent;

/// The session token the server gave `who`, read off the wire.
fn token_of(sim: &Sim, who: SocketAddr) -> Vec<u8> {
    sim.captured()
        .iter()
        .rev()
        .filter(|c| c.from == SERVER_ADDR && c.to == who)
        .find_map(|c| match c.packet() {
            Some(Packet::SignInAccepted { token, .. }) => Some(token.to_vec()),
            _ => None,
        })
        .expect("a SignInAccepted was captured")
}

#[test]
fn spoofed_sign_outs_do_not_remove_alice() {
    for_seeds(50, |seed| {
        let mut sim = Sim::new(seed);
        sim.capture();
        let alice = sim.add_client("Alice");
        let bob = sim.add_client("Bob");
        sim.wait_signed_in(&["Alice", "Bob"], secs(10));
        let bobs_token = token_of(&sim, bob);
        let made_up: Vec<u8> = (0..16).map(|_| sim.rng.next_u64() as u8).collect();

        for (i, token) in [&[][..], &made_up, &bobs_token].into_iter().enumerate() {
            for _ in 0..3 {
                let request = 0xDEAD_0000 + i as u32;
                sim.inject_packet(alice, SERVER_ADDR, &Packet::SignOut { request, token });
                sim.run_for(secs(1) / 5);
            }
        }
        // Sign-in from her address under another name, with a made-up cookie:
        // without echoing a real cookie it cannot replace her session.
        let eve = Packet::SignIn {
            request: 0xDEAD_0100,
            name: "Eve",
            cookie: &made_up,
        };
        sim.inject_packet(alice, SERVER_ADDR, &eve);
        sim.run_for(secs(5));

        assert_eq!(sim.server().lookup("Alice"), Some(alice), "seed {seed}");
        assert_eq!(sim.server().lookup("Eve"), None, "seed {seed}");
        assert!(
            !sim.server_events().iter().any(
                |e| matches!(&e.event, ServerEvent::SignedOut { name, .. } if name == "Alice")
            ),
            "seed {seed}: the server let Alice go: {:?}",
            sim.server_events()
        );
        // The server answered the forgeries with small errors, never data.
        let to_alice = sim.pair(SERVER_ADDR, alice);
        assert_eq!(
            to_alice.sent_of(PacketType::SignOutAck).datagrams,
            0,
            "seed {seed}"
        );
        assert!(
            to_alice.sent_of(PacketType::Error).datagrams >= 1,
            "seed {seed}"
        );
        // Alice's client shrugged the errors off: no reconnect, still in.
        assert!(sim.client("Alice").is_signed_in());
        assert_eq!(
            sim.count("Alice", |e| matches!(
                e,
                ClientEvent::Reconnected | ClientEvent::ServerLost
            )),
            0,
            "seed {seed}: {:?}",
            sim.events("Alice")
        );
        // And she still works.
        let id = sim.send("Bob", "Alice", "you are still here");
        sim.wait_delivered("Bob", id, secs(20));
        let list = sim.list("Alice");
        let names = sim.wait_list("Alice", list, secs(15));
        assert!(names.iter().any(|n| n == "Alice") && names.iter().any(|n| n == "Bob"));
    });
}
