//! The paying HTTP client: the caller's whole side of the protocol in one place, used by
//! `khachapuri call` (and anything else that pays a provider).
//!
//! One [`PayingClient::send`] sends the stored voucher ahead (no wallet unlock, no RPC when
//! it covers the call), answers a `402` by checking the quote (network, provider,
//! `max_price`), reading the channel on chain and signing a voucher for consumption plus
//! the prepaid part, retries, and takes the receipt: it asks for a signed one
//! (`Khachapuri-Sign-Receipt`) and refuses a forged or altered one, keeps the latest per
//! channel and signs the next voucher ahead when the prepaid part runs low. The voucher
//! state lives in a [`PayerStore`], held under its file lock from load to save, so
//! concurrent runs neither lose records nor double-sign.
//!
//! The wallet comes through [`PayerWallet`], asked for the key only when something must be
//! signed, so prepaid calls never prompt for a password.

use std::time::Duration;

use khachapuri_chain::{Address, Chain, EscrowClient, PrivateKeySigner};

use crate::client::{ChannelRecord, PayPolicy, Payer, PaymentRequired};
use crate::error::{PaymentError, Result};
use crate::payer_store::{ChannelKey, PayerStore};
use crate::payment::{PAYMENT_HEADER, RECEIPT_HEADER};
use crate::receipt::{Receipt, SIGN_RECEIPT_HEADER};

/// Where the paying key comes from.
pub trait PayerWallet: Send + Sync {
    /// The paying address, without unlocking anything.
    fn address(&self) -> Result<Address>;
    /// The signing key; may prompt for a password. Called only when a voucher is signed.
    fn signer(&self) -> Result<PrivateKeySigner>;
}

/// What the client pays on and how.
#[derive(Debug, Clone)]
pub struct PayingConfig {
    /// JSON-RPC endpoint to read channels from (connected on the first 402 only).
    pub rpc_url: String,
    /// Chain id of the wallet's network (a 402 naming another is refused).
    pub chain_id: u64,
    /// Escrow of the wallet's network.
    pub escrow: Address,
    /// Prepaid amount and price ceiling.
    pub policy: PayPolicy,
    /// The voucher state.
    pub store: PayerStore,
}

/// One request to send (the client may send it up to three times: stored voucher, fresh
/// quote, paid retry).
#[derive(Debug, Clone)]
pub struct PaidRequest {
    /// HTTP method.
    pub method: reqwest::Method,
    /// Full URL.
    pub url: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body, if any.
    pub body: Option<Vec<u8>>,
    /// Quote key: the callable CID or URL (so `max_price` applies before a prepaid call).
    pub target: String,
}

/// Something worth telling the user about a paid call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayEvent {
    /// The provider refused the stored voucher (old epoch, other network); asked afresh.
    StoredRefused,
    /// A new voucher was signed to answer a 402.
    Signed {
        /// Who it is for.
        provider: Address,
        /// The quote's worst-case price (micro-units).
        price: khachapuri_chain::U256,
        /// The voucher's cumulative amount (base units).
        cumulative: khachapuri_chain::U256,
    },
    /// The next voucher was signed ahead (the prepaid part ran low).
    SignedAhead,
}

/// The answer of a paid call.
#[derive(Debug)]
pub struct Paid {
    /// The provider's final answer (body not yet read).
    pub response: reqwest::Response,
    /// The receipt, checked and stored; an error when it was unreadable, unsigned, forged,
    /// or above `max_price` (the answer is still there to show).
    pub receipt: Option<Result<Receipt>>,
    /// What happened on the way, in order.
    pub events: Vec<PayEvent>,
    /// The id the receipt is signed for: a streamed answer carries its receipt in the
    /// trailers, taken with [`PayingClient::take_trailer_receipt`] once the body is read.
    pub request_id: String,
}

/// The paying client. See the module docs.
pub struct PayingClient {
    http: reqwest::Client,
    config: PayingConfig,
    wallet: Box<dyn PayerWallet>,
    payer: Option<Payer>,
    escrow: Option<EscrowClient>,
    /// The provider answering at the target's origin, when known (profile or a 402).
    provider: Option<Address>,
    /// `scheme://host:port` of the endpoint, to remember which provider answers there.
    origin: String,
}

impl std::fmt::Debug for PayingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayingClient")
            .field("config", &self.config)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

