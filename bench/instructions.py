"""Instructions Envoy executes per request, plain and with the Tollgate filter, counted by
valgrind's callgrind: unlike CPU time, the count does not move with the machine's load, so two
builds of the filter can be compared on a busy machine and small changes still show.

Each Envoy (1 worker) runs under callgrind with instrumentation off until it is warm; then the
counters are zeroed, REQUESTS requests are sent one after another on one connection, and the
counters are dumped. What Envoy does meanwhile anyway (timers, the filter's ticks) is counted
while it idles and taken off in proportion to the time, since under valgrind, and on a busy
machine, the requests take long enough for it to matter."""

from http.client import HTTPConnection
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench
import report
from processes import Envoy, start_with_free_ports

REQUESTS = 2000
WARMUP_REQUESTS = 300
IDLE_SECS = 5
# Envoy and V8 start far slower under valgrind.
START_TIMEOUT_SECS = 600


def say(message: str) -> None:
    print(f"instructions: {message}", file=sys.stderr, flush=True)


def valgrind_wrapper(work_dir: Path, out_dir: Path) -> Path:
    """A script that runs Envoy under callgrind, instrumentation off until switched on."""
    wrapper = work_dir / "envoy-under-callgrind"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"exec valgrind --tool=callgrind --instr-atstart=no --smc-check=all-non-file "
        f"--callgrind-out-file={out_dir}/callgrind.%p.out -q {bench.ENVOY_BIN} \"$@\"\n"
    )
    wrapper.chmod(0o755)
    return wrapper


def start_envoy(setup: bench.Setup, wrapper: Path, filtered: bool, filter_settings: dict[str, str] | None) -> Envoy:
    name = f"envoy-{'filter' if filtered else 'plain'}{'-configured' if filter_settings else ''}-callgrind"

    def start(ports: list[int]) -> Envoy:
        values = bench.envoy_values(setup, name, (ports[0], ports[1]))
        config = setup.work_dir / f"{name}.yaml"
        config.write_text(bench.bootstrap.render_envoy(bench.ROOT, values, filtered, filter_settings))
        return Envoy(
            name, wrapper, config, bench.LOG_DIR, 1, (ports[0], ports[1]), ready_timeout_secs=START_TIMEOUT_SECS
        )

    return start_with_free_ports(name, 2, start)


def send(envoy: Envoy, path: str, headers: dict[str, str], count: int, expected: int) -> None:
    connection = HTTPConnection("127.0.0.1", envoy.listen_port, timeout=60)
    for _ in range(count):
        connection.request("GET", path, headers=headers)
        answer = connection.getresponse()
        answer.read()
        if answer.status != expected:
            raise SystemExit(f"instructions: {envoy.name} answered {answer.status}, expected {expected}")
    connection.close()


def callgrind_control(envoy: Envoy, *arguments: str) -> None:
    subprocess.run(["callgrind_control", *arguments, str(envoy.child.pid)], check=True, capture_output=True)


def total_instructions(out_dir: Path, pid: int) -> int:
    """The instruction count of the last dump of `pid` (callgrind writes `summary:` or `totals:`)."""
    dumps = sorted(out_dir.glob(f"callgrind.{pid}.out*"), key=lambda path: path.stat().st_mtime)
    for line in reversed(dumps[-1].read_text(errors="replace").splitlines()):
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SystemExit(f"instructions: no totals in {dumps[-1]}")


def counted(envoy: Envoy, out_dir: Path, work) -> tuple[int, float]:
    """Instructions Envoy executed while `work` ran, and how long it ran, in seconds."""
    callgrind_control(envoy, "--zero")
    started = time.monotonic()
    work()
    elapsed = time.monotonic() - started
    callgrind_control(envoy, "--dump")
    return total_instructions(out_dir, envoy.child.pid), elapsed


