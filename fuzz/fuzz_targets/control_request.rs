//! Any bytes decode to a `ControlRequest` or to an error, and what decodes
//! round-trips.
#![no_main]

mod common;

use ally_proto::ControlRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::decode_and_check::<ControlRequest>(data);
});
