//! The keys and session facts a provider binds into its TEE report.

use sha2::{Digest, Sha512};

/// Domain separator hashed before the binding, so a report_data made for
/// Khachapuri can never be confused with another protocol's.
pub const REPORT_DATA_DOMAIN: &[u8] = b"khachapuri-attest-v1:";

/// What the provider's TEE report vouches for: the transport identity the publisher
/// is talking to, who operates it, where sealed specs go, and this session's
/// freshness and payment context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// libp2p PeerId bytes of the provider (the endpoint of the current stream).
    pub peer_id: Vec<u8>,
    /// Operator's Ethereum address (receives payments).
    pub operator: [u8; 20],
    /// Provider's X25519 public key (sealed specs are encrypted to it).
    pub x25519: [u8; 32],
    /// Publisher's nonce (freshness: an old report cannot be replayed).
    pub nonce: [u8; 32],
    /// EVM chain id of the escrow.
    pub chain_id: u64,
    /// Escrow contract address.
    pub escrow: [u8; 20],
}

impl Binding {
    /// The canonical, unambiguous encoding: peer id with a big-endian u32 length
    /// prefix, then the fixed-width fields in declaration order (chain id big-endian).
    /// The only variable-length field is prefixed, so no two bindings share an encoding.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.peer_id.len() + 20 + 32 + 32 + 8 + 20);
        // A peer id longer than u32::MAX bytes cannot exist in memory on the targets we
        // build for; saturate rather than panic.
        let len = u32::try_from(self.peer_id.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.peer_id);
        out.extend_from_slice(&self.operator);
        out.extend_from_slice(&self.x25519);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.chain_id.to_be_bytes());
        out.extend_from_slice(&self.escrow);
        out
    }
}

/// The 64 bytes a provider puts in its TEE report's report_data:
/// `SHA-512("khachapuri-attest-v1:" ‖ canonical encoding)`. Publishers recompute it
/// from what they expect and compare.
pub fn report_data(binding: &Binding) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(REPORT_DATA_DOMAIN);
    h.update(binding.canonical_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_binding() -> impl Strategy<Value = Binding> {
        (
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<[u8; 20]>(),
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
            any::<u64>(),
            any::<[u8; 20]>(),
        )
            .prop_map(
                |(peer_id, operator, x25519, nonce, chain_id, escrow)| Binding {
                    peer_id,
                    operator,
                    x25519,
                    nonce,
                    chain_id,
                    escrow,
                },
            )
    }

    proptest! {
        #[test]
        fn any_single_field_change_changes_report_data(
            b in arb_binding(),
            field in 0usize..6,
            idx in any::<usize>(),
            flip in 1u8..=255,
        ) {
            let mut c = b.clone();
            match field {
                0 => {
                    if c.peer_id.is_empty() {
                        c.peer_id.push(flip);
                    } else {
                        let i = idx % c.peer_id.len();
                        c.peer_id[i] ^= flip;
                    }
                }
                1 => c.operator[idx % 20] ^= flip,
                2 => c.x25519[idx % 32] ^= flip,
                3 => c.nonce[idx % 32] ^= flip,
                4 => c.chain_id ^= u64::from(flip) << ((idx % 8) * 8),
                _ => c.escrow[idx % 20] ^= flip,
            }
            prop_assert_ne!(report_data(&b), report_data(&c));
        }

        #[test]
        fn moving_bytes_between_peer_id_and_operator_changes_report_data(
            b in arb_binding(),
        ) {
            // A longer peer id that swallows the operator's first byte must not collide.
            let mut c = b.clone();
            c.peer_id.push(b.operator[0]);
            prop_assert_ne!(b.canonical_bytes(), c.canonical_bytes());
            prop_assert_ne!(report_data(&b), report_data(&c));
        }
    }

    #[test]
    fn encoding_is_fixed_layout() {
        let b = Binding {
            peer_id: vec![0xAA, 0xBB],
            operator: [1; 20],
            x25519: [2; 32],
            nonce: [3; 32],
            chain_id: 0x0102,
            escrow: [4; 20],
        };
        let e = b.canonical_bytes();
        assert_eq!(e.len(), 4 + 2 + 20 + 32 + 32 + 8 + 20);
        assert_eq!(&e[..6], &[0, 0, 0, 2, 0xAA, 0xBB]);
        assert_eq!(
            &e[6 + 20 + 32 + 32..6 + 20 + 32 + 32 + 8],
            &[0, 0, 0, 0, 0, 0, 1, 2]
        );
    }
}
