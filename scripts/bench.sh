#!/usr/bin/env bash
# Prints the benchmarks: plain Envoy vs Envoy with the Tollgate filter, measured in the same run on
# this machine (bench/README.md says what and how). Builds what it runs first: the control plane
# and the echo backend (release), the filter (wasm, release); installs Envoy, wrk and valgrind
# when missing. Exits non-zero when a case did not answer as expected; its row says FAILED.
#
#   scripts/bench.sh [--quick] [--workers N] [--case TEXT]   throughput, latency, CPU, memory
#   scripts/bench.sh --instructions [--case TEXT] [--route R] instructions per request (callgrind)
#   scripts/bench.sh --refills                                  quota allowance callouts per 1,000 requests
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh --bench-tools
cargo build --release -p tollgate --bin tollgate -p tollgate-e2e --bin tollgate-echo
cargo build -p tollgate-filter --target wasm32-wasip1 --release
if [[ "${1:-}" == "--refills" ]]; then
    exec python3 -B bench/refills.py
fi
if [[ "${1:-}" == "--instructions" ]]; then
    shift
    exec python3 -B bench/instructions.py "$@"
fi
exec python3 -B bench/bench.py "$@"
