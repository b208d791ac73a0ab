//! Codec throughput: encode and decode of every packet type at a small and a
//! large size, and the same chat message through udpchat's codec, postcard
//! and serde_json side by side, with what sealing and opening it costs.
//!
//! ```text
//! cargo bench --bench codec                # everything, about two minutes
//! cargo bench --bench codec -- versus      # only the comparison (and ratios)
//! cargo bench --bench codec -- ratios      # only the ratios table
//! ```
//!
//! Groups `encode` and `decode` report `Throughput::Bytes` of the encoded
//! packet (a datagram, or a sealed packet's plaintext), so criterion prints
//! bytes/s beside the time per packet. In the group `versus` every format
//! carries the same fields (a [`Packet::Message`]'s: stream, seq, base,
//! fragment, fragments, body) and its throughput is counted in the same bytes
//! (the body's text), so the time and the bytes/s columns compare directly
//! across formats. `seal/udpchat` and `open/udpchat` then put the encoded
//! message into a [`Packet::Sealed`] datagram and take it out again, as a
//! session does (header, ChaCha20-Poly1305 with the header as associated
//! data, tag), so the cost of the encryption sits beside the cost of the
//! encoding.
//!
//! Criterion measures one routine after another, so on a shared machine a
//! change of load between two of them skews their ratio. The table
//! `ratios`, printed last by every run, times the same routines of the
//! comparison in interleaved rounds and gives medians: the figures to quote.

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};
use udpchat::Packet;
use udpchat::codec::{
    AddrList, ErrorCode, MAX_CANDIDATES, MAX_DATAGRAM, MAX_SEALED_PLAINTEXT, MAX_SHORT_FIELD,
    NameList, PacketType, RefuseReason, SEALED_HEADER_LEN, SEALED_TAG_LEN,
};
use udpchat::crypto::TransportKeys;
use udpchat::crypto::noise::{MSG1_OVERHEAD, MSG2_OVERHEAD};

/// Owned test data the packets borrow from.
struct Data {
    cookie: Vec<u8>,
    key: Vec<u8>,
    /// A message 1 carrying a SignIn of a short name, and its message 2.
    msg1: Vec<u8>,
    msg2: Vec<u8>,
    /// Sealed bytes of a small request and of a full datagram.
    small_sealed: Vec<u8>,
    large_sealed: Vec<u8>,
    long_name: String,
    few_names: Vec<&'static str>,
    page: Vec<String>,
    small_body: Vec<u8>,
    large_body: Vec<u8>,
    /// Two host candidates (a LAN IPv4 and an IPv6), and a full list.
    two_hosts: Vec<SocketAddr>,
    hosts: Vec<SocketAddr>,
}

