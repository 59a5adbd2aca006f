//! dag-pb and UnixFS protobuf, byte-for-byte as go-merkledag and Helia write them.
//!
//! CIDs of interior nodes depend on the exact bytes, so encoding is hand-written in the
//! canonical order (links first: Hash, Name, Tsize; then Data) instead of going through a
//! generic protobuf library whose field order or defaults could drift.

use khachapuri_types::Cid;

use crate::error::{Result, StoreError};

/// UnixFS `Data.Type` of a file node.
pub const UNIXFS_FILE: u64 = 2;
/// UnixFS `Data.Type` of a raw node (old importers without raw leaves).
pub const UNIXFS_RAW: u64 = 0;

/// One link of a dag-pb node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbLink {
    /// The child.
    pub hash: Cid,
    /// Link name; file chunks have an empty name (encoded, not omitted).
    pub name: Option<String>,
    /// Total size of the child's DAG in encoded bytes.
    pub tsize: Option<u64>,
}

/// A decoded dag-pb node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PbNode {
    /// Children, in order.
    pub links: Vec<PbLink>,
    /// The opaque payload (a UnixFS `Data` message for UnixFS).
    pub data: Option<Vec<u8>>,
}

/// The UnixFS `Data` message (the fields files use).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnixfsData {
    /// Node type (2 = file, 0 = raw, 1 = directory, ...).
    pub kind: u64,
    /// Bytes stored inline in this node (before the children's bytes).
    pub data: Option<Vec<u8>>,
    /// Total file bytes under this node.
    pub filesize: Option<u64>,
    /// File bytes under each child, in link order.
    pub blocksizes: Vec<u64>,
}

fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(field: u64, bytes: &[u8], out: &mut Vec<u8>) {
    put_varint(field << 3 | 2, out);
    put_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

impl PbNode {
    /// Canonical dag-pb bytes: every link (Hash, Name, Tsize), then Data.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.links.len() * 48 + 16);
        let mut link_buf = Vec::with_capacity(64);
        for link in &self.links {
            link_buf.clear();
            put_bytes(1, &link.hash.to_bytes(), &mut link_buf);
            if let Some(name) = &link.name {
                put_bytes(2, name.as_bytes(), &mut link_buf);
            }
            if let Some(tsize) = link.tsize {
                put_varint(3 << 3, &mut link_buf);
                put_varint(tsize, &mut link_buf);
            }
            put_bytes(2, &link_buf, &mut out);
        }
        if let Some(data) = &self.data {
            put_bytes(1, data, &mut out);
        }
        out
    }

    /// Decodes dag-pb bytes (strictly: only the fields dag-pb defines).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut node = PbNode::default();
        let mut r = Reader::new(bytes);
        while let Some((field, value)) = r.field()? {
            match (field, value) {
                (1, Value::Bytes(b)) if node.data.is_none() => node.data = Some(b.to_vec()),
                (2, Value::Bytes(b)) if node.data.is_none() => node.links.push(decode_link(b)?),
                _ => return Err(malformed("dag-pb", "unexpected field or order")),
            }
        }
        Ok(node)
    }
}

fn decode_link(bytes: &[u8]) -> Result<PbLink> {
    let mut r = Reader::new(bytes);
    let (mut hash, mut name, mut tsize) = (None, None, None);
    while let Some((field, value)) = r.field()? {
        match (field, value) {
            (1, Value::Bytes(b)) if hash.is_none() => hash = Some(Cid::from_bytes(b)?),
            (2, Value::Bytes(b)) if name.is_none() => {
                name = Some(
                    String::from_utf8(b.to_vec())
                        .map_err(|_| malformed("dag-pb", "link name is not UTF-8"))?,
                );
            }
            (3, Value::Varint(v)) if tsize.is_none() => tsize = Some(v),
            _ => return Err(malformed("dag-pb", "unexpected link field")),
        }
    }
    Ok(PbLink {
        hash: hash.ok_or_else(|| malformed("dag-pb", "link without hash"))?,
        name,
        tsize,
    })
}

