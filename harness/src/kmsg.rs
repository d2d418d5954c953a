//! The kernel log (`/dev/kmsg`) as a second clock: the bonding driver logs each committed link
//! state ("link status definitely down/up") with the kernel's own timestamp, free of the delay
//! with which a netlink notification reaches bondcheck.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

/// One log record: its timestamp (the kernel's monotonic clock) and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub at: Duration,
    pub message: String,
}

/// A reader positioned at the end of the log when it was opened.
pub struct Kmsg {
    file: File,
}

impl Kmsg {
    pub fn open() -> std::io::Result<Kmsg> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open("/dev/kmsg")?;
        // SEEK_END on /dev/kmsg skips what was logged before: only new records are read.
        file.seek(SeekFrom::End(0))?;
        Ok(Kmsg { file })
    }

    /// Every record logged since the last call.
    pub fn drain(&mut self) -> Vec<Record> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend(parse(&String::from_utf8_lossy(&buf[..n]))),
                // EPIPE: records were overwritten before we read them; the next read goes on.
                Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
        out
    }
}

/// `PRIORITY,SEQUENCE,TIMESTAMP_US,FLAGS;MESSAGE` (Documentation/ABI/testing/dev-kmsg).
fn parse(record: &str) -> Option<Record> {
    let (head, message) = record.split_once(';')?;
    let micros: u64 = head.split(',').nth(2)?.parse().ok()?;
    let message = message.lines().next().unwrap_or_default().to_string();
    Some(Record {
        at: Duration::from_micros(micros),
        message,
    })
}

/// The time the kernel logged `what` ("definitely down") for `slave`, among `records`.
pub fn find(records: &[Record], slave: &str, what: &str) -> Option<Duration> {
    let tag = format!("(slave {slave}): link status {what}");
    records
        .iter()
        .find(|r| r.message.contains(&tag))
        .map(|r| r.at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_link_lines_are_found() {
        let r = parse("6,1234,5321000,-;bond0: (slave enp1s0): link status definitely down, disabling slave\n SUBSYSTEM=net\n")
            .unwrap();
        assert_eq!(r.at, Duration::from_micros(5_321_000));
        assert!(r.message.ends_with("disabling slave"));
        assert_eq!(
            find(std::slice::from_ref(&r), "enp1s0", "definitely down"),
            Some(r.at)
        );
        assert_eq!(find(&[r], "enp7s0", "definitely down"), None);
        assert!(parse("garbage").is_none());
    }
}
