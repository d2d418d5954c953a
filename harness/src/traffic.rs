//! The traffic engine: sends frames through the bond and captures them on every slave's peer
//! end, so the checks can see which slave carried each frame.
//!
//! Frames go out through one AF_PACKET socket bound to the bond, in batches (`sendmmsg`: in a
//! UML guest every system call costs tens of microseconds), from one pinned CPU, because
//! balance-rr keeps its counter per CPU. Each peer end has a capture socket that ignores its
//! own outgoing frames, timestamps in the kernel, and has a receive buffer large enough for a
//! round; the kernel's drop counter of every capture is read at the end, so a capture that
//! lost frames is reported as such and never taken for a bond that lost them.
//!
//! Frames of a VLAN go out through a VLAN device on top of the bond, so the tag reaches the
//! bond out of band as a host's own tagged traffic does; veth hands it to the peer out of band
//! too, so each capture reads it from PACKET_AUXDATA and every arrival says its tag.
//!
//! A round ends on an event, not a sleep: after its frames, a *fence* frame is sent straight
//! on every slave (bypassing the bond). A slave's frames and its fence travel the same way,
//! in order, to the peer's receive queue, so once a capture has seen the fence it has seen
//! everything the bond sent that way.
//!
//! Every frame a veth peer end receives waits first in the receiving CPU's backlog, one queue
//! for all namespaces (net.core.netdev_max_backlog frames), until the kernel's receive softirq
//! hands it on; in a busy guest that work is deferred, and a round may sit there whole. So a
//! round is sized to fit the backlog with a copy of every frame for every capture (broadcast),
//! and the backlog's own drop counter (/proc/net/softnet_stat) is read too: frames it dropped
//! never reached any capture, and what the captures saw is then incomplete, not the bond's doing.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant, SystemTime};

use nix::poll::{PollFd, PollFlags};
use nix::sys::socket::{
    ControlMessageOwned, LinkAddr, MsgFlags, MultiHeaders, recvmmsg, setsockopt, sockopt,
};

use crate::error::{Error, Result};
use crate::frames::{self, FENCE, Frame};
use crate::netns::AnonNetns;

/// linux/if_packet.h, stable ABI (not every libc release exports them).
const SOL_PACKET: libc::c_int = 263;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_AUXDATA: libc::c_int = 8;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
/// `tp_status` bit: `tp_vlan_tci` holds the frame's tag.
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
pub(crate) const ETH_P_ALL: u16 = 0x0003;

/// Frames per `sendmmsg` and per `recvmmsg`.
const BATCH: usize = 64;
/// Frames per round at most: what one capture must hold between fences.
pub const ROUND: usize = 512;
/// The kernel's default net.core.netdev_max_backlog, if the running one cannot be read.
const DEFAULT_BACKLOG: usize = 1000;
/// Receive buffer per frame in a round: a small frame's skb truesize is well under this.
const BUFFER_PER_FRAME: usize = 4096;

/// Where one slave's frames are captured.
pub struct Lane<'a> {
    pub slave: String,
    /// The slave's ifindex in the bond's namespace; None if the slave does not exist.
    pub slave_index: Option<u32>,
    pub peer: String,
    pub peer_ns: &'a AnonNetns,
    /// The peer end's ifindex; None if it does not exist.
    pub peer_index: Option<u32>,
    /// Whether the peer end is up: a peer that is down receives nothing, not even the fence.
    pub peer_up: bool,
}

/// One frame seen on one slave's peer end.
#[derive(
    Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct Arrival {
    /// The frame's sequence number in the run's mix.
    pub seq: u32,
    /// Index of the slave in enslave order.
    pub slave: usize,
    /// Kernel receive timestamp, from the start of sending.
    pub at_us: f64,
    /// The VLAN id of the tag it arrived with (PACKET_AUXDATA), if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
}

/// A gratuitous ARP (sender and target address the same) seen on one slave's peer end: how
/// a bond announces a failover to its peers.
#[derive(
    Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct Garp {
    /// Index of the slave in enslave order.
    pub slave: usize,
    /// Kernel receive timestamp, from the start of sending.
    pub at_us: f64,
}

