//! `khachapuri call`: curl for functions. The body goes to stdout untouched so output
//! can be piped; `-i` adds the status line and headers first.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use http_body_util::BodyExt;

use crate::cmd::pay::CallPayment;
use crate::home::{Home, Profile, ProviderEntry};
use crate::output::{hint, Printer};
use khachapuri_payments::PaidRequest;

/// Arguments of `call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// Callable CID (sent to the profile's provider) or a full URL.
    pub target: String,
    /// Path after the CID, e.g. `/users/7?x=1`.
    pub path: Option<String>,
    /// HTTP method (default GET, or POST when a body is given, like curl).
    #[arg(short = 'X', long = "request")]
    pub method: Option<String>,
    /// Extra request header, `K: V` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "K: V")]
    pub headers: Vec<String>,
    /// Request body; `@FILE` reads a file, `@-` reads stdin.
    #[arg(short = 'd', long = "data", value_name = "DATA|@FILE")]
    pub data: Option<String>,
    /// Print the status line and response headers before the body.
    #[arg(short = 'i', long = "include")]
    pub include: bool,
    /// Provider (by profile name) to call instead of the profile's first one.
    #[arg(long)]
    pub provider: Option<String>,
    /// Go through the profile's gateway (`GATEWAY/{provider}/{cid}`) instead of calling
    /// the provider directly.
    #[arg(long)]
    pub gateway: bool,
    /// The most one call may cost, in USDC (e.g. 0.001); dearer calls are refused unpaid.
    #[arg(long, value_name = "AMOUNT")]
    pub max_price: Option<String>,
    /// Credit to sign ahead so later calls need no new signature, in USDC (default: the
    /// profile key `prepay`, else 0.10).
    #[arg(long, value_name = "AMOUNT")]
    pub prepay: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

/// Sends the request and streams the answer to stdout.
pub async fn run(args: CallArgs, home: &Home, printer: &Printer) -> anyhow::Result<()> {
    let profile = home.active_profile()?;
    let gateway = if args.gateway {
        Some(gateway_url(&profile)?)
    } else {
        None
    };
    let (url, entry) = target_url(
        &args.target,
        args.path.as_deref(),
        args.provider.as_deref(),
        gateway.as_deref(),
        &profile,
    )?;
    let body = match args.data.as_deref() {
        None => None,
        Some(d) => Some(read_data(d).await?),
    };
    let method_name = match (&args.method, &body) {
        (Some(m), _) => m.to_uppercase(),
        (None, Some(_)) => "POST".to_string(),
        (None, None) => "GET".to_string(),
    };
    let method = reqwest::Method::from_bytes(method_name.as_bytes()).map_err(|_| {
        hint(
            format!("{method_name:?} is not an HTTP method"),
            "use e.g. -X POST",
        )
    })?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout))
        .build()
        .context("cannot build the HTTP client")?;
    let mut headers = Vec::new();
    for h in &args.headers {
        let (k, v) = h.split_once(':').ok_or_else(|| {
            hint(
                format!("header {h:?} has no ':'"),
                "write headers as -H 'Name: value'",
            )
        })?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut payment = CallPayment::new(
        home,
        &profile,
        printer,
        &url,
        entry,
        args.max_price.as_deref(),
        args.prepay.as_deref(),
        client,
    )?;
    tracing::debug!(%url, "calling");
    let request = PaidRequest {
        method,
        url: url.clone(),
        headers,
        body,
        target: args.target.clone(),
    };
    let (resp, receipt) = payment.send(&request).await?;
    let status = resp.status();
    if args.include {
        let mut head = format!("{:?} {}\r\n", resp.version(), status);
        for (k, v) in resp.headers() {
            head.push_str(&format!(
                "{}: {}\r\n",
                k,
                String::from_utf8_lossy(v.as_bytes())
            ));
        }
        head.push_str("\r\n");
        printer.bytes(head.as_bytes())?;
    }
    // Frames, not chunks: a streamed answer's receipt arrives in the trailers.
    let mut receipt = receipt;
    let mut body = http::Response::<reqwest::Body>::from(resp).into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("the response was cut off")?;
        match frame.into_data() {
            Ok(chunk) => printer.bytes(&chunk)?,
            Err(frame) => {
                let value = frame
                    .trailers_ref()
                    .and_then(|t| t.get(khachapuri_payments::RECEIPT_HEADER))
                    .and_then(|v| v.to_str().ok());
                if let Some(value) = value {
                    receipt = payment.trailer_receipt(value).await;
                }
            }
        }
    }
    match receipt {
        Some(Ok(summary)) if args.include => printer.status(summary),
        Some(Err(e)) => return Err(e),
        _ => {}
    }
    if status == reqwest::StatusCode::PAYMENT_REQUIRED {
        return Err(hint(
            "the provider still asks for payment after being paid",
            "call again with -i to see its answer; `khachapuri escrow status` shows the channel",
        ));
    }
    if !status.is_success() {
        anyhow::bail!("the provider answered {status}");
    }
    Ok(())
}

