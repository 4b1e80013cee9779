#!/usr/bin/env bash
# Prints how long an admin change takes to reach the last of a fleet of Envoys over ADS, state of
# the world and delta, quiet and under concurrent admin writes, and the database's writes per
# second while nothing changes (bench/fleet.py says what and how). Builds the control plane and
# the echo backend (release) and installs Envoy when missing.
#
#   scripts/bench-fleet.sh [--envoys 100] [--pools 1000] [--backends 10] [--changes 20]
#                          [--writers 8] [--idle-secs 60] [--ads sotw|delta|both]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh
cargo build --release -p tollgate --bin tollgate -p tollgate-e2e --bin tollgate-echo
exec python3 -B bench/fleet.py --tollgate target/release/tollgate --echo target/release/tollgate-echo \
    --envoy .tools/bin/envoy "$@"
