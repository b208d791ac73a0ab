//! Helpers for tests that run the real `ChatServer` and `ChatClient` binaries
//! through pipes on 127.0.0.1.
//!
//! Every wait is bounded; a child is killed when its [`Proc`] is dropped, so
//! a failing test leaves no process behind. Output is read by one thread per
//! pipe, so a child never blocks on a full pipe and the test never blocks on
//! a read.
//!
//! Keys and remembered keys: every child gets a [`Home`] of its own (a fresh
//! `XDG_CONFIG_HOME` and `XDG_STATE_HOME` under the system's temporary
//! directory, removed when the child's [`Proc`] is dropped), so no test
//! writes to the real home directory and no two children share an identity,
//! a server key, name bindings or `known_servers`/`known_peers` by accident.
//! A test that needs them shared (a restart, two clients of one user) makes
//! one [`Home`] and passes it to [`start_server_in`], [`start_client_in`] or
//! [`Proc::spawn_in`].
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The built server binary.
pub const SERVER_BIN: &str = env!("CARGO_BIN_EXE_ChatServer");
/// The built client binary.
pub const CLIENT_BIN: &str = env!("CARGO_BIN_EXE_ChatClient");

/// The reply marker of the output contract: `<– ` (U+2013, then a space).
pub const REPLY: &str = "<\u{2013} ";

/// The environment variables that say where the binaries keep their files.
pub const XDG_VARS: [&str; 2] = ["XDG_CONFIG_HOME", "XDG_STATE_HOME"];

/// A private place for the binaries' files: `XDG_CONFIG_HOME` (the client's
/// identities, `known_servers`, `known_peers`) and `XDG_STATE_HOME` (the
/// server's key and bindings), both in one fresh directory under the
/// system's temporary directory. Clones share the directory; it is removed
/// when the last clone is dropped (after the children using it, when they
/// are [`Proc`]s holding a clone).
#[derive(Clone)]
pub struct Home(Arc<HomeDir>);

struct HomeDir {
    path: PathBuf,
}

impl Drop for HomeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

impl Home {
    /// A new, empty home.
    pub fn new() -> Home {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "udpchat-test-{}-{n}-{nanos:08x}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(path.join("config"))
            .and_then(|()| std::fs::create_dir_all(path.join("state")))
            .unwrap_or_else(|e| panic!("cannot make {}: {e}", path.display()));
        Home(Arc::new(HomeDir { path }))
    }

    /// The directory holding everything.
    pub fn path(&self) -> &Path {
        &self.0.path
    }

    /// `XDG_CONFIG_HOME`.
    pub fn config_home(&self) -> PathBuf {
        self.path().join("config")
    }

    /// `XDG_STATE_HOME`.
    pub fn state_home(&self) -> PathBuf {
        self.path().join("state")
    }

    /// Where the client keeps its files: `$XDG_CONFIG_HOME/udpchat`.
    pub fn client_dir(&self) -> PathBuf {
        self.config_home().join("udpchat")
    }

    /// Where the server keeps its files: `$XDG_STATE_HOME/udpchat`.
    pub fn server_dir(&self) -> PathBuf {
        self.state_home().join("udpchat")
    }

    /// Points `cmd` at this home.
    pub fn apply<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.env("XDG_CONFIG_HOME", self.config_home())
            .env("XDG_STATE_HOME", self.state_home())
    }
}

impl Default for Home {
    fn default() -> Self {
        Home::new()
    }
}

/// Whether `cmd` was told where to keep its files already.
pub fn has_home(cmd: &Command) -> bool {
    cmd.get_envs()
        .any(|(k, v)| v.is_some() && XDG_VARS.iter().any(|x| k == OsStr::new(x)))
}

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

    /// Waits at most `timeout` for the pipe to close: once a child has
    /// exited, what it wrote last may still be on its way to the reader.
    pub fn wait_eof(&self, timeout: Duration) {
        self.wait_for(timeout, |_| None::<()>);
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
    /// Where it keeps its files; removed after the child is killed, unless
    /// shared.
    pub home: Home,
}

