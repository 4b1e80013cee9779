#!/usr/bin/env bash
# Prints how long an admin change takes to reach the last of a fleet of Envoys over ADS, state of
# the world and delta (bench/fleet.py says what and how). Builds the control plane (release) and
# installs Envoy when missing.
#
#   scripts/bench-fleet.sh [--envoys 100] [--pools 1000] [--backends 10] [--changes 20]
#                          [--ads sotw|delta|both]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh
cargo build --release -p tollgate --bin tollgate
exec python3 -B bench/fleet.py --tollgate target/release/tollgate --envoy .tools/bin/envoy "$@"
