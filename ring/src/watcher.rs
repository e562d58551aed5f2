//! Loading the ring and keeping it current: `--receive.hashrings-file` (re-read when its
//! modification time or size changes, checked every poll interval, and every
//! `--receive.hashrings-file-refresh-interval` regardless) or `--receive.hashrings` (read once).
//! A new ring replaces the old one in a single swap of an `Arc`: a router holds the ring it
//! loaded for the whole request and sees either the old ring or the new, never a mix. A file
//! that cannot be read, parsed or built keeps the ring in use and is logged and counted.
//!
//! Thanos differs in two ways: a file that parses but cannot be built (too few endpoints for the
//! replication factor, say) stops a Thanos receiver, and Thanos never sets
//! `thanos_receive_config_last_reload_successful` back to 0 after a failed reload; here the old
//! ring stays and the gauge says 0 until a reload succeeds.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::config::{self, HashringConfig};
use crate::metrics::{RingMetrics, WatcherMetrics};
use crate::ring::{Ring, RingOptions};
use crate::Error;

/// Where the hashring configuration comes from.
#[derive(Debug, Clone)]
pub enum RingSource {
    /// `--receive.hashrings-file`, re-read every `refresh_interval`
    /// (`--receive.hashrings-file-refresh-interval`, Thanos's default 5m) and when it changes.
    File { path: PathBuf, refresh_interval: Duration },
    /// `--receive.hashrings`: the content itself. `null` gives the single-node ring of the local
    /// endpoint, as in Thanos.
    Inline(String),
}

/// The current ring, for routers: cheap to clone, each [`RingHandle::current`] is one atomic
/// snapshot.
#[derive(Clone)]
pub struct RingHandle(watch::Receiver<Arc<Ring>>);

impl RingHandle {
    /// The ring in use now.
    pub fn current(&self) -> Arc<Ring> {
        Arc::clone(&self.0.borrow())
    }

    /// Waits for the next ring; false once the watcher is gone.
    pub async fn changed(&mut self) -> bool {
        self.0.changed().await.is_ok()
    }
}

/// Loads the ring from its source and replaces it when the source changes.
pub struct RingWatcher {
    source: RingSource,
    options: RingOptions,
    ring_metrics: RingMetrics,
    /// Only a file source has them, as only Thanos's file watcher registers them.
    metrics: Option<WatcherMetrics>,
    sender: watch::Sender<Arc<Ring>>,
    /// Content hash of the configuration in use.
    loaded_hash: Option<f64>,
    /// Modification time and size seen at the last read.
    stamp: Option<(SystemTime, u64)>,
}

impl RingWatcher {
    /// Loads the configuration; an error here is a startup failure, as in Thanos. The ring's and
    /// the watcher's metrics are registered in `registry`. `local_endpoint` is
    /// `--receive.local-endpoint`, the single node of a `null` inline configuration.
    pub fn new(
        source: RingSource,
        options: RingOptions,
        local_endpoint: &str,
        registry: &mut Registry,
    ) -> Result<RingWatcher, Error> {
        let ring_metrics = RingMetrics::register(registry);
        let (ring, metrics, loaded_hash) = match &source {
            RingSource::Inline(content) => {
                let ring = match config::parse(content.as_bytes())? {
                    None => Ring::single_node(local_endpoint),
                    Some(configs) => Ring::new(&configs, options, &ring_metrics)?,
                };
                (ring, None, None)
            }
            RingSource::File { path, .. } => {
                let (configs, hash) = config::load_file(path)?;
                let ring = Ring::new(&configs, options, &ring_metrics)?;
                let metrics = WatcherMetrics::register(registry);
                record_change(&metrics, &configs, hash);
                (ring, Some(metrics), Some(hash))
            }
        };
        log_ring("hashring configuration loaded", &ring);
        let (sender, _) = watch::channel(Arc::new(ring));
        let mut watcher = RingWatcher { source, options, ring_metrics, metrics, sender, loaded_hash, stamp: None };
        watcher.stamp = watcher.file_stamp();
        Ok(watcher)
    }

    /// A handle on the current ring.
    pub fn handle(&self) -> RingHandle {
        RingHandle(self.sender.subscribe())
    }

    /// Re-reads the file if its modification time or size changed since the last read (a file
    /// that failed is not read again until it changes or the refresh interval comes). Whether
    /// the ring changed.
    pub fn check(&mut self) -> Result<bool, Error> {
        if self.file_stamp() == self.stamp {
            return Ok(false);
        }
        self.reload()
    }

