//! `thanos.WriteableStore/RemoteWrite`: writes forwarded by routers (Thanos's or ours). The
//! request's `tenant` (the default tenant when empty) and 1-based `replica` are taken as
//! Thanos's handler takes them: an ingestor-only receiver writes the series as sent; a
//! router-ingestor stores the replica it was sent, or routes a write not yet replicated; a
//! router-only receiver routes every write. Refusals
//! carry the codes Thanos's routers map back to HTTP statuses (`ReceiveError::grpc_code`).

use std::sync::Arc;

use strata_proto::thanos as pb;
use strata_proto::thanos::writeable_store_server::WriteableStore;
use tonic::{Request, Response, Status};

use crate::router::Mode;
use crate::tenants::is_valid_tenant;
use crate::writer::Tenants;
use crate::Receiver;

pub struct WriteService {
    rx: Arc<Receiver>,
}

impl WriteService {
    pub fn new(rx: Arc<Receiver>) -> Self {
        WriteService { rx }
    }
}

#[tonic::async_trait]
impl WriteableStore for WriteService {
    async fn remote_write(&self, request: Request<pb::WriteRequest>) -> Result<Response<pb::WriteResponse>, Status> {
        let req = request.into_inner();
        let tenant = if req.tenant.is_empty() { self.rx.config.default_tenant.as_str() } else { req.tenant.as_str() };
        if !is_valid_tenant(tenant) {
            return Err(Status::invalid_argument(format!("invalid tenant {tenant:?}")));
        }
        // The series are checked here, by the decoder of the HTTP path; a Go server's gRPC
        // layer refuses such a request as it unmarshals it, with this code.
        let batch = req.batch().map_err(|e| Status::internal(format!("grpc: error unmarshalling request: {e}")))?;
        // Negative replicas are beyond any replication factor, as Go's conversion to uint64 makes them.
        let replica = u64::try_from(req.replica).unwrap_or(u64::MAX);
        // As Thanos: an ingestor-only receiver stores forwards as sent, the others split them.
        let split = match self.rx.mode() {
            Mode::IngestorOnly => None,
            _ => self.rx.tenants_of(tenant, &batch).map_err(|e| Status::new(e.grpc_code(), e.to_string()))?,
        };
        let (batch, tenants) = match &split {
            Some((b, tenants)) => (b, tenants.clone()),
            None => (&batch, Tenants::One(tenant)),
        };
        match self.rx.write(&tenants, replica, batch).await {
            Ok(_) => Ok(Response::new(pb::WriteResponse {})),
            Err((e, _)) => {
                tracing::debug!(tenant, err = %e, "forwarded write refused");
                Err(Status::new(e.grpc_code(), e.to_string()))
            }
        }
    }
}
