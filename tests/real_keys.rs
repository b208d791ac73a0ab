//! Keys with the real binaries (protocol v2), through pipes on 127.0.0.1:
//! the server's key and its fingerprint, pinned by clients on first sign-in
//! and refused when it changes; names bound to keys, live and across a
//! restart; the peers' keys remembered and a change warned about; and the
//! `whois` and `fingerprint` commands.
//!
//! Every program keeps its files in a private home (`common_proc::Home`):
//! a test shares one deliberately where the same user or the same server
//! comes back. Fingerprints are checked against the key files themselves,
//! through the library.

mod common_proc;

use std::path::Path;
use std::time::Duration;

use udpchat::StaticKeypair;
use udpchat::name::NameKey;
use udpchat::run::keystore;

use common_proc::{
    Home, Proc, REPLY, is_fingerprint, list_until, parse_message, parse_server_fingerprint,
    server_fingerprint, start_client_in, start_server_in,
};

/// Longer than the client's own deadlines (10 s), for a busy machine.
const WAIT: Duration = Duration::from_secs(30);

/// The public key of the secret key file at `path`.
fn public_key_of(path: &Path) -> [u8; 32] {
    let secret = keystore::read_secret(path)
        .unwrap_or_else(|e| panic!("cannot read the key file {}: {e}", path.display()));
    StaticKeypair::from_secret(secret).public().0
}

/// The fingerprint of the key in the secret key file at `path`.
fn fingerprint_of(path: &Path) -> String {
    udpchat::PublicKey(public_key_of(path))
        .fingerprint()
        .to_string()
}

/// Where the client keeps `name`'s identity in `home` by default.
fn identity_file(home: &Home, name: &str) -> std::path::PathBuf {
    let hex: String = NameKey::new(name)
        .as_str()
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    home.client_dir().join(format!("identity-{hex}.key"))
}

/// Waits for `<– Signed in as NAME`.
fn wait_signed_in(p: &Proc) {
    let line = format!("{REPLY}Signed in as {}", p.label);
    p.wait_reply(WAIT, 0, "the sign-in", |r| r == line);
}

/// Waits for the client to give up signing in: exit 2, and standard error
/// (returned) saying why. Nothing claims it signed in.
fn refused(p: &mut Proc) -> String {
    let code = p.exit_code(WAIT);
    assert_eq!(code, 2, "{} was not refused\n{}", p.label, p.transcript());
    assert!(
        !p.out.text().contains("Signed in"),
        "{} claims it signed in\n{}",
        p.label,
        p.transcript()
    );
    p.err.text()
}

/// Ends a client by end of input and checks its exit code.
fn leave(p: &mut Proc, code: i32) {
    p.close_stdin();
    let got = p.exit_code(WAIT);
    assert_eq!(got, code, "{} exit code\n{}", p.label, p.transcript());
}

/// The bindings file the server wrote in `dir` (`bindings-PORT`).
fn bindings_in(dir: &Path) -> Option<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("bindings-"))
        })
}

/// Stops the server with SIGTERM (it saves its bindings) and checks it
/// exits 0.
fn stop(server: &mut Proc) {
    server.terminate();
    let code = server.exit_code(WAIT);
    assert_eq!(code, 0, "the server's exit code\n{}", server.transcript());
}

/// The server's output lines that start with `prefix`.
fn server_lines(server: &Proc, prefix: &str) -> Vec<String> {
    server
        .out
        .lines()
        .into_iter()
        .filter(|l| l.starts_with(prefix))
        .collect()
}

/// Waits for a server line starting with `prefix`.
fn wait_server_line(server: &Proc, prefix: &str) -> String {
    server
        .out
        .wait_for(WAIT, |lines| {
            lines.iter().find(|l| l.starts_with(prefix)).cloned()
        })
        .unwrap_or_else(|| panic!("no server line {prefix:?}\n{}", server.transcript()))
}

/// `<– Server key fingerprint: F (first sign-in here; remembered)`.
fn pinned_line(fingerprint: &str) -> String {
    format!("{REPLY}Server key fingerprint: {fingerprint} (first sign-in here; remembered)")
}

