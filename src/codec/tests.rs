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

const ALICE_V4: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 51234));
const BOB_V6: SocketAddr = SocketAddr::V6(SocketAddrV6::new(
    Ipv6Addr::new(0x2001, 0x0db8, 0, 0, 0, 0, 0, 0x0001),
    9090,
    0,
    0,
));

/// Host candidates, as a client behind a home router has them.
const HOST_V4: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 20), 51234));
const HOST_V6: SocketAddr = SocketAddr::V6(SocketAddrV6::new(
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x0014),
    51234,
    0,
    0,
));

const HELLO: [u8; HELLO_LEN] = {
    let mut b = [0u8; HELLO_LEN];
    b[0] = 0x01; // type: Hello
    b[4] = 0x07; // request = 7, then 59 zero bytes of padding
    b
};

/// One byte-exact vector per packet type (and per address family / enum
/// value where a packet has them).
fn vectors() -> Vec<(&'static [u8], Packet<'static>)> {
    vec![
        (&HELLO, Packet::Hello { request: 7 }),
        (
            &[
                0x02, // type: Retry
                0x00, 0x00, 0x00, 0x07, // request = 7
                0x02, 0xc0, 0x0c, // cookie: len 2
                0x03, 0x6b, 0x65, 0x79, // key: len 3, "key" (the codec does not check 32)
            ],
            Packet::Retry {
                request: 7,
                cookie: &[0xc0, 0x0c],
                key: b"key",
            },
        ),
        (
            &[
                0x03, // type: ServerInit
                0x01, 0xc0, // cookie: len 1
                0x00, 0x00, 0x01, 0x00, // sender = 256
                0x00, 0x02, 0xaa, 0xbb, // handshake: len 2
            ],
            Packet::ServerInit {
                cookie: &[0xc0],
                sender: 256,
                handshake: &[0xaa, 0xbb],
            },
        ),
        (
            &[
                0x04, // type: ServerResp
                0x00, 0x00, 0x00, 0x09, // sender = 9
                0x00, 0x00, 0x01, 0x00, // receiver = 256
                0x00, 0x01, 0xcc, // handshake: len 1
            ],
            Packet::ServerResp {
                sender: 9,
                receiver: 256,
                handshake: &[0xcc],
            },
        ),
        (
            &[
                0x05, // type: Sealed
                0x00, 0x00, 0x00, 0x09, // receiver = 9
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, // counter = 258
                0x00, 0x03, 0x01, 0x02, 0x03, // sealed: len 3
            ],
            Packet::Sealed {
                receiver: 9,
                counter: 258,
                sealed: &[1, 2, 3],
            },
        ),
        (
            &[
                0x06, // type: PeerInit
                0x12, 0x34, 0x56, 0x78, // sender
                0x00, 0x00, // handshake: len 0
            ],
            Packet::PeerInit {
                sender: 0x1234_5678,
                handshake: &[],
            },
        ),
        (
            &[
                0x07, // type: PeerResp
                0x00, 0x00, 0x00, 0x01, // sender = 1
                0x00, 0x00, 0x00, 0x02, // receiver = 2
                0x00, 0x01, 0x00, // handshake: len 1
            ],
            Packet::PeerResp {
                sender: 1,
                receiver: 2,
                handshake: &[0],
            },
        ),
        (
            &[
                0x0f, // type: Error
                0x00, 0x00, 0x00, 0x09, // request = 9
                0x01, // code = unknown session
            ],
            Packet::Error {
                request: 9,
                code: ErrorCode::UnknownSession,
            },
        ),
        (
            &[
                0x0f, // type: Error
                0x00, 0x00, 0x00, 0x09, // request = 9
                0x02, // code = bad request
            ],
            Packet::Error {
                request: 9,
                code: ErrorCode::BadRequest,
            },
        ),
        (
            &[
                0x10, // type: SignIn
                0x01, 0x02, 0x03, 0x04, // request = 0x01020304
                0x04, b'Z', b'o', 0xc3, 0xab, // name: len 4, "Zoë" (ë is 2 bytes)
                0x00, 0x00, 0x00, 0x05, // replaces = 5
                0x00, // candidates: count 0
            ],
            Packet::SignIn {
                request: 0x0102_0304,
                name: "Zoë",
                replaces: 5,
                candidates: AddrList::EMPTY,
            },
        ),
        (
            &[
                0x10, // type: SignIn
                0x00, 0x00, 0x00, 0x02, // request = 2
                0x05, b'A', b'l', b'i', b'c', b'e', // name: len 5, "Alice"
                0x00, 0x00, 0x00, 0x00, // replaces = 0
                0x02, // candidates: count 2
                0x04, 192, 168, 1, 20, 0xc8, 0x22, // IPv4 192.168.1.20:51234
                0x06, // IPv6
                0xfd, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x14, // fd00::14
                0xc8, 0x22, // port 51234
            ],
            Packet::SignIn {
                request: 2,
                name: "Alice",
                replaces: 0,
                candidates: AddrList::Addrs(&[HOST_V4, HOST_V6]),
            },
        ),
        (
            &[
                0x11, // type: SignInAccepted
                0x00, 0x00, 0x00, 0x07, // request = 7
                0x04, 127, 0, 0, 1, 0xc8, 0x22, // address: IPv4 127.0.0.1:51234
            ],
            Packet::SignInAccepted {
                request: 7,
                address: Some(ALICE_V4),
            },
        ),
        (
            &[
                0x11, // type: SignInAccepted
                0x00, 0x00, 0x00, 0x07, // request = 7
                0x00, // address: none
            ],
            Packet::SignInAccepted {
                request: 7,
                address: None,
            },
        ),
        (
            &[
                0x12, // type: SignInRefused
                0x00, 0x00, 0x00, 0x07, // request = 7
                0x01, // reason = name in use
                0x05, b'A', b'l', b'i', b'c', b'e', // holder: "Alice"
            ],
            Packet::SignInRefused {
                request: 7,
                reason: RefuseReason::NameInUse,
                holder: "Alice",
            },
        ),
        (
            &[0x12, 0, 0, 0, 7, 0x02, 0x00], // invalid name, no holder
            Packet::SignInRefused {
                request: 7,
                reason: RefuseReason::InvalidName,
                holder: "",
            },
        ),
        (
            &[0x12, 0, 0, 0, 7, 0x03, 0x00], // server full
            Packet::SignInRefused {
                request: 7,
                reason: RefuseReason::ServerFull,
                holder: "",
            },
        ),
        (
            &[
                0x13, // type: ListRequest
                0x00, 0x00, 0x00, 0x02, // request = 2
                0x00, 0x00, 0x00, 0x03, // cursor = 3
            ],
            Packet::ListRequest {
                request: 2,
                cursor: 3,
            },
        ),
        (
            &[
                0x14, // type: ListReply
                0x00, 0x00, 0x00, 0x02, // request = 2
                0x01, // more = true
                0x00, 0x00, 0x00, 0x05, // cursor = 5
                0x00, 0x02, // names: count 2
                0x01, b'A', // "A"
                0x02, b'B', b'o', // "Bo"
            ],
            Packet::ListReply {
                request: 2,
                more: true,
                cursor: 5,
                names: NameList::Names(&["A", "Bo"]),
            },
        ),
        (
            &[
                0x15, // type: LookupRequest
                0x00, 0x00, 0x00, 0x03, // request = 3
                0x03, b'B', b'o', b'b', // name: "Bob"
                0x00, // introduce = false
            ],
            Packet::LookupRequest {
                request: 3,
                name: "Bob",
                introduce: false,
            },
        ),
        (
            &[
                0x15, // type: LookupRequest
                0x00, 0x00, 0x00, 0x04, // request = 4
                0x03, b'B', b'o', b'b', // name: "Bob"
                0x01, // introduce = true
            ],
            Packet::LookupRequest {
                request: 4,
                name: "Bob",
                introduce: true,
            },
        ),
        (
            &[
                0x16, // type: LookupReply
                0x00, 0x00, 0x00, 0x03, // request = 3
                0x03, b'B', b'o', b'b', // name: "Bob"
                0x06, // address: IPv6
                0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // 2001:db8::1
                0x23, 0x82, // port 9090
                0x02, 0x4b, 0x42, // key: len 2
                0x00, // candidates: count 0
            ],
            Packet::LookupReply {
                request: 3,
                name: "Bob",
                address: Some(BOB_V6),
                key: b"KB",
                candidates: AddrList::EMPTY,
            },
        ),
        (
            &[
                0x16, // type: LookupReply
                0x00, 0x00, 0x00, 0x04, // request = 4
                0x03, b'B', b'o', b'b', // name: "Bob"
                0x04, 127, 0, 0, 1, 0xc8, 0x22, // address: IPv4 127.0.0.1:51234
                0x02, 0x4b, 0x42, // key: len 2
                0x02, // candidates: count 2
                0x06, // IPv6
                0xfd, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x14, // fd00::14
                0xc8, 0x22, // port 51234
                0x04, 192, 168, 1, 20, 0xc8, 0x22, // IPv4 192.168.1.20:51234
            ],
            Packet::LookupReply {
                request: 4,
                name: "Bob",
                address: Some(ALICE_V4),
                key: b"KB",
                candidates: AddrList::Addrs(&[HOST_V6, HOST_V4]),
            },
        ),
        (
            &[
                0x16, // type: LookupReply
                0x00, 0x00, 0x00, 0x03, // request = 3
                0x01, b'X', // name: "X"
                0x00, // address: none
                0x00, // key: empty
                0x00, // candidates: count 0
            ],
            Packet::LookupReply {
                request: 3,
                name: "X",
                address: None,
                key: b"",
                candidates: AddrList::EMPTY,
            },
        ),
        (
            &[0x17, 0, 0, 0, 4], // KeepAlive, request = 4
            Packet::KeepAlive { request: 4 },
        ),
        (
            &[0x18, 0, 0, 0, 4], // KeepAliveAck, request = 4
            Packet::KeepAliveAck { request: 4 },
        ),
        (
            &[0x19, 0xff, 0xff, 0xff, 0xff], // Probe, request = u32::MAX
            Packet::Probe { request: u32::MAX },
        ),
        (
            &[0x1a, 0, 0, 0, 5], // SignOut, request = 5
            Packet::SignOut { request: 5 },
        ),
        (
            &[0x1b, 0, 0, 0, 5], // SignOutAck, request = 5
            Packet::SignOutAck { request: 5 },
        ),
        (
            &[
                0x1c, // type: Introduction
                0x05, b'A', b'l', b'i', b'c', b'e', // name: len 5, "Alice"
                0x02, 0x4b, 0x41, // key: len 2 (the codec does not check 32)
                0x04, 127, 0, 0, 1, 0xc8, 0x22, // address: IPv4 127.0.0.1:51234
                0x01, // candidates: count 1
                0x04, 192, 168, 1, 20, 0xc8, 0x22, // IPv4 192.168.1.20:51234
            ],
            Packet::Introduction {
                name: "Alice",
                key: b"KA",
                address: Some(ALICE_V4),
                candidates: AddrList::Addrs(&[HOST_V4]),
            },
        ),
        (
            &[
                0x1c, // type: Introduction
                0x01, b'X', // name: "X"
                0x00, // key: empty
                0x00, // address: none
                0x00, // candidates: count 0
            ],
            Packet::Introduction {
                name: "X",
                key: b"",
                address: None,
                candidates: AddrList::EMPTY,
            },
        ),
        (
            &[
                0x20, // type: Message
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, // stream = 42
                0x00, 0x00, 0x00, 0x05, // seq = 5
                0x00, 0x00, 0x00, 0x03, // base = 3
                0x00, 0x01, // fragment = 1
                0x00, 0x02, // fragments = 2
                0x00, 0x02, b'h', b'i', // body: len 2, "hi"
            ],
            Packet::Message {
                stream: 42,
                seq: 5,
                base: 3,
                fragment: 1,
                fragments: 2,
                body: b"hi",
            },
        ),
        (
            &[
                0x21, // type: Ack
                0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88, // stream
                0x12, 0x34, 0x56, 0x78, // first
                0x12, 0x34, 0x56, 0x7a, // last
            ],
            Packet::Ack {
                stream: 0xffee_ddcc_bbaa_9988,
                first: 0x1234_5678,
                last: 0x1234_567a,
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
        let covered = vectors
            .iter()
            .any(|(bytes, p)| p.packet_type() == t && bytes[0] == t as u8);
        assert!(covered, "no vector for {t:?}");
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
fn sealed_types_are_told_apart_from_clear_ones() {
    let sealed: Vec<_> = PacketType::ALL.iter().filter(|t| t.is_sealed()).collect();
    assert_eq!(sealed.len(), 15);
    assert!(!PacketType::Sealed.is_sealed());
    assert!(!PacketType::Error.is_sealed());
    assert!(PacketType::Message.is_sealed());
}

#[test]
fn hello_padding_must_be_zero_and_complete() {
    let mut bad = HELLO;
    bad[40] = 1;
    assert_eq!(
        Packet::decode(&bad),
        Err(DecodeError::InvalidValue {
            field: "padding",
            value: 1
        })
    );
    assert!(matches!(
        Packet::decode(&HELLO[..HELLO_LEN - 1]),
        Err(DecodeError::Truncated {
            field: "padding",
            ..
        })
    ));
}

#[test]
fn decoded_name_list_iterates_borrowed_names() {
    let bytes: &[u8] = &[
        0x14, // type: ListReply
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
    check_vector(bytes, Packet::decode(bytes).unwrap());
}

#[test]
fn decoded_fields_borrow_from_the_datagram() {
    let bytes: &[u8] = &[
        0x05, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x02, 0xaa, 0xbb,
    ];
    let Ok(Packet::Sealed { sealed, .. }) = Packet::decode(bytes) else {
        panic!("not sealed");
    };
    assert_eq!(sealed.as_ptr(), bytes[SEALED_HEADER_LEN..].as_ptr());
}

#[test]
fn unknown_types() {
    for byte in [0x00, 0x08, 0x0e, 0x1d, 0x1f, 0x22, 0x80, 0xff] {
        assert_eq!(
            Packet::decode(&[byte, 0, 0, 0, 0]),
            Err(DecodeError::UnknownType(byte))
        );
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
fn invalid_utf8_in_every_string_field() {
    let cases: [(&[u8], &str); 6] = [
        (&[0x10, 0, 0, 0, 1, 0x01, 0xff, 0, 0, 0, 0, 0], "name"),
        (&[0x12, 0, 0, 0, 1, 0x01, 0x01, 0xc3], "holder"),
        (&[0x15, 0, 0, 0, 1, 0x02, 0xc3, 0x28, 0], "name"),
        (&[0x16, 0, 0, 0, 1, 0x01, 0xfe, 0, 0, 0], "name"),
        (&[0x1c, 0x02, 0xe2, 0x82, 0, 0, 0], "name"),
        (
            &[0x14, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0x01, 0x80],
            "names",
        ),
    ];
    for (bytes, field) in cases {
        assert_eq!(
            Packet::decode(bytes),
            Err(DecodeError::InvalidUtf8 { field }),
            "{bytes:02x?}"
        );
    }
}

#[test]
fn bad_enum_bool_and_family_values() {
    let cases: [(&[u8], &str, u64); 10] = [
        (&[0x12, 0, 0, 0, 1, 0x00, 0x00], "reason", 0),
        (&[0x12, 0, 0, 0, 1, 0x04, 0x00], "reason", 4),
        (&[0x0f, 0, 0, 0, 1, 0x03], "code", 3),
        (&[0x14, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 0, 0], "more", 2),
        (&[0x11, 0, 0, 0, 1, 0x05], "address family", 5),
        (&[0x15, 0, 0, 0, 1, 0x01, b'B', 0x02], "introduce", 2),
        (&[0x15, 0, 0, 0, 1, 0x01, b'B', 0xff], "introduce", 255),
        (&[0x16, 0, 0, 0, 1, 0x01, b'B', 0x07], "address family", 7),
        (&[0x1c, 0x01, b'A', 0x00, 0x03], "address family", 3),
        // An unknown family inside a candidate list.
        (
            &[0x1c, 0x01, b'A', 0x00, 0x00, 0x01, 0x05],
            "address family",
            5,
        ),
    ];
    for (bytes, field, value) in cases {
        assert_eq!(
            Packet::decode(bytes),
            Err(DecodeError::InvalidValue { field, value }),
            "{bytes:02x?}"
        );
    }
}

fn message(seq: u32, base: u32, fragment: u16, fragments: u16, body: &[u8]) -> Packet<'_> {
    Packet::Message {
        stream: 1,
        seq,
        base,
        fragment,
        fragments,
        body,
    }
}

#[test]
fn fragment_must_be_less_than_fragments_and_base_at_most_seq() {
    for (fragment, fragments) in [(0, 0), (1, 1), (5, 2), (0xffff, 0xffff)] {
        let mut bytes = message(2, 0, 0, 1, b"").to_bytes().unwrap().to_vec();
        bytes[17..19].copy_from_slice(&u16::to_be_bytes(fragment));
        bytes[19..21].copy_from_slice(&u16::to_be_bytes(fragments));
        assert_eq!(
            Packet::decode(&bytes),
            Err(DecodeError::InvalidValue {
                field: "fragment",
                value: fragment.into()
            })
        );
        check_encode_error(
            message(2, 0, fragment, fragments, b""),
            EncodeError::InvalidValue {
                field: "fragment",
                value: fragment.into(),
            },
        );
    }
    let mut bytes = message(2, 0, 0, 1, b"").to_bytes().unwrap().to_vec();
    bytes[13..17].copy_from_slice(&3u32.to_be_bytes());
    assert_eq!(
        Packet::decode(&bytes),
        Err(DecodeError::InvalidValue {
            field: "base",
            value: 3
        })
    );
    check_encode_error(
        message(2, 3, 0, 1, b""),
        EncodeError::InvalidValue {
            field: "base",
            value: 3,
        },
    );
    check_vector(
        &message(2, 2, 0xfffe, 0xffff, b"").to_bytes().unwrap(),
        message(2, 2, 0xfffe, 0xffff, b""),
    );
}

#[test]
fn datagram_size_limit() {
    let sealed = vec![7u8; MAX_DATAGRAM - SEALED_HEADER_LEN];
    let exact = Packet::Sealed {
        receiver: 1,
        counter: 2,
        sealed: &sealed,
    };
    assert_eq!(exact.encoded_len(), MAX_DATAGRAM);
    let bytes = exact.to_bytes().unwrap();
    assert_eq!(Packet::decode(&bytes), Ok(exact));
    let mut over = bytes.to_vec();
    over.push(0);
    assert_eq!(
        Packet::decode(&over),
        Err(DecodeError::TooLong(MAX_DATAGRAM + 1))
    );
    let longer = vec![7u8; MAX_DATAGRAM - SEALED_HEADER_LEN + 1];
    check_encode_error(
        Packet::Sealed {
            receiver: 1,
            counter: 2,
            sealed: &longer,
        },
        EncodeError::TooLong {
            len: MAX_DATAGRAM + 1,
        },
    );
}

#[test]
fn the_largest_fragment_fits_sealed_in_one_datagram() {
    let body = vec![b'b'; MAX_FRAGMENT_BODY + 1];
    let fits = message(u32::MAX, 0, 0, 1, &body[..MAX_FRAGMENT_BODY]);
    assert_eq!(fits.encoded_len(), MAX_SEALED_PLAINTEXT);
    assert_eq!(
        MAX_SEALED_PLAINTEXT + SEALED_HEADER_LEN + SEALED_TAG_LEN,
        MAX_DATAGRAM
    );
    assert_eq!(
        message(u32::MAX, 0, 0, 1, &body).encoded_len(),
        MAX_SEALED_PLAINTEXT + 1
    );
}

#[test]
fn encode_field_too_long_leaves_the_buffer_untouched() {
    let s256 = "s".repeat(256);
    let b256 = vec![7u8; 256];
    let b64k = vec![0u8; usize::from(u16::MAX) + 1];
    let short = |field, len| EncodeError::FieldTooLong {
        field,
        len,
        max: MAX_SHORT_FIELD,
    };
    let long = |field| EncodeError::FieldTooLong {
        field,
        len: usize::from(u16::MAX) + 1,
        max: usize::from(u16::MAX),
    };
    let names = ["A", s256.as_str()];
    let many = vec![""; usize::from(u16::MAX) + 1];
    let cases = [
        (
            Packet::Retry {
                request: 1,
                cookie: &b256,
                key: b"",
            },
            short("cookie", 256),
        ),
        (
            Packet::Retry {
                request: 1,
                cookie: b"",
                key: &b256,
            },
            short("key", 256),
        ),
        (
            Packet::ServerInit {
                cookie: &b256,
                sender: 1,
                handshake: b"",
            },
            short("cookie", 256),
        ),
        (
            Packet::ServerInit {
                cookie: b"",
                sender: 1,
                handshake: &b64k,
            },
            long("handshake"),
        ),
        (
            Packet::PeerInit {
                sender: 1,
                handshake: &b64k,
            },
            long("handshake"),
        ),
        (
            Packet::Sealed {
                receiver: 1,
                counter: 1,
                sealed: &b64k,
            },
            long("sealed"),
        ),
        (
            Packet::SignIn {
                request: 1,
                name: &s256,
                replaces: 0,
                candidates: AddrList::EMPTY,
            },
            short("name", 256),
        ),
        (
            Packet::LookupRequest {
                request: 1,
                name: &s256,
                introduce: true,
            },
            short("name", 256),
        ),
        (
            Packet::LookupReply {
                request: 1,
                name: "A",
                address: None,
                key: &b256,
                candidates: AddrList::EMPTY,
            },
            short("key", 256),
        ),
        (
            Packet::LookupReply {
                request: 1,
                name: &s256,
                address: None,
                key: b"",
                candidates: AddrList::EMPTY,
            },
            short("name", 256),
        ),
        (
            Packet::Introduction {
                name: &s256,
                key: b"",
                address: None,
                candidates: AddrList::EMPTY,
            },
            short("name", 256),
        ),
        (
            Packet::Introduction {
                name: "A",
                key: &b256,
                address: Some(ALICE_V4),
                candidates: AddrList::Addrs(&[HOST_V4]),
            },
            short("key", 256),
        ),
        (
            Packet::SignInRefused {
                request: 1,
                reason: RefuseReason::NameInUse,
                holder: &s256,
            },
            short("holder", 256),
        ),
        (message(1, 0, 0, 1, &b64k), long("body")),
        (
            Packet::ListReply {
                request: 1,
                more: false,
                cursor: 0,
                names: NameList::Names(&names),
            },
            short("names", 256),
        ),
        (
            Packet::ListReply {
                request: 1,
                more: false,
                cursor: 0,
                names: NameList::Names(&many),
            },
            EncodeError::FieldTooLong {
                field: "names",
                len: many.len(),
                max: usize::from(u16::MAX),
            },
        ),
    ];
    for (packet, expected) in cases {
        check_encode_error(packet, expected);
    }
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

/// The three packets that carry an `addrs` field, each holding `candidates`.
fn with_candidates(candidates: AddrList<'_>) -> [Packet<'_>; 3] {
    [
        Packet::SignIn {
            request: 1,
            name: "A",
            replaces: 0,
            candidates,
        },
        Packet::LookupReply {
            request: 1,
            name: "A",
            address: Some(ALICE_V4),
            key: b"K",
            candidates,
        },
        Packet::Introduction {
            name: "A",
            key: b"K",
            address: None,
            candidates,
        },
    ]
}

/// The fields before `candidates` in each of [`with_candidates`]' packets.
const BEFORE_CANDIDATES: [&[u8]; 3] = [
    &[0x10, 0, 0, 0, 1, 0x01, b'A', 0, 0, 0, 0],
    &[
        0x16, 0, 0, 0, 1, 0x01, b'A', 0x04, 127, 0, 0, 1, 0xc8, 0x22, 0x01, b'K',
    ],
    &[0x1c, 0x01, b'A', 0x01, b'K', 0x00],
];

/// Each packet of [`with_candidates`] with `list` (count and addresses) as
/// its candidates field.
fn with_list_bytes(list: &[u8]) -> [Vec<u8>; 3] {
    BEFORE_CANDIDATES.map(|head| [head, list].concat())
}

#[test]
fn decoded_addr_list_iterates_in_place() {
    let bytes: &[u8] = &[
        0x10, // type: SignIn
        0x00, 0x00, 0x00, 0x01, // request = 1
        0x01, b'A', // name: "A"
        0x00, 0x00, 0x00, 0x00, // replaces = 0
        0x03, // candidates: count 3
        0x04, 192, 168, 1, 20, 0xc8, 0x22, // IPv4 192.168.1.20:51234
        0x06, // IPv6
        0xfd, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x14, // fd00::14
        0xc8, 0x22, // port 51234
        0x04, 127, 0, 0, 1, 0xc8, 0x22, // IPv4 127.0.0.1:51234
    ];
    let Ok(Packet::SignIn { candidates, .. }) = Packet::decode(bytes) else {
        panic!("not a sign-in");
    };
    assert!(matches!(candidates, AddrList::Encoded { count: 3, .. }));
    // The list borrows the datagram's bytes: nothing was copied.
    let AddrList::Encoded { bytes: list, .. } = candidates else {
        unreachable!();
    };
    assert_eq!(list.as_ptr(), bytes[12..].as_ptr());
    assert_eq!(candidates.len(), 3);
    assert!(!candidates.is_empty());
    assert_eq!(
        candidates.iter().collect::<Vec<_>>(),
        [HOST_V4, HOST_V6, ALICE_V4]
    );
    assert_eq!(candidates.encoded_len(), bytes.len() - 11);
    assert_eq!(
        format!("{candidates:?}"),
        "[192.168.1.20:51234, [fd00::14]:51234, 127.0.0.1:51234]"
    );
    assert_eq!(candidates, AddrList::Addrs(&[HOST_V4, HOST_V6, ALICE_V4]));
    assert_ne!(candidates, AddrList::Addrs(&[HOST_V6, HOST_V4, ALICE_V4]));
    assert_ne!(candidates, AddrList::Addrs(&[HOST_V4, HOST_V6]));
    assert_ne!(candidates, AddrList::EMPTY);
    // The decoded list (still `Encoded`) encodes back to the same bytes.
    check_vector(bytes, Packet::decode(bytes).unwrap());

    assert!(AddrList::EMPTY.is_empty());
    assert_eq!(AddrList::EMPTY.encoded_len(), 1);
    assert_eq!(AddrList::EMPTY.iter().next(), None);
    assert_eq!(format!("{:?}", AddrList::EMPTY), "[]");
    assert_eq!(
        AddrList::EMPTY,
        AddrList::Encoded {
            count: 0,
            bytes: &[]
        }
    );
}

#[test]
fn max_candidates_of_either_family_round_trip() {
    let full: Vec<SocketAddr> = (0..MAX_CANDIDATES)
        .map(|i| {
            let port = 4000 + u16::try_from(i).unwrap();
            if i % 2 == 0 {
                SocketAddr::new(Ipv4Addr::new(10, 0, 0, 2).into(), port)
            } else {
                SocketAddr::new(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2).into(), port)
            }
        })
        .collect();
    for packet in with_candidates(AddrList::Addrs(&full)) {
        let bytes = packet.to_bytes().unwrap();
        check_vector(&bytes, packet);
        let decoded = Packet::decode(&bytes).unwrap();
        check_vector(&bytes, decoded);
    }
}

#[test]
fn candidate_count_over_the_limit_is_an_error() {
    // Nine well-formed addresses: the count alone is refused, before they
    // are read.
    let nine: Vec<u8> = std::iter::once(9)
        .chain((0..9).flat_map(|i| [0x04, 10, 0, 0, i, 0x0f, 0xa0]))
        .collect();
    let cases: [(&[u8], u64); 3] = [(&nine, 9), (&[9], 9), (&[0xff], 255)];
    for (list, count) in cases {
        for bytes in with_list_bytes(list) {
            assert_eq!(
                Packet::decode(&bytes),
                Err(DecodeError::InvalidValue {
                    field: "candidates",
                    value: count,
                }),
                "{bytes:02x?}"
            );
        }
    }
}

#[test]
fn family_0_inside_a_candidate_list_is_an_error() {
    let cases: [&[u8]; 3] = [
        &[0x01, 0x00],                                // the only entry
        &[0x02, 0x04, 10, 0, 0, 1, 0x0f, 0xa0, 0x00], // the second entry
        &[0x02, 0x00, 0x04, 10, 0, 0, 1, 0x0f, 0xa0], // the first of two
    ];
    for list in cases {
        for bytes in with_list_bytes(list) {
            assert_eq!(
                Packet::decode(&bytes),
                Err(DecodeError::InvalidValue {
                    field: "candidates",
                    value: 0,
                }),
                "{bytes:02x?}"
            );
        }
    }
}

#[test]
fn truncated_candidate_list() {
    let truncated = |field, needed, remaining| DecodeError::Truncated {
        field,
        needed,
        remaining,
    };
    let cases: [(&[u8], DecodeError); 5] = [
        // No count at all.
        (&[], truncated("candidates", 1, 0)),
        // Two announced, one present.
        (
            &[0x02, 0x04, 10, 0, 0, 1, 0x0f, 0xa0],
            truncated("address", 1, 0),
        ),
        // An IPv6 address cut short.
        (
            &[0x01, 0x06, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            truncated("address", 16, 10),
        ),
        // An IPv4 address without all of its port.
        (&[0x01, 0x04, 10, 0, 0, 1, 0x0f], truncated("port", 2, 1)),
        // The count says one, nothing follows.
        (&[0x01], truncated("address", 1, 0)),
    ];
    for (list, expected) in cases {
        for bytes in with_list_bytes(list) {
            assert_eq!(Packet::decode(&bytes), Err(expected), "{bytes:02x?}");
        }
    }
}

#[test]
fn encode_rejects_more_than_max_candidates() {
    let many: Vec<SocketAddr> = (0..200)
        .map(|i| SocketAddr::new(Ipv4Addr::LOCALHOST.into(), i))
        .collect();
    for n in [MAX_CANDIDATES + 1, 200] {
        for packet in with_candidates(AddrList::Addrs(&many[..n])) {
            check_encode_error(
                packet,
                EncodeError::InvalidValue {
                    field: "candidates",
                    value: u64::try_from(n).unwrap(),
                },
            );
        }
    }
    for packet in with_candidates(AddrList::Addrs(&many[..MAX_CANDIDATES])) {
        assert!(packet.to_bytes().is_ok(), "{packet:?}");
    }
}

#[test]
fn encode_rejects_malformed_encoded_addr_list() {
    // `AddrList::Encoded` is public, so a caller can build one that does
    // not hold `count` addresses of family 4 or 6; encoding it must fail
    // rather than write a datagram that does not decode.
    const V4: [u8; 7] = [0x04, 10, 0, 0, 1, 0x0f, 0xa0];
    let nine = V4.repeat(9);
    let cases: [(u8, &[u8]); 10] = [
        (2, &V4),                          // fewer addresses than the count
        (1, &[V4, V4].concat()),           // more addresses than the count
        (0, &V4),                          // bytes with a zero count
        (1, &[0x00]),                      // family 0 (none) inside a list
        (2, &[&V4[..], &[0x00]].concat()), // family 0 after a good address
        (1, &[0x05, 1, 2, 3, 4, 0, 1]),    // an unknown family
        (1, &V4[..5]),                     // an address cut short
        (1, &[&V4[..], &[0x07]].concat()), // a stray byte after the list
        (9, &nine),                        // well-formed, but over the limit
        (255, &[]),                        // a count far over the limit
    ];
    for (count, bytes) in cases {
        for packet in with_candidates(AddrList::Encoded { count, bytes }) {
            check_encode_error(
                packet,
                EncodeError::InvalidValue {
                    field: "candidates",
                    value: count.into(),
                },
            );
        }
    }
}

#[test]
fn the_largest_candidate_lists_fit() {
    let v6 = SocketAddr::new(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 3, 4, 5, 6).into(), 65535);
    let full = [v6; MAX_CANDIDATES];
    let name = "n".repeat(MAX_SHORT_FIELD);
    let key = [0x4b; MAX_SHORT_FIELD];
    // The longest SignIn, in a Noise message 1 after the longest cookie.
    let sign_in = Packet::SignIn {
        request: 1,
        name: &name,
        replaces: 1,
        candidates: AddrList::Addrs(&full),
    };
    let handshake = vec![0; crate::crypto::noise::MSG1_OVERHEAD + sign_in.encoded_len()];
    let init = Packet::ServerInit {
        cookie: &key,
        sender: 1,
        handshake: &handshake,
    };
    assert!(init.encoded_len() <= MAX_DATAGRAM, "{}", init.encoded_len());
    assert!(init.to_bytes().is_ok());
    // The longest LookupReply and Introduction, sealed.
    let reply = Packet::LookupReply {
        request: 1,
        name: &name,
        address: Some(v6),
        key: &key,
        candidates: AddrList::Addrs(&full),
    };
    let introduction = Packet::Introduction {
        name: &name,
        key: &key,
        address: Some(v6),
        candidates: AddrList::Addrs(&full),
    };
    for packet in [reply, introduction] {
        assert!(
            packet.encoded_len() <= MAX_SEALED_PLAINTEXT,
            "{:?} is {} bytes",
            packet.packet_type(),
            packet.encoded_len()
        );
        let bytes = packet.to_bytes().unwrap();
        assert_eq!(Packet::decode(&bytes), Ok(packet));
    }
}

#[test]
fn ipv6_flowinfo_and_scope_are_not_carried() {
    let scoped = SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2),
        80,
        7,
        3,
    ));
    let packet = Packet::SignInAccepted {
        request: 1,
        address: Some(scoped),
    };
    let bytes = packet.to_bytes().unwrap();
    let Ok(Packet::SignInAccepted {
        address: Some(SocketAddr::V6(a)),
        ..
    }) = Packet::decode(&bytes)
    else {
        panic!("not an IPv6 address");
    };
    assert_eq!((a.flowinfo(), a.scope_id(), a.port()), (0, 0, 80));
    // An IPv4-mapped IPv6 address stays IPv6 (family 6), so it round-trips.
    let mapped = SocketAddr::new(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped().into(), 7);
    let packet = Packet::SignInAccepted {
        request: 1,
        address: Some(mapped),
    };
    let encoded = packet.to_bytes().unwrap();
    assert_eq!(encoded[5], 6);
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

#[test]
fn frames_read_back_to_back_packets_in_order() {
    let mut plaintext = BytesMut::new();
    let packets = [
        Packet::Message {
            stream: 9,
            seq: 4,
            base: 2,
            fragment: 0,
            fragments: 1,
            body: b"hi",
        },
        Packet::Ack {
            stream: 3,
            first: 10,
            last: 20,
        },
        Packet::Message {
            stream: 9,
            seq: 5,
            base: 2,
            fragment: 0,
            fragments: 1,
            body: b"",
        },
    ];
    for p in &packets {
        p.encode(&mut plaintext).expect("encodes");
    }
    let read: Vec<Packet<'_>> = Packet::frames(&plaintext)
        .collect::<Result<_, _>>()
        .expect("valid frames");
    assert_eq!(read, packets);
    // Each frame is canonical on its own: the concatenation is the input.
    assert_eq!(Packet::frames(&[]).count(), 0);
    // The whole plaintext is not one packet.
    assert_eq!(
        Packet::decode(&plaintext),
        Err(DecodeError::TrailingBytes(
            plaintext.len() - packets[0].encoded_len()
        ))
    );
}

#[test]
fn a_malformed_frame_ends_the_frames_and_keeps_those_before() {
    let mut plaintext = BytesMut::new();
    let ack = Packet::Ack {
        stream: 1,
        first: 1,
        last: 1,
    };
    ack.encode(&mut plaintext).expect("encodes");
    plaintext.extend_from_slice(&[PacketType::Hello as u8]); // clear, and cut short
    ack.encode(&mut plaintext).expect("encodes");
    let read: Vec<_> = Packet::frames(&plaintext).collect();
    assert_eq!(read.len(), 2, "{read:?}");
    assert_eq!(read[0], Ok(ack));
    assert!(read[1].is_err());
    // A frame cut short at the end.
    let read: Vec<_> = Packet::frames(&plaintext[..plaintext.len() - 1]).collect();
    assert!(read.last().is_some_and(Result::is_err));
    // Unknown types and clear packets are as malformed as in a datagram.
    let read: Vec<_> = Packet::frames(&[0x7f]).collect();
    assert_eq!(read, [Err(DecodeError::UnknownType(0x7f))]);
    let long = vec![0u8; MAX_DATAGRAM + 1];
    let read: Vec<_> = Packet::frames(&long).collect();
    assert_eq!(read, [Err(DecodeError::TooLong(MAX_DATAGRAM + 1))]);
}

#[test]
fn an_ack_range_must_not_run_backwards() {
    let bytes = [0x21, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 0, 4];
    assert_eq!(
        Packet::decode(&bytes),
        Err(DecodeError::InvalidValue {
            field: "last",
            value: 4
        })
    );
    check_encode_error(
        Packet::Ack {
            stream: 1,
            first: 5,
            last: 4,
        },
        EncodeError::InvalidValue {
            field: "last",
            value: 4,
        },
    );
}

/// Encode appends zeros for the head, writes its fields over them, then
/// appends the tail: a head of any length, after bytes already in the buffer
/// and into an empty one, comes out byte-exact.
#[test]
fn heads_of_any_length_encode_byte_exact() {
    // SignInRefused: type, request, reason, holder (str8): 7 + holder bytes.
    for holder_len in [0, 1, 57, 121, 122, MAX_SHORT_FIELD] {
        let holder = "h".repeat(holder_len);
        let packet = Packet::SignInRefused {
            request: 0x0102_0304,
            reason: RefuseReason::NameInUse,
            holder: &holder,
        };
        let mut expected = vec![0x12, 0x01, 0x02, 0x03, 0x04, 0x01];
        expected.push(u8::try_from(holder_len).unwrap());
        expected.extend_from_slice(holder.as_bytes());
        assert_eq!(packet.encoded_len(), expected.len());
        let mut buf = prefilled();
        assert_eq!(packet.encode(&mut buf), Ok(()));
        assert_eq!(&buf[..PREFIX.len()], PREFIX, "encode overwrote the buffer");
        assert_eq!(&buf[PREFIX.len()..], &expected[..], "head of {holder_len}");
        let mut empty = BytesMut::new();
        assert_eq!(packet.encode(&mut empty), Ok(()));
        assert_eq!(&empty[..], &expected[..], "head of {holder_len}");
    }
    // A Message's head, then its text; twice into one buffer.
    let body = b"text after the header";
    let packet = message(9, 8, 1, 2, body);
    let mut buf = BytesMut::new();
    assert_eq!(packet.encode(&mut buf), Ok(()));
    assert_eq!(packet.encode(&mut buf), Ok(()));
    let (first, second) = buf.split_at(packet.encoded_len());
    assert_eq!(first, second);
    assert_eq!(Packet::decode(first), Ok(packet));
    assert_eq!(&first[first.len() - body.len()..], body);
}
