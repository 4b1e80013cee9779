"""Fleet propagation: how long an admin change takes to reach the last of N Envoys over ADS.

One control plane (release build, SQLite in a temporary folder) with P pools of B backends made
through the admin API. With `--echo`, every backend is an address of 127.0.0.0/8 on the port of
one echo server listening on all of them, with the default health checks: the run waits until
every backend is healthy, then counts the database's writes per second for `--idle-secs` while
nothing changes. Without it, backends point where nothing listens, with a health-check interval
of an hour.

Then N Envoys (`--concurrency 1`, nothing but ADS and a listener whose routes come over RDS),
first on state-of-the-world ADS, then on delta ADS. For each, C weight changes (PATCH of one
backend of a random pool) on a quiet control plane, then C more while W admin writers create
users and keys as fast as they are answered. Each change is timed from just before the admin
call to the moment every Envoy has acknowledged the new load assignments, as the control plane
reports in `GET /api/v1/xds/nodes` (polled every 10 ms, so a figure may be up to that much
late). The control plane's CPU per change is taken from the quiet changes."""

import argparse
import json
import random
import socket
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from processes import Child, ControlPlane, http

ENDPOINT_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
TYPES = (
    "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    ENDPOINT_TYPE,
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
)
CREDENTIAL = "fleet-benchmark-envoy-credential-0123456789"
ADMIN_KEY = "fleet-benchmark-admin-key-0123456789"
POLL_SECS = 0.01
SYNC_TIMEOUT_SECS = 600
HEALTHY_TIMEOUT_SECS = 600
CREATORS = 8
BECAME_HEALTHY = 'tollgate_backend_health_changes_total{to="healthy"}'
DATABASE_WRITES = "tollgate_database_writes_total"
UNREACHABLE_PORT = 9


def bootstrap(node_id: str, grpc_port: int, api_type: str) -> dict:
    ads = {"ads": {}, "resource_api_version": "V3"}
    return {
        "node": {"id": node_id, "cluster": "fleet"},
        "dynamic_resources": {
            "ads_config": {
                "api_type": api_type,
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [{
                    "envoy_grpc": {"cluster_name": "tollgate_control_plane"},
                    "initial_metadata": [{"key": "authorization", "value": f"Bearer {CREDENTIAL}"}],
                }],
            },
            "cds_config": ads,
        },
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{
                "name": "fleet",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                                 "http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "fleet",
                        "rds": {"route_config_name": "tollgate_routes", "config_source": ads},
                        "http_filters": [{
                            "name": "envoy.filters.http.router",
                            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http."
                                                      "router.v3.Router"},
                        }],
                    },
                }]}],
            }],
            "clusters": [{
                "name": "tollgate_control_plane",
                "type": "STATIC",
                "connect_timeout": "1s",
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": {"http2_protocol_options": {}},
                    },
                },
                "load_assignment": {
                    "cluster_name": "tollgate_control_plane",
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                        "address": "127.0.0.1", "port_value": grpc_port}}}}]}],
                },
            }],
        },
    }


def create_backends(cp: ControlPlane, pools: int, per_pool: int, port: int) -> list[list[str]]:
    """Backend ids by pool; backend b of pool p at 127.<p / 250 + 1>.<p % 250>.<b + 1>:<port>."""
    def create(pool: int) -> list[str]:
        ids = []
        for b in range(per_pool):
            body = {"url": f"http://127.{pool // 250 + 1}.{pool % 250}.{b + 1}:{port}", "pool": f"p{pool:04d}",
                    "weight": 10}
            ids.append(cp.call("POST", "/api/v1/backends", body, expect=201)["id"])
        return ids

    with ThreadPoolExecutor(CREATORS) as creators:
        return list(creators.map(create, range(pools)))


def start_echo(binary: Path, work: Path) -> tuple[Child, int]:
    """The echo server on a socket bound here to every address (so to all of 127.0.0.0/8) and
    handed over; its port."""
    with socket.create_server(("0.0.0.0", 0), backlog=4096) as listener:
        port = listener.getsockname()[1]
        argv = [str(binary), "--listen-fd", str(listener.fileno()), "--name", "fleet"]
        echo = Child("echo", argv, work, pass_fds=(listener.fileno(),))
    echo.wait_ready(f"http://127.0.0.1:{port}/")
    return echo, port


