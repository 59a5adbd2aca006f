//! Typed client of the `Escrow` contract: free balance, channels, vouchers.

use alloy::primitives::{Address, B256, U256};
use alloy::providers::DynProvider;
use serde::Serialize;

use crate::bindings::Escrow::{self, EscrowInstance};
use crate::client::Chain;
use crate::error::{ChainError, Result};
use crate::token::Token;
use crate::voucher::{SignedVoucher, Voucher};

/// One channel payer → provider as the contract reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ChannelState {
    /// Total funded in this epoch (only grows).
    pub funds: U256,
    /// Total redeemed by the provider in this epoch (only grows).
    pub redeemed: U256,
    /// Current epoch; vouchers must carry it.
    pub epoch: u64,
    /// When a pending unlock matures (unix seconds), 0 if none.
    pub unlock_at: u64,
}

impl ChannelState {
    /// What the channel still holds: `funds - redeemed`.
    pub fn remaining(&self) -> U256 {
        self.funds.saturating_sub(self.redeemed)
    }
}

/// A voucher and the cumulative amount its provider claims with it (exact billing: what the
/// calls cost, at most the voucher's amount). The escrow pays
/// `min(claim, amount, funds) - redeemed`, so the unconsumed prepaid part is never taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The payer's signed voucher (the credit limit).
    pub voucher: SignedVoucher,
    /// Cumulative base units claimed in the voucher's channel epoch.
    pub amount: U256,
}

impl Claim {
    /// A claim of `amount`, capped by the voucher (a claim above it could not pay more).
    pub fn new(voucher: SignedVoucher, amount: U256) -> Self {
        let amount = amount.min(voucher.voucher.amount);
        Self { voucher, amount }
    }

    /// A claim of everything the voucher allows (tests and benchmarks of the cap itself).
    pub fn full(voucher: SignedVoucher) -> Self {
        let amount = voucher.voucher.amount;
        Self { voucher, amount }
    }

    /// What the chain would pay for this claim now, given the voucher's channel state.
    pub fn payable(&self, channel: &ChannelState) -> U256 {
        self.amount
            .min(self.voucher.voucher.amount)
            .min(channel.funds)
            .saturating_sub(channel.redeemed)
    }
}

/// Client of the escrow at one address. State-changing calls need a [`Chain`] with a signer.
#[derive(Clone, Debug)]
pub struct EscrowClient {
    chain: Chain,
    instance: EscrowInstance<DynProvider>,
}

impl EscrowClient {
    /// A client for the escrow at `address`.
    pub fn new(chain: &Chain, address: Address) -> Self {
        Self {
            chain: chain.clone(),
            instance: Escrow::new(address, chain.provider().clone()),
        }
    }

    /// The escrow's address (the EIP-712 `verifyingContract`).
    pub fn address(&self) -> Address {
        *self.instance.address()
    }

    /// The connection this client uses.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// The payment token the escrow holds.
    pub async fn token(&self) -> Result<Token> {
        let addr = self.chain.view("token", self.instance.token()).await?;
        Ok(Token::new(&self.chain, addr))
    }

    /// Seconds between `request_unlock` and `reclaim`.
    pub async fn unlock_delay(&self) -> Result<u64> {
        self.chain
            .view("unlockDelay", self.instance.unlockDelay())
            .await
    }

    /// Free (unchannelled) balance of `who`.
    pub async fn balance_of(&self, who: Address) -> Result<U256> {
        self.chain
            .view("balanceOf", self.instance.balanceOf(who))
            .await
    }

    /// The channel `payer` → `provider`.
    pub async fn channel(&self, payer: Address, provider: Address) -> Result<ChannelState> {
        let c = self
            .chain
            .view("channel", self.instance.channel(payer, provider))
            .await?;
        Ok(ChannelState {
            funds: c.funds,
            redeemed: c.redeemed,
            epoch: c.epoch,
            unlock_at: c.unlockAt,
        })
    }

    /// The contract's own EIP-712 digest of `voucher` (to cross-check off-chain hashing).
    pub async fn voucher_digest(&self, voucher: &Voucher) -> Result<B256> {
        self.chain
            .view(
                "voucherDigest",
                self.instance.voucherDigest(voucher.to_sol()),
            )
            .await
    }

