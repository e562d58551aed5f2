//! What a reader asks for: series (matchers, time range, hints, shard, resolution, limit) and
//! label names or values. The fields follow Thanos's `SeriesRequest`, `LabelNamesRequest` and
//! `LabelValuesRequest`, so that a StoreAPI server and a proxy pass them through unchanged.

use strata_tsdb::chunkenc::AggrType;
use strata_tsdb::labels::Labels;
use strata_tsdb::matchers::Matcher;

/// A request for the series matching every matcher with samples in `[min_time, max_time]`
/// (milliseconds, both ends inclusive).
#[derive(Debug, Clone, Default)]
pub struct SelectRequest {
    pub min_time: i64,
    pub max_time: i64,
    pub matchers: Vec<Matcher>,
    /// How the reader will use the series; a storage may ignore them.
    pub hints: SelectHints,
    /// Only the series of this shard; binding, every storage applies it.
    pub shard: Option<ShardInfo>,
    /// The coarsest downsampling resolution (ms) the reader accepts; 0 asks for raw data. A
    /// storage of raw data only ignores it.
    pub max_resolution_window: i64,
    /// Which aggregates of downsampled chunks the reader wants; raw data ignores it.
    pub aggregates: Vec<Aggr>,
    /// Labels only: every matching series with data in range, with an empty chunk list.
    pub skip_chunks: bool,
    /// At most this many series (the first ones in label order); 0 for no limit.
    pub limit: usize,
    /// Labels to leave out of every series (replica labels, for deduplication); the set stays
    /// sorted by what is left.
    pub without_replica_labels: Vec<String>,
    /// Who asks and how a fan-out treats failed stores.
    pub scope: ReadScope,
}

impl SelectRequest {
    /// A request with no hints, shard or limit.
    pub fn new(matchers: Vec<Matcher>, min_time: i64, max_time: i64) -> Self {
        SelectRequest { min_time, max_time, matchers, ..SelectRequest::default() }
    }
}

/// Facts about the selection's use that a storage may exploit (e.g. to pick a downsampled
/// resolution); Thanos's `QueryHints` and Prometheus's `SelectHints`. Milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectHints {
    /// Evaluation step of the query, or of the enclosing subquery; 0 when there is none.
    pub step: i64,
    /// Range of the range vector selector; 0 for instant vector selectors.
    pub range: i64,
    /// The function or aggregation applied to the selected series (`rate`, `sum`), if any.
    pub func: Option<String>,
    /// The grouping of the aggregation directly over the selector, if any.
    pub grouping: Option<Grouping>,
}

/// An aggregation's `by (…)` or `without (…)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grouping {
    /// `by` when true, `without` when false.
    pub by: bool,
    pub labels: Vec<String>,
}

/// One shard of the series: those whose hash of the `by` labels (or of all labels but the
/// `without` ones) modulo `total_shards` is `shard_index`, as Thanos's `ShardInfo` selects them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardInfo {
    pub shard_index: u64,
    /// 0 means not sharded: every series matches.
    pub total_shards: u64,
    /// Hash the listed labels (true) or every label but them (false).
    pub by: bool,
    pub labels: Vec<String>,
}

impl ShardInfo {
    /// Whether the series with `labels` is in this shard. The hash is XXH64 over
    /// `name 0xff value 0xff` of the chosen labels, in label order (Thanos's `ShardMatcher`;
    /// unlike Prometheus's `HashWithoutLabels`, `without` keeps `__name__` unless it is listed).
    pub fn matches(&self, labels: &Labels) -> bool {
        if self.total_shards == 0 {
            return true;
        }
        let hash = labels.hash_matching(|name| self.labels.iter().any(|l| l == name) == self.by);
        hash % self.total_shards == self.shard_index
    }
}

/// A part of a downsampled chunk (Thanos's `Aggr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Aggr {
    Raw,
    Count,
    Sum,
    Min,
    Max,
    Counter,
}

impl Aggr {
    /// The aggregate of a downsampled chunk this asks for; none for raw data.
    pub fn aggr_type(self) -> Option<AggrType> {
        match self {
            Aggr::Raw => None,
            Aggr::Count => Some(AggrType::Count),
            Aggr::Sum => Some(AggrType::Sum),
            Aggr::Min => Some(AggrType::Min),
            Aggr::Max => Some(AggrType::Max),
            Aggr::Counter => Some(AggrType::Counter),
        }
    }
}

