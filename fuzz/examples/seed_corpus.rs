//! Writes a seed corpus for the `decode` target: one valid datagram of every
//! packet shape, into `corpus/decode/` (git-ignored).
//!
//! ```text
//! cd fuzz && cargo run --example seed_corpus
//! cargo fuzz run --sanitizer none decode
//! ```

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::Path;

use udpchat::Packet;
use udpchat::codec::{ErrorCode, NameList, RefuseReason};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let v4 = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 51234));
    let v6 = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 9090, 0, 0));
    let token = &[0x5a; 16];
    let body = "Hello this is Alice. ".repeat(40);
    let packets = [
        Packet::SignIn {
            request: 1,
            name: "Alice",
            cookie: b"",
        },
        Packet::SignIn {
            request: 2,
            name: "Zoë",
            cookie: &[7; 24],
        },
        Packet::Retry {
            request: 2,
            cookie: &[7; 24],
        },
        Packet::SignInAccepted { request: 3, token },
        Packet::SignInRefused {
            request: 4,
            reason: RefuseReason::ServerFull,
            holder: "",
        },
        Packet::ListRequest {
            request: 5,
            token,
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
            token,
            name: "Carole",
        },
        Packet::LookupReply {
            request: 8,
            name: "Carole",
            address: Some(v4),
        },
        Packet::LookupReply {
            request: 8,
            name: "Bob",
            address: Some(v6),
        },
        Packet::LookupReply {
            request: 8,
            name: "Eve",
            address: None,
        },
        Packet::KeepAlive { request: 9, token },
        Packet::KeepAliveAck { request: 9 },
        Packet::Probe { request: 10 },
        Packet::SignOut { request: 11, token },
        Packet::SignOutAck { request: 11 },
        Packet::Error {
            request: 12,
            code: ErrorCode::BadRequest,
        },
        Packet::Message {
            stream: 1,
            seq: 2,
            fragment: 0,
            fragments: 1,
            from: "Alice",
            body: b"Hello",
        },
        Packet::Message {
            stream: 1,
            seq: 3,
            fragment: 1,
            fragments: 3,
            from: "Alice",
            body: &body.as_bytes()[..800],
        },
        Packet::Ack { stream: 1, seq: 2 },
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/decode");
    std::fs::create_dir_all(&dir)?;
    for (i, packet) in packets.iter().enumerate() {
        let bytes = packet.to_bytes()?;
        let name = format!("seed-{i:02}-{}", packet.packet_type().name());
        std::fs::write(dir.join(name), &bytes)?;
    }
    println!("wrote {} seeds to {}", packets.len(), dir.display());
    Ok(())
}
