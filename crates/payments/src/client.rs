//! The caller side of paid calls: a [`Payer`] turns a wallet into `Khachapuri-Payment`
//! header values for a provider.
//!
//! Vouchers are cumulative, so one signature can prepay many calls: the payer signs *ahead*
//! for `consumed + prepay` (capped at the channel's funds) and only signs again when a
//! receipt shows the prepaid part running low. Everything the payer risks is bounded by
//! what it signed: at most one prepaid amount (or one call's price) beyond what the
//! provider consumed. What the payer learned (epoch, last voucher, consumption, quotes)
//! lives in a [`ChannelRecord`] that the CLI persists across runs with
//! [`crate::PayerStore`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use khachapuri_chain::{Address, ChannelState, PrivateKeySigner, SignedVoucher, Voucher, U256};
use serde::{Deserialize, Serialize};

use crate::error::{PaymentError, Result};
use crate::payment::encode_payment;
use crate::pricing::{base_to_micro, micro_to_base_ceil};
use crate::receipt::Receipt;

/// Quotes kept per channel (one per callable CID); the oldest entries go first.
const MAX_QUOTES: usize = 64;

/// How much to sign ahead and how much one call may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayPolicy {
    /// Credit (base units) kept authorized beyond what was consumed, so the next calls need
    /// no new signature.
    pub prepay: U256,
    /// The most one call may cost (micro-units); `None` means no cap.
    pub max_price: Option<U256>,
}

/// What to do with a channel's voucher, given consumption and the next call's price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The current voucher leaves enough credit: send it again.
    Keep,
    /// Sign a new voucher for this cumulative amount (base units).
    Sign(U256),
    /// The channel's funds cannot cover the next call: a voucher would need this much
    /// (base units) to pay it plus the prepaid part.
    Short {
        /// Base units the voucher should reach.
        needed: U256,
    },
}

impl PayPolicy {
    /// Below this much credit (micro-units) a new voucher is signed ahead: half the prepaid
    /// amount or the call's price, whichever is larger.
    pub fn low_water(&self, price: U256) -> U256 {
        (base_to_micro(self.prepay) / U256::from(2)).max(price)
    }

    /// The cumulative amount (micro-units) to authorize: consumption plus the prepaid part,
    /// or plus one call's price when that is larger.
    pub fn target(&self, consumed: U256, price: U256) -> U256 {
        consumed.saturating_add(base_to_micro(self.prepay).max(price))
    }

    /// The header to send with a call to `target` before knowing its price: the stored
    /// voucher, unless a `max_price` is set and no quote for `target` within it is known
    /// (then the call goes unpaid first, to learn the price from the 402). Needs no key, so
    /// a keystore is only unlocked when something must be signed.
    pub fn ahead(&self, record: Option<&ChannelRecord>, target: &str) -> Option<String> {
        let record = record?;
        let voucher = record.voucher.as_ref()?;
        if let Some(max) = self.max_price {
            match record.quotes.get(target) {
                Some(price) if *price <= max => {}
                _ => return None,
            }
        }
        Some(encode_payment(voucher))
    }

    /// Whether a receipt taken into `record` would make the payer sign (so the caller
    /// unlocks its key only then).
    pub fn would_resign(&self, receipt: &Receipt, record: &ChannelRecord) -> bool {
        let consumed = record
            .consumed
            .max(receipt.consumed.min(base_to_micro(record.signed())));
        let price = record.price.max(receipt.cost);
        matches!(
            self.decide(consumed, price, record.signed(), record.funds),
            Decision::Sign(_)
        )
    }

    /// The re-sign policy. `consumed` and `price` are micro-units, `current` (the last
    /// signed amount, 0 if none) and `funds` base units. A new amount is always above
    /// `current`, never above `funds`, and covers `price` beyond `consumed`.
    pub fn decide(&self, consumed: U256, price: U256, current: U256, funds: U256) -> Decision {
        let credit = base_to_micro(current).saturating_sub(consumed);
        if credit >= self.low_water(price) {
            return Decision::Keep;
        }
        let needed = micro_to_base_ceil(self.target(consumed, price));
        let amount = needed.min(funds);
        if amount > current && base_to_micro(amount).saturating_sub(consumed) >= price {
            Decision::Sign(amount)
        } else if credit >= price {
            // Running low but the channel is full: the current voucher still pays this call.
            Decision::Keep
        } else {
            Decision::Short { needed }
        }
    }
}

