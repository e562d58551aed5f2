//! The crate's error type and how each error maps to a remote-write status code.

use axum::http::StatusCode;

/// Everything that can fail while receiving a write.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("receiver is not ready yet: {0}")]
    NotReady(&'static str),
    #[error("invalid tenant {0:?}: a tenant must be non-empty and must not contain path separators or be '.' or '..'")]
    BadTenant(String),
    #[error("unsupported Content-Encoding {0:?}: remote write bodies must be snappy block-compressed")]
    UnsupportedEncoding(String),
    #[error(transparent)]
    UnsupportedMediaType(#[from] strata_proto::protocol::UnsupportedContentType),
    #[error("request body of {size} bytes is over the limit of {limit} bytes")]
    BodyTooLarge { size: u64, limit: u64 },
    #[error("failed to read request body: {0}")]
    Body(String),
    #[error("snappy decode error: {0}")]
    Snappy(#[from] snap::Error),
    #[error("protobuf decode error: {0}")]
    Decode(#[from] strata_proto::remote_write::DecodeError),
    #[error("request has {got} {what}, over the limit of {limit}")]
    TooMany { what: &'static str, got: u64, limit: u64 },
    #[error("{0}")]
    InvalidLabels(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Tsdb(#[from] strata_tsdb::Error),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("request replica {replica} exceeds receiver replication factor {replication_factor}")]
    BadReplica { replica: u64, replication_factor: u64 },
    #[error("could not parse replica header")]
    BadReplicaHeader,
    /// A replica could not be written for a reason that may clear by itself: its receiver is
    /// down, backed off or not ready.
    #[error("{0}")]
    Unavailable(String),
    /// Replicas failed without a majority of one cause (Thanos answers 500 there too).
    #[error("{0}")]
    Replication(String),
    #[error(transparent)]
    Ring(#[from] strata_ring::Error),
    /// Thanos's words for a tenant at its head series limit.
    #[error("tenant is above active series limit: {series} head series, limit {limit}")]
    HeadSeriesLimit { series: u64, limit: u64 },
}

impl ReceiveError {
    /// The status Thanos receive answers with for the same condition. Senders drop batches on
    /// 4xx and retry on 5xx, so only conditions that can clear by themselves are 5xx.
    pub fn status(&self) -> StatusCode {
        use ReceiveError::*;
        match self {
            NotReady(_) | Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            BadTenant(_)
            | Body(_)
            | Snappy(_)
            | Decode(_)
            | InvalidLabels(_)
            | Unsupported(_)
            | BadReplica { .. }
            | BadReplicaHeader => StatusCode::BAD_REQUEST,
            UnsupportedEncoding(_) | UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BodyTooLarge { .. } | TooMany { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            HeadSeriesLimit { .. } => StatusCode::TOO_MANY_REQUESTS,
            Conflict(_) => StatusCode::CONFLICT,
            Tsdb(_) | Internal(_) | Config(_) | Replication(_) | Ring(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The gRPC code Thanos's `WriteableStore/RemoteWrite` answers with for the same
    /// condition, which routers map back to a status: conflicts (invalid labels included, as
    /// Thanos's writer counts them) are `AlreadyExists`, conditions that clear by themselves
    /// `Unavailable`, a bad replica or tenant `InvalidArgument`, anything else `Internal`.
    pub fn grpc_code(&self) -> tonic::Code {
        use ReceiveError::*;
        match self {
            NotReady(_) | Unavailable(_) => tonic::Code::Unavailable,
            Conflict(_) | InvalidLabels(_) => tonic::Code::AlreadyExists,
            BadReplica { .. } | BadTenant(_) => tonic::Code::InvalidArgument,
            _ => tonic::Code::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Thanos answers for each condition over HTTP and over `RemoteWrite` (reference
    /// §1.7-1.8; `handler.go` `receiveHTTP` and `RemoteWrite`).
    #[test]
    fn statuses_and_codes_are_thanos() {
        use tonic::Code;
        let cases: [(ReceiveError, u16, Code); 9] = [
            (ReceiveError::NotReady("replaying"), 503, Code::Unavailable),
            (ReceiveError::Unavailable("peer down".into()), 503, Code::Unavailable),
            (ReceiveError::Conflict("out of order".into()), 409, Code::AlreadyExists),
            (ReceiveError::InvalidLabels("duplicate".into()), 400, Code::AlreadyExists),
            (ReceiveError::BadReplica { replica: 4, replication_factor: 3 }, 400, Code::InvalidArgument),
            (ReceiveError::BadTenant("..".into()), 400, Code::InvalidArgument),
            (ReceiveError::TooMany { what: "series", got: 2, limit: 1 }, 413, Code::Internal),
            (ReceiveError::HeadSeriesLimit { series: 5, limit: 5 }, 429, Code::Internal),
            (ReceiveError::Replication("2 errors".into()), 500, Code::Internal),
        ];
        for (e, status, code) in cases {
            assert_eq!((e.status().as_u16(), e.grpc_code()), (status, code), "{e}");
        }
    }
}
