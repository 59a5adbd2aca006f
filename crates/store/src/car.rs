//! CAR v1 (content archives): what trustless gateways send for `format=car`.
//!
//! The header is a tiny dag-cbor map `{roots: [CID], version: 1}`; it is written byte by
//! byte and read with a minimal CBOR decoder, which is all CAR needs.

use bytes::Bytes;
use khachapuri_types::multibase::varint_encode;
use khachapuri_types::Cid;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::{Result, StoreError};

/// Longest header we accept (a handful of roots).
const MAX_HEADER: u64 = 4096;

/// The length-prefixed CAR v1 header naming one root.
pub fn header(root: &Cid) -> Vec<u8> {
    let cid = root.to_bytes();
    let mut body = vec![0xa2, 0x65];
    body.extend_from_slice(b"roots");
    body.extend_from_slice(&[0x81, 0xd8, 0x2a]);
    cbor_head(2, cid.len() as u64 + 1, &mut body);
    body.push(0x00);
    body.extend_from_slice(&cid);
    body.push(0x67);
    body.extend_from_slice(b"version");
    body.push(0x01);
    let mut out = Vec::with_capacity(body.len() + 2);
    varint_encode(body.len() as u64, &mut out);
    out.extend_from_slice(&body);
    out
}

/// The length prefix and CID that precede a block's bytes in a CAR.
pub fn section_prefix(cid: &Cid, block_len: usize) -> Vec<u8> {
    let cid = cid.to_bytes();
    let mut out = Vec::with_capacity(cid.len() + 4);
    varint_encode((cid.len() + block_len) as u64, &mut out);
    out.extend_from_slice(&cid);
    out
}

fn cbor_head(major: u8, value: u64, out: &mut Vec<u8>) {
    let m = major << 5;
    match value {
        0..=23 => out.push(m | value as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, value as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(value as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(value as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&value.to_be_bytes());
        }
    }
}

/// Streaming CAR v1 reader over any async byte stream.
#[derive(Debug)]
pub struct CarReader<R> {
    reader: R,
    roots: Vec<Cid>,
}

impl<R: AsyncRead + Unpin> CarReader<R> {
    /// Reads and checks the header.
    pub async fn new(mut reader: R) -> Result<Self> {
        let len = read_varint(&mut reader)
            .await?
            .ok_or_else(|| car_err("empty stream"))?;
        if len == 0 || len > MAX_HEADER {
            return Err(car_err("bad header length"));
        }
        let mut buf = vec![0u8; len as usize];
        reader.read_exact(&mut buf).await.map_err(truncated)?;
        let roots = parse_header(&buf)?;
        Ok(Self { reader, roots })
    }

    /// Roots named in the header.
    pub fn roots(&self) -> &[Cid] {
        &self.roots
    }

    /// The next block, or `None` at a clean end of stream. The block is NOT verified
    /// here; callers check it against its CID.
    pub async fn next_block(&mut self, max_block: usize) -> Result<Option<(Cid, Bytes)>> {
        let Some(len) = read_varint(&mut self.reader).await? else {
            return Ok(None);
        };
        if len > (max_block + 64) as u64 {
            return Err(StoreError::TooLarge {
                what: "CAR section",
                limit: max_block as u64,
            });
        }
        let mut buf = vec![0u8; len as usize];
        self.reader.read_exact(&mut buf).await.map_err(truncated)?;
        let (cid, used) = Cid::read_bytes(&buf)?;
        let block = Bytes::from(buf).slice(used..);
        if block.len() > max_block {
            return Err(StoreError::TooLarge {
                what: "block",
                limit: max_block as u64,
            });
        }
        Ok(Some((cid, block)))
    }
}

fn car_err(reason: &str) -> StoreError {
    StoreError::Malformed {
        what: "CAR",
        reason: reason.to_string(),
    }
}

fn truncated(e: std::io::Error) -> StoreError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        car_err("stream ends inside a section")
    } else {
        StoreError::Io(e)
    }
}

/// Reads a varint; `None` on EOF before its first byte.
async fn read_varint<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Option<u64>> {
    let mut value = 0u64;
    for i in 0..9 {
        let mut byte = [0u8; 1];
        let n = reader.read(&mut byte).await?;
        if n == 0 {
            return if i == 0 {
                Ok(None)
            } else {
                Err(car_err("stream ends inside a varint"))
            };
        }
        value |= u64::from(byte[0] & 0x7f) << (7 * i);
        if byte[0] & 0x80 == 0 {
            return Ok(Some(value));
        }
    }
    Err(car_err("varint too long"))
}

