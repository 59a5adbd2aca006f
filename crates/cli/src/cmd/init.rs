//! `khachapuri init NAME [--lang rust|c|native]`: a new function folder that builds out of the
//! box. The templates are the repository's own examples, so they stay tested.

use std::path::Path;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::home::Home;
use crate::output::{hint, Printer};

/// Template languages.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Lang {
    /// Rust, a `wasi:http` component (wasm32-wasip2).
    Rust,
    /// C, a WASI preview1 module speaking CGI (wagi), built with clang + wasi-libc.
    C,
    /// C, a static native Linux program speaking CGI (process), tarred as `main`.
    Native,
}

/// Arguments of `init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Name of the function and of the folder to create.
    pub name: String,
    /// Language of the template.
    #[arg(long, value_enum, default_value = "rust")]
    pub lang: Lang,
}

const RUST_LIB: &str = include_str!("../../../../examples/hello/src/lib.rs");
const C_MAIN: &str = include_str!("../../../../examples/c-hello/main.c");
const C_BUILD: &str = include_str!("../../../../examples/c-hello/build.sh");
const NATIVE_MAIN: &str = include_str!("../../../../examples/native-hello/main.c");
const NATIVE_BUILD: &str = include_str!("../../../../examples/native-hello/build.sh");

/// Writes the template.
pub async fn run(args: InitArgs, _home: &Home, printer: &Printer) -> anyhow::Result<()> {
    let name = &args.name;
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_lowercase();
    if !valid {
        return Err(hint(
            format!("{name:?} is not a valid function name"),
            "use lowercase letters, digits, - and _, starting with a letter",
        ));
    }
    let dir = Path::new(name);
    if dir.exists() {
        return Err(hint(
            format!("{} already exists", dir.display()),
            "pick another name or remove the folder",
        ));
    }
    let files = template(args.lang, name);
    for (rel, text) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        #[cfg(unix)]
        if rel.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    printer.data(dir.display());
    printer.status(format!(
        "created {name}; next: cd {name} && khachapuri build && khachapuri deploy"
    ));
    Ok(())
}

/// The files of a new function folder in `lang`, named `name`.
fn template(lang: Lang, name: &str) -> Vec<(&'static str, String)> {
    match lang {
        Lang::Rust => vec![
            ("Cargo.toml", rust_cargo_toml(name)),
            ("src/lib.rs", RUST_LIB.to_string()),
            (
                "khachapuri.toml",
                manifest(
                    name,
                    "wasi-http",
                    "cargo build --target wasm32-wasip2 --release",
                    &format!(
                        "target/wasm32-wasip2/release/{}.wasm",
                        name.replace('-', "_")
                    ),
                ),
            ),
            (".gitignore", "/target\n".into()),
        ],
        Lang::C => vec![
            ("main.c", C_MAIN.to_string()),
            ("build.sh", C_BUILD.replace("c-hello", name)),
            (
                "khachapuri.toml",
                manifest(name, "wagi", "./build.sh", &format!("target/{name}.wasm")),
            ),
            (".gitignore", "/target\n".into()),
        ],
        Lang::Native => vec![
            ("main.c", NATIVE_MAIN.replace("native-hello", name)),
            ("build.sh", NATIVE_BUILD.replace("native-hello", name)),
            (
                "khachapuri.toml",
                manifest(name, "process", "./build.sh", &format!("target/{name}.tar")),
            ),
            (".gitignore", "/target\n".into()),
        ],
    }
}

fn rust_cargo_toml(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
wasi = "0.14"

[profile.release]
opt-level = "s"
lto = true
strip = true

# A guest built for wasm32-wasip2, not part of any host workspace.
[workspace]
"#
    )
}

fn manifest(name: &str, runtime: &str, build: &str, artifact: &str) -> String {
    format!(
        "# Khachapuri function manifest: what `khachapuri build` runs and `khachapuri deploy` uploads.\n\
         name = \"{name}\"\nruntime = \"{runtime}\"\nbuild = \"{build}\"\nartifact = \"{artifact}\"\n"
    )
}
