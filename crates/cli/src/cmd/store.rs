//! `khachapuri store add|get|serve`: the local IPFS blockstore under the home directory,
//! with CIDs identical to Kubo's `unixfs-v1-2025` profile.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use khachapuri_store::{Cid, KuboClient, Limits, PublishConfig, Store, StoreConfig, TOKEN_ENV};
use serde_json::json;

use crate::home::Home;
use crate::output::{hint, Printer};

/// Files at least this large get a progress bar.
const PROGRESS_THRESHOLD: u64 = 16 << 20;

/// Arguments of `store`.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// What to do with the store.
    #[command(subcommand)]
    pub command: StoreCommand,
}

/// `store` subcommands.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Import a file into the local store and print its CID.
    Add {
        /// The file to import.
        file: PathBuf,
        /// Print `{"cid": ..., "size": ...}` instead of the bare CID.
        #[arg(long)]
        json: bool,
        /// Also upload it to the active profile's `store_url` (Kubo RPC) and pin it.
        #[arg(long)]
        publish: bool,
    },
    /// Write the file named by CID to stdout or FILE (local store, then the profile's
    /// `store_url` and `gateways`).
    Get {
        /// The content identifier.
        cid: String,
        /// Write here instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Serve the local store as a trustless gateway and Kubo RPC subset. Off loopback,
    /// publishing asks for a bearer token: from --token-file or KHACHAPURI_STORE_TOKEN.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:5001")]
        listen: SocketAddr,
        /// File holding the bearer token publishers must send (never the token itself on
        /// the command line).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// Largest upload body (`add`, `block/put`) in bytes.
        #[arg(long, default_value_t = khachapuri_store::DEFAULT_MAX_UPLOAD_BYTES)]
        max_upload_bytes: u64,
    },
}

/// Runs a `store` subcommand.
pub async fn run(args: StoreArgs, home: &Home, printer: &Printer) -> anyhow::Result<()> {
    match args.command {
        StoreCommand::Add {
            file,
            json,
            publish,
        } => add(home, printer, file, json, publish).await,
        StoreCommand::Get { cid, output } => get(home, printer, &cid, output).await,
        StoreCommand::Serve {
            listen,
            token_file,
            max_upload_bytes,
        } => {
            let config = PublishConfig {
                token: server_token(token_file.as_deref())?,
                max_upload_bytes: Some(max_upload_bytes),
            };
            serve(home, printer, listen, config).await
        }
    }
}

fn open_store(home: &Home) -> anyhow::Result<Store> {
    let profile = home.active_profile()?;
    let mut gateways: Vec<String> = profile.store_url.into_iter().collect();
    gateways.extend(profile.gateways);
    let limits = Limits {
        // The CLI fetches whatever the user asks for; providers use tighter caps.
        max_dag_bytes: 1 << 40,
        ..Limits::default()
    };
    let dir = home.store_dir();
    Store::open(
        &dir,
        StoreConfig {
            gateways,
            kubo_rpc: None,
            limits,
        },
    )
    .with_context(|| format!("cannot open the store in {}", dir.display()))
}

async fn add(
    home: &Home,
    printer: &Printer,
    file: PathBuf,
    json: bool,
    publish: bool,
) -> anyhow::Result<()> {
    let meta = std::fs::metadata(&file).map_err(|e| {
        hint(
            format!("cannot read {}: {e}", file.display()),
            "check the path; `store add` takes one regular file",
        )
    })?;
    if !meta.is_file() {
        return Err(hint(
            format!("{} is not a regular file", file.display()),
            "directories are not supported yet; pack them (tar) and add the archive",
        ));
    }
    let store = open_store(home)?;
    let bar = (printer.shows_progress() && meta.len() >= PROGRESS_THRESHOLD).then(|| {
        let bar = ProgressBar::new(meta.len());
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} importing [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    });
    let tick = bar.clone();
    let imported = store
        .add_file_with_progress(&file, move |n| {
            if let Some(bar) = &tick {
                bar.inc(n);
            }
        })
        .await
        .with_context(|| format!("cannot import {}", file.display()))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if publish {
        let url = home.active_profile()?.store_url.ok_or_else(|| {
            hint(
                "the active profile has no store_url",
                "run `khachapuri dev` or set store_url in the profile",
            )
        })?;
        let kubo = KuboClient::new(url.clone(), Limits::default())?
            .with_token(publish_token(&home.active_profile()?)?);
        let added = kubo
            .add_file(&file)
            .await
            .with_context(|| format!("cannot publish to {url}"))?;
        if added.cid != imported.cid {
            anyhow::bail!(
                "{url} computed {} but the local import gave {}: the node does not use the unixfs-v1-2025 profile",
                added.cid,
                imported.cid
            );
        }
        printer.status(format!("published to {url}"));
    }
    if json {
        printer.json(&json!({"cid": imported.cid.to_string(), "size": imported.size}));
    } else {
        printer.data(imported.cid);
    }
    Ok(())
}

