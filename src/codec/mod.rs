//! The wire format: one datagram is one [`Packet`].
//!
//! [`Packet::decode`] borrows every string and byte field from the datagram and
//! allocates nothing; [`Packet::encode`] measures first and writes second, so a
//! failed encode leaves the buffer as it was. The format is canonical: when
//! `Packet::decode(b)` succeeds, encoding the result gives `b` back, byte for
//! byte. Trailing bytes, unknown packet types, out-of-range enum values,
//! non-zero padding and non-canonical booleans are errors. No datagram is
//! longer than [`MAX_DATAGRAM`] bytes.
//!
//! Packets come in two layers (see `docs/sessions.md`):
//!
//! * **Clear packets** (`0x01`–`0x0F`) travel as datagrams: address
//!   validation, the Noise handshakes, and [`Packet::Sealed`], the envelope
//!   of everything else.
//! * **Sealed packets** (`0x10`–`0x2F`) travel only as the plaintext of a
//!   [`Packet::Sealed`] (or as a handshake's payload), encrypted and
//!   authenticated under a session's keys. A receiver drops a sealed packet
//!   that arrives in the clear. Their encoding is the same.
//!
//! # Conventions
//!
//! | notation | meaning |
//! |---|---|
//! | `u8`, `u16`, `u32`, `u64` | unsigned integer, big-endian |
//! | `str8` | `u8` byte length, then that many bytes of UTF-8 |
//! | `bytes8` | `u8` byte length, then that many bytes |
//! | `bytes16` | `u16` byte length, then that many bytes |
//! | `bool` | one byte, `0` or `1`; anything else is an error |
//! | `addr` | `u8` family (`0` none, `4` IPv4, `6` IPv6), then for 4: 4 address bytes + `u16` port, for 6: 16 address bytes + `u16` port, for 0: nothing |
//! | `addrs` | `u8` count (at most [`MAX_CANDIDATES`]), then that many `addr`, each of family 4 or 6 |
//! | `names` | `u16` count, then `count` × `str8` |
//!
//! Every packet starts with its type byte. `request` is the id a client puts on
//! a request; the server copies it into the reply, so late and duplicate
//! replies can be told apart. A session *index* is a number the receiver of a
//! packet chose for the session (`sender` in a handshake packet tells the other
//! side which index to use; `receiver` is the index of the side receiving it).
//!
//! # Clear packets
//!
//! **0x01 Hello** (client → server): asks for a cookie and the server's key.
//! Zero padding makes it [`HELLO_LEN`] bytes, so the [`Packet::Retry`] it earns
//! is less than three times its size.
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x01 |
//! | request | `u32` |
//! | padding | zero bytes up to [`HELLO_LEN`] in all |
//!
//! **0x02 Retry** (server → client): prove you receive at your address by
//! sending `cookie` back in a [`Packet::ServerInit`]; `key` is the server's
//! static public key, for the client to check against the one it pinned.
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x02 |
//! | request | `u32` |
//! | cookie | `bytes8` |
//! | key | `bytes8` (32 bytes) |
//!
//! **0x03 ServerInit** (client → server): Noise IK message 1 to the server's
//! key; its payload is a sealed [`Packet::SignIn`].
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x03 |
//! | cookie | `bytes8` |
//! | sender | `u32` |
//! | handshake | `bytes16` |
//!
//! **0x04 ServerResp** (server → client): Noise IK message 2; its payload is
//! a sealed [`Packet::SignInAccepted`] or [`Packet::SignInRefused`].
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x04 |
//! | sender | `u32` |
//! | receiver | `u32` |
//! | handshake | `bytes16` |
//!
//! **0x05 Sealed** (any direction): one sealed packet, or nothing (a
//! keep-alive between peers), encrypted under the session that `receiver`
//! names, with nonce `counter`. The first [`SEALED_HEADER_LEN`] bytes (type,
//! receiver, counter, length) are authenticated too.
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x05 |
//! | receiver | `u32` |
//! | counter | `u64` |
//! | sealed | `bytes16`: ciphertext, then a 16-byte tag |
//!
//! **0x06 PeerInit** (client → client): Noise IK message 1 to the key the
//! directory gave for the receiver's name; its payload is the sender's name
//! (UTF-8), which the receiver checks against the directory.
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x06 |
//! | sender | `u32` |
//! | handshake | `bytes16` |
//!
//! **0x07 PeerResp** (client → client): Noise IK message 2, empty payload.
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x07 |
//! | sender | `u32` |
//! | receiver | `u32` |
//! | handshake | `bytes16` |
//!
//! **0x0F Error** (server → client; clear or sealed). Clear, with code 1, it
//! says a Sealed packet named a session index the server does not hold (it
//! restarted, or forgot a silent client): `request` is that index.
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x0F |
//! | request | `u32` |
//! | code | `u8`: 1 unknown session, 2 bad request |
//!
//! # Sealed packets: directory (client ⇄ server)
//!
//! **0x10 SignIn** (the payload of a ServerInit). `replaces` is the server's
//! index of the session this client held before (after an unknown-session
//! error), or 0: the server lets a session replace one of the same key at once.
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x10 |
//! | request | `u32` |
//! | name | `str8` |
//! | replaces | `u32` |
//! | candidates | `addrs`: the client's host candidates (its interface addresses, with its port) |
//!
//! **0x11 SignInAccepted** (the payload of a ServerResp): `address` is where
//! the server saw the client's handshake come from.
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x11 |
//! | request | `u32` |
//! | address | `addr` |
//!
//! **0x12 SignInRefused** (the payload of a ServerResp). For "name in use",
//! `holder` is the signed-in name the requested one clashes with, as its
//! holder spells it (it may differ: `Аlice` with a Cyrillic А clashes with
//! `Alice`); empty for the other reasons.
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x12 |
//! | request | `u32` |
//! | reason | `u8`: 1 name in use, 2 invalid name, 3 server full |
//! | holder | `str8` |
//!
//! **0x13 ListRequest** (client → server): a page of the signed-in names,
//! from `cursor` on: 0 for the first page, then the `cursor` of the page
//! before. The cursor is the server's; a name signed in throughout a walk is
//! listed exactly once, in no particular order.
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x13 |
//! | request | `u32` |
//! | cursor | `u32` |
//!
//! **0x14 ListReply** (server → client): one page; `more` says whether
//! another page follows, to be asked for with `cursor`.
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x14 |
//! | request | `u32` |
//! | more | `bool` |
//! | cursor | `u32` (0 when `more` is false) |
//! | names | `names` |
//!
//! **0x15 LookupRequest** (client → server)
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x15 |
//! | request | `u32` |
//! | name | `str8` |
//! | introduce | `bool`: also send `name` an Introduction of the asker |
//!
//! **0x16 LookupReply** (server → client): the address `name`'s session was
//! last heard from, the static key bound to the name and its host
//! candidates, or family 0, an empty key and no candidates when nobody of
//! that name is signed in.
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x16 |
//! | request | `u32` |
//! | name | `str8` |
//! | address | `addr` |
//! | key | `bytes8` (32 bytes, or empty) |
//! | candidates | `addrs`: the host candidates `name` registered |
//!
//! **0x17 KeepAlive** (client → server): keeps the session; also the answer
//! to a [`Packet::Probe`], with the probe's `request`.
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x17 |
//! | request | `u32` |
//!
//! **0x18 KeepAliveAck**, **0x19 Probe** (server → client: are you still
//! there?), **0x1A SignOut** (client → server), **0x1B SignOutAck** (server →
//! client)
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x18, 0x19, 0x1A or 0x1B |
//! | request | `u32` |
//!
//! **0x1C Introduction** (server → client): `name` looked the receiver up
//! to write to it; here is where `name` can be reached, so that the receiver
//! sends to it too and both NATs let the answers in. The server sends it only
//! on behalf of signed-in clients, at a bounded rate per asker and per
//! receiver.
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x1C |
//! | name | `str8` |
//! | key | `bytes8` (32 bytes) |
//! | address | `addr`: where `name`'s session was last heard from |
//! | candidates | `addrs`: `name`'s host candidates |
//!
//! # Sealed packets: peers (client ⇄ client)
//!
//! **0x20 Message**: one fragment of a message. Each fragment has its own
//! `seq` in the sender's `stream` to this receiver; a message is `fragments`
//! consecutive sequence numbers, `fragment` counting from 0. `base` is the
//! lowest `seq` the sender may still send: everything below it was
//! acknowledged or given up, so a receiver that has forgotten the stream
//! starts there. `body` is a slice of the message's UTF-8 text, cut at any
//! byte. The sender is whoever holds the session's key.
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x20 |
//! | stream | `u64` |
//! | seq | `u32` |
//! | base | `u32` (at most `seq`) |
//! | fragment | `u16` |
//! | fragments | `u16` (at least 1, more than `fragment`) |
//! | body | `bytes16` |
//!
//! **0x21 Ack**: the receiver has shown every `seq` of `stream` from `first`
//! to `last`, both included (or the sender had given them up). A receiver
//! acknowledges what it has not contiguously received with one Ack per
//! range, several in one datagram (see *Frames*).
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x21 |
//! | stream | `u64` |
//! | first | `u32` |
//! | last | `u32` (at least `first`) |
//!
//! # Frames
//!
//! The plaintext of a [`Packet::Sealed`] between peers is zero or more
//! sealed packets back to back, each called a *frame*: many short messages
//! and the acknowledgements of a whole batch go in one datagram, one seal
//! and one system call. Every packet is self-delimiting, so
//! [`Packet::frames`] reads them in turn; each frame is canonical on its
//! own. The directory takes exactly one sealed packet a datagram.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{BufMut, BytesMut};
use thiserror::Error;

