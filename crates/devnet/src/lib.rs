//! A whole local Khachapuri network as one value ([`Devnet`]): anvil with the contracts,
//! dev wallets holding MockUSDC, a content store and N registered providers, started and
//! stopped as a unit. `khachapuri dev`, the integration tests and the benchmarks use it
//! alike; anvil control and the public dev keys live here, not in the production chain
//! library.

mod anvil;
mod contracts;
mod death;
mod error;
mod gateway;
mod keys;
mod network;
mod provider;

pub use anvil::{find_anvil, find_tool, Anvil, AnvilOptions};
pub use contracts::{advance_time, dev_channel, dev_network, mine};
pub use error::{DevnetError, Result};
pub use gateway::dev_gateway_config;
pub use keys::{dev_signer, DEV_KEYS};
pub use network::{
    provider_name, provider_signer, DevProvider, Devnet, DevnetOptions, MAX_PROVIDERS,
};
