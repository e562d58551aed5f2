//! Reads in progress over the head, so that truncation waits for the ones still reading what it
//! drops (Prometheus's `WaitForPendingReadersInTimeRange`).
//!
//! A select reads the head's chunks as its iterator advances, after it has taken its list of
//! blocks. The block cut from the head is added to the list before the head is truncated, so a
//! read that started after the truncation began sees that block; only a read that started
//! before it, and may have taken the list without the new block, must finish first. Waiting
//! for those alone also means a steady stream of queries can never hold truncation off.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// How often truncation says it is still waiting.
const WAIT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The open reads by start order, with the start of the time range each reads.
#[derive(Default)]
pub(crate) struct PendingReads {
    open: Mutex<OpenReads>,
    finished: Condvar,
}

#[derive(Default)]
struct OpenReads {
    next_id: u64,
    mint_by_id: BTreeMap<u64, i64>,
}

/// An open read; dropping it ends the read.
pub(crate) struct ReadGuard {
    reads: Arc<PendingReads>,
    id: u64,
}

impl PendingReads {
    /// Registers a read of `[mint, ..]`.
    pub(crate) fn start(self: &Arc<Self>, mint: i64) -> ReadGuard {
        let mut open = self.open.lock();
        let id = open.next_id;
        open.next_id += 1;
        open.mint_by_id.insert(id, mint);
        ReadGuard { reads: Arc::clone(self), id }
    }

    /// Blocks until every read that was open at the call and reads times before `before` has
    /// ended. Reads started meanwhile are not waited for (see the module comment).
    pub(crate) fn wait_before(&self, before: i64) {
        let started = self.open.lock().next_id;
        self.wait_for_reads(started, before);
    }

    /// Blocks until no read among the first `started` reads of `[mint, ..]` with `mint < before`
    /// is open.
    fn wait_for_reads(&self, started: u64, before: i64) {
        let blocking = |o: &OpenReads| o.mint_by_id.range(..started).filter(|&(_, &mint)| mint < before).count();
        let mut open = self.open.lock();
        loop {
            let n = blocking(&open);
            if n == 0 {
                return;
            }
            if self.finished.wait_for(&mut open, WAIT_LOG_INTERVAL).timed_out() {
                tracing::warn!(
                    reads = n,
                    before,
                    "head truncation is waiting for queries still reading the data it drops; a client that \
                     stopped reading a Series stream holds it until its deadline"
                );
            }
        }
    }
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        self.reads.open.lock().mint_by_id.remove(&self.id);
        self.reads.finished.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_waits_for_earlier_overlapping_reads_only() {
        let reads = Arc::new(PendingReads::default());
        let old = reads.start(0);
        let _later_range = reads.start(5_000);
        let started = reads.open.lock().next_id;
        let _started_after_truncation_began = reads.start(0);
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let reads = Arc::clone(&reads);
            std::thread::spawn(move || {
                reads.wait_for_reads(started, 1_000);
                tx.send(()).unwrap();
            })
        };
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err(), "returned while a read of the range was open");
        drop(old);
        rx.recv_timeout(Duration::from_secs(10)).expect("truncation still waiting after the read ended");
        waiter.join().unwrap();
    }

    #[test]
    fn nothing_open_means_no_wait() {
        let reads = Arc::new(PendingReads::default());
        drop(reads.start(0));
        reads.wait_before(i64::MAX);
    }
}
