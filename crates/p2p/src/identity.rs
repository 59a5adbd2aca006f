//! The node's libp2p identity on disk: an ed25519 key, created on first start and kept,
//! so the peer id in the registry record stays valid across restarts.

use std::io::Write;
use std::path::Path;

use libp2p::identity::Keypair;

use crate::error::P2pError;

/// Loads the key at `path`, or creates it (mode 0600, written to a temporary file and
/// renamed, so a crash never leaves half a key). Blocking: call off the reactor.
pub fn load_or_create_key(path: &Path) -> Result<Keypair, P2pError> {
    let io = |what: &str| {
        let what = format!("{what} {}", path.display());
        move |source| P2pError::Io { what, source }
    };
    match std::fs::read(path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| {
            P2pError::Config(format!(
                "{} is not a libp2p key ({e}); move it away to create a new identity",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .map_err(|e| P2pError::Config(format!("cannot encode the key: {e}")))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io("create the directory of"))?;
            }
            let tmp = path.with_extension("tmp");
            {
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create(true).truncate(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut f = options.open(&tmp).map_err(io("write"))?;
                f.write_all(&bytes).map_err(io("write"))?;
                f.sync_all().map_err(io("sync"))?;
            }
            std::fs::rename(&tmp, path).map_err(io("rename into"))?;
            Ok(key)
        }
        Err(e) => Err(io("read")(e)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/p2p.key");
        let a = load_or_create_key(&path).unwrap();
        let b = load_or_create_key(&path).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        std::fs::write(&path, b"garbage").unwrap();
        assert!(load_or_create_key(&path).is_err());
    }
}
