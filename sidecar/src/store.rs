//! The sidecar's StoreAPI view of Prometheus: its data (through [`RemoteRead`]) with its
//! external labels added with Thanos's semantics, answering only while the sidecar is ready.

use std::sync::Arc;

use strata_storage::{LabelsAnswer, LabelsRequest, SelectRequest, SeriesSet, Storage, StorageError};
use strata_store::external::ExternalLabels;
use strata_store::{Component, Store, StoreInfo, TsdbInfo};

use crate::read::RemoteRead;
use crate::Sidecar;

/// Prometheus's data as a store: label set = its external labels, time range from its oldest
/// sample (not before `--min-time`) to `i64::MAX`, as Thanos's sidecar announces it.
pub struct SidecarStore {
    sidecar: Arc<Sidecar>,
    read: Arc<RemoteRead>,
}

impl SidecarStore {
    /// Reads run on `runtime`.
    pub fn new(sidecar: Arc<Sidecar>, runtime: tokio::runtime::Handle) -> Self {
        let read = Arc::new(RemoteRead::new(sidecar.prometheus().clone(), runtime, sidecar.labels.clone()));
        SidecarStore { sidecar, read }
    }

    /// The storage with the current external labels; an error while the sidecar is not ready.
    fn labelled(&self) -> Result<ExternalLabels, StorageError> {
        if let Some(reason) = self.sidecar.not_ready_reason() {
            return Err(StorageError::Unavailable(reason));
        }
        Ok(ExternalLabels::new(self.read.clone(), self.sidecar.external_labels()))
    }
}

impl Storage for SidecarStore {
    fn select(&self, req: &SelectRequest) -> Result<SeriesSet, StorageError> {
        let storage = self.labelled()?;
        // As Thanos: never ask for more than Prometheus holds (or `--min-time` allows).
        let min_time = req.min_time.max(self.sidecar.min_time());
        if min_time > req.max_time {
            return Ok(SeriesSet::empty());
        }
        storage.select(&SelectRequest { min_time, ..req.clone() })
    }

    fn label_names(&self, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        self.labelled()?.label_names(req)
    }

    fn label_values(&self, name: &str, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        self.labelled()?.label_values(name, req)
    }
}

impl Store for SidecarStore {
    fn info(&self) -> StoreInfo {
        let labels = self.sidecar.external_labels();
        let (min_time, max_time) = (self.sidecar.min_time(), i64::MAX);
        let (label_sets, tsdb_infos) = if labels.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            (vec![labels.clone()], vec![TsdbInfo { labels, min_time, max_time }])
        };
        StoreInfo { component: Component::Sidecar, label_sets, min_time, max_time, tsdb_infos }
    }
}
