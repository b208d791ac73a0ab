//! Property tests for the codec: round trips for every packet type, the size
//! limit, and decode of arbitrary or mutated bytes (never a panic, and
//! canonical whenever it succeeds).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::BytesMut;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use udpchat::codec::{ErrorCode, MAX_DATAGRAM, MAX_SHORT_FIELD, NameList, RefuseReason};
use udpchat::{DecodeError, EncodeError, Packet, PacketType};

/// A [`Packet`] that owns its data, so a strategy can produce it; the
/// borrowed packet is built from it inside the test body.
#[derive(Debug, Clone)]
enum Owned {
    SignIn(u32, String, Vec<u8>),
    Retry(u32, Vec<u8>),
    SignInAccepted(u32, Vec<u8>),
    SignInRefused(u32, RefuseReason, String),
    ListRequest(u32, Vec<u8>, u32),
    ListReply(u32, bool, u32, Vec<String>),
    LookupRequest(u32, Vec<u8>, String),
    LookupReply(u32, String, Option<SocketAddr>),
    KeepAlive(u32, Vec<u8>),
    KeepAliveAck(u32),
    Probe(u32),
    SignOut(u32, Vec<u8>),
    SignOutAck(u32),
    Error(u32, ErrorCode),
    Message {
        stream: u64,
        seq: u32,
        fragment: u16,
        fragments: u16,
        from: String,
        body: Vec<u8>,
    },
    Ack(u64, u32),
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
            Owned::SignIn(request, name, cookie) => Packet::SignIn {
                request: *request,
                name,
                cookie,
            },
            Owned::Retry(request, cookie) => Packet::Retry {
                request: *request,
                cookie,
            },
            Owned::SignInAccepted(request, token) => Packet::SignInAccepted {
                request: *request,
                token,
            },
            Owned::SignInRefused(request, reason, holder) => Packet::SignInRefused {
                request: *request,
                reason: *reason,
                holder,
            },
            Owned::ListRequest(request, token, cursor) => Packet::ListRequest {
                request: *request,
                token,
                cursor: *cursor,
            },
            Owned::ListReply(request, more, cursor, _) => Packet::ListReply {
                request: *request,
                more: *more,
                cursor: *cursor,
                names: NameList::Names(&names),
            },
            Owned::LookupRequest(request, token, name) => Packet::LookupRequest {
                request: *request,
                token,
                name,
            },
            Owned::LookupReply(request, name, address) => Packet::LookupReply {
                request: *request,
                name,
                address: *address,
            },
            Owned::KeepAlive(request, token) => Packet::KeepAlive {
                request: *request,
                token,
            },
            Owned::KeepAliveAck(request) => Packet::KeepAliveAck { request: *request },
            Owned::Probe(request) => Packet::Probe { request: *request },
            Owned::SignOut(request, token) => Packet::SignOut {
                request: *request,
                token,
            },
            Owned::SignOutAck(request) => Packet::SignOutAck { request: *request },
            Owned::Error(request, code) => Packet::Error {
                request: *request,
                code: *code,
            },
            Owned::Message {
                stream,
                seq,
                fragment,
                fragments,
                from,
                body,
            } => Packet::Message {
                stream: *stream,
                seq: *seq,
                fragment: *fragment,
                fragments: *fragments,
                from,
                body,
            },
            Owned::Ack(stream, seq) => Packet::Ack {
                stream: *stream,
                seq: *seq,
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

fn short_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => Just(Vec::new()),
        2 => vec(any::<u8>(), 16..=16),
        2 => vec(any::<u8>(), 0..=MAX_SHORT_FIELD),
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

/// `(fragment, fragments)` with `fragment < fragments`.
fn fragment_pair() -> impl Strategy<Value = (u16, u16)> {
    (1..=u16::MAX).prop_flat_map(|fragments| (0..fragments, Just(fragments)))
}

/// Every packet variant; some of them encode to more than [`MAX_DATAGRAM`]
/// bytes (long name lists, long bodies), to exercise the size check.
fn any_packet() -> impl Strategy<Value = Owned> {
    prop_oneof![
        (any::<u32>(), short_string(), short_bytes())
            .prop_map(|(r, name, cookie)| Owned::SignIn(r, name, cookie)),
        (any::<u32>(), short_bytes()).prop_map(|(r, cookie)| Owned::Retry(r, cookie)),
        (any::<u32>(), short_bytes()).prop_map(|(r, token)| Owned::SignInAccepted(r, token)),
        (any::<u32>(), refuse_reason(), short_string())
            .prop_map(|(r, reason, holder)| Owned::SignInRefused(r, reason, holder)),
        (any::<u32>(), short_bytes(), any::<u32>())
            .prop_map(|(r, token, cursor)| Owned::ListRequest(r, token, cursor)),
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
        (any::<u32>(), short_bytes(), short_string())
            .prop_map(|(r, token, name)| Owned::LookupRequest(r, token, name)),
        (any::<u32>(), short_string(), address())
            .prop_map(|(r, name, address)| Owned::LookupReply(r, name, address)),
        (any::<u32>(), short_bytes()).prop_map(|(r, token)| Owned::KeepAlive(r, token)),
        any::<u32>().prop_map(Owned::KeepAliveAck),
        any::<u32>().prop_map(Owned::Probe),
        (any::<u32>(), short_bytes()).prop_map(|(r, token)| Owned::SignOut(r, token)),
        any::<u32>().prop_map(Owned::SignOutAck),
        (any::<u32>(), error_code()).prop_map(|(r, code)| Owned::Error(r, code)),
        (
            any::<u64>(),
            any::<u32>(),
            fragment_pair(),
            short_string(),
            prop_oneof![
                3 => vec(any::<u8>(), 0..=900),
                1 => vec(any::<u8>(), 900..=1300),
            ]
        )
            .prop_map(
                |(stream, seq, (fragment, fragments), from, body)| Owned::Message {
                    stream,
                    seq,
                    fragment,
                    fragments,
                    from,
                    body,
                }
            ),
        (any::<u64>(), any::<u32>()).prop_map(|(stream, seq)| Owned::Ack(stream, seq)),
    ]
}

/// Encodes a packet that fits, or checks it is refused with `TooLong` and
/// the buffer is untouched; `None` for the latter.
fn encode_checked(packet: &Packet<'_>) -> Result<Option<Vec<u8>>, TestCaseError> {
    let prefix = b"prefix";
    let mut buf = BytesMut::with_capacity(16);
    buf.extend_from_slice(prefix);
    let capacity = buf.capacity();
    let len = packet.encoded_len();
    let result = packet.encode(&mut buf);
    if len > MAX_DATAGRAM {
        prop_assert_eq!(result, Err(EncodeError::TooLong { len }));
        prop_assert_eq!(&buf[..], &prefix[..]);
        prop_assert_eq!(buf.capacity(), capacity);
        Ok(None)
    } else {
        prop_assert_eq!(result, Ok(()));
        prop_assert_eq!(&buf[..prefix.len()], &prefix[..]);
        prop_assert_eq!(buf.len() - prefix.len(), len);
        Ok(Some(buf[prefix.len()..].to_vec()))
    }
}

/// If `bytes` decodes, it re-encodes to exactly `bytes`.
fn check_canonical(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(packet) = Packet::decode(bytes) {
        prop_assert_eq!(packet.encoded_len(), bytes.len());
        let encoded = packet.to_bytes();
        prop_assert_eq!(encoded.as_deref(), Ok(bytes));
        prop_assert_eq!(Packet::decode(bytes), Ok(packet));
    }
    Ok(())
}

/// Bytes that start with a known type byte most of the time, so decode gets
/// past the first check.
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
        (0usize..24).prop_map(Pos::Head)
    ]
}

