//! The `khachapuri dev` harness shared by the CLI tests that drive a whole local network
//! through the real binary: start it in a throwaway home, run commands against it, stop
//! it when the test ends.

// Each test binary uses a different part of the harness.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running `khachapuri dev` (killed on drop).
pub struct Dev {
    /// The running `khachapuri dev`.
    pub child: Child,
    /// Its `--home`, removed when the test ends.
    pub home: tempfile::TempDir,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_khachapuri")
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

impl Dev {
    pub fn start() -> Dev {
        Dev::start_with(&[])
    }

    /// [`Dev::start`] with more `khachapuri dev` flags.
    pub fn start_with(extra: &[&str]) -> Dev {
        let home = tempfile::tempdir().unwrap();
        let mut child = Command::new(bin())
            .arg("--home")
            .arg(home.path())
            .args([
                "dev",
                "--store-listen",
                "127.0.0.1:0",
                "--provider-listen",
                "127.0.0.1:0",
                "--gateway-listen",
                "127.0.0.1:0",
            ])
            .args(["--chain-port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn khachapuri dev");
        // The last endpoint line (provider) means everything is up and the profile written.
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(Instant::now() < deadline, "khachapuri dev did not come up");
            match lines.next() {
                Some(Ok(line)) if line.starts_with("provider") => break,
                Some(Ok(_)) => {}
                _ => {
                    let mut err = String::new();
                    use std::io::Read;
                    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
                    panic!("khachapuri dev exited early: {err}");
                }
            }
        }
        Dev { child, home }
    }

    pub fn run(&self, args: &[&str], cwd: &Path) -> Output {
        Command::new(bin())
            .arg("--home")
            .arg(self.home.path())
            .args(args)
            .current_dir(cwd)
            .output()
            .expect("run khachapuri")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_in(args, &root())
    }

    pub fn ok_in(&self, args: &[&str], cwd: &Path) -> String {
        let out = self.run(args, cwd);
        assert!(
            out.status.success(),
            "khachapuri {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn info(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["info", "--json"])).unwrap()
    }
}
