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
//! A round ends on an event, not a sleep: after its frames, a *fence* frame is sent straight
//! on every slave (bypassing the bond). A slave's frames and its fence travel the same way,
//! in order, to the peer's receive queue, so once a capture has seen the fence it has seen
//! everything the bond sent that way.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant, SystemTime};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    ControlMessageOwned, LinkAddr, MsgFlags, MultiHeaders, recvmmsg, setsockopt, sockopt,
};

use crate::error::{Error, Result};
use crate::frames::{self, FENCE, Frame};
use crate::netns::AnonNetns;

/// linux/if_packet.h, stable ABI (not every libc release exports them).
const SOL_PACKET: libc::c_int = 263;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
pub(crate) const ETH_P_ALL: u16 = 0x0003;

/// Frames per `sendmmsg` and per `recvmmsg`.
const BATCH: usize = 64;
/// Frames per round: what one capture must hold between fences.
pub const ROUND: usize = 512;
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
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Arrival {
    pub seq: u32,
    /// Index of the slave in enslave order.
    pub slave: usize,
    /// Kernel receive timestamp, from the start of sending.
    pub at_us: f64,
}

/// What one capture saw, and what the kernel says it dropped.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Capture {
    pub slave: String,
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
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sent {
    pub frames: usize,
    pub rounds: usize,
    /// The CPU the frames were sent from.
    pub cpu: Option<usize>,
    pub send_ms: f64,
    pub total_ms: f64,
    pub captures: Vec<Capture>,
    pub arrivals: Vec<Arrival>,
}

impl Sent {
    /// Frames lost by the captures themselves: if not zero, what they saw is incomplete.
    pub fn capture_loss(&self) -> u32 {
        self.captures.iter().map(|c| c.dropped).sum()
    }
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

/// A capture socket on a peer end: its own frames ignored, kernel timestamps, room for a round.
fn capture_socket(ns: &AnonNetns, ifindex: u32) -> Result<OwnedFd> {
    let fd = packet_socket(ns, ifindex, ETH_P_ALL)?;
    set_int(fd.as_raw_fd(), SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)?;
    setsockopt(&fd, sockopt::ReceiveTimestampns, &true).map_err(os("SO_TIMESTAMPNS"))?;
    // FORCE: the buffer a round needs is above the default rmem_max.
    setsockopt(&fd, sockopt::RcvBufForce, &(ROUND * BUFFER_PER_FRAME))
        .map_err(os("SO_RCVBUFFORCE"))?;
    Ok(fd)
}

/// PACKET_STATISTICS: (packets, drops) since the last read; reading resets them.
fn statistics(fd: RawFd) -> Result<(u32, u32)> {
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

/// Sends `frames` on `fd` with as few system calls as the kernel allows.
fn send_all(fd: RawFd, frames: &[&[u8]]) -> Result<()> {
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
                return Err(os("sendmmsg")(e));
            }
            done += n as usize;
        }
    }
    Ok(())
}

/// Pins the calling thread to the CPU it runs on; returns that CPU.
fn pin() -> Option<usize> {
    let cpu = usize::try_from(unsafe { libc::sched_getcpu() }).ok()?;
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).ok()?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).ok()?;
    Some(cpu)
}

