//! The chat client: signs in, asks the directory, and talks to peers directly.
//!
//! [`ClientState`] is a sans-IO state machine (see the crate docs for the five
//! calls). What it does on a real network:
//!
//! * **Requests** to the server (sign-in, list, lookup, keep-alive, sign-out)
//!   carry a request id, are retried with exponential backoff until answered
//!   or [`ClientConfig::request_timeout`] passes, and late or duplicate replies
//!   are ignored.
//! * **Sign-in** echoes the server's address-validation cookie, then keeps the
//!   session alive every [`ClientConfig::keepalive_interval`]. When the server
//!   answers "unknown session" (it restarted, or forgot us) the client signs in
//!   again by itself and reports [`ClientEvent::Reconnected`].
//! * **Messages** go straight to the peer. Text is cut into fragments that fit
//!   a 1200-byte datagram; each fragment has a sequence number in a stream
//!   from this client to that peer's address, is acknowledged by the receiver,
//!   and is retransmitted on a timeout estimated from measured round trips
//!   (RFC 6298). At most [`ClientConfig::window`] fragments per peer are
//!   unacknowledged at once. A peer that stops answering is looked up again
//!   once (it may have moved); if it acknowledges nothing new for
//!   [`ClientConfig::message_timeout`], its messages fail.
//! * **Receiving**, each stream is delivered exactly once and in order,
//!   fragments reassembled. A sender's claimed name is believed only when the
//!   directory says that name is at the address the datagrams come from; until
//!   then nothing is acknowledged or shown, and a mismatch is reported as
//!   [`ClientEvent::ForgedMessage`].
//! * **Bounds**: queued sends, receive streams, reassembly buffers and the
//!   lookup cache are all capped; idle receive streams expire.
//!
//! The parts with their own invariants and tests: `requests` (ids, retries,
//! deadlines), `lookup` (the cache of directory answers), `rtt` (the RFC 6298
//! estimate). The send and receive streams are still part of this module:
//! protocol v2 replaces them with sessions (see `docs/sessions.md`).

use std::borrow::Cow;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use crate::Transmit;
use crate::codec::{ErrorCode, MAX_DATAGRAM, Packet, RefuseReason};
use crate::name::{self, NameError};
use crate::secret::Rng;

mod lookup;
mod requests;
mod rtt;

use lookup::LookupCache;
use requests::{RequestKind, Requests};
use rtt::Rtt;

/// Fragments buffered for a stream whose sender is not yet vouched for: an
/// honest sender has no more than its window (32 by default) outstanding, so
/// forged streams cannot make a receiver hold more than this each.
const UNVERIFIED_BUFFER: usize = 32;

/// How long a stream whose claimed sender the directory did not know is
/// dropped before the directory is asked again.
const RECHECK_UNKNOWN_SENDER: Duration = Duration::from_secs(1);

/// Identifies a command ([`ClientState::list`], [`ClientState::send`]); the
/// events that answer it carry the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(pub u64);

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// How the client behaves. [`ClientConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The name to sign in as.
    pub name: String,
    /// The directory server's address.
    pub server: SocketAddr,
    /// A request unanswered for this long has failed.
    pub request_timeout: Duration,
    /// First retry of a request after this long; doubles each retry.
    pub request_retry: Duration,
    /// Retries of a request are never further apart than this. Requests are
    /// small and rare; with the default 10 s deadline, a 0.5 s cap gives about
    /// 20 tries, so a request fails only when some 20 round trips in a row
    /// are lost.
    pub max_request_retry: Duration,
    /// How often to refresh the session at the server.
    pub keepalive_interval: Duration,
    /// A peer that acknowledges nothing new for this long while fragments
    /// to it are outstanding fails every message waiting for it (it is
    /// looked up again at half this time, in case it moved).
    pub message_timeout: Duration,
    /// Retransmission timeout before any round trip is measured.
    pub initial_rto: Duration,
    /// The retransmission timeout never goes below this.
    pub min_rto: Duration,
    /// Nor above this, backoff included.
    pub max_rto: Duration,
    /// Sequence numbers in flight to one peer at most, counted from the
    /// oldest unacknowledged fragment (keep it within the receivers'
    /// `receive_window`).
    pub window: usize,
    /// Fragments a receiver buffers ahead of the next one it expects.
    pub receive_window: u32,
    /// Sends waiting for delivery, across all peers, at most.
    pub max_queued_messages: usize,
    /// Longest message text, in bytes.
    pub max_message_len: usize,
    /// Incoming streams tracked at once; the least recently active goes first.
    pub max_receive_streams: usize,
    /// An incoming stream silent for this long is forgotten, with any
    /// partial message in it.
    pub stream_idle_timeout: Duration,
    /// Directory answers cached at most this long.
    pub lookup_cache_ttl: Duration,
    /// Directory answers cached at most this many.
    pub max_cached_lookups: usize,
    /// Lookups under way at once at most; a message from a new sender that
    /// would need one more is dropped (its sender retransmits).
    pub max_pending_lookups: usize,
    /// For this long after signing in again (the server had restarted or
    /// forgotten us), a directory answer of "nobody" is asked again rather
    /// than believed: other clients are still signing in again too. The
    /// default covers a peer's keep-alive interval and a sign-in's retries.
    pub settle_grace: Duration,
}

impl ClientConfig {
    /// The defaults, for `name` signing in at `server`.
    pub fn new(name: impl Into<String>, server: SocketAddr) -> Self {
        ClientConfig {
            name: name.into(),
            server,
            request_timeout: Duration::from_secs(10),
            request_retry: Duration::from_millis(250),
            max_request_retry: Duration::from_millis(500),
            keepalive_interval: Duration::from_secs(3),
            message_timeout: Duration::from_secs(10),
            initial_rto: Duration::from_millis(300),
            min_rto: Duration::from_millis(100),
            max_rto: Duration::from_secs(1),
            window: 32,
            receive_window: 128,
            max_queued_messages: 10_000,
            max_message_len: 64 * 1024,
            max_receive_streams: 256,
            stream_idle_timeout: Duration::from_secs(120),
            lookup_cache_ttl: Duration::from_secs(300),
            max_cached_lookups: 4096,
            max_pending_lookups: 32,
            settle_grace: Duration::from_secs(5),
        }
    }
}

/// What the user should know of.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The first sign-in was accepted.
    SignedIn,
    /// The first sign-in was refused or not answered; the client is closed.
    SignInFailed(SignInError),
    /// Signed in again by itself, after the server forgot the session.
    Reconnected,
    /// The server stopped answering; the client keeps trying to sign in again.
    ServerLost,
    /// Every page of the user list, gathered.
    UserList {
        /// The [`ClientState::list`] this answers.
        id: CommandId,
        /// The signed-in names, in the server's (case-insensitive) order.
        names: Vec<String>,
    },
    /// A list request could not be answered.
    ListFailed {
        /// The [`ClientState::list`] this answers.
        id: CommandId,
        /// Why.
        reason: RequestError,
    },
    /// A message arrived, from a sender the directory vouches for. Each
    /// message comes exactly once, and a sender's messages in the order sent.
    MessageReceived {
        /// The sender's name.
        from: String,
        /// The sender's socket address, as the datagrams came from it.
        address: SocketAddr,
        /// The text; untrusted (see [`crate::text::escape`] before printing).
        text: String,
    },
    /// The peer acknowledged every fragment of a message.
    Delivered {
        /// The [`ClientState::send`] this answers.
        id: CommandId,
        /// The recipient's name.
        to: String,
    },
    /// A message could not be delivered.
    DeliveryFailed {
        /// The [`ClientState::send`] this answers.
        id: CommandId,
        /// The recipient's name.
        to: String,
        /// Why.
        reason: DeliveryFailure,
    },
    /// Datagrams claiming to come from `claimed` came from an address the
    /// directory does not give for that name. They were dropped.
    ForgedMessage {
        /// The name claimed.
        claimed: String,
        /// Where they really came from.
        address: SocketAddr,
    },
    /// After [`ClientState::sign_out`]: sending is finished and the server
    /// has let go of the name (or did not answer). The client is closed.
    SignedOut,
}

