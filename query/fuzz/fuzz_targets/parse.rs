//! Parsing any text must not panic or overflow the stack, and a parse error must point inside
//! the query.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_query::parse::{parse, parse_selector};

fuzz_target!(|data: &[u8]| {
    // Queries arrive as UTF-8 (the API decodes them lossily).
    let query = String::from_utf8_lossy(data);
    if let Err(e) = parse(&query) {
        assert!(e.position <= query.len(), "{query:?}: {e}");
    }
    if let Err(e) = parse_selector(&query) {
        assert!(e.position <= query.len(), "{query:?}: {e}");
    }
});
