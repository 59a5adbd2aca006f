//! The caller's voucher state on disk: one small JSON file holding a [`ChannelRecord`] per
//! (chain id, escrow, provider, payer), plus which provider answered at which endpoint.
//!
//! Vouchers are cumulative, so the last signed amount must survive between CLI runs or
//! every run would re-sign from scratch. Writes go to a temp file that is fsync'd and then
//! renamed over the old one, so a crash leaves either the old or the new state, never half
//! of one. Runs that update the state hold [`PayerStore::lock`] (an OS file lock on a
//! sibling `.lock` file) from load to save, so two `khachapuri call`s at once neither lose
//! each other's records nor both sign the same step ahead. Were an update lost anyway (a
//! tool ignoring the lock), it stays safe: the next 402 makes the payer sign again from the
//! provider's numbers, bounded as [`crate::Payer::pay`] explains.
//!
//! Every method blocks on the file system (a few KB): call from `spawn_blocking` in async
//! code.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use khachapuri_chain::Address;
use serde::{Deserialize, Serialize};

use crate::client::ChannelRecord;
use crate::error::{PaymentError, Result};

/// Version of the state file format.
const VERSION: u32 = 1;

/// Options that create a file owner-only (0600) from the start: the state holds signed
/// vouchers, which are money.
fn private_file() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Which channel a record is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelKey {
    /// Chain id of the escrow.
    pub chain_id: u64,
    /// Escrow contract.
    pub escrow: Address,
    /// Provider paid.
    pub provider: Address,
    /// Paying wallet.
    pub payer: Address,
}

impl ChannelKey {
    /// The key in the state file: `chain:escrow:provider:payer`, addresses lower-case.
    pub fn as_string(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.chain_id,
            self.escrow.to_string().to_lowercase(),
            self.provider.to_string().to_lowercase(),
            self.payer.to_string().to_lowercase()
        )
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    #[serde(default)]
    channels: BTreeMap<String, ChannelRecord>,
    /// Endpoint origin → provider address learned from a 402, for targets given as URLs.
    #[serde(default)]
    endpoints: BTreeMap<String, Address>,
}

/// Exclusive hold on a [`PayerStore`] across processes; released on drop (closing the file
/// releases the OS lock, also when the process dies).
#[derive(Debug)]
pub struct StoreLock {
    _file: std::fs::File,
}

/// The voucher state file of one CLI home.
#[derive(Debug, Clone)]
pub struct PayerStore {
    path: PathBuf,
}

impl PayerStore {
    /// The store at `path` (created on the first save).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, reason: impl std::fmt::Display) -> PaymentError {
        PaymentError::State {
            path: self.path.display().to_string(),
            reason: reason.to_string(),
        }
    }

    fn read(&self) -> Result<StateFile> {
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(StateFile {
                    version: VERSION,
                    ..StateFile::default()
                })
            }
            Err(e) => return Err(self.err(e)),
        };
        let file: StateFile = serde_json::from_slice(&text).map_err(|e| self.err(e))?;
        if file.version != VERSION {
            return Err(self.err(format!(
                "format version {} (this build reads {VERSION})",
                file.version
            )));
        }
        Ok(file)
    }

    fn write(&self, file: &StateFile) -> Result<()> {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| self.err(e))?;
        let json = serde_json::to_vec_pretty(file).map_err(|e| self.err(e))?;
        // A per-process temp name: two runs never write into each other's temp file.
        let tmp = self
            .path
            .with_extension(format!("json.tmp.{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = private_file().truncate(true).open(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.err(e)
        })
    }

    /// Waits for and takes the exclusive lock of this state file. Hold it from `load` to
    /// `save` of a read-sign-write step. Blocks: call from `spawn_blocking`.
    pub fn lock(&self) -> Result<StoreLock> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| self.err(e))?;
        }
        let file = private_file()
            .truncate(false)
            .write(true)
            .open(self.path.with_extension("json.lock"))
            .map_err(|e| self.err(e))?;
        file.lock()
            .map_err(|e| self.err(format!("cannot lock: {e}")))?;
        Ok(StoreLock { _file: file })
    }

    /// The record of `key`, if any.
    pub fn load(&self, key: &ChannelKey) -> Result<Option<ChannelRecord>> {
        Ok(self.read()?.channels.remove(&key.as_string()))
    }

    /// Replaces the record of `key` (atomically, with the rest of the file).
    pub fn save(&self, key: &ChannelKey, record: &ChannelRecord) -> Result<()> {
        let mut file = self.read()?;
        file.channels.insert(key.as_string(), record.clone());
        self.write(&file)
    }

    /// The provider last seen answering at `endpoint` (an origin such as
    /// `http://127.0.0.1:8080`).
    pub fn provider_at(&self, endpoint: &str) -> Result<Option<Address>> {
        Ok(self.read()?.endpoints.get(endpoint).copied())
    }

    /// Remembers that `provider` answers at `endpoint`.
    pub fn remember_endpoint(&self, endpoint: &str, provider: Address) -> Result<()> {
        let mut file = self.read()?;
        if file.endpoints.get(endpoint) == Some(&provider) {
            return Ok(());
        }
        file.endpoints.insert(endpoint.to_string(), provider);
        self.write(&file)
    }
}

/// Signs the owner's voucher for a sponsored deployment (`deploy --sponsor AMOUNT`), at the
/// channel's current `epoch`.
///
/// Vouchers are cumulative for the channel: the voucher signed is what this wallet already
/// signed in that epoch (its own paid calls, other sponsored deployments: the state file
/// knows) plus `amount`. The file is updated under its lock, so later calls and
/// sponsorships stack on top instead of re-signing from the same base. Blocking (file
/// lock, fsync): call it off the reactor.
pub fn sign_sponsor_voucher(
    store: &PayerStore,
    key: &ChannelKey,
    owner: &khachapuri_chain::PrivateKeySigner,
    epoch: u64,
    amount: khachapuri_chain::U256,
) -> Result<khachapuri_chain::SignedVoucher> {
    let _lock = store.lock()?;
    let mut rec = match store.load(key)? {
        Some(r) if r.epoch == epoch => r,
        _ => crate::ChannelRecord::new(epoch),
    };
    let voucher = khachapuri_chain::Voucher {
        payer: owner.address(),
        provider: key.provider,
        epoch,
        amount: rec.signed() + amount,
    };
    let signed = voucher.sign(owner, key.chain_id, key.escrow)?;
    rec.voucher = Some(signed.clone());
    store.save(key, &rec)?;
    Ok(signed)
}
