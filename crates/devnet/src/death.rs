//! Children that die with their parent: the kernel sends SIGKILL to a child of a
//! `khachapuri dev` or a test process that ended without running destructors (SIGKILL, a
//! panic with `abort`, a CI timeout), so a local network never outlives what started it.

// `pre_exec` is unsafe because the closure runs between fork and exec; the one call made
// there (prctl) is async-signal-safe and touches no memory of the parent.
#![allow(unsafe_code)]

use std::process::Command;

/// Arranges for the child `cmd` spawns to get SIGKILL when the spawning thread exits.
pub(crate) fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt as _;
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe, allocates nothing and
        // only changes the calling (child) process's own attributes.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}
