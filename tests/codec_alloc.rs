//! The codec allocates nothing: `Packet::decode` (of every packet type, clear
//! and sealed, of a sealed packet's plaintext inside a decoded Sealed, and
//! iterating a decoded name list or candidate list), and `Packet::encode` into a buffer that
//! already has room, or refused.
//!
//! A counting global allocator counts the allocations of the current thread
//! only (a thread-local counter), so the test harness's other threads do not
//! disturb the measurement.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::BytesMut;
use udpchat::codec::{
    ErrorCode, MAX_CANDIDATES, MAX_DATAGRAM, MAX_FRAGMENT_BODY, MAX_SEALED_PLAINTEXT, NameList,
    RefuseReason, SEALED_HEADER_LEN, SEALED_TAG_LEN,
};
use udpchat::{AddrList, Packet, PacketType};

struct CountingAllocator;

thread_local! {
    /// Allocations (and reallocations) made by this thread.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with`: the thread-local may be gone while a thread shuts down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Runs `f` and returns how many allocations this thread made meanwhile.
fn allocations_in<R>(f: impl FnOnce() -> R) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    black_box(f());
    ALLOCATIONS.with(Cell::get) - before
}

/// One packet of every type (two or more for those with several shapes),
/// borrowing from `names`, `hosts` (host candidates), `body` and `sealed`.
fn samples<'a>(
    names: &'a [&'a str],
    hosts: &'a [SocketAddr],
    body: &'a [u8],
    sealed: &'a [u8],
) -> Vec<Packet<'a>> {
    let v4 = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 7), 4242));
    let v6 = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 9090, 0, 0));
    let key = &[0x4b; 32];
    let cookie = &[7; 32];
    let handshake = &[0x6e; 96];
    vec![
        Packet::Hello { request: 1 },
        Packet::Retry {
            request: 1,
            cookie,
            key,
        },
        Packet::ServerInit {
            cookie,
            sender: 21,
            handshake,
        },
        Packet::ServerResp {
            sender: 22,
            receiver: 21,
            handshake: &handshake[..48],
        },
        Packet::Sealed {
            receiver: 22,
            counter: 0,
            sealed: &[0x5e; SEALED_TAG_LEN],
        },
        Packet::Sealed {
            receiver: 22,
            counter: u64::MAX - 1,
            sealed,
        },
        Packet::PeerInit {
            sender: 31,
            handshake,
        },
        Packet::PeerResp {
            sender: 32,
            receiver: 31,
            handshake: &handshake[..48],
        },
        Packet::Error {
            request: 12,
            code: ErrorCode::UnknownSession,
        },
        Packet::SignIn {
            request: 2,
            name: "Alice",
            replaces: 0,
            candidates: AddrList::EMPTY,
        },
        Packet::SignIn {
            request: 2,
            name: "Alice",
            replaces: 22,
            candidates: AddrList::Addrs(&hosts[..2]),
        },
        Packet::SignIn {
            request: 2,
            name: "Alice",
            replaces: 0,
            candidates: AddrList::Addrs(hosts),
        },
        Packet::SignInAccepted {
            request: 3,
            address: Some(v4),
        },
        Packet::SignInAccepted {
            request: 3,
            address: Some(v6),
        },
        Packet::SignInAccepted {
            request: 3,
            address: None,
        },
        Packet::SignInRefused {
            request: 4,
            reason: RefuseReason::NameInUse,
            holder: "Alice",
        },
        Packet::ListRequest {
            request: 5,
            cursor: 17,
        },
        Packet::ListReply {
            request: 6,
            more: false,
            cursor: 0,
            names: NameList::Names(&["Bob", "Carole", "Dave"]),
        },
        Packet::ListReply {
            request: 6,
            more: true,
            cursor: 3,
            names: NameList::Names(names),
        },
        Packet::LookupRequest {
            request: 7,
            name: "Carole",
            introduce: false,
        },
        Packet::LookupRequest {
            request: 7,
            name: "Carole",
            introduce: true,
        },
        Packet::LookupReply {
            request: 8,
            name: "Carole",
            address: Some(v4),
            key,
            candidates: AddrList::Addrs(hosts),
        },
        Packet::LookupReply {
            request: 8,
            name: "Carole",
            address: Some(v6),
            key,
            candidates: AddrList::Addrs(&hosts[..1]),
        },
        Packet::LookupReply {
            request: 8,
            name: "Nobody",
            address: None,
            key: &[],
            candidates: AddrList::EMPTY,
        },
        Packet::Introduction {
            name: "Alice",
            key,
            address: Some(v4),
            candidates: AddrList::Addrs(hosts),
        },
        Packet::Introduction {
            name: "Alice",
            key,
            address: None,
            candidates: AddrList::EMPTY,
        },
        Packet::KeepAlive { request: 9 },
        Packet::KeepAliveAck { request: 9 },
        Packet::Probe { request: 10 },
        Packet::SignOut { request: 11 },
        Packet::SignOutAck { request: 11 },
        Packet::Message {
            stream: 1,
            seq: 2,
            base: 0,
            fragment: 0,
            fragments: 1,
            body: b"Hello this is Alice.",
        },
        Packet::Message {
            stream: 1,
            seq: 3,
            base: 3,
            fragment: 1,
            fragments: 2,
            body,
        },
        Packet::Ack {
            stream: 1,
            first: 2,
            last: 3,
        },
    ]
}

