//! Decode arbitrary datagrams: never a panic, and canonical whenever decode
//! succeeds (the packet re-encodes to exactly the input and decodes again to
//! the same packet).

#![no_main]

use libfuzzer_sys::fuzz_target;
use udpchat::Packet;

fuzz_target!(|data: &[u8]| {
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