    /// Re-reads the file and swaps in its ring if the content changed (Thanos's refresh). On an
    /// error the ring in use stays. Whether the ring changed. An inline source never changes.
    pub fn reload(&mut self) -> Result<bool, Error> {
        let (RingSource::File { path, .. }, Some(metrics)) = (&self.source, &self.metrics) else {
            return Ok(false);
        };
        metrics.refreshes.inc();
        let stamp = self.file_stamp();
        let loaded = config::load_file(path).and_then(|(configs, hash)| {
            if self.loaded_hash == Some(hash) {
                return Ok(None);
            }
            Ring::new(&configs, self.options, &self.ring_metrics).map(|ring| Some((configs, hash, ring)))
        });
        self.stamp = stamp;
        match loaded {
            Err(e) => {
                metrics.errors.inc();
                metrics.last_reload_successful.set(0);
                tracing::error!(path = %path.display(), err = %e, "failed to load hashring configuration file; keeping the hashring in use");
                Err(e)
            }
            Ok(None) => {
                metrics.last_reload_successful.set(1);
                Ok(false)
            }
            Ok(Some((configs, hash, ring))) => {
                self.loaded_hash = Some(hash);
                metrics.changes.inc();
                record_change(metrics, &configs, hash);
                log_ring("hashring configuration changed", &ring);
                self.sender.send_replace(Arc::new(ring));
                Ok(true)
            }
        }
    }

    /// Watches the source until `shutdown` completes: a file is checked every `poll_interval`
    /// and re-read every refresh interval. Reads and ring builds run on a blocking thread (a
    /// large ketama ring takes a moment to build).
    pub async fn run(mut self, poll_interval: Duration, shutdown: impl Future<Output = ()>) {
        let RingSource::File { refresh_interval, .. } = self.source else {
            shutdown.await;
            return;
        };
        let start = tokio::time::Instant::now();
        let mut poll = tokio::time::interval_at(start + poll_interval, poll_interval);
        let mut refresh = tokio::time::interval_at(start + refresh_interval, refresh_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            let full = tokio::select! {
                () = &mut shutdown => return,
                _ = poll.tick() => false,
                _ = refresh.tick() => true,
            };
            // Errors are logged and counted by reload.
            let work = tokio::task::spawn_blocking(move || {
                let _ = if full { self.reload() } else { self.check() };
                self
            });
            self = match work.await {
                Ok(watcher) => watcher,
                Err(e) => {
                    tracing::error!(err = %e, "hashring configuration watcher stopped");
                    return;
                }
            };
        }
    }

    fn file_stamp(&self) -> Option<(SystemTime, u64)> {
        let RingSource::File { path, .. } = &self.source else {
            return None;
        };
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    }
}

/// The gauges of a newly loaded configuration.
fn record_change(metrics: &WatcherMetrics, configs: &[HashringConfig], hash: f64) {
    metrics.hash.set(hash);
    metrics.last_reload_successful.set(1);
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    metrics.last_reload_success_timestamp.set(now);
    for c in configs {
        let label = vec![("name", c.hashring.clone())];
        metrics.hashring_nodes.get_or_create(&label).set(i64::try_from(c.endpoints.len()).unwrap_or(i64::MAX));
        metrics.hashring_tenants.get_or_create(&label).set(i64::try_from(c.tenants.len()).unwrap_or(i64::MAX));
    }
}

