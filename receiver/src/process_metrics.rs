//! The `process_*` metrics as the Go client's process collector exports them (Prometheus and
//! Thanos have them), read from `/proc/self` at scrape time. Where `/proc` is missing, none.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

#[derive(Debug)]
pub(crate) struct ProcessCollector;

/// What `/proc/self/stat` says, in the units the metrics use.
#[derive(Debug, Clone, PartialEq)]
struct Stat {
    cpu_seconds: f64,
    /// Seconds after boot.
    start_after_boot: f64,
    virtual_bytes: f64,
    resident_bytes: f64,
}

/// Reads the fields of a `/proc/<pid>/stat` line; `ticks` is the clock ticks per second and
/// `page_size` the bytes per page.
fn parse_stat(line: &str, ticks: f64, page_size: f64) -> Option<Stat> {
    // The command name (field 2) is in parentheses and may hold spaces and parentheses: the
    // fields that follow start after the last ')'. They are numbered from 3 (the state).
    let (_, rest) = line.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
    Some(Stat {
        cpu_seconds: (field(14)? + field(15)?) / ticks,
        start_after_boot: field(22)? / ticks,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)? * page_size,
    })
}

/// The boot time in unix seconds, from `/proc/stat`'s `btime` line.
fn parse_boot_time(proc_stat: &str) -> Option<f64> {
    proc_stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

/// A system setting from `sysconf`, if it has a positive value.
fn sysconf(name: libc::c_int) -> Option<f64> {
    // SAFETY: sysconf only reads its integer argument.
    let v = unsafe { libc::sysconf(name) };
    (v > 0).then_some(v as f64)
}

/// The soft limit on open files, unless unlimited.
fn max_fds() -> Option<f64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur as f64)
}

fn encode(enc: &mut DescriptorEncoder, name: &str, help: &str, kind: MetricType, v: f64) -> fmt::Result {
    let m = enc.encode_descriptor(name, help, None, kind)?;
    match kind {
        MetricType::Counter => ConstCounter::new(v).encode(m),
        _ => ConstGauge::new(v).encode(m),
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let stat = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|line| parse_stat(&line, sysconf(libc::_SC_CLK_TCK)?, sysconf(libc::_SC_PAGESIZE)?));
        if let Some(s) = &stat {
            // Counter names omit `_total`: the encoder appends it.
            encode(
                &mut enc,
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                MetricType::Counter,
                s.cpu_seconds,
            )?;
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            encode(
                &mut enc,
                "process_open_fds",
                "Number of open file descriptors.",
                MetricType::Gauge,
                fds.count() as f64,
            )?;
        }
        if let Some(max) = max_fds() {
            encode(&mut enc, "process_max_fds", "Maximum number of open file descriptors.", MetricType::Gauge, max)?;
        }
        if let Some(s) = &stat {
            encode(
                &mut enc,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                MetricType::Gauge,
                s.virtual_bytes,
            )?;
            encode(
                &mut enc,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                MetricType::Gauge,
                s.resident_bytes,
            )?;
            let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|t| parse_boot_time(&t));
            if let Some(boot) = boot {
                encode(
                    &mut enc,
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                    MetricType::Gauge,
                    boot + s.start_after_boot,
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_an_awkward_command_name() {
        // A command name with a space and a ')' must not shift the fields.
        let line = "4242 (strata (x) y) S 1 4242 4242 0 -1 4194560 5000 0 0 0 250 130 0 0 20 0 9 0 \
                    123456 1073741824 2560 18446744073709551615 1 1 0 0 0 0 0 4096 17642 0 0 0 17 3 0 0 0 0 0";
        let s = parse_stat(line, 100.0, 4096.0).unwrap();
        assert_eq!(
            s,
            Stat {
                cpu_seconds: 3.8,
                start_after_boot: 1234.56,
                virtual_bytes: 1073741824.0,
                resident_bytes: 10485760.0
            }
        );
        assert_eq!(parse_stat("4242 (x) S 1 2", 100.0, 4096.0), None);
        assert_eq!(parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n"), Some(1_700_000_000.0));
    }
}