/// No datagram this crate sends or accepts is longer than this (QUIC's safe size).
pub const MAX_DATAGRAM: usize = 1200;

/// The longest `str8` / `bytes8` field.
pub const MAX_SHORT_FIELD: usize = u8::MAX as usize;

/// A [`Packet::Hello`] is exactly this long.
pub const HELLO_LEN: usize = 64;

/// Type, receiver, counter and length of a [`Packet::Sealed`]: the bytes
/// authenticated along with the ciphertext.
pub const SEALED_HEADER_LEN: usize = 1 + 4 + 8 + 2;

/// The AEAD tag at the end of a [`Packet::Sealed`].
pub const SEALED_TAG_LEN: usize = 16;

/// The longest sealed packet one [`Packet::Sealed`] carries.
pub const MAX_SEALED_PLAINTEXT: usize = MAX_DATAGRAM - SEALED_HEADER_LEN - SEALED_TAG_LEN;

/// The most message-text bytes one [`Packet::Message`] carries so that its
/// [`Packet::Sealed`] envelope fits in [`MAX_DATAGRAM`].
pub const MAX_FRAGMENT_BODY: usize = MAX_SEALED_PLAINTEXT - MESSAGE_HEADER;

/// Header of a Message: type, stream, seq, base, fragment, fragments, body length.
const MESSAGE_HEADER: usize = 1 + 8 + 4 + 4 + 2 + 2 + 2;

/// The room [`Packet::encode`] appends for a packet's head before writing
/// its fields there: as long as the longest datagram.
const ZEROS: [u8; MAX_DATAGRAM] = [0; MAX_DATAGRAM];

/// The type byte of each packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum PacketType {
    /// [`Packet::Hello`]
    Hello = 0x01,
    /// [`Packet::Retry`]
    Retry = 0x02,
    /// [`Packet::ServerInit`]
    ServerInit = 0x03,
    /// [`Packet::ServerResp`]
    ServerResp = 0x04,
    /// [`Packet::Sealed`]
    Sealed = 0x05,
    /// [`Packet::PeerInit`]
    PeerInit = 0x06,
    /// [`Packet::PeerResp`]
    PeerResp = 0x07,
    /// [`Packet::Error`]
    Error = 0x0F,
    /// [`Packet::SignIn`]
    SignIn = 0x10,
    /// [`Packet::SignInAccepted`]
    SignInAccepted = 0x11,
    /// [`Packet::SignInRefused`]
    SignInRefused = 0x12,
    /// [`Packet::ListRequest`]
    ListRequest = 0x13,
    /// [`Packet::ListReply`]
    ListReply = 0x14,
    /// [`Packet::LookupRequest`]
    LookupRequest = 0x15,
    /// [`Packet::LookupReply`]
    LookupReply = 0x16,
    /// [`Packet::KeepAlive`]
    KeepAlive = 0x17,
    /// [`Packet::KeepAliveAck`]
    KeepAliveAck = 0x18,
    /// [`Packet::Probe`]
    Probe = 0x19,
    /// [`Packet::SignOut`]
    SignOut = 0x1A,
    /// [`Packet::SignOutAck`]
    SignOutAck = 0x1B,
    /// [`Packet::Introduction`]
    Introduction = 0x1C,
    /// [`Packet::Message`]
    Message = 0x20,
    /// [`Packet::Ack`]
    Ack = 0x21,
}

impl PacketType {
    /// Every packet type, in type-byte order.
    pub const ALL: [PacketType; 23] = [
        PacketType::Hello,
        PacketType::Retry,
        PacketType::ServerInit,
        PacketType::ServerResp,
        PacketType::Sealed,
        PacketType::PeerInit,
        PacketType::PeerResp,
        PacketType::Error,
        PacketType::SignIn,
        PacketType::SignInAccepted,
        PacketType::SignInRefused,
        PacketType::ListRequest,
        PacketType::ListReply,
        PacketType::LookupRequest,
        PacketType::LookupReply,
        PacketType::KeepAlive,
        PacketType::KeepAliveAck,
        PacketType::Probe,
        PacketType::SignOut,
        PacketType::SignOutAck,
        PacketType::Introduction,
        PacketType::Message,
        PacketType::Ack,
    ];

