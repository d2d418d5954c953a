//! rtnetlink requests bondcheck makes, one function per kernel operation, and the decoding of
//! the kernel's answers (bond and bond-slave attributes, extended ACK messages).

use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};

use futures::TryStreamExt;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{
    BondMode, InfoBond, InfoBondPort, InfoData, InfoKind, InfoPortData, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage, MiiStatus,
};
use rtnetlink::sys::AsyncSocket;
use rtnetlink::{Handle, LinkBond, LinkMessageBuilder, LinkUnspec, LinkVeth};

use crate::netns::AnonNetns;
use crate::observe::{BondView, SlaveView};
use crate::spec::{Ipv4Net, Mode};

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
pub async fn add_veth(h: &Handle, name: &str, peer: &str, peer_ns: &AnonNetns) -> Answer {
    let peer = LinkUnspec::new_with_name(peer)
        .setns_by_fd(peer_ns.as_fd().as_raw_fd())
        .build();
    let msg = LinkVeth::new(name, "")
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

/// Options sent when the bond is created. MIIMON comes before UPDELAY/DOWNDELAY in the kernel's
/// processing order (bond_changelink), so they may share the message.
#[derive(Debug, Clone, Default)]
pub struct BondOptions {
    pub mode: Option<Mode>,
    pub miimon: Option<u32>,
    pub updelay: Option<u32>,
    pub downdelay: Option<u32>,
}

fn bond_mode(mode: Mode) -> BondMode {
    BondMode::from(mode.number())
}

fn bond_attrs(opts: &BondOptions) -> Vec<InfoBond> {
    let mut attrs = Vec::new();
    attrs.extend(opts.mode.map(|m| InfoBond::Mode(bond_mode(m))));
    attrs.extend(opts.miimon.map(InfoBond::MiiMon));
    attrs.extend(opts.updelay.map(InfoBond::UpDelay));
    attrs.extend(opts.downdelay.map(InfoBond::DownDelay));
    attrs
}

/// `ip link add NAME type bond OPTIONS` (created down).
pub async fn add_bond(h: &Handle, name: &str, opts: &BondOptions) -> Answer {
    let msg = bond_attrs(opts)
        .into_iter()
        .fold(LinkBond::new(name), |b, a| b.append_info_data(a));
    h.link().add(msg.build()).execute().await.map_err(refusal)
}

/// `ip link set dev BOND type bond OPTIONS` on an existing bond.
pub async fn change_bond(h: &Handle, bond: u32, opts: &BondOptions) -> Answer {
    set_bond_attrs(h, bond, bond_attrs(opts)).await
}

/// `ip link set dev BOND type bond primary SLAVE`
pub async fn set_primary(h: &Handle, bond: u32, slave: u32) -> Answer {
    set_bond_attrs(h, bond, vec![InfoBond::Primary(slave)]).await
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

/// `ip link set dev SLAVE nomaster`
pub async fn release(h: &Handle, slave: u32) -> Answer {
    h.link()
        .set(LinkUnspec::new_with_index(slave).nocontroller().build())
        .execute()
        .await
        .map_err(refusal)
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
        ..BondView::default()
    };
    let mut is_bond = false;
    for info in link_infos(master) {
        if let LinkInfo::Data(InfoData::Bond(attrs)) = info {
            is_bond = true;
            for a in attrs {
                match a {
                    InfoBond::Mode(m) => {
                        view.mode = Some(
                            Mode::from_number(u8::from(*m))
                                .map_or(m.to_string(), |m| m.name().into()),
                        )
                    }
                    InfoBond::MiiMon(v) => view.miimon = Some(*v),
                    InfoBond::UpDelay(v) => view.updelay = Some(*v),
                    InfoBond::DownDelay(v) => view.downdelay = Some(*v),
                    InfoBond::Primary(i) => {
                        view.primary = Some(name_of(*i).unwrap_or(format!("ifindex {i}")))
                    }
                    _ => {}
                }
            }
        }
    }
    if !is_bond {
        return None;
    }
    view.primary.get_or_insert_with(|| "none".into());
    for slave in links
        .iter()
        .filter(|m| controller(m) == Some(master.header.index))
    {
        let mut s = SlaveView {
            name: link_name(slave).unwrap_or("?").to_string(),
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
                        _ => {}
                    }
                }
            }
        }
        view.slaves.push(s);
    }
    Some(view)
}

fn mac_text(bytes: &[u8]) -> String {
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
    fn mac_text_is_lowercase_colon_separated() {
        assert_eq!(mac_text(&[0x02, 0xab, 0, 1, 2, 3]), "02:ab:00:01:02:03");
    }
}