impl Proc {
    /// Starts `cmd` with all three standard streams piped, in a [`Home`] of
    /// its own unless `cmd` sets `XDG_CONFIG_HOME` or `XDG_STATE_HOME`
    /// itself (then the fresh home is unused).
    pub fn spawn(label: &str, cmd: &mut Command) -> Proc {
        let home = Home::new();
        if !has_home(cmd) {
            home.apply(cmd);
        }
        Proc::start(label, cmd, home)
    }

    /// Starts `cmd` as [`Proc::spawn`] does, in `home` (shared with whoever
    /// else holds it).
    pub fn spawn_in(label: &str, cmd: &mut Command, home: &Home) -> Proc {
        home.apply(cmd);
        Proc::start(label, cmd, home.clone())
    }

    fn start(label: &str, cmd: &mut Command, home: Home) -> Proc {
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
            home,
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

    /// Sends the child SIGTERM (as `kill` does), which the binaries treat as
    /// Ctrl-C: the server saves its bindings and stops, a client signs out.
    pub fn terminate(&mut self) {
        if self.is_running() {
            let status = Command::new("kill")
                .args(["-TERM", &self.pid().to_string()])
                .status()
                .expect("run kill");
            assert!(status.success(), "kill -TERM {} failed", self.pid());
        }
    }

    /// Kills the child (SIGKILL: a client does not sign out, a server does
    /// not save its bindings) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits at most `timeout` for the child to exit and returns its exit
    /// code; panics with the transcript if it does not exit, or was killed
    /// by a signal.
    pub fn exit_code(&mut self, timeout: Duration) -> i32 {
        match self.wait_exit(timeout) {
            Some(status) => status.code().unwrap_or_else(|| {
                panic!(
                    "{} was killed ({status})\n{}",
                    self.label,
                    self.transcript()
                )
            }),
            None => panic!(
                "{} did not exit within {timeout:?}\n{}",
                self.label,
                self.transcript()
            ),
        }
    }

    /// Waits at most `timeout` for the child to exit, then (at most 5 s
    /// more) for its output to be read to the end, so that what it printed
    /// last is in [`Proc::out`] and [`Proc::err`] when this returns.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.out.wait_eof(Duration::from_secs(5));
                self.err.wait_eof(Duration::from_secs(5));
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

/// Starts `ChatServer -sp 0`, which binds a port the system picks, in a
/// [`Home`] of its own, and waits for `Server Initialized...`, `Listening
/// on ADDR` and the key's fingerprint; returns the server and its port.
pub fn start_server() -> (Proc, u16) {
    start_server_in(&Home::new(), 0, &[])
}

/// Starts `ChatServer -sp PORT ARGS...` in `home` (its key and bindings in
/// `home`'s state directory unless `args` say otherwise) and waits as
/// [`start_server`] does; returns the server and the port it listens on.
/// With `port` 0 the system picks one; a given port (a restart on the port
/// of a server just stopped) is tried again for a while if it is still in
/// use.
pub fn start_server_in(home: &Home, port: u16, args: &[&str]) -> (Proc, u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut server = Proc::spawn_in(
            "server",
            Command::new(SERVER_BIN)
                .args(["-sp", &port.to_string()])
                .args(args),
            home,
        );
        match wait_listening(&server) {
            Some(found) if found != 0 => return (server, found),
            _ => {}
        }
        // Its last words (why it stopped) are read to the end once it exits.
        let _ = server.wait_exit(Duration::from_secs(5));
        let in_use = server.err.text().contains("already in use");
        if port != 0 && in_use && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(100));
            continue;
        }
        panic!(
            "the server did not print `Server Initialized...`, `Listening on ADDR` and \
             `Server key fingerprint: ...`\n{}",
            server.transcript()
        );
    }
}

/// Waits for the server's start-up lines; the port it listens on, or `None`
/// if it exited or said nothing within 20 s.
fn wait_listening(server: &Proc) -> Option<u16> {
    server.out.wait_for(Duration::from_secs(20), |lines| {
        let ready = lines
            .iter()
            .any(|l| l.trim_end() == "Server Initialized...");
        let port = lines.iter().find_map(|l| {
            l.trim_end()
                .strip_prefix("Listening on ")?
                .parse::<SocketAddr>()
                .ok()
        });
        let keyed = lines.iter().any(|l| parse_server_fingerprint(l).is_some());
        port.filter(|_| ready && keyed).map(|a| a.port())
    })
}

