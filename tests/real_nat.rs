//! The real binaries across home NAT routers, in the small Internet that
//! `tests/tools/netlab` builds from network namespaces: the server and a
//! public host on a public segment, two homes behind routers that masquerade,
//! filter statefully (forwarding dropped except replies), drop unsolicited
//! UDP to themselves, do not hairpin and forget an idle UDP mapping after
//! 30 s.
//!
//! Paths the directory brokers (issue 9), each pair with either side writing
//! first, all in one lab at once: home 1 ↔ home 2 (through both routers'
//! mappings, the addresses the server saw), two hosts in home 1 (the LAN
//! path: shown from 192.168.1.x, since the router does not hairpin), and home
//! ↔ public; then, after 60 s of quiet (twice the routers' UDP timeout, one
//! quiet spell for all pairs), both directions again. In a second lab both
//! homes are strict (a new random port per destination): a pair across them
//! gets the clear failure, and a strict home still reaches the public host
//! and is reached by it.
//!
//! Every delivery is timed, from writing `send` to the line shown at the
//! recipient, and costed: the clients' hosts count, with nftables counters on
//! their own output and input hooks, the datagrams each client socket sent to
//! and got from anyone but the server (its peers, through whatever path),
//! the handshakes among them (`PeerInit` 0x06, `PeerResp` 0x07), and those to
//! and from the server (keep-alives every 3 s included). A delivery's count
//! runs from just before `send` to [`SETTLE`] after the line is shown, so the
//! acknowledgement is in it. The figures are printed and written to
//! `target/tmp/real_nat.txt` and `target/tmp/real_nat_strict.txt`, which
//! `.ci/run` prints.
//!
//! Needs root, `ip` and `nft`, so a plain `cargo test` lists these tests as
//! ignored, with the reason; `cargo test -- --ignored` (as `.ci/run` does)
//! runs them, and then a missing tool fails them.

mod common_proc;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::{Add, Sub};
use std::process::Command;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use common_proc::{
    CLIENT_BIN, Proc, REPLY, SERVER_BIN, is_root, on_path, parse_message, replies, run_with_input,
    udp_ports_in_netns_of,
};

const NETLAB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/netlab");
const SERVER_HOST: &str = "server";
const SERVER_PORT: &str = "9090";
/// Longer than the client's own delivery deadline (10 s).
const WAIT: Duration = Duration::from_secs(15);
/// How long a writer may take to report a failed delivery: the client's
/// deadline is 10 s, and a loaded machine adds to it.
const FAIL_WAIT: Duration = Duration::from_secs(30);
/// Twice the routers' UDP timeout: a mapping not kept alive is gone.
const QUIET: Duration = Duration::from_secs(60);
/// How long after a message is shown its datagrams are still counted for it
/// (the acknowledgement, the end of a handshake).
const SETTLE: Duration = Duration::from_secs(1);
/// The nftables table on each client host that holds the counters.
const COUNT_TABLE: &str = "udpchat_count";

/// A lab of namespaces, torn down when dropped.
struct Lab {
    name: String,
    /// The homes whose routers map every destination to a new random port.
    strict: Vec<&'static str>,
    /// The hosts' and routers' addresses, as `netlab addr` gives them.
    addrs: HashMap<&'static str, IpAddr>,
}

