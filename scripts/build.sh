#!/usr/bin/env bash
# Builds the control plane and demo backend (host, debug) and the filter (wasm, release).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --workspace --bins
cargo build -p tollgate-filter --target wasm32-wasip1 --release
