#!/usr/bin/env bash
# Admin writes under contention (bench/README.md, "Admin writes"): builds the control plane and
# the load tool (release), makes sure PostgreSQL answers, then runs 32 concurrent admin writers
# and one reader for 60 s on SQLite and again on Postgres, and prints each request kind's
# latency and its answers other than 2xx. Exits non-zero when there were any.
#
#   scripts/bench-admin-writes.sh [--writers N] [--seconds S] [--database sqlite|postgres]...
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh --services
cargo build --release -p tollgate --bin tollgate -p tollgate-e2e --bin tollgate-bench-admin-writes
exec target/release/tollgate-bench-admin-writes "$@"
