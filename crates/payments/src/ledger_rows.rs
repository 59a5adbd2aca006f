//! The values the ledger hands out: reservations, channel rows, totals, charges, and the
//! claim rule settlement uses. Kept apart from the SQLite code in `ledger.rs`.

use khachapuri_chain::{Address, SignedVoucher, U256};

use crate::pricing::{base_to_micro, micro_to_base_ceil};

/// Permission to run one call: `amount` micro-units are held against the channel until
/// [`Ledger::settle_reservation`] charges the actual cost and releases the rest. Not
/// `Clone`: it is settled exactly once.
#[derive(Debug, PartialEq, Eq)]
pub struct Reservation {
    pub(super) payer: Address,
    pub(super) epoch: u64,
    pub(super) amount: U256,
}

impl Reservation {
    /// Who pays.
    pub fn payer(&self) -> Address {
        self.payer
    }
    /// Channel epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
    /// Micro-units held (the call's maximum cost).
    pub fn amount(&self) -> U256 {
        self.amount
    }
}

/// One channel as the ledger sees it (for 402 bodies, receipts and `provider status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRow {
    /// The best voucher seen.
    pub best: SignedVoucher,
    /// Micro-units charged so far.
    pub consumed: U256,
    /// Micro-units held by calls in flight.
    pub reserved: U256,
    /// Base units settlement confirmed on chain.
    pub redeemed: U256,
    /// Whether the channel's epoch is over (nothing more can be redeemed).
    pub closed: bool,
}

impl ChannelRow {
    /// Micro-units the payer has authorized (best voucher amount).
    pub fn authorized_micro(&self) -> U256 {
        base_to_micro(self.best.voucher.amount)
    }
    /// Micro-units still available for new calls.
    pub fn available(&self) -> U256 {
        self.authorized_micro()
            .saturating_sub(self.consumed)
            .saturating_sub(self.reserved)
    }
}

/// Totals for `provider status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerStatus {
    /// Micro-units charged for calls served.
    pub earned_micro: U256,
    /// `earned_micro` in base units, rounded up.
    pub earned: U256,
    /// Sum of the best vouchers (base units): what payers authorized.
    pub authorized: U256,
    /// Base units settlement confirmed on chain.
    pub redeemed: U256,
    /// Base units settlement can still claim on open channels: what calls consumed
    /// (rounded up to a base unit, capped by the best voucher) minus what was redeemed.
    /// The unconsumed prepaid part of a voucher is not pending: it is never claimed.
    pub pending: U256,
}

/// What a settled call cost (for the `Khachapuri-Receipt` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// Micro-units charged for this call.
    pub cost: U256,
    /// Micro-units consumed in the channel after this call.
    pub consumed: U256,
    /// Micro-units authorized by the best voucher.
    pub authorized: U256,
}

/// The claim for a channel whose calls consumed `consumed_micro`: rounded up to a whole base
/// unit (the chain moves no less), never above what the best voucher allows.
pub fn claimable(best: &SignedVoucher, consumed_micro: U256) -> U256 {
    micro_to_base_ceil(consumed_micro).min(best.voucher.amount)
}
