//! The fuzz targets' bodies (fuzz/bodies/), built into `cargo test` and `cargo clippy`: they keep
//! compiling against the library without libFuzzer or a nightly feature (only `make fuzz` builds
//! the cargo-fuzz crate), and every committed seed (fuzz/seeds/TARGET, from fuzz/make-seeds.sh)
//! is replayed, so an input that once passed and now panics fails here, not in a fuzzing run.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

#[path = "../fuzz/bodies/admission_review.rs"]
mod admission_review;
#[path = "../fuzz/bodies/config_file.rs"]
mod config_file;
#[path = "../fuzz/bodies/config_value.rs"]
mod config_value;

/// Runs `body` on every seed of `target` and names the seeds that panicked.
fn replay(target: &str, body: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target);
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    seeds.sort();
    assert!(seeds.len() >= 3, "{}: the seeds are missing (fuzz/make-seeds.sh writes them)", dir.display());
    let panicked: Vec<String> = seeds
        .iter()
        .filter(|seed| {
            let bytes = std::fs::read(seed).unwrap_or_else(|e| panic!("{}: {e}", seed.display()));
            catch_unwind(AssertUnwindSafe(|| body(&bytes))).is_err()
        })
        .map(|seed| seed.display().to_string())
        .collect();
    assert!(panicked.is_empty(), "{target}: {} of {} seeds panicked: {panicked:#?}", panicked.len(), seeds.len());
}

#[test]
fn every_admission_review_seed_passes_its_target() {
    replay("admission_review", admission_review::run);
}

#[test]
fn every_config_file_seed_passes_its_target() {
    replay("config_file", config_file::run);
}

#[test]
fn every_config_value_seed_passes_its_target() {
    replay("config_value", config_value::run);
}
