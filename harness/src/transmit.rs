//! The bonding driver's transmit hash, transcribed from Linux 6.1, so that bondcheck can work
//! out from the bytes of a frame which slave a balance-xor or 802.3ad bond sends it on (and
//! balance-tlb with `tlb_dynamic_lb=0`), and compare that with where the frame was captured.
//!
//! # What is transcribed
//!
//! From `drivers/net/bonding/bond_main.c`: `bond_xmit_hash()`, `__bond_xmit_hash()`,
//! `bond_pull_data()`, `bond_eth_hash()`, `bond_vlan_srcmac_hash()`, `bond_flow_dissect()`,
//! `bond_flow_ip()`, `bond_ip_hash()` and the slave choice of `bond_xmit_3ad_xor_slave_get()`
//! ([`slave_index`]). From `net/core/flow_dissector.c`: `skb_flow_get_icmp_tci()`,
//! `icmp_has_id()`, `__skb_flow_get_ports()`, `flow_get_u32_src()`/`flow_get_u32_dst()`, and
//! `__skb_flow_dissect()` as the encap policies call it (`flow_keys_bonding`, no flags). From the
//! headers: `proto_ports_offset()`, `ip_is_fragment()`, `icmp_is_err()`, `icmpv6_is_err()`,
//! `iph_to_flow_copy_v4addrs()`/`_v6addrs()` and `ipv6_addr_hash()`.
//!
//! Every function below names the kernel function it transcribes, so the two can be read side
//! by side. The `bond_main.c` read is that of a vendor 6.1 tree (CodeLinaro
//! `qsdk_oss_kernel_linux-ipq-6.1`), checked against an upstream copy from shortly before 6.1
//! and the 5.15 XDP patch. That vendor tree drops the ethertype from `bond_eth_hash()`.
//! Upstream has had `^ be16_to_cpu(ep->h_proto)` since that 5.15 rework, and that is what is
//! used here. `flow_dissector.c` was read in a (vendor) 6.6 tree. Its later additions (HSR/PRP
//! and CFM ethertypes, IPsec keys) and the vendor's parsing of first-fragment ports are left
//! out here, which gives the 6.1 behaviour for the headers modelled.
//!
//! # How the frame reaches the hash
//!
//! bondcheck sends frames from an `AF_PACKET`/`SOCK_RAW` socket bound to the bond. So, when
//! `bond_start_xmit()` runs:
//! - `skb->data` is the Ethernet header. `__dev_queue_xmit()` resets the MAC header there
//!   (`mhoff = 0`). `packet_snd()` put the network header just after the 14-byte Ethernet header
//!   (`nhoff = 14`), and 6.1 does not move it past VLAN headers.
//! - `skb->protocol` is the frame's ethertype field. `packet_parse_headers()` sets it with
//!   `eth_header_parse_protocol()` when the socket's protocol is 0 or `ETH_P_ALL`. So an
//!   in-band 802.1Q frame has protocol `0x8100`.
//! - The skb is linear, which holds for frames smaller than a page. `bond_pull_data()` then
//!   only checks that the bytes are there: a step that needs bytes past the end fails. For
//!   captured frames, pass the bytes as sent, without the padding the wire adds.
//! - `skb->l4_hash` is not set, so encap3+4 hashes the headers rather than returning `skb->hash`.
//!   No BPF flow dissector is attached either; one would replace `__skb_flow_dissect()`.
//! - A frame sent through a VLAN device on top of the bond carries its tag out of band
//!   (`skb_vlan_tag_present()`). That is the `vlan` argument of [`xmit_hash`], holding the
//!   full TCI as `skb_vlan_tag_get()` returns it.
//!
//! # Endianness
//!
//! The kernel reads several network-order fields as host integers: the IPv4 addresses
//! (`(__force u32)`), the ports word and `struct flow_dissector_key_icmp` (both by `memcpy`), and
//! the IPv6 address words in `ipv6_addr_hash()`. So the hash differs between little- and
//! big-endian machines. bondcheck runs on the machine whose kernel it tests, so these reads use
//! `from_ne_bytes`, exactly like the kernel.
//!
//! # Kernel behaviour worth knowing
//!
//! - The non-encap policies parse only IPv4 and IPv6 at the network offset. Anything else falls
//!   back to the layer2 hash: ARP, any non-IP ethertype, and an in-band 802.1Q frame.
//! - The encap policies run the flow dissector. It steps over in-band VLAN headers, IPv6
//!   extension headers and IP-in-IP. It also *accepts* ARP, RARP, MPLS, FCoE and PTP frames
//!   without finding any address. So on those frames encap2+3 gives the folded layer2 hash and
//!   encap3+4 gives 0, not the layer2 hash.
//! - ICMP errors: layer2+3 and layer3+4 hash the addresses (and, for layer3+4, the ports) of
//!   the packet quoted inside the error; the encap policies hash the outer header.
//! - ICMP echo (and timestamp) messages hash on their identifier under layer3+4 and encap3+4,
//!   with identifier 0 taken as 1.
//!
//! # Limits
//!
//! The encap dissector is modelled for Ethernet, 802.1Q/802.1ad, IPv4, IPv6 (extension headers,
//! fragments), IP-in-IP (protocols 4 and 41), MPLS, ARP/RARP, FCoE and PTP. The kernel also looks
//! inside TIPC, PPPoE and batman-adv frames and GRE packets. Here TIPC, PPPoE and batman-adv are
//! treated like unknown ethertypes (layer2 fallback). GRE is hashed on its outer addresses with
//! no ports. For such frames the result may differ from the kernel's. A frame sent on a VLAN
//! device that *also* has an 802.1Q header in its bytes is not modelled either: there
//! `skb->protocol` is the ethertype under that header, not the frame's ethertype field.

use serde::Serialize;

/// The bond's xmit_hash_policy, by the kernel's own names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum HashPolicy {
    /// `layer2`: the last bytes of both MAC addresses and the ethertype.
    Layer2,
    /// `layer2+3`: the layer2 hash mixed with the IP addresses.
    Layer23,
    /// `layer3+4`: the ports (or ICMP echo identifier) mixed with the IP addresses.
    Layer34,
    /// `encap2+3`: as layer2+3, but the addresses come from the flow dissector.
    Encap23,
    /// `encap3+4`: as layer3+4, but the addresses and ports come from the flow dissector.
    Encap34,
    /// `vlan+srcmac`: the source MAC address and the out-of-band VLAN tag.
    VlanSrcMac,
}

