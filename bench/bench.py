"""Plain Envoy vs Envoy with the Tollgate filter, measured in the same run on this machine.

scripts/bench.sh builds everything and runs this; bench/README.md says what is measured."""

import argparse
import os
import platform
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import bootstrap
import global_limit
import keys
import report
from load import LATENCY_CONNECTIONS, THROUGHPUT_CONNECTIONS, Case, cache_new_principals, measure
from processes import Child, ControlPlane, Envoy, http, listening_socket, start_with_free_ports

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
TOLLGATE_BIN = TARGET / "release/tollgate"
ECHO_BIN = TARGET / "release/tollgate-echo"
FILTER_WASM = TARGET / "wasm32-wasip1/release/tollgate_filter.wasm"
ENVOY_BIN = ROOT / ".tools/bin/envoy"
# What the benchmark's Envoys present on the control plane's gRPC port.
ENVOY_CREDENTIAL = "bench-envoy-credential-" + "0" * 24
LOG_DIR = ROOT / ".run/bench"

WORKER_COUNTS = (1, 2)
ROUTES = {"direct": "/direct", "proxied": "/proxied"}
KEYSPACE = 1_000_000
PRINCIPALS_FOR_MEMORY = 100_000
# Twice what one worker VM keeps in its own cache of principals (the rest stay in shared data).
PRINCIPALS_FILLING_A_WORKER = 20_000
# Resolved keys, known and unknown, stay cached for the whole run. Address limits are checked
# on every request but set high enough that the load of one address never reaches them.
CONTROL_PLANE_SETTINGS = {
    "TOLLGATE_GRPC__CREDENTIAL": ENVOY_CREDENTIAL,
    "TOLLGATE_FILTER__POSITIVE_CACHE_TTL_SECS": "3600",
    "TOLLGATE_FILTER__NEGATIVE_CACHE_TTL_SECS": "3600",
    "TOLLGATE_LIMITS__IP__REQUESTS_PER_MINUTE": "1000000000",
    "TOLLGATE_LIMITS__IP__BURST": "1000000000",
}
# No default user limit (a YAML null removes a default), so that one case measures a request
# that draws on no bucket at all.
CONTROL_PLANE_CONFIG = "limits:\n  user: {requests_per_minute: null, requests_per_hour: null}\n"
# The filter keeps the `X-RateLimit-*` headers to its own refusals in the case named so.
REFUSALS_HEADERS = {"rate_limit_headers": "refusals"}
# The bench user's own limits: checked on every request (in the default `fast` mode), never reached.
BENCH_USER_LIMITS = {"requests_per_minute": 1_000_000_000, "requests_per_hour": 1_000_000_000}
USERNAME = "bench"


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


class Stack:
    """Everything started so far, stopped in reverse order on the way out."""

    def __init__(self):
        self.running = []

    def add(self, process):
        self.running.append(process)
        return process

    def stop(self, process) -> None:
        process.stop()
        self.running.remove(process)

    def stop_all(self) -> None:
        while self.running:
            self.stop(self.running[-1])


def prepare_control_plane(
    stack: Stack, data_dir: Path, password: str, keyspace: int = KEYSPACE
) -> tuple[ControlPlane, str, str]:
    """A control plane with the bench user, one issued key and `keyspace` imported keys, and a
    second user without rate limits and its key."""
    data_dir.mkdir()
    admin_key = secrets.token_urlsafe(32)
    config = data_dir / "tollgate.yaml"
    config.write_text(CONTROL_PLANE_CONFIG)
    settings = {**CONTROL_PLANE_SETTINGS, "TOLLGATE_CONFIG": str(config)}
    control_plane = ControlPlane(TOLLGATE_BIN, data_dir, LOG_DIR, admin_key, settings)
    stack.add(control_plane).start()
    user = control_plane.call(
        "POST",
        "/api/v1/users",
        {"username": USERNAME, "password": password, "rate_limits": BENCH_USER_LIMITS},
        expect=201,
    )
    issued = control_plane.call("POST", f"/api/v1/users/{user['id']}/keys", {"name": "bench"}, expect=201)
    unlimited = control_plane.call("POST", "/api/v1/users", {"username": f"{USERNAME}-unlimited"}, expect=201)
    unlimited_key = control_plane.call(
        "POST", f"/api/v1/users/{unlimited['id']}/keys", {"name": "bench"}, expect=201
    )["key"]
    if keyspace:
        control_plane.stop()
        say(f"importing {keyspace:,} keys into SQLite")
        keys.seed(data_dir, user["id"], keyspace)
        control_plane.start()
    return control_plane, issued["key"], unlimited_key


