//! Writing series into a tenant's TSDB: the one path of every sample stored here, whether it
//! came over HTTP or gRPC, routed or not.

use strata_proto::prometheus as pb;
use strata_proto::remote_write::{Sample, Series, WriteBatch};

use crate::error::ReceiveError;
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

/// A batch over series decoded by prost (a gRPC write), borrowing their strings, so that they
/// take the same path as a decoded remote-write body.
pub fn batch_from_proto(timeseries: &[pb::TimeSeries]) -> WriteBatch<'_> {
    let mut batch = WriteBatch::default();
    for ts in timeseries {
        let (labels_from, samples_from) = (batch.labels.len() as u32, batch.samples.len() as u32);
        batch.labels.extend(ts.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())));
        batch.samples.extend(ts.samples.iter().map(|s| Sample {
            timestamp: s.timestamp,
            value: s.value,
            start_timestamp: 0,
        }));
        batch.histograms += ts.histograms.len();
        batch.exemplars += ts.exemplars.len();
        batch.series.push(Series {
            labels: labels_from..batch.labels.len() as u32,
            samples: samples_from..batch.samples.len() as u32,
            histograms: ts.histograms.len() as u32,
            exemplars: ts.exemplars.len() as u32,
            created_timestamp: 0,
        });
    }
    batch
}

/// One series of `batch` as the protobuf a forward carries (float samples; native histograms
/// and exemplars are not stored here and are not forwarded).
pub fn series_to_proto(batch: &WriteBatch<'_>, s: &Series) -> pb::TimeSeries {
    pb::TimeSeries {
        labels: batch
            .series_labels(s)
            .iter()
            .map(|(name, value)| pb::Label { name: (*name).to_owned(), value: (*value).to_owned() })
            .collect(),
        samples: batch
            .series_samples(s)
            .iter()
            .map(|x| pb::Sample { value: x.value, timestamp: x.timestamp })
            .collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_series_round_trip() {
        let ts = vec![
            pb::TimeSeries {
                labels: vec![pb::Label { name: "__name__".into(), value: "up".into() }],
                samples: vec![pb::Sample { value: 1.0, timestamp: 10 }, pb::Sample { value: 2.0, timestamp: 20 }],
                ..Default::default()
            },
            pb::TimeSeries {
                labels: vec![
                    pb::Label { name: "__name__".into(), value: "x".into() },
                    pb::Label { name: "a".into(), value: "b".into() },
                ],
                ..Default::default()
            },
        ];
        let batch = batch_from_proto(&ts);
        assert_eq!(batch.series.len(), 2);
        assert_eq!(batch.series_labels(&batch.series[1]), &[("__name__", "x"), ("a", "b")]);
        let back: Vec<_> = batch.series.iter().map(|s| series_to_proto(&batch, s)).collect();
        assert_eq!(back, ts);
    }
}
