"""Renders the benchmark bootstrap, bench/envoy.yaml, with or without the Tollgate filter. Refuses to render when the filter or the control plane cluster of
bench/envoy.yaml differ from envoy/bootstrap.yaml, so the benchmark measures the real filter."""

import re
from pathlib import Path

# The first line of each block that must stay identical to envoy/bootstrap.yaml.
SHARED_BLOCKS = ("- name: envoy.filters.http.wasm", "- name: tollgate_control_plane")
FILTER_BLOCK = SHARED_BLOCKS[0]
PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)\}")


def block(text: str, first_line: str) -> str:
    """The YAML list item starting with `first_line`, dedented, up to its next sibling or parent."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == first_line), None)
    if start is None:
        raise SystemExit(f"bench: no '{first_line}' in the bootstrap")
    indent = len(lines[start]) - len(lines[start].lstrip())
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > indent):
        end += 1
    return "\n".join(line[indent:] for line in lines[start:end]).rstrip()


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def check_matches_real(template: str, real: str) -> None:
    for first_line in SHARED_BLOCKS:
        if block(template, first_line) != block(real, first_line):
            raise SystemExit(
                f"bench: '{first_line}' in bench/envoy.yaml differs from envoy/bootstrap.yaml; "
                "copy the real one into the benchmark bootstrap"
            )


def without_block(text: str, first_line: str) -> str:
    kept = block(text, first_line)
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == first_line)
    return "\n".join(lines[:start] + lines[start + len(kept.splitlines()) :]) + "\n"


def substitute(template: str, values: dict[str, str]) -> str:
    def value(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            raise SystemExit(f"bench: no value for ${{{name}}} in the bootstrap template")
        return values[name]

    body = "\n".join(line for line in template.splitlines() if not line.startswith("#"))
    return PLACEHOLDER.sub(value, body) + "\n"


def render_envoy(root: Path, values: dict[str, str], with_filter: bool) -> str:
    template = (root / "bench/envoy.yaml").read_text()
    check_matches_real(template, (root / "envoy/bootstrap.yaml").read_text())
    if not with_filter:
        template = without_block(template, FILTER_BLOCK)
    return substitute(template, values)
