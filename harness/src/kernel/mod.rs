//! Kernel backends: where bondcheck gets a kernel with a bonding driver.
//!
//! `host` runs the cases in throwaway namespaces of the kernel bondcheck runs on, if that kernel
//! can create a bond. `uml` boots Debian's User-Mode Linux kernel with the host's root as its
//! root and runs this same binary inside it with the same arguments. `auto` takes the host if
//! it can, else UML.

pub mod host;
pub mod uml;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Choice {
    Auto,
    Host,
    Uml,
}

/// Facts about the kernel a run used, for the report.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct KernelInfo {
    /// "host" or "uml".
    pub backend: &'static str,
    /// The kernel's release (`uname -r` where the cases ran).
    pub release: String,
    /// The bonding driver's version line from /proc/net/bonding, once a bond existed.
    pub bonding_driver: Option<String>,
    /// Time from the guest kernel's start to bondcheck running in it (UML only).
    pub boot_ms: Option<f64>,
    /// Scheduling slack added to the model's waits on this backend.
    pub slack_ms: u64,
    /// CONFIG_HZ, from the kernel's configuration, where it can be found.
    pub hz: Option<u32>,
    /// How far past the model's upper bound a timing sample may land on this backend before it
    /// fails: scheduling noise of the guest or host, not the driver's rules.
    pub timing_tolerance_ms: f64,
}

impl KernelInfo {
    /// The kernel this process runs on, reached through `backend`.
    pub fn current(backend: &'static str) -> KernelInfo {
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".into());
        // UML runs on one virtual CPU of a shared host: its timers and workqueues lag more.
        let (slack_ms, timing_tolerance_ms) = if backend == "uml" {
            (1000, 30.0)
        } else {
            (250, 10.0)
        };
        let hz = config_hz(&release, backend);
        KernelInfo {
            backend,
            release,
            bonding_driver: None,
            boot_ms: None,
            slack_ms,
            hz,
            timing_tolerance_ms,
        }
    }
}

/// CONFIG_HZ from the first kernel configuration found for `release`: the running kernel's
/// /proc/config.gz, /boot/config-RELEASE, or the UML package's config.gz for its kernel.
fn config_hz(release: &str, backend: &str) -> Option<u32> {
    use std::io::Read;
    let mut sources = vec![
        ("/proc/config.gz".to_string(), true),
        (format!("/boot/config-{release}"), false),
    ];
    if backend == "uml" {
        sources.push(("/usr/share/doc/user-mode-linux/config.gz".to_string(), true));
    }
    sources.into_iter().find_map(|(path, gzip)| {
        let file = std::fs::File::open(&path).ok()?;
        let mut text = String::new();
        if gzip {
            flate2::read::GzDecoder::new(file)
                .read_to_string(&mut text)
                .ok()?;
        } else {
            std::io::BufReader::new(file)
                .read_to_string(&mut text)
                .ok()?;
        }
        hz_of(&text)
    })
}

fn hz_of(config: &str) -> Option<u32> {
    config
        .lines()
        .find_map(|l| l.strip_prefix("CONFIG_HZ=")?.trim().parse().ok())
}

/// Whether a backend can give a bonding kernel here, and why (not).
#[derive(Debug, Clone)]
pub struct Probe {
    pub backend: &'static str,
    pub usable: bool,
    pub detail: String,
}

pub enum Backend {
    Host,
    Uml(uml::UmlKernel),
}

/// Picks the backend for `choice`, or says what to install.
pub fn select(choice: Choice) -> Result<Backend> {
    let want_host = matches!(choice, Choice::Auto | Choice::Host);
    let host = want_host.then(host::probe);
    if let Some(p) = &host {
        if p.usable {
            return Ok(Backend::Host);
        }
    }
    if choice == Choice::Host {
        return Err(Error::NoKernel(format!(
            "--kernel host: {}",
            host.expect("probed").detail
        )));
    }
    match uml::find() {
        Ok(k) => Ok(Backend::Uml(k)),
        Err(why) => Err(Error::NoKernel(format!(
            "no bonding kernel available: {}{why}; install Debian's user-mode-linux \
             (apt-get install user-mode-linux) or run on a kernel with CONFIG_BONDING",
            host.map(|p| format!("host: {}; uml: ", p.detail))
                .unwrap_or_default()
        ))),
    }
}

/// Every backend's probe, for `bondcheck doctor`.
pub fn probes() -> Vec<Probe> {
    let uml = match uml::find() {
        Ok(k) => Probe {
            backend: "uml",
            usable: true,
            detail: k.describe(),
        },
        Err(why) => Probe {
            backend: "uml",
            usable: false,
            detail: why,
        },
    };
    vec![host::probe(), uml]
}

#[cfg(test)]
mod tests {
    #[test]
    fn hz_comes_from_config_hz_not_its_neighbours() {
        let config =
            "CONFIG_HZ_100=y\n# CONFIG_HZ_250 is not set\nCONFIG_HZ=100\nCONFIG_HZ_PERIODIC=n\n";
        assert_eq!(super::hz_of(config), Some(100));
        assert_eq!(super::hz_of("CONFIG_NO_HZ=y\n"), None);
    }
}
