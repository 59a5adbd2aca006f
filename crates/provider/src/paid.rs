//! The paid admission: every call is paid by a voucher (the caller's `Khachapuri-Payment`
//! header, or the sponsor's voucher riding in a `sponsored` spec), checked and made durable
//! by [`khachapuri_payments::Gate`] before the guest runs, charged at its actual cost after.
//!
//! A sponsored call is also held against its deployment's own budget
//! ([`khachapuri_payments::SponsorBudgets`]): the owner's voucher is cumulative for the whole
//! channel, the budget is what the owner signed for this deployment (`sponsor_budget` in
//! the spec) plus top-ups that name it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use khachapuri_chain::{Address, EscrowClient, SignedVoucher, U256};
use khachapuri_payments::{
    check_request_id, decode_payment, encode_payment, top_up_increase, Budget, BudgetHold,
    BudgetKey, ClientKey, Gate, Grant, Ledger, PaymentError, Pricing, SignatureLimits,
    SponsorBudgets, PAYMENT_HEADER, SIGN_RECEIPT_HEADER,
};
use khachapuri_runtime::ByteLru;
use khachapuri_types::{PayerPolicy, Spec};
use serde_json::json;

use crate::admission::{Admission, BoxFuture, CallInfo, SignatureLimitStats, Ticket, Usage};
use crate::payments_config::format_micro_usdc;
use crate::ProviderError;

/// Where the paid node takes its money: shown at `/.well-known/khachapuri` and in 402s.
#[derive(Debug, Clone, Copy)]
pub struct PaidTerms {
    /// Chain the escrow lives on.
    pub chain_id: u64,
    /// Escrow holding the payers' channels.
    pub escrow: Address,
    /// Registry the provider is listed in, if any.
    pub registry: Option<Address>,
    /// The operator address vouchers are made out to.
    pub provider: Address,
}

/// Admission that charges every call to a voucher.
#[derive(Debug)]
pub struct Paid {
    gate: Arc<Gate>,
    terms: PaidTerms,
    /// Latest epoch a sponsor topped up, so a sponsored spec whose voucher is from an older
    /// epoch is paid from the sponsor's newer channel. Bounded (each entry weighs 1, so
    /// the cap counts sponsors, `max_cached_channels`): a forgotten sponsor's epoch is
    /// read from the ledger again on its next call.
    sponsor_epochs: Mutex<ByteLru<Address, u64>>,
    /// Per-deployment budgets of sponsored specs.
    budgets: Arc<SponsorBudgets>,
    /// Top-ups one at a time, so "the increase over the previous best" is computed against
    /// a best no other top-up moves meanwhile.
    top_ups: tokio::sync::Mutex<()>,
}

/// Who pays a sponsored deployment and what its spec grants it.
struct SponsorTerms {
    deployment: [u8; 32],
    payer: Address,
    grant: Grant,
}

impl SponsorTerms {
    fn key(&self, epoch: u64) -> BudgetKey {
        BudgetKey {
            deployment: self.deployment,
            payer: self.payer,
            epoch,
        }
    }
}

fn hex32(b: &[u8; 32]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The budget terms of a sponsored spec: the owner-signed `sponsor_budget` (base units) in
/// the carried voucher's epoch, or for specs from before that field the carried voucher's
/// amount (what older CLIs signed for the deployment alone). Keyed by the spec hash.
fn sponsor_terms(spec: &Spec) -> Result<SponsorTerms, ProviderError> {
    let carried = spec.sponsor_voucher.as_deref().ok_or_else(|| {
        ProviderError::Spec("this sponsored deployment carries no sponsor voucher".into())
    })?;
    let voucher = decode_payment(carried)
        .map_err(|e| ProviderError::Spec(format!("the sponsor voucher is unusable: {e}")))?;
    let amount = match &spec.sponsor_budget {
        Some(b) => U256::from_str_radix(b, 10)
            .map_err(|e| ProviderError::Spec(format!("sponsor budget {b:?}: {e}")))?,
        None => voucher.voucher.amount,
    };
    Ok(SponsorTerms {
        deployment: spec.hash(),
        payer: voucher.voucher.payer,
        grant: Grant {
            epoch: voucher.voucher.epoch,
            amount,
        },
    })
}

/// A budget hold given back (as a zero charge) if dropped: an admission cancelled midway
/// must not keep credit held.
struct HoldGuard {
    budgets: Arc<SponsorBudgets>,
    hold: Option<BudgetHold>,
}

impl HoldGuard {
    fn take(mut self) -> Option<BudgetHold> {
        self.hold.take()
    }
}

impl Drop for HoldGuard {
    fn drop(&mut self) {
        if let Some(hold) = self.hold.take() {
            release_hold(&self.budgets, hold);
        }
    }
}

fn release_hold(budgets: &Arc<SponsorBudgets>, hold: BudgetHold) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("no runtime to release a budget hold on");
        return;
    };
    let budgets = budgets.clone();
    runtime.spawn(async move {
        if let Err(e) = budgets
            .run_blocking(move |b| b.settle(hold, U256::ZERO))
            .await
        {
            tracing::warn!(error = %e, "cannot release a budget hold");
        }
    });
}

