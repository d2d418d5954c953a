//! Throwaway network namespaces, held only by a file descriptor.
//!
//! No bind mount under /run/netns and no name: when the last fd, socket or thread referring to
//! the namespace goes away (the process ending, even by SIGKILL, included) the kernel destroys
//! it with every interface inside. So a run can leave nothing behind in the host's namespace.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::sched::{CloneFlags, setns, unshare};

use crate::error::{Error, Result};

pub struct AnonNetns {
    fd: OwnedFd,
}

impl AnonNetns {
    /// Creates a new, empty network namespace. `unshare` is per thread, so a short-lived thread
    /// does it and hands back an fd to its namespace; the caller's thread never moves.
    pub fn new() -> Result<Self> {
        std::thread::spawn(|| -> std::io::Result<OwnedFd> {
            unshare(CloneFlags::CLONE_NEWNET)?;
            Ok(File::open("/proc/thread-self/ns/net")?.into())
        })
        .join()
        .map_err(|_| Error::run("namespace thread panicked"))?
        .map(|fd| AnonNetns { fd })
        .map_err(|e| Error::run(format!("cannot create a network namespace: {e}")))
    }

    /// Runs `f` on a fresh thread inside this namespace. Sockets created there belong to the
    /// namespace for their whole life and may then be used from any thread.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let fd = self.fd.as_fd();
        std::thread::scope(|s| {
            s.spawn(move || setns(fd, CloneFlags::CLONE_NEWNET).map(|()| f()))
                .join()
        })
        .map_err(|_| Error::run("namespace worker panicked"))?
        .map_err(|e| Error::run(format!("cannot enter a network namespace: {e}")))
    }
}

impl AsFd for AnonNetns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