impl Data {
    fn new() -> Self {
        Data {
            cookie: vec![0xc0; 16],
            key: vec![0x4b; 32],
            msg1: vec![0x31; MSG1_OVERHEAD + 15],
            msg2: vec![0x32; MSG2_OVERHEAD + 12],
            small_sealed: vec![0x5e; 12 + SEALED_TAG_LEN],
            large_sealed: vec![0x5e; MAX_SEALED_PLAINTEXT + SEALED_TAG_LEN],
            long_name: "n".repeat(MAX_SHORT_FIELD),
            few_names: vec!["Bob", "Carole", "Dave"],
            // 12 header bytes + 89 × (1 + 12) = 1169 bytes: a full page, as
            // much as one sealed datagram carries.
            page: (0..89).map(|i| format!("user{i:03}-name")).collect(),
            small_body: b"Hello, Carole!!!".to_vec(),
            large_body: "Hello this is Alice. ".repeat(60).into_bytes()[..1100].to_vec(),
            two_hosts: vec![
                SocketAddr::from((Ipv4Addr::new(192, 168, 1, 20), 51234)),
                SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 0x14), 51234)),
            ],
            hosts: (0..MAX_CANDIDATES)
                .map(|i| {
                    let last = u16::try_from(i).unwrap_or(0);
                    SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, last), 51234))
                })
                .collect(),
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
        ("hello", "small", Packet::Hello { request: 1 }),
        (
            "retry",
            "small",
            Packet::Retry {
                request: 1,
                cookie: &d.cookie,
                key: &d.key,
            },
        ),
        (
            "server-init",
            "small",
            Packet::ServerInit {
                cookie: &d.cookie,
                sender: 0x0102_0304,
                handshake: &d.msg1,
            },
        ),
        (
            "server-resp",
            "small",
            Packet::ServerResp {
                sender: 0x0000_0100,
                receiver: 0x0102_0304,
                handshake: &d.msg2,
            },
        ),
        (
            "sealed",
            "small",
            Packet::Sealed {
                receiver: 0x0000_0100,
                counter: 42,
                sealed: &d.small_sealed,
            },
        ),
        (
            "sealed",
            "full",
            Packet::Sealed {
                receiver: 0x0000_0100,
                counter: 42,
                sealed: &d.large_sealed,
            },
        ),
        (
            "peer-init",
            "small",
            Packet::PeerInit {
                sender: 0x0a0b_0c0d,
                handshake: &d.msg1,
            },
        ),
        (
            "peer-resp",
            "small",
            Packet::PeerResp {
                sender: 0x0e0f_1011,
                receiver: 0x0a0b_0c0d,
                handshake: &d.msg2,
            },
        ),
        (
            "error",
            "small",
            Packet::Error {
                request: 7,
                code: ErrorCode::UnknownSession,
            },
        ),
        (
            "sign-in",
            "small",
            Packet::SignIn {
                request: 1,
                name: "Alice",
                replaces: 0,
                candidates: AddrList::EMPTY,
            },
        ),
        (
            "sign-in",
            "2 candidates",
            Packet::SignIn {
                request: 1,
                name: "Alice",
                replaces: 0,
                candidates: AddrList::Addrs(&d.two_hosts),
            },
        ),
        (
            "sign-in",
            "large",
            Packet::SignIn {
                request: 1,
                name: long,
                replaces: 0x0000_0100,
                candidates: AddrList::Addrs(&d.hosts),
            },
        ),
        (
            "sign-in-accepted",
            "ipv4",
            Packet::SignInAccepted {
                request: 1,
                address: Some(v4),
            },
        ),
        (
            "sign-in-accepted",
            "ipv6",
            Packet::SignInAccepted {
                request: 1,
                address: Some(v6),
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
                cursor: 0,
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
                name: "Carole",
                introduce: true,
            },
        ),
        (
            "lookup-reply",
            "ipv4",
            Packet::LookupReply {
                request: 3,
                name: "Carole",
                address: Some(v4),
                key: &d.key,
                candidates: AddrList::EMPTY,
            },
        ),
        (
            "lookup-reply",
            "ipv6",
            Packet::LookupReply {
                request: 3,
                name: "Carole",
                address: Some(v6),
                key: &d.key,
                candidates: AddrList::EMPTY,
            },
        ),
        (
            "lookup-reply",
            "2 candidates",
            Packet::LookupReply {
                request: 3,
                name: "Carole",
                address: Some(v4),
                key: &d.key,
                candidates: AddrList::Addrs(&d.two_hosts),
            },
        ),
        (
            "lookup-reply",
            "nobody",
            Packet::LookupReply {
                request: 3,
                name: "Carole",
                address: None,
                key: &[],
                candidates: AddrList::EMPTY,
            },
        ),
        ("keep-alive", "small", Packet::KeepAlive { request: 4 }),
        (
            "keep-alive-ack",
            "small",
            Packet::KeepAliveAck { request: 4 },
        ),
        ("probe", "small", Packet::Probe { request: 5 }),
        ("sign-out", "small", Packet::SignOut { request: 6 }),
        ("sign-out-ack", "small", Packet::SignOutAck { request: 6 }),
        (
            "introduction",
            "2 candidates",
            Packet::Introduction {
                name: "Alice",
                key: &d.key,
                address: Some(v4),
                candidates: AddrList::Addrs(&d.two_hosts),
            },
        ),
        (
            "introduction",
            "large",
            Packet::Introduction {
                name: long,
                key: &d.key,
                address: Some(v6),
                candidates: AddrList::Addrs(&d.hosts),
            },
        ),
        ("message", "16B body", message(&d.small_body)),
        ("message", "1100B body", message(&d.large_body)),
        (
            "ack",
            "small",
            Packet::Ack {
                stream: 1,
                first: 2,
                last: 2,
            },
        ),
    ]
}