def wait_until_healthy(cp: ControlPlane, count: int) -> float:
    """Seconds until `count` backends became healthy."""
    began = time.monotonic()
    while cp.metric(BECAME_HEALTHY) < count:
        if time.monotonic() - began > HEALTHY_TIMEOUT_SECS:
            raise SystemExit(f"bench: {cp.metric(BECAME_HEALTHY):.0f} of {count} backends healthy "
                             f"after {HEALTHY_TIMEOUT_SECS}s")
        time.sleep(1)
    return time.monotonic() - began


def idle_writes_per_second(cp: ControlPlane, seconds: float) -> float:
    before, began = cp.metric(DATABASE_WRITES), time.monotonic()
    time.sleep(seconds)
    return (cp.metric(DATABASE_WRITES) - before) / (time.monotonic() - began)


class AdminWriters:
    """`count` threads that each create a user, then a key for it, as fast as they are answered,
    until stopped; every call's latency and every answer other than 201 are kept."""

    def __init__(self, cp: ControlPlane, count: int, name: str):
        self.cp, self.name = cp, name
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.write, args=(index,)) for index in range(count)]

    def __enter__(self) -> "AdminWriters":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join()

    def write(self, index: int) -> None:
        made = 0
        while not self.stopping.is_set():
            user = self.call("POST", "/api/v1/users", {"username": f"{self.name}-{index}-{made}"})
            if user is not None:
                self.call("POST", f"/api/v1/users/{user['id']}/keys", {"name": "fleet"})
            made += 1

    def call(self, method: str, path: str, body: dict):
        began = time.monotonic()
        try:
            status, answer = http(method, self.cp.url(path), {"X-API-Key": self.cp.admin_key}, body)
        except OSError as error:
            status, answer = 0, str(error)
        with self.lock:
            self.latencies.append(time.monotonic() - began)
            if status != 201:
                self.failures.append(f"{method} {path}: {status} {answer}")
        return answer if status == 201 else None

    def summary(self) -> str:
        if not self.latencies:
            return "no admin writes"
        first = f" (first: {self.failures[0]})" if self.failures else ""
        return (f"{len(self.threads)} admin writers: {len(self.latencies)} writes, p50 "
                f"{1000 * statistics.median(self.latencies):.0f} ms, p99 "
                f"{1000 * percentile(self.latencies, 0.99):.0f} ms, max {1000 * max(self.latencies):.0f} ms, "
                f"{len(self.failures)} answers other than 201{first}")


def nodes(cp: ControlPlane, prefix: str) -> dict:
    every = cp.call("GET", "/api/v1/xds/nodes")["nodes"]
    return {name: node for name, node in every.items() if name.startswith(prefix) and node["open_streams"]}


def wait_for_sync(cp: ControlPlane, prefix: str, count: int, old_version: str | None) -> str:
    """Until `count` Envoys acknowledged the same load assignments (other than `old_version`) and
    every type; returns that version."""
    deadline = time.monotonic() + SYNC_TIMEOUT_SECS
    while time.monotonic() < deadline:
        current = nodes(cp, prefix)
        acked = {node["acked_versions"].get(ENDPOINT_TYPE) for node in current.values()}
        complete = all(len(node["acked_versions"]) == len(TYPES) for node in current.values())
        if len(current) == count and complete and len(acked) == 1 and old_version not in acked:
            return acked.pop()
        time.sleep(POLL_SECS)
    raise SystemExit(f"bench: {prefix} Envoys did not converge in {SYNC_TIMEOUT_SECS}s")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run_fleet(cp: ControlPlane, envoy_bin: Path, work: Path, api_type: str, args, backends) -> dict:
    prefix = f"fleet-{api_type.lower()}-"
    envoys = []
    started = time.monotonic()
    cpu_before = cp.child.cpu_seconds()
    for i in range(args.envoys):
        config = work / f"{prefix}{i}.json"
        config.write_text(json.dumps(bootstrap(f"{prefix}{i}", cp.grpc_port, api_type)))
        envoys.append(Child(f"{prefix}{i}", [str(envoy_bin), "-c", str(config), "--concurrency", "1",
                                             "--use-dynamic-base-id", "--log-level", "warn"], work))
    version = wait_for_sync(cp, prefix, args.envoys, None)
    result = {"initial_sync_s": time.monotonic() - started, "initial_cpu_s": cp.child.cpu_seconds() - cpu_before}

    def changes(version: str) -> tuple[list[float], str]:
        times = []
        for change in range(args.changes):
            backend = random.choice(random.choice(backends))
            began = time.monotonic()
            cp.call("PATCH", f"/api/v1/backends/{backend}", {"weight": 20 + change % 50})
            version = wait_for_sync(cp, prefix, args.envoys, version)
            times.append(time.monotonic() - began)
        return times, version

    cpu = cp.child.cpu_seconds()
    result["quiet"], version = changes(version)
    result["cp_cpu_ms_per_change"] = 1000 * (cp.child.cpu_seconds() - cpu) / args.changes
    with AdminWriters(cp, args.writers, prefix.rstrip("-")) as writers:
        result["writing"], version = changes(version)
    result["writers"] = writers.summary()
    result["cp_rss_mb"] = cp.child.rss_mb()
    for envoy in envoys:
        envoy.stop()
    return result


