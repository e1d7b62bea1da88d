//! Framing only: a 4-byte big-endian length, then that many bytes. The
//! decoder checks the length against the limit before it reserves anything.
//! What the bytes mean is `protocol::cbor`'s business.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Default largest frame accepted, in bytes (16 MiB).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

const HEADER_BYTES: usize = 4;

/// What ends a connection at the framing layer.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    /// The first bytes are an HTTP request line (`GET ` read as a length):
    /// a WebSocket client such as zeek-client, on the wrong port.
    #[error("the peer speaks HTTP ({method:?}), not the agent protocol")]
    Http { method: String },
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Length-prefixed frames with a size cap.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max: usize,
}

impl FrameCodec {
    pub fn new(max_frame_bytes: usize) -> Self {
        FrameCodec {
            max: max_frame_bytes,
        }
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some(header) = src.get(..HEADER_BYTES) else {
            return Ok(None);
        };
        let mut len_bytes = [0u8; HEADER_BYTES];
        len_bytes.copy_from_slice(header);
        // A u32 always fits in usize on the 32- and 64-bit targets we build for.
        let len = usize::try_from(u32::from_be_bytes(len_bytes)).unwrap_or(usize::MAX);
        if len > self.max {
            if let Some(method) = http_method(&len_bytes) {
                return Err(FrameError::Http { method });
            }
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        if src.len() < HEADER_BYTES + len {
            src.reserve(HEADER_BYTES + len - src.len());
            return Ok(None);
        }
        src.advance(HEADER_BYTES);
        Ok(Some(src.split_to(len).freeze()))
    }
}

/// The HTTP method whose first four bytes `header` holds, if any.
fn http_method(header: &[u8; HEADER_BYTES]) -> Option<String> {
    const METHODS: &[&str] = &["GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE", "PATCH"];
    METHODS
        .iter()
        .find(|m| {
            let start = format!("{m} ");
            start.as_bytes()[..HEADER_BYTES.min(start.len())] == header[..]
        })
        .map(|m| (*m).to_owned())
}

impl Encoder<Bytes> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        dst.reserve(HEADER_BYTES + item.len());
        put_frame(dst, |d| {
            d.extend_from_slice(&item);
            Ok::<(), FrameError>(())
        })
    }
}

/// Appends one frame to `dst` whose payload `write` appends in place (no
/// intermediate buffer), then fills in its length. On an error, `dst` is
/// left as it was.
pub fn put_frame<E: From<FrameError>>(
    dst: &mut BytesMut,
    write: impl FnOnce(&mut BytesMut) -> Result<(), E>,
) -> Result<(), E> {
    let start = dst.len();
    dst.put_u32(0);
    if let Err(e) = write(dst) {
        dst.truncate(start);
        return Err(e);
    }
    let len = dst.len() - start - HEADER_BYTES;
    let Ok(len32) = u32::try_from(len) else {
        dst.truncate(start);
        return Err(FrameError::TooLarge {
            len,
            max: u32::MAX as usize,
        }
        .into());
    };
    dst[start..start + HEADER_BYTES].copy_from_slice(&len32.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_request_is_recognised_by_its_first_bytes() {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::from(&b"GET /v1/messages/json HTTP/1.1\r\n"[..]);
        match codec.decode(&mut buf) {
            Err(FrameError::Http { method }) => assert_eq!(method, "GET"),
            other => panic!("{other:?}"),
        }
        let mut buf = BytesMut::from(&b"OPTIONS * HTTP/1.1\r\n"[..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::Http { .. })
        ));
        // A frame too large that is not HTTP stays what it is.
        let mut buf = BytesMut::from(&[0xff, 0, 0, 0][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::TooLarge { .. })
        ));
    }

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut buf = BytesMut::new();
        FrameCodec::default()
            .encode(Bytes::copy_from_slice(payload), &mut buf)
            .expect("encode");
        buf.to_vec()
    }

    #[test]
    fn frames_split_at_every_byte_decode_the_same() {
        let mut wire = framed(b"first frame");
        wire.extend(framed(b""));
        wire.extend(framed(&[0xa0; 300]));
        for split in 0..=wire.len() {
            let mut codec = FrameCodec::default();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for chunk in [&wire[..split], &wire[split..]] {
                buf.extend_from_slice(chunk);
                while let Some(f) = codec.decode(&mut buf).expect("decode") {
                    got.push(f);
                }
            }
            assert_eq!(got.len(), 3, "split at {split}");
            assert_eq!(&got[0][..], b"first frame");
            assert!(got[1].is_empty());
            assert_eq!(got[2].len(), 300);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn oversize_frame_is_refused_before_reserving() {
        let mut codec = FrameCodec::new(10);
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        match codec.decode(&mut buf) {
            Err(FrameError::TooLarge { len, max }) => {
                assert_eq!(len, u32::MAX as usize);
                assert_eq!(max, 10);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert!(buf.capacity() < 1024);
        let err = FrameCodec::new(10)
            .decode(&mut BytesMut::from(&framed(&[0; 11])[..]))
            .expect_err("11 > 10");
        assert_eq!(
            err.to_string(),
            "frame of 11 bytes exceeds the 10-byte limit"
        );
    }

    #[test]
    fn frame_at_the_limit_is_accepted() {
        let mut codec = FrameCodec::new(10);
        let mut buf = BytesMut::from(&framed(&[7; 10])[..]);
        assert_eq!(
            codec.decode(&mut buf).expect("ok").map(|b| b.len()),
            Some(10)
        );
    }

    #[test]
    fn frames_written_in_place_carry_their_length_and_failures_leave_nothing() {
        let mut buf = BytesMut::from(&b"xy"[..]);
        put_frame(&mut buf, |d| {
            d.extend_from_slice(b"hello");
            Ok::<(), FrameError>(())
        })
        .expect("put");
        let failed = put_frame(&mut buf, |d| {
            d.extend_from_slice(b"half");
            Err(FrameError::Io(std::io::Error::other("no")))
        });
        assert!(failed.is_err());
        assert_eq!(&buf[..], b"xy\0\0\0\x05hello");
    }

    #[test]
    fn partial_header_waits() {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::from(&[0, 0][..]);
        assert!(codec.decode(&mut buf).expect("ok").is_none());
    }
}