    /// The packet type whose type byte is `byte`.
    pub fn from_byte(byte: u8) -> Result<Self, DecodeError> {
        Self::ALL
            .iter()
            .copied()
            .find(|t| *t as u8 == byte)
            .ok_or(DecodeError::UnknownType(byte))
    }

    /// Whether packets of this type travel only inside a [`Packet::Sealed`]
    /// or a handshake: a receiver drops them in the clear.
    pub fn is_sealed(self) -> bool {
        self as u8 >= 0x10
    }

    /// A short lowercase name, for logs.
    pub fn name(self) -> &'static str {
        match self {
            PacketType::Hello => "hello",
            PacketType::Retry => "retry",
            PacketType::ServerInit => "server-init",
            PacketType::ServerResp => "server-resp",
            PacketType::Sealed => "sealed",
            PacketType::PeerInit => "peer-init",
            PacketType::PeerResp => "peer-resp",
            PacketType::Error => "error",
            PacketType::SignIn => "sign-in",
            PacketType::SignInAccepted => "sign-in-accepted",
            PacketType::SignInRefused => "sign-in-refused",
            PacketType::ListRequest => "list-request",
            PacketType::ListReply => "list-reply",
            PacketType::LookupRequest => "lookup-request",
            PacketType::LookupReply => "lookup-reply",
            PacketType::KeepAlive => "keep-alive",
            PacketType::KeepAliveAck => "keep-alive-ack",
            PacketType::Probe => "probe",
            PacketType::SignOut => "sign-out",
            PacketType::SignOutAck => "sign-out-ack",
            PacketType::Introduction => "introduction",
            PacketType::Message => "message",
            PacketType::Ack => "ack",
        }
    }
}

/// Why the server refused a sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RefuseReason {
    /// Another live client holds the name (or one that looks like it).
    NameInUse = 1,
    /// The name breaks the naming rules (see [`crate::name`]).
    InvalidName = 2,
    /// The directory is at its configured capacity.
    ServerFull = 3,
}

impl RefuseReason {
    fn from_byte(byte: u8) -> Result<Self, DecodeError> {
        match byte {
            1 => Ok(Self::NameInUse),
            2 => Ok(Self::InvalidName),
            3 => Ok(Self::ServerFull),
            _ => Err(DecodeError::InvalidValue {
                field: "reason",
                value: byte.into(),
            }),
        }
    }
}

/// What went wrong with a request, in an [`Packet::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ErrorCode {
    /// The session named is not held here: handshake and sign in again.
    UnknownSession = 1,
    /// The request was well-formed but made no sense (an invalid name to look up).
    BadRequest = 2,
}

impl ErrorCode {
    fn from_byte(byte: u8) -> Result<Self, DecodeError> {
        match byte {
            1 => Ok(Self::UnknownSession),
            2 => Ok(Self::BadRequest),
            _ => Err(DecodeError::InvalidValue {
                field: "code",
                value: byte.into(),
            }),
        }
    }
}

/// The most addresses an [`AddrList`] holds: a client's host candidates.
pub const MAX_CANDIDATES: usize = 8;

/// A list of addresses (a client's host candidates): either still encoded in
/// the datagram it was decoded from (validated, read lazily, nothing
/// copied), or a slice about to be encoded. At most [`MAX_CANDIDATES`].
#[derive(Clone, Copy)]
pub enum AddrList<'a> {
    /// Decoded: `count` addresses, each an `addr` of family 4 or 6, in
    /// `bytes` (already validated).
    Encoded {
        /// How many addresses `bytes` holds.
        count: u8,
        /// The addresses, back to back.
        bytes: &'a [u8],
    },
    /// To encode.
    Addrs(&'a [SocketAddr]),
}

impl<'a> AddrList<'a> {
    /// No addresses.
    pub const EMPTY: AddrList<'static> = AddrList::Addrs(&[]);

    /// How many addresses the list holds.
    pub fn len(&self) -> usize {
        match self {
            AddrList::Encoded { count, .. } => usize::from(*count),
            AddrList::Addrs(addrs) => addrs.len(),
        }
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The addresses, in order.
    pub fn iter(&self) -> AddrIter<'a> {
        match *self {
            AddrList::Encoded { bytes, .. } => AddrIter::Encoded(bytes),
            AddrList::Addrs(addrs) => AddrIter::Addrs(addrs.iter()),
        }
    }

    /// Bytes the list takes on the wire, count included.
    pub fn encoded_len(&self) -> usize {
        match self {
            AddrList::Encoded { bytes, .. } => 1 + bytes.len(),
            AddrList::Addrs(addrs) => 1 + addrs.iter().map(|a| addr_len(Some(a))).sum::<usize>(),
        }
    }

    fn validate(&self) -> Result<(), EncodeError> {
        if self.len() > MAX_CANDIDATES {
            return Err(EncodeError::InvalidValue {
                field: "candidates",
                value: u64::try_from(self.len()).unwrap_or(u64::MAX),
            });
        }
        if let AddrList::Encoded { count, bytes } = *self {
            // A caller can build this variant by hand: check it holds
            // exactly `count` addresses, as decode would.
            let mut r = Reader::new(bytes);
            let well_formed =
                (0..count).all(|_| matches!(r.addr(), Ok(Some(_)))) && r.rest().is_empty();
            if !well_formed {
                return Err(EncodeError::InvalidValue {
                    field: "candidates",
                    value: count.into(),
                });
            }
        }
        Ok(())
    }
}

impl fmt::Debug for AddrList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for AddrList<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for AddrList<'_> {}

/// Iterator over an [`AddrList`].
#[derive(Debug, Clone)]
pub enum AddrIter<'a> {
    /// Over validated `addr` fields.
    Encoded(&'a [u8]),
    /// Over a slice.
    Addrs(std::slice::Iter<'a, SocketAddr>),
}

impl Iterator for AddrIter<'_> {
    type Item = SocketAddr;

    fn next(&mut self) -> Option<SocketAddr> {
        match self {
            AddrIter::Addrs(it) => it.next().copied(),
            AddrIter::Encoded(bytes) => {
                // Validated at decode; a malformed slice (impossible through
                // `decode`) simply ends the iteration.
                let mut r = Reader::new(bytes);
                let addr = r.addr().ok()??;
                *bytes = r.rest();
                Some(addr)
            }
        }
    }
}

