//! rtnetlink requests bondcheck makes, one function per kernel operation, and the decoding of
//! the kernel's answers (bond and bond-slave attributes, extended ACK messages).

use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};

use futures::TryStreamExt;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{
    BondAdInfo, BondAdSelect, BondAllPortActive, BondArpAllTargets, BondArpValidate,
    BondFailOverMac, BondLacpRate, BondMode, BondPrimaryReselect, BondXmitHashPolicy,
    BridgeStpState, InfoBond, InfoBondPort, InfoBridge, InfoData, InfoKind, InfoPortData, InfoVeth,
    LinkAttribute, LinkFlags, LinkInfo, LinkMessage, MiiStatus,
};
use rtnetlink::sys::AsyncSocket;
use rtnetlink::{
    Handle, LinkBond, LinkBondPort, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVlan,
};

use crate::ifenslave::Write;
use crate::lacp::{ActiveAggregator, AdPort, AdView};
use crate::model::Value;
use crate::netns::AnonNetns;
use crate::observe::{BondView, SlaveView};
use crate::options::{self, Opt};
use crate::spec::Ipv4Net;

/// The kernel said no: errno and the extended-ACK message, if it gave one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Refusal {
    pub errno: String,
    pub message: Option<String>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.message {
            Some(m) => write!(f, "{} ({m})", self.errno),
            None => f.write_str(&self.errno),
        }
    }
}

pub type Answer<T = ()> = std::result::Result<T, Refusal>;

fn refusal(e: rtnetlink::Error) -> Refusal {
    match e {
        rtnetlink::Error::NetlinkError(msg) => Refusal {
            errno: format!("{:?}", nix::errno::Errno::from_raw(-msg.raw_code())),
            message: extack_message(&msg.header),
        },
        other => Refusal {
            errno: "netlink".into(),
            message: Some(other.to_string()),
        },
    }
}

/// NLMSGERR_ATTR_MSG from an error message's payload: the echoed request (its length is in its
/// own header, or just the 16-byte header when the kernel capped it) followed by attributes.
fn extack_message(payload: &[u8]) -> Option<String> {
    const NLMSGERR_ATTR_MSG: u16 = 1;
    let req_len = u32::from_ne_bytes(payload.get(0..4)?.try_into().ok()?) as usize;
    let mut at = if payload.len() > req_len { req_len } else { 16 };
    while let Some(head) = payload.get(at..at + 4) {
        let len = usize::from(u16::from_ne_bytes([head[0], head[1]]));
        let kind = u16::from_ne_bytes([head[2], head[3]]) & 0x3fff;
        let body = payload.get(at + 4..at + len.max(4))?;
        if kind == NLMSGERR_ATTR_MSG {
            let text = body.split(|b| *b == 0).next()?;
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        at += len.max(4).next_multiple_of(4);
    }
    None
}

/// Opens an rtnetlink connection whose socket lives in `ns`, with extended ACKs on.
pub fn connect(ns: &AnonNetns, rt: &tokio::runtime::Handle) -> crate::Result<Handle> {
    let (mut conn, handle, _) = ns
        .run(|| {
            let _guard = rt.enter();
            rtnetlink::new_connection()
        })?
        .map_err(|e| crate::Error::run(format!("cannot open a netlink socket: {e}")))?;
    conn.socket_mut()
        .socket_mut()
        .set_ext_ack(true)
        .map_err(|e| crate::Error::run(format!("cannot enable netlink extended ACKs: {e}")))?;
    rt.spawn(conn);
    Ok(handle)
}

pub async fn index_of(h: &Handle, name: &str) -> Answer<u32> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await.map_err(refusal)? {
        Some(m) => Ok(m.header.index),
        None => Err(Refusal {
            errno: "ENODEV".into(),
            message: Some(format!("no link {name}")),
        }),
    }
}

