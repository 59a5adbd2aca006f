//! One call in one bubblewrap sandbox: build the command, feed the body on stdin, read a
//! bounded stdout, enforce the deadline by killing the sandbox, map the outcome.

use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::pre_exec::{self, Rlimits};
use super::Program;
use crate::cgi::{cgi_env, parse_cgi, HEADER_ALLOWANCE};
use crate::{CallOptions, GuestKind, ProcessConfig, RuntimeError};

/// Bytes of the program's stderr kept (for the log of a failed call; never sent out).
const STDERR_KEEP: usize = 4096;
/// How long reaping a killed sandbox may take before we stop waiting for it.
const REAP_GRACE: Duration = Duration::from_secs(5);
/// Where the artifact appears inside the sandbox.
const APP: &str = "/app";
/// Where the launcher's directory appears inside a warm sandbox.
const LAUNCH_DIR: &str = "/.khachapuri";
/// The launcher's file name (in its directory on the host and in the sandbox).
pub(crate) const LAUNCHER: &str = "khachapuri-launch";
/// Largest request environment the launcher accepts (`launch/launch.c`).
const MAX_ENV_BLOCK: usize = 1 << 20;

/// The bubblewrap arguments for one call (everything but the limits, which are rlimits).
fn args(
    config: &ProcessConfig,
    fd: i32,
    launcher_fd: Option<i32>,
    tmp_bytes: u64,
    env: &[(String, String)],
) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = Vec::with_capacity(48 + 3 * env.len());
    let mut push = |s: &str| a.push(s.into());
    for s in [
        // user, ipc, pid, net, uts and cgroup namespaces; the user one explicitly, since
        // `--disable-userns` needs it and it must not silently be skipped.
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--uid",
        "65534",
        "--gid",
        "65534",
        "--hostname",
        "khachapuri",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--ro-bind-fd",
    ] {
        push(s);
    }
    push(&fd.to_string());
    push(APP);
    if let Some(l) = launcher_fd {
        push("--ro-bind-fd");
        push(&l.to_string());
        push(LAUNCH_DIR);
    }
    // `--dev` is a tmpfs the size of half the host's memory, writable by the sandbox:
    // read-only it stays (the devices in it still work), so memory is only ever written
    // through the capped `/tmp`.
    for s in [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--remount-ro",
        "/dev",
        "--size",
    ] {
        push(s);
    }
    push(&tmp_bytes.to_string());
    for s in ["--tmpfs", "/tmp"] {
        push(s);
    }
    for d in &config.host_dirs {
        a.push("--ro-bind".into());
        a.push(d.into());
        a.push(d.into());
    }
    for s in ["--remount-ro", "/", "--chdir", APP, "--clearenv"] {
        a.push(s.into());
    }
    for (k, v) in env {
        a.push("--setenv".into());
        a.push(k.into());
        a.push(v.into());
    }
    a.push("--".into());
    match launcher_fd {
        Some(_) => a.push(format!("{LAUNCH_DIR}/{LAUNCHER}").into()),
        None => a.push(format!("{APP}/{}", khachapuri_archive::MAIN).into()),
    }
    a
}

/// A request's environment as the launcher reads it: a little-endian u32 length, then
/// `NAME=VALUE` entries each ending in NUL (names and values hold no NUL, see [`env`]).
pub(crate) fn env_block(env: &[(String, String)]) -> Result<Vec<u8>, RuntimeError> {
    let mut block = vec![0u8; 4];
    for (k, v) in env {
        block.extend_from_slice(k.as_bytes());
        block.push(b'=');
        block.extend_from_slice(v.as_bytes());
        block.push(0);
    }
    let len = block.len() - 4;
    if len > MAX_ENV_BLOCK {
        return Err(RuntimeError::BadRequest(format!(
            "the request's CGI environment is {len} bytes, over the {MAX_ENV_BLOCK} a process call takes"
        )));
    }
    block[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(block)
}

/// The env a program sees: the spec's, then the CGI variables (which win). Names that
/// cannot be environment variables are refused rather than dropped silently.
pub(crate) fn env(
    opts: &CallOptions<'_>,
    parts: &http::request::Parts,
    body_len: usize,
) -> Result<Vec<(String, String)>, RuntimeError> {
    let cgi = cgi_env(parts, opts.path, body_len);
    let mut out: Vec<(String, String)> = Vec::with_capacity(opts.env.len() + cgi.len());
    for (k, v) in opts.env {
        if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
            return Err(RuntimeError::InvalidArtifact {
                kind: GuestKind::Process,
                reason: format!("env var {k:?} cannot be passed to a process"),
            });
        }
        if !cgi.iter().any(|(c, _)| c == k) {
            out.push((k.clone(), v.clone()));
        }
    }
    out.extend(cgi.into_iter().filter(|(_, v)| !v.contains('\0')));
    Ok(out)
}

