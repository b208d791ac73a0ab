//! Scripts can tell failure from success: with piped input, `ChatClient`
//! exits 0 when every command succeeded and 1 when any failed (a message not
//! delivered, no such user, an unknown command), and the `<– ` lines stay as
//! they are. Leaving with messages in flight says how many and to whom, and
//! a Ctrl-C then leaves at once (130).

mod common_proc;

use std::process::Command;
use std::time::Duration;

use common_proc::{Proc, list_until, start_client, start_server};

/// Longer than the client's own deadlines (10 s).
const WAIT: Duration = Duration::from_secs(20);

fn exit_code(p: &mut Proc) -> Option<i32> {
    match p.wait_exit(WAIT) {
        Some(status) => status.code(),
        None => panic!("{} did not exit\n{}", p.label, p.transcript()),
    }
}

#[test]
fn every_command_succeeding_exits_0_and_any_failing_exits_1() {
    let (_server, port) = start_server();
    let mut bob = start_client("Bob", port);
    let mut alice = start_client("Alice", port);
    list_until(&mut alice, &["Bob"], WAIT);

    // All well: delivered, then end of input.
    alice.send("send Bob all well");
    bob.wait_reply(WAIT, 0, "Alice's message", |r| {
        r.ends_with(":Alice>: all well")
    });
    alice.close_stdin();
    assert_eq!(exit_code(&mut alice), Some(0), "{}", alice.transcript());

    // A send to nobody: the usual line, and exit 1.
    let mut carol = start_client("Carol", port);
    carol.send("send Nobody are you there");
    carol.wait_reply(WAIT, 0, "no such user", |r| {
        r == "<\u{2013} No such user: Nobody"
    });
    carol.close_stdin();
    assert_eq!(exit_code(&mut carol), Some(1), "{}", carol.transcript());

    // An unknown command is a failed command too.
    let mut dave = start_client("Dave", port);
    dave.send("frobnicate");
    dave.wait_reply(WAIT, 0, "the hint", |r| {
        r.contains("Unknown command: frobnicate")
    });
    dave.close_stdin();
    assert_eq!(exit_code(&mut dave), Some(1), "{}", dave.transcript());
    bob.close_stdin();
    assert_eq!(exit_code(&mut bob), Some(0), "{}", bob.transcript());
}

#[test]
fn leaving_with_messages_in_flight_says_so_and_ctrl_c_leaves_at_once() {
    let (_server, port) = start_server();
    let bob = start_client("Bob", port);
    let mut alice = start_client("Alice", port);
    list_until(&mut alice, &["Bob"], WAIT);
    // Bob stops answering (but stays signed in for a while).
    let stop = Command::new("kill")
        .args(["-STOP", &bob.pid().to_string()])
        .status()
        .expect("kill -STOP");
    assert!(stop.success());

    alice.send("send Bob one");
    alice.send("send Bob two");
    alice.close_stdin();
    alice.wait_reply(WAIT, 0, "the in-flight notice", |r| {
        r == "<\u{2013} Waiting for 2 messages to Bob to be delivered (Ctrl-C to leave now)"
    });
    let interrupted = Command::new("kill")
        .args(["-INT", &alice.pid().to_string()])
        .status()
        .expect("kill -INT");
    assert!(interrupted.success());
    // At once: well before the 10 s after which the undelivered messages
    // would fail and end her with 1; slack for a loaded machine.
    match alice.wait_exit(Duration::from_secs(8)) {
        Some(status) => assert_eq!(status.code(), Some(130), "{}", alice.transcript()),
        None => panic!("Ctrl-C did not end Alice at once\n{}", alice.transcript()),
    }
    let _ = Command::new("kill")
        .args(["-CONT", &bob.pid().to_string()])
        .status();
}
