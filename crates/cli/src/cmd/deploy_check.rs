//! `deploy`'s check that the provider it deploys to runs the chosen runtime: read the
//! provider's `/.well-known/khachapuri` and warn when its `runtimes` lacks it (the calls
//! would get 501). Best effort: an unreachable provider is not an error here.

use std::time::Duration;

use khachapuri_types::RuntimeKind;

use crate::output::Printer;

/// Warns on stderr when the provider at `base_url` does not advertise `runtime`.
pub async fn warn_unadvertised(
    base_url: Option<&str>,
    name: &str,
    runtime: RuntimeKind,
    printer: &Printer,
) {
    let Some(base) = base_url else { return };
    let url = format!("{}/.well-known/khachapuri", base.trim_end_matches('/'));
    let Ok(client) = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
    else {
        return;
    };
    let doc = match client.get(&url).send().await {
        Ok(r) => r.json::<serde_json::Value>().await.ok(),
        Err(e) => {
            tracing::debug!(%url, error = %e, "cannot read the provider's runtimes");
            None
        }
    };
    let Some(runtimes) = doc.as_ref().and_then(|d| d["runtimes"].as_array()) else {
        return;
    };
    let wanted = runtime.to_string();
    if !runtimes.iter().any(|r| r.as_str() == Some(wanted.as_str())) {
        let offered: Vec<&str> = runtimes.iter().filter_map(|r| r.as_str()).collect();
        printer.status(format!(
            "warning: provider {name} does not advertise the `{wanted}` runtime (it runs: {}); its calls will answer 501",
            offered.join(", ")
        ));
    }
}
