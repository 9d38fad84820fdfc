#![no_main]
//! cargo-fuzz entry point; the logic is `portcullis_fuzz::certificate`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_fuzz::certificate(data));
