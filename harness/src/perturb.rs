//! Negative controls: real deviations made to a real bond behind the applier's back, so a check
//! that should catch them can be seen to fail.

use crate::error::{Error, Result};
use crate::netlink::{self, BondOptions};
use crate::spec::Spec;
use crate::suite::Change;
use crate::topology::Built;

/// Makes `change` on the bond (index `bond`). A change the kernel refuses is an error: the
/// control did not happen, so it cannot prove anything.
pub async fn perturb(change: &Change, spec: &Spec, built: &Built, bond: u32) -> Result<()> {
    let h = &built.bond;
    let refused = |r: netlink::Refusal| {
        Error::run(format!(
            "perturbation {change:?} refused by the kernel: {r}"
        ))
    };
    match change {
        Change::SetMiimon(v) => {
            netlink::change_bond(
                h,
                bond,
                &BondOptions {
                    miimon: Some(*v),
                    ..Default::default()
                },
            )
            .await
        }
        Change::SetUpdelay(v) => {
            netlink::change_bond(
                h,
                bond,
                &BondOptions {
                    updelay: Some(*v),
                    ..Default::default()
                },
            )
            .await
        }
        Change::SetDowndelay(v) => {
            netlink::change_bond(
                h,
                bond,
                &BondOptions {
                    downdelay: Some(*v),
                    ..Default::default()
                },
            )
            .await
        }
        Change::SetMode(mode) => {
            // The kernel changes the mode only on a bond that is down and has no slaves.
            let mut slaves = Vec::new();
            for s in &spec.bond.slaves {
                slaves.push(netlink::index_of(h, &s.value).await.map_err(refused)?);
            }
            netlink::set_up(h, bond, false).await.map_err(refused)?;
            for s in &slaves {
                netlink::release(h, *s).await.map_err(refused)?;
            }
            netlink::change_bond(
                h,
                bond,
                &BondOptions {
                    mode: Some(*mode),
                    ..Default::default()
                },
            )
            .await
            .map_err(refused)?;
            for s in &slaves {
                netlink::enslave(h, *s, bond).await.map_err(refused)?;
            }
            netlink::set_up(h, bond, true).await
        }
        Change::SetPrimary(name) => {
            let slave = netlink::index_of(h, name).await.map_err(refused)?;
            netlink::set_primary(h, bond, slave).await
        }
        Change::PeerDown(slave) => {
            let peer = built.peer(slave).ok_or_else(|| {
                Error::run(format!(
                    "perturbation names slave {slave}, which the topology lacks"
                ))
            })?;
            netlink::set_up(&peer.handle, peer.index, false).await
        }
        Change::FlushAddress => netlink::flush_ipv4(h, bond).await,
    }
    .map_err(refused)
}
