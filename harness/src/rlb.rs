//! balance-alb's receive load balancing (RLB, drivers/net/bonding/bond_alb.c): the bond answers
//! each client's ARP request with the MAC address of the slave it assigns to that client, so
//! that the client's traffic to the bond arrives on that slave.
//!
//! On a topology whose peers are ports of a learning bridge (a plain switch), bondcheck puts
//! client hosts behind the switch, each in a namespace of its own with an address in the
//! bond's subnet. One after the other, each client sends a UDP datagram to the bond's IPv4
//! address: its kernel resolves the address (the bond's ARP reply goes through `rlb_arp_xmit`)
//! and then sends the datagram to the MAC it learned. The next client starts once the bond
//! has received the datagram, so the bond assigns the clients in a known order. Then every
//! client sends more datagrams. The `alb.receive` check compares, per client, the slave the
//! model assigns with the MAC in the client's neighbour table and with the slaves its
//! datagrams were captured on (every slave of the bond is captured, with the captures' own
//! drop counts). Every wait is for a datagram the bond's socket receives, with a deadline.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime};

use crate::checks::{Status, Verdict};
use crate::error::{Error, Result};
use crate::frames;
use crate::model::{Model, Rule};
use crate::netlink;
use crate::spec::{Ipv4Net, Mode, Spec};
use crate::topology::{self, Built, MasterKind, Topology};
use crate::traffic;

/// The check's id.
pub const CHECK: &str = "alb.receive";
/// Client hosts: more than the slaves of any suite case, so the assignment wraps around.
pub const CLIENTS: usize = 4;
/// Datagrams each client sends: the first resolves the bond's address, the rest follow it.
const DATAGRAMS: usize = 4;
/// The UDP port the bond listens on for the clients' datagrams (so it answers no ICMP).
const PORT: u16 = 7;
const BOND_ALB_C: &str = "drivers/net/bonding/bond_alb.c";

/// Whether a case has the check: a balance-alb bond with an IPv4 address, whose slaves' peers
/// are ports of a bridge that client hosts can join.
pub fn applies(model: &Model, spec: &Spec, topology: &Topology) -> bool {
    model.transmit.mode == Mode::BalanceAlb
        && topology
            .peer_master
            .as_ref()
            .is_some_and(|m| m.kind == MasterKind::Bridge)
        && spec
            .bond
            .address
            .as_ref()
            .is_some_and(|a| clients(a.value).len() == CLIENTS)
}

/// The clients' addresses: the highest host addresses of the bond's subnet, not the bond's
/// own (fewer than [`CLIENTS`] if the subnet is too small).
pub fn clients(bond: Ipv4Net) -> Vec<Ipv4Addr> {
    let host_bits = 32 - u32::from(bond.prefix.min(32));
    let hosts = 1u64 << host_bits;
    let network = u32::from(bond.addr) & !((hosts - 1) as u32);
    // Below the broadcast address, downwards, above the network address.
    (1..hosts.saturating_sub(1))
        .rev()
        .map(|h| Ipv4Addr::from(network + h as u32))
        .filter(|a| *a != bond.addr)
        .take(CLIENTS)
        .collect()
}

/// `_simple_hash()`: the XOR of the address's bytes, the index into the RLB client table.
fn simple_hash(ip: Ipv4Addr) -> u8 {
    ip.octets().iter().fold(0, |h, b| h ^ b)
}

/// `__rlb_next_rx_slave()` with every slave at the same speed (veth reports 10000 Mb/s): the
/// first usable slave after `current` in enslave order, else the first usable one (also when
/// `current` is none or not usable, since an unusable slave is skipped before it is compared).
fn next_rx_slave(usable: &[bool], current: Option<usize>) -> Option<usize> {
    let (mut before, mut after, mut found) = (None, None, false);
    for s in (0..usable.len()).filter(|s| usable[*s]) {
        if found {
            after = after.or(Some(s));
        } else {
            before = before.or(Some(s));
        }
        found |= Some(s) == current;
    }
    after.or(before)
}

/// The model's assignment: per client (in the order they resolve), the slave its traffic to
/// the bond arrives on.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    pub per_client: Vec<Option<usize>>,
    pub rule: Rule,
}

