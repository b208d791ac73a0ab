//! Drives a `ClientState` (Alice) with a sequence of steps from the fuzzer.
//! The harness plays the directory server and the peer Bob by hand, with
//! real handshakes, so the fuzzer's bytes reach the client not only as
//! datagrams from anyone but also sealed under live sessions, past the
//! handshakes:
//!
//! * **The server** answers Alice's Hello with a Retry, her ServerInit with
//!   an accepting ServerResp, and her sealed requests: a lookup of Bob with
//!   Bob's address, key and host candidates, of anyone else with nobody;
//!   keep-alives, lists and sign-outs as a server would. When the fuzzer says
//!   so, it also introduces Bob to Alice (as if Bob had looked her up to
//!   write to her).
//! * **Bob** answers Alice's PeerInit with a PeerResp and acknowledges every
//!   message fragment she seals to him; he can also start a handshake to her
//!   himself.
//!
//! Input: steps of `op, time step (u16 ms), length (u8), payload`. Op bits
//! 0-1 pick a source address (0 is the server's, 1 Bob's); bits 5-7 pick
//! what the payload is:
//!
//! * 0: send the payload (as text) to Bob; 1: list; 2: sign out when the
//!   payload starts with 0, else `whois Bob`;
//! * 3: the payload sealed by the server under Alice's server session;
//! * 4: with an odd first byte, the rest sealed by Bob under his session
//!   with her, from the source (a move, if it is not his address); with a
//!   first byte of 0 mod 4, Bob starts a handshake to Alice from the source;
//!   of 2 mod 4, the server seals Alice an Introduction of Bob, his address
//!   the source and his host candidates picked by the rest of the payload
//!   (one byte each, at most `MAX_CANDIDATES`), and with bit 2 set too Bob
//!   then starts a handshake from the source;
//! * 5-7: the payload as a datagram from the source.
//!
//! Checks, after every step:
//! - nothing panics;
//! - Alice sends only to the server, to an address (or host candidate) a
//!   lookup reply or an introduction from the server gave her, or to where
//!   Bob's authenticated packets came from: never to an address that merely
//!   sent her something;
//! - after `handle_timeout(now)`, `poll_timeout()` is `None` or later than
//!   `now`;
//! - no datagram is longer than `MAX_DATAGRAM`.
#![no_main]

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use udpchat::codec::{AddrList, MAX_CANDIDATES, MAX_DATAGRAM, NameList, Packet};
use udpchat::crypto::{Initiator, Responder, StaticKeypair};
use udpchat::name;
use udpchat::server::SERVER_PROLOGUE;
use udpchat::{ClientConfig, ClientState};

#[path = "../../examples/common/raw_session.rs"]
mod raw_session;

use raw_session::RawSession;

/// The Noise prologue of peer handshakes (after the crate's own), as the
/// crate-private `PEER_PROLOGUE` in `src/client/peers.rs`.
const PEER_PROLOGUE: &[u8] = b" peer";

/// The server's cookie: the harness checks none.
const COOKIE: &[u8] = b"fuzz cookie 0001";

/// Bob's host candidates, as the server gives them: his LAN addresses.
const BOB_HOSTS: [SocketAddr; 2] = [
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 168, 7, 3), 5000)),
    SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3),
        5000,
        0,
        0,
    )),
];

/// What the harness sends Alice, and what it learns from her.
struct World {
    server_addr: SocketAddr,
    bob_addr: SocketAddr,
    server_key: StaticKeypair,
    bob_key: StaticKeypair,
    /// The server's session with Alice.
    server_session: Option<RawSession>,
    /// Bob's session with Alice, and his handshake to her under way (his
    /// index and the initiator).
    bob_session: Option<RawSession>,
    bob_initiating: Option<(u32, Initiator)>,
    /// Handshakes made, to give each its own index and seed.
    handshakes: u32,
    /// Where Alice may send (see the module docs).
    vouched: HashSet<SocketAddr>,
    /// Every authenticated datagram the harness sent: the fuzzer sending
    /// one of them again (from anywhere) vouches for its source too, as
    /// Noise message 1 may be replayed.
    authentic: HashSet<Vec<u8>>,
    /// Datagrams for Alice: (from, bytes).
    to_alice: Vec<(SocketAddr, Vec<u8>)>,
    scratch: Vec<u8>,
}

