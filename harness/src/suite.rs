//! Suite cases: data files that say which spec to verify on which topology, and, for negative
//! controls, which real deviation to inject into the bond and which checks must then fail.
//!
//! A case is a folder holding `case.toml` (format in suites/README.md). A plain interfaces(5)
//! file given on the command line is a case too, on the default topology of its mode.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::ifenslave::Applier;
use crate::options::{self, Kind};
use crate::spec::{self, Mode, Spec};
use crate::topology::Topology;

/// The file that makes a folder a suite case.
pub const CASE_FILE: &str = "case.toml";
/// The topology a case runs on when it names none: the switch side the driver documentation
/// (Documentation/networking/bonding.rst, "Switch Configuration") asks for in the bond's mode,
/// and why.
pub fn default_topology(mode: Mode) -> (&'static str, String) {
    let (name, why) = match mode {
        Mode::Ieee8023ad => (
            "lacp-partner",
            "802.3ad needs a switch that speaks LACP (an LACP port channel)",
        ),
        Mode::BalanceRr | Mode::BalanceXor | Mode::Broadcast => (
            "static-aggregate",
            "the mode needs the switch ports grouped as a static aggregate (EtherChannel \"mode on\")",
        ),
        Mode::ActiveBackup | Mode::BalanceTlb | Mode::BalanceAlb => {
            ("standalone", "the mode needs no switch configuration")
        }
    };
    (name, format!("default for mode {}: {why}", mode.name()))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct CaseFile {
    description: String,
    /// Path of the interfaces(5) file, relative to the case folder.
    spec: PathBuf,
    /// Name of a file in veth-topologies/ (without `.toml`); the mode's default if left out.
    topology: Option<String>,
    #[serde(default)]
    profile: Profile,
    timing: Option<Timing>,
    #[serde(default)]
    traffic: Traffic,
    negative_control: Option<NegativeControlFile>,
}

/// Which runs include a case: every run, or only `bondcheck run --profile long` (cases that
/// wait tens of seconds for the kernel, such as slow LACPDUs every 30 s). Ordered: a run
/// includes the cases of its profile and of the profiles below it.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Deserialize,
    serde::Serialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    #[default]
    Default,
    Long,
}

/// A case that measures link monitor timing: which slave's carrier to cut (the first slave by
/// default). The number of trials comes from `bondcheck run --trials`.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Timing {
    pub slave: Option<String>,
}

/// The frames every case sends through its bond: how many, over how many flows, from which
/// seed, and which slaves are cut (and committed down by the driver) before sending.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
#[schemars(rename = "TrafficSettings")]
pub struct Traffic {
    /// Frames sent through the bond.
    pub frames: usize,
    /// Distinct flows they are spread over.
    pub flows: usize,
    /// The flow mix's seed: the same seed gives the same bytes.
    pub seed: u64,
    /// Slaves cut (peer end down) and committed down by the driver before sending.
    pub down: Vec<String>,
    /// VLAN ids: a VLAN device on top of the bond for each, and flows taking turns untagged
    /// and on each VLAN.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vlans: Vec<u16>,
}

impl Default for Traffic {
    fn default() -> Traffic {
        Traffic {
            frames: 256,
            flows: 64,
            seed: 1,
            down: Vec::new(),
            vlans: Vec::new(),
        }
    }
}

/// More frames than this per case is a benchmark, not a check.
const MAX_FRAMES: usize = 1 << 20;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct NegativeControlFile {
    must_fail: Vec<String>,
    perturb: Vec<PerturbationFile>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct PerturbationFile {
    at: Moment,
    action: String,
    value: Option<toml::Value>,
}

/// A deliberate deviation and the checks it must make fail, no more and no fewer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NegativeControl {
    pub must_fail: Vec<String>,
    pub perturb: Vec<Perturbation>,
}

/// One change made to the real bond behind the applier's back, and when.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Perturbation {
    /// When the change is made.
    pub at: Moment,
    /// What is changed.
    pub change: Change,
}

/// When in a case a perturbation is made.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Moment {
    /// After the topology is built, before the spec is applied.
    BeforeApply,
    /// After the spec has been applied, before anything is observed.
    AfterApply,
    /// After the netlink view was read and before /proc is read.
    BetweenViews,
    /// After both views were read, before frames are sent through the bond.
    BeforeTraffic,
}

