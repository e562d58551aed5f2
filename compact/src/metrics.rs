//! The compactor's metrics, with Thanos's names (pkg/compact, cmd/thanos/compact.go).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use strata_shipper::FetcherMetrics;

type GroupLabel = [(&'static str, String); 1];
type MarkLabels = [(&'static str, String); 2];

/// Counters and gauges of a compactor, registered once.
#[derive(Clone)]
pub struct CompactMetrics {
    /// The meta syncs (`thanos_blocks_meta_*`), as the store gateway counts its own.
    pub meta: FetcherMetrics,
    /// Group compactions that made a new block.
    pub compactions: Family<GroupLabel, Counter>,
    pub runs_started: Family<GroupLabel, Counter>,
    pub runs_completed: Family<GroupLabel, Counter>,
    pub failures: Family<GroupLabel, Counter>,
    /// 1 once compaction has stopped on an error an operator must look at.
    pub halted: Gauge,
    /// Whole passes (sync, compaction, retention, cleanup) that finished.
    pub iterations: Counter,
    pub blocks_cleaned: Counter,
    pub cleanup_failures: Counter,
    pub blocks_marked: Family<MarkLabels, Counter>,
    /// Compactions still to do, as planned from the last sync.
    pub todo_compactions: Gauge,
    pub downsamples: Family<GroupLabel, Counter>,
    pub downsample_failures: Family<GroupLabel, Counter>,
}

impl CompactMetrics {
    pub fn new(registry: &mut Registry) -> CompactMetrics {
        let meta = FetcherMetrics::new(registry);
        CompactMetrics::with_meta(registry, meta)
    }

    /// The compactor's metrics in `registry`, its meta syncs counted in `meta` (registered
    /// elsewhere when another component of the process exports the same names).
    pub fn with_meta(registry: &mut Registry, meta: FetcherMetrics) -> CompactMetrics {
        let m = CompactMetrics {
            meta,
            compactions: Family::default(),
            runs_started: Family::default(),
            runs_completed: Family::default(),
            failures: Family::default(),
            halted: Gauge::default(),
            iterations: Counter::default(),
            blocks_cleaned: Counter::default(),
            cleanup_failures: Counter::default(),
            blocks_marked: Family::default(),
            todo_compactions: Gauge::default(),
            downsamples: Family::default(),
            downsample_failures: Family::default(),
        };
        registry.register(
            "thanos_compact_group_compactions",
            "Total number of group compaction attempts that resulted in a new block.",
            m.compactions.clone(),
        );
        registry.register(
            "thanos_compact_group_compaction_runs_started",
            "Total number of group compaction attempts.",
            m.runs_started.clone(),
        );
        registry.register(
            "thanos_compact_group_compaction_runs_completed",
            "Total number of group completed compaction runs. This also includes compactor group runs that resulted with no compaction.",
            m.runs_completed.clone(),
        );
        registry.register(
            "thanos_compact_group_compactions_failures",
            "Total number of failed group compactions.",
            m.failures.clone(),
        );
        registry.register(
            "thanos_compact_halted",
            "Set to 1 if the compactor halted due to an unexpected error.",
            m.halted.clone(),
        );
        registry.register(
            "thanos_compact_iterations",
            "Total number of iterations that were executed successfully.",
            m.iterations.clone(),
        );
        registry.register(
            "thanos_compact_blocks_cleaned",
            "Total number of blocks deleted in compactor.",
            m.blocks_cleaned.clone(),
        );
        registry.register(
            "thanos_compact_block_cleanup_failures",
            "Failures encountered while deleting blocks in compactor.",
            m.cleanup_failures.clone(),
        );
        registry.register(
            "thanos_compact_blocks_marked",
            "Total number of blocks marked in compactor.",
            m.blocks_marked.clone(),
        );
        registry.register(
            "thanos_compact_todo_compactions",
            "The number of planned compactions.",
            m.todo_compactions.clone(),
        );
        registry.register("thanos_compact_downsample", "Total number of downsampling attempts.", m.downsamples.clone());
        registry.register(
            "thanos_compact_downsample_failures",
            "Total number of failed downsampling attempts.",
            m.downsample_failures.clone(),
        );
        m
    }

    pub(crate) fn group(&self, key: &str) -> GroupLabel {
        [("group", key.to_owned())]
    }

    pub(crate) fn marked(&self, marker: &str, reason: &str) {
        self.blocks_marked.get_or_create(&[("marker", marker.to_owned()), ("reason", reason.to_owned())]).inc();
    }
}

type ResultLabel = [(&'static str, &'static str); 1];

/// `tools bucket replicate`'s metrics, with Thanos's names (pkg/replicate).
#[derive(Clone, Default)]
pub struct ReplicateMetrics {
    pub blocks_already_replicated: Counter,
    pub blocks_replicated: Counter,
    pub objects_replicated: Counter,
    /// Runs by `result`: `success` or `error`.
    pub runs: Family<ResultLabel, Counter>,
}

impl ReplicateMetrics {
    pub fn new(registry: &mut Registry) -> ReplicateMetrics {
        let m = ReplicateMetrics::default();
        registry.register(
            "thanos_replicate_blocks_already_replicated",
            "Total number of blocks skipped due to already being replicated.",
            m.blocks_already_replicated.clone(),
        );
        registry.register(
            "thanos_replicate_blocks_replicated",
            "Total number of blocks replicated.",
            m.blocks_replicated.clone(),
        );
        registry.register(
            "thanos_replicate_objects_replicated",
            "Total number of objects replicated.",
            m.objects_replicated.clone(),
        );
        registry.register(
            "thanos_replicate_replication_runs",
            "The number of replication runs split by success and error.",
            m.runs.clone(),
        );
        for result in ["success", "error"] {
            m.runs.get_or_create(&[("result", result)]).inc_by(0);
        }
        m
    }

    /// Counts one run's outcome.
    pub fn observe(&self, run: &Result<crate::tools::Replicated, crate::Error>) {
        match run {
            Ok(r) => {
                self.blocks_replicated.inc_by(r.copied.len() as u64);
                self.blocks_already_replicated.inc_by(r.already.len() as u64);
                self.objects_replicated.inc_by(r.objects as u64);
                self.runs.get_or_create(&[("result", "success")]).inc();
            }
            Err(_) => {
                self.runs.get_or_create(&[("result", "error")]).inc();
            }
        }
    }
}
