#![allow(clippy::unwrap_used)]

use super::*;

/// A minimal x86-64 ELF header: enough for [`check_executable`].
fn elf() -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 2;
    h[18] = 62;
    h
}

enum E<'a> {
    File(&'a str, u32, &'a [u8]),
    Dir(&'a str),
    Link(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Char(&'a str),
}

/// A tar written header by header, so names the `tar` builder would refuse get in.
fn tar(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        let (name, data): (&str, &[u8]) = match e {
            E::File(n, mode, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                (n, d)
            }
            E::Dir(n) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                (n, &[])
            }
            E::Link(n, t) | E::Hard(n, t) => {
                h.set_entry_type(if matches!(e, E::Link(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                let l = &mut h.as_old_mut().linkname;
                l[..t.len()].copy_from_slice(t.as_bytes());
                (n, &[])
            }
            E::Char(n) => {
                h.set_entry_type(tar::EntryType::Char);
                (n, &[])
            }
        };
        let raw = &mut h.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o755);
    for (name, data) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn run(archive: &[u8], limits: UnpackLimits) -> (tempfile::TempDir, Result<u64, UnpackError>) {
    let dir = tempfile::tempdir().unwrap();
    let r = unpack(archive, &dir.path().join("out"), &limits);
    (dir, r)
}

fn refused(archive: &[u8], needle: &str) {
    let (dir, r) = run(archive, UnpackLimits::default());
    let e = r.expect_err("refused");
    assert!(e.0.contains(needle), "{e} should mention {needle:?}");
    // Nothing ever lands beside the output directory.
    let beside: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert_eq!(beside.len(), 1, "{beside:?}");
    remove_tree(&dir.path().join("out"));
}

#[test]
fn a_good_tar_unpacks_read_only_with_modes_normalised() {
    let elf = elf();
    let a = tar(&[
        E::File("./main", 0o4755, &elf),
        E::Dir("lib/"),
        E::File("lib/data.txt", 0o666, b"hello"),
        E::Link("lib/alias", "data.txt"),
        E::Link("up", "lib/../lib/data.txt"),
    ]);
    let (dir, r) = run(&a, UnpackLimits::default());
    assert_eq!(r.unwrap(), elf.len() as u64 + 5);
    let out = dir.path().join("out");
    let mode = |p: &str| fs::metadata(out.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("main"), 0o555, "setuid stripped, executable kept");
    assert_eq!(mode("lib/data.txt"), 0o444);
    assert_eq!(mode("lib"), 0o555);
    assert_eq!(mode(""), 0o555);
    assert_eq!(fs::read(out.join("lib/alias")).unwrap(), b"hello");
    remove_tree(&out);
    assert!(!out.exists(), "remove_tree deletes the read-only tree");
}

#[test]
fn a_good_zip_unpacks() {
    let elf = elf();
    let a = zip(&[("main", &elf), ("share/x.txt", b"x")]);
    let (dir, r) = run(&a, UnpackLimits::default());
    assert_eq!(r.unwrap(), elf.len() as u64 + 1);
    assert!(dir.path().join("out/share/x.txt").is_file());
    remove_tree(&dir.path().join("out"));
}

#[test]
fn escaping_names_are_refused() {
    let elf = elf();
    refused(
        &tar(&[
            E::File("main", 0o755, &elf),
            E::File("../evil", 0o644, b"x"),
        ]),
        "..",
    );
    refused(&tar(&[E::File("a/../../evil", 0o644, b"x")]), "..");
    refused(&tar(&[E::File("/tmp/evil", 0o644, b"x")]), "absolute");
    refused(&zip(&[("main", &elf), ("../evil", b"x")]), "..");
    refused(&zip(&[("/etc/evil", b"x")]), "absolute");
    refused(&zip(&[("a\\..\\evil", b"x")]), "backslash");
}

#[test]
fn links_out_and_special_files_are_refused() {
    let elf = elf();
    refused(&tar(&[E::Link("etc", "../../etc")]), "outside");
    refused(&tar(&[E::Link("shadow", "/etc/shadow")]), "outside");
    refused(&tar(&[E::Link("a/b", "../../x")]), "outside");
    // An inside link is fine, but nothing may be written through it.
    refused(
        &tar(&[
            E::Dir("sub/"),
            E::Link("l", "sub"),
            E::File("l/x", 0o644, b"x"),
        ]),
        "beneath the symlink",
    );
    refused(
        &tar(&[E::File("main", 0o755, &elf), E::Hard("h", "/etc/shadow")]),
        "hard link",
    );
    refused(&tar(&[E::Char("null")]), "character device");
    refused(
        &tar(&[E::File("main", 0o755, &elf), E::File("main", 0o755, &elf)]),
        "twice",
    );
}

#[test]
fn bombs_stop_at_the_limits() {
    let zeros = vec![0u8; 4 << 20];
    let a = zip(&[("main", &elf()), ("bomb", &zeros)]);
    assert!(a.len() < 64 << 10, "compressed to {} bytes", a.len());
    let limits = UnpackLimits {
        max_bytes: 1 << 20,
        max_entries: 100,
    };
    let (_dir, r) = run(&a, limits);
    assert!(r.unwrap_err().0.contains("more than 1048576 bytes"));
    let many: Vec<(String, Vec<u8>)> = (0..20).map(|i| (format!("f{i}"), vec![])).collect();
    let many: Vec<(&str, &[u8])> = many
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let limits = UnpackLimits {
        max_bytes: 1 << 20,
        max_entries: 10,
    };
    let (_dir, r) = run(&zip(&many), limits);
    assert!(r.unwrap_err().0.contains("more than 10 entries"));
    let t: Vec<E<'_>> = (0..20).map(|_| E::Dir("d/")).collect();
    let (_dir, r) = run(&tar(&t), limits);
    assert!(r.is_err());
}

#[test]
fn main_must_be_an_x86_64_program() {
    refused(
        &tar(&[E::File("other", 0o755, &elf())]),
        "no regular file `main`",
    );
    refused(
        &tar(&[E::File("main", 0o755, b"MZ not elf")]),
        "neither an ELF",
    );
    let mut arm = elf();
    arm[18] = 183;
    refused(&tar(&[E::File("main", 0o755, &arm)]), "not an x86-64");
    refused(b"just some bytes, not an archive", "neither a tar");
    let (dir, r) = run(
        &tar(&[E::File("main", 0o644, b"#!/bin/sh\n")]),
        UnpackLimits::default(),
    );
    r.unwrap();
    remove_tree(&dir.path().join("out"));
}

#[test]
fn link_targets_are_checked_lexically() {
    assert!(link_stays_inside(Path::new("a/b"), Path::new("../c")));
    assert!(!link_stays_inside(Path::new("a/b"), Path::new("../../c")));
    assert!(!link_stays_inside(Path::new("b"), Path::new("/c")));
    assert!(!link_stays_inside(Path::new("b"), Path::new("")));
    assert!(link_stays_inside(Path::new("b"), Path::new("./c/../d")));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn part() -> impl Strategy<Value = &'static str> {
        proptest::sample::select(vec!["a", "b", "..", ".", "", "/", "main", "c\\d"])
    }

    fn name() -> impl Strategy<Value = String> {
        proptest::collection::vec(part(), 1..5).prop_map(|p| p.join("/"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever the names and link targets, nothing is created outside the output
        /// directory and every symlink left behind resolves inside it.
        #[test]
        fn nothing_escapes(files in proptest::collection::vec((name(), name(), any::<bool>()), 1..6)) {
            let elf = elf();
            let mut entries = vec![E::File("main", 0o755, &elf)];
            for (n, t, link) in &files {
                entries.push(if *link { E::Link(n, t) } else { E::File(n, 0o644, b"x") });
            }
            let a = tar(&entries);
            let (dir, _r) = run(&a, UnpackLimits::default());
            let beside: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
            prop_assert_eq!(beside.len(), 1);
            let out = dir.path().join("out");
            let root = out.canonicalize().unwrap();
            let mut stack = vec![out.clone()];
            while let Some(p) = stack.pop() {
                let m = fs::symlink_metadata(&p).unwrap();
                if m.file_type().is_symlink() {
                    if let Ok(real) = p.canonicalize() {
                        prop_assert!(real.starts_with(&root), "{} -> {}", p.display(), real.display());
                    }
                } else if m.is_dir() {
                    for e in fs::read_dir(&p).unwrap().flatten() {
                        stack.push(e.path());
                    }
                }
            }
            remove_tree(&out);
        }
    }
}
