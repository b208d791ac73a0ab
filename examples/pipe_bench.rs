//! End to end: `send` lines piped into one `ChatClient`, shown by another,
//! against a bare UDP pipe (a line in, a datagram out, a line printed; no
//! acknowledgements), measured side by side in one run.
//!
//! ```text
//! cargo build --release --bins --examples
//! target/release/examples/pipe_bench                  # 20,000 messages, 3 rounds of each
//! target/release/examples/pipe_bench --messages 5000 --rounds 5
//! ```
//!
//! A chat round starts `ChatServer` and two clients from beside this example
//! (`target/release/`), waits until both have signed in, then writes every
//! `send Bob ...` line into Alice's standard input at once and times how long
//! until Bob has printed every message. It checks that each was shown exactly
//! once. A bare round runs this same program twice more, as a sender that
//! turns each line into a datagram and a receiver that prints each datagram as
//! a line, and times the same. Rounds alternate; the report gives messages a
//! second per round, the medians and the chat's rate as a fraction of the
//! bare pipe's. A bare pipe has no flow control, so it may lose datagrams;
//! its rate counts only what arrived.
//!
//! The chat programs keep keys in files (the server's key and bindings, each
//! client's identity and pinned server keys). A chat round gives them a fresh
//! temporary directory of their own (`XDG_CONFIG_HOME` and `XDG_STATE_HOME`),
//! removed at the end of the round, so every round starts from first use and
//! nothing is written to the user's directories.

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// How long a round may take before it is called stuck.
const ROUND_LIMIT: Duration = Duration::from_secs(120);

fn usage(why: &str) -> ! {
    eprintln!("pipe_bench: {why}");
    eprintln!("usage: pipe_bench [--messages N] [--rounds N]");
    std::process::exit(2);
}

fn beside_me(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| usage(&format!("no path: {e}")));
    let dir = exe.parent().unwrap_or_else(|| usage("no directory"));
    // Examples live in target/<profile>/examples; the binaries one level up.
    let up = dir.parent().unwrap_or(dir);
    let path = if dir.ends_with("examples") {
        up.join(name)
    } else {
        dir.join(name)
    };
    if name != "self" && !path.exists() {
        usage(&format!(
            "{} not found: cargo build --release --bins",
            path.display()
        ));
    }
    path
}

/// Lines of a child's standard output, read on a thread of their own.
fn lines_of(stdout: ChildStdout) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for a line `f` accepts.
fn wait_line<T>(rx: &Receiver<String>, what: &str, f: impl Fn(&str) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(t) = f(&line) {
                    return t;
                }
            }
            // A panic, not an exit: the children's guards must run.
            Err(_) => panic!("gave up waiting for {what}"),
        }
    }
}

/// A child process, killed when dropped (also when a round panics).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A temporary directory, removed (with what is in it) when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("udpchat-pipe-bench-{}-{label}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| usage(&format!("cannot make {}: {e}", dir.display())));
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn spawn(cmd: &mut Command) -> Guard {
    let child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| usage(&format!("cannot start {cmd:?}: {e}")));
    Guard(child)
}

/// Counts the message lines from `rx` until `n` have come or nothing new has
/// come for a while; returns how many and when the last came.
fn count_until(
    rx: &Receiver<String>,
    n: usize,
    started: Instant,
    is_message: impl Fn(&str) -> Option<String>,
) -> (usize, Duration, bool) {
    let mut seen = HashSet::with_capacity(n);
    let mut shown = 0;
    let mut last = Duration::ZERO;
    let mut duplicates = false;
    while shown < n && started.elapsed() < ROUND_LIMIT {
        match rx.recv_timeout(Duration::from_secs(2)) {
            Ok(line) => {
                if let Some(text) = is_message(&line) {
                    shown += 1;
                    last = started.elapsed();
                    duplicates |= !seen.insert(text);
                }
            }
            Err(_) => break,
        }
    }
    (shown, last, duplicates)
}

