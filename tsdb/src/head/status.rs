//! Cardinality statistics in the shape of Prometheus's `/api/v1/status/tsdb`.

use super::Head;
use crate::labels::METRIC_NAME;

/// One `{name, value}` entry of a top-N list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadStatusStat {
    pub name: String,
    pub value: u64,
}

/// Head statistics and the top-N cardinality lists Prometheus reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadStatus {
    pub num_series: u64,
    pub num_label_pairs: u64,
    pub chunk_count: u64,
    /// Oldest and newest sample time; Prometheus reports `i64::MAX`/`i64::MIN` for an empty head.
    pub min_time: i64,
    pub max_time: i64,
    pub series_count_by_metric_name: Vec<HeadStatusStat>,
    pub label_value_count_by_label_name: Vec<HeadStatusStat>,
    pub memory_in_bytes_by_label_name: Vec<HeadStatusStat>,
    pub series_count_by_label_value_pair: Vec<HeadStatusStat>,
}

impl Head {
    /// Computes the statistics with top-`limit` lists.
    pub fn status(&self, limit: usize) -> HeadStatus {
        let postings = self.postings();
        let mut by_metric = Vec::new();
        let mut value_counts = Vec::new();
        let mut memory = Vec::new();
        let mut pairs = Vec::new();
        for (name, values) in postings.names() {
            value_counts.push(stat(name.to_owned(), values.len() as u64));
            let mut bytes = 0u64;
            for (value, refs) in values {
                bytes += (value.len() * refs.len()) as u64;
                pairs.push(stat(format!("{name}={value}"), refs.len() as u64));
                if name == METRIC_NAME {
                    by_metric.push(stat(value.to_string(), refs.len() as u64));
                }
            }
            memory.push(stat(name.to_owned(), bytes));
        }
        HeadStatus {
            num_series: self.num_series(),
            num_label_pairs: postings.num_pairs() as u64,
            chunk_count: self.stats.chunks.load(std::sync::atomic::Ordering::Relaxed),
            min_time: self.min_time(),
            max_time: self.max_time(),
            series_count_by_metric_name: top(by_metric, limit),
            label_value_count_by_label_name: top(value_counts, limit),
            memory_in_bytes_by_label_name: top(memory, limit),
            series_count_by_label_value_pair: top(pairs, limit),
        }
    }
}

fn stat(name: String, value: u64) -> HeadStatusStat {
    HeadStatusStat { name, value }
}

/// The `limit` largest entries, largest first, ties by name for a stable answer.
fn top(mut v: Vec<HeadStatusStat>, limit: usize) -> Vec<HeadStatusStat> {
    v.sort_by(|a, b| b.value.cmp(&a.value).then_with(|| a.name.cmp(&b.name)));
    v.truncate(limit);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::HeadOptions;

    #[test]
    fn counts_and_orders() {
        let head = Head::new(HeadOptions::default());
        for i in 0..3 {
            let inst = format!("i{i}");
            let (s, _) = head.get_or_create(&[("__name__", "up"), ("instance", &inst)]);
            s.append(1000, 1.0, &head);
        }
        head.get_or_create(&[("__name__", "other"), ("instance", "i0")]);
        let st = head.status(2);
        assert_eq!(st.num_series, 4);
        assert_eq!(st.num_label_pairs, 5);
        assert_eq!(st.series_count_by_metric_name, vec![stat("up".into(), 3), stat("other".into(), 1)]);
        assert_eq!(st.label_value_count_by_label_name, vec![stat("instance".into(), 3), stat("__name__".into(), 2)]);
        assert_eq!(st.series_count_by_label_value_pair[0], stat("__name__=up".into(), 3));
        assert_eq!(st.memory_in_bytes_by_label_name[0], stat("__name__".into(), 3 * 2 + 5));
    }
}