/// Why the first sign-in failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SignInError {
    /// A live client elsewhere holds the name.
    #[error("name {0} is in use")]
    NameInUse(String),
    /// A live client elsewhere holds a name that looks like this one
    /// (`Аlice` with a Cyrillic А while `Alice` is signed in).
    #[error("name {name} is in use (it looks like {holder})")]
    LooksLike {
        /// The name asked for.
        name: String,
        /// The signed-in name it looks like, as its holder spells it.
        holder: String,
    },
    /// The server does not accept the name.
    #[error("name {0} is not allowed")]
    InvalidName(String),
    /// The server has no room.
    #[error("the server is full")]
    ServerFull,
    /// No answer before the request timeout.
    #[error("the server did not answer")]
    NoAnswer,
}

/// Why a request to the server failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No answer before the request timeout.
    #[error("the server did not answer")]
    NoAnswer,
    /// The client had already signed out.
    #[error("signed out")]
    Closed,
}

/// Why a message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DeliveryFailure {
    /// Nobody of that name is signed in.
    #[error("no such user")]
    NoSuchUser,
    /// The recipient did not acknowledge it in time, even at a fresh address.
    #[error("no answer from the recipient")]
    NoAnswer,
    /// The server did not answer the lookup.
    #[error("the server did not answer")]
    ServerUnreachable,
}

/// Why [`ClientState::send`] refused a message outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SendError {
    /// The recipient's name is not a valid name.
    #[error("invalid recipient: {0}")]
    InvalidName(#[from] NameError),
    /// The text is longer than [`ClientConfig::max_message_len`].
    #[error("message of {len} bytes is longer than the {max} allowed")]
    TooLong {
        /// The text's length.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// [`ClientConfig::max_queued_messages`] sends are already waiting.
    #[error("too many messages waiting to be delivered")]
    QueueFull,
    /// The client has signed out or failed to sign in.
    #[error("not signed in")]
    Closed,
}

/// Counters of what the client did with what it got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Datagrams handed to `handle_datagram`.
    pub received: u64,
    /// Did not decode.
    pub malformed: u64,
    /// Decoded, but from the wrong party, for no outstanding request, or
    /// otherwise out of place.
    pub unexpected: u64,
    /// Message datagrams whose sender the directory does not vouch for.
    pub forged: u64,
    /// Message fragments received again (acknowledged again, not shown).
    pub duplicates: u64,
    /// Message fragments beyond the receive window, or over a bound, dropped.
    pub dropped: u64,
    /// Requests sent again for want of an answer.
    pub request_retries: u64,
    /// Message fragments sent again for want of an acknowledgement.
    pub retransmissions: u64,
    /// Message fragments sent, first transmissions only.
    pub fragments_sent: u64,
    /// Messages delivered (acknowledged whole).
    pub delivered: u64,
    /// Messages shown to the user.
    pub messages_received: u64,
    /// Lookups sent to the server.
    pub lookups: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Signing in; `again` after the server forgot us.
    SigningIn {
        again: bool,
    },
    SignedIn,
    /// Sign-out sent; waiting for its acknowledgement.
    SigningOut,
    Closed,
}

#[derive(Debug)]
struct OutMessage {
    id: CommandId,
    to: String,
    text: Bytes,
    fragments: u16,
    /// Fragments given a sequence number so far.
    started: u16,
    acked: u16,
}

#[derive(Debug)]
struct InFlight {
    message: CommandId,
    payload: Bytes,
    first_sent: Instant,
    next_send: Instant,
    rto: Duration,
    retransmitted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Waiting for the directory.
    Unknown,
    /// Sending to this address.
    At(SocketAddr),
}

/// Everything going to one peer.
#[derive(Debug)]
struct Peer {
    name: String,
    route: Route,
    /// Looked up again already in this stretch of silence.
    relooked: bool,
    stream: u64,
    next_seq: u32,
    /// Messages not fully acknowledged, oldest first; only a prefix has fragments in flight.
    messages: VecDeque<OutMessage>,
    /// Fragments sent and not yet acknowledged, by seq.
    in_flight: BTreeMap<u32, InFlight>,
    /// When the peer last acknowledged something new.
    last_progress: Option<Instant>,
    rtt: Rtt,
}

impl Peer {
    /// Sequence numbers from the oldest unacknowledged fragment to the next
    /// one to send: what the receiver may have to buffer. The window bounds
    /// this, not the count of unacknowledged fragments, so one fragment lost
    /// again and again cannot let the sender run past the receiver's window.
    fn span(&self) -> usize {
        let oldest = self
            .in_flight
            .keys()
            .next()
            .copied()
            .unwrap_or(self.next_seq);
        usize::try_from(self.next_seq.wrapping_sub(oldest)).unwrap_or(usize::MAX)
    }