/// The parts of a read that a fan-out over many stores acts on and a single store ignores:
/// the tenant, what to do when a store fails, and which stores to ask.
#[derive(Debug, Clone, Default)]
pub struct ReadScope {
    /// The tenant the read is made for (Thanos's `thanos-tenant` gRPC metadata), if any.
    pub tenant: Option<String>,
    pub partial_response: PartialResponse,
    /// Only the stores whose external labels match one of these matcher sets (the query API's
    /// `storeMatch[]`); empty asks every store.
    pub store_matchers: Vec<Vec<Matcher>>,
}

/// What a read over many stores does when some of them fail (Thanos's
/// `PartialResponseStrategy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PartialResponse {
    /// The read fails.
    #[default]
    Abort,
    /// The read answers from the stores that answered, with a warning naming the others.
    Warn,
}

/// A request for label names, or for the values of one label, among the series matching every
/// matcher (all series without matchers) with data in `[min_time, max_time]`.
#[derive(Debug, Clone, Default)]
pub struct LabelsRequest {
    pub min_time: i64,
    pub max_time: i64,
    pub matchers: Vec<Matcher>,
    /// At most this many names or values (the first ones in sort order); 0 for no limit.
    pub limit: usize,
    /// Label names to leave out of the answer and of the series it looks at (replica labels).
    pub without_replica_labels: Vec<String>,
    /// Who asks and how a fan-out treats failed stores.
    pub scope: ReadScope,
}

impl LabelsRequest {
    /// A request with no limit.
    pub fn new(matchers: Vec<Matcher>, min_time: i64, max_time: i64) -> Self {
        LabelsRequest { min_time, max_time, matchers, ..LabelsRequest::default() }
    }

    /// Cuts sorted `names` (or values) to the request's limit.
    pub fn truncate(&self, names: &mut Vec<String>) {
        if self.limit > 0 {
            names.truncate(self.limit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(shard_index: u64, total_shards: u64, by: bool, labels: &[&str]) -> ShardInfo {
        ShardInfo { shard_index, total_shards, by, labels: labels.iter().map(|&l| l.to_owned()).collect() }
    }

    /// The cases of Thanos's `TestShardInfo_MatchesSeries` (pkg/store/storepb/shard_info_test.go),
    /// whose expectations come from its xxhash-based matcher.
    #[test]
    fn shards_as_thanos_does() {
        let series = Labels::from_pairs(&[("pod", "nginx"), ("node", "node-1"), ("container", "nginx")]);
        let cases = [
            ("not sharded", shard(0, 0, false, &[]), true),
            ("one shard only", shard(0, 1, true, &[]), true),
            ("by no labels", shard(0, 2, true, &[]), false),
            ("without no labels", shard(0, 2, false, &[]), true),
            ("by labels, shard 0", shard(0, 2, true, &["pod", "node"]), false),
            ("by labels, shard 1", shard(1, 2, true, &["pod", "node"]), true),
            ("without labels, shard 0", shard(0, 2, false, &["node"]), true),
            ("without labels, shard 1", shard(1, 2, false, &["node"]), false),
        ];
        for (name, info, want) in cases {
            assert_eq!(info.matches(&series), want, "{name}");
        }
    }

    #[test]
    fn shards_partition_the_series() {
        let total = 4;
        for i in 0..200 {
            let l = Labels::from_pairs(&[("__name__", "up"), ("instance", &format!("host-{i}")), ("job", "node")]);
            for (by, names) in [(true, vec!["instance"]), (false, vec!["job"]), (false, vec![])] {
                let names: Vec<&str> = names;
                let hits = (0..total).filter(|&s| shard(s, total, by, &names).matches(&l)).count();
                assert_eq!(hits, 1, "{l} by={by} {names:?}");
            }
            // Without any excluded label the hash is the series' own (Prometheus's labels.Hash).
            let owner = l.hash() % total;
            assert!(shard(owner, total, false, &[]).matches(&l));
            // By a label: series equal in it land in the same shard.
            let same_instance = Labels::from_pairs(&[("__name__", "down"), ("instance", &format!("host-{i}"))]);
            let by_instance = |s| shard(s, total, true, &["instance"]);
            assert_eq!(
                (0..total).find(|&s| by_instance(s).matches(&l)),
                (0..total).find(|&s| by_instance(s).matches(&same_instance))
            );
        }
    }

    #[test]
    fn label_limit_keeps_the_first() {
        let mut names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        LabelsRequest::new(Vec::new(), 0, 1).truncate(&mut names);
        assert_eq!(names, ["a", "b", "c"]);
        LabelsRequest { limit: 2, ..LabelsRequest::new(Vec::new(), 0, 1) }.truncate(&mut names);
        assert_eq!(names, ["a", "b"]);
    }
}
