//! The frames bondcheck sends through a bond: a deterministic mix of flows (MAC addresses,
//! IPv4 and IPv6 addresses, UDP and TCP ports, ICMP echo ids, IPv4 fragments, a non-IP
//! ethertype, broadcast) so that every transmit hash policy sees varied input, each frame
//! carrying a marker and its sequence number so that a capture can tell which frame it saw
//! whatever the driver rewrote in the headers.
//!
//! Building frames is pure: the same seed gives the same bytes, so the model can compute the
//! slave of every frame from exactly what was sent.

use std::net::{Ipv4Addr, Ipv6Addr};

use pnet_base::MacAddr;
use pnet_packet::MutablePacket;
use pnet_packet::ethernet::{EtherType, EtherTypes, MutableEthernetPacket};
use pnet_packet::icmp::{IcmpPacket, IcmpTypes, echo_request::MutableEchoRequestPacket};
use pnet_packet::icmpv6::{
    Icmpv6Packet, Icmpv6Types, echo_request::MutableEchoRequestPacket as MutableEcho6Packet,
};
use pnet_packet::ip::{IpNextHeaderProtocol, IpNextHeaderProtocols};
use pnet_packet::ipv4::{self, MutableIpv4Packet};
use pnet_packet::ipv6::MutableIpv6Packet;
use pnet_packet::tcp::{self, MutableTcpPacket, TcpFlags};
use pnet_packet::udp::{self, MutableUdpPacket};

/// Starts the payload of every frame bondcheck sends; a capture looks for it anywhere in a
/// frame, so header rewrites (balance-tlb/alb change the source MAC) do not hide a frame.
pub const MARKER: &[u8; 8] = b"BONDCHK1";
/// The ethertype of non-IP frames and of fences: IEEE 802 local experimental ethertype 1.
pub const EXPERIMENTAL: u16 = 0x88b5;
/// Sequence numbers at or above this mark fences, not test frames.
pub const FENCE: u32 = 0x8000_0000;

pub const PAYLOAD: usize = MARKER.len() + 8;

/// What sits on top of Ethernet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Ipv4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        transport: Transport,
        /// A non-first fragment: the driver's hashes see no ports.
        fragment: bool,
    },
    Ipv6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        transport: Transport,
    },
    /// A frame with an ethertype the driver's flow dissector does not parse.
    Other { ethertype: u16 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp { src: u16, dst: u16 },
    Tcp { src: u16, dst: u16 },
    IcmpEcho { id: u16 },
}

/// One flow: every frame of it has the same headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub network: Network,
    /// The VLAN the flow is sent on: through a VLAN device on top of the bond, as a host's own
    /// tagged traffic goes, so the tag reaches the bond out of band (see [`Frame::vlan`]).
    pub vlan: Option<u16>,
}

/// A frame as sent: its sequence number, its flow and its bytes from the Ethernet header on.
#[derive(Debug, Clone)]
pub struct Frame {
    pub seq: u32,
    pub flow: usize,
    pub bytes: Vec<u8>,
    /// The VLAN device it is sent through, if any. The bytes carry no 802.1Q header: the VLAN
    /// device puts the tag in the skb (`__vlan_hwaccel_put_tag`, vlan_dev_hard_start_xmit) and
    /// the bond, which advertises NETIF_F_HW_VLAN_CTAG_TX (bond_setup), receives it so.
    pub vlan: Option<u16>,
}

/// splitmix64: a tiny, well-known generator; the flows only need to be varied and repeatable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        for chunk in out.chunks_mut(8) {
            let r = self.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        out
    }

    fn port(&mut self) -> u16 {
        1024 + (self.next() % 60000) as u16
    }
}

/// A unicast, locally administered MAC address.
fn local_mac(rng: &mut Rng) -> [u8; 6] {
    let mut m: [u8; 6] = rng.bytes();
    m[0] = (m[0] & 0xfc) | 0x02;
    m
}