/// `ip link add NAME type veth peer name PEER netns PEER_NS`
pub async fn add_veth(
    h: &Handle,
    (name, mac): (&str, [u8; 6]),
    (peer, peer_mac): (&str, [u8; 6]),
    peer_ns: &AnonNetns,
) -> Answer {
    let peer = LinkUnspec::new_with_name(peer)
        .setns_by_fd(peer_ns.as_fd().as_raw_fd())
        .address(peer_mac.to_vec())
        .build();
    let msg = LinkVeth::new(name, "")
        .address(mac.to_vec())
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    h.link().add(msg).execute().await.map_err(refusal)
}

/// `ip link set dev IDX up|down`
pub async fn set_up(h: &Handle, index: u32, up: bool) -> Answer {
    let b = LinkUnspec::new_with_index(index);
    let b = if up { b.up() } else { b.down() };
    h.link().set(b.build()).execute().await.map_err(refusal)
}

/// `ip link set dev IDX address MAC`
pub async fn set_mac(h: &Handle, index: u32, mac: [u8; 6]) -> Answer {
    let b = LinkUnspec::new_with_index(index).address(mac.to_vec());
    h.link().set(b.build()).execute().await.map_err(refusal)
}

/// A link's state as the kernel announced it (RTM_NEWLINK), timestamped when bondcheck received
/// it: netlink messages carry no kernel timestamp.
#[derive(Debug, Clone)]
pub struct LinkEvent {
    pub at: std::time::Instant,
    pub name: String,
    /// A slave's MII status (IFLA_BOND_SLAVE_MII_STATUS); None for a link that is no slave.
    pub mii_status: Option<String>,
    /// The link's own carrier (IFF_LOWER_UP): a slave's changes are announced too, with the MII
    /// status the driver still holds; a bond's is the driver's verdict on its slaves.
    pub carrier: bool,
    /// The announcement is a bond's failover (IFLA_EVENT_BONDING_FAILOVER: active-backup's
    /// bond_change_active_slave() raised NETDEV_BONDING_FAILOVER).
    pub failover: bool,
}

impl LinkEvent {
    /// Whether this announces `slave` with MII status `mii_status`.
    pub fn is(&self, slave: &str, mii_status: &str) -> bool {
        self.name == slave && self.mii_status.as_deref() == Some(mii_status)
    }
}

/// Subscribes to RTNLGRP_LINK in `ns` and passes on every link announcement: slaves' MII
/// status (the kernel announces UP and DOWN only; FAIL and BACK are committed without
/// notification) and every link's carrier, the bond's included.
pub fn watch_links(
    ns: &AnonNetns,
    rt: &tokio::runtime::Handle,
) -> crate::Result<tokio::sync::mpsc::UnboundedReceiver<LinkEvent>> {
    use futures::StreamExt;
    let (mut conn, _, mut messages) = ns
        .run(|| {
            let _guard = rt.enter();
            rtnetlink::new_multicast_connection(&[rtnetlink::MulticastGroup::Link])
        })?
        .map_err(|e| crate::Error::run(format!("cannot subscribe to link events: {e}")))?;
    // A bigger buffer than the default: events must not be dropped while bondcheck is busy.
    conn.socket_mut()
        .socket_mut()
        .set_rx_buf_sz(4 << 20)
        .map_err(|e| crate::Error::run(format!("cannot size the event socket: {e}")))?;
    rt.spawn(conn);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    rt.spawn(async move {
        while let Some((message, _)) = messages.next().await {
            let at = std::time::Instant::now();
            let netlink_packet_core::NetlinkPayload::InnerMessage(
                netlink_packet_route::RouteNetlinkMessage::NewLink(link),
            ) = message.payload
            else {
                continue;
            };
            let mii = link_infos(&link).find_map(|i| match i {
                LinkInfo::PortData(InfoPortData::BondPort(attrs)) => {
                    attrs.iter().find_map(|a| match a {
                        InfoBondPort::MiiStatus(m) => Some(mii_word(*m)),
                        _ => None,
                    })
                }
                _ => None,
            });
            if let Some(name) = link_name(&link) {
                let event = LinkEvent {
                    at,
                    name: name.to_string(),
                    mii_status: mii,
                    carrier: link.header.flags.contains(LinkFlags::LowerUp),
                    failover: link.attributes.iter().any(|a| {
                        matches!(
                            a,
                            LinkAttribute::Event(
                                netlink_packet_route::link::LinkEvent::BondingFailover
                            )
                        )
                    }),
                };
                if tx.send(event).is_err() {
                    break;
                }
            }
        }
    });
    Ok(rx)
}

