//! Per-tenant TSDBs: one directory `<tsdb.path>/<tenant>/` each, opened at start or on the
//! tenant's first write.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use strata_shipper::{Bucket, Shipper};
use strata_storage::{LabelsAnswer, LabelsRequest, SelectRequest, SeriesSet, Storage, StorageError};
use strata_store::{merged_labels, merged_select};
use strata_tsdb::db::{Db, DbOptions};

use crate::error::ReceiveError;

/// Whether `tenant` is usable as a directory name: Thanos accepts a tenant only when it equals
/// its own `path.Base`, which rules out separators and the dot entries.
pub fn is_valid_tenant(tenant: &str) -> bool {
    !tenant.is_empty() && tenant != "." && tenant != ".." && !tenant.contains(['/', '\\', '\0'])
}

/// The external labels of the receiver's data: each tenant's are the receiver's `--label`s plus
/// `<tenant_label_name>="<tenant>"`. Its blocks carry them in `meta.json` and the StoreAPI adds
/// them to every series.
#[derive(Debug, Clone)]
pub struct TenantLabels {
    /// `--label` flags.
    pub external: BTreeMap<String, String>,
    /// `--receive.tenant-label-name` (`tenant_id`).
    pub tenant_label_name: String,
}

impl Default for TenantLabels {
    /// No `--label`s; Thanos's tenant label name.
    fn default() -> Self {
        TenantLabels { external: BTreeMap::new(), tenant_label_name: "tenant_id".into() }
    }
}

impl TenantLabels {
    /// The external labels of `tenant`'s data (the tenant label wins over a `--label` of the same
    /// name, as in Thanos).
    pub fn of(&self, tenant: &str) -> BTreeMap<String, String> {
        let mut labels = self.external.clone();
        labels.insert(self.tenant_label_name.clone(), tenant.to_owned());
        labels
    }
}

/// Where tenants' blocks are shipped.
#[derive(Clone)]
pub struct Shipping {
    pub bucket: Bucket,
    /// Woken after every block cut, so blocks are shipped right away.
    pub wake: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Shipping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shipping").finish_non_exhaustive()
    }
}

/// The open TSDBs by tenant, with their shippers when shipping is on.
pub struct MultiTsdb {
    dir: PathBuf,
    opts: DbOptions,
    labels: TenantLabels,
    shipping: Option<Shipping>,
    tenants: RwLock<HashMap<String, Arc<Db>>>,
    shippers: RwLock<HashMap<String, Arc<Shipper>>>,
    /// Serialises tenant creation so two first writes don't both open the same directory.
    creating: parking_lot::Mutex<()>,
}

impl MultiTsdb {
    pub fn new(dir: &Path, opts: DbOptions, labels: TenantLabels, shipping: Option<Shipping>) -> Self {
        MultiTsdb {
            dir: dir.to_owned(),
            opts,
            labels,
            shipping,
            tenants: RwLock::default(),
            shippers: RwLock::default(),
            creating: parking_lot::Mutex::new(()),
        }
    }