/// Reads up to `cap` bytes; `true` when the stream had more.
async fn read_capped(mut r: impl AsyncRead + Unpin, cap: usize) -> (BytesMut, bool) {
    let mut buf = BytesMut::with_capacity(cap.min(64 << 10));
    loop {
        if buf.len() > cap {
            buf.truncate(cap);
            return (buf, true);
        }
        buf.reserve(16 << 10);
        match r.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return (buf, false),
            Ok(_) => {}
        }
    }
}

/// Reads to the end, keeping the first `keep` bytes: a program logging a lot to stderr
/// is neither blocked nor killed by a closed pipe.
async fn drain_keeping(mut r: impl AsyncRead + Unpin, keep: usize) -> BytesMut {
    let mut kept = BytesMut::with_capacity(keep);
    let mut buf = vec![0u8; 16 << 10];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = keep.saturating_sub(kept.len()).min(n);
                kept.extend_from_slice(&buf[..room]);
            }
        }
    }
}

/// Kills the sandbox: bubblewrap's process group (bubblewrap itself; the program is in
/// its own session inside), and bubblewrap with it, whose death takes the pid namespace
/// and so every process of the call.
fn kill(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// A started sandbox: bubblewrap with the program (or, warm, the launcher) inside,
/// holding its uid until it is reaped.
pub(crate) struct Sandbox {
    child: tokio::process::Child,
    /// Returned to the pool when the sandbox is dropped, i.e. after it was reaped or killed.
    _uid: super::UidLease,
    /// When it was started (a warm sandbox waiting too long is stopped).
    pub(crate) born: std::time::Instant,
}

impl Sandbox {
    /// Whether bubblewrap is still running (a warm sandbox may have died waiting).
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// How a sandbox learns its request's environment.
pub(crate) enum Start<'a> {
    /// As bubblewrap arguments; the program runs at once (no pool).
    Direct(&'a [(String, String)]),
    /// Later, on stdin, read by the launcher whose directory this is (a warm sandbox).
    Launcher(&'a std::fs::File),
}

/// Starts a sandbox for `program` as `uid` under `rlimits`. Does not wait for it.
pub(crate) fn spawn(
    config: &ProcessConfig,
    program: &Program,
    uid: super::UidLease,
    rlimits: Rlimits,
    start: Start<'_>,
) -> Result<Sandbox, RuntimeError> {
    let internal = |what: &str, e: std::io::Error| RuntimeError::Internal(format!("{what}: {e}"));
    // Opened here, handed over by descriptor (see `pre_exec`), closed once spawned.
    let dir = std::fs::File::open(&program.dir).map_err(|e| internal("opening the artifact", e))?;
    let fd = dir.as_raw_fd();
    let (launcher_fd, env) = match start {
        Start::Direct(env) => (None, env),
        Start::Launcher(l) => (Some(l.as_raw_fd()), &[][..]),
    };
    let mut cmd = tokio::process::Command::new(&config.bwrap);
    cmd.args(args(config, fd, launcher_fd, config.tmp_bytes, env))
        .env_clear()
        .uid(uid.uid)
        .gid(uid.uid)
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let keep: Vec<i32> = std::iter::once(fd).chain(launcher_fd).collect();
    pre_exec::install(&mut cmd, &keep, rlimits);
    let child = cmd.spawn().map_err(|e| {
        internal(
            &format!("starting bubblewrap ({})", config.bwrap.display()),
            e,
        )
    })?;
    drop(dir);
    Ok(Sandbox {
        child,
        _uid: uid,
        born: std::time::Instant::now(),
    })
}

/// The rlimits of a call under `limits`.
pub(crate) fn rlimits(config: &ProcessConfig, limits: &crate::Limits) -> Rlimits {
    Rlimits {
        cpu_secs: limits.timeout.as_secs().saturating_add(1),
        address_space: limits.memory_bytes as u64,
        processes: config.max_processes,
        open_files: config.max_open_files,
    }
}

/// Serves one request with `sandbox`: writes `prefix` (a warm sandbox's environment
/// block) and the body to its stdin, reads a bounded stdout, enforces the deadline
/// (counted from here) by killing the sandbox, maps the outcome.
pub(crate) async fn serve(
    sandbox: Sandbox,
    prefix: Option<Vec<u8>>,
    body: Bytes,
    limits: crate::Limits,
) -> Result<http::Response<Bytes>, RuntimeError> {
    let internal = |what: &str, e: std::io::Error| RuntimeError::Internal(format!("{what}: {e}"));
    let Sandbox {
        mut child, _uid, ..
    } = sandbox;
    let pid = child.id();
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let capacity = limits.max_response_bytes.saturating_add(HEADER_ALLOWANCE);

    let io = async {
        let feed = async move {
            if let Some(mut s) = stdin {
                // A program that does not read its body gets EPIPE here: not an error.
                if let Some(p) = prefix {
                    let _ = s.write_all(&p).await;
                }
                let _ = s.write_all(&body).await;
            }
        };
        let out = async {
            let Some(s) = stdout else {
                return (BytesMut::new(), false);
            };
            let (buf, over) = read_capped(s, capacity).await;
            if over {
                // Nobody reads the rest: stop the program now, not at its deadline.
                kill(pid);
            }
            (buf, over)
        };
        let err = async {
            match stderr {
                Some(s) => drain_keeping(s, STDERR_KEEP).await,
                None => BytesMut::new(),
            }
        };
        let ((), out, err) = tokio::join!(feed, out, err);
        let status = child.wait().await;
        (out, err, status)
    };
    let outcome = tokio::time::timeout(limits.timeout, io).await;
    let Ok(((output, over), stderr, status)) = outcome else {
        kill(pid);
        // Reap it (bounded); `kill_on_drop` covers the rest.
        let _ = tokio::time::timeout(REAP_GRACE, child.wait()).await;
        return Err(RuntimeError::Deadline(limits.timeout));
    };
    if over {
        return Err(RuntimeError::ResponseTooLarge {
            limit: limits.max_response_bytes,
        });
    }
    let status = status.map_err(|e| internal("waiting for the sandbox", e))?;
    let stderr = String::from_utf8_lossy(&stderr);
    match (status.code(), status.signal()) {
        (Some(0), _) => parse_cgi(output, limits.max_response_bytes),
        (Some(1), _) if stderr.starts_with("bwrap:") => Err(RuntimeError::Internal(format!(
            "the sandbox could not start: {}",
            stderr.trim()
        ))),
        // bubblewrap reports a program killed by signal N as exit status 128 + N.
        (Some(code), _) if code > 128 => Err(crashed(code - 128, &limits)),
        (Some(code), _) => {
            tracing::debug!(code, stderr = %stderr.trim(), "process exited non-zero");
            Err(RuntimeError::BadResponse(format!(
                "CGI program exited with status {code}"
            )))
        }
        (None, Some(sig)) => Err(crashed(sig, &limits)),
        (None, None) => Err(RuntimeError::Internal(
            "the sandbox ended without a status".into(),
        )),
    }
}

/// A program killed by a signal: a crash (500), with the limit it most likely hit.
fn crashed(sig: i32, limits: &crate::Limits) -> RuntimeError {
    let name = match sig {
        6 => "SIGABRT",
        7 => "SIGBUS",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        _ => "signal",
    };
    let hint = match sig {
        9 | 24 => " (it may have used up its CPU time)".to_string(),
        6 | 7 | 11 => format!(
            " (it may have run out of its {} MiB of address space)",
            limits.memory_bytes >> 20
        ),
        _ => String::new(),
    };
    RuntimeError::Trap(format!("the program was killed by {name} ({sig}){hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_env_cannot_override_cgi_and_bad_names_are_refused() {
        let req = http::Request::builder()
            .uri("/x?q=1")
            .body(())
            .expect("request");
        let (parts, ()) = req.into_parts();
        let spec = [
            ("GREETING".to_string(), "hi".to_string()),
            ("REQUEST_METHOD".to_string(), "FAKE".to_string()),
        ];
        let opts = CallOptions {
            env: &spec,
            ..CallOptions::default()
        };
        let e = env(&opts, &parts, 0).expect("env");
        assert!(e.contains(&("GREETING".into(), "hi".into())));
        assert!(e.contains(&("REQUEST_METHOD".into(), "GET".into())));
        assert!(!e.iter().any(|(_, v)| v == "FAKE"));
        let bad = [("A=B".to_string(), "x".to_string())];
        let opts = CallOptions {
            env: &bad,
            ..CallOptions::default()
        };
        assert!(env(&opts, &parts, 0).is_err());
    }

    #[test]
    fn the_sandbox_has_no_network_and_a_read_only_root() {
        let a = args(&ProcessConfig::default(), 7, None, 1024, &[]);
        let a: Vec<String> = a.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        for must in [
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--clearenv",
        ] {
            assert!(a.iter().any(|s| s == must), "{must} missing from {a:?}");
        }
        assert!(!a.iter().any(|s| s == "--share-net"));
        for ro in ["/", "/dev"] {
            let w = a.windows(2).any(|w| w[0] == "--remount-ro" && w[1] == ro);
            assert!(w, "{ro} is not read-only: {a:?}");
        }
        let w = a
            .windows(3)
            .any(|w| w[0] == "--ro-bind-fd" && w[1] == "7" && w[2] == APP);
        assert!(w, "{a:?}");
    }
}
