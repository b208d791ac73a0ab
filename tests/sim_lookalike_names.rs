//! Look-alike names: while Alice is signed in, nobody can sign in under a
//! name that shows as `Alice`. Invisible characters (`Alice` + U+200B, U+200D,
//! U+FEFF) are refused as invalid by the client and by the server; names that
//! look the same (Cyrillic `Аlice`, `AIice` with a capital I, `A1ice`) are
//! refused as in use, and the refusal names the holder:
//! `name Аlice is in use (it looks like Alice)`. A name not in NFC is invalid
//! on the wire; the client normalises its own before signing in.
//!
//! Decision: names are not accounts, so a look-alike of a name nobody holds
//! may sign in, as `Alice` itself may once Alice has left; the real Alice is
//! then the one refused, and told whose name hers looks like.

mod common;

use common::raw::Signed;
use common::{SERVER_ADDR, Sim, for_seeds, secs};
use udpchat::client::{ClientConfig, ClientEvent, ClientState, SignInError};
use udpchat::codec::{Packet, RefuseReason};
use udpchat::name::NameError;

/// `Аlice` with U+0410 CYRILLIC CAPITAL LETTER A.
const CYRILLIC_ALICE: &str = "\u{410}lice";

/// Names that look like `Alice` without an invisible character.
const LOOK_ALIKES: &[&str] = &[
    CYRILLIC_ALICE,
    "\u{410}LICE",   // Cyrillic А, the rest upper case
    "Al\u{456}ce",   // U+0456 CYRILLIC SMALL LETTER BYELORUSSIAN-UKRAINIAN I
    "AIice",         // capital I for the l
    "A1ice",         // digit one for the l
    "\u{391}lice",   // U+0391 GREEK CAPITAL LETTER ALPHA
    "Alic\u{435}",   // U+0435 CYRILLIC SMALL LETTER IE
    "\u{ff21}lice",  // U+FF21 FULLWIDTH LATIN CAPITAL LETTER A
    "\u{1d400}lice", // U+1D400 MATHEMATICAL BOLD CAPITAL A
];

/// `Alice` with an invisible character somewhere.
const INVISIBLE: &[(&str, char)] = &[
    ("Alice\u{200b}", '\u{200b}'),
    ("Alice\u{200d}", '\u{200d}'),
    ("Alice\u{feff}", '\u{feff}'),
    ("\u{200b}Alice", '\u{200b}'),
    ("Al\u{ad}ice", '\u{ad}'),
    ("Alice\u{e0041}", '\u{e0041}'),
    ("Alice\u{fe0f}", '\u{fe0f}'),
    ("\u{202e}ecilA", '\u{202e}'),
];

/// Signs in at the server from a raw node as `name`, skipping the client's
/// own checks, and returns the server's answer to the second SignIn.
fn raw_sign_in(sim: &mut Sim, label: &str, name: &str) -> (RefuseReason, String) {
    let raw = sim.fresh_addr();
    sim.add_raw(label, raw);
    let secret = sim.identity_of(label);
    match sim.raw_sign_in(label, name, secret) {
        Signed::Refused(answer) => match Packet::decode(&answer) {
            Ok(Packet::SignInRefused { reason, holder, .. }) => (reason, holder.to_owned()),
            other => panic!("{name:?}: {other:?}"),
        },
        Signed::In(_) => panic!("{name:?} was accepted"),
        Signed::Nothing => panic!("no answer to the sign-in of {name:?}"),
    }
}

#[test]
fn invisible_characters_are_refused_and_the_refusal_says_which() {
    let now = std::time::Instant::now();
    for &(name, c) in INVISIBLE {
        let refused =
            ClientState::new(ClientConfig::new(name, SERVER_ADDR, [1; 32]), now, [2; 32]).err();
        assert_eq!(refused, Some(NameError::Invisible(c)), "{name:?}");
    }
    assert_eq!(
        NameError::Invisible('\u{200b}').to_string(),
        "a name cannot contain U+200B (an invisible character)"
    );
    // Nor does the server take one from a client that skips the check, while
    // Alice is signed in or not.
    for_seeds(10, |seed| {
        let mut sim = Sim::clean(seed);
        if seed % 2 == 0 {
            sim.add_client("Alice");
            sim.wait_signed_in(&["Alice"], secs(5));
        }
        for (i, &(name, _)) in INVISIBLE.iter().enumerate() {
            let answer = raw_sign_in(&mut sim, &format!("raw{i}"), name);
            assert_eq!(
                answer,
                (RefuseReason::InvalidName, String::new()),
                "seed {seed}: {name:?}"
            );
        }
        let users = usize::from(seed % 2 == 0);
        assert_eq!(sim.server().user_count(), users, "seed {seed}");
    });
}