fn bytes_of(len: usize) -> Throughput {
    Throughput::Bytes(u64::try_from(len).unwrap_or(u64::MAX))
}

fn message(body: &[u8]) -> Packet<'_> {
    Packet::Message {
        stream: 0x0123_4567_89ab_cdef,
        seq: 42,
        base: 40,
        fragment: 0,
        fragments: 1,
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
        if *name == "introduction" {
            // Decode and read every candidate.
            group.bench_function(BenchmarkId::new("introduction+iter", size), |b| {
                b.iter(|| match Packet::decode(black_box(bytes)) {
                    Ok(Packet::Introduction { candidates, .. }) => {
                        candidates.iter().map(|a| usize::from(a.port())).sum()
                    }
                    _ => 0,
                })
            });
        }
    }
    group.finish();
}

/// The chat message as an application would hold it, for serde: the fields
/// of a [`Packet::Message`], no more and no fewer.
#[derive(Serialize, Deserialize)]
struct ChatMessage {
    stream: u64,
    seq: u32,
    base: u32,
    fragment: u16,
    fragments: u16,
    body: String,
}

/// The same message decoded without copying: `body` borrows from the input
/// (serde_json can when a string holds no escapes, as here).
#[derive(Serialize, Deserialize)]
struct ChatMessageRef<'a> {
    stream: u64,
    seq: u32,
    base: u32,
    fragment: u16,
    fragments: u16,
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
    base: u32,
    fragment: u16,
    fragments: u16,
    #[serde(borrow)]
    body: &'a [u8],
}

/// Appends to `out` a whole Sealed datagram carrying `plaintext` under
/// `counter`, as the crate's session does: the header in the clear and bound
/// as associated data, the ciphertext, the tag.
fn seal_datagram(
    keys: &TransportKeys,
    receiver: u32,
    counter: u64,
    plaintext: &[u8],
    out: &mut Vec<u8>,
) {
    let sealed_len = u16::try_from(plaintext.len() + SEALED_TAG_LEN).unwrap_or(u16::MAX);
    let start = out.len();
    out.push(PacketType::Sealed as u8);
    out.extend_from_slice(&receiver.to_be_bytes());
    out.extend_from_slice(&counter.to_be_bytes());
    out.extend_from_slice(&sealed_len.to_be_bytes());
    out.extend_from_slice(plaintext);
    let (header, body) = out[start..].split_at_mut(SEALED_HEADER_LEN);
    let tag = keys.seal(counter, header, body);
    out.extend_from_slice(&tag);
}

/// Opens the Sealed datagram `datagram` into `scratch` and decodes the
/// message inside, as the crate's session does; the body's length, or 0 when
/// anything fails.
fn open_datagram(keys: &TransportKeys, datagram: &[u8], scratch: &mut Vec<u8>) -> usize {
    let Ok(Packet::Sealed {
        counter, sealed, ..
    }) = Packet::decode(datagram)
    else {
        return 0;
    };
    let Some(header) = datagram.get(..SEALED_HEADER_LEN) else {
        return 0;
    };
    scratch.clear();
    scratch.extend_from_slice(sealed);
    match keys.open_in_place(counter, header, scratch) {
        Ok(plaintext) => match Packet::decode(plaintext) {
            Ok(Packet::Message { body, .. }) => body.len(),
            _ => 0,
        },
        Err(_) => 0,
    }
}

/// One chat message in every format, for the comparison.
struct Case {
    /// The size label: the length of the message's text.
    size: &'static str,
    msg: ChatMessage,
    /// `msg` encoded by udpchat, postcard and serde_json.
    ours: Vec<u8>,
    post: Vec<u8>,
    json: Vec<u8>,
    /// `ours` in a Sealed datagram under `KEYS_A` and counter 7.
    sealed: Vec<u8>,
}

const KEYS_A: [u8; 32] = [1; 32];
const KEYS_B: [u8; 32] = [2; 32];
const RECEIVER: u32 = 0x0000_0100;