impl HashPolicy {
    /// From the kernel's name ("layer2", "layer2+3", "layer3+4", "encap2+3", "encap3+4",
    /// "vlan+srcmac"); None for anything else.
    pub fn from_name(name: &str) -> Option<HashPolicy> {
        match name {
            "layer2" => Some(HashPolicy::Layer2),
            "layer2+3" => Some(HashPolicy::Layer23),
            "layer3+4" => Some(HashPolicy::Layer34),
            "encap2+3" => Some(HashPolicy::Encap23),
            "encap3+4" => Some(HashPolicy::Encap34),
            "vlan+srcmac" => Some(HashPolicy::VlanSrcMac),
            _ => None,
        }
    }

    /// The kernel's name of the policy, as `/sys/class/net/<bond>/bonding/xmit_hash_policy`
    /// shows it.
    pub fn name(self) -> &'static str {
        match self {
            HashPolicy::Layer2 => "layer2",
            HashPolicy::Layer23 => "layer2+3",
            HashPolicy::Layer34 => "layer3+4",
            HashPolicy::Encap23 => "encap2+3",
            HashPolicy::Encap34 => "encap3+4",
            HashPolicy::VlanSrcMac => "vlan+srcmac",
        }
    }
}

/// bond_xmit_hash() for `frame` (starting at the Ethernet header, as the bond's ndo_start_xmit
/// sees skb->data) with `vlan` the out-of-band VLAN tag, if any.
///
/// Never panics, whatever the bytes. `AF_PACKET` refuses frames shorter than an Ethernet header.
/// If one is given anyway, its protocol is taken as unknown and every policy gives 0, which is
/// what `bond_pull_data()` makes of it.
pub fn xmit_hash(policy: HashPolicy, frame: &[u8], vlan: Option<u16>) -> u32 {
    // `skb->protocol`, as packet_parse_headers() sets it (see the module doc).
    let l2_proto = header(frame, 12).map_or(0, u16::from_be_bytes);

    // The rest is __bond_xmit_hash(). bond_xmit_hash() would first return `skb->hash` for
    // encap3+4 when `skb->l4_hash` is set; it is not for the frames bondcheck sends.
    if policy == HashPolicy::VlanSrcMac {
        return bond_vlan_srcmac_hash(frame, vlan);
    }
    let flow = match policy {
        HashPolicy::Layer2 => None,
        _ => bond_flow_dissect(policy, frame, l2_proto, vlan.is_some()),
    };
    let Some(flow) = flow else {
        return bond_eth_hash(frame);
    };
    let hash = match policy {
        HashPolicy::Layer23 | HashPolicy::Encap23 => bond_eth_hash(frame),
        // `memcpy(&hash, &flow.icmp, sizeof(hash))`: the struct's bytes are type, code, then
        // the identifier as a host u16.
        _ if flow.icmp.id != 0 => {
            let [id0, id1] = flow.icmp.id.to_ne_bytes();
            u32::from_ne_bytes([flow.icmp.icmp_type, flow.icmp.code, id0, id1])
        }
        // `memcpy(&hash, &flow.ports.ports, sizeof(hash))`: the ports word as it is on the wire.
        _ => u32::from_ne_bytes(flow.ports),
    };
    bond_ip_hash(hash, &flow, policy)
}

/// The index into the bond's usable slaves that `bond_xmit_3ad_xor_slave_get()` picks for
/// `hash`. Linux 6.1 uses a plain `slaves->arr[hash % count]`, not `reciprocal_scale()`.
/// `bond_xmit_tlb_slave_get()` does the same with `tlb_dynamic_lb=0`.
///
/// # Panics
///
/// If `count` is 0. The kernel drops the frame when no slave is usable, so there is no index to
/// give.
pub fn slave_index(hash: u32, count: usize) -> usize {
    // A u32 always fits in usize on the 32- and 64-bit machines bonding runs on.
    hash as usize % count
}

const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_RARP: u16 = 0x8035;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_MPLS_UC: u16 = 0x8847;
const ETH_P_MPLS_MC: u16 = 0x8848;
const ETH_P_FCOE: u16 = 0x8906;
const ETH_P_1588: u16 = 0x88f7;

const NEXTHDR_HOP: u8 = 0;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_IPIP: u8 = 4;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_DCCP: u8 = 33;
const IPPROTO_IPV6: u8 = 41;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const IPPROTO_ESP: u8 = 50;
const IPPROTO_AH: u8 = 51;
const IPPROTO_ICMPV6: u8 = 58;
const NEXTHDR_DEST: u8 = 60;
const IPPROTO_SCTP: u8 = 132;
const IPPROTO_UDPLITE: u8 = 136;
const IPPROTO_MPLS: u8 = 137;

/// `skb_network_offset()` for the frames bondcheck sends (see the module doc).
const NETWORK_OFFSET: usize = 14;
/// `sizeof(struct ipv6hdr)`.
const IPV6_HLEN: usize = 40;
/// `sizeof(struct icmphdr)`, which is also `sizeof(struct icmp6hdr)`.
const ICMP_HLEN: usize = 8;
/// `sizeof(struct vlan_hdr)`: the TCI and the encapsulated ethertype.
const VLAN_HLEN: usize = 4;
/// `sizeof(struct frag_hdr)`.
const FRAG_HLEN: usize = 8;
/// `FCOE_HEADER_LEN` from `include/scsi/fc/fc_fcoe.h`.
const FCOE_HEADER_LEN: usize = 38;
/// `sizeof(struct ptp_header)`.
const PTP_HLEN: usize = 34;
/// `MAX_FLOW_DISSECT_HDRS`: how many times `__skb_flow_dissect()` goes round its loops.
const MAX_FLOW_DISSECT_HDRS: u32 = 15;

/// `bond_pull_data()` and `__skb_header_pointer()` for a linear skb: the `N` bytes at `offset`,
/// or None when the frame ends first.
fn header<const N: usize>(frame: &[u8], offset: usize) -> Option<[u8; N]> {
    let end = offset.checked_add(N)?;
    frame.get(offset..end)?.try_into().ok()
}

/// bond_eth_hash(): `h_dest[5] ^ h_source[5] ^ be16_to_cpu(h_proto)`, or 0 when the frame is
/// shorter than an Ethernet header.
fn bond_eth_hash(frame: &[u8]) -> u32 {
    let Some(eth) = header::<14>(frame, 0) else {
        return 0;
    };
    u32::from(eth[5] ^ eth[11]) ^ u32::from(u16::from_be_bytes([eth[12], eth[13]]))
}

