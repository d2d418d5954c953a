//! Veth topologies: how each slave of the spec is wired (a `veth-topologies/*.toml` file), and
//! building that wiring in throwaway namespaces.
//!
//! The bond and its slaves live in one namespace, with the slave names from the spec; every
//! slave is one end of a veth pair whose other end (the peer) lives in a peer namespace. Nothing
//! is created in the namespace bondcheck was started in.

use std::path::{Path, PathBuf};

use rtnetlink::Handle;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::netlink;
use crate::netns::AnonNetns;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerNamespace {
    /// Every peer end in a namespace of its own.
    PerSlave,
    /// All peer ends in one namespace.
    Shared,
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
}

const IFNAMSIZ: usize = 16;

impl Topology {
    pub fn load(path: &Path) -> Result<Topology> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, &e))?;
        let mut t: Topology = toml::from_str(&text).map_err(|e| Error::toml(path, &text, &e))?;
        t.name = path
            .file_stem()
            .map_or(String::new(), |s| s.to_string_lossy().into_owned());
        t.path = path.to_path_buf();
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
            let clash = self.peer_namespace == PeerNamespace::Shared && names[..i].contains(n);
            if n.is_empty() || n.len() >= IFNAMSIZ || n.contains(['/', ' ', ':']) || clash {
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

/// A slave's peer end, where it lives and how to reach it.
pub struct Peer {
    pub slave: String,
    pub name: String,
    pub index: u32,
    pub handle: Handle,
}

/// A built topology. Dropping it drops the namespaces and so everything in them.
pub struct Built {
    pub bond_ns: AnonNetns,
    pub bond: Handle,
    pub peers: Vec<Peer>,
    /// Peer namespaces, kept alive as long as the topology.
    _peer_ns: Vec<AnonNetns>,
}

impl Built {
    pub fn peer(&self, slave: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| p.slave == slave)
    }
}

/// Creates the namespaces and one veth pair per slave; peer ends are up, slave ends down (the
/// bond refuses to enslave an interface that is up).
pub async fn build(topology: &Topology, slaves: &[String]) -> Result<Built> {
    let rt = tokio::runtime::Handle::current();
    let peer_names = topology.peer_names(slaves)?;
    let bond_ns = AnonNetns::new()?;
    let bond = netlink::connect(&bond_ns, &rt)?;
    let namespaces = match topology.peer_namespace {
        PeerNamespace::PerSlave => slaves.len(),
        PeerNamespace::Shared => 1,
    };
    let peer_ns = (0..namespaces)
        .map(|_| AnonNetns::new())
        .collect::<Result<Vec<_>>>()?;
    let handles = peer_ns
        .iter()
        .map(|ns| netlink::connect(ns, &rt))
        .collect::<Result<Vec<_>>>()?;
    let mut peers = Vec::new();
    for (i, (slave, peer)) in slaves.iter().zip(&peer_names).enumerate() {
        let ns = i.min(namespaces - 1);
        let fail =
            |what: &str, r: netlink::Refusal| Error::run(format!("{what} {slave}/{peer}: {r}"));
        netlink::add_veth(&bond, slave, peer, &peer_ns[ns])
            .await
            .map_err(|r| fail("creating veth", r))?;
        let handle = handles[ns].clone();
        let index = netlink::index_of(&handle, peer)
            .await
            .map_err(|r| fail("finding peer", r))?;
        netlink::set_up(&handle, index, true)
            .await
            .map_err(|r| fail("bringing up peer", r))?;
        peers.push(Peer {
            slave: slave.clone(),
            name: peer.clone(),
            index,
            handle,
        });
    }
    Ok(Built {
        bond_ns,
        bond,
        peers,
        _peer_ns: peer_ns,
    })
}
