//! Sign-in on a bad network: at 30 % loss (plus duplication and reordering)
//! it succeeds; against a server that never answers it fails with
//! `SignInFailed(NoAnswer)` at about the request timeout, after a bounded
//! number of retries, and the client is closed.

mod common;

use common::{Link, Rng, SERVER_ADDR, Sim, for_seeds, secs};
use udpchat::client::{ClientConfig, ClientEvent, SignInError};
use udpchat::codec::PacketType;

#[test]
fn sign_in_succeeds_at_30_percent_loss() {
    for_seeds(50, |seed| {
        let link = Link::random_with_loss(&mut Rng::new(seed), 0.30);
        let mut sim = Sim::empty(seed, link);
        sim.start_server(|_| {});
        let timeout = ClientConfig::new("x", SERVER_ADDR, [0; 32]).request_timeout;
        let names = ["Alice", "Bob", "Carole", "Dave"];
        for n in names {
            sim.add_client(n);
        }
        sim.run_until(
            "every client signs in or gives up",
            timeout + secs(1),
            |s| {
                names.iter().all(|n| {
                    s.has_signed_in(n)
                        || s.find(n, |e| matches!(e, ClientEvent::SignInFailed(_)))
                            .is_some()
                })
            },
        );
        for n in names {
            assert!(
                sim.has_signed_in(n) && sim.client(n).is_signed_in(),
                "seed {seed}: {n} did not sign in at 30% loss: {:?}",
                sim.events(n)
            );
            assert_eq!(sim.server().lookup(n).map(|(a, _)| a), Some(sim.addr(n)));
        }
    });
}

#[test]
fn unanswered_sign_in_fails_at_the_request_timeout() {
    for_seeds(50, |seed| {
        let mut sim = Sim::empty(seed, Sim::random_link(seed));
        // No server at SERVER_ADDR: every datagram to it is lost.
        let alice = sim.add_client("Alice");
        let timeout = ClientConfig::new("x", SERVER_ADDR, [0; 32]).request_timeout;
        let took = sim.run_until("Alice gives up", timeout * 2, |s| {
            s.find("Alice", |e| matches!(e, ClientEvent::SignInFailed(_)))
                .is_some()
        });
        assert_eq!(
            sim.events("Alice")
                .iter()
                .map(|e| e.event.clone())
                .collect::<Vec<_>>(),
            vec![ClientEvent::SignInFailed(SignInError::NoAnswer)],
            "seed {seed}"
        );
        assert!(
            took >= timeout.mul_f64(0.9) && took <= timeout.mul_f64(1.2),
            "seed {seed}: gave up after {took:?}, the request timeout is {timeout:?}"
        );
        let client = sim.client("Alice");
        assert!(client.is_closed() && !client.is_signed_in());
        assert_eq!(client.poll_timeout(), None, "a closed client has no timer");
        // Retried with backoff: more than once, but never more often than
        // the retry cap allows (no flood of a server that is down).
        let config = ClientConfig::new("x", SERVER_ADDR, [0; 32]);
        let most =
            (timeout.as_secs_f64() / config.max_request_retry.as_secs_f64()).ceil() as u64 + 4;
        let tries = sim
            .pair(alice, SERVER_ADDR)
            .sent_of(PacketType::Hello)
            .datagrams;
        assert!(
            (3..=most).contains(&tries),
            "seed {seed}: {tries} sign-in attempts in {took:?}"
        );
        // Nothing more happens.
        let sent = sim.pair(alice, SERVER_ADDR).sent;
        sim.run_for(secs(60));
        assert_eq!(sim.pair(alice, SERVER_ADDR).sent, sent);
    });
}
