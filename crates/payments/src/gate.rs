//! The paid-call gate the provider's admission slot wraps: header → verified, durably
//! recorded voucher → reservation of the call's maximum cost; after the call, the actual
//! charge and the `Khachapuri-Receipt`; and the JSON body of a `402 Payment Required`.

use std::sync::Arc;
use std::time::Duration;

use khachapuri_chain::{Address, ChannelState, EscrowClient, SignedVoucher, U256};

use crate::error::{PaymentError, Result};
use crate::ledger::{Charge, Ledger, Reservation};
use crate::payment::decode_payment;
use crate::pricing::{Pricing, Usage};
use crate::verify::{ChannelCache, VoucherVerifier};

/// Voucher checks, channel cache, ledger and pricing of one provider, together.
#[derive(Debug)]
pub struct Gate {
    verifier: VoucherVerifier,
    cache: ChannelCache,
    ledger: Arc<Ledger>,
    escrow: EscrowClient,
    pricing: Pricing,
}

/// The `Khachapuri-Receipt` header: what the call cost and where the channel stands, in
/// micro-units, so a client can re-sign before its prepaid part runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// This call's cost.
    pub cost: U256,
    /// Consumed in the channel so far, this call included.
    pub consumed: U256,
    /// Authorized by the best voucher.
    pub authorized: U256,
}

impl From<Charge> for Receipt {
    fn from(c: Charge) -> Self {
        Self {
            cost: c.cost,
            consumed: c.consumed,
            authorized: c.authorized,
        }
    }
}

impl Receipt {
    /// Header value: `cost=…; consumed=…; authorized=…` (decimal micro-units).
    pub fn encode(&self) -> String {
        format!(
            "cost={}; consumed={}; authorized={}",
            self.cost, self.consumed, self.authorized
        )
    }

    /// Parses a header value (unknown keys are ignored, missing ones are an error).
    pub fn parse(value: &str) -> Result<Self> {
        let (mut cost, mut consumed, mut authorized) = (None, None, None);
        for part in value.split(';') {
            let Some((k, v)) = part.trim().split_once('=') else {
                continue;
            };
            let n = U256::from_str_radix(v.trim(), 10)
                .map_err(|e| PaymentError::MalformedHeader(format!("receipt {k}: {e}")))?;
            match k.trim() {
                "cost" => cost = Some(n),
                "consumed" => consumed = Some(n),
                "authorized" => authorized = Some(n),
                _ => {}
            }
        }
        match (cost, consumed, authorized) {
            (Some(cost), Some(consumed), Some(authorized)) => Ok(Self {
                cost,
                consumed,
                authorized,
            }),
            _ => Err(PaymentError::MalformedHeader(format!(
                "receipt {value:?} lacks cost, consumed or authorized"
            ))),
        }
    }
}

impl Gate {
    /// A gate for the provider `provider` of `escrow` (a read-only client is enough),
    /// caching channel state for `cache_ttl`.
    pub fn new(
        ledger: Arc<Ledger>,
        escrow: EscrowClient,
        provider: Address,
        pricing: Pricing,
        cache_ttl: Duration,
    ) -> Self {
        Self {
            verifier: VoucherVerifier {
                chain_id: escrow.chain().chain_id(),
                escrow: escrow.address(),
                provider,
            },
            cache: ChannelCache::new(cache_ttl),
            ledger,
            escrow,
            pricing,
        }
    }

    /// The price list.
    pub fn pricing(&self) -> &Pricing {
        &self.pricing
    }

    /// The channel cache (event watchers and settlement invalidate it).
    pub fn cache(&self) -> &ChannelCache {
        &self.cache
    }

