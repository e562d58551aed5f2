//! The remote-write protocol's HTTP-level names: header names and values, content types, the
//! version strings, and which protocol version a Content-Type asks for. Text only: senders and
//! receivers bring their own HTTP code.

use std::fmt;
use std::str::FromStr;

// Each literal is written once; the combined constants are built from these at compile time.
macro_rules! protobuf_media_type {
    () => {
        "application/x-protobuf"
    };
}
macro_rules! v1_message {
    () => {
        "prometheus.WriteRequest"
    };
}
macro_rules! v2_message {
    () => {
        "io.prometheus.write.v2.Request"
    };
}

/// Request header naming the body's compression.
pub const CONTENT_ENCODING_HEADER: &str = "Content-Encoding";
/// The one body encoding remote write defines: the snappy block format.
pub const SNAPPY_ENCODING: &str = "snappy";
/// Request header carrying the sender's protocol version ([`Version::header_value`]).
pub const VERSION_HEADER: &str = "X-Prometheus-Remote-Write-Version";
/// Response headers of a 2.0 receiver: how many samples, histograms and exemplars it wrote.
/// A 2.0 sender treats a 2xx without them as coming from a 1.x receiver.
pub const SAMPLES_WRITTEN_HEADER: &str = "X-Prometheus-Remote-Write-Samples-Written";
pub const HISTOGRAMS_WRITTEN_HEADER: &str = "X-Prometheus-Remote-Write-Histograms-Written";
pub const EXEMPLARS_WRITTEN_HEADER: &str = "X-Prometheus-Remote-Write-Exemplars-Written";

/// Media type of every remote-write body; the `proto` parameter names the message.
pub const PROTOBUF_MEDIA_TYPE: &str = protobuf_media_type!();
/// Content-Type of a 1.0 request as Prometheus sends it: the 1.0 message is the default, so
/// no `proto` parameter.
pub const V1_CONTENT_TYPE: &str = protobuf_media_type!();
/// Content-Type of a 2.0 request.
pub const V2_CONTENT_TYPE: &str = concat!(protobuf_media_type!(), ";proto=", v2_message!());

/// A remote-write protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// Remote write 1.0: `prometheus.WriteRequest`.
    V1,
    /// Remote write 2.0: `io.prometheus.write.v2.Request`.
    V2,
}

impl Version {
    /// The fully qualified protobuf message name, as in Content-Type's `proto` parameter.
    pub const fn message(self) -> &'static str {
        match self {
            Version::V1 => v1_message!(),
            Version::V2 => v2_message!(),
        }
    }

    /// The Content-Type a sender of this version sends.
    pub const fn content_type(self) -> &'static str {
        match self {
            Version::V1 => V1_CONTENT_TYPE,
            Version::V2 => V2_CONTENT_TYPE,
        }
    }

    /// The value of [`VERSION_HEADER`] a sender of this version sends.
    pub const fn header_value(self) -> &'static str {
        match self {
            Version::V1 => "0.1.0",
            Version::V2 => "2.0.0",
        }
    }

    /// The version a request's Content-Type asks for, as the 2.0 spec says:
    /// `application/x-protobuf` with an optional `proto=` parameter naming the message (quoted
    /// or not), compared case-insensitively except for the message name. No Content-Type at
    /// all, or an empty one, means 1.0: older senders omit it.
    pub fn from_content_type(content_type: Option<&str>) -> Result<Version, UnsupportedContentType> {
        let Some(ct) = content_type.map(str::trim).filter(|c| !c.is_empty()) else {
            return Ok(Version::V1);
        };
        let unsupported = || UnsupportedContentType(ct.to_owned());
        let mut parts = ct.split(';');
        let media = parts.next().unwrap_or("").trim();
        if !media.eq_ignore_ascii_case(PROTOBUF_MEDIA_TYPE) {
            return Err(unsupported());
        }
        let mut version = Version::V1;
        for param in parts {
            let Some((key, value)) = param.split_once('=') else { continue };
            if key.trim().eq_ignore_ascii_case("proto") {
                let message = value.trim().trim_matches('"');
                version =
                    [Version::V1, Version::V2].into_iter().find(|v| v.message() == message).ok_or_else(unsupported)?;
            }
        }
        Ok(version)
    }
}

/// `v1` / `v2`, the spelling [`Version::from_str`] reads.
impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        })
    }
}

/// Reads `v1`, `1` or `1.0`, and `v2`, `2` or `2.0`.
impl FromStr for Version {
    type Err = UnknownVersion;

    fn from_str(s: &str) -> Result<Self, UnknownVersion> {
        match s {
            "v1" | "1" | "1.0" => Ok(Version::V1),
            "v2" | "2" | "2.0" => Ok(Version::V2),
            other => Err(UnknownVersion(other.to_owned())),
        }
    }
}

/// A Content-Type that names neither remote-write message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsupported Content-Type {0:?}: expected {media} with proto={v1} or proto={v2}",
    media = PROTOBUF_MEDIA_TYPE,
    v1 = Version::V1.message(),
    v2 = Version::V2.message()
)]
pub struct UnsupportedContentType(pub String);

/// A protocol version name [`Version::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown remote-write protocol {0:?}, expected v1 or v2")]
pub struct UnknownVersion(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_negotiation() {
        let v = |ct| Version::from_content_type(ct);
        assert_eq!(v(None), Ok(Version::V1));
        assert_eq!(v(Some("  ")), Ok(Version::V1));
        assert_eq!(v(Some("application/x-protobuf")), Ok(Version::V1));
        assert_eq!(v(Some("application/x-protobuf;proto=prometheus.WriteRequest")), Ok(Version::V1));
        assert_eq!(v(Some("Application/X-Protobuf; PROTO=\"io.prometheus.write.v2.Request\"")), Ok(Version::V2));
        assert_eq!(v(Some(V2_CONTENT_TYPE)), Ok(Version::V2));
        assert_eq!(v(Some(V1_CONTENT_TYPE)), Ok(Version::V1));
        assert_eq!(v(Some("application/x-protobuf;charset=utf-8")), Ok(Version::V1));
        for bad in [
            "application/x-protobuf;proto=foo.Bar",
            "application/json",
            "application/x-protobuf;proto=IO.prometheus.write.v2.request",
        ] {
            assert_eq!(v(Some(bad)), Err(UnsupportedContentType(bad.to_owned())), "{bad}");
        }
    }

    #[test]
    fn names_are_the_spec_strings() {
        assert_eq!(V2_CONTENT_TYPE, "application/x-protobuf;proto=io.prometheus.write.v2.Request");
        assert_eq!(Version::V1.message(), "prometheus.WriteRequest");
        assert_eq!((Version::V1.header_value(), Version::V2.header_value()), ("0.1.0", "2.0.0"));
        assert_eq!(
            UnsupportedContentType("text/plain".into()).to_string(),
            "unsupported Content-Type \"text/plain\": expected application/x-protobuf with \
             proto=prometheus.WriteRequest or proto=io.prometheus.write.v2.Request"
        );
    }

    #[test]
    fn version_names_round_trip() {
        for v in [Version::V1, Version::V2] {
            assert_eq!(v.to_string().parse::<Version>(), Ok(v));
        }
        assert_eq!("2.0".parse::<Version>(), Ok(Version::V2));
        assert_eq!("1".parse::<Version>(), Ok(Version::V1));
        assert!("v3".parse::<Version>().is_err());
    }
}
