//! The provider's X25519 key on disk: 64 hex characters, mode 0600. The CLI writes it
//! on `provider register` (and `dev`); the node reads it to open envelopes sealed to it.

use std::path::Path;

use zeroize::Zeroizing;

use crate::{hpke, SealError};

/// The X25519 public key of `secret` (what the registry publishes).
pub fn public_key(secret: &[u8; 32]) -> [u8; 32] {
    hpke::public_key(secret)
}

/// A fresh secret from the OS random source.
pub fn generate_secret() -> [u8; 32] {
    hpke::generate_secret()
}

fn key_err(path: &Path, reason: impl std::fmt::Display) -> SealError {
    SealError::KeyFile {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn decode_hex32(text: &str) -> Option<[u8; 32]> {
    let t = text.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    if t.len() != 64 || !t.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(t.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the key pair at `path`. Returns (secret, public).
pub fn load_key_file(path: &Path) -> Result<([u8; 32], [u8; 32]), SealError> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| key_err(path, e))?);
    let secret = decode_hex32(&text).ok_or_else(|| key_err(path, "not a 32-byte hex key"))?;
    Ok((secret, public_key(&secret)))
}

/// Reads the key pair at `path`, generating and writing it (mode 0600) on first use.
pub fn load_or_create_key_file(path: &Path) -> Result<([u8; 32], [u8; 32]), SealError> {
    match std::fs::metadata(path) {
        Ok(_) => load_key_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = generate_secret();
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| key_err(path, e))?;
            }
            write_private(path, &encode_hex(&secret)).map_err(|e| key_err(path, e))?;
            Ok((secret, public_key(&secret)))
        }
        Err(e) => Err(key_err(path, e)),
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys/x25519.key");
        let (s1, p1) = load_or_create_key_file(&path).expect("create");
        let (s2, p2) = load_or_create_key_file(&path).expect("load");
        assert_eq!((s1, p1), (s2, p2));
        assert_eq!(p1, public_key(&s1));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "nothex").expect("write");
        assert!(matches!(
            load_key_file(&path),
            Err(SealError::KeyFile { .. })
        ));
    }
}
