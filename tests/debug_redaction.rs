//! No secret in any `Debug`: the server's identity, cookie key and seed, a
//! client's identity and seed, a static key's secret half, and session keys
//! never show when a program logs the library's types with `{:?}`.

mod common;

use common::{Sim, secs};
use udpchat::client::ClientConfig;
use udpchat::crypto::{StaticKeypair, TransportKeys};
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
    let identity = [
        0xAB, 0x17, 0xC3, 0x5E, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0xFF, 0xEE, 0xAB, 0x17, 0xC3, 0x5E,
        9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0xFF, 0xEE,
    ];
    let config = ServerConfig::new(identity, [0x6C; 32]);
    let debug = format!("{config:?}");
    assert_hidden(&debug, &identity, "ServerConfig (identity)");
    assert_hidden(&debug, &config.secret, "ServerConfig (cookie key)");
    assert_hidden(&debug, &config.seed, "ServerConfig (seed)");

    let client = ClientConfig::new("Alice", common::SERVER_ADDR, identity);
    assert_hidden(&format!("{client:?}"), &identity, "ClientConfig (identity)");

    let mut sim = Sim::clean(1);
    sim.add_client("Alice");
    sim.add_client("Bob");
    sim.wait_signed_in(&["Alice", "Bob"], secs(10));
    let id = sim.send("Alice", "Bob", "hi");
    sim.wait_delivered("Alice", id, secs(5));
    let alice_identity = sim.identity_of("Alice");
    let client = format!("{:?}", sim.client("Alice"));
    assert!(client.contains("Alice"), "{client}");
    assert_hidden(&client, &alice_identity, "ClientState (identity)");
    let server = format!("{:?}", sim.server());
    assert_hidden(
        &server,
        &sim.server_config.identity,
        "ServerState (identity)",
    );
    assert_hidden(
        &server,
        &sim.server_config.secret,
        "ServerState (cookie key)",
    );

    let pair = StaticKeypair::from_secret([0x5A; 32]);
    assert_hidden(&format!("{pair:?}"), pair.secret_bytes(), "StaticKeypair");
    let keys = TransportKeys::from_raw(&[0x5B; 32], &[0x5C; 32]);
    assert_hidden(&format!("{keys:?}"), &[0x5B; 32], "TransportKeys");
}
