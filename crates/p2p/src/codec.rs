//! Length-prefixed protobuf framing with a cap per protocol and direction.
//!
//! A frame is an unsigned LEB128 length (at most 5 bytes, as multiformats'
//! `unsigned-varint` for a u32) followed by that many bytes of one protobuf message. The
//! length is checked against the cap *before* anything is allocated, so a peer cannot
//! make us buffer more than the protocol allows.

use std::io;
use std::marker::PhantomData;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

use crate::error::P2pError;

/// Caps, in bytes, of one protocol's request and response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request accepted.
    pub request: usize,
    /// Largest response accepted.
    pub response: usize,
}

/// The longest a varint length prefix may be (5 bytes carry a u32).
const MAX_VARINT_BYTES: usize = 5;

/// Appends `len` as an unsigned LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut len: u64) {
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
}

/// Encodes one frame: varint length and the message.
pub fn encode_frame<M: prost::Message>(message: &M) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut out = Vec::with_capacity(body.len() + MAX_VARINT_BYTES);
    put_varint(&mut out, body.len() as u64);
    out.extend_from_slice(&body);
    out
}

/// Splits a varint prefix off `bytes`: `(value, prefix length)`.
fn take_varint(bytes: &[u8]) -> Result<(u64, usize), P2pError> {
    let mut value: u64 = 0;
    for (i, b) in bytes.iter().take(MAX_VARINT_BYTES).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if i > 0 && *b == 0 {
                return Err(P2pError::malformed("length prefix is not minimal"));
            }
            return Ok((value, i + 1));
        }
    }
    if bytes.len() < MAX_VARINT_BYTES {
        Err(P2pError::malformed("truncated length prefix"))
    } else {
        Err(P2pError::malformed("length prefix longer than 5 bytes"))
    }
}

/// Decodes one whole frame held in memory (what the stream reader does, for property
/// tests and fuzzing): the prefix, the cap, exact length, then the protobuf.
pub fn decode_frame<M: prost::Message + Default>(bytes: &[u8], cap: usize) -> Result<M, P2pError> {
    let (len, used) = take_varint(bytes)?;
    let len = usize::try_from(len).map_err(|_| P2pError::malformed("length overflows"))?;
    if len > cap {
        return Err(P2pError::TooLarge {
            got: len,
            limit: cap,
        });
    }
    let body = &bytes[used..];
    if body.len() != len {
        return Err(P2pError::malformed(format!(
            "frame says {len} bytes, {} follow",
            body.len()
        )));
    }
    decode_body(body)
}

/// Decodes a protobuf body.
pub fn decode_body<M: prost::Message + Default>(body: &[u8]) -> Result<M, P2pError> {
    M::decode(body).map_err(|e| P2pError::malformed(e.to_string()))
}

/// Reads one frame of at most `cap` bytes from a stream.
async fn read_frame<T: AsyncRead + Unpin>(io: &mut T, cap: usize) -> io::Result<Vec<u8>> {
    let mut value: u64 = 0;
    let mut done = false;
    for i in 0..MAX_VARINT_BYTES {
        let mut b = [0u8; 1];
        io.read_exact(&mut b).await?;
        value |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            done = true;
            break;
        }
    }
    if !done {
        return Err(invalid(P2pError::malformed(
            "length prefix longer than 5 bytes",
        )));
    }
    let len = usize::try_from(value).unwrap_or(usize::MAX);
    if len > cap {
        return Err(invalid(P2pError::TooLarge {
            got: len,
            limit: cap,
        }));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

fn invalid(e: P2pError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

async fn write_frame<T: AsyncWrite + Unpin, M: prost::Message>(
    io: &mut T,
    message: &M,
    cap: usize,
) -> io::Result<()> {
    let frame = encode_frame(message);
    // Never send what the other side must refuse: a local bug, said here.
    if message.encoded_len() > cap {
        return Err(invalid(P2pError::TooLarge {
            got: message.encoded_len(),
            limit: cap,
        }));
    }
    io.write_all(&frame).await?;
    io.close().await
}

/// A `request_response::Codec` for one protocol: `Req`/`Resp` prost messages under
/// `limits`.
pub struct ProtoCodec<Req, Resp> {
    limits: Limits,
    _messages: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> ProtoCodec<Req, Resp> {
    /// A codec enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            _messages: PhantomData,
        }
    }
}

impl<Req, Resp> Clone for ProtoCodec<Req, Resp> {
    fn clone(&self) -> Self {
        Self::new(self.limits)
    }
}

impl<Req, Resp> libp2p::request_response::Codec for ProtoCodec<Req, Resp>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Default + Send + 'static,
{
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Req>
    where
        T: AsyncRead + Unpin + Send,
    {
        let frame = read_frame(io, self.limits.request).await?;
        decode_body(&frame).map_err(invalid)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        let frame = read_frame(io, self.limits.response).await?;
        decode_body(&frame).map_err(invalid)
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Req) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req, self.limits.request).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Resp,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res, self.limits.response).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::messages::{AttestRequest, CapacityRequest};
    use proptest::prelude::*;

    #[test]
    fn frames_round_trip_and_caps_apply() {
        let m = CapacityRequest {
            memory_mib: 128,
            instances: 4,
            runtimes: vec!["wasi-http".into()],
            tee: String::new(),
            region: "eu".into(),
            cpus: 2,
        };
        let frame = encode_frame(&m);
        assert_eq!(decode_frame::<CapacityRequest>(&frame, 1024).unwrap(), m);
        assert!(matches!(
            decode_frame::<CapacityRequest>(&frame, 4),
            Err(P2pError::TooLarge { .. })
        ));
        // A prefix claiming 4 GiB is refused before any allocation.
        assert!(matches!(
            decode_frame::<AttestRequest>(&[0xff, 0xff, 0xff, 0xff, 0x0f], 1024),
            Err(P2pError::TooLarge { .. })
        ));
        assert!(
            decode_frame::<AttestRequest>(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], 1024).is_err()
        );
        assert!(
            decode_frame::<AttestRequest>(&[0x85, 0x00], 1024).is_err(),
            "non-minimal"
        );
        assert!(decode_frame::<AttestRequest>(&[], 1024).is_err());
        // Trailing or missing bytes.
        let mut long = frame.clone();
        long.push(0);
        assert!(decode_frame::<CapacityRequest>(&long, 1024).is_err());
        assert!(decode_frame::<CapacityRequest>(&frame[..frame.len() - 1], 1024).is_err());
    }

    #[test]
    fn the_stream_reader_refuses_an_oversize_prefix() {
        let mut frame = Vec::new();
        put_varint(&mut frame, 1 << 20);
        frame.extend_from_slice(&[0u8; 16]);
        let mut io = futures::io::Cursor::new(frame);
        let err = futures::executor::block_on(read_frame(&mut io, 1024)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_frame::<CapacityRequest>(&bytes, 256);
            let _ = decode_frame::<crate::messages::Signed>(&bytes, 256);
            let _ = decode_frame::<crate::messages::AttestResponse>(&bytes, 256);
        }

        #[test]
        fn any_request_round_trips(memory in any::<u32>(), cpus in any::<u32>(), region in "[a-z]{0,20}",
                                   runtimes in proptest::collection::vec("[a-z-]{1,12}", 0..4)) {
            let m = CapacityRequest { memory_mib: memory, instances: 1, runtimes, tee: String::new(), region, cpus };
            let frame = encode_frame(&m);
            prop_assert_eq!(decode_frame::<CapacityRequest>(&frame, 4096).unwrap(), m);
        }
    }
}
