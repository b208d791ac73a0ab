//! The chat client: signs in, asks the directory, and talks to peers directly.
//!
//! [`ClientState`] is a sans-IO state machine (see the crate docs for the five
//! calls). What it does on a real network:
//!
//! * **Identity.** The client holds a static X25519 key
//!   ([`ClientConfig::identity`]); the directory binds its name to that key.
//! * **The server session** (`link`): a padded Hello earns a cookie and the
//!   server's key, which must match [`ClientConfig::server_key`] when one is
//!   pinned; then a Noise IK handshake carries the sign-in. Every request
//!   after that (list, lookup, keep-alive, sign-out) is sealed, carries a
//!   request id, is retried with exponential backoff until answered or
//!   [`ClientConfig::request_timeout`] passes; late or duplicate replies are
//!   ignored. The session is kept alive every
//!   [`ClientConfig::keepalive_interval`]. When the server says it does not
//!   hold our session (it restarted) or stops answering, the client signs in
//!   again by itself and reports [`ClientEvent::Reconnected`].
//! * **Peer sessions** (`peers`): a lookup answers with the peer's
//!   addresses (`paths`: the reflexive one the server sees and its host
//!   candidates) and key; the client makes a Noise IK handshake to that key,
//!   sent to every address worth trying, and accepts one only from a key the
//!   directory binds to the name it claims.
//! * **NAT traversal**: a lookup made to write also makes the server
//!   introduce us to the peer, which then sends its own handshake our way at
//!   once, so both NATs let the answers in. Our host candidates
//!   ([`ClientConfig::host_candidates`]) go to the server at sign-in. A
//!   conversation in use is kept alive every
//!   [`ClientConfig::peer_keepalive_interval`]; after [`PATH_FRESH`] of
//!   silence the next message brokers the path again. When no handshake
//!   gets through and both sides are behind NATs, messages fail with
//!   [`DeliveryFailure::NoDirectPath`]. Messages
//!   and acknowledgements travel sealed, found by session index, never
//!   trusted by source address. A session is replaced after
//!   [`ClientConfig::rekey_after`] by the side that next sends, and dropped
//!   after [`ClientConfig::reject_after`].
//! * **Messages** (the send side here, `inbox` for receiving): text is cut
//!   into fragments; each has a sequence number in a stream from this client
//!   to that peer (the stream and numbers outlive sessions), is acknowledged
//!   by the receiver only once shown, and is retransmitted on a timeout
//!   estimated from measured round trips (RFC 6298). At most
//!   [`ClientConfig::window`] fragments per peer are unacknowledged at once.
//!   A peer silent for [`SILENT_REHANDSHAKE`] while data is outstanding gets
//!   a new handshake (it may have restarted and lost the session) and is
//!   looked up again (it may have moved, or its NAT forgotten us), at 3 and
//!   6 s; while no session can be made, the lookups come at 1, 3 and 6 s
//!   (an introduction may have been lost); at
//!   [`ClientConfig::message_timeout`] its messages fail. [`ClientEvent::Delivered`]
//!   means an authenticated acknowledgement came back for every fragment.
//! * **Receiving**, each stream is delivered exactly once and in order,
//!   fragments reassembled, across rekeys, lost sessions and
//!   retransmissions (see `inbox`).
//! * **Bounds**: queued sends, sessions, handshakes waiting for the
//!   directory, receive streams, reassembly buffers and the lookup cache are
//!   all capped.
//!
//! The parts with their own invariants and tests: `link` (the server
//! session), `paths` (which of a peer's addresses to try), `peers` (peer
//! handshakes, sessions, paths and keep-alives), `inbox` (receive
//! streams), `requests` (ids, retries, deadlines), `lookup` (the cache of
//! directory answers), `rtt` (the RFC 6298 estimate). This module coordinates
//! them and keeps the send side.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use crate::Transmit;
use crate::codec::{
    ErrorCode, MAX_CANDIDATES, MAX_DATAGRAM, MAX_FRAGMENT_BODY, Packet, RefuseReason,
};
use crate::crypto::{KEY_LEN, PublicKey, SeededRng, StaticKeypair};
use crate::name::{self, NameError};
use crate::secret::Rng;

mod inbox;
mod link;
mod lookup;
mod outbox;
mod paths;
mod peers;
mod requests;
mod rtt;

use inbox::{Fragment, Inbox, Outcome};
use link::{LinkError, ServerLink};
use lookup::LookupCache;
use outbox::{Outbox, Sealable};
use paths::Reach;
use peers::{InitOutcome, PeerSessions};
use requests::{RequestKind, Requests};
use rtt::Rtt;

/// A peer silent this long while fragments to it are outstanding gets a new
/// handshake: it may have restarted and lost our session (WireGuard waits
/// 15 s; a user is waiting here).
pub const SILENT_REHANDSHAKE: Duration = Duration::from_secs(3);

/// A peer not heard from for this long may be behind a NAT mapping that has
/// expired (home routers forget idle UDP mappings after 30 s or more): the
/// next message to it looks it up again, which makes the server introduce
/// us, and makes a new handshake to every address worth trying, while the
/// message goes by the old path too.
pub const PATH_FRESH: Duration = Duration::from_secs(25);

/// When a peer to which no session could be made yet is looked up (and we
/// are introduced) again, counted from when messages began to wait.
const RELOOK_STALLED: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(3),
    Duration::from_secs(6),
];

/// When a peer that stopped acknowledging is looked up again.
const RELOOK_SILENT: [Duration; 2] = [SILENT_REHANDSHAKE, Duration::from_secs(6)];

/// How soon a "nobody" answer is asked again while the directory settles
/// after a restart (see [`ClientConfig::settle_grace`]).
/// How long "unknown session" errors must go on, with no sealed word from
/// the server, before the client believes them and signs in again (see
/// `on_unknown_session`).
pub const UNKNOWN_SESSION_CONFIRM: Duration = Duration::from_secs(2);

const SETTLE_RECHECK: Duration = Duration::from_millis(500);

/// Sender names remembered for completion, at most.
const MAX_KNOWN_SENDERS: usize = 1024;

/// Identifies a command ([`ClientState::list`], [`ClientState::send`],
/// [`ClientState::whois`]); the events that answer it carry the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(pub u64);

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// How the client behaves. [`ClientConfig::new`] gives the defaults. `Debug`
/// never shows the identity secret.
#[derive(Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The name to sign in as.
    pub name: String,
    /// The directory server's address.
    pub server: SocketAddr,
    /// The client's static X25519 secret: the identity the directory binds
    /// the name to. Keep it from one run to the next (the binary keeps it in
    /// a file).
    pub identity: [u8; KEY_LEN],
    /// The server's key, pinned from an earlier run: a server showing
    /// another key is refused ([`SignInError::ServerKeyChanged`]). `None`
    /// trusts the key shown on first use ([`ClientState::server_key`] gives
    /// it, to pin).
    pub server_key: Option<PublicKey>,
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
    /// looked up again before, in case it moved).
    pub message_timeout: Duration,
    /// Retransmission timeout before any round trip is measured.
    pub initial_rto: Duration,
    /// The retransmission timeout never goes below this.
    pub min_rto: Duration,
    /// Nor above this, backoff included.
    pub max_rto: Duration,
    /// Sequence numbers in flight to one peer at most, counted from the
    /// oldest unacknowledged fragment (keep it within the receivers'
    /// `receive_window`). 128 by default: a pasted or piped burst goes out
    /// in a few full datagrams a round trip.
    pub window: usize,
    /// Fragments a receiver buffers ahead of the next one it expects.
    pub receive_window: u32,
    /// Sends waiting for delivery, across all peers, at most.
    pub max_queued_messages: usize,
    /// Longest message text, in bytes.
    pub max_message_len: usize,
    /// Incoming streams tracked at once. Only a stream that is safe to
    /// forget makes room (see the `inbox` module); otherwise a new stream's
    /// fragments are dropped until one is.
    pub max_receive_streams: usize,
    /// A settled incoming stream silent for this long is forgotten. A stream
    /// whose sender may still resend is kept for six message timeouts.
    pub stream_idle_timeout: Duration,
    /// Directory answers cached at most this long.
    pub lookup_cache_ttl: Duration,
    /// Directory answers cached at most this many.
    pub max_cached_lookups: usize,
    /// Lookups under way at once at most; a handshake from a new peer that
    /// would need one more is dropped (its sender tries again).
    pub max_pending_lookups: usize,
    /// For this long after signing in again (the server had restarted or
    /// forgotten us), a directory answer of "nobody" is asked again rather
    /// than believed: other clients are still signing in again too. The
    /// default covers a peer's keep-alive interval and a sign-in's retries.
    pub settle_grace: Duration,
    /// A peer session this old is replaced by a new handshake, made by the
    /// side that has something to send (after WireGuard's
    /// REKEY_AFTER_TIME).
    pub rekey_after: Duration,
    /// A peer session that has sealed this many packets is replaced too.
    pub rekey_after_messages: u64,
    /// A peer session this old is dropped (WireGuard's REJECT_AFTER_TIME).
    pub reject_after: Duration,
    /// The client's host candidates: its own interface addresses with the
    /// port it receives on, IPv4 and IPv6. They are registered with the
    /// directory at sign-in, so that a peer on the same network (behind the
    /// same router) reaches us directly. At most [`MAX_CANDIDATES`] are
    /// sent; the run loop fills them in (`run::host_candidates`). Leaving
    /// them empty only loses those LAN paths.
    pub host_candidates: Vec<SocketAddr>,
    /// While a conversation is in use, an empty sealed packet goes to the
    /// peer when nothing else was sent to it for this long, so that both
    /// NATs on the path keep their mappings (home routers forget idle UDP
    /// after 30 s or more).
    pub peer_keepalive_interval: Duration,
    /// A conversation is in use while a message or acknowledgement went
    /// either way within this long.
    pub peer_in_use: Duration,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("name", &self.name)
            .field("server", &self.server)
            .field("identity", &"..")
            .field("server_key", &self.server_key)
            .field("request_timeout", &self.request_timeout)
            .field("keepalive_interval", &self.keepalive_interval)
            .field("message_timeout", &self.message_timeout)
            .field("window", &self.window)
            .field("rekey_after", &self.rekey_after)
            .field("host_candidates", &self.host_candidates)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// The defaults, for `name` signing in at `server` with the static
    /// secret `identity`.
    pub fn new(name: impl Into<String>, server: SocketAddr, identity: [u8; KEY_LEN]) -> Self {
        ClientConfig {
            name: name.into(),
            server,
            identity,
            server_key: None,
            request_timeout: Duration::from_secs(10),
            request_retry: Duration::from_millis(250),
            max_request_retry: Duration::from_millis(500),
            keepalive_interval: Duration::from_secs(3),
            message_timeout: Duration::from_secs(10),
            initial_rto: Duration::from_millis(300),
            min_rto: Duration::from_millis(100),
            max_rto: Duration::from_secs(1),
            window: 128,
            receive_window: 128,
            max_queued_messages: 10_000,
            max_message_len: 64 * 1024,
            max_receive_streams: 256,
            stream_idle_timeout: Duration::from_secs(120),
            lookup_cache_ttl: Duration::from_secs(300),
            max_cached_lookups: 4096,
            max_pending_lookups: 32,
            settle_grace: Duration::from_secs(5),
            rekey_after: Duration::from_secs(120),
            rekey_after_messages: 1 << 60,
            reject_after: Duration::from_secs(180),
            host_candidates: Vec::new(),
            peer_keepalive_interval: Duration::from_secs(10),
            peer_in_use: Duration::from_secs(120),
        }
    }
}