fn http_err(url: &str) -> impl Fn(reqwest::Error) -> PaymentError + '_ {
    move |e| PaymentError::Http(format!("cannot reach {url}: {e}"))
}

impl PayingClient {
    /// A client sending through `http`, paying from `wallet`. `provider` is the address
    /// expected at `origin` (a profile entry), if known; otherwise the state file's
    /// memory of that origin is used.
    pub fn new(
        http: reqwest::Client,
        config: PayingConfig,
        wallet: Box<dyn PayerWallet>,
        provider: Option<Address>,
        origin: &str,
    ) -> Result<Self> {
        let provider = match provider {
            Some(p) => Some(p),
            None if !origin.is_empty() => config.store.provider_at(origin)?,
            None => None,
        };
        Ok(Self {
            http,
            config,
            wallet,
            payer: None,
            escrow: None,
            provider,
            origin: origin.to_string(),
        })
    }

    /// The provider this client pays (known after the first 402 at the latest).
    pub fn provider(&self) -> Option<Address> {
        self.provider
    }

    /// The escrow client (connected on the first 402), e.g. to read the free balance for a
    /// "fund the channel" hint.
    pub async fn escrow(&mut self) -> Result<&EscrowClient> {
        if self.escrow.is_none() {
            let chain =
                Chain::connect_with_timeout(&self.config.rpc_url, None, Duration::from_secs(10))
                    .await?;
            if chain.chain_id() != self.config.chain_id {
                return Err(PaymentError::UnknownEscrow {
                    chain_id: chain.chain_id(),
                    escrow: self.config.escrow,
                    expected_chain_id: self.config.chain_id,
                    expected_escrow: self.config.escrow,
                });
            }
            self.escrow = Some(EscrowClient::new(&chain, self.config.escrow));
        }
        self.escrow
            .as_ref()
            .ok_or_else(|| PaymentError::Task("no escrow client".into()))
    }

    fn payer(&mut self) -> Result<&Payer> {
        if self.payer.is_none() {
            let signer = self.wallet.signer()?;
            let c = &self.config;
            self.payer = Some(Payer::new(signer, c.chain_id, c.escrow, c.policy));
        }
        self.payer
            .as_ref()
            .ok_or_else(|| PaymentError::Task("no payer".into()))
    }

