//! Any bytes decode to an `InstanceRequest` or to an error, and what
//! decodes round-trips.
#![no_main]

mod common;

use ally_proto::InstanceRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::decode_and_check::<InstanceRequest>(data);
});
