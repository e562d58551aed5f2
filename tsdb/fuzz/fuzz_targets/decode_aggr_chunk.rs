//! Thanos's downsampled chunk (encoding 0xFF) on any bytes: decoding never panics; a chunk that
//! decodes encodes to the bytes it was read from (up to ignored trailing bytes) and decodes
//! again the same; reading its samples every way a querier does never panics.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use strata_tsdb::block::{ChunkData, SeriesChunks};
use strata_tsdb::chunkenc::{AggrChunk, AggrType, Encoding};
use strata_tsdb::downsample::{for_each_sample, AggrView};
use strata_tsdb::Labels;

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    let Ok(chunk) = AggrChunk::decode(&bytes) else { return };
    let encoded = chunk.encode();
    assert_eq!(AggrChunk::decode(&Bytes::from(encoded.clone())).ok(), Some(chunk.clone()));
    // Lengths may be spelled with redundant varint bytes in the input, so only compare when
    // the spelling is minimal (the encoder's).
    if data.starts_with(&encoded) {
        assert_eq!(Encoding::Aggr.num_samples(&bytes), Some(chunk.num_samples()));
    }
    let series = SeriesChunks {
        labels: Labels::from_pairs(&[("__name__", "fuzz")]),
        chunks: vec![ChunkData { min_time: 0, max_time: 0, encoding: Encoding::Aggr, data: bytes }],
    };
    let views = AggrType::ALL.map(AggrView::One);
    for view in views.into_iter().chain([AggrView::Average]) {
        let _ = for_each_sample(&series, view, |_, _| {});
    }
});