impl World {
    fn next_handshake(&mut self) -> (u32, [u8; 32]) {
        self.handshakes = self.handshakes.wrapping_add(1);
        let mut seed = [0x5d; 32];
        seed[..4].copy_from_slice(&self.handshakes.to_be_bytes());
        (0x100 + self.handshakes, seed)
    }

    /// Queues an authenticated datagram for Alice from `from`.
    fn send_authentic(&mut self, from: SocketAddr, datagram: Vec<u8>) {
        self.vouched.insert(from);
        self.authentic.insert(datagram.clone());
        self.to_alice.push((from, datagram));
    }

    /// Seals `packet` from the server to Alice, if they have a session.
    fn server_says(&mut self, packet: &Packet<'_>) {
        if let Ok(plaintext) = packet.to_bytes() {
            self.server_seals(&plaintext);
        }
    }

    /// Seals `plaintext` from the server to Alice, if they have a session.
    /// A lookup reply or an introduction vouches for the address and the
    /// host candidates it gives.
    fn server_seals(&mut self, plaintext: &[u8]) {
        let Some(session) = self.server_session.as_mut() else {
            return;
        };
        let mut datagram = Vec::new();
        if session.seal_plaintext(plaintext, &mut datagram).is_err() {
            return;
        }
        if let Ok(
            Packet::LookupReply {
                address,
                candidates,
                ..
            }
            | Packet::Introduction {
                address,
                candidates,
                ..
            },
        ) = Packet::decode(plaintext)
        {
            self.vouched.extend(address);
            self.vouched.extend(candidates.iter());
        }
        let from = self.server_addr;
        self.send_authentic(from, datagram);
    }

    /// Seals `plaintext` from Bob to Alice, sent from `from`, if they have
    /// a session.
    fn bob_seals(&mut self, from: SocketAddr, plaintext: &[u8]) {
        let Some(session) = self.bob_session.as_mut() else {
            return;
        };
        let mut datagram = Vec::new();
        if session.seal_plaintext(plaintext, &mut datagram).is_ok() {
            self.send_authentic(from, datagram);
        }
    }

    /// The server introduces Bob to Alice: he is at `from`, with host
    /// candidates picked from `picks` (one byte each) among his LAN
    /// addresses and the fuzzer's sources.
    fn server_introduces_bob(&mut self, from: SocketAddr, picks: &[u8], sources: &[SocketAddr]) {
        let pool: Vec<SocketAddr> = BOB_HOSTS.iter().chain(sources).copied().collect();
        let hosts: Vec<SocketAddr> = picks
            .iter()
            .take(MAX_CANDIDATES)
            .map(|&b| pool[usize::from(b) % pool.len()])
            .collect();
        let key = self.bob_key.public().0;
        self.server_says(&Packet::Introduction {
            name: "Bob",
            key: &key,
            address: Some(from),
            candidates: AddrList::Addrs(&hosts),
        });
    }

    /// Bob starts a handshake to Alice (whose key is `alice`) from `from`.
    fn bob_initiates(&mut self, from: SocketAddr, alice: &udpchat::PublicKey) {
        let (index, seed) = self.next_handshake();
        let Ok((initiator, msg1)) =
            Initiator::start(&self.bob_key, alice, PEER_PROLOGUE, seed, b"Bob")
        else {
            return;
        };
        let init = Packet::PeerInit {
            sender: index,
            handshake: &msg1,
        };
        if let Ok(datagram) = init.to_bytes() {
            self.bob_initiating = Some((index, initiator));
            self.send_authentic(from, datagram.to_vec());
        }
    }

    /// A datagram Alice sent to the server.
    fn server_receives(&mut self, datagram: &[u8]) {
        match Packet::decode(datagram) {
            Ok(Packet::Hello { request }) => {
                let key = self.server_key.public().0;
                let retry = Packet::Retry {
                    request,
                    cookie: COOKIE,
                    key: &key,
                };
                if let Ok(retry) = retry.to_bytes() {
                    let from = self.server_addr;
                    self.to_alice.push((from, retry.to_vec()));
                }
            }
            Ok(Packet::ServerInit {
                sender, handshake, ..
            }) => self.server_accepts(sender, handshake),
            Ok(Packet::Sealed { .. }) => {
                let Some(session) = self.server_session.as_ref() else {
                    return;
                };
                let mut scratch = std::mem::take(&mut self.scratch);
                if let Ok(request) = session.open(datagram, &mut scratch) {
                    self.serve(request);
                }
                self.scratch = scratch;
            }
            _ => {}
        }
    }

