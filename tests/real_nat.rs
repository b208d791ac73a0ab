//! The real binaries across home NAT routers, in the small Internet that
//! `tests/tools/netlab` builds from network namespaces: the server and a
//! public host on a public segment, two homes behind routers that masquerade,
//! filter statefully, drop unsolicited UDP and do not hairpin.
//!
//! What holds before the directory brokers paths (issue 9): the server sees a
//! home user at its router's public address, and a user at home who writes
//! first to a public user is answered through the mapping that message made.
//!
//! Needs root, `ip` and `nft`, so a plain `cargo test` lists these tests as
//! ignored, with the reason; `cargo test -- --ignored` (as `.ci/run` does)
//! runs them, and then a missing tool fails them.

mod common_proc;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common_proc::{CLIENT_BIN, Proc, SERVER_BIN, is_root, on_path, parse_message};

const NETLAB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/netlab");
const SERVER_IP: &str = "203.0.113.10";
const ROUTER1: &str = "203.0.113.101";
const PUBLIC: &str = "203.0.113.20";
/// Longer than the client's own delivery deadline (10 s).
const WAIT: Duration = Duration::from_secs(15);

/// A lab of namespaces, torn down when dropped.
struct Lab {
    name: String,
}

impl Lab {
    /// Builds the lab named `tag` (two letters) and a number; fails the
    /// test, saying what is missing, if it cannot be built here.
    fn up(tag: &str) -> Lab {
        let mut missing = Vec::new();
        if !is_root() {
            missing.push("root (network namespaces)".to_string());
        }
        for tool in ["ip", "nft"] {
            if !on_path(tool) {
                missing.push(format!("`{tool}` (apt-get install iproute2 nftables)"));
            }
        }
        assert!(
            missing.is_empty(),
            "real_nat needs {} (.ci/run installs them)",
            missing.join(", ")
        );
        let name = format!("{tag}{}", std::process::id() % 10_000);
        let status = Command::new(NETLAB)
            .args(["up", &name])
            .status()
            .expect("run netlab");
        assert!(status.success(), "netlab up {name} failed: {status}");
        Lab { name }
    }

    /// A command that runs `program` on `host`.
    fn on(&self, host: &str, program: &str) -> Command {
        let mut cmd = Command::new(NETLAB);
        cmd.args(["exec", &self.name, host, program]);
        cmd
    }

    fn client(&self, host: &str, name: &str) -> Proc {
        Proc::spawn(
            name,
            self.on(host, CLIENT_BIN)
                .args(["-u", name, "-sip", SERVER_IP, "-sp", "9090"]),
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(NETLAB).args(["down", &self.name]).status();
    }
}

/// The address the server says `name` signed in from.
fn signed_in_from(server: &Proc, name: &str) -> SocketAddr {
    let prefix = format!("{name} signed in from ");
    server
        .out
        .wait_for(Duration::from_secs(15), |lines| {
            lines
                .iter()
                .find_map(|l| l.trim_end().strip_prefix(&prefix)?.parse().ok())
        })
        .unwrap_or_else(|| panic!("{name} did not sign in\n{}", server.transcript()))
}

#[test]
#[ignore = "needs root, ip and nft: run with cargo test -- --ignored"]
fn a_user_at_home_writes_first_to_a_public_user_and_is_answered() {
    let lab = Lab::up("nt");
    let server = Proc::spawn("server", lab.on("server", SERVER_BIN).args(["-sp", "9090"]));
    server
        .out
        .wait_for(WAIT, |l| {
            l.iter()
                .any(|l| l.trim_end() == "Server Initialized...")
                .then_some(())
        })
        .unwrap_or_else(|| panic!("no server\n{}", server.transcript()));
    let mut alice = lab.client("home1a", "Alice");
    let mut bob = lab.client("public", "Bob");

    // The server sees Alice at her router's public address: the NAT is real.
    let alice_seen = signed_in_from(&server, "Alice");
    assert_eq!(
        alice_seen.ip().to_string(),
        ROUTER1,
        "{}",
        server.transcript()
    );
    let bob_seen = signed_in_from(&server, "Bob");
    assert_eq!(bob_seen.ip().to_string(), PUBLIC);

    alice.send("send Bob Hello from home");
    let (_, got) = bob.wait_reply(WAIT, 0, "message from Alice", |r| {
        r.contains("Hello from home")
    });
    let got = parse_message(&got).expect("a message line");
    assert_eq!(got.from, "Alice");
    assert_eq!(got.address, alice_seen, "shown from where it really came");

    bob.send("send Alice Hello back");
    let (_, got) = alice.wait_reply(WAIT, 0, "Bob's answer", |r| r.contains("Hello back"));
    let got = parse_message(&got).expect("a message line");
    assert_eq!(got.from, "Bob");
    assert_eq!(got.address, bob_seen);
}