/// `ip link add NAME type bond`, with no options: ifenslave's `add_master`.
pub async fn add_bond(h: &Handle, name: &str) -> Answer {
    h.link()
        .add(LinkBond::new(name).build())
        .execute()
        .await
        .map_err(refusal)
}

/// `ip link add NAME type bridge stp_state 0 forward_delay 0`, down: a learning switch whose
/// ports forward as soon as they are up (no listening and learning states to wait through).
pub async fn add_bridge(h: &Handle, name: &str) -> Answer {
    let msg = LinkMessageBuilder::<LinkBridge>::new(name)
        .append_info_data(InfoBridge::StpState(BridgeStpState::Disabled))
        .append_info_data(InfoBridge::ForwardDelay(0))
        .build();
    h.link().add(msg).execute().await.map_err(refusal)
}

/// `ip link add NAME link BASE type vlan id ID up`: an 802.1Q device on top of `base` (the
/// kernel's defaults: protocol 802.1Q, reorder_hdr on, no egress priority map).
pub async fn add_vlan(h: &Handle, name: &str, base: u32, id: u16) -> Answer {
    let msg = LinkVlan::new(name, base, id).up().build();
    h.link().add(msg).execute().await.map_err(refusal)
}

/// The attribute carrying one write of `opt` (IFLA_BOND_*), slave names already turned into
/// ifindexes (`index`). None for queue ids, which are slave attributes.
fn bond_attr(opt: &Opt, value: &Write, index: Option<u32>) -> Option<InfoBond> {
    let n = match value {
        Write::Number(n) => *n,
        Write::Ipv4(list) => return Some(InfoBond::ArpIpTarget(list.clone())),
        Write::Ipv6(list) => return Some(InfoBond::NsIp6Target(list.clone())),
        Write::Mac(mac) => return Some(InfoBond::AdActorSystem(*mac)),
        Write::Slave(_) if opt.name == "primary" => {
            return Some(InfoBond::Primary(index.unwrap_or(0)));
        }
        Write::Slave(_) => return Some(InfoBond::ActivePort(index.unwrap_or(0))),
        Write::PerSlave { .. } => return None,
    };
    // Values were range-checked against the kernel's tables when the spec was parsed.
    let (n8, n16, n32) = (n as u8, n as u16, n as u32);
    Some(match opt.name {
        "mode" => InfoBond::Mode(BondMode::from(n8)),
        "miimon" => InfoBond::MiiMon(n32),
        "updelay" => InfoBond::UpDelay(n32),
        "downdelay" => InfoBond::DownDelay(n32),
        "peer_notif_delay" => InfoBond::PeerNotifDelay(n32),
        "use_carrier" => InfoBond::UseCarrier(n != 0),
        "arp_interval" => InfoBond::ArpInterval(n32),
        "arp_validate" => InfoBond::ArpValidate(BondArpValidate::from(n32)),
        "arp_all_targets" => InfoBond::ArpAllTargets(BondArpAllTargets::from(n32)),
        "primary_reselect" => InfoBond::PrimaryReselect(BondPrimaryReselect::from(n8)),
        "fail_over_mac" => InfoBond::FailOverMac(BondFailOverMac::from(n8)),
        "xmit_hash_policy" => InfoBond::XmitHashPolicy(BondXmitHashPolicy::from(n8)),
        "resend_igmp" => InfoBond::ResendIgmp(n32),
        "num_grat_arp" | "num_unsol_na" => InfoBond::NumPeerNotif(n8),
        "all_slaves_active" => InfoBond::AllPortsActive(BondAllPortActive::from(n8)),
        "min_links" => InfoBond::MinLinks(n32),
        "lp_interval" => InfoBond::LpInterval(n32),
        "packets_per_slave" => InfoBond::PacketsPerPort(n32),
        "lacp_rate" => InfoBond::AdLacpRate(BondLacpRate::from(n8)),
        "lacp_active" => InfoBond::AdLacpActive(n != 0),
        "ad_select" => InfoBond::AdSelect(BondAdSelect::from(n8)),
        "ad_actor_sys_prio" => InfoBond::AdActorSysPrio(n16),
        "ad_user_port_key" => InfoBond::AdUserPortKey(n16),
        "tlb_dynamic_lb" => InfoBond::TlbDynamicLb(n != 0),
        "arp_missed_max" => InfoBond::MissedMax(n8),
        other => unreachable!("option {other} has no numeric attribute"),
    })
}

