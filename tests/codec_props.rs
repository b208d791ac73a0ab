//! Property tests for the codec: round trips for every packet type (clear
//! and sealed, candidate lists of every length up to [`MAX_CANDIDATES`] mixing
//! IPv4 and IPv6), the size limits (a datagram, a sealed packet's plaintext, the
//! largest message fragment), refused encodes leaving the buffer alone, and
//! decode of arbitrary or mutated bytes (never a panic, and canonical
//! whenever it succeeds).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::BytesMut;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use udpchat::codec::{
    ErrorCode, HELLO_LEN, MAX_CANDIDATES, MAX_DATAGRAM, MAX_FRAGMENT_BODY, MAX_SEALED_PLAINTEXT,
    MAX_SHORT_FIELD, NameList, RefuseReason, SEALED_HEADER_LEN, SEALED_TAG_LEN,
};
use udpchat::{AddrList, DecodeError, EncodeError, Packet, PacketType};

/// A [`Packet`] that owns its data, so a strategy can produce it; the
/// borrowed packet is built from it inside the test body.
#[derive(Debug, Clone)]
enum Owned {
    Hello(u32),
    Retry {
        request: u32,
        cookie: Vec<u8>,
        key: Vec<u8>,
    },
    ServerInit {
        cookie: Vec<u8>,
        sender: u32,
        handshake: Vec<u8>,
    },
    ServerResp {
        sender: u32,
        receiver: u32,
        handshake: Vec<u8>,
    },
    Sealed {
        receiver: u32,
        counter: u64,
        sealed: Vec<u8>,
    },
    PeerInit {
        sender: u32,
        handshake: Vec<u8>,
    },
    PeerResp {
        sender: u32,
        receiver: u32,
        handshake: Vec<u8>,
    },
    Error(u32, ErrorCode),
    SignIn {
        request: u32,
        name: String,
        replaces: u32,
        candidates: Vec<SocketAddr>,
    },
    SignInAccepted(u32, Option<SocketAddr>),
    SignInRefused(u32, RefuseReason, String),
    ListRequest(u32, u32),
    ListReply(u32, bool, u32, Vec<String>),
    LookupRequest(u32, String, bool),
    LookupReply {
        request: u32,
        name: String,
        address: Option<SocketAddr>,
        key: Vec<u8>,
        candidates: Vec<SocketAddr>,
    },
    Introduction {
        name: String,
        key: Vec<u8>,
        address: Option<SocketAddr>,
        candidates: Vec<SocketAddr>,
    },
    KeepAlive(u32),
    KeepAliveAck(u32),
    Probe(u32),
    SignOut(u32),
    SignOutAck(u32),
    Message {
        stream: u64,
        seq: u32,
        base: u32,
        fragment: u16,
        fragments: u16,
        body: Vec<u8>,
    },
    Ack(u64, u32, u32),
}

