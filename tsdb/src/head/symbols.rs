//! The head's label strings, each held once however many series carry it.
//!
//! A head series keeps its label set as ids into a [`Symbols`] table: uvarint-coded name and
//! value ids in label order, about two bytes per string instead of the string. Names repeat in
//! every series and most values (metric names, jobs, namespaces, a target's instance and pod)
//! in many, so at a full head this takes the label sets from about 200 bytes per series to
//! about 30. The table counts the series holding each id and frees a string when none does, so
//! series churn does not grow it.
//!
//! Reading an id's string takes no lock: ids index segments of string pointers that never move
//! once allocated, and a string is freed only when the last [`InternedLabels`] holding its id
//! is dropped. Whoever reads a label set holds it, so every string it reads is live. Interning
//! and releasing take the table's mutex; they happen when series are created and dropped.

use std::cmp::Ordering as CmpOrdering;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::encoding::{put_uvarint, uvarint};
use crate::labels::{cmp_pairs, fmt_pairs, Labels};

/// Slots in the first segment; each next segment is twice the size of the one before.
const FIRST_SEGMENT: u64 = 256;
/// Segments for 2.8e14 ids: more than memory can hold (`holders` alone would take 2 PiB), so
/// every id given out has a segment.
const SEGMENTS: usize = 40;
/// Bytes of the length prefix in front of each interned string.
const LEN_PREFIX: usize = size_of::<usize>();

/// Interned label strings with the number of holders of each.
pub struct Symbols {
    /// Segment `k` holds ids `FIRST_SEGMENT * (2^k - 1)` up to the next segment's first; each
    /// slot points at a length-prefixed string (see [`alloc_str`]) or is null.
    segments: [OnceLock<Box<[AtomicPtr<u8>]>>; SEGMENTS],
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    ids: HashMap<Box<str>, u64>,
    /// Holders of each id; 0 for a free id.
    holders: Vec<u64>,
    free: Vec<u64>,
    /// Where `intern` encodes a label set's ids.
    scratch: Vec<u8>,
}

/// Segment and index within it of `id`.
fn position(id: u64) -> (usize, usize) {
    let x = id / FIRST_SEGMENT + 1;
    let k = (u64::BITS - 1 - x.leading_zeros()) as usize;
    let start = FIRST_SEGMENT * ((1 << k) - 1);
    (k, (id - start) as usize)
}

/// A heap copy of `s` behind its length: `[len as usize, native endian][bytes]`, so that a
/// slot needs one thin pointer and a read one indirection.
fn alloc_str(s: &str) -> *mut u8 {
    let mut b = Vec::with_capacity(LEN_PREFIX + s.len());
    b.extend_from_slice(&s.len().to_ne_bytes());
    b.extend_from_slice(s.as_bytes());
    Box::into_raw(b.into_boxed_slice()).cast::<u8>()
}

/// The string [`alloc_str`] wrote at `p`.
///
/// # Safety
/// `p` came from [`alloc_str`] and is not freed for `'a`.
unsafe fn read_str<'a>(p: *const u8) -> &'a str {
    // SAFETY: `p` points at an allocation of at least LEN_PREFIX bytes starting with the
    // length, then that many bytes copied from a `&str`, never written again.
    unsafe {
        let len = usize::from_ne_bytes(p.cast::<[u8; LEN_PREFIX]>().read_unaligned());
        std::str::from_utf8_unchecked(std::slice::from_raw_parts(p.add(LEN_PREFIX), len))
    }
}

/// Frees what [`alloc_str`] returned.
///
/// # Safety
/// `p` came from [`alloc_str`], is freed once, and nothing reads it afterwards.
unsafe fn free_str(p: *mut u8) {
    // SAFETY: as the caller promises; the length is the allocation's own, read back.
    unsafe {
        let len = LEN_PREFIX + read_str(p).len();
        drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, len)));
    }
}

impl Symbols {
    pub fn new() -> Arc<Self> {
        Arc::new(Symbols { segments: std::array::from_fn(|_| OnceLock::new()), table: Mutex::default() })
    }

