//! The chain side of a local network: the contracts deployed with dev delays, MockUSDC for
//! every dev account, channels funded in one call, and anvil's clock and miner for tests.

use std::time::Duration;

use alloy::providers::Provider as _;
use khachapuri_chain::{
    deploy_all, mint_to, Address, Chain, DeployOptions, Deployment, EscrowClient, U256,
};

use crate::anvil::Anvil;
use crate::error::{DevnetError, Result};
use crate::keys::{dev_signer, DEV_KEYS};

/// How long one anvil control call may take (anvil answers in milliseconds).
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

/// A ready local network on a running anvil: contracts deployed by dev account 0 with
/// [`DeployOptions::dev`], and `mint_each` MockUSDC minted to each of the ten dev accounts.
/// Returns the deployer's connection (dev account 0) and the deployment. What
/// `khachapuri dev` and integration tests start from.
pub async fn dev_network(anvil: &Anvil, mint_each: U256) -> Result<(Chain, Deployment)> {
    let deployer = Chain::connect(&anvil.endpoint(), Some(dev_signer(0)))
        .await
        .map_err(DevnetError::chain("cannot connect to the local chain"))?;
    let deployment = deploy_all(&deployer, DeployOptions::dev())
        .await
        .map_err(DevnetError::chain("cannot deploy the contracts"))?;
    let accounts: Vec<Address> = (0..DEV_KEYS.len())
        .map(|i| dev_signer(i).address())
        .collect();
    mint_to(&deployer, deployment.token, &accounts, mint_each)
        .await
        .map_err(DevnetError::chain(
            "cannot mint MockUSDC to the dev accounts",
        ))?;
    Ok((deployer, deployment))
}

/// A paying wallet on a [`dev_network`]: dev account `payer` connects, deposits `deposit`
/// USDC base units into the escrow and funds a channel of `fund` to `provider`. Returns the
/// payer's connection and escrow client: the common start of every payment test.
pub async fn dev_channel(
    anvil: &Anvil,
    deployment: &Deployment,
    payer: usize,
    provider: Address,
    deposit: U256,
    fund: U256,
) -> Result<(Chain, EscrowClient)> {
    let chain = Chain::connect(&anvil.endpoint(), Some(dev_signer(payer)))
        .await
        .map_err(DevnetError::chain("cannot connect to the local chain"))?;
    let escrow = EscrowClient::new(&chain, deployment.escrow);
    escrow
        .deposit(deposit)
        .await
        .map_err(DevnetError::chain("cannot deposit into the escrow"))?;
    escrow
        .fund(provider, fund)
        .await
        .map_err(DevnetError::chain("cannot fund the channel"))?;
    Ok((chain, escrow))
}

/// Moves a local chain's clock `secs` ahead and mines a block, so tests can pass an unlock
/// delay or a service period without waiting. anvil only: a real chain refuses.
pub async fn advance_time(chain: &Chain, secs: u64) -> Result<()> {
    control(chain, "evm_increaseTime", (secs,)).await?;
    control(chain, "evm_mine", ()).await
}

/// Mines `blocks` empty blocks at once, so tests can put a node many blocks behind (as
/// after downtime) without sending transactions. anvil only.
pub async fn mine(chain: &Chain, blocks: u64) -> Result<()> {
    control(chain, "anvil_mine", (U256::from(blocks),)).await
}

async fn control<P>(chain: &Chain, method: &'static str, params: P) -> Result<()>
where
    P: serde::Serialize + Clone + Send + Sync + Unpin + std::fmt::Debug + 'static,
{
    let call = chain
        .provider()
        .raw_request::<P, serde_json::Value>(method.into(), params);
    let fail = |reason: String| DevnetError::Anvil(format!("{method}: {reason}"));
    match tokio::time::timeout(CONTROL_TIMEOUT, call).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(fail(e.to_string())),
        Err(_) => Err(fail(format!("no answer within {CONTROL_TIMEOUT:?}"))),
    }
}
