//! `khachapuri.toml`: the human manifest in a function's folder. It says how to build
//! the artifact and what the deployment spec should ask for; `deploy` turns it (plus
//! flags) into a [`khachapuri_types::Spec`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use khachapuri_types::{Limits, RuntimeKind};
use serde::Deserialize;

use crate::output::hint;

/// File name looked up in a function folder.
pub const MANIFEST: &str = "khachapuri.toml";

/// A parsed manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Function name (for humans and templates).
    pub name: String,
    /// How the artifact runs.
    #[serde(default)]
    pub runtime: RuntimeKind,
    /// Shell command that builds the artifact, run in the folder.
    #[serde(default)]
    pub build: Option<String>,
    /// Path of the built artifact, relative to the folder.
    pub artifact: PathBuf,
    /// Plain environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `KEY=VALUE` files whose entries become (secret) env vars.
    #[serde(default)]
    pub env_files: Vec<PathBuf>,
    /// Requested limits.
    #[serde(default)]
    pub limits: Limits,
    /// Default provider to seal the spec to.
    #[serde(default)]
    pub provider: Option<String>,
}

impl Manifest {
    /// Reads `DIR/khachapuri.toml`.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            hint(
                format!("cannot read {}: {e}", path.display()),
                "run this in a function folder, or create one with `khachapuri init NAME`",
            )
        })?;
        toml::from_str(&text).with_context(|| format!("{} is not a valid manifest", path.display()))
    }
}

/// Parses a `KEY=VALUE` env file (blank lines and `#` comments skipped, optional quotes).
pub fn parse_env_file(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (k, v) = line
            .split_once('=')
            .with_context(|| format!("line {}: expected KEY=VALUE", n + 1))?;
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        out.push((k.trim().to_string(), v.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_manifest_and_env_files() {
        let m: Manifest = toml::from_str(
            "name = \"hello\"\nruntime = \"wagi\"\nbuild = \"make\"\nartifact = \"hello.wasm\"\n[env]\nA = \"1\"\n[limits]\ntimeout_ms = 500\n",
        )
        .expect("manifest");
        assert_eq!(m.runtime, RuntimeKind::Wagi);
        assert_eq!(m.limits.timeout_ms, Some(500));
        assert!(toml::from_str::<Manifest>("name = \"x\"\nartifact = \"a\"\nbogus = 1").is_err());
        let env = parse_env_file("# c\nexport A=1\nB = \"two words\"\n\nC='x=y'\n").expect("env");
        assert_eq!(
            env,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "x=y".into())
            ]
        );
        assert!(parse_env_file("novalue").is_err());
    }
}
