//! Any bytes decode to an `InstanceResponse` / `ControlResponse` or to an
//! error, and what decodes round-trips.
#![no_main]

mod common;

use ally_proto::{ControlResponse, InstanceResponse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::decode_and_check::<InstanceResponse>(data);
    common::decode_and_check::<ControlResponse>(data);
});
