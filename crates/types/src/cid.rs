//! Content identifiers: CIDv1 with a sha2-256 multihash (what the `unixfs-v1-2025`
//! profile produces), and read-only CIDv0 (`Qm…`) because older publishers and gateways
//! still hand those out.
//!
//! Only sha2-256 is supported: every block we accept must be verifiable, and a CID with a
//! hash we cannot compute could never be checked.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::multibase::{base32_decode, base32_encode, base58_decode, base58_encode};
use crate::multibase::{varint_decode, varint_encode};
use crate::TypesError;

/// Multicodec of raw bytes (file leaves).
pub const RAW: u64 = 0x55;
/// Multicodec of dag-pb (UnixFS interior nodes).
pub const DAG_PB: u64 = 0x70;
/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;
/// Multicodec of CIDs themselves (the version-1 prefix).
const CIDV1: u64 = 0x01;

/// A CID whose hash is sha2-256: version 0 (dag-pb, base58) or version 1 (any codec).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cid {
    version: u8,
    codec: u64,
    digest: [u8; 32],
}

impl Cid {
    /// The CIDv1 of a raw block: how UnixFS leaves (and one-chunk files) are named.
    pub fn raw(block: &[u8]) -> Self {
        Self::v1(RAW, sha256(block))
    }

    /// The CIDv1 of a dag-pb block: how UnixFS interior nodes are named.
    pub fn dag_pb(block: &[u8]) -> Self {
        Self::v1(DAG_PB, sha256(block))
    }

    /// A CIDv1 from a codec and an already computed sha2-256 digest.
    pub fn v1(codec: u64, digest: [u8; 32]) -> Self {
        Self {
            version: 1,
            codec,
            digest,
        }
    }

    /// A CIDv1 of `codec` over `block` (hashing it).
    pub fn of(codec: u64, block: &[u8]) -> Self {
        Self::v1(codec, sha256(block))
    }

    /// CID version (0 or 1).
    pub fn version(&self) -> u8 {
        self.version
    }

    /// Multicodec of the block (0x55 raw, 0x70 dag-pb, ...).
    pub fn codec(&self) -> u64 {
        self.codec
    }

    /// The sha2-256 digest of the block.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// Whether `block` is exactly the content this CID names.
    pub fn verify(&self, block: &[u8]) -> bool {
        sha256(block) == self.digest
    }

    /// Binary form (as in dag-pb links and CAR files).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(36);
        if self.version == 1 {
            varint_encode(CIDV1, &mut out);
            varint_encode(self.codec, &mut out);
        }
        varint_encode(SHA2_256, &mut out);
        varint_encode(32, &mut out);
        out.extend_from_slice(&self.digest);
        out
    }

    /// Parses the binary form; all of `bytes` must be one CID.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TypesError> {
        let (cid, used) = Self::read_bytes(bytes)?;
        if used != bytes.len() {
            return Err(TypesError::InvalidCid("trailing bytes after CID".into()));
        }
        Ok(cid)
    }

    /// Parses a binary CID at the front of `bytes`; returns it and its length
    /// (CAR sections hold a CID followed by the block).
    pub fn read_bytes(bytes: &[u8]) -> Result<(Self, usize), TypesError> {
        if bytes.len() >= 2 && bytes[0] == 0x12 && bytes[1] == 0x20 {
            let digest = digest_at(bytes, 2)?;
            return Ok((
                Self {
                    version: 0,
                    codec: DAG_PB,
                    digest,
                },
                34,
            ));
        }
        let (version, mut pos) = varint_decode(bytes)?;
        if version != CIDV1 {
            return Err(TypesError::InvalidCid(format!(
                "unsupported CID version {version}"
            )));
        }
        let (codec, n) = varint_decode(&bytes[pos..])?;
        pos += n;
        let (hash, n) = varint_decode(&bytes[pos..])?;
        pos += n;
        if hash != SHA2_256 {
            return Err(TypesError::UnsupportedHash(hash));
        }
        let (len, n) = varint_decode(&bytes[pos..])?;
        pos += n;
        if len != 32 {
            return Err(TypesError::InvalidCid(format!(
                "sha2-256 digest of {len} bytes"
            )));
        }
        let digest = digest_at(bytes, pos)?;
        Ok((Self::v1(codec, digest), pos + 32))
    }
}

