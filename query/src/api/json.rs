//! JSON output byte-compatible with Prometheus's: Go's string escaping, sample values as Go
//! formats them, timestamps as seconds with milliseconds, and the success envelope.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use http_body::{Frame, SizeHint};
use strata_tsdb::gotext::{format_g, write_f, write_g};
use strata_tsdb::labels::Labels;
use tokio::sync::mpsc;

use crate::engine::par_parts;
use crate::value::{Series, Value};

fn digit(d: u32) -> char {
    char::from_digit(d, 10).unwrap_or('0')
}

/// Bytes a streaming writer collects before handing them to the response body.
const STREAM_CHUNK: usize = 64 * 1024;

/// Matrix points encoded at once, spread over the cores, before they are written out (about
/// 35 bytes each, so about 1.1 MB). Smaller batches let the answer start sooner and reuse
/// warm memory: against 2^17, the 10000-series `rate` range query of the latency benchmark
/// (120,500 points) took 4 % less time and 9 % less CPU; 2^14 was slower again.
const ENCODE_POINTS_AT_ONCE: usize = 1 << 15;

/// Room for a piece of encoded matrix: a stream chunk and the series that crosses its end.
const PIECE_CAPACITY: usize = STREAM_CHUNK + STREAM_CHUNK / 4;

/// Fewest matrix points worth a thread of their own: a point takes about 30 ns, so a part takes
/// over 100 µs, more than waking a pool thread costs. (Measured with the calling thread taking
/// the first part: the plain rate query over 50 series × 241 steps answered 0.1 ms sooner.)
const PARALLEL_MIN_POINTS: usize = 1 << 12;

/// A JSON document written by hand, so that numbers come out exactly as Prometheus writes them.
#[derive(Default)]
pub struct JsonWriter {
    out: String,
    output: Output,
}

/// Where a writer's text goes.
#[derive(Default)]
enum Output {
    /// Everything stays in the writer.
    #[default]
    Whole,
    /// Pieces of text are held until they pass [`STREAM_AFTER`] bytes; then the answer starts
    /// (the function hands it a body, false when nobody waits for it any more) and the rest
    /// streams into that body.
    UntilLarge { start: Box<dyn FnOnce(Body) -> bool + Send>, held: Vec<Bytes>, held_len: usize },
    /// Pieces go to the body of an answer already started, a batch of them at a time.
    Stream(mpsc::Sender<Vec<Bytes>>),
    /// The client has gone: the rest of the document is dropped.
    Gone,
}

/// Bytes of an answer held before it starts to stream. Answers up to this size go out as one
/// body with its length, without the handoffs streaming costs per piece.
const STREAM_AFTER: usize = 1 << 20;

