//! A connection to an Ethereum JSON-RPC node and the low-level plumbing every typed client
//! shares: timeouts on each call, receipts, and decoding reverts into readable errors.

use std::future::IntoFuture;
use std::time::Duration;

use alloy::contract::{CallBuilder, CallDecoder};
use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::http::reqwest;

use crate::bindings::{Escrow, MockUSDC, Registry};
use crate::error::{ChainError, Result};

/// Default time limit for one RPC call (and for a transaction to be mined).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A JSON-RPC connection, optionally with a signing key for transactions.
///
/// Cheap to clone (the HTTP client is shared). Every call is bounded by a timeout so a dead
/// node never hangs a command or a settlement loop.
#[derive(Clone, Debug)]
pub struct Chain {
    provider: DynProvider,
    signer: Option<PrivateKeySigner>,
    chain_id: u64,
    timeout: Duration,
}

impl Chain {
    /// Connects to `rpc_url` (read-only when `signer` is `None`) and reads the chain id.
    pub async fn connect(rpc_url: &str, signer: Option<PrivateKeySigner>) -> Result<Self> {
        Self::connect_with_timeout(rpc_url, signer, DEFAULT_TIMEOUT).await
    }

    /// [`Chain::connect`] with a custom per-call timeout.
    pub async fn connect_with_timeout(
        rpc_url: &str,
        signer: Option<PrivateKeySigner>,
        timeout: Duration,
    ) -> Result<Self> {
        let url: reqwest::Url = rpc_url
            .parse()
            .map_err(|e| ChainError::Rpc(format!("invalid RPC URL {rpc_url:?}: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| ChainError::Rpc(e.to_string()))?;
        // Nonces are read from the node for every transaction (not cached): a transaction
        // that fails gas estimation must not burn a nonce, or every later one would wait
        // forever behind the gap.
        let builder = ProviderBuilder::new()
            .disable_recommended_fillers()
            .with_gas_estimation()
            .with_simple_nonce_management()
            .fetch_chain_id();
        let provider = match &signer {
            Some(s) => builder
                .wallet(EthereumWallet::from(s.clone()))
                .connect_reqwest(http, url)
                .erased(),
            None => builder.connect_reqwest(http, url).erased(),
        };
        let chain_id = with_timeout(timeout, "eth_chainId", provider.get_chain_id())
            .await?
            .map_err(rpc_err)?;
        Ok(Self {
            provider,
            signer,
            chain_id,
            timeout,
        })
    }

    /// The underlying alloy provider, for calls this crate does not wrap.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// The chain id the node reported at connect time.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// Address of the signing key, if any.
    pub fn address(&self) -> Option<Address> {
        self.signer.as_ref().map(|s| s.address())
    }

    /// The signing key, if any (to sign vouchers with the same identity).
    pub fn signer(&self) -> Option<&PrivateKeySigner> {
        self.signer.as_ref()
    }

    /// Per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The same connection signing with another key.
    pub async fn with_signer(&self, rpc_url: &str, signer: PrivateKeySigner) -> Result<Self> {
        Self::connect_with_timeout(rpc_url, Some(signer), self.timeout).await
    }

    /// Native (gas) balance of `who`, in wei.
    pub async fn eth_balance(&self, who: Address) -> Result<U256> {
        self.timed("eth_getBalance", self.provider.get_balance(who))
            .await?
            .map_err(rpc_err)
    }

    /// Latest block number.
    pub async fn block_number(&self) -> Result<u64> {
        self.timed("eth_blockNumber", self.provider.get_block_number())
            .await?
            .map_err(rpc_err)
    }

    /// Gas a mined transaction used (benchmarks compare settlement strategies by it).
    pub async fn gas_used(&self, tx: B256) -> Result<u64> {
        let receipt = self
            .timed(
                "eth_getTransactionReceipt",
                self.provider.get_transaction_receipt(tx),
            )
            .await?
            .map_err(rpc_err)?
            .ok_or_else(|| ChainError::Rpc(format!("no receipt for transaction {tx}")))?;
        Ok(receipt.gas_used)
    }

    /// Whether code is deployed at `address` (catches a profile pointing at a fresh node).
    pub async fn has_code(&self, address: Address) -> Result<bool> {
        let code = self
            .timed("eth_getCode", self.provider.get_code_at(address))
            .await?
            .map_err(rpc_err)?;
        Ok(!code.is_empty())
    }

    pub(crate) async fn timed<F: IntoFuture>(
        &self,
        what: &'static str,
        fut: F,
    ) -> Result<F::Output> {
        with_timeout(self.timeout, what, fut).await
    }

    /// Runs a view call, decoding a revert into [`ChainError::Reverted`].
    pub(crate) async fn view<D: CallDecoder>(
        &self,
        what: &'static str,
        call: CallBuilder<&DynProvider, D>,
    ) -> Result<D::CallOutput> {
        self.timed(what, call.call()).await?.map_err(contract_err)
    }

    /// Sends a transaction and waits for its receipt; a revert (at estimation or on
    /// chain) becomes [`ChainError::Reverted`].
    pub(crate) async fn send<D: CallDecoder>(
        &self,
        what: &'static str,
        call: CallBuilder<&DynProvider, D>,
    ) -> Result<TransactionReceipt> {
        if self.signer.is_none() {
            return Err(ChainError::NoSigner);
        }
        let pending = self.timed(what, call.send()).await?.map_err(contract_err)?;
        self.wait_receipt(*pending.tx_hash(), what).await
    }

    /// Polls for a receipt (anvil mines at once; real chains take seconds).
    pub(crate) async fn wait_receipt(
        &self,
        hash: B256,
        what: &'static str,
    ) -> Result<TransactionReceipt> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut delay = Duration::from_millis(10);
        loop {
            let receipt = self
                .timed(what, self.provider.get_transaction_receipt(hash))
                .await?
                .map_err(rpc_err)?;
            if let Some(r) = receipt {
                if !r.status() {
                    return Err(ChainError::Reverted {
                        reason: format!("{what} (tx {hash}) failed on chain"),
                    });
                }
                return Ok(r);
            }
            if tokio::time::Instant::now() + delay > deadline {
                return Err(ChainError::Timeout(self.timeout, what));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(500));
        }
    }
}

async fn with_timeout<F: IntoFuture>(
    timeout: Duration,
    what: &'static str,
    fut: F,
) -> Result<F::Output> {
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| ChainError::Timeout(timeout, what))
}

pub(crate) fn rpc_err(e: impl std::fmt::Display) -> ChainError {
    ChainError::Rpc(e.to_string())
}

/// Decodes a contract error with every ABI this crate knows, so users read
/// `WrongEpoch { voucherEpoch: 1, channelEpoch: 0 }` rather than hex.
pub(crate) fn contract_err(e: alloy::contract::Error) -> ChainError {
    if let Some(err) = e.as_decoded_interface_error::<Escrow::EscrowErrors>() {
        return ChainError::Reverted {
            reason: format!("{err:?}"),
        };
    }
    if let Some(err) = e.as_decoded_interface_error::<Registry::RegistryErrors>() {
        return ChainError::Reverted {
            reason: format!("{err:?}"),
        };
    }
    if let Some(err) = e.as_decoded_interface_error::<MockUSDC::MockUSDCErrors>() {
        return ChainError::Reverted {
            reason: format!("{err:?}"),
        };
    }
    if let Some(data) = e.as_revert_data() {
        return ChainError::Reverted {
            reason: format!("revert data {data}"),
        };
    }
    let text = e.to_string();
    if text.contains("revert") {
        return ChainError::Reverted { reason: text };
    }
    ChainError::Rpc(text)
}