/// What the payer knows about its channel to one provider, persisted across runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRecord {
    /// The channel's epoch the voucher is for.
    pub epoch: u64,
    /// The last voucher signed in this epoch (the highest: amounts only grow).
    pub voucher: Option<SignedVoucher>,
    /// Micro-units the provider reported consumed (receipts, 402 bodies).
    #[serde(with = "dec")]
    pub consumed: U256,
    /// Base units funded in the channel when last read from chain.
    #[serde(with = "dec")]
    pub funds: U256,
    /// The last price quoted by a 402 (micro-units), for the low-water mark.
    #[serde(with = "dec")]
    pub price: U256,
    /// Quoted prices per target (callable CID), so `max_price` can be checked before a
    /// prepaid call is sent.
    #[serde(default, with = "dec_map")]
    pub quotes: BTreeMap<String, U256>,
    /// The highest consumed amount (micro-units) the provider signed for in this epoch:
    /// what it can honestly redeem, to compare with what it did redeem on chain.
    #[serde(default, with = "dec")]
    pub signed_consumed: U256,
    /// The `Khachapuri-Receipt` value behind `signed_consumed`: the evidence itself.
    #[serde(default)]
    pub signed_receipt: Option<String>,
}

impl ChannelRecord {
    /// An empty record for `epoch`.
    pub fn new(epoch: u64) -> Self {
        Self {
            epoch,
            voucher: None,
            consumed: U256::ZERO,
            funds: U256::ZERO,
            price: U256::ZERO,
            quotes: BTreeMap::new(),
            signed_consumed: U256::ZERO,
            signed_receipt: None,
        }
    }

    /// Takes a receipt asked to be signed with `request_id` for the channel `key`: checks
    /// the operator's signature ([`Receipt::verify`]) and keeps it when it signs for more
    /// than any before. A forged or altered receipt is refused and changes nothing.
    pub fn take_signed_receipt(
        &mut self,
        receipt: &Receipt,
        request_id: &str,
        key: &crate::ChannelKey,
    ) -> Result<()> {
        receipt.verify(
            request_id,
            key.provider,
            key.payer,
            self.epoch,
            key.chain_id,
            key.escrow,
        )?;
        if receipt.consumed >= self.signed_consumed {
            self.signed_consumed = receipt.consumed;
            self.signed_receipt = Some(receipt.encode());
        }
        Ok(())
    }

    /// Base units signed so far in this epoch.
    pub fn signed(&self) -> U256 {
        self.voucher
            .as_ref()
            .map_or(U256::ZERO, |v| v.voucher.amount)
    }

    fn quote(&mut self, target: &str, price: U256) {
        self.price = price;
        self.quotes.remove(target);
        if self.quotes.len() >= MAX_QUOTES {
            if let Some(k) = self.quotes.keys().next().cloned() {
                self.quotes.remove(&k);
            }
        }
        self.quotes.insert(target.to_string(), price);
    }
}

/// The JSON body of a provider's `402 Payment Required` (see `Gate::payment_required_body`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequired {
    /// Most this call can cost (micro-units).
    pub price: U256,
    /// Provider to sign for.
    pub provider: Address,
    /// Escrow of the EIP-712 domain.
    pub escrow: Address,
    /// Chain id of the EIP-712 domain.
    pub chain_id: u64,
    /// The channel's epoch (present when the provider knew the payer).
    pub epoch: Option<u64>,
    /// Micro-units consumed in the channel (present when the payer is known).
    pub consumed: Option<U256>,
    /// Micro-units authorized by the provider's best voucher.
    pub authorized: Option<U256>,
    /// Channel funds in base units, as the provider sees them.
    pub funds: Option<U256>,
}

