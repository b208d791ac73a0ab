//! Decode arbitrary datagrams: never a panic, and canonical whenever decode
//! succeeds (the packet re-encodes to exactly the input and decodes again to
//! the same packet). The same input read as a sealed plaintext's frames:
//! each frame read re-encodes to exactly the bytes it was read from, in
//! order.

#![no_main]

use libfuzzer_sys::fuzz_target;
use udpchat::Packet;

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    for frame in Packet::frames(data) {
        let Ok(frame) = frame else { break };
        let len = frame.encoded_len();
        let encoded = match frame.to_bytes() {
            Ok(encoded) => encoded,
            Err(e) => panic!("frame {frame:?} decoded but does not encode: {e}"),
        };
        assert_eq!(&encoded[..], &data[at..at + len], "{frame:?} is not canonical");
        at += len;
    }
    let Ok(packet) = Packet::decode(data) else {
        return;
    };
    assert_eq!(packet.encoded_len(), data.len(), "{packet:?}");
    let encoded = match packet.to_bytes() {
        Ok(encoded) => encoded,
        Err(e) => panic!("{packet:?} decoded but does not encode: {e}"),
    };
    assert_eq!(&encoded[..], data, "{packet:?} is not canonical");
    assert_eq!(Packet::decode(&encoded), Ok(packet));
});