/// The key `known_servers` in `home` holds for the server on `port`.
fn pinned_key(home: &Home, port: u16) -> Option<[u8; 32]> {
    keystore::KnownKeys::new(home.client_dir().join("known_servers"))
        .get(&format!("127.0.0.1:{port}"))
        .expect("a readable known_servers")
}

/// Runs `fingerprint` at `p` and returns the two fingerprints it shows:
/// the client's own and the server's.
fn ask_fingerprints(p: &mut Proc) -> (String, String) {
    let skip = p.replies().len();
    p.send("fingerprint");
    let mine_prefix = format!("{REPLY}Your key fingerprint: ");
    let server_prefix = format!("{REPLY}The server's: ");
    let (i, mine) = p.wait_reply(WAIT, skip, "the client's fingerprint", |r| {
        r.starts_with(&mine_prefix)
    });
    let (_, server) = p.wait_reply(WAIT, i + 1, "the server's fingerprint", |r| {
        r.starts_with(&server_prefix)
    });
    let mine = mine[mine_prefix.len()..].to_string();
    let server = server[server_prefix.len()..].to_string();
    assert!(is_fingerprint(&mine), "{mine:?}\n{}", p.transcript());
    assert!(is_fingerprint(&server), "{server:?}\n{}", p.transcript());
    (mine, server)
}

// ---- (a) the server's key is pinned, and a new one refused until accepted

#[test]
fn a_changed_server_key_is_refused_until_accepted() {
    let server_home = Home::new();
    let key_a = server_home.path().join("a.key");
    let key_b = server_home.path().join("b.key");
    let key_a_arg = key_a.to_str().expect("a UTF-8 path");
    let key_b_arg = key_b.to_str().expect("a UTF-8 path");
    let (mut server, port) = start_server_in(&server_home, 0, &["--key", key_a_arg]);
    let fingerprint_a = server_fingerprint(&server);
    assert_eq!(fingerprint_a, fingerprint_of(&key_a));

    // First sign-in here: the key is shown and remembered.
    let alice_home = Home::new();
    let mut alice = start_client_in(&alice_home, "Alice", port, &[]);
    wait_signed_in(&alice);
    alice.wait_reply(WAIT, 0, "the server's key, pinned", |r| {
        r == pinned_line(&fingerprint_a)
    });
    assert_eq!(pinned_key(&alice_home, port), Some(public_key_of(&key_a)));
    leave(&mut alice, 0);

    // The same address, another key.
    stop(&mut server);
    let (mut server, again) = start_server_in(&server_home, port, &["--key", key_b_arg]);
    assert_eq!(again, port);
    let fingerprint_b = server_fingerprint(&server);
    assert_eq!(fingerprint_b, fingerprint_of(&key_b));
    assert_ne!(fingerprint_a, fingerprint_b);

    let mut alice = start_client_in(&alice_home, "Alice", port, &[]);
    let stderr = refused(&mut alice);
    let expected = format!(
        "{REPLY}Sign-in failed: the server at 127.0.0.1:{port} has a new key (fingerprint \
         {fingerprint_b}; it was {fingerprint_a}). If the server's operator confirms the new \
         key, run again with --accept-new-server-key.\n"
    );
    assert!(
        stderr.contains(&expected),
        "expected {expected:?}\n{}",
        alice.transcript()
    );
    // Nothing was sent to the unknown key (no sign-in reached the server),
    // and the old key is still the one pinned.
    assert!(
        server_lines(&server, "Alice signed in").is_empty(),
        "{}",
        server.transcript()
    );
    assert_eq!(pinned_key(&alice_home, port), Some(public_key_of(&key_a)));

    // Accepted: signed in, the new key shown and pinned.
    let mut alice = start_client_in(&alice_home, "Alice", port, &["--accept-new-server-key"]);
    wait_signed_in(&alice);
    let shown = format!("{REPLY}Server key fingerprint: {fingerprint_b} (");
    alice.wait_reply(WAIT, 0, "the new key, pinned", |r| {
        r.starts_with(&shown) && r.ends_with("remembered)")
    });
    assert_eq!(pinned_key(&alice_home, port), Some(public_key_of(&key_b)));
    leave(&mut alice, 0);

    // From now on the new key is the known one: no refusal, no notice.
    let mut alice = start_client_in(&alice_home, "Alice", port, &[]);
    wait_signed_in(&alice);
    let (_, theirs) = ask_fingerprints(&mut alice);
    assert_eq!(theirs, fingerprint_b);
    assert!(
        !alice
            .replies()
            .iter()
            .any(|r| r.contains("Server key fingerprint")),
        "a known key was announced as new\n{}",
        alice.transcript()
    );
    leave(&mut alice, 0);
    stop(&mut server);
}

