//! Negative controls: real deviations made to a real bond behind the applier's back, so a check
//! that should catch them can be seen to fail.

use crate::error::{Error, Result};
use crate::ifenslave::Write;
use crate::netlink;
use crate::options::{self, Opt};
use crate::spec::Spec;
use crate::suite::Change;
use crate::topology::Built;

/// Makes `change` on the bond (index `bond`, None before the bond exists). A change the kernel
/// refuses is an error: the control did not happen, so it cannot prove anything.
pub async fn perturb(change: &Change, spec: &Spec, built: &Built, bond: Option<u32>) -> Result<()> {
    let no_bond = || {
        Error::run(format!(
            "perturbation {change:?} needs the bond, which does not exist yet"
        ))
    };
    let h = &built.bond;
    let refused = |r: netlink::Refusal| {
        Error::run(format!(
            "perturbation {change:?} refused by the kernel: {r}"
        ))
    };
    match change {
        Change::Set { option, value } => {
            let bond = bond.ok_or_else(no_bond)?;
            let opt = catalogued(option);
            // The kernel changes an IFDOWN option (lacp_rate, lacp_active, ...) only on a bond
            // that is down: take it down around the write, as an admin would have to.
            if opt.flags.if_down {
                netlink::set_up(h, bond, false).await.map_err(refused)?;
            }
            match netlink::set_option(h, bond, opt, &Write::Number(*value)).await {
                Ok(()) if opt.flags.if_down => netlink::set_up(h, bond, true).await,
                other => other,
            }
        }
        Change::SetMode(mode) => {
            let bond = bond.ok_or_else(no_bond)?;
            // The kernel changes the mode only on a bond that is down and has no slaves.
            let mut slaves = Vec::new();
            for s in &spec.bond.slaves {
                slaves.push(netlink::index_of(h, &s.value).await.map_err(refused)?);
            }
            netlink::set_up(h, bond, false).await.map_err(refused)?;
            for s in &slaves {
                netlink::release(h, *s).await.map_err(refused)?;
            }
            netlink::set_option(
                h,
                bond,
                catalogued("mode"),
                &Write::Number(mode.number().into()),
            )
            .await
            .map_err(refused)?;
            for s in &slaves {
                netlink::enslave(h, *s, bond).await.map_err(refused)?;
            }
            netlink::set_up(h, bond, true).await
        }
        Change::SetPrimary(name) => {
            let bond = bond.ok_or_else(no_bond)?;
            netlink::set_option(
                h,
                bond,
                catalogued("primary"),
                &Write::Slave(Some(name.clone())),
            )
            .await
        }
        Change::SetActiveSlave(name) => {
            let bond = bond.ok_or_else(no_bond)?;
            netlink::set_option(
                h,
                bond,
                catalogued("active_slave"),
                &Write::Slave(Some(name.clone())),
            )
            .await
        }
        Change::PeerDown(slave) => {
            let peer = built.peer(slave).ok_or_else(|| {
                Error::run(format!(
                    "perturbation names slave {slave}, which the topology lacks"
                ))
            })?;
            netlink::set_up(&peer.handle, peer.index, false).await
        }
        Change::SetSlaveMac { slave, mac } => match netlink::index_of(h, slave).await {
            Ok(index) => netlink::set_mac(h, index, *mac).await,
            Err(r) => Err(r),
        },
        Change::DeleteSlave(slave) => match netlink::index_of(h, slave).await {
            Ok(index) => netlink::delete(h, index).await,
            Err(r) => Err(r),
        },
        Change::ReleasePeer(slave) => {
            let (Some(peer), Some(master)) = (built.peer(slave), &built.peer_master) else {
                return Err(Error::run(format!(
                    "perturbation {change:?} needs slave {slave}'s peer under a peer-master, \
                     which the topology lacks"
                )));
            };
            // Released ports may be closed by their master; the link must stay up.
            match netlink::release(&master.handle, peer.index).await {
                Ok(()) => netlink::set_up(&peer.handle, peer.index, true).await,
                Err(r) => Err(r),
            }
        }
        Change::FlushAddress => netlink::flush_ipv4(h, bond.ok_or_else(no_bond)?).await,
        Change::EnslaveBondToItself => {
            let name = &spec.bond.name;
            return match sysfs_write(
                built,
                &format!("{name}/bonding/slaves"),
                &format!("+{name}"),
            )? {
                Err(_) => Ok(()),
                Ok(()) => Err(Error::run(format!(
                    "perturbation {change:?}: the kernel accepted {name} as its own slave"
                ))),
            };
        }
    }
    .map_err(refused)
}

/// Writes `value` to /sys/class/net/`file` as seen from the bond's namespace: on a thread that
/// enters that namespace and a private mount namespace of its own, with a sysfs of the bond's
/// namespace mounted over /sys there (the mounts go with the thread). Returns the write's own
/// result.
fn sysfs_write(built: &Built, file: &str, value: &str) -> Result<std::io::Result<()>> {
    use nix::mount::{MsFlags, mount};
    let (file, value) = (file.to_string(), value.to_string());
    built.bond_ns.run(move || -> Result<std::io::Result<()>> {
        let os =
            |what: &'static str| move |e: nix::Error| Error::run(format!("sysfs: {what}: {e}"));
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(os("unshare"))?;
        let private = MsFlags::MS_REC | MsFlags::MS_PRIVATE;
        mount(None::<&str>, "/", None::<&str>, private, None::<&str>).map_err(os("private"))?;
        mount(
            Some("sysfs"),
            "/sys",
            Some("sysfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .map_err(os("mount"))?;
        Ok(std::fs::write(format!("/sys/class/net/{file}"), value))
    })?
}

fn catalogued(name: &str) -> &'static Opt {
    options::by_name(name).expect("perturbations name catalogued options")
}