/// One write of one option to the bond, as one netlink request: the same granularity as
/// ifenslave's sysfs writes, so each is accepted or refused on its own.
pub async fn set_option(h: &Handle, bond: u32, opt: &Opt, value: &Write) -> Answer {
    let slave = match value {
        Write::Slave(Some(name)) | Write::PerSlave { slave: name, .. } => {
            Some(index_of(h, name).await?)
        }
        _ => None,
    };
    match (bond_attr(opt, value, slave), value) {
        (Some(attr), _) => set_bond_attrs(h, bond, vec![attr]).await,
        (None, Write::PerSlave { value, .. }) => {
            let port = LinkBondPort::new(slave.expect("looked up"));
            // Values were range-checked against the option's kind when the spec was parsed.
            let msg = match opt.name {
                "queue_id" => port.queue_id(*value as u16),
                _ => port.prio(*value as i32),
            };
            h.link()
                .set_port(msg.build())
                .execute()
                .await
                .map_err(refusal)
        }
        (None, _) => unreachable!("every write but a queue id has a bond attribute"),
    }
}

/// RTM_NEWLINK with kind "bond" on an existing index, as `ip link set ... type bond` sends it:
/// RTM_SETLINK would ignore IFLA_LINKINFO and so silently drop every option.
async fn set_bond_attrs(h: &Handle, bond: u32, attrs: Vec<InfoBond>) -> Answer {
    let msg = LinkMessageBuilder::<LinkBond>::new_with_info_kind(InfoKind::Bond)
        .index(bond)
        .set_info_data(InfoData::Bond(attrs))
        .build();
    h.link().change(msg).execute().await.map_err(refusal)
}

/// `ip link set dev SLAVE master BOND`; the slave must be down (bond_enslave refuses it up).
pub async fn enslave(h: &Handle, slave: u32, bond: u32) -> Answer {
    let msg = LinkUnspec::new_with_index(slave)
        .controller(bond)
        .down()
        .build();
    h.link().set(msg).execute().await.map_err(refusal)
}

/// `bridge link set dev PORT state forwarding|disabled`: a disabled bridge port neither
/// forwards what it receives nor sends what the bridge forwards or originates, while its link
/// (and so the veth's carrier) stays up. Sent as the `bridge` tool sends it, RTM_SETLINK of
/// family AF_BRIDGE with a nested IFLA_PROTINFO holding IFLA_BRPORT_STATE (br_setlink): the
/// same attribute as bridge_slave data in RTM_NEWLINK is accepted there and silently not
/// applied (Linux 6.1, measured). The kernel takes a state by hand only with STP off, as the
/// topologies' bridges have it, and then re-runs its port state selection
/// (br_port_state_selection), which makes every port that is not disabled forwarding again:
/// "blocking" would not hold, "disabled" does.
pub async fn set_bridge_port_forwarding(h: &Handle, port: u32, forwarding: bool) -> Answer {
    const IFLA_PROTINFO: u16 = 12;
    const IFLA_BRPORT_STATE: u16 = 1;
    const NLA_F_NESTED: u16 = 1 << 15;
    // BR_STATE_FORWARDING and BR_STATE_DISABLED (include/uapi/linux/if_bridge.h).
    let state: u8 = if forwarding { 3 } else { 0 };
    // One attribute, u8 IFLA_BRPORT_STATE: length 5, padded to 8.
    let [t0, t1] = IFLA_BRPORT_STATE.to_ne_bytes();
    let nested = vec![5, 0, t0, t1, state, 0, 0, 0];
    let mut msg = LinkMessage::default();
    msg.header.interface_family = netlink_packet_route::AddressFamily::Bridge;
    msg.header.index = port;
    msg.attributes
        .push(LinkAttribute::Other(netlink_packet_core::DefaultNla::new(
            IFLA_PROTINFO | NLA_F_NESTED,
            nested,
        )));
    h.link().set(msg).execute().await.map_err(refusal)
}