/// What `rlb_choose_channel()` makes of `clients` resolving the bond's address one after the
/// other, on a bond whose RLB table is empty and whose `rx_slave` is unset, with `usable`
/// slaves and the `active` one.
pub fn expect(usable: &[bool], active: Option<usize>, clients: &[Ipv4Addr]) -> Expected {
    let mut table: BTreeMap<u8, usize> = BTreeMap::new();
    let mut rx_slave = None;
    let mut per_client: Vec<Option<usize>> = vec![None; clients.len()];
    for (i, ip) in clients.iter().enumerate() {
        let index = simple_hash(*ip);
        // Another client in the same entry moves to the active slave (rlb_update_client tells
        // it so), and the entry goes to the new client.
        if let Some(&other) = table.get(&index) {
            if clients[other] == *ip {
                per_client[i] = per_client[other];
                continue;
            }
            if active.is_some() && per_client[other] != active {
                per_client[other] = active;
            }
        }
        let assigned = next_rx_slave(usable, rx_slave);
        rx_slave = assigned.or(rx_slave);
        if assigned.is_some() {
            table.insert(index, i);
        }
        per_client[i] = assigned;
    }
    Expected {
        per_client,
        rule: Rule {
            text: "the bond answers a client's ARP request on, and with the MAC address of, the \
                   slave rlb_choose_channel assigns it (rlb_arp_xmit): a client new to the RLB \
                   table (indexed by the XOR of its address's bytes) gets the next usable slave \
                   after the last one assigned, in enslave order (__rlb_next_rx_slave, slaves \
                   of equal speed; none assigned on a fresh bond, so the first client gets the \
                   first usable slave); a client already in its entry keeps its slave, and one \
                   displaced from its entry moves to the active slave; the client's traffic to \
                   the bond then arrives on that slave"
                .into(),
            source: BOND_ALB_C,
        },
    }
}

/// What one client did and where its traffic arrived.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Client {
    /// Its IPv4 address.
    pub address: String,
    /// The MAC address its neighbour table holds for the bond's address.
    pub learned_mac: Option<String>,
    /// The slave of the bond that has that MAC address, if one has.
    pub learned_slave: Option<String>,
    /// Datagrams it sent to the bond.
    pub sent: usize,
    /// Of those, how many the bond's socket received.
    pub received: usize,
    /// Per slave, how many copies of its datagrams were captured arriving there.
    pub arrived_on: BTreeMap<String, usize>,
}

/// The receive phase's raw result.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Observed {
    /// The clients, in the order they resolved the bond's address.
    pub clients: Vec<Client>,
    /// The slaves' MAC addresses when the clients had resolved (balance-alb gives each slave
    /// its own).
    pub slave_macs: BTreeMap<String, String>,
    /// Frames the captures on the slaves lost (PACKET_STATISTICS): must be 0.
    pub capture_dropped: u32,
    /// From the first client's first datagram until the bond had every datagram.
    pub total_ms: f64,
}