def login(control_plane: ControlPlane, password: str) -> tuple[str | None, str | None]:
    """(access token, None), or (None, why the login failed)."""
    status, answer = http(
        "POST", control_plane.url("/api/v1/auth/login"), body={"username": USERNAME, "password": password}
    )
    if status != 200 or not (answer or {}).get("access_token"):
        return None, f"login answered {status}: {answer}"
    return answer["access_token"], None


def header_case(
    name: str,
    header: str,
    value: str,
    filter_status: int,
    broken: str | None = None,
    filter_settings: dict[str, str] | None = None,
) -> Case:
    """A case that sends the same header with every request."""
    wrk_env = {"BENCH_HEADER_NAME": header, "BENCH_HEADER_VALUE": value}
    return Case(name, wrk_env, {header: value}, filter_status, broken, filter_settings)


def cases(api_key: str, unlimited_key: str, access_token: str | None, login_failure: str | None) -> list[Case]:
    random_key = Case(
        f"{KEYSPACE:,} keys, random", {"BENCH_KEYSPACE": str(KEYSPACE)}, {"X-API-Key": keys.key(KEYSPACE - 1)}, 200
    )
    # The invalid key goes last: for a minute after a failed authentication every request
    # also looks up its address's bucket, which would weigh on the cases after it.
    return [
        header_case("valid key, cached", "X-API-Key", api_key, 200),
        header_case("valid key, cached, rate_limit_headers refusals", "X-API-Key", api_key, 200,
                    filter_settings=REFUSALS_HEADERS),
        header_case("valid key, no rate limit", "X-API-Key", unlimited_key, 200),
        header_case("session JWT", "Authorization", f"Bearer {access_token}", 200, broken=login_failure),
        random_key,
        header_case("invalid key, negative cache", "X-API-Key", f"tgb_unknown_{secrets.token_hex(8)}", 401),
    ]


@dataclass
class Setup:
    """What every Envoy pair of the run shares."""

    stack: Stack
    work_dir: Path
    control_plane: ControlPlane
    upstream_port: int
    cases: list[Case]


def start_upstream(stack: Stack) -> int:
    """The echo backend, serving on a socket bound here and handed over (never a free port)."""
    with listening_socket() as listener:
        port = listener.getsockname()[1]
        argv = [str(ECHO_BIN), "--listen-fd", str(listener.fileno()), "--name", "bench"]
        echo = stack.add(Child("upstream", argv, LOG_DIR, pass_fds=(listener.fileno(),)))
    echo.wait_ready(f"http://127.0.0.1:{port}/")
    return port


def envoy_values(setup: Setup, name: str, ports: tuple[int, int]) -> dict[str, str]:
    """The bootstrap's placeholders for one Envoy of the run."""
    return {
        "ENVOY_NODE_ID": name,
        "ENVOY_LISTEN_ADDRESS": "127.0.0.1",
        "ENVOY_LISTEN_PORT": str(ports[0]),
        "ENVOY_ADMIN_PORT": str(ports[1]),
        "ENVOY_FILTER_WASM": str(FILTER_WASM),
        "ENVOY_CONTROL_PLANE_HOST": "127.0.0.1",
        "ENVOY_CONTROL_PLANE_PORT": str(setup.control_plane.grpc_port),
        "ENVOY_CONTROL_PLANE_CREDENTIAL": ENVOY_CREDENTIAL,
        "BENCH_UPSTREAM_PORT": str(setup.upstream_port),
    }


