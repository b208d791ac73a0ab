//! The real binaries on a bad network: a server and two clients inside
//! `tests/tools/lossy-netns --loss 25 --dup 10`, a private network
//! namespace whose loopback drops a quarter of all UDP datagrams and
//! duplicates a tenth. Every message must be shown exactly once, in order.
//!
//! The namespace holds only what is started inside it, so each test re-runs
//! this test binary there (the ignored [`inner_lossy_scenario`], told what to
//! do through `UDPCHAT_LOSSY_MESSAGES`), which starts the server and clients
//! and prints one `LOSSY-RESULT` line. Needs root, `unshare`, `ip` and `nft`,
//! so a plain `cargo test` lists these tests as ignored, with the reason;
//! `cargo test -- --ignored` (as `.ci/run` does) runs them, and then a missing
//! tool fails them: they never pass without having run.
//!
//! Retransmissions are counted by the kernel, not by the client: the inner
//! scenario adds nftables counters on the output hook for datagrams between
//! Alice's port and Bob's (duplication happens later, at ingress, so it is
//! not counted). Since protocol v2 everything between peers after the Noise
//! handshake is a `Sealed` datagram (type byte 0x05), so the counters look at
//! the type byte and the size: a sealed message fragment is at least 55
//! bytes of UDP payload (15 of header, 24 of the smallest `Message` with
//! text, 16 of tag), a sealed `Ack` 44 and an empty sealed packet (which
//! confirms a session) 31. Several messages may share a datagram (frames):
//! a burst of piped lines goes out in a few, so the 60-message burst shows
//! how few datagrams carry it. The 50-message test sends its first line,
//! waits until Bob is shown it (the session is up), then types the others
//! one every 10 ms, so most messages go alone and loss hits many of them.
//! Alice's handshake datagrams (`PeerInit`, 0x06) are counted apart.

mod common_proc;

use std::process::Command;
use std::time::{Duration, Instant};

use common_proc::{
    Proc, is_root, list_until, on_path, parse_message, run_with_input, start_client, start_server,
    wait_udp_port,
};

const LOSSY_NETNS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/lossy-netns");
const ENV_MESSAGES: &str = "UDPCHAT_LOSSY_MESSAGES";
const ENV_GAP_MS: &str = "UDPCHAT_LOSSY_GAP_MS";
const RESULT: &str = "LOSSY-RESULT";

/// What one run inside the namespace measured.
#[derive(Debug)]
struct Outcome {
    messages: usize,
    elapsed_ms: u128,
    /// Sealed message datagrams Alice's socket sent to Bob's.
    datagrams: u64,
    /// Handshake datagrams (PeerInit) Alice's socket sent to Bob's.
    handshakes: u64,
    /// Sealed datagrams Bob's socket sent to Alice's (acknowledgements).
    acks: u64,
    /// "not delivered" reports for messages Bob did show (all their
    /// acknowledgements lost).
    false_failures: u64,
}

/// Whether the namespace can be made here; `Err` says what is missing.
fn prerequisites() -> Result<(), String> {
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("root (lossy-netns makes a network namespace)".to_string());
    }
    for tool in ["nft", "unshare", "ip"] {
        if !on_path(tool) {
            missing.push(format!(
                "`{tool}` (apt-get install nftables util-linux iproute2)"
            ));
        }
    }
    if !std::path::Path::new(LOSSY_NETNS).is_file() {
        missing.push(LOSSY_NETNS.to_string());
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join(", "))
    }
}

