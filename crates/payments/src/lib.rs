//! Khachapuri's paid calls, provider side, caller side (the `Payer`) and wire side: the `Khachapuri-Payment` header
//! codec, pricing in micro base units, the durable voucher ledger (embedded SQLite), voucher
//! checks against the chain, and batched on-chain settlement.
//!
//! The provider's admission layer plugs these together: decode the header, verify the
//! voucher against the (cached) channel, record it durably, reserve the call's maximum cost,
//! run the call, charge the actual cost; a settler redeems the best vouchers in batches.

pub mod client;
pub mod error;
pub mod gate;
pub mod group_commit;
pub mod ledger;
pub mod limit;
pub mod payer_store;
pub mod paying;
pub mod payment;
pub mod pricing;
pub mod receipt;
pub mod settle;
pub mod sponsor;
pub mod verify;

pub use client::{ChannelRecord, Decision, PayPolicy, Payer, Payment, PaymentRequired};
pub use error::{PaymentError, Result};
pub use gate::Gate;
pub use group_commit::VoucherWriter;
pub use ledger::{ChannelRow, Charge, Ledger, LedgerStatus, Reservation};
pub use limit::{ClientKey, SignatureCheckLimiter, SignatureLimits};
pub use payer_store::{sign_sponsor_voucher, ChannelKey, PayerStore, StoreLock};
pub use paying::{Paid, PaidRequest, PayEvent, PayerWallet, PayingClient, PayingConfig};
pub use payment::{decode_payment, encode_payment, PAYMENT_HEADER, RECEIPT_HEADER};
pub use pricing::{base_to_micro, micro_to_base_ceil, Pricing, Usage, MICRO_PER_BASE};
pub use receipt::{check_request_id, Receipt, ReceiptProof, SIGN_RECEIPT_HEADER};
pub use settle::{classify_event, Backoff, EventAction, SettlePolicy, SettleReport, Settler};
pub use sponsor::{top_up_increase, Budget, BudgetHold, BudgetKey, Grant, SponsorBudgets};
pub use verify::{ChannelCache, VoucherVerifier, DEFAULT_MAX_CACHED_CHANNELS};