def start_envoy(
    setup: Setup, workers: int, filtered: bool, suffix: str = "", filter_settings: dict[str, str] | None = None
) -> Envoy:
    name = f"envoy-{'filter' if filtered else 'plain'}-{workers}w{suffix}"

    def start(ports: list[int]) -> Envoy:
        config = setup.work_dir / f"{name}.yaml"
        values = envoy_values(setup, name, (ports[0], ports[1]))
        config.write_text(bootstrap.render_envoy(ROOT, values, filtered, filter_settings))
        return Envoy(name, ENVOY_BIN, config, LOG_DIR, workers, (ports[0], ports[1]))

    envoy = setup.stack.add(start_with_free_ports(name, 2, start))
    status, _ = http("GET", envoy.url(ROUTES["direct"]))
    if status != (401 if filtered else 200):
        raise SystemExit(f"bench: {name} answered {status} to a request without credentials")
    return envoy


def probe(envoy: Envoy, case: Case, expected: int) -> str | None:
    """Why `envoy` does not answer the case as expected on every route, or None."""
    for route, path in ROUTES.items():
        status, answer = http("GET", envoy.url(path), case.probe_headers)
        if status != expected:
            code = ((answer or {}).get("error") or {}).get("code", "")
            return f"{envoy.name} answered {status} {code} on {route}, expected {expected}".rstrip()
    return None


def run_case(results: report.Results, envoys: dict[str, Envoy], control_plane: ControlPlane, case: Case) -> None:
    workers = envoys["plain"].workers
    results.rows += [(workers, route, case.name) for route in ROUTES]
    failure = case.broken or probe(envoys["filter"], case, case.filter_status)
    failure = failure or probe(envoys["plain"], case, 200)
    if failure:
        results.failures[(workers, case.name)] = failure
        say(f"FAILED: {case.name}: {failure}")
        return
    for route, path in ROUTES.items():
        for connections in (THROUGHPUT_CONNECTIONS, LATENCY_CONNECTIONS):
            for variant, envoy in envoys.items():
                expected = case.filter_status if variant == "filter" else 200
                results.runs[(workers, route, case.name, variant, connections)] = measure(
                    envoy, control_plane, envoy.url(path), case.wrk_env, connections, expected
                )


def measure_memory(results: report.Results, envoy: Envoy, control_plane: ControlPlane) -> None:
    """Envoy's growth per cached principal, after each worker's own bounded cache has filled up
    (that part is reported on its own: it does not grow with the principals)."""
    url = envoy.url(ROUTES["direct"])
    warm_up = PRINCIPALS_FILLING_A_WORKER * envoy.workers
    say(f"{envoy.name}: caching {warm_up:,} principals to fill the workers' own caches")
    started = envoy.child.rss_mb()
    _, next_key = cache_new_principals(control_plane, url, warm_up, KEYSPACE)
    before = envoy.child.rss_mb()
    say(f"{envoy.name}: caching {PRINCIPALS_FOR_MEMORY:,} more principals")
    cached, _ = cache_new_principals(control_plane, url, PRINCIPALS_FOR_MEMORY, KEYSPACE, next_key)
    results.memory.append(report.MemoryGrowth(envoy.workers, cached, started, before, envoy.child.rss_mb()))


def bench_workers(results: report.Results, setup: Setup, workers: int, with_memory: bool) -> None:
    """Every case on a plain Envoy and an Envoy with Tollgate, both with `workers` workers."""
    envoys = {"plain": start_envoy(setup, workers, False), "filter": start_envoy(setup, workers, True)}
    for case in setup.cases:
        say(f"{workers} worker(s): {case.name}")
        if not case.filter_settings:
            run_case(results, envoys, setup.control_plane, case)
            continue
        configured = start_envoy(setup, workers, True, "-configured", case.filter_settings)
        run_case(results, {**envoys, "filter": configured}, setup.control_plane, case)
        setup.stack.stop(configured)
    if with_memory:
        measure_memory(results, envoys["filter"], setup.control_plane)
    for envoy in envoys.values():
        setup.stack.stop(envoy)


