//! The kernel log (`/dev/kmsg`) as a second clock: the bonding driver logs each committed link
//! state ("link status definitely down/up") with the kernel's own timestamp, free of the delay
//! with which a netlink notification reaches bondcheck.
//!
//! The log's clock is not CLOCK_MONOTONIC. In UML it counts jiffies (10 ms steps at HZ=100: a
//! record is stamped with the last tick before it); in a qemu guest it is offset by up to about
//! 100 ms, differently at every boot. So it is calibrated once per process: bondcheck writes
//! records of its own, each between two readings of CLOCK_MONOTONIC, until the log's stamp
//! steps; the step happened between the previous write and this one, which bounds the offset,
//! and its size is the clock's resolution.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

/// One log record: its timestamp (the log's clock), syslog facility (0: the kernel itself) and
/// level (0 emergency ... 3 error, 4 warning ... 7 debug), and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub at: Duration,
    pub facility: u8,
    pub level: u8,
    pub message: String,
}

/// A kernel log message known to be harmless (harness/data/known-kernel-messages.toml).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Known {
    pub contains: String,
    pub why: String,
    pub upstream: String,
}

/// The known harmless messages, from the data file compiled in.
pub fn known() -> Vec<Known> {
    #[derive(serde::Deserialize)]
    struct File {
        message: Vec<Known>,
    }
    toml::from_str::<File>(include_str!("../data/known-kernel-messages.toml"))
        .map(|f| f.message)
        .expect("the known-messages file is valid TOML (a unit test parses it)")
}

/// Whether a record is the kernel's own and says something is wrong: an oops, a WARN, a BUG,
/// or any message at error level or worse.
pub fn is_trouble(r: &Record) -> bool {
    const MARKERS: [&str; 6] = [
        "WARNING:",
        "BUG:",
        "Oops",
        "kernel BUG",
        "Call Trace",
        "general protection fault",
    ];
    r.facility == 0 && (r.level <= 3 || MARKERS.iter().any(|m| r.message.contains(m)))
}

/// How the log's clock relates to CLOCK_MONOTONIC (all in ms): a record stamped `t` was
/// written between `t - offset_max` and `t - offset_min + resolution` on CLOCK_MONOTONIC.
#[derive(
    Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct Clock {
    /// The least offset (log clock minus CLOCK_MONOTONIC) the calibration allows.
    pub offset_min: f64,
    /// The greatest.
    pub offset_max: f64,
    /// The step of the log's clock: a record carries the last step before it.
    pub resolution: f64,
}

impl Clock {
    /// The earliest moment (CLOCK_MONOTONIC, ms) a record stamped `at` can have been written.
    pub fn earliest(&self, at: Duration) -> f64 {
        ms(at) - self.offset_max
    }

    /// The stamp `at` on CLOCK_MONOTONIC (ms), with the middle of the offsets the calibration
    /// allows: the log's own reading, which may be up to one `resolution` before the record.
    pub fn monotonic(&self, at: Duration) -> f64 {
        ms(at) - (self.offset_min + self.offset_max) / 2.0
    }
}

/// Writes to the log at most this many times while calibrating: a jiffy clock steps within
/// a few dozen writes.
const CALIBRATION_WRITES: usize = 400;

/// A reader positioned at the end of the log when it was opened.
pub struct Kmsg {
    file: File,
    pub clock: Clock,
}

impl Kmsg {
    /// Opens the log; fails where it cannot be read and written, or its clock not calibrated.
    pub fn open() -> std::io::Result<Kmsg> {
        static CLOCK: std::sync::Mutex<Option<Clock>> = std::sync::Mutex::new(None);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open("/dev/kmsg")?;
        // SEEK_END on /dev/kmsg skips what was logged before: only new records are read.
        file.seek(SeekFrom::End(0))?;
        let mut log = Kmsg {
            file,
            clock: Clock {
                offset_min: 0.0,
                offset_max: 0.0,
                resolution: 0.0,
            },
        };
        let mut known = CLOCK.lock().unwrap_or_else(|e| e.into_inner());
        log.clock = match *known {
            Some(clock) => clock,
            None => *known.insert(log.calibrate()?),
        };
        Ok(log)
    }

