//! The handshake before HTTP/2 starts: messages, their strict codec, and the signed text.
//!
//! Each message is one WebSocket *text* message holding one JSON object with a `type` tag
//! and `"v": 1`. Decoding is strict: at most [`MAX_MESSAGE_BYTES`], no unknown fields,
//! exact-length `0x`-hex for nonce, address and signature, names and hosts from a small
//! character set (so the signed text below cannot be made ambiguous with newlines).
//!
//! ```text
//! gateway  -> provider  {"type":"challenge","v":1,"nonce":"0x<64 hex>","host":"gw.example","chain_id":8453,"expires":1790000000}
//! provider -> gateway   {"type":"hello","v":1,"name":"dev","operator":"0x<40 hex>","nonce":"0x<64 hex>","signature":"0x<130 hex>"}
//! gateway  -> provider  {"type":"accepted","v":1}
//!                    or {"type":"refused","v":1,"code":"unregistered_name","message":"name dev is not registered"}
//! ```
//!
//! The signature is EIP-191 `personal_sign` over [`signing_text`]: readable in any wallet,
//! recoverable with alloy's `recover_address_from_msg`, domain-separated by its first line
//! (`khachapuri-tunnel-login-v1`) so it can never be mistaken for a voucher or any other
//! Khachapuri signature, and binding every challenge field plus the name and operator.

use alloy_primitives::{hex, Address, Signature};
use serde::{Deserialize, Serialize};

use crate::error::{RefusalCode, TunnelError};

/// Largest handshake message either side accepts. The biggest real one (`hello`) is
/// about 330 bytes; 4 KiB leaves room for a long refusal message and nothing more.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// Protocol version carried in every message and in the signed text.
pub const VERSION: u8 = 1;

/// Longest host name (DNS limit) a challenge may bind.
pub const MAX_HOST_LEN: usize = 253;

/// Longest provider name: one DNS label, since the name is served as `{name}.{domain}`.
pub const MAX_NAME_LEN: usize = 63;

/// Longest refusal message kept (longer ones are cut, never refused as malformed).
pub const MAX_REFUSAL_MESSAGE: usize = 1024;

/// A single-use gateway nonce: 32 random bytes, hex on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nonce(pub [u8; 32]);

impl std::fmt::Debug for Nonce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Nonce(0x{})", hex::encode(self.0))
    }
}

/// The gateway's challenge: what the provider signs, apart from its own name and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Fresh, single-use.
    pub nonce: Nonce,
    /// The gateway's host name (no port), which the provider checks against the URL it
    /// dialled: a signature made for one gateway cannot be relayed to another.
    pub host: String,
    /// The chain whose registry names the operator: a signature is not valid across chains.
    pub chain_id: u64,
    /// Unix seconds after which the gateway will not accept an answer.
    pub expires: u64,
}

/// The provider's answer to a challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The registered provider name the tunnel serves.
    pub name: String,
    /// The address the provider claims signed (its registry operator address); carried so
    /// a refusal can say which address signed and which one the registry expects.
    pub operator: Address,
    /// The challenge's nonce, echoed so the gateway can tell a replay from a forgery.
    pub nonce: Nonce,
    /// 65-byte `r || s || v` EIP-191 signature over [`signing_text`].
    pub signature: [u8; 65],
}