impl Lab {
    /// The hosts clients run on.
    const CLIENT_HOSTS: [&'static str; 4] = ["public", "home1a", "home1b", "home2a"];

    /// Builds the lab named `tag` (two letters) and a number, with the homes
    /// in `strict` strict; fails the test, saying what is missing, if it
    /// cannot be built here.
    fn up(tag: &str, strict: &[&'static str]) -> Lab {
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
        let mut up = Command::new(NETLAB);
        up.args(["up", &name]);
        for home in strict {
            up.args(["--strict", home]);
        }
        let status = up.status().expect("run netlab");
        let mut lab = Lab {
            name,
            strict: strict.to_vec(),
            addrs: HashMap::new(),
        };
        assert!(status.success(), "netlab up {} failed: {status}", lab.name);
        for host in Lab::CLIENT_HOSTS
            .into_iter()
            .chain([SERVER_HOST, "router1", "router2"])
        {
            let out = Command::new(NETLAB)
                .args(["addr", &lab.name, host])
                .output()
                .expect("run netlab addr");
            let addr = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("netlab addr {host}: {e}"));
            lab.addrs.insert(host, addr);
        }
        // The counters tell the server from the peers by its IPv4 address.
        let server = lab.addr(SERVER_HOST);
        assert!(server.is_ipv4(), "netlab gave the server {server}");
        for host in Lab::CLIENT_HOSTS {
            lab.nft(
                host,
                &format!(
                    "table inet {COUNT_TABLE} {{\n\
                       chain out {{ type filter hook output priority 0; policy accept; }}\n\
                       chain in {{ type filter hook input priority 0; policy accept; }}\n\
                     }}\n"
                ),
            );
        }
        lab
    }

    fn addr(&self, host: &str) -> IpAddr {
        self.addrs[host]
    }

    /// The home `host` is in (`home1`, `home2`), if any.
    fn home_of(host: &str) -> Option<&str> {
        host.starts_with("home").then(|| &host[..5])
    }

    /// The public address of the router in front of `host`, if any.
    fn router_of(&self, host: &str) -> Option<IpAddr> {
        Lab::home_of(host).map(|home| self.addr(&home.replace("home", "router")))
    }

    fn is_strict(&self, host: &str) -> bool {
        Lab::home_of(host).is_some_and(|home| self.strict.contains(&home))
    }

    /// A command that runs `program` on `host`.
    fn on(&self, host: &str, program: &str) -> Command {
        let mut cmd = Command::new(NETLAB);
        cmd.args(["exec", &self.name, host, program]);
        cmd
    }

    /// Runs the nftables `script` on `host`.
    fn nft(&self, host: &str, script: &str) {
        let status = run_with_input(self.on(host, "nft").args(["-f", "-"]), script);
        assert!(status.success(), "nft on {host} refused:\n{script}");
    }

    /// Starts the server and waits until it is up.
    fn server(&self) -> Proc {
        let server = Proc::spawn(
            "server",
            self.on(SERVER_HOST, SERVER_BIN).args(["-sp", SERVER_PORT]),
        );
        server
            .out
            .wait_for(WAIT, |l| {
                l.iter()
                    .any(|l| l.trim_end() == "Server Initialized...")
                    .then_some(())
            })
            .unwrap_or_else(|| panic!("no server\n{}", server.transcript()));
        server
    }

    /// Starts `name` on `host` (not waiting for its sign-in).
    fn spawn_client(&self, host: &'static str, name: &str) -> Proc {
        let server_ip = self.addr(SERVER_HOST).to_string();
        Proc::spawn(
            name,
            self.on(host, CLIENT_BIN)
                .args(["-u", name, "-sip", &server_ip, "-sp", SERVER_PORT]),
        )
    }

    /// Waits for `proc`, started on `host`, to sign in; learns its socket's
    /// port and where the server saw it, and starts counting its datagrams.
    fn signed_in(&self, server: &Proc, host: &'static str, proc: Proc) -> Client {
        proc.wait_reply(WAIT, 0, "sign-in", |r| r.contains("Signed in as"));
        let seen = signed_in_from(server, &proc.label);
        let ports = udp_ports_in_netns_of(proc.pid());
        assert_eq!(
            ports.len(),
            1,
            "{}: expected one unconnected UDP socket, found ports {ports:?}\n{}",
            proc.label,
            proc.transcript()
        );
        let port = ports.into_iter().next().expect("one port");
        let client = Client {
            host,
            local: SocketAddr::new(self.addr(host), port),
            seen,
            proc,
        };
        // The server sees a user at home at the router's public address: the
        // NAT is real.
        let expected = self.router_of(host).unwrap_or(client.local.ip());
        assert_eq!(
            seen.ip(),
            expected,
            "{} on {host} signed in from {seen}\n{}",
            client.name(),
            server.transcript()
        );
        let server = self.addr(SERVER_HOST);
        let p = format!("p{port}");
        let mut script = String::new();
        for (chain, dir, peer, suffix) in [
            ("out", "sport", "daddr", "sent"),
            ("in", "dport", "saddr", "got"),
        ] {
            let rule = format!("add rule inet {COUNT_TABLE} {chain} udp {dir} {port} ip {peer}");
            script += &format!(
                "add counter inet {COUNT_TABLE} {p}_{suffix}\n\
                 add counter inet {COUNT_TABLE} {p}_hs_{suffix}\n\
                 add counter inet {COUNT_TABLE} {p}_srv_{suffix}\n\
                 add counter inet {COUNT_TABLE} {p}_lan_{suffix}\n\
                 {rule} != {server} counter name {p}_{suffix}\n\
                 {rule} != {server} @th,64,8 {{ 6, 7 }} counter name {p}_hs_{suffix}\n\
                 {rule} {{ 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 }} counter name {p}_lan_{suffix}\n\
                 {rule} {server} counter name {p}_srv_{suffix}\n"
            );
        }
        self.nft(host, &script);
        client
    }

    /// What `client`'s host has counted for it so far.
    fn counts(&self, client: &Client) -> Counts {
        let out = self
            .on(client.host, "nft")
            .args(["list", "counters", "table", "inet", COUNT_TABLE])
            .output()
            .expect("run nft");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut packets = HashMap::new();
        let mut current = None;
        for line in text.lines().map(str::trim) {
            if let Some(name) = line
                .strip_prefix("counter ")
                .and_then(|l| l.strip_suffix(" {"))
            {
                current = Some(name.to_string());
            } else if let (Some(name), Some(rest)) = (&current, line.strip_prefix("packets ")) {
                let n: u64 = rest
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("unexpected nft listing:\n{text}"));
                packets.insert(name.clone(), n);
            }
        }
        let port = client.local.port();
        let get = |what: &str| {
            packets
                .get(&format!("p{port}_{what}"))
                .copied()
                .unwrap_or_else(|| panic!("no counter p{port}_{what} on {}:\n{text}", client.host))
        };
        Counts {
            sent: get("sent"),
            got: get("got"),
            handshakes_sent: get("hs_sent"),
            handshakes_got: get("hs_got"),
            lan_sent: get("lan_sent"),
            lan_got: get("lan_got"),
            server: get("srv_sent") + get("srv_got"),
        }
    }

