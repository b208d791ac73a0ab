//! The wire format: one datagram is one [`Packet`].
//!
//! [`Packet::decode`] borrows every string and byte field from the datagram and
//! allocates nothing; [`Packet::encode`] measures first and writes second, so a
//! failed encode leaves the buffer as it was. The format is canonical: when
//! `Packet::decode(b)` succeeds, encoding the result gives `b` back, byte for
//! byte. Trailing bytes, unknown packet types, out-of-range enum values and
//! non-canonical booleans are errors. No datagram is longer than
//! [`MAX_DATAGRAM`] bytes.
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
//! | `names` | `u16` count, then `count` × `str8` |
//!
//! Every packet starts with its type byte. `request` is the id a client puts on
//! a request; the server copies it into the reply, so late and duplicate
//! replies can be told apart. `token` is the session token the server issued at
//! sign-in (16 bytes in practice; empty before sign-in).
//!
//! # Directory packets (client ⇄ server)
//!
//! **0x01 SignIn** (client → server). `cookie` is empty on the first attempt
//! and echoes a [`Packet::Retry`] cookie afterwards.
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x01 |
//! | request | `u32` |
//! | name | `str8` |
//! | cookie | `bytes8` |
//!
//! **0x02 Retry** (server → client): prove you receive at your address by
//! signing in again with this cookie.
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x02 |
//! | request | `u32` |
//! | cookie | `bytes8` |
//!
//! **0x03 SignInAccepted** (server → client)
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x03 |
//! | request | `u32` |
//! | token | `bytes8` |
//!
//! **0x04 SignInRefused** (server → client). For "name in use", `holder` is
//! the signed-in name the requested one clashes with, as its holder spells it
//! (it may differ: `Аlice` with a Cyrillic А clashes with `Alice`); empty for
//! the other reasons.
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x04 |
//! | request | `u32` |
//! | reason | `u8`: 1 name in use, 2 invalid name, 3 server full |
//! | holder | `str8` |
//!
//! **0x05 ListRequest** (client → server): a page of the signed-in names,
//! from `cursor` on: 0 for the first page, then the `cursor` of the page
//! before. The cursor is the server's; a name signed in throughout a walk is
//! listed exactly once, in no particular order.
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x05 |
//! | request | `u32` |
//! | token | `bytes8` |
//! | cursor | `u32` |
//!
//! **0x06 ListReply** (server → client): one page; `more` says whether
//! another page follows, to be asked for with `cursor`.
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x06 |
//! | request | `u32` |
//! | more | `bool` |
//! | cursor | `u32` (0 when `more` is false) |
//! | names | `names` |
//!
//! **0x07 LookupRequest** (client → server)
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x07 |
//! | request | `u32` |
//! | token | `bytes8` |
//! | name | `str8` |
//!
//! **0x08 LookupReply** (server → client): the address `name` signed in from,
//! or family 0 when nobody of that name is signed in.
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x08 |
//! | request | `u32` |
//! | name | `str8` |
//! | address | `addr` |
//!
//! **0x09 KeepAlive** (client → server): refreshes the session; also the
//! answer to a [`Packet::Probe`], with the probe's `request`.
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x09 |
//! | request | `u32` |
//! | token | `bytes8` |
//!
//! **0x0A KeepAliveAck** (server → client)
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x0A |
//! | request | `u32` |
//!
//! **0x0B Probe** (server → client): are you still there? Sent to a name's
//! holder when another address asks for the name.
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x0B |
//! | request | `u32` |
//!
//! **0x0C SignOut** (client → server)
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x0C |
//! | request | `u32` |
//! | token | `bytes8` |
//!
//! **0x0D SignOutAck** (server → client)
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x0D |
//! | request | `u32` |
//!
//! **0x0E Error** (server → client)
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x0E |
//! | request | `u32` |
//! | code | `u8`: 1 unknown session, 2 bad request |
//!
//! # Peer packets (client ⇄ client)
//!
//! **0x10 Message**: one fragment of a message. Each fragment has its own
//! `seq` in the sender's `stream` to this receiver; a message is `fragments`
//! consecutive sequence numbers, `fragment` counting from 0. `body` is a slice
//! of the message's UTF-8 text, cut at any byte.
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x10 |
//! | stream | `u64` |
//! | seq | `u32` |
//! | fragment | `u16` |
//! | fragments | `u16` (at least 1, more than `fragment`) |
//! | from | `str8` |
//! | body | `bytes16` |
//!
//! **0x11 Ack**: the receiver has `seq` of `stream`.
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x11 |
//! | stream | `u64` |
//! | seq | `u32` |

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{BufMut, BytesMut};
use thiserror::Error;

/// No datagram this crate sends or accepts is longer than this (QUIC's safe size).
pub const MAX_DATAGRAM: usize = 1200;

/// The longest `str8` / `bytes8` field.
pub const MAX_SHORT_FIELD: usize = u8::MAX as usize;

/// The most message-text bytes one [`Packet::Message`] carries, whatever the
/// sender's name: 1200 less the largest possible header.
pub const MAX_FRAGMENT_BODY: usize = MAX_DATAGRAM - MESSAGE_HEADER_MAX;

/// Header of a Message with the longest possible `from` (255 bytes).
const MESSAGE_HEADER_MAX: usize = 1 + 8 + 4 + 2 + 2 + 1 + MAX_SHORT_FIELD + 2;

/// The type byte of each packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// [`Packet::SignIn`]
    SignIn = 0x01,
    /// [`Packet::Retry`]
    Retry = 0x02,
    /// [`Packet::SignInAccepted`]
    SignInAccepted = 0x03,
    /// [`Packet::SignInRefused`]
    SignInRefused = 0x04,
    /// [`Packet::ListRequest`]
    ListRequest = 0x05,
    /// [`Packet::ListReply`]
    ListReply = 0x06,
    /// [`Packet::LookupRequest`]
    LookupRequest = 0x07,
    /// [`Packet::LookupReply`]
    LookupReply = 0x08,
    /// [`Packet::KeepAlive`]
    KeepAlive = 0x09,
    /// [`Packet::KeepAliveAck`]
    KeepAliveAck = 0x0A,
    /// [`Packet::Probe`]
    Probe = 0x0B,
    /// [`Packet::SignOut`]
    SignOut = 0x0C,
    /// [`Packet::SignOutAck`]
    SignOutAck = 0x0D,
    /// [`Packet::Error`]
    Error = 0x0E,
    /// [`Packet::Message`]
    Message = 0x10,
    /// [`Packet::Ack`]
    Ack = 0x11,
}

impl PacketType {
    /// Every packet type, in type-byte order.
    pub const ALL: [PacketType; 16] = [
        PacketType::SignIn,
        PacketType::Retry,
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
        PacketType::Error,
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

    /// A short lowercase name, for logs.
    pub fn name(self) -> &'static str {
        match self {
            PacketType::SignIn => "sign-in",
            PacketType::Retry => "retry",
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
            PacketType::Error => "error",
            PacketType::Message => "message",
            PacketType::Ack => "ack",
        }
    }
}

