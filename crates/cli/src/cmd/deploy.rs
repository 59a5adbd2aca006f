//! `khachapuri deploy`: build (for a folder), then publish: the artifact uploaded, the
//! deployment spec written, signed with the wallet, sealed to one provider (or public),
//! the envelope uploaded, the callable CID printed. The publishing itself is
//! `khachapuri_publish::publish`; the sponsor voucher is signed by
//! `khachapuri_payments::sign_sponsor_voucher`. This command gathers the inputs and prints.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use khachapuri_chain::{PrivateKeySigner, ProviderRecord};
use khachapuri_payments::{ChannelKey, PayerStore};
use khachapuri_publish::{Function, Published, SealTo, Sponsor};
use khachapuri_types::{Limits, RuntimeKind};
use serde_json::json;

use super::chainctx;
use crate::home::{Home, Profile};
use crate::manifest::{parse_env_file, Manifest};
use crate::output::{hint, Printer};

/// Arguments of `deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Function folder (with khachapuri.toml), a built `.wasm` file, or a `.tar`/`.zip`
    /// holding a native `main` (runtime `process`).
    #[arg(default_value = ".")]
    pub target: PathBuf,
    /// Provider (registry name) to seal the spec to (default: the manifest's `provider`,
    /// else the active profile's first provider).
    #[arg(long, value_name = "NAME", conflicts_with = "public")]
    pub provider: Option<String>,
    /// Publish a public spec any provider may run (no secrets).
    #[arg(long)]
    pub public: bool,
    /// Sponsor the calls: the owner pays up to AMOUNT USDC from their escrow channel
    /// with the provider; callers pay nothing (needs a sealed spec). AMOUNT is this
    /// deployment's own budget: it does not share the owner's other credit on the channel.
    #[arg(long, value_name = "AMOUNT")]
    pub sponsor: Option<String>,
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
    /// Print `{"cid", "artifact_cid", "url", "sealed", "provider", "provider_address"}` as JSON
    /// (with `--p2p`, also `"p2p": {"peer", "tee", "url", "timings_ms"}`).
    #[arg(long)]
    pub json: bool,
    /// Provisioning over libp2p (seed 003).
    #[command(flatten)]
    pub p2p: super::deploy_p2p::P2pArgs,
}

/// Deploys and prints the callable CID (or JSON).
/// Builds (for a folder), publishes and prints the callable CID.
pub async fn run(args: DeployArgs, home: &Home, printer: &Printer) -> anyhow::Result<()> {
    let profile = home.active_profile()?;
    let store_url = profile.store_url.clone().ok_or_else(|| {
        hint(
            "no store to publish to: the active profile has no store_url",
            "start a local network with `khachapuri dev` (it activates the `dev` profile)",
        )
    })?;
    if args.public && args.sponsor.is_some() {
        return Err(hint(
            "a sponsored deployment carries the owner's voucher, which must not be public",
            "drop --public: the spec is then sealed to the provider",
        ));
    }
    // The owner signs every spec; fail before building when there is no wallet.
    let signer = chainctx::load_signer(home, &profile).map_err(|e| {
        hint(
            format!("deploy signs the spec with your wallet: {e:#}"),
            "create one with `khachapuri wallet new` (or run `khachapuri dev`)",
        )
    })?;
    let (function, manifest) = load_function(&args, printer).await?;
    // Resolve the provider (and sign any sponsor voucher) before uploading anything.
    let target = if args.public {
        None
    } else {
        let named = args
            .provider
            .clone()
            .or_else(|| manifest.as_ref().and_then(|m| m.provider.clone()));
        let name = match named {
            Some(name) => name,
            None => pick_provider(&profile, printer).await?,
        };
        let target = resolve_target(
            home,
            &profile,
            &name,
            &signer,
            args.sponsor.as_deref(),
            printer,
        );
        Some(target.await?)
    };
    let kubo = khachapuri_store::KuboClient::new(
        store_url.as_str(),
        khachapuri_store::Limits {
            block_timeout: Duration::from_secs(300),
            ..Default::default()
        },
    )
    .context("bad store URL in the profile")?
    .with_token(super::store::publish_token(&profile)?);
    printer.status(format!(
        "uploading {} ({} bytes)",
        args.target.display(),
        function.artifact.len()
    ));
    let runtime = function.runtime;
    let published = khachapuri_publish::publish(&kubo, function, target.as_ref(), &signer)
        .await
        .map_err(|e| {
            hint(
                format!("cannot publish to {store_url}: {e}"),
                "is `khachapuri dev` (or your IPFS node) running? `khachapuri info` shows the store URL",
            )
        })?;
    let (url, name) = match &target {
        Some(t) => (Some(t.record.url.clone()), t.record.name.as_str()),
        None => (
            profile.providers.first().map(|p| p.url.clone()),
            "(default)",
        ),
    };
    super::deploy_check::warn_unadvertised(url.as_deref(), name, runtime, printer).await;
    let p2p = if args.p2p.p2p {
        let cid = published.cid.to_string();
        let p = super::deploy_p2p::provision(
            &args.p2p,
            &profile,
            target.as_ref(),
            &cid,
            runtime,
            &signer,
            printer,
        );
        Some(p.await?)
    } else {
        None
    };
    print_published(
        &args,
        &profile,
        target.as_ref(),
        &published,
        &signer,
        p2p.as_ref(),
        printer,
    );
    Ok(())
}

