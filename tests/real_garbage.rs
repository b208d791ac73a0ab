//! The real binaries under garbage: 20,000 datagrams, half at the server and
//! half at a signed-in client (Bob), from several source sockets. A third are
//! valid packets of every type built with `udpchat::codec` (handshakes and
//! sealed packets full of random bytes, sealed-only packets in the clear,
//! replies nobody asked for), a third are those packets mutated (bit flips, truncations, length
//! fields that lie, trailing bytes, a changed type byte), and a third are
//! random bytes. Seeded, so a failure replays. Afterwards both programs must
//! still run, and sign-in, list and send must still work; no forged message
//! may have been shown, and the server must never have sent the flooding
//! (never validated) sources more than 3 times the bytes they sent it.

mod common_proc;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use udpchat::AddrList;
use udpchat::codec::{ErrorCode, MAX_CANDIDATES, NameList, Packet, RefuseReason};

use common_proc::{Rng, list_until, parse_message, start_client, start_server, wait_udp_port};

const SEED: u64 = 0x5EED_0004;
const DATAGRAMS: usize = 20_000;
const SOURCES: usize = 8;
/// Datagrams a second, all sources together: under the server's per-source
/// rate limit, so most of the garbage reaches the decoder rather than the
/// limiter.
const RATE: f64 = 2_000.0;
const WAIT: Duration = Duration::from_secs(20);

/// A valid packet's bytes and the offsets of its length fields (`u8`
/// lengths, or the first byte of a `u16` one), for mutations that lie.
struct Valid {
    bytes: Vec<u8>,
    length_fields: Vec<usize>,
}

fn encode(p: Packet<'_>, length_fields: Vec<usize>) -> Valid {
    Valid {
        bytes: p.to_bytes().expect("a valid packet encodes").to_vec(),
        length_fields,
    }
}

/// Up to [`MAX_CANDIDATES`] host candidates, IPv4 and IPv6, `fake_peer`
/// among them now and then.
fn candidates(rng: &mut Rng, fake_peer: SocketAddr) -> Vec<SocketAddr> {
    (0..rng.below(MAX_CANDIDATES + 1))
        .map(|i| {
            let port = rng.next_u64() as u16;
            match rng.below(3) {
                0 if i == 0 => fake_peer,
                0 => SocketAddr::from((Ipv4Addr::new(192, 168, 1, 20 + i as u8), port)),
                1 => SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                _ => SocketAddr::from((Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, i as u16), port)),
            }
        })
        .collect()
}

/// The `addr` field's length for `a`.
fn addr_len(a: SocketAddr) -> usize {
    if a.is_ipv4() { 1 + 4 + 2 } else { 1 + 16 + 2 }
}

