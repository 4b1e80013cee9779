#!/usr/bin/env bash
# Runs Tollgate on its embedded defaults: the control plane (SQLite in ./tollgate-data),
# the two demo backends and Envoy with the filter, then prints a working curl line.
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
RUN_DIR="$ROOT/.run"

export ENVOY_LISTEN_ADDRESS=127.0.0.1
export ENVOY_LISTEN_PORT=8080
export ENVOY_ADMIN_PORT=9901
export ENVOY_CONTROL_PLANE_HOST=127.0.0.1
export ENVOY_CONTROL_PLANE_PORT=18000
export ENVOY_NODE_ID=envoy-1
export ENVOY_FILTER_WASM="$ROOT/target/wasm32-wasip1/release/tollgate_filter.wasm"
CONTROL_PLANE=http://127.0.0.1:8090

say() { echo "run: $*"; }
die() {
    echo "run: error: $*" >&2
    exit 1
}

scripts/setup.sh
scripts/build.sh

for port in 8080 8090 9901 18000 48080 48081; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port is already in use (is Tollgate already running?)"
    fi
done

mkdir -p "$RUN_DIR"
chmod 700 "$RUN_DIR"
# The admin key: the operator's, or one this checkout generated and keeps in .run/.
if [[ -z "${TOLLGATE_BOOTSTRAP__ADMIN_API_KEY:-}" ]]; then
    if [[ ! -s "$RUN_DIR/admin.key" ]]; then
        (umask 077 && python3 -c 'import secrets; print("tg_admin_" + secrets.token_urlsafe(32))' >"$RUN_DIR/admin.key")
    fi
    TOLLGATE_BOOTSTRAP__ADMIN_API_KEY="$(cat "$RUN_DIR/admin.key")"
fi
export TOLLGATE_BOOTSTRAP__ADMIN_API_KEY
ADMIN_KEY="$TOLLGATE_BOOTSTRAP__ADMIN_API_KEY"
# What Envoy presents on the control plane's gRPC port: the operator's, or one kept in .run/.
if [[ -z "${TOLLGATE_GRPC__CREDENTIAL:-}" ]]; then
    if [[ ! -s "$RUN_DIR/envoy.credential" ]]; then
        (umask 077 && python3 -c 'import secrets; print(secrets.token_hex(32))' >"$RUN_DIR/envoy.credential")
    fi
    TOLLGATE_GRPC__CREDENTIAL="$(cat "$RUN_DIR/envoy.credential")"
fi
export TOLLGATE_GRPC__CREDENTIAL
export ENVOY_CONTROL_PLANE_CREDENTIAL="$TOLLGATE_GRPC__CREDENTIAL"

pids=()
cleanup() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

target/debug/tollgate-echo --listen 127.0.0.1:48080 --name backend-a >"$RUN_DIR/backend-a.log" 2>&1 &
pids+=($!)
target/debug/tollgate-echo --listen 127.0.0.1:48081 --name backend-b >"$RUN_DIR/backend-b.log" 2>&1 &
pids+=($!)
target/debug/tollgate serve >"$RUN_DIR/tollgate.log" 2>&1 &
pids+=($!)

wait_for() { # url what
    for _ in $(seq 1 300); do
        if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
        for pid in "${pids[@]}"; do
            kill -0 "$pid" 2>/dev/null || die "$2 did not start; see $RUN_DIR/*.log"
        done
        sleep 0.1
    done
    die "$2 did not become ready; see $RUN_DIR/*.log"
}
wait_for "$CONTROL_PLANE/api/v1/ready" "the control plane"

admin() { # method path [json]
    curl -sS -X "$1" "$CONTROL_PLANE$2" -H "X-API-Key: $ADMIN_KEY" \
        -H 'Content-Type: application/json' ${3:+--data "$3"}
}
json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)'"$1"')'; }

user_id="$(admin GET '/api/v1/users?q=demo&per_page=200' |
    python3 -c 'import json,sys; print(next((u["id"] for u in json.load(sys.stdin)["items"] if u["username"] == "demo"), ""))')" ||
    die "the admin key in .run/admin.key is not this database's; set TOLLGATE_BOOTSTRAP__ADMIN_API_KEY"
if [[ -z "$user_id" ]]; then
    user_id="$(admin POST /api/v1/users '{"username":"demo","name":"Demo User"}' | json_field '["id"]')"
fi
demo_key="$(admin POST "/api/v1/users/$user_id/keys" '{"name":"make run"}' | json_field '["key"]')"
# The demo backends form the default pool (70/30) unless this database has backends already.
if [[ "$(admin GET /api/v1/backends | json_field '["total"]')" == "0" ]]; then
    admin POST /api/v1/backends '{"url":"http://127.0.0.1:48080","weight":70}' >/dev/null
    admin POST /api/v1/backends '{"url":"http://127.0.0.1:48081","weight":30}' >/dev/null
fi

envsubst <envoy/bootstrap.yaml >"$RUN_DIR/envoy.yaml"
.tools/bin/envoy -c "$RUN_DIR/envoy.yaml" --concurrency 2 --base-id 9901 --log-level warn \
    >"$RUN_DIR/envoy.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:9901/ready" "Envoy"
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:9901/stats?filter=tollgate_pool_default.membership_total" 2>/dev/null |
        grep -q ': [1-9]' && break
    sleep 0.1
done

cat <<MSG

Tollgate is running (logs in .run/). Try a request through Envoy as the demo user:

  curl -s http://127.0.0.1:8080/hello -H 'X-API-Key: $demo_key'

Without a key it is refused:   curl -s http://127.0.0.1:8080/hello
Admin API (admin key in .run/admin.key unless you set TOLLGATE_BOOTSTRAP__ADMIN_API_KEY):

  curl -s http://127.0.0.1:8090/api/v1/users -H "X-API-Key: \$(cat .run/admin.key)"

Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}" || true
say "a process exited; stopping (see $RUN_DIR/*.log)"
