//! Reading the downstream's answers (Prometheus API JSON) into the types the query API renders
//! from, merging the answers of pieces, and writing the merged answer with the query API's own
//! JSON writer, so that it reads byte for byte as the downstream's answer to the whole request.

use std::collections::{BTreeMap, BTreeSet};

use axum::response::Response;
use serde::Deserialize;
use strata_store::proxy::NO_STORES_MATCHED;
use strata_tsdb::gotext::parse_float;
use strata_tsdb::labels::Labels;

use crate::api::json::{self, JsonWriter};
use crate::value::{Sample, Series, Value};

/// A successful answer's `warnings` and `infos`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Notes {
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

impl Notes {
    pub fn is_empty(&self) -> bool {
        self.warnings.is_empty() && self.infos.is_empty()
    }

    /// Adds `other`'s notes not already here, keeping the order they were first seen in.
    pub fn absorb(&mut self, other: Notes) {
        for w in other.warnings {
            if !self.warnings.contains(&w) {
                self.warnings.push(w);
            }
        }
        for i in other.infos {
            if !self.infos.contains(&i) {
                self.infos.push(i);
            }
        }
    }
}

/// The notes of all pieces of one request as the downstream would give them for the whole:
/// each note once, in the order first seen, except Thanos's "no store matched" warning, which
/// the whole request gets only if no piece reached a store (pieces outside the stores' time
/// ranges get it where the whole request does not).
pub fn merge_notes(pieces: Vec<Notes>) -> Notes {
    let every_piece_unmatched =
        !pieces.is_empty() && pieces.iter().all(|n| n.warnings.iter().any(|w| w == NO_STORES_MATCHED));
    let mut merged = Notes::default();
    for n in pieces {
        merged.absorb(n);
    }
    if !every_piece_unmatched {
        merged.warnings.retain(|w| w != NO_STORES_MATCHED);
    }
    merged
}

#[derive(Deserialize)]
struct Envelope<T> {
    status: String,
    data: Option<T>,
    #[serde(default)]
    warnings: Vec<String>,
    #[serde(default)]
    infos: Vec<String>,
}

#[derive(Deserialize)]
struct MatrixData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<MatrixSeries>,
}

#[derive(Deserialize)]
struct MatrixSeries {
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
    #[serde(default)]
    histograms: Option<serde::de::IgnoredAny>,
}

fn envelope<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<(T, Notes), String> {
    let e: Envelope<T> = serde_json::from_slice(body).map_err(|e| format!("not Prometheus API JSON: {e}"))?;
    if e.status != "success" {
        return Err(format!("status {:?} in a successful answer", e.status));
    }
    let data = e.data.ok_or("no data in the answer")?;
    Ok((data, Notes { warnings: e.warnings, infos: e.infos }))
}

/// The series of a range query's answer, with its notes.
pub fn parse_matrix(body: &[u8]) -> Result<(Vec<Series>, Notes), String> {
    let (data, notes): (MatrixData, Notes) = envelope(body)?;
    if data.result_type != "matrix" {
        return Err(format!("result type {:?} where a range query gives a matrix", data.result_type));
    }
    let mut series = Vec::with_capacity(data.result.len());
    for s in data.result {
        if s.histograms.is_some() {
            return Err("native histogram samples, which the frontend does not merge".into());
        }
        let pairs: Vec<(&str, &str)> = s.metric.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut points = Vec::with_capacity(s.values.len());
        for (t, v) in &s.values {
            let ms = (t * 1000.0).round();
            if !ms.is_finite() || ms.abs() > 9.2e18 {
                return Err(format!("sample time {t} out of range"));
            }
            let v = parse_float(v).map_err(|_| format!("sample value {v:?} is not a number"))?;
            points.push((ms as i64, v));
        }
        series.push(Series { labels: Labels::from_pairs(&pairs), points });
    }
    Ok((series, notes))
}

#[derive(Deserialize)]
struct InstantData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct VectorSample {
    metric: BTreeMap<String, String>,
    value: Option<(f64, String)>,
    #[serde(default)]
    histogram: Option<serde::de::IgnoredAny>,
}

