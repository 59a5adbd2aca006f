//! `khachapuri provider attest`: what this node would answer to `/khachapuri/attest/1` —
//! its peer id, the keys and escrow it binds, the report_data a TEE report would carry,
//! and the evidence (this build reads none from hardware, and says so).

use std::path::PathBuf;

use clap::Args;
use khachapuri_chain::alloy_hex;

use crate::home::Home;
use crate::output::{hint, Printer};

/// Arguments of `provider attest`.
#[derive(Debug, Args)]
pub struct AttestArgs {
    /// Config file (default: as `provider run`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The publisher nonce to bind, 32 bytes hex (default: zeros).
    #[arg(long, value_name = "HEX")]
    pub nonce: Option<String>,
}

/// Prints the preview as JSON on stdout.
pub async fn run(args: AttestArgs, home: &Home, printer: &Printer) -> anyhow::Result<()> {
    let file = super::provider_run::config_file(args.config.as_deref(), home).ok_or_else(|| {
        hint(
            "no provider config found",
            "pass --config FILE, or create HOME/provider.toml (`khachapuri dev` writes one)",
        )
    })?;
    let config = super::provider_run::load_file(&file, home)?;
    let nonce = match &args.nonce {
        None => [0u8; 32],
        Some(h) => alloy_hex::decode(h)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                hint(
                    format!("--nonce {h:?} is not 32 bytes of hex"),
                    "write 64 hex digits",
                )
            })?,
    };
    let password = super::provider_run::operator_password(config.payments.as_ref())?;
    let operator = config
        .payments
        .as_ref()
        .ok_or_else(|| {
            hint(
                "the config has no [payments]",
                "attestation binds the operator key and the escrow: add [payments]",
            )
        })?
        .load_operator(password.as_deref())?
        .address();
    let preview = tokio::task::spawn_blocking(move || {
        khachapuri_provider::attest_preview(&config, operator, nonce)
    })
    .await??;
    printer.json(&serde_json::to_value(&preview)?);
    if let Some(reason) = &preview.reason {
        printer.status(format!(
            "evidence: none ({reason}); a publisher's policy decides whether that is enough"
        ));
    }
    Ok(())
}