    /// The ledger.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    async fn channel_state(&self, payer: Address, fresh: bool) -> Result<ChannelState> {
        let fetch = || self.escrow.channel(payer, self.verifier.provider);
        if fresh {
            self.cache.get_fresh(payer, fetch).await
        } else {
            self.cache.get(payer, fetch).await
        }
    }

    /// Admits a call whose maximum cost is `max_cost` micro-units, paid by the voucher in
    /// the `Khachapuri-Payment` header value. The voucher is verified (its signature only
    /// when it is not the best one already recorded), made durable, and `max_cost` is
    /// reserved. `PaymentRequired`/`InsufficientCredit` become 402 with
    /// [`Gate::payment_required_body`].
    pub async fn admit(&self, header: Option<&str>, max_cost: U256) -> Result<Reservation> {
        let header = header.ok_or(PaymentError::PaymentRequired)?;
        let voucher = decode_payment(header)?;
        let (payer, epoch) = (voucher.voucher.payer, voucher.voucher.epoch);
        // Prepaid call on the best voucher already in memory: no blocking hop, no signature
        // check, no RPC; a cached unlock or newer epoch still stops it.
        let cached_check = || match self.cache.cached(payer) {
            Some(state) => self.verifier.check_channel(&voucher, &state),
            None => Ok(()),
        };
        if let Some(admitted) = self
            .ledger
            .try_consume_known(&voucher, max_cost, cached_check)
        {
            return admitted;
        }
        let known = self
            .ledger
            .run_blocking(move |l| l.channel(payer, epoch))
            .await?
            .is_some_and(|row| row.best.signature == voucher.signature && row.best == voucher);
        if known {
            // Prepaid call: no signature check and no RPC; a cached unlock or newer epoch
            // (the event watcher refreshes the cache) still stops it.
            if let Some(state) = self.cache.cached(payer) {
                self.verifier.check_channel(&voucher, &state)?;
            }
        } else {
            self.verifier.check_signature(&voucher)?;
            let state = self.channel_state(payer, false).await?;
            if let Err(e) = self.verifier.check_channel(&voucher, &state) {
                // The cached state may predate a fund or a new epoch: ask the chain once.
                if !matches!(
                    e,
                    PaymentError::AboveFunds { .. } | PaymentError::WrongEpoch { .. }
                ) {
                    return Err(e);
                }
                let state = self.channel_state(payer, true).await?;
                self.verifier.check_channel(&voucher, &state)?;
            }
        }
        if !known {
            // Durable before the call runs; cancelling here holds no credit.
            self.ledger
                .run_blocking(move |l| l.record_voucher(&voucher).map(drop))
                .await?;
        }
        // The blocking steps above loaded the row: reserve inline, with no `.await` between
        // taking the hold and returning it (a dropped request cannot leak it).
        if let Some(admitted) = self.ledger.try_consume_cached(payer, epoch, max_cost) {
            return admitted;
        }
        self.ledger
            .run_blocking(move |l| l.try_consume(payer, epoch, max_cost))
            .await
    }

    /// Charges what the call used and releases the rest of its reservation.
    pub async fn charge(&self, reservation: Reservation, usage: Usage) -> Result<Receipt> {
        let cost = self.pricing.cost(usage);
        // Usual case: booked in memory, written by the next flush (see the ledger).
        if let Some(charge) = self.ledger.settle_reservation_cached(&reservation, cost) {
            return Ok(charge.into());
        }
        let charge = self
            .ledger
            .run_blocking(move |l| l.settle_reservation(reservation, cost))
            .await?;
        Ok(charge.into())
    }

    /// The JSON body of a 402: price of the call, where to pay, and (when the payer is
    /// known) the channel's epoch and what was consumed and authorized.
    pub async fn payment_required_body(
        &self,
        payer: Option<Address>,
        max_cost: U256,
    ) -> serde_json::Value {
        let mut body = serde_json::json!({
            "error": "payment required",
            "price": max_cost.to_string(),
            "price_unit": "micro base units (1e-6 of a token base unit)",
            "pricing": {
                "per_request": self.pricing.per_request.to_string(),
                "per_ms": self.pricing.per_ms.to_string(),
                "per_mb_out": self.pricing.per_mb_out.to_string(),
            },
            "provider": self.verifier.provider.to_string(),
            "escrow": self.verifier.escrow.to_string(),
            "chain_id": self.verifier.chain_id,
        });
        if let Some(payer) = payer {
            if let Ok(state) = self.channel_state(payer, false).await {
                let epoch = state.epoch;
                body["epoch"] = epoch.into();
                body["funds"] = state.funds.to_string().into();
                if let Ok(Some(row)) = self
                    .ledger
                    .run_blocking(move |l| l.channel(payer, epoch))
                    .await
                {
                    body["consumed"] = row.consumed.to_string().into();
                    body["authorized"] = row.authorized_micro().to_string().into();
                } else {
                    body["consumed"] = "0".into();
                    body["authorized"] = "0".into();
                }
            }
        }
        body
    }

    /// The payer named in a header value, if it decodes (for a 402 body after a refusal).
    pub fn payer_of(header: Option<&str>) -> Option<Address> {
        header
            .and_then(|h| decode_payment(h).ok())
            .map(|v: SignedVoucher| v.voucher.payer)
    }
}
