//! A local anvil node for tests and `khachapuri dev`: spawned on a free port, killed on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use alloy::signers::local::PrivateKeySigner;

use crate::error::{ChainError, Result};

/// Private keys of anvil's first ten dev accounts (mnemonic `test test … junk`). Public
/// knowledge: only for local networks.
pub const DEV_KEYS: [&str; 10] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
];

/// The signer of anvil dev account `index` (0..10; wraps around).
#[allow(clippy::expect_used)]
pub fn dev_signer(index: usize) -> PrivateKeySigner {
    DEV_KEYS[index % DEV_KEYS.len()]
        .parse()
        .expect("the anvil dev keys are valid private keys")
}

/// How to start anvil.
#[derive(Debug, Clone)]
pub struct AnvilOptions {
    /// Port to listen on; 0 lets the OS pick a free one.
    pub port: u16,
    /// Chain id (anvil's default is 31337).
    pub chain_id: Option<u64>,
    /// Seconds between blocks; `None` mines one block per transaction.
    pub block_time: Option<u64>,
    /// How long to wait for anvil to listen.
    pub startup_timeout: Duration,
}

impl Default for AnvilOptions {
    fn default() -> Self {
        Self {
            port: 0,
            chain_id: None,
            block_time: None,
            startup_timeout: Duration::from_secs(30),
        }
    }
}

/// A running anvil child process. Dropping it stops anvil.
#[derive(Debug)]
pub struct Anvil {
    child: Child,
    port: u16,
    chain_id: u64,
}

impl Anvil {
    /// Starts anvil on 127.0.0.1 with a free port and the default chain id 31337.
    pub fn spawn() -> Result<Self> {
        Self::spawn_with(AnvilOptions::default())
    }

    /// Starts anvil with `options`.
    pub fn spawn_with(options: AnvilOptions) -> Result<Self> {
        let bin = find_anvil().ok_or_else(|| {
            ChainError::Anvil(
                "anvil not found: run scripts/setup and `. scripts/env.sh`, or set KHACHAPURI_ANVIL"
                    .into(),
            )
        })?;
        let chain_id = options.chain_id.unwrap_or(31337);
        let mut cmd = Command::new(&bin);
        cmd.args(["--host", "127.0.0.1", "--port", &options.port.to_string()])
            .args(["--chain-id", &chain_id.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(bt) = options.block_time {
            cmd.args(["--block-time", &bt.to_string()]);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| ChainError::Anvil(format!("cannot start {}: {e}", bin.display())))?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return Err(ChainError::Anvil("no stdout pipe".into()));
        };
        // anvil logs every transaction to stdout: keep draining it for the child's whole
        // life, or it blocks on a full pipe.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.trim().strip_prefix("Listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(rest.to_string());
                    }
                } else {
                    tracing::trace!(target: "anvil", "{line}");
                }
            }
        });
        let deadline = Instant::now() + options.startup_timeout;
        let mut anvil = Self {
            child,
            port: 0,
            chain_id,
        };
        let addr = loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(addr) => break addr,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(ChainError::Anvil("anvil exited before listening".into()))
                }
            }
            if let Ok(Some(status)) = anvil.child.try_wait() {
                return Err(ChainError::Anvil(format!("anvil exited: {status}")));
            }
            if Instant::now() > deadline {
                return Err(ChainError::Anvil(format!(
                    "anvil did not listen within {:?}",
                    options.startup_timeout
                )));
            }
        };
        anvil.port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| ChainError::Anvil(format!("cannot parse listen address {addr:?}")))?;
        Ok(anvil)
    }

    /// HTTP JSON-RPC endpoint, e.g. `http://127.0.0.1:8545`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port anvil listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The chain id anvil runs with.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// OS process id (to tell users what to kill if needed).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        // SIGTERM first: through npm's node shim, SIGKILL would orphan the real binary.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finds an anvil executable: `$KHACHAPURI_ANVIL`, then PATH, then
/// `$KHACHAPURI_ROOT/tools/node_modules/.bin`, then this checkout's `tools/`. Prefers the
/// native binary inside npm's `@foundry-rs/anvil-<platform>` package over the node shim.
pub fn find_anvil() -> Option<PathBuf> {
    find_tool("anvil")
}

/// Finds a Foundry tool (`anvil`, `cast`, `forge`) the same way as [`find_anvil`].
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let env_key = format!("KHACHAPURI_{}", name.to_uppercase());
    if let Some(p) = std::env::var_os(&env_key) {
        return Some(PathBuf::from(p));
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(root) = std::env::var_os("KHACHAPURI_ROOT") {
        dirs.push(Path::new(&root).join("tools/node_modules/.bin"));
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/node_modules/.bin"));
    for dir in dirs {
        let shim = dir.join(name);
        if !shim.is_file() {
            continue;
        }
        if dir.ends_with("node_modules/.bin") {
            for platform in ["linux-amd64", "linux-arm64", "darwin-arm64", "darwin-amd64"] {
                let native = dir.join(format!("../@foundry-rs/{name}-{platform}/bin/{name}"));
                if native.is_file() {
                    return Some(native);
                }
            }
        }
        return Some(shim);
    }
    None
}
