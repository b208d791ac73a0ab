//! Thousands of `send` lines piped into one ChatClient at once (issue 10
//! item 1, issue 11): every line runs, in order, none refused because a
//! queue is full. The reader hands lines to the loop in bounded batches, so
//! reading slows down when the loop is behind instead of dropping lines.

mod common_proc;

use std::time::{Duration, Instant};

use common_proc::{Proc, list_until, parse_message, start_client, start_server};

const LINES: usize = 20_000;
const WAIT: Duration = Duration::from_secs(60);

/// The last part of a transcript, for failure messages.
fn tail(p: &Proc) -> String {
    let t = p.transcript();
    let start = t.len().saturating_sub(3000);
    let start = (start..t.len())
        .find(|&i| t.is_char_boundary(i))
        .unwrap_or(0);
    t[start..].to_string()
}

#[test]
fn thousands_of_piped_lines_all_arrive_in_order() {
    let (mut server, port) = start_server();
    let mut bob = start_client("Bob", port);
    let mut alice = start_client("Alice", port);
    list_until(&mut alice, &["Bob"], WAIT);

    let text: Vec<String> = (0..LINES).map(|i| format!("send Bob m{i}")).collect();
    // One write: the whole burst is in the pipe before Alice reads a line.
    alice.send(&text.join("\n"));
    alice.close_stdin();

    let start = Instant::now();
    let got = loop {
        let got: Vec<String> = bob
            .replies()
            .iter()
            .filter_map(|r| parse_message(r))
            .filter(|m| m.from == "Alice")
            .map(|m| m.text)
            .collect();
        if got.len() >= LINES || start.elapsed() > WAIT {
            break got;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let expected: Vec<String> = (0..LINES).map(|i| format!("m{i}")).collect();
    if got != expected {
        let first_bad = got
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(LINES));
        panic!(
            "Bob showed {} of {LINES} messages; first difference at {first_bad}: {:?}\n{}\n{}",
            got.len(),
            got.get(first_bad),
            tail(&alice),
            tail(&bob)
        );
    }
    // Alice signs out once everything is delivered, and exits 0.
    alice.assert_exits_ok(WAIT);
    assert!(
        !alice.out.text().contains("not "),
        "Alice reported a failure\n{}",
        tail(&alice)
    );
    bob.close_stdin();
    bob.assert_exits_ok(WAIT);
    assert!(server.is_running());
}