fn log_ring(message: &str, ring: &Ring) {
    if let Some(endpoint) = ring.single_node_endpoint() {
        tracing::info!(endpoint = %endpoint.address, "{message}: single-node hashring");
        return;
    }
    for h in ring.hashrings() {
        let c = h.config();
        tracing::info!(
            hashring = %c.hashring,
            algorithm = %h.algorithm(),
            endpoints = c.endpoints.len(),
            tenants = ?c.tenants,
            shuffle_shard_size = c.shuffle_sharding_config.shard_size,
            replication_factor = ring.replication_factor(),
            "{message}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    fn metric(text: &str, name: &str) -> f64 {
        let line =
            text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name} in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    fn first_address(ring: &Ring) -> String {
        ring.hashrings()[0].config().endpoints[0].address.clone()
    }

    /// Writes the file with a modification time that differs from the last write's, whatever
    /// the file system's time resolution.
    fn write(path: &std::path::Path, content: &str, step: u64) {
        std::fs::write(path, content).unwrap();
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + step)).unwrap();
    }

    #[test]
    fn file_changes_swap_the_ring_and_bad_files_keep_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hashrings.json");
        write(&path, r#"[{"endpoints": ["a:1", "b:1"]}]"#, 0);
        let mut registry = Registry::default();
        let source = RingSource::File { path: path.clone(), refresh_interval: Duration::from_secs(300) };
        let options = RingOptions { algorithm: crate::Algorithm::Ketama, replication_factor: 2 };
        let mut watcher = RingWatcher::new(source, options, "", &mut registry).unwrap();
        let handle = watcher.handle();
        let before = handle.current();
        assert_eq!(first_address(&before), "a:1");
        let text = encode(&registry);
        assert_eq!(
            metric(&text, "thanos_receive_config_hash"),
            config::config_hash(br#"[{"endpoints": ["a:1", "b:1"]}]"#)
        );
        assert_eq!(metric(&text, "thanos_receive_config_last_reload_successful"), 1.0);
        assert_eq!(metric(&text, "thanos_receive_hashrings_file_changes_total"), 0.0);
        assert!(text.contains("thanos_receive_hashring_nodes{name=\"\"} 2"), "{text}");

        // Unchanged: no reload at all.
        assert!(!watcher.check().unwrap());
        assert_eq!(metric(&encode(&registry), "thanos_receive_hashrings_file_refreshes_total"), 0.0);

        write(&path, r#"[{"hashring": "x", "endpoints": ["c:1", "d:1", "e:1"], "tenants": ["t"]}]"#, 1);
        assert!(watcher.check().unwrap());
        let after = handle.current();
        assert_eq!(first_address(&after), "c:1");
        // The router that took the old ring keeps it whole.
        assert_eq!(first_address(&before), "a:1");
        let text = encode(&registry);
        assert_eq!(metric(&text, "thanos_receive_hashrings_file_changes_total"), 1.0);
        assert_eq!(metric(&text, "thanos_receive_hashrings_file_refreshes_total"), 1.0);
        assert!(text.contains("thanos_receive_hashring_tenants{name=\"x\"} 1"), "{text}");

        // Unparsable, empty, and unbuildable (one endpoint for two replicas): the ring stays.
        for (step, bad) in [(2, "[{"), (3, "[]"), (4, r#"[{"endpoints": ["f:1"]}]"#)] {
            write(&path, bad, step);
            assert!(watcher.check().is_err(), "{bad}");
            // Not read again until it changes.
            assert!(!watcher.check().unwrap());
            assert_eq!(first_address(&handle.current()), "c:1");
            let text = encode(&registry);
            assert_eq!(metric(&text, "thanos_receive_config_last_reload_successful"), 0.0);
        }
        let text = encode(&registry);
        assert_eq!(metric(&text, "thanos_receive_hashrings_file_errors_total"), 3.0);
        assert_eq!(metric(&text, "thanos_receive_hashrings_file_changes_total"), 1.0);

        // A missing file is an error too (once); putting back the content in use is no change.
        std::fs::remove_file(&path).unwrap();
        assert!(watcher.check().is_err());
        assert!(!watcher.check().unwrap());
        assert_eq!(metric(&encode(&registry), "thanos_receive_hashrings_file_errors_total"), 4.0);
        write(&path, r#"[{"hashring": "x", "endpoints": ["c:1", "d:1", "e:1"], "tenants": ["t"]}]"#, 5);
        assert!(!watcher.check().unwrap());
        let text = encode(&registry);
        assert_eq!(metric(&text, "thanos_receive_config_last_reload_successful"), 1.0);
        assert_eq!(metric(&text, "thanos_receive_hashrings_file_changes_total"), 1.0);
    }

    #[test]
    fn startup_fails_on_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hashrings.json");
        std::fs::write(&path, "[]").unwrap();
        let source = RingSource::File { path, refresh_interval: Duration::from_secs(300) };
        let e = RingWatcher::new(source, RingOptions::default(), "", &mut Registry::default()).err().unwrap();
        assert!(e.to_string().ends_with("configuration file is empty"), "{e}");
    }

    #[test]
    fn inline_configurations() {
        let mut registry = Registry::default();
        let w = RingWatcher::new(RingSource::Inline("null".into()), RingOptions::default(), "me:10901", &mut registry)
            .unwrap();
        assert_eq!(w.handle().current().single_node_endpoint().unwrap().address, "me:10901");
        // Only a file source has the watcher's metrics.
        assert!(!encode(&registry).contains("thanos_receive_config_hash"));
        let w = RingWatcher::new(
            RingSource::Inline(r#"[{"endpoints": ["a"]}]"#.into()),
            RingOptions::default(),
            "",
            &mut Registry::default(),
        )
        .unwrap();
        assert_eq!(first_address(&w.handle().current()), "a");
        assert!(RingWatcher::new(RingSource::Inline("[".into()), RingOptions::default(), "", &mut Registry::default())
            .is_err());
    }

    #[tokio::test]
    async fn run_picks_up_a_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hashrings.json");
        write(&path, r#"[{"endpoints": ["a"]}]"#, 0);
        let source = RingSource::File { path: path.clone(), refresh_interval: Duration::from_secs(3600) };
        let watcher = RingWatcher::new(source, RingOptions::default(), "", &mut Registry::default()).unwrap();
        let mut handle = watcher.handle();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(watcher.run(Duration::from_millis(20), async move {
            let _ = stopped.await;
        }));
        write(&path, r#"[{"endpoints": ["b"]}]"#, 1);
        tokio::time::timeout(Duration::from_secs(10), handle.changed()).await.unwrap();
        assert_eq!(first_address(&handle.current()), "b");
        stop.send(()).unwrap();
        task.await.unwrap();
    }
}