/// A key fingerprint as the binaries print it: five groups of four
/// lowercase hex digits, separated by single spaces.
pub fn is_fingerprint(s: &str) -> bool {
    let groups: Vec<&str> = s.split(' ').collect();
    groups.len() == 5
        && groups.iter().all(|g| {
            g.len() == 4
                && g.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// The fingerprint in the server's `Server key fingerprint: XXXX XXXX XXXX
/// XXXX XXXX (in PATH)` line, and the path; `None` for any other line.
pub fn parse_server_fingerprint(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix("Server key fingerprint: ")?;
    let (fingerprint, path) = rest.split_once(" (in ")?;
    let path = path.trim_end().strip_suffix(')')?;
    is_fingerprint(fingerprint).then(|| (fingerprint.to_string(), path.to_string()))
}

/// The fingerprint the server printed at start.
pub fn server_fingerprint(server: &Proc) -> String {
    server
        .out
        .lines()
        .iter()
        .find_map(|l| parse_server_fingerprint(l))
        .map(|(f, _)| f)
        .unwrap_or_else(|| panic!("no fingerprint line\n{}", server.transcript()))
}

/// Starts `ChatClient -u NAME -sip 127.0.0.1 -sp PORT` in a [`Home`] of its
/// own.
pub fn start_client(name: &str, server_port: u16) -> Proc {
    Proc::spawn(name, &mut client_command(name, server_port, &[]))
}

/// Starts `ChatClient -u NAME -sip 127.0.0.1 -sp PORT ARGS...` in `home`:
/// with the identity and the remembered keys kept there.
pub fn start_client_in(home: &Home, name: &str, server_port: u16, args: &[&str]) -> Proc {
    Proc::spawn_in(name, &mut client_command(name, server_port, args), home)
}

fn client_command(name: &str, server_port: u16, args: &[&str]) -> Command {
    let mut cmd = Command::new(CLIENT_BIN);
    cmd.args([
        "-u",
        name,
        "-sip",
        "127.0.0.1",
        "-sp",
        &server_port.to_string(),
    ])
    .args(args);
    cmd
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

/// Runs `cmd` with `input` on its standard input (an `nft -f -` script, say)
/// and waits for it; panics if it cannot be started.
pub fn run_with_input(cmd: &mut Command, input: &str) -> ExitStatus {
    cmd.stdin(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child
                .stdin
                .take()
                .expect("piped")
                .write_all(input.as_bytes())?;
            child.wait()
        })
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"))
}

/// The local ports of the unconnected UDP sockets process `pid` holds
/// (Linux /proc).
pub fn udp_ports_of(pid: u32) -> BTreeSet<u16> {
    unconnected_udp_ports(
        &socket_inodes(pid),
        &["/proc/net/udp".into(), "/proc/net/udp6".into()],
    )
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

/// The local ports of the unconnected UDP sockets process `pid` holds, as
/// its own network namespace lists them (`/proc/PID/net`, Linux): for a child
/// started in another namespace (`ip netns exec`), where [`udp_ports_of`],
/// which reads this process's namespace, finds nothing.
pub fn udp_ports_in_netns_of(pid: u32) -> BTreeSet<u16> {
    unconnected_udp_ports(
        &socket_inodes(pid),
        &[
            format!("/proc/{pid}/net/udp"),
            format!("/proc/{pid}/net/udp6"),
        ],
    )
}

/// The inodes of the sockets process `pid` holds open.
fn socket_inodes(pid: u32) -> BTreeSet<String> {
    let mut inodes = BTreeSet::new();
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && let Some(inode) = target
                    .to_string_lossy()
                    .strip_prefix("socket:[")
                    .and_then(|s| s.strip_suffix(']'))
            {
                inodes.insert(inode.to_string());
            }
        }
    }
    inodes
}

/// The local ports, in these /proc UDP `tables`, of the sockets among
/// `inodes` that are not connected (a connected socket, the run loop's
/// waker, has a remote port; the chat socket has none).
fn unconnected_udp_ports(inodes: &BTreeSet<String>, tables: &[String]) -> BTreeSet<u16> {
    let mut ports = BTreeSet::new();
    for table in tables {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for row in text.lines().skip(1) {
            let cols: Vec<&str> = row.split_whitespace().collect();
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