/// An instant query's answer: a vector (a scalar as one sample without labels, as
/// Prometheus's rule evaluation takes it), with its notes. Strings, matrices and native
/// histograms are refused.
pub fn parse_instant(body: &[u8]) -> Result<(Vec<Sample>, Notes), String> {
    let (data, notes): (InstantData, Notes) = envelope(body)?;
    let point = |t: f64, v: &str| -> Result<(i64, f64), String> {
        let ms = (t * 1000.0).round();
        if !ms.is_finite() || ms.abs() > 9.2e18 {
            return Err(format!("sample time {t} out of range"));
        }
        let v = parse_float(v).map_err(|_| format!("sample value {v:?} is not a number"))?;
        Ok((ms as i64, v))
    };
    let samples = match data.result_type.as_str() {
        "vector" => {
            let vector: Vec<VectorSample> =
                serde_json::from_value(data.result).map_err(|e| format!("not a vector: {e}"))?;
            let mut out = Vec::with_capacity(vector.len());
            for s in vector {
                let Some((t, v)) = &s.value else {
                    let what = if s.histogram.is_some() { "a native histogram" } else { "no value" };
                    return Err(format!("{what} in a vector sample, where a float was expected"));
                };
                let (t, v) = point(*t, v)?;
                let pairs: Vec<(&str, &str)> = s.metric.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                out.push(Sample { labels: Labels::from_pairs(&pairs), t, v });
            }
            out
        }
        "scalar" => {
            let (t, v): (f64, String) =
                serde_json::from_value(data.result).map_err(|e| format!("not a scalar: {e}"))?;
            let (t, v) = point(t, &v)?;
            vec![Sample { labels: Labels::empty(), t, v }]
        }
        other => return Err(format!("result type {other:?} where a vector or scalar was expected")),
    };
    Ok((samples, notes))
}

/// The strings of a label names or values answer.
pub fn parse_strings(body: &[u8]) -> Result<(Vec<String>, Notes), String> {
    envelope(body)
}

/// The label sets of a series answer.
pub fn parse_label_sets(body: &[u8]) -> Result<(Vec<Labels>, Notes), String> {
    let (sets, notes): (Vec<BTreeMap<String, String>>, Notes) = envelope(body)?;
    let sets = sets
        .iter()
        .map(|m| Labels::from_pairs(&m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>()))
        .collect();
    Ok((sets, notes))
}

/// Series from several answers as one: by label set, in label order, each series' points in
/// time order with one point per time (the first seen).
pub fn merge_series(parts: impl IntoIterator<Item = Vec<Series>>) -> Vec<Series> {
    let mut by_labels: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
    for part in parts {
        for s in part {
            by_labels.entry(s.labels).or_default().extend(s.points);
        }
    }
    by_labels
        .into_iter()
        .filter_map(|(labels, mut points)| {
            points.sort_by_key(|&(t, _)| t);
            points.dedup_by_key(|&mut (t, _)| t);
            (!points.is_empty()).then_some(Series { labels, points })
        })
        .collect()
}

/// The points of `series` from `start` to `end`, series without any left out.
pub fn extract(series: &[Series], start: i64, end: i64) -> Vec<Series> {
    series
        .iter()
        .filter_map(|s| {
            let from = s.points.partition_point(|&(t, _)| t < start);
            let to = s.points.partition_point(|&(t, _)| t <= end);
            (from < to).then(|| Series { labels: s.labels.clone(), points: s.points[from..to].to_vec() })
        })
        .collect()
}

/// A range query's answer as the query API writes it.
pub fn matrix_response(series: Vec<Series>, notes: &Notes) -> Response {
    let mut w = JsonWriter::success();
    w.query_data_open(&Value::Matrix(series));
    w.raw("}");
    json::success(w, &notes.warnings, &notes.infos)
}

/// A label names or values answer.
pub fn strings_response(strings: BTreeSet<String>, notes: &Notes) -> Response {
    let mut w = JsonWriter::success();
    w.strings(strings.iter().map(String::as_str));
    json::success(w, &notes.warnings, &notes.infos)
}

