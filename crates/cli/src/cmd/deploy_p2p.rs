//! `khachapuri deploy --p2p`: after publishing, find the provider through the DHT,
//! attest it against the publisher's policy, take its signed offer and have it provision
//! the deployment (seed 003). The protocol is `khachapuri_p2p::publisher`; this module
//! turns flags and the profile into its inputs and prints the outcome.

use std::time::Duration;

use clap::Args;
use khachapuri_attest::{Policy, TeeKind, TestRoot};
use khachapuri_chain::{alloy_hex, PrivateKeySigner};
use khachapuri_p2p::messages::CapacityRequest;
use khachapuri_p2p::publisher::{self, Ask, Provisioned};
use khachapuri_p2p::{Keypair, Multiaddr, P2pConfig, P2pNode};
use khachapuri_publish::SealTo;
use khachapuri_types::RuntimeKind;

use crate::home::Profile;
use crate::output::{hint, Printer};

/// The flags of `deploy` that shape the p2p step.
#[derive(Debug, Clone, Args)]
pub struct P2pArgs {
    /// After publishing, provision over libp2p: find the provider through the DHT,
    /// attest it, take its offer, order the deployment.
    #[arg(long)]
    pub p2p: bool,
    /// A peer to join the DHT through (`/ip4/…/tcp/…/p2p/<id>`, repeatable; default: the
    /// profile's `p2p_bootstrap`, which `khachapuri dev --p2p` writes).
    #[arg(long = "bootstrap", value_name = "MULTIADDR", requires = "p2p")]
    pub bootstrap: Vec<String>,
    /// Refuse providers without TEE evidence.
    #[arg(long, requires = "p2p")]
    pub require_tee: bool,
    /// TEE kinds accepted (sev-snp, tdx, sgx; repeatable; default sev-snp and tdx).
    #[arg(long = "tee", value_name = "KIND", requires = "p2p")]
    pub tee: Vec<String>,
    /// Accepted measurements, hex (repeatable; default any).
    #[arg(long = "measurement", value_name = "HEX", requires = "p2p")]
    pub measurements: Vec<String>,
}

fn kind(name: &str) -> anyhow::Result<TeeKind> {
    match name {
        "sev-snp" | "snp" => Ok(TeeKind::SevSnp),
        "tdx" => Ok(TeeKind::Tdx),
        "sgx" => Ok(TeeKind::Sgx),
        other => Err(hint(
            format!("--tee {other:?} is not a TEE kind"),
            "write --tee sev-snp, --tee tdx or --tee sgx",
        )),
    }
}

/// The publisher's policy: the flags, plus the dev network's test root when the profile
/// has one and no `--tee` narrows the kinds (dev only: `khachapuri dev --p2p` providers
/// attest with it).
fn policy(args: &P2pArgs, profile: &Profile) -> anyhow::Result<Policy> {
    let mut accepted_kinds = if args.tee.is_empty() {
        vec![TeeKind::SevSnp, TeeKind::Tdx]
    } else {
        args.tee
            .iter()
            .map(|k| kind(k))
            .collect::<anyhow::Result<_>>()?
    };
    let accepted_measurements = args
        .measurements
        .iter()
        .map(|m| {
            alloy_hex::decode(m)
                .map_err(|e| hint(format!("--measurement {m:?}: {e}"), "write hex bytes"))
        })
        .collect::<anyhow::Result<_>>()?;
    let dev_root = profile.extra.get("attest_root").and_then(|v| v.as_str());
    let allow_test_root = match dev_root.filter(|_| args.tee.is_empty()) {
        Some(hex) => {
            let bytes = alloy_hex::decode(hex)
                .ok()
                .and_then(|b| <[u8; 33]>::try_from(b).ok());
            let root = bytes.ok_or_else(|| {
                hint(
                    "the profile's attest_root is not a 33-byte hex key",
                    "restart `khachapuri dev --p2p`",
                )
            })?;
            accepted_kinds.push(TeeKind::Test);
            Some(TestRoot(root))
        }
        None => None,
    };
    Ok(Policy {
        require_tee: args.require_tee,
        accepted_kinds,
        accepted_measurements,
        allow_test_root,
    })
}