/// Whether a frame is a gratuitous ARP.
fn gratuitous_arp(frame: &[u8]) -> bool {
    // Ethernet, ARP for IPv4 over Ethernet: sender IP at 28..32, target IP at 38..42.
    frame.len() >= 42
        && frame[12..14] == [0x08, 0x06]
        && frame[16..18] == [0x08, 0x00]
        && frame[28..32] == frame[38..42]
}

/// What one capture saw, and what the kernel says it dropped.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Capture {
    /// The slave whose peer end was captured on.
    pub slave: String,
    /// The peer end's interface name.
    pub peer: String,
    /// bondcheck's frames of this run.
    pub frames: usize,
    /// Anything else (LACPDUs, the peer side's own traffic, earlier runs).
    pub other: usize,
    /// PACKET_STATISTICS: frames the kernel dropped because the capture's buffer was full.
    pub dropped: u32,
    /// Why nothing could be captured here, if so (no peer end, peer down).
    pub absent: Option<String>,
}

/// The traffic phase's raw result.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Sent {
    /// Frames sent through the bond.
    pub frames: usize,
    /// Rounds they went in: at most 512 frames each, fewer where a copy of every frame for
    /// every capture must fit the receive backlog; each ended by a fence frame on every slave.
    pub rounds: usize,
    /// The CPU the frames were sent from.
    pub cpu: Option<usize>,
    /// Frames the bond dropped as they were sent (ENOBUFS): lost, as the captures show.
    pub dropped_at_send: usize,
    /// Frames the kernel's receive backlogs dropped meanwhile (any namespace's).
    #[serde(default)]
    pub backlog_dropped: u64,
    /// Time spent handing the frames to the bond.
    pub send_ms: f64,
    /// Time from the first frame to the last round's fences reaching every capture.
    pub total_ms: f64,
    /// One per slave, in enslave order.
    pub captures: Vec<Capture>,
    /// Every copy of every frame a capture saw.
    pub arrivals: Vec<Arrival>,
}

impl Sent {
    /// Why what the captures saw is incomplete, if it is.
    pub fn incomplete(&self) -> Option<String> {
        incomplete(&self.captures, self.backlog_dropped)
    }
}

/// Why what `captures` saw is incomplete, if it is: their own buffers dropped frames, or the
/// kernel's receive backlog did (`backlog_dropped`) before any capture could see them.
fn incomplete(captures: &[Capture], backlog_dropped: u64) -> Option<String> {
    let lost: u32 = captures.iter().map(|c| c.dropped).sum();
    match (lost, backlog_dropped) {
        (0, 0) => None,
        (0, b) => Some(format!(
            "the kernel's receive backlog dropped {b} frames before any capture saw them \
             (/proc/net/softnet_stat): what the captures saw is incomplete, so nothing is judged"
        )),
        (l, _) => Some(format!(
            "the captures themselves dropped {l} frames: what they saw is incomplete, so \
             nothing is judged"
        )),
    }
}

/// Frames the kernel has dropped from its per-CPU receive backlogs since boot, all CPUs and
/// namespaces together (/proc/net/softnet_stat: one line per CPU, the second column, in hex).
fn backlog_drops() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/net/softnet_stat")
        .map_err(|e| Error::run(format!("traffic: reading /proc/net/softnet_stat: {e}")))?;
    text.lines()
        .map(|line| {
            line.split_whitespace()
                .nth(1)
                .and_then(|d| u64::from_str_radix(d, 16).ok())
                .ok_or_else(|| {
                    Error::run(format!(
                        "traffic: /proc/net/softnet_stat: unreadable line {line:?}"
                    ))
                })
        })
        .sum()
}

/// Frames per round for `captures` captures: a copy of each for every capture, and the
/// fences, fit the receive backlog at once.
fn round_size(captures: usize) -> usize {
    let backlog = std::fs::read_to_string("/proc/sys/net/core/netdev_max_backlog")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(DEFAULT_BACKLOG);
    (backlog / captures.max(1))
        .saturating_sub(1)
        .clamp(1, ROUND)
}

fn os(what: &str) -> impl Fn(nix::Error) -> Error + '_ {
    move |e| Error::run(format!("traffic: {what}: {e}"))
}

