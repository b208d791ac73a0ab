//! Bad command lines, refused names and unusable ports: both binaries must
//! say what is wrong, show the usage line where arguments are at fault, and
//! exit non-zero, never panic. Every child runs under a deadline and is
//! killed if it overstays, in a private `XDG_CONFIG_HOME` and
//! `XDG_STATE_HOME` of its own (see `common_proc::Home`), removed after it.

mod common_proc;

use std::io::Read;
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common_proc::{Home, is_fingerprint};

const SERVER: &str = env!("CARGO_BIN_EXE_ChatServer");
const CLIENT: &str = env!("CARGO_BIN_EXE_ChatClient");
const SERVER_USAGE: &str = "Usage: ChatServer -sp PORT";
const CLIENT_USAGE: &str = "Usage: ChatClient -u NAME -sip SERVER_IP -sp SERVER_PORT";

/// A child that is killed when dropped, and the home it keeps its files in
/// (removed after it, unless shared).
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

/// `bin` with its files in `home`, `NO_COLOR` set and no input.
fn command(bin: &str, home: &Home) -> Command {
    let mut cmd = Command::new(bin);
    home.apply(&mut cmd)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

/// How a run ended.
#[derive(Debug)]
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `bin args` with empty standard input, in a home of its own; fails
/// the test if it is still running after `limit`.
fn run(bin: &str, args: &[&str], limit: Duration) -> Ran {
    run_in(&Home::new(), bin, args, limit)
}

/// [`run`], with the files in `home`.
fn run_in(home: &Home, bin: &str, args: &[&str], limit: Duration) -> Ran {
    let child = command(bin, home)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
    let mut guard = Guard(child, home.clone());
    let mut out = guard.0.stdout.take().expect("piped");
    let mut err = guard.0.stderr.take().expect("piped");
    let out_thread = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_thread = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = guard.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{bin} {args:?} still running after {limit:?}"
        );
        thread::sleep(Duration::from_millis(10));
    };
    Ran {
        code: status.code(),
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
    }
}

/// Asserts a clean refusal: non-zero exit, the usage line, no panic.
fn assert_refused(bin: &str, args: &[&str], usage: &str) -> Ran {
    let ran = run(bin, args, Duration::from_secs(10));
    assert!(
        matches!(ran.code, Some(c) if c != 0),
        "{args:?} should fail: {ran:?}"
    );
    assert!(
        ran.stderr.contains(usage),
        "{args:?}: no usage line: {ran:?}"
    );
    assert!(
        !ran.stderr.contains("panicked"),
        "{args:?} panicked: {ran:?}"
    );
    assert!(ran.stdout.is_empty(), "{args:?} printed to stdout: {ran:?}");
    ran
}

#[test]
fn server_bad_arguments() {
    for args in [
        &[][..],
        &["-sp"],
        &["-sp", "abc"],
        &["-sp", "70000"],
        &["-sp", "-1"],
        &["-sp", "9090", "extra"],
        &["-sp", "9090", "--frobnicate"],
        &["-sp", "9090", "-q", "-v"],
        &["-sp", "9090", "--bind", "not-an-address"],
        &["-u", "Alice"],
    ] {
        assert_refused(SERVER, args, SERVER_USAGE);
    }
}

#[test]
fn client_bad_arguments() {
    for args in [
        &[][..],
        &["-u", "Alice"],
        &["-u", "Alice", "-sip", "127.0.0.1"],
        &["-u", "Alice", "-sp", "9090"],
        &["-sip", "127.0.0.1", "-sp", "9090"],
        &["-u", "Alice", "-sip", "127.0.0.1", "-sp", "0"],
        &["-u", "Alice", "-sip", "127.0.0.1", "-sp", "port"],
        &["-u", "Alice", "-sip", "127.0.0.1", "-sp", "65536"],
        &["-u", "Alice", "-sip", "127.0.0.1", "-sp", "9090", "extra"],
        &["-u", "Alice", "-sip", "", "-sp", "9090"],
    ] {
        assert_refused(CLIENT, args, CLIENT_USAGE);
    }
}