/// What the user should know of.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The first sign-in was accepted. [`ClientState::server_key`] now
    /// gives the server's key, to pin.
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
    /// What the directory binds a name to, for [`ClientState::whois`].
    PeerKey {
        /// The [`ClientState::whois`] this answers.
        id: CommandId,
        /// The name asked about.
        name: String,
        /// Its key, or `None` when nobody of that name is signed in or the
        /// server did not answer.
        key: Option<PublicKey>,
    },
    /// A message arrived in a session with the holder of `key`, which the
    /// directory binds to `from`. Each message comes exactly once, and a
    /// sender's messages in the order sent.
    MessageReceived {
        /// The sender's name.
        from: String,
        /// The sender's static key.
        key: PublicKey,
        /// The socket address the message's last fragment came from.
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
    /// A handshake claimed the name `claimed` with a key the directory does
    /// not bind to it. Refused.
    ForgedMessage {
        /// The name claimed.
        claimed: String,
        /// Where it came from.
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
    /// The server showed another key than the one pinned for it.
    #[error("the server has a new key (fingerprint {}; it was {})", .offered.fingerprint(), .pinned.fingerprint())]
    ServerKeyChanged {
        /// The key pinned for the server.
        pinned: PublicKey,
        /// The key it showed.
        offered: PublicKey,
    },
}

/// What is under way to one peer ([`ClientState::flows`]): for tools and
/// tests that watch flow control, since the wire shows only sealed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerFlow {
    /// The peer's name.
    pub to: String,
    /// Fragments sent and not yet acknowledged.
    pub unacked: usize,
    /// Sequence numbers from the oldest unacknowledged fragment to the next
    /// to send: what the receiver may have to buffer.
    pub span: usize,
    /// Fragments sent to this peer so far, first transmissions only.
    pub sent: u64,
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
    /// The recipient did not acknowledge it in time, even after a new
    /// handshake at a fresh address.
    #[error("no answer from the recipient")]
    NoAnswer,
    /// The server did not answer the lookup.
    #[error("the server did not answer")]
    ServerUnreachable,
    /// The recipient is signed in, but no handshake to any of its
    /// addresses was answered, and both sides are behind NATs: most likely
    /// both NATs give each destination its own port ("symmetric"), which
    /// hole punching cannot get through.
    #[error("no direct path (both of you are behind strict NATs)")]
    NoDirectPath,
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
    /// Sealed packets that did not open (forged, altered, replayed, or for
    /// a session we no longer hold), and peer handshakes refused (a key the
    /// directory does not bind to the claimed name).
    pub forged: u64,
    /// Peer handshakes completed, either side.
    pub handshakes: u64,
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
    /// Introductions from the server that made us send a handshake.
    pub introductions: u64,
    /// Keep-alives sent to peers.
    pub peer_keepalives: u64,
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

/// A fragment sent and not yet acknowledged. It is sealed afresh each time
/// it goes out (a new counter, maybe a new session, the current `base`).
#[derive(Debug)]
struct InFlight {
    message: CommandId,
    fragment: u16,
    fragments: u16,
    body: Bytes,
    first_sent: Instant,
    next_send: Instant,
    rto: Duration,
    retransmitted: bool,
}

/// Everything going to one peer.
#[derive(Debug)]
struct Peer {
    name: String,
    /// Where the directory says the peer is, and its key.
    dest: Option<(Reach, PublicKey)>,
    /// Times looked up again (and introduced) in this stretch of silence
    /// (see [`Peer::next_relook`]).
    relooks: usize,
    /// When we last asked the server to introduce us to the peer.
    introduced: Option<Instant>,
    /// Our stream to this peer: random, kept for as long as the peer entry.
    stream: u64,
    next_seq: u32,
    /// Messages not fully acknowledged, oldest first; only a prefix has fragments in flight.
    messages: VecDeque<OutMessage>,
    /// Fragments sent and not yet acknowledged, by seq.
    in_flight: BTreeMap<u32, InFlight>,
    /// When the peer last acknowledged something new.
    last_progress: Option<Instant>,
    /// When the last handshake to it started.
    handshake_at: Option<Instant>,
    /// Fragments sent to it, first transmissions only.
    sent: u64,
    /// Since when messages have waited for a session (none could be made
    /// yet); `None` while there is one or nothing waits.
    stalled_since: Option<Instant>,
    rtt: Rtt,
}

impl Peer {
    /// Sequence numbers from the oldest unacknowledged fragment to the next
    /// one to send: what the receiver may have to buffer. The window bounds
    /// this, not the count of unacknowledged fragments, so one fragment lost
    /// again and again cannot let the sender run past the receiver's window.
    fn span(&self) -> usize {
        usize::try_from(self.next_seq.wrapping_sub(self.base())).unwrap_or(usize::MAX)
    }

    /// The lowest sequence number we may still send: everything below is
    /// acknowledged (or given up with its message).
    fn base(&self) -> u32 {
        self.in_flight
            .keys()
            .next()
            .copied()
            .unwrap_or(self.next_seq)
    }

    /// When to look the peer up again (and be introduced again) in a
    /// stretch of silence that began at `since`, if at all: soon and often
    /// while no session could be made yet (an introduction may have been
    /// lost, and without it the peer's NAT drops our handshakes), later
    /// when a session went quiet.
    fn next_relook(&self, since: Instant) -> Option<Instant> {
        let schedule: &[Duration] = if self.stalled_since.is_some() {
            &RELOOK_STALLED
        } else {
            &RELOOK_SILENT
        };
        schedule.get(self.relooks).map(|after| since + *after)
    }

    /// Since when the peer has been silent about what we sent it: the first
    /// send of the oldest unacknowledged fragment, or the last acknowledgement
    /// if later; or since when messages have waited for a session. `None`
    /// when nothing is outstanding. A peer that keeps acknowledging is alive,
    /// however unlucky one fragment is.
    fn silent_since(&self) -> Option<Instant> {
        let in_flight = self
            .in_flight
            .values()
            .map(|f| f.first_sent)
            .min()
            .map(|oldest| self.last_progress.map_or(oldest, |p| p.max(oldest)));
        match (in_flight, self.stalled_since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The chat client's state machine. See the [module docs](self). `Debug`
/// shows its state in outline, never a key.
pub struct ClientState {
    config: ClientConfig,
    identity: StaticKeypair,
    rng: Rng,
    seeds: SeededRng,
    phase: Phase,
    closing: bool,
    link: ServerLink,
    /// Where the server saw us, from the sign-in answer.
    reflexive: Option<SocketAddr>,
    next_command: u64,
    requests: Requests,
    /// The lookup request under way for each folded name.
    lookups: BTreeMap<String, u32>,
    /// `whois` commands waiting for a lookup, by folded name.
    whois: BTreeMap<String, Vec<(CommandId, String)>>,
    /// Names gathered so far by each list command.
    lists: BTreeMap<CommandId, Vec<String>>,
    cache: LookupCache,
    sessions: PeerSessions,
    peers: BTreeMap<String, Peer>,
    /// Outgoing stream id to the folded name of its peer.
    stream_owner: BTreeMap<u64, String>,
    inbox: Inbox,
    queued: usize,
    known: Vec<String>,
    senders: BTreeSet<String>,
    next_keepalive: Option<Instant>,
    /// Since when an "unknown session" error in the clear is waiting to be
    /// confirmed or refuted (see `on_unknown_session`).
    session_doubted: Option<Instant>,
    /// When a sealed packet from the server last opened.
    server_heard: Option<Instant>,
    /// Until then the directory may still be filling up again (see
    /// [`ClientConfig::settle_grace`]).
    settling_until: Option<Instant>,
    next_housekeeping: Instant,
    /// When the path to each peer key was last brokered again (see
    /// [`PATH_FRESH`]); entries older than that are dropped.
    rebrokered: BTreeMap<PublicKey, Instant>,
    out: VecDeque<Transmit>,
    /// Peer frames waiting for their datagrams (see `outbox`).
    outbox: Outbox,
    events: VecDeque<ClientEvent>,
    buf: BytesMut,
    plain: BytesMut,
    scratch: Vec<u8>,
    stats: ClientStats,
}

impl fmt::Debug for ClientState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientState")
            .field("name", &self.config.name)
            .field("server", &self.config.server)
            .field("phase", &self.phase)
            .field("closing", &self.closing)
            .field("peers", &self.peers.len())
            .field("sessions", &self.sessions.len())
            .field("streams", &self.inbox.len())
            .field("pending", &self.queued)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl ClientState {
    /// A client that starts signing in as `config.name` at once. `seed` is
    /// its randomness (ephemeral keys, request and stream ids): 32 bytes from
    /// the operating system in real use, fixed in tests that replay. The name
    /// is put in Unicode normal form C first (see [`name::normalize`]).
    pub fn new(mut config: ClientConfig, now: Instant, seed: [u8; 32]) -> Result<Self, NameError> {
        if let Cow::Owned(nfc) = name::normalize(&config.name) {
            config.name = nfc;
        }
        name::validate(&config.name)?;
        let mut seeds = SeededRng::new(seed);
        let mut id_seed = [0u8; 8];
        seeds.fill(&mut id_seed);
        let mut rng = Rng::from_seed(u64::from_be_bytes(id_seed));
        let cache = LookupCache::new(config.lookup_cache_ttl, config.max_cached_lookups);
        let requests = Requests::new(
            rng.next_u32(),
            config.request_retry,
            config.max_request_retry,
            config.request_timeout,
        );
        let inbox = Inbox::new(
            config.max_receive_streams,
            config.receive_window,
            config.max_message_len,
            config.message_timeout * 6,
        );
        let mut client = ClientState {
            next_housekeeping: now + Duration::from_secs(1),
            rebrokered: BTreeMap::new(),
            identity: StaticKeypair::from_secret(config.identity),
            link: ServerLink::new(config.server_key),
            config,
            rng,
            seeds,
            phase: Phase::SigningIn { again: false },
            closing: false,
            reflexive: None,
            next_command: 1,
            requests,
            lookups: BTreeMap::new(),
            whois: BTreeMap::new(),
            lists: BTreeMap::new(),
            cache,
            sessions: PeerSessions::default(),
            peers: BTreeMap::new(),
            stream_owner: BTreeMap::new(),
            inbox,
            queued: 0,
            known: Vec::new(),
            senders: BTreeSet::new(),
            next_keepalive: None,
            session_doubted: None,
            server_heard: None,
            settling_until: None,
            out: VecDeque::new(),
            outbox: Outbox::default(),
            events: VecDeque::new(),
            buf: BytesMut::with_capacity(8 * MAX_DATAGRAM),
            plain: BytesMut::with_capacity(MAX_DATAGRAM),
            scratch: Vec::with_capacity(MAX_DATAGRAM),
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

    /// This client's static public key.
    pub fn public_key(&self) -> PublicKey {
        self.identity.public()
    }

    /// The server's key, once it showed one that passed the pin (after
    /// [`ClientEvent::SignedIn`], the key of the server that accepted us).
    pub fn server_key(&self) -> Option<PublicKey> {
        self.link.server_key()
    }

    /// Where the server saw this client come from, once signed in.
    pub fn reflexive_address(&self) -> Option<SocketAddr> {
        self.reflexive
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

    /// What is under way to each peer with something outstanding, in name
    /// order (see [`PeerFlow`]).
    pub fn flows(&self) -> Vec<PeerFlow> {
        self.peers
            .values()
            .map(|p| PeerFlow {
                to: p.name.clone(),
                unacked: p.in_flight.len(),
                span: p.span(),
                sent: p.sent,
            })
            .collect()
    }

    /// Names seen in the last user list and in conversations, for completion.
    pub fn known_users(&self) -> Vec<String> {
        let mut names = self.known.clone();
        names.extend(self.peers.values().map(|p| p.name.clone()));
        names.extend(self.senders.iter().cloned());
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

    /// Asks the directory which key `name` is bound to, to compare its
    /// fingerprint out of band. Answered by [`ClientEvent::PeerKey`].
    pub fn whois(&mut self, now: Instant, name: &str) -> Result<CommandId, SendError> {
        let name = &*name::normalize(name);
        name::validate(name)?;
        if self.phase == Phase::Closed || self.closing {
            return Err(SendError::Closed);
        }
        let id = self.command_id();
        let key = name::fold(name);
        self.whois
            .entry(key.clone())
            .or_default()
            .push((id, name.to_owned()));
        self.cache.forget(&key);
        self.lookup(now, name, false);
        Ok(id)
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
        let chunk = MAX_FRAGMENT_BODY;
        let fragments =
            u16::try_from(text.len().div_ceil(chunk).max(1)).map_err(|_| SendError::TooLong {
                len: text.len(),
                max: chunk * usize::from(u16::MAX),
            })?;
        let id = self.command_id();
        let key = name::fold(to);
        if !self.peers.contains_key(&key) {
            let stream = self.rng.next_u64();
            self.stream_owner.insert(stream, key.clone());
            self.peers.insert(
                key.clone(),
                Peer {
                    name: to.to_owned(),
                    dest: None,
                    relooks: 0,
                    introduced: None,
                    stream,
                    next_seq: 0,
                    messages: VecDeque::new(),
                    in_flight: BTreeMap::new(),
                    last_progress: None,
                    handshake_at: None,
                    sent: 0,
                    stalled_since: None,
                    rtt: Rtt::default(),
                },
            );
        }
        if let Some(peer) = self.peers.get_mut(&key) {
            peer.messages.push_back(OutMessage {
                id,
                to: to.to_owned(),
                text: Bytes::copy_from_slice(text.as_bytes()),
                fragments,
                started: 0,
                acked: 0,
            });
        }
        self.queued += 1;
        let known = self.peers.get(&key).is_some_and(|p| p.dest.is_some());
        if !known {
            match self.cache.get(now, &key) {
                Some((reach, peer_key)) => {
                    let reach = reach.clone();
                    self.set_dest(now, &key, reach, peer_key);
                }
                None => {
                    // The lookup brokers the path (it introduces us).
                    self.lookup(now, to, true);
                }
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
            Packet::Sealed {
                receiver,
                counter,
                sealed,
            } => {
                if receiver == self.link.local_index() {
                    self.on_sealed_from_server(now, datagram, counter, sealed);
                } else {
                    self.on_sealed_from_peer(now, from, datagram, receiver, counter, sealed);
                }
            }
            Packet::PeerInit { sender, handshake } => {
                self.on_peer_init(now, from, sender, handshake)
            }
            Packet::PeerResp {
                sender,
                receiver,
                handshake,
            } => self.on_peer_resp(now, from, sender, receiver, handshake),
            _ if from != self.config.server => self.stats.unexpected += 1,
            Packet::Retry {
                request,
                cookie,
                key,
            } => {
                if self.requests.kind(request) != Some(&RequestKind::SignIn) {
                    self.stats.unexpected += 1;
                    return;
                }
                match self.link.on_retry(now, cookie, key) {
                    Ok(true) => {
                        self.requests.release_one(request, now);
                        self.flush_requests(now);
                    }
                    Ok(false) => self.stats.duplicates += 1,
                    Err(LinkError::KeyChanged { pinned, offered }) => {
                        self.requests.remove(request);
                        let error = SignInError::ServerKeyChanged { pinned, offered };
                        self.events.push_back(ClientEvent::SignInFailed(error));
                        self.close();
                    }
                    Err(LinkError::Stray) => self.stats.malformed += 1,
                }
            }
            Packet::ServerResp {
                sender,
                receiver,
                handshake,
            } => self.on_server_resp(now, sender, receiver, handshake),
            Packet::Error {
                request,
                code: ErrorCode::UnknownSession,
            } => {
                // In the clear, so anyone could send it: it costs at most a
                // new handshake, which names the session it replaces.
                if request != 0 && request == self.link.remote_index() {
                    self.on_unknown_session(now);
                } else {
                    self.stats.unexpected += 1;
                }
            }
            _ => self.stats.unexpected += 1,
        }
    }

    /// Retries requests, retransmits fragments and handshakes, sends
    /// keep-alives and expires idle state whose time has come. Early or
    /// repeated calls are harmless.
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
        self.sessions.expire(now, self.config.reject_after);
        for (datagram, to) in self.sessions.resend_due(now) {
            self.out.push_back(Transmit {
                destination: to,
                payload: datagram,
            });
        }
        let (interval, in_use) = (self.config.peer_keepalive_interval, self.config.peer_in_use);
        for index in self.sessions.keepalives_due(now, interval, in_use) {
            // An empty sealed packet: it keeps the NAT mappings on the path.
            self.plain.clear();
            if self.seal_plain_to(now, index) {
                self.stats.peer_keepalives += 1;
            }
            // A conversation in use may outlive its session: one that would
            // expire first is replaced now (when old enough to be), not left
            // to expire under the keep-alives.
            let Some(s) = self.sessions.get(index) else {
                continue;
            };
            let (name, peer_key, addr) = (s.name.clone(), s.key, s.addr);
            let old = now.saturating_duration_since(s.created) >= self.config.rekey_after;
            let expires_in_use = self
                .sessions
                .last_used(&peer_key)
                .is_some_and(|used| s.created + self.config.reject_after < used + in_use);
            if old && expires_in_use && !self.sessions.is_initiating(&name::fold(&name)) {
                let reach = self
                    .cache
                    .get(now, &name::fold(&name))
                    .filter(|(_, k)| *k == peer_key)
                    .map_or_else(|| Reach::new(addr, []), |(r, _)| r.clone());
                self.handshake_to(now, &name, &reach, peer_key);
            }
        }
        for (index, to) in self.sessions.lan_probes_due(now, in_use) {
            if self.send_empty_to(now, index, to) {
                self.stats.peer_keepalives += 1;
            }
        }
        // Both sides keep a conversation in use alive: one that went quiet
        // has lost its path (a NAT forgot it, or gave one of us a new port).
        for (name, peer_key) in self.sessions.gone_quiet(now, in_use, PATH_FRESH) {
            self.rebroker(now, &name, peer_key);
        }
        let keys: Vec<String> = self.peers.keys().cloned().collect();
        for key in keys {
            self.peer_timeout(now, &key);
        }
        if now >= self.next_housekeeping {
            self.next_housekeeping = now + Duration::from_secs(1);
            self.rebrokered
                .retain(|_, t| now.saturating_duration_since(*t) < PATH_FRESH);
            self.inbox.expire(now, self.config.stream_idle_timeout);
            self.cache.expire(now);
        }
    }

    /// The next datagram to send, oldest first.
    ///
    /// Messages and acknowledgements to peers wait until this is called, so
    /// that what a batch of calls produced (sends, a drained socket's worth
    /// of datagrams) is packed into as few datagrams as fit: call it once
    /// the batch is done, until it returns `None`.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if !self.outbox.is_empty() {
            self.flush_frames();
        }
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
            let deadlines = p.silent_since().into_iter().flat_map(|t| {
                let relook = p.next_relook(t).unwrap_or(t + self.config.message_timeout);
                let rehandshake = p.handshake_at.map_or(t, |h| h.max(t)) + SILENT_REHANDSHAKE;
                [relook, rehandshake]
            });
            retransmit.into_iter().chain(deadlines)
        });
        let housekeeping =
            (self.inbox.len() > 0 || !self.cache.is_empty()).then_some(self.next_housekeeping);
        requests
            .into_iter()
            .chain(peers)
            .chain(self.sessions.next_timeout(self.config.reject_after))
            .chain(
                self.sessions
                    .next_keepalive(self.config.peer_keepalive_interval, self.config.peer_in_use),
            )
            .chain(self.sessions.next_lan_probe(self.config.peer_in_use))
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

    // ---- the server -----------------------------------------------------

    fn command_id(&mut self) -> CommandId {
        let id = CommandId(self.next_command);
        self.next_command += 1;
        id
    }

    /// A session index not in use here.
    fn fresh_index(&mut self) -> u32 {
        loop {
            let index = self.rng.next_u32();
            if !self.sessions.uses(index) && index != self.link.local_index() {
                return index;
            }
        }
    }

    fn can_send_requests(&self) -> bool {
        self.link.is_established() && matches!(self.phase, Phase::SignedIn | Phase::SigningOut)
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
            self.send_request(now, due.id);
        }
    }

    fn send_request(&mut self, now: Instant, id: u32) {
        let Some(kind) = self.requests.kind(id).cloned() else {
            return;
        };
        let server = self.config.server;
        self.buf.clear();
        let sent = match kind {
            RequestKind::SignIn if self.link.has_cookie(now) => {
                if let Some(init) = self.link.pending_init() {
                    // The same handshake again: the server answers it the same.
                    self.buf.extend_from_slice(&init);
                    Some(())
                } else if self.link.has_cookie(now) {
                    let index = self.fresh_index();
                    let seed = self.seeds.seed();
                    let name = self.config.name.clone();
                    let candidates: Vec<SocketAddr> = self
                        .config
                        .host_candidates
                        .iter()
                        .take(MAX_CANDIDATES)
                        .copied()
                        .collect();
                    self.link.start(
                        &self.identity,
                        index,
                        seed,
                        id,
                        &name,
                        &candidates,
                        &mut self.buf,
                    )
                } else {
                    Packet::Hello { request: id }.encode(&mut self.buf).ok()
                }
            }
            RequestKind::SignIn => Packet::Hello { request: id }.encode(&mut self.buf).ok(),
            RequestKind::List { cursor, .. } => self.link.seal(
                &Packet::ListRequest {
                    request: id,
                    cursor,
                },
                &mut self.buf,
            ),
            RequestKind::Lookup { name, introduce } => self.link.seal(
                &Packet::LookupRequest {
                    request: id,
                    name: &name,
                    introduce,
                },
                &mut self.buf,
            ),
            RequestKind::KeepAlive => self
                .link
                .seal(&Packet::KeepAlive { request: id }, &mut self.buf),
            RequestKind::SignOut => self
                .link
                .seal(&Packet::SignOut { request: id }, &mut self.buf),
        };
        if sent.is_some() {
            let payload = self.buf.split().freeze();
            self.out.push_back(Transmit {
                destination: server,
                payload,
            });
        }
    }

    fn on_server_resp(&mut self, now: Instant, sender: u32, receiver: u32, handshake: &[u8]) {
        let Ok((payload, keys)) = self.link.on_resp(receiver, handshake) else {
            self.stats.unexpected += 1;
            return;
        };
        match Packet::decode(&payload) {
            Ok(Packet::SignInAccepted { request, address }) => {
                if self.take_request(request, |k| matches!(k, RequestKind::SignIn)) {
                    self.link.establish(keys, receiver, sender);
                    self.reflexive = address;
                    self.on_signed_in(now);
                }
            }
            Ok(Packet::SignInRefused {
                request,
                reason,
                holder,
            }) => {
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
            _ => self.stats.malformed += 1,
        }
    }

    fn on_sealed_from_server(
        &mut self,
        now: Instant,
        datagram: &[u8],
        counter: u64,
        sealed: &[u8],
    ) {
        let mut scratch = std::mem::take(&mut self.scratch);
        match self.link.open(datagram, counter, sealed, &mut scratch) {
            Some(plaintext) => {
                // The server holds our session after all.
                self.session_doubted = None;
                self.server_heard = Some(now);
                match Packet::decode(plaintext) {
                    Ok(reply) => self.on_reply(now, reply),
                    Err(_) => self.stats.malformed += 1,
                }
            }
            None => self.stats.forged += 1,
        }
        self.scratch = scratch;
    }

    /// A reply that opened under the server session.
    fn on_reply(&mut self, now: Instant, reply: Packet<'_>) {
        match reply {
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
                key,
                candidates,
            } => {
                let Some(RequestKind::Lookup { name: asked, .. }) = self
                    .requests
                    .take_if(request, |k| matches!(k, RequestKind::Lookup { .. }))
                else {
                    self.stats.unexpected += 1;
                    return;
                };
                if !name::same(&asked, name) {
                    self.stats.unexpected += 1;
                }
                let key = <[u8; KEY_LEN]>::try_from(key).ok().map(PublicKey);
                let answer = match (address, key) {
                    (Some(address), Some(key)) => {
                        Some((Reach::new(address, candidates.iter()), key))
                    }
                    _ => None,
                };
                self.on_lookup(now, &asked, Some(answer));
            }
            Packet::Introduction {
                name,
                key,
                address,
                candidates,
            } => {
                let key = <[u8; KEY_LEN]>::try_from(key).ok().map(PublicKey);
                match (key, address) {
                    (Some(key), Some(address)) if name::validate(name).is_ok() => {
                        let reach = Reach::new(address, candidates.iter());
                        self.on_introduction(now, name, key, reach);
                    }
                    _ => self.stats.malformed += 1,
                }
            }
            Packet::KeepAliveAck { request } => {
                self.take_request(request, |k| matches!(k, RequestKind::KeepAlive));
            }
            Packet::Probe { request } => {
                if self.phase == Phase::SignedIn {
                    self.buf.clear();
                    if self
                        .link
                        .seal(&Packet::KeepAlive { request }, &mut self.buf)
                        .is_some()
                    {
                        let payload = self.buf.split().freeze();
                        self.out.push_back(Transmit {
                            destination: self.config.server,
                            payload,
                        });
                    }
                    // The server challenges our path: it sees us at a new
                    // address (our NAT gave us a new port). Our peers' NATs
                    // will drop what we send from there until they send to
                    // it: broker each conversation in use again (once; the
                    // answer above goes first, so the server knows where we
                    // are before it introduces us).
                    for (name, peer_key) in self.sessions.in_use(now, self.config.peer_in_use) {
                        self.rebroker(now, &name, peer_key);
                    }
                }
            }
            Packet::SignOutAck { request } => {
                if self.take_request(request, |k| matches!(k, RequestKind::SignOut)) {
                    self.close_signed_out();
                }
            }
            Packet::Error {
                request,
                code: ErrorCode::BadRequest,
            } => {
                if self.requests.kind(request).is_some() {
                    self.fail_request(now, request);
                } else {
                    self.stats.unexpected += 1;
                }
            }
            _ => self.stats.unexpected += 1,
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
            RequestKind::Lookup { name, .. } => self.on_lookup(now, &name, None),
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

    fn on_signed_in(&mut self, now: Instant) {
        let again = matches!(self.phase, Phase::SigningIn { again: true });
        self.phase = Phase::SignedIn;
        self.next_keepalive = Some(now + self.config.keepalive_interval);
        self.events.push_back(if again {
            self.settling_until = Some(now + self.config.settle_grace);
            ClientEvent::Reconnected
        } else {
            ClientEvent::SignedIn
        });
        // Requests held back while signing in go out now; with none, a
        // keep-alive shows the server at once that we hold the keys.
        self.requests.release(now);
        if !self.requests.any(|_| true) {
            self.requests.start(now, RequestKind::KeepAlive);
        }
        self.flush_requests(now);
        if self.closing {
            self.maybe_finish(now);
        }
    }

    /// The server does not hold our session: it restarted or forgot us. The
    /// requests under way go out again once signed in.
    /// The server says, in the clear, that it does not hold our session.
    /// True after a restart; but anyone who saw our index can say it too.
    /// So the first such error is a doubt: we ask the server in the
    /// session at once, and any sealed answer clears it. Only when the
    /// errors go on for [`UNKNOWN_SESSION_CONFIRM`] with no sealed word
    /// from the server do we sign in again.
    fn on_unknown_session(&mut self, now: Instant) {
        match self.phase {
            Phase::SigningOut => self.close_signed_out(),
            // The server showed it holds our session a moment ago: this
            // error is forged (a restarted server would not have answered).
            // Each doubt costs a request, so they are spaced out too.
            Phase::SignedIn
                if self.server_heard.is_some_and(|t| {
                    now.saturating_duration_since(t) < UNKNOWN_SESSION_CONFIRM / 2
                }) =>
            {
                self.stats.unexpected += 1;
            }
            Phase::SignedIn => match self.session_doubted {
                Some(since) if now.saturating_duration_since(since) >= UNKNOWN_SESSION_CONFIRM => {
                    self.sign_in_again(now);
                }
                Some(_) => {}
                None => {
                    self.session_doubted = Some(now);
                    if !self.requests.any(|k| *k == RequestKind::KeepAlive) {
                        self.start_request(now, RequestKind::KeepAlive);
                    }
                }
            },
            _ => {}
        }
    }

    fn sign_in_again(&mut self, now: Instant) {
        self.session_doubted = None;
        self.link.drop_session();
        self.phase = Phase::SigningIn { again: true };
        self.next_keepalive = None;
        self.requests.cancel(|k| *k == RequestKind::KeepAlive);
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

    /// Asks the server again, `delay` from now, where `name` is (to write
    /// to it).
    fn lookup_later(&mut self, now: Instant, name: &str, delay: Duration) {
        let key = name::fold(name);
        if self.lookups.contains_key(&key) {
            return;
        }
        self.stats.lookups += 1;
        let kind = RequestKind::Lookup {
            name: name.to_owned(),
            introduce: true,
        };
        let id = self.requests.start_delayed(now, delay, kind);
        self.lookups.insert(key, id);
    }

    /// Asks the server where `name` is, unless that is already being asked;
    /// with `introduce` when we mean to write to it, so the server
    /// introduces us and the peer sends our way too (its NAT then lets our
    /// handshake in).
    fn lookup(&mut self, now: Instant, name: &str, introduce: bool) {
        let key = name::fold(name);
        if self.lookups.contains_key(&key) {
            return;
        }
        self.stats.lookups += 1;
        if introduce && let Some(peer) = self.peers.get_mut(&key) {
            peer.introduced = Some(now);
        }
        let id = self.start_request(
            now,
            RequestKind::Lookup {
                name: name.to_owned(),
                introduce,
            },
        );
        self.lookups.insert(key, id);
    }

    /// A lookup of `name` finished: `None` when the server did not answer,
    /// `Some(None)` for nobody, `Some(Some((reach, key)))` otherwise.
    fn on_lookup(&mut self, now: Instant, name: &str, answer: Option<Option<(Reach, PublicKey)>>) {
        let key = name::fold(name);
        self.lookups.remove(&key);
        // Only "X is at A with K" is worth remembering: "nobody" may change
        // any moment.
        if let Some(Some((reach, peer_key))) = &answer {
            self.cache.remember(now, &key, reach.clone(), *peer_key);
        } else {
            self.cache.forget(&key);
        }
        for (id, name) in self.whois.remove(&key).unwrap_or_default() {
            let key = answer.as_ref().and_then(|a| a.as_ref()).map(|(_, k)| *k);
            self.events
                .push_back(ClientEvent::PeerKey { id, name, key });
        }
        // Handshakes from peers claiming this name, waiting to be checked.
        for incoming in self.sessions.take_held(&key) {
            match &answer {
                Some(Some((_, bound))) if *bound == incoming.key => self.respond(now, incoming),
                Some(Some(_)) => {
                    self.stats.forged += 1;
                    self.events.push_back(ClientEvent::ForgedMessage {
                        claimed: incoming.name,
                        address: incoming.from,
                    });
                }
                // Nobody of that name, or no answer: dropped; a real peer
                // tries again.
                _ => self.stats.forged += 1,
            }
        }
        // Outgoing messages waiting for this name.
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        let waiting = peer.dest.is_none() || peer.relooks > 0;
        if !waiting {
            return;
        }
        match answer {
            None if peer.dest.is_none() => {
                self.fail_peer(now, &key, DeliveryFailure::ServerUnreachable)
            }
            None => {}
            Some(None) if self.settling_until.is_some_and(|t| now < t) => {
                // Right after a restart: the peer may not be back yet.
                self.lookup_later(now, name, SETTLE_RECHECK);
            }
            Some(None) => self.fail_peer(now, &key, DeliveryFailure::NoSuchUser),
            Some(Some((reach, peer_key))) => {
                let relooked = peer.relooks > 0;
                let moved = peer.dest.as_ref().is_some_and(|(r, _)| *r != reach);
                let name = peer.name.clone();
                self.set_dest(now, &key, reach.clone(), peer_key);
                if relooked && moved {
                    // Still silent, and somewhere new: try there at once.
                    self.probe(now, &name, &reach, peer_key);
                }
                self.pump(now, &key);
            }
        }
    }

    // ---- peer sessions --------------------------------------------------

    /// The directory says the peer `key` is reachable at `reach` with
    /// `peer_key`. A changed key ends the sessions with the old one.
    fn set_dest(&mut self, now: Instant, key: &str, reach: Reach, peer_key: PublicKey) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        let old = peer.dest.replace((reach, peer_key));
        if let Some((_, old_key)) = old
            && old_key != peer_key
        {
            self.sessions.forget_key(&old_key);
        }
        if self.sessions.best_for(&peer_key).is_none() && !self.sessions.is_initiating(key) {
            self.handshake(now, key);
        }
    }

    /// Starts a handshake to the peer `key` at every address worth trying
    /// of those the directory gave.
    fn handshake(&mut self, now: Instant, key: &str) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        let Some((reach, peer_key)) = peer.dest.clone() else {
            return;
        };
        peer.handshake_at = Some(now);
        let name = peer.name.clone();
        self.handshake_to(now, &name, &reach, peer_key);
    }

    /// Starts a handshake to `peer_key`, the peer `name`, at the addresses
    /// of `reach` worth trying.
    fn handshake_to(&mut self, now: Instant, name: &str, reach: &Reach, peer_key: PublicKey) {
        let index = self.fresh_index();
        let seed = self.seeds.seed();
        let me = self.config.name.clone();
        let mut targets = reach.targets(self.own_reach().as_ref());
        // And where the peer was last heard under a session (the one
        // address that works behind a strict NAT).
        for addr in self.sessions.addresses_of(&peer_key) {
            if !targets.contains(&addr) {
                targets.push(addr);
            }
        }
        let probed = probed_hosts(reach, &targets);
        let sends = self.sessions.initiate(
            now,
            &self.identity,
            index,
            seed,
            &me,
            name,
            peer_key,
            &targets,
            &probed,
        );
        for (datagram, to) in sends {
            self.out.push_back(Transmit {
                destination: to,
                payload: datagram,
            });
        }
    }

    /// Brokers the path to `peer_key` (the peer `name`) again, unless that
    /// was done in the last [`PATH_FRESH`]: a lookup that introduces us (the
    /// peer then sends our way, through its NAT and ours), and a new
    /// handshake to where we last knew it.
    fn rebroker(&mut self, now: Instant, name: &str, peer_key: PublicKey) {
        let recently = self
            .rebrokered
            .get(&peer_key)
            .is_some_and(|t| now.saturating_duration_since(*t) < PATH_FRESH);
        if recently {
            return;
        }
        self.rebrokered.insert(peer_key, now);
        let key = name::fold(name);
        self.lookup(now, name, true);
        let known = self.cache.get(now, &key).filter(|(_, k)| *k == peer_key);
        let reach = match known {
            Some((reach, _)) => reach.clone(),
            None => match self
                .sessions
                .best_for(&peer_key)
                .and_then(|i| self.sessions.get(i))
            {
                Some(s) => Reach::new(s.addr, []),
                None => return,
            },
        };
        self.probe(now, name, &reach, peer_key);
    }

    /// Sends our handshake to the peer `name` (with `peer_key`) to the
    /// addresses of `reach` worth trying: added to the handshake under way,
    /// if there is one (the same PeerInit to new addresses), or a new one.
    fn probe(&mut self, now: Instant, name: &str, reach: &Reach, peer_key: PublicKey) {
        let targets = reach.targets(self.own_reach().as_ref());
        let probed = probed_hosts(reach, &targets);
        match self
            .sessions
            .add_targets(now, &name::fold(name), &targets, &probed)
        {
            Some(sends) => {
                for (datagram, to) in sends {
                    self.out.push_back(Transmit {
                        destination: to,
                        payload: datagram,
                    });
                }
            }
            None => self.handshake_to(now, name, reach, peer_key),
        }
    }

    /// Where we can be reached, once signed in: the reflexive address the
    /// server saw and our host candidates.
    fn own_reach(&self) -> Option<Reach> {
        let reflexive = self.reflexive?;
        Some(Reach::new(
            reflexive,
            self.config.host_candidates.iter().copied(),
        ))
    }

    /// The server says `name` (with `peer_key`, at `reach`) looked us up to
    /// write to us: remember that binding, answer any handshake of theirs
    /// waiting for it, and send a handshake their way at once, so that our
    /// NAT lets theirs in (and theirs lets ours in).
    fn on_introduction(&mut self, now: Instant, name: &str, peer_key: PublicKey, reach: Reach) {
        if peer_key == self.identity.public() {
            self.stats.unexpected += 1;
            return;
        }
        let key = name::fold(name);
        self.cache.remember(now, &key, reach.clone(), peer_key);
        for incoming in self.sessions.take_held(&key) {
            if incoming.key == peer_key {
                self.respond(now, incoming);
            } else {
                self.stats.forged += 1;
            }
        }
        if let Some(peer) = self.peers.get_mut(&key)
            && peer.dest.as_ref().is_some_and(|(_, k)| *k == peer_key)
        {
            peer.dest = Some((reach.clone(), peer_key));
        }
        self.stats.introductions += 1;
        // A session that works (heard from lately): an authenticated empty
        // packet under it to each address the introduction gives opens our
        // NAT for the peer, without a new handshake (which, under loss,
        // would churn the sessions both sides hold).
        let working = self
            .sessions
            .last_heard(&peer_key)
            .is_some_and(|t| now.saturating_duration_since(t) < SILENT_REHANDSHAKE);
        if let Some(index) = self.sessions.best_for(&peer_key).filter(|_| working) {
            for to in reach.targets(self.own_reach().as_ref()) {
                self.send_empty_to(now, index, to);
            }
            return;
        }
        // Else a handshake to where the introduction says, even if one of
        // ours is under way: its addresses may be stale (the peer's NAT gave
        // it a new port).
        self.probe(now, name, &reach, peer_key);
    }

    fn on_peer_init(&mut self, now: Instant, from: SocketAddr, sender: u32, handshake: &[u8]) {
        let seed = self.seeds.seed();
        match self
            .sessions
            .on_init(now, &self.identity, seed, from, sender, handshake)
        {
            InitOutcome::Again(datagram, to) => self.out.push_back(Transmit {
                destination: to,
                payload: datagram,
            }),
            InitOutcome::Waiting => {}
            InitOutcome::Bad => self.stats.forged += 1,
            InitOutcome::New(incoming) => {
                let folded = name::fold(&incoming.name);
                match self.cache.get(now, &folded).map(|(_, k)| k) {
                    Some(bound) if bound == incoming.key => self.respond(now, *incoming),
                    cached => {
                        if !self.lookups.contains_key(&folded)
                            && self.lookups.len() >= self.config.max_pending_lookups
                        {
                            // Too many claims waiting to be checked (a flood?):
                            // drop; a real peer tries again.
                            self.stats.dropped += 1;
                            return;
                        }
                        let claimed = incoming.name.clone();
                        if !self.sessions.hold(incoming) {
                            self.stats.dropped += 1;
                            return;
                        }
                        if cached.is_some() {
                            // The cache knows another key: ask afresh (the
                            // peer may have a new identity).
                            self.cache.forget(&folded);
                        }
                        self.lookup(now, &claimed, false);
                    }
                }
            }
        }
    }

    /// Answers a handshake whose claimed name the directory binds to its key.
    fn respond(&mut self, now: Instant, incoming: peers::Incoming) {
        let index = self.fresh_index();
        let display = incoming.name.clone();
        let folded = name::fold(&incoming.name);
        let own = self.own_reach();
        let hosts = self
            .cache
            .get(now, &folded)
            .filter(|(_, k)| *k == incoming.key)
            .map(|(r, _)| probed_hosts(r, &r.targets(own.as_ref())))
            .unwrap_or_default();
        if let Some((datagram, to)) = self.sessions.respond(now, index, incoming, display, &hosts) {
            self.stats.handshakes += 1;
            self.out.push_back(Transmit {
                destination: to,
                payload: datagram,
            });
            // Where the peer's handshake came from is where it can be
            // reached (ICE's peer-reflexive candidate: behind a NAT that
            // gives each destination its own port, the only one): our own
            // handshake to it, if one is under way, goes there too. Our
            // session as responder may not send until the peer confirms it,
            // and that confirmation can be lost.
            if let Some(sends) = self.sessions.add_targets(now, &folded, &[to], &[]) {
                for (datagram, to) in sends {
                    self.out.push_back(Transmit {
                        destination: to,
                        payload: datagram,
                    });
                }
            }
        }
    }

    fn on_peer_resp(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: u32,
        receiver: u32,
        handshake: &[u8],
    ) {
        let Some((index, key)) = self
            .sessions
            .on_resp(now, from, sender, receiver, handshake)
        else {
            if self.sessions.on_resp_again(now, from, receiver, handshake) {
                self.stats.duplicates += 1;
            } else {
                self.stats.forged += 1;
            }
            return;
        };
        self.stats.handshakes += 1;
        // Everything outstanding goes again in the new session (the peer may
        // have lost the old one), and the window opens.
        let resent = self.resend_all(now, &key, index);
        self.pump(now, &key);
        if !resent && self.peers.get(&key).is_none_or(|p| p.in_flight.is_empty()) {
            // Nothing to send: an empty packet confirms the session for the
            // responder, which may not send under it before.
            self.plain.clear();
            self.seal_plain_to(now, index);
        }
    }

    fn on_sealed_from_peer(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        receiver: u32,
        counter: u64,
        sealed: &[u8],
    ) {
        let mut scratch = std::mem::take(&mut self.scratch);
        let Some((plaintext, session, confirmed)) =
            self.sessions
                .open(now, from, datagram, receiver, counter, sealed, &mut scratch)
        else {
            self.stats.forged += 1;
            self.scratch = scratch;
            return;
        };
        let peer_key = session.key;
        let addr = session.addr;
        if confirmed {
            // A session the peer made is usable now: what waits for the
            // peer goes at once (it may have been lost on a dead path), and
            // a handshake of ours to it is no longer needed.
            let key = name::fold(&session.name);
            self.sessions.cancel_initiating(&peer_key);
            if self
                .peers
                .get(&key)
                .is_some_and(|p| p.dest.as_ref().is_some_and(|(_, k)| *k == peer_key))
            {
                self.resend_all(now, &key, receiver);
                self.pump(now, &key);
            }
        }
        // An empty plaintext (a keep-alive) has no frames. A malformed
        // frame ends the datagram; the frames before it stand.
        for frame in Packet::frames(plaintext) {
            match frame {
                Ok(Packet::Message {
                    stream,
                    seq,
                    base,
                    fragment,
                    fragments,
                    body,
                }) => {
                    let f = Fragment {
                        stream,
                        seq,
                        base,
                        fragment,
                        fragments,
                        body,
                    };
                    self.on_fragment(now, receiver, peer_key, addr, f);
                }
                Ok(Packet::Ack {
                    stream,
                    first,
                    last,
                }) => self.on_ack(now, peer_key, stream, first, last),
                _ => {
                    self.stats.malformed += 1;
                    break;
                }
            }
        }
        self.scratch = scratch;
    }

    fn on_fragment(
        &mut self,
        now: Instant,
        index: u32,
        peer_key: PublicKey,
        addr: SocketAddr,
        f: Fragment<'_>,
    ) {
        let (stream, seq) = (f.stream, f.seq);
        let before = (self.inbox.malformed, self.inbox.too_long);
        match self.inbox.on_fragment(now, peer_key.0, f) {
            Outcome::Ack(texts) => {
                self.send_ack(now, index, stream, seq);
                // The sender's name is copied only for a message shown, not
                // for every fragment.
                let peer_name = match (texts.is_empty(), self.sessions.get(index)) {
                    (false, Some(session)) => session.name.clone(),
                    _ => String::new(),
                };
                for text in texts {
                    self.stats.messages_received += 1;
                    if self.senders.len() < MAX_KNOWN_SENDERS && !self.senders.contains(&peer_name)
                    {
                        self.senders.insert(peer_name.clone());
                    }
                    self.events.push_back(ClientEvent::MessageReceived {
                        from: peer_name.clone(),
                        key: peer_key,
                        address: addr,
                        text,
                    });
                }
            }
            Outcome::Duplicate => {
                self.stats.duplicates += 1;
                self.send_ack(now, index, stream, seq);
            }
            Outcome::Dropped => self.stats.dropped += 1,
        }
        let (malformed, too_long) = (self.inbox.malformed, self.inbox.too_long);
        self.stats.malformed += malformed - before.0;
        self.stats.dropped += too_long - before.1;
    }

    /// Queues an acknowledgement; it leaves with the others of the batch,
    /// as ranges (see `outbox`).
    fn send_ack(&mut self, now: Instant, index: u32, stream: u64, seq: u32) {
        if self.outbox.ack(now, index, stream, seq) {
            self.flush_frames();
        }
    }

    /// Queues `packet` as a frame under peer session `index` (see
    /// `outbox`); a plaintext it fills up is sealed at once.
    fn queue_frame(&mut self, now: Instant, index: u32, packet: &Packet<'_>) -> bool {
        if self.sessions.get(index).is_none() {
            return false;
        }
        match self.outbox.push(now, index, packet) {
            Ok(Some(full)) => {
                self.seal_frames(full);
                true
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// Seals everything waiting in the outbox.
    fn flush_frames(&mut self) {
        for ready in self.outbox.take() {
            self.seal_frames(ready);
        }
    }

    /// Seals one outbox plaintext and queues the datagram. A session gone
    /// meanwhile loses the frames: the messages among them are resent on
    /// their timers, and the acknowledgements when those arrive.
    fn seal_frames(&mut self, ready: Sealable) {
        self.buf.clear();
        if let Some(to) =
            self.sessions
                .seal(ready.since, ready.index, &ready.plaintext, &mut self.buf)
        {
            let payload = self.buf.split().freeze();
            self.out.push_back(Transmit {
                destination: to,
                payload,
            });
        }
        self.outbox.recycle(ready.plaintext);
    }

    /// Seals an empty packet (a keep-alive, a probe of a path) under peer
    /// session `index` and queues it for `to`, whatever the session's path.
    fn send_empty_to(&mut self, now: Instant, index: u32, to: SocketAddr) -> bool {
        self.buf.clear();
        if self.sessions.seal(now, index, &[], &mut self.buf).is_none() {
            return false;
        }
        let payload = self.buf.split().freeze();
        self.out.push_back(Transmit {
            destination: to,
            payload,
        });
        true
    }

    /// Seals what `self.plain` holds under peer session `index` and queues
    /// it (the plaintext buffer is reused: nothing allocated but the
    /// datagram).
    fn seal_plain_to(&mut self, now: Instant, index: u32) -> bool {
        self.buf.clear();
        match self.sessions.seal(now, index, &self.plain, &mut self.buf) {
            Some(to) => {
                let payload = self.buf.split().freeze();
                self.out.push_back(Transmit {
                    destination: to,
                    payload,
                });
                true
            }
            None => false,
        }
    }

    // ---- sending --------------------------------------------------------

    /// The session to send to the peer `key` under, starting a new handshake
    /// when there is none, or when the one there is due to be replaced.
    fn send_session(&mut self, now: Instant, key: &str) -> Option<u32> {
        let peer = self.peers.get(key)?;
        let peer_key = peer.dest.as_ref()?.1;
        let best = self.sessions.best_for(&peer_key);
        // The side with something to send replaces an old session, whoever
        // made it: with introductions both sides make handshakes, and the
        // one we send under is often the peer's.
        let due = best.and_then(|i| self.sessions.get(i)).is_some_and(|s| {
            now.saturating_duration_since(s.created) >= self.config.rekey_after
                || s.sealed_count() >= self.config.rekey_after_messages
        });
        // After a quiet spell the NAT mappings on the path may be gone:
        // broker it again (once per spell): a lookup that introduces us, so
        // the peer sends our way too, and a new handshake, while what waits
        // goes by the old path too.
        let lately = |t: &Instant| now.saturating_duration_since(*t) < PATH_FRESH;
        let quiet = !self
            .sessions
            .last_heard(&peer_key)
            .is_some_and(|t| lately(&t))
            && !self.lookups.contains_key(key)
            && !peer.introduced.is_some_and(|t| lately(&t))
            && !self.rebrokered.get(&peer_key).is_some_and(lately);
        if quiet {
            let name = peer.name.clone();
            if let Some(peer) = self.peers.get_mut(key) {
                peer.relooks = peer.relooks.max(1);
            }
            self.rebrokered.insert(peer_key, now);
            self.lookup(now, &name, true);
        }
        if (quiet || best.is_none() || due) && !self.sessions.is_initiating(key) {
            self.handshake(now, key);
        }
        best
    }

    /// Seals and sends fragment `seq` to the peer `key` under `index`.
    fn transmit_fragment(&mut self, now: Instant, key: &str, index: u32, seq: u32) -> bool {
        let Some(peer) = self.peers.get(key) else {
            return false;
        };
        let Some(f) = peer.in_flight.get(&seq) else {
            return false;
        };
        let body = f.body.clone();
        let packet = Packet::Message {
            stream: peer.stream,
            seq,
            base: peer.base(),
            fragment: f.fragment,
            fragments: f.fragments,
            body: &body,
        };
        self.queue_frame(now, index, &packet)
    }

    /// Sends every fragment outstanding to `key` again under `index`.
    fn resend_all(&mut self, now: Instant, key: &str, index: u32) -> bool {
        let seqs: Vec<u32> = self
            .peers
            .get(key)
            .map(|p| p.in_flight.keys().copied().collect())
            .unwrap_or_default();
        let mut any = false;
        for seq in seqs {
            if let Some(f) = self
                .peers
                .get_mut(key)
                .and_then(|p| p.in_flight.get_mut(&seq))
            {
                f.retransmitted = true;
                f.next_send = now + f.rto;
            }
            any |= self.transmit_fragment(now, key, index, seq);
        }
        any
    }

    /// Starts as many fragments as the window allows, once there is a session.
    fn pump(&mut self, now: Instant, key: &str) {
        let session = self.send_session(now, key);
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        let Some(index) = session else {
            if peer.messages.partition_point(|m| m.started == m.fragments) < peer.messages.len() {
                peer.stalled_since.get_or_insert(now);
            }
            return;
        };
        peer.stalled_since = None;
        let window = self.config.window;
        loop {
            let Some(peer) = self.peers.get_mut(key) else {
                return;
            };
            if peer.span() >= window {
                return;
            }
            // Messages are started in order: the fully started ones (in
            // flight, up to a window's worth) come first.
            let next = peer.messages.partition_point(|m| m.started == m.fragments);
            let Some(m) = peer.messages.get_mut(next) else {
                return;
            };
            let fragment = m.started;
            m.started += 1;
            let start = usize::from(fragment) * MAX_FRAGMENT_BODY;
            let end = (start + MAX_FRAGMENT_BODY).min(m.text.len());
            let body = m.text.slice(start.min(end)..end);
            let (message, fragments) = (m.id, m.fragments);
            let seq = peer.next_seq;
            peer.next_seq = peer.next_seq.wrapping_add(1);
            let rto = peer.rtt.rto(
                self.config.initial_rto,
                self.config.min_rto,
                self.config.max_rto,
            );
            peer.in_flight.insert(
                seq,
                InFlight {
                    message,
                    fragment,
                    fragments,
                    body,
                    first_sent: now,
                    next_send: now + rto,
                    rto,
                    retransmitted: false,
                },
            );
            peer.sent += 1;
            self.stats.fragments_sent += 1;
            self.transmit_fragment(now, key, index, seq);
        }
    }

    /// An acknowledgement of `first..=last` in our `stream`. Only fragments
    /// in flight are looked at, so a wide range costs no more than the
    /// window.
    fn on_ack(&mut self, now: Instant, from_key: PublicKey, stream: u64, first: u32, last: u32) {
        let Some(key) = self.stream_owner.get(&stream).cloned() else {
            self.stats.unexpected += 1;
            return;
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        // Only the key we are writing to can acknowledge.
        if peer.dest.as_ref().map(|(_, k)| *k) != Some(from_key) {
            self.stats.unexpected += 1;
            return;
        }
        let acked: Vec<u32> = peer
            .in_flight
            .range(first..=last)
            .map(|(s, _)| *s)
            .collect();
        if acked.is_empty() {
            return; // Acknowledged already.
        }
        // Any answer shows the peer is alive where we think it is.
        peer.relooks = 0;
        peer.last_progress = Some(now);
        for seq in acked {
            let Some(f) = peer.in_flight.remove(&seq) else {
                continue;
            };
            if !f.retransmitted {
                peer.rtt.sample(now.saturating_duration_since(f.first_sent));
            }
            // Messages complete in order, mostly: look from the front.
            let Some(i) = peer.messages.iter().position(|m| m.id == f.message) else {
                continue;
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
        }
        self.pump(now, &key);
        self.maybe_finish(now);
    }

    /// Retransmits, makes a new handshake, looks the peer up again, or gives
    /// up, as time requires.
    fn peer_timeout(&mut self, now: Instant, key: &str) {
        let timeout = self.config.message_timeout;
        let max_rto = self.config.max_rto;
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        if let Some(since) = peer.silent_since() {
            let silent = now.saturating_duration_since(since);
            if silent >= timeout {
                let reason = self.failure_reason(key);
                self.fail_peer(now, key, reason);
                return;
            }
            let last_try = peer.handshake_at.map_or(since, |h| h.max(since));
            if peer.next_relook(since).is_some_and(|at| now >= at) {
                // Silent: it may have moved, its NAT may have forgotten the
                // path, or our introduction was lost. Ask the directory
                // again (which introduces us again: the peer sends our way
                // too), and try where we know at once. Once, however many
                // of the schedule's times have passed (a late call).
                while peer.next_relook(since).is_some_and(|at| now >= at) {
                    peer.relooks += 1;
                }
                peer.handshake_at = Some(now);
                let name = peer.name.clone();
                self.cache.forget(key);
                self.lookup(now, &name, true);
                if !self.sessions.is_initiating(key) {
                    self.handshake(now, key);
                }
            } else if now.saturating_duration_since(last_try) >= SILENT_REHANDSHAKE {
                // Silent: the peer may have lost our session (a restart).
                // The next try is counted from now either way.
                peer.handshake_at = Some(now);
                if !self.sessions.is_initiating(key) {
                    self.handshake(now, key);
                }
            }
        }
        if self
            .peers
            .get(key)
            .is_none_or(|p| p.in_flight.is_empty() && p.messages.is_empty())
        {
            // Nothing to send: no rekey, no new path, until there is.
            return;
        }
        let Some(index) = self.send_session(now, key) else {
            // No session to resend under (it expired, or was lost): one is
            // being made; the resends wait for it, their timers pushed on.
            if let Some(peer) = self.peers.get_mut(key) {
                for f in peer.in_flight.values_mut().filter(|f| now >= f.next_send) {
                    f.next_send = now + f.rto;
                }
            }
            return;
        };
        let due: Vec<u32> = self
            .peers
            .get_mut(key)
            .map(|p| {
                p.in_flight
                    .iter_mut()
                    .filter(|(_, f)| now >= f.next_send)
                    .map(|(seq, f)| {
                        f.retransmitted = true;
                        f.rto = (f.rto * 2).min(max_rto);
                        f.next_send = now + f.rto;
                        *seq
                    })
                    .collect()
            })
            .unwrap_or_default();
        for seq in due {
            self.stats.retransmissions += 1;
            self.transmit_fragment(now, key, index, seq);
        }
    }

    /// Why messages to the peer `key` failed at the deadline: no direct path
    /// when no handshake with it ever got through and both sides are behind
    /// NATs; no answer otherwise.
    fn failure_reason(&self, key: &str) -> DeliveryFailure {
        let Some((reach, peer_key)) = self.peers.get(key).and_then(|p| p.dest.as_ref()) else {
            return DeliveryFailure::NoAnswer;
        };
        let never_reached = !self.sessions.ever_reached(peer_key);
        let me_behind_nat = self.own_reach().is_none_or(|r| r.behind_nat());
        if never_reached && reach.behind_nat() && me_behind_nat {
            DeliveryFailure::NoDirectPath
        } else {
            DeliveryFailure::NoAnswer
        }
    }

    /// Fails every message waiting for this peer, and forgets it so the
    /// next message starts afresh (a new stream, a new lookup).
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
}

/// The host candidates of `reach` among `targets`: the ones we probe, the
/// only ones a path to which ranks as a LAN path. Never the reflexive
/// address (a public peer registers it as a host too): the server has
/// checked that one, and it is tried for as long as the handshake lasts.
fn probed_hosts(reach: &Reach, targets: &[SocketAddr]) -> Vec<SocketAddr> {
    reach
        .hosts
        .iter()
        .copied()
        .filter(|h| targets.contains(h) && *h != reach.reflexive)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Initiator, Responder};
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
                    let config = ClientConfig::new(*n, server_addr, bytes(port, 1));
                    let addr = SocketAddr::from(([127, 0, 0, 1], port));
                    (addr, ClientState::new(config, now, bytes(port, 2)).unwrap())
                })
                .collect();
            let mut net = Net {
                now,
                server: ServerState::new(ServerConfig::new([3; 32], [4; 32]), now),
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

        /// Lets `d` of time pass, timers firing every 50 ms.
        fn advance(&mut self, d: Duration) {
            let end = self.now + d;
            while self.now < end {
                self.now += Duration::from_millis(50);
                let now = self.now;
                self.server.handle_timeout(now);
                for (_, c) in &mut self.clients {
                    c.handle_timeout(now);
                }
                self.pump();
            }
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

    /// 32 bytes from a port and a purpose: distinct keys and seeds.
    fn bytes(port: u16, purpose: u8) -> [u8; 32] {
        let mut b = [purpose; 32];
        b[..2].copy_from_slice(&port.to_be_bytes());
        b
    }

    /// Mallory, with a key of her own, makes a handshake to client `to`
    /// claiming to be `claimed`; returns Mallory's address.
    fn forge(net: &mut Net, to: usize, claimed: &str, seed: u8) -> SocketAddr {
        let mallory: SocketAddr = "127.0.0.1:6666".parse().unwrap();
        let key = StaticKeypair::generate([66; 32]);
        let target = net.clients[to].1.public_key();
        let (_, msg1) = Initiator::start(
            &key,
            &target,
            peers::PEER_PROLOGUE,
            [seed; 32],
            claimed.as_bytes(),
        )
        .unwrap();
        let forged = Packet::PeerInit {
            sender: 1,
            handshake: &msg1,
        }
        .to_bytes()
        .unwrap();
        let target = net.addr(to);
        net.deliver(mallory, target, forged);
        net.pump();
        mallory
    }

    #[test]
    fn a_late_timeout_call_leaves_no_timer_in_the_past() {
        // Found by fuzzing: messages wait for a peer that never answers
        // (Bob is gone, but still in the directory), and the first timeout
        // call comes 8 s late, past several re-lookup times at once.
        let mut net = Net::new(&["Alice", "Bob"]);
        let bob = net.addr(1);
        net.clients[0].1.send(net.now, "Bob", "one").unwrap();
        net.clients[0].1.send(net.now, "Bob", "two").unwrap();
        // Deliver to the server only: Bob hears nothing.
        loop {
            let mut queue = Vec::new();
            while let Some(t) = net.clients[0].1.poll_transmit() {
                queue.push((net.addr(0), t));
            }
            while let Some(t) = net.server.poll_transmit() {
                queue.push((SERVER.parse().unwrap(), t));
            }
            queue.retain(|(_, t)| t.destination != bob);
            if queue.is_empty() {
                break;
            }
            for (from, t) in queue {
                net.deliver(from, t.destination, t.payload);
            }
        }
        let alice = &mut net.clients[0].1;
        for late in [8, 9, 12] {
            let now = net.now + Duration::from_secs(late);
            alice.handle_timeout(now);
            assert!(
                alice.poll_timeout().is_none_or(|t| t > now),
                "{late} s: a timer is due already"
            );
        }
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
        assert_eq!(
            net.clients[0].1.stats().fragments_sent,
            text.len().div_ceil(MAX_FRAGMENT_BODY) as u64
        );
        // No datagram holds any of the text in the clear.
        assert!(
            !net.log
                .iter()
                .any(|(_, _, p)| p.windows("名前".len()).any(|w| w == "名前".as_bytes())),
            "text in the clear"
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
            let config = ClientConfig::new("\u{410}lice", server, [1; 32]);
            let mut c = ClientState::new(config, now, [2; 32]).unwrap();
            // A hostile server: a real handshake, any refusal it likes.
            let server_key = StaticKeypair::generate([5; 32]);
            let hello = c.poll_transmit().unwrap();
            let Ok(Packet::Hello { request }) = Packet::decode(&hello.payload) else {
                panic!("expected a Hello");
            };
            let retry = Packet::Retry {
                request,
                cookie: b"c",
                key: &server_key.public().0,
            };
            c.handle_datagram(now, server, &retry.to_bytes().unwrap());
            let init = c.poll_transmit().unwrap();
            let Ok(Packet::ServerInit {
                sender, handshake, ..
            }) = Packet::decode(&init.payload)
            else {
                panic!("expected a ServerInit");
            };
            let (responder, payload) = Responder::accept(
                &server_key,
                crate::server::SERVER_PROLOGUE,
                [6; 32],
                handshake,
            )
            .unwrap();
            let Ok(Packet::SignIn { request, .. }) = Packet::decode(&payload) else {
                panic!("expected a SignIn");
            };
            let refusal = Packet::SignInRefused {
                request,
                reason: RefuseReason::NameInUse,
                holder,
            };
            let (msg2, _) = responder.finish(&refusal.to_bytes().unwrap()).unwrap();
            let resp = Packet::ServerResp {
                sender: 0,
                receiver: sender,
                handshake: &msg2,
            };
            c.handle_datagram(now, server, &resp.to_bytes().unwrap());
            let events: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
            assert_eq!(events, [ClientEvent::SignInFailed(expected)], "{holder:?}");
        }
    }

    #[test]
    fn a_replayed_datagram_is_dropped_unanswered_and_shown_once() {
        let mut net = Net::new(&["Alice", "Bob"]);
        net.clients[0].1.send(net.now, "Bob", "once").unwrap();
        net.pump();
        let (alice, bob) = (net.addr(0), net.addr(1));
        // Alice's first sealed datagram to Bob carried the message.
        let message = net
            .log
            .iter()
            .find(|(f, t, p)| *f == alice && *t == bob && p.first() == Some(&0x05))
            .map(|(_, _, p)| p.clone())
            .unwrap();
        let from_bob = net.log.iter().filter(|(f, _, _)| *f == bob).count();
        net.deliver(alice, bob, message.clone());
        // Also from elsewhere: the session, not the address, decides.
        net.deliver("127.0.0.1:6666".parse().unwrap(), bob, message);
        net.pump();
        assert_eq!(received(&net.events(1)), vec!["once"]);
        assert_eq!(net.clients[1].1.stats().forged, 2);
        let after = net.log.iter().filter(|(f, _, _)| *f == bob).count();
        assert_eq!(after, from_bob, "a replay gets no answer");
    }

    #[test]
    fn a_handshake_with_another_key_than_the_directorys_is_reported_forged() {
        let mut net = Net::new(&["Alice", "Bob"]);
        let mallory = forge(&mut net, 1, "Alice", 1);
        let events = net.events(1);
        assert!(events.contains(&ClientEvent::ForgedMessage {
            claimed: "Alice".into(),
            address: mallory
        }));
        assert!(
            !net.log.iter().any(|(_, t, _)| *t == mallory),
            "nothing goes back to the forger"
        );
        assert_eq!(net.clients[1].1.sessions.len(), 0);
    }

    #[test]
    fn a_flood_of_handshakes_waiting_for_the_directory_holds_a_bounded_number() {
        let mut net = Net::new(&["Alice", "Bob"]);
        // The server restarted: Bob must sign in again before he can check
        // "Mallory0", "Mallory1"..., and all the while they come.
        net.server = ServerState::new(ServerConfig::new([3; 32], [5; 32]), net.now);
        for i in 0..100u8 {
            forge(&mut net, 1, &format!("Mallory{i}"), i);
        }
        let bob = &net.clients[1].1;
        assert!(bob.sessions.held() <= peers::MAX_VERIFYING);
        assert!(bob.lookups.len() <= bob.config.max_pending_lookups);
        // Every one beyond those held was dropped for want of room.
        let stats = bob.stats();
        assert!(
            stats.dropped + bob.sessions.held() as u64 >= 100,
            "{stats:?}"
        );
        // Bob believes the server forgot him once its errors have gone on
        // for a while, and signs in again; by the time the lookups have
        // been answered (or given up), nothing is held and no forger has
        // a session.
        let settle = net.clients[1].1.config.settle_grace;
        net.advance(UNKNOWN_SESSION_CONFIRM * 2 + settle * 3);
        assert!(
            net.events(1).contains(&ClientEvent::Reconnected),
            "Bob signed in again"
        );
        let bob = &net.clients[1].1;
        assert_eq!(bob.sessions.held(), 0);
        assert!(bob.lookups.is_empty());
        assert_eq!(bob.sessions.len(), 0);
    }

    #[test]
    fn a_forged_sender_does_not_poison_later_sends() {
        // Bob gets a forgery claiming to be from Carole before Carole signs in:
        // the directory says "nobody". Once Carole is in, Bob can reach her.
        let mut net = Net::new(&["Alice", "Bob"]);
        forge(&mut net, 1, "Carole", 3);
        let carole_addr: SocketAddr = "127.0.0.1:5003".parse().unwrap();
        let config = ClientConfig::new("Carole", SERVER.parse().unwrap(), bytes(5003, 1));
        let carole = ClientState::new(config, net.now, bytes(5003, 2)).unwrap();
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