def bench_global_limit(results: report.Results, setup: Setup) -> None:
    """Two Envoys with the filter share one limit per mode; a plain Envoy takes the same pace."""
    say(f"two Envoys, one global limit of {global_limit.LIMIT_PER_MINUTE}/min per mode, {global_limit.DRIVE_SECS} s")
    envoys = [start_envoy(setup, 2, True, f"-{name}") for name in ("a", "b")]
    plain = start_envoy(setup, 2, False, "-pace")
    results.global_limit = global_limit.run(setup.control_plane, envoys, plain, ROUTES["direct"])
    for envoy in [*envoys, plain]:
        setup.stack.stop(envoy)


def envoy_version() -> str:
    """The release number in `envoy --version` (`... version: <sha>/1.40.0/Clean/RELEASE/...`)."""
    output = subprocess.run([str(ENVOY_BIN), "--version"], capture_output=True, text=True, check=True).stdout
    found = re.search(r"version: \S+?/([0-9.]+)/", output)
    return found.group(1) if found else output.strip()


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def print_report(results: report.Results, elapsed_secs: float) -> None:
    print(
        f"\nTollgate benchmark: Envoy {envoy_version()} plain vs with the Tollgate filter, same run\n"
        f"machine: {cpu_model()}, {os.cpu_count()} CPUs; everything on 127.0.0.1\n"
        f"load: wrk, {THROUGHPUT_CONNECTIONS} connections for throughput and CPU, "
        f"{LATENCY_CONNECTIONS} connection for unloaded latency, each run after a warm-up\n"
        "routes: direct = Envoy's direct_response; proxied = to tollgate-echo (release build)\n"
        "ratios are filter/plain; 'added' is filter minus plain; CPU is Envoy's user+system time per request;\n"
        "others' CPU % is the machine's CPU that processes outside the benchmark used during the runs "
        "(the higher, the noisier the row)\n"
    )
    print(f"At {THROUGHPUT_CONNECTIONS} connections\n{report.throughput_table(results)}\n")
    print(
        f"Per request: p50 at {LATENCY_CONNECTIONS} connection, CPU at {THROUGHPUT_CONNECTIONS} connections; "
        "callouts are the filter's calls to the control plane\n"
        f"{report.cost_table(results)}\n"
    )
    print(f"Envoy memory for cached principals (VmRSS growth)\n{report.memory_table(results)}\n")
    if results.global_limit:
        print(
            f"Two Envoys sharing one limit of {global_limit.LIMIT_PER_MINUTE}/min (burst {global_limit.BURST}), "
            f"offered {global_limit.OFFERED_FACTOR}x the limit for {global_limit.DRIVE_SECS} s, "
            "half through each Envoy, direct route;\n'allowed' is what one exact bucket admits in that time "
            "(burst + rate x time); latency of admitted requests vs plain Envoy at the same pace\n"
            f"{report.global_limit_table(results)}\n"
        )
    for problem in report.unexpected_answers(results):
        print(f"UNEXPECTED: {problem}")
    for (workers, case), failure in results.failures.items():
        print(f"FAILED: {case} ({workers} worker(s)): {failure}")
    print(f"benchmark time: {elapsed_secs:.0f} s (builds not included)")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Plain Envoy vs Envoy with the Tollgate filter.")
    parser.add_argument(
        "--workers", type=int, action="append", choices=WORKER_COUNTS, help="only these worker counts"
    )
    parser.add_argument("--case", action="append", help="only cases whose name contains this text")
    parser.add_argument("--quick", action="store_true", help="skip the global-limit and memory measurements")
    return parser.parse_args()


def main() -> int:
    options = arguments()
    started = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    results, stack = report.Results(), Stack()
    password = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-") as work:
        try:
            control_plane, api_key, unlimited_key = prepare_control_plane(stack, Path(work) / "data", password)
            chosen = [
                case
                for case in cases(api_key, unlimited_key, *login(control_plane, password))
                if not options.case or any(text in case.name for text in options.case)
            ]
            setup = Setup(stack, Path(work), control_plane, start_upstream(stack), chosen)
            if not options.quick:
                bench_global_limit(results, setup)
            for workers in options.workers or WORKER_COUNTS:
                bench_workers(results, setup, workers, with_memory=not options.quick)
        finally:
            stack.stop_all()
    print_report(results, time.monotonic() - started)
    return 1 if results.failures or report.unexpected_answers(results) else 0


if __name__ == "__main__":
    sys.exit(main())