fn cases(d: &Data) -> Vec<Case> {
    let sender = TransportKeys::from_raw(&KEYS_A, &KEYS_B);
    [("16B", &d.small_body), ("1100B", &d.large_body)]
        .into_iter()
        .map(|(size, body)| {
            let text = match std::str::from_utf8(body) {
                Ok(text) => text.to_owned(),
                Err(e) => panic!("bench body is text: {e}"),
            };
            let msg = ChatMessage {
                stream: 0x0123_4567_89ab_cdef,
                seq: 42,
                base: 40,
                fragment: 0,
                fragments: 1,
                body: text,
            };
            let ours = as_packet(&msg).to_bytes().map(|b| b.to_vec());
            let json = serde_json::to_vec(&msg);
            let mut scratch = [0u8; 2 * MAX_DATAGRAM];
            let post = postcard::to_slice(&msg, &mut scratch).map(|s| s.to_vec());
            let (Ok(ours), Ok(json), Ok(post)) = (ours, json, post) else {
                panic!("the bench message encodes in every format");
            };
            let mut sealed = Vec::new();
            seal_datagram(&sender, RECEIVER, 7, &ours, &mut sealed);
            assert!(
                sealed.len() <= MAX_DATAGRAM,
                "a sealed message fits a datagram"
            );
            Case {
                size,
                msg,
                ours,
                post,
                json,
                sealed,
            }
        })
        .collect()
}

/// The message as our codec's packet, its fields read from `m`.
fn as_packet(m: &ChatMessage) -> Packet<'_> {
    Packet::Message {
        stream: m.stream,
        seq: m.seq,
        base: m.base,
        fragment: m.fragment,
        fragments: m.fragments,
        body: m.body.as_bytes(),
    }
}

/// Where the encoders of the comparison write: each starts at a 4 KiB page
/// boundary, so that neither straddles one. Where a heap buffer happens to
/// straddle a page boundary, the store across it costs its encoder about
/// 5 ns, and the allocator places the two differently from run to run: the
/// 1100 B encode times came out in two modes, 17.5 and 22.8 ns for ours.
const PAGE: usize = 4096;

/// An empty buffer of at least `capacity` bytes starting at a page boundary.
fn page_aligned_bytes_mut(capacity: usize) -> BytesMut {
    let mut buf = BytesMut::zeroed(capacity + PAGE);
    let before = buf.as_ptr().align_offset(PAGE);
    drop(buf.split_to(before));
    buf.clear();
    buf
}

/// A vector with a page boundary at `offset`, and `offset`, so that
/// `&mut vec[offset..]` holds at least `len` bytes from that boundary.
fn page_aligned_slice(len: usize) -> (Vec<u8>, usize) {
    let vec = vec![0u8; len + PAGE];
    let offset = vec.as_ptr().align_offset(PAGE);
    (vec, offset)
}

// The routines measured, the same for criterion and for `ratios`. Each
// encodes into a buffer reused from call to call (no allocation per
// message) and decodes borrowing from the input where it can; each returns
// a length, so that the work cannot be optimised away.

fn encode_udpchat(m: &ChatMessage, buf: &mut BytesMut) -> usize {
    buf.clear();
    match as_packet(m).encode(buf) {
        Ok(()) => buf.len(),
        Err(_) => 0,
    }
}

fn encode_postcard(m: &ChatMessage, slice: &mut [u8]) -> usize {
    postcard::to_slice(m, slice).map_or(0, |s| s.len())
}

fn encode_serde_json(m: &ChatMessage, vec: &mut Vec<u8>) -> usize {
    vec.clear();
    serde_json::to_writer(&mut *vec, m).map_or(0, |()| vec.len())
}

fn decode_udpchat(bytes: &[u8]) -> usize {
    match Packet::decode(bytes) {
        Ok(Packet::Message { body, .. }) => body.len(),
        _ => 0,
    }
}

fn decode_postcard(bytes: &[u8]) -> usize {
    postcard::from_bytes::<ChatMessageBytes<'_>>(bytes).map_or(0, |m| m.body.len())
}

fn decode_postcard_str(bytes: &[u8]) -> usize {
    postcard::from_bytes::<ChatMessageRef<'_>>(bytes).map_or(0, |m| m.body.len())
}