    /// The counts of both clients of a conversation.
    fn counts2(&self, a: &Client, b: &Client) -> Counts {
        self.counts(a) + self.counts(b)
    }

    /// Where `reader` must be shown `writer`'s messages as coming from: the
    /// LAN address within a home; else the address the server saw. The port
    /// is left open where the router maps the path to the peer to a port of
    /// its own: always when strict, and when it had to change the port to
    /// the server (another host of the home held it), since it may keep the
    /// host's port towards the peer.
    fn expected_from(&self, writer: &Client, reader: &Client) -> (IpAddr, Option<u16>) {
        let lan = Lab::home_of(writer.host).is_some()
            && Lab::home_of(writer.host) == Lab::home_of(reader.host);
        if lan {
            (writer.local.ip(), Some(writer.local.port()))
        } else if self.is_strict(writer.host) || writer.seen.port() != writer.local.port() {
            (writer.seen.ip(), None)
        } else {
            (writer.seen.ip(), Some(writer.seen.port()))
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(NETLAB).args(["down", &self.name]).status();
    }
}

/// A signed-in client in the lab.
struct Client {
    host: &'static str,
    /// Its socket: the host's address and the port.
    local: SocketAddr,
    /// Where the server saw it sign in from.
    seen: SocketAddr,
    proc: Proc,
}

impl Client {
    fn name(&self) -> &str {
        &self.proc.label
    }

