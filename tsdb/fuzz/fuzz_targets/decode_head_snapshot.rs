//! A head snapshot's series record on any bytes: decoding never panics; a record that decodes
//! has an open chunk spanning the times recorded for it, encodes again to a record that decodes
//! to the same series, and its chunk takes a later sample.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_tsdb::head::snapshot::{decode_series, encode_series};

fuzz_target!(|data: &[u8]| {
    let Ok(series) = decode_series(data) else { return };
    let mut again = Vec::new();
    let open = series.open.as_ref();
    encode_series(&mut again, series.series_ref, &series.labels, open.map_or(0, |o| o.next_at), open.map(|o| &o.chunk));
    let decoded = decode_series(&again).expect("a re-encoded record decodes");
    assert_eq!((decoded.series_ref, &decoded.labels), (series.series_ref, &series.labels));
    match (series.open, decoded.open) {
        (None, None) => {}
        (Some(a), Some(b)) => {
            assert_eq!((a.min_time, a.max_time, a.next_at), (b.min_time, b.max_time, b.next_at));
            assert_eq!(a.chunk.bytes(), b.chunk.bytes());
            assert_eq!((a.chunk.first_time(), a.chunk.last_time()), (Some(a.min_time), Some(a.max_time)));
            let mut chunk = a.chunk;
            if chunk.num_samples() < u16::MAX {
                chunk.append(a.max_time.wrapping_add(1), 1.0);
                assert_eq!(chunk.last_time(), Some(a.max_time.wrapping_add(1)));
            }
        }
        (a, b) => panic!("open chunk lost or gained: {} vs {}", a.is_some(), b.is_some()),
    }
});
