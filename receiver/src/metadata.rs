//! Metric metadata (type, help, unit per metric family) from remote-write requests, kept in
//! memory per tenant: 1.0 senders send it in metadata-only requests (Prometheus: once a
//! minute), 2.0 senders with every series. It is lost on restart and refilled by the next sends.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use parking_lot::RwLock;
use strata_proto::remote_write::{Metadata, MetricType};
use strata_storage::{MetadataSource, MetricMetadata};

/// Most metric families kept per tenant; beyond it new names are dropped (known ones still
/// update), so a sender inventing names cannot grow memory without bound.
pub const MAX_FAMILIES_PER_TENANT: usize = 100_000;

/// The latest metadata per tenant and metric family name.
#[derive(Default)]
pub struct MetadataStore {
    tenants: RwLock<HashMap<String, HashMap<String, MetricMetadata>>>,
}

/// Prometheus's name for a metric type (`model.MetricType`).
pub fn type_name(t: MetricType) -> &'static str {
    match t {
        MetricType::Unknown => "unknown",
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Histogram => "histogram",
        MetricType::GaugeHistogram => "gaugehistogram",
        MetricType::Summary => "summary",
        MetricType::Info => "info",
        MetricType::StateSet => "stateset",
    }
}

fn convert(m: &Metadata<'_>) -> MetricMetadata {
    MetricMetadata {
        metric_type: type_name(m.metric_type).to_owned(),
        help: m.help.to_owned(),
        unit: m.unit.to_owned(),
    }
}

impl MetadataStore {
    /// Remembers what a request said; the last word per family wins. Entries without a family
    /// name (2.0 series without `__name__`) say nothing about a family and are skipped.
    pub fn record(&self, tenant: &str, metadata: &[Metadata<'_>]) {
        let named = || metadata.iter().filter(|m| !m.metric_family_name.is_empty());
        // Senders repeat the same metadata all the time (2.0: with every series), so look
        // under the shared lock first and take the exclusive one only for news.
        let news = {
            let tenants = self.tenants.read();
            let known = tenants.get(tenant);
            named().any(|m| known.and_then(|k| k.get(m.metric_family_name)) != Some(&convert(m)))
        };
        if !news {
            return;
        }
        let mut tenants = self.tenants.write();
        let families = tenants.entry(tenant.to_owned()).or_default();
        for m in named() {
            let md = convert(m);
            let full = families.len() >= MAX_FAMILIES_PER_TENANT;
            match families.get_mut(m.metric_family_name) {
                Some(known) => *known = md,
                None if !full => {
                    families.insert(m.metric_family_name.to_owned(), md);
                }
                None => {}
            }
        }
    }
}

/// All tenants merged: a family whose tenants disagree lists each distinct variant, as
/// Prometheus lists the variants its targets expose.
impl MetadataSource for MetadataStore {
    fn metadata(&self, metric: Option<&str>) -> Vec<(String, Vec<MetricMetadata>)> {
        let mut merged: BTreeMap<String, BTreeSet<MetricMetadata>> = BTreeMap::new();
        for families in self.tenants.read().values() {
            for (name, md) in families {
                if metric.is_none_or(|m| m == name) {
                    merged.entry(name.clone()).or_default().insert(md.clone());
                }
            }
        }
        merged.into_iter().map(|(name, set)| (name, set.into_iter().collect())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md<'a>(name: &'a str, t: MetricType, help: &'a str) -> Metadata<'a> {
        Metadata { metric_type: t, metric_family_name: name, help, unit: "" }
    }

    fn entry(t: &str, help: &str) -> MetricMetadata {
        MetricMetadata { metric_type: t.into(), help: help.into(), unit: String::new() }
    }

    #[test]
    fn latest_wins_per_tenant_and_tenants_merge() {
        let store = MetadataStore::default();
        store.record("a", &[md("up", MetricType::Gauge, "old"), md("", MetricType::Counter, "no name")]);
        store.record("a", &[md("up", MetricType::Gauge, "new"), md("reqs_total", MetricType::Counter, "requests")]);
        store.record("b", &[md("up", MetricType::Gauge, "other")]);
        let all = store.metadata(None);
        assert_eq!(
            all,
            vec![
                ("reqs_total".to_owned(), vec![entry("counter", "requests")]),
                ("up".to_owned(), vec![entry("gauge", "new"), entry("gauge", "other")]),
            ]
        );
        assert_eq!(
            store.metadata(Some("reqs_total")),
            vec![("reqs_total".to_owned(), vec![entry("counter", "requests")])]
        );
        assert!(store.metadata(Some("nope")).is_empty());
    }

    #[test]
    fn new_families_stop_at_the_cap() {
        let store = MetadataStore::default();
        let names: Vec<String> = (0..MAX_FAMILIES_PER_TENANT + 5).map(|i| format!("m{i}")).collect();
        let batch: Vec<_> = names.iter().map(|n| md(n, MetricType::Counter, "")).collect();
        store.record("t", &batch);
        assert_eq!(store.metadata(None).len(), MAX_FAMILIES_PER_TENANT);
        // A known family still updates.
        store.record("t", &[md("m0", MetricType::Gauge, "changed")]);
        assert_eq!(store.metadata(Some("m0")), vec![("m0".to_owned(), vec![entry("gauge", "changed")])]);
    }
}