    /// Since when the peer has been silent about what we sent it: the first
    /// send of the oldest unacknowledged fragment, or the last acknowledgement
    /// if later. `None` when nothing is unacknowledged. A peer that keeps
    /// acknowledging is alive, however unlucky one fragment is.
    fn silent_since(&self) -> Option<Instant> {
        let oldest = self.in_flight.values().map(|f| f.first_sent).min()?;
        Some(self.last_progress.map_or(oldest, |p| p.max(oldest)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trust {
    /// Waiting for the directory to vouch for the sender.
    Unverified,
    /// The directory knew nobody of the claimed name (the sender may not
    /// have signed in again yet after a server restart): drop until this
    /// time, then ask again.
    Unknown {
        recheck: Instant,
    },
    Verified,
    /// The directory gives the claimed name another address: dropped for good.
    Forged,
}

/// One incoming stream: a sender at an address, one stream id.
#[derive(Debug)]
struct InStream {
    from: String,
    trust: Trust,
    next_seq: u32,
    /// Fragments ahead of `next_seq`: (fragment, fragments, body).
    ahead: BTreeMap<u32, (u16, u16, Bytes)>,
    partial: Vec<u8>,
    /// Index the next fragment of the partial message must have.
    partial_next: u16,
    last_active: Instant,
}

/// The chat client's state machine. See the [module docs](self). `Debug`
/// shows its state in outline, never its session token or cookie.
pub struct ClientState {
    config: ClientConfig,
    rng: Rng,
    phase: Phase,
    closing: bool,
    token: Option<Bytes>,
    cookie: Bytes,
    next_command: u64,
    requests: Requests,
    /// The lookup request under way for each folded name.
    lookups: BTreeMap<String, u32>,
    /// Names gathered so far by each list command.
    lists: BTreeMap<CommandId, Vec<String>>,
    cache: LookupCache,
    peers: BTreeMap<String, Peer>,
    /// Outgoing stream id to the folded name of its peer.
    stream_owner: BTreeMap<u64, String>,
    streams: BTreeMap<(SocketAddr, u64), InStream>,
    queued: usize,
    known: Vec<String>,
    next_keepalive: Option<Instant>,
    /// Until then the directory may still be filling up again (see
    /// [`ClientConfig::settle_grace`]).
    settling_until: Option<Instant>,
    next_housekeeping: Instant,
    out: VecDeque<Transmit>,
    events: VecDeque<ClientEvent>,
    buf: BytesMut,
    stats: ClientStats,
}

impl fmt::Debug for ClientState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientState")
            .field("name", &self.config.name)
            .field("server", &self.config.server)
            .field("phase", &self.phase)
            .field("closing", &self.closing)
            .field("token", &self.token.as_ref().map(|_| ".."))
            .field("peers", &self.peers.len())
            .field("streams", &self.streams.len())
            .field("pending", &self.queued)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl ClientState {
    /// A client that starts signing in as `config.name` at once. `seed` makes
    /// its request ids and stream ids; give it randomness from the operating
    /// system in real use, a fixed number in tests.
    /// The name is put in Unicode normal form C first (see [`name::normalize`]).
    pub fn new(mut config: ClientConfig, now: Instant, seed: u64) -> Result<Self, NameError> {
        if let Cow::Owned(nfc) = name::normalize(&config.name) {
            config.name = nfc;
        }
        name::validate(&config.name)?;
        let mut rng = Rng::from_seed(seed);
        let cache = LookupCache::new(config.lookup_cache_ttl, config.max_cached_lookups);
        let requests = Requests::new(
            rng.next_u32(),
            config.request_retry,
            config.max_request_retry,
            config.request_timeout,
        );
        let mut client = ClientState {
            next_housekeeping: now + Duration::from_secs(1),
            config,
            rng,
            phase: Phase::SigningIn { again: false },
            closing: false,
            token: None,
            cookie: Bytes::new(),
            next_command: 1,
            requests,
            lookups: BTreeMap::new(),
            lists: BTreeMap::new(),
            cache,
            peers: BTreeMap::new(),
            stream_owner: BTreeMap::new(),
            streams: BTreeMap::new(),
            queued: 0,
            known: Vec::new(),
            next_keepalive: None,
            settling_until: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
            buf: BytesMut::with_capacity(8 * MAX_DATAGRAM),
            stats: ClientStats::default(),
        };
        client.start_request(now, RequestKind::SignIn);
        Ok(client)
    }

    /// The name this client signs in as.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The directory server's address.
    pub fn server(&self) -> SocketAddr {
        self.config.server
    }

    /// Whether the server has accepted this client and not since forgotten it.
    pub fn is_signed_in(&self) -> bool {
        self.phase == Phase::SignedIn
    }

    /// Whether the client is finished: signed out, or sign-in failed. Nothing
    /// more happens; `poll_timeout` is `None`.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// What the client has counted so far.
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// The messages sent and not yet delivered or failed, as (recipient,
    /// how many), recipients in name order.
    pub fn pending(&self) -> Vec<(String, usize)> {
        self.peers
            .values()
            .filter(|p| !p.messages.is_empty())
            .map(|p| (p.name.clone(), p.messages.len()))
            .collect()
    }

    /// Names seen in the last user list and in conversations, for completion.
    pub fn known_users(&self) -> Vec<String> {
        let mut names = self.known.clone();
        names.extend(self.peers.values().map(|p| p.name.clone()));
        names.extend(self.streams.values().map(|s| s.from.clone()));
        names.sort_by_key(|n| name::fold(n));
        names.dedup_by(|a, b| name::same(a, b));
        names
    }

    /// Asks the server who is signed in. Answered by [`ClientEvent::UserList`]
    /// or [`ClientEvent::ListFailed`] with the returned id.
    pub fn list(&mut self, now: Instant) -> CommandId {
        let id = self.command_id();
        if self.phase == Phase::Closed || self.closing {
            self.events.push_back(ClientEvent::ListFailed {
                id,
                reason: RequestError::Closed,
            });
            return id;
        }
        self.lists.insert(id, Vec::new());
        self.start_request(now, RequestKind::List { id, cursor: 0 });
        id
    }

    /// Sends `text` to the user `to`. Answered by [`ClientEvent::Delivered`]
    /// or [`ClientEvent::DeliveryFailed`] with the returned id.
    /// `to` is put in Unicode normal form C first.
    pub fn send(&mut self, now: Instant, to: &str, text: &str) -> Result<CommandId, SendError> {
        let to = &*name::normalize(to);
        name::validate(to)?;
        if self.phase == Phase::Closed || self.closing {
            return Err(SendError::Closed);
        }
        if text.len() > self.config.max_message_len {
            return Err(SendError::TooLong {
                len: text.len(),
                max: self.config.max_message_len,
            });
        }
        if self.queued >= self.config.max_queued_messages {
            return Err(SendError::QueueFull);
        }
        let chunk = self.fragment_size();
        let fragments =
            u16::try_from(text.len().div_ceil(chunk).max(1)).map_err(|_| SendError::TooLong {
                len: text.len(),
                max: chunk * usize::from(u16::MAX),
            })?;
        let id = self.command_id();
        let key = name::fold(to);
        let stream = self.rng.next_u64();
        let peer = self.peers.entry(key.clone()).or_insert_with(|| Peer {
            name: to.to_owned(),
            route: Route::Unknown,
            relooked: false,
            stream,
            next_seq: 0,
            messages: VecDeque::new(),
            in_flight: BTreeMap::new(),
            last_progress: None,
            rtt: Rtt::default(),
        });
        peer.messages.push_back(OutMessage {
            id,
            to: to.to_owned(),
            text: Bytes::copy_from_slice(text.as_bytes()),
            fragments,
            started: 0,
            acked: 0,
        });
        self.queued += 1;
        self.stream_owner
            .insert(self.peers[&key].stream, key.clone());
        if self.peers[&key].route == Route::Unknown {
            match self.cache.get(now, &key) {
                Some(addr) => self.set_route(&key, addr),
                None => self.lookup(now, to),
            }
        }
        self.pump(now, &key);
        Ok(id)
    }

    /// Signs out once every message sent so far is delivered or has failed,
    /// and every list is answered. Ends with [`ClientEvent::SignedOut`].
    pub fn sign_out(&mut self, now: Instant) {
        if self.phase == Phase::Closed || self.closing {
            return;
        }
        self.closing = true;
        self.maybe_finish(now);
    }

    /// Takes one datagram from `from`. Bad input is counted and dropped.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.stats.received += 1;
        if self.phase == Phase::Closed {
            self.stats.unexpected += 1;
            return;
        }
        let packet = match Packet::decode(datagram) {
            Ok(p) => p,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        match packet {
            Packet::Message {
                stream,
                seq,
                fragment,
                fragments,
                from: name,
                body,
            } => self.on_message(now, from, stream, seq, fragment, fragments, name, body),
            Packet::Ack { stream, seq } => self.on_ack(now, from, stream, seq),
            _ if from != self.config.server => self.stats.unexpected += 1,
            Packet::Retry { request, cookie } => {
                if self.requests.kind(request) == Some(&RequestKind::SignIn) {
                    self.cookie = Bytes::copy_from_slice(cookie);
                    self.requests.release_one(request, now);
                    self.flush_requests(now);
                }
            }
            Packet::SignInAccepted { request, token } => {
                if self.take_request(request, |k| matches!(k, RequestKind::SignIn)) {
                    self.on_signed_in(now, Bytes::copy_from_slice(token));
                }
            }
            Packet::SignInRefused {
                request,
                reason,
                holder,
            } => {
                if self.take_request(request, |k| matches!(k, RequestKind::SignIn)) {
                    let name = self.config.name.clone();
                    let error = match reason {
                        // Only a valid name is shown: it cannot hold anything
                        // that would upset a terminal.
                        RefuseReason::NameInUse
                            if name::validate(holder).is_ok()
                                && holder.to_lowercase() != name.to_lowercase() =>
                        {
                            SignInError::LooksLike {
                                name,
                                holder: holder.to_owned(),
                            }
                        }
                        RefuseReason::NameInUse => SignInError::NameInUse(name),
                        RefuseReason::InvalidName => SignInError::InvalidName(name),
                        RefuseReason::ServerFull => SignInError::ServerFull,
                    };
                    self.fail_sign_in(now, error);
                }
            }
            Packet::ListReply {
                request,
                more,
                cursor,
                names,
            } => {
                let Some(RequestKind::List { id, .. }) = self
                    .requests
                    .take_if(request, |k| matches!(k, RequestKind::List { .. }))
                else {
                    self.stats.unexpected += 1;
                    return;
                };
                let gathered = self.lists.entry(id).or_default();
                gathered.extend(names.iter().map(str::to_owned));
                if more {
                    self.start_request(now, RequestKind::List { id, cursor });
                } else {
                    // Pages come in the server's order, and a user who signed
                    // out and in again during the walk can be on two pages.
                    let mut names = self.lists.remove(&id).unwrap_or_default();
                    names.sort_by_cached_key(|n| name::fold(n));
                    names.dedup_by(|a, b| name::same(a, b));
                    self.known = names.clone();
                    self.events.push_back(ClientEvent::UserList { id, names });
                    self.maybe_finish(now);
                }
            }
            Packet::LookupReply {
                request,
                name,
                address,
            } => {
                let Some(RequestKind::Lookup { name: asked }) = self
                    .requests
                    .take_if(request, |k| matches!(k, RequestKind::Lookup { .. }))
                else {
                    self.stats.unexpected += 1;
                    return;
                };
                if !name::same(&asked, name) {
                    self.stats.unexpected += 1;
                }
                self.on_lookup(now, &asked, Some(address));
            }
            Packet::KeepAliveAck { request } => {
                self.take_request(request, |k| matches!(k, RequestKind::KeepAlive));
            }
            Packet::Probe { request } => {
                if let (Phase::SignedIn, Some(token)) = (self.phase, self.token.clone()) {
                    let reply = Packet::KeepAlive {
                        request,
                        token: &token,
                    };
                    self.transmit(self.config.server, &reply);
                }
            }
            Packet::SignOutAck { request } => {
                if self.take_request(request, |k| matches!(k, RequestKind::SignOut)) {
                    self.close_signed_out();
                }
            }
            Packet::Error { request, code } => {
                if self.requests.kind(request).is_none() {
                    self.stats.unexpected += 1;
                    return;
                }
                match code {
                    ErrorCode::UnknownSession => self.on_unknown_session(now, request),
                    ErrorCode::BadRequest => self.fail_request(now, request),
                }
            }
            Packet::SignIn { .. }
            | Packet::ListRequest { .. }
            | Packet::LookupRequest { .. }
            | Packet::KeepAlive { .. }
            | Packet::SignOut { .. } => self.stats.unexpected += 1,
        }
    }

    /// Retries requests, retransmits fragments, sends keep-alives and expires
    /// idle state whose time has come. Early or repeated calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Closed {
            return;
        }
        for id in self.requests.expired(now) {
            self.fail_request(now, id);
        }
        if self.phase == Phase::Closed {
            return;
        }
        self.flush_requests(now);
        if let Some(at) = self.next_keepalive
            && now >= at
            && self.phase == Phase::SignedIn
        {
            self.next_keepalive = Some(now + self.config.keepalive_interval);
            if !self.requests.any(|k| *k == RequestKind::KeepAlive) {
                self.start_request(now, RequestKind::KeepAlive);
            }
        }
        let keys: Vec<String> = self.peers.keys().cloned().collect();
        for key in keys {
            self.peer_timeout(now, &key);
        }
        if now >= self.next_housekeeping {
            self.next_housekeeping = now + Duration::from_secs(1);
            let idle = self.config.stream_idle_timeout;
            self.streams
                .retain(|_, s| now.saturating_duration_since(s.last_active) < idle);
            self.cache.expire(now);
        }
    }

    /// The next datagram to send, oldest first.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// When [`ClientState::handle_timeout`] should next be called; `None`
    /// once closed. After `handle_timeout(now)` it is later than `now`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Closed {
            return None;
        }
        let sendable = self.can_send_requests();
        let requests = self
            .requests
            .next_timeout(|k| sendable || *k == RequestKind::SignIn);
        let peers = self.peers.values().flat_map(|p| {
            let retransmit = p.in_flight.values().map(|f| f.next_send).min();
            let deadlines = p.silent_since().map(|t| {
                if p.relooked {
                    t + self.config.message_timeout
                } else {
                    t + self.config.message_timeout / 2
                }
            });
            retransmit.into_iter().chain(deadlines)
        });
        let housekeeping =
            (!self.streams.is_empty() || !self.cache.is_empty()).then_some(self.next_housekeeping);
        requests
            .into_iter()
            .chain(peers)
            .chain(
                self.next_keepalive
                    .filter(|_| self.phase == Phase::SignedIn),
            )
            .chain(housekeeping)
            .min()
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    // ---- requests -------------------------------------------------------

    fn command_id(&mut self) -> CommandId {
        let id = CommandId(self.next_command);
        self.next_command += 1;
        id
    }

    fn can_send_requests(&self) -> bool {
        self.token.is_some() && matches!(self.phase, Phase::SignedIn | Phase::SigningOut)
    }

    fn start_request(&mut self, now: Instant, kind: RequestKind) -> u32 {
        let id = self.requests.start(now, kind);
        self.flush_requests(now);
        id
    }

    /// Sends every request whose time has come (that can be sent now).
    fn flush_requests(&mut self, now: Instant) {
        let sendable = self.can_send_requests();
        for due in self
            .requests
            .due(now, |k| sendable || *k == RequestKind::SignIn)
        {
            if due.retry {
                self.stats.request_retries += 1;
            }
            self.send_request(due.id);
        }
    }

    fn send_request(&mut self, id: u32) {
        let Some(kind) = self.requests.kind(id) else {
            return;
        };
        let token = self.token.clone().unwrap_or_default();
        let server = self.config.server;
        self.buf.clear();
        let packet = match kind {
            RequestKind::SignIn => Packet::SignIn {
                request: id,
                name: &self.config.name,
                cookie: &self.cookie,
            },
            RequestKind::List { cursor, .. } => Packet::ListRequest {
                request: id,
                token: &token,
                cursor: *cursor,
            },
            RequestKind::Lookup { name } => Packet::LookupRequest {
                request: id,
                token: &token,
                name,
            },
            RequestKind::KeepAlive => Packet::KeepAlive {
                request: id,
                token: &token,
            },
            RequestKind::SignOut => Packet::SignOut {
                request: id,
                token: &token,
            },
        };
        if packet.encode(&mut self.buf).is_ok() {
            let payload = self.buf.split().freeze();
            self.out.push_back(Transmit {
                destination: server,
                payload,
            });
        }
    }

    /// Ends request `id` if it is of this kind; counts it as unexpected if not.
    fn take_request(&mut self, id: u32, kind: impl Fn(&RequestKind) -> bool) -> bool {
        let taken = self.requests.take_if(id, kind).is_some();
        if !taken {
            self.stats.unexpected += 1;
        }
        taken
    }

    /// Request `id` is over: no answer in time, or an answer that says it
    /// cannot be served.
    fn fail_request(&mut self, now: Instant, id: u32) {
        let Some(kind) = self.requests.remove(id) else {
            return;
        };
        match kind {
            RequestKind::SignIn => self.fail_sign_in(now, SignInError::NoAnswer),
            RequestKind::List { id, .. } => {
                self.lists.remove(&id);
                self.events.push_back(ClientEvent::ListFailed {
                    id,
                    reason: RequestError::NoAnswer,
                });
                self.maybe_finish(now);
            }
            RequestKind::Lookup { name } => self.on_lookup(now, &name, None),
            RequestKind::KeepAlive => {
                if self.phase == Phase::SignedIn {
                    self.events.push_back(ClientEvent::ServerLost);
                    self.sign_in_again(now);
                }
            }
            RequestKind::SignOut => self.close_signed_out(),
        }
    }

    fn fail_sign_in(&mut self, now: Instant, error: SignInError) {
        match self.phase {
            Phase::SigningIn { again: false } => {
                self.events.push_back(ClientEvent::SignInFailed(error));
                self.close();
            }
            Phase::SigningIn { again: true } if error == SignInError::NoAnswer => {
                // The server is still away: keep trying, quietly.
                self.start_request(now, RequestKind::SignIn);
            }
            _ => {
                self.events.push_back(ClientEvent::SignInFailed(error));
                self.close();
            }
        }
    }

    fn on_signed_in(&mut self, now: Instant, token: Bytes) {
        self.token = Some(token);
        let again = matches!(self.phase, Phase::SigningIn { again: true });
        self.phase = Phase::SignedIn;
        self.next_keepalive = Some(now + self.config.keepalive_interval);
        self.events.push_back(if again {
            self.settling_until = Some(now + self.config.settle_grace);
            ClientEvent::Reconnected
        } else {
            ClientEvent::SignedIn
        });
        // Requests held back while signing in go out now.
        self.requests.release(now);
        self.flush_requests(now);
        if self.closing {
            self.maybe_finish(now);
        }
    }

    /// The server does not know our token: it restarted or forgot us. The
    /// request stays pending and goes out again once signed in.
    fn on_unknown_session(&mut self, now: Instant, request: u32) {
        if self
            .requests
            .take_if(request, |k| *k == RequestKind::SignOut)
            .is_some()
        {
            self.close_signed_out();
            return;
        }
        self.requests
            .take_if(request, |k| *k == RequestKind::KeepAlive);
        if self.phase == Phase::SignedIn {
            self.sign_in_again(now);
        }
    }

    fn sign_in_again(&mut self, now: Instant) {
        self.token = None;
        self.phase = Phase::SigningIn { again: true };
        self.next_keepalive = None;
        if !self.requests.any(|k| *k == RequestKind::SignIn) {
            self.start_request(now, RequestKind::SignIn);
        }
    }

    fn close_signed_out(&mut self) {
        self.events.push_back(ClientEvent::SignedOut);
        self.close();
    }

    fn close(&mut self) {
        self.phase = Phase::Closed;
        self.requests.clear();
        self.next_keepalive = None;
    }

    /// When closing and nothing is left to finish, sends the sign-out.
    fn maybe_finish(&mut self, now: Instant) {
        if !self.closing || self.queued > 0 || !self.lists.is_empty() {
            return;
        }
        match self.phase {
            Phase::SignedIn => {
                self.phase = Phase::SigningOut;
                self.requests.cancel(|k| *k == RequestKind::KeepAlive);
                self.start_request(now, RequestKind::SignOut);
            }
            Phase::SigningIn { .. } => self.close_signed_out(),
            Phase::SigningOut | Phase::Closed => {}
        }
    }

    // ---- the directory --------------------------------------------------

    /// Asks the server again, `delay` from now, where `name` is.
    fn lookup_later(&mut self, now: Instant, name: &str, delay: Duration) {
        let key = name::fold(name);
        if self.lookups.contains_key(&key) {
            return;
        }
        self.stats.lookups += 1;
        let kind = RequestKind::Lookup {
            name: name.to_owned(),
        };
        let id = self.requests.start_delayed(now, delay, kind);
        self.lookups.insert(key, id);
    }

    /// Asks the server where `name` is, unless that is already being asked.
    fn lookup(&mut self, now: Instant, name: &str) {
        let key = name::fold(name);
        if self.lookups.contains_key(&key) {
            return;
        }
        self.stats.lookups += 1;
        let id = self.start_request(
            now,
            RequestKind::Lookup {
                name: name.to_owned(),
            },
        );
        self.lookups.insert(key, id);
    }

    /// A lookup of `name` finished: `None` when the server did not answer,
    /// `Some(address)` otherwise.
    fn on_lookup(&mut self, now: Instant, name: &str, answer: Option<Option<SocketAddr>>) {
        let key = name::fold(name);
        self.lookups.remove(&key);
        // Only "X is at A" is worth remembering: "nobody" may change any
        // moment, and a forged sender must not make a real user unreachable.
        if let Some(Some(address)) = answer {
            self.cache.remember(now, &key, address);
        } else {
            self.cache.forget(&key);
        }
        // Outgoing messages waiting for this name.
        if let Some(peer) = self.peers.get(&key) {
            let waiting = peer.route == Route::Unknown || peer.relooked;
            if waiting {
                match answer {
                    None if peer.route == Route::Unknown => {
                        self.fail_peer(now, &key, DeliveryFailure::ServerUnreachable)
                    }
                    None => {}
                    Some(None) if self.settling_until.is_some_and(|t| now < t) => {
                        // Right after a restart: the peer may not be back yet.
                        self.lookup_later(now, name, RECHECK_UNKNOWN_SENDER / 2);
                    }
                    Some(None) => self.fail_peer(now, &key, DeliveryFailure::NoSuchUser),
                    Some(Some(addr)) => {
                        self.set_route(&key, addr);
                        self.pump(now, &key);
                    }
                }
            }
        }
        // Incoming streams waiting to learn whether to trust their sender.
        if let Some(address) = answer {
            let waiting: Vec<(SocketAddr, u64)> = self
                .streams
                .iter()
                .filter(|(_, s)| {
                    matches!(s.trust, Trust::Unverified | Trust::Unknown { .. })
                        && name::fold(&s.from) == key
                })
                .map(|(k, _)| *k)
                .collect();
            for stream_key in waiting {
                self.verify(now, stream_key, address);
            }
        }
    }

    // ---- sending --------------------------------------------------------

    /// Text bytes per fragment: a full datagram less the header with our name.
    fn fragment_size(&self) -> usize {
        MAX_DATAGRAM - (1 + 8 + 4 + 2 + 2 + 1 + self.config.name.len() + 2)
    }

    /// Points the peer at `addr`. A new address gets a new stream, and every
    /// message not yet acknowledged whole starts again from its first fragment.
    fn set_route(&mut self, key: &str, addr: SocketAddr) {
        let new_stream = self.rng.next_u64();
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        if peer.route == Route::At(addr) {
            return;
        }
        let moved = peer.route != Route::Unknown || peer.next_seq > 0;
        peer.route = Route::At(addr);
        if moved {
            self.stream_owner.remove(&peer.stream);
            peer.stream = new_stream;
            peer.next_seq = 0;
            peer.in_flight.clear();
            peer.last_progress = None;
            peer.rtt = Rtt::default();
            for m in &mut peer.messages {
                m.started = 0;
                m.acked = 0;
            }
            self.stream_owner.insert(new_stream, key.to_owned());
        }
    }

    /// Starts as many fragments as the window allows.
    fn pump(&mut self, now: Instant, key: &str) {
        let fragment_size = self.fragment_size();
        let window = self.config.window;
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        let Route::At(addr) = peer.route else {
            return;
        };
        while peer.span() < window {
            let Some(m) = peer.messages.iter_mut().find(|m| m.started < m.fragments) else {
                break;
            };
            let index = m.started;
            m.started += 1;
            let start = usize::from(index) * fragment_size;
            let end = (start + fragment_size).min(m.text.len());
            let body = m.text.get(start..end).unwrap_or_default();
            let seq = peer.next_seq;
            peer.next_seq = peer.next_seq.wrapping_add(1);
            let packet = Packet::Message {
                stream: peer.stream,
                seq,
                fragment: index,
                fragments: m.fragments,
                from: &self.config.name,
                body,
            };
            self.buf.clear();
            if packet.encode(&mut self.buf).is_err() {
                break;
            }
            let payload = self.buf.split().freeze();
            let rto = peer.rtt.rto(
                self.config.initial_rto,
                self.config.min_rto,
                self.config.max_rto,
            );
            peer.in_flight.insert(
                seq,
                InFlight {
                    message: m.id,
                    payload: payload.clone(),
                    first_sent: now,
                    next_send: now + rto,
                    rto,
                    retransmitted: false,
                },
            );
            self.stats.fragments_sent += 1;
            self.out.push_back(Transmit {
                destination: addr,
                payload,
            });
        }
    }

    fn on_ack(&mut self, now: Instant, from: SocketAddr, stream: u64, seq: u32) {
        let Some(key) = self.stream_owner.get(&stream).cloned() else {
            self.stats.unexpected += 1;
            return;
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if peer.route != Route::At(from) || peer.stream != stream {
            self.stats.unexpected += 1;
            return;
        }
        let Some(f) = peer.in_flight.remove(&seq) else {
            return; // Acknowledged already.
        };
        if !f.retransmitted {
            peer.rtt.sample(now.saturating_duration_since(f.first_sent));
        }
        // Any answer shows the peer is alive where we think it is.
        peer.relooked = false;
        peer.last_progress = Some(now);
        let Some(i) = peer.messages.iter().position(|m| m.id == f.message) else {
            return;
        };
        peer.messages[i].acked += 1;
        let m = &peer.messages[i];
        if m.acked == m.fragments
            && let Some(m) = peer.messages.remove(i)
        {
            self.queued = self.queued.saturating_sub(1);
            self.stats.delivered += 1;
            self.events
                .push_back(ClientEvent::Delivered { id: m.id, to: m.to });
        }
        self.pump(now, &key);
        self.maybe_finish(now);
    }

    /// Retransmits, looks the peer up again, or gives up, as time requires.
    fn peer_timeout(&mut self, now: Instant, key: &str) {
        let timeout = self.config.message_timeout;
        let max_rto = self.config.max_rto;
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        let Route::At(addr) = peer.route else {
            return;
        };
        if let Some(since) = peer.silent_since() {
            let silent = now.saturating_duration_since(since);
            if silent >= timeout {
                self.fail_peer(now, key, DeliveryFailure::NoAnswer);
                return;
            }
            if silent >= timeout / 2 && !peer.relooked {
                // Silent for half the deadline: it may have moved. Ask once
                // (a lookup already under way serves as well).
                peer.relooked = true;
                let name = peer.name.clone();
                self.cache.forget(key);
                self.lookup(now, &name);
            }
        }
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        for f in peer.in_flight.values_mut() {
            if now >= f.next_send {
                f.retransmitted = true;
                f.rto = (f.rto * 2).min(max_rto);
                f.next_send = now + f.rto;
                self.stats.retransmissions += 1;
                self.out.push_back(Transmit {
                    destination: addr,
                    payload: f.payload.clone(),
                });
            }
        }
    }

    /// Fails every message waiting for this peer, and forgets its route so
    /// the next message starts afresh.
    fn fail_peer(&mut self, now: Instant, key: &str, reason: DeliveryFailure) {
        let Some(peer) = self.peers.remove(key) else {
            return;
        };
        self.stream_owner.remove(&peer.stream);
        if reason != DeliveryFailure::ServerUnreachable {
            self.cache.forget(key);
        }
        for m in peer.messages {
            self.queued = self.queued.saturating_sub(1);
            self.events.push_back(ClientEvent::DeliveryFailed {
                id: m.id,
                to: m.to,
                reason,
            });
        }
        self.maybe_finish(now);
    }

    // ---- receiving ------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    fn on_message(
        &mut self,
        now: Instant,
        from: SocketAddr,
        stream: u64,
        seq: u32,
        fragment: u16,
        fragments: u16,
        name: &str,
        body: &[u8],
    ) {
        let key = (from, stream);
        if !self.streams.contains_key(&key) {
            if name::validate(name).is_err() {
                self.stats.malformed += 1;
                return;
            }
            let folded = name::fold(name);
            if self.cache.get(now, &folded).is_none()
                && !self.lookups.contains_key(&folded)
                && self.lookups.len() >= self.config.max_pending_lookups
            {
                // Too many senders waiting to be vouched for (a flood of
                // forgeries?): drop; a real sender retransmits.
                self.stats.dropped += 1;
                return;
            }
            if self.streams.len() >= self.config.max_receive_streams {
                self.evict_stream();
            }
            self.streams.insert(
                key,
                InStream {
                    from: name.to_owned(),
                    trust: Trust::Unverified,
                    next_seq: 0,
                    ahead: BTreeMap::new(),
                    partial: Vec::new(),
                    partial_next: 0,
                    last_active: now,
                },
            );
            // Decide trust from the cache, or ask.
            match self.cache.get(now, &name::fold(name)) {
                Some(addr) if addr == from => self.set_trust(key, Trust::Verified),
                _ => self.lookup(now, name),
            }
        }
        let receive_window = self.config.receive_window;
        let Some(s) = self.streams.get_mut(&key) else {
            return;
        };
        if !name::same(&s.from, name) {
            self.stats.malformed += 1;
            return;
        }
        s.last_active = now;
        match s.trust {
            Trust::Forged => {
                self.stats.forged += 1;
                return;
            }
            Trust::Unknown { recheck } if now < recheck => {
                self.stats.forged += 1;
                return;
            }
            Trust::Unknown { .. } => {
                s.trust = Trust::Unverified;
                let claimed = s.from.clone();
                self.lookup(now, &claimed);
            }
            Trust::Unverified => {
                // The last lookup may have gone unanswered: ask again.
                let claimed = s.from.clone();
                self.lookup(now, &claimed);
            }
            Trust::Verified => {}
        }
        let Some(s) = self.streams.get_mut(&key) else {
            return;
        };
        let offset = seq.wrapping_sub(s.next_seq);
        if offset >= u32::MAX / 2 {
            // Behind the window: a duplicate of something delivered.
            self.stats.duplicates += 1;
            if s.trust == Trust::Verified {
                self.transmit(from, &Packet::Ack { stream, seq });
            }
            return;
        }
        let full = s.trust != Trust::Verified
            && s.ahead.len() >= UNVERIFIED_BUFFER
            && !s.ahead.contains_key(&seq);
        if offset >= receive_window || full {
            self.stats.dropped += 1;
            return;
        }
        match s.ahead.entry(seq) {
            Entry::Occupied(_) => self.stats.duplicates += 1,
            Entry::Vacant(slot) => {
                // The one copy of a fragment's text: only what is kept.
                slot.insert((fragment, fragments, Bytes::copy_from_slice(body)));
            }
        }
        if s.trust == Trust::Verified {
            self.transmit(from, &Packet::Ack { stream, seq });
            self.deliver(key);
        }
    }

    fn set_trust(&mut self, key: (SocketAddr, u64), trust: Trust) {
        if let Some(s) = self.streams.get_mut(&key) {
            s.trust = trust;
        }
    }

    /// The directory answered for the sender of stream `key`: the same
    /// address vouches for it; another address proves a forgery; nobody of
    /// that name leaves it in doubt, to be asked again a second later.
    fn verify(&mut self, now: Instant, key: (SocketAddr, u64), address: Option<SocketAddr>) {
        let Some(s) = self.streams.get_mut(&key) else {
            return;
        };
        if address == Some(key.0) {
            s.trust = Trust::Verified;
            let seqs: Vec<u32> = s.ahead.keys().copied().collect();
            for seq in seqs {
                self.transmit(key.0, &Packet::Ack { stream: key.1, seq });
            }
            self.deliver(key);
        } else {
            let first_doubt = s.trust == Trust::Unverified;
            s.trust = match address {
                Some(_) => Trust::Forged,
                None => Trust::Unknown {
                    recheck: now + RECHECK_UNKNOWN_SENDER,
                },
            };
            s.ahead.clear();
            s.partial.clear();
            s.partial_next = 0;
            let claimed = s.from.clone();
            self.stats.forged += 1;
            if first_doubt {
                self.events.push_back(ClientEvent::ForgedMessage {
                    claimed,
                    address: key.0,
                });
            }
        }
    }

    /// Moves in-order fragments of stream `key` into messages.
    fn deliver(&mut self, key: (SocketAddr, u64)) {
        let max_len = self.config.max_message_len;
        let Some(s) = self.streams.get_mut(&key) else {
            return;
        };
        while let Some((fragment, fragments, body)) = s.ahead.remove(&s.next_seq) {
            s.next_seq = s.next_seq.wrapping_add(1);
            if fragment != s.partial_next {
                // Out of step with the message being built: start over from
                // this fragment if it begins a message, else drop it.
                self.stats.malformed += 1;
                s.partial.clear();
                s.partial_next = 0;
                if fragment != 0 {
                    continue;
                }
            }
            if s.partial.len() + body.len() > max_len {
                self.stats.dropped += 1;
                s.partial.clear();
                s.partial_next = 0;
                continue;
            }
            s.partial.extend_from_slice(&body);
            s.partial_next = fragment + 1;
            if s.partial_next == fragments {
                let bytes = std::mem::take(&mut s.partial);
                s.partial_next = 0;
                let text = match String::from_utf8(bytes) {
                    Ok(t) => t,
                    Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                };
                self.stats.messages_received += 1;
                self.events.push_back(ClientEvent::MessageReceived {
                    from: s.from.clone(),
                    address: key.0,
                    text,
                });
            }
        }
    }

    fn evict_stream(&mut self) {
        if let Some(oldest) = self
            .streams
            .iter()
            .min_by_key(|(_, s)| s.last_active)
            .map(|(k, _)| *k)
        {
            self.streams.remove(&oldest);
        }
    }

    fn transmit(&mut self, destination: SocketAddr, packet: &Packet<'_>) {
        self.buf.clear();
        if packet.encode(&mut self.buf).is_ok() {
            let payload = self.buf.split().freeze();
            self.out.push_back(Transmit {
                destination,
                payload,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ServerConfig, ServerState};

    const SERVER: &str = "127.0.0.1:9000";

    /// A server and clients on a perfect network, delivering in order at once.
    struct Net {
        now: Instant,
        server: ServerState,
        clients: Vec<(SocketAddr, ClientState)>,
        /// Datagrams seen, for assertions: (from, to, bytes).
        log: Vec<(SocketAddr, SocketAddr, Bytes)>,
    }

    impl Net {
        fn new(names: &[&str]) -> Net {
            let now = Instant::now();
            let server_addr: SocketAddr = SERVER.parse().unwrap();
            let clients = names
                .iter()
                .zip(5001u16..)
                .map(|(n, port)| {
                    let config = ClientConfig::new(*n, server_addr);
                    let addr = SocketAddr::from(([127, 0, 0, 1], port));
                    (
                        addr,
                        ClientState::new(config, now, u64::from(port)).unwrap(),
                    )
                })
                .collect();
            let mut net = Net {
                now,
                server: ServerState::new(ServerConfig::with_secret([3; 16]), now),
                clients,
                log: Vec::new(),
            };
            net.pump();
            net
        }

        fn addr(&self, i: usize) -> SocketAddr {
            self.clients[i].0
        }

        fn pump(&mut self) {
            let server_addr: SocketAddr = SERVER.parse().unwrap();
            loop {
                let mut queue = Vec::new();
                for (addr, c) in &mut self.clients {
                    while let Some(t) = c.poll_transmit() {
                        queue.push((*addr, t));
                    }
                }
                while let Some(t) = self.server.poll_transmit() {
                    queue.push((server_addr, t));
                }
                if queue.is_empty() {
                    break;
                }
                for (from, t) in queue {
                    self.deliver(from, t.destination, t.payload);
                }
            }
        }

        fn deliver(&mut self, from: SocketAddr, to: SocketAddr, payload: Bytes) {
            self.log.push((from, to, payload.clone()));
            if to == SERVER.parse().unwrap() {
                self.server.handle_datagram(self.now, from, &payload);
            } else if let Some((_, c)) = self.clients.iter_mut().find(|(a, _)| *a == to) {
                c.handle_datagram(self.now, from, &payload);
            }
        }

        fn events(&mut self, i: usize) -> Vec<ClientEvent> {
            std::iter::from_fn(|| self.clients[i].1.poll_event()).collect()
        }
    }

    fn received(events: &[ClientEvent]) -> Vec<&str> {
        events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::MessageReceived { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Mallory sends client `to` a one-fragment message claiming to be from
    /// `claimed`; returns Mallory's address.
    fn forge(net: &mut Net, to: usize, claimed: &str, text: &str) -> SocketAddr {
        let mallory: SocketAddr = "127.0.0.1:6666".parse().unwrap();
        let forged = Packet::Message {
            stream: 1,
            seq: 0,
            fragment: 0,
            fragments: 1,
            from: claimed,
            body: text.as_bytes(),
        }
        .to_bytes()
        .unwrap();
        let target = net.addr(to);
        net.deliver(mallory, target, forged);
        net.pump();
        mallory
    }

    #[test]
    fn long_message_is_split_and_reassembled() {
        let mut net = Net::new(&["Alice", "Bob"]);
        // Multi-byte characters so fragments cut through them.
        let text: String = "Zoë 名前 🎉 ".repeat(3800);
        assert!(text.len() > 60_000 && text.len() <= 64 * 1024);
        let id = net.clients[0].1.send(net.now, "Bob", &text).unwrap();
        net.pump();
        let bob = net.events(1);
        assert_eq!(received(&bob), vec![text.as_str()]);
        assert!(net.events(0).contains(&ClientEvent::Delivered {
            id,
            to: "Bob".into()
        }));
        assert!(net.log.iter().all(|(_, _, p)| p.len() <= MAX_DATAGRAM));
        let fragments = net
            .log
            .iter()
            .filter(|(_, _, p)| p.first() == Some(&0x10))
            .count();
        assert_eq!(
            fragments,
            text.len().div_ceil(net.clients[0].1.fragment_size())
        );
    }

    #[test]
    fn too_long_message_is_refused() {
        let mut net = Net::new(&["Alice"]);
        let text = "x".repeat(64 * 1024 + 1);
        assert_eq!(
            net.clients[0].1.send(net.now, "Bob", &text),
            Err(SendError::TooLong {
                len: 64 * 1024 + 1,
                max: 64 * 1024
            })
        );
    }

    /// What a refusal says of the holder: its name when it only looks like
    /// ours, nothing when it is ours in another case or not a valid name
    /// (a hostile server must not put escape sequences on our terminal).
    #[test]
    fn a_refusal_names_the_holder_only_when_it_is_a_valid_look_alike() {
        let server: SocketAddr = SERVER.parse().unwrap();
        for (holder, expected) in [
            (
                "Alice",
                SignInError::LooksLike {
                    name: "\u{410}lice".into(),
                    holder: "Alice".into(),
                },
            ),
            ("\u{410}LICE", SignInError::NameInUse("\u{410}lice".into())),
            ("\u{1b}[2J", SignInError::NameInUse("\u{410}lice".into())),
            ("", SignInError::NameInUse("\u{410}lice".into())),
        ] {
            let now = Instant::now();
            let config = ClientConfig::new("\u{410}lice", server);
            let mut c = ClientState::new(config, now, 1).unwrap();
            let sign_in = c.poll_transmit().unwrap();
            let Ok(Packet::SignIn { request, .. }) = Packet::decode(&sign_in.payload) else {
                panic!("expected a SignIn");
            };
            let refusal = Packet::SignInRefused {
                request,
                reason: RefuseReason::NameInUse,
                holder,
            };
            c.handle_datagram(now, server, &refusal.to_bytes().unwrap());
            let events: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
            assert_eq!(events, [ClientEvent::SignInFailed(expected)], "{holder:?}");
        }
    }

    #[test]
    fn duplicate_fragment_is_acked_again_and_shown_once() {
        let mut net = Net::new(&["Alice", "Bob"]);
        net.clients[0].1.send(net.now, "Bob", "once").unwrap();
        net.pump();
        let (alice, bob) = (net.addr(0), net.addr(1));
        let message = net
            .log
            .iter()
            .find(|(f, t, p)| *f == alice && *t == bob && p.first() == Some(&0x10))
            .map(|(_, _, p)| p.clone())
            .unwrap();
        let acks_before = net.log.iter().filter(|(f, _, _)| *f == bob).count();
        net.deliver(alice, bob, message);
        net.pump();
        assert_eq!(received(&net.events(1)), vec!["once"]);
        assert_eq!(net.clients[1].1.stats().duplicates, 1);
        let acks_after = net.log.iter().filter(|(f, _, _)| *f == bob).count();
        assert_eq!(
            acks_after,
            acks_before + 1,
            "the duplicate is acknowledged again"
        );
    }

    #[test]
    fn message_from_wrong_address_is_reported_forged() {
        let mut net = Net::new(&["Alice", "Bob"]);
        let mallory = forge(&mut net, 1, "Alice", "send me your password");
        let events = net.events(1);
        assert!(received(&events).is_empty());
        assert!(events.contains(&ClientEvent::ForgedMessage {
            claimed: "Alice".into(),
            address: mallory
        }));
        assert!(
            !net.log.iter().any(|(_, t, _)| *t == mallory),
            "nothing goes back to the forger"
        );
    }

    #[test]
    fn an_unvouched_stream_buffers_at_most_a_window() {
        let mut net = Net::new(&["Alice", "Bob"]);
        // The server is gone: Bob can never vouch for "Mallory".
        net.server = ServerState::new(ServerConfig::with_secret([4; 16]), net.now);
        let mallory: SocketAddr = "127.0.0.1:6666".parse().unwrap();
        for seq in 0..100 {
            let fragment = Packet::Message {
                stream: 9,
                seq,
                fragment: 0,
                fragments: 1,
                from: "Mallory",
                body: &[b'x'; 1000],
            };
            let bob = &mut net.clients[1].1;
            bob.handle_datagram(net.now, mallory, &fragment.to_bytes().unwrap());
        }
        let bob = &net.clients[1].1;
        let held: usize = bob.streams.values().map(|s| s.ahead.len()).sum();
        assert_eq!(held, UNVERIFIED_BUFFER);
        assert_eq!(bob.stats().dropped, 100 - UNVERIFIED_BUFFER as u64);
    }

    #[test]
    fn a_forged_sender_does_not_poison_later_sends() {
        // Bob gets a forgery claiming to be from Carole before Carole signs in:
        // the directory says "nobody". Once Carole is in, Bob can reach her.
        let mut net = Net::new(&["Alice", "Bob"]);
        forge(&mut net, 1, "Carole", "hi");
        let carole_addr: SocketAddr = "127.0.0.1:5003".parse().unwrap();
        let config = ClientConfig::new("Carole", SERVER.parse().unwrap());
        let carole = ClientState::new(config, net.now, 5003).unwrap();
        net.clients.push((carole_addr, carole));
        net.pump();
        let id = net.clients[1].1.send(net.now, "Carole", "real").unwrap();
        net.pump();
        assert!(net.events(1).contains(&ClientEvent::Delivered {
            id,
            to: "Carole".into()
        }));
        assert_eq!(received(&net.events(2)), vec!["real"]);
    }

    #[test]
    fn send_to_nobody_fails_with_no_such_user() {
        let mut net = Net::new(&["Alice"]);
        let id = net.clients[0].1.send(net.now, "Nobody", "hi").unwrap();
        net.pump();
        assert!(net.events(0).contains(&ClientEvent::DeliveryFailed {
            id,
            to: "Nobody".into(),
            reason: DeliveryFailure::NoSuchUser
        }));
    }

    #[test]
    fn sign_out_waits_for_delivery() {
        let mut net = Net::new(&["Alice", "Bob"]);
        let now = net.now;
        let id = net.clients[0].1.send(now, "Bob", "last words").unwrap();
        net.clients[0].1.send(now, "Bob", "and more").unwrap();
        assert_eq!(net.clients[0].1.pending(), vec![("Bob".to_string(), 2)]);
        net.clients[0].1.sign_out(now);
        net.pump();
        assert!(net.clients[0].1.pending().is_empty());
        let events = net.events(0);
        let delivered = events
            .iter()
            .position(|e| {
                *e == ClientEvent::Delivered {
                    id,
                    to: "Bob".into(),
                }
            })
            .unwrap();
        let signed_out = events
            .iter()
            .position(|e| *e == ClientEvent::SignedOut)
            .unwrap();
        assert!(delivered < signed_out);
        assert!(net.clients[0].1.is_closed());
        assert_eq!(net.server.user_count(), 1);
        assert_eq!(net.clients[0].1.poll_timeout(), None);
    }
}
