//! Veth topologies: how each slave of the spec is wired (a `veth-topologies/*.toml` file), and
//! building that wiring in throwaway namespaces.
//!
//! The bond and its slaves live in one namespace, with the slave names from the spec; every
//! slave is one end of a veth pair whose other end (the peer) lives in a peer namespace. In a
//! shared peer namespace the peers may be joined under one device, the *peer master*: a bridge
//! (a plain switch) or a bond (a switch's static or LACP aggregate). Nothing is created in the
//! namespace bondcheck was started in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rtnetlink::Handle;
use serde::Deserialize;
use toml::Spanned;

use crate::error::{Error, Result, line_column};
use crate::ifenslave::Write;
use crate::netlink;
use crate::netns::AnonNetns;
use crate::options::{self, Kind, Opt};
use crate::spec::{Ipv4Net, Mode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerNamespace {
    /// Every peer end in a namespace of its own.
    PerSlave,
    /// All peer ends in one namespace.
    Shared,
}

/// What joins the peer ends in the shared peer namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MasterKind {
    /// A learning Linux bridge, STP off, forwarding at once: a plain switch.
    Bridge,
    /// A bond: the switch side of an aggregate (static, or LACP in 802.3ad).
    Bond,
}

/// The `[peer-master]` table of a topology file.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PeerMaster {
    pub kind: MasterKind,
    pub name: String,
    /// Bond options as written: kernel option name → a number or a word of the option's table.
    #[serde(default, rename = "options", skip_serializing)]
    written: BTreeMap<String, Spanned<toml::Value>>,
    /// The bond options, typed, in the order they are set: the catalogue's, so the mode comes
    /// first (options of other modes are refused until it is set).
    #[serde(skip)]
    pub options: Vec<(&'static Opt, u64)>,
    /// IPv4 addresses the master holds, as written (`ADDR/PREFIX`).
    #[serde(default, rename = "addresses", skip_serializing)]
    written_addresses: Vec<Spanned<String>>,
    /// The same, typed: hosts on the switch that answer ARP, e.g. an ARP monitor's targets.
    #[serde(skip)]
    pub addresses: Vec<Ipv4Net>,
}

impl PeerMaster {
    /// The peer bond's mode (the kernel's default, balance-rr, when the file sets none); None
    /// for a bridge.
    pub fn bond_mode(&self) -> Option<Mode> {
        (self.kind == MasterKind::Bond).then(|| {
            self.options
                .iter()
                .find(|(o, _)| o.name == "mode")
                .and_then(|(_, n)| Mode::from_number(*n as u8))
                .unwrap_or(Mode::BalanceRr)
        })
    }

    /// The value set for a bond option, if the file sets it.
    pub fn option(&self, name: &str) -> Option<u64> {
        self.options
            .iter()
            .find(|(o, _)| o.name == name)
            .map(|(_, n)| *n)
    }
}

/// A topology file, as documented in veth-topologies/README.md.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Topology {
    #[serde(skip_deserializing)]
    pub name: String,
    #[serde(skip_deserializing)]
    pub path: PathBuf,
    pub description: String,
    /// Name of a slave's peer end; `{slave}` stands for the slave's name, `{index}` for its
    /// position (0-based) in enslave order.
    pub peer_name: String,
    pub peer_namespace: PeerNamespace,
    /// The device the peer ends are enslaved to, in the shared peer namespace.
    pub peer_master: Option<PeerMaster>,
}

const IFNAMSIZ: usize = 16;

fn valid_ifname(n: &str) -> bool {
    !n.is_empty() && n.len() < IFNAMSIZ && !n.contains(['/', ' ', ':'])
}

