//! What the chain commands (`wallet`, `escrow`, `registry`, `provider register`) share:
//! reading the network from the active profile, loading the wallet, resolving providers.
//!
//! Profile keys (in the profile's `extra` map, written by `khachapuri dev`): `rpc_url`,
//! `chain_id`, `escrow`, `registry`, `token`; the wallet is `dev_key` (an anvil key in the
//! clear, dev networks only) or `keystore` (a path; default `keys/wallet.json` in the home).

use std::path::PathBuf;

use anyhow::Context;
use khachapuri_chain::{
    wallet, Address, Chain, EscrowClient, PrivateKeySigner, RegistryClient, Token,
};

use crate::home::{Home, Profile};
use crate::output::hint;

/// Environment variable holding the keystore password (never pass it in argv).
pub const PASSWORD_ENV: &str = "KHACHAPURI_PASSWORD";

/// The network of the active profile.
#[derive(Debug, Clone)]
pub struct Network {
    /// JSON-RPC endpoint.
    pub rpc_url: String,
    /// Chain id the profile expects.
    pub chain_id: Option<u64>,
    /// Escrow contract.
    pub escrow: Option<Address>,
    /// Registry contract.
    pub registry: Option<Address>,
    /// Payment token.
    pub token: Option<Address>,
}

fn extra_str<'a>(profile: &'a Profile, key: &str) -> Option<&'a str> {
    profile.extra.get(key).and_then(|v| v.as_str())
}

fn extra_addr(profile: &Profile, key: &str) -> anyhow::Result<Option<Address>> {
    match extra_str(profile, key) {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .with_context(|| format!("profile key `{key}` is not an address: {s:?}")),
    }
}

impl Network {
    /// Reads the network keys of `profile`.
    pub fn from_profile(profile: &Profile) -> anyhow::Result<Self> {
        let rpc_url = extra_str(profile, "rpc_url").ok_or_else(|| {
            hint(
                "the active profile has no chain (`rpc_url` is missing)",
                "run `khachapuri dev` to start a local network, or add rpc_url, chain_id, escrow, registry and token to the profile",
            )
        })?;
        let chain_id = match profile.extra.get("chain_id") {
            None => None,
            Some(v) => Some(
                v.as_integer()
                    .and_then(|i| u64::try_from(i).ok())
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    .context("profile key `chain_id` is not a number")?,
            ),
        };
        Ok(Self {
            rpc_url: rpc_url.to_string(),
            chain_id,
            escrow: extra_addr(profile, "escrow")?,
            registry: extra_addr(profile, "registry")?,
            token: extra_addr(profile, "token")?,
        })
    }

    /// Connects, checking the node is the chain the profile names.
    pub async fn connect(&self, signer: Option<PrivateKeySigner>) -> anyhow::Result<Chain> {
        let chain = Chain::connect(&self.rpc_url, signer).await.map_err(|e| {
            hint(
                format!("cannot reach the chain at {}: {e}", self.rpc_url),
                "is `khachapuri dev` (or your node) running?",
            )
        })?;
        if let Some(want) = self.chain_id {
            if chain.chain_id() != want {
                return Err(hint(
                    format!(
                        "{} is chain {}, but the profile expects chain {want}",
                        self.rpc_url,
                        chain.chain_id()
                    ),
                    "restart `khachapuri dev` or fix chain_id in the profile",
                ));
            }
        }
        Ok(chain)
    }

    /// The escrow client (errors with a hint when the profile has no escrow).
    pub fn escrow(&self, chain: &Chain) -> anyhow::Result<EscrowClient> {
        let addr = self.escrow.ok_or_else(|| {
            hint(
                "the active profile has no `escrow` address",
                "run `khachapuri dev`",
            )
        })?;
        Ok(EscrowClient::new(chain, addr))
    }

    /// The registry client.
    pub fn registry(&self, chain: &Chain) -> anyhow::Result<RegistryClient> {
        let addr = self.registry.ok_or_else(|| {
            hint(
                "the active profile has no `registry` address",
                "run `khachapuri dev`",
            )
        })?;
        Ok(RegistryClient::new(chain, addr))
    }

    /// The payment token: the profile's, or the escrow's.
    pub async fn token(&self, chain: &Chain) -> anyhow::Result<Token> {
        match self.token {
            Some(t) => Ok(Token::new(chain, t)),
            None => Ok(self.escrow(chain)?.token().await?),
        }
    }
}

/// The active profile and its network.
pub fn active(home: &Home) -> anyhow::Result<(Profile, Network)> {
    let profile = home.active_profile()?;
    let net = Network::from_profile(&profile)?;
    Ok((profile, net))
}

/// Where the wallet keystore lives for `profile`.
pub fn keystore_path(home: &Home, profile: &Profile) -> PathBuf {
    match extra_str(profile, "keystore") {
        Some(p) => {
            let p = PathBuf::from(p);
            if p.is_absolute() {
                p
            } else {
                home.root().join(p)
            }
        }
        None => home.root().join("keys").join("wallet.json"),
    }
}

/// The wallet's address without unlocking it.
pub fn wallet_address(home: &Home, profile: &Profile) -> anyhow::Result<Address> {
    if let Some(key) = extra_str(profile, "dev_key") {
        return Ok(wallet::parse_private_key(key)?.address());
    }
    let path = keystore_path(home, profile);
    if !path.exists() {
        return Err(no_wallet(&path));
    }
    Ok(wallet::keystore_address(&path)?)
}

/// Loads the signing key: the profile's dev key, or the keystore (password from
/// `KHACHAPURI_PASSWORD` or a prompt).
pub fn load_signer(home: &Home, profile: &Profile) -> anyhow::Result<PrivateKeySigner> {
    if let Some(key) = extra_str(profile, "dev_key") {
        return wallet::parse_private_key(key).context("profile key `dev_key`");
    }
    let path = keystore_path(home, profile);
    if !path.exists() {
        return Err(no_wallet(&path));
    }
    let password = password(&format!("password for {}: ", path.display()), false)?;
    Ok(wallet::open_keystore(&path, &password)?)
}

fn no_wallet(path: &std::path::Path) -> anyhow::Error {
    hint(
        format!("no wallet at {}", path.display()),
        "create one with `khachapuri wallet new`, import one with `khachapuri wallet import`, or run `khachapuri dev`",
    )
}

/// Reads a password from `KHACHAPURI_PASSWORD` or the terminal (twice when `confirm`).
pub fn password(prompt: &str, confirm: bool) -> anyhow::Result<String> {
    if let Ok(p) = std::env::var(PASSWORD_ENV) {
        return Ok(p);
    }
    let first = rpassword::prompt_password(prompt).map_err(|e| {
        hint(
            format!("cannot read a password from the terminal: {e}"),
            format!("set {PASSWORD_ENV} in the environment"),
        )
    })?;
    if confirm {
        let again = rpassword::prompt_password("again: ")?;
        if again != first {
            anyhow::bail!("the passwords differ");
        }
    }
    Ok(first)
}

/// Resolves PROVIDER: a 0x address, or a registry name (to its operator address).
pub async fn resolve_provider(
    net: &Network,
    chain: &Chain,
    input: &str,
) -> anyhow::Result<Address> {
    if input.starts_with("0x") {
        return input
            .parse()
            .with_context(|| format!("{input:?} is not an address"));
    }
    let record = net.registry(chain)?.resolve(input).await?;
    match record {
        Some(r) => Ok(r.operator),
        None => Err(hint(
            format!("no provider named {input:?} in the registry"),
            "list them with `khachapuri registry list`, or pass an 0x address",
        )),
    }
}
