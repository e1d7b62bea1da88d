//! Frame and message decoding of arbitrary bytes: the codec with a small
//! limit, fed in two chunks, then every frame through the CBOR decoder and,
//! when it decodes, through the encoder and the decoder again.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;
use zeek_mgmt_agent::protocol::cbor;
use zeek_mgmt_agent::protocol::codec::FrameCodec;

const LIMIT: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    // Whole input as one message.
    if let Ok(frame) = cbor::decode(data) {
        let bytes = cbor::encode(&frame).expect("a decoded frame encodes");
        cbor::decode(&bytes).expect("an encoded frame decodes");
    }
    // Whole input as a stream of frames, split where its first byte says.
    let split = data.first().map(|b| usize::from(*b)).unwrap_or(0).min(data.len());
    let mut codec = FrameCodec::new(LIMIT);
    let mut buf = BytesMut::new();
    for chunk in [&data[..split], &data[split..]] {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= LIMIT);
                    let _ = cbor::decode(&frame);
                }
                Ok(None) => break,
                Err(_) => return,
            }
            // Nothing reserved beyond one frame of the limit.
            assert!(buf.capacity() <= LIMIT + 4 + data.len());
        }
    }
});