/// `count` flows from `seed`. Most flows come from `src_mac` (the bond's address, as the
/// bond's own traffic would), every fourth from another address, so that layer2 and
/// vlan+srcmac hashing see variety; one in eight flows goes to the broadcast address. With
/// `vlans`, flows take turns: untagged, then on each VLAN in order (the turns take nothing
/// from the generator, so the headers stay those of the same seed without VLANs).
pub fn mix(seed: u64, count: usize, src_mac: [u8; 6], vlans: &[u16]) -> Vec<Flow> {
    let mut rng = Rng(seed);
    (0..count)
        .map(|i| {
            let dst_mac = if i % 8 == 7 {
                [0xff; 6]
            } else {
                local_mac(&mut rng)
            };
            let src_mac = if i % 4 == 3 {
                local_mac(&mut rng)
            } else {
                src_mac
            };
            let transport = match rng.next() % 3 {
                0 => Transport::Udp {
                    src: rng.port(),
                    dst: rng.port(),
                },
                1 => Transport::Tcp {
                    src: rng.port(),
                    dst: rng.port(),
                },
                _ => Transport::IcmpEcho {
                    id: rng.next() as u16,
                },
            };
            let network = match i % 6 {
                0 | 2 | 4 => Network::Ipv4 {
                    src: private(&mut rng),
                    dst: private(&mut rng),
                    transport,
                    fragment: i % 12 == 4,
                },
                1 | 3 => Network::Ipv6 {
                    src: ula(&mut rng),
                    dst: ula(&mut rng),
                    transport,
                },
                _ => Network::Other {
                    ethertype: EXPERIMENTAL,
                },
            };
            let vlan = match i % (vlans.len() + 1) {
                0 => None,
                turn => Some(vlans[turn - 1]),
            };
            Flow {
                dst_mac,
                src_mac,
                network,
                vlan,
            }
        })
        .collect()
}

/// An address in 10.0.0.0/8.
fn private(rng: &mut Rng) -> Ipv4Addr {
    let [_, b, c, d] = rng.bytes::<4>();
    Ipv4Addr::new(10, b, c, d)
}

/// An address in fd00::/8 (unique local).
fn ula(rng: &mut Rng) -> Ipv6Addr {
    let mut a: [u8; 16] = rng.bytes();
    a[0] = 0xfd;
    Ipv6Addr::from(a)
}

/// The payload every frame carries: the marker, the run's id and the sequence number.
pub fn payload(run: u32, seq: u32) -> [u8; PAYLOAD] {
    let mut p = [0; PAYLOAD];
    p[..8].copy_from_slice(MARKER);
    p[8..12].copy_from_slice(&run.to_be_bytes());
    p[12..].copy_from_slice(&seq.to_be_bytes());
    p
}

/// Finds bondcheck's payload in a captured frame: the run id and sequence number.
pub fn identify(frame: &[u8]) -> Option<(u32, u32)> {
    let at = frame.windows(MARKER.len()).position(|w| w == MARKER)?;
    let rest = frame.get(at + MARKER.len()..at + PAYLOAD)?;
    let word = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Some((word(&rest[..4]), word(&rest[4..])))
}

/// Frame `seq` of run `run`, of `flow`.
pub fn build(flow: &Flow, run: u32, seq: u32) -> Vec<u8> {
    let data = payload(run, seq);
    let (ethertype, network) = match flow.network {
        Network::Ipv4 {
            src,
            dst,
            transport,
            fragment,
        } => (EtherTypes::Ipv4, ipv4(src, dst, transport, fragment, &data)),
        Network::Ipv6 {
            src,
            dst,
            transport,
        } => (EtherTypes::Ipv6, ipv6(src, dst, transport, &data)),
        Network::Other { ethertype } => (EtherType(ethertype), data.to_vec()),
    };
    ethernet(flow.dst_mac, flow.src_mac, ethertype, &network)
}

/// The frame that tells a capture a round is over: sent straight on a slave, behind the
/// round's frames in the same receive queue.
pub fn fence(src_mac: [u8; 6], run: u32, round: u32) -> Vec<u8> {
    ethernet(
        [0xff; 6],
        src_mac,
        EtherType(EXPERIMENTAL),
        &payload(run, FENCE | round),
    )
}

/// `count` frames over `flows`, frame i of flow i mod flows.
pub fn frames(flows: &[Flow], run: u32, count: usize) -> Vec<Frame> {
    (0..count)
        .map(|i| {
            let flow = i % flows.len();
            let seq = i as u32;
            Frame {
                seq,
                flow,
                bytes: build(&flows[flow], run, seq),
                vlan: flows[flow].vlan,
            }
        })
        .collect()
}

fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: EtherType, body: &[u8]) -> Vec<u8> {
    let mut buf = vec![0; 14 + body.len()];
    let mut eth = MutableEthernetPacket::new(&mut buf).expect("sized for the header");
    eth.set_destination(MacAddr::from(dst));
    eth.set_source(MacAddr::from(src));
    eth.set_ethertype(ethertype);
    eth.payload_mut().copy_from_slice(body);
    buf
}

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, t: Transport, fragment: bool, data: &[u8]) -> Vec<u8> {
    let (proto, mut l4) = transport(t, data);
    match t {
        Transport::Udp { .. } => {
            let mut p = MutableUdpPacket::new(&mut l4).expect("sized");
            let sum = udp::ipv4_checksum(&p.to_immutable(), &src, &dst);
            p.set_checksum(sum);
        }
        Transport::Tcp { .. } => {
            let mut p = MutableTcpPacket::new(&mut l4).expect("sized");
            let sum = tcp::ipv4_checksum(&p.to_immutable(), &src, &dst);
            p.set_checksum(sum);
        }
        Transport::IcmpEcho { .. } => {
            let sum = pnet_packet::icmp::checksum(&IcmpPacket::new(&l4).expect("sized"));
            MutableEchoRequestPacket::new(&mut l4)
                .expect("sized")
                .set_checksum(sum);
        }
    }
    let mut buf = vec![0; 20 + l4.len()];
    let mut ip = MutableIpv4Packet::new(&mut buf).expect("sized");
    ip.set_version(4);
    ip.set_header_length(5);
    ip.set_total_length((20 + l4.len()) as u16);
    ip.set_ttl(64);
    ip.set_next_level_protocol(match t {
        Transport::IcmpEcho { .. } => IpNextHeaderProtocols::Icmp,
        _ => proto,
    });
    if fragment {
        // A later fragment (offset 1480 bytes): carries no transport header for the hash.
        ip.set_fragment_offset(185);
    }
    ip.set_source(src);
    ip.set_destination(dst);
    ip.payload_mut().copy_from_slice(&l4);
    let sum = ipv4::checksum(&ip.to_immutable());
    ip.set_checksum(sum);
    buf
}

fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, t: Transport, data: &[u8]) -> Vec<u8> {
    let (proto, mut l4) = transport(t, data);
    let proto = match t {
        Transport::Udp { .. } => {
            let mut p = MutableUdpPacket::new(&mut l4).expect("sized");
            let sum = udp::ipv6_checksum(&p.to_immutable(), &src, &dst);
            p.set_checksum(sum);
            proto
        }
        Transport::Tcp { .. } => {
            let mut p = MutableTcpPacket::new(&mut l4).expect("sized");
            let sum = tcp::ipv6_checksum(&p.to_immutable(), &src, &dst);
            p.set_checksum(sum);
            proto
        }
        Transport::IcmpEcho { .. } => {
            l4[0] = Icmpv6Types::EchoRequest.0;
            let sum =
                pnet_packet::icmpv6::checksum(&Icmpv6Packet::new(&l4).expect("sized"), &src, &dst);
            MutableEcho6Packet::new(&mut l4)
                .expect("sized")
                .set_checksum(sum);
            IpNextHeaderProtocols::Icmpv6
        }
    };
    let mut buf = vec![0; 40 + l4.len()];
    let mut ip = MutableIpv6Packet::new(&mut buf).expect("sized");
    ip.set_version(6);
    ip.set_payload_length(l4.len() as u16);
    ip.set_next_header(proto);
    ip.set_hop_limit(64);
    ip.set_source(src);
    ip.set_destination(dst);
    ip.payload_mut().copy_from_slice(&l4);
    buf
}