/// A list of names in a [`Packet::ListReply`]: either still encoded in the
/// datagram it was decoded from (validated, read lazily, nothing copied), or a
/// slice of names about to be encoded.
#[derive(Clone, Copy)]
pub enum NameList<'a> {
    /// Decoded: `count` names, each a `str8`, in `bytes` (already validated).
    Encoded {
        /// How many names `bytes` holds.
        count: u16,
        /// The names, each `str8`, back to back.
        bytes: &'a [u8],
    },
    /// To encode.
    Names(&'a [&'a str]),
}

impl<'a> NameList<'a> {
    /// How many names the list holds.
    pub fn len(&self) -> usize {
        match self {
            NameList::Encoded { count, .. } => usize::from(*count),
            NameList::Names(names) => names.len(),
        }
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The names, in order, borrowed from the datagram or the slice.
    pub fn iter(&self) -> NameIter<'a> {
        match *self {
            NameList::Encoded { bytes, .. } => NameIter::Encoded(bytes),
            NameList::Names(names) => NameIter::Names(names.iter()),
        }
    }

    /// Bytes the list takes on the wire, count included.
    pub fn encoded_len(&self) -> usize {
        match self {
            NameList::Encoded { bytes, .. } => 2 + bytes.len(),
            NameList::Names(names) => 2 + names.iter().map(|n| 1 + n.len()).sum::<usize>(),
        }
    }
}

impl fmt::Debug for NameList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for NameList<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for NameList<'_> {}

/// Iterator over a [`NameList`].
#[derive(Debug, Clone)]
pub enum NameIter<'a> {
    /// Over validated `str8` fields.
    Encoded(&'a [u8]),
    /// Over a slice.
    Names(std::slice::Iter<'a, &'a str>),
}

impl<'a> Iterator for NameIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        match self {
            NameIter::Names(it) => it.next().copied(),
            NameIter::Encoded(bytes) => {
                // Validated at decode; a malformed slice (impossible through
                // `decode`) simply ends the iteration.
                let mut r = Reader::new(bytes);
                let name = r.str8("names").ok()?;
                *bytes = r.rest();
                Some(name)
            }
        }
    }
}
/// One datagram's worth of protocol, or one sealed packet's plaintext.
/// String and byte fields borrow from the bytes it was decoded from, or from
/// the caller that builds it. `Debug` shows what the wire shows: handshakes
/// and sealed bytes are ciphertext, a cookie is sent in the clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Packet<'a> {
    /// Client asks for a cookie and the server's key.
    Hello {
        /// Request id, echoed in the Retry.
        request: u32,
    },
    /// Server asks the client to prove its address by echoing `cookie`.
    Retry {
        /// The hello's request id.
        request: u32,
        /// Opaque to the client.
        cookie: &'a [u8],
        /// The server's static public key.
        key: &'a [u8],
    },
    /// Noise IK message 1, client to server, carrying a sealed SignIn.
    ServerInit {
        /// The cookie from a Retry.
        cookie: &'a [u8],
        /// The client's index for this session.
        sender: u32,
        /// The handshake message.
        handshake: &'a [u8],
    },
    /// Noise IK message 2, server to client, carrying the sign-in's answer.
    ServerResp {
        /// The server's index for this session.
        sender: u32,
        /// The client's index, from the ServerInit.
        receiver: u32,
        /// The handshake message.
        handshake: &'a [u8],
    },
    /// A sealed packet under the receiver's session `receiver`.
    Sealed {
        /// The receiver's index for the session.
        receiver: u32,
        /// The nonce; never reused within a session.
        counter: u64,
        /// Ciphertext then tag.
        sealed: &'a [u8],
    },
    /// Noise IK message 1, client to client; the payload is the sender's name.
    PeerInit {
        /// The initiator's index for this session.
        sender: u32,
        /// The handshake message.
        handshake: &'a [u8],
    },
    /// Noise IK message 2, client to client.
    PeerResp {
        /// The responder's index for this session.
        sender: u32,
        /// The initiator's index, from the PeerInit.
        receiver: u32,
        /// The handshake message.
        handshake: &'a [u8],
    },
    /// Server could not serve a request.
    Error {
        /// The request's id; for [`ErrorCode::UnknownSession`] in the clear,
        /// the session index the server does not hold.
        request: u32,
        /// What went wrong.
        code: ErrorCode,
    },
    /// Client asks to sign in as `name` (sealed: a ServerInit's payload).
    SignIn {
        /// Request id, echoed in the reply.
        request: u32,
        /// The name to sign in as.
        name: &'a str,
        /// The server's index of the session this one replaces, or 0.
        replaces: u32,
        /// The client's host candidates: its own interface addresses with
        /// its port (at most [`MAX_CANDIDATES`]).
        candidates: AddrList<'a>,
    },
    /// Sign-in accepted.
    SignInAccepted {
        /// The sign-in's request id.
        request: u32,
        /// Where the server saw the client (its reflexive address).
        address: Option<SocketAddr>,
    },
    /// Sign-in refused.
    SignInRefused {
        /// The sign-in's request id.
        request: u32,
        /// Why.
        reason: RefuseReason,
        /// For [`RefuseReason::NameInUse`], the signed-in name that clashes
        /// with the one asked for; empty otherwise.
        holder: &'a str,
    },
    /// Client asks for a page of signed-in names.
    ListRequest {
        /// Request id.
        request: u32,
        /// Where the page starts: 0 first, then the last reply's `cursor`.
        cursor: u32,
    },
    /// A page of signed-in names.
    ListReply {
        /// The list request's id.
        request: u32,
        /// Another page follows.
        more: bool,
        /// Where the next page starts (0 when there is none).
        cursor: u32,
        /// This page's names, in the server's order.
        names: NameList<'a>,
    },
    /// Client asks where `name` is and what its key is.
    LookupRequest {
        /// Request id.
        request: u32,
        /// Whom to look up.
        name: &'a str,
        /// Whether the server should also introduce the asker to `name`
        /// (see [`Packet::Introduction`]): set when the asker means to write.
        introduce: bool,
    },
    /// Where `name` is and its key, or `None` and empty when nobody of that
    /// name is signed in.
    LookupReply {
        /// The lookup's request id.
        request: u32,
        /// The name looked up, as the server spells it.
        name: &'a str,
        /// The address its session was last heard from.
        address: Option<SocketAddr>,
        /// The static public key bound to the name (32 bytes), or empty.
        key: &'a [u8],
        /// The host candidates it registered.
        candidates: AddrList<'a>,
    },
    /// Server tells a signed-in client that `name` has looked it up to
    /// write to it, and where `name` can be reached, so that both sides send
    /// to each other at once (and their NATs let the answers in).
    Introduction {
        /// Who wants to reach the receiver, as the server spells it.
        name: &'a str,
        /// The static public key bound to that name (32 bytes).
        key: &'a [u8],
        /// Where its session with the server was last heard from (its
        /// reflexive address).
        address: Option<SocketAddr>,
        /// Its host candidates.
        candidates: AddrList<'a>,
    },
    /// Client keeps its session, or answers a probe.
    KeepAlive {
        /// Request id (the probe's, when answering one).
        request: u32,
    },
    /// Server acknowledges a keep-alive.
    KeepAliveAck {
        /// The keep-alive's request id.
        request: u32,
    },
    /// Server asks a name's holder whether it is still there.
    Probe {
        /// To be echoed in the answering keep-alive.
        request: u32,
    },
    /// Client signs out.
    SignOut {
        /// Request id.
        request: u32,
    },
    /// Server confirms the sign-out.
    SignOutAck {
        /// The sign-out's request id.
        request: u32,
    },
    /// One fragment of a chat message, client to client.
    Message {
        /// The sender's stream to this receiver.
        stream: u64,
        /// This fragment's sequence number in the stream.
        seq: u32,
        /// The lowest sequence number the sender may still send.
        base: u32,
        /// Index of this fragment in its message.
        fragment: u16,
        /// How many fragments the message has.
        fragments: u16,
        /// A slice of the message text (may cut a UTF-8 character).
        body: &'a [u8],
    },
    /// Acknowledges a range of message fragments.
    Ack {
        /// The stream acknowledged.
        stream: u64,
        /// The first sequence number acknowledged.
        first: u32,
        /// The last sequence number acknowledged (at least `first`).
        last: u32,
    },
}