/// One valid packet of every type, with random ids, cookies, keys,
/// handshakes and ciphertext, and names that matter here (Alice and Bob are
/// signed in; Mallory is not). Sealed-only packets are sent in the clear too:
/// receivers must drop them.
fn valid_packet(rng: &mut Rng, fake_peer: SocketAddr) -> Valid {
    let request = rng.next_u64() as u32;
    let index = rng.next_u64() as u32;
    let cookie_len = rng.below(40);
    let cookie = rng.bytes(cookie_len);
    let key = rng.bytes(32);
    let handshake_len = rng.below(200);
    let handshake = rng.bytes(handshake_len);
    let name = ["Alice", "Bob", "Mallory", "alice", "Carole"][rng.below(5)];
    let body_len = rng.below(300);
    let body = rng.bytes(body_len);
    let text = "Hello Bob, it is me, Alice. \u{1b}[2J";
    let hosts = candidates(rng, fake_peer);
    match rng.below(23) {
        0 => encode(Packet::Hello { request }, vec![]),
        1 => encode(
            Packet::ServerInit {
                cookie: &cookie,
                sender: index,
                handshake: &handshake,
            },
            vec![1, 6 + cookie.len()],
        ),
        2 => encode(
            Packet::Retry {
                request,
                cookie: &cookie,
                key: &key,
            },
            vec![5, 6 + cookie.len()],
        ),
        3 => encode(
            Packet::ServerResp {
                sender: index,
                receiver: request,
                handshake: &handshake,
            },
            vec![9],
        ),
        4 => encode(
            Packet::Sealed {
                receiver: index,
                counter: rng.next_u64(),
                sealed: &body,
            },
            vec![13],
        ),
        5 => encode(
            Packet::PeerInit {
                sender: index,
                handshake: &handshake,
            },
            vec![5],
        ),
        6 => encode(
            Packet::PeerResp {
                sender: index,
                receiver: request,
                handshake: &handshake,
            },
            vec![9],
        ),
        7 => encode(
            Packet::SignIn {
                request,
                name,
                replaces: index,
                candidates: AddrList::Addrs(&hosts),
            },
            vec![5, 10 + name.len()],
        ),
        8 => encode(
            Packet::SignInRefused {
                request,
                reason: RefuseReason::NameInUse,
                holder: "Alice",
            },
            vec![6],
        ),
        9 => encode(
            Packet::ListRequest {
                request,
                cursor: rng.next_u64() as u32,
            },
            vec![],
        ),
        10 => {
            let names = ["Eve", "Mallory", "Alice"];
            encode(
                Packet::ListReply {
                    request,
                    more: rng.below(2) == 1,
                    cursor: 1,
                    names: NameList::Names(&names),
                },
                vec![10, 12],
            )
        }
        11 => encode(
            Packet::LookupRequest {
                request,
                name,
                introduce: rng.below(2) == 1,
            },
            vec![5],
        ),
        12 => {
            let key_at = 6 + name.len() + addr_len(fake_peer);
            encode(
                Packet::LookupReply {
                    request,
                    name,
                    address: Some(fake_peer),
                    key: &key,
                    candidates: AddrList::Addrs(&hosts),
                },
                vec![5, key_at, key_at + 1 + key.len()],
            )
        }
        13 => encode(Packet::KeepAlive { request }, vec![]),
        14 => encode(Packet::KeepAliveAck { request }, vec![]),
        15 => encode(Packet::Probe { request }, vec![]),
        16 => encode(Packet::SignOut { request }, vec![]),
        17 => encode(
            Packet::Error {
                request: index,
                code: ErrorCode::UnknownSession,
            },
            vec![],
        ),
        18 => encode(
            Packet::Message {
                stream: rng.next_u64(),
                seq: rng.below(4) as u32,
                base: 0,
                fragment: 0,
                fragments: 1,
                body: text.as_bytes(),
            },
            vec![21],
        ),
        19 => {
            let fragments = 1 + rng.below(60) as u16;
            encode(
                Packet::Message {
                    stream: rng.next_u64(),
                    seq: rng.next_u64() as u32,
                    base: 0,
                    fragment: rng.below(usize::from(fragments)) as u16,
                    fragments,
                    body: &body,
                },
                vec![21],
            )
        }
        20 => encode(
            Packet::SignInAccepted {
                request,
                address: Some(fake_peer),
            },
            vec![],
        ),
        21 => {
            // "Mallory wants to reach you, she is at the fake peer's": in
            // the clear, so Bob must drop it (and send her nothing).
            let mallory = "Mallory";
            let key_at = 2 + mallory.len();
            encode(
                Packet::Introduction {
                    name: mallory,
                    key: &key,
                    address: Some(fake_peer),
                    candidates: AddrList::Addrs(&hosts),
                },
                vec![1, key_at, key_at + 1 + key.len() + addr_len(fake_peer)],
            )
        }
        _ => encode(
            Packet::Ack {
                stream: rng.next_u64(),
                first: rng.next_u64() as u32,
                last: u32::MAX,
            },
            vec![],
        ),
    }
}

