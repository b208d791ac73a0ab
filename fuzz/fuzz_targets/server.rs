//! Drives a `ServerState` with a sequence of (source, time step, datagram)
//! from the fuzzer, beside one honest client that signs in, lists and looks
//! up through it. Checks, after every step:
//! - nothing panics;
//! - every address but the honest client's has been sent at most 3x the
//!   bytes it sent (the fuzzer cannot forge a cookie, so none is validated);
//! - after `handle_timeout(now)`, `poll_timeout()` is `None` or later than `now`.
#![no_main]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use udpchat::{ClientConfig, ClientState, ServerConfig, ServerState};

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
    let mut server = ServerState::new(ServerConfig::with_secret([9; 16]), start);
    let mut honest = ClientState::new(ClientConfig::new("Honest", server_addr), start, 1).unwrap();
    let mut now = start;
    let mut received: HashMap<SocketAddr, usize> = HashMap::new();
    let mut sent: HashMap<SocketAddr, usize> = HashMap::new();

    let mut rest = data;
    while rest.len() >= 4 {
        let source = sources[usize::from(rest[0] & 3)];
        let step = Duration::from_millis(u64::from(u16::from_be_bytes([rest[1], rest[2]])));
        let len = usize::from(rest[3]).min(rest.len() - 4);
        let datagram = &rest[4..4 + len];
        rest = &rest[4 + len..];

        now += step;
        if rest.len() % 7 == 0 {
            honest.list(now);
        }
        if rest.len() % 11 == 0 {
            let _ = honest.send(now, "Honest", "hi");
        }
        *received.entry(source).or_default() += datagram.len();
        server.handle_datagram(now, source, datagram);
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
                assert!(t.payload.len() <= udpchat::codec::MAX_DATAGRAM);
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
            if *addr == honest_addr {
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
