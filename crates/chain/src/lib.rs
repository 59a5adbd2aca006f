//! Khachapuri's chain layer: typed clients for the `Escrow`, `Registry` and `MockUSDC`
//! contracts, EIP-712 vouchers, event polling, deployment and keystores. (A local anvil and the
//! public dev keys live in `khachapuri-devnet`.)
//!
//! Everything that talks to an Ethereum node goes through this crate so the rest of the
//! workspace never depends on alloy's moving API directly.

pub mod amount;
pub mod bindings;
pub mod client;
pub mod deploy;
pub mod error;
pub mod escrow;
pub mod events;
pub mod receipt;
pub mod registry;
pub mod spec_sig;
pub mod token;
pub mod voucher;
pub mod wallet;

pub use alloy::primitives::utils::format_units as alloy_format_units;
pub use alloy::primitives::{hex as alloy_hex, Address, B256, U256};
pub use alloy::signers::local::PrivateKeySigner;
pub use amount::{
    format_fixed, format_micro_usdc, format_usdc, parse_fixed, parse_micro_usdc, parse_usdc,
    MICRO_USDC_DECIMALS, USDC_DECIMALS,
};
pub use client::Chain;
pub use deploy::{deploy_all, mint_to, DeployOptions, Deployment};
pub use error::{ChainError, Result};
pub use escrow::{ChannelState, Claim, EscrowClient};
pub use events::{watch, ChainEvent, EscrowEvent, EventPoller, RegistryEvent, DEFAULT_MAX_RANGE};
pub use receipt::{call_hash, ReceiptClaim};
pub use registry::{
    consent_domain, node_of, Consent, OperatorConsent, PricingTable, ProviderRecord, Registration,
    RegistryClient,
};
pub use spec_sig::{sign_spec, verify_spec};
pub use token::Token;
pub use voucher::{voucher_domain, SignedVoucher, Voucher};
