//! Helpers for tests that run the real `ChatServer` and `ChatClient` binaries
//! through pipes on 127.0.0.1.
//!
//! Every wait is bounded; a child is killed when its [`Proc`] is dropped, so
//! a failing test leaves no process behind. Output is read by one thread per
//! pipe, so a child never blocks on a full pipe and the test never blocks on
//! a read.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The built server binary.
pub const SERVER_BIN: &str = env!("CARGO_BIN_EXE_ChatServer");
/// The built client binary.
pub const CLIENT_BIN: &str = env!("CARGO_BIN_EXE_ChatClient");

/// The reply marker of the output contract: `<– ` (U+2013, then a space).
pub const REPLY: &str = "<\u{2013} ";

/// What one reader thread has collected from a pipe.
#[derive(Default)]
struct Buf {
    data: Vec<u8>,
    eof: bool,
}

/// One pipe of a child, read to the end by a thread of its own.
#[derive(Clone)]
pub struct Stream {
    inner: Arc<(Mutex<Buf>, Condvar)>,
}

impl Stream {
    fn spawn_reader<R: Read + Send + 'static>(mut reader: R) -> Stream {
        let stream = Stream {
            inner: Arc::new((Mutex::new(Buf::default()), Condvar::new())),
        };
        let shared = Arc::clone(&stream.inner);
        thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                let n = reader.read(&mut chunk).unwrap_or(0);
                let (lock, cond) = &*shared;
                let mut buf = lock.lock().unwrap_or_else(|e| e.into_inner());
                if n == 0 {
                    buf.eof = true;
                    cond.notify_all();
                    return;
                }
                buf.data.extend_from_slice(&chunk[..n]);
                cond.notify_all();
            }
        });
        stream
    }

    /// Everything read so far, as text.
    pub fn text(&self) -> String {
        let buf = self.inner.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&buf.data).into_owned()
    }

    /// The complete lines read so far (a trailing partial line, such as a
    /// prompt waiting for input, is left out).
    pub fn lines(&self) -> Vec<String> {
        let text = self.text();
        let complete = match text.rfind('\n') {
            Some(i) => &text[..i],
            None => return Vec::new(),
        };
        complete
            .split('\n')
            .map(|l| l.trim_end_matches('\r').to_string())
            .collect()
    }

    /// Waits until `f` finds what it looks for in the complete lines, or the
    /// pipe closes, or `timeout` passes. `f` is tried again on every new read.
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&[String]) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let (lock, cond) = &*self.inner;
        let mut seen = usize::MAX;
        loop {
            let (len, eof) = {
                let buf = lock.lock().unwrap_or_else(|e| e.into_inner());
                (buf.data.len(), buf.eof)
            };
            if len != seen {
                seen = len;
                if let Some(found) = f(&self.lines()) {
                    return Some(found);
                }
            }
            let now = Instant::now();
            if eof || now >= deadline {
                return f(&self.lines());
            }
            let buf = lock.lock().unwrap_or_else(|e| e.into_inner());
            if buf.data.len() == seen && !buf.eof {
                let wait = (deadline - now).min(Duration::from_millis(100));
                drop(
                    cond.wait_timeout(buf, wait)
                        .unwrap_or_else(|e| e.into_inner()),
                );
            }
        }
    }

    /// Whether the pipe has closed.
    pub fn is_eof(&self) -> bool {
        self.inner.0.lock().unwrap_or_else(|e| e.into_inner()).eof
    }
}

/// A running child with piped standard streams; killed on drop.
pub struct Proc {
    /// A name for messages ("server", "Alice").
    pub label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    /// Its standard output.
    pub out: Stream,
    /// Its standard error.
    pub err: Stream,
}

impl Proc {
    /// Starts `cmd` with all three standard streams piped.
    pub fn spawn(label: &str, cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("NO_COLOR", "1")
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label} ({cmd:?}): {e}"));
        let stdin = child.stdin.take();
        let out = Stream::spawn_reader(child.stdout.take().expect("piped stdout"));
        let err = Stream::spawn_reader(child.stderr.take().expect("piped stderr"));
        Proc {
            label: label.to_string(),
            child,
            stdin,
            out,
            err,
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes one line to the child's standard input.
    pub fn send(&mut self, line: &str) {
        let label = &self.label;
        let stdin = self
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("{label}: stdin already closed"));
        if let Err(e) = writeln!(stdin, "{line}").and_then(|()| stdin.flush()) {
            panic!("{label}: cannot write {line:?}: {e}\n{}", self.transcript());
        }
    }