    fn describe(&self) -> String {
        format!("{} ({})", self.name(), self.host)
    }
}

/// Datagrams of one or more client sockets, as their hosts counted them.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    /// Sent to anyone but the server.
    sent: u64,
    /// Received from anyone but the server.
    got: u64,
    /// Of `sent`, handshakes (`PeerInit`, `PeerResp`).
    handshakes_sent: u64,
    /// Of `got`, handshakes.
    handshakes_got: u64,
    /// Of `sent`, to private (LAN) addresses.
    lan_sent: u64,
    /// Of `got`, from private (LAN) addresses.
    lan_got: u64,
    /// Sent to and received from the server.
    server: u64,
}

impl Add for Counts {
    type Output = Counts;
    fn add(self, o: Counts) -> Counts {
        Counts {
            sent: self.sent + o.sent,
            got: self.got + o.got,
            handshakes_sent: self.handshakes_sent + o.handshakes_sent,
            handshakes_got: self.handshakes_got + o.handshakes_got,
            lan_sent: self.lan_sent + o.lan_sent,
            lan_got: self.lan_got + o.lan_got,
            server: self.server + o.server,
        }
    }
}

impl Sub for Counts {
    type Output = Counts;
    fn sub(self, o: Counts) -> Counts {
        Counts {
            sent: self.sent - o.sent,
            got: self.got - o.got,
            handshakes_sent: self.handshakes_sent - o.handshakes_sent,
            handshakes_got: self.handshakes_got - o.handshakes_got,
            lan_sent: self.lan_sent - o.lan_sent,
            lan_got: self.lan_got - o.lan_got,
            server: self.server - o.server,
        }
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} peer datagrams sent, {} arrived (handshakes {} sent, {} arrived; \
             on the LAN {} sent, {} arrived), {} to and from the server",
            self.sent,
            self.got,
            self.handshakes_sent,
            self.handshakes_got,
            self.lan_sent,
            self.lan_got,
            self.server
        )
    }
}

/// The address the server says `name` signed in from.
fn signed_in_from(server: &Proc, name: &str) -> SocketAddr {
    let prefix = format!("{name} signed in from ");
    server
        .out
        .wait_for(WAIT, |lines| {
            lines
                .iter()
                .find_map(|l| l.trim_end().strip_prefix(&prefix)?.parse().ok())
        })
        .unwrap_or_else(|| panic!("{name} did not sign in\n{}", server.transcript()))
}

/// The report lines of a test, printed as they come and kept for the
/// summary file, each under the number of the conversation it is about.
struct Log(Mutex<Vec<(usize, String)>>);

impl Log {
    fn new() -> Log {
        Log(Mutex::new(Vec::new()))
    }

    fn say(&self, conversation: usize, line: String) {
        eprintln!("{line}");
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((conversation, line));
    }

    /// Writes the lines, grouped by conversation, to `target/tmp/FILE`.
    fn write(&self, file: &str, heading: &str) {
        let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        lines.sort_by_key(|(n, _)| *n);
        let mut text = format!("{heading}\n");
        for (_, line) in lines {
            text += &format!("  {line}\n");
        }
        let path = format!("{}/{file}", env!("CARGO_TARGET_TMPDIR"));
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
    }
}

/// `writer` writes `what` to `reader`, who must be shown it, from the
/// address it really came from; returns the report line.
fn deliver(lab: &Lab, server: &Proc, writer: &mut Client, reader: &Client, what: &str) -> String {
    let text = format!("{what}, from {} to {}", writer.name(), reader.name());
    let before = lab.counts2(writer, reader);
    let start = Instant::now();
    writer.proc.send(&format!("send {} {text}", reader.name()));
    let shown = reader.proc.out.wait_for(WAIT, |lines| {
        replies(lines)
            .into_iter()
            .filter_map(parse_message)
            .find(|m| m.text == text)
    });
    let elapsed = start.elapsed();
    let Some(got) = shown else {
        let spent = lab.counts2(writer, reader) - before;
        panic!(
            "{} was not shown {what:?} from {} within {WAIT:?} ({spent})\n{}\n{}\n{}",
            reader.describe(),
            writer.describe(),
            writer.proc.transcript(),
            reader.proc.transcript(),
            server.transcript()
        );
    };
    thread::sleep(SETTLE);
    let spent = lab.counts2(writer, reader) - before;
    let (ip, port) = lab.expected_from(writer, reader);
    assert!(
        got.from == writer.name()
            && got.address.ip() == ip
            && port.is_none_or(|p| p == got.address.port()),
        "{} was shown {what:?} from {}:{}, expected from {ip}:{}\n{}\n{}",
        reader.describe(),
        got.address,
        got.from,
        port.map_or("any port".to_string(), |p| p.to_string()),
        writer.proc.transcript(),
        reader.proc.transcript()
    );
    format!(
        "{} → {}, {what}: shown after {:.1} ms, from {}; {spent}",
        writer.describe(),
        reader.describe(),
        elapsed.as_secs_f64() * 1000.0,
        got.address
    )
}

