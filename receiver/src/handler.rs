//! `POST /api/v1/receive`: remote write 1.0 and 2.0 into the tenant's TSDB.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use strata_proto::protocol::{
    Version, CONTENT_ENCODING_HEADER, EXEMPLARS_WRITTEN_HEADER, HISTOGRAMS_WRITTEN_HEADER, SAMPLES_WRITTEN_HEADER,
    SNAPPY_ENCODING,
};
use strata_proto::remote_write::WriteBatch;

use crate::error::ReceiveError;
use crate::writer::Tenants;
use crate::{Receiver, RequestLimits};

/// Totals of what a request wrote, for the 2.0 response headers.
#[derive(Debug, Default, Clone, Copy)]
struct Written {
    samples: u64,
    histograms: u64,
    exemplars: u64,
}

pub async fn receive(State(rx): State<Arc<Receiver>>, req: Request) -> Response {
    let started = std::time::Instant::now();
    let (parts, body) = req.into_parts();
    let proto = negotiate(&parts.headers);
    let result = match proto {
        Ok(proto) => handle(&rx, &parts.headers, body, proto).await.map(|w| (proto, w)),
        Err(e) => Err((e, Written::default())),
    };
    let (status, response) = match result {
        Ok((proto, written)) => {
            // Thanos answers 200; the 2.0 spec asks for 204.
            let status = if proto == Version::V2 { StatusCode::NO_CONTENT } else { StatusCode::OK };
            (status, with_written((status, "").into_response(), proto, written))
        }
        Err((e, written)) => {
            let status = e.status();
            if status.is_server_error() {
                tracing::error!(error = %e, "remote write failed");
            } else {
                tracing::debug!(error = %e, %status, "remote write refused");
            }
            let proto = negotiate(&parts.headers).unwrap_or(Version::V1);
            (status, with_written((status, format!("{e}\n")).into_response(), proto, written))
        }
    };
    rx.metrics.observe_request("receive", "POST", status, started.elapsed());
    response
}

/// The version the request's Content-Type asks for.
fn negotiate(headers: &HeaderMap) -> Result<Version, ReceiveError> {
    Ok(Version::from_content_type(headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()))?)
}

fn with_written(mut resp: Response, proto: Version, w: Written) -> Response {
    if proto == Version::V2 {
        let h = resp.headers_mut();
        for (name, v) in [
            (SAMPLES_WRITTEN_HEADER, w.samples),
            (HISTOGRAMS_WRITTEN_HEADER, w.histograms),
            (EXEMPLARS_WRITTEN_HEADER, w.exemplars),
        ] {
            h.insert(name, HeaderValue::from(v));
        }
    }
    resp
}

