//! The paid-call gate the provider's admission slot wraps: header → verified, durably
//! recorded voucher → reservation of the call's maximum cost; after the call, the actual
//! charge and the `Khachapuri-Receipt`; and the JSON body of a `402 Payment Required`.

use std::sync::Arc;
use std::time::Duration;

use khachapuri_chain::{
    call_hash, Address, ChannelState, EscrowClient, ReceiptClaim, SignedVoucher, U256,
};

use crate::error::{PaymentError, Result};
use crate::group_commit::VoucherWriter;
use crate::ledger::{Ledger, Reservation};
use crate::limit::{ClientKey, SignatureCheckLimiter, SignatureLimits};
use crate::payment::decode_payment;
use crate::pricing::{Pricing, Usage};
use crate::receipt::{check_request_id, Receipt, ReceiptProof};
use crate::verify::{ChannelCache, VoucherVerifier};

/// Voucher checks, channel cache, ledger and pricing of one provider, together.
#[derive(Debug)]
pub struct Gate {
    verifier: VoucherVerifier,
    cache: ChannelCache,
    ledger: Arc<Ledger>,
    /// Group commit of fresh vouchers (one fsync for all that arrive together).
    writer: VoucherWriter,
    escrow: EscrowClient,
    pricing: Pricing,
    /// Per-client limit on requests that cost a signature check (none: unlimited).
    limiter: Option<SignatureCheckLimiter>,
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
            writer: VoucherWriter::start(ledger.clone()),
            ledger,
            escrow,
            pricing,
            limiter: None,
        }
    }

    /// Limits, per client, the requests that cost a signature check (see
    /// [`crate::limit`]): [`Gate::admit_from`] with a voucher the ledger does not know,
    /// and whatever [`Gate::count_signature_check`] is called for.
    pub fn with_signature_limit(mut self, limits: SignatureLimits) -> Self {
        self.limiter = Some(SignatureCheckLimiter::new(limits));
        self
    }

    /// The per-client signature-check limiter, when one is set (its counters feed
    /// `/metrics`).
    pub fn signature_limiter(&self) -> Option<&SignatureCheckLimiter> {
        self.limiter.as_ref()
    }

    /// Counts one signature check against `client` (a top-up, which always verifies or
    /// records something); [`PaymentError::TooManySignatureChecks`] past its limit. An
    /// unknown client (`None`: an in-process caller) or a gate without a limit passes.
    pub fn count_signature_check(&self, client: Option<ClientKey>) -> Result<()> {
        match (&self.limiter, client) {
            (Some(limiter), Some(client)) => limiter.check(client),
            _ => Ok(()),
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
        self.admit_from(None, header, max_cost).await
    }

    /// [`Gate::admit`] for a request from `client`: a voucher that needs its signature
    /// checked (not the best one the ledger knows) first counts against the client's
    /// limit; a prepaid call re-sending a known voucher never does.
    pub async fn admit_from(
        &self,
        client: Option<ClientKey>,
        header: Option<&str>,
        max_cost: U256,
    ) -> Result<Reservation> {
        let header = header.ok_or(PaymentError::PaymentRequired)?;
        let voucher = decode_payment(header)?;
        let (payer, epoch) = (voucher.voucher.payer, voucher.voucher.epoch);
        // Prepaid call on the best voucher already in memory, with the channel state fresh
        // in the cache: no blocking hop, no signature check, no RPC; a cached unlock or
        // newer epoch still stops it. Without fresh state (expired, or never read since a
        // restart) the slow path reads the chain first.
        if let Some(state) = self.cache.cached(payer) {
            let check = || self.verifier.check_channel(&voucher, &state);
            if let Some(admitted) = self.ledger.try_consume_known(&voucher, max_cost, check) {
                return admitted;
            }
        }
        let known = self
            .ledger
            .run_blocking(move |l| l.channel(payer, epoch))
            .await?
            .is_some_and(|row| row.best.signature == voucher.signature && row.best == voucher);
        if known {
            // Prepaid call: no signature check. The channel is checked against the cache,
            // or read from chain when the cache has nothing (after a restart): a voucher of
            // an epoch that ended while the node was down must not pay.
            let state = self.channel_state(payer, false).await?;
            self.verifier.check_channel(&voucher, &state)?;
        } else {
            // The expensive step a stranger can cause for free: limited per client.
            self.count_signature_check(client)?;
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
            self.writer.record(voucher).await?;
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

    /// [`Gate::charge`], then signs the receipt with the operator key for the caller that
    /// asked (`request_id` from its `Khachapuri-Sign-Receipt` header): evidence of what this
    /// provider charged the channel so far. Needs the escrow client to carry the operator's
    /// signer ([`PaymentError::CannotSign`] otherwise).
    pub async fn charge_signed(
        &self,
        reservation: Reservation,
        usage: Usage,
        request_id: &str,
    ) -> Result<Receipt> {
        check_request_id(request_id)?;
        // Known before charging, so a node that cannot sign books nothing.
        let signer = self
            .escrow
            .chain()
            .signer()
            .filter(|s| s.address() == self.verifier.provider)
            .ok_or(PaymentError::CannotSign)?;
        let (payer, epoch) = (reservation.payer(), reservation.epoch());
        let mut receipt = self.charge(reservation, usage).await?;
        let claim = ReceiptClaim {
            payer,
            provider: self.verifier.provider,
            epoch,
            consumed: receipt.consumed,
            call: call_hash(request_id, receipt.cost),
        };
        let signature = claim.sign(signer, self.verifier.chain_id, self.verifier.escrow)?;
        receipt.proof = Some(ReceiptProof::new(payer, epoch, claim.call, &signature)?);
        Ok(receipt)
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

    /// The payer of a header value whose voucher is signed by that payer for this provider
    /// (for a 402 body after a refusal). Anything else is nobody: a 402 never shows a
    /// channel's figures to someone who merely names its payer.
    pub fn verified_payer(&self, header: Option<&str>) -> Option<Address> {
        let voucher: SignedVoucher = decode_payment(header?).ok()?;
        self.verifier.check_signature(&voucher).ok()?;
        Some(voucher.voucher.payer)
    }
}