#[test]
fn invalid_names_are_refused_with_the_reason() {
    let long = "x".repeat(33);
    for (name, why) in [
        ("Al ice", "cannot contain ' '"),
        ("", "cannot be empty"),
        ("a:b", "cannot contain ':'"),
        ("a,b", "cannot contain ','"),
        ("a>b", "cannot contain '>'"),
        ("a\u{1b}b", "cannot contain '\\u{1b}'"),
        (long.as_str(), "at most 32 characters"),
    ] {
        let ran = assert_refused(
            CLIENT,
            &["-u", name, "-sip", "127.0.0.1", "-sp", "9090"],
            CLIENT_USAGE,
        );
        assert!(ran.stderr.contains(why), "{name:?}: {ran:?}");
    }
}

#[test]
fn help_and_version_exit_zero() {
    for bin in [SERVER, CLIENT] {
        let ran = run(bin, &["--help"], Duration::from_secs(10));
        assert_eq!(ran.code, Some(0), "{ran:?}");
        assert!(ran.stdout.contains("Usage: Chat"), "{ran:?}");
        let ran = run(bin, &["--version"], Duration::from_secs(10));
        assert_eq!(ran.code, Some(0), "{ran:?}");
    }
}

#[test]
fn port_in_use_is_a_clear_error() {
    let holder = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = holder.local_addr().expect("addr").port().to_string();
    for args in [
        &["-sp", port.as_str(), "--bind", "127.0.0.1"][..],
        // All interfaces include 127.0.0.1.
        &["-sp", port.as_str()],
    ] {
        let ran = run(SERVER, args, Duration::from_secs(10));
        assert!(matches!(ran.code, Some(c) if c != 0), "{args:?}: {ran:?}");
        assert!(
            ran.stderr.contains("already in use"),
            "{args:?}: unclear error: {ran:?}"
        );
        assert!(
            !ran.stdout.contains("Server Initialized"),
            "{args:?}: claimed success: {ran:?}"
        );
        assert!(!ran.stderr.contains("panicked"), "{ran:?}");
    }
}

#[test]
fn address_not_of_this_host_is_a_clear_error() {
    // 192.0.2.0/24 is TEST-NET-1: never an address of this host.
    let ran = run(
        SERVER,
        &["-sp", "0", "--bind", "192.0.2.1"],
        Duration::from_secs(10),
    );
    assert!(matches!(ran.code, Some(c) if c != 0), "{ran:?}");
    assert!(ran.stderr.contains("cannot listen on 192.0.2.1"), "{ran:?}");
}

#[test]
fn unanswered_sign_in_says_so_and_exits_non_zero() {
    // A bound socket that never answers: the sign-in times out.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port().to_string();
    let ran = run(
        CLIENT,
        &["-u", "Alice", "-sip", "127.0.0.1", "-sp", &port],
        Duration::from_secs(30),
    );
    assert_eq!(ran.code, Some(2), "{ran:?}");
    assert!(
        ran.stderr
            .contains("<\u{2013} Sign-in failed: the server did not answer"),
        "{ran:?}"
    );
    // Only the line that says what it is doing, while it waits.
    assert_eq!(
        ran.stdout,
        format!("<\u{2013} Signing in to 127.0.0.1:{port} as Alice...\n"),
        "{ran:?}"
    );
}

