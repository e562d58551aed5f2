//! Request parameters as Prometheus reads them: from the query string and from a form-encoded
//! POST body (Grafana and promtool POST), times as RFC 3339 or unix seconds, durations as
//! Prometheus durations or float seconds.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use chrono::DateTime;
use strata_tsdb::gotext::{self, quote};
use strata_tsdb::matchers::Matcher;

use super::error::ApiError;

/// Go's `net/http` reads at most this much of a form body.
const MAX_FORM_BYTES: usize = 10 << 20;

/// The earliest and latest times Prometheus accepts (`minTime`/`maxTime` in its API: the
/// range of `time.Time` values whose unix milliseconds fit an int64), in milliseconds, and
/// how they are spelled in RFC 3339, which clients send for "no bound".
pub const MIN_TIME: i64 = -9_223_309_901_257_974_000;
pub const MAX_TIME: i64 = 9_223_309_901_257_974_999;
const MIN_TIME_RFC3339: &str = "-292273086-05-16T16:47:06Z";
const MAX_TIME_RFC3339: &str = "292277025-08-18T07:12:54.999999999Z";

/// All parameters of a request. As with Go's `Request.Form`, body values come before query
/// string values, so [`Params::get`] prefers the body.
#[derive(Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// The first value of `name`, or `""` when it is absent (Go's `FormValue`).
    pub fn get(&self, name: &str) -> &str {
        self.pairs.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every `(name, value)`, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Parameters given in code rather than by a request.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Params {
        Params { pairs: pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect() }
    }

    pub(crate) fn extend_from(&mut self, encoded: &[u8]) {
        self.pairs.extend(form_urlencoded::parse(encoded).map(|(k, v)| (k.into_owned(), v.into_owned())));
    }
}

fn is_form(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = Response;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Response> {
        let mut params = Params::default();
        let query = req.uri().query().map(|q| q.as_bytes().to_vec());
        if matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) && is_form(&req) {
            let body: Body = req.into_body();
            let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
                .await
                .map_err(|e| ApiError::bad_data(format!("cannot read the form body: {e}")).into_response())?;
            params.extend_from(&bytes);
        }
        if let Some(q) = query {
            params.extend_from(&q);
        }
        Ok(params)
    }
}

/// A time as Prometheus parses it: unix seconds with up to millisecond precision (rounded), or
/// RFC 3339 with optional fractional seconds (truncated to milliseconds). Milliseconds.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let invalid = || format!("cannot parse {} to a valid timestamp", quote(s));
    if let Ok(t) = gotext::parse_float(s) {
        if !t.is_finite() {
            return Err(invalid());
        }
        let secs = t.trunc();
        let ms = (t - secs) * 1000.0;
        // `secs` is integral; the range check keeps the cast and the multiplication exact.
        if secs.abs() >= 9.2e15 {
            return Err(invalid());
        }
        return Ok(secs as i64 * 1000 + ms.round() as i64);
    }
    match s {
        MIN_TIME_RFC3339 => return Ok(MIN_TIME),
        MAX_TIME_RFC3339 => return Ok(MAX_TIME),
        _ => {}
    }
    // Go's layout needs the `T`; chrono would also take a space.
    if !s.contains('T') {
        return Err(invalid());
    }
    DateTime::parse_from_rfc3339(s).map(|t| t.timestamp_millis()).map_err(|_| invalid())
}

/// A duration as Prometheus parses it: float seconds or a Prometheus duration (`5m`, `1h30m`).
/// Nanoseconds, like Go's `time.Duration`.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    if let Ok(secs) = gotext::parse_float(s) {
        let ns = secs * 1e9;
        if ns.is_nan() || ns >= i64::MAX as f64 || ns <= i64::MIN as f64 {
            return Err(format!("cannot parse {} to a valid duration. It overflows int64", quote(s)));
        }
        return Ok(ns as i64);
    }
    // At most 2^63 - 1 ns, so the cast is exact.
    gotext::parse_duration(s)
        .map(|d| d.as_nanos() as i64)
        .map_err(|_| format!("cannot parse {} to a valid duration", quote(s)))
}

/// An optional time parameter: `default` when absent or empty.
pub fn time_param(p: &Params, name: &str, default: i64) -> Result<i64, ApiError> {
    match p.get(name) {
        "" => Ok(default),
        v => parse_time(v).map_err(|e| ApiError::invalid_param(name, format!("Invalid time value for '{name}': {e}"))),
    }
}

