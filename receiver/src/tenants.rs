//! Per-tenant TSDBs: one directory `<tsdb.path>/<tenant>/` each, opened at start or on the
//! tenant's first write.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use std::collections::BTreeMap;

use strata_shipper::{Bucket, Shipper};
use strata_storage::{LabelsAnswer, LabelsRequest, SelectRequest, SeriesSet, Storage, StorageError};
use strata_tsdb::db::{Db, DbOptions};
use strata_tsdb::querier::{merge_series_sets, SeriesIter};

use crate::error::ReceiveError;

/// Whether `tenant` is usable as a directory name: Thanos accepts a tenant only when it equals
/// its own `path.Base`, which rules out separators and the dot entries.
pub fn is_valid_tenant(tenant: &str) -> bool {
    !tenant.is_empty() && tenant != "." && tenant != ".." && !tenant.contains(['/', '\\', '\0'])
}

/// Where and how tenants' blocks are shipped.
#[derive(Clone)]
pub struct Shipping {
    pub bucket: Bucket,
    /// `--label` flags; must not be empty.
    pub external_labels: BTreeMap<String, String>,
    /// Added to each tenant's external labels with the tenant as value (`tenant_id`).
    pub tenant_label_name: String,
    /// Woken after every block cut, so blocks are shipped right away.
    pub wake: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Shipping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shipping")
            .field("external_labels", &self.external_labels)
            .field("tenant_label_name", &self.tenant_label_name)
            .finish_non_exhaustive()
    }
}

/// The open TSDBs by tenant, with their shippers when shipping is on.
pub struct MultiTsdb {
    dir: PathBuf,
    opts: DbOptions,
    shipping: Option<Shipping>,
    tenants: RwLock<HashMap<String, Arc<Db>>>,
    shippers: RwLock<HashMap<String, Arc<Shipper>>>,
    /// Serialises tenant creation so two first writes don't both open the same directory.
    creating: parking_lot::Mutex<()>,
}

impl MultiTsdb {
    pub fn new(dir: &Path, opts: DbOptions, shipping: Option<Shipping>) -> Self {
        MultiTsdb {
            dir: dir.to_owned(),
            opts,
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
            let mut labels = shipping.external_labels.clone();
            labels.insert(shipping.tenant_label_name.clone(), tenant.to_owned());
            let shipper = Arc::new(
                Shipper::new(shipping.bucket.clone(), &dir, labels, "receive")
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

/// Queries see every tenant's series; a label set present in several tenants is one series.
/// (Tenancy enforcement on the query path comes with the querier.)
impl Storage for MultiTsdb {
    fn select(&self, req: &SelectRequest) -> Result<SeriesSet, StorageError> {
        let mut sets: Vec<SeriesIter> = Vec::new();
        for (_, db) in self.all() {
            sets.push(db.select(&req.matchers, req.min_time, req.max_time, req.skip_chunks)?);
        }
        Ok(SeriesSet::from_local(merge_series_sets(sets), req))
    }

    fn label_names(&self, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        let mut all = std::collections::BTreeSet::new();
        for (_, db) in self.all() {
            all.extend(db.label_names(&req.matchers, req.min_time, req.max_time)?);
        }
        let mut names = all.into_iter().collect();
        req.truncate(&mut names);
        Ok(LabelsAnswer::from(names))
    }

    fn label_values(&self, name: &str, req: &LabelsRequest) -> Result<LabelsAnswer, StorageError> {
        let mut all = std::collections::BTreeSet::new();
        for (_, db) in self.all() {
            all.extend(db.label_values(name, &req.matchers, req.min_time, req.max_time)?);
        }
        let mut values = all.into_iter().collect();
        req.truncate(&mut values);
        Ok(LabelsAnswer::from(values))
    }
}

#[cfg(test)]
mod tests {
    use strata_tsdb::matchers::{MatchOp, Matcher};

    use super::*;

    #[test]
    fn queries_merge_the_tenants() {
        let dir = tempfile::tempdir().unwrap();
        let tsdbs = MultiTsdb::new(dir.path(), DbOptions::default(), None);
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
