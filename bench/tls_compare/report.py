"""Results of a run: figures per server, the printed table and the JSON file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BASELINE = "nginx"
ROW_ORDER = (
    "hs_cpu",
    "hs_wall",
    "get_cpu",
    "get_wall",
    "upload",
    "upload_cpu",
    "startup",
    "startup_cpu",
    "all_served",
    "all_served_cpu",
    "rss",
    "pss",
    "chain_change_ms",
)


@dataclass
class Figure:
    """One measured value of one server."""

    key: str
    label: str
    unit: str
    server: str
    value: float | None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Results:
    """Everything a run measured, in the order it was measured."""

    meta: dict[str, Any]
    servers: list[str]
    figures: list[Figure] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)

    def add(
        self,
        key: str,
        label: str,
        unit: str,
        server: str,
        value: float | None,
        **details: Any,
    ) -> None:
        """Record a figure."""
        self.figures.append(Figure(key, label, unit, server, value, details))

    def error(self, server: str, where: str, message: str) -> None:
        """Record a measurement that failed (the run goes on)."""
        self.errors.append({"server": server, "where": where, "error": message})

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "meta": self.meta,
            "servers": self.servers,
            "figures": [asdict(f) for f in self.figures],
            "errors": self.errors,
        }

    def write(self, path: Path) -> None:
        """Write the JSON results file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, default=str) + "\n")


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("s",) or value < 10:
        return f"{value:,.2f}"
    if value < 100:
        return f"{value:,.1f}"
    return f"{value:,.0f}"


def table(results: Results) -> str:
    """Markdown table: one row per figure, one column per server, ratio to nginx in brackets."""
    rows: dict[str, tuple[str, str, dict[str, float | None]]] = {}
    for fig in results.figures:
        label, unit, values = rows.setdefault(fig.key, (fig.label, fig.unit, {}))
        values[fig.server] = fig.value
    servers = results.servers

    def group(key: str) -> int:
        prefix = key.split("/")[0]
        return ROW_ORDER.index(prefix) if prefix in ROW_ORDER else len(ROW_ORDER)

    ordered = sorted(rows, key=group)  # stable: measurement order within a group
    header = "| figure | unit | " + " | ".join(servers) + " |"
    lines = [header, "|---|---|" + "---:|" * len(servers)]
    for key in ordered:
        label, unit, values = rows[key]
        base = values.get(BASELINE)
        cells = []
        for server in servers:
            value = values.get(server)
            cell = _fmt(value, unit)
            if server != BASELINE and value is not None and base:
                ratio = value / base
                cell += f" ({ratio:.2f} x)" if ratio >= 0.1 else f" ({ratio:.2g} x)"
            cells.append(cell)
        lines.append(f"| {label} | {unit} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def notes(results: Results) -> str:
    """The methods and caveats worth printing under the table."""
    out = []
    for fig in results.figures:
        if fig.key == "chain_change_ms" and fig.details.get("method"):
            out.append(f"- chain change, {fig.server}: {fig.details['method']}")
    for note in results.meta.get("key_notes", []):
        out.append(f"- keys: {note}")
    for err in results.errors:
        out.append(f"- ERROR {err['server']} {err['where']}: {err['error']}")
    return "\n".join(out)
