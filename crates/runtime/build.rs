//! Builds `launch/launch.c`, the freestanding first program of a warm `process` sandbox
//! (see that file), with the C compiler Rust already needs as its linker on Linux.

#![allow(clippy::print_stdout)] // cargo reads its directives from a build script's stdout

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=launch/launch.c");
    println!("cargo:rerun-if-env-changed=CC");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target = std::env::var("TARGET").unwrap_or_default();
    let bin = out.join("khachapuri-launch");
    if !target.starts_with("x86_64-") || !target.contains("linux") {
        // The process runtime is x86-64 Linux only; elsewhere an empty launcher, which
        // the runtime refuses to use.
        std::fs::write(&bin, b"").expect("write the empty launcher");
        return;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args([
            "-static",
            "-nostdlib",
            "-ffreestanding",
            "-fno-builtin",
            "-fno-stack-protector",
            "-fno-pie",
            "-no-pie",
            "-Os",
            "-s",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-Wl,--build-id=none",
            "-o",
        ])
        .arg(&bin)
        .arg("launch/launch.c")
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{cc} failed to build launch/launch.c ({s}): install gcc (scripts/setup)"),
        Err(e) => panic!(
            "cannot run the C compiler {cc} for launch/launch.c ({e}): install gcc (scripts/setup)"
        ),
    }
}
