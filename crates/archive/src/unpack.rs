//! Unpacking the archive of a `process` deployment (tar or zip) into a fresh directory,
//! safely: the archive comes from a stranger, so nothing in it may reach outside the
//! directory or smuggle privileges in.
//!
//! - Entry names are checked component by component: absolute paths, `..`, empty or
//!   `.`-only names, backslashes and NUL bytes are refused; so is writing *through* a
//!   symlink the archive created earlier, and a second entry for a path already written.
//! - Only regular files, directories and symlinks whose (relative) target stays inside
//!   the directory are accepted; hard links, devices, FIFOs and absolute or escaping link
//!   targets are refused.
//! - Modes are normalised: files become `0444`, or `0555` when any execute bit was set
//!   (always for `main`); directories `0555` once done. Setuid, setgid and sticky bits
//!   never survive, and the tree is read-only for everyone, the node included.
//! - Bytes written are counted as they are decompressed (sizes declared in headers are
//!   not trusted), so a zip or tar bomb stops at [`UnpackLimits::max_bytes`]; the number
//!   of entries is capped by [`UnpackLimits::max_entries`].
//!
//! Blocking: call it from `spawn_blocking`.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Bounds on one archive's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Total bytes of file contents written, counted as decompressed.
    pub max_bytes: u64,
    /// Entries (files, directories, links) in the archive.
    pub max_entries: u64,
}

impl Default for UnpackLimits {
    /// 512 MiB and 10 000 entries: far more than a self-contained program needs.
    fn default() -> Self {
        UnpackLimits {
            max_bytes: 512 << 20,
            max_entries: 10_000,
        }
    }
}

/// Why an archive was refused. Its message names the entry at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackError(pub String);

impl std::fmt::Display for UnpackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn refuse<T>(why: impl Into<String>) -> Result<T, UnpackError> {
    Err(UnpackError(why.into()))
}

/// Longest entry name accepted, in bytes.
const MAX_NAME: usize = 1024;
/// Deepest nesting accepted.
const MAX_DEPTH: usize = 32;
/// The program every `process` artifact must have at its root.
pub const MAIN: &str = "main";

/// What kind of archive `bytes` is, from its magic numbers.
fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06")
}

fn is_tar(bytes: &[u8]) -> bool {
    bytes.len() >= 512 && &bytes[257..262] == b"ustar"
}

/// Unpacks `archive` (tar or zip) into `dest`, which must not exist yet; returns the
/// bytes of file contents written. On error `dest` may hold a partial tree: the caller
/// unpacks into a temporary name and deletes it (see [`remove_tree`]).
pub fn unpack(archive: &[u8], dest: &Path, limits: &UnpackLimits) -> Result<u64, UnpackError> {
    fs::create_dir(dest)
        .map_err(|e| UnpackError(format!("cannot create {}: {e}", dest.display())))?;
    let mut w = Writer {
        root: dest,
        limits: *limits,
        written: 0,
        entries: 0,
        seen: HashSet::new(),
        links: HashSet::new(),
        dirs: vec![dest.to_path_buf()],
    };
    if is_zip(archive) {
        unpack_zip(archive, &mut w)?;
    } else if is_tar(archive) {
        unpack_tar(archive, &mut w)?;
    } else {
        return refuse("the artifact is neither a tar (ustar) nor a zip archive");
    }
    w.finish()?;
    Ok(w.written)
}

/// Deletes a tree [`unpack`] made (read-only directories included). Errors are ignored:
/// what cannot be deleted is retried by the next cleanup.
pub fn remove_tree(dir: &Path) {
    make_writable(dir);
    let _ = fs::remove_dir_all(dir);
}

fn make_writable(dir: &Path) {
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            make_writable(&e.path());
        }
    }
}

struct Writer<'a> {
    root: &'a Path,
    limits: UnpackLimits,
    written: u64,
    entries: u64,
    /// Relative paths already written (files, links, explicit directories).
    seen: HashSet<PathBuf>,
    /// Relative paths of the symlinks created: nothing may be written beneath one.
    links: HashSet<PathBuf>,
    /// Directories to make read-only at the end, in creation order.
    dirs: Vec<PathBuf>,
}