/// The frames of a sealed plaintext (see [`Packet::frames`]).
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    /// What is left to read, or the error that ends the iteration.
    rest: Result<&'a [u8], DecodeError>,
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Packet<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.rest {
            Ok([]) => None,
            Ok(bytes) => match Packet::decode_prefix(bytes) {
                Ok((packet, rest)) => {
                    self.rest = Ok(rest);
                    Some(Ok(packet))
                }
                Err(e) => {
                    self.rest = Ok(&[]);
                    Some(Err(e))
                }
            },
            Err(e) => {
                self.rest = Ok(&[]);
                Some(Err(e))
            }
        }
    }
}

/// Why a datagram is not a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The datagram is empty.
    #[error("empty datagram")]
    Empty,
    /// The datagram is longer than [`MAX_DATAGRAM`].
    #[error("datagram of {0} bytes is longer than {MAX_DATAGRAM}")]
    TooLong(usize),
    /// Byte 0 is not a known packet type.
    #[error("unknown packet type 0x{0:02x}")]
    UnknownType(u8),
    /// A field runs past the end of the datagram.
    #[error("truncated {field}: needs {needed} bytes, {remaining} remain")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the datagram.
        remaining: usize,
    },
    /// Bytes remain after the last field.
    #[error("{0} trailing bytes after the packet")]
    TrailingBytes(usize),
    /// A string field is not UTF-8.
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field.
        field: &'static str,
    },
    /// A field holds a value outside its range.
    #[error("invalid {field}: {value}")]
    InvalidValue {
        /// The field.
        field: &'static str,
        /// The value found.
        value: u64,
    },
}

/// Why a packet cannot be encoded. The buffer is untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A length-prefixed field is longer than its prefix can say.
    #[error("{field} is {len} bytes, more than the {max} its length prefix allows")]
    FieldTooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// A field holds a value the format cannot carry.
    #[error("invalid {field}: {value}")]
    InvalidValue {
        /// The field.
        field: &'static str,
        /// The value.
        value: u64,
    },
    /// The whole packet would be longer than [`MAX_DATAGRAM`].
    #[error("packet of {len} bytes is longer than {MAX_DATAGRAM}")]
    TooLong {
        /// The encoded length.
        len: usize,
    },
}