impl PaymentRequired {
    /// Parses a 402 body.
    pub fn parse(body: &[u8]) -> Result<Self> {
        let bad = |m: String| PaymentError::MalformedPaymentRequired(m);
        let json: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| bad(format!("not JSON: {e}")))?;
        let num = |k: &str| -> Result<Option<U256>> {
            match json.get(k) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => U256::from_str_radix(s, 10)
                    .map(Some)
                    .map_err(|e| bad(format!("{k}: {e}"))),
                Some(serde_json::Value::Number(n)) => n
                    .as_u64()
                    .map(|n| Some(U256::from(n)))
                    .ok_or_else(|| bad(format!("{k}: not a non-negative integer"))),
                Some(other) => Err(bad(format!("{k}: unexpected {other}"))),
            }
        };
        let addr = |k: &str| -> Result<Address> {
            json.get(k)
                .and_then(|v| v.as_str())
                .ok_or_else(|| bad(format!("no {k}")))?
                .parse()
                .map_err(|e| bad(format!("{k}: {e}")))
        };
        let int = |k: &str| -> Result<Option<u64>> {
            match json.get(k) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .map(Some)
                    .ok_or_else(|| bad(format!("{k}: not an integer"))),
            }
        };
        Ok(Self {
            price: num("price")?.ok_or_else(|| bad("no price".into()))?,
            provider: addr("provider")?,
            escrow: addr("escrow")?,
            chain_id: int("chain_id")?.ok_or_else(|| bad("no chain_id".into()))?,
            epoch: int("epoch")?,
            consumed: num("consumed")?,
            authorized: num("authorized")?,
            funds: num("funds")?,
        })
    }
}

/// A payment to send: the header value and the record to persist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// `Khachapuri-Payment` header value.
    pub header: String,
    /// The channel record after this payment (save it before sending).
    pub record: ChannelRecord,
    /// Whether a new voucher was signed (false: the stored one already covers the call).
    pub signed: bool,
}

/// One wallet paying providers of one escrow on one chain.
#[derive(Debug)]
pub struct Payer {
    signer: PrivateKeySigner,
    chain_id: u64,
    escrow: Address,
    policy: PayPolicy,
    signatures: AtomicU64,
}

impl Payer {
    /// A payer signing with `signer` for the escrow at `escrow` on `chain_id` (the wallet's
    /// network: a 402 naming any other is refused).
    pub fn new(
        signer: PrivateKeySigner,
        chain_id: u64,
        escrow: Address,
        policy: PayPolicy,
    ) -> Self {
        Self {
            signer,
            chain_id,
            escrow,
            policy,
            signatures: AtomicU64::new(0),
        }
    }

    /// The paying address.
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// The policy.
    pub fn policy(&self) -> &PayPolicy {
        &self.policy
    }

    /// Vouchers signed by this payer so far (to measure how many calls one prepays).
    pub fn signatures(&self) -> u64 {
        self.signatures.load(Ordering::Relaxed)
    }

    /// The header to send with a call to `target` before knowing its price; see
    /// [`PayPolicy::ahead`].
    pub fn ahead(&self, record: Option<&ChannelRecord>, target: &str) -> Option<String> {
        self.policy.ahead(record, target)
    }

    /// Checks a 402 against the wallet's network, the expected provider (when known) and
    /// `max_price`, before anything is signed.
    pub fn check(&self, body: &PaymentRequired, provider: Option<Address>) -> Result<()> {
        if body.chain_id != self.chain_id || body.escrow != self.escrow {
            return Err(PaymentError::UnknownEscrow {
                chain_id: body.chain_id,
                escrow: body.escrow,
                expected_chain_id: self.chain_id,
                expected_escrow: self.escrow,
            });
        }
        if let Some(expected) = provider {
            if expected != body.provider {
                return Err(PaymentError::WrongProvider {
                    expected,
                    got: body.provider,
                });
            }
        }
        self.check_price(body.price)
    }

    fn check_price(&self, price: U256) -> Result<()> {
        match self.policy.max_price {
            Some(max) if price > max => Err(PaymentError::PriceTooHigh { price, max }),
            _ => Ok(()),
        }
    }

