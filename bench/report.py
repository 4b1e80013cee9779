"""The printed tables. Every figure comes from the measurements passed in; ratios are filter/plain."""

from dataclasses import dataclass, field

from load import LATENCY_CONNECTIONS, THROUGHPUT_CONNECTIONS, Measurement

LABEL_COLUMNS = 3  # workers, route, case


@dataclass
class MemoryGrowth:
    workers: int
    cached: int
    rss_started_mb: float
    rss_before_mb: float
    rss_after_mb: float

    def workers_caches_mb(self) -> float:
        return self.rss_before_mb - self.rss_started_mb

    def mb_per_100k(self) -> float:
        return (self.rss_after_mb - self.rss_before_mb) * 100_000 / self.cached


@dataclass
class Results:
    # (workers, route, case) in the order they were benchmarked, failed ones included
    rows: list[tuple] = field(default_factory=list)
    # (workers, route, case, "plain" | "filter", connections) -> measurement
    runs: dict[tuple, Measurement] = field(default_factory=dict)
    # (workers, case) -> why the filter's answer was not the expected one
    failures: dict[tuple, str] = field(default_factory=dict)
    memory: list[MemoryGrowth] = field(default_factory=list)
    # (per-mode results, plain p50 us, plain p99 us) of the two-Envoy global limit
    global_limit: tuple | None = None

    def pair(self, workers: int, route: str, case: str, connections: int):
        key = (workers, route, case)
        return self.runs.get((*key, "plain", connections)), self.runs.get((*key, "filter", connections))


def table(headers: list[str], rows: list[list[str]], labels: int = LABEL_COLUMNS) -> str:
    """Aligned columns: the first `labels` to the left, figures to the right; short rows end early."""
    widths = [max(len(row[i]) for row in [headers, *rows] if i < len(row)) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i < labels else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths))
        ).rstrip()

    rule = "-" * len(line(headers))
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def number(value: float) -> str:
    return f"{value:,.0f}"


def ratio(filter_value: float, plain_value: float) -> str:
    return f"{filter_value / plain_value:.2f}" if plain_value else "-"


def added(filter_value: float, plain_value: float) -> str:
    return f"{filter_value - plain_value:+,.1f}"


def _rows(results: Results, cells) -> list[list[str]]:
    """One row per (workers, route, case); `cells` makes the figures of a row that was measured."""
    rows = []
    for workers, route, case in results.rows:
        failed = (workers, case) in results.failures
        rows.append([str(workers), route, case, *(["FAILED"] if failed else cells(workers, route, case))])
    return rows


def throughput_table(results: Results) -> str:
    def cells(workers, route, case):
        plain, tollgate = results.pair(workers, route, case, THROUGHPUT_CONNECTIONS)
        return [
            number(plain.rps), number(tollgate.rps), ratio(tollgate.rps, plain.rps),
            number(plain.p50_us), number(tollgate.p50_us), ratio(tollgate.p50_us, plain.p50_us),
            number(plain.p99_us), number(tollgate.p99_us), ratio(tollgate.p99_us, plain.p99_us),
            f"{100 * max(plain.others_cpu_share, tollgate.others_cpu_share):.0f}",
        ]

    headers = [
        "workers", "route", "case",
        "req/s plain", "req/s filter", "ratio",
        "p50 µs plain", "p50 µs filter", "ratio",
        "p99 µs plain", "p99 µs filter", "ratio",
        "others' CPU %",
    ]
    return table(headers, _rows(results, cells))


def cost_table(results: Results) -> str:
    def cells(workers, route, case):
        idle_plain, idle_filter = results.pair(workers, route, case, LATENCY_CONNECTIONS)
        plain, tollgate = results.pair(workers, route, case, THROUGHPUT_CONNECTIONS)
        return [
            number(idle_plain.p50_us),
            number(idle_filter.p50_us),
            added(idle_filter.p50_us, idle_plain.p50_us),
            f"{plain.envoy_cpu_us:.1f}",
            f"{tollgate.envoy_cpu_us:.1f}",
            added(tollgate.envoy_cpu_us, plain.envoy_cpu_us),
            f"{tollgate.callouts_per_request:.2f}",
            f"{tollgate.control_plane_cpu_us:.1f}",
        ]

    headers = [
        "workers", "route", "case",
        "p50 µs plain", "p50 µs filter", "added µs",
        "Envoy CPU µs plain", "Envoy CPU µs filter", "added µs",
        "callouts/req", "control plane CPU µs/req",
    ]
    return table(headers, _rows(results, cells))


def memory_table(results: Results) -> str:
    rows = [
        [
            str(growth.workers), f"{growth.workers_caches_mb():.1f}",
            number(growth.cached), f"{growth.rss_before_mb:.1f}", f"{growth.rss_after_mb:.1f}",
            f"{growth.mb_per_100k():.1f}", f"{growth.mb_per_100k() / growth.workers:.1f}",
        ]
        for growth in results.memory
    ]
    headers = [
        "workers", "MB filling the workers' own caches",
        "new principals cached then", "VmRSS MB before", "VmRSS MB after",
        "MB per 100k (Envoy)", "MB per 100k per worker",
    ]
    return table(headers, rows, labels=1)


def unexpected_answers(results: Results) -> list[str]:
    return [
        f"{case} ({route}, {workers} worker(s), {variant}, {connections} connection(s)): "
        f"{run.unexpected} requests not answered as expected"
        for (workers, route, case, variant, connections), run in results.runs.items()
        if run.unexpected
    ]


def global_limit_table(results: Results) -> str:
    modes, plain_p50, plain_p99 = results.global_limit
    rows = []
    for mode in modes:
        unexpected = ", ".join(f"{count} x {status}" for status, count in sorted(mode.other_statuses.items()))
        rows.append([
            mode.mode,
            number(mode.offered),
            number(mode.admitted),
            " + ".join(number(a) for a in mode.admitted_per_envoy),
            f"{mode.allowed:,.1f}",
            f"{100 * (mode.admitted - mode.allowed) / mode.allowed:+.1f} %",
            f"{mode.p50_us - plain_p50:+,}",
            f"{mode.p99_us - plain_p99:+,}",
            unexpected or "-",
        ])
    headers = ["mode", "offered", "admitted", "per Envoy", "allowed", "over allowed",
               "p50 us added", "p99 us added", "other answers"]
    return table(headers, rows, labels=1)