    /// Closes the child's standard input (end of input, as Ctrl-D).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits at most `timeout` for the child to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the child to exit and asserts it exited 0.
    pub fn assert_exits_ok(&mut self, timeout: Duration) {
        match self.wait_exit(timeout) {
            Some(status) if status.success() => {}
            Some(status) => panic!(
                "{} exited with {status}, expected 0\n{}",
                self.label,
                self.transcript()
            ),
            None => panic!(
                "{} did not exit within {timeout:?}\n{}",
                self.label,
                self.transcript()
            ),
        }
    }

    /// Waits for a reply line (see [`reply`]) that `pred` accepts, among
    /// those after the first `skip` replies; panics with the transcript when
    /// none comes within `timeout`. Returns the reply's index and text.
    pub fn wait_reply(
        &self,
        timeout: Duration,
        skip: usize,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> (usize, String) {
        let found = self.out.wait_for(timeout, |lines| {
            replies(lines)
                .into_iter()
                .enumerate()
                .skip(skip)
                .find(|(_, r)| pred(r))
                .map(|(i, r)| (i, r.to_string()))
        });
        found.unwrap_or_else(|| {
            panic!(
                "{}: no {what} within {timeout:?}\n{}",
                self.label,
                self.transcript()
            )
        })
    }

    /// Every reply line so far.
    pub fn replies(&self) -> Vec<String> {
        replies(&self.out.lines())
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    /// Both output streams, for failure messages.
    pub fn transcript(&self) -> String {
        format!(
            "--- {} stdout ---\n{}\n--- {} stderr ---\n{}\n---",
            self.label,
            self.out.text(),
            self.label,
            self.err.text()
        )
    }

    /// The local ports of the unconnected UDP sockets the child holds, read
    /// from /proc (Linux); empty where /proc cannot tell.
    pub fn udp_ports(&self) -> BTreeSet<u16> {
        udp_ports_of(self.pid())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stdin = None;
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The reply part of an output line: the line must be `<– ...`, possibly
/// after prompts (`+> `) the client printed while waiting for input.
pub fn reply(line: &str) -> Option<&str> {
    let mut rest = line;
    loop {
        let trimmed = rest.trim_start_matches(' ');
        match trimmed.strip_prefix("+>") {
            Some(after) => rest = after,
            None => {
                rest = trimmed;
                break;
            }
        }
    }
    rest.starts_with(REPLY).then_some(rest)
}

/// The reply lines among `lines`.
pub fn replies(lines: &[String]) -> Vec<&str> {
    lines.iter().filter_map(|l| reply(l)).collect()
}

/// `<– Signed In Users: A, B` as the set {A, B}; `None` for any other line.
/// An empty list (`Signed In Users:` with nothing after) is the empty set.
pub fn parse_users(reply: &str) -> Option<BTreeSet<String>> {
    let rest = reply
        .strip_prefix(REPLY)?
        .strip_prefix("Signed In Users:")?;
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    if rest.is_empty() {
        return Some(BTreeSet::new());
    }
    let names: Vec<&str> = rest.split(", ").collect();
    let set: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
    // Every name once, none empty, no stray spaces: the line is exact.
    (set.len() == names.len() && names.iter().all(|n| !n.is_empty() && !n.contains(' ')))
        .then_some(set)
}

/// A received message, `<– <From IP:PORT:NAME>: TEXT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The sender's address as shown.
    pub address: SocketAddr,
    /// The sender's name.
    pub from: String,
    /// The text.
    pub text: String,
}

/// Parses a received-message reply; `None` for any other line.
pub fn parse_message(reply: &str) -> Option<Received> {
    let rest = reply.strip_prefix(REPLY)?.strip_prefix("<From ")?;
    let (head, text) = rest.split_once(">: ")?;
    // The name holds no ':' (the naming rules), so the last ':' ends the address.
    let (addr, from) = head.rsplit_once(':')?;
    let address = addr.parse().ok()?;
    Some(Received {
        address,
        from: from.to_string(),
        text: text.to_string(),
    })
}

/// Starts `ChatServer -sp 0`, which binds a port the system picks, and
/// waits for `Server Initialized...` and `Listening on ADDR`; returns the
/// server and its port.
pub fn start_server() -> (Proc, u16) {
    let server = Proc::spawn("server", Command::new(SERVER_BIN).args(["-sp", "0"]));
    let port = server.out.wait_for(Duration::from_secs(20), |lines| {
        let ready = lines
            .iter()
            .any(|l| l.trim_end() == "Server Initialized...");
        let port = lines.iter().find_map(|l| {
            l.trim_end()
                .strip_prefix("Listening on ")?
                .parse::<SocketAddr>()
                .ok()
        });
        port.filter(|_| ready).map(|a| a.port())
    });
    match port {
        Some(port) if port != 0 => (server, port),
        _ => panic!(
            "the server did not print `Server Initialized...` and `Listening on ADDR`\n{}",
            server.transcript()
        ),
    }
}

/// Starts `ChatClient -u NAME -sip 127.0.0.1 -sp PORT`.
pub fn start_client(name: &str, server_port: u16) -> Proc {
    Proc::spawn(
        name,
        Command::new(CLIENT_BIN).args([
            "-u",
            name,
            "-sip",
            "127.0.0.1",
            "-sp",
            &server_port.to_string(),
        ]),
    )
}

/// Has `asker` list the users until the list is exactly `expected` (others
/// may still be signing in), checking every `Signed In Users:` line is
/// well-formed and never holds the asker. A list that gets no answer (a lossy
/// network) is asked again. Returns the final list's reply.
pub fn list_until(asker: &mut Proc, expected: &[&str], timeout: Duration) -> String {
    let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
    let is_list = |r: &str| r.starts_with(&format!("{REPLY}Signed In Users:"));
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        let seen = asker.replies().iter().filter(|r| is_list(r)).count();
        asker.send("list");
        // Longer than the client's own request deadline (10 s).
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(12));
        let line = asker.out.wait_for(wait, |lines| {
            replies(lines)
                .into_iter()
                .filter(|r| is_list(r))
                .nth(seen)
                .map(str::to_string)
        });
        if let Some(line) = line {
            let users = parse_users(&line)
                .unwrap_or_else(|| panic!("malformed user list {line:?}\n{}", asker.transcript()));
            assert!(
                !users.contains(&asker.label),
                "the list shows the asker itself: {line:?}"
            );
            if users == expected {
                return line;
            }
            last = Some(line);
        }
        assert!(
            Instant::now() < deadline,
            "{}: the user list never became {expected:?}; last {last:?}\n{}",
            asker.label,
            asker.transcript()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// The local ports of the unconnected UDP sockets process `pid` holds
/// (Linux /proc).
pub fn udp_ports_of(pid: u32) -> BTreeSet<u16> {
    let mut inodes = BTreeSet::new();
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                let target = target.to_string_lossy();
                if let Some(inode) = target
                    .strip_prefix("socket:[")
                    .and_then(|s| s.strip_suffix(']'))
                {
                    inodes.insert(inode.to_string());
                }
            }
        }
    }
    let mut ports = BTreeSet::new();
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for row in text.lines().skip(1) {
            let cols: Vec<&str> = row.split_whitespace().collect();
            // A connected socket (the run loop's waker) has a remote port;
            // the chat socket has none.
            if cols.len() > 9
                && inodes.contains(cols[9])
                && cols[2].ends_with(":0000")
                && let Some((_, port)) = cols[1].rsplit_once(':')
                && let Ok(port) = u16::from_str_radix(port, 16)
            {
                ports.insert(port);
            }
        }
    }
    ports
}

/// Waits up to `timeout` for `p` to hold exactly one unconnected UDP socket
/// and returns its port. On Linux, where /proc tells, not finding one fails
/// the test; elsewhere it is `None`.
pub fn wait_udp_port(p: &Proc, timeout: Duration) -> Option<u16> {
    let deadline = Instant::now() + timeout;
    loop {
        let ports = p.udp_ports();
        if ports.len() == 1 {
            return ports.into_iter().next();
        }
        if Instant::now() >= deadline {
            if cfg!(target_os = "linux") {
                panic!(
                    "{}: expected one unconnected UDP socket in /proc, found ports {ports:?}\n{}",
                    p.label,
                    p.transcript()
                );
            }
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Whether this process runs as root (Linux /proc; false where it cannot tell).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Whether `program` is found on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|d| std::path::Path::new(d).join(program).is_file())
}

/// A small seeded generator (splitmix64), so failures replay.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}
