//! The client at a real terminal (issue 5, item 6), through tmux: Alice runs
//! in a tmux pane, Bob is a piped client. Alice types half a line; Bob's
//! message must appear above it while the half line stays on the input line;
//! then Alice finishes the line and Bob must receive it whole.
//!
//! tmux is required, so a plain `cargo test` lists these tests as ignored,
//! with the reason; `cargo test -- --ignored` (as `.ci/run` does) runs them,
//! and then a missing tmux fails them. Every wait polls with a bound; the server, Bob and the tmux
//! server (with Alice in it) are killed by drop guards, pass or fail. Each of
//! the three keeps its keys in a private `XDG_CONFIG_HOME` and
//! `XDG_STATE_HOME` (see `common_proc::Home`), removed with its guard.

mod common_proc;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SERVER: &str = env!("CARGO_BIN_EXE_ChatServer");
const CLIENT: &str = env!("CARGO_BIN_EXE_ChatClient");
use common_proc::{Home, is_fingerprint};

const WAIT: Duration = Duration::from_secs(20);

/// A child process, killed on drop, and the home it keeps its files in
/// (removed after it).
struct Guard(
    Child,
    #[allow(dead_code, reason = "held for its Drop")] Home,
);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A private tmux server (its own socket file), killed and its socket
/// removed on drop; the client in its pane keeps its files in `home`
/// (removed after the tmux server is killed).
struct Tmux {
    socket: PathBuf,
    home: Home,
}

impl Tmux {
    fn new() -> Tmux {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("udpchat-test-{}-{nanos}.sock", std::process::id());
        Tmux {
            socket: std::env::temp_dir().join(name),
            home: Home::new(),
        }
    }

