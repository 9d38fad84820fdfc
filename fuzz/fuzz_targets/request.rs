#![no_main]
//! cargo-fuzz entry point; the logic is `portcullis_fuzz::request`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_fuzz::request(data));