impl Owned {
    /// Calls `f` with the borrowed packet (a `ListReply`'s names need a slice
    /// of `&str` that lives as long as the call).
    fn with_packet<R>(&self, f: impl FnOnce(Packet<'_>) -> R) -> R {
        let names: Vec<&str> = match self {
            Owned::ListReply(_, _, _, names) => names.iter().map(String::as_str).collect(),
            _ => Vec::new(),
        };
        let packet = match self {
            Owned::Hello(request) => Packet::Hello { request: *request },
            Owned::Retry {
                request,
                cookie,
                key,
            } => Packet::Retry {
                request: *request,
                cookie,
                key,
            },
            Owned::ServerInit {
                cookie,
                sender,
                handshake,
            } => Packet::ServerInit {
                cookie,
                sender: *sender,
                handshake,
            },
            Owned::ServerResp {
                sender,
                receiver,
                handshake,
            } => Packet::ServerResp {
                sender: *sender,
                receiver: *receiver,
                handshake,
            },
            Owned::Sealed {
                receiver,
                counter,
                sealed,
            } => Packet::Sealed {
                receiver: *receiver,
                counter: *counter,
                sealed,
            },
            Owned::PeerInit { sender, handshake } => Packet::PeerInit {
                sender: *sender,
                handshake,
            },
            Owned::PeerResp {
                sender,
                receiver,
                handshake,
            } => Packet::PeerResp {
                sender: *sender,
                receiver: *receiver,
                handshake,
            },
            Owned::Error(request, code) => Packet::Error {
                request: *request,
                code: *code,
            },
            Owned::SignIn {
                request,
                name,
                replaces,
                candidates,
            } => Packet::SignIn {
                request: *request,
                name,
                replaces: *replaces,
                candidates: AddrList::Addrs(candidates),
            },
            Owned::SignInAccepted(request, address) => Packet::SignInAccepted {
                request: *request,
                address: *address,
            },
            Owned::SignInRefused(request, reason, holder) => Packet::SignInRefused {
                request: *request,
                reason: *reason,
                holder,
            },
            Owned::ListRequest(request, cursor) => Packet::ListRequest {
                request: *request,
                cursor: *cursor,
            },
            Owned::ListReply(request, more, cursor, _) => Packet::ListReply {
                request: *request,
                more: *more,
                cursor: *cursor,
                names: NameList::Names(&names),
            },
            Owned::LookupRequest(request, name, introduce) => Packet::LookupRequest {
                request: *request,
                name,
                introduce: *introduce,
            },
            Owned::LookupReply {
                request,
                name,
                address,
                key,
                candidates,
            } => Packet::LookupReply {
                request: *request,
                name,
                address: *address,
                key,
                candidates: AddrList::Addrs(candidates),
            },
            Owned::Introduction {
                name,
                key,
                address,
                candidates,
            } => Packet::Introduction {
                name,
                key,
                address: *address,
                candidates: AddrList::Addrs(candidates),
            },
            Owned::KeepAlive(request) => Packet::KeepAlive { request: *request },
            Owned::KeepAliveAck(request) => Packet::KeepAliveAck { request: *request },
            Owned::Probe(request) => Packet::Probe { request: *request },
            Owned::SignOut(request) => Packet::SignOut { request: *request },
            Owned::SignOutAck(request) => Packet::SignOutAck { request: *request },
            Owned::Message {
                stream,
                seq,
                base,
                fragment,
                fragments,
                body,
            } => Packet::Message {
                stream: *stream,
                seq: *seq,
                base: *base,
                fragment: *fragment,
                fragments: *fragments,
                body,
            },
            Owned::Ack(stream, first, last) => Packet::Ack {
                stream: *stream,
                first: *first,
                last: *last,
            },
        };
        f(packet)
    }
}

/// A string of at most `max_bytes` bytes of UTF-8: mostly ASCII names, but
/// any characters too (multi-byte ones included).
fn string_upto(max_bytes: usize) -> impl Strategy<Value = String> {
    let chars = prop_oneof![
        3 => proptest::char::range('!', '~'),
        1 => any::<char>(),
    ];
    vec(chars, 0..=max_bytes).prop_map(move |chars| {
        let mut s = String::new();
        for c in chars {
            if s.len() + c.len_utf8() > max_bytes {
                break;
            }
            s.push(c);
        }
        s
    })
}

/// A `bytes8` field's contents: empty, cookie-sized, or any length it allows.
fn short_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => Just(Vec::new()),
        2 => vec(any::<u8>(), 16..=16),
        2 => vec(any::<u8>(), 0..=MAX_SHORT_FIELD),
    ]
}

/// A static public key field: 32 bytes mostly, but the codec carries any
/// `bytes8` (checking the length is the caller's business).
fn key_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => vec(any::<u8>(), 32..=32),
        1 => Just(Vec::new()),
        1 => vec(any::<u8>(), 0..=MAX_SHORT_FIELD),
    ]
}

/// A `bytes16` handshake: empty, handshake-sized (Noise IK messages are
/// 48 to some hundred bytes), or long enough that some packets do not fit.
fn handshake_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => Just(Vec::new()),
        4 => vec(any::<u8>(), 0..=256),
        1 => vec(any::<u8>(), 900..=MAX_DATAGRAM + 50),
    ]
}

/// A Sealed's ciphertext and tag: up to the longest that fits one datagram
/// (`MAX_SEALED_PLAINTEXT + SEALED_TAG_LEN`), and a little beyond.
fn sealed_bytes() -> impl Strategy<Value = Vec<u8>> {
    let most = MAX_SEALED_PLAINTEXT + SEALED_TAG_LEN;
    prop_oneof![
        1 => Just(Vec::new()),
        4 => vec(any::<u8>(), SEALED_TAG_LEN..=most),
        1 => vec(any::<u8>(), most - 4..=most + 4),
        1 => vec(any::<u8>(), 0..=most + 100),
    ]
}

fn short_string() -> impl Strategy<Value = String> {
    prop_oneof![2 => string_upto(32), 1 => string_upto(MAX_SHORT_FIELD)]
}

fn refuse_reason() -> impl Strategy<Value = RefuseReason> {
    prop_oneof![
        Just(RefuseReason::NameInUse),
        Just(RefuseReason::InvalidName),
        Just(RefuseReason::ServerFull),
    ]
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![Just(ErrorCode::UnknownSession), Just(ErrorCode::BadRequest)]
}

/// Any address the wire can carry: none, IPv4, or IPv6 with flowinfo and
/// scope 0 (the format carries neither).
fn address() -> impl Strategy<Value = Option<SocketAddr>> {
    prop_oneof![
        Just(None),
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| Some(SocketAddrV4::new(Ipv4Addr::from(ip), port).into())),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| Some(SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0).into())),
    ]
}

/// An address of family 4 or 6 (with IPv6 flowinfo and scope 0): what a
/// candidate list holds.
fn some_address() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddrV4::new(
            Ipv4Addr::from(ip),
            port
        )
        .into()),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddrV6::new(
            Ipv6Addr::from(ip),
            port,
            0,
            0
        )
        .into()),
    ]
}