    /// Accepts Alice's sign-in: a new server session.
    fn server_accepts(&mut self, sender: u32, handshake: &[u8]) {
        let (index, seed) = self.next_handshake();
        let Ok((responder, payload)) =
            Responder::accept(&self.server_key, SERVER_PROLOGUE, seed, handshake)
        else {
            return;
        };
        let Ok(Packet::SignIn { request, .. }) = Packet::decode(&payload) else {
            return;
        };
        let accepted = Packet::SignInAccepted {
            request,
            address: Some(SocketAddr::from(([10, 0, 0, 9], 4000))),
        };
        let Ok(accepted) = accepted.to_bytes() else {
            return;
        };
        let Ok((msg2, keys)) = responder.finish(&accepted) else {
            return;
        };
        let resp = Packet::ServerResp {
            sender: index,
            receiver: sender,
            handshake: &msg2,
        };
        if let Ok(resp) = resp.to_bytes() {
            self.server_session = Some(RawSession::new(keys, index, sender));
            let from = self.server_addr;
            self.send_authentic(from, resp.to_vec());
        }
    }

    /// Answers a request Alice sealed to the server.
    fn serve(&mut self, request: Packet<'_>) {
        match request {
            // Whether Alice asks to be introduced changes nothing here: Bob
            // is the harness, and answers whatever reaches him.
            Packet::LookupRequest { request, name, .. } => {
                if name::same(name, "Bob") {
                    let key = self.bob_key.public().0;
                    self.server_says(&Packet::LookupReply {
                        request,
                        name: "Bob",
                        address: Some(self.bob_addr),
                        key: &key,
                        candidates: AddrList::Addrs(&BOB_HOSTS),
                    });
                } else {
                    self.server_says(&Packet::LookupReply {
                        request,
                        name,
                        address: None,
                        key: &[],
                        candidates: AddrList::EMPTY,
                    });
                }
            }
            Packet::ListRequest { request, .. } => self.server_says(&Packet::ListReply {
                request,
                more: false,
                cursor: 0,
                names: NameList::Names(&["Alice", "Bob"]),
            }),
            Packet::KeepAlive { request } => self.server_says(&Packet::KeepAliveAck { request }),
            Packet::SignOut { request } => self.server_says(&Packet::SignOutAck { request }),
            _ => {}
        }
    }

