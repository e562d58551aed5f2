//! The StoreAPI's request decoders on any bytes: the first byte picks the message
//! (`SeriesRequest`, `LabelNamesRequest`, `LabelValuesRequest`), the rest is decoded with prost
//! and converted to the read interface as the server does it. Nothing may panic; a request
//! that converts must convert again, unchanged, after going back to the wire.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use strata_proto::thanos as pb;
use strata_store::convert::{
    label_names_request_to_proto, label_values_request_to_proto, labels_request_from_proto,
    select_request_from_proto, select_request_to_proto,
};
use strata_tsdb::matchers::Matcher;

/// A matcher that compiled must be usable on any value.
fn try_matchers(matchers: &[Matcher]) {
    for m in matchers {
        for v in ["", "up", "a\u{0}b", "\u{10ffff}"] {
            let _ = m.matches(v);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else { return };
    let tenant = Some("fuzz".to_owned());
    match kind % 3 {
        0 => {
            let Ok(wire) = pb::SeriesRequest::decode(body) else { return };
            let Ok(req) = select_request_from_proto(&wire, tenant.clone()) else { return };
            try_matchers(&req.matchers);
            let again = select_request_to_proto(&req, wire.response_batch_size);
            let back = select_request_from_proto(&again, tenant).expect("a converted request converts again");
            assert_eq!(format!("{req:?}"), format!("{back:?}"));
        }
        1 => {
            let Ok(wire) = pb::LabelNamesRequest::decode(body) else { return };
            let Ok(req) = labels_request_from_proto((&wire).into(), tenant.clone()) else { return };
            try_matchers(&req.matchers);
            let again = label_names_request_to_proto(&req);
            let back = labels_request_from_proto((&again).into(), tenant).expect("a converted request converts again");
            assert_eq!(format!("{req:?}"), format!("{back:?}"));
        }
        _ => {
            let Ok(wire) = pb::LabelValuesRequest::decode(body) else { return };
            let Ok(req) = labels_request_from_proto((&wire).into(), tenant.clone()) else { return };
            try_matchers(&req.matchers);
            let again = label_values_request_to_proto(&wire.label, &req);
            let back = labels_request_from_proto((&again).into(), tenant).expect("a converted request converts again");
            assert_eq!(format!("{req:?}"), format!("{back:?}"));
        }
    }
});