/// The artifact (built first for a folder), its runtime, env and limits, and the
/// manifest when there is one.
async fn load_function(
    args: &DeployArgs,
    printer: &Printer,
) -> anyhow::Result<(Function, Option<Manifest>)> {
    let (artifact_path, manifest) = if args.target.is_dir() {
        let manifest = Manifest::load(&args.target)?;
        let path = super::build::build(&args.target, &manifest, printer).await?;
        (path, Some(manifest))
    } else if args.target.is_file() {
        (args.target.clone(), None)
    } else {
        return Err(hint(
            format!("{} does not exist", args.target.display()),
            "pass a function folder (with khachapuri.toml), a .wasm file, or a .tar/.zip with a native `main`",
        ));
    };
    let artifact = tokio::fs::read(&artifact_path)
        .await
        .with_context(|| format!("cannot read {}", artifact_path.display()))?;
    let runtime = match (args.runtime, &manifest) {
        (Some(r), _) => r,
        (None, Some(m)) => m.runtime,
        (None, None) => detect_runtime(&artifact)?,
    };
    let env = collect_env(args, manifest.as_ref())?;
    let limits = Limits {
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
    let function = Function {
        artifact: artifact.into(),
        runtime,
        env,
        limits,
    };
    Ok((function, manifest))
}

/// The function's environment: the manifest's `[env]`, `--env`, then env files (refused
/// for a public spec: they hold secrets).
fn collect_env(
    args: &DeployArgs,
    manifest: Option<&Manifest>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut env: BTreeMap<String, String> = manifest.map(|m| m.env.clone()).unwrap_or_default();
    for kv in &args.env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| hint(format!("--env {kv:?} has no '='"), "write --env NAME=value"))?;
        env.insert(k.to_string(), v.to_string());
    }
    let mut env_files: Vec<PathBuf> = args.env_files.clone();
    if let Some(m) = manifest {
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
    Ok(env)
}

/// Prints what was published: JSON with `--json`, else the CID on stdout and a status.
fn print_published(
    args: &DeployArgs,
    profile: &Profile,
    target: Option<&SealTo>,
    published: &Published,
    signer: &PrivateKeySigner,
    p2p: Option<&khachapuri_p2p::publisher::Provisioned>,
    printer: &Printer,
) {
    if let Some(p) = p2p {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        printer.status(format!(
            "provisioned over p2p by {} (attested: {:?}); attest {:.1} ms, capacity {:.1} ms, provision {:.1} ms",
            p.provider.peer,
            p.provider.verified.kind,
            ms(p.timings[0]),
            ms(p.timings[1]),
            ms(p.timings[2])
        ));
    }
    let base_url = match target {
        Some(t) => Some(t.record.url.clone()),
        None => profile.providers.first().map(|p| p.url.clone()),
    };
    let cid = &published.cid;
    let url = match p2p {
        Some(p) => Some(p.result.url.clone()),
        None => base_url.map(|u| format!("{}/{}", u.trim_end_matches('/'), cid)),
    };
    if args.json {
        let p2p = p2p.map(|p| {
            json!({
                "peer": p.provider.peer.to_string(),
                "tee": format!("{:?}", p.provider.verified.kind),
                "url": p.result.url,
                "timings_ms": p.timings.iter().map(|d| d.as_secs_f64() * 1000.0).collect::<Vec<_>>(),
            })
        });
        printer.json(&json!({
            "cid": cid.to_string(),
            "artifact_cid": published.artifact_cid.to_string(),
            "url": url,
            "sealed": published.sealed,
            "provider": target.map(|t| t.record.name.clone()),
            "provider_address": target.map(|t| format!("{:#x}", t.record.operator)),
            "owner": format!("{:#x}", signer.address()),
            "p2p": p2p,
        }));
        return;
    }
    match target {
        Some(t) => printer.status(format!(
            "sealed to {} ({:#x}){}",
            t.record.name,
            t.record.operator,
            if t.sponsor.is_some() {
                ", sponsored"
            } else {
                ""
            }
        )),
        None => printer.status("public spec: any provider may run it"),
    }
    printer.data(cid);
    if let Some(url) = url {
        printer.status(format!("deployed: {url}"));
    }
}