/// `ip link set dev SLAVE nomaster`
pub async fn release(h: &Handle, slave: u32) -> Answer {
    h.link()
        .set(LinkUnspec::new_with_index(slave).nocontroller().build())
        .execute()
        .await
        .map_err(refusal)
}

/// `ip link del dev IDX` (a veth takes its peer with it).
pub async fn delete(h: &Handle, index: u32) -> Answer {
    h.link().del(index).execute().await.map_err(refusal)
}

/// Deletes every link of the namespace but its loopback, masters before their ports, and
/// returns once the kernel has unregistered them: the work of tearing a topology down is done
/// now, not later by the kernel's namespace cleanup. A link already gone (the peer of a veth
/// deleted before it) is no error.
pub async fn delete_links(h: &Handle) -> Answer {
    let links = links(h).await?;
    let masters: Vec<u32> = links.iter().filter_map(controller).collect();
    let mut doomed: Vec<&LinkMessage> = links
        .iter()
        .filter(|m| !m.header.flags.contains(LinkFlags::Loopback))
        .collect();
    // Deleting a master first releases its ports once, instead of once per deleted port.
    doomed.sort_by_key(|m| !masters.contains(&m.header.index));
    for m in doomed {
        match delete(h, m.header.index).await {
            Err(r) if r.errno == "ENODEV" => {}
            other => other?,
        }
    }
    Ok(())
}

/// `ip addr add ADDR/PREFIX dev IDX`
pub async fn add_address(h: &Handle, index: u32, net: Ipv4Net) -> Answer {
    h.address()
        .add(index, IpAddr::V4(net.addr), net.prefix)
        .execute()
        .await
        .map_err(refusal)
}

/// `ip addr flush dev IDX` for IPv4.
pub async fn flush_ipv4(h: &Handle, index: u32) -> Answer {
    let mut addrs = h.address().get().set_link_index_filter(index).execute();
    let mut found = Vec::new();
    while let Some(a) = addrs.try_next().await.map_err(refusal)? {
        if a.header.family == netlink_packet_route::AddressFamily::Inet {
            found.push(a);
        }
    }
    for a in found {
        h.address().del(a).execute().await.map_err(refusal)?;
    }
    Ok(())
}

/// IPv4 addresses of a link as `a.b.c.d/len`.
pub async fn ipv4_addresses(h: &Handle, index: u32) -> Answer<Vec<String>> {
    let mut addrs = h.address().get().set_link_index_filter(index).execute();
    let mut out = Vec::new();
    while let Some(a) = addrs.try_next().await.map_err(refusal)? {
        for attr in &a.attributes {
            if let AddressAttribute::Address(IpAddr::V4(ip)) = attr {
                out.push(format!("{ip}/{}", a.header.prefix_len));
            }
        }
    }
    Ok(out)
}

/// The link-layer address the namespace's neighbour table holds for `ip` (`ip neigh show`),
/// if it has a usable entry (not incomplete or failed).
pub async fn neighbour_mac(h: &Handle, ip: std::net::Ipv4Addr) -> Answer<Option<[u8; 6]>> {
    use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState};
    let mut entries = h
        .neighbours()
        .get()
        .set_address_family(netlink_packet_route::AddressFamily::Inet)
        .execute();
    while let Some(n) = entries.try_next().await.map_err(refusal)? {
        if matches!(
            n.header.state,
            NeighbourState::Incomplete | NeighbourState::Failed
        ) {
            continue;
        }
        let dst = n.attributes.iter().any(
            |a| matches!(a, NeighbourAttribute::Destination(NeighbourAddress::Inet(d)) if *d == ip),
        );
        if dst {
            return Ok(n.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::LinkLayerAddress(mac) => mac.as_slice().try_into().ok(),
                _ => None,
            }));
        }
    }
    Ok(None)
}

