//! An IPv4 client and an IPv6 client of one server write to each other over
//! real sockets: Alice reaches the (dual-stack) server at 127.0.0.1, Bob at
//! ::1. The directory gives Alice Bob's ::1 address; her one dual-stack
//! socket reaches it (her datagrams then come from ::1, not the 127.0.0.1
//! she signed in from). Bob, introduced to Alice by the directory, makes a
//! session of his own to her IPv4 address, so his answer may come by either
//! family. Sessions are found by index, not by address, so both messages are
//! shown, each with the address it really came from.
//!
//! Needs IPv6 on loopback: without it the test says so and, when `CI` is
//! set, fails.

mod common_proc;

use std::net::{Ipv6Addr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common_proc::{CLIENT_BIN, Proc, parse_message, start_server};

const WAIT: Duration = Duration::from_secs(20);

fn client(name: &str, ip: &str, port: u16) -> Proc {
    Proc::spawn(
        name,
        Command::new(CLIENT_BIN).args(["-u", name, "-sip", ip, "-sp", &port.to_string()]),
    )
}

#[test]
fn an_ipv4_client_and_an_ipv6_client_message_each_other() {
    if UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI: this machine has no IPv6 on loopback"
        );
        eprintln!("skipped: no IPv6 on loopback");
        return;
    }
    let (mut server, port) = start_server();
    let mut alice = client("Alice", "127.0.0.1", port);
    let mut bob = client("Bob", "::1", port);
    for p in [&alice, &bob] {
        p.wait_reply(WAIT, 0, "sign-in", |r| r.contains("Signed in as"));
    }

    alice.send("send Bob hello from the IPv4 client");
    let (_, line) = bob.wait_reply(WAIT, 0, "Alice's message", |r| {
        parse_message(r).is_some_and(|m| m.from == "Alice")
    });
    let got = parse_message(&line).expect("matched");
    assert!(
        got.address.is_ipv6(),
        "to Bob's IPv6 address, so from ::1: {line}"
    );
    let alice_from = got.address;
    assert_eq!(got.text, "hello from the IPv4 client");

    bob.send("send Alice hello from the IPv6 client");
    let (_, line) = alice.wait_reply(WAIT, 0, "Bob's message", |r| {
        parse_message(r).is_some_and(|m| m.from == "Bob")
    });
    let got = parse_message(&line).expect("matched");
    // From Bob's socket, by IPv6 (following the session Alice made) or by
    // IPv4 (the session Bob made to the address the server introduced her
    // by): both are real paths, shown as they are.
    assert_ne!(got.address, alice_from, "{line}");
    assert!(got.address.ip().is_loopback(), "{line}");
    assert!(
        bob.udp_ports().contains(&got.address.port()),
        "from Bob's port: {line}"
    );
    assert_eq!(got.text, "hello from the IPv6 client");

    for p in [&mut alice, &mut bob] {
        p.send("quit");
        p.assert_exits_ok(WAIT);
    }
    assert!(server.is_running(), "the server kept running");
}
