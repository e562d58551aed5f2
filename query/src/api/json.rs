//! JSON output byte-compatible with Prometheus's: Go's string escaping, sample values as Go
//! formats them, timestamps as seconds with milliseconds, and the success envelope.

use std::fmt::Write as _;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use strata_tsdb::gofloat::{format_g, write_f, write_g};
use strata_tsdb::labels::Labels;
use tokio::sync::mpsc;

use crate::engine::par_map;
use crate::value::{Series, Value};

fn digit(d: u32) -> char {
    char::from_digit(d, 10).unwrap_or('0')
}

/// Bytes a streaming writer collects before handing them to the response body.
const STREAM_CHUNK: usize = 64 * 1024;

/// Matrix series encoded as one run by one thread.
const ENCODE_RUN: usize = 128;

/// Runs encoded at once, spread over the cores, before they are written out.
const ENCODE_RUNS_AT_ONCE: usize = 4;

/// A JSON document written by hand, so that numbers come out exactly as Prometheus writes them.
#[derive(Default)]
pub struct JsonWriter {
    out: String,
    /// Where a streaming writer sends full chunks; `None` for a writer that buffers everything.
    sink: Option<mpsc::Sender<Bytes>>,
}

impl JsonWriter {
    /// A writer that starts with the success envelope; finish it with [`success`].
    pub fn success() -> JsonWriter {
        let mut w = JsonWriter::default();
        w.raw(r#"{"status":"success","data":"#);
        w
    }

    /// Like [`JsonWriter::success`], but the document goes to the returned body in chunks as
    /// it is written (from a blocking thread), so a large result is never held as one string.
    pub fn streaming_success() -> (JsonWriter, Body) {
        let (tx, mut rx) = mpsc::channel::<Bytes>(4);
        let mut w = JsonWriter::success();
        w.sink = Some(tx);
        let chunks = futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|c| c.map(Ok::<_, std::io::Error>)));
        (w, Body::from_stream(chunks))
    }

    /// Hands the written bytes to the body once there are enough of them. When the client has
    /// gone, the rest of the document is discarded.
    fn maybe_flush(&mut self) {
        if self.out.len() >= STREAM_CHUNK {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.sink.is_some() && !self.out.is_empty() {
            let chunk = std::mem::take(&mut self.out);
            self.send(chunk);
        }
    }

    /// Appends text encoded elsewhere; a streaming writer sends it on as it is.
    fn append_encoded(&mut self, text: String) {
        if self.sink.is_none() {
            self.out.push_str(&text);
            return;
        }
        self.flush();
        self.send(text);
    }

    fn send(&mut self, chunk: String) {
        let Some(tx) = &self.sink else { return };
        if tx.blocking_send(Bytes::from(chunk.into_bytes())).is_err() {
            self.sink = None;
            self.out = String::new();
        }
    }

    pub fn raw(&mut self, s: &str) {
        self.out.push_str(s);
    }

    /// A string escaped as Go's encoding/json does (HTML-safe: `<`, `>`, `&`, U+2028 and
    /// U+2029 as `\u` escapes).
    pub fn string(&mut self, s: &str) {
        self.out.reserve(s.len() + 2);
        self.out.push('"');
        for c in s.chars() {
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                '\t' => self.out.push_str("\\t"),
                '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                    let _ = write!(self.out, "\\u{:04x}", c as u32);
                }
                c if (c as u32) < 0x20 => {
                    let _ = write!(self.out, "\\u{:04x}", c as u32);
                }
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }

    /// `[s1,s2,…]`.
    pub fn strings<'a>(&mut self, items: impl IntoIterator<Item = &'a str>) {
        self.out.push('[');
        for (i, s) in items.into_iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.string(s);
        }
        self.out.push(']');
    }

    /// A label set as an object, in label order.
    pub fn labels(&mut self, labels: &Labels) {
        self.out.push('{');
        for (i, (name, value)) in labels.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.string(name);
            self.out.push(':');
            self.string(value);
        }
        self.out.push('}');
    }

    /// A sample's timestamp in seconds: the integer part, then `.` and exactly three digits
    /// when there are milliseconds (`1.500`), as Prometheus's `MarshalTimestamp`.
    pub fn sample_time(&mut self, ms: i64) {
        if ms < 0 {
            self.out.push('-');
        }
        let abs = ms.unsigned_abs();
        let (secs, ms) = (abs / 1000, abs % 1000);
        self.out.push_str(itoa::Buffer::new().format(secs));
        if ms > 0 {
            let ms = ms as u32;
            self.out.extend(['.', digit(ms / 100), digit(ms / 10 % 10), digit(ms % 10)]);
        }
    }

    /// A sample's value as a string, as Prometheus's `MarshalValue`: Go's shortest decimal, with
    /// an exponent only below 1e-6 or from 1e21 on; `NaN`, `+Inf`, `-Inf`.
    pub fn sample_value(&mut self, v: f64) {
        self.out.push('"');
        let abs = v.abs();
        if abs != 0.0 && abs.is_finite() && !(1e-6..1e21).contains(&abs) {
            // Go's 'e' and 'g' formats agree whenever 'g' picks an exponent, as it does here.
            write_g(&mut self.out, v);
        } else {
            write_f(&mut self.out, v);
        }
        self.out.push('"');
    }

    /// A float as Go's encoding/json writes a float64 (exponent below 1e-6 and from 1e21 on,
    /// `e-7` rather than `e-07`). Used for scalar and string timestamps and for timings.
    pub fn go_float(&mut self, v: f64) {
        let abs = v.abs();
        if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
            let g = format_g(v);
            match g.split_once("e-0") {
                Some((mantissa, exp)) => {
                    let _ = write!(self.out, "{mantissa}e-{exp}");
                }
                None => self.out.push_str(&g),
            }
        } else {
            write_f(&mut self.out, v);
        }
    }

    fn point(&mut self, t: i64, v: f64) {
        self.out.push('[');
        self.sample_time(t);
        self.out.push(',');
        self.sample_value(v);
        self.out.push(']');
    }

    /// `{"resultType":…,"result":…}` without the closing brace, so that stats can follow.
    pub fn query_data_open(&mut self, value: &Value) {
        self.raw(r#"{"resultType":"#);
        self.string(value.type_name());
        self.raw(r#","result":"#);
        match value {
            // Scalars and strings go through Go's encoding/json in Prometheus: the time is a
            // plain float and a scalar's value is formatted without an exponent.
            Value::Scalar { t, v } => {
                self.out.push('[');
                self.go_float(*t as f64 / 1000.0);
                self.out.push_str(",\"");
                write_f(&mut self.out, *v);
                self.out.push_str("\"]");
            }
            Value::String { t, v } => {
                self.out.push('[');
                self.go_float(*t as f64 / 1000.0);
                self.out.push(',');
                self.string(v);
                self.out.push(']');
            }
            Value::Vector(samples) => {
                self.out.push('[');
                for (i, s) in samples.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.raw(r#"{"metric":"#);
                    self.labels(&s.labels);
                    self.raw(r#","value":"#);
                    self.point(s.t, s.v);
                    self.out.push('}');
                    self.maybe_flush();
                }
                self.out.push(']');
            }
            Value::Matrix(series) => {
                self.out.push('[');
                // Series encode independently: runs of them on all cores, each run written out
                // whole (a streaming writer sends it as a chunk of its own, uncopied).
                let runs: Vec<(usize, &[Series])> =
                    series.chunks(ENCODE_RUN).enumerate().map(|(i, run)| (i * ENCODE_RUN, run)).collect();
                for batch in runs.chunks(ENCODE_RUNS_AT_ONCE) {
                    let encoded = par_map(batch, 1, |&(first, run)| {
                        let mut w = JsonWriter::default();
                        for (i, s) in run.iter().enumerate() {
                            if first + i > 0 {
                                w.out.push(',');
                            }
                            w.matrix_series(s);
                        }
                        w.out
                    });
                    for run in encoded {
                        self.append_encoded(run);
                    }
                }
                self.out.push(']');
            }
        }
    }

    /// `{"metric":…,"values":[…]}`.
    fn matrix_series(&mut self, s: &Series) {
        self.raw(r#"{"metric":"#);
        self.labels(&s.labels);
        self.raw(r#","values":["#);
        for (j, &(t, v)) in s.points.iter().enumerate() {
            if j > 0 {
                self.out.push(',');
            }
            self.point(t, v);
        }
        self.raw("]}");
    }

    pub fn into_response(self, status: StatusCode) -> Response {
        (status, [(header::CONTENT_TYPE, "application/json")], self.out).into_response()
    }
}

/// Ends a document begun with [`JsonWriter::success`] and makes it the response.
pub fn success(mut w: JsonWriter, warnings: &[String], infos: &[String]) -> Response {
    close_success(&mut w, warnings, infos);
    w.into_response(StatusCode::OK)
}

/// Ends a document begun with [`JsonWriter::streaming_success`] and sends the last chunk.
pub fn finish_stream(mut w: JsonWriter, warnings: &[String], infos: &[String]) {
    close_success(&mut w, warnings, infos);
    w.flush();
}

/// `warnings` and `infos` when there are any, and the envelope's closing brace.
fn close_success(w: &mut JsonWriter, warnings: &[String], infos: &[String]) {
    if !warnings.is_empty() {
        w.raw(r#","warnings":"#);
        w.strings(warnings.iter().map(String::as_str));
    }
    if !infos.is_empty() {
        w.raw(r#","infos":"#);
        w.strings(infos.iter().map(String::as_str));
    }
    w.raw("}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{Sample, Series};

    fn written(f: impl FnOnce(&mut JsonWriter)) -> String {
        let mut w = JsonWriter::default();
        f(&mut w);
        w.out
    }

    #[test]
    fn sample_times() {
        for (ms, want) in [
            (0, "0"),
            (1000, "1"),
            (1500, "1.500"),
            (1050, "1.050"),
            (1001, "1.001"),
            (1_435_781_451_781, "1435781451.781"),
            (-1500, "-1.500"),
            (-5, "-0.005"),
            (i64::MIN, "-9223372036854775.808"),
        ] {
            assert_eq!(written(|w| w.sample_time(ms)), want, "{ms}");
        }
    }

    #[test]
    fn sample_values() {
        for (v, want) in [
            (1.0, "\"1\""),
            (0.1, "\"0.1\""),
            (123456789.125, "\"123456789.125\""),
            (1e-7, "\"1e-07\""),
            (1e-6, "\"0.000001\""),
            (1.5e-7, "\"1.5e-07\""),
            (1e21, "\"1e+21\""),
            (9.99e20, "\"999000000000000000000\""),
            (-2.5e25, "\"-2.5e+25\""),
            (0.0, "\"0\""),
            (-0.0, "\"-0\""),
            (f64::NAN, "\"NaN\""),
            (f64::INFINITY, "\"+Inf\""),
            (f64::NEG_INFINITY, "\"-Inf\""),
        ] {
            assert_eq!(written(|w| w.sample_value(v)), want, "{v}");
        }
    }

    #[test]
    fn go_floats() {
        for (v, want) in [
            (4.0, "4"),
            (1.009, "1.009"),
            (1.5, "1.5"),
            (0.000071247, "0.000071247"),
            (5e-7, "5e-7"),
            (1e21, "1e+21"),
            (0.0, "0"),
        ] {
            assert_eq!(written(|w| w.go_float(v)), want, "{v}");
        }
    }

    #[test]
    fn strings_escape_like_go() {
        assert_eq!(
            written(|w| w.string("a\"b\\c\nd\te<f>&\u{1}\u{2028}é")),
            r#""a\"b\\c\nd\te\u003cf\u003e\u0026\u0001\u2028é""#
        );
    }

    #[test]
    fn values() {
        let labels = Labels::from_pairs(&[("__name__", "up"), ("job", "a")]);
        let cases = [
            (Value::Scalar { t: 4000, v: 2.0 }, r#"{"resultType":"scalar","result":[4,"2"]"#),
            (Value::Scalar { t: 1009, v: 1e-7 }, r#"{"resultType":"scalar","result":[1.009,"0.0000001"]"#),
            (Value::String { t: 1500, v: "a<b".into() }, r#"{"resultType":"string","result":[1.5,"a\u003cb"]"#),
            (Value::Vector(vec![]), r#"{"resultType":"vector","result":[]"#),
            (
                Value::Vector(vec![Sample { labels: labels.clone(), t: 1500, v: f64::NAN }]),
                r#"{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a"},"value":[1.500,"NaN"]}]"#,
            ),
            (
                Value::Matrix(vec![
                    Series { labels: Labels::empty(), points: vec![(0, 0.0), (500, 0.5)] },
                    Series { labels, points: vec![(1000, 1e21)] },
                ]),
                r#"{"resultType":"matrix","result":[{"metric":{},"values":[[0,"0"],[0.500,"0.5"]]},{"metric":{"__name__":"up","job":"a"},"values":[[1,"1e+21"]]}]"#,
            ),
        ];
        for (value, want) in cases {
            assert_eq!(written(|w| w.query_data_open(&value)), want);
        }
    }
}