/// Every link of the namespace (one RTM_GETLINK dump).
pub async fn links(h: &Handle) -> Answer<Vec<LinkMessage>> {
    h.link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(refusal)
}

fn link_name(m: &LinkMessage) -> Option<&str> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

fn controller(m: &LinkMessage) -> Option<u32> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::Controller(c) => Some(*c),
        _ => None,
    })
}

fn link_infos(m: &LinkMessage) -> impl Iterator<Item = &LinkInfo> {
    m.attributes.iter().flat_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.as_slice(),
        _ => &[],
    })
}

/// The words /proc/net/bonding uses for a slave's MII status (bond_slave_link_status).
pub fn mii_word(s: MiiStatus) -> String {
    match s {
        MiiStatus::Up => "up".into(),
        MiiStatus::GoingDown => "going down".into(),
        MiiStatus::Down => "down".into(),
        MiiStatus::GoingBack => "going back".into(),
        other => format!("unknown ({other})"),
    }
}

/// The bond's effective configuration and its slaves' state as IFLA_BOND_* and
/// IFLA_BOND_SLAVE_* report them, from one link dump. None if there is no such bond.
pub fn bond_view(links: &[LinkMessage], bond: &str) -> Option<BondView> {
    let master = links.iter().find(|m| link_name(m) == Some(bond))?;
    let name_of = |index: u32| {
        links
            .iter()
            .find(|m| m.header.index == index)
            .and_then(link_name)
            .map(str::to_string)
    };
    let mut view = BondView {
        up: Some(master.header.flags.contains(LinkFlags::Up)),
        carrier: Some(master.header.flags.contains(LinkFlags::LowerUp)),
        mac: link_mac(master),
        ..BondView::default()
    };
    let mut is_bond = false;
    for info in link_infos(master) {
        if let LinkInfo::Data(InfoData::Bond(attrs)) = info {
            is_bond = true;
            // miimon scales nothing here: the kernel reports delays in ms already.
            for a in attrs {
                if let Some((param, value)) = option_value(a, &name_of) {
                    view.options.insert(param.to_string(), value);
                }
            }
        }
    }
    if !is_bond {
        return None;
    }
    // The kernel leaves out PRIMARY and the target lists when they are empty.
    for absent in ["primary", "arp_ip_target", "ns_ip6_target"] {
        view.options
            .entry(absent.to_string())
            .or_insert(Value::None);
    }
    for slave in links
        .iter()
        .filter(|m| controller(m) == Some(master.header.index))
    {
        let mut s = SlaveView {
            name: link_name(slave).unwrap_or("?").to_string(),
            mac: link_mac(slave),
            ..SlaveView::default()
        };
        for info in link_infos(slave) {
            if let LinkInfo::PortData(InfoPortData::BondPort(attrs)) = info {
                for a in attrs {
                    match a {
                        InfoBondPort::MiiStatus(m) => s.mii_status = Some(mii_word(*m)),
                        InfoBondPort::BondPortState(st) => s.state = Some(st.to_string()),
                        InfoBondPort::LinkFailureCount(n) => s.link_failure_count = Some(*n),
                        InfoBondPort::PermHwaddr(mac) => s.perm_hwaddr = Some(mac_text(mac)),
                        InfoBondPort::QueueId(q) => s.queue_id = Some(*q),
                        InfoBondPort::Prio(p) => s.prio = Some(*p),
                        _ => {}
                    }
                }
            }
        }
        view.slaves.push(s);
    }
    Some(view)
}