fn decode_serde_json(bytes: &[u8]) -> usize {
    serde_json::from_slice::<ChatMessageRef<'_>>(bytes).map_or(0, |m| m.body.len())
}

fn versus(c: &mut Criterion) {
    let d = Data::new();
    let mut group = c.benchmark_group("versus");
    for case in cases(&d) {
        let (size, msg) = (case.size, &case.msg);
        println!(
            "versus/{size}: encoded sizes udpchat {} B ({} B sealed), postcard {} B, serde_json {} B",
            case.ours.len(),
            case.sealed.len(),
            case.post.len(),
            case.json.len()
        );
        group.throughput(bytes_of(msg.body.len()));

        let mut buf = page_aligned_bytes_mut(MAX_DATAGRAM);
        group.bench_function(BenchmarkId::new("encode/udpchat", size), |b| {
            b.iter(|| encode_udpchat(black_box(msg), &mut buf))
        });
        let (mut vec, at) = page_aligned_slice(2 * MAX_DATAGRAM);
        let slice = &mut vec[at..];
        group.bench_function(BenchmarkId::new("encode/postcard", size), |b| {
            b.iter(|| encode_postcard(black_box(msg), slice))
        });
        let mut vec = Vec::with_capacity(2 * MAX_DATAGRAM);
        group.bench_function(BenchmarkId::new("encode/serde_json", size), |b| {
            b.iter(|| encode_serde_json(black_box(msg), &mut vec))
        });

        group.bench_function(BenchmarkId::new("decode/udpchat", size), |b| {
            b.iter(|| decode_udpchat(black_box(&case.ours)))
        });
        group.bench_function(BenchmarkId::new("decode/postcard", size), |b| {
            b.iter(|| decode_postcard(black_box(&case.post)))
        });
        group.bench_function(BenchmarkId::new("decode/postcard-str-body", size), |b| {
            b.iter(|| decode_postcard_str(black_box(&case.post)))
        });
        group.bench_function(BenchmarkId::new("decode/serde_json", size), |b| {
            b.iter(|| decode_serde_json(black_box(&case.json)))
        });

        // What a session adds on the wire: the encoded message sealed into a
        // Sealed datagram under a fresh counter (into a reused buffer), and
        // that datagram opened and decoded again.
        let keys = TransportKeys::from_raw(&KEYS_A, &KEYS_B);
        let peer = TransportKeys::from_raw(&KEYS_B, &KEYS_A);
        let mut datagram = Vec::with_capacity(MAX_DATAGRAM);
        let mut counter = 0u64;
        group.bench_function(BenchmarkId::new("seal/udpchat", size), |b| {
            b.iter(|| {
                counter += 1;
                datagram.clear();
                seal_datagram(
                    &keys,
                    RECEIVER,
                    counter,
                    black_box(&case.ours),
                    &mut datagram,
                );
                datagram.len()
            })
        });
        let mut opening = Vec::with_capacity(MAX_DATAGRAM);
        assert_eq!(
            open_datagram(&peer, &case.sealed, &mut opening),
            msg.body.len()
        );
        group.bench_function(BenchmarkId::new("open/udpchat", size), |b| {
            b.iter(|| open_datagram(&peer, black_box(&case.sealed), &mut opening))
        });
    }
    group.finish();
}

/// A routine to time: runs its work `n` times, returns nanoseconds per run.
type Timed<'a> = Box<dyn FnMut(u32) -> f64 + 'a>;