    /// Interns the pairs with a non-empty value (an empty value means no label, as in
    /// [`Labels`]); the result holds every string until it is dropped.
    pub fn intern<'a>(self: &Arc<Self>, pairs: impl Iterator<Item = (&'a str, &'a str)>) -> InternedLabels {
        let mut table = self.table.lock();
        let mut ids = std::mem::take(&mut table.scratch);
        ids.clear();
        for (name, value) in pairs.filter(|(_, v)| !v.is_empty()) {
            for s in [name, value] {
                let id = self.hold(&mut table, s);
                put_uvarint(&mut ids, id);
            }
        }
        // One allocation of the exact size; the scratch buffer is kept for the next set.
        let labels = InternedLabels { ids: ThinBytes::new(&ids), symbols: self.clone() };
        table.scratch = ids;
        labels
    }

    /// The id of `s`, interning it if needed, with one more holder.
    fn hold(&self, table: &mut Table, s: &str) -> u64 {
        if let Some(&id) = table.ids.get(s) {
            table.holders[id as usize] += 1;
            return id;
        }
        let id = match table.free.pop() {
            Some(id) => {
                table.holders[id as usize] = 1;
                id
            }
            None => {
                table.holders.push(1);
                table.holders.len() as u64 - 1
            }
        };
        let (k, i) = position(id);
        let segment = self.segments[k].get_or_init(|| (0..FIRST_SEGMENT << k).map(|_| AtomicPtr::default()).collect());
        // Release: a reader that gets this id from a series published after this store (the
        // series maps' locks order them) sees the string.
        segment[i].store(alloc_str(s), Ordering::Release);
        table.ids.insert(s.into(), id);
        id
    }

    /// Drops one holder of every id in `ids`, freeing strings left without holders.
    fn release(&self, ids: &[u8]) {
        let mut table = self.table.lock();
        for id in decode_ids(ids) {
            let Some(n) = table.holders.get_mut(id as usize) else { continue };
            *n = n.saturating_sub(1);
            if *n > 0 {
                continue;
            }
            let Some(slot) = self.slot(id) else { continue };
            let p = slot.swap(std::ptr::null_mut(), Ordering::AcqRel);
            if p.is_null() {
                continue;
            }
            // SAFETY: `p` came from `alloc_str`; the slot is null now, so it is freed once, and
            // no label set holds the id any more, so nothing reads it.
            let s = unsafe { read_str(p) };
            table.ids.remove(s);
            // SAFETY: as above; `s` is not used after this.
            unsafe { free_str(p) };
            table.free.push(id);
        }
    }

    fn slot(&self, id: u64) -> Option<&AtomicPtr<u8>> {
        let (k, i) = position(id);
        self.segments.get(k)?.get()?.get(i)
    }

    /// The string of an id held by a live label set.
    fn get(&self, id: u64) -> &str {
        match self.slot(id).map(|s| s.load(Ordering::Acquire)) {
            // SAFETY: the caller holds a label set holding `id`, so the string is not freed
            // while the returned borrow (tied to that label set) lives.
            Some(p) if !p.is_null() => unsafe { read_str(p) },
            // Not reached for ids of a live label set.
            _ => "",
        }
    }

    /// Distinct strings interned.
    pub fn len(&self) -> usize {
        self.table.lock().ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Symbols {
    fn drop(&mut self) {
        // Every label set holds the table, so none is left; free what a leak might have kept.
        for segment in self.segments.iter_mut().filter_map(OnceLock::get_mut) {
            for slot in segment.iter_mut() {
                let p = std::mem::replace(slot.get_mut(), std::ptr::null_mut());
                if !p.is_null() {
                    // SAFETY: `p` came from `alloc_str` and the table is being dropped, so
                    // nothing can read it.
                    unsafe { free_str(p) };
                }
            }
        }
    }
}

fn decode_ids(mut ids: &[u8]) -> impl Iterator<Item = u64> + '_ {
    std::iter::from_fn(move || {
        // The buffer is built by `intern`; a decoding failure cannot happen and ends the set.
        let (id, n) = uvarint(ids).ok()?;
        ids = &ids[n..];
        Some(id)
    })
}

/// A label set whose strings are in a [`Symbols`] table, held there while it lives.
pub struct InternedLabels {
    ids: ThinBytes,
    symbols: Arc<Symbols>,
}