/// The 802.3ad state of a bond and its ports from one link dump: IFLA_BOND_AD_INFO (only
/// present while the bond has an active aggregator) and every port's aggregator id and actor and
/// partner operational port state (only present while the port has an aggregator). None if
/// there is no such bond.
pub fn ad_view(links: &[LinkMessage], bond: &str) -> Option<AdView> {
    let master = links.iter().find(|m| link_name(m) == Some(bond))?;
    let mut view = AdView {
        mac: link_mac(master),
        ..AdView::default()
    };
    for info in link_infos(master) {
        if let LinkInfo::Data(InfoData::Bond(attrs)) = info {
            for a in attrs {
                if let InfoBond::AdInfo(infos) = a {
                    let mut agg = ActiveAggregator::default();
                    for i in infos {
                        match i {
                            BondAdInfo::Aggregator(id) => agg.id = *id,
                            BondAdInfo::NumPorts(n) => agg.num_ports = *n,
                            BondAdInfo::ActorKey(k) => agg.actor_key = *k,
                            BondAdInfo::PartnerKey(k) => agg.partner_key = *k,
                            BondAdInfo::PartnerMac(mac) => agg.partner_mac = mac_text(mac),
                            _ => {}
                        }
                    }
                    view.active = Some(agg);
                }
            }
        }
    }
    for port in links
        .iter()
        .filter(|m| controller(m) == Some(master.header.index))
    {
        let mut p = AdPort {
            name: link_name(port).unwrap_or("?").to_string(),
            ..AdPort::default()
        };
        for info in link_infos(port) {
            if let LinkInfo::PortData(InfoPortData::BondPort(attrs)) = info {
                for a in attrs {
                    match a {
                        InfoBondPort::AdAggregatorId(id) => p.aggregator = Some(*id),
                        InfoBondPort::AdActorOperPortState(s) => p.actor_state = Some(s.bits()),
                        InfoBondPort::AdPartnerOperPortState(s) => {
                            p.partner_state = Some(s.bits());
                        }
                        _ => {}
                    }
                }
            }
        }
        view.ports.push(p);
    }
    Some(view)
}

/// What the traffic engine needs to know of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub index: u32,
    pub mac: Option<[u8; 6]>,
    /// Administratively up (IFF_UP).
    pub up: bool,
}

/// Every link in `h`'s namespace, in brief.
pub async fn link_list(h: &Handle) -> Answer<Vec<Link>> {
    Ok(links(h)
        .await?
        .iter()
        .filter_map(|m| {
            Some(Link {
                name: link_name(m)?.to_string(),
                index: m.header.index,
                mac: m.attributes.iter().find_map(|a| match a {
                    LinkAttribute::Address(mac) => mac.as_slice().try_into().ok(),
                    _ => None,
                }),
                up: m.header.flags.contains(LinkFlags::Up),
            })
        })
        .collect())
}

/// A link's hardware address (IFLA_ADDRESS) as `aa:bb:...`.
fn link_mac(m: &LinkMessage) -> Option<String> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(mac) => Some(mac_text(mac)),
        _ => None,
    })
}

