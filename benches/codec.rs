//! Codec throughput: encode and decode of every packet type at a small and a
//! large size, and the same chat message through udpchat's codec, postcard
//! and serde_json side by side.
//!
//! ```text
//! cargo bench --bench codec -- --warm-up-time 1 --measurement-time 2
//! cargo bench --bench codec -- versus      # only the comparison
//! ```
//!
//! Groups `encode` and `decode` report `Throughput::Bytes` of the datagram,
//! so criterion prints bytes/s beside the time per packet. In the group
//! `versus` every format's throughput is counted in the same bytes (the
//! message's `from` and `body` text), so the time and the bytes/s columns
//! compare directly across formats.

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};
use udpchat::Packet;
use udpchat::codec::{ErrorCode, MAX_DATAGRAM, MAX_SHORT_FIELD, NameList, RefuseReason};
use udpchat::crypto::TransportKeys;

/// Owned test data the packets borrow from.
struct Data {
    token: Vec<u8>,
    cookie: Vec<u8>,
    long_name: String,
    few_names: Vec<&'static str>,
    page: Vec<String>,
    small_body: Vec<u8>,
    large_body: Vec<u8>,
}

impl Data {
    fn new() -> Self {
        Data {
            token: vec![0x5a; 16],
            cookie: vec![0xc0; 32],
            long_name: "n".repeat(MAX_SHORT_FIELD),
            few_names: vec!["Bob", "Carole", "Dave"],
            // 8 header bytes + 91 × (1 + 12) = 1191 bytes: a full page.
            page: (0..91).map(|i| format!("user{i:03}-name")).collect(),
            small_body: b"Hello, Carole!!!".to_vec(),
            large_body: "Hello this is Alice. ".repeat(60).into_bytes()[..1100].to_vec(),
        }
    }
}

/// `(name, size label, packet)` for every packet type; two sizes for the
/// types with variable fields.
fn packets<'a>(d: &'a Data, page: &'a [&'a str]) -> Vec<(&'static str, &'static str, Packet<'a>)> {
    let v4 = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 7), 51234));
    let v6 = SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
        9090,
        0,
        0,
    ));
    let long = d.long_name.as_str();
    vec![
        (
            "sign-in",
            "small",
            Packet::SignIn {
                request: 1,
                name: "Alice",
                cookie: b"",
            },
        ),
        (
            "sign-in",
            "large",
            Packet::SignIn {
                request: 1,
                name: long,
                cookie: &d.cookie,
            },
        ),
        (
            "retry",
            "small",
            Packet::Retry {
                request: 1,
                cookie: &d.cookie,
            },
        ),
        (
            "sign-in-accepted",
            "small",
            Packet::SignInAccepted {
                request: 1,
                token: &d.token,
            },
        ),
        (
            "sign-in-refused",
            "small",
            Packet::SignInRefused {
                request: 1,
                reason: RefuseReason::NameInUse,
                holder: "Alice",
            },
        ),
        (
            "list-request",
            "small",
            Packet::ListRequest {
                request: 2,
                token: &d.token,
                cursor: 0,
            },
        ),
        (
            "list-request",
            "large",
            Packet::ListRequest {
                request: 2,
                token: &d.token,
                cursor: u32::MAX,
            },
        ),
        (
            "list-reply",
            "3 names",
            Packet::ListReply {
                request: 2,
                more: false,
                cursor: 0,
                names: NameList::Names(&d.few_names),
            },
        ),
        (
            "list-reply",
            "full page",
            Packet::ListReply {
                request: 2,
                more: true,
                cursor: 1234,
                names: NameList::Names(page),
            },
        ),
        (
            "lookup-request",
            "small",
            Packet::LookupRequest {
                request: 3,
                token: &d.token,
                name: "Carole",
            },
        ),
        (
            "lookup-reply",
            "ipv4",
            Packet::LookupReply {
                request: 3,
                name: "Carole",
                address: Some(v4),
            },
        ),
        (
            "lookup-reply",
            "ipv6",
            Packet::LookupReply {
                request: 3,
                name: "Carole",
                address: Some(v6),
            },
        ),
        (
            "keep-alive",
            "small",
            Packet::KeepAlive {
                request: 4,
                token: &d.token,
            },
        ),
        (
            "keep-alive-ack",
            "small",
            Packet::KeepAliveAck { request: 4 },
        ),
        ("probe", "small", Packet::Probe { request: 5 }),
        (
            "sign-out",
            "small",
            Packet::SignOut {
                request: 6,
                token: &d.token,
            },
        ),
        ("sign-out-ack", "small", Packet::SignOutAck { request: 6 }),
        (
            "error",
            "small",
            Packet::Error {
                request: 7,
                code: ErrorCode::UnknownSession,
            },
        ),
        ("message", "16B body", message(&d.small_body)),
        ("message", "1100B body", message(&d.large_body)),
        ("ack", "small", Packet::Ack { stream: 1, seq: 2 }),
    ]
}

