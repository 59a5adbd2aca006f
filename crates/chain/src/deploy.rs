//! Deploys and wires the three contracts (what `khachapuri dev` and the tests need).

use alloy::primitives::{Address, U256};
use serde::{Deserialize, Serialize};

use crate::bindings::{Escrow, MockUSDC, Registry};
use crate::client::Chain;
use crate::error::{ChainError, Result};
use crate::registry::RegistryClient;
use crate::token::Token;

/// Parameters of a deployment.
#[derive(Debug, Clone, Copy)]
pub struct DeployOptions {
    /// Seconds between `requestUnlock` and `reclaim`.
    pub unlock_delay: u64,
    /// Seconds a channel must stay funded for a redeem to earn reputation.
    pub min_service_period: u64,
    /// Token base units that must be redeemed in such a period to earn a point: what makes
    /// reputation cost real money (dust channels earn nothing).
    pub min_service_value: U256,
}

impl Default for DeployOptions {
    /// Production-like: one day to unlock; a point per hour of service with at least
    /// 1 USDC redeemed in it.
    fn default() -> Self {
        Self {
            unlock_delay: 24 * 3600,
            min_service_period: 3600,
            min_service_value: U256::from(1_000_000u64),
        }
    }
}

impl DeployOptions {
    /// Short delays for a local dev network (a user can unlock and reclaim in a minute), and
    /// a minimum service value of 1000 base units (0.001 USDC): ten dev calls at the dev
    /// price (0.0001 USDC a call) reach it, so reputation is demonstrable locally within a
    /// minute, while a channel funded with dust (a few base units) never earns a point.
    pub fn dev() -> Self {
        Self {
            unlock_delay: 60,
            min_service_period: 60,
            min_service_value: U256::from(1000u64),
        }
    }
}

/// Where the contracts of one network live; what profiles store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// Chain id.
    pub chain_id: u64,
    /// Payment token (MockUSDC).
    pub token: Address,
    /// Escrow.
    pub escrow: Address,
    /// Registry.
    pub registry: Address,
    /// Block of the first deployment transaction (where event scans can start).
    pub block: u64,
}

/// Deploys MockUSDC, Registry and Escrow with the chain's signer, and tells the registry
/// which escrow may report reputation.
pub async fn deploy_all(chain: &Chain, options: DeployOptions) -> Result<Deployment> {
    if chain.signer().is_none() {
        return Err(ChainError::NoSigner);
    }
    let provider = chain.provider();
    let usdc = chain
        .send("deploy MockUSDC", MockUSDC::deploy_builder(provider))
        .await?;
    let block = usdc.block_number.unwrap_or_default();
    let token = deployed(usdc.contract_address, "MockUSDC")?;
    let registry = chain
        .send(
            "deploy Registry",
            Registry::deploy_builder(
                provider,
                options.min_service_period,
                options.min_service_value,
            ),
        )
        .await?;
    let registry = deployed(registry.contract_address, "Registry")?;
    let escrow = chain
        .send(
            "deploy Escrow",
            Escrow::deploy_builder(provider, token, options.unlock_delay, registry),
        )
        .await?;
    let escrow = deployed(escrow.contract_address, "Escrow")?;
    RegistryClient::new(chain, registry)
        .set_escrow(escrow)
        .await?;
    Ok(Deployment {
        chain_id: chain.chain_id(),
        token,
        escrow,
        registry,
        block,
    })
}

/// Mints MockUSDC to each of `accounts` (dev wallets).
pub async fn mint_to(
    chain: &Chain,
    token: Address,
    accounts: &[Address],
    amount: U256,
) -> Result<()> {
    let token = Token::new(chain, token);
    for a in accounts {
        token.mint(*a, amount).await?;
    }
    Ok(())
}

fn deployed(addr: Option<Address>, what: &str) -> Result<Address> {
    addr.ok_or_else(|| {
        ChainError::Rpc(format!("{what} deployment receipt has no contract address"))
    })
}
