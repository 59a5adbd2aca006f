//! The paying half of `khachapuri call`: sends the stored voucher ahead, answers a 402 by
//! signing from the active wallet (checked against the profile's chain and escrow), and
//! takes the `Khachapuri-Receipt` into the voucher state (`payments/vouchers.json` in the
//! home) so later runs keep prepaying without new signatures. Free providers never answer
//! 402, so they never make the wallet sign (or even unlock).

use anyhow::Context;
use khachapuri_chain::{format_usdc, parse_usdc, Address, U256};
use khachapuri_payments::{
    base_to_micro, ChannelKey, ChannelRecord, PayPolicy, Payer, PayerStore, PaymentError,
    PaymentRequired, Receipt, StoreLock,
};

use crate::cmd::chainctx::{self, Network};
use crate::home::{Home, Profile, ProviderEntry};
use crate::output::{hint, Printer};

/// Prepaid amount when neither `--prepay` nor the profile key `prepay` says otherwise.
pub const DEFAULT_PREPAY: &str = "0.10";

/// Payment state of one `call`.
pub struct CallPayment<'a> {
    home: &'a Home,
    profile: &'a Profile,
    printer: &'a Printer,
    net: Option<Network>,
    store: PayerStore,
    policy: PayPolicy,
    /// The quote key: the CID or URL called.
    target: String,
    /// `scheme://host:port` of the endpoint (to remember which provider answers there).
    origin: String,
    /// The provider's address, when the profile or an earlier 402 told us.
    provider: Option<Address>,
    /// How the user names the provider (for hints): profile name or address.
    label: Option<String>,
    payer: Option<Payer>,
    /// Chain id of the profile, or of the chain once connected.
    chain_id: Option<u64>,
}

/// A human USDC amount from micro-units (1e-12 USDC precision, trailing zeros trimmed).
pub use khachapuri_chain::format_micro_usdc as format_micro;

impl<'a> CallPayment<'a> {
    /// Payment context for calling `target` at `url`; `provider` is the profile entry
    /// used (name and address), if any.
    #[allow(clippy::too_many_arguments)]
    pub async fn new(
        home: &'a Home,
        profile: &'a Profile,
        printer: &'a Printer,
        target: &str,
        url: &str,
        provider: Option<ProviderEntry>,
        max_price: Option<&str>,
        prepay: Option<&str>,
    ) -> anyhow::Result<Self> {
        let prepay = match prepay {
            Some(p) => p.to_string(),
            None => match profile.extra.get("prepay") {
                Some(v) => v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string()),
                None => DEFAULT_PREPAY.to_string(),
            },
        };
        let prepay = parse_usdc(&prepay).map_err(|e| {
            hint(
                format!("bad prepaid amount {prepay:?}: {e}"),
                "give USDC, e.g. --prepay 0.10",
            )
        })?;
        let max_price = max_price
            .map(|m| {
                parse_usdc(m).map_err(|e| {
                    hint(
                        format!("bad --max-price {m:?}: {e}"),
                        "give USDC, e.g. --max-price 0.001",
                    )
                })
            })
            .transpose()?
            .map(base_to_micro);
        let origin = reqwest::Url::parse(url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default();
        let store = PayerStore::new(home.root().join("payments").join("vouchers.json"));
        let (label, mut address) = match provider {
            Some(e) => (Some(e.name), e.address.and_then(|a| a.parse().ok())),
            None => (None, None),
        };
        if address.is_none() && !origin.is_empty() {
            let (s, o) = (store.clone(), origin.clone());
            address = tokio::task::spawn_blocking(move || s.provider_at(&o)).await??;
        }
        Ok(Self {
            home,
            profile,
            printer,
            chain_id: Network::from_profile(profile).ok().and_then(|n| n.chain_id),
            net: Network::from_profile(profile).ok(),
            store,
            policy: PayPolicy { prepay, max_price },
            target: target.to_string(),
            origin,
            provider: address,
            label,
            payer: None,
        })
    }

    fn key(&self, provider: Address, chain_id: u64) -> anyhow::Result<Option<ChannelKey>> {
        let Some(escrow) = self.net.as_ref().and_then(|n| n.escrow) else {
            return Ok(None);
        };
        let payer = match &self.payer {
            Some(p) => p.address(),
            None => match chainctx::wallet_address(self.home, self.profile) {
                Ok(a) => a,
                Err(_) => return Ok(None),
            },
        };
        Ok(Some(ChannelKey {
            chain_id,
            escrow,
            provider,
            payer,
        }))
    }