/// All measurements in one test: the counter is per thread, so other tests
/// running at the same time cannot disturb it, but one test keeps the
/// report in one place.
#[test]
fn codec_does_not_allocate() {
    // The counter works: an allocation in the measured closure is seen.
    assert_eq!(allocations_in(|| Vec::<u8>::with_capacity(10)), 1);
    assert_eq!(allocations_in(|| BytesMut::with_capacity(64)), 1);
    assert_eq!(allocations_in(|| 1 + 1), 0);

    let long_names: Vec<String> = (0..80).map(|i| format!("user{i:03}-name")).collect();
    let names: Vec<&str> = long_names.iter().map(String::as_str).collect();
    // The largest fragment, and a Sealed carrying it: a full datagram.
    let body = vec![b'x'; MAX_FRAGMENT_BODY];
    let largest = Packet::Message {
        stream: 1,
        seq: 3,
        base: 3,
        fragment: 1,
        fragments: 2,
        body: &body,
    };
    let mut sealed = largest
        .to_bytes()
        .expect("the largest fragment encodes")
        .to_vec();
    assert_eq!(sealed.len(), MAX_SEALED_PLAINTEXT);
    sealed.extend_from_slice(&[0x5e; SEALED_TAG_LEN]);
    // A full list of host candidates, IPv4 and IPv6 mixed.
    let hosts: Vec<SocketAddr> = (0..MAX_CANDIDATES)
        .map(|i| {
            let port = 5000 + u16::try_from(i).expect("a few");
            if i % 2 == 0 {
                SocketAddr::from((Ipv4Addr::new(192, 168, 1, 20), port))
            } else {
                SocketAddr::from((Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x14), port))
            }
        })
        .collect();
    let samples = samples(&names, &hosts, &body, &sealed);
    let types: Vec<PacketType> = samples.iter().map(Packet::packet_type).collect();
    for t in PacketType::ALL {
        assert!(types.contains(&t), "no sample of {t:?}");
    }
    let datagrams: Vec<Vec<u8>> = samples
        .iter()
        .map(|p| p.to_bytes().map(|b| b.to_vec()))
        .collect::<Result<_, _>>()
        .expect("every sample encodes");
    assert!(datagrams.iter().any(|d| d.len() == MAX_DATAGRAM));
    assert!(datagrams.iter().any(|d| d.len() == MAX_SEALED_PLAINTEXT));

    let mut buf = BytesMut::with_capacity(MAX_DATAGRAM);
    for (packet, datagram) in samples.iter().zip(&datagrams) {
        // Decode, and read every field of the result (names and candidates
        // included).
        let n = allocations_in(|| {
            let decoded = Packet::decode(datagram);
            assert_eq!(decoded.as_ref(), Ok(packet));
            if let Ok(Packet::ListReply { names, .. }) = decoded {
                assert!(matches!(names, NameList::Encoded { .. }));
                let total: usize = names.iter().map(str::len).sum();
                assert_eq!(names.iter().count(), names.len());
                black_box(total);
            }
            if let Ok(
                Packet::SignIn { candidates, .. }
                | Packet::LookupReply { candidates, .. }
                | Packet::Introduction { candidates, .. },
            ) = decoded
            {
                assert!(matches!(candidates, AddrList::Encoded { .. }));
                let ports: u32 = candidates.iter().map(|a| u32::from(a.port())).sum();
                assert_eq!(candidates.iter().count(), candidates.len());
                black_box(ports);
            }
            decoded
        });
        assert_eq!(n, 0, "decode of {:?} allocated", packet.packet_type());

        // Encode into a buffer that has room, then re-encode the decoded
        // packet (a ListReply's names are then `NameList::Encoded`, and
        // candidates `AddrList::Encoded`).
        let n = allocations_in(|| {
            buf.clear();
            assert_eq!(packet.encoded_len(), datagram.len());
            assert_eq!(packet.encode(&mut buf), Ok(()));
            assert_eq!(&buf[..], &datagram[..]);
            if let Ok(decoded) = Packet::decode(datagram) {
                buf.clear();
                assert_eq!(decoded.encode(&mut buf), Ok(()));
                assert_eq!(&buf[..], &datagram[..]);
            }
        });
        assert_eq!(n, 0, "encode of {:?} allocated", packet.packet_type());
    }

    // Opening a Sealed's envelope and decoding the sealed packet inside (the
    // plaintext, here the bytes before the tag) allocates nothing either.
    let envelope = datagrams
        .iter()
        .find(|d| d.len() == MAX_DATAGRAM)
        .expect("a full Sealed");
    let n = allocations_in(|| {
        let Ok(Packet::Sealed { sealed, .. }) = Packet::decode(envelope) else {
            panic!("the full datagram is not a Sealed");
        };
        assert_eq!(sealed, &envelope[SEALED_HEADER_LEN..]);
        let plaintext = &sealed[..sealed.len() - SEALED_TAG_LEN];
        let inner = Packet::decode(plaintext);
        assert_eq!(inner, Ok(largest));
        inner
    });
    assert_eq!(n, 0, "decode of a Sealed's plaintext allocated");

    // Rejected datagrams allocate nothing either: every truncation, a
    // trailing byte, an unknown type, an oversized datagram, a candidate
    // list too long or holding family 0.
    let oversized = vec![0x10; MAX_DATAGRAM + 1];
    let mut with_trailing = datagrams[0].clone();
    with_trailing.push(0);
    let n = allocations_in(|| {
        for datagram in &datagrams {
            for len in 0..datagram.len() {
                assert!(Packet::decode(&datagram[..len]).is_err());
            }
        }
        assert!(Packet::decode(&with_trailing).is_err());
        assert!(Packet::decode(&[0x7f]).is_err());
        assert!(Packet::decode(&oversized).is_err());
        assert!(Packet::decode(&[0x10, 0, 0, 0, 1, 0x01, b'A', 0, 0, 0, 0, 9]).is_err());
        assert!(Packet::decode(&[0x1c, 0x01, b'A', 0x00, 0x00, 0x01, 0x00]).is_err());
    });
    assert_eq!(n, 0, "a failed decode allocated");

    // A failed encode allocates nothing (and writes nothing): too long, or
    // a field out of range (too many candidates, or a malformed list).
    let too_long = vec![b'x'; MAX_DATAGRAM];
    let too_many = [hosts[0]; MAX_CANDIDATES + 1];
    let refused = [
        Packet::Message {
            stream: 1,
            seq: 1,
            base: 0,
            fragment: 0,
            fragments: 1,
            body: &too_long,
        },
        Packet::Sealed {
            receiver: 1,
            counter: 1,
            sealed: &too_long,
        },
        Packet::Message {
            stream: 1,
            seq: 1,
            base: 2,
            fragment: 0,
            fragments: 1,
            body: b"hi",
        },
        Packet::Retry {
            request: 1,
            cookie: &too_long[..256],
            key: &[0x4b; 32],
        },
        Packet::SignIn {
            request: 1,
            name: "Alice",
            replaces: 0,
            candidates: AddrList::Addrs(&too_many),
        },
        Packet::Introduction {
            name: "Alice",
            key: &[0x4b; 32],
            address: None,
            candidates: AddrList::Encoded {
                count: 2,
                bytes: &[0x04, 10, 0, 0, 1, 0x0f, 0xa0, 0x00],
            },
        },
    ];
    for p in &refused {
        buf.clear();
        let n = allocations_in(|| assert!(p.encode(&mut buf).is_err()));
        assert_eq!(n, 0, "a failed encode of {:?} allocated", p.packet_type());
        assert!(
            buf.is_empty(),
            "a failed encode of {:?} wrote",
            p.packet_type()
        );
    }

    // And a buffer without room does allocate: the measurement can fail.
    let mut small = BytesMut::new();
    let n = allocations_in(|| samples[0].encode(&mut small));
    assert!(n > 0, "encode into an empty buffer should have allocated");
}