/// A perturbation: the change made to the real bond.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// Write a numeric or worded option (`set-updelay`, `set-xmit-hash-policy`, ...).
    Set { option: &'static str, value: u64 },
    /// Release the slaves, change the mode, enslave them again.
    SetMode(Mode),
    /// Set the primary slave.
    SetPrimary(String),
    /// Make a slave the active one (modes with an active slave).
    SetActiveSlave(String),
    /// Take a slave's peer end down, so the slave loses carrier.
    PeerDown(String),
    /// Give a slave another MAC address, as an admin's `ip link set address` would.
    SetSlaveMac { slave: String, mac: [u8; 6] },
    /// Delete a slave's veth pair, so it cannot be enslaved.
    DeleteSlave(String),
    /// Release a slave's peer end from the topology's peer master, leaving it up: that port of
    /// the switch leaves the aggregate (or the bridge) while the link stays up.
    ReleasePeer(String),
    /// Remove the bond's IPv4 addresses.
    FlushAddress,
    /// Ask the bond, through sysfs as ifenslave does, to enslave itself: the kernel refuses and
    /// logs an error.
    EnslaveBondToItself,
}

impl PerturbationFile {
    fn typed(&self) -> std::result::Result<Perturbation, String> {
        let text = || match &self.value {
            Some(toml::Value::String(s)) => Ok(s.clone()),
            _ => Err(format!("`{}` needs a string `value`", self.action)),
        };
        let change = match self.action.as_str() {
            "set-mode" => {
                let name = text()?;
                Change::SetMode(Mode::parse(&name).ok_or(format!("unknown mode `{name}`"))?)
            }
            "set-primary" => Change::SetPrimary(text()?),
            "peer-down" => Change::PeerDown(text()?),
            "set-slave-mac" => {
                let value = text()?;
                let bad = || format!("`set-slave-mac` needs `SLAVE MAC`, not `{value}`");
                let (slave, mac) = value.split_once(' ').ok_or_else(bad)?;
                Change::SetSlaveMac {
                    slave: slave.to_string(),
                    mac: parse_mac(mac.trim()).ok_or_else(bad)?,
                }
            }
            "delete-slave" => Change::DeleteSlave(text()?),
            "release-peer" => Change::ReleasePeer(text()?),
            "set-active-slave" => Change::SetActiveSlave(text()?),
            "flush-address" => Change::FlushAddress,
            "enslave-bond-to-itself" => Change::EnslaveBondToItself,
            action => {
                let opt = action
                    .strip_prefix("set-")
                    .and_then(|o| options::by_name(&o.replace('-', "_")))
                    .filter(|o| {
                        matches!(
                            o.kind,
                            Kind::Number { .. } | Kind::Delay { .. } | Kind::Word(_)
                        )
                    })
                    .ok_or(format!("unknown perturbation `{action}`"))?;
                let value = match (&self.value, opt.kind) {
                    (Some(toml::Value::Integer(n)), _) => {
                        u64::try_from(*n).map_err(|_| format!("{n} is out of range"))?
                    }
                    (Some(toml::Value::String(w)), Kind::Word(table)) => table
                        .iter()
                        .find(|(name, _)| name == w)
                        .map(|(_, v)| *v)
                        .ok_or(format!("`{w}` is not a value of {}", opt.name))?,
                    _ => return Err(format!("`{action}` needs a `value`")),
                };
                Change::Set {
                    option: opt.name,
                    value,
                }
            }
        };
        Ok(Perturbation {
            at: self.at,
            change,
        })
    }
}

/// `aa:bb:cc:dd:ee:ff` as six bytes.
fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| {
            (b.len() == 2)
                .then(|| u8::from_str_radix(b, 16).ok())
                .flatten()
        })
        .collect::<Option<_>>()?;
    bytes.try_into().ok()
}

/// A case ready to run.
#[derive(Debug, Clone)]
pub struct Case {
    /// Path of the case folder (or spec file) relative to where it was found, e.g.
    /// `debian-howto` or `negative-controls/updelay-changed`.
    pub name: String,
    pub path: PathBuf,
    pub description: String,
    pub spec: Spec,
    pub topology: Topology,
    /// Why the case runs on its topology when it did not name one ("default for mode ...").
    pub topology_default: Option<String>,
    pub profile: Profile,
    pub timing: Option<Timing>,
    pub traffic: Traffic,
    pub negative_control: Option<NegativeControl>,
}