    /// Moves `amount` of the signer's tokens into its free balance, approving the escrow
    /// first when the allowance is short (so users never deal with `approve`).
    pub async fn deposit(&self, amount: U256) -> Result<B256> {
        let me = self.chain.address().ok_or(ChainError::NoSigner)?;
        let token = self.token().await?;
        if token.allowance(me, self.address()).await? < amount {
            token.approve(self.address(), amount).await?;
        }
        let r = self
            .chain
            .send("deposit", self.instance.deposit(amount))
            .await?;
        Ok(r.transaction_hash)
    }

    /// Sends `amount` of the signer's free balance back to it.
    pub async fn withdraw(&self, amount: U256) -> Result<B256> {
        let r = self
            .chain
            .send("withdraw", self.instance.withdraw(amount))
            .await?;
        Ok(r.transaction_hash)
    }

    /// Moves `amount` of the signer's free balance into its channel to `provider`.
    pub async fn fund(&self, provider: Address, amount: U256) -> Result<B256> {
        let r = self
            .chain
            .send("fund", self.instance.fund(provider, amount))
            .await?;
        Ok(r.transaction_hash)
    }

    /// Starts closing the signer's channel to `provider`.
    pub async fn request_unlock(&self, provider: Address) -> Result<B256> {
        let r = self
            .chain
            .send("requestUnlock", self.instance.requestUnlock(provider))
            .await?;
        Ok(r.transaction_hash)
    }

    /// Takes back what the channel to `provider` still holds, after the unlock delay.
    pub async fn reclaim(&self, provider: Address) -> Result<B256> {
        let r = self
            .chain
            .send("reclaim", self.instance.reclaim(provider))
            .await?;
        Ok(r.transaction_hash)
    }

    /// Redeems one voucher for its claim (the signer must be its provider); the escrow
    /// credits what it pays to the provider's free balance ([`Self::withdraw`] takes it out).
    /// Returns the tx hash.
    pub async fn redeem(&self, claim: &Claim) -> Result<B256> {
        let v = &claim.voucher;
        let call =
            self.instance
                .redeem(v.voucher.to_sol(), v.signature.clone().into(), claim.amount);
        let r = self.chain.send("redeem", call).await?;
        Ok(r.transaction_hash)
    }

    /// Simulates redeeming `claims` with `eth_call`: how much a batch would pay now, or the
    /// revert that a real batch would hit (so settlement can drop a bad voucher first).
    pub async fn simulate_redeem_batch(&self, claims: &[Claim]) -> Result<U256> {
        let (vs, sigs, amounts) = split(claims);
        let mut call = self.instance.redeemBatch(vs, sigs, amounts);
        if let Some(me) = self.chain.address() {
            call = call.from(me);
        }
        self.chain.view("redeemBatch", call).await
    }

    /// Redeems many claims in one transaction (all vouchers must be valid, or it reverts);
    /// the total is credited to the provider's free balance.
    pub async fn redeem_batch(&self, claims: &[Claim]) -> Result<B256> {
        let (vs, sigs, amounts) = split(claims);
        let r = self
            .chain
            .send("redeemBatch", self.instance.redeemBatch(vs, sigs, amounts))
            .await?;
        Ok(r.transaction_hash)
    }

    /// Value redeemed in the channel's current service period (what reputation counts).
    pub async fn period_value(&self, payer: Address, provider: Address) -> Result<U256> {
        self.chain
            .view("periodValue", self.instance.periodValue(payer, provider))
            .await
    }
}

type Split = (
    Vec<Escrow::Voucher>,
    Vec<alloy::primitives::Bytes>,
    Vec<U256>,
);

fn split(claims: &[Claim]) -> Split {
    let mut out: Split = (
        Vec::with_capacity(claims.len()),
        Vec::with_capacity(claims.len()),
        Vec::with_capacity(claims.len()),
    );
    for c in claims {
        out.0.push(c.voucher.voucher.to_sol());
        out.1.push(c.voucher.signature.clone().into());
        out.2.push(c.amount);
    }
    out
}