/// A required time parameter (query_range's `start` and `end`).
pub fn required_time_param(p: &Params, name: &str) -> Result<i64, ApiError> {
    parse_time(p.get(name)).map_err(|e| ApiError::invalid_param(name, e))
}

/// An optional duration parameter, nanoseconds.
pub fn duration_param(p: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    match p.get(name) {
        "" => Ok(None),
        v => parse_duration(v).map(Some).map_err(|e| ApiError::invalid_param(name, e)),
    }
}

/// Prometheus 3's `limit` (series, label names and values, queries): absent or 0 means no limit.
pub fn limit_param(p: &Params) -> Result<Option<usize>, ApiError> {
    match p.get("limit") {
        "" => Ok(None),
        v => match v.parse::<i64>() {
            Ok(n) if n < 0 => Err(ApiError::invalid_param("limit", "limit must be non-negative")),
            Ok(0) => Ok(None),
            Ok(n) => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
            Err(_) => {
                Err(ApiError::invalid_param("limit", format!("strconv.Atoi: parsing {}: invalid syntax", quote(v))))
            }
        },
    }
}

/// The `match[]` selectors, each a set of matchers a series must all satisfy. Prometheus
/// words the error differently per endpoint, so the caller wraps it.
pub fn match_param(p: &Params) -> Result<Vec<Vec<Matcher>>, String> {
    let sets = p.all("match[]").map(parse_selector).collect::<Result<Vec<_>, _>>()?;
    // A selector all of whose matchers accept the empty value would select every series.
    if sets.iter().any(|set| set.iter().all(Matcher::matches_empty)) {
        return Err("match[] must contain at least one non-empty matcher".into());
    }
    Ok(sets)
}

/// A series selector (`up`, `{job="api"}`, `http_requests_total{code=~"5.."}`) as matchers,
/// read as Prometheus reads `match[]`; errors are Prometheus's parse errors.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>, String> {
    let matchers = crate::parse::parse_selector(s).map_err(|e| e.to_string())?;
    matchers.into_iter().map(|m| Matcher::new(m.op, m.name, m.value).map_err(|e| e.to_string())).collect()
}

