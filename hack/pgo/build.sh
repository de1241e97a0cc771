#!/usr/bin/env bash
# The shipped release build, profile-guided: an instrumented build of the server
# (-Cprofile-generate, its own target dir target/pgo-gen), trained on the repository's training
# set (hack/pgo/train.sh, hack/pgo/reviews.py), the profile merged into _out/pgo/merged.profdata
# by the llvm-profdata of rustc's own LLVM, then the release build with -Cprofile-use into
# target/release/node-agent-webhook, where `cargo build --release` puts it. bench/RESULTS.md
# ("Issue 25: profile-guided builds") has what it buys.
#
#   hack/pgo/build.sh            # make release-pgo; hack/image/build.sh and the Dockerfile run it
#   PGO=0 hack/pgo/build.sh      # the same release build without a profile
#   PGO_TARGET=ceiling hack/pgo/build.sh   # bench's ceiling the same way, on the same training
#                                # set, into bench/ceiling/target (bench/lib.sh, BENCH_PGO=1)
#
# Needs the rustup component llvm-tools (`rustup component add llvm-tools`): Debian's
# llvm-profdata is an older LLVM's, which cannot read the raw profiles rustc's LLVM writes.
# Environment: CARGO, PGO=0, PGO_DIR (default _out/pgo), and what cargo reads
# (CARGO_PROFILE_RELEASE_STRIP=symbols for the image; RUSTFLAGS is kept and added to).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="${here%/hack/pgo}"
cd "$root"

CARGO="${CARGO:-cargo}"
out="${PGO_DIR:-$root/_out/pgo}"
if [[ "${PGO_TARGET:-server}" == ceiling ]]; then
	cd bench/ceiling
	export CARGO_TARGET_DIR="$root/bench/ceiling/target"
	bin=ceiling profile="$out/ceiling.profdata"
else
	bin=node-agent-webhook profile="$out/merged.profdata"
fi
build=(--release --locked --bin "$bin")
if [[ "${PGO:-1}" == 0 ]]; then
	exec "$CARGO" build "${build[@]}"
fi

host="$(rustc -vV | sed -n 's/^host: //p')"
llvm="$(rustc -vV | sed -n 's/^LLVM version: //p')"
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
[[ -x "$profdata" ]] || { echo "pgo/build: no $profdata: rustup component add llvm-tools" >&2; exit 1; }
have="$("$profdata" --version | sed -n 's/.*LLVM version \([0-9.]*\).*/\1/p')"
[[ "${have%%.*}" == "${llvm%%.*}" ]] ||
	{ echo "pgo/build: $profdata is LLVM $have, rustc uses $llvm" >&2; exit 1; }

# No --target in either build: cargo's -C metadata, which names every symbol, differs with
# --target, and the profile finds functions by their symbols. RUSTFLAGS then reach build scripts
# and proc macros too, whose runs write profiles of their own: cleared before the training.
gen="${CARGO_TARGET_DIR:-$root/target}/pgo-gen"
echo "pgo/build: instrumented build (${gen#"$root"/})" >&2
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$out/raw" "$CARGO" build "${build[@]}" --target-dir "$gen"
rm -rf "$out/raw"
mkdir -p "$out/raw"
"$here/train.sh" "$gen/release/$bin" "${PGO_TARGET:-server}"
"$profdata" merge -o "$profile" "$out/raw"
rm -rf "$out/raw"
echo "pgo/build: release build with $profile" >&2
# Cargo does not fingerprint the profile's contents, only the flag: unchanged sources keep the
# binary of an earlier training of the same set; a changed crate is rebuilt with this one.
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$profile" "$CARGO" build "${build[@]}"
