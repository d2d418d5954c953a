//! What the kernel shows of a bond: its netlink view (IFLA_BOND_*, IFLA_BOND_SLAVE_*) and its
//! /proc/net/bonding view, in one shape so checks can compare them field by field.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rtnetlink::Handle;

use crate::error::{Error, Result};
use crate::model::Value;
use crate::netlink;
use crate::netns::AnonNetns;
use crate::procfs::{self, ProcBond};

/// A bond as one of the kernel's views reports it. A field is absent (None, or missing from
/// `options`) where that view does not show it; comparisons skip such fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct BondView {
    /// Bond parameters by kernel name (`miimon`, `xmit_hash_policy`, ...), in the model's words.
    pub options: BTreeMap<String, Value>,
    /// Whether the bond is administratively up.
    pub up: Option<bool>,
    /// Whether the bond has carrier (netlink only).
    pub carrier: Option<bool>,
    /// The bond's MAC address now (IFLA_ADDRESS; netlink only).
    pub mac: Option<String>,
    /// The slaves, in enslave order.
    pub slaves: Vec<SlaveView>,
}

/// One slave as a view of the bond reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct SlaveView {
    /// The slave's interface name.
    pub name: String,
    /// "up", "going down", "down" or "going back", as /proc/net/bonding words it.
    pub mii_status: Option<String>,
    /// "active" or "backup".
    pub state: Option<String>,
    /// How often the link monitor saw the slave's link fail.
    pub link_failure_count: Option<u32>,
    /// The slave's own MAC address, before the bond changed it.
    pub perm_hwaddr: Option<String>,
    /// The slave's MAC address now (IFLA_ADDRESS; netlink only): fail_over_mac's doing.
    pub mac: Option<String>,
    /// The slave's transmit queue id.
    pub queue_id: Option<u16>,
    /// Failover priority (netlink only).
    pub prio: Option<i32>,
}

impl BondView {
    pub fn slave(&self, name: &str) -> Option<&SlaveView> {
        self.slaves.iter().find(|s| s.name == name)
    }

    /// What the link monitor changes on its own, without any write: the active slave, the
    /// bond's carrier and address, each slave's state, link failures and address. Settings are
    /// not part of it.
    pub fn link_state(&self) -> impl PartialEq + '_ {
        let slaves: Vec<_> = self
            .slaves
            .iter()
            .map(|s| (&s.mii_status, &s.state, s.link_failure_count, &s.mac))
            .collect();
        (
            self.options.get("active_slave"),
            self.carrier,
            &self.mac,
            slaves,
        )
    }

    /// The MAC address of the bond (under `bond`) and of every slave, where the view shows them.
    pub fn macs(&self, bond: &str) -> BTreeMap<String, String> {
        let slaves = self.slaves.iter().map(|s| (s.name.as_str(), &s.mac));
        std::iter::once((bond, &self.mac))
            .chain(slaves)
            .filter_map(|(name, mac)| Some((name.to_string(), mac.clone()?)))
            .collect()
    }
}

/// The netlink view once `settled` holds, or at `deadline` whatever it is then. Polls with
/// one link dump per round: slave FAIL/BACK states are not announced by the kernel, so waiting
/// on events alone could not see them (kernel-bonding.md §4.3).
pub async fn netlink_view_settled(
    h: &Handle,
    bond: &str,
    deadline: Duration,
    settled: impl Fn(&BondView) -> bool,
) -> Result<(BondView, Duration)> {
    const POLL: Duration = Duration::from_millis(10);
    let start = Instant::now();
    loop {
        let view = netlink_view(h, bond).await?;
        let waited = start.elapsed();
        if settled(&view) || waited >= deadline {
            return Ok((view, waited));
        }
        tokio::time::sleep(POLL.min(deadline - waited)).await;
    }
}

/// The netlink view now (one link dump).
pub async fn netlink_view(h: &Handle, bond: &str) -> Result<BondView> {
    let links = netlink::links(h)
        .await
        .map_err(|r| Error::run(format!("link dump refused: {r}")))?;
    netlink::bond_view(&links, bond)
        .ok_or_else(|| Error::run(format!("bond {bond} is gone from its namespace")))
}

/// Reads and parses `/proc/net/bonding/<bond>` as seen from inside `ns`.
pub fn procfs_view(ns: &AnonNetns, bond: &str) -> Result<ProcBond> {
    // /proc/net follows the thread-group leader's namespace, /proc/thread-self/net this thread's.
    let path = format!("/proc/thread-self/net/bonding/{bond}");
    let text = ns
        .run(|| std::fs::read_to_string(&path))?
        .map_err(|e| Error::run(format!("cannot read {path} in the bond's namespace: {e}")))?;
    procfs::parse(&text).map_err(|e| Error::run(format!("{path}: {e}")))
}