impl UnixfsData {
    /// A file node over children of the given sizes (what the importer writes).
    pub fn file(blocksizes: Vec<u64>) -> Self {
        Self {
            kind: UNIXFS_FILE,
            data: None,
            filesize: Some(blocksizes.iter().sum()),
            blocksizes,
        }
    }

    /// Protobuf bytes in field order (Type, Data, filesize, blocksizes unpacked).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.blocksizes.len() * 4);
        put_varint(1 << 3, &mut out);
        put_varint(self.kind, &mut out);
        if let Some(data) = &self.data {
            put_bytes(2, data, &mut out);
        }
        if let Some(size) = self.filesize {
            put_varint(3 << 3, &mut out);
            put_varint(size, &mut out);
        }
        for &size in &self.blocksizes {
            put_varint(4 << 3, &mut out);
            put_varint(size, &mut out);
        }
        out
    }

    /// Decodes a UnixFS `Data` message, skipping fields files do not need (mode, mtime...).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut out = UnixfsData::default();
        let mut kind = None;
        let mut r = Reader::new(bytes);
        while let Some((field, value)) = r.field()? {
            match (field, value) {
                (1, Value::Varint(v)) => kind = Some(v),
                (2, Value::Bytes(b)) => out.data = Some(b.to_vec()),
                (3, Value::Varint(v)) => out.filesize = Some(v),
                (4, Value::Varint(v)) => out.blocksizes.push(v),
                (4, Value::Bytes(packed)) => {
                    let mut p = Reader::new(packed);
                    while !p.done() {
                        out.blocksizes.push(p.varint()?);
                    }
                }
                _ => {}
            }
        }
        out.kind = kind.ok_or_else(|| malformed("UnixFS", "missing Type"))?;
        Ok(out)
    }
}

fn malformed(what: &'static str, reason: &str) -> StoreError {
    StoreError::Malformed {
        what,
        reason: reason.to_string(),
    }
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| malformed("protobuf", "truncated varint"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(malformed("protobuf", "varint too long"))
    }

    fn field(&mut self) -> Result<Option<(u64, Value<'a>)>> {
        if self.done() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let value = match tag & 7 {
            0 => Value::Varint(self.varint()?),
            2 => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| malformed("protobuf", "length overflow"))?;
                let end = self
                    .pos
                    .checked_add(len)
                    .filter(|&e| e <= self.buf.len())
                    .ok_or_else(|| malformed("protobuf", "truncated bytes"))?;
                let b = &self.buf[self.pos..end];
                self.pos = end;
                Value::Bytes(b)
            }
            1 | 5 => {
                let n = if tag & 7 == 1 { 8 } else { 4 };
                if self.pos + n > self.buf.len() {
                    return Err(malformed("protobuf", "truncated fixed field"));
                }
                self.pos += n;
                Value::Fixed
            }
            _ => return Err(malformed("protobuf", "unsupported wire type")),
        };
        Ok(Some((tag >> 3, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_directory_matches_kubo() {
        // Kubo's empty directory: QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn
        let node = PbNode {
            links: vec![],
            data: Some(
                UnixfsData {
                    kind: 1,
                    ..Default::default()
                }
                .encode(),
            ),
        };
        let cid = Cid::dag_pb(&node.encode());
        assert_eq!(
            cid.to_string(),
            "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"
        );
    }

    proptest! {
        #[test]
        fn node_round_trips(sizes in proptest::collection::vec(0u64..(1 << 40), 0..40)) {
            let links = sizes.iter().map(|&s| PbLink {
                hash: Cid::raw(&s.to_le_bytes()),
                name: Some(String::new()),
                tsize: Some(s),
            }).collect();
            let node = PbNode { links, data: Some(UnixfsData::file(sizes.clone()).encode()) };
            let bytes = node.encode();
            let back = PbNode::decode(&bytes).expect("decode");
            prop_assert_eq!(&back, &node);
            let fs = UnixfsData::decode(back.data.as_deref().unwrap_or_default()).expect("unixfs");
            prop_assert_eq!(fs, UnixfsData::file(sizes));
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = PbNode::decode(&bytes);
            let _ = UnixfsData::decode(&bytes);
        }
    }
}