def timing(times: list[float]) -> str:
    return (f"p50 {1000 * statistics.median(times):.0f} ms, p99 {1000 * percentile(times, 0.99):.0f} ms, "
            f"max {1000 * max(times):.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envoys", type=int, default=100)
    parser.add_argument("--pools", type=int, default=1000)
    parser.add_argument("--backends", type=int, default=10, help="backends per pool")
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--ads", choices=["sotw", "delta", "both"], default="both")
    parser.add_argument("--writers", type=int, default=8, help="admin writers during the second changes")
    parser.add_argument("--idle-secs", type=float, default=60, help="how long database writes are counted")
    parser.add_argument("--tollgate", type=Path, required=True)
    parser.add_argument("--envoy", type=Path, required=True)
    parser.add_argument("--echo", type=Path, help="tollgate-echo: backends are healthy")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tollgate-fleet-") as folder:
        work = Path(folder)
        settings = {
            "TOLLGATE_GRPC__CREDENTIAL": CREDENTIAL,
            "TOLLGATE_POOLS__MAX_BACKENDS": str(max(10, args.backends)),
        }
        echo, port = start_echo(args.echo, work) if args.echo else (None, UNREACHABLE_PORT)
        if not echo:
            settings["TOLLGATE_POOLS__HEALTH_CHECK__INTERVAL_SECS"] = "3600"
        cp = ControlPlane(args.tollgate, work, work, ADMIN_KEY, settings)
        cp.start()
        try:
            began = time.monotonic()
            backends = create_backends(cp, args.pools, args.backends, port)
            count = args.pools * args.backends
            print(f"{args.pools} pools x {args.backends} backends created in {time.monotonic() - began:.1f}s; "
                  f"control plane RSS {cp.child.rss_mb():.0f} MB", flush=True)
            if echo:
                print(f"all {count} backends healthy after {wait_until_healthy(cp, count):.0f}s more; with "
                      f"nothing changing, {idle_writes_per_second(cp, args.idle_secs):.2f} database writes/s "
                      f"over {args.idle_secs:.0f}s", flush=True)
            kinds = {"sotw": ["GRPC"], "delta": ["DELTA_GRPC"], "both": ["GRPC", "DELTA_GRPC"]}[args.ads]
            for api_type in kinds:
                result = run_fleet(cp, args.envoy, work, api_type, args, backends)
                print(f"{api_type:10} {args.envoys} Envoys: initial sync {result['initial_sync_s']:.1f}s "
                      f"(control plane CPU {result['initial_cpu_s']:.1f}s)\n"
                      f"  {args.changes} changes to the last ACK: {timing(result['quiet'])}; control plane CPU "
                      f"{result['cp_cpu_ms_per_change']:.0f} ms per change\n"
                      f"  {args.changes} changes during admin writes: {timing(result['writing'])}\n"
                      f"  {result['writers']}\n"
                      f"  control plane RSS {result['cp_rss_mb']:.0f} MB", flush=True)
        finally:
            cp.stop()
            if echo:
                echo.stop()


if __name__ == "__main__":
    main()
