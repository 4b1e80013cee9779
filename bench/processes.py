"""The processes a benchmark runs: the control plane, Envoys, the upstream. Each is a child with
its own log file, found by pid for its CPU time and memory, and stopped by its own pid."""

import json
import os
import resource
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

READY_TIMEOUT_SECS = 60
STOP_TIMEOUT_SECS = 10
CLOCK_TICKS_PER_SEC = os.sysconf("SC_CLK_TCK")
START_ATTEMPTS = 5
# Reserved ports come from outside the kernel's ephemeral range, as the e2e harness's do
# (tests/src/ports.rs), and are locked by the same names, so a benchmark and tests never share one.
FIRST_PORT = 20_000
SMALLEST_RANGE = 1_000


def machine_busy_seconds() -> float:
    """CPU time every process on the machine used so far (all CPUs; idle and iowait excluded)."""
    user, nice, system, idle, iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS_PER_SEC


def own_cpu_seconds() -> float:
    """CPU time of the benchmark itself: this process, its finished children (wrk) and its
    running children (the control plane, the Envoys, the upstream)."""
    total = sum(
        usage.ru_utime + usage.ru_stime
        for usage in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[1]) == os.getpid():
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_SEC
    return total


class PortTaken(Exception):
    """A child exited at start-up because a port it was given is in use: a start on other
    ports can fix that."""


_reserved: dict[int, socket.socket] = {}


def _reserved_range() -> range:
    """Ports the kernel never picks by itself (for port-0 binds and outgoing connections)."""
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    if low - FIRST_PORT >= SMALLEST_RANGE:
        return range(FIRST_PORT, low)
    if 65_535 - max(high, FIRST_PORT) >= SMALLEST_RANGE:
        return range(max(high, FIRST_PORT) + 1, 65_536)
    return range(FIRST_PORT, 65_536)


def reserve_port() -> int:
    """A loopback port no other reservation on the machine (here or in the e2e tests) hands out
    while this process runs, and that nothing listened on when reserved. The lock is an abstract
    Unix socket named after the port, released by the kernel when this process exits."""
    ports = _reserved_range()
    offset = os.getpid() * 97
    for index in range(len(ports)):
        port = ports[(offset + len(_reserved) + index) % len(ports)]
        lock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            lock.bind(f"\0tollgate-e2e-port-{port}")
        except OSError:
            lock.close()
            continue
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                lock.close()
                continue
        _reserved[port] = lock
        return port
    raise SystemExit(f"bench: every port in {ports} is taken")


def start_with_free_ports(what: str, count: int, start):
    """`start(ports)` with `count` freshly reserved ports; again with new ones while it raises
    PortTaken (programs that bind the port numbers of their configuration cannot take a socket
    bound here, so a number can be taken between its reservation and their bind)."""
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            return start([reserve_port() for _ in range(count)])
        except PortTaken as taken:
            print(f"bench: {what}: a port was taken (attempt {attempt}): {taken}", file=sys.stderr, flush=True)
    raise SystemExit(f"bench: {what} found a port taken on every one of {START_ATTEMPTS} starts")


def listening_socket() -> socket.socket:
    """A listening loopback socket on a port the kernel picks, to hand to a child that can take
    one: the port is never free between here and the child."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    return listener


def http(method: str, url: str, headers: dict[str, str] | None = None, body=None):
    """(status, parsed JSON body or None) of one request; HTTP errors are answers too."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, _json_or_none(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, _json_or_none(error.read())


def _json_or_none(raw: bytes):
    try:
        return json.loads(raw)
    except ValueError:
        return None