    fn calibrate(&mut self) -> std::io::Result<Clock> {
        use std::io::Write;
        let monotonic = crate::timing::monotonic;
        let mut previous: Option<(Duration, Duration)> = None;
        let mut writer: Option<File> = None;
        for i in 0..CALIBRATION_WRITES {
            let tag = format!("bondcheck: clock calibration {} {i}", std::process::id());
            // The kernel rate-limits each opened file's writes (10 per 5 s by default) and
            // silently drops the rest: a new file every 10 records.
            if i % 10 == 0 {
                writer = Some(std::fs::OpenOptions::new().write(true).open("/dev/kmsg")?);
            }
            let Some(writer) = writer.as_mut() else {
                unreachable!("opened on the first record")
            };
            let before = monotonic();
            writer.write_all(format!("<7>{tag}\n").as_bytes())?;
            let after = monotonic();
            let Some(at) = self
                .drain()
                .into_iter()
                .find(|r| r.message == tag)
                .map(|r| r.at)
            else {
                return Err(std::io::Error::other(
                    "a calibration record did not come back",
                ));
            };
            if let Some((previous_at, previous_before)) = previous
                && at != previous_at
            {
                // The clock stepped to `at` after the previous write began and before this one
                // ended.
                return Ok(Clock {
                    offset_min: ms(at) - ms(after),
                    offset_max: ms(at) - ms(previous_before),
                    resolution: ms(at) - ms(previous_at),
                });
            }
            previous = Some((at, before));
        }
        Err(std::io::Error::other("the log's clock never stepped"))
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `PRIORITY,SEQUENCE,TIMESTAMP_US,FLAGS;MESSAGE` (Documentation/ABI/testing/dev-kmsg).
fn parse(record: &str) -> Option<Record> {
    let (head, message) = record.split_once(';')?;
    let mut fields = head.split(',');
    let priority: u32 = fields.next()?.parse().ok()?;
    let micros: u64 = fields.nth(1)?.parse().ok()?;
    let message = message.lines().next().unwrap_or_default().to_string();
    Some(Record {
        at: Duration::from_micros(micros),
        facility: u8::try_from(priority >> 3).unwrap_or(u8::MAX),
        level: (priority & 7) as u8,
        message,
    })
}

/// The time the kernel logged `what` ("link status definitely down") for `slave`, among
/// `records`; None unless exactly one record says it. The log names a bond and its slave only
/// by name, and another lane's bond may carry the same names (both come from the specs): once,
/// on 4 lanes, another case's bond0 logged "(slave enp1s0): link status definitely up" 270 ms
/// before the measured bond's own commit, inside its timing window. Two such records cannot
/// tell whose is whose, so the sample is then judged by its netlink receipt alone.
pub fn find(records: &[Record], slave: &str, what: &str) -> Option<Duration> {
    let tag = format!("(slave {slave}): {what}");
    let mut said = records.iter().filter(|r| r.message.contains(&tag));
    match (said.next(), said.next()) {
        (Some(r), None) => Some(r.at),
        _ => None,
    }
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
            find(
                std::slice::from_ref(&r),
                "enp1s0",
                "link status definitely down"
            ),
            Some(r.at)
        );
        assert_eq!((r.facility, r.level), (0, 6));
        assert_eq!(
            find(
                std::slice::from_ref(&r),
                "enp7s0",
                "link status definitely down"
            ),
            None
        );
        // Another lane's bond with the same names: whose record is whose cannot be told.
        let other = Record {
            at: r.at + Duration::from_millis(30),
            ..r.clone()
        };
        assert_eq!(
            find(&[r, other], "enp1s0", "link status definitely down"),
            None
        );
        assert!(parse("garbage").is_none());
    }

    #[test]
    fn trouble_is_the_kernels_errors_and_warnings_and_known_messages_parse() {
        let rec = |head: &str, m: &str| parse(&format!("{head},1,100,-;{m}")).unwrap();
        assert!(is_trouble(&rec(
            "3",
            "bond0: (slave eth0): Error: Device is in use"
        )));
        assert!(is_trouble(&rec(
            "4",
            "WARNING: CPU: 0 PID: 1 at net/core/dev.c:1 x"
        )));
        assert!(!is_trouble(&rec(
            "4",
            "bond0: (slave eth0): link status down"
        )));
        // Written from user space (facility user): not the kernel's.
        assert!(!is_trouble(&rec("11", "an error a program logged")));
        let known = known();
        assert!(known.iter().any(|k| k.contains == "invalid new link"));
    }
}