/// Joins [`CLIENTS`] client hosts to the topology's bridge, lets each resolve the bond's
/// address in turn, sends their datagrams and sees where they arrive; waits at most `deadline`
/// for each datagram.
pub async fn observe(
    built: &Built,
    bond: Ipv4Net,
    slaves: &[String],
    run_id: u32,
    deadline: Duration,
) -> Result<Observed> {
    let fail =
        |what: String| move |r: netlink::Refusal| Error::run(format!("alb receive: {what}: {r}"));
    let Some(switch) = &built.peer_master else {
        return Err(Error::run(
            "alb receive: the topology has no bridge to join",
        ));
    };
    let bond_links = netlink::link_list(&built.bond)
        .await
        .map_err(fail("link dump".into()))?;
    let addresses = clients(bond);
    let mut hosts = Vec::new();
    for (i, address) in addresses.iter().enumerate() {
        let ns = topology::new_namespace()?;
        let handle = netlink::connect(&ns, &tokio::runtime::Handle::current())?;
        let port = format!("client{i}");
        netlink::add_veth(
            &switch.handle,
            (&port, topology::mac(4, i)),
            ("eth0", topology::mac(3, i)),
            &ns,
        )
        .await
        .map_err(fail(format!("creating client {i}")))?;
        let port_index = netlink::index_of(&switch.handle, &port)
            .await
            .map_err(fail(format!("finding {port}")))?;
        netlink::enslave(&switch.handle, port_index, switch.index)
            .await
            .map_err(fail(format!("joining {port} to {}", switch.name)))?;
        netlink::set_up(&switch.handle, port_index, true)
            .await
            .map_err(fail(format!("bringing {port} up")))?;
        let index = netlink::index_of(&handle, "eth0")
            .await
            .map_err(fail(format!("finding client {i}'s eth0")))?;
        netlink::set_up(&handle, index, true)
            .await
            .map_err(fail(format!("bringing client {i} up")))?;
        netlink::add_address(
            &handle,
            index,
            Ipv4Net {
                addr: *address,
                prefix: bond.prefix,
            },
        )
        .await
        .map_err(fail(format!("addressing client {i}")))?;
        let socket = ns
            .run(|| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))?
            .map_err(|e| Error::run(format!("alb receive: client {i}'s socket: {e}")))?;
        hosts.push((ns, handle, socket));
    }

    let listener = built
        .bond_ns
        .run(move || UdpSocket::bind((bond.addr, PORT)))?
        .map_err(|e| Error::run(format!("alb receive: the bond's socket: {e}")))?;
    let mut captures = Vec::new();
    for name in slaves {
        let index = bond_links
            .iter()
            .find(|l| &l.name == name)
            .ok_or_else(|| Error::run(format!("alb receive: no slave {name}")))?
            .index;
        let fd = traffic::capture_socket(&built.bond_ns, index)?;
        // What came before (the traffic phase's learning packets, say) is not ours.
        traffic::drain(
            fd.as_raw_fd(),
            run_id,
            u32::MAX,
            &mut Vec::new(),
            &mut Vec::new(),
            0,
            SystemTime::now(),
        )?;
        traffic::statistics(fd.as_raw_fd())?;
        captures.push(fd);
    }

    let start = Instant::now();
    let mut received = vec![0usize; addresses.len()];
    let send = |(_, _, socket): &(_, _, UdpSocket), seq: usize| -> Result<()> {
        socket
            .send_to(&frames::payload(run_id, seq as u32), (bond.addr, PORT))
            .map(drop)
            .map_err(|e| Error::run(format!("alb receive: sending datagram {seq}: {e}")))
    };
    // One client at a time resolves the bond's address: its first datagram waits for the
    // ARP reply, so once the bond has it, the bond has assigned the client.
    for (i, host) in hosts.iter().enumerate() {
        send(host, i * DATAGRAMS)?;
        await_datagrams(&listener, run_id, &mut received, i + 1, 1, deadline)?;
    }
    for (i, host) in hosts.iter().enumerate() {
        for k in 1..DATAGRAMS {
            send(host, i * DATAGRAMS + k)?;
        }
    }
    await_datagrams(
        &listener,
        run_id,
        &mut received,
        hosts.len(),
        DATAGRAMS,
        deadline,
    )?;
    let total_ms = start.elapsed().as_secs_f64() * 1e3;

    let mut arrivals = Vec::new();
    let mut capture_dropped = 0;
    for (slave, fd) in captures.iter().enumerate() {
        let epoch = SystemTime::now();
        traffic::drain(
            fd.as_raw_fd(),
            run_id,
            u32::MAX,
            &mut arrivals,
            &mut Vec::new(),
            slave,
            epoch,
        )?;
        capture_dropped += traffic::statistics(fd.as_raw_fd())?.1;
    }
    let slave_links = netlink::link_list(&built.bond)
        .await
        .map_err(fail("link dump".into()))?;
    let slave_macs: BTreeMap<String, String> = slaves
        .iter()
        .filter_map(|s| {
            let l = slave_links.iter().find(|l| &l.name == s)?;
            Some((s.clone(), netlink::mac_text(&l.mac?)))
        })
        .collect();
    let mut observed = Vec::new();
    for (i, (address, (_, handle, _))) in addresses.iter().zip(&hosts).enumerate() {
        let learned = netlink::neighbour_mac(handle, bond.addr)
            .await
            .map_err(fail(format!("client {i}'s neighbour table")))?
            .map(|m| netlink::mac_text(&m));
        let mut arrived_on = BTreeMap::new();
        for a in arrivals.iter().filter(|a| a.seq as usize / DATAGRAMS == i) {
            *arrived_on.entry(slaves[a.slave].clone()).or_insert(0) += 1;
        }
        observed.push(Client {
            address: address.to_string(),
            learned_slave: learned.as_ref().and_then(|m| {
                slave_macs
                    .iter()
                    .find(|(_, mac)| *mac == m)
                    .map(|(s, _)| s.clone())
            }),
            learned_mac: learned,
            sent: DATAGRAMS,
            received: received[i],
            arrived_on,
        });
    }
    // The clients' veths go now, as a topology's do at teardown (Built::teardown), not in the
    // kernel's namespace cleanup later.
    for (i, (_, handle, _)) in hosts.iter().enumerate() {
        netlink::delete_links(handle)
            .await
            .map_err(fail(format!("deleting client {i}")))?;
    }
    Ok(Observed {
        clients: observed,
        slave_macs,
        capture_dropped,
        total_ms,
    })
}