// ---- (b) the server's fingerprint, and its key across restarts ---------

/// The server's first three lines, checked: `Server Initialized...`,
/// `Listening on ADDR`, then the fingerprint line (as the regular expression
/// `^Server key fingerprint: ([0-9a-f]{4} ){4}[0-9a-f]{4} ` would match it);
/// returns the fingerprint and the key file's path.
fn startup_lines(server: &Proc) -> (String, String) {
    let lines = server.out.lines();
    assert!(lines.len() >= 3, "{}", server.transcript());
    assert_eq!(lines[0], "Server Initialized...", "{}", server.transcript());
    assert!(
        lines[1].starts_with("Listening on "),
        "{}",
        server.transcript()
    );
    let line = &lines[2];
    let fingerprint = line
        .strip_prefix("Server key fingerprint: ")
        .and_then(|rest| rest.get(..25))
        .filter(|f| {
            f.char_indices().all(|(i, c)| match i % 5 {
                4 => c == ' ',
                _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
            })
        });
    assert!(fingerprint.is_some(), "not a fingerprint line: {line:?}");
    parse_server_fingerprint(line).unwrap_or_else(|| panic!("not a fingerprint line: {line:?}"))
}

#[test]
fn the_server_prints_its_fingerprint_and_keeps_its_key_across_restarts() {
    // The default place: $XDG_STATE_HOME/udpchat/server.key, made mode 0600.
    let home = Home::new();
    let default_key = home.server_dir().join("server.key");
    let (mut server, _) = start_server_in(&home, 0, &[]);
    let (first, path) = startup_lines(&server);
    assert_eq!(Path::new(&path), default_key);
    assert_eq!(first, fingerprint_of(&default_key));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&default_key)
            .expect("the key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", default_key.display());
    }
    stop(&mut server);
    let (mut server, _) = start_server_in(&home, 0, &[]);
    assert_eq!(startup_lines(&server), (first.clone(), path.clone()));
    stop(&mut server);

    // Another home is another server key.
    let other = Home::new();
    let (mut server, _) = start_server_in(&other, 0, &[]);
    let (elsewhere, _) = startup_lines(&server);
    assert_ne!(elsewhere, first);
    stop(&mut server);

    // --key FILE: that file, the same across restarts; the bindings are
    // kept beside it.
    let key = home.path().join("keys").join("mine.key");
    let key_arg = key.to_str().expect("a UTF-8 path");
    let (mut server, _) = start_server_in(&home, 0, &["--key", key_arg]);
    let (given, path) = startup_lines(&server);
    assert_eq!(Path::new(&path), key);
    assert_eq!(given, fingerprint_of(&key));
    assert_ne!(given, first);
    stop(&mut server);
    assert!(
        bindings_in(&home.path().join("keys")).is_some(),
        "no bindings beside {}",
        key.display()
    );
    let (mut server, _) = start_server_in(&home, 0, &["--key", key_arg]);
    assert_eq!(startup_lines(&server), (given, path));
    stop(&mut server);
}

// ---- (c) a live name is refused to a second client, even of its key -----