/// bond_vlan_srcmac_hash(): the source MAC's first three bytes, XOR its last three, XOR the
/// out-of-band tag. Linux 6.1 takes the whole TCI with `skb_vlan_tag_get()`, priority bits
/// included, and ignores an 802.1Q header in the frame's bytes.
fn bond_vlan_srcmac_hash(frame: &[u8], vlan: Option<u16>) -> u32 {
    let Some(eth) = header::<14>(frame, 0) else {
        return 0;
    };
    let vendor = u32::from_be_bytes([0, eth[6], eth[7], eth[8]]);
    let device = u32::from_be_bytes([0, eth[9], eth[10], eth[11]]);
    u32::from(vlan.unwrap_or(0)) ^ vendor ^ device
}

/// bond_ip_hash(): mixes the addresses into `hash` and folds it. The `>> 1` for the `3+4`
/// policies discards the low bit, because of the common pattern of even ports.
fn bond_ip_hash(mut hash: u32, flow: &FlowKeys, policy: HashPolicy) -> u32 {
    hash ^= flow.u32_dst() ^ flow.u32_src();
    hash ^= hash >> 16;
    hash ^= hash >> 8;
    match policy {
        HashPolicy::Layer34 | HashPolicy::Encap34 => hash >> 1,
        _ => hash,
    }
}

/// The parts of `struct flow_keys` that bonding reads: the addresses (with `control.addr_type`),
/// `ports` and `icmp`. `Default` is the zeroed struct.
#[derive(Debug, Default)]
struct FlowKeys {
    addrs: Addrs,
    /// `ports.ports`: the four bytes at the transport header, source port then destination
    /// port, in network order.
    ports: [u8; 4],
    icmp: IcmpKey,
}

/// `control.addr_type` and `addrs`, the addresses in network order.
#[derive(Debug, Default)]
enum Addrs {
    /// No address found (`addr_type` 0).
    #[default]
    None,
    V4 {
        src: [u8; 4],
        dst: [u8; 4],
    },
    V6 {
        src: [u8; 16],
        dst: [u8; 16],
    },
}

impl FlowKeys {
    /// flow_get_u32_src(): an IPv4 address read as a host u32, or an IPv6 address folded by
    /// `ipv6_addr_hash()`, or 0.
    fn u32_src(&self) -> u32 {
        match &self.addrs {
            Addrs::V4 { src, .. } => u32::from_ne_bytes(*src),
            Addrs::V6 { src, .. } => ipv6_addr_hash(src),
            Addrs::None => 0,
        }
    }

    /// flow_get_u32_dst(), as [`FlowKeys::u32_src`] for the destination.
    fn u32_dst(&self) -> u32 {
        match &self.addrs {
            Addrs::V4 { dst, .. } => u32::from_ne_bytes(*dst),
            Addrs::V6 { dst, .. } => ipv6_addr_hash(dst),
            Addrs::None => 0,
        }
    }
}

/// ipv6_addr_hash(): the XOR of the address's four 32-bit words, each read as a host u32. The
/// 64-bit variant (`x ^ x >> 32` over two `unsigned long`s) gives the same on either endianness.
fn ipv6_addr_hash(addr: &[u8; 16]) -> u32 {
    addr.chunks_exact(4)
        .map(|word| u32::from_ne_bytes([word[0], word[1], word[2], word[3]]))
        .fold(0, |hash, word| hash ^ word)
}

/// `struct flow_dissector_key_icmp` in 6.1: type, code, and an identifier that is 0 when the
/// message has none.
#[derive(Debug, Default, Clone, Copy)]
struct IcmpKey {
    icmp_type: u8,
    code: u8,
    /// The identifier as a host u16 (`ntohs()`).
    id: u16,
}

/// skb_flow_get_icmp_tci(): fills `key` from the 8-byte ICMP (or ICMPv6) header at `thoff`,
/// and leaves it alone when the frame ends first.
fn skb_flow_get_icmp_tci(frame: &[u8], thoff: usize, key: &mut IcmpKey) {
    let Some([icmp_type, code, _, _, id_hi, id_lo, _, _]) = header::<ICMP_HLEN>(frame, thoff)
    else {
        return;
    };
    key.icmp_type = icmp_type;
    key.code = code;
    key.id = if icmp_has_id(icmp_type) {
        // "As we use 0 to signal that the Id field is not present, avoid confusion with
        // packets without such field": an echo with identifier 0 is given 1.
        match u16::from_be_bytes([id_hi, id_lo]) {
            0 => 1,
            id => id,
        }
    } else {
        0
    };
}

/// icmp_has_id(): echo and timestamp messages. The kernel checks the ICMP and ICMPv6 types in
/// one switch, whichever protocol the message is.
fn icmp_has_id(icmp_type: u8) -> bool {
    // ICMP_ECHOREPLY, ICMP_ECHO, ICMP_TIMESTAMP, ICMP_TIMESTAMPREPLY, ICMPV6_ECHO_REQUEST,
    // ICMPV6_ECHO_REPLY.
    matches!(icmp_type, 0 | 8 | 13 | 14 | 128 | 129)
}

/// icmp_is_err(): destination unreachable, source quench, redirect, time exceeded, parameter
/// problem.
fn icmp_is_err(icmp_type: u8) -> bool {
    matches!(icmp_type, 3 | 4 | 5 | 11 | 12)
}

/// icmpv6_is_err(): destination unreachable, packet too big, time exceeded, parameter problem.
fn icmpv6_is_err(icmp_type: u8) -> bool {
    matches!(icmp_type, 1..=4)
}

/// proto_ports_offset(): where the ports (or the IPsec SPI) sit in the transport header, for
/// the protocols that have them.
fn proto_ports_offset(ip_proto: u8) -> Option<usize> {
    match ip_proto {
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_DCCP | IPPROTO_ESP | IPPROTO_SCTP | IPPROTO_UDPLITE => {
            Some(0)
        }
        IPPROTO_AH => Some(4),
        _ => None,
    }
}

/// __skb_flow_get_ports(): the ports word at `thoff`, or zeros when the protocol has no ports
/// or the frame ends first.
fn skb_flow_get_ports(frame: &[u8], thoff: usize, ip_proto: u8) -> [u8; 4] {
    proto_ports_offset(ip_proto)
        .and_then(|poff| header(frame, thoff.checked_add(poff)?))
        .unwrap_or([0; 4])
}

/// The fields of `struct iphdr` the hash reads.
struct Ipv4Header {
    ihl: u8,
    frag_off: u16,
    protocol: u8,
    saddr: [u8; 4],
    daddr: [u8; 4],
}

impl Ipv4Header {
    /// The 20-byte header at `offset`, if the frame has all of it. Byte 0 holds the version
    /// and `ihl`, bytes 6-7 `frag_off`, byte 9 the protocol, bytes 12-19 the addresses.
    fn read(frame: &[u8], offset: usize) -> Option<Ipv4Header> {
        let iph: [u8; 20] = header(frame, offset)?;
        Some(Ipv4Header {
            ihl: iph[0] & 0x0f,
            frag_off: u16::from_be_bytes([iph[6], iph[7]]),
            protocol: iph[9],
            saddr: header(frame, offset + 12)?,
            daddr: header(frame, offset + 16)?,
        })
    }

