//! The hand-written protobuf decoder against prost: whatever prost accepts, the wire decoder
//! accepts too and extracts the same observations and tally. (The converse does not hold by
//! design: the wire decoder does not parse the fields it skips, nor check UTF-8 in strings it
//! does not use, so it accepts some requests prost refuses.) Never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use slogate_fuzz::{check_observations, config, reference};
use slogate_ingest::extract::Tally;
use slogate_ingest::wire::decode_traces;

fuzz_target!(|data: &[u8]| {
    let cfg = config();
    let (mut got, mut tally) = (Vec::new(), Tally::default());
    let ours = decode_traces(data, &cfg, &mut got, &mut tally);
    if ours.is_ok() {
        check_observations(&got, &tally, cfg.extras.len());
    }
    if let Ok(req) = ExportTraceServiceRequest::decode(data) {
        if let Err(e) = ours {
            panic!("prost accepts the request, the wire decoder refuses it: {e}");
        }
        let (want, want_tally) = reference(&req, &cfg);
        assert_eq!(got, want);
        assert_eq!(tally, want_tally);
    }
});
