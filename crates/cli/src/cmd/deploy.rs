//! `khachapuri deploy`: build (for a folder), upload the artifact, write the deployment
//! spec, sign it with the wallet, seal it to one provider (or publish it `--public`),
//! upload the envelope, print the callable CID.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use khachapuri_chain::{PrivateKeySigner, ProviderRecord, Voucher, U256};
use khachapuri_payments::{ChannelKey, ChannelRecord, PayerStore};
use khachapuri_types::{Envelope, Limits, PayerPolicy, RuntimeKind, Spec};
use serde_json::json;

use super::chainctx;
use crate::home::{Home, Profile};
use crate::manifest::{parse_env_file, Manifest};
use crate::output::{hint, Printer};

/// Arguments of `deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Function folder (with khachapuri.toml) or a built `.wasm` file.
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
    /// Print `{"cid", "artifact_cid", "url", "sealed", "provider", "provider_address"}` as JSON.
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
        Some(
            resolve_target(
                home,
                &profile,
                &name,
                &signer,
                args.sponsor.as_deref(),
                printer,
            )
            .await?,
        )
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
    if let Some(t) = &target {
        spec.provider = Some(format!("{:#x}", t.record.operator));
        if let Some((voucher, budget)) = &t.sponsor_voucher {
            spec.payer = PayerPolicy::Sponsored;
            spec.sponsor_voucher = Some(voucher.clone());
            spec.sponsor_budget = Some(budget.to_string());
        }
    }
    spec.validate()
        .map_err(|e| hint(e.to_string(), "check --env names and limits"))?;
    khachapuri_chain::sign_spec(&mut spec, &signer).context("cannot sign the spec")?;
    let envelope = match &target {
        None => Envelope::Public { spec },
        Some(t) => khachapuri_seal::seal(
            &spec,
            &format!("{:#x}", t.record.operator),
            &t.record.pubkey,
        )
        .map_err(|e| {
            hint(
                format!("cannot seal the spec to {}: {e}", t.record.name),
                "the provider's registered X25519 key is unusable; ask its operator to re-register",
            )
        })?,
    };
    let cid = publish(&kubo, "spec.json", envelope.to_bytes().into())
        .await
        .with_context(|| format!("cannot upload the spec to {store_url}"))?;

    let base_url = match &target {
        Some(t) => Some(t.record.url.clone()),
        None => profile.providers.first().map(|p| p.url.clone()),
    };
    let url = base_url.map(|u| format!("{}/{}", u.trim_end_matches('/'), cid));
    if args.json {
        printer.json(&json!({
            "cid": cid.to_string(),
            "artifact_cid": artifact_cid.to_string(),
            "url": url,
            "sealed": target.is_some(),
            "provider": target.as_ref().map(|t| t.record.name.clone()),
            "provider_address": target.as_ref().map(|t| format!("{:#x}", t.record.operator)),
            "owner": format!("{:#x}", signer.address()),
        }));
    } else {
        match &target {
            Some(t) => printer.status(format!(
                "sealed to {} ({:#x}){}",
                t.record.name,
                t.record.operator,
                if t.sponsor_voucher.is_some() {
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
    Ok(())
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

/// Where a sealed spec goes, and the owner's voucher when the deployment is sponsored.
struct Target {
    /// The provider's registry record (operator address, X25519 key, endpoint).
    record: ProviderRecord,
    /// `Khachapuri-Payment` value of the owner's voucher and the deployment's budget (base
    /// units), for `--sponsor`.
    sponsor_voucher: Option<(String, U256)>,
}

/// Resolves `name` in the registry and, for `--sponsor AMOUNT`, signs the owner's voucher
/// for the provider at the channel's current epoch.
///
/// Vouchers are cumulative for the channel: the voucher signed is what this wallet already
/// signed in that epoch (its own paid calls, other sponsored deployments; the payer state
/// file knows) plus AMOUNT, and the spec's `sponsor_budget` says AMOUNT is this
/// deployment's share. The state file is updated under its lock, so later calls and
/// sponsorships stack on top instead of re-signing from the same base. Were the upload to
/// fail afterwards, the extra headroom only ever pays the owner's own later calls.
async fn resolve_target(
    home: &Home,
    profile: &Profile,
    name: &str,
    signer: &PrivateKeySigner,
    sponsor: Option<&str>,
    printer: &Printer,
) -> anyhow::Result<Target> {
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
    let sponsor_voucher = match sponsor {
        None => None,
        Some(amount) => {
            let amount = khachapuri_chain::parse_usdc(amount).map_err(|e| {
                hint(
                    format!("--sponsor {amount:?}: {e}"),
                    "write an amount of USDC like 5 or 0.25",
                )
            })?;
            let escrow = net.escrow(&chain)?;
            let channel = escrow
                .channel(signer.address(), record.operator)
                .await
                .context("cannot read your escrow channel with the provider")?;
            let escrow_address = net.escrow.context("the profile has no escrow")?;
            let key = ChannelKey {
                chain_id: chain.chain_id(),
                escrow: escrow_address,
                provider: record.operator,
                payer: signer.address(),
            };
            let store = PayerStore::new(home.root().join("payments").join("vouchers.json"));
            let (owner, epoch) = (signer.clone(), channel.epoch);
            let signed = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let _lock = store.lock()?;
                let mut rec = match store.load(&key)? {
                    Some(r) if r.epoch == epoch => r,
                    _ => ChannelRecord::new(epoch),
                };
                let voucher = Voucher {
                    payer: owner.address(),
                    provider: key.provider,
                    epoch,
                    amount: rec.signed() + amount,
                };
                let signed = voucher
                    .sign(&owner, key.chain_id, key.escrow)
                    .context("cannot sign the sponsor voucher")?;
                rec.voucher = Some(signed.clone());
                store.save(&key, &rec)?;
                Ok(signed)
            })
            .await??;
            if channel.remaining() < signed.voucher.amount {
                printer.status(format!(
                    "warning: your channel with {name} holds {} USDC, less than the {} USDC signed for in total; fund it with `khachapuri escrow fund {name} AMOUNT`",
                    khachapuri_chain::format_usdc(channel.remaining()),
                    khachapuri_chain::format_usdc(signed.voucher.amount),
                ));
            }
            Some((khachapuri_payments::encode_payment(&signed), amount))
        }
    };
    Ok(Target {
        record,
        sponsor_voucher,
    })
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