/// Starts `ChatServer -sp 0 --bind 127.0.0.1` and returns it with its port,
/// read from the `Listening on` line that follows `Server Initialized...`,
/// once it has printed its key's fingerprint.
fn start_server() -> (Guard, u16) {
    use std::io::{BufRead, BufReader};
    let home = Home::new();
    let mut child = command(SERVER, &home)
        .args(["-sp", "0", "--bind", "127.0.0.1", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start ChatServer");
    let out = child.stdout.take().expect("piped");
    let guard = Guard(child, home);
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the server printed nothing");
    assert_eq!(first, "Server Initialized...");
    let second = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("no Listening line");
    let port = second
        .strip_prefix("Listening on 127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected second line {second:?}"));
    let third = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("no fingerprint line");
    assert!(
        common_proc::parse_server_fingerprint(&third).is_some(),
        "unexpected third line {third:?}"
    );
    (guard, port)
}

/// A client signed in as `name` at the server on `port` (for the first time:
/// in a home of its own), its input held open; returned once it shows its
/// first prompt.
fn signed_in_client(port: &str, name: &str) -> Guard {
    let home = Home::new();
    let mut holder = command(CLIENT, &home)
        .args(["-u", name, "-sip", "127.0.0.1", "-sp", port])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start holder");
    let mut out = holder.stdout.take().expect("piped");
    let holder = Guard(holder, home);
    // Signed in once the first prompt shows, after the two sign-in lines
    // and the server's key, pinned at this first sign-in.
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"+> ") {
        out.read_exact(&mut byte).expect("holder output");
        seen.push(byte[0]);
    }
    let seen = String::from_utf8_lossy(&seen);
    // The client shows its name as it signs in: in NFC.
    let name = udpchat::name::normalize(name);
    let expected_start = format!(
        "<\u{2013} Signing in to 127.0.0.1:{port} as {name}...\n<\u{2013} Signed in as {name}\n\
         <\u{2013} Server key fingerprint: "
    );
    let fingerprint = seen
        .strip_prefix(&expected_start)
        .and_then(|rest| rest.strip_suffix(" (first sign-in here; remembered)\n+> "));
    assert!(
        fingerprint.is_some_and(is_fingerprint),
        "unexpected sign-in output {seen:?}"
    );
    holder
}

#[test]
fn a_name_in_use_is_refused() {
    let (_server, port) = start_server();
    let port = port.to_string();
    let _holder = signed_in_client(&port, "Alice");
    let ran = run(
        CLIENT,
        &["-u", "alice", "-sip", "127.0.0.1", "-sp", &port],
        Duration::from_secs(30),
    );
    assert_eq!(ran.code, Some(2), "{ran:?}");
    assert!(
        ran.stderr
            .contains("<\u{2013} Sign-in failed: name alice is in use"),
        "{ran:?}"
    );
}

#[test]
fn invisible_characters_in_a_name_are_refused_at_the_command_line() {
    for (name, code) in [
        ("Alice\u{200b}", "U+200B"),
        ("Alice\u{200d}", "U+200D"),
        ("Alice\u{feff}", "U+FEFF"),
        ("\u{2060}Alice", "U+2060"),
    ] {
        let ran = assert_refused(
            CLIENT,
            &["-u", name, "-sip", "127.0.0.1", "-sp", "9090"],
            CLIENT_USAGE,
        );
        let why = format!("a name cannot contain {code} (an invisible character)");
        assert!(ran.stderr.contains(&why), "{name:?}: {ran:?}");
    }
}

#[test]
fn a_look_alike_of_a_name_in_use_is_refused_naming_it() {
    let (_server, port) = start_server();
    let port = port.to_string();
    let _holder = signed_in_client(&port, "Alice");
    // `Аlice` with a Cyrillic А.
    let ran = run(
        CLIENT,
        &["-u", "\u{410}lice", "-sip", "127.0.0.1", "-sp", &port],
        Duration::from_secs(30),
    );
    assert_eq!(ran.code, Some(2), "{ran:?}");
    let why = "<\u{2013} Sign-in failed: name \u{410}lice is in use (it looks like Alice)";
    assert!(ran.stderr.contains(why), "{ran:?}");
    // A name typed decomposed (`e` + U+0308) signs in under its NFC spelling,
    // which is then in use.
    let _zoe = signed_in_client(&port, "Zoe\u{308}");
    let ran = run(
        CLIENT,
        &["-u", "Zo\u{eb}", "-sip", "127.0.0.1", "-sp", &port],
        Duration::from_secs(30),
    );
    assert_eq!(ran.code, Some(2), "{ran:?}");
    assert!(
        ran.stderr
            .contains("Sign-in failed: name Zo\u{eb} is in use"),
        "{ran:?}"
    );
}