/// The transport header and payload, checksum still zero (it depends on the IP addresses).
fn transport(t: Transport, data: &[u8]) -> (IpNextHeaderProtocol, Vec<u8>) {
    match t {
        Transport::Udp { src, dst } => {
            let mut buf = vec![0; 8 + data.len()];
            let mut p = MutableUdpPacket::new(&mut buf).expect("sized");
            p.set_source(src);
            p.set_destination(dst);
            p.set_length((8 + data.len()) as u16);
            p.payload_mut().copy_from_slice(data);
            (IpNextHeaderProtocols::Udp, buf)
        }
        Transport::Tcp { src, dst } => {
            let mut buf = vec![0; 20 + data.len()];
            let mut p = MutableTcpPacket::new(&mut buf).expect("sized");
            p.set_source(src);
            p.set_destination(dst);
            p.set_data_offset(5);
            p.set_flags(TcpFlags::ACK | TcpFlags::PSH);
            p.set_window(65535);
            p.payload_mut().copy_from_slice(data);
            (IpNextHeaderProtocols::Tcp, buf)
        }
        Transport::IcmpEcho { id } => {
            let mut buf = vec![0; 8 + data.len()];
            let mut p = MutableEchoRequestPacket::new(&mut buf).expect("sized");
            p.set_icmp_type(IcmpTypes::EchoRequest);
            p.set_identifier(id);
            p.set_sequence_number(1);
            p.payload_mut().copy_from_slice(data);
            (IpNextHeaderProtocols::Icmp, buf)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_packet::Packet;
    use pnet_packet::ethernet::EthernetPacket;
    use pnet_packet::ipv4::Ipv4Packet;

    const BOND_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];

    #[test]
    fn the_same_seed_gives_the_same_frames() {
        let a = frames(&mix(7, 16, BOND_MAC, &[]), 1, 40);
        let b = frames(&mix(7, 16, BOND_MAC, &[]), 1, 40);
        assert!(a.iter().zip(&b).all(|(x, y)| x.bytes == y.bytes));
        let c = frames(&mix(8, 16, BOND_MAC, &[]), 1, 40);
        assert!(a.iter().zip(&c).any(|(x, y)| x.bytes != y.bytes));
    }

    #[test]
    fn every_frame_is_identified_by_run_and_sequence() {
        for f in frames(&mix(3, 24, BOND_MAC, &[]), 0xabcd, 100) {
            assert_eq!(identify(&f.bytes), Some((0xabcd, f.seq)));
        }
        assert_eq!(identify(&fence(BOND_MAC, 9, 2)), Some((9, FENCE | 2)));
        assert_eq!(identify(b"no marker here"), None);
        // A marker cut short by the end of the frame is no frame of ours.
        assert_eq!(identify(&MARKER[..]), None);
    }

    #[test]
    fn the_mix_covers_what_the_hash_policies_look_at() {
        let flows = mix(1, 48, BOND_MAC, &[]);
        let has = |p: &dyn Fn(&Flow) -> bool| flows.iter().any(p);
        assert!(has(&|f| f.dst_mac == [0xff; 6]));
        assert!(has(&|f| f.src_mac != BOND_MAC));
        assert!(has(&|f| matches!(
            f.network,
            Network::Ipv4 { fragment: true, .. }
        )));
        assert!(has(&|f| matches!(f.network, Network::Other { .. })));
        for t in [
            |t: &Transport| matches!(t, Transport::Udp { .. }),
            |t: &Transport| matches!(t, Transport::Tcp { .. }),
            |t: &Transport| matches!(t, Transport::IcmpEcho { .. }),
        ] {
            assert!(has(
                &|f| matches!(f.network, Network::Ipv4 { transport, .. } if t(&transport))
            ));
            assert!(has(
                &|f| matches!(f.network, Network::Ipv6 { transport, .. } if t(&transport))
            ));
        }
        // Unicast destinations are unicast: the driver treats multicast differently.
        assert!(
            flows
                .iter()
                .all(|f| f.dst_mac == [0xff; 6] || f.dst_mac[0] & 1 == 0)
        );
    }

    #[test]
    fn vlans_take_turns_and_change_no_header() {
        let plain = mix(1, 48, BOND_MAC, &[]);
        let tagged = mix(1, 48, BOND_MAC, &[100, 200]);
        for (i, (p, t)) in plain.iter().zip(&tagged).enumerate() {
            assert_eq!(Flow { vlan: None, ..*t }, *p);
            assert_eq!(t.vlan, [None, Some(100), Some(200)][i % 3]);
        }
        // Every VLAN carries IPv4 and IPv6, so the L3 hashes see tagged frames too.
        for vlan in [None, Some(100), Some(200)] {
            assert!(
                tagged
                    .iter()
                    .any(|f| f.vlan == vlan && matches!(f.network, Network::Ipv4 { .. }))
            );
        }
        let f = frames(&tagged, 1, 6);
        assert_eq!(f[4].vlan, Some(100));
    }

    #[test]
    fn ipv4_headers_are_valid() {
        let flows = mix(5, 12, BOND_MAC, &[]);
        for f in frames(&flows, 1, 12) {
            let eth = EthernetPacket::new(&f.bytes).unwrap();
            if eth.get_ethertype() != EtherTypes::Ipv4 {
                continue;
            }
            let ip = Ipv4Packet::new(eth.payload()).unwrap();
            assert_eq!(usize::from(ip.get_total_length()), eth.payload().len());
            assert_eq!(ipv4::checksum(&ip), ip.get_checksum());
        }
    }
}