/// Sends `frames` through the bond (`bond_index` in `bond_ns`) and captures them on every
/// lane; a round waits for its fences until `deadline`.
pub fn run(
    bond_ns: &AnonNetns,
    bond_index: u32,
    src_mac: [u8; 6],
    run_id: u32,
    lanes: &[Lane],
    frames: &[Frame],
    deadline: Duration,
) -> Result<Sent> {
    let sender = packet_socket(bond_ns, bond_index, 0)?;
    let mut captures = Vec::new();
    let mut sockets = Vec::new();
    for lane in lanes {
        let absent = match (lane.peer_index, lane.peer_up) {
            (None, _) => Some("the peer end does not exist".to_string()),
            (Some(_), false) => Some("the peer end is down".to_string()),
            _ => None,
        };
        sockets.push(match (&absent, lane.peer_index) {
            (None, Some(i)) => Some(capture_socket(lane.peer_ns, i)?),
            _ => None,
        });
        captures.push(Capture {
            slave: lane.slave.clone(),
            peer: lane.peer.clone(),
            frames: 0,
            other: 0,
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
    // Whatever reached the captures before the first frame (LACPDUs, say) is not ours.
    for (s, c) in sockets.iter().zip(&mut captures) {
        if let Some(s) = s {
            c.other += drain(
                s.as_raw_fd(),
                run_id,
                0,
                &mut Vec::new(),
                0,
                SystemTime::now(),
            )?
            .0;
            statistics(s.as_raw_fd())?;
        }
    }

    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let cpu = pin();
                let start = Instant::now();
                let epoch = SystemTime::now();
                let mut arrivals = Vec::new();
                let mut send_time = Duration::ZERO;
                let rounds = frames.chunks(ROUND).len();
                for (round, chunk) in frames.chunks(ROUND).enumerate() {
                    let round = round as u32;
                    let t = Instant::now();
                    let bytes: Vec<&[u8]> = chunk.iter().map(|f| f.bytes.as_slice()).collect();
                    send_all(sender.as_raw_fd(), &bytes)?;
                    send_time += t.elapsed();
                    let fence = frames::fence(src_mac, run_id, round);
                    let mut waiting = vec![false; lanes.len()];
                    for (i, f) in fences.iter().enumerate() {
                        let Some(f) = f else { continue };
                        // A slave that is down refuses the fence (ENETDOWN): nothing to wait for.
                        let sent = send_all(f.as_raw_fd(), &[&fence]).is_ok();
                        waiting[i] = sent && sockets[i].is_some();
                    }
                    let until = Instant::now() + deadline;
                    while waiting.iter().any(|w| *w) {
                        let left = until.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            let late: Vec<&str> = lanes
                                .iter()
                                .zip(&waiting)
                                .filter(|(_, w)| **w)
                                .map(|(l, _)| l.peer.as_str())
                                .collect();
                            return Err(Error::run(format!(
                                "traffic: no fence of round {round} reached {} within {} ms: the \
                                 capture is incomplete",
                                late.join(", "),
                                deadline.as_millis()
                            )));
                        }
                        let idx: Vec<usize> = (0..lanes.len()).filter(|i| waiting[*i]).collect();
                        let mut polled: Vec<PollFd> = idx
                            .iter()
                            .map(|i| {
                                let s = sockets[*i].as_ref().expect("waited on");
                                PollFd::new(std::os::fd::AsFd::as_fd(s), PollFlags::POLLIN)
                            })
                            .collect();
                        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
                        match poll(&mut polled, PollTimeout::from(ms)) {
                            Err(nix::Error::EINTR) | Ok(0) => continue,
                            Err(e) => return Err(os("poll")(e)),
                            Ok(_) => {}
                        }
                        let ready: Vec<usize> = idx
                            .iter()
                            .zip(&polled)
                            .filter(|(_, p)| {
                                p.revents().is_some_and(|r| r.contains(PollFlags::POLLIN))
                            })
                            .map(|(i, _)| *i)
                            .collect();
                        drop(polled);
                        for i in ready {
                            let fd = sockets[i].as_ref().expect("polled").as_raw_fd();
                            let (other, fenced) =
                                drain(fd, run_id, round, &mut arrivals, i, epoch)?;
                            captures[i].other += other;
                            if fenced {
                                waiting[i] = false;
                            }
                        }
                    }
                }
                for (s, c) in sockets.iter().zip(&mut captures) {
                    if let Some(s) = s {
                        c.dropped = statistics(s.as_raw_fd())?.1;
                    }
                }
                for a in &arrivals {
                    captures[a.slave].frames += 1;
                }
                Ok(Sent {
                    frames: frames.len(),
                    rounds,
                    cpu,
                    send_ms: send_time.as_secs_f64() * 1e3,
                    total_ms: start.elapsed().as_secs_f64() * 1e3,
                    captures,
                    arrivals,
                })
            })
            .join()
            .map_err(|_| Error::run("traffic: the sending thread panicked"))?
    })
}

/// Reads everything queued on a capture without blocking. Returns how many frames were not
/// ours and whether the fence of `round` was among them.
fn drain(
    fd: RawFd,
    run_id: u32,
    round: u32,
    arrivals: &mut Vec<Arrival>,
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
                Some(nix::cmsg_space!(nix::sys::time::TimeSpec)),
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
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(os("recvmmsg")(e)),
            };
            let mut seen = Vec::new();
            for m in got {
                let at = m
                    .cmsgs()
                    .map_err(os("control message"))?
                    .find_map(|c| match c {
                        ControlMessageOwned::ScmTimestampns(t) => Some(Duration::from(t)),
                        _ => None,
                    });
                seen.push((m.bytes, at));
            }
            seen
        };
        let n = seen.len();
        for ((len, at), buf) in seen.into_iter().zip(&buffers) {
            match frames::identify(&buf[..len.min(buf.len())]) {
                Some((id, seq)) if id == run_id && seq & FENCE != 0 => {
                    fenced |= seq == FENCE | round;
                }
                Some((id, seq)) if id == run_id => {
                    let since = at
                        .and_then(|t| (SystemTime::UNIX_EPOCH + t).duration_since(epoch).ok())
                        .unwrap_or_default();
                    arrivals.push(Arrival {
                        seq,
                        slave,
                        at_us: since.as_secs_f64() * 1e6,
                    });
                }
                _ => other += 1,
            }
        }
        if n < BATCH {
            break;
        }
    }
    Ok((other, fenced))
}
