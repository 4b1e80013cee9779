"""The processes a benchmark runs: the control plane, Envoys, the upstream. Each is a child with
its own log file, found by pid for its CPU time and memory, and stopped by its own pid."""

import json
import os
import resource
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

READY_TIMEOUT_SECS = 60
STOP_TIMEOUT_SECS = 10
CLOCK_TICKS_PER_SEC = os.sysconf("SC_CLK_TCK")


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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        self.pid = self.process.pid

    def wait_ready(self, url: str, timeout_secs: float = READY_TIMEOUT_SECS) -> None:
        deadline = time.monotonic() + timeout_secs
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"bench: {self.name} exited at start-up; see {self.log_path}")
            try:
                if http("GET", url)[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: {self.name} not ready in {timeout_secs}s; see {self.log_path}")
            time.sleep(0.1)

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
        self.http_port, self.grpc_port = free_port(), free_port()
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
