//! `--query-frontend.downstream-tripper-config`: Thanos v0.42's `DownstreamTripperConfig`
//! (pkg/queryfrontend/config.go), read strictly (unknown fields refused, as Thanos's
//! `yaml.UnmarshalStrict`), mapped onto the downstream client ([`Transport`], [`TlsConfig`]).
//! As in Thanos a duration of 0 and an unset count keep the default. Mapping:
//! - `idle_conn_timeout`: the pool's idle timeout (default 90s);
//! - `response_header_timeout`: the wait for an answer's headers (default none);
//! - `tls_handshake_timeout`: added to the dial timeout as the limit of one connection's TCP
//!   connect and TLS handshake together (default 10s);
//! - `max_idle_conns`, `max_idle_conns_per_host`: the pool's idle connections (the frontend
//!   has one host, so the smaller applies; negative keeps none; unset keeps hyper's unbounded
//!   pool, where Go would keep 2 per host);
//! - `max_conns_per_host`: requests in flight at once (one HTTP/1.1 connection each);
//! - `tls_config`: the client's TLS;
//! - `expect_continue_timeout`: the client sends request bodies without waiting for
//!   `100 Continue` (Go's behaviour with 0), so any other value is refused.

use std::time::Duration;

use serde::Deserialize;
use strata_tsdb::gotext::deserialize_model_duration;

use super::downstream::Transport;
use super::tls::{TlsConfig, TlsFields};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default, deserialize_with = "deserialize_model_duration")]
    idle_conn_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "deserialize_model_duration")]
    response_header_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "deserialize_model_duration")]
    tls_handshake_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "deserialize_model_duration")]
    expect_continue_timeout: Option<Duration>,
    max_idle_conns: Option<i64>,
    max_idle_conns_per_host: Option<i64>,
    max_conns_per_host: Option<i64>,
    tls_config: Option<TlsFields>,
}

/// What the tripper config sets: the transport, and the TLS of an `https://` downstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownstreamTripper {
    pub transport: Transport,
    pub tls: Option<TlsConfig>,
}

/// Reads the config `yaml` (from `source`, named in errors) over Thanos's defaults with
/// `dial_timeout`; empty text is the defaults.
pub fn parse_tripper_config(yaml: &str, source: &str, dial_timeout: Duration) -> Result<DownstreamTripper, String> {
    let mut transport = Transport::with_dial_timeout(dial_timeout);
    if yaml.trim().is_empty() {
        return Ok(DownstreamTripper { transport, tls: None });
    }
    let raw: RawConfig = serde_norway::from_str(yaml).map_err(|e| format!("{source}: {e}"))?;
    let positive = |d: Option<Duration>| d.filter(|d| !d.is_zero());
    if let Some(d) = positive(raw.expect_continue_timeout) {
        return Err(format!(
            "{source}: expect_continue_timeout {d:?} cannot be honoured: the downstream client sends request bodies \
             without waiting for 100 Continue (as Go does with 0); remove the field or set it to 0s"
        ));
    }
    if let Some(d) = positive(raw.idle_conn_timeout) {
        transport.idle_conn_timeout = d;
    }
    if let Some(d) = positive(raw.tls_handshake_timeout) {
        transport.tls_handshake_timeout = d;
    }
    transport.response_header_timeout = positive(raw.response_header_timeout);
    // Go: MaxIdleConns 0 is no limit; MaxIdleConnsPerHost 0 is Go's default, which hyper's
    // unbounded pool stands in for; a negative value keeps no idle connection.
    let idle = |n: Option<i64>| n.filter(|&n| n != 0).map(|n| usize::try_from(n).unwrap_or(0));
    transport.max_idle_conns = match (idle(raw.max_idle_conns), idle(raw.max_idle_conns_per_host)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    transport.max_conns = match raw.max_conns_per_host {
        // Go: 0 (and below) is no limit.
        Some(n) if n > 0 => Some(usize::try_from(n).map_err(|e| format!("{source}: max_conns_per_host {n}: {e}"))?),
        _ => None,
    };
    Ok(DownstreamTripper { transport, tls: raw.tls_config.map(TlsFields::into_config) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIAL: Duration = Duration::from_secs(10);

    #[test]
    fn every_field_of_thanos_config_maps() {
        let yaml = "idle_conn_timeout: 2m\nresponse_header_timeout: 30s\ntls_handshake_timeout: 5s\n\
                    expect_continue_timeout: 0s\nmax_idle_conns: 50\nmax_idle_conns_per_host: 100\n\
                    max_conns_per_host: 8\ntls_config:\n  ca_file: ca.pem\n  server_name: query.local\n";
        let t = parse_tripper_config(yaml, "tripper.yml", DIAL).unwrap();
        assert_eq!(
            t.transport,
            Transport {
                dial_timeout: DIAL,
                tls_handshake_timeout: Duration::from_secs(5),
                idle_conn_timeout: Duration::from_secs(120),
                response_header_timeout: Some(Duration::from_secs(30)),
                max_idle_conns: Some(50),
                max_conns: Some(8),
                ..Transport::with_dial_timeout(DIAL)
            }
        );
        let tls = t.tls.unwrap();
        assert_eq!(tls.ca_file.unwrap().to_str(), Some("ca.pem"));
        assert_eq!(tls.server_name.as_deref(), Some("query.local"));
        // Zero and unset keep the defaults, as in Thanos.
        for yaml in ["", "idle_conn_timeout: 0s\nmax_conns_per_host: 0\n", "{}"] {
            let t = parse_tripper_config(yaml, "t.yml", DIAL).unwrap();
            assert_eq!(t, DownstreamTripper { transport: Transport::with_dial_timeout(DIAL), tls: None }, "{yaml}");
        }
        let t = parse_tripper_config("max_idle_conns_per_host: -1\n", "t.yml", DIAL).unwrap();
        assert_eq!(t.transport.max_idle_conns, Some(0));
    }

    #[test]
    fn malformed_and_unhonourable_configs_are_refused() {
        for (yaml, want) in [
            ("idle_conn_timeout: soon\n", "idle_conn_timeout"),
            ("max_conns_per_host: many\n", "max_conns_per_host"),
            ("max_idle_conns: 1.5\n", "max_idle_conns"),
            ("proxy_url: http://proxy:3128\n", "proxy_url"),
            ("tls_config:\n  ca: x\n", "unknown field `ca`"),
            ("tls_config: [a]\n", "tls_config"),
            ("expect_continue_timeout: 1s\n", "expect_continue_timeout"),
            ("- a\n", "t.yml"),
            ("idle_conn_timeout: [", "t.yml"),
            ("max_conns_per_host: 99999999999999999999999\n", "max_conns_per_host"),
            ("response_header_timeout: -1s\n", "response_header_timeout"),
        ] {
            let err = parse_tripper_config(yaml, "t.yml", DIAL).unwrap_err();
            assert!(err.contains(want) && err.contains("t.yml"), "{yaml:?}: {err}");
        }
        let bomb = format!("tls_config: {}{}", "[".repeat(5_000), "]".repeat(5_000));
        assert!(parse_tripper_config(&bomb, "t.yml", DIAL).is_err());
    }
}
