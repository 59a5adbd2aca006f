//! The payment token (USDC, or MockUSDC on dev networks).

use alloy::primitives::{Address, B256, U256};
use alloy::providers::DynProvider;

use crate::bindings::MockUSDC::{self, MockUSDCInstance};
use crate::client::Chain;
use crate::error::Result;

/// An ERC-20 token client (MockUSDC's ABI is a superset of what USDC offers; `mint` only
/// works on MockUSDC).
#[derive(Clone, Debug)]
pub struct Token {
    chain: Chain,
    instance: MockUSDCInstance<DynProvider>,
}

impl Token {
    /// A client for the token at `address`.
    pub fn new(chain: &Chain, address: Address) -> Self {
        Self {
            chain: chain.clone(),
            instance: MockUSDC::new(address, chain.provider().clone()),
        }
    }

    /// The token's address.
    pub fn address(&self) -> Address {
        *self.instance.address()
    }

    /// Balance of `who` in base units.
    pub async fn balance_of(&self, who: Address) -> Result<U256> {
        self.chain
            .view("balanceOf", self.instance.balanceOf(who))
            .await
    }

    /// How much `spender` may pull from `owner`.
    pub async fn allowance(&self, owner: Address, spender: Address) -> Result<U256> {
        self.chain
            .view("allowance", self.instance.allowance(owner, spender))
            .await
    }

    /// Token decimals (6 for USDC).
    pub async fn decimals(&self) -> Result<u8> {
        self.chain.view("decimals", self.instance.decimals()).await
    }

    /// Lets `spender` pull up to `amount` from the signer.
    pub async fn approve(&self, spender: Address, amount: U256) -> Result<B256> {
        let r = self
            .chain
            .send("approve", self.instance.approve(spender, amount))
            .await?;
        Ok(r.transaction_hash)
    }

    /// Sends `amount` from the signer to `to`.
    pub async fn transfer(&self, to: Address, amount: U256) -> Result<B256> {
        let r = self
            .chain
            .send("transfer", self.instance.transfer(to, amount))
            .await?;
        Ok(r.transaction_hash)
    }

    /// Mints `amount` to `to` (MockUSDC on dev networks only).
    pub async fn mint(&self, to: Address, amount: U256) -> Result<B256> {
        let r = self
            .chain
            .send("mint", self.instance.mint(to, amount))
            .await?;
        Ok(r.transaction_hash)
    }
}