    /// ip_is_fragment(): the more-fragments flag or a fragment offset is set.
    fn is_fragment(&self) -> bool {
        // IP_MF | IP_OFFSET
        self.frag_off & 0x3fff != 0
    }
}

/// The fields of `struct ipv6hdr` the hash reads.
struct Ipv6Header {
    nexthdr: u8,
    saddr: [u8; 16],
    daddr: [u8; 16],
}

impl Ipv6Header {
    /// The 40-byte header at `offset`, if the frame has all of it. Byte 6 holds the next
    /// header, bytes 8-39 the addresses.
    fn read(frame: &[u8], offset: usize) -> Option<Ipv6Header> {
        let fixed: [u8; 8] = header(frame, offset)?;
        Some(Ipv6Header {
            nexthdr: fixed[6],
            saddr: header(frame, offset + 8)?,
            daddr: header(frame, offset + 24)?,
        })
    }
}

/// bond_flow_dissect(): the flow keys for the layer2+3, layer3+4 and encap policies, or None
/// when the frame cannot be dissected and the layer2 hash is used instead.
fn bond_flow_dissect(
    policy: HashPolicy,
    frame: &[u8],
    l2_proto: u16,
    vlan_present: bool,
) -> Option<FlowKeys> {
    match policy {
        HashPolicy::Encap23 | HashPolicy::Encap34 => {
            skb_flow_dissect_bonding(frame, l2_proto, NETWORK_OFFSET, vlan_present)
        }
        _ => bond_flow_dissect_ip(
            frame,
            l2_proto,
            NETWORK_OFFSET,
            policy == HashPolicy::Layer34,
        ),
    }
}

/// The non-encap half of bond_flow_dissect(): one IP header at `nhoff`. For an ICMP error it
/// parses again at the packet quoted inside the error, so that the error hashes with the flow
/// that caused it.
fn bond_flow_dissect_ip(
    frame: &[u8],
    l2_proto: u16,
    mut nhoff: usize,
    l34: bool,
) -> Option<FlowKeys> {
    // The kernel zeroes only `ports` and `icmp`. bond_flow_ip() sets the addresses whenever
    // it succeeds, so the zeroed default is the same.
    let mut fk = FlowKeys::default();
    // `int ip_proto = -1`: None until an unfragmented header names the protocol.
    let mut ip_proto = None;
    if !bond_flow_ip(frame, &mut fk, l2_proto, &mut nhoff, &mut ip_proto, l34) {
        return None;
    }

    let is_err: fn(u8) -> bool = match ip_proto {
        Some(IPPROTO_ICMP) => icmp_is_err,
        Some(IPPROTO_ICMPV6) => icmpv6_is_err,
        _ => return Some(fk),
    };
    skb_flow_get_icmp_tci(frame, nhoff, &mut fk.icmp);
    if !is_err(fk.icmp.icmp_type) {
        return Some(fk);
    }
    // The quoted header is parsed as the outer frame's protocol (`l2_proto`), and a failure
    // here drops the whole frame back to the layer2 hash.
    nhoff += ICMP_HLEN;
    bond_flow_ip(frame, &mut fk, l2_proto, &mut nhoff, &mut ip_proto, l34).then_some(fk)
}

/// bond_flow_ip(): the addresses of the IPv4 or IPv6 header at `nhoff`, and with `l34` the
/// ports after it. It advances `nhoff` past the header and sets `ip_proto` unless the packet
/// is an IPv4 fragment. IPv6 extension headers are not followed: their number is taken as the
/// protocol.
fn bond_flow_ip(
    frame: &[u8],
    fk: &mut FlowKeys,
    l2_proto: u16,
    nhoff: &mut usize,
    ip_proto: &mut Option<u8>,
    l34: bool,
) -> bool {
    match l2_proto {
        ETH_P_IP => {
            let Some(iph) = Ipv4Header::read(frame, *nhoff) else {
                return false;
            };
            fk.addrs = Addrs::V4 {
                src: iph.saddr,
                dst: iph.daddr,
            };
            // No check that ihl >= 5 here, unlike the flow dissector.
            *nhoff += usize::from(iph.ihl) << 2;
            if !iph.is_fragment() {
                *ip_proto = Some(iph.protocol);
            }
        }
        ETH_P_IPV6 => {
            let Some(iph6) = Ipv6Header::read(frame, *nhoff) else {
                return false;
            };
            fk.addrs = Addrs::V6 {
                src: iph6.saddr,
                dst: iph6.daddr,
            };
            *nhoff += IPV6_HLEN;
            *ip_proto = Some(iph6.nexthdr);
        }
        _ => return false,
    }
    if let (true, Some(proto)) = (l34, *ip_proto) {
        fk.ports = skb_flow_get_ports(frame, *nhoff, proto);
    }
    true
}

/// What one step of `__skb_flow_dissect()` tells its loop to do (`enum flow_dissect_ret`).
enum Dissect {
    /// Stop: the keys found so far are the result.
    OutGood,
    /// Stop: the frame cannot be dissected.
    OutBad,
    /// Parse the network header `proto` names (after a VLAN header, IP-in-IP or MPLS-in-IP).
    ProtoAgain,
    /// Parse the transport header `ip_proto` names (after an IPv6 extension header).
    IpProtoAgain,
    /// Go on from the network header to the transport header.
    Continue,
}

/// `skb_flow_dissect_allowed()`: counts one more header and says whether the loop may go on.
fn allowed(num_hdrs: &mut u32) -> bool {
    *num_hdrs += 1;
    *num_hdrs <= MAX_FLOW_DISSECT_HDRS
}

