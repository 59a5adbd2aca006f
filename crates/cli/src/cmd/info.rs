//! `khachapuri info`: the endpoints and contracts of the active profile.

use clap::Args;
use serde_json::{json, Value};

use crate::home::Home;
use crate::output::Printer;

/// Arguments of `info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Prints the active profile.
pub async fn run(args: InfoArgs, home: &Home, printer: &Printer) -> anyhow::Result<()> {
    let config = home.config()?;
    let profile = home.active_profile()?;
    let providers: Vec<Value> = profile
        .providers
        .iter()
        .map(|p| json!({"name": p.name, "url": p.url, "address": p.address}))
        .collect();
    let mut doc = json!({
        "home": home.root().display().to_string(),
        "profile": config.active_profile,
        "store_url": profile.store_url,
        "gateways": profile.gateways,
        "providers": providers,
    });
    if let Value::Object(map) = &mut doc {
        for (k, v) in public_extra(&profile) {
            map.insert(k.clone(), serde_json::to_value(v)?);
        }
    }
    if args.json {
        printer.json(&doc);
        return Ok(());
    }
    printer.data(format!("home:      {}", home.root().display()));
    printer.data(format!(
        "profile:   {}",
        config
            .active_profile
            .as_deref()
            .unwrap_or("(none: run `khachapuri dev`)")
    ));
    printer.data(format!(
        "store:     {}",
        profile.store_url.as_deref().unwrap_or("-")
    ));
    for p in &profile.providers {
        printer.data(format!(
            "provider:  {} {} {}",
            p.name,
            p.url,
            p.address.as_deref().unwrap_or("")
        ));
    }
    for (k, v) in public_extra(&profile) {
        printer.data(format!("{k}: {v}"));
    }
    Ok(())
}

/// Profile entries safe to print: keys and passwords never reach the terminal or logs.
fn public_extra(profile: &crate::home::Profile) -> impl Iterator<Item = (&String, &toml::Value)> {
    profile
        .extra
        .iter()
        .filter(|(k, _)| !(k.ends_with("_key") || k.contains("password") || k.contains("secret")))
}
