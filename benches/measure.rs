//! What the benches measure besides time: the memory of the process and the API requests a
//! target makes, printed the same way by every bench.
//!
//! [`memory`] reads the live heap from `stats_alloc`'s instrumented allocator, which the
//! bench binary installs as its global allocator
//! (`#[global_allocator] static A: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;`); without it
//! the heap figure stays 0.

use std::collections::BTreeMap;
use std::fmt::Display;

use keel_testsupport::kube::RecordedRequest;
use stats_alloc::INSTRUMENTED_SYSTEM;

/// The memory of this process at one moment.
#[derive(Clone, Copy)]
pub struct Memory {
    /// `VmRSS` and `VmHWM` in KiB (Linux only).
    pub rss_kib: Option<u64>,
    /// The high-water mark of `VmRSS`.
    pub hwm_kib: Option<u64>,
    /// Bytes allocated and not freed since the process started.
    pub heap: i64,
}

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`); `None` off Linux.
pub fn proc_status_kib(field: &str) -> Option<u64> {
    status_kib("self", field)
}

/// The resident memory (`VmRSS`) of process `pid` in KiB, such as a program a bench started;
/// `None` off Linux.
pub fn rss_of(pid: u32) -> Option<u64> {
    status_kib(&pid.to_string(), "VmRSS")
}

/// A field of `/proc/<process>/status` in KiB.
fn status_kib(process: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{process}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
}

/// The memory of this process now.
pub fn memory() -> Memory {
    let stats = INSTRUMENTED_SYSTEM.stats();
    // A realloc is counted in these two already (its growth or its shrinking).
    let heap = stats.bytes_allocated as i64 - stats.bytes_deallocated as i64;
    Memory {
        rss_kib: proc_status_kib("VmRSS"),
        hwm_kib: proc_status_kib("VmHWM"),
        heap,
    }
}

/// KiB as MiB with one decimal, or `n/a`.
pub fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "n/a".to_owned(),
        |k| format!("{:.1} MiB", k as f64 / 1024.0),
    )
}

/// Prints `m` on stderr under `label`.
pub fn print_memory(label: &str, m: Memory) {
    eprintln!(
        "  {label}: VmRSS {}, VmHWM {}, live heap {:.1} MiB",
        mib(m.rss_kib),
        mib(m.hwm_kib),
        m.heap as f64 / (1024.0 * 1024.0)
    );
}

/// A difference in KiB as signed MiB, or `n/a`.
pub fn signed_mib(kib: Option<i64>) -> String {
    kib.map_or_else(
        || "n/a".to_owned(),
        |k| format!("{:+.1} MiB", k as f64 / 1024.0),
    )
}

/// Prints on stderr how much the memory grew from `before` to `after`.
pub fn print_growth(before: Memory, after: Memory) {
    let rss = match (before.rss_kib, after.rss_kib) {
        (Some(a), Some(b)) => Some(b as i64 - a as i64),
        _ => None,
    };
    eprintln!(
        "  difference: VmRSS {}, live heap {:+.1} MiB",
        signed_mib(rss),
        (after.heap - before.heap) as f64 / (1024.0 * 1024.0)
    );
}

/// A request's verb as the API server's audit log would name it.
pub fn verb(request: &RecordedRequest) -> String {
    if request.is_watch() {
        "WATCH".to_owned()
    } else if request.is_list() {
        "LIST".to_owned()
    } else {
        request.method.clone()
    }
}

/// How many requests of each verb.
pub fn by_verb(requests: &[RecordedRequest]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for request in requests {
        *counts.entry(verb(request)).or_insert(0) += 1;
    }
    counts
}

/// The figure of each verb (a count, or a count per cycle) as `GET 2, LIST 1`, or `none`.
pub fn format_counts<V: Display>(counts: &BTreeMap<String, V>) -> String {
    if counts.is_empty() {
        return "none".to_owned();
    }
    counts
        .iter()
        .map(|(verb, n)| format!("{verb} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `report` when a pass left nothing failed and nothing to do: the steady state every bench
/// measures from. Panics otherwise, showing what failed or was planned.
pub fn settled(report: keel_core::RunReport) -> keel_core::RunReport {
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(
        report.planned.is_empty(),
        "steady state: {:?}",
        report.planned
    );
    report
}
