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
    // The encrypted key is first written inside a fresh 0700 directory nobody else can
    // enter, then its final file is created 0600: at no moment is it readable by others.
    let scratch = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    private_dir(&scratch)?;
    let written = PrivateKeySigner::encrypt_keystore(
        &scratch,
        &mut rand::thread_rng(),
        signer.credential().to_bytes(),
        password,
        Some(name),
    )
    .map_err(|e| ChainError::Keystore(e.to_string()))
    .and_then(|_| Ok(std::fs::read_to_string(scratch.join(name))?));
    let _ = std::fs::remove_dir_all(&scratch);
    let text = written?;
    // Add geth's plain `address` field so the address can be shown without the password.
    let mut json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ChainError::Keystore(e.to_string()))?;
    if let Some(obj) = json.as_object_mut() {
        obj.insert(
            "address".into(),
            serde_json::Value::String(hex::encode(signer.address())),
        );
    }
    write_private(&path, json.to_string().as_bytes())?;
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

/// Creates `path` (which must not exist) readable and writable by its owner only, from
/// its first byte on (mode 0600 at creation, not a chmod after the fact), and syncs it:
/// for key files and other secrets.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// Creates the directory `path` with mode 0700 (owner only).
fn private_dir(path: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_open_and_import() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = create_keystore(dir.path(), "main.json", "pw").expect("create");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("main.json"))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "owner-only from creation");
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
        assert_eq!(leftovers.len(), 1, "the scratch directory is gone");
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

        let dev = khachapuri_devnet::DEV_KEYS[1];
        let imported = import_keystore(dir.path(), "dev.json", dev, "x").expect("import");
        assert_eq!(
            imported.address(),
            khachapuri_devnet::dev_signer(1).address()
        );
        assert!(parse_private_key("0x1234").is_err());
    }
}
