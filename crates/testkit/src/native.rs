//! Native programs for the `process` runtime's tests: `examples/native-hello` built by its
//! own script, the hostile programs of `tests/guests/native/` compiled statically, and
//! hostile archives. Tests build what they need and fail loudly when the C compiler
//! (`cc`, Debian gcc + libc6-dev, see scripts/setup) is missing.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;

use crate::guests::root;

fn native_dir() -> PathBuf {
    let dir = root().join("target/guests/native");
    std::fs::create_dir_all(&dir).expect("create target/guests/native");
    dir
}

/// `examples/native-hello/target/native-hello.tar`, built with the example's `build.sh`.
/// A file lock serialises the builds of parallel tests (threads and processes alike):
/// the script writes its outputs in place.
pub fn native_hello() -> Bytes {
    let example = root().join("examples/native-hello");
    let lock = std::fs::File::create(native_dir().join(".native-hello.lock")).expect("lock file");
    lock.lock().expect("lock native-hello build");
    let status = Command::new(example.join("build.sh"))
        .status()
        .expect("run examples/native-hello/build.sh");
    assert!(
        status.success(),
        "building examples/native-hello failed: is a C compiler with static glibc installed (scripts/setup)?"
    );
    Bytes::from(
        std::fs::read(example.join("target/native-hello.tar")).expect("read native-hello.tar"),
    )
}

/// `tests/guests/native/{name}.c`, compiled with `cc -static` and tarred as `main`.
pub fn native_c(name: &str) -> Bytes {
    let src = root().join(format!("tests/guests/native/{name}.c"));
    // Unique output per process: parallel test binaries never see a partial file.
    let bin = native_dir().join(format!("{name}-{}", std::process::id()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| {
            panic!("run {cc} to build {name}.c (install gcc + libc6-dev with scripts/setup): {e}")
        });
    assert!(status.success(), "compiling {} failed", src.display());
    let main = std::fs::read(&bin).expect("read binary");
    let _ = std::fs::remove_file(&bin);
    tar_of(&[("main", 0o755, &main)])
}

/// A ustar archive of `(name, mode, bytes)` regular files, names written raw (so
/// hostile names get in).
pub fn tar_of(files: &[(&str, u32, &[u8])]) -> Bytes {
    let mut b = tar::Builder::new(Vec::new());
    for (name, mode, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(*mode);
        h.set_size(data.len() as u64);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, *data).expect("append");
    }
    Bytes::from(b.into_inner().expect("tar"))
}

/// A tar holding `main` and a symlink `name` pointing at `target`.
pub fn tar_with_symlink(main: &[u8], name: &str, target: &str) -> Bytes {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o755);
    h.set_size(main.len() as u64);
    h.set_path("main").expect("path");
    h.set_cksum();
    b.append(&h, main).expect("append main");
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
    h.set_cksum();
    b.append(&h, std::io::empty()).expect("append link");
    Bytes::from(b.into_inner().expect("tar"))
}

/// A zip of `main` plus `zeros` bytes of zeros deflated into a few kilobytes.
pub fn zip_bomb(main: &[u8], zeros: usize) -> Bytes {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o755);
    w.start_file("main", opts).expect("zip main");
    w.write_all(main).expect("write main");
    w.start_file("bomb", opts).expect("zip bomb");
    let chunk = vec![0u8; 1 << 20];
    let mut left = zeros;
    while left > 0 {
        let n = left.min(chunk.len());
        w.write_all(&chunk[..n]).expect("write zeros");
        left -= n;
    }
    Bytes::from(w.finish().expect("zip").into_inner())
}