impl Case {
    /// Every check this case gives, in report order, known before anything runs.
    pub fn check_ids(&self, applier: Applier) -> Vec<String> {
        check_ids(&self.spec, &self.topology, self.timing.is_some(), applier)
    }

    /// The slave whose carrier the timing trials cut.
    pub fn timing_slave(&self) -> Option<&str> {
        let t = self.timing.as_ref()?;
        t.slave
            .as_deref()
            .or_else(|| self.spec.bond.slaves.first().map(|s| s.value.as_str()))
    }
}

/// Finds the cases under `path`: a case folder, a folder of case folders (searched
/// recursively, in name order), a `case.toml`, or a plain interfaces file.
pub fn discover(path: &Path, topologies: &Path) -> Result<Vec<Case>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::file(path, &e))?;
    let mut out = Vec::new();
    if meta.is_dir() {
        walk(path, path, topologies, &mut out)?;
        if out.is_empty() {
            return Err(Error::File {
                path: path.into(),
                message: format!("no {CASE_FILE} below this folder"),
            });
        }
    } else if path.file_name().is_some_and(|n| n == CASE_FILE) {
        let dir = path.parent().unwrap_or(Path::new("."));
        out.push(load_case(dir, &display_name(dir), topologies)?);
    } else {
        let spec = spec::load(path)?;
        let (topology, why) = default_topology(effective_mode(&spec));
        out.push(Case {
            name: display_name(path),
            path: path.to_path_buf(),
            description: "interfaces file given on the command line".into(),
            spec,
            topology: Topology::load(&topologies.join(format!("{topology}.toml")))?,
            topology_default: Some(why),
            profile: Profile::Default,
            timing: None,
            traffic: Traffic::default(),
            negative_control: None,
        });
    }
    Ok(out)
}

/// The model's checks, the LACP checks of an 802.3ad bond (with an LACP partner or none), and for timing
/// cases the timing checks and, where the mode has an active slave, the failover checks (and
/// in active-backup, where the model can judge them, the addresses).
fn check_ids(spec: &Spec, topology: &Topology, timing: bool, applier: Applier) -> Vec<String> {
    let model = crate::model::predict(spec, applier);
    let mut ids = model.check_ids();
    if crate::lacp::applies(&model, topology) {
        let slaves: Vec<String> = spec.bond.slaves.iter().map(|s| s.value.clone()).collect();
        ids.extend(crate::lacp::check_ids(&slaves));
        ids.extend(crate::lacpdu::check_ids(&slaves));
    }
    if crate::partnerless::applies(&model, topology) {
        ids.extend(crate::partnerless::check_ids(&model.transmit.slaves));
    }
    if crate::min_links::plan(&model, topology).is_some() {
        ids.push(crate::min_links::CHECK.to_string());
    }
    if crate::rlb::applies(&model, spec, topology) {
        ids.push(crate::rlb::CHECK.to_string());
    }
    if timing {
        let windows = match model.arp {
            Some(_) => crate::arpmon::CHECKS,
            None => crate::checks::TIMING,
        };
        ids.extend(windows.iter().map(|c| c.to_string()));
        ids.push(crate::checks::LINK_FAILURES.to_string());
        if model.judged_selection().is_some() {
            ids.extend(crate::model::FAILOVER.iter().map(|c| c.to_string()));
        }
        if model.monitor.down_ticks > 0 {
            ids.push(crate::checks::FLAP.to_string());
        }
        // The stream's cut takes the carrier, which only the MII monitor sees.
        if model.arp.is_none()
            && crate::distribution::failover_unpredictable(&model.transmit).is_none()
        {
            ids.push(crate::failover::CHECK.to_string());
            if model.transmit.mode == Mode::ActiveBackup {
                ids.push(crate::failover::EVENT.to_string());
            }
            if model.peer_notify.is_some() {
                ids.push(crate::failover::PEER_NOTIFY.to_string());
            }
        }
        // Which address each holds follows the active slave: judged where the selection is.
        if model.fail_over_mac.is_some() && model.judged_selection().is_some() {
            ids.push(crate::fail_over_mac::CHECK.to_string());
        }
    }
    ids
}