impl Topology {
    pub fn load(path: &Path) -> Result<Topology> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, &e))?;
        Topology::parse(path, &text)
    }

    /// Parses and checks the text of the topology file at `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Topology> {
        let mut t: Topology = toml::from_str(text).map_err(|e| Error::toml(path, text, &e))?;
        t.name = path
            .file_stem()
            .map_or(String::new(), |s| s.to_string_lossy().into_owned());
        t.path = path.to_path_buf();
        let peer_namespace = t.peer_namespace;
        if let Some(m) = &mut t.peer_master {
            // Errors about the table as a whole point at its header.
            let header = text
                .find("[peer-master")
                .or_else(|| text.find("peer-master"))
                .map_or((1, 1), |at| line_column(text, at));
            let at_header = |message: String| Error::input(path, header.0, header.1, message);
            if peer_namespace != PeerNamespace::Shared {
                return Err(at_header(
                    "a peer-master joins the peers in one namespace: it needs \
                     peer-namespace = \"shared\""
                        .into(),
                ));
            }
            if !valid_ifname(&m.name) {
                return Err(at_header(format!(
                    "peer-master name `{}` is not a valid interface name (under 16 bytes, no \
                     `/`, `:` or spaces)",
                    m.name
                )));
            }
            m.options = typed_options(m.kind, &m.written).map_err(|(span, message)| {
                let (line, column) = span.map_or(header, |s| line_column(text, s));
                Error::input(path, line, column, message)
            })?;
            for written in &m.written_addresses {
                let net = written.get_ref().parse().map_err(|message| {
                    let (line, column) = line_column(text, written.span().start);
                    Error::input(path, line, column, message)
                })?;
                m.addresses.push(net);
            }
        }
        Ok(t)
    }

    /// The peer end's name for each slave, checked against the kernel's name rules.
    pub fn peer_names(&self, slaves: &[String]) -> Result<Vec<String>> {
        let names: Vec<String> = slaves
            .iter()
            .enumerate()
            .map(|(i, s)| {
                self.peer_name
                    .replace("{slave}", s)
                    .replace("{index}", &i.to_string())
            })
            .collect();
        for (i, n) in names.iter().enumerate() {
            let clash = self.peer_namespace == PeerNamespace::Shared
                && (names[..i].contains(n)
                    || self.peer_master.as_ref().is_some_and(|m| m.name == *n));
            if !valid_ifname(n) || clash {
                return Err(Error::run(format!(
                    "{}: peer-name `{}` gives `{n}` for slave {}, which is not a valid, unique \
                     interface name",
                    self.path.display(),
                    self.peer_name,
                    slaves[i]
                )));
            }
        }
        Ok(names)
    }
}

/// An error message and the byte offset in the file it is about, where there is one.
type Located = (Option<usize>, String);

/// The peer master's options checked against the option catalogue: known names, values the
/// kernel accepts, and only options the peer bond's mode accepts. An error carries the byte
/// offset of the offending value, where there is one.
fn typed_options(
    kind: MasterKind,
    written: &BTreeMap<String, Spanned<toml::Value>>,
) -> std::result::Result<Vec<(&'static Opt, u64)>, Located> {
    if kind == MasterKind::Bridge {
        return match written.values().next() {
            Some(v) => Err((
                Some(v.span().start),
                "a bridge peer-master takes no options".into(),
            )),
            None => Ok(Vec::new()),
        };
    }
    let mut typed = BTreeMap::new();
    for (name, value) in written {
        let at = Some(value.span().start);
        let opt = options::by_name(name)
            .ok_or_else(|| (at, format!("`{name}` is not a bond option (the kernel's names: mode, miimon, lacp_rate, ...)")))?;
        typed.insert(
            opt.name,
            (
                opt,
                option_number(opt, value.get_ref()).map_err(|m| (at, m))?,
            ),
        );
    }
    let mode = typed
        .get("mode")
        .and_then(|(_, n)| Mode::from_number(*n as u8))
        .unwrap_or(Mode::BalanceRr);
    let mut out = Vec::new();
    // The catalogue's order puts the mode first.
    for o in options::OPTIONS {
        let Some(&(opt, n)) = typed.get(o.name) else {
            continue;
        };
        if !opt.accepted_in(mode) {
            return Err((
                Some(written[o.name].span().start),
                format!(
                    "`{}` is not accepted in mode {} (the kernel refuses it with EACCES)",
                    o.name,
                    mode.name()
                ),
            ));
        }
        out.push((opt, n));
    }
    Ok(out)
}