/// Reads the bond's socket until each of the first `clients` clients has `each` datagrams
/// received, or `deadline` passes (an error naming the clients still missing some).
fn await_datagrams(
    listener: &UdpSocket,
    run_id: u32,
    received: &mut [usize],
    clients: usize,
    each: usize,
    deadline: Duration,
) -> Result<()> {
    let until = Instant::now() + deadline;
    let mut buf = [0u8; 64];
    while received[..clients].iter().any(|r| *r < each) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let late: Vec<String> = (0..clients)
                .filter(|i| received[*i] < each)
                .map(|i| i.to_string())
                .collect();
            return Err(Error::run(format!(
                "alb receive: the bond did not receive the datagrams of client {} within {} ms",
                late.join(", "),
                deadline.as_millis()
            )));
        }
        listener
            .set_read_timeout(Some(left))
            .map_err(|e| Error::run(format!("alb receive: {e}")))?;
        match listener.recv(&mut buf) {
            Ok(n) => {
                if let Some((id, seq)) = frames::identify(&buf[..n]) {
                    if id == run_id && (seq as usize) < received.len() * DATAGRAMS {
                        received[seq as usize / DATAGRAMS] += 1;
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(Error::run(format!("alb receive: receiving: {e}"))),
        }
    }
    Ok(())
}

/// Judges every client: the MAC it learned and the slaves its datagrams arrived on must be
/// those of the slave the model assigns it.
pub fn check(expected: &Expected, observed: &Observed, slaves: &[String]) -> Verdict {
    let verdict = |status, message| {
        Verdict::judged(
            CHECK,
            status,
            None,
            expected.rule.clone(),
            message,
            Vec::new(),
        )
    };
    if observed.capture_dropped > 0 {
        return verdict(
            Status::Error,
            format!(
                "the captures on the slaves dropped {} frames: what they saw is incomplete, so \
                 nothing is judged",
                observed.capture_dropped
            ),
        );
    }
    let name = |s: Option<usize>| s.map_or("no slave".to_string(), |s| slaves[s].clone());
    let mut lines = Vec::new();
    let mut wrong = Vec::new();
    for (client, want) in observed.clients.iter().zip(&expected.per_client) {
        let want = name(*want);
        let arrived = client
            .arrived_on
            .iter()
            .map(|(s, n)| format!("{n} on {s}"))
            .collect::<Vec<_>>()
            .join(", ");
        let learned = match (&client.learned_mac, &client.learned_slave) {
            (Some(mac), Some(s)) => format!("{mac} ({s})"),
            (Some(mac), None) => format!("{mac} (no slave's)"),
            (None, _) => "nothing".into(),
        };
        let line = format!(
            "{}: learned {learned}, datagrams arrived {}; the model assigns {want}",
            client.address,
            if arrived.is_empty() {
                "nowhere".into()
            } else {
                arrived
            }
        );
        let right = client.learned_slave.as_deref() == Some(want.as_str())
            && client.arrived_on.len() == 1
            && client.arrived_on.get(&want) == Some(&client.sent);
        if !right {
            wrong.push(line.clone());
        }
        lines.push(line);
    }
    match wrong.first() {
        None => verdict(
            Status::Pass,
            format!(
                "every client learned its assigned slave's MAC and its datagrams arrived there: \
                 {}",
                lines.join("; ")
            ),
        ),
        Some(first) => verdict(
            Status::Fail,
            format!(
                "{} of {} clients are not where the model assigns them; the first: {first}\n  {}",
                wrong.len(),
                lines.len(),
                lines.join("\n  ")
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn clients_are_the_top_of_the_subnet_without_the_bond() {
        let net = |a: &str, prefix| Ipv4Net {
            addr: ip(a),
            prefix,
        };
        assert_eq!(
            clients(net("10.20.6.5", 24)),
            [
                ip("10.20.6.254"),
                ip("10.20.6.253"),
                ip("10.20.6.252"),
                ip("10.20.6.251")
            ]
        );
        assert_eq!(
            clients(net("10.0.0.6", 29)),
            [
                ip("10.0.0.5"),
                ip("10.0.0.4"),
                ip("10.0.0.3"),
                ip("10.0.0.2")
            ]
        );
        // A /30 has two hosts: the bond and one client, too few.
        assert_eq!(clients(net("10.0.0.1", 30)), [ip("10.0.0.2")]);
    }

    #[test]
    fn clients_take_the_usable_slaves_in_turn_from_the_first() {
        let c = clients(Ipv4Net {
            addr: ip("10.20.6.5"),
            prefix: 24,
        });
        let e = expect(&[true, true], Some(0), &c);
        assert_eq!(e.per_client, [Some(0), Some(1), Some(0), Some(1)]);
        let e = expect(&[true, false, true], Some(0), &c);
        assert_eq!(e.per_client, [Some(0), Some(2), Some(0), Some(2)]);
        assert_eq!(expect(&[false, false], None, &c).per_client, [None; 4]);
    }

    #[test]
    fn a_client_displaced_from_its_entry_moves_to_the_active_slave() {
        // 10.0.0.3 and 10.0.3.0 share the entry 10 ^ 3.
        let c = [ip("10.0.0.3"), ip("10.0.3.0")];
        let e = expect(&[true, true, true], Some(2), &c);
        assert_eq!(e.per_client, [Some(2), Some(1)]);
        // The same client twice keeps its slave and moves nobody on.
        let e = expect(&[true, true], Some(0), &[ip("10.0.0.3"), ip("10.0.0.3")]);
        assert_eq!(e.per_client, [Some(0), Some(0)]);
    }
}