async fn handle(
    rx: &Arc<Receiver>,
    headers: &HeaderMap,
    body: Body,
    proto: Version,
) -> Result<Written, (ReceiveError, Written)> {
    let none = |e: ReceiveError| (e, Written::default());
    if !rx.is_ready() {
        return Err(none(ReceiveError::NotReady("replaying the write-ahead log")));
    }
    let tenant = match headers.get(&rx.config.tenant_header) {
        None => rx.config.default_tenant.as_str(),
        Some(v) => {
            v.to_str().map_err(|_| none(ReceiveError::BadTenant(String::from_utf8_lossy(v.as_bytes()).into_owned())))?
        }
    };
    if !crate::tenants::is_valid_tenant(tenant) {
        return Err(none(ReceiveError::BadTenant(tenant.to_owned())));
    }
    // Absent or empty: a write not replicated yet.
    let replica = match headers.get(&rx.config.replica_header).map(|v| v.as_bytes()) {
        None | Some(b"") => 0,
        Some(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| none(ReceiveError::BadReplicaHeader))?,
    };
    match headers.get(CONTENT_ENCODING_HEADER).map(|v| v.to_str().unwrap_or("?")) {
        None | Some("") => {}
        Some(enc) if enc.eq_ignore_ascii_case(SNAPPY_ENCODING) => {}
        Some(enc) => return Err(none(ReceiveError::UnsupportedEncoding(enc.to_owned()))),
    }
    // Thanos's order: the write gate (held until the answer), the tenant's head series, then
    // the request limits; each request limit is the lower of the flag's and the tenant's.
    let _gate = rx.config.limiter.enter().await;
    let tenant_limits = rx.config.limiter.config().of(tenant);
    if tenant_limits.head_series > 0 {
        if let Some(series) = rx.tenant_head_series(tenant).filter(|&n| n >= tenant_limits.head_series) {
            return Err(none(ReceiveError::HeadSeriesLimit { series, limit: tenant_limits.head_series }));
        }
    }
    let flags = &rx.config.limits;
    let limits = RequestLimits {
        max_body_bytes: lower(flags.max_body_bytes, tenant_limits.size_bytes),
        max_decompressed_bytes: lower(flags.max_decompressed_bytes, tenant_limits.size_bytes),
        max_series: lower(flags.max_series, tenant_limits.series),
        max_samples: lower(flags.max_samples, tenant_limits.samples),
    };
    let compressed = read_body(headers, body, limits.max_body_bytes).await.map_err(none)?;
    if compressed.is_empty() {
        // An empty body is an empty request, as Prometheus's own receiver treats it.
        return Ok(Written::default());
    }
    let raw_len = snap::raw::decompress_len(&compressed).map_err(|e| none(e.into()))?;
    check_size(raw_len as u64, limits.max_decompressed_bytes).map_err(none)?;
    let raw = snap::raw::Decoder::new().decompress_vec(&compressed).map_err(|e| none(e.into()))?;
    let batch = match proto {
        Version::V1 => WriteBatch::decode_v1(&raw),
        Version::V2 => WriteBatch::decode_v2(&raw),
    }
    .map_err(|e| none(e.into()))?;
    check_limit("series", batch.series.len() as u64, limits.max_series).map_err(none)?;
    check_limit("samples", batch.samples.len() as u64, limits.max_samples).map_err(none)?;
    rx.metadata.record(tenant, &batch.metadata);
    // Metadata-only requests (Prometheus sends one a minute) end here.
    if batch.series.is_empty() {
        return Ok(Written::default());
    }
    let split;
    let (batch, tenants) = match rx.tenants_of(tenant, &batch).map_err(none)? {
        Some((b, tenants)) => {
            split = b;
            (&split, tenants)
        }
        None => (&batch, Tenants::One(tenant)),
    };
    let result = rx.write(&tenants, replica, batch).await;
    let code = result.as_ref().map_or_else(|(e, _)| e.status(), |_| StatusCode::OK);
    let all: Vec<usize> = (0..batch.series.len()).collect();
    for (tenant, ids) in tenants.group(&all) {
        let samples = ids.iter().map(|&i| batch.series_samples(&batch.series[i]).len()).sum();
        rx.metrics.observe_write_request(code, tenant, ids.len(), samples);
    }
    result
        .map(|samples| Written { samples, histograms: 0, exemplars: 0 })
        .map_err(|(e, samples)| (e, Written { samples, histograms: 0, exemplars: 0 }))
}

/// The lower of two limits where 0 is none.
fn lower(a: u64, b: u64) -> u64 {
    match (a, b) {
        (0, x) | (x, 0) => x,
        (a, b) => a.min(b),
    }
}

fn check_size(size: u64, limit: u64) -> Result<(), ReceiveError> {
    if limit > 0 && size > limit {
        return Err(ReceiveError::BodyTooLarge { size, limit });
    }
    Ok(())
}

fn check_limit(what: &'static str, got: u64, limit: u64) -> Result<(), ReceiveError> {
    if limit > 0 && got > limit {
        return Err(ReceiveError::TooMany { what, got, limit });
    }
    Ok(())
}

/// Reads the body, refusing it with 413 as soon as it is known to be over `limit`.
async fn read_body(headers: &HeaderMap, body: Body, limit: u64) -> Result<bytes::Bytes, ReceiveError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(size) = declared {
        check_size(size, limit)?;
    }
    let max = if limit == 0 { usize::MAX } else { usize::try_from(limit).unwrap_or(usize::MAX) };
    match axum::body::to_bytes(body, max).await {
        Ok(b) => Ok(b),
        Err(e) => {
            let over = std::error::Error::source(&e)
                .is_some_and(|s| s.downcast_ref::<http_body_util::LengthLimitError>().is_some());
            if over {
                Err(ReceiveError::BodyTooLarge { size: declared.unwrap_or(limit + 1), limit })
            } else {
                Err(ReceiveError::Body(e.to_string()))
            }
        }
    }
}