fn chat_round(n: usize, round: usize) -> f64 {
    // Declared first, so removed last: after the programs have stopped.
    let keys = TempDir::new(&format!("round{round}"));
    let program = |name: &str| {
        let mut cmd = Command::new(beside_me(name));
        cmd.env("XDG_CONFIG_HOME", &keys.0)
            .env("XDG_STATE_HOME", &keys.0);
        cmd
    };
    let mut server = spawn(program("ChatServer").args(["-sp", "0", "--bind", "127.0.0.1"]));
    let server_out = lines_of(server.0.stdout.take().expect("server stdout"));
    let port = wait_line(&server_out, "the server's address", |l| {
        l.split_whitespace()
            .find_map(|w| w.parse::<std::net::SocketAddr>().ok())
            .map(|a| a.port())
    })
    .to_string();
    let (alice_name, bob_name) = (format!("Alice{round}"), format!("Bob{round}"));
    let client = |name: &str| {
        spawn(program("ChatClient").args(["-u", name, "-sip", "127.0.0.1", "-sp", &port]))
    };
    let mut bob = client(&bob_name);
    let bob_out = lines_of(bob.0.stdout.take().expect("bob stdout"));
    let mut alice = client(&alice_name);
    let mut waiting = vec![
        format!("{bob_name} signed in"),
        format!("{alice_name} signed in"),
    ];
    while !waiting.is_empty() {
        let line = wait_line(&server_out, "both clients to sign in", |l| {
            Some(l.to_string())
        });
        waiting.retain(|w| !line.starts_with(w.as_str()));
    }
    let lines: String = (0..n).map(|i| format!("send {bob_name} m{i}\n")).collect();
    let mut stdin = alice.0.stdin.take().expect("alice stdin");
    let started = Instant::now();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(lines.as_bytes());
        // Closing Alice's input signs her out once all is delivered.
    });
    let marker = format!(":{alice_name}>: ");
    let (shown, last, duplicates) = count_until(&bob_out, n, started, |l| {
        l.split_once(&marker).map(|(_, text)| text.to_string())
    });
    let _ = writer.join();
    drop((alice, bob, server));
    assert_eq!(
        shown, n,
        "round {round}: Bob showed {shown} of {n} messages"
    );
    assert!(!duplicates, "round {round}: a message was shown twice");
    n as f64 / last.as_secs_f64()
}

fn bare_round(n: usize) -> (f64, usize) {
    let me = std::env::current_exe().expect("own path");
    let mut recv = spawn(Command::new(&me).arg("--bare-recv"));
    let recv_out = lines_of(recv.0.stdout.take().expect("stdout"));
    let addr = wait_line(&recv_out, "the bare receiver's address", |l| {
        l.strip_prefix("listening ").map(str::to_string)
    });
    let mut send = spawn(Command::new(&me).args(["--bare-send", &addr]));
    let lines: String = (0..n).map(|i| format!("send Bob m{i}\n")).collect();
    let mut stdin = send.0.stdin.take().expect("stdin");
    let started = Instant::now();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(lines.as_bytes());
    });
    let (got, last, _) = count_until(&recv_out, n, started, |l| {
        l.strip_prefix("<From ").map(str::to_string)
    });
    let _ = writer.join();
    drop((send, recv));
    (got as f64 / last.as_secs_f64().max(1e-9), got)
}

/// The bare sender: each line of standard input becomes one datagram.
fn bare_send(addr: &str) -> io::Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(addr)?;
    for line in io::stdin().lock().lines() {
        let line = line?;
        let text = line.strip_prefix("send Bob ").unwrap_or(&line);
        let _ = socket.send(text.as_bytes());
    }
    Ok(())
}

/// The bare receiver: each datagram becomes one printed line. Like the chat
/// client, it reads what is queued before it writes, and writes what it read
/// with one system call.
fn bare_recv() -> io::Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    writeln!(out, "listening {}", socket.local_addr()?)?;
    out.flush()?;
    let mut buf = [0u8; 2048];
    loop {
        socket.set_nonblocking(false)?;
        let mut next = socket.recv_from(&mut buf);
        socket.set_nonblocking(true)?;
        loop {
            match next {
                Ok((len, from)) => writeln!(
                    out,
                    "<From {from}:Alice>: {}",
                    String::from_utf8_lossy(&buf[..len])
                )?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
            next = socket.recv_from(&mut buf);
        }
        out.flush()?;
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut messages, mut rounds) = (20_000usize, 3usize);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--bare-send" => return bare_send(&args.next().unwrap_or_else(|| usage("address"))),
            "--bare-recv" => return bare_recv(),
            "--messages" | "--rounds" => {
                let value: usize = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|v| *v > 0)
                    .unwrap_or_else(|| usage(&format!("{flag} takes a positive number")));
                if flag == "--messages" {
                    messages = value;
                } else {
                    rounds = value;
                }
            }
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let (mut chat, mut bare) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let (rate, got) = bare_round(messages);
        println!("round {round}   bare pipe: {rate:>9.0} msg/s ({got} of {messages} arrived)");
        bare.push(rate);
        let rate = chat_round(messages, round);
        println!("round {round}        chat: {rate:>9.0} msg/s (all {messages} shown once)");
        chat.push(rate);
    }
    let (c, b) = (median(chat), median(bare));
    println!(
        "median: chat {c:.0} msg/s, bare pipe {b:.0} msg/s, ratio {:.2}",
        c / b
    );
    Ok(())
}
