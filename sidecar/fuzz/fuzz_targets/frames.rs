//! The streamed remote-read frame decoder, fed any bytes in pieces of any size, never panics,
//! and finds the same frames (or the same error) whatever the pieces: the first byte picks the
//! piece size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_sidecar::frame::FrameDecoder;

/// Messages of at most 1 MiB, so that a hostile length cannot make the target allocate much.
const LIMIT: u64 = 1 << 20;

fn decode(data: &[u8], piece: usize) -> Result<Vec<Vec<u8>>, String> {
    let mut decoder = FrameDecoder::new(LIMIT);
    let mut out = Vec::new();
    for chunk in data.chunks(piece) {
        decoder.push(chunk.to_vec().into());
        while let Some(m) = decoder.next_frame().map_err(|e| e.to_string())? {
            out.push(m.to_vec());
        }
    }
    decoder.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let piece = usize::from(first % 32) + 1;
    let whole = decode(rest, rest.len().max(1));
    let pieces = decode(rest, piece);
    match (&whole, &pieces) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        // A stream cut short is reported with how much of the frame arrived, which is the same.
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("whole {whole:?} vs pieces of {piece}: {pieces:?}"),
    }
});