    async fn load(&self, key: ChannelKey) -> anyhow::Result<Option<ChannelRecord>> {
        let s = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || s.load(&key)).await??)
    }

    /// Holds the voucher state against other `khachapuri` runs from load to save.
    async fn lock(&self) -> anyhow::Result<StoreLock> {
        let s = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || s.lock()).await??)
    }

    async fn save(&self, key: ChannelKey, record: ChannelRecord) -> anyhow::Result<()> {
        let s = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || s.save(&key, &record)).await??)
    }

    /// The header to send with the first attempt: the stored voucher for this provider,
    /// if any (never unlocks the wallet).
    pub async fn ahead(&self) -> anyhow::Result<Option<String>> {
        let (Some(provider), Some(chain_id)) = (self.provider, self.chain_id) else {
            return Ok(None);
        };
        let Some(key) = self.key(provider, chain_id)? else {
            return Ok(None);
        };
        let record = self.load(key).await?;
        Ok(self.policy.ahead(record.as_ref(), &self.target))
    }

    fn payer(&mut self, chain_id: u64, escrow: Address) -> anyhow::Result<&Payer> {
        if self.payer.is_none() {
            let signer = chainctx::load_signer(self.home, self.profile)?;
            self.payer = Some(Payer::new(signer, chain_id, escrow, self.policy));
        }
        self.payer.as_ref().context("wallet not loaded")
    }

    /// Answers a 402 body: checks it, reads the channel on chain, signs (or reuses the
    /// stored voucher), saves the state and returns the header for the retry.
    pub async fn on_402(&mut self, body: &[u8]) -> anyhow::Result<String> {
        let quote = PaymentRequired::parse(body).map_err(|e| {
            hint(
                format!("the provider asks for payment, but its 402 answer is unreadable: {e}"),
                "is this a Khachapuri provider? call it with -i to see the answer",
            )
        })?;
        let net = self.net.clone().ok_or_else(|| {
            hint(
                format!(
                    "the provider asks {} USDC per call, but the active profile has no chain to pay on",
                    format_micro(quote.price)
                ),
                "run `khachapuri dev`, or add rpc_url, chain_id and escrow to the profile",
            )
        })?;
        let escrow_addr = net.escrow.ok_or_else(|| {
            hint(
                "the active profile has no `escrow` address",
                "run `khachapuri dev`",
            )
        })?;
        let chain = net.connect(None).await?;
        let chain_id = chain.chain_id();
        self.chain_id = Some(chain_id);
        let expected = self.provider;
        let checked = self.payer(chain_id, escrow_addr)?.check(&quote, expected);
        checked.map_err(|e| self.explain(e, &quote))?;
        let payer_addr = self.payer(chain_id, escrow_addr)?.address();
        let escrow = net.escrow(&chain)?;
        let channel = escrow
            .channel(payer_addr, quote.provider)
            .await
            .context("cannot read the payment channel on chain")?;
        let key = ChannelKey {
            chain_id,
            escrow: escrow_addr,
            provider: quote.provider,
            payer: payer_addr,
        };
        let _held = self.lock().await?;
        let record = self.load(key).await?;
        let payer = self.payer.as_ref().context("wallet not loaded")?;
        let paid = match payer.pay(&quote, &channel, record, &self.target, expected) {
            Ok(p) => p,
            Err(PaymentError::ChannelShort { needed, funds, .. }) => {
                let free = escrow.balance_of(payer_addr).await.ok();
                return Err(self.short(quote.provider, needed, funds, free));
            }
            Err(e) => return Err(self.explain(e, &quote)),
        };
        if paid.signed {
            self.printer.status(format!(
                "paying {}: up to {} USDC for this call; signed a voucher for {} USDC (cumulative)",
                self.label
                    .clone()
                    .unwrap_or_else(|| quote.provider.to_string()),
                format_micro(quote.price),
                format_usdc(paid.record.signed()),
            ));
        }
        let header = paid.header.clone();
        self.save(key, paid.record).await?;
        if self.provider.is_none() && !self.origin.is_empty() {
            let (s, o, p) = (self.store.clone(), self.origin.clone(), quote.provider);
            tokio::task::spawn_blocking(move || s.remember_endpoint(&o, p)).await??;
        }
        self.provider = Some(quote.provider);
        Ok(header)
    }

    /// Takes a `Khachapuri-Receipt` value into the voucher state, re-signing ahead when
    /// the prepaid part runs low. Returns a human summary of the receipt.
    /// A receipt of a call that asked for a signature (`request_id`) must carry the
    /// provider's valid signature, or it is refused and the state keeps what it had.
    pub async fn on_receipt(&mut self, value: &str, request_id: &str) -> anyhow::Result<String> {
        let receipt = Receipt::parse(value)
            .map_err(|e| anyhow::anyhow!("the provider's receipt is unreadable: {e}"))?;
        let summary = format!(
            "cost {} USDC; consumed {} of {} USDC authorized",
            format_micro(receipt.cost),
            format_micro(receipt.consumed),
            format_micro(receipt.authorized)
        );
        let (Some(provider), Some(net)) = (self.provider, self.net.clone()) else {
            return Ok(summary);
        };
        let (Some(escrow), Some(chain_id)) = (net.escrow, self.chain_id) else {
            return Ok(summary);
        };
        let Some(key) = self.key(provider, chain_id)? else {
            return Ok(summary);
        };
        let _held = self.lock().await?;
        let Some(mut record) = self.load(key).await? else {
            return Ok(summary);
        };
        record
            .take_signed_receipt(&receipt, request_id, &key)
            .map_err(|e| {
                hint(
                    e.to_string(),
                    "the provider's receipt is not evidence of what it charged: do not trust its consumed figure; `khachapuri escrow status` compares what it signed with what it redeemed",
                )
            })?;
        if self.policy.would_resign(&receipt, &record) {
            let payer = self.payer(chain_id, escrow)?;
            let result = payer.on_receipt(&receipt, &mut record, provider);
            self.save(key, record).await?;
            if let Err(e) = result {
                return Err(self.explain_receipt(e));
            }
            self.printer
                .status("signed the next voucher ahead (the prepaid part ran low)");
        } else {
            let signed = base_to_micro(record.signed());
            record.consumed = record.consumed.max(receipt.consumed.min(signed));
            self.save(key, record).await?;
            if let Some(max) = self.policy.max_price.filter(|m| receipt.cost > *m) {
                return Err(self.explain_receipt(PaymentError::PriceTooHigh {
                    price: receipt.cost,
                    max,
                }));
            }
        }
        Ok(summary)
    }

    fn explain(&self, e: PaymentError, quote: &PaymentRequired) -> anyhow::Error {
        match e {
            PaymentError::PriceTooHigh { price, max } => hint(
                format!(
                    "the call costs up to {} USDC, above --max-price {} USDC",
                    format_micro(price),
                    format_micro(max)
                ),
                "raise --max-price, or call another provider",
            ),
            PaymentError::UnknownEscrow { .. } => hint(
                e.to_string(),
                "the provider is paid on another network: switch to its profile (nothing was signed)",
            ),
            PaymentError::WrongProvider { .. } => hint(
                format!("{e}: refusing to pay"),
                "check the provider's address in the profile (`khachapuri info`)",
            ),
            PaymentError::ChannelUnlocking { .. } => hint(
                format!("{e}"),
                format!(
                    "after the unlock, `khachapuri escrow reclaim {0}` then `khachapuri escrow fund {0} AMOUNT`",
                    self.name_of(quote.provider)
                ),
            ),
            other => anyhow::Error::new(other),
        }
    }

    fn explain_receipt(&self, e: PaymentError) -> anyhow::Error {
        match e {
            PaymentError::PriceTooHigh { price, max } => hint(
                format!(
                    "the call ran but cost {} USDC, above --max-price {} USDC",
                    format_micro(price),
                    format_micro(max)
                ),
                "raise --max-price, or call a cheaper function",
            ),
            other => anyhow::Error::new(other),
        }
    }

    fn name_of(&self, provider: Address) -> String {
        self.label.clone().unwrap_or_else(|| provider.to_string())
    }

    fn short(
        &self,
        provider: Address,
        needed: U256,
        funds: U256,
        free: Option<U256>,
    ) -> anyhow::Error {
        let amount = needed.saturating_sub(funds).max(U256::from(1));
        let name = self.name_of(provider);
        let fund = format!("khachapuri escrow fund {name} {}", format_usdc(amount));
        let next = match free {
            Some(free) if free < amount => format!(
                "`khachapuri escrow deposit {}` then `{fund}`",
                format_usdc(amount.saturating_sub(free))
            ),
            _ => format!("`{fund}`"),
        };
        hint(
            format!(
                "the payment channel to {name} holds {} USDC, not enough to pay this call (needs {} USDC)",
                format_usdc(funds),
                format_usdc(needed)
            ),
            format!("fund it: {next}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_amounts_read_as_usdc() {
        assert_eq!(format_micro(U256::ZERO), "0");
        assert_eq!(format_micro(U256::from(1_250_000u64 * 1_000_000)), "1.25");
        assert_eq!(format_micro(U256::from(1u64)), "0.000000000001");
        assert_eq!(format_micro(U256::from(13_500_000u64)), "0.0000135");
        assert_eq!(format_micro(U256::from(1_000_001_500_000u64)), "1.0000015");
    }
}