/// A valid packet, mutated one to three times.
fn mutated(rng: &mut Rng, valid: Valid) -> Vec<u8> {
    let Valid {
        mut bytes,
        length_fields,
    } = valid;
    for _ in 0..1 + rng.below(3) {
        match rng.below(6) {
            // Bit flips.
            0 => {
                for _ in 0..1 + rng.below(8) {
                    if !bytes.is_empty() {
                        let i = rng.below(bytes.len());
                        bytes[i] ^= 1 << rng.below(8);
                    }
                }
            }
            // Truncation.
            1 => bytes.truncate(rng.below(bytes.len().max(1))),
            // A length field that lies.
            2 => {
                let fields: Vec<usize> = length_fields
                    .iter()
                    .copied()
                    .filter(|&i| i < bytes.len())
                    .collect();
                if !fields.is_empty() {
                    let i = fields[rng.below(fields.len())];
                    bytes[i] = match rng.below(5) {
                        0 => 0,
                        1 => 0xFF,
                        2 => bytes[i].wrapping_add(1),
                        3 => bytes[i].wrapping_sub(1),
                        _ => rng.next_u64() as u8,
                    };
                }
            }
            // Trailing bytes.
            3 => {
                let extra_len = 1 + rng.below(16);
                let extra = rng.bytes(extra_len);
                bytes.extend_from_slice(&extra);
            }
            // Another type byte, known or not.
            4 => {
                if let Some(b) = bytes.first_mut() {
                    *b = rng.next_u64() as u8 % 0x14;
                }
            }
            // An interesting byte anywhere.
            _ => {
                if !bytes.is_empty() {
                    let i = rng.below(bytes.len());
                    bytes[i] = [0, 1, 0x7F, 0x80, 0xFF][rng.below(5)];
                }
            }
        }
    }
    bytes
}

/// Random bytes: any length up to past the 1200-byte limit, sometimes with
/// a known type byte in front.
fn random_datagram(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(4) {
        0 => rng.below(8),
        1 => rng.below(64),
        2 => rng.below(1200),
        _ => 1190 + rng.below(120),
    };
    let mut bytes = rng.bytes(len);
    if rng.below(2) == 0
        && let Some(b) = bytes.first_mut()
    {
        *b = 1 + rng.below(0x11) as u8;
    }
    bytes
}

/// Reads whatever has arrived at `sock`, adding up bytes per sender.
fn drain(sock: &UdpSocket, from_server: &mut usize, from_bob: &mut usize, server: SocketAddr) {
    let mut buf = [0u8; 2048];
    while let Ok((n, from)) = sock.recv_from(&mut buf) {
        if from == server {
            *from_server += n;
        } else {
            *from_bob += n;
        }
    }
}

