"""Two Envoys sharing one global rate limit, in each mode, driven at twice the limit.

Each mode gets a user of its own limited to LIMIT_PER_MINUTE with a burst of BURST; one thread
per Envoy and mode sends requests at an even pace so that the two Envoys together offer twice
the limit. A plain Envoy gets the same pace, for the latency the modes add. Every figure is
measured in the same run."""

import http.client
import threading
import time
from dataclasses import dataclass, field

from processes import ControlPlane, Envoy

LIMIT_PER_MINUTE = 600
BURST = 10
DRIVE_SECS = 60
OFFERED_FACTOR = 2
MODES = ("exact", "fast")
# Enough for the Envoys to learn that they are two and to refill what the warm-up took.
SETTLE_SECS = 3


@dataclass
class Drive:
    """What one sender saw."""

    statuses: dict[int, int] = field(default_factory=dict)
    admitted_latencies_us: list[int] = field(default_factory=list)
    first_sent: float = 0.0
    last_sent: float = 0.0


def drive(envoy: Envoy, path: str, key: str | None, per_second: float, seconds: float, start_at: float) -> Drive:
    """Sends GET `path` at an even `per_second` pace from `start_at` for `seconds`."""
    result = Drive()
    connection = http.client.HTTPConnection("127.0.0.1", envoy.listen_port, timeout=10)
    headers = {"X-API-Key": key} if key else {}
    count = int(per_second * seconds)
    for index in range(count):
        due = start_at + index / per_second
        time.sleep(max(0.0, due - time.monotonic()))
        sent = time.monotonic()
        result.first_sent = result.first_sent or sent
        result.last_sent = sent
        connection.request("GET", path, headers=headers)
        answer = connection.getresponse()
        answer.read()
        took_us = int((time.monotonic() - sent) * 1e6)
        result.statuses[answer.status] = result.statuses.get(answer.status, 0) + 1
        if answer.status == 200:
            result.admitted_latencies_us.append(took_us)
    connection.close()
    return result


def percentile(values: list[int], share: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0


@dataclass
class ModeResult:
    mode: str
    offered: int
    admitted: int
    # What a single exact bucket admits over the same time: burst + rate * time.
    allowed: float
    admitted_per_envoy: list[int]
    p50_us: int
    p99_us: int
    other_statuses: dict[int, int]


def run(control_plane: ControlPlane, filter_envoys: list[Envoy], plain: Envoy, path: str) -> tuple[list[ModeResult], int, int]:
    """Measures every mode at once; returns the results and plain Envoy's p50 and p99."""
    keys = {}
    for mode in MODES:
        user = control_plane.call(
            "POST",
            "/api/v1/users",
            {
                "username": f"global-{mode}",
                "rate_limits": {
                    "requests_per_minute": LIMIT_PER_MINUTE,
                    "requests_per_hour": 1_000_000_000,
                    "burst": BURST,
                    "mode": mode,
                },
            },
            expect=201,
        )
        keys[mode] = control_plane.call("POST", f"/api/v1/users/{user['id']}/keys", {"name": mode}, expect=201)["key"]
        for envoy in filter_envoys:
            warm = drive(envoy, path, keys[mode], 10, 0.1, time.monotonic())
            if warm.statuses.get(200) != 1:
                raise SystemExit(f"bench: {envoy.name} refused the {mode} user's first request: {warm.statuses}")
    time.sleep(SETTLE_SECS)

    per_envoy = OFFERED_FACTOR * LIMIT_PER_MINUTE / 60 / len(filter_envoys)
    start_at = time.monotonic() + 0.5
    senders: dict[tuple, Drive] = {}

    def sender(name, envoy, key):
        senders[name] = drive(envoy, path, key, per_envoy, DRIVE_SECS, start_at)

    threads = [
        threading.Thread(target=sender, args=((mode, index), envoy, keys[mode]))
        for mode in MODES
        for index, envoy in enumerate(filter_envoys)
    ]
    threads.append(threading.Thread(target=sender, args=(("plain", 0), plain, None)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    results = []
    for mode in MODES:
        drives = [senders[(mode, index)] for index in range(len(filter_envoys))]
        elapsed = max(d.last_sent for d in drives) - min(d.first_sent for d in drives)
        latencies = [us for d in drives for us in d.admitted_latencies_us]
        others: dict[int, int] = {}
        for d in drives:
            for status, count in d.statuses.items():
                if status not in (200, 429):
                    others[status] = others.get(status, 0) + count
        results.append(
            ModeResult(
                mode=mode,
                offered=sum(sum(d.statuses.values()) for d in drives),
                admitted=sum(d.statuses.get(200, 0) for d in drives),
                allowed=BURST + LIMIT_PER_MINUTE * elapsed / 60,
                admitted_per_envoy=[d.statuses.get(200, 0) for d in drives],
                p50_us=percentile(latencies, 0.50),
                p99_us=percentile(latencies, 0.99),
                other_statuses=others,
            )
        )
    plain_latencies = senders[("plain", 0)].admitted_latencies_us
    return results, percentile(plain_latencies, 0.50), percentile(plain_latencies, 0.99)