    fn command(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("-f")
            .arg("/dev/null")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("tmux {args:?}: {e}"))
    }

    fn run(&self, args: &[&str]) {
        let out = self.command(args);
        assert!(
            out.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The visible pane, one string per row, trailing blanks trimmed.
    fn screen(&self) -> Vec<String> {
        let out = self.command(&["capture-pane", "-p", "-t", "chat"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim_end().to_string())
            .collect()
    }

    /// Polls the pane until `f` holds; fails with the screen after `WAIT`.
    fn wait_screen(&self, what: &str, f: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if f(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "waited {WAIT:?} for {what}; the pane shows:\n{}",
                screen.join("\n")
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", "chat", "-l", text]);
    }

    fn key(&self, key: &str) {
        self.run(&["send-keys", "-t", "chat", key]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command(&["kill-server"]);
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Everything a pipe has produced so far, collected by a thread.
#[derive(Clone, Default)]
struct Collected(Arc<Mutex<String>>);

impl Collected {
    fn spawn(mut pipe: impl Read + Send + 'static) -> Collected {
        let collected = Collected::default();
        let shared = collected.clone();
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                shared
                    .0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        collected
    }

    fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn wait_for(&self, what: &str, f: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !f(&self.text()) {
            assert!(
                Instant::now() < deadline,
                "waited {WAIT:?} for {what}; got:\n{}",
                self.text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `ChatServer -sp 0 --bind 127.0.0.1` and its port.
fn start_server() -> (Guard, u16) {
    let home = Home::new();
    let mut child = home
        .apply(&mut Command::new(SERVER))
        .args(["-sp", "0", "--bind", "127.0.0.1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start ChatServer");
    let out = child.stdout.take().expect("piped");
    let guard = Guard(child, home);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = |rx: &Receiver<String>| rx.recv_timeout(WAIT).expect("server output");
    assert_eq!(line(&rx), "Server Initialized...");
    let listening = line(&rx);
    let port = listening
        .strip_prefix("Listening on 127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected line {listening:?}"));
    let keyed = line(&rx);
    assert!(
        common_proc::parse_server_fingerprint(&keyed).is_some(),
        "unexpected line {keyed:?}"
    );
    // Keep draining so the server never blocks on a full pipe.
    thread::spawn(move || while rx.recv().is_ok() {});
    (guard, port)
}

/// A piped client, in a home of its own.
fn start_piped_client(name: &str, port: u16) -> (Guard, ChildStdin, Collected) {
    let home = Home::new();
    let mut child = home
        .apply(&mut Command::new(CLIENT))
        .args(["-u", name, "-sip", "127.0.0.1", "-sp", &port.to_string()])
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start ChatClient");
    let stdin = child.stdin.take().expect("piped");
    let out = Collected::spawn(child.stdout.take().expect("piped"));
    (Guard(child, home), stdin, out)
}

/// Whether a piped client's output ends with its first prompt, after
/// `Signed in as NAME` and the server's key, pinned at this first sign-in.
fn at_first_prompt(text: &str, name: &str) -> bool {
    let Some(rest) = text.strip_suffix(" (first sign-in here; remembered)\n+> ") else {
        return false;
    };
    let Some((before, fingerprint)) = rest.rsplit_once("<\u{2013} Server key fingerprint: ") else {
        return false;
    };
    is_fingerprint(fingerprint) && before.ends_with(&format!("<\u{2013} Signed in as {name}\n"))
}

#[test]
#[ignore = "needs tmux: run with cargo test -- --ignored"]
fn incoming_message_keeps_the_half_typed_line() {
    let (_server, _bob, mut bob_in, bob_out, tmux) = alice_at_a_terminal();
    let screen = tmux.screen();
    // She was told what was happening while she waited.
    assert!(
        screen
            .iter()
            .any(|l| l.starts_with("<\u{2013} Signing in to 127.0.0.1:")
                && l.ends_with(" as Alice...")),
        "{}",
        screen.join("\n")
    );
    assert!(
        screen.iter().any(|l| l == "<\u{2013} Signed in as Alice"),
        "{}",
        screen.join("\n")
    );

    // Half a line, not yet entered.
    tmux.type_text("send Bob half");
    tmux.wait_screen("the half line", |s| {
        s.iter().any(|l| l == "+> send Bob half")
    });

    // Bob's message arrives meanwhile.
    writeln!(bob_in, "send Alice Hello from Bob, mid-edit").expect("write to Bob");
    bob_in.flush().expect("flush Bob");
    let screen = tmux.wait_screen("Bob's message above the input line", |s| {
        let rows: Vec<&String> = s.iter().filter(|l| !l.is_empty()).collect();
        let message = rows.iter().position(|l| {
            l.starts_with("<\u{2013} <From 127.0.0.1:")
                && l.ends_with(":Bob>: Hello from Bob, mid-edit")
        });
        matches!(message, Some(i) if rows.get(i + 1).map(|l| l.as_str()) == Some("+> send Bob half")
            && i + 2 == rows.len())
    });
    // Nothing was written into the middle of the typed text.
    for row in &screen {
        assert!(
            !row.contains("half<") && !row.contains("half+"),
            "broken line {row:?} in:\n{}",
            screen.join("\n")
        );
    }

    // The half line is still there and still sendable.
    tmux.type_text(" done");
    tmux.key("Enter");
    bob_out.wait_for("Alice's finished line at Bob", |t| {
        t.lines().any(|l| {
            let l = l.trim_start_matches("+> ");
            l.starts_with("<\u{2013} <From 127.0.0.1:") && l.ends_with(":Alice>: half done")
        })
    });

    // Ctrl-D signs Alice out and the client exits 0.
    tmux.key("C-d");
    tmux.wait_screen("Alice's exit", |s| s.iter().any(|l| l == "EXIT=0"));
}

/// Checks tmux is there (failing, not skipping, without it), starts a
/// server, a piped Bob, and Alice in a tmux pane at her first prompt.
fn alice_at_a_terminal() -> (Guard, Guard, ChildStdin, Collected, Tmux) {
    match Command::new("tmux").arg("-V").output() {
        Ok(out) if out.status.success() => {}
        other => panic!("this test needs tmux (apt-get install tmux); `tmux -V` gave {other:?}"),
    }
    let (server, port) = start_server();
    let (bob, bob_in, bob_out) = start_piped_client("Bob", port);
    bob_out.wait_for("Bob's first prompt", |t| at_first_prompt(t, "Bob"));
    let tmux = Tmux::new();
    let port_arg = port.to_string();
    let config_home = format!("XDG_CONFIG_HOME={}", tmux.home.config_home().display());
    let state_home = format!("XDG_STATE_HOME={}", tmux.home.state_home().display());
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "chat",
        "-x",
        "200",
        "-y",
        "50",
        // The pane's environment is the tmux server's: set Alice's home
        // for her command alone.
        "env",
        &config_home,
        &state_home,
        "sh",
        "-c",
        "\"$0\" \"$@\"; echo \"EXIT=$?\"; sleep 600",
        CLIENT,
        "-u",
        "Alice",
        "-sip",
        "127.0.0.1",
        "-sp",
        &port_arg,
    ]);
    tmux.wait_screen("Alice's prompt", |s| s.iter().any(|l| l == "+>"));
    // Her first sign-in here: the server's key was pinned in her home.
    let screen = tmux.screen();
    assert!(
        screen.iter().any(|l| {
            l.strip_prefix("<\u{2013} Server key fingerprint: ")
                .and_then(|r| r.strip_suffix(" (first sign-in here; remembered)"))
                .is_some_and(is_fingerprint)
        }),
        "{}",
        screen.join("\n")
    );
    assert!(
        tmux.home.client_dir().join("known_servers").is_file(),
        "Alice did not pin the server's key in her own home"
    );
    (server, bob, bob_in, bob_out, tmux)
}

/// The texts of Alice's messages Bob has shown, in order (the first line
/// of each).
fn from_alice(bob_out: &Collected) -> Vec<String> {
    bob_out
        .text()
        .lines()
        .filter_map(|l| {
            let l = l.trim_start_matches("+> ");
            let rest = l.strip_prefix("<\u{2013} <From 127.0.0.1:")?;
            Some(rest.split_once(":Alice>: ")?.1.to_string())
        })
        .collect()
}

#[test]
#[ignore = "needs tmux: run with cargo test -- --ignored"]
fn five_lines_typed_ahead_in_one_burst_all_run_in_order() {
    let (_server, _bob, _bob_in, bob_out, tmux) = alice_at_a_terminal();
    // One send-keys: all five lines reach the terminal at once, before the
    // client has read the first.
    let mut keys = vec!["send-keys", "-t", "chat"];
    let lines = ["one", "two", "three", "four", "five"].map(|w| format!("send Bob ahead {w}"));
    for line in &lines {
        keys.push(line);
        keys.push("Enter");
    }
    tmux.run(&keys);
    let expected: Vec<String> = ["one", "two", "three", "four", "five"]
        .iter()
        .map(|w| format!("ahead {w}"))
        .collect();
    bob_out.wait_for("all five lines at Bob", |_| from_alice(&bob_out).len() >= 5);
    assert_eq!(from_alice(&bob_out), expected, "{}", bob_out.text());
    tmux.key("C-d");
    tmux.wait_screen("Alice's exit", |s| s.iter().any(|l| l == "EXIT=0"));
}

#[test]
#[ignore = "needs tmux: run with cargo test -- --ignored"]
fn a_multi_line_bracketed_paste_is_one_message() {
    let (_server, _bob, _bob_in, bob_out, tmux) = alice_at_a_terminal();
    tmux.run(&[
        "set-buffer",
        "-b",
        "paste",
        "send Bob pasted first\npasted second\npasted third",
    ]);
    // -p: as a bracketed paste (the client asked for it).
    tmux.run(&["paste-buffer", "-p", "-b", "paste", "-t", "chat"]);
    tmux.wait_screen("the paste on the input line", |s| {
        s.iter().any(|l| l.contains("pasted third"))
    });
    tmux.key("Enter");
    bob_out.wait_for("the pasted message at Bob", |t| {
        t.contains("pasted third\n")
    });
    // Give a wrongly split paste time to show its other parts.
    thread::sleep(Duration::from_millis(300));
    let shown = from_alice(&bob_out);
    assert_eq!(shown.len(), 1, "not one message: {}", bob_out.text());
    assert!(shown[0].starts_with("pasted first"), "{}", bob_out.text());
    let text = bob_out.text();
    let at = text.find("pasted first").unwrap_or(0);
    let message = &text[at..];
    let second = message.find("pasted second");
    let third = message.find("pasted third");
    assert!(
        matches!((second, third), (Some(a), Some(b)) if a < b),
        "the paste's lines are not all in the message, in order: {text}"
    );
    // Shown as continuation lines, indented under the first.
    assert!(
        message.starts_with("pasted first\n   pasted second\n   pasted third\n"),
        "not shown as indented continuation lines: {text}"
    );
    tmux.key("C-d");
    tmux.wait_screen("Alice's exit", |s| s.iter().any(|l| l == "EXIT=0"));
}
