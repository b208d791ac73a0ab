//! Drives a `ServerState` with a sequence of steps from the fuzzer, beside
//! one honest client (a real `ClientState`) that signs in, lists and looks up
//! through it, and Mallory, a client made by hand who holds a real session:
//! so the fuzzer's bytes reach the server not only as datagrams from anyone
//! but also sealed under a live session, past the handshake.
//!
//! Input: one flags byte (bit 0: Mallory signs in first, with a real
//! handshake; bit 1: giving as her host candidates two addresses that never
//! send anything and the honest client's), then steps of `op, time step
//! (u16 ms), length (u8), payload`:
//!
//! * op bits 0-1 pick the source address (3 is the honest client's; 0 is
//!   Mallory's);
//! * op bits 2-3 pick what the payload is: 0 and 1, a datagram sent as is;
//!   2, a plaintext Mallory seals under her session and sends from the
//!   source (a move, if it is not her address); 3, with an even first byte,
//!   a new handshake from Mallory's address signing in as the rest of the
//!   payload up to a 0 byte, each byte after it picking a host candidate
//!   (among the sources and two addresses that never send anything; at
//!   most `MAX_CANDIDATES`), with an odd one, the last datagram Mallory
//!   sealed, sent again from the source (a replay).
//!
//! Checks, after every step:
//! - nothing panics;
//! - every address that never proved itself (echoed a cookie, or sent a
//!   packet that opened under a session) has been sent at most 3x the bytes
//!   it sent: the fuzzer cannot forge a cookie, and host candidates (which
//!   nobody vouches for) do not make the server send to them;
//! - after `handle_timeout(now)`, `poll_timeout()` is `None` or later than
//!   `now`;
//! - no datagram is longer than `MAX_DATAGRAM`.
#![no_main]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use udpchat::codec::{AddrList, MAX_CANDIDATES, MAX_DATAGRAM, Packet};
use udpchat::crypto::StaticKeypair;
use udpchat::{ClientConfig, ClientState, ServerConfig, ServerState};

#[path = "../../examples/common/raw_session.rs"]
mod raw_session;

use raw_session::RawSession;

/// Mallory, by hand: her identity, her session once signed in, the last
/// datagram she sealed, and how many handshakes she has made.
struct Mallory {
    identity: StaticKeypair,
    session: Option<RawSession>,
    last: Vec<u8>,
    handshakes: u32,
}

impl Mallory {
    /// Signs in as `name` from `from`, giving `candidates`, through a real
    /// Hello, Retry and handshake; keeps the session if the server accepts.
    /// Every datagram the server sends is counted in `sent`.
    fn sign_in(
        &mut self,
        server: &mut ServerState,
        now: Instant,
        from: SocketAddr,
        name: &str,
        candidates: &[SocketAddr],
        sent: &mut HashMap<SocketAddr, usize>,
    ) {
        self.handshakes = self.handshakes.wrapping_add(1);
        let request = self.handshakes;
        let Ok(hello) = raw_session::hello(request) else {
            return;
        };
        let Some(retry) = exchange(server, now, from, &hello, sent) else {
            return;
        };
        let Ok((cookie, key)) = raw_session::read_retry(&retry, request) else {
            return;
        };
        let mut seed = [0x3a; 32];
        seed[..4].copy_from_slice(&request.to_be_bytes());
        let sign_in = Packet::SignIn {
            request,
            name,
            replaces: 0,
            candidates: AddrList::Addrs(candidates),
        };
        let Ok((handshake, init)) =
            raw_session::server_init_with(&self.identity, &key, &cookie, request, seed, &sign_in)
        else {
            return;
        };
        if let Some(resp) = exchange(server, now, from, &init, sent)
            && handshake.answers(&resp)
            && let Ok(session) = handshake.finish(&resp)
        {
            self.session = Some(session);
        }
    }
}