#[test]
fn a_second_client_of_a_signed_in_name_is_refused_even_with_the_same_key() {
    let (mut server, port) = start_server_in(&Home::new(), 0, &[]);
    let alice_home = Home::new();
    let mut alice = start_client_in(&alice_home, "Alice", port, &[]);
    wait_signed_in(&alice);
    let identity = identity_file(&alice_home, "Alice");
    assert!(identity.is_file(), "no {}", identity.display());

    // The same user (the same home, so the same identity file) again.
    let mut second = start_client_in(&alice_home, "Alice", port, &[]);
    let stderr = refused(&mut second);
    assert!(
        stderr.contains(&format!("{REPLY}Sign-in failed: name Alice is in use")),
        "{}",
        second.transcript()
    );
    let identities: Vec<_> = std::fs::read_dir(alice_home.client_dir())
        .expect("the client's directory")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("identity-"))
        .collect();
    assert_eq!(identities.len(), 1, "not one identity: {identities:?}");

    // The first is still signed in and answered.
    let mut bob = start_client_in(&Home::new(), "Bob", port, &[]);
    list_until(&mut bob, &["Alice"], WAIT);
    bob.send("send Alice still yours");
    alice.wait_reply(WAIT, 0, "Bob's message", |r| {
        parse_message(r).is_some_and(|m| m.from == "Bob" && m.text == "still yours")
    });
    assert!(
        server_lines(&server, "Alice signed out").is_empty(),
        "{}",
        server.transcript()
    );
    leave(&mut alice, 0);
    leave(&mut bob, 0);
    stop(&mut server);
}

// ---- (d) whois and fingerprint, piped ----------------------------------

#[test]
fn whois_and_fingerprint_work_in_plain_mode() {
    let (mut server, port) = start_server_in(&Home::new(), 0, &[]);
    let server_key = server_fingerprint(&server);
    let alice_home = Home::new();
    let mut alice = start_client_in(&alice_home, "Alice", port, &[]);
    let mut bob = start_client_in(&Home::new(), "Bob", port, &[]);
    list_until(&mut alice, &["Bob"], WAIT);

    // `fingerprint`: her own key (the one in her identity file) and the
    // server's (the one it printed).
    let (mine, theirs) = ask_fingerprints(&mut alice);
    assert_eq!(mine, fingerprint_of(&identity_file(&alice_home, "Alice")));
    assert_eq!(theirs, server_key);

    // `whois` before they talked, of nobody, and without a name.
    bob.send("whois Alice");
    bob.wait_reply(WAIT, 0, "whois Alice", |r| {
        r == format!("{REPLY}Alice's key fingerprint: {mine} (not talked to yet)")
    });
    bob.send("whois Nobody");
    bob.wait_reply(WAIT, 0, "whois Nobody", |r| {
        r == format!("{REPLY}No such user: Nobody")
    });
    bob.send("whois");
    bob.wait_reply(WAIT, 0, "the usage of whois", |r| {
        r == format!("{REPLY}Usage: whois NAME")
    });

    // After a message from her, hers is the key he knows.
    alice.send("send Bob hello");
    let (seen, _) = bob.wait_reply(WAIT, 0, "Alice's message", |r| {
        parse_message(r).is_some_and(|m| m.from == "Alice" && m.text == "hello")
    });
    bob.send("whois Alice");
    bob.wait_reply(WAIT, seen, "whois Alice again", |r| {
        r == format!("{REPLY}Alice's key fingerprint: {mine} (the key you know)")
    });

    // `help` lists both.
    let skip = bob.replies().len();
    bob.send("help");
    bob.wait_reply(WAIT, skip, "help on whois", |r| {
        r.starts_with(&format!("{REPLY}  whois NAME"))
    });
    bob.wait_reply(WAIT, skip, "help on fingerprint", |r| {
        r.starts_with(&format!("{REPLY}  fingerprint"))
    });

    // Alice's commands all worked; Bob's whois of nobody and bare whois
    // did not, and his exit code says so.
    leave(&mut alice, 0);
    leave(&mut bob, 1);
    stop(&mut server);
}

// ---- (e) after a restart, a name is kept for its key ------------------

