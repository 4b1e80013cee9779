#!/usr/bin/env bash
# Logins under load (bench/README.md, "Logins"): builds the control plane and the load tool
# (release), then measures logins per second with the Argon2id cost, and the health endpoint's
# latency during floods of wrong passwords from one address and from many.
#
#   scripts/bench-logins.sh [--flooders 64] [--seconds 10]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh
cargo build --release -p tollgate --bin tollgate -p tollgate-e2e --bin tollgate-bench-logins
exec target/release/tollgate-bench-logins "$@"
