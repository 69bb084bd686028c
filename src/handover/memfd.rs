//! `--via memfd`: the config lives in an anonymous memory file.
//!
//! The child inherits the descriptor and cme opens `/proc/self/fd/N`, which re-opens the same
//! memory file from the start each time (cme opens its config many times per run, and writes
//! to it). Nothing is ever on a filesystem, and the file disappears when the last process
//! holding it exits, even if cme-exec is killed with SIGKILL.

use std::fs::File;
use std::io::{Seek as _, SeekFrom, Write as _};
use std::os::fd::{AsRawFd as _, RawFd};

use nix::sys::memfd::{memfd_create, MFdFlags};
use zeroize::Zeroizing;

use crate::error::Error;

/// The largest config read back (cme's file is a few KiB).
const MAX_READ_BACK: u64 = 4 * 1024 * 1024;

pub struct Memfd {
    file: File,
}

impl Memfd {
    pub fn create(config: &[u8]) -> Result<Memfd, Error> {
        // Not close-on-exec: the child must inherit it. cme-exec starts no other process while
        // it exists (providers have finished before the hand-over), so only the child gets it.
        // Clearing the flag between fork and exec instead would force a full fork of cme-exec
        // rather than posix_spawn.
        let fd = memfd_create(c"cme-exec-config", MFdFlags::empty()).map_err(|e| {
            Error::new("cannot create the in-memory config (memfd_create)")
                .cause(e.desc())
                .hint("use --via file on systems without memfd_create")
        })?;
        let mut file = File::from(fd);
        file.write_all(config)
            .map_err(|e| Error::new("cannot write the in-memory config").cause(e.to_string()))?;
        Ok(Memfd { file })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    pub fn read_all(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        let mut f = &self.file;
        let err = |e: std::io::Error| {
            Error::new("cannot read the in-memory config back").cause(e.to_string())
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        f.seek(SeekFrom::Start(0)).map_err(err)?;
        super::read_back(f, len, MAX_READ_BACK).map_err(|e| match e {
            super::ReadError::TooLarge => super::too_large(MAX_READ_BACK),
            super::ReadError::Io(e) => err(e),
        })
    }
}
