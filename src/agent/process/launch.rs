//! Starting a node process without copying the agent: `clone` with
//! `CLONE_VM | CLONE_VFORK`, as `posix_spawn` does (the child borrows the
//! agent's memory and the calling thread waits until the child has called
//! `execve`), with the one step `posix_spawn` cannot take: the child sets
//! its parent-death signal. A fork would copy the agent's page tables for
//! every node (measured: +30% per spawn for a process of 8 MiB).
//!
//! Everything the child needs is made before the clone; the child only
//! makes system calls on data prepared for it, on a stack of its own: it
//! never allocates, takes no lock and returns into no Rust code of the
//! parent. It writes the error number of a failed step where the parent
//! reads it, then exits with 127.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::raw::{c_char, c_int, c_void};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

/// A node process: its pid, reaped by `wait`/`try_wait`.
#[derive(Debug)]
pub struct NodeChild {
    pid: libc::pid_t,
    /// The length of the stderr file when the process started: what it
    /// writes comes after.
    output_start: OutputStart,
}

/// Where one launch's lines begin in a node's appended `stdout` and
/// `stderr` files (their lengths before it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputStart {
    pub stdout: u64,
    pub stderr: u64,
}

impl NodeChild {
    pub(super) fn set_output_start(&mut self, at: OutputStart) {
        self.output_start = at;
    }

    /// Where this launch's lines begin in the (appended) output files.
    pub fn output_start(&self) -> OutputStart {
        self.output_start
    }

    pub fn id(&self) -> u32 {
        // A pid returned by clone is positive.
        self.pid.unsigned_abs()
    }

    /// The exit status if the process has exited (and reaps it).
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.waitpid(libc::WNOHANG)
    }

    /// Waits for the process to exit and reaps it.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.waitpid(0)? {
                return Ok(status);
            }
        }
    }

    /// Waits until the process has exited, leaving it a zombie: its pid
    /// stays taken until `wait` reaps it.
    pub fn wait_unreaped(&mut self) -> io::Result<()> {
        let id = libc::id_t::try_from(self.pid).map_err(|_| io::Error::other("bad pid"))?;
        loop {
            // SAFETY: an all-zero siginfo_t is valid; waitid fills it.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: plain syscall on our own child, writing to a local.
            let r =
                unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT) };
            if r == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    fn waitpid(&mut self, flags: c_int) -> io::Result<Option<ExitStatus>> {
        let mut status: c_int = 0;
        loop {
            // SAFETY: plain syscall on our own child, writing to a local.
            let r = unsafe { libc::waitpid(self.pid, &mut status, flags) };
            if r == self.pid {
                return Ok(Some(ExitStatus::from_raw(status)));
            }
            if r == 0 {
                return Ok(None);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// What the child is to do, made before the clone. The pointer arrays
/// point into the `CString`s, which live as long as the plan.
#[repr(C)]
struct Plan {
    program: CString,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
    cwd: CString,
    /// New stdin, stdout and stderr.
    fds: [c_int; 3],
    cpu: Option<usize>,
    parent: libc::pid_t,
    /// The signal mask to exec with (the spawning thread's own).
    mask: libc::sigset_t,
    /// Written by the child when a step fails: its error number.
    error: c_int,
}

/// CPUs a `cpu_set_t` can name; libc's `CPU_SET` does not check its index.
const CPU_SET_CAPACITY: usize = 8 * std::mem::size_of::<libc::cpu_set_t>();

/// The child's stack: it only makes system calls.
const STACK_BYTES: usize = 128 * 1024;

/// Starts `program` with `args` in `cwd`, with the agent's environment
/// plus `env`, stdin/stdout/stderr from `stdio`, in a process group of its
/// own, with the parent-death signal set (SIGKILL when the calling thread
/// ends), pinned to `cpu` if given. The program is run by `execve` as it
/// is: a script needs its `#!` line (`execvp` would hand one without it to
/// `/bin/sh`).
pub fn launch(
    program: &Path,
    args: &[String],
    cwd: &Path,
    env: &[(String, String)],
    unset: &[String],
    stdio: [&OwnedFd; 3],
    cpu: Option<usize>,
) -> io::Result<NodeChild> {
    if let Some(cpu) = cpu.filter(|&c| c >= CPU_SET_CAPACITY) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("CPU {cpu} is beyond the {CPU_SET_CAPACITY} CPUs a CPU set can name"),
        ));
    }
    let env = environment(env, unset);
    let program = resolve(program, &env)?;
    let program = c_string(program.as_os_str())?;
    let mut args_c = vec![program.clone()];
    for a in args {
        args_c.push(c_string(OsStr::new(a))?);
    }
    let env_c = env
        .iter()
        .map(|(k, v)| {
            let mut kv = k.clone().into_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).map_err(|_| nul_error())
        })
        .collect::<io::Result<Vec<CString>>>()?;
    let mut plan = Plan {
        argv: pointers(&args_c),
        envp: pointers(&env_c),
        program,
        cwd: c_string(cwd.as_os_str())?,
        fds: stdio.map(|fd| fd.as_raw_fd()),
        cpu,
        // SAFETY: getpid cannot fail.
        parent: unsafe { libc::getpid() },
        // SAFETY: an all-zero sigset_t is a valid (empty) set; it is
        // filled below before use.
        mask: unsafe { std::mem::zeroed() },
        error: 0,
    };
    let mut stack = vec![0u8; STACK_BYTES];
    // The stack grows down from its 16-byte aligned end.
    let top = {
        let end = stack.as_mut_ptr_range().end as usize;
        (end & !15) as *mut c_void
    };
    // SAFETY: all signals are blocked on this thread across the clone, so
    // that no handler of the agent's runs in the child before it has reset
    // the dispositions; the old mask is kept for the child to exec with and
    // restored here afterwards. `plan` and `stack` outlive the child's use
    // of them: with CLONE_VFORK, clone returns only once the child has
    // called execve or exited.
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut plan.mask);
        let pid = libc::clone(
            child_main,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&mut plan as *mut Plan).cast::<c_void>(),
        );
        let clone_error = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &plan.mask, std::ptr::null_mut());
        if pid < 0 {
            return Err(clone_error);
        }
        pid
    };
    drop(stack);
    // SAFETY: the child wrote `error` (or not) before execve or exit, and
    // clone returned after that; the read must not be assumed unchanged.
    let error = unsafe { std::ptr::read_volatile(&plan.error) };
    let mut child = NodeChild {
        pid,
        output_start: OutputStart::default(),
    };
    if error != 0 {
        child.wait()?;
        return Err(io::Error::from_raw_os_error(error));
    }
    Ok(child)
}

