//! Terminal safety: text full of escape sequences and control characters
//! arrives intact in the event (the library does not alter text), and
//! `udpchat::text::escape`, what the client prints, contains no control
//! character at all. Names cannot carry control characters in the first place.

mod common;

use common::raw::Signed;
use common::{SERVER_ADDR, Sim, for_seeds, secs};
use udpchat::client::{ClientConfig, ClientEvent, ClientState};
use udpchat::codec::{Packet, RefuseReason};
use udpchat::text::escape;

const NASTY: &[&str] = &[
    "\u{1b}[2J\u{1b}[H cleared your screen",
    "\u{1b}]0;pwned\u{7} retitled your window",
    "line one\r\nfake line <From 1.2.3.4:5:Bob>: trust me",
    "bell\u{7}\u{7}\u{7} and backspace\u{8}\u{8}",
    "C1 CSI \u{9b}31m red \u{9b}0m",
    "bidi \u{202e}gnp.exe\u{202c} override",
    "nul \u{0} and del \u{7f}",
    "a forged escape \\u{1b} stays visible",
];

fn harmless(s: &str) -> bool {
    !s.chars()
        .any(|c| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
}

#[test]
fn escape_sequences_arrive_intact_and_print_escaped() {
    for_seeds(50, |seed| {
        let mut sim = Sim::new(seed);
        let alice = sim.add_client("Alice");
        sim.add_client("Bob");
        sim.wait_signed_in(&["Alice", "Bob"], secs(10));
        let ids: Vec<_> = NASTY.iter().map(|t| sim.send("Alice", "Bob", t)).collect();
        sim.run_until("every nasty message settled", secs(40), |s| {
            ids.iter().all(|id| s.settled("Alice", *id))
        });
        sim.run_for(secs(2));
        let got = sim.received("Bob");
        let texts: Vec<&str> = got.iter().map(|(_, _, t)| t.as_str()).collect();
        assert_eq!(texts, NASTY, "seed {seed}: text altered or lost");
        for (from, address, text) in &got {
            assert_eq!((from.as_str(), *address), ("Alice", alice));
            let shown = escape(text);
            assert!(
                harmless(&shown),
                "seed {seed}: {shown:?} still has control characters"
            );
            assert!(harmless(&escape(from)));
        }
    });
}

#[test]
fn names_cannot_carry_control_characters() {
    let now = std::time::Instant::now();
    for name in ["\u{1b}[31mEvil", "Bob\r", "a\u{7}", "\u{9b}x", "tab\tname"] {
        assert!(
            ClientState::new(ClientConfig::new(name, SERVER_ADDR, [1; 32]), now, [2; 32]).is_err(),
            "{name:?} accepted as a name"
        );
    }
    // Nor does the server accept one from a raw client that skips the check.
    for_seeds(50, |seed| {
        let mut sim = Sim::clean(seed);
        let raw = sim.fresh_addr();
        sim.add_raw("raw", raw);
        let Signed::Refused(answer) = sim.raw_sign_in("raw", "\u{1b}[2JEvil", [9; 32]) else {
            panic!("seed {seed}: the server did not refuse the name");
        };
        assert!(matches!(
            Packet::decode(&answer),
            Ok(Packet::SignInRefused {
                reason: RefuseReason::InvalidName,
                ..
            })
        ));
        assert_eq!(sim.server().user_count(), 0);
        // And a handshake claiming such a name is never answered.
        let bob = sim.add_client("Bob");
        sim.wait_signed_in(&["Bob"], secs(1));
        let bob_key = sim.client("Bob").public_key();
        sim.raw_peer_init("raw", [9; 32], bob, bob_key, "\u{1b}[2JEvil");
        sim.run_for(secs(12));
        assert_eq!(sim.received_count("Bob"), 0);
        assert!(sim.client("Bob").stats().forged >= 1);
        let answered = sim.inbox("raw").iter().any(|(_, from, _)| *from == bob);
        assert!(!answered, "seed {seed}: Bob answered");
        for e in sim.events("Bob") {
            if let ClientEvent::ForgedMessage { claimed, .. } = &e.event {
                assert!(harmless(&escape(claimed)));
            }
        }
    });
}
