#!/usr/bin/env bash
# Installs what the tests need, starts PostgreSQL and Redis if they are stopped,
# checks formatting and lints, runs every test (unit, storage on SQLite and
# Postgres, end-to-end through real Envoy), then fuzzes the HTTP API from its OpenAPI
# document (scripts/fuzz-api.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh --services
scripts/build.sh
make --no-print-directory lint
cargo test --workspace
scripts/fuzz-api.sh