/// Owned bytes behind one pointer: `[uvarint(len)][bytes]` in one allocation. Half the size
/// of a `Box<[u8]>` in every head series, for a byte of prefix.
struct ThinBytes(std::ptr::NonNull<u8>);

// SAFETY: the bytes are owned and never written after `new`, like a `Box<[u8]>`'s.
unsafe impl Send for ThinBytes {}
// SAFETY: as above: shared access only reads.
unsafe impl Sync for ThinBytes {}

impl ThinBytes {
    fn new(bytes: &[u8]) -> Self {
        let mut b = Vec::with_capacity(bytes.len() + crate::encoding::MAX_VARINT_LEN);
        put_uvarint(&mut b, bytes.len() as u64);
        b.extend_from_slice(bytes);
        let p = Box::into_raw(b.into_boxed_slice()).cast::<u8>();
        // SAFETY: a boxed slice's pointer is never null (a non-empty one here).
        ThinBytes(unsafe { std::ptr::NonNull::new_unchecked(p) })
    }

    /// The prefix's length and the bytes' length.
    fn lengths(&self) -> (usize, usize) {
        let p = self.0.as_ptr();
        let (mut len, mut shift, mut i) = (0usize, 0, 0);
        loop {
            // SAFETY: `new` wrote a complete uvarint at the start of the allocation, so every
            // byte up to and including the one without the continuation bit is in it.
            let b = unsafe { p.add(i).read() };
            len |= usize::from(b & 0x7f) << shift;
            i += 1;
            if b < 0x80 {
                return (i, len);
            }
            shift += 7;
        }
    }

    fn as_slice(&self) -> &[u8] {
        let (prefix, len) = self.lengths();
        // SAFETY: the allocation holds `prefix + len` initialized bytes, alive while `self` is.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().add(prefix), len) }
    }
}

impl Drop for ThinBytes {
    fn drop(&mut self) {
        let (prefix, len) = self.lengths();
        // SAFETY: the pointer and total length of the boxed slice `new` leaked, freed once.
        unsafe { drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.0.as_ptr(), prefix + len))) }
    }
}

impl InternedLabels {
    /// The `(name, value)` pairs in name order.
    pub fn iter(&self) -> InternedIter<'_> {
        InternedIter { ids: self.ids.as_slice(), symbols: &self.symbols }
    }

    /// The hash [`Labels::hash`] gives the same set.
    pub fn hash(&self) -> u64 {
        crate::labels::hash_of(self.iter())
    }

    /// A [`Labels`] copy.
    pub fn to_labels(&self) -> Labels {
        Labels::from_sorted_unchecked(self.iter())
    }

    /// The value of `name`, if the set has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Whether this set equals the one `Labels::from_sorted_unchecked(pairs)` would build.
    pub fn eq_pairs(&self, pairs: &[(&str, &str)]) -> bool {
        self.iter().eq(pairs.iter().copied().filter(|(_, v)| !v.is_empty()))
    }

    pub fn eq_labels(&self, labels: &Labels) -> bool {
        self.iter().eq(labels.iter())
    }
}

impl PartialEq for InternedLabels {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for InternedLabels {}

impl Ord for InternedLabels {
    /// Prometheus's `labels.Compare`, as `Labels`'s `Ord`.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        cmp_pairs(self.iter(), other.iter())
    }
}

impl PartialOrd for InternedLabels {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Drop for InternedLabels {
    fn drop(&mut self) {
        self.symbols.release(self.ids.as_slice());
    }
}

impl fmt::Display for InternedLabels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_pairs(f, self.iter())
    }
}

/// Iterator over the pairs of an [`InternedLabels`].
#[derive(Clone)]
pub struct InternedIter<'a> {
    ids: &'a [u8],
    symbols: &'a Symbols,
}

