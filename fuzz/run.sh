#!/usr/bin/env bash
# make fuzz: runs each cargo-fuzz target for a bounded time from the committed seeds
# (fuzz/seeds/TARGET) plus what earlier runs found (fuzz/corpus/TARGET, git-ignored).
# cargo-fuzz needs nightly features: RUSTC_BOOTSTRAP=1 lets the stable toolchain build it.
#
# Environment: FUZZ_SECONDS=60 (per target), FUZZ_TARGETS="admission_review config_value config_file",
#   FUZZ_SANITIZER=address (or none: faster, finds panics only)
# Exit status 1 when a target crashed; the input is in fuzz/artifacts/TARGET/.
# Duration: the first build takes ~6-8 min on 2 cores; then FUZZ_SECONDS x targets.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_PER_TARGET=${FUZZ_SECONDS:-60}
TARGETS=${FUZZ_TARGETS:-admission_review config_value config_file}
SANITIZER=${FUZZ_SANITIZER:-address}
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=$PWD/target

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
[ -d seeds ] || ./make-seeds.sh
echo "building the fuzz targets (sanitizer: $SANITIZER)" >&2
for target in $TARGETS; do cargo fuzz build --sanitizer "$SANITIZER" "$target" >&2; done

mkdir -p out
summary=out/summary.txt
: >"$summary"
status=0
for target in $TARGETS; do
  mkdir -p "corpus/$target" "artifacts/$target"
  log=out/$target.log
  echo "fuzzing $target for ${SECONDS_PER_TARGET}s" >&2
  if cargo fuzz run --sanitizer "$SANITIZER" "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="artifacts/$target/" >"$log" 2>&1; then
    result=ok
  else
    result="CRASH ($(ls -t "artifacts/$target" | head -1))"
    status=1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\) corp: \([0-9]*\).*/cov \1, ft \2, corpus \3/p')
  printf '%-18s %s: %s executions (%s/s) in %ss, %s\n' "$target" "$result" "${runs:-?}" "${rate:-?}" \
    "$SECONDS_PER_TARGET" "${cov:-?}" | tee -a "$summary" >&2
done
cat "$summary"
exit $status