/// A host candidate list: empty often, full (exactly [`MAX_CANDIDATES`])
/// often, any length between otherwise; IPv4 and IPv6 mixed.
fn candidates() -> impl Strategy<Value = Vec<SocketAddr>> {
    prop_oneof![
        1 => Just(Vec::new()),
        1 => vec(some_address(), MAX_CANDIDATES..=MAX_CANDIDATES),
        3 => vec(some_address(), 0..=MAX_CANDIDATES),
    ]
}

/// `(fragment, fragments)` with `fragment < fragments`.
fn fragment_pair() -> impl Strategy<Value = (u16, u16)> {
    (1..=u16::MAX).prop_flat_map(|fragments| (0..fragments, Just(fragments)))
}

/// `(seq, base)` with `base <= seq`, the edges (`base` 0 and `base == seq`)
/// often.
fn seq_base() -> impl Strategy<Value = (u32, u32)> {
    any::<u32>().prop_flat_map(|seq| {
        (
            Just(seq),
            prop_oneof![1 => Just(0), 1 => Just(seq), 3 => 0..=seq],
        )
    })
}

/// A message fragment's body: up to [`MAX_FRAGMENT_BODY`] mostly, beyond it
/// (still a valid datagram up to a point, then too long) sometimes.
fn message_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => vec(any::<u8>(), 0..=MAX_FRAGMENT_BODY),
        1 => vec(any::<u8>(), MAX_FRAGMENT_BODY..=MAX_DATAGRAM + 100),
    ]
}

/// Every packet variant; some of them encode to more than [`MAX_DATAGRAM`]
/// bytes (long name lists, handshakes, sealed bytes or bodies), to exercise
/// the size check.
fn any_packet() -> impl Strategy<Value = Owned> {
    prop_oneof![
        any::<u32>().prop_map(Owned::Hello),
        (any::<u32>(), short_bytes(), key_bytes()).prop_map(|(request, cookie, key)| {
            Owned::Retry {
                request,
                cookie,
                key,
            }
        }),
        (short_bytes(), any::<u32>(), handshake_bytes()).prop_map(|(cookie, sender, handshake)| {
            Owned::ServerInit {
                cookie,
                sender,
                handshake,
            }
        }),
        (any::<u32>(), any::<u32>(), handshake_bytes()).prop_map(
            |(sender, receiver, handshake)| Owned::ServerResp {
                sender,
                receiver,
                handshake,
            }
        ),
        (any::<u32>(), any::<u64>(), sealed_bytes()).prop_map(|(receiver, counter, sealed)| {
            Owned::Sealed {
                receiver,
                counter,
                sealed,
            }
        }),
        (any::<u32>(), handshake_bytes())
            .prop_map(|(sender, handshake)| Owned::PeerInit { sender, handshake }),
        (any::<u32>(), any::<u32>(), handshake_bytes()).prop_map(
            |(sender, receiver, handshake)| Owned::PeerResp {
                sender,
                receiver,
                handshake,
            }
        ),
        (any::<u32>(), error_code()).prop_map(|(r, code)| Owned::Error(r, code)),
        (
            any::<u32>(),
            short_string(),
            prop_oneof![Just(0), any::<u32>()],
            candidates(),
        )
            .prop_map(|(request, name, replaces, candidates)| Owned::SignIn {
                request,
                name,
                replaces,
                candidates,
            }),
        (any::<u32>(), address()).prop_map(|(r, address)| Owned::SignInAccepted(r, address)),
        (any::<u32>(), refuse_reason(), short_string())
            .prop_map(|(r, reason, holder)| Owned::SignInRefused(r, reason, holder)),
        (any::<u32>(), any::<u32>()).prop_map(|(r, cursor)| Owned::ListRequest(r, cursor)),
        (
            any::<u32>(),
            any::<bool>(),
            any::<u32>(),
            prop_oneof![
                3 => vec(string_upto(32), 0..40),
                1 => vec(string_upto(MAX_SHORT_FIELD), 0..8),
            ]
        )
            .prop_map(|(r, more, cursor, names)| Owned::ListReply(r, more, cursor, names)),
        (any::<u32>(), short_string(), any::<bool>())
            .prop_map(|(r, name, introduce)| Owned::LookupRequest(r, name, introduce)),
        (
            any::<u32>(),
            short_string(),
            address(),
            key_bytes(),
            candidates()
        )
            .prop_map(|(request, name, address, key, candidates)| {
                Owned::LookupReply {
                    request,
                    name,
                    address,
                    key,
                    candidates,
                }
            }),
        (short_string(), key_bytes(), address(), candidates()).prop_map(
            |(name, key, address, candidates)| Owned::Introduction {
                name,
                key,
                address,
                candidates,
            }
        ),
        any::<u32>().prop_map(Owned::KeepAlive),
        any::<u32>().prop_map(Owned::KeepAliveAck),
        any::<u32>().prop_map(Owned::Probe),
        any::<u32>().prop_map(Owned::SignOut),
        any::<u32>().prop_map(Owned::SignOutAck),
        (any::<u64>(), seq_base(), fragment_pair(), message_body()).prop_map(
            |(stream, (seq, base), (fragment, fragments), body)| Owned::Message {
                stream,
                seq,
                base,
                fragment,
                fragments,
                body,
            }
        ),
        (any::<u64>(), any::<u32>(), any::<u32>()).prop_map(|(stream, a, b)| Owned::Ack(
            stream,
            a.min(b),
            a.max(b)
        )),
    ]
}