impl JsonWriter {
    /// A writer that starts with the success envelope; finish it with [`success`].
    pub fn success() -> JsonWriter {
        let mut w = JsonWriter::default();
        w.raw(r#"{"status":"success","data":"#);
        w
    }

    /// Like [`JsonWriter::success`], for answers written on a blocking thread and finished with
    /// [`answer`]: `start` gets the body, whole (its pieces, never copied into one buffer) if
    /// the document stays under [`STREAM_AFTER`] bytes, else a stream that the rest is written
    /// into as it is encoded, so that a large result is never held whole.
    pub fn success_answering(start: impl FnOnce(Body) -> bool + Send + 'static) -> JsonWriter {
        let mut w = JsonWriter::success();
        w.output = Output::UntilLarge { start: Box::new(start), held: Vec::new(), held_len: 0 };
        w
    }

    /// Passes the text written so far on as a piece once there is enough of it.
    fn maybe_flush(&mut self) {
        if self.out.len() >= STREAM_CHUNK && !matches!(self.output, Output::Whole) {
            let piece = std::mem::replace(&mut self.out, String::with_capacity(PIECE_CAPACITY));
            self.pass_on([piece]);
        }
    }

    /// Hands pieces of the document to where they go: held, or sent on. Pieces sent on go
    /// together, as one handoff to the body: each handoff may park this thread and wake the
    /// one writing the response.
    fn pass_on(&mut self, pieces: impl IntoIterator<Item = String>) {
        if matches!(self.output, Output::Whole) {
            pieces.into_iter().for_each(|piece| self.out.push_str(&piece));
            return;
        }
        let mut pieces = pieces.into_iter().map(|piece| Bytes::from(piece.into_bytes()));
        if let Output::UntilLarge { held, held_len, .. } = &mut self.output {
            for piece in pieces.by_ref() {
                *held_len += piece.len();
                held.push(piece);
                if *held_len >= STREAM_AFTER {
                    break;
                }
            }
            if *held_len < STREAM_AFTER {
                return;
            }
            self.start_stream();
        }
        if let Output::Stream(tx) = &self.output {
            let batch: Vec<Bytes> = pieces.collect();
            if !batch.is_empty() && tx.blocking_send(batch).is_err() {
                self.output = Output::Gone;
                self.out = String::new();
            }
        }
    }

    /// Starts the answer as a stream: the held pieces first, then what is sent on.
    fn start_stream(&mut self) {
        let Output::UntilLarge { start, held, .. } = std::mem::replace(&mut self.output, Output::Gone) else { return };
        let (tx, mut rx) = mpsc::channel::<Vec<Bytes>>(4);
        let rest = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).flat_map(futures::stream::iter);
        let pieces = futures::stream::iter(held).chain(rest).map(Ok::<_, std::io::Error>);
        if start(Body::from_stream(pieces)) {
            self.output = Output::Stream(tx);
        } else {
            self.out = String::new();
        }
    }

    /// Appends pieces of text encoded elsewhere; unless the writer keeps everything, the text
    /// so far and these pieces are passed on together, uncopied.
    fn append_encoded(&mut self, pieces: Vec<String>) {
        if matches!(self.output, Output::Whole) {
            return self.pass_on(pieces);
        }
        let before = Some(std::mem::take(&mut self.out)).filter(|text| !text.is_empty());
        self.pass_on(before.into_iter().chain(pieces));
    }

    fn with_capacity(bytes: usize) -> JsonWriter {
        JsonWriter { out: String::with_capacity(bytes), output: Output::Whole }
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

    /// `[time,"value"]`, the time already formatted.
    fn point(&mut self, time: &str, v: f64) {
        self.out.push('[');
        self.out.push_str(time);
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
                // The samples of an instant query share their time.
                let mut times = TimeTexts::default();
                for (i, s) in samples.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.raw(r#"{"metric":"#);
                    self.labels(&s.labels);
                    self.raw(r#","value":"#);
                    self.point(times.get(0, s.t), s.v);
                    self.out.push('}');
                    self.maybe_flush();
                }
                self.out.push(']');
            }
            Value::Matrix(series) => {
                self.out.push('[');
                self.matrix(series);
                self.out.push(']');
            }
        }
    }

    /// The series of a matrix, comma-separated. Series encode independently: a batch of them at
    /// a time, split over the cores, each thread writing pieces of about a stream chunk (small
    /// enough to stay in cache and to come from reused heap memory), which a streaming writer
    /// sends on as they are.
    fn matrix(&mut self, series: &[Series]) {
        let last = series.last();
        let mut rest = series;
        while !rest.is_empty() {
            let (mut n, mut points) = (0, 0);
            while n < rest.len() && (n == 0 || points + rest[n].points.len() <= ENCODE_POINTS_AT_ONCE) {
                points += rest[n].points.len();
                n += 1;
            }
            let (batch, tail) = rest.split_at(n);
            rest = tail;
            let pieces =
                par_parts(batch, |s| s.points.len() + 1, PARALLEL_MIN_POINTS, |part| matrix_pieces(part, last));
            self.append_encoded(pieces.into_iter().flatten().collect());
        }
    }