/// Picks the provider for a deploy that names none: the first of `registry select`'s
/// ranking (default preferences), said out loud with the reason; without a chain in the
/// profile, the profile's first provider.
async fn pick_provider(profile: &Profile, printer: &Printer) -> anyhow::Result<String> {
    let none = || {
        hint(
            "no provider to seal the spec to",
            "pass --provider NAME (see `khachapuri registry select`), or --public for a spec any provider may run",
        )
    };
    let Ok(net) = chainctx::Network::from_profile(profile) else {
        return profile
            .providers
            .first()
            .map(|p| p.name.clone())
            .ok_or_else(none);
    };
    let chain = net.connect(None).await?;
    let (ranked, _) = khachapuri_gateway::rank_registry(
        &net.registry(&chain)?,
        &khachapuri_gateway::Preferences::default(),
    )
    .await
    .context("cannot rank the registry's providers")?;
    let first = ranked.into_iter().next().ok_or_else(none)?;
    printer.status(format!(
        "no provider named: chose {} ({}); `khachapuri registry select` shows the ranking, --provider overrides it",
        first.name, first.reason
    ));
    Ok(first.name)
}

/// Resolves `name` in the registry and, for `--sponsor AMOUNT`, signs the owner's voucher
/// for the provider at the channel's current epoch (cumulative: see
/// `khachapuri_payments::sign_sponsor_voucher`). Were the upload to fail afterwards, the
/// extra headroom only ever pays the owner's own later calls.
async fn resolve_target(
    home: &Home,
    profile: &Profile,
    name: &str,
    signer: &PrivateKeySigner,
    sponsor: Option<&str>,
    printer: &Printer,
) -> anyhow::Result<SealTo> {
    let net = chainctx::Network::from_profile(profile)?;
    let chain = net.connect(None).await?;
    let record = net
        .registry(&chain)?
        .resolve(name)
        .await
        .with_context(|| format!("cannot look up {name:?} in the registry"))?
        .ok_or_else(|| {
            hint(
                format!("no provider named {name:?} in the registry"),
                "list them with `khachapuri registry list`, or pass --public",
            )
        })?;
    if record.pubkey == [0u8; 32] {
        return Err(hint(
            format!("provider {name:?} has no X25519 key in the registry, so nothing can be sealed to it"),
            "its operator should run `khachapuri provider register` again, or pass --public",
        ));
    }
    let sponsor = match sponsor {
        None => None,
        Some(amount) => {
            Some(sponsor_voucher(home, &net, &chain, &record, signer, amount, printer).await?)
        }
    };
    Ok(SealTo { record, sponsor })
}

/// The owner's voucher for `--sponsor AMOUNT` to `record`'s provider.
async fn sponsor_voucher(
    home: &Home,
    net: &chainctx::Network,
    chain: &khachapuri_chain::Chain,
    record: &ProviderRecord,
    signer: &PrivateKeySigner,
    amount: &str,
    printer: &Printer,
) -> anyhow::Result<Sponsor> {
    let name = &record.name;
    let amount = khachapuri_chain::parse_usdc(amount).map_err(|e| {
        hint(
            format!("--sponsor {amount:?}: {e}"),
            "write an amount of USDC like 5 or 0.25",
        )
    })?;
    let channel = net
        .escrow(chain)?
        .channel(signer.address(), record.operator)
        .await
        .context("cannot read your escrow channel with the provider")?;
    let key = ChannelKey {
        chain_id: chain.chain_id(),
        escrow: net.escrow.context("the profile has no escrow")?,
        provider: record.operator,
        payer: signer.address(),
    };
    let store = PayerStore::new(home.root().join("payments").join("vouchers.json"));
    let (owner, epoch) = (signer.clone(), channel.epoch);
    let signed = tokio::task::spawn_blocking(move || {
        khachapuri_payments::sign_sponsor_voucher(&store, &key, &owner, epoch, amount)
    })
    .await?
    .context("cannot sign the sponsor voucher")?;
    if channel.remaining() < signed.voucher.amount {
        printer.status(format!(
            "warning: your channel with {name} holds {} USDC, less than the {} USDC signed for in total; fund it with `khachapuri escrow fund {name} AMOUNT`",
            khachapuri_chain::format_usdc(channel.remaining()),
            khachapuri_chain::format_usdc(signed.voucher.amount),
        ));
    }
    Ok(Sponsor {
        voucher: khachapuri_payments::encode_payment(&signed),
        budget: amount,
    })
}

/// A component (layer 1) runs as wasi-http, a core module as wagi, a tar or zip (of a
/// native `main`) as process.
fn detect_runtime(wasm: &[u8]) -> anyhow::Result<RuntimeKind> {
    let tar = wasm.get(257..262) == Some(b"ustar".as_slice());
    let zip = wasm.starts_with(b"PK\x03\x04");
    match wasm.get(0..8) {
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => Ok(RuntimeKind::WasiHttp),
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Ok(RuntimeKind::Wagi),
        _ if tar || zip => Ok(RuntimeKind::Process),
        _ => Err(hint(
            "the file is neither WebAssembly nor a tar/zip archive",
            "deploy a .wasm, or a .tar/.zip with a native `main` at its root (runtime process)",
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
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(detect_runtime(&tar).expect("tar"), RuntimeKind::Process);
        assert_eq!(
            detect_runtime(b"PK\x03\x04rest").expect("zip"),
            RuntimeKind::Process
        );
    }
}
