//! The handshake: any bytes decode to a `Hello` / `HelloReply` or to an
//! error, and what decodes round-trips.
#![no_main]

mod common;

use ally_proto::{Hello, HelloReply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::decode_and_check::<Hello>(data);
    common::decode_and_check::<HelloReply>(data);
});