/// An AF_PACKET socket bound to `ifindex` in `ns`, for `protocol` (0: send only).
pub(crate) fn packet_socket(ns: &AnonNetns, ifindex: u32, protocol: u16) -> Result<OwnedFd> {
    ns.run(move || -> Result<OwnedFd> {
        // Protocol 0 at creation, the real one at bind: nothing is queued before the bind.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(os("socket")(nix::Error::last()));
        }
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = protocol.to_be();
        addr.sll_ifindex = ifindex as i32;
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r != 0 {
            return Err(os("bind")(nix::Error::last()));
        }
        Ok(fd)
    })?
}

fn set_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> Result<()> {
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as u32,
        )
    };
    if r != 0 {
        return Err(os("setsockopt")(nix::Error::last()));
    }
    Ok(())
}

/// A capture socket on a peer end: its own frames ignored, kernel timestamps, VLAN tags (the
/// kernel takes them out of the bytes), room for a round.
pub(crate) fn capture_socket(ns: &AnonNetns, ifindex: u32) -> Result<OwnedFd> {
    let fd = packet_socket(ns, ifindex, ETH_P_ALL)?;
    set_int(fd.as_raw_fd(), SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)?;
    set_int(fd.as_raw_fd(), SOL_PACKET, PACKET_AUXDATA, 1)?;
    setsockopt(&fd, sockopt::ReceiveTimestampns, &true).map_err(os("SO_TIMESTAMPNS"))?;
    // FORCE: the buffer a round needs is above the default rmem_max.
    setsockopt(&fd, sockopt::RcvBufForce, &(ROUND * BUFFER_PER_FRAME))
        .map_err(os("SO_RCVBUFFORCE"))?;
    Ok(fd)
}