impl Writer<'_> {
    fn count(&mut self) -> Result<(), UnpackError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return refuse(format!(
                "the archive has more than {} entries",
                self.limits.max_entries
            ));
        }
        Ok(())
    }

    /// Creates the parents of `rel`, refusing to go through a link of the archive.
    fn parents(&mut self, rel: &Path) -> Result<PathBuf, UnpackError> {
        let mut at = PathBuf::new();
        if let Some(parent) = rel.parent() {
            for c in parent.components() {
                at.push(c);
                if self.links.contains(&at) {
                    return refuse(format!(
                        "entry {} is beneath the symlink {}",
                        rel.display(),
                        at.display()
                    ));
                }
                let full = self.root.join(&at);
                match fs::symlink_metadata(&full) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        return refuse(format!(
                            "entry {} is beneath the file {}",
                            rel.display(),
                            at.display()
                        ))
                    }
                    Err(_) => {
                        fs::create_dir(&full).map_err(io_err(&at))?;
                        self.dirs.push(full);
                    }
                }
            }
        }
        Ok(self.root.join(rel))
    }

    fn first_time(&mut self, rel: &Path) -> Result<(), UnpackError> {
        if !self.seen.insert(rel.to_path_buf()) {
            return refuse(format!("entry {} appears twice", rel.display()));
        }
        Ok(())
    }

    fn dir(&mut self, name: &[u8]) -> Result<(), UnpackError> {
        self.count()?;
        let Some(rel) = clean_name(name)? else {
            return Ok(()); // "./": the root itself
        };
        self.first_time(&rel)?;
        let full = self.parents(&rel)?;
        match fs::symlink_metadata(&full) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => refuse(format!("directory {} clashes with a file", rel.display())),
            Err(_) => {
                fs::create_dir(&full).map_err(io_err(&rel))?;
                self.dirs.push(full);
                Ok(())
            }
        }
    }

    fn file(&mut self, name: &[u8], mode: u32, content: &mut dyn Read) -> Result<(), UnpackError> {
        self.count()?;
        let Some(rel) = clean_name(name)? else {
            return refuse("a file entry names the archive root");
        };
        self.first_time(&rel)?;
        let full = self.parents(&rel)?;
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&full)
            .map_err(io_err(&rel))?;
        let left = self.limits.max_bytes.saturating_sub(self.written);
        let n = io::copy(&mut content.take(left.saturating_add(1)), &mut out).map_err(|e| {
            UnpackError(format!(
                "cannot read entry {} of the archive: {e}",
                rel.display()
            ))
        })?;
        if n > left {
            return refuse(format!(
                "the archive unpacks to more than {} bytes",
                self.limits.max_bytes
            ));
        }
        self.written += n;
        out.flush().map_err(io_err(&rel))?;
        let exec = mode & 0o111 != 0 || rel == Path::new(MAIN);
        let mode = if exec { 0o555 } else { 0o444 };
        fs::set_permissions(&full, fs::Permissions::from_mode(mode)).map_err(io_err(&rel))
    }

    fn symlink(&mut self, name: &[u8], target: &[u8]) -> Result<(), UnpackError> {
        self.count()?;
        let Some(rel) = clean_name(name)? else {
            return refuse("a symlink entry names the archive root");
        };
        let target = std::str::from_utf8(target).map_err(|_| {
            UnpackError(format!("symlink {} has a non-UTF-8 target", rel.display()))
        })?;
        if !link_stays_inside(&rel, Path::new(target)) {
            return refuse(format!(
                "symlink {} points outside the archive ({target:?})",
                rel.display()
            ));
        }
        self.first_time(&rel)?;
        let full = self.parents(&rel)?;
        std::os::unix::fs::symlink(target, &full).map_err(io_err(&rel))?;
        self.links.insert(rel);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), UnpackError> {
        let main = self.root.join(MAIN);
        let meta = fs::symlink_metadata(&main).ok();
        if !meta.is_some_and(|m| m.is_file()) {
            return refuse("the archive has no regular file `main` at its root");
        }
        check_executable(&main)?;
        // Deepest first, so a parent is still writable while its children change.
        for d in self.dirs.iter().rev() {
            fs::set_permissions(d, fs::Permissions::from_mode(0o555))
                .map_err(|e| UnpackError(format!("cannot seal {}: {e}", d.display())))?;
        }
        Ok(())
    }
}

fn io_err(rel: &Path) -> impl Fn(io::Error) -> UnpackError + '_ {
    move |e| UnpackError(format!("cannot write entry {}: {e}", rel.display()))
}

/// `main` must be an x86-64 ELF program or a `#!` script (which needs an interpreter
/// the provider binds in).
fn check_executable(main: &Path) -> Result<(), UnpackError> {
    let mut head = [0u8; 20];
    let n = fs::File::open(main)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| UnpackError(format!("cannot read main: {e}")))?;
    let head = &head[..n];
    if head.starts_with(b"#!") {
        return Ok(());
    }
    if !head.starts_with(b"\x7fELF") || head.len() < 20 {
        return refuse("main is neither an ELF executable nor a #! script");
    }
    // EI_CLASS 2 = 64-bit, e_machine 62 = x86-64 (little endian).
    if head[4] != 2 || u16::from_le_bytes([head[18], head[19]]) != 62 {
        return refuse("main is not an x86-64 (64-bit) ELF executable");
    }
    Ok(())
}