/// `writer` writes to `reader` and must be told, within [`FAIL_WAIT`], exactly
/// that there is no direct path; `reader` must be shown nothing. Returns
/// the report line.
fn fail_to_deliver(lab: &Lab, server: &Proc, writer: &mut Client, reader: &Client) -> String {
    let to = reader.name();
    let expected = format!(
        "{REPLY}Message to {to} not delivered: no direct path to {to} (both of you are behind strict NATs)"
    );
    let before = lab.counts2(writer, reader);
    let start = Instant::now();
    writer
        .proc
        .send(&format!("send {to} across two strict NATs"));
    let report = writer.proc.out.wait_for(FAIL_WAIT, |lines| {
        replies(lines)
            .into_iter()
            .find(|r| r.starts_with(&format!("{REPLY}Message to {to} not delivered")))
            .map(str::to_string)
    });
    let elapsed = start.elapsed();
    let spent = lab.counts2(writer, reader) - before;
    let transcripts = || {
        format!(
            "{}\n{}\n{}",
            writer.proc.transcript(),
            reader.proc.transcript(),
            server.transcript()
        )
    };
    let report = report.unwrap_or_else(|| {
        panic!(
            "{} was not told within {FAIL_WAIT:?} that the message to {} failed ({spent})\n{}",
            writer.describe(),
            reader.describe(),
            transcripts()
        )
    });
    assert_eq!(
        report,
        expected,
        "{} was told something else after {} ms ({spent})\n{}",
        writer.describe(),
        elapsed.as_millis(),
        transcripts()
    );
    assert!(
        reader
            .proc
            .replies()
            .iter()
            .all(|r| parse_message(r).is_none()),
        "{} was shown a message across two strict NATs\n{}",
        reader.describe(),
        transcripts()
    );
    format!(
        "{} → {}: told \"no direct path\" after {:.1} ms; {spent}",
        writer.describe(),
        reader.describe(),
        elapsed.as_secs_f64() * 1000.0
    )
}

/// One conversation: `first` writes first, `second` answers.
struct Conversation {
    what: &'static str,
    first: Client,
    second: Client,
}

/// Checks that neither side of `c` was told a message was not delivered:
/// every one was shown, and nothing in the lab loses an acknowledgement.
fn told_of_no_failure(c: &Conversation) {
    for client in [&c.first, &c.second] {
        let failed: Vec<String> = client
            .proc
            .replies()
            .into_iter()
            .filter(|r| r.contains("not delivered"))
            .collect();
        assert!(
            failed.is_empty(),
            "{} was told a message was not delivered: {failed:?}\n{}",
            client.describe(),
            client.proc.transcript()
        );
    }
}

