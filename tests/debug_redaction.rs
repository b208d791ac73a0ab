//! No secret in any `Debug`: the server's secret, a client's session token
//! and cookie, and a static key's secret half never show when a program logs
//! the library's types with `{:?}`.

mod common;

use common::{Sim, secs};
use udpchat::codec::Packet;
use udpchat::crypto::StaticKeypair;
use udpchat::server::ServerConfig;

/// The ways `Debug` could show `bytes`: as decimal list items, as escaped
/// byte-string text, or as hex.
fn renderings(bytes: &[u8]) -> Vec<String> {
    let window = &bytes[..4.min(bytes.len())];
    vec![
        window
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        window.iter().map(|b| format!("\\x{b:02x}")).collect(),
        window.iter().map(|b| format!("{b:02x}")).collect(),
    ]
}

fn assert_hidden(debug: &str, secret: &[u8], what: &str) {
    for shown in renderings(secret) {
        assert!(
            !debug.contains(&shown),
            "{what} shows {shown:?} in:\n{debug}"
        );
    }
}

#[test]
fn configs_states_and_keys_never_show_their_secrets() {
    let secret = [
        0xAB, 0x17, 0xC3, 0x5E, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0xFF, 0xEE,
    ];
    let config = ServerConfig::with_secret(secret);
    assert_hidden(&format!("{config:?}"), &secret, "ServerConfig");

    let mut sim = Sim::clean(1);
    sim.capture();
    sim.add_client("Alice");
    sim.wait_signed_in(&["Alice"], secs(10));
    let token = sim
        .captured()
        .iter()
        .find_map(|c| match c.packet() {
            Some(Packet::SignInAccepted { token, .. }) => Some(token.to_vec()),
            _ => None,
        })
        .expect("a SignInAccepted went by");
    let cookie = sim
        .captured()
        .iter()
        .find_map(|c| match c.packet() {
            Some(Packet::Retry { cookie, .. }) => Some(cookie.to_vec()),
            _ => None,
        })
        .expect("a Retry went by");
    let client = format!("{:?}", sim.client("Alice"));
    assert!(client.contains("Alice"), "{client}");
    assert_hidden(&client, &token, "ClientState (token)");
    assert_hidden(&client, &cookie, "ClientState (cookie)");
    let server = format!("{:?}", sim.server());
    assert_hidden(&server, &token, "ServerState (token)");

    let pair = StaticKeypair::from_secret([0x5A; 32]);
    assert_hidden(&format!("{pair:?}"), pair.secret_bytes(), "StaticKeypair");
}
