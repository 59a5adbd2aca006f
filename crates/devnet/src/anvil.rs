//! A local anvil node for tests and `khachapuri dev`: spawned on a free port, killed on
//! drop, and killed by the kernel when the process that started it dies (a crashed or
//! SIGKILLed `khachapuri dev` or test must not leave chains running).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{DevnetError, Result};

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
///
/// The child is spawned and owned by a keeper thread that lives exactly as long as this
/// value: Linux's parent-death signal is tied to the thread that forked, so spawning from a
/// short-lived thread (a blocking-pool worker) would kill anvil early, and spawning from
/// the caller's thread would tie anvil to whatever that thread is.
#[derive(Debug)]
pub struct Anvil {
    pid: u32,
    port: u16,
    chain_id: u64,
    /// Dropping it (or sending) tells the keeper to stop the child.
    stop: Option<mpsc::Sender<()>>,
    keeper: Option<std::thread::JoinHandle<()>>,
}

impl Anvil {
    /// Starts anvil on 127.0.0.1 with a free port and the default chain id 31337.
    pub fn spawn() -> Result<Self> {
        Self::spawn_with(AnvilOptions::default())
    }

    /// Starts anvil with `options`.
    pub fn spawn_with(options: AnvilOptions) -> Result<Self> {
        let bin = find_anvil().ok_or_else(|| {
            DevnetError::Anvil(
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
        crate::death::die_with_parent(&mut cmd);
        let (spawned_tx, spawned_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let keeper = std::thread::Builder::new()
            .name("anvil-keeper".into())
            .spawn(move || {
                let mut child = match cmd.spawn() {
                    Ok(child) => child,
                    Err(e) => {
                        let _ = spawned_tx.send(Err(e));
                        return;
                    }
                };
                let _ = spawned_tx.send(Ok((child.id(), child.stdout.take())));
                // Blocks until the Anvil value is dropped (the sender goes away).
                let _ = stop_rx.recv();
                terminate(&mut child);
            })
            .map_err(|e| DevnetError::Anvil(format!("cannot start the anvil keeper: {e}")))?;
        let (pid, stdout) = match spawned_rx.recv() {
            Ok(Ok(spawned)) => spawned,
            Ok(Err(e)) => {
                return Err(DevnetError::Anvil(format!(
                    "cannot start {}: {e}",
                    bin.display()
                )))
            }
            Err(_) => return Err(DevnetError::Anvil("the anvil keeper died".into())),
        };
        let mut anvil = Self {
            pid,
            port: 0,
            chain_id,
            stop: Some(stop_tx),
            keeper: Some(keeper),
        };
        let Some(stdout) = stdout else {
            return Err(DevnetError::Anvil("no stdout pipe".into()));
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
        let addr = match rx.recv_timeout(options.startup_timeout) {
            Ok(addr) => addr,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(DevnetError::Anvil(format!(
                    "anvil did not listen within {:?}",
                    options.startup_timeout
                )))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(DevnetError::Anvil("anvil exited before listening".into()))
            }
        };
        anvil.port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| DevnetError::Anvil(format!("cannot parse listen address {addr:?}")))?;
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
        self.pid
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.join();
        }
    }
}

/// Stops `child`: SIGTERM first (through npm's node shim, SIGKILL would orphan the real
/// binary), SIGKILL after 3 s.
fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
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