/// PACKET_STATISTICS: (packets, drops) since the last read; reading resets them.
pub(crate) fn statistics(fd: RawFd) -> Result<(u32, u32)> {
    let mut stats = [0u32; 2];
    let mut len = size_of_val(&stats) as libc::socklen_t;
    let r = unsafe {
        libc::getsockopt(
            fd,
            SOL_PACKET,
            PACKET_STATISTICS,
            stats.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(os("PACKET_STATISTICS")(nix::Error::last()));
    }
    Ok((stats[0], stats[1]))
}

/// Sends `frames` on `fd` with as few system calls as the kernel allows; returns how many the
/// device dropped at once (ENOBUFS: NET_XMIT_DROP, e.g. a bond with no slave that can take the
/// frame), which the captures then show as lost.
fn send_all(fd: RawFd, frames: &[&[u8]]) -> Result<usize> {
    let mut dropped = 0;
    for batch in frames.chunks(BATCH) {
        let mut iov: Vec<libc::iovec> = batch
            .iter()
            .map(|f| libc::iovec {
                iov_base: f.as_ptr().cast_mut().cast(),
                iov_len: f.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let mut done = 0;
        while done < msgs.len() {
            let n = unsafe {
                libc::sendmmsg(fd, msgs[done..].as_mut_ptr(), (msgs.len() - done) as u32, 0)
            };
            if n < 0 {
                let e = nix::Error::last();
                if e == nix::Error::EINTR {
                    continue;
                }
                if e == nix::Error::ENOBUFS {
                    // The frame at `done` was dropped; sendmmsg reports it on the next call.
                    dropped += 1;
                    done += 1;
                    continue;
                }
                return Err(os("sendmmsg")(e));
            }
            done += n as usize;
        }
    }
    Ok(dropped)
}

/// Pins the calling thread to the CPU it runs on; returns that CPU.
fn pin() -> Option<usize> {
    let cpu = usize::try_from(unsafe { libc::sched_getcpu() }).ok()?;
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).ok()?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).ok()?;
    Some(cpu)
}

/// The sockets of one traffic run: one sending through the bond and one through each VLAN
/// device on top of it, one per slave for its fences (straight on the slave, bypassing the
/// bond), and one capture per peer end that can capture. Opened in the caller's thread, they
/// can be moved to the thread that sends.
pub struct Sockets {
    /// Per VLAN (None: untagged, the bond itself), the socket its frames go out through.
    senders: Vec<(Option<u16>, OwnedFd)>,
    fences: Vec<Option<OwnedFd>>,
    captures: Vec<Option<OwnedFd>>,
    /// Per lane, what its capture saw so far.
    stats: Vec<Capture>,
    peers: Vec<String>,
    /// Gratuitous ARPs seen so far.
    garps: Vec<Garp>,
    /// The receive backlogs' drop count when the sockets were opened.
    backlog_drops_at_open: u64,
    /// Frames per round.
    round: usize,
}

impl Sockets {
    /// Opens the sockets for `lanes`, sending through the bond and through the VLAN devices
    /// `vlans` (VLAN id, ifindex); whatever reached the captures before is counted as not ours
    /// (LACPDUs, say).
    pub fn open(
        bond_ns: &AnonNetns,
        bond_index: u32,
        vlans: &[(u16, u32)],
        lanes: &[Lane],
    ) -> Result<Sockets> {
        let mut senders = vec![(None, packet_socket(bond_ns, bond_index, 0)?)];
        for (id, index) in vlans {
            senders.push((Some(*id), packet_socket(bond_ns, *index, 0)?));
        }
        let mut captures = Vec::new();
        let mut stats = Vec::new();
        for lane in lanes {
            let absent = match (lane.peer_index, lane.peer_up) {
                (None, _) => Some("the peer end does not exist".to_string()),
                (Some(_), false) => Some("the peer end is down".to_string()),
                _ => None,
            };
            let socket = match (&absent, lane.peer_index) {
                (None, Some(i)) => Some(capture_socket(lane.peer_ns, i)?),
                _ => None,
            };
            let mut other = 0;
            if let Some(s) = &socket {
                let now = SystemTime::now();
                other = drain(
                    s.as_raw_fd(),
                    0,
                    0,
                    &mut Vec::new(),
                    &mut Vec::new(),
                    0,
                    now,
                )?
                .0;
                statistics(s.as_raw_fd())?;
            }
            captures.push(socket);
            stats.push(Capture {
                slave: lane.slave.clone(),
                peer: lane.peer.clone(),
                frames: 0,
                other,
                dropped: 0,
                absent,
            });
        }
        let fences = lanes
            .iter()
            .map(|l| match l.slave_index {
                Some(i) => packet_socket(bond_ns, i, 0).map(Some),
                None => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Sockets {
            senders,
            fences,
            captures,
            stats,
            peers: lanes
                .iter()
                .map(|l| format!("{}'s peer end {}", l.slave, l.peer))
                .collect(),
            garps: Vec::new(),
            backlog_drops_at_open: backlog_drops()?,
            round: round_size(lanes.len()),
        })
    }

    /// Frames the receive backlogs dropped since the sockets were opened.
    fn backlog_dropped(&self) -> Result<u64> {
        Ok(backlog_drops()?.saturating_sub(self.backlog_drops_at_open))
    }

    /// Sends `frames` in order, each through the socket of its VLAN, consecutive frames of one
    /// VLAN in one batch; returns how many the bond dropped at once.
    fn send(&self, frames: &[Frame]) -> Result<usize> {
        let mut dropped = 0;
        for run in frames.chunk_by(|a, b| a.vlan == b.vlan) {
            let Some((_, fd)) = self.senders.iter().find(|(v, _)| *v == run[0].vlan) else {
                return Err(Error::run(format!(
                    "traffic: no VLAN device for VLAN {:?}",
                    run[0].vlan
                )));
            };
            let bytes: Vec<&[u8]> = run.iter().map(|f| f.bytes.as_slice()).collect();
            dropped += send_all(fd.as_raw_fd(), &bytes)?;
        }
        Ok(dropped)
    }

    /// Reads what the captures in `ready` (lane indices) hold; true per lane whose fence of
    /// `round` was among it.
    fn collect(
        &mut self,
        ready: &[usize],
        run_id: u32,
        round: u32,
        arrivals: &mut Vec<Arrival>,
        epoch: SystemTime,
    ) -> Result<Vec<usize>> {
        let mut fenced = Vec::new();
        for &i in ready {
            let Some(fd) = self.captures[i].as_ref().map(AsRawFd::as_raw_fd) else {
                continue;
            };
            let (other, fence) = drain(fd, run_id, round, arrivals, &mut self.garps, i, epoch)?;
            self.stats[i].other += other;
            if fence {
                fenced.push(i);
            }
        }
        Ok(fenced)
    }

    /// Waits until `wanted` captures are readable or `timeout` has passed; returns the ready
    /// ones. A capture whose peer went down reports an error once: it is read like the rest.
    fn ready(&self, wanted: &[usize], timeout: Duration) -> Result<Vec<usize>> {
        let idx: Vec<usize> = wanted
            .iter()
            .copied()
            .filter(|i| self.captures[*i].is_some())
            .collect();
        let mut polled: Vec<PollFd> = idx
            .iter()
            .map(|i| {
                let s = self.captures[*i].as_ref().expect("filtered");
                PollFd::new(std::os::fd::AsFd::as_fd(s), PollFlags::POLLIN)
            })
            .collect();
        let timeout = nix::sys::time::TimeSpec::from_duration(timeout);
        match nix::poll::ppoll(&mut polled, Some(timeout), None) {
            Err(nix::Error::EINTR) | Ok(0) => return Ok(Vec::new()),
            Err(e) => return Err(os("poll")(e)),
            Ok(_) => {}
        }
        Ok(idx
            .iter()
            .zip(&polled)
            .filter(|(_, p)| p.revents().is_some_and(|r| !r.is_empty()))
            .map(|(i, _)| *i)
            .collect())
    }

    /// Sends the fence of `round` on every slave and reads the captures until each has seen
    /// its fence, or `deadline` has passed (an error: the capture would be incomplete).
    fn fence(
        &mut self,
        src_mac: [u8; 6],
        run_id: u32,
        round: u32,
        deadline: Duration,
        arrivals: &mut Vec<Arrival>,
        epoch: SystemTime,
    ) -> Result<()> {
        let fence = frames::fence(src_mac, run_id, round);
        let mut waiting = Vec::new();
        for (i, f) in self.fences.iter().enumerate() {
            let Some(f) = f else { continue };
            // A slave that is down refuses the fence (ENETDOWN): nothing to wait for.
            if send_all(f.as_raw_fd(), &[&fence]).is_ok() && self.captures[i].is_some() {
                waiting.push(i);
            }
        }
        let until = Instant::now() + deadline;
        while !waiting.is_empty() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let late: Vec<&str> = waiting.iter().map(|i| self.peers[*i].as_str()).collect();
                let backlog = match self.backlog_dropped()? {
                    0 => String::new(),
                    n => format!(
                        " (the kernel's receive backlog dropped {n} frames meanwhile, \
                         /proc/net/softnet_stat)"
                    ),
                };
                return Err(Error::run(format!(
                    "traffic: no fence of round {round} reached {} within {} ms: the capture is \
                     incomplete{backlog}",
                    late.join(", "),
                    deadline.as_millis()
                )));
            }
            let ready = self.ready(&waiting, left)?;
            let fenced = self.collect(&ready, run_id, round, arrivals, epoch)?;
            waiting.retain(|i| !fenced.contains(i));
        }
        Ok(())
    }

    /// The captures' final counts: frames per lane and what the kernel dropped.
    fn finish(mut self, arrivals: &[Arrival]) -> Result<Vec<Capture>> {
        for (s, c) in self.captures.iter().zip(&mut self.stats) {
            if let Some(s) = s {
                c.dropped = statistics(s.as_raw_fd())?.1;
            }
        }
        for a in arrivals {
            self.stats[a.slave].frames += 1;
        }
        Ok(self.stats)
    }
}