/// A label name from a URL path: Prometheus 3 lets clients spell names that are not legacy
/// identifiers as `U__` plus the name with `_` doubled and other characters as `_<hex>_`.
/// A spelling that does not decode is taken literally, as Prometheus does.
pub fn unescape_label_name(name: &str) -> String {
    let Some(rest) = name.strip_prefix("U__") else {
        return name.to_owned();
    };
    let mut out = String::with_capacity(rest.len());
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        if c != '_' {
            out.push(c);
            continue;
        }
        let mut code: u32 = 0;
        let mut digits = 0;
        loop {
            match chars.next() {
                Some('_') if digits == 0 => {
                    out.push('_');
                    break;
                }
                Some('_') => match char::from_u32(code) {
                    Some(decoded) => {
                        out.push(decoded);
                        break;
                    }
                    None => return name.to_owned(),
                },
                Some(h) if digits < 6 => match h.to_digit(16) {
                    Some(d) => {
                        code = code * 16 + d;
                        digits += 1;
                    }
                    None => return name.to_owned(),
                },
                _ => return name.to_owned(),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        for (s, ms) in [
            ("0", 0),
            ("1", 1000),
            ("1.5", 1500),
            ("1.009", 1009),
            ("1435781451.781", 1_435_781_451_781),
            ("-1.5", -1500),
            ("1.0004", 1000),
            ("1.0006", 1001),
            ("1e3", 1_000_000),
            ("2015-07-01T20:10:51.781Z", 1_435_781_451_781),
            ("2015-07-01T20:10:51Z", 1_435_781_451_000),
            ("2015-07-01T22:10:51.7819+02:00", 1_435_781_451_781),
            ("1969-12-31T23:59:59.5Z", -500),
            (MIN_TIME_RFC3339, MIN_TIME),
            (MAX_TIME_RFC3339, MAX_TIME),
        ] {
            assert_eq!(parse_time(s), Ok(ms), "{s}");
        }
        for bad in ["", "abc", "NaN", "+Inf", "1e300", "2015-07-01 20:10:51Z", "2015-07-01", "1e400"] {
            assert_eq!(parse_time(bad), Err(format!("cannot parse {} to a valid timestamp", quote(bad))), "{bad}");
        }
    }

    #[test]
    fn durations() {
        for (s, ns) in [
            ("1", 1_000_000_000),
            ("0.5", 500_000_000),
            ("15", 15_000_000_000),
            ("5m", 300_000_000_000),
            ("1h30m", 5_400_000_000_000),
            ("100ms", 100_000_000),
            ("0", 0),
            ("-1", -1_000_000_000),
        ] {
            assert_eq!(parse_duration(s), Ok(ns), "{s}");
        }
        assert_eq!(parse_duration("abc"), Err("cannot parse \"abc\" to a valid duration".into()));
        assert_eq!(parse_duration(""), Err("cannot parse \"\" to a valid duration".into()));
        assert_eq!(parse_duration("1e10"), Err("cannot parse \"1e10\" to a valid duration. It overflows int64".into()));
        assert!(parse_duration("NaN").is_err());
        // Go's %q, not Rust's debug quoting.
        assert_eq!(parse_duration("\x01é"), Err("cannot parse \"\\x01é\" to a valid duration".into()));
        assert_eq!(parse_duration("300y"), Err("cannot parse \"300y\" to a valid duration".into()));
        assert_eq!(parse_duration("292y"), Ok(9_208_512_000_000_000_000));
    }

    fn params(q: &str) -> Params {
        let mut p = Params::default();
        p.extend_from(q.as_bytes());
        p
    }

    #[test]
    fn form_values_first_wins_and_decode() {
        let mut p = params("query=1%2B1&time=4&match[]=a&match%5B%5D=b");
        p.extend_from(b"time=5&query=x+y");
        assert_eq!(p.get("query"), "1+1");
        assert_eq!(p.get("time"), "4");
        assert_eq!(p.get("absent"), "");
        assert_eq!(p.all("match[]").collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn time_and_limit_params() {
        let p = params("time=abc&limit=x&neg=1");
        assert_eq!(time_param(&p, "absent", 7).map_err(|e| e.to_string()), Ok(7));
        assert_eq!(
            time_param(&p, "time", 0).map_err(|e| e.to_string()),
            Err("invalid parameter \"time\": Invalid time value for 'time': cannot parse \"abc\" to a valid timestamp"
                .into())
        );
        assert_eq!(
            limit_param(&p).map_err(|e| e.to_string()),
            Err("invalid parameter \"limit\": strconv.Atoi: parsing \"x\": invalid syntax".into())
        );
        assert_eq!(limit_param(&params("limit=0")).map_err(|e| e.to_string()), Ok(None));
        assert_eq!(limit_param(&params("limit=3")).map_err(|e| e.to_string()), Ok(Some(3)));
        assert!(limit_param(&params("limit=-1")).is_err());
    }

    #[test]
    fn selectors() {
        let m = parse_selector(r#"http_requests_total{code=~"5..", job!="a"}"#).unwrap();
        let shown: Vec<String> = m.iter().map(|m| format!("{}{}{}", m.name, m.op, m.value)).collect();
        assert_eq!(shown, ["code=~5..", "job!=a", "__name__=http_requests_total"]);
        for (bad, err) in [
            ("up(", "1:3: parse error: unexpected \"(\""),
            ("1+1", "1:1: parse error: unexpected number \"1\""),
            ("rate(x[5m])", "1:5: parse error: unexpected \"(\""),
            ("up offset 5m", "1:4: parse error: unexpected <offset>"),
            ("x[5m]", "1:2: parse error: unexpected \"[\""),
        ] {
            assert_eq!(parse_selector(bad).map(|_| ()), Err(err.to_string()), "{bad}");
        }
        // The selector grammar accepts what an expression may not be.
        assert_eq!(parse_selector(r#"up{__name__="x"}"#).unwrap().len(), 2);
        let sets = match_param(&params("match[]=up&match[]=%7Bjob%3D%22a%22%7D")).unwrap();
        assert_eq!(sets.len(), 2);
        for empty in ["match[]=%7Ba%3D%22%22%7D", "match[]=%7Ba%3D~%22.*%22%7D", "match[]=up&match[]=%7Ba%3D%22%22%7D"]
        {
            let err = match_param(&params(empty)).expect_err(empty);
            assert_eq!(err, "match[] must contain at least one non-empty matcher", "{empty}");
        }
    }

    #[test]
    fn escaped_label_names() {
        for (s, want) in [
            ("job", "job"),
            ("U__job", "job"),
            ("U__a__b", "a_b"),
            ("U__service_2e_name", "service.name"),
            ("U___1f600_", "\u{1f600}"),
            ("U__bad_zz_", "U__bad_zz_"),
            ("U__open_2e", "U__open_2e"),
            ("U__toolong_1234567_", "U__toolong_1234567_"),
            ("U__surrogate_d800_", "U__surrogate_d800_"),
        ] {
            assert_eq!(unescape_label_name(s), want, "{s}");
        }
    }
}
