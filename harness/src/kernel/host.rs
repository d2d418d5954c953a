//! The host backend: the kernel bondcheck itself runs on.

use super::Probe;
use crate::netlink;
use crate::netns::AnonNetns;

/// Tries to create a bond in a throwaway namespace: the only sure test that this kernel has a
/// usable bonding driver (it may be a module that loads on demand).
pub fn probe() -> Probe {
    let detail = match try_bond() {
        Ok(()) => {
            return Probe {
                backend: "host",
                usable: true,
                detail: "creates bonds".into(),
            };
        }
        Err(why) => why,
    };
    Probe {
        backend: "host",
        usable: false,
        detail,
    }
}

fn try_bond() -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let ns = AnonNetns::new().map_err(|e| e.to_string())?;
    let h = netlink::connect(&ns, rt.handle()).map_err(|e| e.to_string())?;
    rt.block_on(netlink::add_bond(&h, "bcprobe0")).map_err(|r| {
        let release = super::KernelInfo::current("host").release;
        match r.errno.as_str() {
            "EOPNOTSUPP" => {
                format!("kernel {release} has no bonding driver (creating a bond answers {r})")
            }
            "EPERM" => format!("not permitted to create a bond ({r}): run as root"),
            _ => format!("creating a bond failed: {r}"),
        }
    })
}