impl Paid {
    /// A paid admission over `ledger` (and the sponsored deployments' `budgets`) for
    /// `terms.provider`, reading channels through `escrow` (cached for `cache_ttl`),
    /// pricing calls with `pricing` and limiting signature checks per client to `limits`.
    pub fn new(
        ledger: Arc<Ledger>,
        budgets: Arc<SponsorBudgets>,
        escrow: EscrowClient,
        terms: PaidTerms,
        pricing: Pricing,
        cache_ttl: Duration,
        limits: SignatureLimits,
    ) -> Self {
        let gate = Gate::new(ledger, escrow, terms.provider, pricing, cache_ttl)
            .with_signature_limit(limits);
        Self {
            gate: Arc::new(gate),
            terms,
            sponsor_epochs: Mutex::new(ByteLru::new(
                khachapuri_payments::DEFAULT_MAX_CACHED_CHANNELS as u64,
            )),
            budgets,
            top_ups: tokio::sync::Mutex::new(()),
        }
    }

    /// Bounds the per-payer state kept in memory (channel cache and sponsor epochs) to
    /// `max` payers each, least recently used out first.
    pub fn with_max_cached_channels(self, max: usize) -> Self {
        self.gate.cache().set_max_entries(max);
        *self
            .sponsor_epochs
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = ByteLru::new(max as u64);
        self
    }

    /// The sponsored deployments' budgets.
    pub fn budgets(&self) -> &Arc<SponsorBudgets> {
        &self.budgets
    }

    /// Holds `max_cost` against the deployment's budget in the channel epoch of `header`.
    async fn hold_budget(
        &self,
        terms: &SponsorTerms,
        header: &str,
        max_cost: U256,
    ) -> Result<HoldGuard, PaymentError> {
        let key = terms.key(decode_payment(header)?.voucher.epoch);
        let grant = terms.grant;
        let budgets = self.budgets.clone();
        // Guarded inside the blocking task: if this admission is dropped while it runs,
        // the task's output (the guard) is dropped and gives the hold back.
        self.budgets
            .run_blocking(move |b| {
                let hold = b.reserve(key, grant, max_cost)?;
                Ok(HoldGuard {
                    budgets,
                    hold: Some(hold),
                })
            })
            .await
    }

    /// The gate (the settlement service invalidates its channel cache on escrow events).
    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// The payment terms.
    pub fn terms(&self) -> PaidTerms {
        self.terms
    }

