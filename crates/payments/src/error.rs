//! The one error type of the payments crate.

use khachapuri_chain::{Address, ChainError, U256};

/// Everything that can go wrong with a payment. The provider maps the voucher variants to
/// 4xx answers (the caller's fault) and the rest to 5xx (ours or the chain's).
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// The call costs money and carries no `Khachapuri-Payment` header.
    #[error("payment required: send a voucher in the Khachapuri-Payment header")]
    PaymentRequired,
    /// The `Khachapuri-Payment` header is not base64url of the expected JSON.
    #[error("malformed Khachapuri-Payment header: {0}")]
    MalformedHeader(String),
    /// The signature is malformed, or recovers to someone other than the payer (which is
    /// also what a voucher signed for another chain or escrow looks like).
    #[error("bad voucher signature: {0}")]
    BadSignature(String),
    /// A `Khachapuri-Receipt` that should be signed is not, or its signature is not the
    /// provider's over what it says (forged or altered).
    #[error("the provider's receipt does not verify: {0}")]
    BadReceipt(String),
    /// The paying client cannot reach the provider.
    #[error("{0}")]
    Http(String),
    /// The wallet cannot give its address or key (no wallet, wrong password).
    #[error("{0}")]
    Wallet(String),
    /// The node has no operator key to sign receipts with.
    #[error("this node holds no operator key to sign receipts with")]
    CannotSign,
    /// The voucher is for another provider.
    #[error("voucher is for provider {got}, not this provider {expected}")]
    WrongProvider {
        /// This provider.
        expected: Address,
        /// What the voucher names.
        got: Address,
    },
    /// The voucher's epoch is not the channel's current epoch.
    #[error("voucher epoch {voucher} does not match the channel epoch {channel}")]
    WrongEpoch {
        /// Epoch in the voucher.
        voucher: u64,
        /// Epoch of the channel on chain.
        channel: u64,
    },
    /// The voucher authorizes more than the channel was ever funded with.
    #[error("voucher amount {amount} is above the channel's funds {funds}")]
    AboveFunds {
        /// Voucher amount (base units).
        amount: U256,
        /// Channel funds (base units).
        funds: U256,
    },
    /// The channel is being closed (`requestUnlock`): no new credit is accepted.
    #[error("the channel is being unlocked (unlock at {unlock_at}); fund a new epoch")]
    ChannelUnlocking {
        /// When the unlock matures (unix seconds).
        unlock_at: u64,
    },
    /// The payer's vouchers do not cover this call's maximum cost.
    #[error("insufficient credit: need {needed} micro-units, available {available}")]
    InsufficientCredit {
        /// Maximum cost of the call (micro-units).
        needed: U256,
        /// Authorized minus consumed minus reserved (micro-units).
        available: U256,
    },
    /// This client caused more signature checks (vouchers the node did not know yet, or
    /// top-ups) than its per-client limit allows; prepaid calls re-sending a known voucher
    /// are not limited.
    #[error("too many new vouchers from {client}: at most {per_sec} signature checks a second; retry in {retry_after_secs} s, or re-send a voucher this provider already accepted")]
    TooManySignatureChecks {
        /// The client's bucket (IPv4 address or IPv6 /64).
        client: String,
        /// The sustained rate allowed.
        per_sec: f64,
        /// Seconds until the next check is allowed.
        retry_after_secs: u64,
    },
    /// The ledger database failed.
    #[error("ledger: {0}")]
    Ledger(#[from] rusqlite::Error),
    /// The ledger holds something it cannot parse (corruption or a newer schema).
    #[error("ledger data is corrupt: {0}")]
    Corrupt(String),
    /// A chain call failed (after retries, for settlement).
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// A blocking task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(String),
    // --- Caller side (the `Payer`): these never become a provider's answer. ---
    /// The provider asks more for one call than the caller's `max_price` allows.
    #[error("the call costs up to {price} micro-units, above the maximum price {max}")]
    PriceTooHigh {
        /// The provider's price (micro-units).
        price: U256,
        /// The caller's cap (micro-units).
        max: U256,
    },
    /// The caller's channel to the provider cannot cover the call: it must be funded.
    #[error("the channel to {provider} holds {funds} base units; paying this call needs {needed}")]
    ChannelShort {
        /// The provider the channel pays.
        provider: Address,
        /// Base units the voucher must reach (consumed + the call + the prepaid part).
        needed: U256,
        /// Base units funded in the channel's epoch.
        funds: U256,
    },
    /// A 402 names a chain or escrow other than the wallet's network: never sign for it.
    #[error("the provider wants payment on chain {chain_id} escrow {escrow}, but this wallet's network is chain {expected_chain_id} escrow {expected_escrow}")]
    UnknownEscrow {
        /// Chain id in the 402 body.
        chain_id: u64,
        /// Escrow in the 402 body.
        escrow: Address,
        /// The wallet's chain id.
        expected_chain_id: u64,
        /// The wallet's escrow.
        expected_escrow: Address,
    },
    /// A 402 body that is not the JSON the provider should send.
    #[error("malformed 402 body: {0}")]
    MalformedPaymentRequired(String),
    /// The caller's voucher state file cannot be read or written.
    #[error("voucher state {path}: {reason}")]
    State {
        /// The state file.
        path: String,
        /// What failed.
        reason: String,
    },
}

impl PaymentError {
    /// Whether more money would make the call go through (no voucher, not enough credit,
    /// a voucher above the channel's funds): the provider answers these with a quote.
    pub fn wants_payment(&self) -> bool {
        matches!(
            self,
            Self::PaymentRequired | Self::InsufficientCredit { .. } | Self::AboveFunds { .. }
        )
    }
}

/// Result alias for the payments crate.
pub type Result<T, E = PaymentError> = std::result::Result<T, E>;
