//! cargo-fuzz's entry point for `fuzz/bodies/config_value.rs`, where the target is written (so that
//! `tests/fuzz_seeds.rs` compiles and replays it without libFuzzer).
#![no_main]

#[path = "../bodies/config_value.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| body::run(bytes));
