//! udpchat: a peer-to-peer chat over UDP.
//!
//! A directory server ([`ServerState`]) knows who is signed in and where;
//! clients ([`ClientState`]) ask it for a peer's address and send each message
//! straight to that peer. Message text never passes through the server.
//!
//! # The sans-IO contract
//!
//! [`codec`], [`ServerState`] and [`ClientState`] hold no socket, thread, clock
//! or global random number generator: time comes in as `now: Instant`,
//! randomness as a seed or secret. The same inputs give the same outputs, which
//! is what makes the simulated-network tests exact. Each state machine has the
//! same five calls:
//!
//! * `handle_datagram(now, from, bytes)`: a datagram arrived. Anything that does
//!   not decode, or makes no sense, is counted and dropped.
//! * `handle_timeout(now)`: the time from `poll_timeout` has come. Spurious or
//!   early calls are harmless.
//! * `poll_transmit()`: the next datagram to send; call until `None` after every
//!   other call.
//! * `poll_timeout()`: when to call `handle_timeout` next; after
//!   `handle_timeout(now)` it is strictly later than `now`. `None` means never.
//! * `poll_event()`: the next thing the user should know of; drain it too.
//!
//! The binaries hold all the I/O, in one loop ([`run`]) that drains
//! `poll_transmit` to the socket, waits for a datagram until `poll_timeout`,
//! and feeds what happened back in.
//!
//! # Using it in a program
//!
//! * `udpchat = { version = "0.1", default-features = false }` gives the
//!   protocol and the run loop without the programs' dependencies (the
//!   default `cli` feature builds `ChatServer` and `ChatClient`).
//! * Real programs take their randomness from the operating system:
//!   `ServerConfig::from_os_entropy()` and [`run::os_seed`] (a fixed secret
//!   or seed, as in the example below, is for tests that replay).
//! * `examples/bot.rs`: a bot that signs in and answers every message, real
//!   sockets and the run loop in under 80 lines
//!   (`cargo run --example bot -- 127.0.0.1:9090 EchoBot 60`).
//! * `examples/headless.rs`: a server and two clients in one process over
//!   loopback, no terminal (`cargo run --example headless`).
//! * `examples/server_scale.rs`, `examples/loadgen.rs`,
//!   `examples/pipe_bench.rs`: the performance figures of the README.
//!
//! Errors, reasons and statistics are at the crate root
//! ([`SignInError`], [`DeliveryFailure`], [`SendError`], [`ClientStats`],
//! [`ServerStats`], ...); enums and statistics that will grow are
//! `#[non_exhaustive]`, so match them with a `_` arm. No `Debug` shows a
//! secret, a key or a session token.
//!
//! # Example: a server and two clients in memory
//!
//! ```
//! use std::net::SocketAddr;
//! use std::time::{Duration, Instant};
//! use udpchat::{ClientConfig, ClientEvent, ClientState, ServerConfig, ServerState};
//!
//! let start = Instant::now();
//! let server_addr: SocketAddr = "127.0.0.1:9090".parse().unwrap();
//! let alice_addr: SocketAddr = "127.0.0.1:5001".parse().unwrap();
//! let bob_addr: SocketAddr = "127.0.0.1:5002".parse().unwrap();
//!
//! // Keys and randomness are fixed here so the example replays; real
//! // programs keep identities in files and take seeds from the OS.
//! let mut server = ServerState::new(ServerConfig::new([7; 32], [8; 32]), start);
//! let alice_config = ClientConfig::new("Alice", server_addr, [1; 32]);
//! let mut alice = ClientState::new(alice_config, start, [11; 32]).unwrap();
//! let mut bob = ClientState::new(ClientConfig::new("Bob", server_addr, [2; 32]), start, [12; 32]).unwrap();
//!
//! // A perfect network: deliver every datagram at once, in order.
//! fn pump(now: Instant, server: &mut ServerState, server_addr: SocketAddr,
//!         clients: &mut [(&mut ClientState, SocketAddr)]) {
//!     loop {
//!         let mut moved = false;
//!         for i in 0..clients.len() {
//!             let from = clients[i].1;
//!             while let Some(t) = clients[i].0.poll_transmit() {
//!                 moved = true;
//!                 if t.destination == server_addr {
//!                     server.handle_datagram(now, from, &t.payload);
//!                 } else if let Some(peer) = clients.iter_mut().find(|c| c.1 == t.destination) {
//!                     peer.0.handle_datagram(now, from, &t.payload);
//!                 }
//!             }
//!         }
//!         while let Some(t) = server.poll_transmit() {
//!             moved = true;
//!             if let Some(c) = clients.iter_mut().find(|c| c.1 == t.destination) {
//!                 c.0.handle_datagram(now, server_addr, &t.payload);
//!             }
//!         }
//!         if !moved { break; }
//!     }
//! }
//!
//! let now = start + Duration::from_millis(1);
//! pump(now, &mut server, server_addr, &mut [(&mut alice, alice_addr), (&mut bob, bob_addr)]);
//! assert!(alice.is_signed_in() && bob.is_signed_in());
//!
//! let id = alice.send(now, "Bob", "Hello Bob").unwrap();
//! pump(now, &mut server, server_addr, &mut [(&mut alice, alice_addr), (&mut bob, bob_addr)]);
//!
//! let got = std::iter::from_fn(|| bob.poll_event()).find_map(|e| match e {
//!     ClientEvent::MessageReceived { from, address, text, .. } => Some((from, address, text)),
//!     _ => None,
//! });
//! assert_eq!(got, Some(("Alice".to_string(), alice_addr, "Hello Bob".to_string())));
//! assert!(std::iter::from_fn(|| alice.poll_event())
//!     .any(|e| matches!(e, ClientEvent::Delivered { id: d, .. } if d == id)));
//! ```
#![deny(missing_docs)]

pub mod client;
pub mod codec;
pub mod crypto;
pub mod name;
pub mod run;
mod secret;
pub mod server;
mod session;
pub mod text;

pub use codec::{AddrList, DecodeError, EncodeError, ErrorCode, Packet, PacketType, RefuseReason};

pub use client::{
    ClientConfig, ClientEvent, ClientState, ClientStats, CommandId, DeliveryFailure, PeerFlow,
    RequestError, SendError, SignInError,
};
pub use crypto::{CryptoError, Fingerprint, PublicKey, StaticKeypair};
pub use name::NameError;
pub use server::{
    BindingsError, ServerConfig, ServerEvent, ServerState, ServerStats, SignOutReason,
};

use bytes::Bytes;
use std::net::SocketAddr;

/// A datagram a state machine wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// The whole datagram (at most [`codec::MAX_DATAGRAM`] bytes).
    pub payload: Bytes,
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
