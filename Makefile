# The two commands a newcomer needs: `make run` and `make test`.

.PHONY: run test build lint bench bench-writes bench-fleet bench-logins

## Build everything, install Envoy if missing, run the gateway on embedded defaults.
run:
	scripts/run.sh

## Install what the tests need, start Postgres/Redis if stopped, run every check and test.
test:
	scripts/test.sh

## Print the benchmarks: plain Envoy vs Envoy with the filter, same run.
bench:
	scripts/bench.sh

## Admin writes under contention: 32 writers for 60 s on SQLite, then on Postgres.
bench-writes:
	scripts/bench-admin-writes.sh

## A fleet of Envoys on one control plane: an admin change to the last Envoy's ACK.
bench-fleet:
	scripts/bench-fleet.sh

## Logins per second, and health latency during floods of wrong passwords.
bench-logins:
	scripts/bench-logins.sh

## Build the control plane, the demo backend and the wasm filter.
build:
	scripts/build.sh

## Formatting and lints only.
lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p tollgate-filter --target wasm32-wasip1 -- -D warnings