/// Runs the scenario with `messages` messages inside lossy-netns, Alice
/// typing one every `gap` (all at once when zero).
fn run_in_lossy_netns(messages: usize, gap: Duration) -> Outcome {
    if let Err(missing) = prerequisites() {
        panic!("real_lossy needs {missing} (.ci/run installs them)");
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut inner = Proc::spawn(
        &format!("lossy-netns ({messages} messages)"),
        Command::new(LOSSY_NETNS)
            .args(["--loss", "25", "--dup", "10", "--"])
            .arg(exe)
            .args([
                "--exact",
                "inner_lossy_scenario",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV_MESSAGES, messages.to_string())
            .env(ENV_GAP_MS, gap.as_millis().to_string()),
    );
    inner.close_stdin();
    let status = inner.wait_exit(Duration::from_secs(240));
    let transcript = inner.transcript();
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("the scenario inside lossy-netns failed ({s})\n{transcript}"),
        None => panic!("the scenario inside lossy-netns did not end within 240 s\n{transcript}"),
    }
    let line = inner
        .out
        .lines()
        .into_iter()
        // libtest prints the test's name on the same line, before its output.
        .find_map(|l| l.find(RESULT).map(|i| l[i..].to_string()))
        .unwrap_or_else(|| panic!("the scenario printed no {RESULT} line\n{transcript}"));
    let field = |key: &str| -> String {
        line.split(' ')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
            .to_string()
    };
    Outcome {
        messages: field("messages").parse().expect("messages"),
        elapsed_ms: field("elapsed_ms").parse().expect("elapsed_ms"),
        datagrams: field("datagrams").parse().expect("datagrams"),
        handshakes: field("handshakes").parse().expect("handshakes"),
        acks: field("acks").parse().expect("acks"),
        false_failures: field("false_failures").parse().expect("false_failures"),
    }
}

fn report(outcome: &Outcome) -> String {
    format!(
        "{} messages at 25% loss, 10% duplication: all shown exactly once, in order, after {} ms; \
         Alice sent {} message datagrams to Bob (with retransmissions; messages share datagrams) \
         and {} handshake datagrams, Bob sent {} acknowledgement datagrams{}",
        outcome.messages,
        outcome.elapsed_ms,
        outcome.datagrams,
        outcome.handshakes,
        outcome.acks,
        if outcome.false_failures == 0 {
            String::new()
        } else {
            format!(
                "; Alice was told {} of them were not delivered (every acknowledgement lost)",
                outcome.false_failures
            )
        }
    )
}

#[test]
#[ignore = "needs root, nft, unshare and ip: run with cargo test -- --ignored"]
fn lossy_50_messages_shown_exactly_once_in_order() {
    let outcome = run_in_lossy_netns(50, Duration::from_millis(10));
    assert_eq!(outcome.messages, 50);
    check_counts(&outcome);
    // Typed one at a time, most went alone: loss hit many datagrams.
    assert!(
        outcome.datagrams >= 25,
        "the paced messages went in few datagrams: {}",
        report(&outcome)
    );
    println!("{}", report(&outcome));
}

/// What the kernel counted must fit what Bob showed: the messages went
/// sealed, after at least one handshake, and were acknowledged (Bob was
/// shown them, so he sent acknowledgements).
fn check_counts(outcome: &Outcome) {
    let text = report(outcome);
    assert!(
        outcome.datagrams >= 1,
        "no message datagram counted: {text}"
    );
    assert!(outcome.handshakes >= 1, "no handshake counted: {text}");
    assert!(outcome.acks >= 1, "no acknowledgement counted: {text}");
}

#[test]
#[ignore = "needs root, nft, unshare and ip: run with cargo test -- --ignored"]
fn lossy_60_messages_timing() {
    let outcome = run_in_lossy_netns(60, Duration::ZERO);
    assert_eq!(outcome.messages, 60);
    check_counts(&outcome);
    let text = report(&outcome);
    println!("{text}");
    // The harness hides a passing test's output; .ci/run prints this file.
    let path = concat!(env!("CARGO_TARGET_TMPDIR"), "/real_lossy_60.txt");
    std::fs::write(path, format!("{text}\n")).expect("write the timing report");
}

/// A UDP length (8 header bytes and the payload) above that of a sealed
/// `Ack` (8 + 44): only a sealed message fragment is longer.
const LONGER_THAN_AN_ACK: u16 = 8 + 44;

/// Adds kernel counters for datagrams between two local ports, in the
/// namespace this process runs in, in this order: Alice's sealed message
/// datagrams to Bob, her handshakes (PeerInit) to Bob, and Bob's sealed
/// datagrams to Alice. `@th,64,8` is the first byte of the UDP payload: the
/// packet type.
fn add_counters(alice: u16, bob: u16) {
    let rules = format!(
        "table inet udpchat_count {{\n\
           chain out {{\n\
             type filter hook output priority 0; policy accept;\n\
             udp sport {alice} udp dport {bob} @th,64,8 0x05 udp length > {LONGER_THAN_AN_ACK} counter\n\
             udp sport {alice} udp dport {bob} @th,64,8 0x06 counter\n\
             udp sport {bob} udp dport {alice} @th,64,8 0x05 counter\n\
           }}\n\
         }}\n"
    );
    let status = run_with_input(Command::new("nft").args(["-f", "-"]), &rules);
    assert!(status.success(), "nft could not add the counters");
}

/// The three counters' packet counts, in rule order.
fn read_counters() -> (u64, u64, u64) {
    let out = Command::new("nft")
        .args(["list", "chain", "inet", "udpchat_count", "out"])
        .output()
        .expect("run nft");
    let text = String::from_utf8_lossy(&out.stdout);
    let counts: Vec<u64> = text
        .lines()
        .filter_map(|l| {
            let rest = l.split("counter packets ").nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect();
    assert_eq!(counts.len(), 3, "unexpected nft listing:\n{text}");
    (counts[0], counts[1], counts[2])
}

/// Runs inside the namespace (started by the tests above, never on its own):
/// a server, Bob and Alice; Alice sends Bob `UDPCHAT_LOSSY_MESSAGES` messages.
#[test]
#[ignore = "runs inside lossy-netns, started by the lossy_* tests"]
fn inner_lossy_scenario() {
    let Some(n) = std::env::var(ENV_MESSAGES)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    else {
        eprintln!("inner_lossy_scenario runs inside lossy-netns; the lossy_* tests start it");
        return;
    };
    let wait = Duration::from_secs(60);
    let (mut server, port) = start_server();
    let mut bob = start_client("Bob", port);
    let mut alice = start_client("Alice", port);

    // Both signed in: Alice sees Bob in the list.
    list_until(&mut alice, &["Bob"], wait);
    let alice_port = wait_udp_port(&alice, Duration::from_secs(5)).expect("Alice's UDP port");
    let bob_port = wait_udp_port(&bob, Duration::from_secs(5)).expect("Bob's UDP port");
    add_counters(alice_port, bob_port);

    let texts: Vec<String> = (1..=n)
        .map(|i| format!("lossy message {i:03} of {n}"))
        .collect();
    let gap = Duration::from_millis(
        std::env::var(ENV_GAP_MS)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );
    let from_alice = |lines: &[String]| {
        common_proc::replies(lines)
            .into_iter()
            .filter_map(parse_message)
            .filter(|m| m.from == "Alice")
            .count()
    };
    let start = Instant::now();
    for (i, text) in texts.iter().enumerate() {
        alice.send(&format!("send Bob {text}"));
        if i == 0 && !gap.is_zero() {
            // Paced lines only go one to a datagram once the session is
            // up: lines typed while the lookup or the handshake is still
            // being retransmitted wait for it and leave together. So the
            // first message opens the session and the others follow it.
            bob.out
                .wait_for(wait, |lines| (from_alice(lines) >= 1).then_some(()))
                .unwrap_or_else(|| {
                    panic!(
                        "Bob was not shown the first message\n{}\n{}",
                        alice.transcript(),
                        bob.transcript()
                    )
                });
        }
        std::thread::sleep(gap);
    }
    let arrived = bob
        .out
        .wait_for(Duration::from_secs(120), |lines| {
            (from_alice(lines) >= n).then_some(())
        })
        .is_some();
    let elapsed = start.elapsed();
    assert!(
        arrived,
        "Bob was shown {} of {n} messages in {elapsed:?}\n{}\n{}",
        from_alice(&bob.out.lines()),
        alice.transcript(),
        bob.transcript()
    );
    let (datagrams, handshakes, acks) = read_counters();

    // End of input: Alice finishes and signs out, then Bob. Late duplicates
    // would show up in Bob's output before he exits.
    alice.close_stdin();
    let alice_code = alice.exit_code(wait);
    std::thread::sleep(Duration::from_secs(1));
    bob.close_stdin();
    bob.assert_exits_ok(wait);
    assert!(server.is_running(), "{}", server.transcript());

    let shown: Vec<_> = bob
        .replies()
        .iter()
        .filter_map(|r| parse_message(r))
        .collect();
    let shown_texts: Vec<&str> = shown.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(
        shown_texts,
        texts.iter().map(String::as_str).collect::<Vec<_>>(),
        "Bob's messages are not each shown exactly once, in order\n{}",
        bob.transcript()
    );
    assert!(
        shown
            .iter()
            .all(|m| m.from == "Alice" && m.address.port() == alice_port),
        "a message with the wrong sender\n{}",
        bob.transcript()
    );
    // Every message reached Bob (checked above). The sender may still have
    // been told one was not delivered: when every acknowledgement of it was
    // lost until the message deadline, it cannot know better (the two
    // generals). Counted and reported, not a failure.
    let false_failures = alice
        .replies()
        .iter()
        .filter(|r| r.contains("not delivered"))
        .count();
    // A client that was told a message was not delivered exits 1.
    let expected_code = if false_failures == 0 { 0 } else { 1 };
    assert_eq!(
        alice_code,
        expected_code,
        "Alice's exit code, with {false_failures} messages reported not delivered\n{}",
        alice.transcript()
    );
    println!(
        "{RESULT} messages={n} elapsed_ms={} datagrams={datagrams} handshakes={handshakes} \
         acks={acks} false_failures={false_failures}",
        elapsed.as_millis(),
    );
}