impl<'a> Iterator for InternedIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        // The buffer is built by `intern`; a decoding failure cannot happen and ends the set.
        let (name, a) = uvarint(self.ids).ok()?;
        let (value, b) = uvarint(&self.ids[a..]).ok()?;
        self.ids = &self.ids[a + b..];
        Some((self.symbols.get(name), self.symbols.get(value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thin_bytes_hold_any_length() {
        for len in [0, 1, 127, 128, 300, 16_384, 70_000] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let thin = ThinBytes::new(&bytes);
            assert_eq!(thin.as_slice(), &bytes[..]);
            let mut prefix = Vec::new();
            put_uvarint(&mut prefix, len as u64);
            assert_eq!(thin.lengths(), (prefix.len(), len));
        }
        assert_eq!(size_of::<InternedLabels>(), 16);
    }

    #[test]
    fn positions_tile_the_ids() {
        assert_eq!(position(0), (0, 0));
        assert_eq!(position(255), (0, 255));
        assert_eq!(position(256), (1, 0));
        assert_eq!(position(767), (1, 511));
        assert_eq!(position(768), (2, 0));
        let mut expect = (0, 0);
        for id in 0..100_000 {
            let got = position(id);
            if got != expect {
                assert_eq!(got, (expect.0 + 1, 0), "id {id}");
                assert_eq!(expect.1 as u64, FIRST_SEGMENT << expect.0, "segment {} full", expect.0);
            }
            expect = (got.0, got.1 + 1);
        }
        let last = FIRST_SEGMENT * ((1 << SEGMENTS) - 1) - 1;
        assert_eq!(position(last), (SEGMENTS - 1, (FIRST_SEGMENT << (SEGMENTS - 1)) as usize - 1));
    }

    #[test]
    fn strings_are_shared_and_freed_with_their_last_holder() {
        let symbols = Symbols::new();
        let a = symbols.intern([("__name__", "up"), ("job", "a"), ("skip", "")].into_iter());
        let b = symbols.intern([("__name__", "up"), ("job", "b")].into_iter());
        assert_eq!(a.iter().collect::<Vec<_>>(), [("__name__", "up"), ("job", "a")]);
        assert_eq!(b.to_labels(), Labels::from_pairs(&[("__name__", "up"), ("job", "b")]));
        assert_eq!(symbols.len(), 5);
        assert!(a.eq_pairs(&[("__name__", "up"), ("empty", ""), ("job", "a")]));
        assert!(!a.eq_pairs(&[("__name__", "up")]));
        assert!(!a.eq_pairs(&[("__name__", "up"), ("job", "a"), ("x", "y")]));
        assert!(a.eq_labels(&Labels::from_pairs(&[("__name__", "up"), ("job", "a")])));
        assert_eq!(a.cmp(&b), CmpOrdering::Less);
        assert_eq!(a.get("job"), Some("a"));
        assert_eq!(a.to_string(), r#"{__name__="up", job="a"}"#);
        drop(a);
        assert_eq!(symbols.len(), 4, "only \"a\" goes");
        // A freed id is given out again, and the old string is not found under it.
        let c = symbols.intern([("job", "c")].into_iter());
        assert_eq!(c.iter().collect::<Vec<_>>(), [("job", "c")]);
        assert_eq!(b.get("job"), Some("b"));
        drop((b, c));
        assert!(symbols.is_empty());
    }

    #[test]
    fn many_strings_across_segments_and_threads() {
        let symbols = Symbols::new();
        std::thread::scope(|s| {
            for t in 0..4 {
                let symbols = &symbols;
                s.spawn(move || {
                    let sets: Vec<_> = (0..5000)
                        .map(|i| {
                            let v = format!("{t}-{i}");
                            (v.clone(), symbols.intern([("n", v.as_str()), ("shared", "x")].into_iter()))
                        })
                        .collect();
                    for (v, l) in &sets {
                        assert_eq!(l.get("n"), Some(v.as_str()));
                        assert_eq!(l.get("shared"), Some("x"));
                    }
                });
            }
        });
        assert!(symbols.is_empty());
    }

    #[test]
    fn empty_and_long_strings() {
        let symbols = Symbols::new();
        let long = "v".repeat(100_000);
        let l = symbols.intern([("a", long.as_str()), ("b", "")].into_iter());
        assert_eq!(l.iter().collect::<Vec<_>>(), [("a", long.as_str())]);
        let none = symbols.intern(std::iter::empty());
        assert_eq!(none.iter().count(), 0);
        assert!(none.eq_pairs(&[("x", "")]));
    }
}
