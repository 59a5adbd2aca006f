//! The small encodings CIDs are built from: unsigned varints (multiformats flavour),
//! RFC 4648 base32 lower-case without padding (multibase `b`) and base58btc (CIDv0 `Qm…`).
//!
//! Written here rather than pulled from crates because each is a few lines and the types
//! crate must stay dependency-light and free of I/O.

use crate::TypesError;

/// Largest varint multiformats allows: 9 bytes (63 bits).
const MAX_VARINT_LEN: usize = 9;

/// Appends `value` as an unsigned LEB128 varint.
pub fn varint_encode(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads one varint from the front of `input`; returns it and how many bytes it used.
///
/// Rejects non-minimal encodings and values over 63 bits, as the multiformats spec does,
/// so that every value has exactly one encoding (CIDs are compared as bytes).
pub fn varint_decode(input: &[u8]) -> Result<(u64, usize), TypesError> {
    let mut value: u64 = 0;
    for (i, &byte) in input.iter().enumerate().take(MAX_VARINT_LEN) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return Err(TypesError::Varint("not minimally encoded"));
            }
            return Ok((value, i + 1));
        }
    }
    if input.len() < MAX_VARINT_LEN {
        Err(TypesError::Varint("truncated"))
    } else {
        Err(TypesError::Varint("longer than 9 bytes"))
    }
}

const BASE32_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// RFC 4648 base32, lower case, no padding (the multibase `b` body).
pub fn base32_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for &byte in data {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(
                BASE32_ALPHABET[((buffer >> bits) & 31) as usize],
            ));
        }
    }
    if bits > 0 {
        out.push(char::from(
            BASE32_ALPHABET[((buffer << (5 - bits)) & 31) as usize],
        ));
    }
    out
}

/// Decodes [`base32_encode`] output (case-insensitive), rejecting stray bits.
pub fn base32_decode(text: &str) -> Result<Vec<u8>, TypesError> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for c in text.bytes() {
        let v = match c {
            b'a'..=b'z' => c - b'a',
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return Err(TypesError::InvalidCid("invalid base32 character".into())),
        };
        buffer = (buffer << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
        buffer &= (1 << bits) - 1;
    }
    if bits >= 5 || buffer != 0 {
        return Err(TypesError::InvalidCid("invalid base32 length".into()));
    }
    Ok(out)
}

const BASE58_ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Bitcoin base58 (CIDv0 strings). Quadratic, fine for 34-byte multihashes.
pub fn base58_encode(data: &[u8]) -> String {
    let zeros = data.iter().take_while(|&&b| b == 0).count();
    let mut digits: Vec<u8> = Vec::with_capacity(data.len() * 138 / 100 + 1);
    for &byte in &data[zeros..] {
        let mut carry = u32::from(byte);
        for d in digits.iter_mut() {
            carry += u32::from(*d) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let mut out = String::with_capacity(zeros + digits.len());
    out.extend(std::iter::repeat_n('1', zeros));
    out.extend(
        digits
            .iter()
            .rev()
            .map(|&d| char::from(BASE58_ALPHABET[d as usize])),
    );
    out
}

/// Decodes base58btc.
pub fn base58_decode(text: &str) -> Result<Vec<u8>, TypesError> {
    let zeros = text.bytes().take_while(|&b| b == b'1').count();
    let mut bytes: Vec<u8> = Vec::with_capacity(text.len());
    for c in text.bytes().skip(zeros) {
        let mut carry = BASE58_ALPHABET
            .iter()
            .position(|&a| a == c)
            .ok_or_else(|| TypesError::InvalidCid("invalid base58 character".into()))?
            as u32;
        for b in bytes.iter_mut() {
            carry += u32::from(*b) * 58;
            *b = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.push((carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let mut out = vec![0u8; zeros];
    out.extend(bytes.iter().rev());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_vectors() {
        assert_eq!(base32_encode(b"foobar"), "mzxw6ytboi");
        assert_eq!(base32_decode("mzxw6ytboi").ok(), Some(b"foobar".to_vec()));
        assert_eq!(base58_encode(b"hello world"), "StV1DL6CwTryKyV");
        assert_eq!(
            base58_decode("StV1DL6CwTryKyV").ok(),
            Some(b"hello world".to_vec())
        );
        let mut v = Vec::new();
        varint_encode(300, &mut v);
        assert_eq!(v, [0xac, 0x02]);
        assert!(varint_decode(&[0x80, 0x00]).is_err());
        assert!(varint_decode(&[0x80]).is_err());
    }

    proptest! {
        #[test]
        fn varint_round_trips(v in 0u64..(1 << 63)) {
            let mut buf = Vec::new();
            varint_encode(v, &mut buf);
            prop_assert_eq!(varint_decode(&buf).ok(), Some((v, buf.len())));
        }

        #[test]
        fn base32_round_trips(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let text = base32_encode(&data);
            prop_assert_eq!(base32_decode(&text).ok(), Some(data));
        }

        #[test]
        fn base58_round_trips(data in proptest::collection::vec(any::<u8>(), 0..48)) {
            let text = base58_encode(&data);
            prop_assert_eq!(base58_decode(&text).ok(), Some(data));
        }

        #[test]
        fn decoders_never_panic(text in "\\PC{0,80}", bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = base32_decode(&text);
            let _ = base58_decode(&text);
            let _ = varint_decode(&bytes);
        }
    }
}
