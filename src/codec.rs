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
//! **0x04 SignInRefused** (server → client)
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x04 |
//! | request | `u32` |
//! | reason | `u8`: 1 name in use, 2 invalid name, 3 server full |
//!
//! **0x05 ListRequest** (client → server): the signed-in names that sort
//! after `after` (case-insensitively); empty `after` starts at the beginning.
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x05 |
//! | request | `u32` |
//! | token | `bytes8` |
//! | after | `str8` |
//!
//! **0x06 ListReply** (server → client): one page; `more` says whether
//! another page follows the last name of this one.
//!
//! | field | type |
//! |---|---|
//! | type | `u8` = 0x06 |
//! | request | `u32` |
//! | more | `bool` |
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
    },
    /// Client asks for a page of signed-in names.
    ListRequest {
        /// Request id.
        request: u32,
        /// Session token.
        token: &'a [u8],
        /// Names that sort after this one; empty for the first page.
        after: &'a str,
    },
    /// A page of signed-in names.
    ListReply {
        /// The list request's id.
        request: u32,
        /// Another page follows.
        more: bool,
        /// This page's names, in case-insensitive order.
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
            },
            PacketType::ListRequest => Packet::ListRequest {
                request: r.u32("request")?,
                token: r.bytes8("token")?,
                after: r.str8("after")?,
            },
            PacketType::ListReply => Packet::ListReply {
                request: r.u32("request")?,
                more: r.bool("more")?,
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
    pub fn encoded_len(&self) -> usize {
        1 + match self {
            Packet::SignIn { name, cookie, .. } => 4 + 1 + name.len() + 1 + cookie.len(),
            Packet::Retry { cookie, .. } => 4 + 1 + cookie.len(),
            Packet::SignInAccepted { token, .. } => 4 + 1 + token.len(),
            Packet::SignInRefused { .. } | Packet::Error { .. } => 4 + 1,
            Packet::ListRequest { token, after, .. } => 4 + 1 + token.len() + 1 + after.len(),
            Packet::ListReply { names, .. } => 4 + 1 + names.encoded_len(),
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
        buf.reserve(len);
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
            Packet::SignInRefused { request, reason } => {
                buf.put_u32(request);
                buf.put_u8(reason as u8);
            }
            Packet::ListRequest {
                request,
                token,
                after,
            } => {
                buf.put_u32(request);
                put8(buf, token);
                put8(buf, after.as_bytes());
            }
            Packet::ListReply {
                request,
                more,
                names,
            } => {
                buf.put_u32(request);
                buf.put_u8(u8::from(more));
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
                // `validate` checked the body fits in u16.
                buf.put_u16(u16::try_from(body.len()).unwrap_or(u16::MAX));
                buf.put_slice(body);
            }
            Packet::Ack { stream, seq } => {
                buf.put_u64(stream);
                buf.put_u32(seq);
            }
        }
        Ok(())
    }

    /// Encodes into a fresh buffer; a convenience for tests and examples.
    pub fn to_bytes(&self) -> Result<bytes::Bytes, EncodeError> {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut buf)?;
        Ok(buf.freeze())
    }

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
            Packet::ListRequest { token, after, .. } => {
                short("token", token.len())?;
                short("after", after.len())
            }
            Packet::ListReply { names, .. } => {
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
            Packet::SignInRefused { .. }
            | Packet::KeepAliveAck { .. }
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
fn put8(buf: &mut BytesMut, bytes: &[u8]) {
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

fn put_addr(buf: &mut BytesMut, addr: Option<&SocketAddr>) {
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
