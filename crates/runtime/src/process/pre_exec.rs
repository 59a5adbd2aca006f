//! The one piece of `unsafe` of the sandbox: code that runs in the forked child between
//! `fork` and `exec` of bubblewrap. It marks every descriptor but stdio and the artifact
//! directory's close-on-exec (the node may have inherited descriptors without that flag
//! from whoever started it: none may reach a sandbox), hands bubblewrap the directory's
//! descriptor (clearing close-on-exec in the child only, so no other child ever inherits
//! it) and sets the rlimits bubblewrap and everything it starts inherit.
//!
//! Why not a wrapper such as util-linux `prlimit`: one more exec per call, and it still
//! could not pass the directory descriptor. Why a descriptor rather than a path: the
//! sandbox runs as an unprivileged uid, which may not traverse the provider's data dir
//! (e.g. under `/root`); bubblewrap closes the descriptor before starting the program.
#![allow(unsafe_code)]

use std::os::fd::{BorrowedFd, RawFd};

use rustix::process::{setrlimit, Resource, Rlimit};

/// Resource limits of one sandbox (soft = hard, except CPU: SIGXCPU, then SIGKILL one
/// second later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Rlimits {
    /// `RLIMIT_CPU`, seconds of CPU time per process.
    pub(crate) cpu_secs: u64,
    /// `RLIMIT_AS`, bytes of address space per process.
    pub(crate) address_space: u64,
    /// `RLIMIT_NPROC`, processes of the sandbox's uid.
    pub(crate) processes: u64,
    /// `RLIMIT_NOFILE`, open descriptors per process.
    pub(crate) open_files: u64,
}

/// Arranges for `cmd`'s child to keep `keep` (one or two descriptors: the artifact
/// directory, and the launcher's for a warm sandbox) open across exec and to run under
/// `limits`. The descriptors must stay open in the parent until the child is spawned.
pub(crate) fn install(cmd: &mut tokio::process::Command, keep: &[RawFd], limits: Rlimits) {
    // Sorted, in a fixed array: the hook may not allocate.
    let mut fds = [-1 as RawFd; 2];
    for (slot, fd) in fds.iter_mut().zip(keep) {
        *slot = *fd;
    }
    let n = keep.len().min(2);
    fds[..n].sort_unstable();
    let hook = move || -> std::io::Result<()> {
        let mut next = 3u32;
        for &keep_fd in &fds[..n] {
            // SAFETY: each kept descriptor is open in the parent when `spawn` forks (the
            // caller holds its `File` across the spawn), so it is open in the child,
            // which this borrow does not outlive.
            let fd = unsafe { BorrowedFd::borrow_raw(keep_fd) };
            let keep = u32::try_from(keep_fd)
                .map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF))?;
            if keep > next {
                cloexec_range(next, keep - 1)?;
            }
            next = keep.saturating_add(1);
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
        }
        cloexec_range(next, u32::MAX)?;
        let both = |n: u64| Rlimit {
            current: Some(n),
            maximum: Some(n),
        };
        setrlimit(
            Resource::Cpu,
            Rlimit {
                current: Some(limits.cpu_secs),
                maximum: Some(limits.cpu_secs.saturating_add(1)),
            },
        )?;
        setrlimit(Resource::As, both(limits.address_space))?;
        setrlimit(Resource::Nproc, both(limits.processes))?;
        setrlimit(Resource::Nofile, both(limits.open_files))?;
        // 1, not 0: a core limit of 1 byte also stops the kernel from piping a core to a
        // `core_pattern` helper running as root on the host.
        setrlimit(Resource::Core, both(1))?;
        Ok(())
    };
    // SAFETY: the hook runs in the child after `fork`, where only async-signal-safe work
    // is allowed. It makes raw system calls through rustix (fcntl, setrlimit), which
    // neither allocate nor take locks; its errors are `io::Error`s built from raw errno
    // values, which do not allocate either.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Marks descriptors `first..=last` close-on-exec (`close_range(2)`, Linux 5.11+); on an
/// older kernel, one `fcntl` per descriptor below 4096. Async-signal-safe.
fn cloexec_range(first: u32, last: u32) -> std::io::Result<()> {
    // SAFETY: a raw system call with integer arguments; it touches no memory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            last,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return Ok(());
    }
    for fd in first..last.min(4096).saturating_add(1) {
        // SAFETY: as above; an fd that is not open gives EBADF, which is fine.
        unsafe {
            libc::fcntl(fd as i32, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
    Ok(())
}