fn bootstrap(args: &P2pArgs, profile: &Profile) -> anyhow::Result<Vec<Multiaddr>> {
    let from_profile = || -> Vec<String> {
        profile
            .extra
            .get("p2p_bootstrap")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let list = if args.bootstrap.is_empty() {
        from_profile()
    } else {
        args.bootstrap.clone()
    };
    if list.is_empty() {
        return Err(hint(
            "--p2p needs a peer to join the DHT through",
            "pass --bootstrap /ip4/…/tcp/…/p2p/<peer id>, or run `khachapuri dev --p2p`",
        ));
    }
    list.iter()
        .map(|a| {
            a.parse().map_err(|e| {
                hint(
                    format!("--bootstrap {a:?}: {e}"),
                    "write a multiaddr ending in /p2p/<peer id>",
                )
            })
        })
        .collect()
}

/// The libp2p addresses `name`'s registry record advertises (none without a chain).
async fn advertised(profile: &Profile, name: &str) -> anyhow::Result<Vec<Multiaddr>> {
    let Ok(net) = super::chainctx::Network::from_profile(profile) else {
        return Ok(Vec::new());
    };
    let chain = net.connect(None).await?;
    let texts = net.registry(&chain)?.p2p_addrs(name).await?;
    // An unparsable entry in a stranger's record is skipped, not fatal.
    Ok(texts.iter().filter_map(|t| t.parse().ok()).collect())
}

/// Provisions the published `cid` over p2p at the provider the spec was sealed to (its
/// attested operator and X25519 key must be the registry record's), or at any acceptable
/// provider for a public spec.
pub async fn provision(
    args: &P2pArgs,
    profile: &Profile,
    target: Option<&SealTo>,
    cid: &str,
    runtime: RuntimeKind,
    payer: &PrivateKeySigner,
    printer: &Printer,
) -> anyhow::Result<Provisioned> {
    let ask = Ask {
        policy: policy(args, profile)?,
        capacity: CapacityRequest {
            runtimes: vec![runtime.to_string()],
            ..CapacityRequest::default()
        },
        spec_cid: cid.to_string(),
        order_ttl: Duration::from_secs(600),
    };
    // A named provider that advertises stable addresses is dialled there; else the DHT.
    let advertised = match target {
        Some(t) => advertised(profile, &t.record.name).await?,
        None => Vec::new(),
    };
    let config = P2pConfig {
        listen: Vec::new(),
        bootstrap: if advertised.is_empty() {
            bootstrap(args, profile)?
        } else {
            Vec::new()
        },
        ..P2pConfig::default()
    };
    let node = P2pNode::start(Keypair::generate_ed25519(), config, None).await?;
    let record = target.map(|t| t.record.clone());
    let accept = move |a: &publisher::Attested| match &record {
        None => Ok(()),
        Some(r) if a.operator != r.operator => {
            Err(format!("operator {} is not {}'s", a.operator, r.name))
        }
        Some(r) if a.x25519 != r.pubkey => Err(format!("its X25519 key is not {}'s", r.name)),
        Some(_) => Ok(()),
    };
    let done = if advertised.is_empty() {
        printer.status("finding the provider through the DHT…");
        publisher::find_and_provision(&node, payer, &ask, 16, accept).await
    } else {
        printer.status(format!(
            "dialling the provider at its advertised {}",
            advertised[0]
        ));
        publisher::provision_at(&node, &advertised, payer, &ask, accept).await
    };
    let done = done.map_err(|e| {
        hint(
            format!("p2p provisioning failed: {e}"),
            "check --bootstrap, the attestation policy flags, and that your channel to the provider is funded (`khachapuri escrow fund`)",
        )
    });
    node.shutdown().await;
    done
}