/// A TOML value as the number the kernel takes for `opt`: a whole number (or its digits in a
/// string) in range, or a word of the option's table.
fn option_number(opt: &Opt, value: &toml::Value) -> std::result::Result<u64, String> {
    let name = opt.name;
    let n = match value {
        toml::Value::Integer(n) => u64::try_from(*n).ok(),
        toml::Value::String(s) => s.parse::<u64>().ok(),
        _ => return Err(format!("`{name}` takes a number or a word, not {value}")),
    };
    match (opt.kind, n, value) {
        (Kind::Number { min, max }, Some(n), _) if (min..=max).contains(&n) => Ok(n),
        (Kind::Delay { max }, Some(n), _) if n <= max => Ok(n),
        (Kind::Number { min, max }, ..) => Err(format!(
            "`{name}` wants a whole number in {min}-{max}, not {value}"
        )),
        (Kind::Delay { max }, ..) => Err(format!(
            "`{name}` wants a whole number in 0-{max}, not {value}"
        )),
        (Kind::Word(table), n, value) => table
            .iter()
            .find(|(w, v)| Some(*v) == n || Some(*w) == value.as_str())
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let words: Vec<&str> = table.iter().map(|(w, _)| *w).collect();
                format!("`{name}` {value} is not one of: {}", words.join(", "))
            }),
        _ => Err(format!(
            "`{name}` cannot be set on a peer-master (numeric and worded options only)"
        )),
    }
}

/// A slave's peer end, where it lives and how to reach it.
pub struct Peer {
    pub slave: String,
    pub name: String,
    pub index: u32,
    pub handle: Handle,
    /// Position of its namespace in `Built::peer_ns`.
    ns: usize,
}

/// The device the peer ends are enslaved to, in the shared peer namespace.
pub struct Master {
    pub kind: MasterKind,
    pub name: String,
    pub index: u32,
    /// A netlink connection in the shared peer namespace.
    pub handle: Handle,
}

/// A built topology. Dropping it drops the namespaces and so everything in them, in the
/// kernel's own time; [`Built::teardown`] does the work first.
pub struct Built {
    pub bond_ns: AnonNetns,
    pub bond: Handle,
    pub peers: Vec<Peer>,
    /// The peer master, when the topology has one.
    pub peer_master: Option<Master>,
    /// Peer namespaces, kept alive as long as the topology.
    peer_ns: Vec<AnonNetns>,
}

impl Built {
    pub fn peer(&self, slave: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| p.slave == slave)
    }

    /// The namespace `peer` lives in (with a shared peer namespace, also the peer master's).
    pub fn peer_ns(&self, peer: &Peer) -> &AnonNetns {
        &self.peer_ns[peer.ns]
    }

    /// Deletes everything the case made, the bond's namespace first (its bond, slaves and with
    /// them their peer ends), then what is left in the peer namespaces (a peer master), and
    /// drops the namespaces once they hold only their loopback. Dropping them alone would leave
    /// the deletions to the kernel's namespace cleanup, which runs whenever it gets to it: in
    /// another lane's measurement window.
    pub async fn teardown(self) -> Result<()> {
        let mut handles = vec![&self.bond];
        for ns in 0..self.peer_ns.len() {
            handles.extend(self.peers.iter().find(|p| p.ns == ns).map(|p| &p.handle));
        }
        for h in handles {
            netlink::delete_links(h)
                .await
                .map_err(|r| Error::run(format!("teardown: deleting links: {r}")))?;
        }
        Ok(())
    }
}