fn bytes_of(len: usize) -> Throughput {
    Throughput::Bytes(u64::try_from(len).unwrap_or(u64::MAX))
}

fn message(body: &[u8]) -> Packet<'_> {
    Packet::Message {
        stream: 0x0123_4567_89ab_cdef,
        seq: 42,
        fragment: 0,
        fragments: 1,
        from: "Alice",
        body,
    }
}

fn encode_decode(c: &mut Criterion) {
    let d = Data::new();
    let page: Vec<&str> = d.page.iter().map(String::as_str).collect();
    let packets = packets(&d, &page);
    let encoded: Vec<Vec<u8>> = packets
        .iter()
        .map(|(name, _, p)| match p.to_bytes() {
            Ok(b) => b.to_vec(),
            Err(e) => panic!("{name}: {e}"),
        })
        .collect();

    let mut group = c.benchmark_group("encode");
    let mut buf = BytesMut::with_capacity(MAX_DATAGRAM);
    for ((name, size, packet), bytes) in packets.iter().zip(&encoded) {
        group.throughput(bytes_of(bytes.len()));
        group.bench_function(BenchmarkId::new(*name, size), |b| {
            b.iter(|| {
                buf.clear();
                black_box(packet).encode(&mut buf)
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("decode");
    for ((name, size, _), bytes) in packets.iter().zip(&encoded) {
        group.throughput(bytes_of(bytes.len()));
        group.bench_function(BenchmarkId::new(*name, size), |b| {
            b.iter(|| Packet::decode(black_box(bytes)))
        });
        if *name == "list-reply" {
            // Decode and read every name.
            group.bench_function(BenchmarkId::new("list-reply+iter", size), |b| {
                b.iter(|| match Packet::decode(black_box(bytes)) {
                    Ok(Packet::ListReply { names, .. }) => names.iter().map(str::len).sum(),
                    _ => 0,
                })
            });
        }
    }
    group.finish();
}

/// The chat message as an application would hold it, for serde.
#[derive(Serialize, Deserialize)]
struct ChatMessage {
    stream: u64,
    seq: u32,
    fragment: u16,
    fragments: u16,
    from: String,
    body: String,
}

/// The same message decoded without copying: `from` and `body` borrow from
/// the input (serde_json can when a string holds no escapes, as here).
#[derive(Serialize, Deserialize)]
struct ChatMessageRef<'a> {
    stream: u64,
    seq: u32,
    fragment: u16,
    fragments: u16,
    #[serde(borrow)]
    from: &'a str,
    #[serde(borrow)]
    body: &'a str,
}

/// Postcard's best shot: the body as borrowed bytes, no UTF-8 check, as our
/// codec's `body` (postcard writes `str` and bytes alike).
#[derive(Deserialize)]
#[expect(dead_code, reason = "only deserialized, for the benchmark")]
struct ChatMessageBytes<'a> {
    stream: u64,
    seq: u32,
    fragment: u16,
    fragments: u16,
    #[serde(borrow)]
    from: &'a str,
    #[serde(borrow)]
    body: &'a [u8],
}

fn versus(c: &mut Criterion) {
    let d = Data::new();
    let mut group = c.benchmark_group("versus");
    for (size, body) in [("16B", &d.small_body), ("1100B", &d.large_body)] {
        let text = match std::str::from_utf8(body) {
            Ok(text) => text.to_owned(),
            Err(e) => panic!("bench body is text: {e}"),
        };
        let msg = ChatMessage {
            stream: 0x0123_4567_89ab_cdef,
            seq: 42,
            fragment: 0,
            fragments: 1,
            from: "Alice".to_owned(),
            body: text,
        };
        let packet = Packet::Message {
            stream: msg.stream,
            seq: msg.seq,
            fragment: msg.fragment,
            fragments: msg.fragments,
            from: &msg.from,
            body: msg.body.as_bytes(),
        };
        let ours = packet.to_bytes().map(|b| b.to_vec());
        let json = serde_json::to_vec(&msg);
        let mut scratch = [0u8; 2 * MAX_DATAGRAM];
        let post = postcard::to_slice(&msg, &mut scratch).map(|s| s.to_vec());
        let (Ok(ours), Ok(json), Ok(post)) = (ours, json, post) else {
            panic!("the bench message encodes in every format");
        };
        println!(
            "versus/{size}: encoded sizes udpchat {} B, postcard {} B, serde_json {} B",
            ours.len(),
            post.len(),
            json.len()
        );
        group.throughput(bytes_of(msg.from.len() + msg.body.len()));

        // Encode: each into a reused buffer (no allocation per message).
        let mut buf = BytesMut::with_capacity(MAX_DATAGRAM);
        group.bench_function(BenchmarkId::new("encode/udpchat", size), |b| {
            b.iter(|| {
                buf.clear();
                let m = black_box(&msg);
                Packet::Message {
                    stream: m.stream,
                    seq: m.seq,
                    fragment: m.fragment,
                    fragments: m.fragments,
                    from: &m.from,
                    body: m.body.as_bytes(),
                }
                .encode(&mut buf)
            })
        });
        let mut slice = vec![0u8; 2 * MAX_DATAGRAM];
        group.bench_function(BenchmarkId::new("encode/postcard", size), |b| {
            b.iter(|| postcard::to_slice(black_box(&msg), &mut slice).map(|s| s.len()))
        });
        let mut vec = Vec::with_capacity(2 * MAX_DATAGRAM);
        group.bench_function(BenchmarkId::new("encode/serde_json", size), |b| {
            b.iter(|| {
                vec.clear();
                serde_json::to_writer(&mut vec, black_box(&msg))
            })
        });

        // Decode: each borrowing from the input where it can.
        group.bench_function(BenchmarkId::new("decode/udpchat", size), |b| {
            b.iter(|| Packet::decode(black_box(&ours)))
        });
        group.bench_function(BenchmarkId::new("decode/postcard", size), |b| {
            b.iter(|| postcard::from_bytes::<ChatMessageBytes<'_>>(black_box(&post)))
        });
        group.bench_function(BenchmarkId::new("decode/postcard-str-body", size), |b| {
            b.iter(|| postcard::from_bytes::<ChatMessageRef<'_>>(black_box(&post)))
        });
        group.bench_function(BenchmarkId::new("decode/serde_json", size), |b| {
            b.iter(|| serde_json::from_slice::<ChatMessageRef<'_>>(black_box(&json)))
        });

        // What sessions will add: sealing the encoded message under a
        // session's keys, and opening it, in place (a header of 13 bytes as
        // associated data, as the transport packets will carry).
        let keys = TransportKeys::from_raw(&[1; 32], &[2; 32]);
        let peer = TransportKeys::from_raw(&[2; 32], &[1; 32]);
        let header = [0x12u8; 13];
        let mut sealing = ours.clone();
        let mut counter = 0u64;
        group.bench_function(BenchmarkId::new("seal/udpchat", size), |b| {
            b.iter(|| {
                counter += 1;
                keys.seal(counter, &header, black_box(&mut sealing))
            })
        });
        let mut sealed = Vec::new();
        keys.seal_into(7, &header, &ours, &mut sealed);
        let mut opening = sealed.clone();
        group.bench_function(BenchmarkId::new("open/udpchat", size), |b| {
            b.iter(|| {
                opening.copy_from_slice(&sealed);
                peer.open_in_place(7, &header, black_box(&mut opening))
                    .map(|p| p.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, encode_decode, versus);
criterion_main!(benches);
