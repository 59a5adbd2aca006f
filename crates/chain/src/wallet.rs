//! Encrypted key files (Web3 Secret Storage / geth-style JSON keystores, scrypt + AES-128-CTR),
//! readable by geth, cast (`--keystore`) and MetaMask imports.

use std::path::{Path, PathBuf};

use alloy::primitives::{hex, Address, B256};
use alloy::signers::local::PrivateKeySigner;

use crate::error::{ChainError, Result};

/// Creates a keystore holding a fresh random key at `dir/name`; returns the signer.
pub fn create_keystore(dir: &Path, name: &str, password: &str) -> Result<PrivateKeySigner> {
    let signer = PrivateKeySigner::random_with(&mut rand::thread_rng());
    write_keystore(dir, name, &signer, password)?;
    Ok(signer)
}

/// Writes `signer`'s key encrypted with `password` to `dir/name` (replacing nothing: it
/// fails if the file exists, so a key is never lost by accident).
pub fn write_keystore(
    dir: &Path,
    name: &str,
    signer: &PrivateKeySigner,
    password: &str,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    if path.exists() {
        return Err(ChainError::Keystore(format!(
            "{} already exists; move it away first",
            path.display()
        )));
    }
    PrivateKeySigner::encrypt_keystore(
        dir,
        &mut rand::thread_rng(),
        signer.credential().to_bytes(),
        password,
        Some(name),
    )
    .map_err(|e| ChainError::Keystore(e.to_string()))?;
    // Add geth's plain `address` field so the address can be shown without the password.
    let text = std::fs::read_to_string(&path)?;
    let mut json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ChainError::Keystore(e.to_string()))?;
    if let Some(obj) = json.as_object_mut() {
        obj.insert(
            "address".into(),
            serde_json::Value::String(hex::encode(signer.address())),
        );
    }
    std::fs::write(&path, json.to_string())?;
    restrict_permissions(&path)?;
    Ok(path)
}

/// Imports a hex private key (with or without 0x) into a keystore at `dir/name`.
pub fn import_keystore(
    dir: &Path,
    name: &str,
    key_hex: &str,
    password: &str,
) -> Result<PrivateKeySigner> {
    let signer = parse_private_key(key_hex)?;
    write_keystore(dir, name, &signer, password)?;
    Ok(signer)
}

/// Decrypts the keystore at `path`.
pub fn open_keystore(path: &Path, password: &str) -> Result<PrivateKeySigner> {
    PrivateKeySigner::decrypt_keystore(path, password).map_err(|e| {
        ChainError::Keystore(format!(
            "cannot open {}: {e} (wrong password?)",
            path.display()
        ))
    })
}

/// The address recorded in a keystore file, without decrypting it.
pub fn keystore_address(path: &Path) -> Result<Address> {
    let text = std::fs::read_to_string(path)?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ChainError::Keystore(e.to_string()))?;
    json.get("address")
        .and_then(|a| a.as_str())
        .and_then(|a| a.parse::<Address>().ok())
        .ok_or_else(|| ChainError::Keystore(format!("{} records no address", path.display())))
}

/// Parses a 32-byte hex private key.
pub fn parse_private_key(key_hex: &str) -> Result<PrivateKeySigner> {
    let bytes: B256 = key_hex
        .trim()
        .parse()
        .map_err(|_| ChainError::Keystore("a private key is 32 bytes of hex".into()))?;
    PrivateKeySigner::from_bytes(&bytes).map_err(|e| ChainError::Keystore(e.to_string()))
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

#[cfg(not(unix))]
fn restrict_permissions(_path: &Path) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_open_and_import() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = create_keystore(dir.path(), "main.json", "pw").expect("create");
        let path = dir.path().join("main.json");
        assert_eq!(keystore_address(&path).expect("address"), s.address());
        assert_eq!(
            open_keystore(&path, "pw").expect("open").address(),
            s.address()
        );
        assert!(open_keystore(&path, "wrong").is_err());
        assert!(
            create_keystore(dir.path(), "main.json", "pw").is_err(),
            "never overwrites"
        );

        let dev = crate::anvil::DEV_KEYS[1];
        let imported = import_keystore(dir.path(), "dev.json", dev, "x").expect("import");
        assert_eq!(imported.address(), crate::anvil::dev_signer(1).address());
        assert!(parse_private_key("0x1234").is_err());
    }
}