#[test]
fn after_a_restart_a_name_is_kept_for_its_key() {
    let server_home = Home::new();
    let (mut server, port) = start_server_in(&server_home, 0, &[]);
    let server_key = server_fingerprint(&server);
    let alice_home = Home::new();
    let mut alice = start_client_in(&alice_home, "Alice", port, &[]);
    wait_signed_in(&alice);
    wait_server_line(&server, "Alice signed in from ");

    // Alice's client dies (no sign-out), then the server stops while her
    // session lives: her binding is saved at exit.
    alice.kill();
    stop(&mut server);
    assert!(
        server_lines(&server, "Server stopped (1 signed in)").len() == 1,
        "{}",
        server.transcript()
    );
    let bindings = bindings_in(&server_home.server_dir()).expect("a bindings file");
    let saved = std::fs::read_to_string(&bindings)
        .unwrap_or_else(|e| panic!("{}: {e}", bindings.display()));
    let alice_key = keystore::format_key(&public_key_of(&identity_file(&alice_home, "Alice")));
    assert_eq!(saved, format!("{alice_key} Alice\n"));

    // The same key and bindings file: Alice's name is reserved for her key.
    let (mut server, again) = start_server_in(&server_home, port, &[]);
    assert_eq!(again, port);
    assert_eq!(server_fingerprint(&server), server_key);
    let restored = wait_server_line(&server, "Restored ");
    assert_eq!(
        restored,
        format!(
            "Restored 1 name binding from {}: each name is kept for its key for 2 minutes",
            bindings.display()
        )
    );

    // Someone else as Alice (another home, so another key) is refused...
    let mut impostor = start_client_in(&Home::new(), "Alice", port, &[]);
    let stderr = refused(&mut impostor);
    assert!(
        stderr.contains(&format!("{REPLY}Sign-in failed: name Alice is in use")),
        "{}",
        impostor.transcript()
    );
    // ... and so is another identity file in Alice's own home.
    let other_key = alice_home.path().join("other.key");
    let other_arg = other_key.to_str().expect("a UTF-8 path");
    let mut impostor = start_client_in(&alice_home, "Alice", port, &["--identity", other_arg]);
    let stderr = refused(&mut impostor);
    assert!(
        stderr.contains(&format!("{REPLY}Sign-in failed: name Alice is in use")),
        "{}",
        impostor.transcript()
    );
    assert!(
        server_lines(&server, "Alice signed in").is_empty(),
        "{}",
        server.transcript()
    );

    // Other names are free; Alice with her own key gets hers.
    let mut carol = start_client_in(&Home::new(), "Carol", port, &[]);
    wait_signed_in(&carol);
    let mut alice = start_client_in(&alice_home, "Alice", port, &[]);
    wait_signed_in(&alice);
    wait_server_line(&server, "Alice signed in from ");
    list_until(&mut alice, &["Carol"], WAIT);
    leave(&mut alice, 0);
    leave(&mut carol, 0);
    stop(&mut server);
}

// ---- (f) a peer's changed key is warned about ---------------------------

#[test]
fn a_peer_whose_key_changed_is_warned_about_before_the_message() {
    let (mut server, port) = start_server_in(&Home::new(), 0, &[]);
    let bob_home = Home::new();
    let mut bob = start_client_in(&bob_home, "Bob", port, &[]);
    let alice_home = Home::new();
    let mut alice = start_client_in(&alice_home, "Alice", port, &[]);
    list_until(&mut alice, &["Bob"], WAIT);
    let (old, _) = ask_fingerprints(&mut alice);

    // They talk: Bob remembers Alice's key.
    alice.send("send Bob first");
    bob.wait_reply(WAIT, 0, "Alice's first message", |r| {
        parse_message(r).is_some_and(|m| m.from == "Alice" && m.text == "first")
    });
    let old_key = public_key_of(&identity_file(&alice_home, "Alice"));
    let known_peers = keystore::KnownKeys::new(bob_home.client_dir().join("known_peers"));
    let entries = known_peers.read().expect("Bob's known_peers");
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].1, old_key);
    leave(&mut alice, 0);
    wait_server_line(&server, "Alice signed out from ");

    // Alice comes back with a new key (a new identity file).
    let new_identity = alice_home.path().join("new-identity.key");
    let new_arg = new_identity.to_str().expect("a UTF-8 path");
    let mut alice = start_client_in(&alice_home, "Alice", port, &["--identity", new_arg]);
    wait_signed_in(&alice);
    let (new, _) = ask_fingerprints(&mut alice);
    assert_eq!(new, fingerprint_of(&new_identity));
    assert_ne!(new, old);

    // Her next message comes right after the warning.
    alice.send("send Bob second");
    let (at, _) = bob.wait_reply(WAIT, 0, "Alice's second message", |r| {
        parse_message(r).is_some_and(|m| m.from == "Alice" && m.text == "second")
    });
    let warning = format!(
        "{REPLY}Warning: Alice's key has changed since you last talked (fingerprint {new}; it \
         was {old}). Compare it with them out of band (whois Alice)."
    );
    let replies = bob.replies();
    assert!(
        at > 0 && replies[at - 1] == warning,
        "expected {warning:?} right before the message\n{}",
        bob.transcript()
    );
    assert_eq!(
        known_peers.read().expect("Bob's known_peers"),
        vec![(entries[0].0.clone(), public_key_of(&new_identity))]
    );

    // Once: the new key is the known one now.
    alice.send("send Bob third");
    bob.wait_reply(WAIT, at + 1, "Alice's third message", |r| {
        parse_message(r).is_some_and(|m| m.from == "Alice" && m.text == "third")
    });
    bob.send("whois Alice");
    bob.wait_reply(WAIT, at + 1, "whois Alice", |r| {
        r == format!("{REPLY}Alice's key fingerprint: {new} (the key you know)")
    });
    let warnings = bob
        .replies()
        .iter()
        .filter(|r| r.contains("Warning:"))
        .count();
    assert_eq!(warnings, 1, "{}", bob.transcript());
    leave(&mut alice, 0);
    leave(&mut bob, 0);
    stop(&mut server);
}