#[test]
fn errors_name_the_options_as_users_type_them() {
    for args in [
        &["-u", "Alice", "-sip", "127.0.0.1"][..],
        &["-u", "Alice", "-sp", "9090"],
        &["-u", "Alice", "-sip", "127.0.0.1", "-sp", "port"],
    ] {
        let ran = assert_refused(CLIENT, args, CLIENT_USAGE);
        assert!(
            !ran.stderr.contains("--sp") && !ran.stderr.contains("--sip"),
            "{args:?}: {ran:?}"
        );
        assert!(
            ran.stderr.contains("-sp") || ran.stderr.contains("-sip"),
            "{ran:?}"
        );
    }
    let ran = assert_refused(SERVER, &[], SERVER_USAGE);
    assert!(
        ran.stderr.contains("-sp <PORT>") && !ran.stderr.contains("--sp"),
        "{ran:?}"
    );
}

#[test]
fn an_address_with_a_port_gets_a_hint_to_use_sp() {
    for (args, hint) in [
        (
            &["-u", "Alice", "-sip", "127.0.0.1:9090"][..],
            "-sip 127.0.0.1 -sp 9090",
        ),
        (
            &["-u", "Alice", "-sip", "127.0.0.1:9090", "-sp", "9090"],
            "-sip 127.0.0.1 -sp 9090",
        ),
        (
            &["-u", "Alice", "-sip", "[::1]:7000", "-sp", "9090"],
            "-sip ::1 -sp 7000",
        ),
    ] {
        let ran = assert_refused(CLIENT, args, CLIENT_USAGE);
        assert!(
            ran.stderr.contains(&format!(
                "-sip takes the address alone; give the port with -sp: {hint}"
            )),
            "{args:?}: {ran:?}"
        );
    }
}

#[test]
fn a_name_may_start_with_a_dash_but_u_needs_a_name() {
    let ran = assert_refused(
        CLIENT,
        &["-u", "-sip", "127.0.0.1", "-sp", "9090"],
        CLIENT_USAGE,
    );
    assert!(
        ran.stderr.contains("-u needs a name; -sip is an option"),
        "{ran:?}"
    );
    let (_server, port) = start_server();
    let port = port.to_string();
    let _dash = signed_in_client(&port, "-dash");
}

#[test]
fn the_server_resolves_bind_names_and_always_says_where_it_listens() {
    let home = Home::new();
    let child = command(SERVER, &home)
        .args(["-sp", "0", "--bind", "localhost", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ChatServer");
    let mut guard = Guard(child, home.clone());
    let mut out = guard.0.stdout.take().expect("piped");
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while seen.iter().filter(|b| **b == b'\n').count() < 2 {
        out.read_exact(&mut byte).expect("server output");
        seen.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&seen);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("Server Initialized..."));
    let listening = lines.next().unwrap_or_default();
    let addr: std::net::SocketAddr = listening
        .strip_prefix("Listening on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{text:?}"));
    assert!(addr.ip().is_loopback(), "{addr}");
    drop(guard);

    // A port given explicitly is printed too.
    let port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port();
    let child = command(SERVER, &home)
        .args(["-sp", &port.to_string(), "--bind", "127.0.0.1", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ChatServer");
    let mut guard = Guard(child, home.clone());
    let mut out = guard.0.stdout.take().expect("piped");
    let mut seen = Vec::new();
    while seen.iter().filter(|b| **b == b'\n').count() < 2 {
        out.read_exact(&mut byte).expect("server output");
        seen.push(byte[0]);
    }
    assert_eq!(
        String::from_utf8_lossy(&seen),
        format!("Server Initialized...\nListening on 127.0.0.1:{port}\n")
    );
    let ran = run(
        SERVER,
        &["-sp", "0", "--bind", "no-such-host.invalid"],
        Duration::from_secs(20),
    );
    assert_eq!(ran.code, Some(2), "{ran:?}");
    assert!(ran.stderr.contains("cannot find the address"), "{ran:?}");
}