impl<'a> Packet<'a> {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Hello { .. } => PacketType::Hello,
            Packet::Retry { .. } => PacketType::Retry,
            Packet::ServerInit { .. } => PacketType::ServerInit,
            Packet::ServerResp { .. } => PacketType::ServerResp,
            Packet::Sealed { .. } => PacketType::Sealed,
            Packet::PeerInit { .. } => PacketType::PeerInit,
            Packet::PeerResp { .. } => PacketType::PeerResp,
            Packet::Error { .. } => PacketType::Error,
            Packet::SignIn { .. } => PacketType::SignIn,
            Packet::SignInAccepted { .. } => PacketType::SignInAccepted,
            Packet::SignInRefused { .. } => PacketType::SignInRefused,
            Packet::ListRequest { .. } => PacketType::ListRequest,
            Packet::ListReply { .. } => PacketType::ListReply,
            Packet::LookupRequest { .. } => PacketType::LookupRequest,
            Packet::LookupReply { .. } => PacketType::LookupReply,
            Packet::KeepAlive { .. } => PacketType::KeepAlive,
            Packet::KeepAliveAck { .. } => PacketType::KeepAliveAck,
            Packet::Probe { .. } => PacketType::Probe,
            Packet::SignOut { .. } => PacketType::SignOut,
            Packet::SignOutAck { .. } => PacketType::SignOutAck,
            Packet::Introduction { .. } => PacketType::Introduction,
            Packet::Message { .. } => PacketType::Message,
            Packet::Ack { .. } => PacketType::Ack,
        }
    }

    /// Reads one packet from a whole datagram (or a sealed packet's whole
    /// plaintext), borrowing its fields from it. Allocates nothing.
    pub fn decode(datagram: &'a [u8]) -> Result<Packet<'a>, DecodeError> {
        if datagram.len() > MAX_DATAGRAM {
            return Err(DecodeError::TooLong(datagram.len()));
        }
        match Packet::decode_prefix(datagram)? {
            (packet, []) => Ok(packet),
            (_, rest) => Err(DecodeError::TrailingBytes(rest.len())),
        }
    }

    /// The frames of a sealed plaintext, in order (see the module docs'
    /// *Frames*): each item one packet, or the error that ends the
    /// iteration (nothing after a malformed frame is read). An empty
    /// plaintext has no frames. Allocates nothing.
    pub fn frames(plaintext: &'a [u8]) -> Frames<'a> {
        let rest = if plaintext.len() > MAX_DATAGRAM {
            Err(DecodeError::TooLong(plaintext.len()))
        } else {
            Ok(plaintext)
        };
        Frames { rest }
    }

    /// Reads the packet at the start of `bytes`; returns it and the bytes
    /// after it.
    #[inline(always)]
    fn decode_prefix(bytes: &'a [u8]) -> Result<(Packet<'a>, &'a [u8]), DecodeError> {
        let (&type_byte, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
        let mut r = Reader::new(body);
        let packet = match PacketType::from_byte(type_byte)? {
            PacketType::Hello => {
                let request = r.u32("request")?;
                let padding = r.take("padding", HELLO_LEN - 5)?;
                if let Some(&byte) = padding.iter().find(|&&b| b != 0) {
                    return Err(DecodeError::InvalidValue {
                        field: "padding",
                        value: byte.into(),
                    });
                }
                Packet::Hello { request }
            }
            PacketType::Retry => Packet::Retry {
                request: r.u32("request")?,
                cookie: r.bytes8("cookie")?,
                key: r.bytes8("key")?,
            },
            PacketType::ServerInit => Packet::ServerInit {
                cookie: r.bytes8("cookie")?,
                sender: r.u32("sender")?,
                handshake: r.bytes16("handshake")?,
            },
            PacketType::ServerResp => Packet::ServerResp {
                sender: r.u32("sender")?,
                receiver: r.u32("receiver")?,
                handshake: r.bytes16("handshake")?,
            },
            PacketType::Sealed => Packet::Sealed {
                receiver: r.u32("receiver")?,
                counter: r.u64("counter")?,
                sealed: r.bytes16("sealed")?,
            },
            PacketType::PeerInit => Packet::PeerInit {
                sender: r.u32("sender")?,
                handshake: r.bytes16("handshake")?,
            },
            PacketType::PeerResp => Packet::PeerResp {
                sender: r.u32("sender")?,
                receiver: r.u32("receiver")?,
                handshake: r.bytes16("handshake")?,
            },
            PacketType::Error => Packet::Error {
                request: r.u32("request")?,
                code: ErrorCode::from_byte(r.u8("code")?)?,
            },
            PacketType::SignIn => Packet::SignIn {
                request: r.u32("request")?,
                name: r.str8("name")?,
                replaces: r.u32("replaces")?,
                candidates: r.addrs()?,
            },
            PacketType::SignInAccepted => Packet::SignInAccepted {
                request: r.u32("request")?,
                address: r.addr()?,
            },
            PacketType::SignInRefused => Packet::SignInRefused {
                request: r.u32("request")?,
                reason: RefuseReason::from_byte(r.u8("reason")?)?,
                holder: r.str8("holder")?,
            },
            PacketType::ListRequest => Packet::ListRequest {
                request: r.u32("request")?,
                cursor: r.u32("cursor")?,
            },
            PacketType::ListReply => Packet::ListReply {
                request: r.u32("request")?,
                more: r.bool("more")?,
                cursor: r.u32("cursor")?,
                names: r.names()?,
            },
            PacketType::LookupRequest => Packet::LookupRequest {
                request: r.u32("request")?,
                name: r.str8("name")?,
                introduce: r.bool("introduce")?,
            },
            PacketType::LookupReply => Packet::LookupReply {
                request: r.u32("request")?,
                name: r.str8("name")?,
                address: r.addr()?,
                key: r.bytes8("key")?,
                candidates: r.addrs()?,
            },
            PacketType::Introduction => Packet::Introduction {
                name: r.str8("name")?,
                key: r.bytes8("key")?,
                address: r.addr()?,
                candidates: r.addrs()?,
            },
            PacketType::KeepAlive => Packet::KeepAlive {
                request: r.u32("request")?,
            },
            PacketType::KeepAliveAck => Packet::KeepAliveAck {
                request: r.u32("request")?,
            },
            PacketType::Probe => Packet::Probe {
                request: r.u32("request")?,
            },
            PacketType::SignOut => Packet::SignOut {
                request: r.u32("request")?,
            },
            PacketType::SignOutAck => Packet::SignOutAck {
                request: r.u32("request")?,
            },
            PacketType::Message => {
                let stream = r.u64("stream")?;
                let seq = r.u32("seq")?;
                let base = r.u32("base")?;
                let fragment = r.u16("fragment")?;
                let fragments = r.u16("fragments")?;
                if fragment >= fragments {
                    return Err(DecodeError::InvalidValue {
                        field: "fragment",
                        value: fragment.into(),
                    });
                }
                if base > seq {
                    return Err(DecodeError::InvalidValue {
                        field: "base",
                        value: base.into(),
                    });
                }
                // Returned from here, the hot path, rather than through the
                // join below: there every variant's fields are merged into
                // one value, a third of a message's decode.
                let message = Packet::Message {
                    stream,
                    seq,
                    base,
                    fragment,
                    fragments,
                    body: r.bytes16("body")?,
                };
                return Ok((message, r.rest()));
            }
            PacketType::Ack => {
                let stream = r.u64("stream")?;
                let first = r.u32("first")?;
                let last = r.u32("last")?;
                if last < first {
                    return Err(DecodeError::InvalidValue {
                        field: "last",
                        value: last.into(),
                    });
                }
                Packet::Ack {
                    stream,
                    first,
                    last,
                }
            }
        };
        Ok((packet, r.rest()))
    }

    /// Bytes [`Packet::encode`] writes, whether or not the packet is valid.
    #[inline(always)]
    pub fn encoded_len(&self) -> usize {
        1 + match self {
            Packet::Hello { .. } => HELLO_LEN - 1,
            Packet::Retry { cookie, key, .. } => 4 + 1 + cookie.len() + 1 + key.len(),
            Packet::ServerInit {
                cookie, handshake, ..
            } => 1 + cookie.len() + 4 + 2 + handshake.len(),
            Packet::ServerResp { handshake, .. } | Packet::PeerResp { handshake, .. } => {
                4 + 4 + 2 + handshake.len()
            }
            Packet::Sealed { sealed, .. } => 4 + 8 + 2 + sealed.len(),
            Packet::PeerInit { handshake, .. } => 4 + 2 + handshake.len(),
            Packet::Error { .. } => 4 + 1,
            Packet::SignIn {
                name, candidates, ..
            } => 4 + 1 + name.len() + 4 + candidates.encoded_len(),
            Packet::SignInAccepted { address, .. } => 4 + addr_len(address.as_ref()),
            Packet::SignInRefused { holder, .. } => 4 + 1 + 1 + holder.len(),
            Packet::ListRequest { .. } => 4 + 4,
            Packet::ListReply { names, .. } => 4 + 1 + 4 + names.encoded_len(),
            Packet::LookupRequest { name, .. } => 4 + 1 + name.len() + 1,
            Packet::LookupReply {
                name,
                address,
                key,
                candidates,
                ..
            } => {
                4 + 1
                    + name.len()
                    + addr_len(address.as_ref())
                    + 1
                    + key.len()
                    + candidates.encoded_len()
            }
            Packet::Introduction {
                name,
                key,
                address,
                candidates,
            } => {
                1 + name.len()
                    + 1
                    + key.len()
                    + addr_len(address.as_ref())
                    + candidates.encoded_len()
            }
            Packet::KeepAlive { .. }
            | Packet::KeepAliveAck { .. }
            | Packet::Probe { .. }
            | Packet::SignOut { .. }
            | Packet::SignOutAck { .. } => 4,
            Packet::Message { body, .. } => MESSAGE_HEADER - 1 + body.len(),
            Packet::Ack { .. } => 8 + 4 + 4,
        }
    }

    /// Checks every field and the total size, then appends the packet to
    /// `buf`. On error nothing has been written.
    pub fn encode(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        self.validate()?;
        let len = self.encoded_len();
        if len > MAX_DATAGRAM {
            return Err(EncodeError::TooLong { len });
        }
        // Grow the buffer once; append the head's room as zeros copied from
        // a constant (one copy, no call to `resize` and nothing read back),
        // and write the head's fields through a slice of it: plain stores,
        // where `BytesMut`'s own `put_*` each make a capacity check. The
        // tail (a message's text, a Sealed's ciphertext), last on the wire,
        // is appended after it, so it is copied once and never zeroed first.
        let tail: &[u8] = match self {
            Packet::Message { body, .. } => body,
            Packet::Sealed { sealed, .. } => sealed,
            _ => &[],
        };
        let head_len = len - tail.len();
        buf.reserve(len);
        let start = buf.len();
        // `head_len` <= `len` <= MAX_DATAGRAM, checked above.
        buf.extend_from_slice(&ZEROS[..head_len]);
        let mut out = &mut buf[start..];
        self.put_head(&mut out);
        debug_assert!(out.is_empty(), "encoded_len disagrees with encode");
        buf.extend_from_slice(tail);
        Ok(())
    }

    /// Writes everything but the tail (see [`Packet::encode`]); the packet
    /// has been validated.
    #[inline(always)]
    fn put_head(&self, buf: &mut impl BufMut) {
        buf.put_u8(self.packet_type() as u8);
        match *self {
            Packet::Hello { request } => {
                buf.put_u32(request);
                buf.put_bytes(0, HELLO_LEN - 5);
            }
            Packet::Retry {
                request,
                cookie,
                key,
            } => {
                buf.put_u32(request);
                put8(buf, cookie);
                put8(buf, key);
            }
            Packet::ServerInit {
                cookie,
                sender,
                handshake,
            } => {
                put8(buf, cookie);
                buf.put_u32(sender);
                put16(buf, handshake);
            }
            Packet::ServerResp {
                sender,
                receiver,
                handshake,
            }
            | Packet::PeerResp {
                sender,
                receiver,
                handshake,
            } => {
                buf.put_u32(sender);
                buf.put_u32(receiver);
                put16(buf, handshake);
            }
            Packet::Sealed {
                receiver,
                counter,
                sealed,
            } => {
                buf.put_u32(receiver);
                buf.put_u64(counter);
                // The sealed bytes are the tail, appended below.
                buf.put_u16(u16::try_from(sealed.len()).unwrap_or(u16::MAX));
            }
            Packet::PeerInit { sender, handshake } => {
                buf.put_u32(sender);
                put16(buf, handshake);
            }
            Packet::Error { request, code } => {
                buf.put_u32(request);
                buf.put_u8(code as u8);
            }
            Packet::SignIn {
                request,
                name,
                replaces,
                candidates,
            } => {
                buf.put_u32(request);
                put8(buf, name.as_bytes());
                buf.put_u32(replaces);
                put_addrs(buf, candidates);
            }
            Packet::SignInAccepted { request, address } => {
                buf.put_u32(request);
                put_addr(buf, address.as_ref());
            }
            Packet::SignInRefused {
                request,
                reason,
                holder,
            } => {
                buf.put_u32(request);
                buf.put_u8(reason as u8);
                put8(buf, holder.as_bytes());
            }
            Packet::ListRequest { request, cursor } => {
                buf.put_u32(request);
                buf.put_u32(cursor);
            }
            Packet::ListReply {
                request,
                more,
                cursor,
                names,
            } => {
                buf.put_u32(request);
                buf.put_u8(u8::from(more));
                buf.put_u32(cursor);
                // `validate` checked the count fits in u16.
                buf.put_u16(u16::try_from(names.len()).unwrap_or(u16::MAX));
                match names {
                    NameList::Encoded { bytes, .. } => buf.put_slice(bytes),
                    NameList::Names(names) => names.iter().for_each(|n| put8(buf, n.as_bytes())),
                }
            }
            Packet::LookupRequest {
                request,
                name,
                introduce,
            } => {
                buf.put_u32(request);
                put8(buf, name.as_bytes());
                buf.put_u8(u8::from(introduce));
            }
            Packet::LookupReply {
                request,
                name,
                address,
                key,
                candidates,
            } => {
                buf.put_u32(request);
                put8(buf, name.as_bytes());
                put_addr(buf, address.as_ref());
                put8(buf, key);
                put_addrs(buf, candidates);
            }
            Packet::Introduction {
                name,
                key,
                address,
                candidates,
            } => {
                put8(buf, name.as_bytes());
                put8(buf, key);
                put_addr(buf, address.as_ref());
                put_addrs(buf, candidates);
            }
            Packet::KeepAlive { request }
            | Packet::KeepAliveAck { request }
            | Packet::Probe { request }
            | Packet::SignOut { request }
            | Packet::SignOutAck { request } => buf.put_u32(request),
            Packet::Message {
                stream,
                seq,
                base,
                fragment,
                fragments,
                body,
            } => {
                buf.put_u64(stream);
                buf.put_u32(seq);
                buf.put_u32(base);
                buf.put_u16(fragment);
                buf.put_u16(fragments);
                // `validate` checked the body fits in u16; the body itself
                // is the tail, appended below.
                buf.put_u16(u16::try_from(body.len()).unwrap_or(u16::MAX));
            }
            Packet::Ack {
                stream,
                first,
                last,
            } => {
                buf.put_u64(stream);
                buf.put_u32(first);
                buf.put_u32(last);
            }
        }
    }

    /// Encodes into a fresh buffer; a convenience for tests and examples.
    pub fn to_bytes(&self) -> Result<bytes::Bytes, EncodeError> {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut buf)?;
        Ok(buf.freeze())
    }

    #[inline]
    fn validate(&self) -> Result<(), EncodeError> {
        match *self {
            Packet::Retry { cookie, key, .. } => {
                short("cookie", cookie.len())?;
                short("key", key.len())
            }
            Packet::ServerInit {
                cookie, handshake, ..
            } => {
                short("cookie", cookie.len())?;
                long("handshake", handshake.len())
            }
            Packet::ServerResp { handshake, .. }
            | Packet::PeerInit { handshake, .. }
            | Packet::PeerResp { handshake, .. } => long("handshake", handshake.len()),
            Packet::Sealed { sealed, .. } => long("sealed", sealed.len()),
            Packet::SignIn {
                name, candidates, ..
            } => {
                short("name", name.len())?;
                candidates.validate()
            }
            Packet::ListReply { names, .. } => {
                if let NameList::Encoded { count, bytes } = names {
                    // A caller can build this variant by hand: check it holds
                    // exactly `count` well-formed names, as decode would.
                    let mut r = Reader::new(bytes);
                    let well_formed =
                        (0..count).all(|_| r.str8("names").is_ok()) && r.rest().is_empty();
                    if !well_formed {
                        return Err(EncodeError::InvalidValue {
                            field: "names",
                            value: count.into(),
                        });
                    }
                }
                if names.len() > usize::from(u16::MAX) {
                    return Err(EncodeError::FieldTooLong {
                        field: "names",
                        len: names.len(),
                        max: usize::from(u16::MAX),
                    });
                }
                names.iter().try_for_each(|n| short("names", n.len()))
            }
            Packet::LookupRequest { name, .. } => short("name", name.len()),
            Packet::LookupReply {
                name,
                key,
                candidates,
                ..
            }
            | Packet::Introduction {
                name,
                key,
                candidates,
                ..
            } => {
                short("name", name.len())?;
                short("key", key.len())?;
                candidates.validate()
            }
            Packet::Message {
                seq,
                base,
                fragment,
                fragments,
                body,
                ..
            } => {
                if fragment >= fragments {
                    return Err(EncodeError::InvalidValue {
                        field: "fragment",
                        value: fragment.into(),
                    });
                }
                if base > seq {
                    return Err(EncodeError::InvalidValue {
                        field: "base",
                        value: base.into(),
                    });
                }
                long("body", body.len())
            }
            Packet::SignInRefused { holder, .. } => short("holder", holder.len()),
            Packet::Ack { first, last, .. } if last < first => Err(EncodeError::InvalidValue {
                field: "last",
                value: last.into(),
            }),
            Packet::Hello { .. }
            | Packet::Error { .. }
            | Packet::SignInAccepted { .. }
            | Packet::ListRequest { .. }
            | Packet::KeepAlive { .. }
            | Packet::KeepAliveAck { .. }
            | Packet::Probe { .. }
            | Packet::SignOut { .. }
            | Packet::SignOutAck { .. }
            | Packet::Ack { .. } => Ok(()),
        }
    }
}

fn long(field: &'static str, len: usize) -> Result<(), EncodeError> {
    if len > usize::from(u16::MAX) {
        Err(EncodeError::FieldTooLong {
            field,
            len,
            max: usize::from(u16::MAX),
        })
    } else {
        Ok(())
    }
}

/// Writes a `u16` length then the bytes; the caller has validated the length.
#[inline]
fn put16(buf: &mut impl BufMut, bytes: &[u8]) {
    buf.put_u16(u16::try_from(bytes.len()).unwrap_or(u16::MAX));
    buf.put_slice(bytes);
}

fn short(field: &'static str, len: usize) -> Result<(), EncodeError> {
    if len > MAX_SHORT_FIELD {
        Err(EncodeError::FieldTooLong {
            field,
            len,
            max: MAX_SHORT_FIELD,
        })
    } else {
        Ok(())
    }
}

/// Writes a `u8` length then the bytes; the caller has validated the length.
#[inline]
fn put8(buf: &mut impl BufMut, bytes: &[u8]) {
    buf.put_u8(u8::try_from(bytes.len()).unwrap_or(u8::MAX));
    buf.put_slice(bytes);
}

fn addr_len(addr: Option<&SocketAddr>) -> usize {
    match addr {
        None => 1,
        Some(SocketAddr::V4(_)) => 1 + 4 + 2,
        Some(SocketAddr::V6(_)) => 1 + 16 + 2,
    }
}

#[inline]
fn put_addr(buf: &mut impl BufMut, addr: Option<&SocketAddr>) {
    match addr {
        None => buf.put_u8(0),
        Some(SocketAddr::V4(a)) => {
            buf.put_u8(4);
            buf.put_slice(&a.ip().octets());
            buf.put_u16(a.port());
        }
        Some(SocketAddr::V6(a)) => {
            buf.put_u8(6);
            buf.put_slice(&a.ip().octets());
            buf.put_u16(a.port());
        }
    }
}

/// Writes an address list; the caller has validated its length.
fn put_addrs(buf: &mut impl BufMut, addrs: AddrList<'_>) {
    buf.put_u8(u8::try_from(addrs.len()).unwrap_or(u8::MAX));
    match addrs {
        AddrList::Encoded { bytes, .. } => buf.put_slice(bytes),
        AddrList::Addrs(addrs) => addrs.iter().for_each(|a| put_addr(buf, Some(a))),
    }
}

/// A cursor over a datagram that checks every length before using it.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn rest(&self) -> &'a [u8] {
        self.buf
    }

    fn take(&mut self, field: &'static str, needed: usize) -> Result<&'a [u8], DecodeError> {
        if needed > self.buf.len() {
            return Err(DecodeError::Truncated {
                field,
                needed,
                remaining: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(needed);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(field, N)?);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeError::InvalidValue {
                field,
                value: value.into(),
            }),
        }
    }

    fn bytes8(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u8(field)?;
        self.take(field, usize::from(len))
    }

    fn bytes16(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u16(field)?;
        self.take(field, usize::from(len))
    }

    fn str8(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let bytes = self.bytes8(field)?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8 { field })
    }

    fn names(&mut self) -> Result<NameList<'a>, DecodeError> {
        let count = self.u16("names")?;
        let start = self.buf;
        for _ in 0..count {
            self.str8("names")?;
        }
        let used = start.len() - self.buf.len();
        Ok(NameList::Encoded {
            count,
            bytes: &start[..used],
        })
    }

    fn addrs(&mut self) -> Result<AddrList<'a>, DecodeError> {
        let count = self.u8("candidates")?;
        if usize::from(count) > MAX_CANDIDATES {
            return Err(DecodeError::InvalidValue {
                field: "candidates",
                value: count.into(),
            });
        }
        let start = self.buf;
        for _ in 0..count {
            if self.addr()?.is_none() {
                return Err(DecodeError::InvalidValue {
                    field: "candidates",
                    value: 0,
                });
            }
        }
        let used = start.len() - self.buf.len();
        Ok(AddrList::Encoded {
            count,
            bytes: &start[..used],
        })
    }

    fn addr(&mut self) -> Result<Option<SocketAddr>, DecodeError> {
        match self.u8("address")? {
            0 => Ok(None),
            4 => {
                let ip = Ipv4Addr::from(self.array::<4>("address")?);
                Ok(Some(SocketAddr::new(IpAddr::V4(ip), self.u16("port")?)))
            }
            6 => {
                let ip = Ipv6Addr::from(self.array::<16>("address")?);
                Ok(Some(SocketAddr::new(IpAddr::V6(ip), self.u16("port")?)))
            }
            family => Err(DecodeError::InvalidValue {
                field: "address family",
                value: family.into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests;