    /// The voucher paying a sponsored call: the sponsor's best recorded voucher (top-ups
    /// count, and a known voucher skips the signature check), else the spec's own.
    async fn sponsor_header(&self, spec: &Spec) -> Result<String, ProviderError> {
        let carried = spec.sponsor_voucher.as_deref().ok_or_else(|| {
            ProviderError::Spec("this sponsored deployment carries no sponsor voucher".into())
        })?;
        let voucher = decode_payment(carried)
            .map_err(|e| ProviderError::Spec(format!("the sponsor voucher is unusable: {e}")))?;
        let payer = voucher.voucher.payer;
        if let Some(owner) = &spec.owner {
            let owner: Address = owner
                .parse()
                .map_err(|_| ProviderError::Spec(format!("owner {owner:?} is not an address")))?;
            if owner != payer {
                return Err(ProviderError::Spec(format!(
                    "the sponsor voucher is signed for payer {payer}, not the owner {owner}"
                )));
            }
        }
        let remembered = self
            .sponsor_epochs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&payer)
            .copied();
        let topped = match remembered {
            Some(e) => e,
            // First sponsored call since start: top-ups for a newer epoch are in the ledger.
            None => {
                let latest = self
                    .gate
                    .ledger()
                    .run_blocking(move |l| l.latest_open_epoch(payer))
                    .await?;
                let mut epochs = self
                    .sponsor_epochs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                let e = epochs
                    .get(&payer)
                    .copied()
                    .unwrap_or(0)
                    .max(latest.unwrap_or(0));
                epochs.insert(payer, e, 1);
                e
            }
        };
        let epoch = topped.max(voucher.voucher.epoch);
        let row = self
            .gate
            .ledger()
            .run_blocking(move |l| l.channel(payer, epoch))
            .await?;
        Ok(match row {
            Some(row)
                if row.best.voucher.epoch > voucher.voucher.epoch
                    || row.best.voucher.amount >= voucher.voucher.amount =>
            {
                encode_payment(&row.best)
            }
            _ => carried.to_string(),
        })
    }

    async fn admit_call(&self, call: CallInfo<'_>) -> Result<Ticket, ProviderError> {
        let max_cost = self
            .gate
            .pricing()
            .max_cost(call.limits.timeout_ms, call.limits.max_response_bytes);
        let sponsored = call.spec.payer == PayerPolicy::Sponsored;
        let terms = if sponsored {
            Some(sponsor_terms(call.spec)?)
        } else {
            None
        };
        let header = if sponsored {
            Some(self.sponsor_header(call.spec).await?)
        } else {
            match call.headers.get(PAYMENT_HEADER) {
                None => None,
                Some(v) => Some(
                    v.to_str()
                        .map_err(|_| {
                            PaymentError::MalformedHeader("the value is not ASCII".into())
                        })?
                        .to_string(),
                ),
            }
        };
        // Checked before any payment work: a malformed id is the caller's 400. Sponsored
        // calls are not the caller's channel: their receipts are never signed for it.
        let receipt_id = match call.headers.get(SIGN_RECEIPT_HEADER) {
            _ if terms.is_some() => None,
            None => None,
            Some(v) => {
                let id = v.to_str().unwrap_or_default();
                check_request_id(id)?;
                Some(id.to_string())
            }
        };
        // The deployment's budget first: a call its budget cannot pay never holds channel
        // credit the owner's other calls may need.
        let mut budget = None;
        let mut spent = None;
        if let (Some(terms), Some(h)) = (&terms, &header) {
            match self.hold_budget(terms, h, max_cost).await {
                Ok(g) => budget = Some(g),
                Err(e @ PaymentError::InsufficientCredit { .. }) => {
                    let key = terms.key(decode_payment(h)?.voucher.epoch);
                    let grant = terms.grant;
                    spent = Some((
                        e,
                        self.budgets
                            .run_blocking(move |b| b.budget(key, grant))
                            .await?,
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let (admitted, spent) = match spent {
            Some((e, b)) => (Err(e), Some(b)),
            None => {
                let client = call.client.map(ClientKey::from_ip);
                let admitted = self.gate.admit_from(client, header.as_deref(), max_cost);
                (admitted.await, None)
            }
        };
        match admitted {
            Ok(reservation) => Ok(Ticket {
                payer: Some(reservation.payer().to_string()),
                reservation: Some(reservation),
                budget: budget.and_then(HoldGuard::take),
                receipt_id,
            }),
            Err(error) if error.wants_payment() => {
                let payer = self.gate.verified_payer(header.as_deref());
                let mut body = self.gate.payment_required_body(payer, max_cost).await;
                body["price_usdc"] = json!(khachapuri_chain::format_micro_usdc(max_cost));
                // Unknown payer (no voucher): nothing consumed or authorized yet.
                if body.get("authorized").is_none() {
                    body["epoch"] = serde_json::Value::Null;
                    body["consumed"] = json!("0");
                    body["authorized"] = json!("0");
                }
                if sponsored {
                    body["sponsored"] = json!(true);
                    body["note"] = json!(
                        "this deployment is paid by its owner and the budget is spent: the owner can top it up with POST /.well-known/khachapuri/voucher?deployment=<this CID>"
                    );
                    if let Some(b) = spent {
                        // The deployment's figures, not the owner's whole channel's.
                        body["consumed"] = json!(b.consumed.to_string());
                        body["authorized"] = json!(b.authorized.to_string());
                        body["budget"] = budget_json(&b);
                        if let Some(o) = body.as_object_mut() {
                            o.remove("funds");
                        }
                    }
                }
                Err(ProviderError::Payment {
                    error,
                    body: Some(body),
                })
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn charge_call(
        &self,
        ticket: Ticket,
        usage: Usage,
    ) -> Result<Option<String>, ProviderError> {
        let Some(reservation) = ticket.reservation else {
            return Ok(None);
        };
        let usage = khachapuri_payments::Usage {
            millis: usage.millis,
            bytes_out: usage.bytes_out,
        };
        let charged = match &ticket.receipt_id {
            Some(id) => self.gate.charge_signed(reservation, usage, id).await,
            None => self.gate.charge(reservation, usage).await,
        };
        let sponsored = ticket.budget.is_some();
        if let Some(hold) = ticket.budget {
            // What the channel was charged is what the deployment's budget is charged
            // (a failed charge books nothing on either).
            let cost = charged.as_ref().map_or(U256::ZERO, |r| r.cost);
            let booked = self
                .budgets
                .run_blocking(move |b| b.settle(hold, cost))
                .await;
            if let Err(e) = booked {
                tracing::warn!(error = %e, "cannot book a sponsored call on its budget");
            }
        }
        let mut receipt = charged?;
        // A sponsored call's receipt describes the sponsor's channel, not the caller's: it
        // says so, so a caller that sent a voucher ahead does not book it as its own.
        receipt.sponsored = sponsored;
        Ok(Some(receipt.encode()))
    }

    /// Records a top-up voucher; when it names a sponsored `deployment` (of the voucher's
    /// payer), credits that deployment's budget with the increase over the channel's
    /// previous best voucher. Unnamed top-ups raise the channel only: the owner's paid
    /// calls can use them, no sponsored deployment can.
    ///
    /// Trade-off: the name is not part of the signed voucher (the EIP-712 type is the
    /// escrow's), so whoever first posts a voucher chooses which of the owner's sponsored
    /// deployments its increase goes to, and replays add nothing. That needs the voucher
    /// itself (sent only to this provider) and can only move credit between the owner's
    /// own deployments on this channel, never raise the total beyond what the owner
    /// signed. Top-ups are serialized; a paid call carrying a higher voucher of the same
    /// channel at the same instant can still make one increase count for both.
    async fn top_up_voucher(
        &self,
        body: &[u8],
        deployment: Option<&Spec>,
    ) -> Result<serde_json::Value, ProviderError> {
        let text = std::str::from_utf8(body)
            .map_err(|_| PaymentError::MalformedHeader("the body is not UTF-8".into()))?
            .trim();
        let header = if text.starts_with('{') {
            let v: SignedVoucher = serde_json::from_str(text).map_err(|e| {
                PaymentError::MalformedHeader(format!(
                    "not the JSON {{payer, provider, epoch, amount, signature}}: {e}"
                ))
            })?;
            encode_payment(&v)
        } else {
            text.to_string()
        };
        let terms = match deployment {
            None => None,
            Some(spec) => {
                if spec.payer != PayerPolicy::Sponsored {
                    return Err(ProviderError::Spec(
                        "that deployment is not sponsored: its callers pay for themselves".into(),
                    ));
                }
                let terms = sponsor_terms(spec)?;
                let submitted = decode_payment(&header)?;
                if submitted.voucher.payer != terms.payer {
                    return Err(ProviderError::Forbidden(format!(
                        "that deployment is sponsored by {}, not by {}",
                        terms.payer, submitted.voucher.payer
                    )));
                }
                Some((terms, submitted))
            }
        };
        let _one_at_a_time = self.top_ups.lock().await;
        let before = match &terms {
            Some((_, v)) => {
                let (payer, epoch) = (v.voucher.payer, v.voucher.epoch);
                self.gate
                    .ledger()
                    .run_blocking(move |l| l.channel(payer, epoch))
                    .await?
                    .map(|row| row.best.voucher.amount)
            }
            None => None,
        };
        // Verifies (signature, provider, chain, escrow, epoch, funds) and records durably;
        // reserving nothing then releasing it leaves the channel as it was.
        let reservation = self.gate.admit(Some(&header), U256::ZERO).await?;
        let (payer, epoch) = (reservation.payer(), reservation.epoch());
        let row = self
            .gate
            .ledger()
            .run_blocking(move |l| {
                l.settle_reservation(reservation, U256::ZERO)?;
                l.channel(payer, epoch)
            })
            .await?
            .ok_or_else(|| ProviderError::Internal("a recorded voucher vanished".into()))?;
        {
            let mut epochs = self
                .sponsor_epochs
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let e = epochs.get(&payer).copied().unwrap_or(epoch).max(epoch);
            epochs.insert(payer, e, 1);
        }
        let credited = match terms {
            None => None,
            Some((terms, submitted)) => {
                let increase = top_up_increase(before, &row.best, &submitted);
                let key = terms.key(epoch);
                let grant = terms.grant;
                let budget = self
                    .budgets
                    .run_blocking(move |b| {
                        b.credit(key, increase)?;
                        b.budget(key, grant)
                    })
                    .await?;
                Some(json!({
                    "id": hex32(&terms.deployment),
                    "credited": increase.to_string(),
                    "credited_unit": "token base units",
                    "budget": budget_json(&budget),
                }))
            }
        };
        Ok(json!({
            "deployment": credited,
            "payer": payer.to_string(),
            "provider": self.terms.provider.to_string(),
            "epoch": epoch,
            "amount": row.best.voucher.amount.to_string(),
            "authorized": row.authorized_micro().to_string(),
            "consumed": row.consumed.to_string(),
            "available": row.available().to_string(),
            "unit": "micro base units (1e-6 of a token base unit)",
        }))
    }
}

fn budget_json(b: &Budget) -> serde_json::Value {
    json!({
        "authorized": b.authorized.to_string(),
        "consumed": b.consumed.to_string(),
        "available": b.available().to_string(),
        "unit": "micro base units (1e-6 of a token base unit)",
    })
}

impl Admission for Paid {
    fn admit<'a>(&'a self, call: CallInfo<'a>) -> BoxFuture<'a, Result<Ticket, ProviderError>> {
        Box::pin(self.admit_call(call))
    }

    fn charge(
        &self,
        ticket: Ticket,
        usage: Usage,
    ) -> BoxFuture<'_, Result<Option<String>, ProviderError>> {
        Box::pin(self.charge_call(ticket, usage))
    }

    fn release(&self, ticket: Ticket) {
        if let Some(hold) = ticket.budget {
            release_hold(&self.budgets, hold);
        }
        let Some(r) = ticket.reservation else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no runtime to release a reservation on");
            return;
        };
        let ledger = self.gate.ledger().clone();
        runtime.spawn(async move {
            let released = ledger
                .run_blocking(move |l| l.settle_reservation(r, U256::ZERO))
                .await;
            if let Err(e) = released {
                tracing::warn!(error = %e, "cannot release a reservation");
            }
        });
    }

    fn is_free(&self) -> bool {
        false
    }

    fn count_signature_check(&self, client: Option<std::net::IpAddr>) -> Result<(), ProviderError> {
        Ok(self
            .gate
            .count_signature_check(client.map(ClientKey::from_ip))?)
    }

    fn signature_limit_stats(&self) -> Option<SignatureLimitStats> {
        self.gate.signature_limiter().map(|l| SignatureLimitStats {
            refused: l.refused_total(),
            tracked_clients: l.tracked_clients() as u64,
        })
    }

    fn describe(&self) -> Option<serde_json::Value> {
        let p = self.gate.pricing();
        Some(json!({
            "chain_id": self.terms.chain_id,
            "escrow": self.terms.escrow.to_string(),
            "registry": self.terms.registry.map(|r| r.to_string()),
            "provider": self.terms.provider.to_string(),
            "pricing": {
                "unit": "micro base units (1e-6 of a token base unit)",
                "per_request": p.per_request.to_string(),
                "per_ms": p.per_ms.to_string(),
                "per_mb_out": p.per_mb_out.to_string(),
                "usdc": {
                    "per_request": format_micro_usdc(p.per_request),
                    "per_ms": format_micro_usdc(p.per_ms),
                    "per_mb_out": format_micro_usdc(p.per_mb_out),
                },
            },
            "voucher": {
                "header": PAYMENT_HEADER,
                "top_up": "/.well-known/khachapuri/voucher",
                "top_up_deployment": "/.well-known/khachapuri/voucher?deployment={cid}",
            },
        }))
    }

    fn top_up<'a>(
        &'a self,
        body: &'a [u8],
        deployment: Option<&'a Spec>,
    ) -> BoxFuture<'a, Result<serde_json::Value, ProviderError>> {
        Box::pin(self.top_up_voucher(body, deployment))
    }
}
