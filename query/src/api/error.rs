//! API errors: Prometheus's error types, their HTTP status codes and the error envelope.

use std::fmt;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use strata_storage::StorageError;

use super::json::JsonWriter;
use crate::engine::QueryError;

/// Prometheus's `errorType`s that this API produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// 400: bad parameters, unparsable queries.
    BadData,
    /// 422: the query failed while running.
    Execution,
    /// 503: the query ran out of time.
    Timeout,
    /// 500: storage failures and bugs.
    Internal,
}

impl ErrorType {
    pub fn name(self) -> &'static str {
        match self {
            ErrorType::BadData => "bad_data",
            ErrorType::Execution => "execution",
            ErrorType::Timeout => "timeout",
            ErrorType::Internal => "internal",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorType::BadData => StatusCode::BAD_REQUEST,
            ErrorType::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub typ: ErrorType,
    pub msg: String,
}

impl ApiError {
    pub fn new(typ: ErrorType, msg: impl Into<String>) -> Self {
        ApiError { typ, msg: msg.into() }
    }

    pub fn bad_data(msg: impl Into<String>) -> Self {
        Self::new(ErrorType::BadData, msg)
    }

    /// Prometheus's `invalidParamError`: bad data naming the parameter.
    pub fn invalid_param(name: &str, msg: impl fmt::Display) -> Self {
        Self::bad_data(format!("invalid parameter {}: {msg}", strata_tsdb::gotext::quote(name)))
    }

    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(ErrorType::Internal, msg)
    }

    /// A query's failure: parse errors name the `query` parameter as Prometheus 3 does.
    pub fn from_query(e: QueryError) -> Self {
        match e {
            QueryError::Parse { message } => Self::invalid_param("query", message),
            QueryError::BadData(m) => Self::invalid_param("query", m),
            QueryError::Timeout => Self::new(ErrorType::Timeout, e.to_string()),
            QueryError::TooManySamples | QueryError::Execution(_) | QueryError::Unsupported(_) => {
                Self::new(ErrorType::Execution, e.to_string())
            }
            QueryError::Storage(m) => Self::internal(m),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::InvalidArgument(m) => Self::bad_data(m),
            e => Self::internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.typ == ErrorType::Internal {
            tracing::error!(error = %self.msg, "API request failed");
        }
        let mut w = JsonWriter::default();
        w.raw(r#"{"status":"error","errorType":"#);
        w.string(self.typ.name());
        w.raw(r#","error":"#);
        w.string(&self.msg);
        w.raw("}");
        w.into_response(self.typ.status())
    }
}
