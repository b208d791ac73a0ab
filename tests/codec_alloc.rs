//! The codec allocates nothing: `Packet::decode` (of every packet type, and
//! iterating a decoded name list), and `Packet::encode` into a buffer that
//! already has room.
//!
//! A counting global allocator counts the allocations of the current thread
//! only (a thread-local counter), so the test harness's other threads do not
//! disturb the measurement.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::BytesMut;
use udpchat::codec::{ErrorCode, MAX_DATAGRAM, NameList, RefuseReason};
use udpchat::{Packet, PacketType};

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

/// One packet of every type (two for those with several shapes), borrowing
/// from `names` and `body`.
fn samples<'a>(names: &'a [&'a str], body: &'a [u8]) -> Vec<Packet<'a>> {
    let v4 = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 7), 4242));
    let v6 = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 9090, 0, 0));
    let token = &[0x5a; 16];
    vec![
        Packet::SignIn {
            request: 1,
            name: "Alice",
            cookie: b"",
        },
        Packet::SignIn {
            request: 2,
            name: "Alice",
            cookie: &[7; 32],
        },
        Packet::Retry {
            request: 2,
            cookie: &[7; 32],
        },
        Packet::SignInAccepted { request: 3, token },
        Packet::SignInRefused {
            request: 4,
            reason: RefuseReason::NameInUse,
            holder: "Alice",
        },
        Packet::ListRequest {
            request: 5,
            token,
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
            token,
            name: "Carole",
        },
        Packet::LookupReply {
            request: 8,
            name: "Carole",
            address: Some(v4),
        },
        Packet::LookupReply {
            request: 8,
            name: "Carole",
            address: Some(v6),
        },
        Packet::LookupReply {
            request: 8,
            name: "Nobody",
            address: None,
        },
        Packet::KeepAlive { request: 9, token },
        Packet::KeepAliveAck { request: 9 },
        Packet::Probe { request: 10 },
        Packet::SignOut { request: 11, token },
        Packet::SignOutAck { request: 11 },
        Packet::Error {
            request: 12,
            code: ErrorCode::UnknownSession,
        },
        Packet::Message {
            stream: 1,
            seq: 2,
            fragment: 0,
            fragments: 1,
            from: "Alice",
            body: b"Hello this is Alice.",
        },
        Packet::Message {
            stream: 1,
            seq: 3,
            fragment: 1,
            fragments: 2,
            from: "Alice",
            body,
        },
        Packet::Ack { stream: 1, seq: 2 },
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
    let body = vec![b'x'; 1100];
    let samples = samples(&names, &body);
    let types: Vec<PacketType> = samples.iter().map(Packet::packet_type).collect();
    for t in PacketType::ALL {
        assert!(types.contains(&t), "no sample of {t:?}");
    }
    let datagrams: Vec<Vec<u8>> = samples
        .iter()
        .map(|p| p.to_bytes().map(|b| b.to_vec()))
        .collect::<Result<_, _>>()
        .expect("every sample encodes");
    assert!(
        datagrams
            .iter()
            .any(|d| d.len() > 1000 && d.len() <= MAX_DATAGRAM)
    );

    let mut buf = BytesMut::with_capacity(MAX_DATAGRAM);
    for (packet, datagram) in samples.iter().zip(&datagrams) {
        // Decode, and read every field of the result (names included).
        let n = allocations_in(|| {
            let decoded = Packet::decode(datagram);
            assert_eq!(decoded.as_ref(), Ok(packet));
            if let Ok(Packet::ListReply { names, .. }) = decoded {
                assert!(matches!(names, NameList::Encoded { .. }));
                let total: usize = names.iter().map(str::len).sum();
                assert_eq!(names.iter().count(), names.len());
                black_box(total);
            }
            decoded
        });
        assert_eq!(n, 0, "decode of {:?} allocated", packet.packet_type());

        // Encode into a buffer that has room, then re-encode the decoded
        // packet (a ListReply's names are then `NameList::Encoded`).
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

    // Rejected datagrams allocate nothing either: every truncation, a
    // trailing byte, an unknown type, an oversized datagram.
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
    });
    assert_eq!(n, 0, "a failed decode allocated");

    // A failed encode allocates nothing.
    let too_long = vec![b'x'; MAX_DATAGRAM];
    let n = allocations_in(|| {
        let p = Packet::Message {
            stream: 1,
            seq: 1,
            fragment: 0,
            fragments: 1,
            from: "A",
            body: &too_long,
        };
        assert!(p.encode(&mut buf).is_err());
    });
    assert_eq!(n, 0, "a failed encode allocated");

    // And a buffer without room does allocate: the measurement can fail.
    let mut small = BytesMut::new();
    let n = allocations_in(|| samples[0].encode(&mut small));
    assert!(n > 0, "encode into an empty buffer should have allocated");
}
