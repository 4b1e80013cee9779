"""Renders the benchmark bootstrap: envoy/bootstrap.yaml with the static routes of bench/envoy.yaml
in place of its own (`rds` or `route_config`), the benchmark upstream cluster in place of its demo
upstream (or added to its clusters), and without `dynamic_resources`: every route and cluster the
benchmark uses is static. Everything else, the Tollgate filter, its sync service and the control
plane cluster included, is the real configuration, whatever it is today. The plain variant is the
same bootstrap without Tollgate's two wasm extensions."""

import re
from pathlib import Path

ROUTES = "route_config:"
REAL_ROUTE_SOURCES = ("rds:", ROUTES)
CLUSTERS = "clusters:"
DYNAMIC_RESOURCES = "dynamic_resources:"
REAL_UPSTREAM = "- name: tollgate_upstream_default"
BENCH_UPSTREAM = "- name: bench_upstream"
# Tollgate's part of the bootstrap, left out of the plain variant.
TOLLGATE_BLOCKS = ("- name: envoy.filters.http.wasm", "- name: envoy.bootstrap.wasm")
EXTENSIONS = "bootstrap_extensions:"
PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)\}")


def config_lines(text: str) -> list[str]:
    """The lines that configure something: no blank lines, no comment lines."""
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _find(lines: list[str], first_line: str) -> int | None:
    return next((i for i, line in enumerate(lines) if line.strip() == first_line), None)


def _span(lines: list[str], first_line: str) -> tuple[int, int]:
    """Where the block (a mapping key or a list item) starting with `first_line` is."""
    start = _find(lines, first_line)
    if start is None:
        raise SystemExit(f"bench: no '{first_line}' in the bootstrap")
    end = start + 1
    while end < len(lines) and _indent(lines[end]) > _indent(lines[start]):
        end += 1
    return start, end


def block(lines: list[str], first_line: str) -> list[str]:
    start, end = _span(lines, first_line)
    return lines[start:end]


def _reindented(new_block: list[str], indent: int) -> list[str]:
    shift = indent - _indent(new_block[0])
    return [" " * shift + line if shift >= 0 else line[-shift:] for line in new_block]


def replaced(lines: list[str], first_line: str, new_block: list[str]) -> list[str]:
    """`lines` with the block starting with `first_line` replaced by `new_block`, re-indented."""
    start, end = _span(lines, first_line)
    return lines[:start] + _reindented(new_block, _indent(lines[start])) + lines[end:]


def inserted(lines: list[str], parent: str, new_block: list[str]) -> list[str]:
    """`lines` with `new_block` as the first child of the block starting with `parent`."""
    start, end = _span(lines, parent)
    if end == start + 1:
        raise SystemExit(f"bench: '{parent}' is empty in the bootstrap")
    return lines[: start + 1] + _reindented(new_block, _indent(lines[start + 1])) + lines[start + 1 :]


def without(lines: list[str], first_line: str) -> list[str]:
    start, end = _span(lines, first_line)
    return lines[:start] + lines[end:]


def without_tollgate(lines: list[str]) -> list[str]:
    """The HTTP filter must be there; the sync service goes too when the bootstrap has one."""
    filter_block, *other_blocks = TOLLGATE_BLOCKS
    lines = without(lines, filter_block)
    for first_line in other_blocks:
        if _find(lines, first_line) is not None:
            lines = without(lines, first_line)
    if _find(lines, EXTENSIONS) is not None and len(block(lines, EXTENSIONS)) == 1:
        lines = without(lines, EXTENSIONS)
    return lines


def with_bench_routes(lines: list[str], bench: list[str]) -> list[str]:
    source = next((first for first in REAL_ROUTE_SOURCES if _find(lines, first) is not None), None)
    if source is None:
        raise SystemExit(f"bench: the bootstrap has none of {', '.join(REAL_ROUTE_SOURCES)}")
    return replaced(lines, source, block(bench, ROUTES))


def with_bench_upstream(lines: list[str], bench: list[str]) -> list[str]:
    upstream = block(bench, BENCH_UPSTREAM)
    if _find(lines, REAL_UPSTREAM) is not None:
        return replaced(lines, REAL_UPSTREAM, upstream)
    return inserted(lines, CLUSTERS, upstream)


def substitute(lines: list[str], values: dict[str, str]) -> str:
    def value(match: re.Match) -> str:
        if match.group(1) not in values:
            raise SystemExit(f"bench: no value for {match.group(0)} in the bootstrap")
        return values[match.group(1)]

    return PLACEHOLDER.sub(value, "\n".join(lines)) + "\n"


def with_filter_settings(lines: list[str], settings: dict[str, str]) -> list[str]:
    """The filter's JSON configuration (the sync service's too) with `settings` added."""
    fields = "".join(f'"{name}":"{value}",' for name, value in settings.items())
    return [line.replace("value: '{", "value: '{" + fields, 1) for line in lines]


def render_envoy(
    root: Path, values: dict[str, str], with_tollgate: bool, filter_settings: dict[str, str] | None = None
) -> str:
    real = config_lines((root / "envoy/bootstrap.yaml").read_text())
    if filter_settings:
        real = with_filter_settings(real, filter_settings)
    bench = config_lines((root / "bench/envoy.yaml").read_text())
    lines = with_bench_upstream(with_bench_routes(real, bench), bench)
    if _find(lines, DYNAMIC_RESOURCES) is not None:
        lines = without(lines, DYNAMIC_RESOURCES)
    return substitute(lines if with_tollgate else without_tollgate(lines), values)
