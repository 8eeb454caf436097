"""Pure helpers to read the Grafana dashboard's queries and fill in its variables.

Grafana is not available here, so panel queries are checked the way Grafana would send them to
Prometheus: each ``$variable`` replaced by its value (``.*`` for "All"), and Grafana's own
interval variables replaced by fixed durations.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "dashboards" / "gpu-exporter.json"

GRAFANA_BUILTINS: Mapping[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
    "__range_s": "300",
    "__interval_ms": "15000",
}
"""Values for Grafana's built-in variables, as a short dashboard time range would give them."""

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")


@dataclass(frozen=True)
class Query:
    """One target of one panel."""

    panel_id: int
    title: str
    ref_id: str
    expr: str

    @property
    def name(self) -> str:
        """A readable test id: ``12/A Framebuffer used per GPU``."""
        return f"{self.panel_id}/{self.ref_id} {self.title}"


def load(path: Path = DASHBOARD) -> dict[str, Any]:
    """The dashboard JSON."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def all_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, and the panels inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: Mapping[str, Any]) -> list[Query]:
    """Every panel target, in dashboard order."""
    return [
        Query(int(panel["id"]), str(panel.get("title", "")), str(target.get("refId", "")),
              str(target.get("expr", "")))
        for panel in all_panels(dashboard)
        for target in panel.get("targets", [])
    ]


def variables(dashboard: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Template variables by name."""
    return {var["name"]: var for var in dashboard.get("templating", {}).get("list", [])}


def all_selected(dashboard: Mapping[str, Any]) -> dict[str, str]:
    """Variable values with every query variable set to "All" (its ``allValue``)."""
    values = dict(GRAFANA_BUILTINS)
    for name, var in variables(dashboard).items():
        if var["type"] == "query":
            values[name] = var.get("allValue") or ".*"
    return values


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace ``$name``, ``${name}``, ``${name:format}`` and ``[[name]]``.

    Raises:
        KeyError: a variable has no value in ``values``.
    """

    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name not in values:
            raise KeyError(f"no value for dashboard variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


def label_values_query(query: str) -> tuple[str, str] | None:
    """``label_values(SELECTOR, LABEL)`` -> (SELECTOR, LABEL); None for other query forms."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", query, re.DOTALL)
    return (match.group(1), match.group(2)) if match else None


def query_result_query(query: str) -> str | None:
    """``query_result(EXPR)`` -> EXPR; None for other query forms."""
    match = re.fullmatch(r"\s*query_result\((.*)\)\s*", query, re.DOTALL)
    return match.group(1) if match else None


def variable_query(var: Mapping[str, Any]) -> str:
    """The query text of a query variable (string form or the newer object form)."""
    query = var.get("query")
    if isinstance(query, Mapping):
        return str(query.get("query", ""))
    return str(query or var.get("definition", ""))