/// The active profile's gateway (`gateway_url`, written by `khachapuri dev`).
fn gateway_url(profile: &Profile) -> anyhow::Result<String> {
    profile
        .extra
        .get("gateway_url")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| {
            hint(
                "the active profile names no gateway",
                "start one with `khachapuri dev` (it runs a gateway) or pass the gateway's URL as the target",
            )
        })
}

/// Resolves `CID|URL [PATH]` to the URL to request: at the provider, or at `gateway`
/// (`GATEWAY/{name}/{cid}`) when given.
fn target_url(
    target: &str,
    path: Option<&str>,
    provider: Option<&str>,
    gateway: Option<&str>,
    profile: &Profile,
) -> anyhow::Result<(String, Option<ProviderEntry>)> {
    let mut chosen = None;
    let base = if target.starts_with("http://") || target.starts_with("https://") {
        target.trim_end_matches('/').to_string()
    } else {
        let entry = match provider {
            Some(name) => profile
                .providers
                .iter()
                .find(|p| p.name == name)
                .ok_or_else(|| {
                    hint(
                        format!("no provider named {name:?} in the active profile"),
                        "`khachapuri info` lists the known providers",
                    )
                })?,
            None => profile.providers.first().ok_or_else(|| {
                hint(
                    "no provider to call: the active profile lists none",
                    "start a local network with `khachapuri dev`, or pass a full URL",
                )
            })?,
        };
        chosen = Some(entry.clone());
        match gateway {
            Some(gw) => format!("{}/{}/{}", gw.trim_end_matches('/'), entry.name, target),
            None => format!("{}/{}", entry.url.trim_end_matches('/'), target),
        }
    };
    let url = match path {
        None => base,
        Some(p) if p.starts_with('/') || p.starts_with('?') => format!("{base}{p}"),
        Some(p) => format!("{base}/{p}"),
    };
    Ok((url, chosen))
}

async fn read_data(d: &str) -> anyhow::Result<Vec<u8>> {
    match d.strip_prefix('@') {
        Some("-") => {
            use tokio::io::AsyncReadExt;
            let mut buf = Vec::new();
            tokio::io::stdin()
                .read_to_end(&mut buf)
                .await
                .context("cannot read stdin")?;
            Ok(buf)
        }
        Some(file) => tokio::fs::read(file)
            .await
            .with_context(|| format!("cannot read request body from {file}")),
        None => Ok(d.as_bytes().to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_targets() {
        let mut p = Profile::default();
        assert!(target_url("bafy", None, None, None, &p).is_err());
        p.providers.push(ProviderEntry {
            name: "dev".into(),
            url: "http://127.0.0.1:8080/".into(),
            address: None,
        });
        assert_eq!(
            target_url("bafy", None, None, None, &p).expect("url").0,
            "http://127.0.0.1:8080/bafy"
        );
        assert_eq!(
            target_url("bafy", Some("a/b?x=1"), Some("dev"), None, &p)
                .expect("url")
                .0,
            "http://127.0.0.1:8080/bafy/a/b?x=1"
        );
        assert_eq!(
            target_url("http://h:1/c/", Some("/p"), None, None, &p)
                .expect("url")
                .0,
            "http://h:1/c/p"
        );
        assert!(target_url("bafy", None, Some("nope"), None, &p).is_err());
        assert_eq!(
            target_url("bafy", Some("/x"), None, Some("http://127.0.0.1:8088/"), &p)
                .expect("url")
                .0,
            "http://127.0.0.1:8088/dev/bafy/x"
        );
    }
}
