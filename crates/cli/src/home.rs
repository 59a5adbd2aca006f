//! The home directory (`--home`, `KHACHAPURI_HOME`, default `~/.khachapuri`): config,
//! profiles, keys and local data. Profiles let `khachapuri dev` point every other command
//! at the local network with no flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// A resolved home directory.
#[derive(Debug, Clone)]
pub struct Home {
    /// Root of everything the CLI keeps on disk.
    root: PathBuf,
}

/// `config.toml` in the home: which profile is active.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Config {
    /// Name of the profile commands use when none is given.
    #[serde(default)]
    pub active_profile: Option<String>,
}

/// A named network: where the store, providers and chain of one network are.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Profile {
    /// Trustless gateway / Kubo-RPC-compatible store that `deploy` publishes to.
    #[serde(default)]
    pub store_url: Option<String>,
    /// Extra trustless gateways `store get` and providers read from.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Providers known to this profile (the first is the default target).
    #[serde(default)]
    pub providers: Vec<ProviderEntry>,
    /// Everything else commands of later layers keep here (chain, wallet, ...).
    #[serde(flatten)]
    pub extra: BTreeMap<String, toml::Value>,
}

/// A provider as the CLI knows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProviderEntry {
    /// Registry name.
    pub name: String,
    /// Base URL of the node.
    pub url: String,
    /// Operator address (hex), when known.
    #[serde(default)]
    pub address: Option<String>,
}

impl Home {
    /// Picks the home from the flag/env value or `~/.khachapuri`, creating it if missing.
    pub fn resolve(flag: Option<&Path>) -> anyhow::Result<Self> {
        let root = match flag {
            Some(p) => p.to_path_buf(),
            None => {
                let base = std::env::var_os("HOME")
                    .context("HOME is not set; pass --home DIR or set KHACHAPURI_HOME")?;
                PathBuf::from(base).join(".khachapuri")
            }
        };
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create home directory {}", root.display()))?;
        Ok(Self { root })
    }

    /// Root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Local blockstore of the CLI (and of `khachapuri dev`'s store).
    pub fn store_dir(&self) -> PathBuf {
        self.root.join("store")
    }

    /// Reads `config.toml` (missing file means defaults).
    pub fn config(&self) -> anyhow::Result<Config> {
        read_toml(&self.root.join("config.toml"))
    }

    /// Writes `config.toml` atomically.
    #[cfg_attr(not(test), allow(dead_code, reason = "used by `khachapuri dev`"))]
    pub fn save_config(&self, config: &Config) -> anyhow::Result<()> {
        write_toml(&self.root.join("config.toml"), config)
    }

    /// The active profile, or an empty one when none is active.
    pub fn active_profile(&self) -> anyhow::Result<Profile> {
        match self.config()?.active_profile {
            Some(name) => self.profile(&name),
            None => Ok(Profile::default()),
        }
    }

    /// Reads `profiles/NAME.toml`.
    pub fn profile(&self, name: &str) -> anyhow::Result<Profile> {
        read_toml(&self.root.join("profiles").join(format!("{name}.toml")))
    }

    /// Writes `profiles/NAME.toml` atomically.
    #[cfg_attr(not(test), allow(dead_code, reason = "used by `khachapuri dev`"))]
    pub fn save_profile(&self, name: &str, profile: &Profile) -> anyhow::Result<()> {
        write_toml(
            &self.root.join("profiles").join(format!("{name}.toml")),
            profile,
        )
    }
}

fn read_toml<T: Default + for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<T> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            toml::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Temp file + rename so a crash never leaves a half-written config.
fn write_toml<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let dir = path.parent().context("config path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let text = toml::to_string_pretty(value).context("cannot encode config")?;
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_round_trips_and_missing_is_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::resolve(Some(dir.path())).expect("home");
        assert!(home.config().expect("config").active_profile.is_none());
        let mut p = Profile {
            store_url: Some("http://127.0.0.1:5001".into()),
            ..Profile::default()
        };
        p.extra
            .insert("chain_id".into(), toml::Value::Integer(31337));
        home.save_profile("dev", &p).expect("save");
        home.save_config(&Config {
            active_profile: Some("dev".into()),
        })
        .expect("save config");
        let back = home.active_profile().expect("load");
        assert_eq!(back.store_url.as_deref(), Some("http://127.0.0.1:5001"));
        assert_eq!(
            back.extra.get("chain_id"),
            Some(&toml::Value::Integer(31337))
        );
    }
}
