//! The WAL counters of every tenant under Prometheus's `prometheus_tsdb_wal_*` names.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::DescriptorEncoder;
use strata_tsdb::db::Db;
use strata_tsdb::wal::WalStats;

use crate::metrics::{family, Kind};

/// Name, help text and where to read a WAL counter.
type Counter = (&'static str, &'static str, fn(&WalStats) -> &AtomicU64);

pub(crate) fn encode(enc: &mut DescriptorEncoder, tenants: &[(String, Arc<Db>)]) -> fmt::Result {
    let per = |f: &dyn Fn(&WalStats) -> f64| -> Vec<(String, f64)> {
        tenants.iter().map(|(t, db)| (t.clone(), f(db.wal().stats()))).collect()
    };
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    let counters: [Counter; 10] = [
        ("prometheus_tsdb_wal_page_flushes", "Total number of page flushes.", |s| &s.page_flushes_total),
        ("prometheus_tsdb_wal_completed_pages", "Total number of completed pages.", |s| &s.completed_pages_total),
        ("prometheus_tsdb_wal_truncations", "Total number of write log truncations attempted.", |s| {
            &s.truncations_total
        }),
        ("prometheus_tsdb_wal_truncations_failed", "Total number of write log truncations that failed.", |s| {
            &s.truncations_failed_total
        }),
        ("prometheus_tsdb_wal_writes_failed", "Total number of write log writes that failed.", |s| {
            &s.writes_failed_total
        }),
        ("prometheus_tsdb_wal_corruptions", "Total number of WAL corruptions.", |s| &s.corruptions_total),
        ("prometheus_tsdb_wal_record_part_writes", "Total number of record parts written before flushing.", |s| {
            &s.record_part_writes_total
        }),
        (
            "prometheus_tsdb_wal_record_parts_bytes_written",
            "Total number of record part bytes written before flushing, including CRC and compression headers.",
            |s| &s.record_parts_bytes_written_total,
        ),
        (
            "prometheus_tsdb_wal_record_bytes_saved",
            "Total number of bytes saved by the optional record compression.",
            |s| &s.record_bytes_saved_total,
        ),
        ("prometheus_tsdb_checkpoint_creations", "Total number of checkpoint creations attempted.", |s| {
            &s.checkpoint_creations_total
        }),
    ];
    for (name, help, field) in counters {
        family(enc, name, help, Kind::Counter, &[], &per(&|s| load(field(s))))?;
    }
    family(
        enc,
        "prometheus_tsdb_wal_segment_current",
        "Write log segment index that TSDB is currently writing to.",
        Kind::Gauge,
        &[],
        &per(&|s| load(&s.segment_current)),
    )?;
    family(
        enc,
        "prometheus_tsdb_wal_storage_size_bytes",
        "Size of the write log directory.",
        Kind::Gauge,
        &[],
        &per(&|s| load(&s.storage_size_bytes)),
    )
}