/// A string of `len` ASCII bytes.
fn ascii(len: usize) -> String {
    "n".repeat(len)
}

/// A packet that no encode accepts, whatever its size, with the error its
/// encode must give: a `bytes8`/`str8` field one or more bytes over
/// [`MAX_SHORT_FIELD`], a `bytes16` field over `u16::MAX`, a candidate list
/// longer than [`MAX_CANDIDATES`], a message whose `fragment` is not below
/// `fragments` or whose `base` is above `seq`.
fn invalid_packet() -> impl Strategy<Value = (Owned, EncodeError)> {
    let over = MAX_SHORT_FIELD + 1..=MAX_SHORT_FIELD + 40;
    let too_long = |field: &'static str, len: usize| EncodeError::FieldTooLong {
        field,
        len,
        max: MAX_SHORT_FIELD,
    };
    prop_oneof![
        (over.clone(), any::<bool>()).prop_map(move |(len, in_key)| {
            let (cookie, key) = if in_key {
                (vec![1; 8], vec![2; len])
            } else {
                (vec![1; len], vec![2; 32])
            };
            let field = if in_key { "key" } else { "cookie" };
            (
                Owned::Retry {
                    request: 1,
                    cookie,
                    key,
                },
                too_long(field, len),
            )
        }),
        over.clone().prop_map(move |len| (
            Owned::ServerInit {
                cookie: vec![1; len],
                sender: 2,
                handshake: vec![3; 48],
            },
            too_long("cookie", len)
        )),
        (u16::MAX as usize + 1..=u16::MAX as usize + 8).prop_map(|len| (
            Owned::PeerInit {
                sender: 2,
                handshake: vec![3; len],
            },
            EncodeError::FieldTooLong {
                field: "handshake",
                len,
                max: usize::from(u16::MAX),
            }
        )),
        (over.clone(), any::<u32>(), candidates()).prop_map(move |(len, replaces, candidates)| (
            Owned::SignIn {
                request: 1,
                name: ascii(len),
                replaces,
                candidates,
            },
            too_long("name", len)
        )),
        over.clone().prop_map(move |len| (
            Owned::SignInRefused(1, RefuseReason::NameInUse, ascii(len)),
            too_long("holder", len)
        )),
        (over.clone(), any::<bool>()).prop_map(move |(len, introduce)| (
            Owned::LookupRequest(1, ascii(len), introduce),
            too_long("name", len)
        )),
        (
            over.clone(),
            any::<bool>(),
            any::<bool>(),
            address(),
            candidates()
        )
            .prop_map(move |(len, in_key, introduction, address, candidates)| {
                let (name, key) = if in_key {
                    (ascii(5), vec![2; len])
                } else {
                    (ascii(len), vec![2; 32])
                };
                let field = if in_key { "key" } else { "name" };
                let packet = if introduction {
                    Owned::Introduction {
                        name,
                        key,
                        address,
                        candidates,
                    }
                } else {
                    Owned::LookupReply {
                        request: 1,
                        name,
                        address,
                        key,
                        candidates,
                    }
                };
                (packet, too_long(field, len))
            }),
        // More candidates than a list may hold, in each packet that has one.
        (
            vec(some_address(), MAX_CANDIDATES + 1..=3 * MAX_CANDIDATES),
            0..3usize,
            address()
        )
            .prop_map(|(candidates, which, address)| {
                let value = u64::try_from(candidates.len()).unwrap_or(u64::MAX);
                let packet = match which {
                    0 => Owned::SignIn {
                        request: 1,
                        name: ascii(5),
                        replaces: 0,
                        candidates,
                    },
                    1 => Owned::LookupReply {
                        request: 1,
                        name: ascii(5),
                        address,
                        key: vec![2; 32],
                        candidates,
                    },
                    _ => Owned::Introduction {
                        name: ascii(5),
                        key: vec![2; 32],
                        address,
                        candidates,
                    },
                };
                (
                    packet,
                    EncodeError::InvalidValue {
                        field: "candidates",
                        value,
                    },
                )
            }),
        over.prop_map(move |len| (
            Owned::ListReply(1, false, 0, vec!["Bob".into(), ascii(len)]),
            too_long("names", len)
        )),
        (any::<u16>(), any::<u16>(), seq_base()).prop_map(|(a, b, (seq, base))| {
            // fragment >= fragments (fragments may be 0).
            let (fragment, fragments) = (a.max(b), a.min(b));
            (
                Owned::Message {
                    stream: 1,
                    seq,
                    base,
                    fragment,
                    fragments,
                    body: b"hi".to_vec(),
                },
                EncodeError::InvalidValue {
                    field: "fragment",
                    value: fragment.into(),
                },
            )
        }),
        (0..u32::MAX, fragment_pair()).prop_flat_map(|(seq, (fragment, fragments))| {
            (seq + 1..=u32::MAX).prop_map(move |base| {
                (
                    Owned::Message {
                        stream: 1,
                        seq,
                        base,
                        fragment,
                        fragments,
                        body: b"hi".to_vec(),
                    },
                    EncodeError::InvalidValue {
                        field: "base",
                        value: base.into(),
                    },
                )
            })
        }),
    ]
}

