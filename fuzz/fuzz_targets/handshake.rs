//! Arbitrary bytes as a Noise IK message 1 to a responder, as a message 2 to
//! an initiator, and as a sealed transport packet: never a panic, and a
//! forged message never completes a handshake or opens.

#![no_main]

use libfuzzer_sys::fuzz_target;
use udpchat::crypto::{Initiator, Responder, StaticKeypair, TransportKeys};

fuzz_target!(|data: &[u8]| {
    let alice = StaticKeypair::from_secret([1; 32]);
    let bob = StaticKeypair::from_secret([2; 32]);
    // Message 1 from nobody who knows a key: only a real initiator's opens.
    if let Ok((responder, _payload)) = Responder::accept(&bob, b"", [3; 32], data) {
        // Possible only with the right keys, which the fuzzer may find by
        // copying a real message 1 out of its corpus; finishing must work.
        let _ = responder.finish(b"");
    }
    // Message 2 to a real initiator.
    if let Ok((initiator, _m1)) = Initiator::start(&alice, &bob.public(), b"", [4; 32], b"") {
        let _ = initiator.finish(data);
    }
    // A transport packet: counter from the first 8 bytes, the rest sealed.
    let keys = TransportKeys::from_raw(&[5; 32], &[6; 32]);
    if data.len() >= 8 {
        let mut counter = [0u8; 8];
        counter.copy_from_slice(&data[..8]);
        let mut sealed = data[8..].to_vec();
        assert!(
            keys.open_in_place(u64::from_le_bytes(counter), b"", &mut sealed)
                .is_err(),
            "random bytes opened"
        );
    }
});
