//! Memory a run used, for the report and the benchmark: the harness's own peak resident set and,
//! in a UML guest, the guest's memory and the most of it that was in use. The guest's memory is
//! fixed when it boots (`mem=` in kernel/uml.rs), so this is what sizes it.

use std::sync::atomic::{AtomicU64, Ordering};

/// The most guest memory in use at any sample, in KiB (0: no sample yet).
static PEAK_USED_KIB: AtomicU64 = AtomicU64::new(0);

/// What the report says about memory; null where it is unknown or does not apply.
#[derive(Debug, Clone, Default, serde::Serialize, schemars::JsonSchema)]
pub struct Memory {
    /// This process's peak resident set size (VmHWM), KiB.
    pub harness_peak_rss_kib: Option<u64>,
    /// The guest kernel's memory (MemTotal: `mem=` less what the kernel keeps), KiB; UML only.
    pub guest_total_kib: Option<u64>,
    /// The most of it in use (MemTotal − MemAvailable) at any case's fullest point (its
    /// namespaces, devices and captures all there, before teardown), KiB; UML only.
    pub guest_peak_used_kib: Option<u64>,
}

/// Notes how much memory the kernel has in use now, if it is the most so far. One read of
/// /proc/meminfo: cheap enough for once a case, even in UML.
pub fn sample() {
    if let Some(used) = read_meminfo().and_then(|m| Some(m.total? - m.available?)) {
        PEAK_USED_KIB.fetch_max(used, Ordering::Relaxed);
    }
}

/// The run's figures; the guest's only on the UML backend, where the kernel's memory is the
/// guest's own rather than the whole host's.
pub fn usage(backend: &str) -> Memory {
    let harness_peak_rss_kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| field_kib(&s, "VmHWM"));
    if backend != "uml" {
        return Memory {
            harness_peak_rss_kib,
            ..Memory::default()
        };
    }
    sample();
    let peak = PEAK_USED_KIB.load(Ordering::Relaxed);
    Memory {
        harness_peak_rss_kib,
        guest_total_kib: read_meminfo().and_then(|m| m.total),
        guest_peak_used_kib: (peak > 0).then_some(peak),
    }
}

struct MemInfo {
    total: Option<u64>,
    available: Option<u64>,
}

fn read_meminfo() -> Option<MemInfo> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    Some(MemInfo {
        total: field_kib(&text, "MemTotal"),
        available: field_kib(&text, "MemAvailable"),
    })
}

/// `Name:   1234 kB` from /proc/meminfo or /proc/PID/status.
fn field_kib(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(':')?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn fields_are_read_in_kib_by_exact_name() {
        let text = "MemTotal:         246852 kB\nMemFree:          200000 kB\nMemAvailable:     210004 kB\nVmHWM:\t    5120 kB\n";
        assert_eq!(super::field_kib(text, "MemTotal"), Some(246852));
        assert_eq!(super::field_kib(text, "MemAvailable"), Some(210004));
        assert_eq!(super::field_kib(text, "VmHWM"), Some(5120));
        assert_eq!(super::field_kib(text, "Mem"), None);
        assert_eq!(
            super::field_kib("HugePages_Total:       0\n", "HugePages_Total"),
            None
        );
    }
}
