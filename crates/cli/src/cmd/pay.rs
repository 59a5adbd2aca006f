//! The paying half of `khachapuri call`: the profile's network and wallet handed to the
//! library's [`PayingClient`] (which owns the protocol: stored voucher ahead, 402 → sign →
//! retry, signed receipts, the voucher state in `payments/vouchers.json`), and its errors
//! turned into messages with hints. Free providers never answer 402, so they never make
//! the wallet sign (or even unlock).

use std::sync::Mutex;

use khachapuri_chain::{format_usdc, parse_usdc, Address, PrivateKeySigner, U256};
use khachapuri_payments::{
    base_to_micro, Paid, PaidRequest, PayEvent, PayPolicy, PayerStore, PayerWallet, PayingClient,
    PayingConfig, PaymentError, PaymentRequired, Receipt,
};

use crate::cmd::chainctx::{self, Network};
use crate::home::{Home, Profile, ProviderEntry};
use crate::output::{hint, Printer};

/// Prepaid amount when neither `--prepay` nor the profile key `prepay` says otherwise.
pub const DEFAULT_PREPAY: &str = "0.10";

/// A human USDC amount from micro-units (1e-12 USDC precision, trailing zeros trimmed).
pub use khachapuri_chain::format_micro_usdc as format_micro;

/// The profile's wallet for the paying client; keeps the CLI's own error (with its hint)
/// so it can be shown as is.
struct CliWallet {
    home: Home,
    profile: Profile,
    last_error: Mutex<Option<anyhow::Error>>,
}

impl CliWallet {
    fn keep<T>(&self, r: anyhow::Result<T>) -> Result<T, PaymentError> {
        r.map_err(|e| {
            let msg = format!("{e:#}");
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            PaymentError::Wallet(msg)
        })
    }
}

impl PayerWallet for CliWallet {
    fn address(&self) -> Result<Address, PaymentError> {
        self.keep(chainctx::wallet_address(&self.home, &self.profile))
    }

    fn signer(&self) -> Result<PrivateKeySigner, PaymentError> {
        self.keep(chainctx::load_signer(&self.home, &self.profile))
    }
}

/// Payment state of one `call`.
pub struct CallPayment<'a> {
    printer: &'a Printer,
    /// The paying client, when the profile names a network to pay on.
    client: Option<PayingClient>,
    /// The wallet's kept errors (shared with the client's copy).
    wallet: std::sync::Arc<CliWallet>,
    /// Plain client for profiles without a network (free providers only).
    http: reqwest::Client,
    /// How the user names the provider (for hints): profile name or address.
    label: Option<String>,
    /// The last paid call's receipt id, for a receipt that arrives in the trailers.
    request_id: Option<String>,
}

/// The client's wallet handle, sharing [`CliWallet`] with the CLI.
struct SharedWallet(std::sync::Arc<CliWallet>);

impl PayerWallet for SharedWallet {
    fn address(&self) -> Result<Address, PaymentError> {
        self.0.address()
    }

    fn signer(&self) -> Result<PrivateKeySigner, PaymentError> {
        self.0.signer()
    }
}

fn parse_amount(value: &str, flag: &str, example: &str) -> anyhow::Result<U256> {
    parse_usdc(value).map_err(|e| {
        hint(
            format!("bad {flag} {value:?}: {e}"),
            format!("give USDC, e.g. {flag} {example}"),
        )
    })
}

impl<'a> CallPayment<'a> {
    /// Payment context for calls to `url`; `provider` is the profile entry used (name and
    /// address), if any.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        home: &Home,
        profile: &Profile,
        printer: &'a Printer,
        url: &str,
        provider: Option<ProviderEntry>,
        max_price: Option<&str>,
        prepay: Option<&str>,
        http: reqwest::Client,
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
        let prepay = parse_amount(&prepay, "--prepay", "0.10")?;
        let max_price = max_price
            .map(|m| parse_amount(m, "--max-price", "0.001"))
            .transpose()?
            .map(base_to_micro);
        let policy = PayPolicy { prepay, max_price };
        let origin = reqwest::Url::parse(url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default();
        let (label, address) = match provider {
            Some(e) => (Some(e.name), e.address.and_then(|a| a.parse().ok())),
            None => (None, None),
        };
        let wallet = std::sync::Arc::new(CliWallet {
            home: home.clone(),
            profile: profile.clone(),
            last_error: Mutex::new(None),
        });
        let client = match Network::from_profile(profile).ok() {
            Some(Network {
                rpc_url,
                chain_id: Some(chain_id),
                escrow: Some(escrow),
                ..
            }) => {
                let config = PayingConfig {
                    rpc_url,
                    chain_id,
                    escrow,
                    policy,
                    store: PayerStore::new(home.root().join("payments").join("vouchers.json")),
                };
                let shared = Box::new(SharedWallet(wallet.clone()));
                Some(PayingClient::new(
                    http.clone(),
                    config,
                    shared,
                    address,
                    &origin,
                )?)
            }
            _ => None,
        };
        Ok(Self {
            printer,
            client,
            wallet,
            http,
            label,
            request_id: None,
        })
    }