async fn get(
    home: &Home,
    printer: &Printer,
    cid: &str,
    output: Option<PathBuf>,
) -> anyhow::Result<()> {
    let cid: Cid = cid.parse().map_err(|e| {
        hint(
            format!("{cid:?} is not a CID: {e}"),
            "CIDs look like bafkrei… or bafybei… (or Qm… for old ones)",
        )
    })?;
    let store = open_store(home)?;
    store.fetch(cid).await.map_err(|e| {
        anyhow::Error::new(e).context(hint(
            format!("cannot get {cid}"),
            "set store_url or gateways in the active profile, or `store add` the file first",
        ))
    })?;
    match output {
        Some(path) => {
            let mut file = tokio::fs::File::create(&path)
                .await
                .with_context(|| format!("cannot create {}", path.display()))?;
            let result = store.export_to(cid, &mut file, u64::MAX).await;
            if let Err(e) = result {
                drop(file);
                let _ = std::fs::remove_file(&path);
                return Err(e).with_context(|| format!("cannot export {cid}"));
            }
            file.sync_all().await?;
            printer.status(format!("wrote {}", path.display()));
        }
        None => {
            // File bytes are data: streamed to stdout through the printer.
            let mut stdout = PrinterWriter(printer);
            store
                .export_to(cid, &mut stdout, u64::MAX)
                .await
                .with_context(|| format!("cannot export {cid}"))?;
        }
    }
    Ok(())
}

/// The token a store server asks publishers for: the file's first line, else
/// `KHACHAPURI_STORE_TOKEN`; `None` when neither is set.
pub(crate) fn server_token(file: Option<&Path>) -> anyhow::Result<Option<String>> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            hint(
                format!("cannot read the token file {}: {e}", path.display()),
                "write the token on the file's first line (e.g. `openssl rand -hex 32 > token`)",
            )
        })?;
        let token = text.lines().next().unwrap_or("").trim().to_string();
        if token.is_empty() {
            return Err(hint(
                format!("the token file {} is empty", path.display()),
                "write the token on the file's first line",
            ));
        }
        return Ok(Some(token));
    }
    Ok(std::env::var(TOKEN_ENV)
        .ok()
        .filter(|t| !t.trim().is_empty()))
}

/// The token publishing sends to the profile's store: `KHACHAPURI_STORE_TOKEN`, else the
/// file named by the profile's `store_token_file`; `None` for an open (loopback) store.
pub(crate) fn publish_token(profile: &crate::home::Profile) -> anyhow::Result<Option<String>> {
    if let Some(t) = std::env::var(TOKEN_ENV)
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        return Ok(Some(t.trim().to_string()));
    }
    match profile
        .extra
        .get("store_token_file")
        .and_then(|v| v.as_str())
    {
        Some(path) => server_token(Some(Path::new(path))),
        None => Ok(None),
    }
}

async fn serve(
    home: &Home,
    printer: &Printer,
    listen: SocketAddr,
    config: PublishConfig,
) -> anyhow::Result<()> {
    if let Err(e) = config.check_exposure(listen) {
        return Err(hint(
            e.to_string(),
            "pass --token-file FILE (or set KHACHAPURI_STORE_TOKEN); publishers then set the same variable or `store_token_file` in their profile",
        ));
    }
    let store = open_store(home)?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        hint(
            format!("cannot listen on {listen}: {e}"),
            "pick another address with --listen, e.g. 127.0.0.1:0",
        )
    })?;
    let addr = listener.local_addr()?;
    printer.status(format!(
        "serving {} (trustless gateway /ipfs/CID and Kubo RPC /api/v0); Ctrl-C stops",
        home.store_dir().display()
    ));
    printer.data(format!("http://{addr}"));
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    khachapuri_store::serve_with(
        listener,
        store.local().clone(),
        Limits::default(),
        config,
        shutdown,
    )
    .await?;
    printer.status("store server stopped");
    Ok(())
}

/// Lets the exporter stream into [`Printer::bytes`] (stdout) chunk by chunk.
struct PrinterWriter<'a>(&'a Printer);

impl tokio::io::AsyncWrite for PrinterWriter<'_> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(self.0.bytes(buf).map(|()| buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_file_gives_its_first_line_and_empty_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("token");
        std::fs::write(&file, "  s3cret \nsecond line\n").expect("write");
        assert_eq!(
            server_token(Some(&file)).expect("read").as_deref(),
            Some("s3cret")
        );
        std::fs::write(&file, "\n").expect("write");
        let err = server_token(Some(&file)).expect_err("empty");
        assert!(err.to_string().contains("empty"), "{err}");
        let missing = dir.path().join("absent");
        assert!(server_token(Some(&missing)).is_err());
    }
}