fn digest_at(bytes: &[u8], pos: usize) -> Result<[u8; 32], TypesError> {
    bytes
        .get(pos..pos + 32)
        .and_then(|s| <[u8; 32]>::try_from(s).ok())
        .ok_or_else(|| TypesError::InvalidCid("truncated digest".into()))
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

impl fmt::Display for Cid {
    /// CIDv1 as multibase base32 lower (`b…`), CIDv0 as base58btc (`Qm…`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.version == 0 {
            f.write_str(&base58_encode(&self.to_bytes()))
        } else {
            f.write_str("b")?;
            f.write_str(&base32_encode(&self.to_bytes()))
        }
    }
}

impl fmt::Debug for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cid({self})")
    }
}

impl FromStr for Cid {
    type Err = TypesError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 46 && s.starts_with("Qm") {
            let bytes = base58_decode(s)?;
            let cid = Self::from_bytes(&bytes)?;
            return if cid.version == 0 {
                Ok(cid)
            } else {
                Err(TypesError::InvalidCid("bad CIDv0".into()))
            };
        }
        let mut chars = s.chars();
        match chars.next() {
            Some('b') => {
                let cid = Self::from_bytes(&base32_decode(chars.as_str())?)?;
                if cid.version == 0 {
                    return Err(TypesError::InvalidCid("CIDv0 in base32".into()));
                }
                Ok(cid)
            }
            Some(c) => Err(TypesError::UnsupportedMultibase(c)),
            None => Err(TypesError::InvalidCid("empty string".into())),
        }
    }
}

impl Serialize for Cid {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cid {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_raw_cids() {
        assert_eq!(
            Cid::raw(b"hello from the probe\n").to_string(),
            "bafkreig33ifb5qhpnr4liegexo227he6j5ghhrm4sxwap2dqwplq2t66ni"
        );
        assert_eq!(
            Cid::raw(b"").to_string(),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
    }

    #[test]
    fn parses_v0_and_v1() {
        // The empty UnixFS directory, as Kubo prints it in both versions.
        let v0: Cid = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
            .parse()
            .expect("v0");
        assert_eq!(v0.version(), 0);
        assert_eq!(v0.codec(), DAG_PB);
        assert_eq!(
            v0.to_string(),
            "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
        );
        let v1: Cid = "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"
            .parse()
            .expect("v1");
        assert_eq!(v1.digest(), v0.digest());
        assert_eq!(v1.codec(), DAG_PB);
        assert!(v1.verify(&[0x0a, 0x02, 0x08, 0x01]));
        assert!(v0.verify(&[0x0a, 0x02, 0x08, 0x01]));
        assert!("zb2rh".parse::<Cid>().is_err());
        assert!("".parse::<Cid>().is_err());
        assert!("bafy".parse::<Cid>().is_err());
    }

    #[test]
    fn serde_is_a_string() {
        let cid = Cid::raw(b"x");
        let json = serde_json::to_string(&cid).expect("json");
        assert_eq!(json, format!("\"{cid}\""));
        let back: Cid = serde_json::from_str(&json).expect("back");
        assert_eq!(back, cid);
    }

    proptest! {
        #[test]
        fn bytes_and_strings_round_trip(data in proptest::collection::vec(any::<u8>(), 0..256), codec in 0u64..100_000) {
            let cid = Cid::of(codec, &data);
            prop_assert!(cid.verify(&data));
            prop_assert_eq!(Cid::from_bytes(&cid.to_bytes()).ok(), Some(cid));
            prop_assert_eq!(cid.to_string().parse::<Cid>().ok(), Some(cid));
        }

        #[test]
        fn parsing_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), text in "\\PC{0,64}") {
            let _ = Cid::from_bytes(&bytes);
            let _ = Cid::read_bytes(&bytes);
            let _ = text.parse::<Cid>();
        }
    }
}