/// A series answer.
pub fn label_sets_response(sets: BTreeSet<Labels>, notes: &Notes) -> Response {
    let mut w = JsonWriter::success();
    w.raw("[");
    for (i, l) in sets.iter().enumerate() {
        if i > 0 {
            w.raw(",");
        }
        w.labels(l);
    }
    w.raw("]");
    json::success(w, &notes.warnings, &notes.infos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instant_answers_vectors_and_scalars() {
        let (v, notes) = parse_instant(
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"b"},"value":[1.5,"2"]}]},"warnings":["w"]}"#,
        )
        .unwrap();
        assert_eq!(v, vec![Sample { labels: Labels::from_pairs(&[("a", "b")]), t: 1500, v: 2.0 }]);
        assert_eq!(notes.warnings, ["w"]);
        let (v, _) =
            parse_instant(br#"{"status":"success","data":{"resultType":"scalar","result":[2,"NaN"]}}"#).unwrap();
        assert_eq!((v[0].t, v[0].v.is_nan(), v[0].labels.is_empty()), (2000, true, true));
        for bad in [
            &br#"{"status":"success","data":{"resultType":"string","result":[1,"x"]}}"#[..],
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"histogram":[1,{}]}]}}"#,
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1e300,"1"]}]}}"#,
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"x"]}]}}"#,
            br#"{"status":"success","data":{"resultType":"vector","result":{}}}"#,
            br#"{"status":"error"}"#,
            br#"{"status":"succ"#,
            b"",
        ] {
            assert!(parse_instant(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    async fn body(r: Response) -> String {
        String::from_utf8(axum::body::to_bytes(r.into_body(), usize::MAX).await.unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn matrix_round_trips_byte_for_byte() {
        let text = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a\u003c"},"values":[[1435781451.781,"1"],[1435781452,"1e-07"],[1435781453.5,"NaN"],[1435781454,"+Inf"],[1435781455,"-2.5e+25"]]},{"metric":{},"values":[[0.500,"0.1"]]}]},"warnings":["w"]}"#;
        let (series, notes) = parse_matrix(text.as_bytes()).unwrap();
        // `{}` sorts first: merging puts series in the label order the query API writes.
        let merged = merge_series([series]);
        let out = body(matrix_response(merged, &notes)).await;
        let want = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[0.500,"0.1"]]},{"metric":{"__name__":"up","job":"a\u003c"},"values":[[1435781451.781,"1"],[1435781452,"1e-07"],[1435781453.500,"NaN"],[1435781454,"+Inf"],[1435781455,"-2.5e+25"]]}]},"warnings":["w"]}"#;
        assert_eq!(out, want);
    }

    #[test]
    fn garbage_answers_are_errors() {
        for bad in [
            "",
            "<html>",
            r#"{"status":"success"}"#,
            r#"{"status":"error","errorType":"bad_data","error":"x"}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"x"]]}]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1e300,"1"]]}]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"histograms":[[1,{}]]}]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":1},"values":[]}]}}"#,
        ] {
            assert!(parse_matrix(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(parse_strings(br#"{"status":"success","data":[1]}"#).is_err());
        assert!(parse_label_sets(br#"{"status":"success","data":["a"]}"#).is_err());
    }

    #[test]
    fn no_store_matched_only_when_no_piece_matched() {
        let unmatched = || Notes { warnings: vec![NO_STORES_MATCHED.into()], infos: vec![] };
        let other = || Notes { warnings: vec!["store x failed".into()], infos: vec!["i".into()] };
        assert_eq!(merge_notes(vec![unmatched(), unmatched()]).warnings, vec![NO_STORES_MATCHED.to_owned()]);
        let m = merge_notes(vec![unmatched(), other(), Notes::default()]);
        assert_eq!(m, other());
    }

    #[test]
    fn merging_joins_pieces_and_drops_repeated_times() {
        let l = |v: &str| Labels::from_pairs(&[("a", v)]);
        let a = vec![Series { labels: l("x"), points: vec![(1, 1.0), (2, 2.0)] }];
        let b = vec![
            Series { labels: l("y"), points: vec![(3, 3.0)] },
            Series { labels: l("x"), points: vec![(2, 9.0), (3, 3.0)] },
        ];
        let m = merge_series([a, b]);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].points, vec![(1, 1.0), (2, 2.0), (3, 3.0)]);
        assert_eq!(extract(&m, 2, 2).len(), 1);
        assert_eq!(extract(&m, 2, 3)[0].points, vec![(2, 2.0), (3, 3.0)]);
    }
}