/// `f` as a [`Timed`]: the loop is monomorphic, so a run costs no more
/// than under criterion's `iter` (the result through `black_box`).
fn timed<'a, R>(mut f: impl FnMut() -> R + 'a) -> Timed<'a> {
    Box::new(move |n| {
        let start = Instant::now();
        for _ in 0..n {
            black_box(f());
        }
        start.elapsed().as_secs_f64() * 1e9 / f64::from(n.max(1))
    })
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The comparison as ratios measured side by side: every routine of a size
/// in turn, in a rotating order, for 301 rounds of about 0.2 ms each (shorter than a
/// time slice), so that the load of a shared machine falls on all of them
/// alike and a round that was preempted is an outlier. Prints the
/// median time per call of each, and the median over the rounds of each
/// round's ratio (reference / udpchat: above 1, udpchat is faster).
fn ratios(_: &mut Criterion) {
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench");
    if args
        .iter()
        .any(|a| a == "--list" || a == "--profile-time" || a.starts_with("--profile-time="))
    {
        return;
    }
    // Under `cargo test --benches`, one short round checks that it runs.
    let (rounds, batch_ns) = if bench { (301, 2e5) } else { (1, 1e4) };
    let d = Data::new();
    let keys = TransportKeys::from_raw(&KEYS_A, &KEYS_B);
    let peer = TransportKeys::from_raw(&KEYS_B, &KEYS_A);
    println!(
        "\nratios: median of {rounds} interleaved rounds, ns per call; \
         ratio = the other's time / udpchat's (above 1: udpchat faster)"
    );
    println!(
        "{:<6} {:>9} {:>9} {:>6} | {:>9} {:>9} {:>6} {:>9} {:>6} | {:>8} {:>8}",
        "size",
        "enc ours",
        "postcard",
        "ratio",
        "dec ours",
        "postcard",
        "ratio",
        "json",
        "ratio",
        "seal",
        "open"
    );
    for case in cases(&d) {
        let msg = &case.msg;
        let mut buf = page_aligned_bytes_mut(MAX_DATAGRAM);
        let (mut vec, at) = page_aligned_slice(2 * MAX_DATAGRAM);
        let slice = &mut vec[at..];
        let mut datagram = Vec::with_capacity(MAX_DATAGRAM);
        let mut opening = Vec::with_capacity(MAX_DATAGRAM);
        let mut counter = 0u64;
        let mut routines: Vec<Timed<'_>> = vec![
            timed(|| encode_udpchat(black_box(msg), &mut buf)),
            timed(|| encode_postcard(black_box(msg), slice)),
            timed(|| decode_udpchat(black_box(&case.ours))),
            timed(|| decode_postcard(black_box(&case.post))),
            timed(|| decode_serde_json(black_box(&case.json))),
            timed(|| {
                counter += 1;
                datagram.clear();
                seal_datagram(
                    &keys,
                    RECEIVER,
                    counter,
                    black_box(&case.ours),
                    &mut datagram,
                );
                datagram.len()
            }),
            timed(|| open_datagram(&peer, black_box(&case.sealed), &mut opening)),
        ];
        // Calibrate: double the runs per batch until one takes `batch_ns`.
        let runs: Vec<u32> = routines
            .iter_mut()
            .map(|r| {
                let mut n = 1u32;
                while n < 1 << 24 && r(n) * f64::from(n) < batch_ns {
                    n *= 2;
                }
                n
            })
            .collect();
        let mut times = vec![Vec::new(); routines.len()];
        let mut ratio = vec![Vec::new(); 3];
        for round in 0..rounds {
            let mut t = vec![0.0; routines.len()];
            for k in 0..routines.len() {
                let i = (k + round) % routines.len();
                t[i] = routines[i](runs[i]);
            }
            ratio[0].push(t[1] / t[0]);
            ratio[1].push(t[3] / t[2]);
            ratio[2].push(t[4] / t[2]);
            for (all, one) in times.iter_mut().zip(t) {
                all.push(one);
            }
        }
        let m: Vec<f64> = times.iter_mut().map(|v| median(v)).collect();
        let r: Vec<f64> = ratio.iter_mut().map(|v| median(v)).collect();
        println!(
            "{:<6} {:>9.1} {:>9.1} {:>6.2} | {:>9.1} {:>9.1} {:>6.2} {:>9.1} {:>6.1} | {:>8.0} {:>8.0}",
            case.size, m[0], m[1], r[0], m[2], m[3], r[1], m[4], r[2], m[5], m[6]
        );
    }
}

/// Short measurements, fewer bootstrap resamples and no plots, so that the
/// whole file (about 100 benchmarks) runs in about two minutes; the command
/// line still overrides the times.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(500))
        .sample_size(30)
        .nresamples(10_000)
        .without_plots()
}

criterion_group! {
    name = benches;
    config = config();
    targets = encode_decode, versus, ratios
}
criterion_main!(benches);