/// One IFLA_BOND_* attribute as (parameter, value), in the words the model uses: value-table
/// words for enumerated options, numbers for numbers, space-separated lists.
fn option_value(
    a: &InfoBond,
    name_of: &dyn Fn(u32) -> Option<String>,
) -> Option<(&'static str, Value)> {
    let word = |param: &'static str, n: u64| {
        let w = options::by_name(param)
            .and_then(|o| o.word(n))
            .map_or(n.to_string(), str::to_string);
        Some((param, Value::Text(w)))
    };
    let num = |param: &'static str, n: u64| Some((param, Value::Number(n)));
    let list = |param: &'static str, items: Vec<String>| {
        Some((
            param,
            if items.is_empty() {
                Value::None
            } else {
                Value::Text(items.join(" "))
            },
        ))
    };
    match a {
        InfoBond::Mode(m) => word("mode", u8::from(*m).into()),
        InfoBond::MiiMon(v) => num("miimon", (*v).into()),
        InfoBond::UpDelay(v) => num("updelay", (*v).into()),
        InfoBond::DownDelay(v) => num("downdelay", (*v).into()),
        InfoBond::PeerNotifDelay(v) => num("peer_notif_delay", (*v).into()),
        InfoBond::UseCarrier(b) => word("use_carrier", (*b).into()),
        InfoBond::ArpInterval(v) => num("arp_interval", (*v).into()),
        InfoBond::ArpIpTarget(t) => {
            list("arp_ip_target", t.iter().map(ToString::to_string).collect())
        }
        InfoBond::NsIp6Target(t) => {
            list("ns_ip6_target", t.iter().map(ToString::to_string).collect())
        }
        InfoBond::ArpValidate(v) => word("arp_validate", u32::from(*v).into()),
        InfoBond::ArpAllTargets(v) => word("arp_all_targets", u32::from(*v).into()),
        InfoBond::Primary(i) => Some((
            "primary",
            Value::Text(name_of(*i).unwrap_or(format!("ifindex {i}"))),
        )),
        InfoBond::PrimaryReselect(v) => word("primary_reselect", u8::from(*v).into()),
        InfoBond::FailOverMac(v) => word("fail_over_mac", u8::from(*v).into()),
        InfoBond::XmitHashPolicy(v) => word("xmit_hash_policy", u8::from(*v).into()),
        InfoBond::ResendIgmp(v) => num("resend_igmp", (*v).into()),
        InfoBond::NumPeerNotif(v) => num("num_peer_notif", (*v).into()),
        InfoBond::AllPortsActive(v) => word("all_slaves_active", u8::from(*v).into()),
        InfoBond::MinLinks(v) => num("min_links", (*v).into()),
        InfoBond::LpInterval(v) => num("lp_interval", (*v).into()),
        InfoBond::PacketsPerPort(v) => num("packets_per_slave", (*v).into()),
        InfoBond::AdLacpRate(v) => word("lacp_rate", u8::from(*v).into()),
        InfoBond::AdLacpActive(b) => word("lacp_active", (*b).into()),
        InfoBond::AdSelect(v) => word("ad_select", u8::from(*v).into()),
        InfoBond::AdActorSysPrio(v) => num("ad_actor_sys_prio", (*v).into()),
        InfoBond::AdUserPortKey(v) => num("ad_user_port_key", (*v).into()),
        InfoBond::AdActorSystem(m) => Some(("ad_actor_system", Value::Text(mac_text(m)))),
        InfoBond::TlbDynamicLb(b) => word("tlb_dynamic_lb", (*b).into()),
        InfoBond::MissedMax(v) => num("arp_missed_max", (*v).into()),
        InfoBond::ActivePort(i) => Some((
            "active_slave",
            Value::Text(name_of(*i).unwrap_or(format!("ifindex {i}"))),
        )),
        _ => None,
    }
}

pub fn mac_text(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extack_message_is_found_after_the_echoed_request() {
        // 20-byte echoed request, then NLMSGERR_ATTR_MSG "no" (len 7, padded to 8).
        let mut p = vec![20, 0, 0, 0];
        p.resize(20, 0);
        p.extend([7, 0, 1, 0, b'n', b'o', 0, 0]);
        assert_eq!(extack_message(&p).as_deref(), Some("no"));
        assert_eq!(extack_message(&p[..20]), None);
        assert_eq!(extack_message(&[1, 2]), None);
    }

    #[test]
    fn every_numeric_option_has_an_attribute_and_reads_back_under_its_name() {
        for o in options::OPTIONS {
            let n = match o.kind {
                options::Kind::Number { min, .. } => min,
                options::Kind::Delay { .. } => 0,
                options::Kind::Word(table) => table[0].1,
                _ => continue,
            };
            let attr =
                bond_attr(o, &Write::Number(n), None).unwrap_or_else(|| panic!("{}", o.name));
            let (param, _) =
                option_value(&attr, &|_| None).unwrap_or_else(|| panic!("{} reads back", o.name));
            assert_eq!(param, crate::driver::param(o), "{}", o.name);
        }
    }

    #[test]
    fn mac_text_is_lowercase_colon_separated() {
        assert_eq!(mac_text(&[0x02, 0xab, 0, 1, 2, 3]), "02:ab:00:01:02:03");
    }
}