/// Hands `datagram` from `from` to the server and returns the first reply to
/// `from`, if any; every reply is counted in `sent` (and the others stay
/// queued for the caller).
fn exchange(
    server: &mut ServerState,
    now: Instant,
    from: SocketAddr,
    datagram: &[u8],
    sent: &mut HashMap<SocketAddr, usize>,
) -> Option<Vec<u8>> {
    server.handle_datagram(now, from, datagram);
    let mut others = Vec::new();
    let mut reply = None;
    while let Some(t) = server.poll_transmit() {
        assert!(t.payload.len() <= MAX_DATAGRAM);
        *sent.entry(t.destination).or_default() += t.payload.len();
        if t.destination == from && reply.is_none() {
            reply = Some(t.payload.to_vec());
        } else {
            others.push(t);
        }
    }
    // Replies to others (a probe to a name's holder) are not delivered:
    // their bytes are counted, which is what the checks need.
    drop(others);
    reply
}

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let server_addr: SocketAddr = "10.0.0.1:9090".parse().unwrap();
    let honest_addr: SocketAddr = "10.0.0.2:5000".parse().unwrap();
    let sources: [SocketAddr; 4] = [
        "10.0.0.3:5000".parse().unwrap(),
        "10.0.0.4:6000".parse().unwrap(),
        "[2001:db8::1]:7000".parse().unwrap(),
        honest_addr,
    ];
    let mallory_addr = sources[0];
    // Host candidates Mallory may claim: the sources, and two addresses that
    // never send anything (so the server may send them nothing at all).
    let victims: [SocketAddr; 2] = [
        "10.0.0.99:53".parse().unwrap(),
        "[2001:db8::99]:53".parse().unwrap(),
    ];
    let pool: Vec<SocketAddr> = sources.iter().chain(&victims).copied().collect();
    let mut server = ServerState::new(ServerConfig::new([9; 32], [10; 32]), start);
    let honest_config = ClientConfig::new("Honest", server_addr, [1; 32]);
    let mut honest = ClientState::new(honest_config, start, [2; 32]).unwrap();
    let mut now = start;
    let mut received: HashMap<SocketAddr, usize> = HashMap::new();
    let mut sent: HashMap<SocketAddr, usize> = HashMap::new();
    // Addresses that proved themselves: exempt from the 3x rule.
    let mut proven: HashSet<SocketAddr> = HashSet::from([honest_addr]);
    let mut mallory = Mallory {
        identity: StaticKeypair::from_secret([5; 32]),
        session: None,
        last: Vec::new(),
        handshakes: 0,
    };

    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    if flags & 1 == 1 {
        proven.insert(mallory_addr);
        let candidates: &[SocketAddr] = if flags & 2 == 2 {
            &[victims[0], victims[1], honest_addr]
        } else {
            &[]
        };
        mallory.sign_in(
            &mut server,
            now,
            mallory_addr,
            "Mallory",
            candidates,
            &mut sent,
        );
    }
    while rest.len() >= 4 {
        let op = rest[0];
        let source = sources[usize::from(op & 3)];
        let step = Duration::from_millis(u64::from(u16::from_be_bytes([rest[1], rest[2]])));
        let len = usize::from(rest[3]).min(rest.len() - 4);
        let payload = &rest[4..4 + len];
        rest = &rest[4 + len..];

        now += step;
        if rest.len() % 7 == 0 {
            honest.list(now);
        }
        if rest.len() % 11 == 0 {
            let _ = honest.send(now, "Honest", "hi");
        }
        match (op >> 2) & 3 {
            2 => {
                if let Some(session) = mallory.session.as_mut()
                    && session.seal_plaintext(payload, &mut mallory.last).is_ok()
                {
                    // Authenticated: the server may move her session here.
                    proven.insert(source);
                    *received.entry(source).or_default() += mallory.last.len();
                    server.handle_datagram(now, source, &mallory.last);
                }
            }
            3 => match payload.split_first() {
                Some((&first, tail)) if first % 2 == 0 => {
                    proven.insert(mallory_addr);
                    let (name, picks) = match tail.iter().position(|&b| b == 0) {
                        Some(end) => (&tail[..end], &tail[end + 1..]),
                        None => (tail, &[][..]),
                    };
                    let name = String::from_utf8_lossy(name);
                    let candidates: Vec<SocketAddr> = picks
                        .iter()
                        .take(MAX_CANDIDATES)
                        .map(|&b| pool[usize::from(b) % pool.len()])
                        .collect();
                    mallory.sign_in(
                        &mut server,
                        now,
                        mallory_addr,
                        &name,
                        &candidates,
                        &mut sent,
                    );
                }
                _ => {
                    *received.entry(source).or_default() += mallory.last.len();
                    server.handle_datagram(now, source, &mallory.last);
                }
            },
            _ => {
                *received.entry(source).or_default() += payload.len();
                server.handle_datagram(now, source, payload);
            }
        }
        server.handle_timeout(now);
        if let Some(t) = server.poll_timeout() {
            assert!(t > now, "server poll_timeout {t:?} is not after {now:?}");
        }
        honest.handle_timeout(now);
        if let Some(t) = honest.poll_timeout() {
            assert!(t > now, "client poll_timeout {t:?} is not after {now:?}");
        }
        // Perfect delivery between the honest client and the server.
        for _ in 0..64 {
            let mut moved = false;
            while let Some(t) = honest.poll_transmit() {
                moved = true;
                if t.destination == server_addr {
                    *received.entry(honest_addr).or_default() += t.payload.len();
                    server.handle_datagram(now, honest_addr, &t.payload);
                } else if t.destination == honest_addr {
                    honest.handle_datagram(now, honest_addr, &t.payload);
                }
            }
            while let Some(t) = server.poll_transmit() {
                moved = true;
                assert!(t.payload.len() <= MAX_DATAGRAM);
                *sent.entry(t.destination).or_default() += t.payload.len();
                if t.destination == honest_addr {
                    honest.handle_datagram(now, server_addr, &t.payload);
                }
            }
            while server.poll_event().is_some() {}
            while honest.poll_event().is_some() {}
            if !moved {
                break;
            }
        }
        for (addr, &out) in &sent {
            if proven.contains(addr) {
                continue;
            }
            let got = received.get(addr).copied().unwrap_or(0);
            assert!(
                out <= 3 * got,
                "{addr} was sent {out} bytes for {got} received"
            );
        }
    }
});