/// Checks `packet` is refused with `expected`, and that the buffer (with
/// something already in it) is left as it was: same bytes, same capacity.
fn refused_untouched(packet: &Packet<'_>, expected: EncodeError) -> Result<(), TestCaseError> {
    let prefix = b"prefix";
    let mut buf = BytesMut::with_capacity(16);
    buf.extend_from_slice(prefix);
    let capacity = buf.capacity();
    prop_assert_eq!(packet.encode(&mut buf), Err(expected));
    prop_assert_eq!(&buf[..], &prefix[..]);
    prop_assert_eq!(buf.capacity(), capacity);
    prop_assert_eq!(packet.to_bytes(), Err(expected));
    Ok(())
}

/// Encodes a packet that fits, or checks it is refused with `TooLong` and
/// the buffer is untouched; `None` for the latter.
fn encode_checked(packet: &Packet<'_>) -> Result<Option<Vec<u8>>, TestCaseError> {
    let len = packet.encoded_len();
    if len > MAX_DATAGRAM {
        refused_untouched(packet, EncodeError::TooLong { len })?;
        return Ok(None);
    }
    let prefix = b"prefix";
    let mut buf = BytesMut::with_capacity(16);
    buf.extend_from_slice(prefix);
    prop_assert_eq!(packet.encode(&mut buf), Ok(()));
    prop_assert_eq!(&buf[..prefix.len()], &prefix[..]);
    prop_assert_eq!(buf.len() - prefix.len(), len);
    prop_assert!(buf.len() - prefix.len() <= MAX_DATAGRAM);
    Ok(Some(buf[prefix.len()..].to_vec()))
}

/// If `bytes` decodes, it re-encodes to exactly `bytes`.
fn check_canonical(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(packet) = Packet::decode(bytes) {
        prop_assert_eq!(packet.encoded_len(), bytes.len());
        let encoded = packet.to_bytes();
        prop_assert_eq!(encoded.as_deref(), Ok(bytes));
        prop_assert_eq!(Packet::decode(bytes), Ok(packet));
        if packet.packet_type() == PacketType::Hello {
            prop_assert_eq!(bytes.len(), HELLO_LEN);
        }
    }
    Ok(())
}

/// Bytes that start with a known type byte most of the time, so decode gets
/// past the first check; and Hello-shaped bytes, mostly zero after the
/// request, so a well-padded Hello turns up.
fn arbitrary_datagram() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => vec(any::<u8>(), 0..1300),
        3 => (
            proptest::sample::select(PacketType::ALL.to_vec()),
            prop_oneof![3 => vec(any::<u8>(), 0..64), 1 => vec(any::<u8>(), 0..1300)],
        )
            .prop_map(|(t, rest)| {
                let mut bytes = vec![t as u8];
                bytes.extend(rest);
                bytes
            }),
        1 => (
            any::<[u8; 4]>(),
            HELLO_LEN - 2..=HELLO_LEN + 1,
            proptest::option::of((any::<Index>(), 1..=u8::MAX)),
        )
            .prop_map(|(request, len, stray)| {
                let mut bytes = vec![0; len];
                bytes[0] = PacketType::Hello as u8;
                bytes[1..5].copy_from_slice(&request);
                if let Some((i, b)) = stray {
                    let i = 5 + i.index(len - 5);
                    bytes[i] = b;
                }
                bytes
            }),
    ]
}

/// Where a mutation lands: anywhere, or in the first bytes, where the
/// headers, lengths, enums and flags are (so they get hit often).
#[derive(Debug, Clone)]
enum Pos {
    Any(Index),
    Head(usize),
}

impl Pos {
    /// A position in `0..len` (`len` > 0).
    fn index(&self, len: usize) -> usize {
        match self {
            Pos::Any(i) => i.index(len),
            Pos::Head(i) => (*i).min(len - 1),
        }
    }
}

fn pos() -> impl Strategy<Value = Pos> {
    prop_oneof![
        any::<Index>().prop_map(Pos::Any),
        // A Message's header (the longest fixed one) is 23 bytes.
        (0usize..32).prop_map(Pos::Head)
    ]
}