/// Byte values that matter to the format: small ones (lengths, enums,
/// booleans, address families, type bytes) and any.
fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![any::<u8>(), 0u8..8, Just(0x10), Just(0x11), Just(0xff)]
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// encode → decode gives the same packet; decode → encode the same bytes.
    #[test]
    fn round_trip(owned in any_packet()) {
        owned.with_packet(|packet| -> Result<(), TestCaseError> {
            let Some(bytes) = encode_checked(&packet)? else {
                return Ok(());
            };
            prop_assert_eq!(bytes[0], packet.packet_type() as u8);
            let decoded = Packet::decode(&bytes);
            prop_assert_eq!(decoded, Ok(packet));
            let mut again = BytesMut::new();
            prop_assert_eq!(decoded.map(|p| p.encode(&mut again)), Ok(Ok(())));
            prop_assert_eq!(&again[..], &bytes[..]);
            Ok(())
        })?;
    }

    /// Packets made too long on purpose are refused and leave the buffer alone.
    #[test]
    fn too_long_is_refused(
        from in string_upto(MAX_SHORT_FIELD),
        extra in 1usize..200,
        names in vec(string_upto(MAX_SHORT_FIELD), 5..12),
    ) {
        // A message whose body makes it exactly `extra` bytes too long.
        let body = vec![b'x'; MAX_DATAGRAM + extra - (20 + from.len())];
        let message = Owned::Message {
            stream: 1,
            seq: 2,
            fragment: 0,
            fragments: 1,
            from,
            body,
        };
        message.with_packet(|p| -> Result<(), TestCaseError> {
            prop_assert_eq!(p.encoded_len(), MAX_DATAGRAM + extra);
            prop_assert_eq!(encode_checked(&p)?, None);
            Ok(())
        })?;
        let list = Owned::ListReply(3, true, 8, names);
        list.with_packet(|p| -> Result<(), TestCaseError> {
            let len = p.encoded_len();
            let encoded = encode_checked(&p)?;
            prop_assert_eq!(encoded.is_none(), len > MAX_DATAGRAM);
            Ok(())
        })?;
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
