//! Drives a `ClientState` with a sequence of (source, time step, datagram or
//! command) from the fuzzer. Checks, after every step:
//! - nothing panics;
//! - the client sends only to the server, or to an address a lookup reply
//!   from the server gave it, or acknowledges a stream whose sender the
//!   directory vouched for (also an address from a lookup reply): never to an
//!   address that merely sent it something;
//! - after `handle_timeout(now)`, `poll_timeout()` is `None` or later than `now`;
//! - no datagram is longer than 1200 bytes.
#![no_main]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use udpchat::codec::{MAX_DATAGRAM, Packet};
use udpchat::{ClientConfig, ClientState};

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let server: SocketAddr = "10.0.0.1:9090".parse().unwrap();
    let sources: [SocketAddr; 4] = [
        server,
        "10.0.0.3:5000".parse().unwrap(),
        "10.0.0.4:6000".parse().unwrap(),
        "[2001:db8::1]:7000".parse().unwrap(),
    ];
    let mut client = ClientState::new(ClientConfig::new("Alice", server), start, 7).unwrap();
    let mut now = start;
    let mut vouched: HashSet<SocketAddr> = HashSet::new();
    vouched.insert(server);

    let mut rest = data;
    while rest.len() >= 4 {
        let op = rest[0];
        let source = sources[usize::from(op & 3)];
        let step = Duration::from_millis(u64::from(u16::from_be_bytes([rest[1], rest[2]])));
        let len = usize::from(rest[3]).min(rest.len() - 4);
        let payload = &rest[4..4 + len];
        rest = &rest[4 + len..];
        now += step;
        match op >> 5 {
            0 => {
                let _ = client.send(now, "Bob", &String::from_utf8_lossy(payload));
            }
            1 => {
                client.list(now);
            }
            2 if payload.first() == Some(&0) => client.sign_out(now),
            _ => {
                if source == server {
                    if let Ok(Packet::LookupReply {
                        address: Some(a), ..
                    }) = Packet::decode(payload)
                    {
                        vouched.insert(a);
                    }
                }
                client.handle_datagram(now, source, payload);
            }
        }
        client.handle_timeout(now);
        if let Some(t) = client.poll_timeout() {
            assert!(t > now, "poll_timeout {t:?} is not after {now:?}");
        }
        while let Some(t) = client.poll_transmit() {
            assert!(t.payload.len() <= MAX_DATAGRAM);
            assert!(
                vouched.contains(&t.destination),
                "sent to {} which nobody vouched for",
                t.destination
            );
        }
        while client.poll_event().is_some() {}
    }
});
