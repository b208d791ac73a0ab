//! Writes a seed corpus for every fuzz target into `corpus/<target>/`
//! (git-ignored):
//!
//! * `decode`: one valid encoding of every packet shape, clear packets and
//!   sealed packets' plaintexts alike;
//! * `server` and `client`: step sequences in each target's input format
//!   (see the targets' docs) whose payloads are valid packets, so the
//!   fuzzer starts past the handshakes with well-formed sealed requests and
//!   replies to mutate;
//! * `handshake`: a real Noise IK message 1 to the target's responder and a
//!   real message 2 for its initiator.
//!
//! ```text
//! cd fuzz && cargo run --example seed_corpus
//! cargo fuzz run --sanitizer none decode
//! ```

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::Path;

use udpchat::codec::{ErrorCode, NameList, RefuseReason};
use udpchat::crypto::{Initiator, Responder, StaticKeypair};
use udpchat::{AddrList, Packet};

type Error = Box<dyn std::error::Error>;

/// Host candidates for the seeds: a LAN IPv4 address and an IPv6 one.
const HOSTS: [SocketAddr; 2] = [
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 20), 51234)),
    SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x14),
        51234,
        0,
        0,
    )),
];

/// One valid packet of every shape.
fn packets<'a>(body: &'a [u8], key: &'a [u8], blob: &'a [u8]) -> Vec<Packet<'a>> {
    let v4 = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 51234));
    let v6 = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 9090, 0, 0));
    vec![
        Packet::Hello { request: 1 },
        Packet::Retry {
            request: 1,
            cookie: &[7; 16],
            key,
        },
        Packet::ServerInit {
            cookie: &[7; 16],
            sender: 0x0102_0304,
            handshake: blob,
        },
        Packet::ServerResp {
            sender: 0x100,
            receiver: 0x0102_0304,
            handshake: blob,
        },
        Packet::Sealed {
            receiver: 0x100,
            counter: 3,
            sealed: blob,
        },
        Packet::PeerInit {
            sender: 0x0a0b_0c0d,
            handshake: blob,
        },
        Packet::PeerResp {
            sender: 0x0e0f_1011,
            receiver: 0x0a0b_0c0d,
            handshake: blob,
        },
        Packet::Error {
            request: 0x100,
            code: ErrorCode::UnknownSession,
        },
        Packet::Error {
            request: 12,
            code: ErrorCode::BadRequest,
        },
        Packet::SignIn {
            request: 2,
            name: "Zoë",
            replaces: 0x100,
            candidates: AddrList::EMPTY,
        },
        Packet::SignIn {
            request: 2,
            name: "Alice",
            replaces: 0,
            candidates: AddrList::Addrs(&HOSTS),
        },
        Packet::SignInAccepted {
            request: 3,
            address: Some(v4),
        },
        Packet::SignInRefused {
            request: 4,
            reason: RefuseReason::NameInUse,
            holder: "Alice",
        },
        Packet::SignInRefused {
            request: 4,
            reason: RefuseReason::ServerFull,
            holder: "",
        },
        Packet::ListRequest {
            request: 5,
            cursor: 17,
        },
        Packet::ListReply {
            request: 6,
            more: true,
            cursor: 3,
            names: NameList::Names(&["Bob", "Carole", "Dave"]),
        },
        Packet::ListReply {
            request: 6,
            more: false,
            cursor: 0,
            names: NameList::Names(&[]),
        },
        Packet::LookupRequest {
            request: 7,
            name: "Carole",
            introduce: false,
        },
        Packet::LookupRequest {
            request: 7,
            name: "Carole",
            introduce: true,
        },
        Packet::LookupReply {
            request: 8,
            name: "Carole",
            address: Some(v4),
            key,
            candidates: AddrList::Addrs(&HOSTS),
        },
        Packet::LookupReply {
            request: 8,
            name: "Bob",
            address: Some(v6),
            key,
            candidates: AddrList::EMPTY,
        },
        Packet::LookupReply {
            request: 8,
            name: "Eve",
            address: None,
            key: &[],
            candidates: AddrList::EMPTY,
        },
        Packet::Introduction {
            name: "Bob",
            key,
            address: Some(v4),
            candidates: AddrList::Addrs(&HOSTS),
        },
        Packet::Introduction {
            name: "Eve",
            key,
            address: None,
            candidates: AddrList::EMPTY,
        },
        Packet::KeepAlive { request: 9 },
        Packet::KeepAliveAck { request: 9 },
        Packet::Probe { request: 10 },
        Packet::SignOut { request: 11 },
        Packet::SignOutAck { request: 11 },
        Packet::Message {
            stream: 1,
            seq: 2,
            base: 0,
            fragment: 0,
            fragments: 1,
            body: b"Hello",
        },
        Packet::Message {
            stream: 1,
            seq: 3,
            base: 2,
            fragment: 1,
            fragments: 3,
            body: &body[..800],
        },
        Packet::Ack {
            stream: 1,
            first: 2,
            last: 5,
        },
    ]
}