/// Why the server refused a sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RefuseReason {
    /// A live client at another address holds the name.
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
    /// The token is missing, wrong, or not for this address: sign in again.
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

/// One datagram's worth of protocol. String and byte fields borrow from the
/// datagram it was decoded from, or from the caller that builds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    /// Client asks to sign in as `name`.
    SignIn {
        /// Request id, echoed in the reply.
        request: u32,
        /// The name to sign in as.
        name: &'a str,
        /// Empty, or the cookie from a [`Packet::Retry`].
        cookie: &'a [u8],
    },
    /// Server asks the client to prove its address by echoing `cookie`.
    Retry {
        /// The sign-in's request id.
        request: u32,
        /// Opaque to the client.
        cookie: &'a [u8],
    },
    /// Sign-in accepted.
    SignInAccepted {
        /// The sign-in's request id.
        request: u32,
        /// The session token to put on every later request.
        token: &'a [u8],
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
        /// Session token.
        token: &'a [u8],
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
    /// Client asks where `name` is.
    LookupRequest {
        /// Request id.
        request: u32,
        /// Session token.
        token: &'a [u8],
        /// Whom to look up.
        name: &'a str,
    },
    /// Where `name` is, or `None` when nobody of that name is signed in.
    LookupReply {
        /// The lookup's request id.
        request: u32,
        /// The name looked up, as the server spells it.
        name: &'a str,
        /// The address it signed in from.
        address: Option<SocketAddr>,
    },
    /// Client refreshes its session, or answers a probe.
    KeepAlive {
        /// Request id (the probe's, when answering one).
        request: u32,
        /// Session token.
        token: &'a [u8],
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
        /// Session token.
        token: &'a [u8],
    },
    /// Server confirms the sign-out (also sent when there was no session).
    SignOutAck {
        /// The sign-out's request id.
        request: u32,
    },
    /// Server could not serve a request.
    Error {
        /// The request's id.
        request: u32,
        /// What went wrong.
        code: ErrorCode,
    },
    /// One fragment of a chat message, client to client.
    Message {
        /// The sender's stream to this receiver.
        stream: u64,
        /// This fragment's sequence number in the stream.
        seq: u32,
        /// Index of this fragment in its message.
        fragment: u16,
        /// How many fragments the message has.
        fragments: u16,
        /// The sender's name.
        from: &'a str,
        /// A slice of the message text (may cut a UTF-8 character).
        body: &'a [u8],
    },
    /// Acknowledges one message fragment.
    Ack {
        /// The stream acknowledged.
        stream: u64,
        /// The sequence number acknowledged.
        seq: u32,
    },
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
            Packet::SignIn { .. } => PacketType::SignIn,
            Packet::Retry { .. } => PacketType::Retry,
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
            Packet::Error { .. } => PacketType::Error,
            Packet::Message { .. } => PacketType::Message,
            Packet::Ack { .. } => PacketType::Ack,
        }
    }

    /// Reads one packet from a whole datagram, borrowing its fields from it.
    /// Allocates nothing.
    pub fn decode(datagram: &'a [u8]) -> Result<Packet<'a>, DecodeError> {
        if datagram.len() > MAX_DATAGRAM {
            return Err(DecodeError::TooLong(datagram.len()));
        }
        let (&type_byte, body) = datagram.split_first().ok_or(DecodeError::Empty)?;
        let mut r = Reader::new(body);
        let packet = match PacketType::from_byte(type_byte)? {
            PacketType::SignIn => Packet::SignIn {
                request: r.u32("request")?,
                name: r.str8("name")?,
                cookie: r.bytes8("cookie")?,
            },
            PacketType::Retry => Packet::Retry {
                request: r.u32("request")?,
                cookie: r.bytes8("cookie")?,
            },
            PacketType::SignInAccepted => Packet::SignInAccepted {
                request: r.u32("request")?,
                token: r.bytes8("token")?,
            },
            PacketType::SignInRefused => Packet::SignInRefused {
                request: r.u32("request")?,
                reason: RefuseReason::from_byte(r.u8("reason")?)?,
                holder: r.str8("holder")?,
            },
            PacketType::ListRequest => Packet::ListRequest {
                request: r.u32("request")?,
                token: r.bytes8("token")?,
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
                token: r.bytes8("token")?,
                name: r.str8("name")?,
            },
            PacketType::LookupReply => Packet::LookupReply {
                request: r.u32("request")?,
                name: r.str8("name")?,
                address: r.addr()?,
            },
            PacketType::KeepAlive => Packet::KeepAlive {
                request: r.u32("request")?,
                token: r.bytes8("token")?,
            },
            PacketType::KeepAliveAck => Packet::KeepAliveAck {
                request: r.u32("request")?,
            },
            PacketType::Probe => Packet::Probe {
                request: r.u32("request")?,
            },
            PacketType::SignOut => Packet::SignOut {
                request: r.u32("request")?,
                token: r.bytes8("token")?,
            },
            PacketType::SignOutAck => Packet::SignOutAck {
                request: r.u32("request")?,
            },
            PacketType::Error => Packet::Error {
                request: r.u32("request")?,
                code: ErrorCode::from_byte(r.u8("code")?)?,
            },
            PacketType::Message => {
                let stream = r.u64("stream")?;
                let seq = r.u32("seq")?;
                let fragment = r.u16("fragment")?;
                let fragments = r.u16("fragments")?;
                if fragment >= fragments {
                    return Err(DecodeError::InvalidValue {
                        field: "fragment",
                        value: fragment.into(),
                    });
                }
                Packet::Message {
                    stream,
                    seq,
                    fragment,
                    fragments,
                    from: r.str8("from")?,
                    body: r.bytes16("body")?,
                }
            }
            PacketType::Ack => Packet::Ack {
                stream: r.u64("stream")?,
                seq: r.u32("seq")?,
            },
        };
        match r.rest().len() {
            0 => Ok(packet),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }

    /// Bytes [`Packet::encode`] writes, whether or not the packet is valid.
    #[inline]
    pub fn encoded_len(&self) -> usize {
        1 + match self {
            Packet::SignIn { name, cookie, .. } => 4 + 1 + name.len() + 1 + cookie.len(),
            Packet::Retry { cookie, .. } => 4 + 1 + cookie.len(),
            Packet::SignInAccepted { token, .. } => 4 + 1 + token.len(),
            Packet::SignInRefused { holder, .. } => 4 + 1 + 1 + holder.len(),
            Packet::Error { .. } => 4 + 1,
            Packet::ListRequest { token, .. } => 4 + 1 + token.len() + 4,
            Packet::ListReply { names, .. } => 4 + 1 + 4 + names.encoded_len(),
            Packet::LookupRequest { token, name, .. } => 4 + 1 + token.len() + 1 + name.len(),
            Packet::LookupReply { name, address, .. } => {
                4 + 1 + name.len() + addr_len(address.as_ref())
            }
            Packet::KeepAlive { token, .. } | Packet::SignOut { token, .. } => 4 + 1 + token.len(),
            Packet::KeepAliveAck { .. } | Packet::Probe { .. } | Packet::SignOutAck { .. } => 4,
            Packet::Message { from, body, .. } => 8 + 4 + 2 + 2 + 1 + from.len() + 2 + body.len(),
            Packet::Ack { .. } => 8 + 4,
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
        // Grow the buffer once, then write through a slice of exactly the
        // bytes before the tail: the slice's fixed-size writes compile to
        // plain stores, where `BytesMut`'s own `put_*` each make a capacity
        // check and a call. A message's text, last on the wire, is appended
        // after, so it is copied once and never zeroed first.
        let tail: &[u8] = match self {
            Packet::Message { body, .. } => body,
            _ => &[],
        };
        let start = buf.len();
        let whole = buf;
        whole.reserve(len);
        whole.resize(start + len - tail.len(), 0);
        let mut out = &mut whole[start..];
        let buf = &mut out;
        buf.put_u8(self.packet_type() as u8);
        match *self {
            Packet::SignIn {
                request,
                name,
                cookie,
            } => {
                buf.put_u32(request);
                put8(buf, name.as_bytes());
                put8(buf, cookie);
            }
            Packet::Retry { request, cookie } => {
                buf.put_u32(request);
                put8(buf, cookie);
            }
            Packet::SignInAccepted { request, token } => {
                buf.put_u32(request);
                put8(buf, token);
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
            Packet::ListRequest {
                request,
                token,
                cursor,
            } => {
                buf.put_u32(request);
                put8(buf, token);
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
                token,
                name,
            } => {
                buf.put_u32(request);
                put8(buf, token);
                put8(buf, name.as_bytes());
            }
            Packet::LookupReply {
                request,
                name,
                address,
            } => {
                buf.put_u32(request);
                put8(buf, name.as_bytes());
                put_addr(buf, address.as_ref());
            }
            Packet::KeepAlive { request, token } | Packet::SignOut { request, token } => {
                buf.put_u32(request);
                put8(buf, token);
            }
            Packet::KeepAliveAck { request }
            | Packet::Probe { request }
            | Packet::SignOutAck { request } => buf.put_u32(request),
            Packet::Error { request, code } => {
                buf.put_u32(request);
                buf.put_u8(code as u8);
            }
            Packet::Message {
                stream,
                seq,
                fragment,
                fragments,
                from,
                body,
            } => {
                buf.put_u64(stream);
                buf.put_u32(seq);
                buf.put_u16(fragment);
                buf.put_u16(fragments);
                put8(buf, from.as_bytes());
                // `validate` checked the body fits in u16; the body itself
                // is the tail, appended below.
                buf.put_u16(u16::try_from(body.len()).unwrap_or(u16::MAX));
            }
            Packet::Ack { stream, seq } => {
                buf.put_u64(stream);
                buf.put_u32(seq);
            }
        }
        debug_assert!(buf.is_empty(), "encoded_len disagrees with encode");
        whole.extend_from_slice(tail);
        Ok(())
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
            Packet::SignIn { name, cookie, .. } => {
                short("name", name.len())?;
                short("cookie", cookie.len())
            }
            Packet::Retry { cookie, .. } => short("cookie", cookie.len()),
            Packet::SignInAccepted { token, .. }
            | Packet::KeepAlive { token, .. }
            | Packet::SignOut { token, .. } => short("token", token.len()),
            Packet::ListRequest { token, .. } => short("token", token.len()),
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
            Packet::LookupRequest { token, name, .. } => {
                short("token", token.len())?;
                short("name", name.len())
            }
            Packet::LookupReply { name, .. } => short("name", name.len()),
            Packet::Message {
                fragment,
                fragments,
                from,
                body,
                ..
            } => {
                if fragment >= fragments {
                    return Err(EncodeError::InvalidValue {
                        field: "fragment",
                        value: fragment.into(),
                    });
                }
                short("from", from.len())?;
                if body.len() > usize::from(u16::MAX) {
                    return Err(EncodeError::FieldTooLong {
                        field: "body",
                        len: body.len(),
                        max: usize::from(u16::MAX),
                    });
                }
                Ok(())
            }
            Packet::SignInRefused { holder, .. } => short("holder", holder.len()),
            Packet::KeepAliveAck { .. }
            | Packet::Probe { .. }
            | Packet::SignOutAck { .. }
            | Packet::Error { .. }
            | Packet::Ack { .. } => Ok(()),
        }
    }
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
mod tests {
    use super::*;
    use std::net::{SocketAddrV4, SocketAddrV6};

    /// Bytes a buffer holds before an encode, to check encodes append and
    /// failed encodes leave it alone.
    const PREFIX: &[u8] = b"already here";

    fn prefilled() -> BytesMut {
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(PREFIX);
        buf
    }

    /// `packet` decodes from exactly `bytes` and encodes back to them.
    #[track_caller]
    fn check_vector(bytes: &[u8], packet: Packet<'_>) {
        assert_eq!(Packet::decode(bytes), Ok(packet), "decode of {bytes:02x?}");
        assert_eq!(
            packet.encoded_len(),
            bytes.len(),
            "encoded_len of {packet:?}"
        );
        let mut buf = prefilled();
        assert_eq!(packet.encode(&mut buf), Ok(()), "encode of {packet:?}");
        assert_eq!(&buf[..PREFIX.len()], PREFIX, "encode overwrote the buffer");
        assert_eq!(&buf[PREFIX.len()..], bytes, "encode of {packet:?}");
        assert_eq!(packet.to_bytes().as_deref(), Ok(bytes));
    }

    /// A failed encode leaves the buffer as it was: same bytes, same capacity.
    #[track_caller]
    fn check_encode_error(packet: Packet<'_>, expected: EncodeError) {
        let mut buf = prefilled();
        let capacity = buf.capacity();
        assert_eq!(packet.encode(&mut buf), Err(expected));
        assert_eq!(&buf[..], PREFIX, "a failed encode wrote to the buffer");
        assert_eq!(buf.capacity(), capacity, "a failed encode grew the buffer");
        assert_eq!(packet.to_bytes(), Err(expected));
    }

    #[track_caller]
    fn check_truncated(bytes: &[u8], field: &'static str, needed: usize, remaining: usize) {
        assert_eq!(
            Packet::decode(bytes),
            Err(DecodeError::Truncated {
                field,
                needed,
                remaining
            }),
            "decode of {bytes:02x?}"
        );
    }

    const ALICE_V4: SocketAddr =
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 51234));
    const BOB_V6: SocketAddr = SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::new(0x2001, 0x0db8, 0, 0, 0, 0, 0, 0x0001),
        9090,
        0,
        0,
    ));

    /// One byte-exact vector per packet type (and per address family / enum
    /// value where a packet has them).
    fn vectors() -> Vec<(&'static [u8], Packet<'static>)> {
        vec![
            (
                &[
                    0x01, // type: SignIn
                    0x00, 0x00, 0x00, 0x07, // request = 7
                    0x05, b'A', b'l', b'i', b'c', b'e', // name: len 5, "Alice"
                    0x00, // cookie: len 0
                ],
                Packet::SignIn {
                    request: 7,
                    name: "Alice",
                    cookie: b"",
                },
            ),
            (
                &[
                    0x01, // type: SignIn
                    0x01, 0x02, 0x03, 0x04, // request = 0x01020304
                    0x04, b'Z', b'o', 0xc3, 0xab, // name: len 4, "Zoë" (ë is 2 bytes)
                    0x04, 0xde, 0xad, 0xbe, 0xef, // cookie: len 4, de ad be ef
                ],
                Packet::SignIn {
                    request: 0x0102_0304,
                    name: "Zoë",
                    cookie: &[0xde, 0xad, 0xbe, 0xef],
                },
            ),
            (
                &[
                    0x02, // type: Retry
                    0x00, 0x00, 0x00, 0x09, // request = 9
                    0x04, 0xc0, 0x0c, 0x1e, 0x55, // cookie: len 4, c0 0c 1e 55
                ],
                Packet::Retry {
                    request: 9,
                    cookie: &[0xc0, 0x0c, 0x1e, 0x55],
                },
            ),
            (
                &[
                    0x03, // type: SignInAccepted
                    0x00, 0x00, 0x01, 0x00, // request = 256
                    0x10, // token: len 16
                    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, // token bytes 0..8
                    0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, // token bytes 8..16
                ],
                Packet::SignInAccepted {
                    request: 256,
                    token: &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
                },
            ),
            (
                &[
                    0x04, // type: SignInRefused
                    0x00, 0x00, 0x00, 0x01, // request = 1
                    0x01, // reason = 1, name in use
                    0x06, 0xd0, 0x90, b'l', b'i', b'c',
                    b'e', // holder: len 6, "Аlice" (Cyrillic А)
                ],
                Packet::SignInRefused {
                    request: 1,
                    reason: RefuseReason::NameInUse,
                    holder: "\u{410}lice",
                },
            ),
            (
                &[
                    0x04, // type: SignInRefused
                    0x00, 0x00, 0x00, 0x02, // request = 2
                    0x02, // reason = 2, invalid name
                    0x00, // holder: len 0
                ],
                Packet::SignInRefused {
                    request: 2,
                    reason: RefuseReason::InvalidName,
                    holder: "",
                },
            ),
            (
                &[
                    0x04, // type: SignInRefused
                    0x00, 0x00, 0x00, 0x03, // request = 3
                    0x03, // reason = 3, server full
                    0x00, // holder: len 0
                ],
                Packet::SignInRefused {
                    request: 3,
                    reason: RefuseReason::ServerFull,
                    holder: "",
                },
            ),
            (
                &[
                    0x05, // type: ListRequest
                    0x00, 0x00, 0x00, 0x02, // request = 2
                    0x02, 0xab, 0xcd, // token: len 2, ab cd
                    0x00, 0x00, 0x01, 0x2c, // cursor = 300
                ],
                Packet::ListRequest {
                    request: 2,
                    token: &[0xab, 0xcd],
                    cursor: 300,
                },
            ),
            (
                &[
                    0x05, // type: ListRequest
                    0x00, 0x00, 0x00, 0x00, // request = 0
                    0x00, // token: len 0
                    0x00, 0x00, 0x00, 0x00, // cursor = 0 (first page)
                ],
                Packet::ListRequest {
                    request: 0,
                    token: b"",
                    cursor: 0,
                },
            ),
            (
                &[
                    0x06, // type: ListReply
                    0x00, 0x00, 0x00, 0x03, // request = 3
                    0x01, // more = true
                    0x00, 0x00, 0x00, 0x07, // cursor = 7
                    0x00, 0x02, // names: count 2
                    0x03, b'B', b'o', b'b', // name 0: len 3, "Bob"
                    0x06, b'C', b'a', b'r', b'o', b'l', b'e', // name 1: len 6, "Carole"
                ],
                Packet::ListReply {
                    request: 3,
                    more: true,
                    cursor: 7,
                    names: NameList::Names(&["Bob", "Carole"]),
                },
            ),
            (
                &[
                    0x06, // type: ListReply
                    0x00, 0x00, 0x00, 0x04, // request = 4
                    0x00, // more = false
                    0x00, 0x00, 0x00, 0x00, // cursor = 0
                    0x00, 0x00, // names: count 0
                ],
                Packet::ListReply {
                    request: 4,
                    more: false,
                    cursor: 0,
                    names: NameList::Names(&[]),
                },
            ),
            (
                &[
                    0x07, // type: LookupRequest
                    0x00, 0x00, 0x00, 0x05, // request = 5
                    0x01, 0x7f, // token: len 1, 7f
                    0x05, b'A', b'l', b'i', b'c', b'e', // name: len 5, "Alice"
                ],
                Packet::LookupRequest {
                    request: 5,
                    token: &[0x7f],
                    name: "Alice",
                },
            ),
            (
                &[
                    0x08, // type: LookupReply
                    0x00, 0x00, 0x00, 0x06, // request = 6
                    0x05, b'A', b'l', b'i', b'c', b'e', // name: len 5, "Alice"
                    0x04, // address family 4
                    0x7f, 0x00, 0x00, 0x01, // IPv4 127.0.0.1
                    0xc8, 0x22, // port 51234
                ],
                Packet::LookupReply {
                    request: 6,
                    name: "Alice",
                    address: Some(ALICE_V4),
                },
            ),
            (
                &[
                    0x08, // type: LookupReply
                    0x00, 0x00, 0x00, 0x06, // request = 6
                    0x03, b'B', b'o', b'b', // name: len 3, "Bob"
                    0x06, // address family 6
                    0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // IPv6 2001:db8:0:0:
                    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, //      0:0:0:1
                    0x23, 0x82, // port 9090
                ],
                Packet::LookupReply {
                    request: 6,
                    name: "Bob",
                    address: Some(BOB_V6),
                },
            ),
            (
                &[
                    0x08, // type: LookupReply
                    0x00, 0x00, 0x00, 0x07, // request = 7
                    0x03, b'E', b'v', b'e', // name: len 3, "Eve"
                    0x00, // address family 0: nobody of that name
                ],
                Packet::LookupReply {
                    request: 7,
                    name: "Eve",
                    address: None,
                },
            ),
            (
                &[
                    0x09, // type: KeepAlive
                    0xff, 0xff, 0xff, 0xff, // request = u32::MAX
                    0x02, 0x01, 0x02, // token: len 2, 01 02
                ],
                Packet::KeepAlive {
                    request: u32::MAX,
                    token: &[1, 2],
                },
            ),
            (
                &[
                    0x0a, // type: KeepAliveAck
                    0x00, 0x00, 0x00, 0x2a, // request = 42
                ],
                Packet::KeepAliveAck { request: 42 },
            ),
            (
                &[
                    0x0b, // type: Probe
                    0x80, 0x00, 0x00, 0x00, // request = 0x80000000
                ],
                Packet::Probe {
                    request: 0x8000_0000,
                },
            ),
            (
                &[
                    0x0c, // type: SignOut
                    0x00, 0x00, 0x00, 0x0b, // request = 11
                    0x01, 0x99, // token: len 1, 99
                ],
                Packet::SignOut {
                    request: 11,
                    token: &[0x99],
                },
            ),
            (
                &[
                    0x0d, // type: SignOutAck
                    0x00, 0x00, 0x00, 0x0b, // request = 11
                ],
                Packet::SignOutAck { request: 11 },
            ),
            (
                &[
                    0x0e, // type: Error
                    0x00, 0x00, 0x00, 0x0c, // request = 12
                    0x01, // code = 1, unknown session
                ],
                Packet::Error {
                    request: 12,
                    code: ErrorCode::UnknownSession,
                },
            ),
            (
                &[
                    0x0e, // type: Error
                    0x00, 0x00, 0x00, 0x0d, // request = 13
                    0x02, // code = 2, bad request
                ],
                Packet::Error {
                    request: 13,
                    code: ErrorCode::BadRequest,
                },
            ),
            (
                &[
                    0x10, // type: Message
                    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // stream = 0x0102..08
                    0x00, 0x00, 0x00, 0x2a, // seq = 42
                    0x00, 0x01, // fragment = 1
                    0x00, 0x03, // fragments = 3
                    0x05, b'A', b'l', b'i', b'c', b'e', // from: len 5, "Alice"
                    0x00, 0x05, b'h', b'e', b'l', b'l', b'o', // body: len 5, "hello"
                ],
                Packet::Message {
                    stream: 0x0102_0304_0506_0708,
                    seq: 42,
                    fragment: 1,
                    fragments: 3,
                    from: "Alice",
                    body: b"hello",
                },
            ),
            (
                &[
                    0x10, // type: Message
                    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // stream = 0
                    0x00, 0x00, 0x00, 0x00, // seq = 0
                    0x00, 0x00, // fragment = 0
                    0x00, 0x01, // fragments = 1
                    0x01, b'B', // from: len 1, "B"
                    0x00, 0x01, 0xc3, // body: len 1, c3 (half a UTF-8 character is allowed)
                ],
                Packet::Message {
                    stream: 0,
                    seq: 0,
                    fragment: 0,
                    fragments: 1,
                    from: "B",
                    body: &[0xc3],
                },
            ),
            (
                &[
                    0x11, // type: Ack
                    0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88, // stream = 0xffee..88
                    0x12, 0x34, 0x56, 0x78, // seq = 0x12345678
                ],
                Packet::Ack {
                    stream: 0xffee_ddcc_bbaa_9988,
                    seq: 0x1234_5678,
                },
            ),
        ]
    }

    #[test]
    fn vectors_decode_and_encode_byte_exact() {
        for (bytes, packet) in vectors() {
            check_vector(bytes, packet);
        }
    }

    #[test]
    fn vectors_cover_every_packet_type() {
        let vectors = vectors();
        for t in PacketType::ALL {
            let covered: Vec<_> = vectors
                .iter()
                .filter(|(bytes, p)| p.packet_type() == t && bytes[0] == t as u8)
                .collect();
            assert!(!covered.is_empty(), "no vector for {t:?}");
        }
    }

    #[test]
    fn every_proper_prefix_of_a_vector_is_truncated() {
        for (bytes, _) in vectors() {
            assert_eq!(Packet::decode(&bytes[..0]), Err(DecodeError::Empty));
            for len in 1..bytes.len() {
                let err = Packet::decode(&bytes[..len]);
                assert!(
                    matches!(err, Err(DecodeError::Truncated { .. })),
                    "{:02x?} gave {err:?}",
                    &bytes[..len]
                );
            }
        }
    }

    #[test]
    fn trailing_bytes_after_any_vector_are_an_error() {
        for (bytes, _) in vectors() {
            for extra in [&[0x00][..], &[0xaa, 0xbb, 0xcc]] {
                let long = [bytes, extra].concat();
                assert_eq!(
                    Packet::decode(&long),
                    Err(DecodeError::TrailingBytes(extra.len())),
                    "{long:02x?}"
                );
            }
        }
    }

    #[test]
    fn decoded_name_list_iterates_borrowed_names() {
        let bytes: &[u8] = &[
            0x06, // type: ListReply
            0x00, 0x00, 0x00, 0x01, // request = 1
            0x00, // more = false
            0x00, 0x00, 0x00, 0x00, // cursor = 0
            0x00, 0x03, // names: count 3
            0x01, b'A', // "A"
            0x00, // "" (the codec does not apply naming rules)
            0x04, b'Z', b'o', 0xc3, 0xab, // "Zoë"
        ];
        let Ok(Packet::ListReply { names, .. }) = Packet::decode(bytes) else {
            panic!("not a list reply");
        };
        assert!(matches!(names, NameList::Encoded { count: 3, .. }));
        assert_eq!(names.len(), 3);
        assert!(!names.is_empty());
        assert_eq!(names.iter().collect::<Vec<_>>(), ["A", "", "Zoë"]);
        assert_eq!(names.encoded_len(), bytes.len() - 10);
        assert_eq!(format!("{names:?}"), r#"["A", "", "Zoë"]"#);
        // The names point into the datagram: nothing was copied.
        let first = names.iter().next().map(str::as_ptr);
        assert_eq!(first, Some(bytes[13..].as_ptr()));
        assert_eq!(names, NameList::Names(&["A", "", "Zoë"]));
        assert_ne!(names, NameList::Names(&["A", "", "Zoe"]));
        assert_ne!(names, NameList::Names(&["A", ""]));
    }

    #[test]
    fn decoded_fields_borrow_from_the_datagram() {
        let bytes: &[u8] = &[
            0x01, // type: SignIn
            0x00, 0x00, 0x00, 0x07, // request = 7
            0x02, b'A', b'l', // name: len 2, "Al"
            0x01, 0x55, // cookie: len 1, 55
        ];
        let Ok(Packet::SignIn { name, cookie, .. }) = Packet::decode(bytes) else {
            panic!("not a sign-in");
        };
        assert_eq!(name.as_ptr(), bytes[6..].as_ptr());
        assert_eq!(cookie.as_ptr(), bytes[9..].as_ptr());
    }

    #[test]
    fn empty_datagram() {
        assert_eq!(Packet::decode(&[]), Err(DecodeError::Empty));
    }

    #[test]
    fn unknown_types() {
        assert_eq!(
            Packet::decode(&[0x7f, 0, 0, 0, 1]),
            Err(DecodeError::UnknownType(0x7f))
        );
        for byte in 0..=u8::MAX {
            let known = PacketType::ALL.iter().find(|t| **t as u8 == byte).copied();
            match PacketType::from_byte(byte) {
                Ok(t) => assert_eq!(Some(t), known),
                Err(e) => {
                    assert_eq!(known, None);
                    assert_eq!(e, DecodeError::UnknownType(byte));
                    assert_eq!(Packet::decode(&[byte]), Err(DecodeError::UnknownType(byte)));
                }
            }
        }
        for byte in [0x00, 0x0f, 0x12, 0xff] {
            assert_eq!(Packet::decode(&[byte]), Err(DecodeError::UnknownType(byte)));
        }
    }

    #[test]
    fn packet_type_names_are_distinct() {
        let mut names: Vec<_> = PacketType::ALL.iter().map(|t| t.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PacketType::ALL.len());
    }

    #[test]
    fn truncated_sign_in() {
        check_truncated(&[0x01], "request", 4, 0);
        check_truncated(&[0x01, 0x00, 0x00, 0x00], "request", 4, 3);
        check_truncated(&[0x01, 0x00, 0x00, 0x00, 0x07], "name", 1, 0);
        check_truncated(&[0x01, 0, 0, 0, 7, 0x05, b'A', b'l'], "name", 5, 2);
        check_truncated(&[0x01, 0, 0, 0, 7, 0x01, b'A'], "cookie", 1, 0);
        check_truncated(&[0x01, 0, 0, 0, 7, 0x01, b'A', 0x04, 0xc0], "cookie", 4, 1);
    }

    #[test]
    fn truncated_token_fields() {
        check_truncated(&[0x02, 0, 0, 0, 9], "cookie", 1, 0);
        check_truncated(&[0x03, 0, 0, 0, 9, 0x10, 1, 2, 3], "token", 16, 3);
        check_truncated(&[0x09, 0, 0, 0, 9], "token", 1, 0);
        check_truncated(&[0x0c, 0, 0, 0, 9, 0x02], "token", 2, 0);
        check_truncated(&[0x0a, 0, 0], "request", 4, 2);
        check_truncated(&[0x0b], "request", 4, 0);
        check_truncated(&[0x0d, 0], "request", 4, 1);
    }

    #[test]
    fn truncated_enum_fields() {
        check_truncated(&[0x04, 0, 0, 0, 1], "reason", 1, 0);
        check_truncated(&[0x0e, 0, 0, 0, 1], "code", 1, 0);
    }

    #[test]
    fn truncated_list_request_and_lookup_request() {
        check_truncated(&[0x05, 0, 0, 0, 2, 0x02, 0xab], "token", 2, 1);
        check_truncated(&[0x05, 0, 0, 0, 2, 0x00], "cursor", 4, 0);
        check_truncated(&[0x05, 0, 0, 0, 2, 0x00, 0x00, 0x01], "cursor", 4, 2);
        check_truncated(&[0x07, 0, 0, 0, 5], "token", 1, 0);
        check_truncated(&[0x07, 0, 0, 0, 5, 0x00], "name", 1, 0);
        check_truncated(&[0x07, 0, 0, 0, 5, 0x00, 0x02, b'A'], "name", 2, 1);
    }

    #[test]
    fn truncated_list_reply() {
        check_truncated(&[0x06, 0, 0, 0, 3], "more", 1, 0);
        check_truncated(&[0x06, 0, 0, 0, 3, 0x01, 0, 0], "cursor", 4, 2);
        let head = [0x06, 0, 0, 0, 3, 0x01, 0, 0, 0, 9];
        check_truncated(&head, "names", 2, 0);
        check_truncated(&[&head[..], &[0x00]].concat(), "names", 2, 1);
        // Count 2, only one name present: the second length byte is missing.
        check_truncated(
            &[&head[..], &[0x00, 0x02, 0x01, b'B']].concat(),
            "names",
            1,
            0,
        );
        check_truncated(
            &[&head[..], &[0x00, 0x01, 0x03, b'B']].concat(),
            "names",
            3,
            1,
        );
        // A huge count with few bytes is truncated, not a long loop or allocation.
        check_truncated(&[&head[..], &[0xff, 0xff]].concat(), "names", 1, 0);
    }

    #[test]
    fn truncated_lookup_reply() {
        let head = [0x08, 0, 0, 0, 6, 0x03, b'B', b'o', b'b'];
        check_truncated(&[0x08, 0, 0, 0, 6, 0x03, b'B'], "name", 3, 1);
        check_truncated(&head, "address", 1, 0);
        check_truncated(&[&head[..], &[0x04, 127, 0]].concat(), "address", 4, 2);
        check_truncated(&[&head[..], &[0x04, 127, 0, 0, 1]].concat(), "port", 2, 0);
        check_truncated(
            &[&head[..], &[0x04, 127, 0, 0, 1, 0x23]].concat(),
            "port",
            2,
            1,
        );
        check_truncated(&[&head[..], &[0x06, 0x20, 0x01]].concat(), "address", 16, 2);
        let v6_no_port = [&head[..], &[0x06], &[0; 16]].concat();
        check_truncated(&v6_no_port, "port", 2, 0);
    }

    #[test]
    fn truncated_message_and_ack() {
        let mut bytes = vec![0x10];
        check_truncated(&bytes, "stream", 8, 0);
        bytes.extend_from_slice(&[0, 0, 0]);
        check_truncated(&bytes, "stream", 8, 3);
        bytes.extend_from_slice(&[0, 0, 0, 0, 1]);
        check_truncated(&bytes, "seq", 4, 0);
        bytes.extend_from_slice(&[0, 0, 0, 2]);
        check_truncated(&bytes, "fragment", 2, 0);
        bytes.extend_from_slice(&[0, 0]);
        check_truncated(&bytes, "fragments", 2, 0);
        bytes.push(0);
        check_truncated(&bytes, "fragments", 2, 1);
        bytes.push(1);
        check_truncated(&bytes, "from", 1, 0);
        bytes.extend_from_slice(&[0x03, b'B', b'o']);
        check_truncated(&bytes, "from", 3, 2);
        bytes.push(b'b');
        check_truncated(&bytes, "body", 2, 0);
        bytes.push(0x00);
        check_truncated(&bytes, "body", 2, 1);
        bytes.extend_from_slice(&[0x05, b'h', b'i', b'!']);
        check_truncated(&bytes, "body", 5, 3);
        bytes.extend_from_slice(b"!!");
        assert_eq!(
            Packet::decode(&bytes),
            Ok(Packet::Message {
                stream: 1,
                seq: 2,
                fragment: 0,
                fragments: 1,
                from: "Bob",
                body: b"hi!!!",
            })
        );

        check_truncated(&[0x11, 1, 2, 3, 4, 5, 6, 7], "stream", 8, 7);
        check_truncated(&[0x11, 1, 2, 3, 4, 5, 6, 7, 8], "seq", 4, 0);
        check_truncated(&[0x11, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0], "seq", 4, 3);
    }

    #[test]
    fn invalid_utf8_in_every_string_field() {
        // ff is never UTF-8; ed a0 80 is a UTF-16 surrogate; c0 80 is overlong.
        for bad in [
            &[0xff][..],
            &[0xed, 0xa0, 0x80],
            &[0xc0, 0x80],
            &[b'A', 0xc3],
        ] {
            let len = u8::try_from(bad.len()).unwrap();
            let str8 = [&[len], bad].concat();
            let cases: [(Vec<u8>, &str); 5] = [
                ([&[0x01, 0, 0, 0, 1][..], &str8, &[0x00]].concat(), "name"),
                ([&[0x07, 0, 0, 0, 1, 0x00][..], &str8].concat(), "name"),
                ([&[0x08, 0, 0, 0, 1][..], &str8, &[0x00]].concat(), "name"),
                (
                    [
                        &[0x06, 0, 0, 0, 1, 0x00, 0, 0, 0, 0, 0x00, 0x02, 0x01, b'A'][..],
                        &str8,
                    ]
                    .concat(),
                    "names",
                ),
                (
                    [
                        &[0x10, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1][..],
                        &str8,
                        &[0, 0],
                    ]
                    .concat(),
                    "from",
                ),
            ];
            for (bytes, field) in cases {
                assert_eq!(
                    Packet::decode(&bytes),
                    Err(DecodeError::InvalidUtf8 { field }),
                    "{bytes:02x?}"
                );
            }
        }
    }

    #[test]
    fn bytes_fields_accept_any_bytes() {
        let bytes: &[u8] = &[
            0x01, // type: SignIn
            0x00, 0x00, 0x00, 0x01, // request = 1
            0x01, b'A', // name: len 1, "A"
            0x02, 0xff, 0xc0, // cookie: len 2, not UTF-8 and need not be
        ];
        check_vector(
            bytes,
            Packet::SignIn {
                request: 1,
                name: "A",
                cookie: &[0xff, 0xc0],
            },
        );
    }

    #[test]
    fn bad_bool() {
        for value in [2u8, 0x80, 0xff] {
            let bytes = [0x06, 0, 0, 0, 1, value, 0x00, 0x00];
            assert_eq!(
                Packet::decode(&bytes),
                Err(DecodeError::InvalidValue {
                    field: "more",
                    value: value.into()
                })
            );
        }
    }

    #[test]
    fn bad_enum_values() {
        for value in [0u8, 4, 0xff] {
            assert_eq!(
                Packet::decode(&[0x04, 0, 0, 0, 1, value]),
                Err(DecodeError::InvalidValue {
                    field: "reason",
                    value: value.into()
                })
            );
        }
        for value in [0u8, 3, 0xff] {
            assert_eq!(
                Packet::decode(&[0x0e, 0, 0, 0, 1, value]),
                Err(DecodeError::InvalidValue {
                    field: "code",
                    value: value.into()
                })
            );
        }
    }

    #[test]
    fn bad_address_family() {
        for family in [1u8, 5, 7, 0x46, 0xff] {
            let bytes = [0x08, 0, 0, 0, 6, 0x01, b'A', family, 127, 0, 0, 1, 0, 80];
            assert_eq!(
                Packet::decode(&bytes),
                Err(DecodeError::InvalidValue {
                    field: "address family",
                    value: family.into()
                })
            );
        }
    }

    #[test]
    fn fragment_must_be_less_than_fragments() {
        for (fragment, fragments) in [(0u16, 0u16), (1, 1), (3, 2), (0xffff, 0xffff)] {
            let [f0, f1] = fragment.to_be_bytes();
            let [n0, n1] = fragments.to_be_bytes();
            let bytes = [
                0x10, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, f0, f1, n0, n1, 0x01, b'A', 0, 0,
            ];
            let invalid = DecodeError::InvalidValue {
                field: "fragment",
                value: fragment.into(),
            };
            assert_eq!(Packet::decode(&bytes), Err(invalid));
            let packet = Packet::Message {
                stream: 1,
                seq: 2,
                fragment,
                fragments,
                from: "A",
                body: b"",
            };
            check_encode_error(
                packet,
                EncodeError::InvalidValue {
                    field: "fragment",
                    value: fragment.into(),
                },
            );
        }
        // The largest valid pair.
        let bytes: &[u8] = &[
            0x10, // type: Message
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // stream = 1
            0x00, 0x00, 0x00, 0x02, // seq = 2
            0xff, 0xfe, // fragment = 65534
            0xff, 0xff, // fragments = 65535
            0x01, b'A', // from: len 1, "A"
            0x00, 0x00, // body: len 0
        ];
        check_vector(
            bytes,
            Packet::Message {
                stream: 1,
                seq: 2,
                fragment: 0xfffe,
                fragments: 0xffff,
                from: "A",
                body: b"",
            },
        );
    }

    /// A Message datagram of `total` bytes with a one-byte `from`, built by hand.
    fn raw_message(total: usize) -> Vec<u8> {
        let body_len = total - 21;
        let mut bytes = vec![
            0x10, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0x01, b'A',
        ];
        bytes.extend_from_slice(&u16::try_from(body_len).unwrap().to_be_bytes());
        bytes.resize(total, b'x');
        bytes
    }

    #[test]
    fn datagram_size_limit() {
        let exact = raw_message(MAX_DATAGRAM);
        let Ok(packet) = Packet::decode(&exact) else {
            panic!("a 1200-byte message must decode");
        };
        assert_eq!(packet.encoded_len(), MAX_DATAGRAM);
        assert_eq!(packet.to_bytes().as_deref(), Ok(&exact[..]));

        // Well-formed but one byte too long: refused before parsing.
        let over = raw_message(MAX_DATAGRAM + 1);
        assert_eq!(
            Packet::decode(&over),
            Err(DecodeError::TooLong(MAX_DATAGRAM + 1))
        );
        assert_eq!(
            Packet::decode(&[0u8; 5000]),
            Err(DecodeError::TooLong(5000))
        );
    }

    #[test]
    fn encode_too_long_leaves_the_buffer_untouched() {
        let body = [b'x'; MAX_DATAGRAM];
        // 21 header bytes with a one-byte `from`.
        check_encode_error(
            Packet::Message {
                stream: 1,
                seq: 2,
                fragment: 0,
                fragments: 1,
                from: "A",
                body: &body[..MAX_DATAGRAM - 20],
            },
            EncodeError::TooLong {
                len: MAX_DATAGRAM + 1,
            },
        );
        let long = "n".repeat(255);
        let names = [long.as_str(); 5];
        check_encode_error(
            Packet::ListReply {
                request: 1,
                more: true,
                cursor: 9,
                names: NameList::Names(&names),
            },
            EncodeError::TooLong {
                len: 1 + 4 + 1 + 4 + 2 + 5 * 256,
            },
        );
    }

    #[test]
    fn max_fragment_body_fits_with_the_longest_name() {
        let from = "f".repeat(MAX_SHORT_FIELD);
        let body = vec![b'b'; MAX_FRAGMENT_BODY + 1];
        let packet = |body| Packet::Message {
            stream: u64::MAX,
            seq: u32::MAX,
            fragment: 0,
            fragments: 1,
            from: &from,
            body,
        };
        let fits = packet(&body[..MAX_FRAGMENT_BODY]);
        assert_eq!(fits.encoded_len(), MAX_DATAGRAM);
        let bytes = fits.to_bytes().unwrap();
        assert_eq!(Packet::decode(&bytes), Ok(fits));
        check_encode_error(
            packet(&body),
            EncodeError::TooLong {
                len: MAX_DATAGRAM + 1,
            },
        );
    }

    #[test]
    fn encode_field_too_long_leaves_the_buffer_untouched() {
        let s255 = "s".repeat(255);
        let s256 = "s".repeat(256);
        let b256 = vec![7u8; 256];
        let too_long = |field, len| EncodeError::FieldTooLong {
            field,
            len,
            max: MAX_SHORT_FIELD,
        };
        let cases = [
            (
                Packet::SignIn {
                    request: 1,
                    name: &s256,
                    cookie: b"",
                },
                too_long("name", 256),
            ),
            (
                Packet::SignIn {
                    request: 1,
                    name: "A",
                    cookie: &b256,
                },
                too_long("cookie", 256),
            ),
            (
                Packet::Retry {
                    request: 1,
                    cookie: &b256,
                },
                too_long("cookie", 256),
            ),
            (
                Packet::SignInAccepted {
                    request: 1,
                    token: &b256,
                },
                too_long("token", 256),
            ),
            (
                Packet::ListRequest {
                    request: 1,
                    token: &b256,
                    cursor: 0,
                },
                too_long("token", 256),
            ),
            (
                Packet::LookupRequest {
                    request: 1,
                    token: &b256,
                    name: "A",
                },
                too_long("token", 256),
            ),
            (
                Packet::LookupRequest {
                    request: 1,
                    token: b"",
                    name: &s256,
                },
                too_long("name", 256),
            ),
            (
                Packet::LookupReply {
                    request: 1,
                    name: &s256,
                    address: None,
                },
                too_long("name", 256),
            ),
            (
                Packet::KeepAlive {
                    request: 1,
                    token: &b256,
                },
                too_long("token", 256),
            ),
            (
                Packet::SignOut {
                    request: 1,
                    token: &b256,
                },
                too_long("token", 256),
            ),
            (
                Packet::Message {
                    stream: 1,
                    seq: 1,
                    fragment: 0,
                    fragments: 1,
                    from: &s256,
                    body: b"",
                },
                too_long("from", 256),
            ),
        ];
        for (packet, expected) in cases {
            check_encode_error(packet, expected);
        }
        let names = ["A", s256.as_str()];
        check_encode_error(
            Packet::ListReply {
                request: 1,
                more: false,
                cursor: 0,
                names: NameList::Names(&names),
            },
            too_long("names", 256),
        );
        // 255 bytes is allowed.
        let ok = Packet::SignIn {
            request: 1,
            name: &s255,
            cookie: &b256[..255],
        };
        let bytes = ok.to_bytes().unwrap();
        assert_eq!(bytes.len(), 1 + 4 + 256 + 256);
        assert_eq!(Packet::decode(&bytes), Ok(ok));
    }

    #[test]
    fn encode_u16_fields_too_long() {
        let body = vec![0u8; usize::from(u16::MAX) + 1];
        check_encode_error(
            Packet::Message {
                stream: 1,
                seq: 1,
                fragment: 0,
                fragments: 1,
                from: "A",
                body: &body,
            },
            EncodeError::FieldTooLong {
                field: "body",
                len: body.len(),
                max: usize::from(u16::MAX),
            },
        );
        let names = vec![""; usize::from(u16::MAX) + 1];
        check_encode_error(
            Packet::ListReply {
                request: 1,
                more: false,
                cursor: 0,
                names: NameList::Names(&names),
            },
            EncodeError::FieldTooLong {
                field: "names",
                len: names.len(),
                max: usize::from(u16::MAX),
            },
        );
    }

    #[test]
    fn decoded_list_reply_re_encodes() {
        let bytes: &[u8] = &[
            0x06, // type: ListReply
            0x00, 0x00, 0x00, 0x09, // request = 9
            0x01, // more = true
            0x00, 0x00, 0x00, 0x02, // cursor = 2
            0x00, 0x02, // names: count 2
            0x01, b'X', // "X"
            0x02, b'Y', b'Z', // "YZ"
        ];
        let packet = Packet::decode(bytes).unwrap();
        assert!(matches!(
            packet,
            Packet::ListReply {
                names: NameList::Encoded { .. },
                ..
            }
        ));
        check_vector(bytes, packet);
    }

    #[test]
    fn encode_rejects_malformed_encoded_name_list() {
        // `NameList::Encoded` is public, so a caller can build one that does
        // not hold `count` well-formed names; encoding it must fail rather
        // than write a datagram that does not decode.
        let cases: [(u16, &[u8]); 6] = [
            (2, b"\x01a"),              // fewer names than the count
            (1, b"\x01a\x01b"),         // more names than the count
            (0, b"\x01a"),              // bytes with a zero count
            (1, b"\x05ab"),             // a name runs past the end
            (1, b"\x01\xff"),           // a name is not UTF-8
            (3, b"\x01a\x00\x01b\x07"), // a stray byte after the names
        ];
        for (count, bytes) in cases {
            check_encode_error(
                Packet::ListReply {
                    request: 1,
                    more: false,
                    cursor: 0,
                    names: NameList::Encoded { count, bytes },
                },
                EncodeError::InvalidValue {
                    field: "names",
                    value: count.into(),
                },
            );
        }
    }

    #[test]
    fn ipv6_flowinfo_and_scope_are_not_carried() {
        // The wire holds address and port only; decode gives flowinfo 0, scope 0.
        let bytes: &[u8] = &[
            0x08, // type: LookupReply
            0x00, 0x00, 0x00, 0x01, // request = 1
            0x01, b'A', // name: len 1, "A"
            0x06, // address family 6
            0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // IPv6 fe80:0:0:0:
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, //      0:0:0:2
            0x00, 0x50, // port 80
        ];
        let Ok(Packet::LookupReply {
            address: Some(SocketAddr::V6(a)),
            ..
        }) = Packet::decode(bytes)
        else {
            panic!("not an IPv6 lookup reply");
        };
        assert_eq!((a.flowinfo(), a.scope_id(), a.port()), (0, 0, 80));
        // An IPv4-mapped IPv6 address stays IPv6 (family 6), so it round-trips.
        let mapped = SocketAddr::new(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped().into(), 7);
        let packet = Packet::LookupReply {
            request: 1,
            name: "A",
            address: Some(mapped),
        };
        let encoded = packet.to_bytes().unwrap();
        assert_eq!(encoded[7], 6);
        assert_eq!(Packet::decode(&encoded), Ok(packet));
    }

    #[test]
    fn error_messages_name_the_field() {
        let e = DecodeError::Truncated {
            field: "body",
            needed: 5,
            remaining: 3,
        };
        assert_eq!(e.to_string(), "truncated body: needs 5 bytes, 3 remain");
        assert_eq!(
            DecodeError::UnknownType(0x7f).to_string(),
            "unknown packet type 0x7f"
        );
        assert_eq!(
            EncodeError::TooLong { len: 1201 }.to_string(),
            "packet of 1201 bytes is longer than 1200"
        );
    }
}