    /// Answers a 402 for a call to `target`: checks it ([`Payer::check`]), then, with the
    /// channel as read from chain, signs a voucher for `consumed + prepay` (or reuses the
    /// stored one when it already covers the call). A new epoch starts a fresh record.
    ///
    /// The provider's claimed consumption is never trusted beyond what this payer signed
    /// in the epoch, so a lying provider cannot make it sign more than one prepaid amount
    /// ahead.
    pub fn pay(
        &self,
        body: &PaymentRequired,
        channel: &ChannelState,
        record: Option<ChannelRecord>,
        target: &str,
        provider: Option<Address>,
    ) -> Result<Payment> {
        self.check(body, provider)?;
        if channel.unlock_at != 0 {
            return Err(PaymentError::ChannelUnlocking {
                unlock_at: channel.unlock_at,
            });
        }
        let mut record = match record {
            Some(r) if r.epoch == channel.epoch => r,
            _ => ChannelRecord::new(channel.epoch),
        };
        record.funds = channel.funds;
        record.quote(target, body.price);
        if body.epoch == Some(channel.epoch) {
            if let Some(consumed) = body.consumed {
                let cap = match &record.voucher {
                    Some(v) => base_to_micro(v.voucher.amount),
                    // Nothing signed here (or the state was lost): the provider's own
                    // authorization bounds its claim.
                    None => body.authorized.unwrap_or(U256::ZERO),
                };
                record.consumed = record.consumed.max(consumed.min(cap));
            }
        }
        let current = record.signed();
        let credit = base_to_micro(current).saturating_sub(record.consumed);
        // The provider holds our last voucher and still refused: only a higher one helps.
        let provider_has_it = body.authorized.is_some_and(|a| a >= base_to_micro(current));
        let decision = if record.voucher.is_some() && credit >= body.price && !provider_has_it {
            // The stored voucher (not sent, e.g. to learn the price first) pays the call.
            Decision::Keep
        } else {
            let needed = micro_to_base_ceil(self.policy.target(record.consumed, body.price))
                .max(current.saturating_add(U256::from(1)));
            let amount = needed.min(channel.funds);
            if amount > current
                && base_to_micro(amount).saturating_sub(record.consumed) >= body.price
            {
                Decision::Sign(amount)
            } else {
                Decision::Short { needed }
            }
        };
        match decision {
            Decision::Keep => {
                let voucher = record
                    .voucher
                    .clone()
                    .ok_or(PaymentError::PaymentRequired)?;
                Ok(Payment {
                    header: encode_payment(&voucher),
                    record,
                    signed: false,
                })
            }
            Decision::Sign(amount) => {
                let voucher = self.sign(body.provider, channel.epoch, amount)?;
                let header = encode_payment(&voucher);
                record.voucher = Some(voucher);
                Ok(Payment {
                    header,
                    record,
                    signed: true,
                })
            }
            Decision::Short { needed } => Err(PaymentError::ChannelShort {
                provider: body.provider,
                needed,
                funds: channel.funds,
            }),
        }
    }

    /// Takes a `Khachapuri-Receipt` of a paid call into `record` and signs the next voucher
    /// ahead when the prepaid part runs low (it rides with the next call). Returns whether
    /// it signed. A cost above `max_price` is reported after the fact as
    /// [`PaymentError::PriceTooHigh`] (the record is still updated).
    pub fn on_receipt(
        &self,
        receipt: &Receipt,
        record: &mut ChannelRecord,
        provider: Address,
    ) -> Result<bool> {
        let signed_micro = base_to_micro(record.signed());
        record.consumed = record.consumed.max(receipt.consumed.min(signed_micro));
        let price = record.price.max(receipt.cost);
        let mut resigned = false;
        if let Decision::Sign(amount) =
            self.policy
                .decide(record.consumed, price, record.signed(), record.funds)
        {
            let voucher = self.sign(provider, record.epoch, amount)?;
            record.voucher = Some(voucher);
            resigned = true;
        }
        self.check_price(receipt.cost)?;
        Ok(resigned)
    }

    fn sign(&self, provider: Address, epoch: u64, amount: U256) -> Result<SignedVoucher> {
        let voucher = Voucher {
            payer: self.address(),
            provider,
            epoch,
            amount,
        };
        let signed = voucher.sign(&self.signer, self.chain_id, self.escrow)?;
        self.signatures.fetch_add(1, Ordering::Relaxed);
        Ok(signed)
    }
}

/// U256 as a decimal string (the state file stays readable).
mod dec {
    use khachapuri_chain::U256;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &U256, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<U256, D::Error> {
        let s = String::deserialize(d)?;
        U256::from_str_radix(&s, 10).map_err(D::Error::custom)
    }
}

/// A map of decimal-string U256 values.
mod dec_map {
    use std::collections::BTreeMap;

    use khachapuri_chain::U256;
    use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        v: &BTreeMap<String, U256>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(|(k, n)| (k.clone(), n.to_string()))
            .collect::<BTreeMap<_, _>>()
            .serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, U256>, D::Error> {
        BTreeMap::<String, String>::deserialize(d)?
            .into_iter()
            .map(|(k, s)| {
                U256::from_str_radix(&s, 10)
                    .map(|n| (k, n))
                    .map_err(D::Error::custom)
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
