"""Fleet propagation: how long an admin change takes to reach the last of N Envoys over ADS.

One control plane (release build, SQLite in a temporary folder) with P pools of B backends made
through the admin API, then N Envoys (`--concurrency 1`, nothing but ADS and a listener whose
routes come over RDS), first on state-of-the-world ADS, then on delta ADS. For each, C weight
changes (PATCH of one backend of a random pool), each timed from just before the admin call to
the moment every Envoy has acknowledged the new load assignments, as the control plane reports
in `GET /api/v1/xds/nodes` (polled every 10 ms, so a figure may be up to that much late).
Backends point at loopback addresses where nothing listens, with a health-check interval of an
hour, so no health change moves the configuration while changes are timed."""

import argparse
import json
import random
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from processes import Child, ControlPlane

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
WRITERS = 8


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


def create_backends(cp: ControlPlane, pools: int, per_pool: int) -> list[list[str]]:
    """Backend ids by pool; backend b of pool p at 127.<p / 250 + 1>.<p % 250>.<b + 1>:9."""
    def create(pool: int) -> list[str]:
        ids = []
        for b in range(per_pool):
            body = {"url": f"http://127.{pool // 250 + 1}.{pool % 250}.{b + 1}:9", "pool": f"p{pool:04d}",
                    "weight": 10}
            ids.append(cp.call("POST", "/api/v1/backends", body, expect=201)["id"])
        return ids

    with ThreadPoolExecutor(WRITERS) as writers:
        return list(writers.map(create, range(pools)))


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
    initial = {"initial_sync_s": time.monotonic() - started, "initial_cpu_s": cp.child.cpu_seconds() - cpu_before}
    times, cpu = [], cp.child.cpu_seconds()
    for change in range(args.changes):
        pool = random.randrange(len(backends))
        backend = random.choice(backends[pool])
        weight = 20 + change % 50
        began = time.monotonic()
        cp.call("PATCH", f"/api/v1/backends/{backend}", {"weight": weight})
        version = wait_for_sync(cp, prefix, args.envoys, version)
        times.append(time.monotonic() - began)
    cpu_per_change = (cp.child.cpu_seconds() - cpu) / args.changes
    for envoy in envoys:
        envoy.stop()
    return {
        **initial,
        "p50_ms": 1000 * statistics.median(times),
        "p99_ms": 1000 * percentile(times, 0.99),
        "max_ms": 1000 * max(times),
        "cp_cpu_ms_per_change": 1000 * cpu_per_change,
        "cp_rss_mb": cp.child.rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envoys", type=int, default=100)
    parser.add_argument("--pools", type=int, default=1000)
    parser.add_argument("--backends", type=int, default=10, help="backends per pool")
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--ads", choices=["sotw", "delta", "both"], default="both")
    parser.add_argument("--tollgate", type=Path, required=True)
    parser.add_argument("--envoy", type=Path, required=True)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tollgate-fleet-") as folder:
        work = Path(folder)
        cp = ControlPlane(args.tollgate, work, work, ADMIN_KEY, {
            "TOLLGATE_GRPC__CREDENTIAL": CREDENTIAL,
            "TOLLGATE_POOLS__MAX_BACKENDS": str(max(10, args.backends)),
            "TOLLGATE_POOLS__HEALTH_CHECK__INTERVAL_SECS": "3600",
        })
        cp.start()
        try:
            began = time.monotonic()
            backends = create_backends(cp, args.pools, args.backends)
            print(f"{args.pools} pools x {args.backends} backends created in {time.monotonic() - began:.1f}s; "
                  f"control plane RSS {cp.child.rss_mb():.0f} MB", flush=True)
            kinds = {"sotw": ["GRPC"], "delta": ["DELTA_GRPC"], "both": ["GRPC", "DELTA_GRPC"]}[args.ads]
            for api_type in kinds:
                result = run_fleet(cp, args.envoy, work, api_type, args, backends)
                print(f"{api_type:10} {args.envoys} Envoys: initial sync {result['initial_sync_s']:.1f}s "
                      f"(control plane CPU {result['initial_cpu_s']:.1f}s); {args.changes} changes to the last "
                      f"ACK p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms, "
                      f"max {result['max_ms']:.0f} ms; control plane CPU {result['cp_cpu_ms_per_change']:.0f} "
                      f"ms per change, RSS {result['cp_rss_mb']:.0f} MB", flush=True)
        finally:
            cp.stop()


if __name__ == "__main__":
    main()