#[test]
fn look_alikes_of_a_signed_in_name_are_refused_naming_the_holder() {
    for_seeds(20, |seed| {
        let mut sim = Sim::new(seed);
        let alice = sim.add_client("Alice");
        sim.wait_signed_in(&["Alice"], secs(10));
        sim.run_for(secs(1));
        for (i, &name) in LOOK_ALIKES.iter().enumerate() {
            let label = format!("Mallory{i}");
            sim.add_client_as(&label, name, |_| {});
            sim.run_until("the look-alike's sign-in is answered", secs(12), |s| {
                !s.events(&label).is_empty()
            });
            let events: Vec<ClientEvent> =
                sim.events(&label).iter().map(|e| e.event.clone()).collect();
            let expected = SignInError::LooksLike {
                name: name.into(),
                holder: "Alice".into(),
            };
            assert_eq!(
                events,
                [ClientEvent::SignInFailed(expected.clone())],
                "seed {seed}: {name:?} was not refused"
            );
            assert_eq!(
                expected.to_string(),
                format!("name {name} is in use (it looks like Alice)")
            );
            assert!(sim.client(&label).is_closed());
        }
        assert_eq!(sim.server().user_count(), 1, "seed {seed}");
        assert_eq!(
            sim.server().lookup("Alice").map(|(a, _)| a),
            Some(alice),
            "seed {seed}"
        );
        assert!(sim.client("Alice").is_signed_in());
        assert_eq!(
            sim.count("Alice", |e| matches!(e, ClientEvent::Reconnected)),
            0,
            "seed {seed}"
        );
    });
}

#[test]
fn the_server_refuses_look_alikes_and_non_nfc_names_on_the_wire() {
    for_seeds(10, |seed| {
        let mut sim = Sim::clean(seed);
        sim.add_client("Alice");
        sim.wait_signed_in(&["Alice"], secs(5));
        // Alice answers the probe at once, so the refusal follows it.
        let answer = raw_sign_in(&mut sim, "raw", CYRILLIC_ALICE);
        assert_eq!(answer, (RefuseReason::NameInUse, "Alice".to_owned()));
        // `Zoë` with a combining diaeresis is not the wire's spelling.
        let answer = raw_sign_in(&mut sim, "nfd", "Zoe\u{308}");
        assert_eq!(answer, (RefuseReason::InvalidName, String::new()));
        assert_eq!(sim.server().user_count(), 1);
    });
}

#[test]
fn the_client_signs_in_under_the_nfc_spelling() {
    for_seeds(5, |seed| {
        let mut sim = Sim::clean(seed);
        let zoe = sim.add_client_as("Zoë", "Zoe\u{308}", |_| {});
        sim.wait_signed_in(&["Zoë"], secs(5));
        assert_eq!(sim.client("Zoë").name(), "Zoë");
        assert_eq!(sim.server().lookup("Zoë").map(|(a, _)| a), Some(zoe));
        assert_eq!(sim.server().lookup("Zoe\u{308}").map(|(a, _)| a), Some(zoe));
        // Alice writes to the decomposed spelling; Zoë gets it.
        sim.add_client("Alice");
        sim.wait_signed_in(&["Alice"], secs(5));
        let id = sim.send("Alice", "Zoe\u{308}", "hi");
        sim.run_until("delivered", secs(10), |s| s.settled("Alice", id));
        let got = sim.received("Zoë");
        assert_eq!(got.len(), 1, "seed {seed}");
        assert_eq!(got[0].0, "Alice");
    });
}

#[test]
fn legal_names_stay_legal_side_by_side() {
    let names = [
        "Alice", "Bob", "Zoë", "山田", "名前", "a", "b", "x-y", "x_y", "Carole",
    ];
    let long = "z".repeat(32);
    for_seeds(5, |seed| {
        let mut sim = Sim::clean(seed);
        for name in names.iter().copied().chain([long.as_str()]) {
            sim.add_client(name);
        }
        let all: Vec<&str> = names.iter().copied().chain([long.as_str()]).collect();
        sim.wait_signed_in(&all, secs(10));
        assert_eq!(sim.server().user_count(), all.len(), "seed {seed}");
    });
}

#[test]
fn a_look_alike_of_a_name_nobody_holds_may_sign_in() {
    for_seeds(20, |seed| {
        let mut sim = Sim::new(seed);
        sim.add_client("Alice");
        sim.wait_signed_in(&["Alice"], secs(10));
        sim.sign_out("Alice");
        sim.run_until("Alice has left", secs(12), |s| s.server().user_count() == 0);
        let mallory = sim.add_client_as("Mallory", CYRILLIC_ALICE, |_| {});
        sim.wait_signed_in(&["Mallory"], secs(10));
        assert_eq!(
            sim.server().lookup(CYRILLIC_ALICE).map(|(a, _)| a),
            Some(mallory)
        );
        // The lookup key ignores case and look-alikes: `Alice` finds him too.
        assert_eq!(sim.server().lookup("Alice").map(|(a, _)| a), Some(mallory));
        // Now Alice coming back is the look-alike, and is told of whom.
        sim.add_client_as("Alice again", "Alice", |_| {});
        sim.run_until("Alice's sign-in is answered", secs(12), |s| {
            !s.events("Alice again").is_empty()
        });
        let events: Vec<ClientEvent> = sim
            .events("Alice again")
            .iter()
            .map(|e| e.event.clone())
            .collect();
        assert_eq!(
            events,
            [ClientEvent::SignInFailed(SignInError::LooksLike {
                name: "Alice".into(),
                holder: CYRILLIC_ALICE.into(),
            })],
            "seed {seed}"
        );
        assert_eq!(
            sim.server().lookup("Alice").map(|(a, _)| a),
            Some(mallory),
            "seed {seed}"
        );
    });
}