/// Sends `frames` through the bond and captures them on every lane, in rounds that each end
/// when every capture has its fence (or `deadline` passes).
pub fn run(
    mut sockets: Sockets,
    src_mac: [u8; 6],
    run_id: u32,
    frames: &[Frame],
    deadline: Duration,
) -> Result<Sent> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let cpu = pin();
                let start = Instant::now();
                let epoch = SystemTime::now();
                let mut arrivals = Vec::new();
                let mut send_time = Duration::ZERO;
                let mut dropped = 0;
                let rounds = frames.chunks(sockets.round).len();
                for (round, chunk) in frames.chunks(sockets.round).enumerate() {
                    let t = Instant::now();
                    dropped += sockets.send(chunk)?;
                    send_time += t.elapsed();
                    sockets.fence(
                        src_mac,
                        run_id,
                        round as u32,
                        deadline,
                        &mut arrivals,
                        epoch,
                    )?;
                }
                Ok(Sent {
                    frames: frames.len(),
                    rounds,
                    cpu,
                    dropped_at_send: dropped,
                    backlog_dropped: sockets.backlog_dropped()?,
                    send_ms: send_time.as_secs_f64() * 1e3,
                    total_ms: start.elapsed().as_secs_f64() * 1e3,
                    captures: sockets.finish(&arrivals)?,
                    arrivals,
                })
            })
            .join()
            .map_err(|_| Error::run("traffic: the sending thread panicked"))?
    })
}