    /// A datagram Alice sent to Bob (at `to`).
    fn bob_receives(&mut self, to: SocketAddr, datagram: &[u8]) {
        match Packet::decode(datagram) {
            Ok(Packet::PeerInit { sender, handshake }) => {
                let (index, seed) = self.next_handshake();
                let Ok((responder, _name)) =
                    Responder::accept(&self.bob_key, PEER_PROLOGUE, seed, handshake)
                else {
                    return;
                };
                let Ok((msg2, keys)) = responder.finish(b"") else {
                    return;
                };
                let resp = Packet::PeerResp {
                    sender: index,
                    receiver: sender,
                    handshake: &msg2,
                };
                if let Ok(resp) = resp.to_bytes() {
                    self.bob_session = Some(RawSession::new(keys, index, sender));
                    self.send_authentic(to, resp.to_vec());
                }
            }
            Ok(Packet::PeerResp {
                sender,
                receiver,
                handshake,
            }) => {
                let Some((index, initiator)) = self.bob_initiating.take() else {
                    return;
                };
                if index != receiver {
                    self.bob_initiating = Some((index, initiator));
                    return;
                }
                if let Ok((_, keys)) = initiator.finish(handshake) {
                    self.bob_session = Some(RawSession::new(keys, index, sender));
                    // Confirms the session: Alice, the responder, sends
                    // under it only once something opened.
                    self.bob_seals(to, &[]);
                }
            }
            Ok(Packet::Sealed { .. }) => {
                let Some(session) = self.bob_session.as_ref() else {
                    return;
                };
                let mut scratch = std::mem::take(&mut self.scratch);
                // Every Message frame in the datagram is acknowledged, all
                // in one datagram of Ack frames.
                let mut acks = Vec::new();
                if let Ok(plaintext) = session.open_plaintext(datagram, &mut scratch) {
                    for frame in Packet::frames(plaintext) {
                        if let Ok(Packet::Message { stream, seq, .. }) = frame
                            && let Ok(ack) = (Packet::Ack {
                                stream,
                                first: seq,
                                last: seq,
                            })
                            .to_bytes()
                        {
                            acks.extend_from_slice(&ack);
                        }
                    }
                }
                self.scratch = scratch;
                if !acks.is_empty() {
                    self.bob_seals(to, &acks);
                }
            }
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let server_addr: SocketAddr = "10.0.0.1:9090".parse().unwrap();
    let bob_addr: SocketAddr = "10.0.0.3:5000".parse().unwrap();
    let sources: [SocketAddr; 4] = [
        server_addr,
        bob_addr,
        "10.0.0.4:6000".parse().unwrap(),
        "[2001:db8::1]:7000".parse().unwrap(),
    ];
    let config = ClientConfig::new("Alice", server_addr, [1; 32]);
    let mut alice = ClientState::new(config, start, [7; 32]).unwrap();
    let alice_key = alice.public_key();
    let mut world = World {
        server_addr,
        bob_addr,
        server_key: StaticKeypair::from_secret([9; 32]),
        bob_key: StaticKeypair::from_secret([3; 32]),
        server_session: None,
        bob_session: None,
        bob_initiating: None,
        handshakes: 0,
        vouched: HashSet::from([server_addr]),
        authentic: HashSet::new(),
        to_alice: Vec::new(),
        scratch: Vec::new(),
    };
    let mut now = start;

    let mut rest = data;
    loop {
        // Alice's datagrams to the harness, and its answers to her, until
        // quiet (bounded).
        for _ in 0..64 {
            let mut moved = false;
            while let Some(t) = alice.poll_transmit() {
                moved = true;
                assert!(t.payload.len() <= MAX_DATAGRAM);
                assert!(
                    world.vouched.contains(&t.destination),
                    "sent to {} which nobody vouched for",
                    t.destination
                );
                if t.destination == server_addr {
                    world.server_receives(&t.payload);
                } else {
                    // Wherever Alice sends (a vouched address), Bob is
                    // listening: it is where he was last heard from.
                    world.bob_receives(t.destination, &t.payload);
                }
            }
            for (from, datagram) in std::mem::take(&mut world.to_alice) {
                moved = true;
                alice.handle_datagram(now, from, &datagram);
            }
            while alice.poll_event().is_some() {}
            if !moved {
                break;
            }
        }
        if rest.len() < 4 {
            break;
        }
        let op = rest[0];
        let source = sources[usize::from(op & 3)];
        let step = Duration::from_millis(u64::from(u16::from_be_bytes([rest[1], rest[2]])));
        let len = usize::from(rest[3]).min(rest.len() - 4);
        let payload = &rest[4..4 + len];
        rest = &rest[4 + len..];
        now += step;
        match op >> 5 {
            0 => {
                let _ = alice.send(now, "Bob", &String::from_utf8_lossy(payload));
            }
            1 => {
                alice.list(now);
            }
            2 if payload.first() == Some(&0) => alice.sign_out(now),
            2 => {
                let _ = alice.whois(now, "Bob");
            }
            3 => world.server_seals(payload),
            4 => match payload.split_first() {
                Some((&first, plaintext)) if first % 2 == 1 => world.bob_seals(source, plaintext),
                Some((&first, picks)) if first % 4 == 2 => {
                    world.server_introduces_bob(source, picks, &sources);
                    if first & 4 != 0 {
                        world.bob_initiates(source, &alice_key);
                    }
                }
                _ => world.bob_initiates(source, &alice_key),
            },
            _ => {
                if world.authentic.contains(payload) {
                    world.vouched.insert(source);
                }
                alice.handle_datagram(now, source, payload);
            }
        }
        alice.handle_timeout(now);
        if let Some(t) = alice.poll_timeout() {
            assert!(t > now, "poll_timeout {t:?} is not after {now:?}");
        }
    }
});