    fn key(&self, provider: Address) -> Result<ChannelKey> {
        Ok(ChannelKey {
            chain_id: self.config.chain_id,
            escrow: self.config.escrow,
            provider,
            payer: self.wallet.address()?,
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(PayerStore) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.config.store.clone();
        tokio::task::spawn_blocking(move || f(store))
            .await
            .map_err(|e| PaymentError::Task(e.to_string()))?
    }

    /// Sends `req`, paying as needed (see the module docs).
    pub async fn send(&mut self, req: &PaidRequest) -> Result<Paid> {
        let request_id = format!("{:032x}", rand_id());
        let mut events = Vec::new();
        let ahead = self.ahead(&req.target).await?;
        let sent_ahead = ahead.is_some();
        let mut resp = self.send_once(req, ahead.as_deref(), &request_id).await?;
        if sent_ahead && matches!(resp.status().as_u16(), 401 | 403) {
            events.push(PayEvent::StoredRefused);
            resp = self.send_once(req, None, &request_id).await?;
        }
        if resp.status() == reqwest::StatusCode::PAYMENT_REQUIRED {
            let body = resp.bytes().await.map_err(http_err(&req.url))?;
            let quote = PaymentRequired::parse(&body)?;
            let header = self.answer(&quote, &req.target, &mut events).await?;
            resp = self.send_once(req, Some(&header), &request_id).await?;
        }
        let receipt = match resp.headers().get(RECEIPT_HEADER) {
            None => None,
            Some(v) => {
                let value = v.to_str().unwrap_or_default().to_string();
                Some(self.take_receipt(&value, &request_id, &mut events).await)
            }
        };
        Ok(Paid {
            response: resp,
            receipt,
            events,
            request_id,
        })
    }

    async fn send_once(
        &self,
        req: &PaidRequest,
        payment: Option<&str>,
        request_id: &str,
    ) -> Result<reqwest::Response> {
        let mut r = self.http.request(req.method.clone(), &req.url);
        for (k, v) in &req.headers {
            r = r.header(k, v);
        }
        if let Some(p) = payment {
            // `TE: trailers`: a streamed answer's receipt comes after its body.
            r = r
                .header(PAYMENT_HEADER, p)
                .header(SIGN_RECEIPT_HEADER, request_id)
                .header(reqwest::header::TE, "trailers");
        }
        if let Some(body) = &req.body {
            r = r.body(body.clone());
        }
        r.send().await.map_err(http_err(&req.url))
    }

    /// The stored voucher to send before knowing the price, if it covers the call.
    async fn ahead(&self, target: &str) -> Result<Option<String>> {
        let Some(provider) = self.provider else {
            return Ok(None);
        };
        let Ok(key) = self.key(provider) else {
            return Ok(None);
        };
        let record = self.blocking(move |s| s.load(&key)).await?;
        Ok(self.config.policy.ahead(record.as_ref(), target))
    }

    /// Answers a 402: checks, reads the channel, signs (or reuses), saves; the header.
    async fn answer(
        &mut self,
        quote: &PaymentRequired,
        target: &str,
        events: &mut Vec<PayEvent>,
    ) -> Result<String> {
        let expected = self.provider;
        self.payer()?.check(quote, expected)?;
        let key = self.key(quote.provider)?;
        let channel = self
            .escrow()
            .await?
            .channel(key.payer, quote.provider)
            .await?;
        let _held = self.blocking(|s| s.lock()).await?;
        let record = self.blocking(move |s| s.load(&key)).await?;
        let paid = self
            .payer()?
            .pay(quote, &channel, record, target, expected)?;
        if paid.signed {
            events.push(PayEvent::Signed {
                provider: quote.provider,
                price: quote.price,
                cumulative: paid.record.signed(),
            });
        }
        let record = paid.record;
        self.blocking(move |s| s.save(&key, &record)).await?;
        if self.provider.is_none() && !self.origin.is_empty() {
            let (o, p) = (self.origin.clone(), quote.provider);
            self.blocking(move |s| s.remember_endpoint(&o, p)).await?;
        }
        self.provider = Some(quote.provider);
        Ok(paid.header)
    }

    /// Checks and stores the receipt a streamed answer carried in its trailers (the
    /// `Khachapuri-Receipt` trailer's value), exactly as a receipt header is taken.
    pub async fn take_trailer_receipt(&mut self, value: &str, request_id: &str) -> Result<Receipt> {
        let mut events = Vec::new();
        self.take_receipt(value, request_id, &mut events).await
    }

    /// Checks and stores a receipt; signs the next voucher ahead when it is time.
    async fn take_receipt(
        &mut self,
        value: &str,
        request_id: &str,
        events: &mut Vec<PayEvent>,
    ) -> Result<Receipt> {
        let receipt = Receipt::parse(value)?;
        // A sponsor paid: nothing of this wallet's channel moved.
        let Some(provider) = self.provider.filter(|_| !receipt.sponsored) else {
            return Ok(receipt);
        };
        let key = self.key(provider)?;
        let _held = self.blocking(|s| s.lock()).await?;
        let Some(mut record) = self.blocking(move |s| s.load(&key)).await? else {
            return Ok(receipt);
        };
        // Evidence first: a forged or altered receipt changes nothing.
        record.take_signed_receipt(&receipt, request_id, &key)?;
        let result = if self.config.policy.would_resign(&receipt, &record) {
            let resigned = self.payer()?.on_receipt(&receipt, &mut record, provider);
            if matches!(resigned, Ok(true)) {
                events.push(PayEvent::SignedAhead);
            }
            resigned.map(drop)
        } else {
            take_consumption(&mut record, &receipt);
            match self.config.policy.max_price {
                Some(max) if receipt.cost > max => Err(PaymentError::PriceTooHigh {
                    price: receipt.cost,
                    max,
                }),
                _ => Ok(()),
            }
        };
        self.blocking(move |s| s.save(&key, &record)).await?;
        result.map(|()| receipt)
    }
}

/// Takes the provider's consumption figure, never beyond what this wallet signed.
fn take_consumption(record: &mut ChannelRecord, receipt: &Receipt) {
    let signed = crate::pricing::base_to_micro(record.signed());
    record.consumed = record.consumed.max(receipt.consumed.min(signed));
}

/// A random request id for `Khachapuri-Sign-Receipt` (no RNG crate needed: the id only
/// has to be unlikely to repeat, not secret).
fn rand_id() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    let hi = h.finish();
    h.write_u64(hi);
    (u128::from(hi) << 64) | u128::from(h.finish())
}