def measure(envoy: Envoy, out_dir: Path, path: str, headers: dict[str, str], expected: int) -> float:
    """Per request, without what Envoy does anyway meanwhile (timers, ticks): that is counted
    while Envoy is idle and taken off in proportion to the time the requests took."""
    send(envoy, path, headers, WARMUP_REQUESTS, expected)
    callgrind_control(envoy, "--instr=on")
    send(envoy, path, headers, WARMUP_REQUESTS, expected)
    idle, idle_secs = counted(envoy, out_dir, lambda: time.sleep(IDLE_SECS))
    busy, busy_secs = counted(envoy, out_dir, lambda: send(envoy, path, headers, REQUESTS, expected))
    callgrind_control(envoy, "--instr=off")
    return (busy - idle / idle_secs * busy_secs) / REQUESTS


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Instructions per request, plain Envoy vs Envoy with Tollgate.")
    parser.add_argument("--case", action="append", help="only cases whose name contains this text")
    parser.add_argument("--route", choices=bench.ROUTES, action="append", help="only these routes")
    parser.add_argument("--keep", type=Path, help="copy callgrind's dumps into this folder")
    return parser.parse_args()


def main() -> int:
    options = arguments()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("instructions: valgrind is not installed (scripts/setup.sh --bench-tools installs it)")
    bench.LOG_DIR.mkdir(parents=True, exist_ok=True)
    stack = bench.Stack()
    password = "instructions-" + os.urandom(8).hex()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tollgate-instructions-") as work:
        work_dir, out_dir = Path(work), Path(work) / "callgrind"
        out_dir.mkdir()
        try:
            control_plane, api_key, unlimited_key = bench.prepare_control_plane(
                stack, work_dir / "data", password, keyspace=0
            )
            token, failure = bench.login(control_plane, password)
            cases = [
                ("valid key, cached", {"X-API-Key": api_key}, 200, None),
                (
                    "valid key, cached, rate_limit_headers refusals",
                    {"X-API-Key": api_key},
                    200,
                    bench.REFUSALS_HEADERS,
                ),
                ("valid key, no rate limit", {"X-API-Key": unlimited_key}, 200, None),
            ]
            if token:
                cases.append(("session JWT", {"Authorization": f"Bearer {token}"}, 200, None))
            else:
                say(f"no session case: {failure}")
            # Last, as in bench.py: a failed authentication makes the next minute's requests
            # look up their address too.
            cases.append(("invalid key, negative cache", {"X-API-Key": "tgb_unknown_0123456789abcdef"}, 401, None))
            cases = [case for case in cases if not options.case or any(text in case[0] for text in options.case)]
            routes = options.route or list(bench.ROUTES)
            setup = bench.Setup(stack, work_dir, control_plane, bench.start_upstream(stack), [])
            wrapper = valgrind_wrapper(work_dir, out_dir)
            counts = {}
            # Plain Envoy, then Envoy with the filter, then one per filter configuration of a case.
            variants = [(False, None), (True, None)]
            variants += [(True, settings) for *_, settings in cases if settings]
            for filtered, settings in variants:
                say(f"starting {'Envoy with the filter' if filtered else 'plain Envoy'} {settings or ''} under callgrind")
                envoy = stack.add(start_envoy(setup, wrapper, filtered, settings))
                for name, headers, status, case_settings in cases:
                    if filtered and case_settings != settings:
                        continue
                    for route in routes:
                        expected = status if filtered else 200
                        say(f"{route}: {name}")
                        path = bench.ROUTES[route]
                        counts[(filtered, route, name)] = measure(envoy, out_dir, path, headers, expected)
                stack.stop(envoy)
            if options.keep:
                shutil.copytree(out_dir, options.keep, dirs_exist_ok=True)
            for route in routes:
                for name, *_ in cases:
                    plain, filtered = counts[(False, route, name)], counts[(True, route, name)]
                    added = f"{filtered - plain:+,.0f}"
                    rows.append([route, name, f"{plain:,.0f}", f"{filtered:,.0f}", added, report.ratio(filtered, plain)])
        finally:
            stack.stop_all()
    print(f"\nInstructions per request (callgrind), Envoy 1 worker, {REQUESTS} requests on one connection\n")
    print(report.table(["route", "case", "plain", "with filter", "added", "ratio"], rows, labels=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
