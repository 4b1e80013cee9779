"""Renders the benchmark bootstrap: envoy/bootstrap.yaml with its routes and its demo upstream
cluster replaced by those of bench/envoy.yaml. Everything else, the Tollgate filter, its sync
service and the control plane cluster included, is the real configuration, whatever it is today.
The plain variant is the same bootstrap without Tollgate's two wasm extensions."""

import re
from pathlib import Path

ROUTES = "route_config:"
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


def replaced(lines: list[str], first_line: str, new_block: list[str]) -> list[str]:
    """`lines` with the block starting with `first_line` replaced by `new_block`, re-indented."""
    start, end = _span(lines, first_line)
    shift = _indent(lines[start]) - _indent(new_block[0])
    reindented = [" " * shift + line if shift >= 0 else line[-shift:] for line in new_block]
    return lines[:start] + reindented + lines[end:]


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


def substitute(lines: list[str], values: dict[str, str]) -> str:
    def value(match: re.Match) -> str:
        if match.group(1) not in values:
            raise SystemExit(f"bench: no value for {match.group(0)} in the bootstrap")
        return values[match.group(1)]

    return PLACEHOLDER.sub(value, "\n".join(lines)) + "\n"


def render_envoy(root: Path, values: dict[str, str], with_tollgate: bool) -> str:
    real = config_lines((root / "envoy/bootstrap.yaml").read_text())
    bench = config_lines((root / "bench/envoy.yaml").read_text())
    lines = replaced(real, ROUTES, block(bench, ROUTES))
    lines = replaced(lines, REAL_UPSTREAM, block(bench, BENCH_UPSTREAM))
    return substitute(lines if with_tollgate else without_tollgate(lines), values)
