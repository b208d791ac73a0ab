//! Floods: one address sends the server requests at 100 times the rate of
//! each honest client (hellos, handshakes with made-up cookies, sealed
//! packets under a session index it guessed, and garbage). The honest clients still sign in, list and look peers up
//! within their deadlines, and the server's rate limit is what absorbs the
//! flood.

mod common;

use common::{SERVER_ADDR, Sim, for_seeds, millis, secs};
use udpchat::client::ClientEvent;
use udpchat::codec::Packet;

const HONEST: [&str; 5] = ["Alice", "Bob", "Carole", "Dave", "Erin"];

#[test]
fn the_others_are_served_during_a_flood() {
    for_seeds(50, |seed| {
        let mut sim = Sim::new(seed);
        let flooder = sim.fresh_addr();
        let junk_bytes: Vec<u8> = (0..120).map(|_| sim.rng.next_u64() as u8).collect();
        let junk: Vec<bytes::Bytes> = vec![
            Packet::Hello { request: 1 }.to_bytes().expect("encodes"),
            Packet::ServerInit {
                cookie: &junk_bytes[..16],
                sender: 2,
                handshake: &junk_bytes,
            }
            .to_bytes()
            .expect("encodes"),
            Packet::Sealed {
                receiver: 0x0000_0100,
                counter: 3,
                sealed: &junk_bytes[..40],
            }
            .to_bytes()
            .expect("encodes"),
            bytes::Bytes::from_static(b"\xff garbage"),
        ];

        // Each honest client makes about 10 requests a second (a list every
        // 100 ms); the flooder 1,000 a second, 10 every 10 ms.
        let tick = millis(10);
        let mut lists = Vec::new();
        let mut sends = Vec::new();
        let mut started = false;
        for t in 0..800u64 {
            for i in 0..10 {
                sim.inject(
                    flooder,
                    SERVER_ADDR,
                    junk[(t as usize + i) % junk.len()].clone(),
                );
            }
            if t == 50 {
                for who in HONEST {
                    sim.add_client(who);
                }
                started = true;
            }
            if started && t % 10 == 0 {
                for who in HONEST {
                    if sim.client(who).is_signed_in() {
                        lists.push((who, sim.list(who), sim.now()));
                    }
                }
            }
            if sends.is_empty() && t >= 400 && HONEST.iter().all(|w| sim.client(w).is_signed_in()) {
                // Lookups: everyone writes to the next one.
                for (i, who) in HONEST.iter().enumerate() {
                    let to = HONEST[(i + 1) % HONEST.len()];
                    sends.push((*who, sim.send(who, to, "through the flood")));
                }
            }
            sim.run_for(tick);
        }
        let flood_rate = sim.pair(flooder, SERVER_ADDR).sent.datagrams as f64 / 8.0;
        assert!(flood_rate >= 1000.0, "{flood_rate}");

        // Sign-in within its deadline (10 s).
        for who in HONEST {
            let signed = sim
                .find(who, |e| matches!(e, ClientEvent::SignedIn))
                .unwrap_or_else(|| {
                    panic!("seed {seed}: {who} never signed in: {:?}", sim.events(who))
                });
            let took = signed.at - sim.start - millis(500);
            assert!(
                took <= secs(10),
                "seed {seed}: {who} signed in after {took:?}"
            );
        }
        // Every list answered (none failed), in at most the request timeout.
        sim.run_for(secs(12));
        assert!(
            lists.len() >= 5 * 40,
            "seed {seed}: only {} lists issued",
            lists.len()
        );
        for (who, id, at) in &lists {
            let answered = sim.events(who).iter().find_map(|e| match &e.event {
                ClientEvent::UserList { id: i, names } if i == id => Some((e.at, names.len())),
                _ => None,
            });
            let Some((when, _)) = answered else {
                panic!(
                    "seed {seed}: {who}'s list {id} was not answered: {:?}",
                    sim.events(who).iter().find(
                        |e| matches!(&e.event, ClientEvent::ListFailed { id: i, .. } if i == id)
                    )
                );
            };
            assert!(when - *at <= secs(10), "seed {seed}");
        }
        // Every lookup answered and every message delivered.
        assert_eq!(
            sends.len(),
            HONEST.len(),
            "seed {seed}: not all signed in by 8 s"
        );
        for (who, id) in &sends {
            assert!(
                sim.delivered(who, *id),
                "seed {seed}: {who}'s send {id}: {:?}",
                sim.delivery_failure(who, *id)
            );
        }
        // The server shed the flood.
        let stats = sim.server().stats();
        assert!(stats.rate_limited > 0, "seed {seed}: {stats:?}");
        assert_eq!(sim.server().user_count(), HONEST.len());
    });
}