/// One step of the `server` and `client` targets: op, time step, length,
/// payload (at most 255 bytes).
fn step(out: &mut Vec<u8>, op: u8, millis: u16, payload: &[u8]) -> Result<(), Error> {
    out.push(op);
    out.extend_from_slice(&millis.to_be_bytes());
    out.push(u8::try_from(payload.len())?);
    out.extend_from_slice(payload);
    Ok(())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Error> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(name), bytes)?;
    Ok(())
}

fn main() -> Result<(), Error> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let body = "Hello this is Alice. ".repeat(40);
    let key = [0x4b; 32];
    let blob = [0x5e; 96];
    let packets = packets(body.as_bytes(), &key, &blob);

    // decode: every packet shape.
    let dir = corpus.join("decode");
    for (i, packet) in packets.iter().enumerate() {
        let name = format!("seed-{i:02}-{}", packet.packet_type().name());
        write(&dir, &name, &packet.to_bytes()?)?;
    }

    // server: Mallory signs in (flags bit 0), then each request sealed
    // (kind 2, from her address), a sign-in under another name (kind 3),
    // a replay (kind 3, odd), and a Hello from a stranger (kind 0); and
    // Mallory signing in with host candidates (flags bit 1, then kind 3
    // with picks after the name) and asking to be introduced.
    let requests = [
        Packet::LookupRequest {
            request: 1,
            name: "Honest",
            introduce: false,
        },
        Packet::LookupRequest {
            request: 5,
            name: "Honest",
            introduce: true,
        },
        Packet::ListRequest {
            request: 2,
            cursor: 0,
        },
        Packet::KeepAlive { request: 3 },
        Packet::SignOut { request: 4 },
    ];
    let dir = corpus.join("server");
    let mut all = vec![1u8];
    for (i, request) in requests.iter().enumerate() {
        let mut one = vec![1u8];
        step(&mut one, 0b1000, 10, &request.to_bytes()?)?;
        step(&mut all, 0b1000, 10, &request.to_bytes()?)?;
        write(
            &dir,
            &format!("seed-{i:02}-{}", request.packet_type().name()),
            &one,
        )?;
    }
    step(&mut all, 0b1100, 100, b"\x00Honest")?;
    step(&mut all, 0b1101, 100, b"\x01")?;
    step(
        &mut all,
        0b0001,
        1000,
        &Packet::Hello { request: 9 }.to_bytes()?,
    )?;
    write(&dir, "seed-all", &all)?;
    let introduce = Packet::LookupRequest {
        request: 6,
        name: "Honest",
        introduce: true,
    }
    .to_bytes()?;
    let mut candidates = vec![0b11u8];
    step(&mut candidates, 0b1000, 10, &introduce)?;
    // Picks 0 (her own address), 4 and 5 (addresses that never send), 3
    // (the honest client's).
    step(
        &mut candidates,
        0b1100,
        100,
        b"\x02Mallory\x00\x00\x04\x05\x03",
    )?;
    step(&mut candidates, 0b1000, 10, &introduce)?;
    write(&dir, "seed-candidates", &candidates)?;

    // client: a message to Bob (kind 0, which makes Alice look him up and
    // make a handshake), then server replies sealed (kind 3, one of them an
    // introduction of Bob with his key and candidates), Bob's own handshake
    // and a message under his session (kind 4), and a raw datagram (kind 5).
    // Bob as the target plays him (see fuzz_targets/client.rs).
    let bob_key = StaticKeypair::from_secret([3; 32]).public().0;
    let bob_hosts = [
        SocketAddr::from(([10, 0, 0, 3], 5000)),
        SocketAddr::from(([192, 168, 7, 3], 5000)),
    ];
    let replies = [
        Packet::Probe { request: 5 },
        Packet::ListReply {
            request: 6,
            more: false,
            cursor: 0,
            names: NameList::Names(&["Alice", "Bob"]),
        },
        Packet::LookupReply {
            request: 7,
            name: "Carole",
            address: Some(SocketAddr::from(([10, 0, 0, 4], 6000))),
            key: &key,
            candidates: AddrList::Addrs(&HOSTS),
        },
        Packet::Introduction {
            name: "Bob",
            key: &bob_key,
            address: Some(SocketAddr::from(([10, 0, 0, 3], 5000))),
            candidates: AddrList::Addrs(&bob_hosts),
        },
        Packet::Error {
            request: 8,
            code: ErrorCode::BadRequest,
        },
    ];
    let dir = corpus.join("client");
    let mut all = Vec::new();
    step(&mut all, 0, 10, b"hello Bob")?;
    for (i, reply) in replies.iter().enumerate() {
        let mut one = Vec::new();
        step(&mut one, 0, 10, b"hello Bob")?;
        step(&mut one, 3 << 5, 10, &reply.to_bytes()?)?;
        step(&mut all, 3 << 5, 10, &reply.to_bytes()?)?;
        write(
            &dir,
            &format!("seed-{i:02}-{}", reply.packet_type().name()),
            &one,
        )?;
    }
    step(&mut all, (4 << 5) | 1, 50, b"\x00")?;
    // The server introduces Bob (from his address, source 1), with
    // candidates picked 0 and 1 (his LAN addresses), and Bob then starts a
    // handshake.
    step(&mut all, (4 << 5) | 1, 50, b"\x06\x00\x01")?;
    let message = Packet::Message {
        stream: 77,
        seq: 0,
        base: 0,
        fragment: 0,
        fragments: 1,
        body: b"Hi Alice",
    };
    let mut sealed = vec![1u8];
    sealed.extend_from_slice(&message.to_bytes()?);
    step(&mut all, (4 << 5) | 1, 50, &sealed)?;
    step(
        &mut all,
        (5 << 5) | 2,
        3000,
        &Packet::Ack {
            stream: 1,
            first: 0,
            last: 0,
        }.to_bytes()?,
    )?;
    write(&dir, "seed-all", &all)?;

    // handshake: the target's keys and seeds (see fuzz_targets/handshake.rs).
    let alice = StaticKeypair::from_secret([1; 32]);
    let bob = StaticKeypair::from_secret([2; 32]);
    let dir = corpus.join("handshake");
    let (_, msg1) = Initiator::start(&alice, &bob.public(), b"", [11; 32], b"Alice")?;
    write(&dir, "seed-msg1", &msg1)?;
    let (_, to_target) = Initiator::start(&alice, &bob.public(), b"", [4; 32], b"")?;
    let (responder, _) = Responder::accept(&bob, b"", [12; 32], &to_target)?;
    let (msg2, _) = responder.finish(b"")?;
    write(&dir, "seed-msg2", &msg2)?;

    println!("wrote seeds to {}", corpus.display());
    Ok(())
}