/// Byte values that matter to the format: small ones (lengths, enums,
/// booleans, address families, clear type bytes), sealed type bytes, and any.
fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        any::<u8>(),
        0u8..8,
        Just(0x0f),
        Just(0x10),
        Just(0x11),
        Just(0x15),
        Just(0x16),
        Just(0x1c),
        Just(0x20),
        Just(0x21),
        Just(0xff)
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Pos, u8),
    SetByte(Pos, u8),
    Truncate(Pos),
    Insert(Pos, u8),
    Remove(Pos),
}

impl Mutation {
    fn apply(&self, bytes: &mut Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        match self {
            Mutation::FlipBit(i, bit) => {
                let i = i.index(bytes.len());
                bytes[i] ^= 1 << (bit % 8);
            }
            Mutation::SetByte(i, b) => {
                let i = i.index(bytes.len());
                bytes[i] = *b;
            }
            Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
            Mutation::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), *b),
            Mutation::Remove(i) => {
                let i = i.index(bytes.len());
                bytes.remove(i);
            }
        }
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (pos(), any::<u8>()).prop_map(|(i, bit)| Mutation::FlipBit(i, bit)),
        3 => (pos(), byte()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        1 => pos().prop_map(Mutation::Truncate),
        1 => (pos(), byte()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => pos().prop_map(Mutation::Remove),
    ]
}

/// The `addr` encoding of `a`: family, address bytes, port.
fn addr_bytes(a: SocketAddr) -> Vec<u8> {
    let (family, mut bytes) = match a {
        SocketAddr::V4(v4) => (4, v4.ip().octets().to_vec()),
        SocketAddr::V6(v6) => (6, v6.ip().octets().to_vec()),
    };
    bytes.insert(0, family);
    bytes.extend_from_slice(&a.port().to_be_bytes());
    bytes
}

/// The bytes of an [`AddrList::Encoded`] a caller might build by hand, and
/// how many pieces they were made of: well-formed addresses mostly, with now
/// and then family 0, an unknown family, an address cut short or a stray
/// byte.
fn hand_built_list() -> impl Strategy<Value = (Vec<u8>, usize)> {
    let piece = prop_oneof![
        24 => some_address().prop_map(addr_bytes),
        1 => Just(vec![0]),
        1 => (7..=u8::MAX).prop_map(|family| vec![family, 1, 2, 3, 4, 5, 6]),
        1 => (some_address(), any::<Index>()).prop_map(|(a, cut)| {
            let mut bytes = addr_bytes(a);
            bytes.truncate(cut.index(bytes.len()));
            bytes
        }),
        1 => any::<u8>().prop_map(|b| vec![b]),
    ];
    vec(piece, 0..=MAX_CANDIDATES + 3).prop_map(|pieces| (pieces.concat(), pieces.len()))
}

