//! Writing series into a tenant's TSDB: the one path of every sample stored here, whether it
//! came over HTTP or gRPC, routed or not.

use std::collections::BTreeMap;

use strata_proto::remote_write::{Series, WriteBatch};

use crate::error::ReceiveError;
use crate::tenants::is_valid_tenant;
use crate::Receiver;

/// Writes the `series` of `batch` into `tenant`'s TSDB. Valid samples are committed even when
/// others are refused (as Thanos's writer does); the error then says what was refused, and the
/// number of samples written comes with it either way.
pub fn write_local<'b>(
    rx: &Receiver,
    tenant: &str,
    batch: &WriteBatch<'_>,
    series: impl IntoIterator<Item = &'b Series>,
) -> Result<u64, (ReceiveError, u64)> {
    if !rx.is_ready() {
        return Err((ReceiveError::NotReady("replaying the write-ahead log"), 0));
    }
    let db = rx.tenants.get_or_open(tenant).map_err(|e| (e, 0))?;
    let mut app = db.appender();
    let mut bad_labels = 0u64;
    let mut first_bad = None;
    for s in series {
        let samples = batch.series_samples(s).iter().map(|x| (x.timestamp, x.value));
        if let Err(e) = app.append(batch.series_labels(s), samples) {
            bad_labels += 1;
            first_bad.get_or_insert_with(|| format!("{e} in series {:?}", batch.series_labels(s)));
        }
    }
    let outcome = app.commit().map_err(|e| (e.into(), 0))?;
    db.maybe_cut();
    rx.metrics.observe_write(tenant, &outcome);
    let written = outcome.appended;
    if let Some(first) = first_bad {
        let e = ReceiveError::InvalidLabels(format!("{bad_labels} series with invalid labels refused; first: {first}"));
        return Err((e, written));
    }
    if outcome.rejected.total() > 0 {
        let r = &outcome.rejected;
        return Err((
            ReceiveError::Conflict(format!(
                "{} samples refused ({} out of order, {} duplicate timestamp, {} out of bounds), the rest written; first: {}",
                r.total(),
                r.out_of_order,
                r.duplicate_timestamp,
                r.out_of_bounds,
                r.first.as_deref().unwrap_or("?")
            )),
            written,
        ));
    }
    Ok(written)
}

/// The tenant of each series of a request: the request's, or, with
/// `--receive.split-tenant-label-name`, the series' own.
#[derive(Debug, Clone)]
pub enum Tenants<'a> {
    One(&'a str),
    PerSeries(Vec<&'a str>),
}

impl<'a> Tenants<'a> {
    /// The tenant of series `i`.
    pub fn of(&self, i: usize) -> &'a str {
        match self {
            Tenants::One(t) => t,
            Tenants::PerSeries(v) => v[i],
        }
    }

    /// The indexes of `ids` by tenant, tenants in order.
    pub fn group(&self, ids: &[usize]) -> Vec<(&'a str, Vec<usize>)> {
        match self {
            Tenants::One(t) => vec![(t, ids.to_vec())],
            Tenants::PerSeries(_) => {
                let mut by: BTreeMap<&'a str, Vec<usize>> = BTreeMap::new();
                for &i in ids {
                    by.entry(self.of(i)).or_default().push(i);
                }
                by.into_iter().collect()
            }
        }
    }
}

/// Thanos's split by tenant label: a series with a non-empty `label` belongs to the tenant it
/// names and is stored without it (and placed on the ring without it); the others keep
/// `tenant`. A tenant that is not a valid directory name refuses the request (400).
pub fn split_tenants<'a>(
    batch: &WriteBatch<'a>,
    label: &str,
    tenant: &'a str,
) -> Result<(WriteBatch<'a>, Tenants<'a>), ReceiveError> {
    let mut out =
        WriteBatch { samples: batch.samples.clone(), metadata: batch.metadata.clone(), ..WriteBatch::default() };
    out.histograms = batch.histograms;
    out.exemplars = batch.exemplars;
    let mut tenants = Vec::with_capacity(batch.series.len());
    for s in &batch.series {
        let from = out.labels.len() as u32;
        let mut own = tenant;
        for &(name, value) in batch.series_labels(s) {
            if name == label && !value.is_empty() {
                if !is_valid_tenant(value) {
                    return Err(ReceiveError::BadTenant(value.to_owned()));
                }
                own = value;
            } else {
                out.labels.push((name, value));
            }
        }
        tenants.push(own);
        out.series.push(Series { labels: from..out.labels.len() as u32, ..s.clone() });
    }
    Ok((out, Tenants::PerSeries(tenants)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_by_tenant_label() {
        let mut batch = WriteBatch::default();
        for labels in [
            &[("__name__", "a"), ("team", "x")][..],
            &[("__name__", "b"), ("team", "")][..],
            &[("__name__", "c")][..],
            &[("__name__", "d"), ("team", "y"), ("z", "1")][..],
        ] {
            let from = batch.labels.len() as u32;
            batch.labels.extend_from_slice(labels);
            batch.series.push(Series {
                labels: from..batch.labels.len() as u32,
                samples: 0..0,
                histograms: 0,
                exemplars: 0,
                created_timestamp: 0,
            });
        }
        let (split, tenants) = split_tenants(&batch, "team", "header").unwrap();
        let got: Vec<_> =
            split.series.iter().enumerate().map(|(i, s)| (tenants.of(i), split.series_labels(s).to_vec())).collect();
        assert_eq!(
            got,
            [
                ("x", vec![("__name__", "a")]),
                // An empty value names no tenant; the series is left as sent (and its empty
                // label refused when written, as any).
                ("header", vec![("__name__", "b"), ("team", "")]),
                ("header", vec![("__name__", "c")]),
                ("y", vec![("__name__", "d"), ("z", "1")]),
            ]
        );
        assert_eq!(tenants.group(&[0, 1, 2, 3]), [("header", vec![1, 2]), ("x", vec![0]), ("y", vec![3])]);

        batch.labels[1] = ("team", "../etc");
        assert!(matches!(split_tenants(&batch, "team", "header"), Err(ReceiveError::BadTenant(t)) if t == "../etc"));
    }
}
