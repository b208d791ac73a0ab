//! The sample run of DESIGN.md with the real binaries on 127.0.0.1, driven
//! through pipes: Alice lists and sees Bob and Carole, sends Carole a
//! message, Carole replies; then end of input signs every client out.

mod common_proc;

use std::time::Duration;

use common_proc::{
    Proc, REPLY, list_until, parse_message, parse_users, start_client, start_server, wait_udp_port,
};

const WAIT: Duration = Duration::from_secs(20);

/// The messages a client has shown so far.
fn messages(p: &Proc) -> Vec<common_proc::Received> {
    p.replies()
        .iter()
        .filter_map(|r| parse_message(r))
        .collect()
}

#[test]
fn sample_run_through_pipes() {
    let (mut server, server_port) = start_server();
    let mut bob = start_client("Bob", server_port);
    let mut carole = start_client("Carole", server_port);
    let mut alice = start_client("Alice", server_port);

    // Alice `list`: `<– Signed In Users: Bob, Carole`, in some order, without Alice.
    let users = list_until(&mut alice, &["Bob", "Carole"], WAIT);
    let set = parse_users(&users).expect("checked by list_until");
    assert_eq!(set.len(), 2, "{users:?}");
    let names: Vec<&str> = set.iter().map(String::as_str).collect();
    let one_order = format!("{REPLY}Signed In Users: {}", names.join(", "));
    let other_order = format!("{REPLY}Signed In Users: {}, {}", names[1], names[0]);
    assert!(
        users == one_order || users == other_order,
        "not exactly the contract's line: {users:?}"
    );

    // Alice -> Carole, straight from Alice's socket.
    alice.send("send Carole Hello this is Alice.");
    let (_, line) = carole.wait_reply(WAIT, 0, "message from Alice", |r| {
        parse_message(r).is_some_and(|m| m.from == "Alice")
    });
    let got = parse_message(&line).expect("matched above");
    let alice_port = got.address.port();
    assert_eq!(
        line,
        format!("{REPLY}<From 127.0.0.1:{alice_port}:Alice>: Hello this is Alice."),
        "Carole's line is not the contract's"
    );
    assert_ne!(
        alice_port, server_port,
        "the message claims to come from the server's port"
    );
    if let Some(real) = wait_udp_port(&alice, Duration::from_secs(2)) {
        assert_eq!(
            alice_port, real,
            "the shown port is not Alice's real socket port"
        );
    }

    // Carole replies; Alice sees Carole's real address.
    carole.send("send Alice Hi Alice! How are you");
    let (_, line) = alice.wait_reply(WAIT, 0, "message from Carole", |r| {
        parse_message(r).is_some_and(|m| m.from == "Carole")
    });
    let carole_port = parse_message(&line).expect("matched above").address.port();
    assert_eq!(
        line,
        format!("{REPLY}<From 127.0.0.1:{carole_port}:Carole>: Hi Alice! How are you"),
        "Alice's line is not the contract's"
    );
    assert_ne!(carole_port, server_port);
    assert_ne!(carole_port, alice_port);
    if let Some(real) = wait_udp_port(&carole, Duration::from_secs(2)) {
        assert_eq!(
            carole_port, real,
            "the shown port is not Carole's real socket port"
        );
    }

    // End of input signs each client out, and each exits 0.
    for client in [&mut alice, &mut bob, &mut carole] {
        client.close_stdin();
    }
    for client in [&mut alice, &mut bob, &mut carole] {
        client.assert_exits_ok(WAIT);
    }
    assert!(server.is_running(), "{}", server.transcript());

    // Each message was shown once, to its addressee only.
    assert!(
        messages(&bob).is_empty(),
        "Bob was shown a message meant for others\n{}",
        bob.transcript()
    );
    assert_eq!(messages(&carole).len(), 1, "{}", carole.transcript());
    assert_eq!(messages(&alice).len(), 1, "{}", alice.transcript());
    for client in [&alice, &bob, &carole] {
        assert!(
            !client.out.text().contains("not delivered"),
            "{}",
            client.transcript()
        );
    }

    // Everyone signed out: a newcomer sees an empty directory.
    let mut dave = start_client("Dave", server_port);
    list_until(&mut dave, &[], WAIT);
    dave.close_stdin();
    dave.assert_exits_ok(WAIT);
}