#[derive(Debug)]
enum Cbor {
    Uint(u64),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Cbor>),
    Map(Vec<(Cbor, Cbor)>),
    Tag(u64, Box<Cbor>),
    Other,
}

fn parse_header(buf: &[u8]) -> Result<Vec<Cid>> {
    let mut pos = 0;
    let value = cbor(buf, &mut pos, 0)?;
    if pos != buf.len() {
        return Err(car_err("trailing bytes in header"));
    }
    let Cbor::Map(entries) = value else {
        return Err(car_err("header is not a map"));
    };
    let (mut roots, mut version) = (None, None);
    for (k, v) in entries {
        match (k, v) {
            (Cbor::Text(k), Cbor::Uint(v)) if k == "version" => version = Some(v),
            (Cbor::Text(k), Cbor::Array(items)) if k == "roots" => {
                let mut cids = Vec::new();
                for item in items {
                    match item {
                        Cbor::Tag(42, inner) => match *inner {
                            Cbor::Bytes(b) if b.first() == Some(&0) => {
                                cids.push(Cid::from_bytes(&b[1..])?)
                            }
                            _ => return Err(car_err("bad root CID")),
                        },
                        _ => return Err(car_err("root is not a CID")),
                    }
                }
                roots = Some(cids);
            }
            _ => {}
        }
    }
    if version != Some(1) {
        return Err(car_err("not a CAR v1"));
    }
    roots.ok_or_else(|| car_err("header without roots"))
}

fn cbor(buf: &[u8], pos: &mut usize, depth: u8) -> Result<Cbor> {
    if depth > 8 {
        return Err(car_err("header nests too deep"));
    }
    let first = *buf.get(*pos).ok_or_else(|| car_err("truncated header"))?;
    *pos += 1;
    let (major, info) = (first >> 5, first & 31);
    let arg = match info {
        0..=23 => u64::from(info),
        24..=27 => {
            let n = 1usize << (info - 24);
            let bytes = buf
                .get(*pos..*pos + n)
                .ok_or_else(|| car_err("truncated header"))?;
            *pos += n;
            bytes.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b))
        }
        _ => return Err(car_err("indefinite lengths are not dag-cbor")),
    };
    let take = |pos: &mut usize, n: u64| -> Result<Vec<u8>> {
        let n = usize::try_from(n).map_err(|_| car_err("length overflow"))?;
        let end = pos
            .checked_add(n)
            .filter(|&e| e <= buf.len())
            .ok_or_else(|| car_err("truncated header"))?;
        let out = buf[*pos..end].to_vec();
        *pos = end;
        Ok(out)
    };
    Ok(match major {
        0 => Cbor::Uint(arg),
        2 => Cbor::Bytes(take(pos, arg)?),
        3 => Cbor::Text(String::from_utf8(take(pos, arg)?).map_err(|_| car_err("bad text"))?),
        4 => {
            let mut items = Vec::new();
            for _ in 0..arg.min(64) {
                items.push(cbor(buf, pos, depth + 1)?);
            }
            if arg > 64 {
                return Err(car_err("too many items"));
            }
            Cbor::Array(items)
        }
        5 => {
            if arg > 16 {
                return Err(car_err("too many keys"));
            }
            let mut entries = Vec::new();
            for _ in 0..arg {
                let k = cbor(buf, pos, depth + 1)?;
                let v = cbor(buf, pos, depth + 1)?;
                entries.push((k, v));
            }
            Cbor::Map(entries)
        }
        6 => Cbor::Tag(arg, Box::new(cbor(buf, pos, depth + 1)?)),
        _ => Cbor::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[tokio::test]
    async fn writes_and_reads_back() {
        let root = Cid::raw(b"hi");
        let mut car = header(&root);
        car.extend(section_prefix(&root, 2));
        car.extend_from_slice(b"hi");
        let mut reader = CarReader::new(&car[..]).await.expect("header");
        assert_eq!(reader.roots(), &[root]);
        let (cid, block) = reader
            .next_block(1 << 20)
            .await
            .expect("ok")
            .expect("block");
        assert_eq!((cid, &block[..]), (root, &b"hi"[..]));
        assert!(reader.next_block(1 << 20).await.expect("end").is_none());
        // Cut inside the block: an error, not a clean end.
        let cut = &car[..car.len() - 1];
        let mut reader = CarReader::new(cut).await.expect("header");
        assert!(reader.next_block(1 << 20).await.is_err());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("rt");
            rt.block_on(async {
                if let Ok(mut r) = CarReader::new(&bytes[..]).await {
                    while let Ok(Some(_)) = r.next_block(1024).await {}
                }
            });
        }
    }
}