/// How a stream is paced and steered: one frame every `period` from `start`, until `stop` is
/// set or the frames run out; `progress` tells the controller how many have been sent.
pub struct Pace {
    pub period: Duration,
    pub start: Instant,
    pub epoch: SystemTime,
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub progress: tokio::sync::watch::Sender<usize>,
}

/// When one frame of a stream was handed to the kernel: the `sendmmsg` call that carried it
/// began and returned (µs from the stream's start).
#[derive(
    Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct SendTime {
    /// The call began.
    pub from_us: f64,
    /// The call returned.
    pub to_us: f64,
}

/// A stream's raw result: what was sent when, and where it arrived.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Streamed {
    /// The CPU the frames were sent from.
    pub cpu: Option<usize>,
    /// Frames the bond dropped as they were sent (ENOBUFS): lost, as the captures show.
    pub dropped_at_send: usize,
    /// Frames the kernel's receive backlogs dropped meanwhile (any namespace's).
    #[serde(default)]
    pub backlog_dropped: u64,
    /// Per frame, in sequence order: the send call that carried it.
    pub sends: Vec<SendTime>,
    /// What each slave's capture saw.
    pub captures: Vec<Capture>,
    /// Every copy seen, with its kernel receive timestamp from the stream's start.
    pub arrivals: Vec<Arrival>,
    /// Every gratuitous ARP seen.
    pub garps: Vec<Garp>,
}

impl Streamed {
    /// Why what the captures saw is incomplete, if it is.
    pub fn incomplete(&self) -> Option<String> {
        incomplete(&self.captures, self.backlog_dropped)
    }
}

/// Sends `frames` through the bond at a steady pace, reading the captures between sends, until
/// told to stop; then one fence round. Runs on the calling thread, which it pins.
pub fn stream(
    mut sockets: Sockets,
    src_mac: [u8; 6],
    run_id: u32,
    frames: &[Frame],
    pace: &Pace,
    deadline: Duration,
) -> Result<Streamed> {
    use std::sync::atomic::Ordering;
    let cpu = pin();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mut sends = Vec::with_capacity(frames.len());
    let mut arrivals = Vec::new();
    let mut dropped = 0;
    let all: Vec<usize> = (0..sockets.captures.len()).collect();
    while !pace.stop.load(Ordering::Acquire) && sends.len() < frames.len() {
        // Every frame that is due goes out now, in one call: a late wake-up catches up.
        let elapsed = pace.start.elapsed();
        let due = ((elapsed.as_nanos() / pace.period.as_nanos()) as usize + 1).min(frames.len());
        if due > sends.len() {
            let from_us = us(pace.start.elapsed());
            dropped += sockets.send(&frames[sends.len()..due])?;
            let to = SendTime {
                from_us,
                to_us: us(pace.start.elapsed()),
            };
            sends.resize(due, to);
            pace.progress.send_replace(due);
        }
        let next = pace.period * (sends.len() as u32);
        let wait = next.saturating_sub(pace.start.elapsed());
        let ready = sockets.ready(&all, wait)?;
        sockets.collect(&ready, run_id, u32::MAX, &mut arrivals, pace.epoch)?;
    }
    sockets.fence(src_mac, run_id, 0, deadline, &mut arrivals, pace.epoch)?;
    let garps = std::mem::take(&mut sockets.garps);
    Ok(Streamed {
        cpu,
        dropped_at_send: dropped,
        backlog_dropped: sockets.backlog_dropped()?,
        sends,
        captures: sockets.finish(&arrivals)?,
        arrivals,
        garps,
    })
}

