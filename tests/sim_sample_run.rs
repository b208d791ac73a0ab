//! Issue 2's sample run on a clean simulated network: Alice lists and sees
//! Bob and Carole, sends Carole a message, Carole replies. Message datagrams
//! go client to client and never to or from the server.

mod common;

use std::time::Duration;

use common::{SERVER_ADDR, Sim, for_seeds, secs};
use udpchat::client::ClientEvent;
use udpchat::codec::PacketType;

const HELLO: &str = "Hello this is Alice.";
const REPLY: &str = "Hi Alice! How are you";

fn sample_run(sim: &mut Sim, patience: Duration) {
    let alice = sim.add_client("Alice");
    let bob = sim.add_client("Bob");
    let carole = sim.add_client("Carole");
    sim.wait_signed_in(&["Alice", "Bob", "Carole"], patience);

    // Alice: list.
    let id = sim.list("Alice");
    let names = sim.wait_list("Alice", id, patience);
    for who in ["Bob", "Carole"] {
        assert_eq!(
            names.iter().filter(|n| *n == who).count(),
            1,
            "seed {}: {who} once in Alice's list {names:?}",
            sim.seed
        );
    }
    assert!(
        names
            .iter()
            .all(|n| ["Alice", "Bob", "Carole"].contains(&n.as_str())),
        "seed {}: unexpected names in {names:?}",
        sim.seed
    );

    // Alice -> Carole.
    let id = sim.send("Alice", "Carole", HELLO);
    sim.run_until("Carole shows Alice's message", patience, |s| {
        s.received_count("Carole") >= 1
    });
    sim.wait_delivered("Alice", id, patience);
    assert_eq!(
        sim.received("Carole"),
        vec![("Alice".to_string(), alice, HELLO.to_string())]
    );

    // Carole -> Alice.
    let id = sim.send("Carole", "Alice", REPLY);
    sim.run_until("Alice shows Carole's reply", patience, |s| {
        s.received_count("Alice") >= 1
    });
    sim.wait_delivered("Carole", id, patience);
    assert_eq!(
        sim.received("Alice"),
        vec![("Carole".to_string(), carole, REPLY.to_string())]
    );
    assert!(sim.received("Bob").is_empty());

    // The peer handshakes went client to client, never through the server.
    for ty in [PacketType::PeerInit, PacketType::PeerResp] {
        for (from, to, tally) in sim.sent_of_type(ty) {
            assert!(
                from != SERVER_ADDR && to != SERVER_ADDR,
                "seed {}: {} {ty:?} datagrams between {from} and {to}",
                sim.seed,
                tally.datagrams
            );
        }
    }
    let a_to_c = sim.pair(alice, carole).delivered_of(PacketType::Sealed);
    let c_to_a = sim.pair(carole, alice).delivered_of(PacketType::Sealed);
    assert!(a_to_c.datagrams >= 1 && c_to_a.datagrams >= 1);
    assert_eq!(sim.pair(alice, bob).sent.datagrams, 0);
    // A sniffer anywhere saw no message text, nor any word of it, in any
    // datagram: the server never had it, and between peers it was sealed.
    for c in sim.captured() {
        for word in HELLO
            .split(' ')
            .chain(REPLY.split(' '))
            .filter(|w| w.len() >= 4)
        {
            assert!(
                !c.payload.windows(word.len()).any(|w| w == word.as_bytes()),
                "seed {}: {word:?} in the clear in {:?}",
                sim.seed,
                c.packet()
            );
        }
    }
    assert!(
        sim.events("Alice")
            .iter()
            .all(|e| !matches!(e.event, ClientEvent::ForgedMessage { .. }))
    );
}

#[test]
fn sample_run_on_a_clean_network() {
    for_seeds(50, |seed| {
        let mut sim = Sim::clean(seed);
        sim.capture();
        sample_run(&mut sim, secs(1));
    });
}

/// The same run on a bad network (loss 0-30 %, duplication, reordering):
/// slower, same outcome.
#[test]
fn sample_run_on_a_bad_network() {
    for_seeds(50, |seed| {
        let mut sim = Sim::new(seed);
        sim.capture();
        sample_run(&mut sim, secs(10));
    });
}
