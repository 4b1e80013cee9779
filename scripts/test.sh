#!/usr/bin/env bash
# Installs what the tests need, starts PostgreSQL and Redis if they are stopped,
# checks formatting and lints, and runs every test (unit, storage on SQLite and
# Postgres, end-to-end through real Envoy).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh --services
scripts/build.sh
make --no-print-directory lint
cargo test --workspace