    /// Sends the call, paying as needed; returns the answer and the receipt's summary
    /// (or why the receipt was refused).
    pub async fn send(
        &mut self,
        req: &PaidRequest,
    ) -> anyhow::Result<(reqwest::Response, Option<anyhow::Result<String>>)> {
        let Some(client) = self.client.as_mut() else {
            return self.send_unpaid(req).await;
        };
        let result = client.send(req).await;
        let provider = client.provider();
        let Paid {
            response,
            receipt,
            events,
            request_id,
        } = match result {
            Ok(p) => p,
            Err(e) => return Err(self.explain(e, provider).await),
        };
        for event in events {
            match event {
                PayEvent::StoredRefused => self
                    .printer
                    .status("the provider refused the stored voucher; asked for a fresh quote"),
                PayEvent::Signed {
                    provider,
                    price,
                    cumulative,
                } => self.printer.status(format!(
                    "paying {}: up to {} USDC for this call; signed a voucher for {} USDC (cumulative)",
                    self.name_of(provider),
                    format_micro(price),
                    format_usdc(cumulative),
                )),
                PayEvent::SignedAhead => self
                    .printer
                    .status("signed the next voucher ahead (the prepaid part ran low)"),
            }
        }
        self.request_id = Some(request_id);
        let receipt = match receipt {
            None => None,
            Some(Ok(r)) => Some(Ok(summary(&r))),
            Some(Err(e)) => Some(Err(self.explain_receipt(e))),
        };
        Ok((response, receipt))
    }

    /// Takes the receipt of a streamed answer from its trailers (value of the
    /// `Khachapuri-Receipt` trailer), checked and kept like a header receipt.
    pub async fn trailer_receipt(&mut self, value: &str) -> Option<anyhow::Result<String>> {
        let (client, id) = (self.client.as_mut()?, self.request_id.clone()?);
        Some(match client.take_trailer_receipt(value, &id).await {
            Ok(r) => Ok(summary(&r)),
            Err(e) => Err(self.explain_receipt(e)),
        })
    }

    async fn send_unpaid(
        &self,
        req: &PaidRequest,
    ) -> anyhow::Result<(reqwest::Response, Option<anyhow::Result<String>>)> {
        let mut r = self.http.request(req.method.clone(), &req.url);
        for (k, v) in &req.headers {
            r = r.header(k, v);
        }
        if let Some(body) = &req.body {
            r = r.body(body.clone());
        }
        let resp = r.send().await.map_err(|e| unreachable_hint(&req.url, &e))?;
        if resp.status() == reqwest::StatusCode::PAYMENT_REQUIRED {
            let body = resp.bytes().await.unwrap_or_default();
            let price = PaymentRequired::parse(&body)
                .map(|q| format!(" ({} USDC per call)", format_micro(q.price)))
                .unwrap_or_default();
            return Err(hint(
                format!("the provider asks for payment{price}, but the active profile has no chain to pay on"),
                "run `khachapuri dev`, or add rpc_url, chain_id and escrow to the profile",
            ));
        }
        Ok((resp, None))
    }

    async fn explain(&mut self, e: PaymentError, provider: Option<Address>) -> anyhow::Error {
        let name = provider.map_or_else(|| "PROVIDER".to_string(), |p| self.name_of(p));
        match e {
            PaymentError::Wallet(msg) => self
                .wallet
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or_else(|| anyhow::anyhow!(msg)),
            PaymentError::Http(msg) => hint(
                msg,
                "is the provider running? `khachapuri dev` starts a local one; `khachapuri info` shows the endpoints",
            ),
            PaymentError::MalformedPaymentRequired(m) => hint(
                format!("the provider asks for payment, but its 402 answer is unreadable: {m}"),
                "is this a Khachapuri provider? call it with -i to see the answer",
            ),
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
                    "after the unlock, `khachapuri escrow reclaim {name}` then `khachapuri escrow fund {name} AMOUNT`"
                ),
            ),
            PaymentError::ChannelShort {
                provider,
                needed,
                funds,
            } => {
                let free = match (self.client.as_mut(), self.wallet.address()) {
                    (Some(c), Ok(me)) => match c.escrow().await {
                        Ok(escrow) => escrow.balance_of(me).await.ok(),
                        Err(_) => None,
                    },
                    _ => None,
                };
                self.short(provider, needed, funds, free)
            }
            PaymentError::Chain(c) => hint(
                format!("cannot read the payment channel on chain: {c}"),
                "is `khachapuri dev` (or your node) running?",
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
            PaymentError::BadReceipt(_) => hint(
                e.to_string(),
                "the provider's receipt is not evidence of what it charged: do not trust its consumed figure; `khachapuri escrow status` compares what it signed with what it redeemed",
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

fn summary(r: &Receipt) -> String {
    format!(
        "cost {} USDC; consumed {} of {} USDC authorized{}",
        format_micro(r.cost),
        format_micro(r.consumed),
        format_micro(r.authorized),
        if r.proof.is_some() { " (signed)" } else { "" }
    )
}

fn unreachable_hint(url: &str, e: &reqwest::Error) -> anyhow::Error {
    hint(
        format!("cannot reach {url}: {e}"),
        "is the provider running? `khachapuri dev` starts a local one; `khachapuri info` shows the endpoints",
    )
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