// ---- a running client does not follow its server to a new key ----------

/// Alice is signed in (with the server's key pinned before this run, or at
/// this run's sign-in) when the server comes back on the same address with
/// another key: her client must not sign in again to it, but stop as a
/// sign-in refused for a new key does (exit 2, the same message).
fn a_running_client_refuses_a_new_server_key(pinned_before: bool) {
    let server_home = Home::new();
    let key_a = server_home.path().join("a.key");
    let key_b = server_home.path().join("b.key");
    let key_a_arg = key_a.to_str().expect("a UTF-8 path");
    let key_b_arg = key_b.to_str().expect("a UTF-8 path");
    let (mut server, port) = start_server_in(&server_home, 0, &["--key", key_a_arg]);
    let fingerprint_a = server_fingerprint(&server);
    let alice_home = Home::new();
    if pinned_before {
        let mut alice = start_client_in(&alice_home, "Alice", port, &[]);
        wait_signed_in(&alice);
        leave(&mut alice, 0);
    }
    let mut alice = start_client_in(&alice_home, "Alice", port, &[]);
    wait_signed_in(&alice);
    if !pinned_before {
        // Written after `Signed in`: wait for the line that says so.
        alice.wait_reply(WAIT, 0, "the server's key, pinned", |r| {
            r == pinned_line(&fingerprint_a)
        });
    }
    assert_eq!(pinned_key(&alice_home, port), Some(public_key_of(&key_a)));

    stop(&mut server);
    let (server, again) = start_server_in(&server_home, port, &["--key", key_b_arg]);
    assert_eq!(again, port);
    let fingerprint_b = server_fingerprint(&server);

    // Her keep-alive finds her session gone; she must not sign in again.
    let code = alice.exit_code(WAIT);
    assert_eq!(code, 2, "{}", alice.transcript());
    let expected = format!(
        "{REPLY}Sign-in failed: the server at 127.0.0.1:{port} has a new key (fingerprint \
         {fingerprint_b}; it was {fingerprint_a})."
    );
    assert!(
        alice.err.text().contains(&expected),
        "expected {expected:?}\n{}",
        alice.transcript()
    );
    assert!(
        server_lines(&server, "Alice signed in").is_empty(),
        "Alice signed in to the new key\n{}",
        server.transcript()
    );
    assert_eq!(pinned_key(&alice_home, port), Some(public_key_of(&key_a)));
}

#[test]
fn a_running_client_refuses_a_new_server_key_pinned_before_this_run() {
    a_running_client_refuses_a_new_server_key(true);
}

#[test]
fn a_running_client_refuses_a_new_server_key_pinned_during_this_run() {
    a_running_client_refuses_a_new_server_key(false);
}