/// Turns IPv6 off in `ns`, for interfaces that exist and interfaces yet to be made, so that
/// nothing in it transmits on its own (router and neighbour solicitations, MLD reports, DAD):
/// every frame on a slave or a peer is one the harness or the bonding driver sent. /proc/sys/net
/// follows the opener's namespace, so the writes are made from a thread inside `ns`. A kernel
/// without IPv6 has no such files and nothing to turn off.
fn disable_ipv6(ns: &AnonNetns) -> Result<()> {
    ns.run(|| {
        for scope in ["all", "default"] {
            let path = format!("/proc/sys/net/ipv6/conf/{scope}/disable_ipv6");
            match std::fs::write(&path, "1") {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(format!("cannot turn IPv6 off ({path}): {e}")),
            }
        }
        Ok(())
    })?
    .map_err(Error::run)
}

/// A new anonymous network namespace with IPv6 off.
pub(crate) fn new_namespace() -> Result<AnonNetns> {
    let ns = AnonNetns::new()?;
    disable_ipv6(&ns)?;
    Ok(ns)
}

/// Creates the peer master in its namespace, down, with its options set (a bond's before any
/// port joins: the mode and some options need a bond without slaves, or down).
async fn add_master(m: &PeerMaster, h: &Handle) -> Result<u32> {
    let kind = match m.kind {
        MasterKind::Bridge => "bridge",
        MasterKind::Bond => "bond",
    };
    let fail = |what: &str, r: netlink::Refusal| {
        // EOPNOTSUPP is the kernel's "Unknown device type": the driver is missing.
        let hint = if r.errno == "EOPNOTSUPP" {
            format!(" (is the kernel's {kind} driver loaded?)")
        } else {
            String::new()
        };
        Error::run(format!("{what} peer-master {} ({kind}): {r}{hint}", m.name))
    };
    match m.kind {
        MasterKind::Bridge => netlink::add_bridge(h, &m.name).await,
        MasterKind::Bond => netlink::add_bond(h, &m.name).await,
    }
    .map_err(|r| fail("creating", r))?;
    let index = netlink::index_of(h, &m.name)
        .await
        .map_err(|r| fail("finding", r))?;
    for (opt, n) in &m.options {
        netlink::set_option(h, index, opt, &Write::Number(*n))
            .await
            .map_err(|r| fail(&format!("setting {} {n} on", opt.name), r))?;
    }
    Ok(index)
}

/// The MAC address of the `i`-th slave's end (`side` 1), peer end (`side` 2) or client host
/// (`side` 3, [`crate::rlb`]): locally administered and fixed, so that every run of a case (and
/// every kernel) sees the same addresses, hashes and reports; a bond takes its first slave's.
pub(crate) fn mac(side: u8, i: usize) -> [u8; 6] {
    [0x02, 0xbc, 0, side, (i >> 8) as u8, i as u8]
}

/// The permanent MAC address of the `i`-th slave (in the spec's order).
pub fn slave_mac(i: usize) -> [u8; 6] {
    mac(1, i)
}