    /// `{"metric":…,"values":[…]}`.
    fn matrix_series(&mut self, s: &Series, times: &mut TimeTexts) {
        self.raw(r#"{"metric":"#);
        self.labels(&s.labels);
        self.raw(r#","values":["#);
        for (j, &(t, v)) in s.points.iter().enumerate() {
            if j > 0 {
                self.out.push(',');
            }
            self.point(times.get(j, t), v);
        }
        self.raw("]}");
    }

    pub fn into_response(self, status: StatusCode) -> Response {
        (status, [(header::CONTENT_TYPE, "application/json")], self.out).into_response()
    }
}

/// A sample's timestamp in seconds, as Prometheus's `MarshalTimestamp`: the integer part, then
/// `.` and exactly three digits when there are milliseconds (`1.500`).
pub(crate) fn write_time(out: &mut String, ms: i64) {
    if ms < 0 {
        out.push('-');
    }
    let abs = ms.unsigned_abs();
    let (secs, ms) = (abs / 1000, abs % 1000);
    out.push_str(itoa::Buffer::new().format(secs));
    if ms > 0 {
        let ms = ms as u32;
        out.extend(['.', digit(ms / 100), digit(ms / 10 % 10), digit(ms % 10)]);
    }
}

/// Sample times already formatted, by point position: the series of a range query share their
/// steps, so each step's time is formatted once per encoding part rather than once per series.
#[derive(Default)]
struct TimeTexts(Vec<(i64, String)>);

impl TimeTexts {
    fn get(&mut self, position: usize, t: i64) -> &str {
        if position >= self.0.len() {
            self.0.resize(position + 1, (0, String::new()));
        }
        let (at, text) = &mut self.0[position];
        if *at != t || text.is_empty() {
            text.clear();
            write_time(text, t);
            *at = t;
        }
        text
    }
}

/// Matrix series encoded in pieces of about a stream chunk, each series followed by a comma but
/// the matrix's `last`.
fn matrix_pieces(series: &[Series], last: Option<&Series>) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut w = JsonWriter::with_capacity(PIECE_CAPACITY);
    let mut times = TimeTexts::default();
    for s in series {
        w.matrix_series(s, &mut times);
        if !last.is_some_and(|l| std::ptr::eq(l, s)) {
            w.out.push(',');
        }
        if w.out.len() >= STREAM_CHUNK {
            pieces.push(std::mem::replace(&mut w.out, String::with_capacity(PIECE_CAPACITY)));
        }
    }
    pieces.push(w.out);
    pieces
}

/// Ends a document begun with [`JsonWriter::success`] and makes it the response.
pub fn success(mut w: JsonWriter, warnings: &[String], infos: &[String]) -> Response {
    close_success(&mut w, warnings, infos);
    w.into_response(StatusCode::OK)
}

/// Ends a document begun with [`JsonWriter::success_answering`]: starts the answer with the
/// whole body, or sends the last piece of a streaming one.
pub fn answer(mut w: JsonWriter, warnings: &[String], infos: &[String]) {
    close_success(&mut w, warnings, infos);
    let last = std::mem::take(&mut w.out);
    match std::mem::replace(&mut w.output, Output::Gone) {
        Output::UntilLarge { start, mut held, held_len } => {
            let left = (held_len + last.len()) as u64;
            held.push(Bytes::from(last.into_bytes()));
            start(Body::new(Pieces { pieces: held.into(), left }));
        }
        output => {
            w.output = output;
            w.pass_on([last]);
        }
    }
}

/// A whole answer as the pieces it was encoded in, with its exact length (so that it carries
/// a Content-Length), never copied into one buffer.
struct Pieces {
    pieces: VecDeque<Bytes>,
    left: u64,
}

impl http_body::Body for Pieces {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        Poll::Ready(this.pieces.pop_front().map(|piece| {
            this.left -= piece.len() as u64;
            Ok(Frame::data(piece))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.pieces.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
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
            assert_eq!(written(|w| write_time(&mut w.out, ms)), want, "{ms}");
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
