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
    if let Some(offered) = doc.and_then(|d| lacks(&d, runtime)) {
        printer.status(format!(
            "warning: provider {name} does not advertise the `{runtime}` runtime (it runs: {offered}); its calls will answer 501"
        ));
    }
}

/// The runtimes a well-known document offers, comma-separated, when `runtime` is not
/// among them; `None` when it is, or when the document lists none (older nodes).
fn lacks(doc: &serde_json::Value, runtime: RuntimeKind) -> Option<String> {
    let runtimes = doc["runtimes"].as_array()?;
    let offered: Vec<&str> = runtimes.iter().filter_map(|r| r.as_str()).collect();
    (!offered.contains(&runtime.as_str())).then(|| offered.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_only_when_the_runtime_is_missing() {
        let doc = serde_json::json!({"runtimes": ["wasi-http", "wagi"]});
        assert_eq!(
            lacks(&doc, RuntimeKind::Process).as_deref(),
            Some("wasi-http, wagi")
        );
        assert_eq!(lacks(&doc, RuntimeKind::Wagi), None);
        assert_eq!(lacks(&serde_json::json!({}), RuntimeKind::Process), None);
    }
}