    /// Opens every tenant directory that exists, plus `default_tenant`, replaying their WALs.
    pub fn open_existing(&self, default_tenant: &str) -> Result<(), ReceiveError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| strata_tsdb::Error::io("create", &self.dir, e))?;
        let entries = std::fs::read_dir(&self.dir).map_err(|e| strata_tsdb::Error::io("list", &self.dir, e))?;
        let mut names = vec![default_tenant.to_owned()];
        for entry in entries {
            let entry = entry.map_err(|e| strata_tsdb::Error::io("list", &self.dir, e))?;
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            match entry.file_name().into_string() {
                Ok(name) if is_dir && is_valid_tenant(&name) && name != "lost+found" => names.push(name),
                _ => {}
            }
        }
        names.sort();
        names.dedup();
        for name in names {
            self.get_or_open(&name)?;
        }
        Ok(())
    }

    /// The tenant's TSDB if it is open.
    pub fn get(&self, tenant: &str) -> Option<Arc<Db>> {
        self.tenants.read().get(tenant).cloned()
    }

    /// The tenant's TSDB, opened (and its WAL replayed) if needed.
    pub fn get_or_open(&self, tenant: &str) -> Result<Arc<Db>, ReceiveError> {
        if let Some(db) = self.get(tenant) {
            return Ok(db);
        }
        if !is_valid_tenant(tenant) {
            return Err(ReceiveError::BadTenant(tenant.to_owned()));
        }
        let _guard = self.creating.lock();
        if let Some(db) = self.get(tenant) {
            return Ok(db);
        }
        let dir = self.dir.join(tenant);
        let db = Arc::new(Db::open(&dir, self.opts.clone())?);
        if let Some(shipping) = &self.shipping {
            let shipper = Arc::new(
                Shipper::new(shipping.bucket.clone(), &dir, self.labels.of(tenant), "receive")
                    .map_err(|e| ReceiveError::Internal(e.to_string()))?,
            );
            // Local retention deletes only blocks that are in the bucket.
            let shipped = shipper.clone();
            db.set_deletable(Arc::new(move |meta| shipped.is_uploaded(meta.ulid)));
            let wake = shipping.wake.clone();
            db.set_on_block(Arc::new(move |_| wake.notify_one()));
            self.shippers.write().insert(tenant.to_owned(), shipper);
        }
        tracing::info!(tenant, "opened tenant TSDB");
        // A replayed head may already span enough to cut (e.g. a cut was interrupted).
        db.maybe_cut();
        self.tenants.write().insert(tenant.to_owned(), db.clone());
        Ok(db)
    }

    pub fn labels(&self) -> &TenantLabels {
        &self.labels
    }

    /// Every open tenant, sorted by name.
    pub fn all(&self) -> Vec<(String, Arc<Db>)> {
        let mut v: Vec<_> = self.tenants.read().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Every tenant's shipper, sorted by tenant.
    pub fn shippers(&self) -> Vec<(String, Arc<Shipper>)> {
        let mut v: Vec<_> = self.shippers.read().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Ships every tenant's new blocks; failures are logged and retried on the next pass.
    pub async fn ship(&self) {
        for (tenant, shipper) in self.shippers() {
            match shipper.sync().await {
                Ok(stats) if stats.uploaded > 0 => {
                    tracing::info!(tenant, uploaded = stats.uploaded, bytes = stats.bytes, "shipped blocks")
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(tenant, %error, "shipping blocks failed; will retry"),
            }
        }
    }

    /// Flushes and closes every WAL.
    pub fn close(&self) -> Result<(), ReceiveError> {
        for (tenant, db) in self.all() {
            db.close()?;
            tracing::info!(tenant, "closed tenant TSDB");
        }
        Ok(())
    }
}

/// Queries see every tenant's series as written, without external labels; a label set present
/// in several tenants is one series. (The StoreAPI's view, with each tenant's labels, is
/// [`crate::store::ReceiverStore`].)
impl Storage for MultiTsdb {
    fn select(&self, req: &SelectRequest) -> Result<SeriesSet, StorageError> {
        merged_select(self.all().into_iter().map(|(_, db)| db as Arc<dyn Storage>), req)
    }

    fn label_names(&self, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        merged_labels(self.all().into_iter().map(|(_, db)| db as Arc<dyn Storage>), req, |s| s.label_names(req))
    }

    fn label_values(&self, name: &str, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        merged_labels(self.all().into_iter().map(|(_, db)| db as Arc<dyn Storage>), req, |s| s.label_values(name, req))
    }
}

#[cfg(test)]
mod tests {
    use strata_tsdb::matchers::{MatchOp, Matcher};

    use super::*;

    #[test]
    fn queries_merge_the_tenants() {
        let dir = tempfile::tempdir().unwrap();
        let tsdbs = MultiTsdb::new(dir.path(), DbOptions::default(), TenantLabels::default(), None);
        for (tenant, instances, t) in [("a", ["1", "3"], 1000), ("b", ["2", "3"], 2000)] {
            let db = tsdbs.get_or_open(tenant).unwrap();
            let mut app = db.appender();
            for i in instances {
                app.append(&[("__name__", "up"), ("instance", i)], [(t, 1.0)]).unwrap();
            }
            app.commit().unwrap();
        }
        let up = vec![Matcher::new(MatchOp::Equal, "__name__", "up").unwrap()];
        let req = SelectRequest::new(up.clone(), 0, 3000);
        let got: Vec<_> = tsdbs.select(&req).unwrap().checked().collect::<Result<_, _>>().unwrap();
        let instances: Vec<_> = got.iter().map(|s| s.labels.get("instance").unwrap_or_default()).collect();
        assert_eq!(instances, ["1", "2", "3"]);
        assert_eq!(got[2].chunks.len(), 2, "instance 3 has a chunk in each tenant");

        let first = SelectRequest { limit: 2, skip_chunks: true, ..req };
        let got: Vec<_> = tsdbs.select(&first).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|s| s.chunks.is_empty()));
        let values = tsdbs.label_values("instance", &LabelsRequest { limit: 2, ..LabelsRequest::new(up, 0, 3000) });
        assert_eq!(values.unwrap().values, ["1", "2"]);
    }

    #[test]
    fn tenant_names() {
        for ok in ["default-tenant", "team_a", "a.b", "x"] {
            assert!(is_valid_tenant(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "../x", "a\\b", "/", "a\0b"] {
            assert!(!is_valid_tenant(bad), "{bad:?}");
        }
    }
}