/// A kernel receive timestamp (wall clock) as µs from `epoch`.
fn since_us(at: Option<Duration>, epoch: SystemTime) -> f64 {
    at.and_then(|t| (SystemTime::UNIX_EPOCH + t).duration_since(epoch).ok())
        .unwrap_or_default()
        .as_secs_f64()
        * 1e6
}

/// Reads everything queued on a capture without blocking. Returns how many frames were not
/// ours and whether the fence of `round` was among them.
pub(crate) fn drain(
    fd: RawFd,
    run_id: u32,
    round: u32,
    arrivals: &mut Vec<Arrival>,
    garps: &mut Vec<Garp>,
    slave: usize,
    epoch: SystemTime,
) -> Result<(usize, bool)> {
    let (mut other, mut fenced) = (0, false);
    let mut buffers = vec![[0u8; 2048]; BATCH];
    loop {
        // The headers and slices borrow `buffers` until this block ends.
        let seen = {
            let mut headers = MultiHeaders::<LinkAddr>::preallocate(
                BATCH,
                Some(nix::cmsg_space!(
                    nix::sys::time::TimeSpec,
                    libc::tpacket_auxdata
                )),
            );
            let mut iovs: Vec<[IoSliceMut; 1]> =
                buffers.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
            let got = match recvmmsg(
                fd,
                &mut headers,
                iovs.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            ) {
                Ok(got) => got,
                Err(nix::Error::EAGAIN) => break,
                // The peer end went down: its socket reports that once, then reads go on.
                Err(nix::Error::EINTR | nix::Error::ENETDOWN) => continue,
                Err(e) => return Err(os("recvmmsg")(e)),
            };
            let mut seen = Vec::new();
            for m in got {
                let (mut at, mut vlan) = (None, None);
                for c in m.cmsgs().map_err(os("control message"))? {
                    match c {
                        ControlMessageOwned::ScmTimestampns(t) => at = Some(Duration::from(t)),
                        ControlMessageOwned::Unknown(u)
                            if u.cmsg_header.cmsg_level == SOL_PACKET
                                && u.cmsg_header.cmsg_type == PACKET_AUXDATA =>
                        {
                            vlan = auxdata_vlan(&u.data_bytes);
                        }
                        _ => {}
                    }
                }
                seen.push((m.bytes, at, vlan));
            }
            seen
        };
        let n = seen.len();
        for ((len, at, vlan), buf) in seen.into_iter().zip(&buffers) {
            match frames::identify(&buf[..len.min(buf.len())]) {
                Some((id, seq)) if id == run_id && seq & FENCE != 0 => {
                    fenced |= seq == FENCE | round;
                }
                Some((id, seq)) if id == run_id => {
                    arrivals.push(Arrival {
                        seq,
                        slave,
                        at_us: since_us(at, epoch),
                        vlan,
                    });
                }
                _ => {
                    other += 1;
                    if gratuitous_arp(&buf[..len.min(buf.len())]) {
                        garps.push(Garp {
                            slave,
                            at_us: since_us(at, epoch),
                        });
                    }
                }
            }
        }
        if n < BATCH {
            break;
        }
    }
    Ok((other, fenced))
}

/// The VLAN id in a PACKET_AUXDATA message (`struct tpacket_auxdata`), if its tag is valid.
fn auxdata_vlan(data: &[u8]) -> Option<u16> {
    let status = u32::from_ne_bytes(data.get(..4)?.try_into().ok()?);
    let tci = u16::from_ne_bytes(data.get(16..18)?.try_into().ok()?);
    (status & TP_STATUS_VLAN_VALID != 0).then_some(tci & 0x0fff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vlan_id_comes_from_a_valid_auxdata_tag_only() {
        let aux = |status: u32, tci: u16| {
            let mut d = vec![0u8; size_of::<libc::tpacket_auxdata>()];
            d[..4].copy_from_slice(&status.to_ne_bytes());
            d[16..18].copy_from_slice(&tci.to_ne_bytes());
            d
        };
        // Priority bits are not part of the id.
        assert_eq!(
            auxdata_vlan(&aux(TP_STATUS_VLAN_VALID | 1, 0xa064)),
            Some(100)
        );
        assert_eq!(auxdata_vlan(&aux(1, 100)), None);
        assert_eq!(auxdata_vlan(&[0; 4]), None);
    }
}