/// What the ARP monitor's timing trials need and `topology` lacks, if anything: a bridge
/// holding every target, so that a blocked port silences them all for the slave behind it
/// (veth-topologies/arp-target.toml), and a second slave, so that the bond keeps an active
/// slave whose requests reach a restored one (with one slave the probe's rotation decides).
fn arp_timing_unsupported(arp: &crate::arpmon::ArpMonitor, topology: &Topology) -> Option<String> {
    let bridge = topology
        .peer_master
        .as_ref()
        .filter(|m| m.kind == crate::topology::MasterKind::Bridge);
    let Some(bridge) = bridge else {
        return Some("a bridge as peer master, holding the ARP targets".into());
    };
    let held = |t: &std::net::Ipv4Addr| bridge.addresses.iter().any(|a| a.addr == *t);
    if let Some(t) = arp.targets.iter().find(|t| !held(t)) {
        return Some(format!(
            "arp_ip_target {t} among the peer master's addresses"
        ));
    }
    if arp.targets.is_empty() {
        return Some("an arp_ip_target".into());
    }
    (arp.slaves.len() < 2).then(|| "two slaves or more".into())
}

/// The mode the bond will be in (the model's), which decides its default topology.
fn effective_mode(spec: &Spec) -> Mode {
    crate::model::predict(spec, Applier::Netlink).transmit.mode
}