/// The entry name as a clean relative path, `None` for the root (`.`, `./`).
fn clean_name(name: &[u8]) -> Result<Option<PathBuf>, UnpackError> {
    let shown = String::from_utf8_lossy(name);
    let name = std::str::from_utf8(name)
        .map_err(|_| UnpackError(format!("entry name {shown:?} is not UTF-8")))?;
    if name.len() > MAX_NAME {
        return refuse(format!("entry name of {} bytes is too long", name.len()));
    }
    if name.contains('\0') || name.contains('\\') {
        return refuse(format!("entry name {shown:?} has a NUL or backslash"));
    }
    if name.starts_with('/') {
        return refuse(format!("entry {shown:?} has an absolute path"));
    }
    let mut out = PathBuf::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return refuse(format!("entry {shown:?} contains `..`")),
            Component::RootDir | Component::Prefix(_) => {
                return refuse(format!("entry {shown:?} has an absolute path"))
            }
        }
    }
    if out.components().count() > MAX_DEPTH {
        return refuse(format!("entry {shown:?} is nested too deep"));
    }
    Ok(if out.as_os_str().is_empty() {
        None
    } else {
        Some(out)
    })
}

/// Whether a symlink at `link` (relative to the root) with `target` resolves, lexically,
/// inside the root. Absolute targets never do.
fn link_stays_inside(link: &Path, target: &Path) -> bool {
    if target.as_os_str().is_empty() || target.is_absolute() {
        return false;
    }
    let mut depth: usize = link.components().count().saturating_sub(1);
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

fn unpack_tar(bytes: &[u8], w: &mut Writer<'_>) -> Result<(), UnpackError> {
    use tar::EntryType as T;
    let mut archive = tar::Archive::new(bytes);
    let entries = archive
        .entries()
        .map_err(|e| UnpackError(format!("unreadable tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| UnpackError(format!("unreadable tar entry: {e}")))?;
        let name = entry.path_bytes().into_owned();
        let kind = entry.header().entry_type();
        match kind {
            T::Regular | T::Continuous => {
                let mode = entry.header().mode().unwrap_or(0o644);
                w.file(&name, mode, &mut entry)?;
            }
            T::Directory => w.dir(&name)?,
            T::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                w.symlink(&name, &target)?;
            }
            // Metadata records the tar crate folds into the next entry.
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => {}
            other => {
                return refuse(format!(
                    "tar entry {} is a {}: only files, directories and symlinks are allowed",
                    String::from_utf8_lossy(&name),
                    tar_kind(other)
                ))
            }
        }
    }
    Ok(())
}

fn tar_kind(t: tar::EntryType) -> &'static str {
    use tar::EntryType as T;
    match t {
        T::Link => "hard link",
        T::Char => "character device",
        T::Block => "block device",
        T::Fifo => "FIFO",
        _ => "special entry",
    }
}

fn unpack_zip(bytes: &[u8], w: &mut Writer<'_>) -> Result<(), UnpackError> {
    let mut archive = zip::ZipArchive::new(io::Cursor::new(bytes))
        .map_err(|e| UnpackError(format!("unreadable zip archive: {e}")))?;
    if archive.len() as u64 > w.limits.max_entries {
        return refuse(format!(
            "the archive has more than {} entries",
            w.limits.max_entries
        ));
    }
    for i in 0..archive.len() {
        let mut file = archive
            .by_index(i)
            .map_err(|e| UnpackError(format!("unreadable zip entry {i}: {e}")))?;
        let name = file.name_raw().to_vec();
        let mode = file.unix_mode().unwrap_or(0o644);
        const S_IFMT: u32 = 0o170000;
        match mode & S_IFMT {
            0o120000 => {
                // A symlink: its target is the content (bounded like any content).
                let mut target = Vec::new();
                (&mut file)
                    .take(MAX_NAME as u64 + 1)
                    .read_to_end(&mut target)
                    .map_err(|e| UnpackError(format!("unreadable zip entry {i}: {e}")))?;
                w.symlink(&name, &target)?;
            }
            0o040000 => w.dir(&name)?,
            0 | 0o100000 if file.is_dir() => w.dir(&name)?,
            0 | 0o100000 => w.file(&name, mode, &mut file)?,
            _ => {
                return refuse(format!(
                    "zip entry {} is a device, FIFO or socket: only files, directories and symlinks are allowed",
                    String::from_utf8_lossy(&name)
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
