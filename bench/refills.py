"""Quota allowance refills: the callouts (`AcquireAllowances`) the filter makes per 1,000 requests
of a user with a monthly request quota, at several quota sizes, counted by the control plane.

One Envoy with the filter (1 worker) and the control plane of the other benchmarks; each quota size
gets a user of its own, whose requests go one after another on one connection to the
`direct_response` route. A quota smaller than the requests sent runs out during the run, so its
row also shows what the refused requests cost."""

import collections
import os
import sys
import tempfile
from http.client import HTTPConnection
from pathlib import Path

import bench
import report

QUOTA_SIZES = (1_000, 100_000, 10_000_000)
REQUESTS = 2_000
ALLOWANCE_CALLOUTS = ("tollgate_allowances_granted_total", "tollgate_allowance_refusals_total")


def say(message: str) -> None:
    print(f"refills: {message}", file=sys.stderr, flush=True)


def allowance_callouts(control_plane) -> float:
    return sum(control_plane.metric(name) for name in ALLOWANCE_CALLOUTS)


def send(url_port: int, path: str, key: str, count: int) -> collections.Counter:
    """The statuses of `count` requests with `key`, one after another on one connection."""
    statuses = collections.Counter()
    connection = HTTPConnection("127.0.0.1", url_port, timeout=60)
    for _ in range(count):
        connection.request("GET", path, headers={"X-API-Key": key})
        answer = connection.getresponse()
        answer.read()
        statuses[answer.status] += 1
    connection.close()
    return statuses


def per_thousand(callouts: float, requests: int) -> str:
    return f"{callouts / requests * 1000:,.1f}" if requests else "-"


def measure(control_plane, envoy, size: int) -> list[str]:
    """Callouts while the quota admits (up to its size), then while it refuses (the rest)."""
    user = control_plane.call(
        "POST", "/api/v1/users", {"username": f"refills-{size}", "quotas": {"monthly_requests": size}}, expect=201
    )
    key = control_plane.call("POST", f"/api/v1/users/{user['id']}/keys", {"name": "refills"}, expect=201)["key"]
    row = [f"{size:,}"]
    for count, expected in ((min(size, REQUESTS), 200), (REQUESTS - min(size, REQUESTS), 402)):
        before = allowance_callouts(control_plane)
        statuses = send(envoy.listen_port, bench.ROUTES["direct"], key, count)
        callouts = allowance_callouts(control_plane) - before
        if statuses[expected] != count:
            raise SystemExit(f"refills: quota {size:,}: expected {count} x {expected}, got {dict(statuses)}")
        row += [f"{count:,}", f"{callouts:,.0f}", per_thousand(callouts, count)]
    return row


def main() -> int:
    bench.LOG_DIR.mkdir(parents=True, exist_ok=True)
    stack = bench.Stack()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tollgate-refills-") as work:
        try:
            password = "refills-" + os.urandom(8).hex()
            control_plane, _, _ = bench.prepare_control_plane(stack, Path(work) / "data", password, keyspace=0)
            setup = bench.Setup(stack, Path(work), control_plane, bench.start_upstream(stack), [])
            envoy = bench.start_envoy(setup, 1, True)
            for size in QUOTA_SIZES:
                say(f"monthly_requests {size:,}")
                rows.append(measure(control_plane, envoy, size))
        finally:
            stack.stop_all()
    print(f"\nAllowance callouts for {REQUESTS:,} requests in a row, Envoy 1 worker, direct route\n")
    headers = ["quota", "admitted", "callouts", "per 1,000", "refused (402)", "callouts", "per 1,000"]
    print(report.table(headers, rows, labels=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