fn display_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn walk(root: &Path, dir: &Path, topologies: &Path, out: &mut Vec<Case>) -> Result<()> {
    if dir.join(CASE_FILE).is_file() {
        let name = match dir.strip_prefix(root) {
            Ok(rel) if !rel.as_os_str().is_empty() => rel.display().to_string(),
            _ => display_name(dir),
        };
        out.push(load_case(dir, &name, topologies)?);
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::file(dir, &e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    entries.sort();
    for sub in entries {
        walk(root, &sub, topologies, out)?;
    }
    Ok(())
}

fn load_case(dir: &Path, name: &str, topologies: &Path) -> Result<Case> {
    let file = dir.join(CASE_FILE);
    let text = std::fs::read_to_string(&file).map_err(|e| Error::file(&file, &e))?;
    let parsed: CaseFile = toml::from_str(&text).map_err(|e| Error::toml(&file, &text, &e))?;
    let line_of = |key: &str| {
        let at = text.find(&format!("\n{key}")).map_or(0, |i| i + 1);
        crate::error::line_column(&text, at).0
    };
    let spec_path = dir.join(&parsed.spec);
    let spec = spec::load(&spec_path).map_err(|e| match e {
        Error::File { message, .. } => Error::input(
            &file,
            line_of("spec"),
            1,
            format!("spec {}: {message}", spec_path.display()),
        ),
        other => other,
    })?;
    let (topology_name, topology_default) = match &parsed.topology {
        Some(name) => (name.clone(), None),
        None => {
            let (name, why) = default_topology(effective_mode(&spec));
            (name.to_string(), Some(why))
        }
    };
    let topo_path = topologies.join(format!("{topology_name}.toml"));
    if !topo_path.is_file() {
        return Err(Error::input(
            &file,
            line_of("topology"),
            1,
            format!(
                "no topology `{topology_name}` ({} does not exist)",
                topo_path.display()
            ),
        ));
    }
    let topology = Topology::load(&topo_path)?;
    if let Some(Timing { slave: Some(name) }) = &parsed.timing {
        if !spec.bond.slaves.iter().any(|s| &s.value == name) {
            return Err(Error::input(
                &file,
                line_of("slave"),
                1,
                format!("timing slave `{name}` is not a slave of the spec"),
            ));
        }
    }
    if parsed.timing.is_some()
        && let Some(arp) = crate::model::predict(&spec, Applier::Netlink).arp
        && let Some(missing) = arp_timing_unsupported(&arp, &topology)
    {
        return Err(Error::input(
            &file,
            line_of("[timing]"),
            1,
            format!("timing under ARP monitoring needs {missing} (topology `{topology_name}`)"),
        ));
    }
    let traffic = &parsed.traffic;
    let bad_traffic =
        |key: &str, message: String| Err(Error::input(&file, line_of(key), 1, message));
    if !(1..=MAX_FRAMES).contains(&traffic.frames) {
        return bad_traffic("frames", format!("frames must be 1 to {MAX_FRAMES}"));
    }
    if traffic.flows == 0 {
        return bad_traffic("flows", "flows must be at least 1".into());
    }
    for name in &traffic.down {
        if !spec.bond.slaves.iter().any(|s| &s.value == name) {
            return bad_traffic(
                "down",
                format!("traffic down slave `{name}` is not a slave of the spec"),
            );
        }
    }
    for (i, id) in traffic.vlans.iter().enumerate() {
        if !(1..=4094).contains(id) {
            return bad_traffic("vlans", format!("VLAN id {id} is not in 1-4094"));
        }
        if traffic.vlans[..i].contains(id) {
            return bad_traffic("vlans", format!("VLAN id {id} is listed twice"));
        }
    }
    if !traffic.down.is_empty() && parsed.timing.is_some() {
        return bad_traffic(
            "down",
            "a timing case cuts its own slave: it cannot also keep slaves down for traffic".into(),
        );
    }
    if !traffic.down.is_empty()
        && crate::model::predict(&spec, Applier::Netlink)
            .monitor
            .miimon_ms
            == 0
    {
        return bad_traffic(
            "down",
            "cutting slaves needs MII monitoring (bond-miimon): without it the driver never takes a slave out".into(),
        );
    }
    let negative_control = match &parsed.negative_control {
        None => None,
        Some(nc) => {
            let ids = check_ids(&spec, &topology, parsed.timing.is_some(), Applier::Netlink);
            let at = line_of("must-fail");
            for id in &nc.must_fail {
                if !ids.contains(id) {
                    return Err(Error::input(
                        &file,
                        at,
                        1,
                        format!(
                            "must-fail names `{id}`, which is not a check of this spec ({})",
                            ids.join(", ")
                        ),
                    ));
                }
            }
            if nc.perturb.is_empty() {
                return Err(Error::input(
                    &file,
                    at,
                    1,
                    "a negative control needs a perturbation",
                ));
            }
            let perturb = nc
                .perturb
                .iter()
                .map(|p| {
                    p.typed().map_err(|m| {
                        Error::input(&file, line_of("[[negative-control.perturb]]"), 1, m)
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Some(NegativeControl {
                must_fail: nc.must_fail.clone(),
                perturb,
            })
        }
    };
    Ok(Case {
        name: name.to_string(),
        path: dir.to_path_buf(),
        description: parsed.description,
        spec,
        topology,
        topology_default,
        profile: parsed.profile,
        timing: parsed.timing,
        traffic: parsed.traffic,
        negative_control,
    })
}

#[cfg(test)]
mod default_topology_tests {
    use super::*;

    #[test]
    fn a_plain_interfaces_file_gets_its_modes_switch_side() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let load = |spec: &str| {
            let cases = discover(&root.join(spec), &root.join("veth-topologies")).unwrap();
            (
                cases[0].topology.name.clone(),
                cases[0].topology_default.clone(),
            )
        };
        let (name, why) = load("suites/modes/802.3ad-lacp-partner/interfaces");
        assert_eq!(name, "lacp-partner");
        assert_eq!(
            why.unwrap(),
            "default for mode 802.3ad: 802.3ad needs a switch that speaks LACP (an LACP port channel)"
        );
        assert_eq!(load("suites/debian-howto/interfaces").0, "static-aggregate");
        assert_eq!(
            load("suites/modes/active-backup/interfaces").0,
            "standalone"
        );
        // A case that names its topology keeps it, with no default stated.
        assert_eq!(load("suites/modes/802.3ad").1, None);
    }
}

#[cfg(test)]
mod perturbation_tests {
    use super::*;

    fn typed(action: &str, value: &str) -> std::result::Result<Change, String> {
        PerturbationFile {
            at: Moment::BeforeTraffic,
            action: action.into(),
            value: Some(toml::Value::String(value.into())),
        }
        .typed()
        .map(|p| p.change)
    }

    #[test]
    fn set_slave_mac_takes_a_slave_and_an_address() {
        assert_eq!(
            typed("set-slave-mac", "eno2 02:bc:00:0f:00:01"),
            Ok(Change::SetSlaveMac {
                slave: "eno2".into(),
                mac: [0x02, 0xbc, 0, 0x0f, 0, 1]
            })
        );
        for bad in [
            "eno2",
            "eno2 02:bc:00:0f:00",
            "eno2 02:bc:00:0f:00:1g",
            "eno2 2:bc:0:f:0:1",
        ] {
            assert!(typed("set-slave-mac", bad).is_err(), "{bad}");
        }
    }
}