/// `__skb_flow_dissect(NULL, skb, &flow_keys_bonding, fk, data, l2_proto, nhoff, hlen, 0)`, as
/// the encap policies call it. The keys bonding asks for are control, basic, IPv4/IPv6/TIPC
/// addresses, ports, ICMP, VLAN, flow label and GRE key id. Only the addresses, ports and ICMP
/// reach the hash. No flags are passed: the dissector goes into encapsulations, does not parse
/// the first fragment's transport header, and does not stop at an IPv6 flow label.
fn skb_flow_dissect_bonding(
    frame: &[u8],
    l2_proto: u16,
    mut nhoff: usize,
    vlan_present: bool,
) -> Option<FlowKeys> {
    let mut fk = FlowKeys::default();
    let mut proto = l2_proto;
    let mut ip_proto = 0u8;
    let mut num_hdrs = 0;
    // `dissector_vlan == FLOW_DISSECTOR_KEY_MAX`: no VLAN header has been handled yet.
    let mut first_vlan = true;
    // FLOW_DIS_IS_FRAGMENT in `key_control->flags`.
    let mut is_fragment = false;

    'proto_again: loop {
        let step = match proto {
            ETH_P_IP => {
                let iph = match Ipv4Header::read(frame, nhoff) {
                    Some(iph) if iph.ihl >= 5 => iph,
                    _ => return None,
                };
                nhoff += usize::from(iph.ihl) * 4;
                ip_proto = iph.protocol;
                fk.addrs = Addrs::V4 {
                    src: iph.saddr,
                    dst: iph.daddr,
                };
                if iph.is_fragment() {
                    // First fragment or not: without FLOW_DISSECTOR_F_PARSE_1ST_FRAG the
                    // dissector stops here, so fragments hash without ports.
                    is_fragment = true;
                    Dissect::OutGood
                } else {
                    Dissect::Continue
                }
            }
            ETH_P_IPV6 => {
                let iph = Ipv6Header::read(frame, nhoff)?;
                ip_proto = iph.nexthdr;
                nhoff += IPV6_HLEN;
                fk.addrs = Addrs::V6 {
                    src: iph.saddr,
                    dst: iph.daddr,
                };
                Dissect::Continue
            }
            ETH_P_8021Q | ETH_P_8021AD => {
                if first_vlan && vlan_present {
                    // The first tag is the out-of-band one. The dissector takes
                    // `skb->protocol` without moving, so an in-band header (protocol 0x8100)
                    // is parsed on the next round.
                    proto = l2_proto;
                } else {
                    let [_, _, inner_hi, inner_lo] = header::<VLAN_HLEN>(frame, nhoff)?;
                    proto = u16::from_be_bytes([inner_hi, inner_lo]);
                    nhoff += VLAN_HLEN;
                }
                first_vlan = false;
                Dissect::ProtoAgain
            }
            // These succeed without an address, because `flow_keys_bonding` asks for no ARP
            // or MPLS keys. (The kernel moves `nhoff` on; nothing reads it after OutGood.)
            ETH_P_ARP | ETH_P_RARP | ETH_P_MPLS_UC | ETH_P_MPLS_MC => Dissect::OutGood,
            ETH_P_FCOE if frame.len().saturating_sub(nhoff) >= FCOE_HEADER_LEN => Dissect::OutGood,
            ETH_P_1588 if header::<PTP_HLEN>(frame, nhoff).is_some() => Dissect::OutGood,
            _ => Dissect::OutBad,
        };
        match step {
            Dissect::OutGood => return Some(fk),
            Dissect::OutBad => return None,
            Dissect::ProtoAgain if allowed(&mut num_hdrs) => continue 'proto_again,
            Dissect::ProtoAgain => return Some(fk),
            Dissect::Continue | Dissect::IpProtoAgain => {}
        }

        // ip_proto_again:
        loop {
            let step = match ip_proto {
                NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST if proto == ETH_P_IPV6 => {
                    match header::<2>(frame, nhoff) {
                        Some([next, len]) => {
                            ip_proto = next;
                            nhoff += (usize::from(len) + 1) << 3;
                            Dissect::IpProtoAgain
                        }
                        None => Dissect::OutBad,
                    }
                }
                NEXTHDR_FRAGMENT if proto == ETH_P_IPV6 => {
                    match header::<FRAG_HLEN>(frame, nhoff) {
                        Some(fh) => {
                            is_fragment = true;
                            nhoff += FRAG_HLEN;
                            ip_proto = fh[0];
                            Dissect::OutGood
                        }
                        None => Dissect::OutBad,
                    }
                }
                IPPROTO_IPIP => {
                    proto = ETH_P_IP;
                    Dissect::ProtoAgain
                }
                IPPROTO_IPV6 => {
                    proto = ETH_P_IPV6;
                    Dissect::ProtoAgain
                }
                IPPROTO_MPLS => {
                    proto = ETH_P_MPLS_UC;
                    Dissect::ProtoAgain
                }
                IPPROTO_ICMP | IPPROTO_ICMPV6 => {
                    skb_flow_get_icmp_tci(frame, nhoff, &mut fk.icmp);
                    Dissect::Continue
                }
                // Including GRE, which the kernel would go into (see Limits in the module doc).
                _ => Dissect::Continue,
            };
            // __skb_flow_dissect_ports() runs after every step, whatever it returned, with
            // the protocol and offset that step left.
            if !is_fragment {
                fk.ports = skb_flow_get_ports(frame, nhoff, ip_proto);
            }
            match step {
                Dissect::ProtoAgain if allowed(&mut num_hdrs) => continue 'proto_again,
                Dissect::IpProtoAgain if allowed(&mut num_hdrs) => continue,
                Dissect::OutBad => return None,
                _ => return Some(fk),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Expected values are worked out by hand in the comments, from the kernel's formulas.
    //! The addresses and ports are chosen so that their bytes read the same both ways round
    //! (10.1.1.10, ports 0x1234 and 0x3412): a host-order read then gives the same number on
    //! little- and big-endian machines, and so do the expected values. Only the ICMP echo
    //! vector cannot be built like that, and it gives one value for each endianness.

    use super::*;

    const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
    const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
    /// 10.1.1.10, read as a host u32: 0x0a01010a on either endianness.
    const A: [u8; 4] = [10, 1, 1, 10];
    /// 10.2.2.10: 0x0a02020a.
    const B: [u8; 4] = [10, 2, 2, 10];
    /// 10.9.9.10: 0x0a09090a.
    const ROUTER: [u8; 4] = [10, 9, 9, 10];
    /// fd00::fd: its words XOR to the bytes fd 00 00 fd, 0xfd0000fd.
    const A6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfd];
    /// 2001:db8::100:0:d98: its words 20010db8, 0, 00000100, 00000d98 XOR to 20 01 01 20,
    /// 0x20010120.
    const B6: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0x01, 0x00, 0, 0, 0x0d, 0x98,
    ];
    /// fe80::1 (any address: only its fold matters).
    const ROUTER6: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const ALL: [HashPolicy; 6] = [
        HashPolicy::Layer2,
        HashPolicy::Layer23,
        HashPolicy::Layer34,
        HashPolicy::Encap23,
        HashPolicy::Encap34,
        HashPolicy::VlanSrcMac,
    ];

    fn eth_from(src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        [&DST_MAC[..], &src, &ethertype.to_be_bytes(), payload].concat()
    }

    fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        eth_from(SRC_MAC, ethertype, payload)
    }

    fn ipv4(src: [u8; 4], dst: [u8; 4], protocol: u8, frag_off: u16, payload: &[u8]) -> Vec<u8> {
        let len = (20 + payload.len()) as u16;
        let [l0, l1] = len.to_be_bytes();
        let [f0, f1] = frag_off.to_be_bytes();
        let fixed = [0x45, 0, l0, l1, 0, 1, f0, f1, 64, protocol, 0, 0];
        [&fixed[..], &src, &dst, payload].concat()
    }

    fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
        let [l0, l1] = (payload.len() as u16).to_be_bytes();
        let fixed = [0x60, 0, 0, 0, l0, l1, next, 64];
        [&fixed[..], &src, &dst, payload].concat()
    }

    fn udp(sport: u16, dport: u16) -> Vec<u8> {
        [
            &sport.to_be_bytes()[..],
            &dport.to_be_bytes(),
            &[0, 12, 0, 0],
            b"data",
        ]
        .concat()
    }

    fn tcp(sport: u16, dport: u16) -> Vec<u8> {
        let rest = [0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0];
        [&sport.to_be_bytes()[..], &dport.to_be_bytes(), &rest].concat()
    }

    fn icmp(icmp_type: u8, code: u8, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
        let [i0, i1] = id.to_be_bytes();
        let [s0, s1] = seq.to_be_bytes();
        [&[icmp_type, code, 0, 0, i0, i1, s0, s1][..], payload].concat()
    }

    /// 10.1.1.10 → 10.2.2.10, UDP 0x1234 → 0x3412: the ports word's bytes are 12 34 34 12,
    /// 0x12343412 either way round.
    fn udp4() -> Vec<u8> {
        eth(ETH_P_IP, &ipv4(A, B, IPPROTO_UDP, 0, &udp(0x1234, 0x3412)))
    }

    fn udp6() -> Vec<u8> {
        eth(ETH_P_IPV6, &ipv6(A6, B6, IPPROTO_UDP, &udp(0x1234, 0x3412)))
    }

    fn echo4(id: u16, seq: u16) -> Vec<u8> {
        eth(
            ETH_P_IP,
            &ipv4(A, B, IPPROTO_ICMP, 0, &icmp(8, 0, id, seq, b"ping")),
        )
    }

    /// Port unreachable from 10.9.9.10, quoting the header of [`udp4`].
    fn icmp4_error() -> Vec<u8> {
        let quoted = ipv4(A, B, IPPROTO_UDP, 0, &udp(0x1234, 0x3412));
        eth(
            ETH_P_IP,
            &ipv4(ROUTER, A, IPPROTO_ICMP, 0, &icmp(3, 3, 0, 0, &quoted)),
        )
    }

    fn arp() -> Vec<u8> {
        let body = [&[0, 1, 8, 0, 6, 4, 0, 1][..], &SRC_MAC, &A, &[0; 6], &B].concat();
        eth(ETH_P_ARP, &body)
    }

    /// [`udp4`] with an 802.1Q header (VID 100) in its bytes, as sent on the bond itself.
    fn udp4_inband_vlan() -> Vec<u8> {
        let tagged = [
            &[0x00, 0x64, 0x08, 0x00][..],
            &ipv4(A, B, IPPROTO_UDP, 0, &udp(0x1234, 0x3412)),
        ]
        .concat();
        eth(ETH_P_8021Q, &tagged)
    }

    /// [`udp6`] behind `count` empty hop-by-hop option headers.
    fn udp6_behind_hop_by_hop(count: usize) -> Vec<u8> {
        let mut payload = udp(0x1234, 0x3412);
        let mut next = IPPROTO_UDP;
        for _ in 0..count {
            payload = [&[next, 0, 1, 4, 0, 0, 0, 0][..], &payload].concat();
            next = NEXTHDR_HOP;
        }
        eth(ETH_P_IPV6, &ipv6(A6, B6, next, &payload))
    }

    fn hash(policy: HashPolicy, frame: &[u8]) -> u32 {
        xmit_hash(policy, frame, None)
    }

    #[test]
    fn policy_names_round_trip() {
        for policy in ALL {
            assert_eq!(HashPolicy::from_name(policy.name()), Some(policy));
        }
        assert_eq!(
            HashPolicy::from_name("layer2+3").unwrap(),
            HashPolicy::Layer23
        );
        assert_eq!(HashPolicy::from_name("layer3+4 "), None);
        assert_eq!(HashPolicy::from_name("1"), None);
    }

    #[test]
    fn layer2_hashes_mac_bytes_and_ethertype() {
        // h_dest[5] ^ h_source[5] ^ ethertype = 0x0b ^ 0x0a ^ 0x0800 = 0x0801.
        assert_eq!(hash(HashPolicy::Layer2, &udp4()), 0x0801);
        // 0x0b ^ 0x0a ^ 0x86dd = 0x86dc.
        assert_eq!(hash(HashPolicy::Layer2, &udp6()), 0x86dc);
    }

    #[test]
    fn layer23_mixes_in_the_ipv4_addresses() {
        // 0x0801 ^ 0x0a02020a ^ 0x0a01010a = 0x00030b01;
        // ^= >> 16 (0x0003): 0x00030b02; ^= >> 8 (0x0000030b): 0x00030809.
        assert_eq!(hash(HashPolicy::Layer23, &udp4()), 0x0003_0809);
        // Ports play no part.
        let other_ports = eth(ETH_P_IP, &ipv4(A, B, IPPROTO_UDP, 0, &udp(1, 2)));
        assert_eq!(hash(HashPolicy::Layer23, &other_ports), 0x0003_0809);
    }

    #[test]
    fn layer34_hashes_ports_and_addresses_then_drops_the_low_bit() {
        // 0x12343412 ^ 0x00030300 (the addresses) = 0x12373712;
        // ^= >> 16 (0x1237): 0x12372525; ^= >> 8 (0x00123725): 0x12251200; >> 1: 0x09128900.
        assert_eq!(hash(HashPolicy::Layer34, &udp4()), 0x0912_8900);
        // TCP ports sit at the same place.
        let tcp4 = eth(ETH_P_IP, &ipv4(A, B, IPPROTO_TCP, 0, &tcp(0x1234, 0x3412)));
        assert_eq!(hash(HashPolicy::Layer34, &tcp4), 0x0912_8900);
    }

    #[test]
    fn layer34_drops_the_low_bit() {
        // Flipping bit 0 of the ports word (as a host u32) changes only bit 0 of the folded
        // hash (the folds shift right, so bit 0 reaches no other bit), which `>> 1` discards.
        let one = 1u32.to_ne_bytes();
        let ports: [u8; 4] = [0x12, 0x34, 0x34, 0x12];
        let flipped: Vec<u8> = ports.iter().zip(one).map(|(p, o)| p ^ o).collect();
        let sport = u16::from_be_bytes([flipped[0], flipped[1]]);
        let dport = u16::from_be_bytes([flipped[2], flipped[3]]);
        let other = eth(ETH_P_IP, &ipv4(A, B, IPPROTO_UDP, 0, &udp(sport, dport)));
        assert_ne!((sport, dport), (0x1234, 0x3412));
        for policy in [HashPolicy::Layer34, HashPolicy::Encap34] {
            assert_eq!(hash(policy, &other), hash(policy, &udp4()), "{policy:?}");
        }
    }

    #[test]
    fn ipv4_fragment_has_no_ports() {
        // ip_proto stays -1, so the ports word is 0: 0x00030300; ^= >> 16: 0x00030303;
        // ^= >> 8 (0x00000303): 0x00030000; >> 1: 0x00018000.
        let first = eth(
            ETH_P_IP,
            &ipv4(A, B, IPPROTO_UDP, 0x2000, &udp(0x1234, 0x3412)),
        );
        let later = eth(
            ETH_P_IP,
            &ipv4(A, B, IPPROTO_UDP, 0x000d, b"middle of the datagram"),
        );
        for frame in [&first, &later] {
            assert_eq!(hash(HashPolicy::Layer34, frame), 0x0001_8000);
            assert_eq!(hash(HashPolicy::Encap34, frame), 0x0001_8000);
            assert_eq!(hash(HashPolicy::Layer23, frame), 0x0003_0809);
        }
    }

    #[test]
    fn icmp_echo_hashes_on_its_identifier() {
        // The ICMP key is type 8, code 0, id 7 (host u16), copied as a u32.
        // Little-endian: bytes 08 00 07 00 = 0x00070008; ^ 0x00030300 = 0x00040308;
        //   ^= >> 16: 0x0004030c; ^= >> 8 (0x00000403): 0x0004070f; >> 1: 0x00020387.
        // Big-endian: bytes 08 00 00 07 = 0x08000007; ^ 0x00030300 = 0x08030307;
        //   ^= >> 16: 0x08030b04; ^= >> 8 (0x0008030b): 0x080b080f; >> 1: 0x04058407.
        let expected = if cfg!(target_endian = "little") {
            0x0002_0387
        } else {
            0x0405_8407
        };
        assert_eq!(hash(HashPolicy::Layer34, &echo4(7, 1)), expected);
        assert_eq!(hash(HashPolicy::Encap34, &echo4(7, 1)), expected);
        // The sequence number plays no part, the identifier does.
        assert_eq!(hash(HashPolicy::Layer34, &echo4(7, 2)), expected);
        assert_ne!(hash(HashPolicy::Layer34, &echo4(9, 1)), expected);
        // Identifier 0 is taken as 1.
        assert_eq!(
            hash(HashPolicy::Layer34, &echo4(0, 1)),
            hash(HashPolicy::Layer34, &echo4(1, 1))
        );
        // layer2+3 ignores it: the same as the UDP flow between the same hosts.
        assert_eq!(hash(HashPolicy::Layer23, &echo4(7, 1)), 0x0003_0809);
    }

    #[test]
    fn icmp_error_hashes_on_the_quoted_packet_except_under_encap() {
        let error = icmp4_error();
        // layer2+3 and layer3+4 parse the quoted 10.1.1.10 → 10.2.2.10 UDP header, so the
        // error hashes with the flow that caused it (see the UDP vectors above).
        assert_eq!(hash(HashPolicy::Layer34, &error), 0x0912_8900);
        assert_eq!(hash(HashPolicy::Layer23, &error), 0x0003_0809);
        // encap3+4 hashes the outer header: no id (type 3), no ports (ICMP), addresses
        // 0x0a09090a ^ 0x0a01010a = 0x00080800; ^= >> 16: 0x00080808; ^= >> 8: 0x00080000;
        // >> 1: 0x00040000.
        assert_eq!(hash(HashPolicy::Encap34, &error), 0x0004_0000);
        // encap2+3: 0x0801 ^ 0x00080800 = 0x00080001; ^= >> 16: 0x00080009;
        // ^= >> 8 (0x00000800): 0x00080809.
        assert_eq!(hash(HashPolicy::Encap23, &error), 0x0008_0809);

        // ICMPv6 destination unreachable quoting udp6's packet hashes like udp6.
        let quoted = ipv6(A6, B6, IPPROTO_UDP, &udp(0x1234, 0x3412));
        let error6 = eth(
            ETH_P_IPV6,
            &ipv6(ROUTER6, A6, IPPROTO_ICMPV6, &icmp(1, 4, 0, 0, &quoted)),
        );
        assert_eq!(
            hash(HashPolicy::Layer34, &error6),
            hash(HashPolicy::Layer34, &udp6())
        );

        // A quoted header cut short makes the whole frame fall back to layer2: 0x0801.
        let short = &error[..error.len() - 20];
        assert_eq!(hash(HashPolicy::Layer34, short), 0x0801);
    }

    #[test]
    fn ipv6_addresses_are_folded() {
        // The folds are 0xfd0000fd and 0x20010120; their XOR 0xdd0101dd.
        // layer2+3: 0x86dc ^ 0xdd0101dd = 0xdd018701; ^= >> 16 (0xdd01): 0xdd015a00;
        // ^= >> 8 (0x00dd015a): 0xdddc5b5a.
        assert_eq!(hash(HashPolicy::Layer23, &udp6()), 0xdddc_5b5a);
        // layer3+4: 0x12343412 ^ 0xdd0101dd = 0xcf3535cf; ^= >> 16: 0xcf35fafa;
        // ^= >> 8 (0x00cf35fa): 0xcffacf00; >> 1: 0x67fd6780.
        assert_eq!(hash(HashPolicy::Layer34, &udp6()), 0x67fd_6780);
        assert_eq!(hash(HashPolicy::Encap34, &udp6()), 0x67fd_6780);
        // Only the fold counts: moving B6's third word to its second place changes nothing.
        let mut moved = B6;
        moved[4..8].copy_from_slice(&B6[8..12]);
        moved[8..12].copy_from_slice(&[0; 4]);
        let frame = eth(
            ETH_P_IPV6,
            &ipv6(A6, moved, IPPROTO_UDP, &udp(0x1234, 0x3412)),
        );
        assert_eq!(hash(HashPolicy::Layer23, &frame), 0xdddc_5b5a);
    }

    #[test]
    fn arp_falls_back_to_layer2_except_under_encap() {
        // 0x0b ^ 0x0a ^ 0x0806 = 0x0807.
        for policy in [HashPolicy::Layer2, HashPolicy::Layer23, HashPolicy::Layer34] {
            assert_eq!(hash(policy, &arp()), 0x0807, "{policy:?}");
        }
        // The flow dissector accepts ARP without an address: encap2+3 folds 0x0807
        // (^= >> 8: 0x080f), and encap3+4 starts from ports 0 and gives 0.
        assert_eq!(hash(HashPolicy::Encap23, &arp()), 0x080f);
        assert_eq!(hash(HashPolicy::Encap34, &arp()), 0);
        // An unknown ethertype fails the dissector too: layer2 under every policy.
        let other = eth(0x88b5, b"experimental");
        for policy in [
            HashPolicy::Layer23,
            HashPolicy::Encap23,
            HashPolicy::Encap34,
        ] {
            assert_eq!(hash(policy, &other), 0x0b ^ 0x0a ^ 0x88b5, "{policy:?}");
        }
    }

    #[test]
    fn vlan_srcmac_with_and_without_a_tag() {
        let frame = eth_from(
            [0x00, 0x11, 0x22, 0x33, 0x44, 0x55],
            ETH_P_IP,
            &ipv4(A, B, IPPROTO_UDP, 0, &udp(1, 2)),
        );
        // 0x001122 ^ 0x334455 = 0x335577.
        assert_eq!(xmit_hash(HashPolicy::VlanSrcMac, &frame, None), 0x0033_5577);
        // The whole TCI: priority 1, VID 100 = 0x2064; 0x335577 ^ 0x2064 = 0x337513.
        assert_eq!(
            xmit_hash(HashPolicy::VlanSrcMac, &frame, Some(0x2064)),
            0x0033_7513
        );
        // An 802.1Q header in the bytes is not a tag to this hash: 0x020000 ^ 0x00000a.
        assert_eq!(
            hash(HashPolicy::VlanSrcMac, &udp4_inband_vlan()),
            0x0002_000a
        );
    }

    #[test]
    fn out_of_band_tag_leaves_the_other_policies_alone() {
        for policy in [
            HashPolicy::Layer2,
            HashPolicy::Layer23,
            HashPolicy::Layer34,
            HashPolicy::Encap23,
            HashPolicy::Encap34,
        ] {
            assert_eq!(
                xmit_hash(policy, &udp4(), Some(0x2064)),
                hash(policy, &udp4()),
                "{policy:?}"
            );
        }
    }

    #[test]
    fn inband_vlan_header_only_the_flow_dissector_steps_over() {
        let frame = udp4_inband_vlan();
        // skb->protocol is 0x8100: bond_flow_ip() gives up, layer2 is 0x0b ^ 0x0a ^ 0x8100.
        for policy in [HashPolicy::Layer2, HashPolicy::Layer23, HashPolicy::Layer34] {
            assert_eq!(hash(policy, &frame), 0x8101, "{policy:?}");
        }
        // The dissector reads through the tag to the same IPv4/UDP flow as udp4.
        assert_eq!(hash(HashPolicy::Encap34, &frame), 0x0912_8900);
        // encap2+3 still takes the frame's ethertype into its layer2 part:
        // 0x8101 ^ 0x00030300 = 0x00038201; ^= >> 16: 0x00038202; ^= >> 8: 0x00038180.
        assert_eq!(hash(HashPolicy::Encap23, &frame), 0x0003_8180);
        // With an out-of-band tag as well, the first round takes skb->protocol (0x8100)
        // without moving, the second parses the header in the bytes.
        assert_eq!(xmit_hash(HashPolicy::Encap34, &frame, Some(7)), 0x0912_8900);
    }

    #[test]
    fn only_the_flow_dissector_follows_ipv6_extension_headers() {
        let frame = udp6_behind_hop_by_hop(1);
        // encap3+4 finds the UDP ports behind the hop-by-hop header: as udp6.
        assert_eq!(hash(HashPolicy::Encap34, &frame), 0x67fd_6780);
        // layer3+4 takes next header 0 as the protocol, which has no ports:
        // 0xdd0101dd; ^= >> 16: 0xdd01dcdc; ^= >> 8: 0xdddcdd00; >> 1: 0x6eee6e80.
        assert_eq!(hash(HashPolicy::Layer34, &frame), 0x6eee_6e80);
        // The dissector counts headers and stops after MAX_FLOW_DISSECT_HDRS rounds. With
        // 16 headers the last round still lands on UDP and reads its ports. With 17 it lands
        // on another hop-by-hop header.
        assert_eq!(
            hash(HashPolicy::Encap34, &udp6_behind_hop_by_hop(16)),
            0x67fd_6780
        );
        assert_eq!(
            hash(HashPolicy::Encap34, &udp6_behind_hop_by_hop(17)),
            0x6eee_6e80
        );
    }

    #[test]
    fn short_frames_never_panic() {
        let frames = [
            udp4(),
            udp6(),
            eth(ETH_P_IPV6, &ipv6(A6, B6, IPPROTO_TCP, &tcp(80, 443))),
            echo4(7, 1),
            icmp4_error(),
            arp(),
            udp4_inband_vlan(),
            udp6_behind_hop_by_hop(20),
            // Nonsense headers: IHL 0 and 15, IPv4 claiming ICMPv6, long option headers.
            eth(ETH_P_IP, &[0x40; 64]),
            eth(ETH_P_IP, &[0x4f; 80]),
            eth(
                ETH_P_IP,
                &ipv4(A, B, IPPROTO_ICMPV6, 0, &icmp(1, 0, 0, 0, &[0xff; 40])),
            ),
            eth(ETH_P_IPV6, &ipv6(A6, B6, NEXTHDR_ROUTING, &[0xff; 64])),
            eth(ETH_P_8021AD, &[0x88; 40]),
            eth(ETH_P_FCOE, &[0; 40]),
            eth(ETH_P_1588, &[0; 40]),
        ];
        for frame in &frames {
            for len in 0..=frame.len() {
                let prefix = &frame[..len];
                for policy in ALL {
                    for vlan in [None, Some(0xffff)] {
                        let value = xmit_hash(policy, prefix, vlan);
                        if len < 14 {
                            assert_eq!(value, 0, "{policy:?} on {len} bytes");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn slave_index_is_a_plain_modulo() {
        assert_eq!(slave_index(0x0912_8900, 1), 0);
        // 0x09128900 = 152209664 = 3 * 50736554 + 2.
        assert_eq!(slave_index(0x0912_8900, 3), 2);
        assert_eq!(slave_index(u32::MAX, 2), 1);
    }
}
