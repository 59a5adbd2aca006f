//! `khachapuri build [DIR]`: runs the manifest's build command and checks the artifact.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use clap::Args;

use crate::home::Home;
use crate::manifest::Manifest;
use crate::output::{hint, Printer};

/// Arguments of `build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Function folder (holds khachapuri.toml).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

/// Builds and prints the artifact path.
pub async fn run(args: BuildArgs, _home: &Home, printer: &Printer) -> anyhow::Result<()> {
    let manifest = Manifest::load(&args.dir)?;
    let artifact = build(&args.dir, &manifest, printer).await?;
    printer.data(artifact.display());
    Ok(())
}

/// Runs the build command (output to stderr) and returns the artifact's path.
pub async fn build(dir: &Path, manifest: &Manifest, printer: &Printer) -> anyhow::Result<PathBuf> {
    if let Some(cmd) = &manifest.build {
        printer.status(format!("building {} with `{cmd}`", manifest.name));
        let status = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(dir)
            // The manifest names the artifact under the project's own `target/`: a
            // CARGO_TARGET_DIR from the caller's shell would build it elsewhere.
            .env_remove("CARGO_TARGET_DIR")
            // stdout is reserved for data: the build's chatter goes to stderr.
            .stdout(std::io::stderr())
            .stdin(Stdio::null())
            .status()
            .await
            .with_context(|| format!("cannot run the build command `{cmd}`"))?;
        if !status.success() {
            return Err(hint(
                format!("the build command `{cmd}` failed ({status})"),
                "fix the errors above, then run `khachapuri build` again",
            ));
        }
    }
    let artifact = dir.join(&manifest.artifact);
    if !artifact.is_file() {
        return Err(hint(
            format!("artifact {} does not exist", artifact.display()),
            "check `artifact` in khachapuri.toml, or set `build` so that it is produced",
        ));
    }
    Ok(artifact)
}