/// Every handshake message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Gateway to provider, first.
    Challenge(Challenge),
    /// Provider to gateway, the answer.
    Hello(Hello),
    /// Gateway to provider: HTTP/2 starts now, over binary messages.
    Accepted,
    /// Gateway to provider (or provider to gateway, for a challenge it will not sign),
    /// followed by a WebSocket close.
    Refused {
        /// Machine-readable reason.
        code: RefusalCode,
        /// Operator-readable reason.
        message: String,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Wire {
    Challenge {
        v: u8,
        nonce: String,
        host: String,
        chain_id: u64,
        expires: u64,
    },
    Hello {
        v: u8,
        name: String,
        operator: String,
        nonce: String,
        signature: String,
    },
    Accepted {
        v: u8,
    },
    Refused {
        v: u8,
        code: RefusalCode,
        message: String,
    },
}

/// Encodes a message as the JSON text of one WebSocket text message.
pub fn encode(msg: &Message) -> String {
    let wire = match msg {
        Message::Challenge(c) => Wire::Challenge {
            v: VERSION,
            nonce: hex::encode_prefixed(c.nonce.0),
            host: c.host.clone(),
            chain_id: c.chain_id,
            expires: c.expires,
        },
        Message::Hello(h) => Wire::Hello {
            v: VERSION,
            name: h.name.clone(),
            operator: hex::encode_prefixed(h.operator),
            nonce: hex::encode_prefixed(h.nonce.0),
            signature: hex::encode_prefixed(h.signature),
        },
        Message::Accepted => Wire::Accepted { v: VERSION },
        Message::Refused { code, message } => Wire::Refused {
            v: VERSION,
            code: *code,
            message: truncate(message, MAX_REFUSAL_MESSAGE),
        },
    };
    // Serialising a struct of strings and integers cannot fail.
    serde_json::to_string(&wire).unwrap_or_default()
}

/// Decodes one handshake message, strictly (see the module docs). Never panics.
pub fn decode(bytes: &[u8]) -> Result<Message, TunnelError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(malformed(format!(
            "{} bytes, more than the {MAX_MESSAGE_BYTES}-byte limit",
            bytes.len()
        )));
    }
    let wire: Wire = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
    let v = match &wire {
        Wire::Challenge { v, .. }
        | Wire::Hello { v, .. }
        | Wire::Accepted { v }
        | Wire::Refused { v, .. } => *v,
    };
    if v != VERSION {
        return Err(malformed(format!(
            "version {v}, this side speaks {VERSION}"
        )));
    }
    Ok(match wire {
        Wire::Challenge {
            nonce,
            host,
            chain_id,
            expires,
            ..
        } => {
            check_host(&host)?;
            Message::Challenge(Challenge {
                nonce: Nonce(hex_array(&nonce, "nonce")?),
                host,
                chain_id,
                expires,
            })
        }
        Wire::Hello {
            name,
            operator,
            nonce,
            signature,
            ..
        } => {
            check_name(&name)?;
            Message::Hello(Hello {
                name,
                operator: Address::from(hex_array::<20>(&operator, "operator")?),
                nonce: Nonce(hex_array(&nonce, "nonce")?),
                signature: hex_array(&signature, "signature")?,
            })
        }
        Wire::Accepted { .. } => Message::Accepted,
        Wire::Refused { code, message, .. } => Message::Refused {
            code,
            message: truncate(&message, MAX_REFUSAL_MESSAGE),
        },
    })
}

/// The exact text the provider signs with EIP-191 `personal_sign`. Fields are one per
/// line, in a fixed order; the name and host come from character sets without newlines
/// (checked by [`check_name`] and [`check_host`]), so no two field sets give one text.
pub fn signing_text(challenge: &Challenge, name: &str, operator: Address) -> String {
    format!(
        "khachapuri-tunnel-login-v{VERSION}\n\
         Sign only to serve your Khachapuri provider name through this gateway.\n\
         gateway: {}\nchain id: {}\nname: {}\noperator: {}\nnonce: {}\nexpires: {}",
        challenge.host,
        challenge.chain_id,
        name,
        operator.to_checksum(None),
        hex::encode_prefixed(challenge.nonce.0),
        challenge.expires,
    )
}

/// Recovers the address that signed `hello` for `challenge`. Does not check nonce,
/// expiry or the registry: the gateway does those in its own order, for clear refusals.
pub fn recover_signer(challenge: &Challenge, hello: &Hello) -> Result<Address, TunnelError> {
    let bad = |why: String| TunnelError::refused(RefusalCode::BadSignature, why);
    let sig = Signature::from_raw(&hello.signature).map_err(|e| bad(format!("signature: {e}")))?;
    let text = signing_text(challenge, &hello.name, hello.operator);
    sig.recover_address_from_msg(text.as_bytes())
        .map_err(|e| bad(format!("signature does not recover: {e}")))
}

/// A provider name as the tunnel accepts it: one lowercase DNS label (`[a-z0-9-]`, 1 to
/// [`MAX_NAME_LEN`] characters, no leading or trailing `-`), since it is served as
/// `{name}.{domain}`.
pub fn check_name(name: &str) -> Result<(), TunnelError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(malformed(format!(
            "name {:?} is not one lowercase DNS label",
            truncate(name, 80)
        )))
    }
}

/// A gateway host as a challenge may carry it: 1 to [`MAX_HOST_LEN`] characters of
/// `[a-z0-9.-]`, or a bracketed IPv6 literal (`[`, `]`, `:`, hex); lowercase, no port.
pub fn check_host(host: &str) -> Result<(), TunnelError> {
    let ok = !host.is_empty()
        && host.len() <= MAX_HOST_LEN
        && host.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b'.' | b'-' | b'[' | b']' | b':')
        })
        && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')));
    if ok {
        Ok(())
    } else {
        Err(malformed(format!(
            "host {:?} is not a lowercase host name without port",
            truncate(host, 80)
        )))
    }
}

fn hex_array<const N: usize>(s: &str, field: &str) -> Result<[u8; N], TunnelError> {
    let digits = s
        .strip_prefix("0x")
        .ok_or_else(|| malformed(format!("{field} must start with 0x")))?;
    if digits.len() != 2 * N {
        return Err(malformed(format!(
            "{field} must be {N} bytes ({} hex digits)",
            2 * N
        )));
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(digits, &mut out).map_err(|e| malformed(format!("{field}: {e}")))?;
    Ok(out)
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn malformed(why: String) -> TunnelError {
    TunnelError::Malformed(why)
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod tests;