fn nul_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "a NUL byte in a launch argument",
    )
}

fn c_string(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| nul_error())
}

/// The null-terminated pointer array of `strings`.
fn pointers(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// The agent's environment without `unset`, with `extra` added (replacing
/// same names), in the agent's order, the new names last.
fn environment(extra: &[(String, String)], unset: &[String]) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| {
            !extra
                .iter()
                .map(|(name, _)| name)
                .chain(unset)
                .any(|name| k.as_os_str() == OsStr::new(name))
        })
        .collect();
    env.extend(extra.iter().map(|(k, v)| (k.into(), v.into())));
    env
}

/// A program named without a slash is looked up in the child's `PATH`, as
/// `execvp` would (done here: the child must not allocate).
fn resolve(program: &Path, env: &[(OsString, OsString)]) -> io::Result<PathBuf> {
    if program.as_os_str().as_bytes().contains(&b'/') {
        return Ok(program.to_owned());
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "/bin:/usr/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} not found in PATH", program.display()),
            )
        })
}

fn executable(p: &Path) -> bool {
    let Ok(c) = c_string(p.as_os_str()) else {
        return false;
    };
    // SAFETY: plain syscall on a valid C string.
    p.is_file() && unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0
}

/// The child: runs on its own stack in the agent's memory until execve.
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the parent's `Plan`, which stays alive and untouched
    // while the parent thread waits (CLONE_VFORK).
    let plan = unsafe { &mut *arg.cast::<Plan>() };
    // SAFETY: only system calls on the plan's data; see the module text.
    let error = unsafe { child_steps(plan) };
    plan.error = if error == 0 { libc::EINVAL } else { error };
    // SAFETY: ends the child at once, without running anything of Rust's.
    unsafe { libc::_exit(127) }
}

/// Returns the error number of the step that failed (execve returns only
/// on failure).
unsafe fn child_steps(p: &Plan) -> c_int {
    let errno = || *libc::__errno_location();
    // Handlers of the agent's are not the node's: back to the defaults
    // (what is ignored stays ignored, except SIGPIPE, which Rust ignores).
    for sig in 1..65 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
            continue;
        }
        if old.sa_sigaction != libc::SIG_DFL
            && (old.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE)
        {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
        }
    }
    if libc::setpgid(0, 0) != 0 {
        return errno();
    }
    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
        return errno();
    }
    // The agent may have died before the signal was set.
    if libc::getppid() != p.parent {
        return libc::ESRCH;
    }
    if let Some(cpu) = p.cpu {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return errno();
        }
    }
    // The sources were opened in order and so are ascending: none is
    // overwritten before it is copied. One already in place only loses its
    // close-on-exec flag.
    for (target, &fd) in (0..).zip(p.fds.iter()) {
        let r = if fd == target {
            libc::fcntl(fd, libc::F_SETFD, 0)
        } else {
            libc::dup2(fd, target)
        };
        if r < 0 {
            return errno();
        }
    }
    if libc::chdir(p.cwd.as_ptr()) != 0 {
        return errno();
    }
    libc::sigprocmask(libc::SIG_SETMASK, &p.mask, std::ptr::null_mut());
    libc::execve(p.program.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr());
    errno()
}

#[cfg(test)]
mod tests;