/// Creates the namespaces (IPv6 off in each), the peer master if any, and one veth pair per
/// slave with fixed MAC addresses; peer ends are up (enslaved to the peer master, if any, which is up too), slave ends
/// down (the bond refuses to enslave an interface that is up).
pub async fn build(topology: &Topology, slaves: &[String]) -> Result<Built> {
    let rt = tokio::runtime::Handle::current();
    let peer_names = topology.peer_names(slaves)?;
    let bond_ns = new_namespace()?;
    let bond = netlink::connect(&bond_ns, &rt)?;
    let namespaces = match topology.peer_namespace {
        PeerNamespace::PerSlave => slaves.len(),
        PeerNamespace::Shared => 1,
    };
    let peer_ns = (0..namespaces)
        .map(|_| new_namespace())
        .collect::<Result<Vec<_>>>()?;
    let handles = peer_ns
        .iter()
        .map(|ns| netlink::connect(ns, &rt))
        .collect::<Result<Vec<_>>>()?;
    // Loading validated that a peer master comes with one shared namespace.
    let mut peer_master = None;
    if let Some(m) = &topology.peer_master {
        let handle = handles[0].clone();
        peer_master = Some(Master {
            kind: m.kind,
            name: m.name.clone(),
            index: add_master(m, &handle).await?,
            handle,
        });
    }
    let mut peers = Vec::new();
    for (i, (slave, peer)) in slaves.iter().zip(&peer_names).enumerate() {
        let ns = i.min(namespaces - 1);
        let fail =
            |what: &str, r: netlink::Refusal| Error::run(format!("{what} {slave}/{peer}: {r}"));
        netlink::add_veth(&bond, (slave, mac(1, i)), (peer, mac(2, i)), &peer_ns[ns])
            .await
            .map_err(|r| fail("creating veth", r))?;
        let handle = handles[ns].clone();
        let index = netlink::index_of(&handle, peer)
            .await
            .map_err(|r| fail("finding peer", r))?;
        if let Some(m) = &peer_master {
            // The peer is still down, as a bond requires of a new port.
            netlink::enslave(&handle, index, m.index)
                .await
                .map_err(|r| fail(&format!("enslaving to {}", m.name), r))?;
        }
        netlink::set_up(&handle, index, true)
            .await
            .map_err(|r| fail("bringing up peer", r))?;
        peers.push(Peer {
            slave: slave.clone(),
            name: peer.clone(),
            index,
            handle,
            ns,
        });
    }
    if let (Some(m), Some(file)) = (&peer_master, &topology.peer_master) {
        netlink::set_up(&m.handle, m.index, true)
            .await
            .map_err(|r| Error::run(format!("bringing up peer-master {}: {r}", m.name)))?;
        for net in &file.addresses {
            netlink::add_address(&m.handle, m.index, *net)
                .await
                .map_err(|r| Error::run(format!("adding {net} to peer-master {}: {r}", m.name)))?;
        }
    }
    Ok(Built {
        bond_ns,
        bond,
        peers,
        peer_master,
        peer_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Topology> {
        Topology::parse(Path::new("veth-topologies/t.toml"), text)
    }

    const SHARED: &str =
        "description = \"d\"\npeer-name = \"swp{index}\"\npeer-namespace = \"shared\"\n";

    fn error(text: &str) -> String {
        parse(text).expect_err("an error").to_string()
    }

    #[test]
    fn the_shipped_topologies_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../veth-topologies");
        let load = |n: &str| Topology::load(&dir.join(format!("{n}.toml"))).unwrap();
        assert!(load("standalone").peer_master.is_none());
        let bridge = load("bridge").peer_master.unwrap();
        assert_eq!(
            (bridge.kind, bridge.bond_mode()),
            (MasterKind::Bridge, None)
        );
        let xor = load("static-aggregate").peer_master.unwrap();
        assert_eq!(xor.bond_mode(), Some(Mode::BalanceXor));
        let lacp = load("lacp-partner").peer_master.unwrap();
        assert_eq!(lacp.bond_mode(), Some(Mode::Ieee8023ad));
        assert_eq!(lacp.option("lacp_rate"), Some(1));
    }

    #[test]
    fn bond_options_are_typed_and_the_mode_comes_first() {
        let t = parse(&format!(
            "{SHARED}[peer-master]\nkind = \"bond\"\nname = \"switch0\"\n\
             options = {{ miimon = \"100\", lacp_rate = \"fast\", mode = \"802.3ad\", ad_select = 2 }}\n"
        ))
        .unwrap();
        let m = t.peer_master.unwrap();
        let set: Vec<(&str, u64)> = m.options.iter().map(|(o, n)| (o.name, *n)).collect();
        assert_eq!(
            set,
            [
                ("mode", 4),
                ("miimon", 100),
                ("lacp_rate", 1),
                ("ad_select", 2)
            ]
        );
    }

    #[test]
    fn the_arp_target_bridge_holds_its_addresses_and_bad_ones_name_their_line() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../veth-topologies");
        let arp = Topology::load(&dir.join("arp-target.toml")).unwrap();
        let m = arp.peer_master.unwrap();
        assert_eq!(m.kind, MasterKind::Bridge);
        let held: Vec<String> = m.addresses.iter().map(ToString::to_string).collect();
        assert_eq!(held, ["192.0.2.1/24", "192.0.2.2/24"]);
        assert_eq!(
            error(&format!(
                "{SHARED}[peer-master]\nkind = \"bridge\"\nname = \"br0\"\naddresses = [\"192.0.2.1\"]\n"
            )),
            "veth-topologies/t.toml:7:14: `192.0.2.1` is not an IPv4 address with a prefix (ADDR/PREFIX)"
        );
    }

    #[test]
    fn a_peer_master_needs_one_shared_namespace() {
        let text = "description = \"d\"\npeer-name = \"p\"\npeer-namespace = \"per-slave\"\n\n\
                    [peer-master]\nkind = \"bridge\"\nname = \"br0\"\n";
        assert_eq!(
            error(text),
            "veth-topologies/t.toml:5:1: a peer-master joins the peers in one namespace: it \
             needs peer-namespace = \"shared\""
        );
    }

    #[test]
    fn bad_kinds_names_options_and_values_are_errors_naming_the_file_and_line() {
        let master = |body: &str| format!("{SHARED}[peer-master]\n{body}\n");
        let cases = [
            (
                "kind = \"switch\"\nname = \"s\"",
                "veth-topologies/t.toml:5:8: unknown variant `switch`, expected `bridge` or `bond`",
            ),
            (
                "kind = \"bond\"\nname = \"a-name-far-too-long\"",
                "veth-topologies/t.toml:4:1: peer-master name `a-name-far-too-long` is not a valid \
                 interface name (under 16 bytes, no `/`, `:` or spaces)",
            ),
            (
                "kind = \"bridge\"\nname = \"br0\"\noptions = { stp = 1 }",
                "veth-topologies/t.toml:7:19: a bridge peer-master takes no options",
            ),
            (
                "kind = \"bond\"\nname = \"po1\"\noptions = { lacp-rate = \"fast\" }",
                "veth-topologies/t.toml:7:25: `lacp-rate` is not a bond option (the kernel's names: \
                 mode, miimon, lacp_rate, ...)",
            ),
            (
                "kind = \"bond\"\nname = \"po1\"\noptions = { mode = \"lacp\" }",
                "veth-topologies/t.toml:7:20: `mode` \"lacp\" is not one of: balance-rr, \
                 active-backup, balance-xor, broadcast, 802.3ad, balance-tlb, balance-alb",
            ),
            (
                "kind = \"bond\"\nname = \"po1\"\noptions = { miimon = -5 }",
                "veth-topologies/t.toml:7:22: `miimon` wants a whole number in 0-2147483647, not -5",
            ),
            (
                "kind = \"bond\"\nname = \"po1\"\noptions = { mode = \"balance-xor\", lacp_rate = \"fast\" }",
                "veth-topologies/t.toml:7:47: `lacp_rate` is not accepted in mode balance-xor (the \
                 kernel refuses it with EACCES)",
            ),
            (
                "kind = \"bond\"\nname = \"po1\"\noptions = { arp_ip_target = \"10.0.0.1\" }",
                "veth-topologies/t.toml:7:29: `arp_ip_target` cannot be set on a peer-master \
                 (numeric and worded options only)",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(error(&master(body)), want, "{body}");
        }
    }

    #[test]
    fn peer_names_must_not_clash_with_the_peer_master() {
        let t = parse(&format!(
            "{SHARED}[peer-master]\nkind = \"bridge\"\nname = \"swp1\"\n"
        ))
        .unwrap();
        let slaves = ["a".to_string(), "b".to_string()];
        let e = t.peer_names(&slaves).unwrap_err().to_string();
        assert!(e.contains("gives `swp1` for slave b"), "{e}");
    }
}