class Child:
    """A running process whose output goes to `<log_dir>/<name>.log`."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_dir: Path,
        env: dict[str, str] | None = None,
        pass_fds: tuple[int, ...] = (),
    ):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, pass_fds=pass_fds
            )
        self.pid = self.process.pid

    def wait_ready(self, url: str, timeout_secs: float = READY_TIMEOUT_SECS) -> None:
        """Until `url` answers 200; raises PortTaken if the child exits saying a port is in use."""
        deadline = time.monotonic() + timeout_secs
        while True:
            self._check_running()
            try:
                if http("GET", url)[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self._check_running()
                raise SystemExit(f"bench: {self.name} not ready in {timeout_secs}s; see {self.log_path}")
            time.sleep(0.1)

    def _check_running(self) -> None:
        if self.process.poll() is None:
            return
        log = self.log_path.read_text(errors="replace")
        in_use = [line for line in log.splitlines() if "in use" in line]
        if in_use:
            raise PortTaken(in_use[0])
        raise SystemExit(f"bench: {self.name} exited at start-up; see {self.log_path}")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the whole process (every thread) so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        utime, stime = int(fields[11]), int(fields[12])
        return (utime + stime) / CLOCK_TICKS_PER_SEC

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise SystemExit(f"bench: no VmRSS for {self.name}")

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT_SECS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class ControlPlane:
    """`tollgate serve` on SQLite in `data_dir`, configured through the environment."""

    def __init__(self, binary: Path, data_dir: Path, log_dir: Path, admin_key: str, settings: dict[str, str]):
        self.binary, self.data_dir, self.log_dir = binary, data_dir, log_dir
        self.admin_key = admin_key
        self.http_port, self.grpc_port = 0, 0
        self.settings = settings
        self.child: Child | None = None

    def env(self) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items() if not name.startswith("TOLLGATE_")}
        env.update(
            TOLLGATE_DATA_DIR=str(self.data_dir),
            TOLLGATE_HTTP__LISTEN=f"127.0.0.1:{self.http_port}",
            TOLLGATE_GRPC__LISTEN=f"127.0.0.1:{self.grpc_port}",
            TOLLGATE_BOOTSTRAP__ADMIN_API_KEY=self.admin_key,
            TOLLGATE_LOG="warn",
        )
        env.update(self.settings)
        return env

    def start(self) -> None:
        """The first start takes fresh ports; a restart keeps them (Envoys know the gRPC one),
        and the reservations kept them from everyone else meanwhile."""
        if self.http_port:
            try:
                self.serve()
            except PortTaken as taken:
                raise SystemExit(f"bench: tollgate: a port of its own is taken: {taken}") from None
        else:
            start_with_free_ports("tollgate", 2, self.serve_on)

    def serve_on(self, ports: list[int]) -> None:
        self.http_port, self.grpc_port = ports
        self.serve()

    def serve(self) -> None:
        self.child = Child("tollgate", [str(self.binary), "serve"], self.log_dir, self.env())
        self.child.wait_ready(self.url("/api/v1/ready"))

    def stop(self) -> None:
        if self.child:
            self.child.stop()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def call(self, method: str, path: str, body=None, expect: int = 200):
        """The JSON answer of an admin API call; anything but `expect` stops the benchmark."""
        status, answer = http(method, self.url(path), {"X-API-Key": self.admin_key}, body)
        if status != expect:
            raise SystemExit(f"bench: {method} {path} answered {status}: {answer}")
        return answer

    def metric(self, name: str) -> float:
        """A Prometheus counter from /metrics, summed over its series (0 when absent)."""
        with urllib.request.urlopen(self.url("/metrics"), timeout=10) as answer:
            text = answer.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and not line.startswith("#")
        )


class Envoy:
    """One Envoy on a rendered bootstrap (`ports`: listener, admin), with `workers` worker threads."""

    def __init__(
        self,
        name: str,
        binary: Path,
        config: Path,
        log_dir: Path,
        workers: int,
        ports: tuple[int, int],
        ready_timeout_secs: float = READY_TIMEOUT_SECS,
    ):
        self.name, self.workers = name, workers
        self.listen_port, admin_port = ports
        argv = [
            str(binary), "-c", str(config),
            "--concurrency", str(workers),
            "--base-id", str(admin_port),
            "--log-level", "warn",
        ]
        self.child = Child(name, argv, log_dir)
        self.child.wait_ready(f"http://127.0.0.1:{admin_port}/ready", ready_timeout_secs)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.listen_port}{path}"

    def stop(self) -> None:
        self.child.stop()