#[test]
fn garbage_leaves_server_and_client_working() {
    let (mut server, server_port) = start_server();
    let mut alice = start_client("Alice", server_port);
    let mut bob = start_client("Bob", server_port);
    list_until(&mut alice, &["Bob"], WAIT);

    // Bob -> Alice first: Alice learns Bob's real port from the line.
    bob.send("send Alice before the garbage");
    let (_, line) = alice.wait_reply(WAIT, 0, "message from Bob", |r| {
        parse_message(r).is_some_and(|m| m.from == "Bob")
    });
    let bob_port = parse_message(&line).expect("matched").address.port();
    if let Some(real) = wait_udp_port(&bob, Duration::from_secs(2)) {
        assert_eq!(bob_port, real, "Bob's shown port is not his socket's");
    }
    let alice_port = wait_udp_port(&alice, Duration::from_secs(2));

    let server_addr: SocketAddr = ([127, 0, 0, 1], server_port).into();
    let bob_addr: SocketAddr = ([127, 0, 0, 1], bob_port).into();
    let sockets: Vec<UdpSocket> = (0..SOURCES)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind a source socket");
            s.set_nonblocking(true).expect("nonblocking");
            s
        })
        .collect();
    let fake_peer = sockets[0].local_addr().expect("local address");

    let mut rng = Rng(SEED);
    let mut sent_to_server = [0usize; SOURCES];
    let mut from_server = [0usize; SOURCES];
    let mut from_bob = [0usize; SOURCES];
    let (mut valid, mut mutations, mut random) = (0, 0, 0);
    let start = Instant::now();
    for i in 0..DATAGRAMS {
        let datagram = match rng.below(3) {
            0 => {
                valid += 1;
                valid_packet(&mut rng, fake_peer).bytes
            }
            1 => {
                mutations += 1;
                let v = valid_packet(&mut rng, fake_peer);
                mutated(&mut rng, v)
            }
            _ => {
                random += 1;
                random_datagram(&mut rng)
            }
        };
        let source = rng.below(SOURCES);
        let to = if i % 2 == 0 { server_addr } else { bob_addr };
        // A full socket buffer may refuse a datagram; that is the network's
        // business, not the test's.
        if let Ok(n) = sockets[source].send_to(&datagram, to)
            && to == server_addr
        {
            sent_to_server[source] += n;
        }
        if i % 20 == 19 {
            for (k, s) in sockets.iter().enumerate() {
                drain(s, &mut from_server[k], &mut from_bob[k], server_addr);
            }
            let due = start + Duration::from_secs_f64((i + 1) as f64 / RATE);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
        }
    }
    thread::sleep(Duration::from_millis(500));
    for (k, s) in sockets.iter().enumerate() {
        drain(s, &mut from_server[k], &mut from_bob[k], server_addr);
    }
    println!(
        "sent {DATAGRAMS} datagrams ({valid} valid, {mutations} mutated, {random} random) in {:?}; \
         the server answered {} bytes to {} sent, Bob {} bytes",
        start.elapsed(),
        from_server.iter().sum::<usize>(),
        sent_to_server.iter().sum::<usize>(),
        from_bob.iter().sum::<usize>()
    );

    // Nothing the sources sent validated them: 3x at most, per source.
    for k in 0..SOURCES {
        assert!(
            from_server[k] <= 3 * sent_to_server[k],
            "the server sent an unvalidated source {} bytes for {} received",
            from_server[k],
            sent_to_server[k]
        );
    }

    // Both still up.
    assert!(
        server.is_running(),
        "the server died\n{}",
        server.transcript()
    );
    assert!(bob.is_running(), "Bob's client died\n{}", bob.transcript());
    assert!(
        alice.is_running(),
        "Alice's client died\n{}",
        alice.transcript()
    );

    // Sign-in, list and send still work.
    let mut carole = start_client("Carole", server_port);
    list_until(&mut alice, &["Bob", "Carole"], WAIT);
    alice.send("send Bob after the garbage");
    bob.wait_reply(WAIT, 0, "message from Alice", |r| {
        parse_message(r).is_some_and(|m| m.from == "Alice" && m.text == "after the garbage")
    });
    bob.send("send Carole still here");
    let got = carole.out.wait_for(WAIT, |lines| {
        common_proc::replies(lines)
            .into_iter()
            .filter_map(parse_message)
            .find(|m| m.from == "Bob" && m.text == "still here")
    });
    assert!(
        got.is_some(),
        "Carole was not shown Bob's message\n{}\n{}",
        bob.transcript(),
        carole.transcript()
    );
    carole.send("send Alice me too");
    let got = alice.out.wait_for(WAIT, |lines| {
        common_proc::replies(lines)
            .into_iter()
            .filter_map(parse_message)
            .find(|m| m.from == "Carole" && m.text == "me too")
    });
    assert!(
        got.is_some(),
        "Alice was not shown Carole's message\n{}\n{}",
        carole.transcript(),
        alice.transcript()
    );

    for client in [&mut alice, &mut bob, &mut carole] {
        client.close_stdin();
    }
    for client in [&mut alice, &mut bob, &mut carole] {
        client.assert_exits_ok(WAIT);
    }
    assert!(server.is_running(), "{}", server.transcript());

    // Bob was shown Alice's message only, from Alice's real address: none of
    // the forged ones.
    let shown: Vec<_> = bob
        .replies()
        .iter()
        .filter_map(|r| parse_message(r))
        .collect();
    assert_eq!(
        shown.len(),
        1,
        "Bob was shown forged messages\n{}",
        bob.transcript()
    );
    assert_eq!(shown[0].text, "after the garbage");
    if let Some(real) = alice_port {
        assert_eq!(shown[0].address.port(), real);
    }
    // Nothing raw reached Bob's output.
    assert!(
        !bob.out.text().contains('\u{1b}'),
        "an escape sequence reached Bob's output\n{}",
        bob.transcript()
    );
}
