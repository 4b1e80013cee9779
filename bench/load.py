"""Load runs with wrk, and what one run measures on Envoy and the control plane."""

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from processes import ControlPlane, Envoy, machine_busy_seconds, own_cpu_seconds

LUA_SCRIPT = Path(__file__).with_name("load.lua")
THROUGHPUT_CONNECTIONS = 32
LATENCY_CONNECTIONS = 1
# (warm-up seconds, measured seconds) by connection count.
DURATIONS = {THROUGHPUT_CONNECTIONS: (2, 5), LATENCY_CONNECTIONS: (1, 3)}
WRK_TIMEOUT = "5s"
# Every call the filter makes to the control plane is one of these.
CALLOUT_COUNTERS = ("tollgate_key_lookups_total", "tollgate_user_lookups_total")


@dataclass(frozen=True)
class Case:
    name: str
    # How wrk sends it (see load.lua).
    wrk_env: dict[str, str]
    # The headers of one such request, to check the answer before measuring.
    probe_headers: dict[str, str]
    # What Envoy with the filter answers; plain Envoy always answers 200.
    filter_status: int
    # Why the case cannot run at all (e.g. its credential could not be obtained).
    broken: str | None = None
    # Filter settings of its own (an Envoy with the filter configured so runs the case).
    filter_settings: dict[str, str] | None = None


@dataclass(frozen=True)
class Run:
    requests: int
    seconds: float
    p50_us: int
    p99_us: int
    status_errors: int
    socket_errors: int


@dataclass(frozen=True)
class Measurement:
    rps: float
    p50_us: int
    p99_us: int
    envoy_cpu_us: float
    control_plane_cpu_us: float
    callouts_per_request: float
    unexpected: int
    # Share of the machine's CPU that processes other than the benchmark's used meanwhile.
    others_cpu_share: float


def wrk(url: str, connections: int, seconds: int, wrk_env: dict[str, str]) -> Run:
    argv = [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", f"--timeout={WRK_TIMEOUT}",
        "-s", str(LUA_SCRIPT), url,
    ]
    finished = subprocess.run(argv, env={**os.environ, **wrk_env}, capture_output=True, text=True, check=False)
    summary = next((line for line in finished.stdout.splitlines() if line.startswith("{")), None)
    if finished.returncode != 0 or summary is None:
        raise SystemExit(f"bench: wrk failed on {url}: {finished.stderr or finished.stdout}")
    totals = json.loads(summary)
    return Run(
        requests=totals["requests"],
        seconds=totals["duration_us"] / 1e6,
        p50_us=totals["p50_us"],
        p99_us=totals["p99_us"],
        status_errors=totals["status_errors"],
        socket_errors=totals["socket_errors"],
    )


def callouts(control_plane: ControlPlane) -> float:
    return sum(control_plane.metric(name) for name in CALLOUT_COUNTERS)


def unexpected_answers(run: Run, expected_status: int) -> int:
    """Requests not answered as expected (wrk counts statuses >= 400 as status errors)."""
    refused = run.status_errors
    wrong = refused if expected_status < 400 else run.requests - refused
    return wrong + run.socket_errors


def measure(
    envoy: Envoy,
    control_plane: ControlPlane,
    url: str,
    wrk_env: dict[str, str],
    connections: int,
    expected_status: int,
) -> Measurement:
    """Warms up, then measures one wrk run with the CPU time Envoy and the control plane used."""
    warmup_secs, measured_secs = DURATIONS[connections]
    wrk(url, connections, warmup_secs, wrk_env)
    envoy_cpu, cp_cpu = envoy.child.cpu_seconds(), control_plane.child.cpu_seconds()
    calls = callouts(control_plane)
    started, busy, own = time.monotonic(), machine_busy_seconds(), own_cpu_seconds()
    run = wrk(url, connections, measured_secs, wrk_env)
    others = (machine_busy_seconds() - busy) - (own_cpu_seconds() - own)
    elapsed = time.monotonic() - started
    per_request = 1e6 / max(run.requests, 1)
    return Measurement(
        rps=run.requests / run.seconds,
        p50_us=run.p50_us,
        p99_us=run.p99_us,
        envoy_cpu_us=(envoy.child.cpu_seconds() - envoy_cpu) * per_request,
        control_plane_cpu_us=(control_plane.child.cpu_seconds() - cp_cpu) * per_request,
        callouts_per_request=(callouts(control_plane) - calls) / max(run.requests, 1),
        unexpected=unexpected_answers(run, expected_status),
        others_cpu_share=max(0.0, others) / (elapsed * os.cpu_count()),
    )


FOUND_KEY_LOOKUPS = 'tollgate_key_lookups_total{result="found"}'
WARM_FIRST_CHUNK_SECS = 5
WARM_MAX_CHUNK_SECS = 30


def cache_new_principals(
    control_plane: ControlPlane, url: str, count: int, keyspace: int, first_key: int = 0
) -> tuple[int, int]:
    """Sends the keys tgb_<first_key>, tgb_<first_key + 1>, ... until Envoy has cached at least
    `count` keys it did not hold yet (each one a callout that found its key); returns how many it
    cached and the next key to send."""
    found_before = control_plane.metric(FOUND_KEY_LOOKUPS)
    next_key, chunk_secs = first_key, WARM_FIRST_CHUNK_SECS
    while (cached := control_plane.metric(FOUND_KEY_LOOKUPS) - found_before) < count:
        if next_key >= keyspace:
            raise SystemExit(f"bench: {keyspace} keys sent but only {cached:.0f} new principals cached")
        run = wrk(url, THROUGHPUT_CONNECTIONS, chunk_secs, {"BENCH_KEYS_FROM": str(next_key)})
        if unexpected_answers(run, 200):
            raise SystemExit(f"bench: {unexpected_answers(run, 200)} keys refused while caching principals")
        next_key += run.requests
        remaining = count - (control_plane.metric(FOUND_KEY_LOOKUPS) - found_before)
        rate = max(run.requests / run.seconds, 1.0)
        chunk_secs = min(WARM_MAX_CHUNK_SECS, max(1, round(1.1 * remaining / rate)))
    return int(cached), next_key