/// Starts a conversation between a user on `first` (who will write first)
/// and one on `second` for each entry, numbered from 1, all at once, and
/// waits until all have signed in.
fn start_conversations(
    lab: &Lab,
    server: &Proc,
    plan: &[(&'static str, &'static str, &'static str)],
) -> Vec<Conversation> {
    let started: Vec<_> = plan
        .iter()
        .enumerate()
        .map(|(i, &(what, first, second))| {
            let n = i + 1;
            let a = lab.spawn_client(first, &format!("Ann{n}"));
            let b = lab.spawn_client(second, &format!("Ben{n}"));
            (what, first, a, second, b)
        })
        .collect();
    started
        .into_iter()
        .map(|(what, first, a, second, b)| Conversation {
            what,
            first: lab.signed_in(server, first, a),
            second: lab.signed_in(server, second, b),
        })
        .collect()
}

/// Runs `f` on every conversation, each in a thread of its own; panics
/// with every failure once all are done, after writing the summary.
fn in_parallel(
    conversations: Vec<Conversation>,
    log: &Log,
    summary: (&str, &str),
    f: impl Fn(usize, Conversation) + Sync,
) {
    let failures: Vec<String> = thread::scope(|s| {
        let handles: Vec<_> = conversations
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let what = c.what;
                let f = &f;
                (what, s.spawn(move || f(i, c)))
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|(what, h)| {
                h.join().err().map(|e| {
                    let why = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    format!("== {what}: FAILED: {why}")
                })
            })
            .collect()
    });
    for failure in &failures {
        let first = failure.lines().next().unwrap_or_default();
        log.say(usize::MAX, first.to_string());
    }
    log.write(summary.0, summary.1);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
#[ignore = "needs root, ip and nft: run with cargo test -- --ignored"]
fn brokered_paths_either_side_first_and_again_after_60_s_of_quiet() {
    let lab = Lab::up("np", &[]);
    let server = lab.server();
    let plan = [
        ("home 1 ↔ home 2, home 1 first", "home1a", "home2a"),
        ("home 1 ↔ home 2, home 2 first", "home2a", "home1a"),
        ("two hosts in home 1, home1a first", "home1a", "home1b"),
        ("two hosts in home 1, home1b first", "home1b", "home1a"),
        ("home ↔ public, home first", "home2a", "public"),
        ("home ↔ public, public first", "public", "home1b"),
    ];
    let conversations = start_conversations(&lab, &server, &plan);
    let log = Log::new();
    let summary = (
        "real_nat.txt",
        "real_nat: send → shown, and the datagrams both clients spent (peer: anyone but the server)",
    );
    in_parallel(conversations, &log, summary, |i, mut c| {
        log.say(i, format!("== {}", c.what));
        let (a, b) = (&mut c.first, &mut c.second);
        log.say(i, deliver(&lab, &server, a, b, "first message"));
        log.say(i, deliver(&lab, &server, b, a, "answer"));
        let before = lab.counts2(a, b);
        thread::sleep(QUIET);
        let quiet = lab.counts2(a, b) - before;
        log.say(i, format!("{} s of quiet: {quiet}", QUIET.as_secs()));
        log.say(i, deliver(&lab, &server, a, b, "after the quiet"));
        log.say(i, deliver(&lab, &server, b, a, "answer after the quiet"));
        told_of_no_failure(&c);
    });
}

#[test]
#[ignore = "needs root, ip and nft: run with cargo test -- --ignored"]
fn across_two_strict_nats_the_writer_is_told_there_is_no_direct_path() {
    let lab = Lab::up("ns", &["home1", "home2"]);
    let server = lab.server();
    let plan = [
        ("strict home 1 → strict home 2", "home1a", "home2a"),
        ("strict home 2 → strict home 1", "home2a", "home1b"),
        ("strict home ↔ public, home first", "home1a", "public"),
        ("strict home ↔ public, public first", "public", "home2a"),
    ];
    let conversations = start_conversations(&lab, &server, &plan);
    let log = Log::new();
    let summary = (
        "real_nat_strict.txt",
        "real_nat, both homes strict (a new random port per destination):",
    );
    in_parallel(conversations, &log, summary, |i, mut c| {
        log.say(i, format!("== {}", c.what));
        let (a, b) = (&mut c.first, &mut c.second);
        if Lab::home_of(b.host).is_some() && Lab::home_of(a.host).is_some() {
            log.say(i, fail_to_deliver(&lab, &server, a, b));
        } else {
            log.say(i, deliver(&lab, &server, a, b, "first message"));
            log.say(i, deliver(&lab, &server, b, a, "answer"));
            told_of_no_failure(&c);
        }
    });
}