/// `plaintext` followed by a tag's worth of bytes/// `plaintext` followed by a tag's worth of bytes: what a [`Packet::Sealed`]
/// carrying it holds (the codec does not look inside).
fn with_tag(plaintext: &[u8]) -> Vec<u8> {
    let mut sealed = plaintext.to_vec();
    sealed.extend_from_slice(&[0xa5; SEALED_TAG_LEN]);
    sealed
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// encode → decode gives the same packet; decode → encode the same bytes.
    /// A sealed packet that fits [`MAX_SEALED_PLAINTEXT`] travels inside a
    /// Sealed envelope that fits a datagram, its bytes right after the
    /// [`SEALED_HEADER_LEN`]-byte header.
    #[test]
    fn round_trip(owned in any_packet(), receiver in any::<u32>(), counter in any::<u64>()) {
        owned.with_packet(|packet| -> Result<(), TestCaseError> {
            let Some(bytes) = encode_checked(&packet)? else {
                return Ok(());
            };
            let t = packet.packet_type();
            prop_assert_eq!(bytes[0], t as u8);
            prop_assert_eq!(t.is_sealed(), bytes[0] >= 0x10);
            if t == PacketType::Hello {
                prop_assert_eq!(bytes.len(), HELLO_LEN);
            }
            let decoded = Packet::decode(&bytes);
            prop_assert_eq!(decoded, Ok(packet));
            let mut again = BytesMut::new();
            prop_assert_eq!(decoded.map(|p| p.encode(&mut again)), Ok(Ok(())));
            prop_assert_eq!(&again[..], &bytes[..]);

            if t.is_sealed() && bytes.len() <= MAX_SEALED_PLAINTEXT {
                let sealed = with_tag(&bytes);
                let envelope = Packet::Sealed { receiver, counter, sealed: &sealed };
                let Some(outer) = encode_checked(&envelope)? else {
                    return Err(TestCaseError::fail(format!(
                        "a {}-byte sealed packet does not fit a Sealed", bytes.len()
                    )));
                };
                prop_assert_eq!(outer.len(), SEALED_HEADER_LEN + bytes.len() + SEALED_TAG_LEN);
                prop_assert_eq!(&outer[SEALED_HEADER_LEN..], &sealed[..]);
                let Ok(Packet::Sealed { sealed: inner, .. }) = Packet::decode(&outer) else {
                    return Err(TestCaseError::fail("the envelope does not decode as Sealed"));
                };
                let plaintext = &inner[..inner.len() - SEALED_TAG_LEN];
                prop_assert_eq!(Packet::decode(plaintext), Ok(packet));
            }
            Ok(())
        })?;
    }

    /// Packets made too long on purpose are refused and leave the buffer alone.
    #[test]
    fn too_long_is_refused(
        extra in 1usize..200,
        (seq, base) in seq_base(),
        cookie in short_bytes(),
        names in vec(string_upto(MAX_SHORT_FIELD), 5..12),
    ) {
        // A message whose body makes it exactly `extra` bytes too long.
        let header = Packet::Message {
            stream: 1,
            seq,
            base,
            fragment: 0,
            fragments: 1,
            body: &[],
        }
        .encoded_len();
        let message = Owned::Message {
            stream: 1,
            seq,
            base,
            fragment: 0,
            fragments: 1,
            body: vec![b'x'; MAX_DATAGRAM + extra - header],
        };
        // A Sealed, and a ServerInit after a cookie, made just as long.
        let sealed = Owned::Sealed {
            receiver: 9,
            counter: 10,
            sealed: vec![0; MAX_DATAGRAM + extra - SEALED_HEADER_LEN],
        };
        let init = Owned::ServerInit {
            handshake: vec![0; MAX_DATAGRAM + extra - (1 + 1 + cookie.len() + 4 + 2)],
            cookie,
            sender: 11,
        };
        for owned in [message, sealed, init] {
            owned.with_packet(|p| -> Result<(), TestCaseError> {
                prop_assert_eq!(p.encoded_len(), MAX_DATAGRAM + extra);
                prop_assert_eq!(encode_checked(&p)?, None);
                Ok(())
            })?;
        }
        let list = Owned::ListReply(3, true, 8, names);
        list.with_packet(|p| -> Result<(), TestCaseError> {
            let len = p.encoded_len();
            let encoded = encode_checked(&p)?;
            prop_assert_eq!(encoded.is_none(), len > MAX_DATAGRAM);
            Ok(())
        })?;
    }

    /// Packets with a field the format cannot carry (too long for its length
    /// prefix, or a message fragment or base out of range) are refused, with
    /// the field named, and leave the buffer alone.
    #[test]
    fn invalid_is_refused((owned, expected) in invalid_packet()) {
        owned.with_packet(|p| refused_untouched(&p, expected))?;
    }

    /// A hand-built [`AddrList::Encoded`] encodes exactly when the datagram
    /// it would make decodes (to the same packet); otherwise the encode is
    /// refused, naming the candidates and the count, and the buffer is left
    /// alone.
    #[test]
    fn hand_built_addr_list_encodes_only_if_it_decodes(
        (bytes, pieces) in hand_built_list(),
        // The number of pieces mostly, so that well-formed lists turn up.
        count in proptest::option::weighted(0.2, any::<u8>()),
        which in 0..3usize,
        address in address(),
    ) {
        let with = |candidates| match which {
            0 => Packet::SignIn { request: 1, name: "Alice", replaces: 0, candidates },
            1 => Packet::LookupReply {
                request: 1,
                name: "Alice",
                address,
                key: &[0x4b; 32],
                candidates,
            },
            _ => Packet::Introduction { name: "Alice", key: &[0x4b; 32], address, candidates },
        };
        let count = count.unwrap_or(u8::try_from(pieces).unwrap_or(u8::MAX));
        // The candidates are the last field: the packet without them, then
        // the count and the hand-built bytes.
        let empty = with(AddrList::EMPTY).to_bytes();
        prop_assert!(empty.is_ok(), "{:?}", empty);
        let mut datagram = empty.unwrap_or_default().to_vec();
        datagram.pop();
        datagram.push(count);
        datagram.extend_from_slice(&bytes);

        let packet = with(AddrList::Encoded { count, bytes: &bytes });
        match Packet::decode(&datagram) {
            Ok(decoded) => {
                prop_assert_eq!(decoded, packet);
                let encoded = packet.to_bytes();
                prop_assert_eq!(encoded.as_deref(), Ok(&datagram[..]));
                let list = match decoded {
                    Packet::SignIn { candidates, .. }
                    | Packet::LookupReply { candidates, .. }
                    | Packet::Introduction { candidates, .. } => candidates,
                    _ => return Err(TestCaseError::fail("another packet type")),
                };
                prop_assert_eq!(list.len(), usize::from(count));
                prop_assert_eq!(list.iter().count(), usize::from(count));
                prop_assert!(list.len() <= MAX_CANDIDATES);
            }
            Err(_) => refused_untouched(
                &packet,
                EncodeError::InvalidValue { field: "candidates", value: count.into() },
            )?,
        }
    }

    /// A message fragment's encoding grows with its body only: with the
    /// largest body, [`MAX_FRAGMENT_BODY`], it is exactly
    /// [`MAX_SEALED_PLAINTEXT`] bytes, and sealed (plus its tag) exactly
    /// [`MAX_DATAGRAM`]; with less it is shorter; one byte more does not fit
    /// a Sealed.
    #[test]
    fn largest_message_fills_a_sealed_datagram(
        stream in any::<u64>(),
        (seq, base) in seq_base(),
        (fragment, fragments) in fragment_pair(),
        len in prop_oneof![1 => Just(MAX_FRAGMENT_BODY), 2 => 0..=MAX_FRAGMENT_BODY],
        fill in any::<u8>(),
    ) {
        let body = vec![fill; MAX_FRAGMENT_BODY + 1];
        let message = |len: usize| Packet::Message {
            stream,
            seq,
            base,
            fragment,
            fragments,
            body: &body[..len],
        };

        let plaintext = message(len).to_bytes();
        prop_assert!(plaintext.is_ok(), "{:?}", plaintext);
        let plaintext = plaintext.unwrap_or_default();
        prop_assert!(plaintext.len() <= MAX_SEALED_PLAINTEXT);
        prop_assert_eq!(
            plaintext.len() == MAX_SEALED_PLAINTEXT,
            len == MAX_FRAGMENT_BODY
        );
        prop_assert_eq!(
            MAX_SEALED_PLAINTEXT - plaintext.len(),
            MAX_FRAGMENT_BODY - len
        );
        let sealed = with_tag(&plaintext);
        let envelope = Packet::Sealed { receiver: 1, counter: 2, sealed: &sealed };
        let datagram = envelope.to_bytes();
        prop_assert!(datagram.is_ok(), "{:?}", datagram);
        let datagram = datagram.unwrap_or_default();
        prop_assert_eq!(datagram.len(), MAX_DATAGRAM - (MAX_FRAGMENT_BODY - len));
        prop_assert_eq!(Packet::decode(&plaintext), Ok(message(len)));

        // One byte more: still a datagram on its own, but not a sealed one.
        let over = message(MAX_FRAGMENT_BODY + 1).to_bytes();
        prop_assert!(over.is_ok(), "{:?}", over);
        let over = over.unwrap_or_default();
        prop_assert_eq!(over.len(), MAX_SEALED_PLAINTEXT + 1);
        let sealed = with_tag(&over);
        let envelope = Packet::Sealed { receiver: 1, counter: 2, sealed: &sealed };
        refused_untouched(&envelope, EncodeError::TooLong { len: MAX_DATAGRAM + 1 })?;
    }

    /// Decode of arbitrary bytes never panics and is canonical when it succeeds.
    #[test]
    fn decode_arbitrary_bytes(bytes in arbitrary_datagram()) {
        let result = Packet::decode(&bytes);
        if bytes.len() > MAX_DATAGRAM {
            prop_assert_eq!(result, Err(DecodeError::TooLong(bytes.len())));
        }
        check_canonical(&bytes)?;
    }

    /// Mutated valid encodings never panic and are canonical when they decode.
    #[test]
    fn decode_mutated_encodings(
        owned in any_packet(),
        mutations in vec(mutation(), 1..4),
    ) {
        owned.with_packet(|packet| -> Result<(), TestCaseError> {
            let Some(mut bytes) = encode_checked(&packet)? else {
                return Ok(());
            };
            for m in &mutations {
                m.apply(&mut bytes);
                check_canonical(&bytes)?;
            }
            Ok(())
        })?;
    }

    /// Every value of every byte in a valid encoding's head (where the type,
    /// lengths, enums and flags are) and its last bytes, every truncation, and
    /// a byte inserted or removed at each of those places: never a panic,
    /// canonical when it decodes.
    #[test]
    fn decode_systematic_edits(owned in any_packet()) {
        owned.with_packet(|packet| -> Result<(), TestCaseError> {
            let Some(bytes) = encode_checked(&packet)? else {
                return Ok(());
            };
            let head = bytes.len().min(32);
            let tail = bytes.len().saturating_sub(2).max(head);
            let mut edited = bytes.clone();
            for i in (0..head).chain(tail..bytes.len()) {
                for v in 0..=u8::MAX {
                    edited[i] = v;
                    check_canonical(&edited)?;
                }
                edited[i] = bytes[i];
                let mut removed = bytes.clone();
                removed.remove(i);
                check_canonical(&removed)?;
                let mut inserted = bytes.clone();
                inserted.insert(i, 0);
                check_canonical(&inserted)?;
            }
            for len in 0..bytes.len() {
                prop_assert!(Packet::decode(&bytes[..len]).is_err());
            }
            Ok(())
        })?;
    }
}
