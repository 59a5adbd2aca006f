//! `khachapuri deploy`: build (for a folder), upload the artifact, write and upload the
//! deployment spec, print the callable CID.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use khachapuri_types::{Envelope, Limits, RuntimeKind, Spec};
use serde_json::json;

use crate::home::Home;
use crate::manifest::{parse_env_file, Manifest};
use crate::output::{hint, Printer};

/// Arguments of `deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Function folder (with khachapuri.toml) or a built `.wasm` file.
    #[arg(default_value = ".")]
    pub target: PathBuf,
    /// Publish a public spec any provider may run (no secrets).
    #[arg(long)]
    pub public: bool,
    /// Environment variable for the function, `K=V` (repeatable).
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// File of `K=V` lines (secrets; kept out of public specs).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// Runtime: wasi-http, wagi or process (default: manifest, else detected from the file).
    #[arg(long)]
    pub runtime: Option<RuntimeKind>,
    /// Per-call timeout in milliseconds.
    #[arg(long, value_name = "MS")]
    pub timeout: Option<u64>,
    /// Linear memory cap in MiB.
    #[arg(long, value_name = "MB")]
    pub memory: Option<u64>,
    /// Print `{"cid", "artifact_cid", "url"}` as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Deploys and prints the callable CID (or JSON).
pub async fn run(args: DeployArgs, home: &Home, printer: &Printer) -> anyhow::Result<()> {
    let profile = home.active_profile()?;
    let store_url = profile.store_url.clone().ok_or_else(|| {
        hint(
            "no store to publish to: the active profile has no store_url",
            "start a local network with `khachapuri dev` (it activates the `dev` profile)",
        )
    })?;

    let (artifact_path, manifest) = if args.target.is_dir() {
        let manifest = Manifest::load(&args.target)?;
        let path = super::build::build(&args.target, &manifest, printer).await?;
        (path, Some(manifest))
    } else if args.target.is_file() {
        (args.target.clone(), None)
    } else {
        return Err(hint(
            format!("{} does not exist", args.target.display()),
            "pass a function folder (with khachapuri.toml) or a .wasm file",
        ));
    };
    let wasm = tokio::fs::read(&artifact_path)
        .await
        .with_context(|| format!("cannot read {}", artifact_path.display()))?;
    let runtime = match (args.runtime, &manifest) {
        (Some(r), _) => r,
        (None, Some(m)) => m.runtime,
        (None, None) => detect_runtime(&wasm)?,
    };

    let mut env: BTreeMap<String, String> =
        manifest.as_ref().map(|m| m.env.clone()).unwrap_or_default();
    for kv in &args.env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| hint(format!("--env {kv:?} has no '='"), "write --env NAME=value"))?;
        env.insert(k.to_string(), v.to_string());
    }
    let mut env_files: Vec<PathBuf> = args.env_files.clone();
    if let Some(m) = &manifest {
        env_files.extend(m.env_files.iter().map(|f| args.target.join(f)));
    }
    if args.public && !env_files.is_empty() {
        return Err(hint(
            "env files hold secrets, and a public spec is readable by anyone",
            "drop --public to seal the spec to one provider, or pass plain values with --env",
        ));
    }
    for f in &env_files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        env.extend(parse_env_file(&text).with_context(|| format!("in {}", f.display()))?);
    }

    let kubo = khachapuri_store::KuboClient::new(
        store_url.as_str(),
        khachapuri_store::Limits {
            block_timeout: Duration::from_secs(300),
            ..Default::default()
        },
    )
    .context("bad store URL in the profile")?;
    printer.status(format!(
        "uploading {} ({} bytes)",
        artifact_path.display(),
        wasm.len()
    ));
    let artifact_cid = publish(&kubo, "artifact.wasm", wasm.into()).await.map_err(|e| {
        hint(
            format!("cannot upload the artifact to {store_url}: {e:#}"),
            "is `khachapuri dev` (or your IPFS node) running? `khachapuri info` shows the store URL",
        )
    })?;

    let created_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut spec = Spec::new(artifact_cid.to_string(), runtime, created_at);
    spec.env = env;
    spec.limits = Limits {
        timeout_ms: args
            .timeout
            .or(manifest.as_ref().and_then(|m| m.limits.timeout_ms)),
        memory_mb: args
            .memory
            .or(manifest.as_ref().and_then(|m| m.limits.memory_mb)),
        ..manifest
            .as_ref()
            .map(|m| m.limits.clone())
            .unwrap_or_default()
    };
    spec.validate()
        .map_err(|e| hint(e.to_string(), "check --env names and limits"))?;
    if !args.public {
        printer.status("note: sealed deployments arrive with paid calls; publishing a public spec");
    }
    let envelope = Envelope::Public { spec };
    let cid = publish(&kubo, "spec.json", envelope.to_bytes().into())
        .await
        .with_context(|| format!("cannot upload the spec to {store_url}"))?;

    let url = profile
        .providers
        .first()
        .map(|p| format!("{}/{}", p.url.trim_end_matches('/'), cid));
    if args.json {
        printer.json(
            &json!({"cid": cid.to_string(), "artifact_cid": artifact_cid.to_string(), "url": url}),
        );
    } else {
        printer.data(cid);
        if let Some(url) = url {
            printer.status(format!("deployed: {url}"));
        }
    }
    Ok(())
}

/// Uploads `data` and checks the store computed the CID we compute locally: a store
/// with other import settings would give a CID no provider can find our bytes under.
async fn publish(
    kubo: &khachapuri_store::KuboClient,
    name: &str,
    data: bytes::Bytes,
) -> anyhow::Result<khachapuri_types::Cid> {
    let (local, _) = khachapuri_store::import_bytes(&data)?;
    let added = kubo.add_bytes(name, data).await?;
    anyhow::ensure!(
        added.cid == local.cid,
        "the store answered CID {} but the content's CID is {} (is it using the unixfs-v1-2025 profile?)",
        added.cid,
        local.cid
    );
    Ok(local.cid)
}

/// A component (layer 1) runs as wasi-http, a core module as wagi.
fn detect_runtime(wasm: &[u8]) -> anyhow::Result<RuntimeKind> {
    match wasm.get(0..8) {
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => Ok(RuntimeKind::WasiHttp),
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Ok(RuntimeKind::Wagi),
        _ => Err(hint(
            "the file is not WebAssembly",
            "pass --runtime process for a native executable archive",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_components_and_modules() {
        assert_eq!(
            detect_runtime(b"\0asm\x0d\x00\x01\x00rest").expect("component"),
            RuntimeKind::WasiHttp
        );
        assert_eq!(
            detect_runtime(b"\0asm\x01\x00\x00\x00").expect("module"),
            RuntimeKind::Wagi
        );
        assert!(detect_runtime(b"\x7fELF....").is_err());
    }
}
